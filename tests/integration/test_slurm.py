"""``reproduce --executor slurm`` against a real single-node SLURM (slurm_cluster.py: munged,
slurmctld and slurmd started for this module, stopped by PID afterwards), not a mock.

The reproductions use test_reproduce's tiny smoke settings on the synthetic data, on CPU
(``--slurm-gpus-per-task 0``, one CPU per task, ``OMP_NUM_THREADS=1``), and are compared
with the local executor's run of the same settings. Where SLURM cannot start (packages
missing: ``make slurmdeps``; not root) the tests that need it skip with the reason.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from resnet_nb.config import coerce_field, make_config
from resnet_nb.runs import atomic_write_json

sys.path.insert(0, str(Path(__file__).resolve().parent))
from slurm_cluster import SlurmCluster, unavailable  # noqa: E402
from test_reproduce import REPO, SMALL  # noqa: E402  (the same tiny overrides)

MODELS = "plain20,plain26,resnet20"   # plain26: a run dir whose last.pth cannot be read (code failure)
SLURM = ["--executor", "slurm", "--slurm-gpus-per-task", "0", "--slurm-cpus-per-task", "1",
         "--slurm-time", "30", "--slurm-extra", "comment=resnet-nb-test"]

# Fields that legitimately differ between two executions of the same settings; everything
# else in the run dirs and summary.json must be equal.
EXCLUDED = {
    "config.json": {"start_time", "end_time",     # times
                    "resumed",                    # resume history (a preempted run resumed)
                    "executed_by.time",           # when each process started (how: papermill in both)
                    "pid", "host",                # the process that trained
                    "environment",                # versions, threads, git state of the process
                    "config.out_dir",             # the two runs' roots differ
                    "dataset.root"},
    "metrics.json": {"time", "elapsed"},          # per-epoch times
    "summary.json": {"generated_at", "wall_time_s"},
    "02_train.ipynb": {"metadata.papermill", "cells.metadata.execution", "cells.metadata.papermill",
                       "epoch times in the output", "the out dir in the parameters and output"},
    # job ids exist only on the SLURM side (_slurm/jobs.json, the task logs)
}


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    why = unavailable()
    if why:
        pytest.skip(why)
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm")).start()
    yield cluster
    cluster.stop()


def _env(root: Path, cluster: SlurmCluster | None = None) -> dict:
    """test_reproduce's environment (one thread; no real data, no download) for a subprocess."""
    env = dict(cluster.env if cluster else os.environ, OMP_NUM_THREADS="1",
               RESNET_NB_DATA=str(root / "no-data"), RESNET_NB_SYNTHETIC=str(root / "synthetic"),
               RESNET_NB_CIFAR_URL="http://127.0.0.1:9/cifar-10-python.tar.gz")
    (root / "no-data").mkdir(parents=True, exist_ok=True)
    return env


def _cmd(root: Path, models: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "resnet_nb.cli", "reproduce", "--preset", "smoke", "--dataset", "synthetic",
            "--run-id", "e2e", "--out-dir", str(root / "exp"), "--figures-root", str(root / "figs"),
            "--models", models, "--skip-theory", *SMALL, *extra]


