"""Training entry points: one recipe for every model (He et al. 2016, sec. 4.2).

``train(cfg)`` trains one ``TrainConfig`` into its run directory ``<out_dir>/<run_id>/<run_name>/``
(``resnet_nb.runs.rundir``, docs/run-directory.md); ``train_many(cfgs)`` trains several into one run
id, same-depth configs packed into one network on CUDA. The steps: ``prepare`` (images on the
device), ``loop`` (epochs, evaluation, divergence, time budget), ``step`` (one SGD step),
``schedule`` (optimiser, learning rate), ``run_writer`` (the run dir's files, exact resume).

A stored run is resumed only by a config that differs from it at most in
``config.NON_MATH_FIELDS`` (where things are, not what is computed); otherwise it is refused with
the differing fields (``restart=True`` starts it over). With ``run_id=""`` the newest unfinished
matching run is resumed, else a new ``repro-YYYYmmdd-HHMMSS`` is made. A NaN or infinite loss
stops its run (``TrainingDiverged``). ``time_budget`` pauses at the epoch boundary where the next
epoch would not fit; ``resnet-nb train`` then exits with ``EXIT_PAUSED`` (75) and rerunning resumes.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import fields, replace
from datetime import datetime
from pathlib import Path

from resnet_nb.runs import rundir
from resnet_nb.runs.rundir import CONFIG_FILE, read_json
from resnet_nb.training.budget import Budget
from resnet_nb.training.config import (
    NON_MATH_FIELDS,
    PRESETS,
    TrainConfig,
    add_field_arguments,
    cli_value,
    config_diff,
    make_config,
)
from resnet_nb.training.loop import plan_packs, train_pack

__all__ = ["TrainingDiverged", "train", "train_many", "resolve_run_ids", "add_arguments", "run_cli",
           "EXIT_PAUSED", "paused_runs"]

UNFINISHED = rundir.UNFINISHED        # running, interrupted, paused: a rerun resumes them
EXIT_PAUSED = 75                    # EX_TEMPFAIL (sysexits.h): paused by the time budget, rerun to resume


class TrainingDiverged(RuntimeError):
    """The training loss (or an evaluation loss) became NaN or infinite."""


def train(cfg: TrainConfig, restart: bool = False) -> Path:
    """Train ``cfg`` into its run directory and return the directory's path.

    Resumes from ``last.pth`` when the directory holds a compatible run (see the module
    docstring), returns at once when that run is already finished, refuses a stored run
    whose config differs. ``restart`` discards the stored run's checkpoints and metrics.
    Raises ``TrainingDiverged`` on a NaN/inf loss (status "failed"); KeyboardInterrupt
    leaves status "interrupted" and a resumable ``last.pth``; a full disk raises
    ``runs.NoSpaceError`` naming the last good checkpoint (status "failed"). When
    ``cfg.time_budget`` stops it, the run is "paused" (``paused_runs`` tells).
    """
    budget = Budget(cfg.time_budget)
    done = train_pack(resolve_run_ids([cfg], restart), restart, budget)[0]
    if done.diverged:
        raise TrainingDiverged(done.diverged)
    return done.run_dir


def train_many(cfgs: list[TrainConfig], restart: bool = False, pack: bool | None = None) -> list[Path]:
    """Train several configs into one run id; returns their run dirs (in ``cfgs`` order).

    Configs with an empty run_id share one id (a pending matching run's, else a new one).
    Same-depth configs with the same recipe train as one packed network
    (``resnet_nb.training.loop``; each member still writes its own run dir) on CUDA, or on any
    device with ``pack=True``; ``pack=False`` trains them one after the other. A run that
    diverges is reported on stderr and the others still train. The packs share one time
    budget (the largest ``time_budget`` of ``cfgs``), counted from this call: a pack that
    would start after it is spent is paused before its first epoch.
    """
    budget = Budget(max((c.time_budget for c in cfgs), default=0.0))
    cfgs = resolve_run_ids(list(cfgs), restart)
    paths: list[Path | None] = [None] * len(cfgs)
    for idxs in plan_packs(cfgs, pack):
        for i, done in zip(idxs, train_pack([cfgs[i] for i in idxs], restart, budget)):
            if done.diverged:
                print(f"{cfgs[i].run_name}: FAILED: {done.diverged}", file=sys.stderr, flush=True)
            paths[i] = done.run_dir
    return paths


# --------------------------------------------------------------------------- run ids

def _stored_config(run_dir: Path) -> dict | None:
    try:
        return read_json(run_dir / CONFIG_FILE).get("config")
    except (OSError, ValueError, AttributeError):
        return None


def paused_runs(run_dirs) -> list[Path]:
    """The run dirs among ``run_dirs`` whose config.json says ``paused`` (the time budget
    stopped them; rerunning the same command resumes them)."""
    return [Path(d) for d in run_dirs if rundir.stored_status(Path(d)) == "paused"]


def _new_run_id() -> str:
    return datetime.now().strftime("repro-%Y%m%d-%H%M%S")


def _with_names(cfg: TrainConfig) -> TrainConfig:
    return cfg if cfg.run_name else replace(cfg, run_name=cfg.model)


def _pending_run_id(cfgs: list[TrainConfig]) -> str | None:
    """The newest run id under the configs' out_dir that holds an unfinished (running,
    interrupted or paused), unlocked run of one of them and no run whose stored config differs."""
    out = Path(cfgs[0].out_dir).expanduser()
    if not out.is_dir():
        return None
    candidates = []
    for rid_dir in out.iterdir():
        dirs = [(c, rid_dir / c.run_name) for c in cfgs if (rid_dir / c.run_name / CONFIG_FILE).is_file()]
        if not dirs:
            continue
        if any(config_diff(_stored_config(d) or {}, replace(c, run_id=rid_dir.name)) for c, d in dirs):
            continue
        if any(rundir.is_locked(d) for _, d in dirs):
            continue
        if any(rundir.stored_status(d) in UNFINISHED for _, d in dirs):
            candidates.append((max((d / CONFIG_FILE).stat().st_mtime for _, d in dirs), rid_dir.name))
    return max(candidates)[1] if candidates else None


def resolve_run_ids(cfgs: list[TrainConfig], restart: bool = False) -> list[TrainConfig]:
    """Fill empty run_name (-> model) and run_id (-> a pending matching run, else one new
    id shared by all configs that have none)."""
    cfgs = [_with_names(c) for c in cfgs]
    empty = [c for c in cfgs if not c.run_id]
    if not empty:
        return cfgs
    rid = None if restart else _pending_run_id(empty)
    if rid is None:  # a new id; never one that already exists (two runs in one second)
        base = rid = _new_run_id()
        k = 1
        while (Path(empty[0].out_dir).expanduser() / rid).exists():
            k += 1
            rid = f"{base}-{k}"
    return [c if c.run_id else replace(c, run_id=rid) for c in cfgs]


# --------------------------------------------------------------------------- CLI

def _presets_epilog() -> str:
    lines = ["presets (values that differ from the defaults above = seed):"]
    for name, values in PRESETS.items():
        items = [f"{k.replace('_', '-')}={cli_value(v)}" for k, v in values.items()] or ["(the defaults)"]
        for i in range(0, len(items), 4):
            lines.append(f"  {name if i == 0 else '':6s} {' '.join(items[i:i + 4])}")
    lines += [
        "",
        "examples:",
        "  resnet-nb train --preset smoke --model resnet20 --dataset synthetic",
        "  resnet-nb train --preset seed --model resnet56 --run-id my-run",
        "  resnet-nb train --preset paper --model resnet110   # gets the paper's warm-up (lr 0.01, 400 iterations)",
        "",
        "Rerunning the same command resumes an unfinished run from last.pth (also after kill -9,",
        f"and after --time-budget paused it: the command then exits with status {EXIT_PAUSED});",
        "a run dir holding another config is refused with the differing fields; --restart starts",
        "over. Fields that may differ on resume: " + ", ".join(NON_MATH_FIELDS) + ".",
        "Output: <out-dir>/<run-id>/<run-name>/{config.json, metrics.json, best.pth, last.pth}.",
    ]
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """``resnet-nb train``: one flag per TrainConfig field, plus --preset and --restart."""
    p.formatter_class = argparse.RawDescriptionHelpFormatter  # the epilog keeps its layout
    p.epilog = _presets_epilog()

    def one_line_error(message: str):  # a bad flag value: one line, not the whole usage
        p.exit(2, f"{p.prog}: error: {message} (see {p.prog} --help)\n")
    p.error = one_line_error
    p.add_argument("--preset", choices=list(PRESETS), default="seed",
                   help="starting values (default: seed); every flag below overrides them")
    p.add_argument("--restart", action="store_true",
                   help="discard the run dir's checkpoints and metrics and start over")
    add_field_arguments(p, [f.name for f in fields(TrainConfig) if f.name != "preset"])


def run_cli(args: argparse.Namespace) -> int:
    names = [f.name for f in fields(TrainConfig) if f.name != "preset"]
    overrides = {n: getattr(args, n) for n in names if hasattr(args, n)}
    cfg = make_config(args.preset, **overrides)
    try:
        run_dir = train(cfg, restart=args.restart)
    except TrainingDiverged as e:
        print(f"resnet-nb train: error: {e}", file=sys.stderr)
        return 1
    print(f"run dir: {run_dir}")
    if paused_runs([run_dir]):
        print(f"resnet-nb train: paused by --time-budget (exit status {EXIT_PAUSED}); rerun the same "
              f"command to resume", file=sys.stderr)
        return EXIT_PAUSED
    return 0
