"""Packed training through ``train_many(pack=True)`` on the CPU: every member is its own run.

Each member writes the run-directory contract, its checkpoints load into the single model,
its numbers match its standalone ``train`` run (up to the rounding of grouped vs dense
convolutions), an interrupted pack resumes exactly, and a packed member resumes alone.
``pack_mode="branches"`` (a network per member, any depths) equals the standalone runs
exactly, grouped within rounding, resumes a grouped pack, and keeps the NaN rule.
"""
import shutil
from dataclasses import replace

import pytest
import torch

from resnet_nb.models.resnet import build_model
from resnet_nb.runs import rundir
from resnet_nb.training import batches, loop
from resnet_nb.training.config import make_config
from resnet_nb.training.step import TrainStep
from resnet_nb.training.train import train, train_many

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


@pytest.fixture(scope="module")
def alone_runs(fake_cifar, tmp_path_factory):
    """Every config of ``pack_cfgs`` (and a resnet14) trained on its own: {run name: run dir}."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("alone")
    cfgs = pack_cfgs(fake_cifar, out)
    cfgs.append(replace(cfgs[1], model="resnet14", run_name="resnet14"))
    return {name(c): train(c) for c in cfgs}


def name(c):
    return c.run_name or c.model


def same_state(a, b):
    """Two saved states (nested dicts of tensors and numbers) are bitwise equal."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_state(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same_state(x, y) for x, y in zip(a, b))
    return torch.equal(a, b) if torch.is_tensor(a) else a == b


def test_plan_packs_groups_by_depth_and_recipe(fake_cifar, tmp_path):
    cfgs = pack_cfgs(fake_cifar, tmp_path)
    others = [replace(cfgs[0], model="resnet20", run_name="resnet20"),
              replace(cfgs[0], lr=0.05, run_name="plain8-lr"),
              replace(cfgs[1], shortcut="B", run_name="resnet8-B")]
    assert loop.plan_packs(cfgs + others, pack=True) == [[0, 1, 2], [3], [4], [5]]
    assert loop.plan_packs(cfgs, pack=None) == [[0], [1], [2]]     # CPU: packing only on request
    assert loop.plan_packs(cfgs, pack=False) == [[0], [1], [2]]


def test_members_write_the_run_contract(packed_run):
    cfgs, paths = packed_run
    assert [p.name for p in paths] == ["plain8", "resnet8", "resnet8-seed1"]
    for c, p in zip(cfgs, paths):
        run = rundir.load_run(p)
        assert run["status"] == "finished"
        assert [r["epoch"] for r in run["metrics"]] == [1, 2]
        assert set(run["metrics"][0]) >= {"epoch", "iteration", "train_loss", "train_acc", "test_loss",
                                          "test_acc", "lr", "time", "elapsed"}
        meta = rundir.read_json(p / "config.json")
        assert meta["packed_with"] == ["plain8", "resnet8", "resnet8-seed1"]
        assert not (p / ".lock").exists() and meta["host"] and meta["pid"]
        for f in ("best.pth", "last.pth"):
            ck = torch.load(p / f, map_location="cpu", weights_only=True)
            build_model(c.model).load_state_dict(ck["model"], strict=True)
            assert ck["config"]["seed"] == c.seed
        last = torch.load(p / "last.pth", map_location="cpu", weights_only=True)
        opt = torch.optim.SGD(build_model(c.model).parameters(), lr=0.1, momentum=0.9)
        opt.load_state_dict(last["optimizer"])


def test_members_match_their_standalone_runs(packed_run, alone_runs):
    cfgs, paths = packed_run
    for c, p in zip(cfgs, paths):
        got, want = rundir.load_run(p)["metrics"], rundir.load_run(alone_runs[name(c)])["metrics"]
        for g, w in zip(got, want, strict=True):
            assert g["iteration"] == w["iteration"] and g["lr"] == w["lr"]
            for k in ("train_loss", "test_loss"):
                assert g[k] == pytest.approx(w[k], rel=1e-3), (name(c), k)
            for k in ("train_acc", "test_acc"):   # a flipped argmax moves accuracy by 1/n
                assert abs(g[k] - w[k]) <= 2 / 40 + 1e-9, (name(c), k)