def _break_plain26(root: Path) -> None:
    """test_reproduce's failing unit: an interrupted run whose last.pth cannot be read."""
    small = {k: coerce_field(k, v) for k, v in (item.split("=", 1) for item in SMALL[1::2])}  # SMALL's --set values
    cfg = make_config("smoke", model="plain26", dataset="synthetic", **small,
                      out_dir=str(root / "exp"), run_id="e2e", run_name="plain26")
    d = root / "exp" / "e2e" / "plain26"
    d.mkdir(parents=True)
    atomic_write_json(d / "config.json", {"config": asdict(cfg), "status": "interrupted"})
    (d / "last.pth").write_bytes(b"not a checkpoint")


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """The local executor's reproduction of the same settings: the reference."""
    root = tmp_path_factory.mktemp("local")
    _break_plain26(root)
    res = subprocess.run(_cmd(root, MODELS, "--parallel", "3"), cwd=REPO, env=_env(root),
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 1 and "2 executed, 0 skipped, 1 failed" in res.stdout, res.stdout + res.stderr
    return root, res.stdout + res.stderr


# --------------------------------------------------------------------------- comparison helpers

def _drop(obj, dotted: set[str], prefix: str = ""):
    if isinstance(obj, dict):
        return {k: _drop(v, dotted, f"{prefix}{k}.") for k, v in obj.items()
                if f"{prefix}{k}" not in dotted and k not in dotted}
    if isinstance(obj, list):
        return [_drop(v, dotted, prefix) for v in obj]
    return obj


def _notebook(path: Path, root: Path) -> list:
    """The executed notebook's cells without papermill's metadata, times and paths."""
    nb = json.loads(path.read_text())
    cells = []
    for c in nb["cells"]:
        outputs = []
        for o in c.get("outputs", []):
            text = "".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", ""))
            text = re.sub(r"\b\d+(\.\d+)? s\b", "<t> s", text.replace(str(root), "<root>"))
            outputs.append((o["output_type"], o.get("name"), text))
        cells.append((c["cell_type"], "".join(c["source"]).replace(str(root), "<root>"), outputs))
    return cells


def _load(path: Path, root: Path):
    """A JSON file with its run's root folder written as <root>."""
    return json.loads(path.read_text().replace(str(root), "<root>"))


def _weights(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def assert_same_run(a: Path, b: Path, root_a: Path, root_b: Path) -> None:
    """Run dir ``b`` equals ``a`` but for the EXCLUDED fields."""
    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
    ca, cb = _load(a / "config.json", root_a), _load(b / "config.json", root_b)
    assert _drop(ca, EXCLUDED["config.json"]) == _drop(cb, EXCLUDED["config.json"])
    if (a / "metrics.json").is_file():
        ma, mb = _load(a / "metrics.json", root_a), _load(b / "metrics.json", root_b)
        assert _drop(ma, EXCLUDED["metrics.json"]) == _drop(mb, EXCLUDED["metrics.json"])
        assert len(ma) == 4
    for ckpt in ("best.pth", "last.pth"):
        if (a / ckpt).is_file() and ca["status"] == "finished":
            wa, wb = _weights(a / ckpt), _weights(b / ckpt)
            assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), ckpt
    if (a / "02_train.ipynb").is_file():
        assert _notebook(a / "02_train.ipynb", root_a) == _notebook(b / "02_train.ipynb", root_b)


def _jobs(root: Path) -> dict:
    return json.loads((root / "exp" / "e2e" / "_slurm" / "jobs.json").read_text())["units"]


def _failure_line(out: str, root: Path) -> str:
    line = next(ln for ln in out.splitlines() if ln.startswith("reproduce: plain26: FAILED"))
    return line.replace(str(root), "<root>")


# --------------------------------------------------------------------------- tests

@pytest.mark.slow
def test_slurm_reproduction_equals_the_local_one(slurm, local_run, tmp_path):
    local_root, local_out = local_run
    _break_plain26(tmp_path)
    t0 = time.time()
    res = subprocess.run(_cmd(tmp_path, MODELS, *SLURM), cwd=REPO, env=_env(tmp_path, slurm),
                         capture_output=True, text=True, timeout=600)
    out = res.stdout + res.stderr
    print(out)                                           # job ids, states, timings: shown with -s
    print(f"slurm reproduction: {time.time() - t0:.0f} s")
    assert res.returncode == 1, out
    jobs = _jobs(tmp_path)
    array = jobs["plain20"]["job_id"].split("_")[0]
    assert [jobs[m]["job_id"] for m in ("plain20", "plain26", "resnet20")] == [f"{array}_{i}" for i in range(3)]
    for m in ("plain20", "plain26", "resnet20"):            # one progress line per state, with job ids
        assert re.search(rf"^\[{m}\] job {array}_\d: (pending|running)", out, re.M), out
    assert re.search(rf"^\[plain20\] job {array}_0: done in \d+ s", out, re.M)
    assert "[plain20] plain20 epoch 4/4" in out             # the task's notebook output, as locally
    # the same failure report as the local executor: notebook, cell, error
    assert _failure_line(out, tmp_path) == _failure_line(local_out, local_root)
    assert "cannot be read" in _failure_line(out, tmp_path) and "cell " in _failure_line(out, tmp_path)
    assert "2 executed, 0 skipped, 1 failed" in out
    # the options became sbatch flags of one job array
    script = (tmp_path / "exp" / "e2e" / "_slurm" / f"{array}_submission.sh").read_text()
    for flag in ("--array=0-2%3", "--cpus-per-task=1", "--time=30", "--comment=resnet-nb-test",
                 "--signal=USR2@90", f"--job-name=resnet-nb-e2e"):
        assert f"#SBATCH {flag}\n" in script, script
    assert "gpus" not in script and "gres" not in script

    # run dirs and summary.json: equal to the local executor's but for EXCLUDED
    for m in ("plain20", "plain26", "resnet20"):
        assert_same_run(local_root / "exp" / "e2e" / m, tmp_path / "exp" / "e2e" / m, local_root, tmp_path)
    sa, sb = (_load(r / "figs" / "e2e" / "summary.json", r) for r in (local_root, tmp_path))
    assert _drop(sa, EXCLUDED["summary.json"]) == _drop(sb, EXCLUDED["summary.json"])
    assert sb["models"]["resnet20"]["status"] == "finished" and sb["models"]["plain26"]["best_test_acc"] is None

    # the code failure ran once (submitit does not retry it) ...
    assert "Restarts=0" in slurm.scontrol("show", "job", jobs["plain26"]["job_id"])
    # ... and a rerun resubmits only it: the finished runs are skipped
    res = subprocess.run(_cmd(tmp_path, MODELS, *SLURM), cwd=REPO, env=_env(tmp_path, slurm),
                         capture_output=True, text=True, timeout=600)
    out = res.stdout + res.stderr
    assert res.returncode == 1, out
    assert "[plain20] skipped (finished)" in out and "[resnet20] skipped (finished)" in out
    again = _jobs(tmp_path)
    assert "submitted 1 task(s)" in out and again["plain26"]["job_id"] != jobs["plain26"]["job_id"]
    assert again["plain26"]["previous"] == [jobs["plain26"]["job_id"]]
    assert again["plain20"] == jobs["plain20"] and again["resnet20"] == jobs["resnet20"]


@pytest.mark.slow
def test_preempted_task_is_requeued_and_resumes_exactly(slurm, local_run, tmp_path):
    """USR2 (scancel --signal=USR2, as a preemption or the time-limit warning sends it) to a
    running task: the kernel is interrupted, submitit requeues the task, it resumes from
    last.pth; a second reproduce attaches to the job instead of submitting another; the
    metrics equal the uninterrupted local run's."""
    local_root, _ = local_run
    env = _env(tmp_path, slurm)
    run = tmp_path / "exp" / "e2e" / "resnet20"
    t0 = time.time()
    first = subprocess.Popen(_cmd(tmp_path, "resnet20", *SLURM), cwd=REPO, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(first.stdout), daemon=True)
    reader.start()

    def epochs() -> int:
        try:
            return len(json.loads((run / "metrics.json").read_text()))
        except (OSError, ValueError):
            return 0

    deadline = time.time() + 300   # last.pth: written after an epoch's metrics (a checkpoint to resume)
    while time.time() < deadline and first.poll() is None and not ((run / "last.pth").is_file() and epochs() >= 1):
        time.sleep(0.1)
    assert first.poll() is None and 1 <= epochs() < 4, "the task ended before it could be preempted"
    job = _jobs(tmp_path)["resnet20"]["job_id"]
    t_signal = time.time()
    subprocess.run(["scancel", "--signal=USR2", job], env=env, check=True)
    log = Path(tmp_path / "exp" / "e2e" / "_slurm" / f"{job}_0_log.out")
    requeued = f"[resnet20] job {job}: requeued (restart 1)"
    while time.time() < deadline and first.poll() is None and not any(ln.startswith(requeued) for ln in lines):
        time.sleep(0.2)
    t_requeued = time.time()
    if first.poll() is None:
        os.killpg(first.pid, signal.SIGINT)              # the submitter goes away; the job stays
    first.wait(timeout=60)
    reader.join(timeout=10)
    out1 = "".join(lines)
    assert first.returncode == 130 and "the SLURM jobs keep running" in out1, out1
    assert requeued in out1

    # reproduce again: attaches to the requeued job, submits nothing
    res = subprocess.run(_cmd(tmp_path, "resnet20", *SLURM), cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=600)
    out2 = res.stdout + res.stderr
    print(out1, out2, sep="\n--- reproduce again (attaches)\n")
    print(f"signal at +{t_signal - t0:.0f} s, requeue seen by reproduce at +{t_requeued - t0:.0f} s, "
          f"finished at +{time.time() - t0:.0f} s")
    assert res.returncode == 0, out2
    assert f"[resnet20] job {job}: attached" in out2 and "reproduce: submitted" not in out2
    assert _jobs(tmp_path)["resnet20"]["job_id"] == job
    info = slurm.scontrol("show", "job", job)
    print(info)
    assert "Restarts=1" in info and "JobState=COMPLETED" in info
    task_log = log.read_text()
    assert "SIGUSR2 (preemption or time limit): interrupting the notebook" in task_log
    assert "[resnet20] resnet20: resuming after epoch" in task_log
    meta = json.loads((run / "config.json").read_text())
    assert meta["status"] == "finished" and meta["resumed"]
    # identical to the uninterrupted local run but for EXCLUDED (times, resumed, ...)
    ref = local_root / "exp" / "e2e" / "resnet20"
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (ref, run))
    assert _drop(ma, EXCLUDED["metrics.json"]) == _drop(mb, EXCLUDED["metrics.json"])
    for ckpt in ("best.pth", "last.pth"):
        wa, wb = _weights(ref / ckpt), _weights(run / ckpt)
        assert all(torch.equal(wa[k], wb[k]) for k in wa), ckpt


