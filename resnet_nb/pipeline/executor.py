"""The local executor: notebooks run with papermill, each in its own child process.

``Runner`` starts at most ``parallel`` executions at once (spread over the visible GPUs
through ``CUDA_VISIBLE_DEVICES``) and prints every output line prefixed with the unit's
name. A unit is any object with ``name``, ``status``, ``failure`` and ``seconds``
(``resnet_nb.pipeline.reproduce.Unit``); ``run`` sets the last three. Each child runs
``python -m resnet_nb.pipeline.executor --worker <spec.json>``, which executes one notebook and
writes a failure record naming the failing cell. Ctrl-C is passed on to the kernel as an
interrupt, so a training cell stops cleanly with a resumable ``last.pth``.

``resnet_nb.pipeline.reproduce`` runs its units with it; ``resnet_nb.pipeline.cluster`` runs one unit per
SLURM array task with it.

A deadline (``Runner.deadline``, on ``time.monotonic()``): an execution whose parameters
hold ``time_budget`` gets the seconds left until it when it starts (so executions one
after the other share one budget); once it has passed, such an execution is not started
and its unit is ``paused``, except the first (so that every rerun makes progress: its
first epoch always runs). A training notebook whose runs the budget paused still
succeeds (the runs are ``paused``, not failed): the caller reads their statuses.
``resnet_nb.pipeline.reproduce`` gives one deadline to all its local executions; each SLURM array
task gets its own, from its start (``cluster.task_deadline``).
"""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from resnet_nb.runs.environment import usable_cores
from resnet_nb.runs.rundir import PAPERMILL_ENV

__all__ = ["KERNEL", "check_kernel", "execute_notebook", "Runner", "describe"]

KERNEL = "python3"


def check_kernel(name: str = KERNEL) -> None:
    """Make sure the Jupyter kernel ``name`` runs this environment's Python (papermill and
    nbval start notebooks in it); ValueError with the fix otherwise."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    fix = f"{sys.executable} -m ipykernel install --sys-prefix --name {name}"
    try:
        spec = KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        raise ValueError(f"no Jupyter kernel named {name!r}; install it with `{fix}` (make install does)") from None
    exe = spec.argv[0] if spec.argv else ""
    generic = {"python", f"python{sys.version_info[0]}", "python%i.%i" % sys.version_info[:2]}
    if exe not in generic and Path(exe).resolve() != Path(sys.executable).resolve():
        raise ValueError(f"the Jupyter kernel {name!r} runs {exe}, not this environment's "
                         f"{sys.executable}; reinstall it with `{fix}`")


def execute_notebook(notebook: str | os.PathLike, output: str | os.PathLike, parameters: dict,
                     kernel: str = KERNEL, cwd: str | os.PathLike | None = None,
                     copies: list | tuple = ()) -> dict | None:
    """Run ``notebook`` with papermill into ``output``, streaming the cells' output to this
    process's stdout/stderr. Returns None on success, else a failure record: notebook,
    cell (index), execution_count, ename, evalue and the failing cell's first line.

    The kernel gets ``$RESNET_NB_PAPERMILL`` (:data:`PAPERMILL_ENV`): the notebook, ``output``
    and ``copies`` (where the caller copies the executed notebook after a success), so that a
    run the notebook trains records in config.json that papermill executed it, and where its
    executed notebook is (``run_writer.how_trained``)."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    Path(output).parent.mkdir(parents=True, exist_ok=True)
    before = os.environ.get(PAPERMILL_ENV)
    os.environ[PAPERMILL_ENV] = json.dumps({"notebook": str(notebook),
                                            "outputs": [str(Path(o).resolve()) for o in (output, *copies)]})
    try:
        pm.execute_notebook(str(notebook), str(output), parameters=parameters, kernel_name=kernel,
                            progress_bar=False, stdout_file=sys.stdout, stderr_file=sys.stderr,
                            cwd=str(cwd) if cwd else None)
    except PapermillExecutionError as e:
        first = next((ln for ln in str(e.source).splitlines() if ln.strip() and not ln.startswith("#")), "")
        return {"notebook": str(output), "cell": e.cell_index, "execution_count": e.exec_count,
                "ename": e.ename, "evalue": str(e.evalue).splitlines()[0] if e.evalue else "",
                "source": first.strip()}
    except Exception as e:  # noqa: BLE001 - a dead kernel, a bad notebook: still one unit's failure
        return {"notebook": str(output), "cell": None, "execution_count": None,
                "ename": type(e).__name__, "evalue": str(e).splitlines()[0] if str(e) else "", "source": ""}
    finally:  # the kernel has its own copy of the environment
        if before is None:
            os.environ.pop(PAPERMILL_ENV, None)
        else:
            os.environ[PAPERMILL_ENV] = before
    return None


