"""End-to-end training runs on the synthetic fixture (tiny subsets, CPU, one thread).

Covers: determinism, the run-directory contract (metrics schema, config.json, best.pth
selection), exact resume after an exception, Ctrl-C and a real SIGKILL, NaN handling,
refusal of a mismatched config, an unwritable out_dir, and a smoke run that learns.
"""
import functools
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from resnet_nb.models.resnet import build_model, count_parameters
from resnet_nb.runs import rundir
from resnet_nb.training import loop
from resnet_nb.training.batches import evaluate
from resnet_nb.training.config import config_from_dict, make_config
from resnet_nb.training.prepare import prepare_data
from resnet_nb.training.step import TrainStep
from resnet_nb.training.train import TrainingDiverged, train, train_many

pytestmark = pytest.mark.slow
TIMING = ("time", "elapsed")


@pytest.fixture(autouse=True)
def one_thread():
    """Single-threaded torch: fair to the other tests and bitwise comparable to a
    subprocess started with OMP_NUM_THREADS=1."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny(fake_cifar, out_dir, **kw):
    """ResNet-8 on 128 synthetic images, batch 32, lr 0.1: 4 iterations per epoch, 3 epochs."""
    base = dict(model="resnet8", dataset="synthetic", data_root=str(fake_cifar), epochs=3, lr=0.1,
                batch_size=32, train_subset=128, test_subset=50, milestones=(2,), device="cpu",
                out_dir=str(out_dir), run_id="t")
    return make_config("smoke", **{**base, **kw})


def math_fields(metrics):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in metrics]


def weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def inject(monkeypatch, at_call, kind):
    """Make the ``at_call``-th training step (``TrainStep``, the one step of every run) raise
    ``kind`` or return a NaN loss."""
    real = TrainStep.__call__
    calls = {"n": 0}

    def step(self, x, y):
        calls["n"] += 1
        if calls["n"] == at_call:
            if kind == "nan":
                loss, correct = real(self, x, y)
                return loss * float("nan"), correct
            raise kind("injected")
        return real(self, x, y)
    monkeypatch.setattr(TrainStep, "__call__", step)


@pytest.fixture(scope="module")
def reference(fake_cifar, tmp_path_factory):
    """One uninterrupted tiny run, shared by the resume tests."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("ref")
    return train(tiny(fake_cifar, out))


def test_determinism_and_train_many_share_a_run_id(fake_cifar, tmp_path, reference):
    a, b = train_many([tiny(fake_cifar, tmp_path, run_id="", run_name=n) for n in ("a", "b")])
    assert a.parent == b.parent and a.parent.name.startswith("repro-")
    ma, mb = rundir.load_run(a)["metrics"], rundir.load_run(b)["metrics"]
    assert math_fields(ma) == math_fields(mb) == math_fields(rundir.load_run(reference)["metrics"])
    assert same_weights(weights(a / "last.pth"), weights(b / "last.pth"))
    other = train(tiny(fake_cifar, tmp_path, seed=1, epochs=1))  # another seed differs from epoch 1 on
    assert math_fields(rundir.load_run(other)["metrics"]) != math_fields(ma[:1])


