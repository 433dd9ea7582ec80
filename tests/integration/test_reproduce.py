"""End to end: ``resnet-nb reproduce`` with the smoke preset on the synthetic fixture, two
models: an interrupted run resumes, a finished run is skipped, a failing run is reported
with its notebook and cell without stopping the others; bad input fails before any run."""
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest

from resnet_nb.config import make_config
from resnet_nb.runs import atomic_write_json

REPO = Path(__file__).resolve().parents[2]
# smaller than the smoke preset, but 32 SGD steps per model: enough for each net's loss to fall
SMALL = ["--set", "epochs=4", "--set", "milestones=3", "--set", "train_subset=256", "--set", "test_subset=100"]
THEORY = ["--theory-depths", "20", "--theory-seeds", "0", "--theory-batch", "8"]


def reproduce_cmd(tmp_path, *extra):
    return [sys.executable, "-m", "resnet_nb.cli", "reproduce", "--preset", "smoke",
            "--dataset", "synthetic", "--run-id", "e2e", "--out-dir", str(tmp_path / "exp"),
            "--figures-root", str(tmp_path / "figs"), *SMALL, *extra]


def env():
    return dict(os.environ, OMP_NUM_THREADS="1")


@pytest.mark.slow
def test_reproduce_interrupt_resume_skip_and_failure(tmp_path):
    base = tmp_path / "exp" / "e2e"
    # 1. run plain20 and resnet20; Ctrl-C once resnet20 has a checkpoint of epoch 1
    proc = subprocess.Popen(reproduce_cmd(tmp_path, "--models", "plain20,resnet20", "--skip-theory"),
                            cwd=REPO, env=env(), start_new_session=True, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    last = base / "resnet20" / "last.pth"
    deadline = time.time() + 150
    while time.time() < deadline and proc.poll() is None and not last.is_file():
        time.sleep(0.05)
    assert proc.poll() is None, "reproduce ended before it could be interrupted:\n" + proc.communicate()[0]
    os.killpg(proc.pid, signal.SIGINT)
    out = proc.communicate(timeout=90)[0]
    assert proc.returncode == 130, out
    assert "[plain20] plain20 epoch 4/4" in out          # progress: which run, which epoch
    assert "rerun with --run-id e2e" in out
    first = json.loads((base / "resnet20" / "metrics.json").read_text())
    assert json.loads((base / "resnet20" / "config.json").read_text())["status"] == "interrupted"
    assert 1 <= len(first) < 4
    assert json.loads((base / "plain20" / "config.json").read_text())["status"] == "finished"
    assert (base / "plain20" / "02_train.ipynb").is_file()

    # a third model whose run dir holds an unreadable checkpoint: its notebook fails
    cfg = make_config("smoke", model="plain26", epochs=4, milestones=(3,), train_subset=256, test_subset=100,
                      dataset="synthetic", out_dir=str(tmp_path / "exp"), run_id="e2e", run_name="plain26")
    (base / "plain26").mkdir()
    atomic_write_json(base / "plain26" / "config.json", {"config": asdict(cfg), "status": "interrupted"})
    (base / "plain26" / "last.pth").write_bytes(b"not a checkpoint")

    # 2. rerun: plain20 skipped, plain26 fails (reported), resnet20 resumes, then theory + analysis
    plain20_mtime = (base / "plain20" / "metrics.json").stat().st_mtime
    res = subprocess.run(reproduce_cmd(tmp_path, "--models", "plain20,plain26,resnet20", "--parallel", "2", *THEORY),
                         cwd=REPO, env=env(), capture_output=True, text=True, timeout=300)
    out = res.stdout + res.stderr
    assert res.returncode == 1, out
    assert "[plain20] skipped (finished)" in out
    assert (base / "plain20" / "metrics.json").stat().st_mtime == plain20_mtime
    assert "[resnet20] resnet20: resuming after epoch" in out
    fail = [ln for ln in res.stderr.splitlines() if ln.startswith("reproduce: plain26: FAILED")]
    assert fail and str(base / "plain26" / "02_train.ipynb") in fail[0]
    assert "cell " in fail[0] and "ValueError" in fail[0] and "cannot be read" in fail[0]
    assert "1 executed, 1 skipped, 1 failed" in out

    metrics = json.loads((base / "resnet20" / "metrics.json").read_text())
    assert [m["epoch"] for m in metrics] == [1, 2, 3, 4]
    assert metrics[0] == first[0]                          # resumed, not restarted
    for model in ("plain20", "resnet20"):                  # each net learns: its training loss falls
        m = json.loads((base / model / "metrics.json").read_text())
        assert m[-1]["train_loss"] < 0.95 * m[0]["train_loss"], (model, [r["train_loss"] for r in m])
    meta = json.loads((base / "resnet20" / "config.json").read_text())
    assert meta["status"] == "finished" and meta["resumed"]
    executed = json.loads((base / "resnet20" / "02_train.ipynb").read_text())
    injected = [c for c in executed["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert "run_id = \"e2e\"" in "".join(injected[0]["source"])
    for name in ("01_theory.ipynb", "03_analysis.ipynb"):
        assert (base / name).is_file()

    figs = tmp_path / "figs" / "e2e"
    summary = json.loads((figs / "summary.json").read_text())
    assert summary["run_id"] == "e2e" and summary["preset"] == "smoke"
    assert summary["dataset"]["provenance"] == "synthetic" and summary["dataset"]["canonical"] is False
    assert set(summary["models"]) == {"plain20", "plain26", "resnet20"}
    assert summary["models"]["resnet20"]["last_epoch"] == 4 and summary["models"]["resnet20"]["status"] == "finished"
    assert summary["models"]["plain26"]["best_test_acc"] is None
    for key in ("train_loss", "test_accuracy", "error_fig6", "theory_grad_norm", "theory_activation_std",
                "theory_input_grad"):
        assert (figs / summary["figures"][key]).stat().st_size > 5000

    # 3. the same run id with another preset: refused before anything runs, fields listed
    res = subprocess.run([*reproduce_cmd(tmp_path, "--models", "plain20")[:4], "--preset", "seed",
                          *reproduce_cmd(tmp_path)[6:]], cwd=REPO, env=env(), capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 2
    assert "already holds runs with other settings" in res.stderr
    assert "preset (stored 'smoke', now 'seed')" in res.stderr and "started" not in res.stdout


def test_no_data_no_network_is_reported_once_before_any_run(tmp_path, capsys):
    """conftest: an empty data dir and a closed download port."""
    from resnet_nb.cli import main

    rc = main(["reproduce", "--preset", "smoke", "--models", "plain20,resnet20", "--run-id", "x",
               "--out-dir", str(tmp_path / "exp"), "--figures-root", str(tmp_path / "figs")])
    captured = capsys.readouterr()
    assert rc == 2
    assert captured.err.count("CIFAR-10 is not available") == 1 and "could not be downloaded" in captured.err
    assert "started" not in captured.out and not (tmp_path / "exp" / "x").exists()


def test_bad_options_are_one_line_errors(capsys):
    from resnet_nb.cli import main

    assert main(["reproduce", "--models", "plain21"]) == 2
    assert "model 'plain21': depth must be 6n+2" in capsys.readouterr().err
    assert main(["reproduce", "--set", "epochz=3", "--dataset", "synthetic"]) == 2
    assert "unknown TrainConfig field 'epochz' (did you mean epochs?)" in capsys.readouterr().err
    assert main(["reproduce", "--parallel", "0"]) == 2
    assert "--parallel must be >= 1" in capsys.readouterr().err
