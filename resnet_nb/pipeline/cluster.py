"""``resnet-nb reproduce --executor slurm``: the training units as one SLURM job array, through
submitit.

Each unit ``reproduce`` plans (one papermill execution of ``02_train``) becomes one array task;
``01_theory`` and ``03_analysis`` still run on the submitting machine afterwards. ``check_slurm``
checks the client commands and the controller before anything is submitted; ``run_units``
submits the units that need work, records the job ids in ``<out-dir>/<run-id>/_slurm/jobs.json``
and waits, printing each state change and the task's output as it arrives; run again with the
same ``--run-id`` it attaches to the recorded jobs and submits only failed and unfinished units.
``UnitTask`` runs the unit through the local executor's runner. Preemption and time limits:
SLURM's ``USR2`` makes ``UnitTask.checkpoint`` interrupt the kernel as Ctrl-C does and requeue
the task, which resumes from ``last.pth``. ``--time-budget`` counts per task from when it starts
running. Job states come from ``squeue`` and submitit's result files (no accounting database).
The checkout, its environment and the run dirs must be on a filesystem the nodes share.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import pickle
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

from resnet_nb.pipeline.executor import Runner, describe  # the local executor's runner and wording

__all__ = ["ASSUMPTION", "SLURM_DIR", "JOBS_FILE", "add_arguments", "check_slurm", "slurm_parameters",
           "parse_time_minutes", "uses_cuda", "task_deadline", "UnitTask", "run_units", "squeue_states"]

ASSUMPTION = ("--executor slurm assumes that the checkout, its Python environment and the run dirs "
              "(--out-dir) are on a filesystem that the compute nodes share with this machine")
SLURM_DIR = "_slurm"          # <out-dir>/<run-id>/_slurm/: submitit's files, task logs, jobs.json
JOBS_FILE = "jobs.json"       # unit name -> job id of its latest submission
CLIENTS = ("sbatch", "squeue", "scontrol", "srun")
INSTALL_HINT = ("run reproduce on the cluster's login node, or install the SLURM client commands "
                "(Debian/Ubuntu: apt-get install slurm-client) with the cluster's slurm.conf")
# options submitit sets itself: overriding them through --slurm-extra would lose the logs
RESERVED = {"array", "output", "error", "open-mode", "parsable"}
# squeue states (squeue -t all) grouped the way the progress line names them
PENDING = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "CONFIGURING"}
RUNNING = {"RUNNING", "SIGNALING", "STAGE_OUT", "SUSPENDED", "STOPPED", "RESIZING"}
# COMPLETING: a task winding down (after its end or a requeue); no state change to report
# pending reasons that mean SLURM will never start the task as submitted (with the default
# EnforcePartLimits=NO sbatch accepts such a request and leaves it pending for good)
NEVER_STARTS = {"PartitionConfig", "PartitionNodeLimit", "PartitionTimeLimit", "BadConstraints",
                "InvalidAccount", "InvalidQOS", "DependencyNeverSatisfied"}
CHECKPOINT_GRACE_S = 45.0     # of submitit's 90 s between USR2 and the kill: stop the kernel
RESULT_GRACE_S = 30.0         # an ended task's result file may reach a shared filesystem late


# --------------------------------------------------------------------------- options

def add_arguments(p: argparse.ArgumentParser) -> None:
    """``--executor`` and the ``--slurm-*`` options of ``reproduce``."""
    p.add_argument("--executor", choices=("local", "slurm"), default="local",
                   help="where the 02_train executions run: local (this machine), or slurm (one task "
                   "of a SLURM job array per execution, through submitit: see the SLURM options)")
    g = p.add_argument_group("SLURM (--executor slurm)", ASSUMPTION + ". Each option is the sbatch "
                             "flag of the same name; the jobs are recorded under <out-dir>/<run-id>/"
                             f"{SLURM_DIR}/, and a rerun with the same --run-id attaches to them.")
    g.add_argument("--slurm-partition", default=None,
                   help="sbatch --partition (default: the cluster's default partition)")
    g.add_argument("--slurm-gpus-per-task", type=int, default=1,
                   help="sbatch --gpus-per-task; 0 omits the GPU request (clusters without GRES reject it)")
    g.add_argument("--slurm-time", default="4:00:00",
                   help="sbatch --time of each task: minutes or [D-]HH:MM[:SS]; USR2 90 s before it "
                   "requeues the task, which resumes from last.pth (default: 4:00:00)")
    g.add_argument("--slurm-cpus-per-task", type=int, default=None,
                   help="sbatch --cpus-per-task (default: the cluster's default)")
    g.add_argument("--slurm-mem", default=None, help="sbatch --mem, e.g. 16G (default: the cluster's default)")
    g.add_argument("--slurm-array-parallelism", type=int, default=0,
                   help="at most this many tasks at once (sbatch --array=0-N%%P); 0: no limit")
    g.add_argument("--slurm-extra", action="append", default=[], metavar="KEY=VALUE",
                   help="any other sbatch option, e.g. account=abc, qos=high, constraint=a100 "
                   "(repeatable; a bare KEY is a flag such as exclusive)")


def parse_time_minutes(value: str | int) -> int:
    """SLURM's time formats (minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS) -> whole
    minutes (seconds round up): submitit needs minutes to tell a time limit from preemption."""
    text = str(value).strip()
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text)
    if not m or not text:
        raise ValueError(f"--slurm-time takes minutes or [D-]HH:MM[:SS] (e.g. 240 or 4:00:00); got {value!r}")
    days, a, b, c = (int(x) if x is not None else None for x in m.groups())
    if days is not None:                       # D-HH[:MM[:SS]]
        seconds = days * 86400 + a * 3600 + (b or 0) * 60 + (c or 0)
    elif c is not None:                        # HH:MM:SS
        seconds = a * 3600 + b * 60 + c
    elif b is not None:                        # MM:SS
        seconds = a * 60 + b
    else:                                      # minutes
        seconds = a * 60
    if seconds <= 0:
        raise ValueError(f"--slurm-time must be positive; got {value!r}")
    return -(-seconds // 60)


def _extra(items: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().lstrip("-").replace("_", "-")
        if not key or (sep and not value.strip()):
            raise ValueError(f"--slurm-extra takes KEY=VALUE (e.g. account=abc) or a bare flag; got {item!r}")
        if key in RESERVED:
            raise ValueError(f"--slurm-extra {key}=... is set by submitit itself (job array and log files); "
                             f"leave it out")
        out[key] = value.strip() if sep else True
    return out


def slurm_parameters(args: argparse.Namespace, run_id: str) -> dict[str, Any]:
    """submitit ``SlurmExecutor.update_parameters`` keywords of the options (ValueError on bad ones).
    Each becomes ``#SBATCH --<name>`` in the job array's script."""
    if args.slurm_gpus_per_task < 0:
        raise ValueError(f"--slurm-gpus-per-task must be >= 0 (0 omits the GPU request); got {args.slurm_gpus_per_task}")
    if args.slurm_cpus_per_task is not None and args.slurm_cpus_per_task < 1:
        raise ValueError(f"--slurm-cpus-per-task must be >= 1; got {args.slurm_cpus_per_task}")
    if args.slurm_array_parallelism < 0:
        raise ValueError(f"--slurm-array-parallelism must be >= 0 (0: no limit); got {args.slurm_array_parallelism}")
    params: dict[str, Any] = {"job_name": f"resnet-nb-{run_id}" if run_id else "resnet-nb",
                              "time": parse_time_minutes(args.slurm_time)}
    if args.slurm_partition:
        params["partition"] = args.slurm_partition
    if args.slurm_gpus_per_task:
        params["gpus_per_task"] = args.slurm_gpus_per_task
    if args.slurm_cpus_per_task:
        params["cpus_per_task"] = args.slurm_cpus_per_task
    if args.slurm_mem:
        params["mem"] = str(args.slurm_mem)
    if args.slurm_array_parallelism:
        params["array_parallelism"] = args.slurm_array_parallelism
    extra = _extra(args.slurm_extra)
    if extra:
        params["additional_parameters"] = extra
    return params


