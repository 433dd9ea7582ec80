"""The write side of the run-directory contract: ``RunWriter`` owns one run dir's life.

A training process (``resnet_nb.training.loop.train_pack``, for one model or a pack) does, per
member and in this order:

1. ``inspect_run(cfg, device_type, restart)``: look at the run dir without a lock (a new
   run, a run to resume from last.pth, a finished run, or a refusal: another config, another
   device type, a last.pth of another augmentation stream, unreadable files). Nothing is
   created or deleted.
2. load the data, then ``RunWriter.claim(cfg, ...)``: lock the run dir and look again when
   another process wrote into it meanwhile; remove the temporary files of writes cut short;
   a fresh run drops stale checkpoints and metrics.
3. ``start(...)``: config.json (``format_version``, every TrainConfig field, environment,
   dataset, status ``running``, ``executed_by``: how this process was started, appended to
   the record of the processes before, see ``how_trained``) and metrics.json.
4. ``save_epoch(...)`` after every epoch: metrics.json, best.pth when the test accuracy
   improved, last.pth; in that order, so a kill between the writes resumes from the
   previous epoch and rewrites the same files.
5. ``finish(status, error, runtime)``: finished | failed | interrupted | paused (the time
   budget stopped it at an epoch boundary; last.pth holds that epoch, a rerun resumes), with
   what this process really ran (``step.TrainStep.counts()``: CUDA-graph captures, graph
   and eager steps, the capture failure), added to the totals of the processes before;
   ``release()`` the lock.

Every write is atomic (``resnet_nb.runs.rundir``); a full disk is a one-line ``NoSpaceError``
naming the last good checkpoint (``no_space_message``).
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

import torch

from resnet_nb.data.augment import AUGMENT_SCHEME
from resnet_nb.runs import rundir
from resnet_nb.runs.rundir import (
    BEST_FILE,
    CONFIG_FILE,
    FORMAT_VERSION,
    LAST_FILE,
    METRICS_FILE,
    atomic_write_json,
    run_dir_of,
)
from resnet_nb.training.config import TrainConfig, config_diff

__all__ = ["Seen", "inspect_run", "RunWriter", "check_fingerprint", "start_over", "no_space_message", "now",
           "merge_runtime", "how_trained", "papermill_notebooks"]


def now() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


class Seen(NamedTuple):
    """What a run dir held when ``inspect_run`` looked (``state``: ``runs.dir_state``)."""

    run_dir: Path
    ckpt: dict | None        # last.pth, when the run resumes from it
    meta_old: dict | None    # config.json (or rebuilt from last.pth), when the run resumes
    finished: bool
    state: tuple


def inspect_run(cfg: TrainConfig, device_type: str, restart: bool) -> Seen:
    """What ``cfg``'s run dir holds (read-only; ``RunWriter.claim`` looks again under the lock).

    A stored run with another config or device type, or whose last.pth another augmentation
    stream wrote (``_check_augment``), is refused (one-line ValueError). When
    config.json is missing or unreadable, the config comes from last.pth (which stores it)
    and config.json is rebuilt from it; when neither can be read the run's files are kept
    and the run refused (``--restart`` discards them). Nothing is ever deleted here.
    """
    run_dir = run_dir_of(cfg.out_dir, cfg.run_id, cfg.run_name)
    _check_writable(run_dir)
    state = rundir.dir_state(run_dir)
    if restart:
        return Seen(run_dir, None, None, False, state)
    meta_old, problem = _read_meta(run_dir)
    ckpt = None
    if meta_old is None:
        work = [n for n in (LAST_FILE, BEST_FILE, METRICS_FILE) if (run_dir / n).is_file()]
        if not work:
            return Seen(run_dir, None, None, False, state)       # a new run (or nothing to lose)
        ckpt, why = _try_checkpoint(run_dir / LAST_FILE)
        if ckpt is None:
            files = ", ".join(([CONFIG_FILE] if problem != "missing" else []) + work)
            raise ValueError(f"{run_dir}: {CONFIG_FILE} is {problem} and {LAST_FILE} {why}, so the "
                             f"stored config cannot be checked; the files ({files}) are kept: "
                             f"restore {CONFIG_FILE} from a copy; or, {start_over()}")
        meta_old = {"config": ckpt["config"], "preset": ckpt["config"].get("preset"),
                    "status": "interrupted", "resumed": []}
        print(f"{run_dir}: {CONFIG_FILE} is {problem}; rebuilding it from {LAST_FILE} "
              f"(epoch {ckpt.get('epoch')})", flush=True)
    stored = meta_old["config"]
    if ckpt is None and (run_dir / LAST_FILE).is_file():
        ckpt = _load_checkpoint(run_dir / LAST_FILE)
        stored = ckpt.get("config", stored)
    diff = config_diff(stored, cfg)
    if diff:
        raise ValueError(f"{run_dir} holds a run with another config: {_describe_diff(diff)}; "
                         f"use the stored values; or, {start_over('to train this config')}")
    if ckpt is not None and ckpt.get("device_type", device_type) != device_type:
        raise ValueError(f"{run_dir / LAST_FILE} was written on {ckpt['device_type']}; resume it on "
                         f"the same device type (--device {ckpt['device_type']}); or, {start_over()}")
    if meta_old.get("status") == "finished" and ckpt is not None:
        print(f"{run_dir}: already finished ({len(ckpt.get('metrics', []))} epochs); "
              f"{start_over('to train it again')}", flush=True)
        return Seen(run_dir, ckpt, meta_old, True, state)
    if ckpt is not None:
        _check_augment(ckpt, run_dir / LAST_FILE)
    return Seen(run_dir, ckpt, meta_old if ckpt is not None else None, False, state)


def _check_augment(ckpt: dict, path: Path) -> None:
    """A checkpoint resumes only in the data stream it was written in (``augment.AUGMENT_SCHEME``,
    ``rng["augment"]``): resuming another would give the run a stream no uninterrupted run of
    its seed has (one-line ValueError)."""
    rng = ckpt.get("rng")
    scheme = rng.get("augment") if isinstance(rng, dict) else None
    if scheme == AUGMENT_SCHEME:
        return
    old = ("an older resnet-nb that drew the crops and flips per batch" if scheme is None
           else f"a resnet-nb that drew the crops and flips as {scheme!r}")
    raise ValueError(f"{path} was written by {old}; this one draws them once per epoch ({AUGMENT_SCHEME!r}), "
                     f"so resuming would not continue the run's random stream; it is kept as it is: finish "
                     f"it with the resnet-nb that started it; or, {start_over()}")


def check_fingerprint(seen: Seen, fingerprint: str) -> None:
    """A resumed run must see the data it was trained on (one-line ValueError otherwise)."""
    ckpt = seen.ckpt
    if ckpt is not None and ckpt.get("dataset_fingerprint") != fingerprint:
        raise ValueError(f"the data differs from the data {seen.run_dir} was trained on (fingerprint "
                         f"{fingerprint[:12]} vs {str(ckpt.get('dataset_fingerprint'))[:12]}); "
                         f"point --data-root at the same data; or, {start_over('to train it on this data')}")


def start_over(goal: str = "to train the run from the start") -> str:
    """The way out that every refusal to resume a run dir ends with, worded for each entry
    point that trains (resnet-nb train, resnet-nb reproduce, the 02_train notebook): another
    run id works in all of them; ``--restart`` is resnet-nb train's only, and discards the run."""
    return (f"{goal}, use another --run-id (run_id in the 02_train notebook; "
            f"this run dir is kept), or resnet-nb train --restart (discards its checkpoints and metrics)")


