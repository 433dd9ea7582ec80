"""Run dirs written by earlier versions keep loading (state_dict keys and run files are a
contract: published runs are committed and must stay readable).

``tests/fixtures/run-v0/{plain20,resnet20}`` was written by the code of commit 1abe3aa (before
config.json had a ``format_version``): a 2-epoch synthetic run interrupted in epoch 2, so
last.pth holds epoch 1. To keep the files small every tensor of the checkpoints is stored
as a stride-0 view of its first element: keys, nesting, dtypes and shapes are real, values
are not (the RNG states are real). Its crops and flips were drawn per batch: it reads, but
resumes only when marked as today's augmentation stream (format version 3).
"""
import shutil
from pathlib import Path

import pytest
import torch

from resnet_nb.data.augment import AUGMENT_SCHEME
from resnet_nb.models.resnet import build_model
from resnet_nb.runs import rundir
from resnet_nb.training.config import config_from_dict
from resnet_nb.training.run_writer import inspect_run
from resnet_nb.training.train import train

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "run-v0"
MODELS = ("plain20", "resnet20")
LAST_KEYS = {"model", "optimizer", "scheduler", "rng", "epoch", "iteration", "best_acc", "best_epoch",
             "metrics", "config", "device_type", "dataset_fingerprint", "normalization"}
BEST_KEYS = {"model", "config", "epoch", "iteration", "test_acc", "normalization"}


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.mark.parametrize("name", MODELS)
def test_v0_checkpoints_load_into_todays_model(name):
    best, last = load(FIXTURE / name / "best.pth"), load(FIXTURE / name / "last.pth")
    assert set(best) == BEST_KEYS and set(last) == LAST_KEYS
    for ckpt in (best, last):
        model = build_model(ckpt["config"]["model"], ckpt["config"]["shortcut"])
        model.load_state_dict(ckpt["model"], strict=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    opt.load_state_dict(last["optimizer"])
    assert len(opt.state) == len(list(model.parameters()))
    assert config_from_dict(last["config"]).model == name


@pytest.mark.parametrize("name", MODELS)
def test_v0_run_dir_reads(name):
    run = rundir.load_run(FIXTURE / name)
    assert "format_version" not in rundir.read_json(FIXTURE / name / "config.json")
    assert run["format_version"] == 0           # an old run dir reads as version 0
    assert run["config"]["model"] == name and run["status"] == "interrupted"
    assert [r["epoch"] for r in run["metrics"]] == [1]


def _materialise(src: Path, dst: Path, augment: str | None = None) -> None:
    """Copy a fixture run dir with its stride-0 tensors made real (contiguous) again;
    ``augment``: mark last.pth as written in that augmentation stream (rng["augment"])."""
    dst.mkdir(parents=True)
    for p in src.iterdir():
        if p.suffix == ".pth":
            ckpt = _dense(load(p))
            if augment is not None and p.name == "last.pth":
                ckpt["rng"]["augment"] = augment
            torch.save(ckpt, dst / p.name)
        else:
            shutil.copy(p, dst / p.name)


def _dense(o):
    if torch.is_tensor(o):
        return o.contiguous().clone()
    if isinstance(o, dict):
        return {k: _dense(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return type(o)(_dense(v) for v in o)
    return o


def _v0_config(tmp_path, data_root):
    stored = load(FIXTURE / "resnet20" / "last.pth")["config"]
    return config_from_dict({**stored, "out_dir": str(tmp_path), "data_root": str(data_root)})


@pytest.mark.parametrize("augment", [None, "batch"])
def test_a_run_of_another_augmentation_stream_is_refused_and_kept(tmp_path, augment):
    """A v0 run (crops and flips drawn per batch, no rng["augment"]) or one of an unknown
    stream reads, but does not resume: one line says why and what to do; nothing is deleted."""
    run_dir = tmp_path / "v0" / "resnet20"
    _materialise(FIXTURE / "resnet20", run_dir, augment)
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    with pytest.raises(ValueError) as err:
        inspect_run(_v0_config(tmp_path, tmp_path / "no-data"), "cpu", restart=False)
    msg = str(err.value)
    assert "\n" not in msg and str(run_dir / "last.pth") in msg and "--restart" in msg
    assert ("per batch" if augment is None else "'batch'") in msg and "once per epoch ('epoch')" in msg
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before
    assert rundir.load_run(run_dir)["metrics"][0]["epoch"] == 1          # it still reads
    assert inspect_run(_v0_config(tmp_path, tmp_path), "cpu", restart=True).ckpt is None


@pytest.mark.slow
def test_v0_run_resumes_and_finishes(fake_cifar, tmp_path, one_thread):
    """A v0 checkpoint's files (model, optimiser, RNG states) still resume with today's code
    once it is in today's augmentation stream (a real v0 last.pth is refused, test above)."""
    _materialise(FIXTURE / "resnet20", tmp_path / "v0" / "resnet20", augment=AUGMENT_SCHEME)
    stored = load(FIXTURE / "resnet20" / "last.pth")["config"]
    cfg = config_from_dict({**stored, "out_dir": str(tmp_path), "data_root": str(fake_cifar)})
    run_dir = train(cfg)
    run = rundir.load_run(run_dir)
    assert run["status"] == "finished"
    assert [r["epoch"] for r in run["metrics"]] == [1, 2]
    assert run["metrics"][0] == rundir.read_json(FIXTURE / "resnet20" / "metrics.json")[0]
    assert run["resumed"] and run["resumed"][-1]["epoch"] == 1
    model = build_model("resnet20")
    model.load_state_dict(load(run_dir / "last.pth")["model"], strict=True)
