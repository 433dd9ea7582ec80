"""End to end: ``resnet-nb reproduce`` with the smoke preset on the synthetic fixture, two
models: an interrupted run resumes, a finished run is skipped, a failing run is reported
with its notebook and cell without stopping the others; bad input fails before any run.

The reproduction itself (reproduce_e2e.py) runs once per session in the
``local_reproduction`` fixture (conftest.py), which test_slurm.py compares with too."""
import json
import subprocess

import pytest
from reproduce_e2e import REPO, env, reproduce_cmd


@pytest.mark.slow
def test_reproduce_interrupt_resume_skip_and_failure(local_reproduction):
    e2e = local_reproduction
    base = e2e.base
    # 1. plain20 and resnet20, Ctrl-C once resnet20 has a checkpoint of epoch 1
    out = e2e.interrupted_out
    assert e2e.interrupted_rc == 130, out
    assert "[plain20] plain20 epoch 4/4" in out          # progress: which run, which epoch
    assert "rerun with --run-id e2e" in out
    first = e2e.after_interrupt["resnet20"]["metrics"]
    assert e2e.after_interrupt["resnet20"]["status"] == "interrupted"
    assert 1 <= len(first) < 4
    assert e2e.after_interrupt["plain20"]["status"] == "finished"
    assert e2e.after_interrupt["plain20"]["notebook"]

    # 2. rerun with plain26 (unreadable last.pth): plain20 skipped, plain26 fails (reported),
    # resnet20 resumes, then theory + analysis
    res = e2e.rerun
    out = res.stdout + res.stderr
    assert res.returncode == 1, out
    assert "[plain20] skipped (finished)" in out
    assert (base / "plain20" / "metrics.json").stat().st_mtime == e2e.after_interrupt["plain20"]["metrics_mtime"]
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

    figs = e2e.root / "figs" / "e2e"
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
    # (it writes nothing: the session's other users of the reproduction see it unchanged)
    res = subprocess.run([*reproduce_cmd(e2e.root)[:4], "--preset", "seed", *reproduce_cmd(e2e.root)[6:]],
                         cwd=REPO, env=env(e2e.root), capture_output=True, text=True, timeout=120)
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
    assert main(["reproduce", "--parallel", "-1"]) == 2
    assert "--parallel must be >= 1, or 0 for auto" in capsys.readouterr().err