def _check_writable(path: Path) -> None:
    """Fail before any training when ``path`` cannot be created or written."""
    p = path
    while not p.exists():
        p = p.parent
    if not p.is_dir():
        raise ValueError(f"cannot create the run directory {path}: {p} is a file; choose another --out-dir")
    if not os.access(p, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write the run directory {path}: {p} is not writable; "
                         f"choose a writable --out-dir")


def _describe_diff(diff: dict) -> str:
    return ", ".join(f"{k} (stored {a!r}, now {b!r})" for k, a, b in ((k, *v) for k, v in diff.items()))


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else ""


def _load_checkpoint(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - truncated or foreign file
        raise ValueError(f"{path} cannot be read ({type(e).__name__}: {_first_line(e)}); it is kept: "
                         f"restore it from a copy; or, {start_over()}") from None


def _read_meta(run_dir: Path) -> tuple[dict | None, str | None]:
    """config.json as a dict with a ``config`` dict, or (None, what is wrong with it)."""
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        return None, "missing"
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        return None, f"unreadable ({type(e).__name__}: {_first_line(e)})"
    if not (isinstance(meta, dict) and isinstance(meta.get("config"), dict)):
        return None, "not a run's config (no \"config\" object)"
    return meta, None


def _try_checkpoint(path: Path) -> tuple[dict | None, str]:
    """(last.pth with its stored config, "") or (None, why it cannot be used)."""
    if not path.is_file():
        return None, "is missing"
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - truncated or foreign file
        return None, f"cannot be read ({type(e).__name__}: {_first_line(e)})"
    if not (isinstance(ckpt, dict) and isinstance(ckpt.get("config"), dict)):
        return None, "holds no config"
    return ckpt, ""


def no_space_message(err: OSError, saved_epoch: int, run_dir: Path) -> str:
    """"no space left on <dir>; last good checkpoint is epoch N" (+ what to do)."""
    where = Path(err.filename).parent if isinstance(err.filename, str) else run_dir
    head = f"no space left on {where}"
    ckpt = (f"last good checkpoint is epoch {saved_epoch}" if saved_epoch
            else "no checkpoint was written yet")
    return f"{head}; {ckpt}; free some space and rerun the same command to resume"


def merge_runtime(before: dict | None, process: dict | None) -> dict | None:
    """config.json's ``runtime``: the totals of the processes that trained a run so far
    (``before``, None for none) plus one process's ``TrainStep.counts()``."""
    if process is None:
        return before
    out = {"graph_requested": False, "captures": 0, "graph_steps": 0, "eager_steps": 0, "fallbacks": [],
           **(before or {})}
    out["graph_requested"] = bool(out["graph_requested"] or process.get("graph_requested"))
    for k in ("captures", "graph_steps", "eager_steps"):
        out[k] = int(out.get(k) or 0) + int(process.get(k) or 0)
    reason = process.get("fallback")
    out["fallbacks"] = list(out.get("fallbacks") or []) + ([reason] if reason and reason not in out["fallbacks"] else [])
    # evaluation's counts (evaluation.EvalForward); absent = not recorded, and they stay absent when
    # an earlier process of the run did not record them (a partial total would mislead)
    if "eval_captures" in process and (before is None or "eval_captures" in before):
        out["eval_graph_requested"] = bool(out.get("eval_graph_requested") or process.get("eval_graph_requested"))
        for k in ("eval_captures", "eval_graph_batches", "eval_eager_batches"):
            out[k] = int(out.get(k) or 0) + int(process.get(k) or 0)
        seen, reason = list(out.get("eval_fallbacks") or []), process.get("eval_fallback")
        out["eval_fallbacks"] = seen + ([reason] if reason and reason not in seen else [])
    return out


def _in_kernel() -> bool:
    """True inside a Jupyter kernel (JupyterLab, nbval, papermill)."""
    if "IPython" not in sys.modules:
        return False
    from IPython import get_ipython

    return getattr(get_ipython(), "kernel", None) is not None


def how_trained(run_dir: str | os.PathLike, epoch: int = 0) -> dict:
    """How this process trains ``run_dir`` from ``epoch`` on, for config.json's ``executed_by``:

    * ``{"by": "papermill", "notebook": "02_train.ipynb", "source": ...}``: a kernel that
      ``executor.execute_notebook`` started (``reproduce``, the cluster tasks), whose executed
      notebook is written into the run dir (``notebook``: relative to it; an absolute path
      when papermill wrote it elsewhere). ``resnet-nb publish`` expects it exactly there;
    * ``{"by": "jupyter"}``: any other kernel (JupyterLab, nbval, papermill called by hand):
      no executed notebook is known;
    * ``{"by": "cli", "argv": [...]}``: ``resnet-nb train``; ``{"by": "python", "argv": [...]}``:
      any other process (a script, a test).
    """
    from resnet_nb.runs.rundir import PAPERMILL_ENV

    out: dict = {"epoch": int(epoch), "time": now()}
    raw = os.environ.get(PAPERMILL_ENV)
    if raw and _in_kernel():
        try:
            spec = json.loads(raw)
        except ValueError:
            spec = {}
        outputs = [Path(o) for o in (spec.get("outputs") or []) if isinstance(o, str)]
        here = Path(run_dir).resolve()
        mine = next((o for o in outputs if o.parent.resolve() == here), None)
        notebook = mine.name if mine else (str(outputs[0]) if outputs else None)
        return {"by": "papermill", "notebook": notebook, "source": Path(str(spec.get("notebook", ""))).name or None,
                **out}
    if _in_kernel():
        return {"by": "jupyter", **out}
    argv = [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv and sys.argv[0] else list(sys.argv[1:])
    cli = argv[:2] in (["resnet-nb", "train"], ["cli.py", "train"])
    return {"by": "cli" if cli else "python", "argv": argv, **out}


def papermill_notebooks(run: dict) -> list[Path]:
    """Where the executed notebooks of ``run`` (a ``runs.load_run`` record) must be: one per
    process that papermill executed (``executed_by``), relative paths taken in the run dir;
    empty when no process was papermill or the run dir predates the record."""
    out = []
    for rec in run.get("executed_by") or []:
        if isinstance(rec, dict) and rec.get("by") == "papermill" and rec.get("notebook"):
            nb = Path(rec["notebook"])
            path = nb if nb.is_absolute() else Path(run["path"]) / nb
            if path not in out:
                out.append(path)
    return out


def _fmt(v, spec: str) -> str:
    return "  -   " if v is None else format(v, spec)


class RunWriter:
    """One run dir while this process trains into it: its lock, config.json, metrics.json,
    best.pth and last.pth, and the lines the run prints. ``claim`` makes one."""

    def __init__(self, cfg: TrainConfig, seen: Seen, lock: rundir.RunLock | None) -> None:
        self.cfg, self.seen, self.lock, self.run_dir = cfg, seen, lock, seen.run_dir
        ck = seen.ckpt
        self.metrics: list[dict] = list(ck["metrics"]) if ck else []
        self.best_acc: float = ck["best_acc"] if ck else -1.0
        self.best_epoch: int = ck["best_epoch"] if ck else 0
        self.saved: int = ck["epoch"] if ck else 0     # the epoch last.pth holds (0: none yet)
        self.meta: dict = {}
        self.failed = False

    @classmethod
    def claim(cls, cfg: TrainConfig, device_type: str, restart: bool, seen: Seen) -> "RunWriter":
        """Create and lock the run dir; the writer's ``seen`` is the run dir as it is now.

        ``seen`` was inspected before the data loaded, without the lock: another process may
        have trained into the run dir since. So the run files are compared with what was
        seen and, when they changed, inspected again under the lock (a finished run is
        ``seen.finished``, another config is refused); with ``restart`` a changed dir is
        refused, since the user chose to discard what was there before, not what another
        process wrote since. Then the temporary files of writes cut short are removed and a
        fresh run drops stale checkpoints and metrics.
        """
        lock = rundir.lock_run_dir(seen.run_dir)
        try:
            if rundir.dir_state(seen.run_dir) != seen.state:
                if restart:
                    raise ValueError(f"{seen.run_dir} changed while this command was loading the data "
                                     f"(another process trained into it); nothing was deleted: rerun "
                                     f"the command to see what it holds now")
                seen = inspect_run(cfg, device_type, restart)
            rundir.remove_stale_tmp_files(seen.run_dir)
            if not seen.finished and (restart or seen.ckpt is None):
                for name in (LAST_FILE, BEST_FILE, METRICS_FILE):
                    (seen.run_dir / name).unlink(missing_ok=True)
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        return cls(cfg, seen, lock)

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    # ------------------------------------------------------------------ writes
    def start(self, *, environment: dict, dataset: dict, params: int, iters_per_epoch: int,
              epochs_planned: int, **extra) -> None:
        """config.json with status ``running`` (keeping the history of a resumed run), and
        metrics.json as far as last.pth goes."""
        old = self.seen.meta_old
        self.meta = {
            "format_version": FORMAT_VERSION, "config": asdict(self.cfg), "preset": self.cfg.preset,
            "environment": environment, "dataset": dataset, "status": "running",
            "start_time": now(), "end_time": None, "params": params,
            "iters_per_epoch": iters_per_epoch, "epochs_planned": epochs_planned,
            "best_test_acc": self.best_acc if self.best_epoch else None,
            "best_epoch": self.best_epoch or None, "error": None, "resumed": [], "runtime": None,
            **extra, **rundir.process_info(),
        }
        self.meta["executed_by"] = [how_trained(self.run_dir, self.saved)]
        if old is not None:  # keep the history of the run being resumed
            self.meta["start_time"] = old.get("start_time") or self.meta["start_time"]
            self.meta["runtime"] = old.get("runtime")
            self.meta["resumed"] = list(old.get("resumed", [])) + [{"time": now(), "epoch": self.saved}]
            self.meta["executed_by"] = list(old.get("executed_by") or []) + self.meta["executed_by"]
        atomic_write_json(self.run_dir / CONFIG_FILE, self.meta)
        atomic_write_json(self.run_dir / METRICS_FILE, self.metrics)

    def save_epoch(self, record: dict, model_state: dict, last_state: dict, normalization: dict) -> None:
        """Append ``record``; write metrics.json, best.pth (when the test accuracy improved)
        and last.pth (``last_state``: optimiser, RNG states, ... of this member)."""
        e, it = record["epoch"], record["iteration"]
        self.metrics.append(record)
        atomic_write_json(self.run_dir / METRICS_FILE, self.metrics)
        if record["test_acc"] is not None and record["test_acc"] > self.best_acc:
            self.best_acc, self.best_epoch = record["test_acc"], e
            rundir.atomic_save({"model": model_state, "config": asdict(self.cfg), "epoch": e,
                              "iteration": it, "test_acc": self.best_acc,
                              "normalization": normalization}, self.run_dir / BEST_FILE)
        rundir.atomic_save({"model": model_state, **last_state, "epoch": e, "iteration": it,
                          "best_acc": self.best_acc, "best_epoch": self.best_epoch,
                          "metrics": self.metrics, "config": asdict(self.cfg),
                          "normalization": normalization}, self.run_dir / LAST_FILE)
        self.saved = e

    def finish(self, status: str, error: str | None = None, runtime: dict | None = None) -> None:
        """Record the final status in config.json, and ``runtime``, what this process ran
        (``TrainStep.counts()``, added to the totals before it); a failure to write it (a
        full disk) is reported on stderr and does not hide the error that ended the run."""
        if status not in rundir.STATUSES:
            raise ValueError(f"unknown run status {status!r}; one of {', '.join(rundir.STATUSES)}")
        self.failed = status == "failed"
        self.meta.update(status=status, end_time=now(), error=error,
                         best_test_acc=self.best_acc if self.best_epoch else None,
                         best_epoch=self.best_epoch or None,
                         runtime=merge_runtime(self.meta.get("runtime"), runtime))
        try:
            atomic_write_json(self.run_dir / CONFIG_FILE, self.meta)
        except OSError as e:
            print(f"{self.run_dir}: could not record status {status!r} in {CONFIG_FILE}: {e}",
                  file=sys.stderr, flush=True)

    # ------------------------------------------------------------------ lines
    def no_space_message(self, err: OSError) -> str:
        return no_space_message(err, self.saved, self.run_dir)

    def epoch_line(self, r: dict, n_epochs: int) -> str:
        """One line per epoch on stdout (papermill shows it; nothing parses it)."""
        width = len(str(n_epochs))
        val = f" | val loss {_fmt(r['val_loss'], '.4f')} acc {_fmt(r['val_acc'], '.4f')}" if "val_loss" in r else ""
        return (f"{self.cfg.run_name} epoch {r['epoch']:{width}d}/{n_epochs} it {r['iteration']} | train loss "
                f"{r['train_loss']:.4f} acc {r['train_acc']:.4f} | test loss {_fmt(r['test_loss'], '.4f')} "
                f"acc {_fmt(r['test_acc'], '.4f')}{val} | lr {r['lr']:.4g} | {r['time']:.1f} s")

    def finished_line(self, epoch: int, iteration: int, elapsed: float, note: str = "") -> str:
        best = (f"best test acc {self.best_acc:.4f} at epoch {self.best_epoch}" if self.best_epoch
                else "no evaluation")
        return (f"{self.cfg.run_name}: finished {epoch} epochs, {iteration} iterations, {best}; "
                f"{elapsed:.1f} s{note}; {self.run_dir}")
