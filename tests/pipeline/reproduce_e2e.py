"""The end-to-end local reproduction that test_reproduce.py checks and test_slurm.py compares with.

``resnet-nb reproduce --preset smoke`` on the synthetic fixture with tiny overrides (SMALL),
in a subprocess, as a user runs it:

1. plain20 and resnet20 (``--skip-theory``), Ctrl-C (SIGINT to the process group) once
   resnet20 has the checkpoint of its first epoch: plain20 is finished, resnet20 interrupted;
2. a third model, plain26, gets a run dir whose last.pth cannot be read (its notebook fails),
   and the same command for plain20, plain26 and resnet20 (``--parallel 2``, with 01_theory):
   plain20 skipped, plain26 failed, resnet20 resumed, then 01_theory and 03_analysis.

``run_local_reproduction`` does it once per session (the ``local_reproduction`` fixture of
conftest.py) and records what each step printed and left behind; the tests assert on it.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from resnet_nb.runs.rundir import atomic_write_json
from resnet_nb.training.config import coerce_field, make_config

REPO = Path(__file__).resolve().parents[2]
RUN_ID = "e2e"
# smaller than the smoke preset, but 32 SGD steps per model: enough for each net's loss to fall
SMALL = ["--set", "epochs=4", "--set", "milestones=3", "--set", "train_subset=256", "--set", "test_subset=100"]
THEORY = ["--theory-depths", "20", "--theory-seeds", "0", "--theory-batch", "8"]
MODELS = "plain20,plain26,resnet20"   # plain26: a run dir whose last.pth cannot be read (code failure)


def reproduce_cmd(root: Path, *extra: str) -> list[str]:
    """``resnet-nb reproduce`` of the smoke preset on the synthetic data, run id e2e, with SMALL,
    writing runs to ``root/exp`` and figures to ``root/figs``; one execution at a time (the
    interrupt lands in the second run while the first has finished) unless ``extra`` says
    otherwise (``--parallel 2``: the last flag wins)."""
    return [sys.executable, "-m", "resnet_nb.cli", "reproduce", "--preset", "smoke",
            "--dataset", "synthetic", "--run-id", RUN_ID, "--out-dir", str(root / "exp"),
            "--figures-root", str(root / "figs"), *SMALL, "--parallel", "1", *extra]


def env(root: Path, base: dict | None = None) -> dict:
    """A subprocess environment like the tests' own (conftest.py): one thread, no real data
    (an empty data dir), no download (a closed port), the synthetic fixture under ``root``."""
    (root / "no-data").mkdir(parents=True, exist_ok=True)
    return dict(os.environ if base is None else base, OMP_NUM_THREADS="1",
                RESNET_NB_DATA=str(root / "no-data"), RESNET_NB_SYNTHETIC=str(root / "synthetic"),
                RESNET_NB_CIFAR_URL="http://127.0.0.1:9/cifar-10-python.tar.gz")


def small_config(root: Path, model: str, **kw):
    """The TrainConfig that reproduce_cmd's ``--set`` values give ``model``."""
    small = {k: coerce_field(k, v) for k, v in (item.split("=", 1) for item in SMALL[1::2])}
    return make_config("smoke", model=model, dataset="synthetic", **small, out_dir=str(root / "exp"),
                       run_id=RUN_ID, run_name=model, **kw)


def break_plain26(root: Path) -> None:
    """The failing unit: an interrupted plain26 run whose last.pth cannot be read."""
    d = root / "exp" / RUN_ID / "plain26"
    d.mkdir(parents=True)
    atomic_write_json(d / "config.json", {"config": asdict(small_config(root, "plain26")), "status": "interrupted"})
    (d / "last.pth").write_bytes(b"not a checkpoint")


@dataclass
class LocalReproduction:
    root: Path                 # runs in root/exp/e2e, figures in root/figs/e2e
    interrupted_rc: int        # step 1: exit status after the Ctrl-C
    interrupted_out: str       # step 1: stdout + stderr
    after_interrupt: dict      # step 1: per model what its run dir held right after it
    rerun: subprocess.CompletedProcess   # step 2

    @property
    def base(self) -> Path:
        return self.root / "exp" / RUN_ID


def run_local_reproduction(root: Path) -> LocalReproduction:
    base = root / "exp" / RUN_ID
    proc = subprocess.Popen(reproduce_cmd(root, "--models", "plain20,resnet20", "--skip-theory"),
                            cwd=REPO, env=env(root), start_new_session=True, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    last = base / "resnet20" / "last.pth"
    deadline = time.time() + 150
    while time.time() < deadline and proc.poll() is None and not last.is_file():
        time.sleep(0.05)
    assert proc.poll() is None, "reproduce ended before it could be interrupted:\n" + proc.communicate()[0]
    os.killpg(proc.pid, signal.SIGINT)
    out = proc.communicate(timeout=90)[0]
    after = {m: {"status": json.loads((base / m / "config.json").read_text())["status"],
                 "metrics": json.loads((base / m / "metrics.json").read_text()),
                 "metrics_mtime": (base / m / "metrics.json").stat().st_mtime,
                 "notebook": (base / m / "02_train.ipynb").is_file()}
             for m in ("plain20", "resnet20")}

    break_plain26(root)
    rerun = subprocess.run(reproduce_cmd(root, "--models", MODELS, "--parallel", "2", *THEORY),
                           cwd=REPO, env=env(root), capture_output=True, text=True, timeout=300)
    return LocalReproduction(root, proc.returncode, out, after, rerun)