def test_run_directory_contract(reference, fake_cifar):
    run = rundir.load_run(reference)
    assert run["status"] == "finished" and run["end_time"] and run["start_time"]
    assert sorted(p.name for p in reference.iterdir()) == ["best.pth", "config.json", "last.pth",
                                                           "metrics.json"]   # no .lock, no .tmp
    assert rundir.effective_status(run) == "finished"
    assert run["preset"] == "smoke" and run["config"]["model"] == "resnet8"
    assert run["config"]["run_id"] == "t" and run["config"]["run_name"] == "resnet8"
    assert run["dataset"]["provenance"] == "synthetic" and run["dataset"]["canonical"] is False
    assert len(run["dataset"]["fingerprint"]) == 64 and run["dataset"]["n_train_used"] == 128
    for key in ("python", "torch", "torchvision", "cuda", "cudnn", "device_name", "cpu_model",
                "ram_gb", "os", "git_commit"):
        assert key in run["environment"]
    assert run["params"] == count_parameters(build_model("resnet8"))
    assert run["iters_per_epoch"] == 4 and run["epochs_planned"] == 3

    m = run["metrics"]
    assert [r["epoch"] for r in m] == [1, 2, 3] and [r["iteration"] for r in m] == [4, 8, 12]
    assert [r["lr"] for r in m] == pytest.approx([0.1, 0.1, 0.01])  # milestone 2: epoch index 2
    for r in m:
        assert set(r) == {"epoch", "iteration", "train_loss", "train_acc", "test_loss", "test_acc",
                          "lr", "time", "elapsed"}
        assert 0 <= r["train_acc"] <= 1 and 0 <= r["test_acc"] <= 1 and r["train_loss"] > 0
        assert r["time"] > 0
    assert m[-1]["elapsed"] == pytest.approx(sum(r["time"] for r in m))

    # best.pth: the first epoch with the highest test accuracy; its weights reproduce it
    accs = [r["test_acc"] for r in m]
    best = torch.load(reference / "best.pth", weights_only=True)
    assert best["epoch"] == accs.index(max(accs)) + 1 and best["test_acc"] == max(accs)
    assert config_from_dict(best["config"]) == config_from_dict(run["config"])
    assert run["best_epoch"] == best["epoch"]
    cfg = tiny(fake_cifar, reference.parent.parent)
    data = prepare_data(cfg)
    model = build_model("resnet8")
    model.load_state_dict(best["model"])
    assert evaluate(model, data.test_x, data.test_y, data)[1] == max(accs)
    last = torch.load(reference / "last.pth", weights_only=True)
    assert {"model", "optimizer", "rng", "epoch", "iteration", "config", "scheduler"} <= set(last)
    assert (last["epoch"], last["iteration"]) == (3, 12)


def test_val_split_pixel_norm_eval_every_and_max_iters(fake_cifar, tmp_path):
    cfg = tiny(fake_cifar, tmp_path, val_split=100, normalization="pixel", eval_every=2,
               schedule="iterations", milestones=(5,), max_iters=10)
    run = rundir.load_run(train(cfg))
    m = run["metrics"]
    assert [r["iteration"] for r in m] == [4, 8, 10]          # the last epoch stops at max_iters
    assert [r["lr"] for r in m] == pytest.approx([0.1, 0.01, 0.01])
    assert m[0]["test_acc"] is None and m[0]["val_acc"] is None  # eval every 2 epochs + the last
    assert all(0 <= r["val_acc"] <= 1 and r["test_acc"] is not None for r in m[1:])
    assert run["dataset"]["n_val"] == 100 and run["dataset"]["normalization"]["kind"] == "pixel"
    assert torch.load(Path(run["path"]) / "best.pth", weights_only=True)["epoch"] in (2, 3)


@pytest.mark.parametrize("kind,status", [(RuntimeError, "failed"), (KeyboardInterrupt, "interrupted")])
def test_resume_after_exception_is_exact(fake_cifar, tmp_path, reference, monkeypatch, kind, status):
    cfg = tiny(fake_cifar, tmp_path)
    inject(monkeypatch, at_call=7, kind=kind)                  # epoch 2, iteration 7
    with pytest.raises(kind, match="injected"):
        train(cfg)
    run_dir = rundir.run_dir_of(tmp_path, "t", "resnet8")
    run = rundir.load_run(run_dir)
    assert run["status"] == status and len(run["metrics"]) == 1
    assert not (run_dir / ".lock").exists() and rundir.effective_status(run) == status
    assert torch.load(run_dir / "last.pth", weights_only=True)["epoch"] == 1
    monkeypatch.undo()
    assert train(cfg) == run_dir
    run = rundir.load_run(run_dir)
    assert run["status"] == "finished" and [r["epoch"] for r in run["resumed"]] == [1]
    assert math_fields(run["metrics"]) == math_fields(rundir.load_run(reference)["metrics"])
    assert same_weights(weights(run_dir / "last.pth"), weights(reference / "last.pth"))
    assert same_weights(weights(run_dir / "best.pth"), weights(reference / "best.pth"))