def uses_cuda(args: argparse.Namespace, cfg) -> bool:
    """Whether the tasks train on a GPU (then reproduce packs each depth into one unit): the
    submitting machine's own GPUs do not count, the request of each task does."""
    return cfg.device.startswith("cuda") or (cfg.device == "auto" and args.slurm_gpus_per_task > 0)


def _one_line(text: str) -> str:
    """A client's (multi-line) message as one line; banner lines of asterisks dropped."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip() and not ln.strip().startswith("*")]
    return "; ".join(dict.fromkeys(lines)) or "(no output)"


def check_slurm(args: argparse.Namespace) -> None:
    """Everything that can be checked before anything is submitted; ValueError (one line)."""
    slurm_parameters(args, "check")
    missing = [c for c in CLIENTS if shutil.which(c) is None]
    if missing:
        raise ValueError(f"--executor slurm needs SLURM's client commands, but {', '.join(missing)} "
                         f"{'is' if len(missing) == 1 else 'are'} not on PATH: {INSTALL_HINT}")
    try:
        import submitit  # noqa: F401
    except ImportError:
        raise ValueError("--executor slurm needs the Python package submitit: pip install submitit "
                         "(make install does)") from None
    conf = os.environ.get("SLURM_CONF")
    if conf and not Path(conf).is_file():  # the clients would retry reading it for 60 s
        raise ValueError(f"SLURM_CONF names {conf}, which is not a file; point it at the cluster's "
                         f"slurm.conf (or unset it: the clients then read /etc/slurm/slurm.conf)")
    try:
        res = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=60)
        answer, ok = res.stdout + res.stderr, res.returncode == 0 and " UP" in res.stdout
    except subprocess.TimeoutExpired:
        answer, ok = "no answer within 60 s", False
    if not ok:
        raise ValueError(f"the SLURM controller does not answer (`scontrol ping`: {_one_line(answer)}); "
                         f"check that slurmctld runs and that SLURM_CONF (default /etc/slurm/slurm.conf) "
                         f"names it")


# --------------------------------------------------------------------------- the task

def _preempt_signal() -> signal.Signals:
    from submitit import JobEnvironment

    return getattr(signal, f"SIG{JobEnvironment.USR_SIG}")


class _TaskRunner(Runner):
    """The local executor's runner, whose children start with submitit's preemption signal blocked.

    SLURM delivers ``scancel --signal``/``--signal=USR2@90`` to every process of the task
    (proctrack/cgroup) or of its process group (proctrack/pgid); USR2's default action
    would kill the notebook's worker or kernel on the spot. Blocked there (the mask is
    inherited through exec, so by the kernel too), it reaches only this process, where
    submitit's handler calls ``UnitTask.checkpoint``."""

    def start(self, *args, **kwargs):
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {_preempt_signal()})
        try:
            return super().start(*args, **kwargs)
        finally:  # a signal that came meanwhile is delivered here, after the start
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