# --------------------------------------------------------------------------- bad input

def _reproduce(tmp_path, *extra):
    from resnet_nb.cli import main

    return main(["reproduce", "--preset", "smoke", "--dataset", "synthetic", "--models", "plain20", "--run-id", "x",
                 "--out-dir", str(tmp_path / "exp"), "--figures-root", str(tmp_path / "figs"), "--skip-theory",
                 "--executor", "slurm", *extra])


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_no_sbatch_on_path_is_one_line_before_anything(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert _reproduce(tmp_path) == 2
    line = _one_error_line(capsys)
    assert "sbatch" in line and "not on PATH" in line and "apt-get install slurm-client" in line
    assert not (tmp_path / "exp").exists()


def test_bad_slurm_options_are_one_line(tmp_path, capsys):
    assert _reproduce(tmp_path, "--slurm-time", "1:2:3:4") == 2
    assert "--slurm-time takes minutes or [D-]HH:MM[:SS]" in _one_error_line(capsys)
    assert _reproduce(tmp_path, "--slurm-extra", "output=x") == 2
    assert "set by submitit itself" in _one_error_line(capsys)
    assert _reproduce(tmp_path, "--slurm-gpus-per-task", "-1") == 2
    assert "--slurm-gpus-per-task must be >= 0" in _one_error_line(capsys)


def test_slurm_time_formats():
    from resnet_nb.cluster import parse_time_minutes

    assert [parse_time_minutes(t) for t in ("30", "90:30", "4:00:00", "1-0", "1-2:30", "0-0:0:1")] == \
        [30, 91, 240, 1440, 1590, 1]


def test_help_states_the_shared_filesystem_assumption():
    out = subprocess.run([sys.executable, "-m", "resnet_nb.cli", "reproduce", "--help"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    flat = " ".join(out.split())
    assert "--executor {local,slurm}" in flat and "--slurm-partition" in flat
    assert "filesystem that the compute nodes share with this machine" in flat


def test_unreachable_controller_is_one_line(slurm, tmp_path, monkeypatch, capsys):
    conf = tmp_path / "slurm.conf"   # this cluster's configuration, with a port nobody listens on
    conf.write_text(re.sub(r"SlurmctldPort=\d+", "SlurmctldPort=9", slurm.conf.read_text()))
    monkeypatch.setenv("SLURM_CONF", str(conf))
    assert _reproduce(tmp_path, "--slurm-gpus-per-task", "0") == 2
    line = _one_error_line(capsys)
    assert "the SLURM controller does not answer (`scontrol ping`: Slurmctld(primary) at" in line and "DOWN" in line


def test_refused_requests_show_slurms_own_error(slurm, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SLURM_CONF", str(slurm.conf))
    assert _reproduce(tmp_path, "--slurm-gpus-per-task", "0", "--slurm-partition", "nope") == 2
    assert "SLURM refused the job array: sbatch: error: invalid partition specified: nope" in _one_error_line(capsys)
    assert _reproduce(tmp_path, "--slurm-gpus-per-task", "1") == 2     # this cluster has no GRES
    assert "sbatch: error: Invalid generic resource (gres) specification" in _one_error_line(capsys)
    assert _reproduce(tmp_path, "--slurm-gpus-per-task", "0", "--slurm-mem", "900G") == 2
    assert "Requested node configuration is not available" in _one_error_line(capsys)
    # nothing queued (SLURM keeps the refused request as a FAILED job record)
    assert not [ln for ln in slurm.squeue("-n", "resnet-nb-x").splitlines() if "PENDING" in ln or "RUNNING" in ln]