def test_resume_after_sigkill_is_exact(fake_cifar, tmp_path, capsys):
    """A real ``kill -9`` of the CLI mid-run; the same command then finishes the run (given to
    the CLI's ``main`` in this process: the interpreter start is the first run's business)."""
    kw = dict(model="resnet8", epochs=5, batch_size=50, train_subset=150, test_subset=50,
              milestones=(3,), device="cpu")
    out = tmp_path / "killed"
    argv = [sys.executable, "-m", "resnet_nb.cli", "train", "--preset", "smoke", "--dataset",
            "synthetic", "--data-root", str(fake_cifar), "--out-dir", str(out)]
    for k, v in kw.items():
        argv += ["--" + k.replace("_", "-"), ",".join(map(str, v)) if isinstance(v, tuple) else str(v)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    metrics = None
    while time.time() < deadline and proc.poll() is None:
        found = list(out.glob("*/resnet8/metrics.json"))
        if found:
            try:
                if len(json.loads(found[0].read_text())) >= 2:
                    metrics = found[0]
                    break
            except ValueError:
                pass
        time.sleep(0.02)
    assert metrics is not None, proc.communicate()[0]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = rundir.load_run(metrics.parent)
    assert killed["status"] == "running" and 2 <= len(killed["metrics"]) < 5   # really cut short
    assert (metrics.parent / ".lock").exists()            # kill -9 leaves it, but nobody holds it:
    assert rundir.effective_status(killed) == "interrupted"  # the report does not say "running"
    assert killed["pid"] == proc.pid

    from resnet_nb.cli import main
    assert main(argv[3:]) == 0, capsys.readouterr().err          # argv[3:]: after "python -m resnet_nb.cli"
    assert "resuming after epoch" in capsys.readouterr().out
    assert [p.parent for p in out.glob("*/resnet8/metrics.json")] == [metrics.parent]  # same run id
    resumed = rundir.load_run(metrics.parent)
    assert resumed["status"] == "finished" and len(resumed["metrics"]) == 5

    ref = train(make_config("smoke", dataset="synthetic", data_root=str(fake_cifar),
                            out_dir=str(tmp_path / "ref"), run_id="ref", **kw))
    assert math_fields(resumed["metrics"]) == math_fields(rundir.load_run(ref)["metrics"])
    assert same_weights(weights(metrics.parent / "last.pth"), weights(ref / "last.pth"))


def test_nan_loss_stops_and_keeps_last_good_state(fake_cifar, tmp_path, monkeypatch, reference):
    inject(monkeypatch, at_call=6, kind="nan")                 # epoch 2, iteration 6
    with pytest.raises(TrainingDiverged, match=r"nan at epoch 2, iteration 6") as e:
        train(tiny(fake_cifar, tmp_path))
    assert "\n" not in str(e.value)
    run_dir = rundir.run_dir_of(tmp_path, "t", "resnet8")
    run = rundir.load_run(run_dir)
    assert run["status"] == "failed" and "epoch 2, iteration 6" in run["error"]
    assert math_fields(run["metrics"]) == math_fields(rundir.load_run(reference)["metrics"][:1])
    assert torch.load(run_dir / "last.pth", weights_only=True)["epoch"] == 1
    assert (run_dir / "best.pth").is_file()


def test_mismatched_config_is_refused_listing_fields(fake_cifar, tmp_path, monkeypatch):
    cfg = tiny(fake_cifar, tmp_path, epochs=1)
    run_dir = train(cfg)
    with pytest.raises(ValueError, match=r"another config: epochs \(stored 1, now 2\), "
                                         r"lr \(stored 0.1, now 0.05\);.*--restart") as e:
        train(replace(cfg, epochs=2, lr=0.05))
    assert "\n" not in str(e.value)

    def no_training(*a, **k):
        raise AssertionError("must not load data or train")
    monkeypatch.setattr(loop, "prepare_data", no_training)
    # a finished run with the same math (device may differ) is not trained again
    assert train(replace(cfg, device="auto")) == run_dir
    monkeypatch.undo()
    train(replace(cfg, epochs=2, lr=0.05), restart=True)
    run = rundir.load_run(run_dir)
    assert run["config"]["lr"] == 0.05 and len(run["metrics"]) == 2


def test_unwritable_out_dir_fails_before_training(fake_cifar, tmp_path, monkeypatch):
    def no_training(*a, **k):
        raise AssertionError("must not load data or train")
    monkeypatch.setattr(loop, "prepare_data", no_training)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="is a file; choose another --out-dir"):
        train(tiny(fake_cifar, blocker / "exp"))
    if os.geteuid() != 0:  # root may write anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        with pytest.raises(ValueError, match="not writable; choose a writable --out-dir"):
            train(tiny(fake_cifar, ro / "exp"))