try:
    from submitit.helpers import Checkpointable as _Checkpointable
except ImportError:  # submitit missing: check_slurm says so before a task is ever built
    _Checkpointable = object  # type: ignore[assignment,misc]


def task_deadline(parameters: dict, started: float) -> float | None:
    """The deadline (``time.monotonic()``) of one array task's execution: the whole
    ``time_budget`` of its parameters (reproduce's ``--time-budget``) from ``started``, when
    this start of the task began running (module docstring, 5.); None without a budget."""
    budget = float(parameters.get("time_budget") or 0.0)
    return started + budget if budget > 0 else None


class UnitTask(_Checkpointable):
    """One array task: execute one unit of work (``reproduce.Unit``) as the local executor
    does; returns ``{"status": "ok"|"failed", "failure", "seconds", "host"}``.

    ``checkpoint`` (submitit calls it on USR2) interrupts the running notebook cleanly and
    returns this same task for requeueing; the rerun resumes the training from last.pth."""

    def __init__(self, unit, notebook: str, outputs: list[str], parameters: dict, kernel: str, cwd: str,
                 grace_s: float = CHECKPOINT_GRACE_S) -> None:
        self.unit, self.notebook, self.outputs, self.parameters = unit, notebook, outputs, parameters
        self.kernel, self.cwd, self.grace_s = kernel, cwd, grace_s
        self._runner = None

    def __getstate__(self) -> dict:  # the runner (threads, child processes) stays in this process
        return {**self.__dict__, "_runner": None}

    def __call__(self) -> dict:
        host = socket.gethostname()
        if self.unit.finished:  # requeued after its last epoch had been written
            print(f"[{self.unit.name}] finished already", flush=True)
            return {"status": "ok", "failure": None, "seconds": 0.0, "host": host}
        self.unit.status, self.unit.failure = "pending", None
        with tempfile.TemporaryDirectory(prefix="resnet-nb-task-") as tmp:
            self._runner = _TaskRunner(1, [], self.kernel, Path(self.cwd), Path(tmp),
                                       deadline=task_deadline(self.parameters, time.monotonic()))
            self._runner.run([(self.unit, Path(self.notebook), [Path(o) for o in self.outputs], self.parameters)])
            self._runner = None
        return {"status": self.unit.status, "failure": self.unit.failure, "seconds": self.unit.seconds,
                "host": host}

    def checkpoint(self, *args: Any, **kwargs: Any):
        runner, self._runner = self._runner, None
        if runner is not None:
            print(f"[{self.unit.name}] {_preempt_signal().name} (preemption or time limit): interrupting "
                  f"the notebook; the task is requeued and resumes from last.pth", flush=True)
            runner.stop(grace_s=self.grace_s)
        return super().checkpoint(*args, **kwargs)


