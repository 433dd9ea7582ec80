"""reproduce's --time-budget per executor: local executions share one deadline of the whole
reproduction (executor.Runner.budget_left); a SLURM array task gets the whole budget from
when it starts running, so time in the queue costs none (cluster.task_deadline)."""
from __future__ import annotations

import argparse
import os
import time
from types import SimpleNamespace

import pytest

from resnet_nb.pipeline import cluster, reproduce
from resnet_nb.pipeline.executor import Runner


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    c = _Clock()
    monkeypatch.setattr(time, "monotonic", c)       # executor, cluster and reproduce read time.monotonic
    return c


def test_task_deadline_is_the_whole_budget_from_the_start():
    assert cluster.task_deadline({"time_budget": 60.0}, started=1000.0) == 1060.0
    assert cluster.task_deadline({"time_budget": 0.0}, started=1000.0) is None      # 0: no limit
    assert cluster.task_deadline({"lr": 0.1}, started=1000.0) is None


def test_a_slurm_task_counts_its_budget_from_its_own_start_not_the_submission(clock, monkeypatch, tmp_path):
    seen = []

    class Recorder(Runner):                          # the task's runner, without a notebook
        def run(self, jobs):
            for unit, _, _, params in jobs:
                clock.now += 5.0                     # the task's own start-up counts, as locally
                seen.append(self.budget_left(params))
                unit.status, unit.seconds = "ok", 0.0

    monkeypatch.setattr(cluster, "_TaskRunner", Recorder)
    unit = SimpleNamespace(name="depth20", finished=False, status="pending", failure=None, seconds=0.0)
    task = cluster.UnitTask(unit, "02_train.ipynb", [str(tmp_path / "o.ipynb")], {"time_budget": 60.0},
                            "python3", str(tmp_path))              # submitted at 0
    clock.now = 1000.0                                             # 1000 s in the queue
    assert task()["status"] == "ok"
    clock.now = 5000.0                                             # preempted and requeued: again
    task()
    assert seen == [{"time_budget": 55.0}, {"time_budget": 55.0}]
    unbudgeted = cluster.UnitTask(unit, "02_train.ipynb", [str(tmp_path / "o.ipynb")], {}, "python3", str(tmp_path))
    unbudgeted()
    assert seen[-1] == {}


def test_reproduce_hands_slurm_tasks_the_whole_budget(clock, monkeypatch, tmp_path):
    """reproduce's own checks before submitting (here 30 s) do not come out of a task's budget."""
    handed = []

    def preflight(*a, **k):
        clock.now += 30.0

    def fake_run_units(jobs, args, base, kernel, cwd):
        for unit, _, _, params in jobs:
            handed.append(params["time_budget"])
            unit.status = "failed"                   # nothing ran; no analysis afterwards
            unit.failure = {"notebook": "02_train", "cell": 0, "ename": "Test", "evalue": "", "line": ""}

    monkeypatch.setattr(reproduce, "check_kernel", preflight)
    monkeypatch.setattr(cluster, "check_slurm", lambda args: None)
    monkeypatch.setattr(cluster, "run_units", fake_run_units)
    monkeypatch.setattr(reproduce, "_final_jobs", lambda *a, **k: [])
    p = argparse.ArgumentParser()
    reproduce.add_arguments(p)
    args = p.parse_args(["--preset", "smoke", "--dataset", "synthetic", "--models", "plain8,resnet8",
                         "--out-dir", str(tmp_path / "exp"), "--run-id", "budget", "--time-budget", "120",
                         "--executor", "slurm", "--slurm-gpus-per-task", "0", "--figures-root", str(tmp_path / "fig")])
    assert reproduce.run_cli(args) == 1
    assert handed == [120.0, 120.0]


def test_cpu_executions_share_the_cores(monkeypatch):
    from resnet_nb.pipeline.executor import cpu_threads_env
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert cpu_threads_env([], 2) == {"OMP_NUM_THREADS": "2"}
    assert cpu_threads_env([], 8) == {"OMP_NUM_THREADS": "1"}
    assert cpu_threads_env([], 1) == {} and cpu_threads_env(["0"], 2) == {}   # one execution; a GPU
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert cpu_threads_env([], 2) == {}                                        # the user's setting wins


def test_auto_parallel_is_one_on_a_gpu_two_on_a_multicore_cpu(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert reproduce.auto_parallel(cuda=True) == 1 and reproduce.auto_parallel(cuda=False) == 2
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert reproduce.auto_parallel(cuda=False) == 1