def test_bad_sizes_for_the_data_fail_before_training(fake_cifar, tmp_path):
    with pytest.raises(ValueError, match="train_subset=9999 exceeds the 500 training images"):
        train(tiny(fake_cifar, tmp_path, train_subset=9999))
    with pytest.raises(ValueError, match="val_split=500 leaves no training images"):
        train(tiny(fake_cifar, tmp_path, val_split=500, train_subset=0))
    assert not list(tmp_path.glob("*/*/last.pth"))


def test_smoke_run_learns_on_synthetic_fixture(fake_cifar, tmp_path, capsys):
    from resnet_nb.cli import main
    argv = ["train", "--preset", "smoke", "--model", "resnet20", "--dataset", "synthetic",
            "--data-root", str(fake_cifar), "--train-subset", "500", "--test-subset", "100",
            "--out-dir", str(tmp_path), "--device", "cpu"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    from resnet_nb.training.config import PRESETS
    epochs = PRESETS["smoke"]["epochs"]
    assert len(re.findall(rf"^resnet20 epoch [1-{epochs}]/{epochs} ", out, flags=re.M)) == epochs
    assert "synthetic data" in out and "run dir:" in out
    (run_dir,) = tmp_path.glob("repro-*/resnet20")
    run = rundir.load_run(run_dir)
    assert run["status"] == "finished" and run["dataset"]["provenance"] == "synthetic"
    m = run["metrics"]
    assert m[-1]["train_loss"] < 0.5 * m[0]["train_loss"] and m[-1]["train_acc"] > m[0]["train_acc"]


def test_progress_bar_on_a_terminal_only(fake_cifar, tmp_path, monkeypatch, capsys):
    import io

    class Terminal(io.StringIO):
        def isatty(self):
            return True
    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    # tqdm redraws at most every `mininterval` (0.1 s): on a fast machine the four tiny iterations
    # fit inside it and only "0/4" would be drawn. Redraw on every update so the bar's content is
    # the same on any machine; the bar itself (desc, postfix, terminal-only) is the product's.
    import tqdm.auto
    monkeypatch.setattr(tqdm.auto, "tqdm", functools.partial(tqdm.auto.tqdm, mininterval=0, miniters=1))
    train(tiny(fake_cifar, tmp_path, epochs=1, run_id="tty"))
    bar = term.getvalue()
    assert "resnet8 1/1" in bar and "4/4" in bar and "loss=" in bar and "acc=" in bar and "lr=0.1" in bar
    assert "resnet8 epoch 1/1" in capsys.readouterr().out          # the summary line: stdout
    monkeypatch.undo()
    train(tiny(fake_cifar, tmp_path, epochs=1, run_id="pipe"))     # not a terminal: no bar
    assert "it/s" not in capsys.readouterr().err