# --------------------------------------------------------------------------- states

def squeue_states(job_ids: Sequence[str]) -> dict[str, tuple[str, str, str, int]] | None:
    """``{task id: (state, reason, nodes, restarts)}`` of the jobs SLURM still knows
    (``squeue -t all`` keeps ended ones for MinJobAge, 5 min by default); ``{}`` when it
    knows none of them, None when squeue did not answer (the caller polls again)."""
    ids = sorted({j.split("_")[0] for j in job_ids})
    if not ids:
        return {}
    try:
        res = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-j", ",".join(ids),
                              "-O", "JobArrayID:|,State:|,Reason:|,NodeList:|,RestartCnt:|"],
                             capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return None
    if res.returncode != 0:
        return {} if "Invalid job id" in res.stderr else None
    out = {}
    for line in res.stdout.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) >= 5:
            out[parts[0]] = (parts[1], parts[2], parts[3], int(parts[4]) if parts[4].isdigit() else 0)
    return out


def _job_paths(folder: Path, job_id: str):
    from submitit.core.utils import JobPaths

    return JobPaths(folder, job_id=job_id, task_id=0)


def _result(folder: Path, job_id: str) -> tuple[str, Any] | None:
    """submitit's outcome of an ended task: ("success", our dict) or ("error", traceback)."""
    path = _job_paths(folder, job_id).result_pickle
    if not path.is_file():
        return None
    try:
        with path.open("rb") as f:
            return pickle.load(f)
    except (OSError, EOFError, pickle.UnpicklingError):
        return None  # being written (submitit moves it into place; a shared filesystem may lag)


def _failure(notebook: str, ename: str, evalue: str) -> dict:
    return {"notebook": notebook, "cell": None, "execution_count": None, "ename": ename,
            "evalue": evalue, "source": ""}


# --------------------------------------------------------------------------- submit and wait