def interrupt_in_epoch_2(cfgs, monkeypatch):
    """Train ``cfgs`` as a pack and Ctrl-C it during the second epoch's evaluation."""
    real, calls = batches.evaluate_pack, {"n": 0}

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:                                   # during epoch 2
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(loop, "evaluate_pack", flaky)
    with pytest.raises(KeyboardInterrupt):
        train_many(cfgs, pack=True)


def test_interrupted_pack_resumes_exactly(packed_run, fake_cifar, tmp_path, monkeypatch):
    cfgs, ref_paths = packed_run
    cfgs = [replace(c, out_dir=str(tmp_path)) for c in cfgs]
    interrupt_in_epoch_2(cfgs, monkeypatch)
    assert rundir.load_run(tmp_path / "p" / "plain8")["status"] == "interrupted"
    monkeypatch.undo()
    paths = train_many(cfgs, pack=True)
    for p, ref in zip(paths, ref_paths):
        run = rundir.load_run(p)
        assert run["status"] == "finished" and [r["epoch"] for r in run["resumed"]] == [1]
        assert math_fields(run["metrics"]) == math_fields(rundir.load_run(ref)["metrics"])


def test_a_packed_member_resumes_alone(fake_cifar, tmp_path, monkeypatch):
    cfgs = pack_cfgs(fake_cifar, tmp_path)[:2]
    real, calls = batches.evaluate_pack, {"n": 0}

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(loop, "evaluate_pack", flaky)
    with pytest.raises(KeyboardInterrupt):
        train_many(cfgs, pack=True)
    monkeypatch.undo()
    run = rundir.load_run(train(cfgs[1]))                       # the single model takes over
    assert run["status"] == "finished" and [r["epoch"] for r in run["metrics"]] == [1, 2]


# --------------------------------------------------------------------------- pack_mode="branches"

def test_branches_equal_standalone_runs_exactly_and_grouped_closely(packed_run, alone_runs, fake_cifar, tmp_path):
    """A branches pack of plain8, resnet8, resnet8 seed 1 and a resnet14 (another depth: one
    pack all the same): every member's metrics, best.pth and last.pth (model, optimiser, data
    generator) are bitwise those of its standalone run, and close to its grouped run."""
    cfgs = pack_cfgs(fake_cifar, tmp_path, pack_mode="branches")
    cfgs.append(replace(cfgs[1], model="resnet14", run_name="resnet14"))
    assert loop.plan_packs(cfgs, pack=True) == [[0, 1, 2, 3]]
    paths = train_many(cfgs, pack=True)
    for c, p in zip(cfgs, paths):
        run, alone = rundir.load_run(p), rundir.load_run(alone_runs[name(c)])
        assert run["status"] == "finished" and run["packed_with"] == [name(c) for c in cfgs]
        assert run["params"] == alone["params"] and run["config"]["pack_mode"] == "branches"
        assert math_fields(run["metrics"]) == math_fields(alone["metrics"]), name(c)
        for f in ("best.pth", "last.pth"):
            got, want = (torch.load(d / f, map_location="cpu", weights_only=True) for d in (p, alone_runs[name(c)]))
            keys = ("model", "optimizer") if f == "last.pth" else ("model",)
            assert all(same_state(got[k], want[k]) for k in keys), (name(c), f)
        assert torch.equal(torch.load(p / "last.pth", weights_only=True)["rng"]["data"],
                           torch.load(alone_runs[name(c)] / "last.pth", weights_only=True)["rng"]["data"])
    for c, p, grouped in zip(cfgs, paths, packed_run[1]):      # the depth-8 members vs the grouped pack
        for g, w in zip(rundir.load_run(p)["metrics"], rundir.load_run(grouped)["metrics"], strict=True):
            for k in ("train_loss", "test_loss"):
                assert g[k] == pytest.approx(w[k], rel=1e-3), (name(c), k)


