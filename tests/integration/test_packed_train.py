"""Packed training through ``train_many(pack=True)`` on the CPU: every member is its own run.

Each member writes the run-directory contract, its checkpoints load into the single model,
its numbers match its standalone ``train`` run (up to the rounding of grouped vs dense
convolutions), an interrupted pack resumes exactly, and a packed member resumes alone.
"""
from dataclasses import replace

import pytest
import torch

from resnet_nb import packing, runs
from resnet_nb.config import make_config
from resnet_nb.models import build_model
from resnet_nb.train import train, train_many

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]
TIMING = ("time", "elapsed")


def pack_cfgs(fake_cifar, out_dir, **kw):
    """plain8 + resnet8 (seed 0) + resnet8 seed 1: 96 images, batch 32, 2 epochs."""
    base = dict(dataset="synthetic", data_root=str(fake_cifar), epochs=2, batch_size=32,
                train_subset=96, test_subset=40, milestones=(1,), device="cpu",
                out_dir=str(out_dir), run_id="p", **kw)
    return [make_config("smoke", model="plain8", **base),
            make_config("smoke", model="resnet8", **base),
            make_config("smoke", model="resnet8", seed=1, run_name="resnet8-seed1", **base)]


def math_fields(metrics):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in metrics]


@pytest.fixture(scope="module")
def packed_run(fake_cifar, tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("packed")
    cfgs = pack_cfgs(fake_cifar, out)
    return cfgs, train_many(cfgs, pack=True)


def test_plan_packs_groups_by_depth_and_recipe(fake_cifar, tmp_path):
    cfgs = pack_cfgs(fake_cifar, tmp_path)
    others = [replace(cfgs[0], model="resnet20", run_name="resnet20"),
              replace(cfgs[0], lr=0.05, run_name="plain8-lr"),
              replace(cfgs[1], shortcut="B", run_name="resnet8-B")]
    assert packing.plan_packs(cfgs + others, pack=True) == [[0, 1, 2], [3], [4], [5]]
    assert packing.plan_packs(cfgs, pack=None) == [[0], [1], [2]]     # CPU: packing only on request
    assert packing.plan_packs(cfgs, pack=False) == [[0], [1], [2]]


def test_members_write_the_run_contract(packed_run):
    cfgs, paths = packed_run
    assert [p.name for p in paths] == ["plain8", "resnet8", "resnet8-seed1"]
    for c, p in zip(cfgs, paths):
        run = runs.load_run(p)
        assert run["status"] == "finished"
        assert [r["epoch"] for r in run["metrics"]] == [1, 2]
        assert set(run["metrics"][0]) >= {"epoch", "iteration", "train_loss", "train_acc", "test_loss",
                                          "test_acc", "lr", "time", "elapsed"}
        meta = runs.read_json(p / "config.json")
        assert meta["packed_with"] == ["plain8", "resnet8", "resnet8-seed1"]
        assert not (p / ".lock").exists() and meta["host"] and meta["pid"]
        for f in ("best.pth", "last.pth"):
            ck = torch.load(p / f, map_location="cpu", weights_only=True)
            build_model(c.model).load_state_dict(ck["model"], strict=True)
            assert ck["config"]["seed"] == c.seed
        last = torch.load(p / "last.pth", map_location="cpu", weights_only=True)
        opt = torch.optim.SGD(build_model(c.model).parameters(), lr=0.1, momentum=0.9)
        opt.load_state_dict(last["optimizer"])


def test_members_match_their_standalone_runs(packed_run, fake_cifar, tmp_path):
    cfgs, paths = packed_run
    for c, p in zip(cfgs, paths):
        alone = train(replace(c, out_dir=str(tmp_path)))
        got, want = runs.load_run(p)["metrics"], runs.load_run(alone)["metrics"]
        for g, w in zip(got, want, strict=True):
            assert g["iteration"] == w["iteration"] and g["lr"] == w["lr"]
            for k in ("train_loss", "test_loss"):
                assert g[k] == pytest.approx(w[k], rel=1e-3), (c.run_name, k)
            for k in ("train_acc", "test_acc"):   # a flipped argmax moves accuracy by 1/n
                assert abs(g[k] - w[k]) <= 2 / 40 + 1e-9, (c.run_name, k)


def test_interrupted_pack_resumes_exactly(packed_run, fake_cifar, tmp_path, monkeypatch):
    cfgs, ref_paths = packed_run
    cfgs = [replace(c, out_dir=str(tmp_path)) for c in cfgs]
    real, calls = packing.evaluate_pack, {"n": 0}

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:                                   # during epoch 2
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(packing, "evaluate_pack", flaky)
    with pytest.raises(KeyboardInterrupt):
        train_many(cfgs, pack=True)
    assert runs.load_run(tmp_path / "p" / "plain8")["status"] == "interrupted"
    monkeypatch.undo()
    paths = train_many(cfgs, pack=True)
    for p, ref in zip(paths, ref_paths):
        run = runs.load_run(p)
        assert run["status"] == "finished" and [r["epoch"] for r in run["resumed"]] == [1]
        assert math_fields(run["metrics"]) == math_fields(runs.load_run(ref)["metrics"])


def test_a_packed_member_resumes_alone(fake_cifar, tmp_path, monkeypatch):
    cfgs = pack_cfgs(fake_cifar, tmp_path)[:2]
    real, calls = packing.evaluate_pack, {"n": 0}

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(packing, "evaluate_pack", flaky)
    with pytest.raises(KeyboardInterrupt):
        train_many(cfgs, pack=True)
    monkeypatch.undo()
    run = runs.load_run(train(cfgs[1]))                       # the single model takes over
    assert run["status"] == "finished" and [r["epoch"] for r in run["metrics"]] == [1, 2]