def _child_pids(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (Linux ``/proc``; empty elsewhere)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields_ = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields_[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _worker(spec_path: str) -> int:
    """Child process: execute one notebook (spec: JSON), write a failure record if it fails.

    Ctrl-C (SIGINT) is passed on to the kernel (which Jupyter starts in its own session) as
    a kernel interrupt, so the training cell stops cleanly: the run is marked interrupted
    with a resumable ``last.pth``, and the failure record names the interrupted cell."""
    spec = json.loads(Path(spec_path).read_text())
    interrupted = []

    def forward(signum, frame):  # noqa: ARG001
        if interrupted:
            return
        interrupted.append(True)
        kids = _child_pids(os.getpid())
        if not kids:
            raise KeyboardInterrupt
        for pid in kids:
            try:
                os.kill(pid, signal.SIGINT)
            except OSError:
                pass

    signal.signal(signal.SIGINT, forward)
    failure = execute_notebook(spec["notebook"], spec["outputs"][0], spec["parameters"],
                               spec["kernel"], spec["cwd"], copies=spec["outputs"][1:])
    if failure is None and not interrupted:
        import shutil

        for extra in spec["outputs"][1:]:
            Path(extra).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(spec["outputs"][0], extra)
        return 0
    Path(spec["failure_file"]).write_text(json.dumps(failure or {
        "notebook": spec["outputs"][0], "cell": None, "execution_count": None,
        "ename": "KeyboardInterrupt", "evalue": "interrupted", "source": ""}))
    return 130 if interrupted else 1


# kernel log lines that say nothing about the run (jupyter_client's default TCP transport;
# the kernel's own report of the shutdown papermill requests after the last cell)
_NOISE = ("Kernel is running over TCP without encryption", "KeyboardInterrupt caught in kernel")




def cpu_threads_env(gpus: list[str], parallel: int) -> dict:
    """On the CPU, the cores shared out among ``parallel`` executions at once (``OMP_NUM_THREADS``,
    which torch reads at start-up): two 2-thread trainings on 2 cores slow each other several-fold;
    whether two 1-thread ones beat one 2-thread training after the other depends on the CPU
    (``resnet-nb bench --device cpu``, docs/speed.md). Nothing when a GPU trains, one execution runs, or the user set it."""
    if gpus or parallel <= 1 or "OMP_NUM_THREADS" in os.environ:
        return {}
    return {"OMP_NUM_THREADS": str(max(1, usable_cores() // parallel))}


class Runner:
    """Runs notebook executions in child processes, at most ``parallel`` at once, and
    prints their output prefixed with the unit's name."""

    def __init__(self, parallel: int, gpus: list[str], kernel: str, cwd: Path, tmp: Path,
                 deadline: float | None = None) -> None:
        self.parallel, self.gpus, self.kernel, self.cwd, self.tmp = max(1, parallel), gpus, kernel, cwd, tmp
        self.deadline = deadline          # time.monotonic() value; see the module docstring
        self.budgeted = 0                 # executions started under the deadline
        self.lock = threading.Lock()
        self.procs: list[subprocess.Popen] = []

    def budget_left(self, params: dict) -> dict | None:
        """``params`` with ``time_budget`` = the seconds left until the deadline (at least
        0.1: 0 would mean no limit); None when the deadline has passed and an execution
        already started under it (do not start this one)."""
        if self.deadline is None or "time_budget" not in params:
            return params
        left = self.deadline - time.monotonic()
        if left <= 0 and self.budgeted:
            return None
        self.budgeted += 1
        return {**params, "time_budget": max(0.1, math.floor(left * 10) / 10)}

    def _echo(self, name: str, stream) -> None:
        for line in stream:
            if any(noise in line for noise in _NOISE):
                continue
            with self.lock:
                print(f"[{name}] {line.rstrip()}", flush=True)

    def start(self, unit, notebook: Path, outputs: list[Path], params: dict, slot: int):
        spec = self.tmp / f"{unit.name}.json"
        failure_file = self.tmp / f"{unit.name}.failure.json"
        failure_file.unlink(missing_ok=True)
        spec.write_text(json.dumps({"notebook": str(notebook), "outputs": [str(o) for o in outputs],
                                    "parameters": params, "kernel": self.kernel, "cwd": str(self.cwd),
                                    "failure_file": str(failure_file)}))
        env = dict(os.environ, MPLBACKEND="Agg", PYTHONUNBUFFERED="1")
        if len(self.gpus) > 1:
            env["CUDA_VISIBLE_DEVICES"] = self.gpus[slot % len(self.gpus)]
        env.update(cpu_threads_env(self.gpus, self.parallel))
        proc = subprocess.Popen([sys.executable, "-m", "resnet_nb.pipeline.executor", "--worker", str(spec)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                bufsize=1, env=env, cwd=str(self.cwd))
        self.procs.append(proc)
        reader = threading.Thread(target=self._echo, args=(unit.name, proc.stdout), daemon=True)
        reader.start()
        gpu = f" on GPU {env['CUDA_VISIBLE_DEVICES']}" if len(self.gpus) > 1 else ""
        with self.lock:
            print(f"[{unit.name}] started: {notebook.name} -> {outputs[0]}{gpu}", flush=True)
        return proc, reader, failure_file, time.time()

    def run(self, jobs: list[tuple[Any, Path, list[Path], dict]]) -> None:
        """Run every (unit, notebook, outputs, parameters); sets unit.status/failure."""
        pending = list(jobs)
        running: dict[int, tuple] = {}
        free_slots = list(range(self.parallel))
        while pending or running:
            while pending and free_slots:
                unit, nb, outs, params = pending.pop(0)
                params = self.budget_left(params)
                if params is None:             # the time budget is spent: not started
                    unit.status = "paused"
                    with self.lock:
                        print(f"[{unit.name}] {describe(unit)}", flush=True)
                    continue
                slot = free_slots.pop(0)
                running[slot] = (unit, *self.start(unit, nb, outs, params, slot))
            time.sleep(0.2)
            for slot, (unit, proc, reader, failure_file, t0) in list(running.items()):
                if proc.poll() is None:
                    continue
                reader.join(timeout=5)
                unit.seconds = time.time() - t0
                if proc.returncode == 0:
                    unit.status = "ok"
                else:
                    unit.status = "failed"
                    unit.failure = (json.loads(failure_file.read_text()) if failure_file.is_file() else
                                    {"notebook": "", "cell": None, "ename": "WorkerError",
                                     "evalue": f"exit code {proc.returncode}", "source": ""})
                with self.lock:
                    print(f"[{unit.name}] {describe(unit)}", flush=True)
                del running[slot]
                free_slots.append(slot)

    def stop(self, grace_s: float = 30.0) -> None:
        """Interrupt the running executions (their kernels stop the training cleanly), wait
        up to ``grace_s`` for them, then terminate what is left."""
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        deadline = time.time() + grace_s
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()


def describe(unit) -> str:
    """One line on how a unit ended (``status``, ``seconds``, ``failure``)."""
    if unit.status == "ok":
        return f"done in {unit.seconds:.0f} s"
    if unit.status == "skipped":
        return "skipped (finished)"
    if unit.status == "paused":
        return getattr(unit, "note", "") or (f"paused by --time-budget after {unit.seconds:.0f} s: rerun the same "
                                            f"command to resume" if unit.seconds else
                                            "not started: the time budget was spent; rerun the same command to resume")
    f = unit.failure or {}
    cell = f"cell {f['cell']} (In [{f.get('execution_count')}])" if f.get("cell") is not None else "before any cell"
    src = f": `{f['source']}`" if f.get("source") else ""
    return f"FAILED in {f.get('notebook') or 'its notebook'}, {cell}{src}: {f.get('ename')}: {f.get('evalue')}"


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        sys.exit(_worker(sys.argv[2]))
    sys.exit(f"usage: python -m resnet_nb.pipeline.executor --worker SPEC.json (started by {Runner.__name__})")
