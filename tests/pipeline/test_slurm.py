"""``reproduce --executor slurm`` against a real single-node SLURM (slurm_cluster.py: munged,
slurmctld and slurmd started for this module, stopped by PID afterwards), not a mock.

The reproduction uses test_reproduce's tiny smoke settings on the synthetic data, on CPU
(``--slurm-gpus-per-task 0``, one CPU per task, ``OMP_NUM_THREADS=1``), and is compared with
the local executor's run of the same settings (reproduce_e2e.py, the session's
``local_reproduction``). One SLURM reproduction (the ``slurm_reproduction`` fixture) serves
both end-to-end tests: its first command is preempted in one task and stopped, its second
attaches to that task and resubmits only the failed one. Where SLURM cannot start (packages
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
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from resnet_nb.analysis.aggregate import THEORY_FIGURE_FILES
from resnet_nb.training.train import train

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reproduce_e2e import MODELS, REPO, break_plain26, env, reproduce_cmd, small_config  # noqa: E402
from slurm_cluster import SlurmCluster, unavailable  # noqa: E402

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


def _cmd(root: Path, models: str, *extra: str) -> list[str]:
    return reproduce_cmd(root, "--models", models, "--skip-theory", *extra)


# --------------------------------------------------------------------------- the SLURM reproduction

class _Reproduce:
    """``resnet-nb reproduce`` in the background, its output lines collected as they come."""

    def __init__(self, argv: list[str], env_: dict) -> None:
        self.proc = subprocess.Popen(argv, cwd=REPO, env=env_, text=True, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True)
        self._reader.start()

    def wait_for(self, done, deadline: float, what: str) -> None:
        """Poll ``done()`` until it holds; fail (with the output) if the command ends or time runs out."""
        while time.time() < deadline and self.proc.poll() is None and not done():
            time.sleep(0.1)
        assert done(), f"reproduce {'ended' if self.proc.poll() is not None else 'timed out'} before {what}:\n" \
                       + self.out

    def has_line(self, pattern: str) -> bool:
        return any(re.match(pattern, ln) for ln in list(self.lines))

    def finish(self, timeout: float) -> tuple[int, str]:
        self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return self.proc.returncode, self.out

    @property
    def out(self) -> str:
        return "".join(self.lines)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)


@dataclass
class SlurmReproduction:
    root: Path                 # runs in root/exp/e2e, figures in root/figs/e2e, SLURM files in .../_slurm
    first_rc: int              # the first command, stopped (Ctrl-C) after the preemption
    first_out: str
    first_jobs: dict           # _slurm/jobs.json after it
    preempted: str             # resnet20's task (job id), sent USR2
    rerun_rc: int              # the second command: attaches, resubmits, analyses
    rerun_out: str
    rerun_jobs: dict


def _jobs(root: Path) -> dict:
    return json.loads((root / "exp" / "e2e" / "_slurm" / "jobs.json").read_text())["units"]


def _epochs(run: Path) -> int:
    try:
        return len(json.loads((run / "metrics.json").read_text()))
    except (OSError, ValueError):
        return 0


def _hold_when_requeued(cluster: SlurmCluster, job: str, deadline: float) -> None:
    """Hold ``job`` as soon as submitit has requeued it (pending again): it stays queued until
    released, so that the second reproduce surely finds it unfinished (a test without races)."""
    info = ""
    while time.time() < deadline:
        info = cluster.scontrol("show", "job", job)
        if "Restarts=1" in info and "JobState=PENDING" in info:
            if subprocess.run(["scontrol", "hold", job], env=cluster.env, capture_output=True).returncode == 0:
                return
        assert "JobState=COMPLETED" not in info, f"job {job} completed without being requeued:\n{info}"
        time.sleep(0.2)
    raise AssertionError(f"job {job} was not requeued in time:\n{info}")


@pytest.fixture(scope="module")
def slurm_reproduction(slurm, tmp_path_factory) -> SlurmReproduction:
    """The SLURM reproduction of reproduce_e2e's models (plain26 broken as there), in two commands:

    1. submits the three tasks; once resnet20's task has the checkpoint of an epoch it gets USR2
       (``scancel --signal=USR2``, as a preemption or the time-limit warning sends it); when
       submitit has requeued it (held here until step 2 has attached) and plain20's task is done,
       the command is stopped with Ctrl-C (the jobs stay);
    2. the same command again: plain20 skipped (finished), resnet20 attached (released then),
       plain26 (failed) resubmitted; then 03_analysis."""
    root = tmp_path_factory.mktemp("slurm-reproduction")
    break_plain26(root)
    env_ = env(root, slurm.env)
    run = root / "exp" / "e2e" / "resnet20"
    started: list[_Reproduce] = []
    try:
        t0 = time.time()
        deadline = t0 + 400
        first = _Reproduce(_cmd(root, MODELS, *SLURM), env_)
        started.append(first)
        first.wait_for(lambda: (run / "last.pth").is_file() and _epochs(run) >= 1, deadline,
                       "resnet20 had a checkpoint")   # last.pth: written after an epoch's metrics
        assert first.proc.poll() is None and _epochs(run) < 4, "the task ended before it could be preempted"
        job = _jobs(root)["resnet20"]["job_id"]
        t_signal = time.time()
        subprocess.run(["scancel", "--signal=USR2", job], env=env_, check=True)
        _hold_when_requeued(slurm, job, deadline)
        first.wait_for(lambda: first.has_line(rf"\[resnet20\] job {job}: requeued \(restart 1\)")
                       and first.has_line(r"\[plain20\] job \S+: done in \d+ s"), deadline,
                       "it saw resnet20 requeued and plain20 done")
        t_requeued = time.time()
        os.killpg(first.proc.pid, signal.SIGINT)              # the submitter goes away; the jobs stay
        first_rc, first_out = first.finish(timeout=60)
        first_jobs = _jobs(root)

        second = _Reproduce(_cmd(root, MODELS, *SLURM), env_)
        started.append(second)
        try:
            second.wait_for(lambda: second.has_line(rf"\[resnet20\] job {job}: attached"), deadline,
                            f"it attached to resnet20's job {job}")
        finally:
            slurm.scontrol("release", job)
        rerun_rc, rerun_out = second.finish(timeout=max(60.0, deadline - time.time()))
        print(first_out, rerun_out, sep="\n--- reproduce again (attaches, resubmits)\n")   # shown with -s
        print(f"signal at +{t_signal - t0:.0f} s, requeue seen at +{t_requeued - t0:.0f} s, "
              f"finished at +{time.time() - t0:.0f} s")
    finally:                                              # a failed wait leaves none running
        for proc in started:
            proc.kill()
    return SlurmReproduction(root, first_rc, first_out, first_jobs, job, rerun_rc, rerun_out, _jobs(root))


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


def _failure_line(out: str, root: Path) -> str:
    line = next(ln for ln in out.splitlines() if ln.startswith("reproduce: plain26: FAILED"))
    return line.replace(str(root), "<root>")


# --------------------------------------------------------------------------- tests

@pytest.mark.slow
def test_slurm_reproduction_equals_the_local_one(slurm, slurm_reproduction, local_reproduction):
    r, local = slurm_reproduction, local_reproduction
    local_out = local.rerun.stdout + local.rerun.stderr
    out = r.first_out
    jobs = r.first_jobs
    array = jobs["plain20"]["job_id"].split("_")[0]
    assert [jobs[m]["job_id"] for m in ("plain20", "plain26", "resnet20")] == [f"{array}_{i}" for i in range(3)]
    for m in ("plain20", "plain26", "resnet20"):            # one progress line per state, with job ids
        assert re.search(rf"^\[{m}\] job {array}_\d: (pending|running)", out, re.M), out
    assert re.search(rf"^\[plain20\] job {array}_0: done in \d+ s", out, re.M)
    assert "[plain20] plain20 epoch 4/4" in out             # the task's notebook output, as locally
    # the options became sbatch flags of one job array
    script = (r.root / "exp" / "e2e" / "_slurm" / f"{array}_submission.sh").read_text()
    for flag in ("--array=0-2%3", "--cpus-per-task=1", "--time=30", "--comment=resnet-nb-test",
                 "--signal=USR2@90", "--job-name=resnet-nb-e2e"):
        assert f"#SBATCH {flag}\n" in script, script
    assert "gpus" not in script and "gres" not in script

    # the code failure ran once (submitit does not retry it) ...
    assert "Restarts=0" in slurm.scontrol("show", "job", jobs["plain26"]["job_id"])
    # ... and the rerun resubmits only it: the finished run is skipped, the running one attached
    out = r.rerun_out
    assert r.rerun_rc == 1, out
    assert "[plain20] skipped (finished)" in out and f"[resnet20] job {r.preempted}: attached" in out
    again = r.rerun_jobs
    assert "submitted 1 task(s)" in out and again["plain26"]["job_id"] != jobs["plain26"]["job_id"]
    assert again["plain26"]["previous"] == [jobs["plain26"]["job_id"]]
    assert again["plain20"] == jobs["plain20"] and again["resnet20"] == jobs["resnet20"]
    assert "1 executed, 1 skipped, 1 failed" in out          # the statuses the tasks reported
    # the same failure report as the local executor: notebook, cell, error
    assert _failure_line(out, r.root) == _failure_line(local_out, local.root)
    assert "cannot be read" in _failure_line(out, r.root) and "cell " in _failure_line(out, r.root)

    # run dirs and summary.json: equal to the local executor's but for EXCLUDED (resnet20, which
    # was preempted here and interrupted there, in test_preempted_task_is_requeued_and_resumes_exactly)
    for m in ("plain20", "plain26"):
        assert_same_run(local.base / m, r.root / "exp" / "e2e" / m, local.root, r.root)
    sa, sb = (_load(x / "figs" / "e2e" / "summary.json", x) for x in (local.root, r.root))
    sa["figures"] = {k: v for k, v in sa["figures"].items() if k not in THEORY_FIGURE_FILES}  # 01_theory ran there
    assert _drop(sa, EXCLUDED["summary.json"]) == _drop(sb, EXCLUDED["summary.json"])
    assert sb["models"]["resnet20"]["status"] == "finished" and sb["models"]["plain26"]["best_test_acc"] is None


@pytest.mark.slow
def test_preempted_task_is_requeued_and_resumes_exactly(slurm, slurm_reproduction, tmp_path, one_thread):
    """USR2 (scancel --signal=USR2, as a preemption or the time-limit warning sends it) to a
    running task: the kernel is interrupted, submitit requeues the task, it resumes from
    last.pth; a second reproduce attaches to the job instead of submitting another; the
    metrics and weights equal an uninterrupted run's."""
    r = slurm_reproduction
    job, run = r.preempted, r.root / "exp" / "e2e" / "resnet20"
    assert r.first_rc == 130 and "the SLURM jobs keep running" in r.first_out, r.first_out
    assert f"[resnet20] job {job}: requeued (restart 1)" in r.first_out

    # reproduce again: attaches to the requeued job, submits nothing for it (only plain26's task)
    assert r.rerun_rc == 1, r.rerun_out                      # (plain26 fails again)
    assert f"[resnet20] job {job}: attached" in r.rerun_out and "submitted 1 task(s)" in r.rerun_out
    assert r.rerun_jobs["resnet20"] == r.first_jobs["resnet20"]
    info = slurm.scontrol("show", "job", job)
    print(info)
    assert "Restarts=1" in info and "JobState=COMPLETED" in info
    task_log = (r.root / "exp" / "e2e" / "_slurm" / f"{job}_0_log.out").read_text()
    assert "SIGUSR2 (preemption or time limit): interrupting the notebook" in task_log
    assert "[resnet20] resnet20: resuming after epoch" in task_log
    meta = json.loads((run / "config.json").read_text())
    assert meta["status"] == "finished" and meta["resumed"]
    # identical to an uninterrupted run but for EXCLUDED (times, resumed, ...)
    ref = train(small_config(tmp_path, "resnet20"))
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
    from resnet_nb.pipeline.cluster import parse_time_minutes

    assert [parse_time_minutes(t) for t in ("30", "90:30", "4:00:00", "1-0", "1-2:30", "0-0:0:1")] == \
        [30, 91, 240, 1440, 1590, 1]


def test_help_states_the_shared_filesystem_assumption(capsys):
    from resnet_nb.cli import main

    with pytest.raises(SystemExit) as e:   # argparse's --help: the text, then exit 0
        main(["reproduce", "--help"])
    assert e.value.code == 0
    flat = " ".join(capsys.readouterr().out.split())
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