def test_a_grouped_pack_resumes_in_branches_mode(packed_run, alone_runs, fake_cifar, tmp_path, monkeypatch):
    """Interrupted grouped, resumed as branches: the same run dirs finish, each member's second
    epoch is bitwise what the member resumed alone computes, and close to the grouped run."""
    cfgs = [replace(c, out_dir=str(tmp_path / "a")) for c in packed_run[0][:2]]
    interrupt_in_epoch_2(cfgs, monkeypatch)
    monkeypatch.undo()
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    paths = train_many([replace(c, pack_mode="branches") for c in cfgs], pack=True)
    for c, p, grouped in zip(cfgs, paths, packed_run[1]):
        alone = train(replace(c, out_dir=str(tmp_path / "b")))            # the same last.pth, resumed alone
        run = rundir.load_run(p)
        assert run["status"] == "finished" and [r["epoch"] for r in run["resumed"]] == [1]
        assert math_fields(run["metrics"]) == math_fields(rundir.load_run(alone)["metrics"]), name(c)
        assert same_state(torch.load(p / "last.pth", weights_only=True)["model"],
                          torch.load(alone / "last.pth", weights_only=True)["model"])
        want = rundir.load_run(grouped)["metrics"]                          # the grouped pack of three
        for g, w in zip(run["metrics"], want, strict=True):
            assert g["test_loss"] == pytest.approx(w["test_loss"], rel=1e-3)


def test_a_diverging_branch_fails_and_the_others_train_on(alone_runs, fake_cifar, tmp_path, monkeypatch):
    real = TrainStep.eager
    calls = {"n": 0}

    def nan_for_resnet8(self, x, y):
        loss, correct = real(self, x, y)
        if self.model.name == "resnet8":
            calls["n"] += 1
            if calls["n"] == 4:                               # epoch 2, iteration 4
                return loss * float("nan"), correct
        return loss, correct

    monkeypatch.setattr(TrainStep, "eager", nan_for_resnet8)
    cfgs = pack_cfgs(fake_cifar, tmp_path, pack_mode="branches")[:2]
    plain, resnet = train_many(cfgs, pack=True)
    bad = rundir.load_run(resnet)
    assert bad["status"] == "failed" and "nan at epoch 2, iteration 4" in bad["error"]
    assert "the rest of the pack trains on" in bad["error"] and [r["epoch"] for r in bad["metrics"]] == [1]
    good = rundir.load_run(plain)
    assert good["status"] == "finished"
    assert math_fields(good["metrics"]) == math_fields(rundir.load_run(alone_runs["plain8"])["metrics"])


def test_pack_mode_flags_and_reproduce_units(fake_cifar, tmp_path):
    """--pack-mode on train and reproduce; reproduce puts branches configs of every depth in one unit."""
    import argparse

    from resnet_nb.pipeline import reproduce
    from resnet_nb.training import train as train_cli
    for add in (train_cli.add_arguments, reproduce.add_arguments):
        p = argparse.ArgumentParser()
        add(p)
        assert p.parse_args(["--pack-mode", "branches"]).pack_mode == "branches"
    cfgs = pack_cfgs(fake_cifar, tmp_path, pack_mode="branches") + [
        replace(pack_cfgs(fake_cifar, tmp_path, pack_mode="branches")[1], model="resnet14", run_name="resnet14")]
    assert [(u.name, len(u.cfgs)) for u in reproduce.plan_units(cfgs, pack_by_depth=True)] == [("depths8-14", 4)]
    grouped = [replace(c, pack_mode="grouped") for c in cfgs]
    assert [u.name for u in reproduce.plan_units(grouped, pack_by_depth=True)] == ["depth8", "depth14"]