class _Watch:
    """One unit's job: its state as last printed and the read position in its log."""

    def __init__(self, unit, notebook_out: str, job_id: str, folder: Path, from_start: bool) -> None:
        self.unit, self.notebook_out, self.job_id = unit, notebook_out, job_id
        self.paths = _job_paths(folder, job_id)
        self.state = ""
        self.offset = 0 if from_start else (self.paths.stdout.stat().st_size if self.paths.stdout.is_file() else 0)
        self.gone_since: float | None = None
        self.restarts: int | None = None    # SLURM's restart count when first seen
        self.last_line = re.compile(rf"\[{re.escape(unit.name)}\] (done in \d+ s$|FAILED in )")

    def tail(self) -> None:
        """Print the complete lines the task's runner has added to its log (prefixed [unit])."""
        try:
            with self.paths.stdout.open("rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return
        end = data.rfind(b"\n") + 1
        if end:
            self.offset += end
            for line in data[:end].decode(errors="replace").splitlines():
                # the notebook's lines (submitit's own go to its .err too); not the runner's
                # last line, which the job's own line repeats
                if line.startswith("[") and not self.last_line.match(line):
                    print(line, flush=True)


def _load_jobs(path: Path) -> dict:
    from resnet_nb.runs.rundir import read_json

    try:
        return read_json(path) if path.is_file() else {}
    except ValueError:
        return {}


def _as_flags(params: dict) -> str:
    """The submitit parameters as the sbatch flags they become (for the progress output)."""
    flat = {k: v for k, v in params.items() if k not in ("job_name", "additional_parameters", "array_parallelism")}
    flat.update(params.get("additional_parameters", {}))
    text = " ".join(f"--{k.replace('_', '-')}" + ("" if v is True else f"={v}") for k, v in flat.items())
    return text + (f", at most {params['array_parallelism']} at once" if "array_parallelism" in params else "")


def _submit(tasks: list[UnitTask], folder: Path, params: dict) -> list[str]:
    """sbatch one array of ``tasks``; SLURM's refusal (unknown partition, resources the
    partition cannot give) becomes one ValueError line."""
    import submitit
    from submitit.core.utils import FailedJobError

    executor = submitit.SlurmExecutor(folder=folder)
    executor.update_parameters(**params)
    with contextlib.redirect_stderr(io.StringIO()):  # submitit prints sbatch's stderr on failure
        try:
            jobs = executor.submit_array(tasks)
        except FailedJobError as e:
            raise ValueError(f"SLURM refused the job array: {_one_line(str(e))}") from None
    return [j.job_id for j in jobs]


def run_units(jobs: Sequence[tuple], args: argparse.Namespace, base: Path, kernel: str, cwd: Path) -> None:
    """reproduce's executor for ``--executor slurm``: ``jobs`` are reproduce's (unit,
    notebook, outputs, parameters); sets each unit's status, failure and seconds."""
    if not jobs:
        return
    folder = base / SLURM_DIR
    folder.mkdir(parents=True, exist_ok=True)
    record_path = folder / JOBS_FILE
    record = _load_jobs(record_path)
    known = record.get("units", {})
    live = squeue_states([r["job_id"] for r in known.values() if r.get("job_id")])
    if live is None:  # submitting now could duplicate jobs that are still queued
        raise ValueError(f"squeue did not answer, so the jobs recorded in {record_path} could not be "
                         f"checked; run again when the controller answers (`scontrol ping`)")
    t0 = time.time()

    def say(w: _Watch, text: str) -> None:
        print(f"[{w.unit.name}] job {w.job_id}: {text} (+{time.time() - t0:.0f} s)", flush=True)

    watches: list[_Watch] = []
    to_submit = []
    for unit, nb, outs, params in jobs:
        job_id = known.get(unit.name, {}).get("job_id")
        state = live.get(job_id, ("",))[0] if job_id else ""
        if job_id and state in PENDING | RUNNING | {"COMPLETING"} and _result(folder, job_id) is None:
            w = _Watch(unit, str(outs[0]), job_id, folder, from_start=False)
            w.state = "pending" if state in PENDING else "running" if state in RUNNING else ""
            w.restarts = live[job_id][3]
            watches.append(w)
            say(w, f"attached ({state.lower()}; submitted {known[unit.name].get('submitted', '?')})")
        else:
            to_submit.append((unit, nb, outs, params))

    if to_submit:
        params = slurm_parameters(args, base.name)
        tasks = [UnitTask(u, str(nb), [str(o) for o in outs], p, kernel, str(cwd)) for u, nb, outs, p in to_submit]
        ids = _submit(tasks, folder, params)
        now = datetime.now().isoformat(timespec="seconds")
        for (unit, _, outs, _), job_id in zip(to_submit, ids):
            before = known.get(unit.name, {})
            known[unit.name] = {"job_id": job_id, "submitted": now, "runs": [str(d) for d in unit.run_dirs],
                                "previous": before.get("previous", []) + ([before["job_id"]] if before else [])}
            watches.append(_Watch(unit, str(outs[0]), job_id, folder, from_start=True))
        from resnet_nb.runs.rundir import atomic_write_json

        atomic_write_json(record_path, {"run_id": base.name, "units": known})
        print(f"reproduce: submitted {len(ids)} task(s) as SLURM job {ids[0].split('_')[0]} "
              f"({_as_flags(params)}); logs and {JOBS_FILE} in {folder}", flush=True)

    try:
        _wait(watches, folder, say)
    except KeyboardInterrupt:
        ids = " ".join(w.job_id for w in watches if w.unit.status == "pending")
        print(f"reproduce: stopped waiting; the SLURM jobs keep running (scancel {ids} stops them); "
              f"rerun with --run-id {base.name} to attach to them", flush=True)
        raise


def _wait(watches: list[_Watch], folder: Path, say) -> None:
    """Poll until every watched task has a result (or SLURM has ended it without one)."""
    active = list(watches)
    states: dict | None = None
    asked, delay = 0.0, 1.0   # squeue: every second after a change, backing off to every 10 s
    while active:
        if time.time() - asked >= delay:
            states, asked = squeue_states([w.job_id for w in active]), time.time()
            delay = min(10.0, delay * 1.3)
        changed = False
        for w in list(active):
            w.tail()
            outcome = _result(folder, w.job_id)
            if outcome is not None:
                w.tail()
                _finish(w, outcome)
                say(w, describe(w.unit))
                active.remove(w)
                changed = True
                continue
            if states is None:  # squeue did not answer (or is asked again next): no verdict yet
                continue
            state, reason, nodes, restarts = states.get(w.job_id, ("", "", "", 0))
            if w.restarts is None:
                w.restarts = restarts
            elif restarts > w.restarts:  # requeued: by submitit's checkpoint (USR2) or by SLURM
                w.restarts, w.state, changed = restarts, "", True
                say(w, f"requeued (restart {restarts})")
            if state == "COMPLETING":
                w.gone_since = None
                continue
            kind = "pending" if state in PENDING else "running" if state in RUNNING else ""
            if kind == "pending" and reason in NEVER_STARTS:
                subprocess.run(["scancel", w.job_id], capture_output=True, timeout=120)
                w.unit.status = "failed"
                w.unit.failure = _failure(w.notebook_out, "SlurmJobError",
                                          f"SLURM will not start job {w.job_id} as requested (pending, reason "
                                          f"{reason}); it was cancelled: change the --slurm-* options")
                say(w, describe(w.unit))
                active.remove(w)
                changed = True
                continue
            if kind:
                w.gone_since = None
                if kind != w.state:
                    text = f"pending ({reason})" if kind == "pending" and reason not in ("", "None") else kind
                    text += f" on {nodes}" if kind == "running" and nodes else ""
                    say(w, text)
                    w.state, changed = kind, True
                continue
            # ended, or forgotten by SLURM, without a result file (yet: a shared filesystem may lag)
            w.gone_since = w.gone_since or time.time()
            if time.time() - w.gone_since > RESULT_GRACE_S:
                ended = f"ended {state}" if state else "is no longer known to SLURM"
                w.unit.status = "failed"
                w.unit.failure = _failure(w.notebook_out, "SlurmJobError",
                                          f"job {w.job_id} {ended} without a result; see {w.paths.stderr}")
                say(w, describe(w.unit))
                active.remove(w)
                changed = True
        states = None if changed else states   # a state changed: ask squeue again now
        if changed:
            asked, delay = 0.0, 1.0
        if active:
            time.sleep(1.0)  # the result files and logs: every second


def _finish(w: _Watch, outcome: tuple[str, Any]) -> None:
    kind, value = outcome
    if kind == "success" and isinstance(value, dict):
        w.unit.status, w.unit.failure = value["status"], value.get("failure")
        w.unit.seconds = float(value.get("seconds") or 0.0)
        return
    lines = [ln for ln in str(value).strip().splitlines() if ln.strip()]
    ename, _, evalue = (lines[-1] if lines else "error").partition(": ")
    w.unit.status = "failed"
    w.unit.failure = _failure(w.notebook_out, ename.split(".")[-1],
                              f"{evalue} (job {w.job_id}; log {w.paths.stderr})")

