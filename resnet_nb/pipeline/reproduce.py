"""``resnet-nb reproduce``: the whole reproduction through the notebooks, with papermill.

It builds one ``TrainConfig`` per model and seed of the preset and checks everything it can
before any work (values, data, the Jupyter kernel, run dirs of the same run id that hold another
config); plans execution units (on CUDA one per depth, packed; on a CPU one per model, two at a
time on a core each); executes ``02_train`` once per unit, locally (``pipeline.executor``,
``--parallel``) or as a SLURM job array (``pipeline.cluster``), keeping each executed notebook
in its run dir; then ``01_theory`` and ``03_analysis`` into ``report/figures/<run id>/``. Finished
units are skipped and unfinished ones resume from ``last.pth``, so rerunning the same command
continues. ``--time-budget`` is a deadline for the whole reproduction (locally) or per array task
(SLURM): trainings pause at an epoch boundary, the notebooks after them wait for the rerun that
finishes every run, and the exit status is 75. docs/reproducing.md has the options.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

from resnet_nb.analysis.aggregate import THEORY_FIGURE_FILES, figures_dir_of
from resnet_nb.analysis.probes import FULL_PROBE, SMOKE_PROBE, THEORY_JSON
from resnet_nb.data.cifar10 import load_dataset
from resnet_nb.models.resnet import MODEL_SETS, SEED_MODELS, expand_models, parse_model_name
from resnet_nb.pipeline import cluster
from resnet_nb.pipeline.executor import KERNEL, Runner, check_kernel, describe
from resnet_nb.pipeline.notebook import check_run_dirs, project_root, split_list
from resnet_nb.runs.rundir import load_run, run_dir_of, stored_status
from resnet_nb.training.config import PAPER_WARMUP, TrainConfig, add_field_arguments, coerce_field, make_config
from resnet_nb.training.train import EXIT_PAUSED, paused_runs, resolve_run_ids

__all__ = ["Unit", "plan_units", "theory_parameters", "analysis_waits_for", "add_arguments", "run_cli"]

# TrainConfig fields with a reproduce flag of their own: one value for every run
_FIELD_FLAGS = ("dataset", "data_root", "allow_noncanonical", "device", "out_dir", "run_id", "pack_mode")
# ... and those it sets otherwise (--preset, --models, --seeds): --set cannot give any of them
_OWN_FLAGS = {"preset": "--preset", "model": "--models", "seed": "--seeds", "time_budget": "--time-budget",
              **{name: "--" + name.replace("_", "-") for name in _FIELD_FLAGS}}


def _status(cfg) -> str | None:
    return stored_status(run_dir_of(cfg.out_dir, cfg.run_id, cfg.run_name))


# --------------------------------------------------------------------------- planning

@dataclass
class Unit:
    """One papermill execution of 02_train: one config (CPU) or a same-depth pack (CUDA)."""

    name: str
    cfgs: list
    status: str = "pending"          # pending | skipped | ok | failed | paused (by --time-budget)
    failure: dict | None = None
    seconds: float = 0.0
    log: list[str] = field(default_factory=list)
    note: str = ""                   # why it is paused (executor.describe shows it)

    @property
    def run_dirs(self) -> list[Path]:
        return [run_dir_of(c.out_dir, c.run_id, c.run_name) for c in self.cfgs]

    @property
    def finished(self) -> bool:
        return all(_status(c) == "finished" for c in self.cfgs)

    def parameters(self, several_seeds: bool) -> dict:
        """The papermill parameters of this unit (names 1:1 with TrainConfig + extras)."""
        base = asdict(self.cfgs[0])
        defaults = asdict(TrainConfig())
        params = {k: v for k, v in base.items()
                  if k in ("preset", "run_id", "out_dir", "dataset") or v != defaults[k]}
        params = {k: (",".join(map(str, v)) if isinstance(v, tuple) else v) for k, v in params.items()}
        params.pop("run_name", None)
        params.pop("model", None)
        params.pop("seed", None)
        deep = any(parse_model_name(c.model)[1] >= PAPER_WARMUP["min_depth"] for c in self.cfgs)
        for k in ("warmup_iters", "warmup_lr"):  # the paper's warm-up as decided here (make_config)
            if len({getattr(c, k) for c in self.cfgs}) > 1:
                params.pop(k, None)      # the rule per model (a unit of several depths): 02_train applies it again
            elif deep:
                params[k] = base[k]      # given, 0 included: 02_train must not apply the rule again
        if len(self.cfgs) == 1:
            c = self.cfgs[0]
            params.update(model=c.model, seed=c.seed, run_name=c.run_name)
        else:
            params["models"] = ",".join(dict.fromkeys(c.model for c in self.cfgs))
            seeds = list(dict.fromkeys(c.seed for c in self.cfgs))
            if several_seeds:
                params["seeds"] = ",".join(map(str, seeds))
            else:
                params["seed"] = seeds[0]
        return params


def plan_units(cfgs: Sequence, pack_by_depth: bool) -> list[Unit]:
    """One unit per config, or (``pack_by_depth``) one per depth holding every config of it;
    configs with ``pack_mode="branches"`` share one unit whatever their depths (their
    training steps them together, ``loop.plan_packs``)."""
    if not pack_by_depth:
        return [Unit(c.run_name, [c]) for c in cfgs]
    groups: dict = {}
    for c in cfgs:
        groups.setdefault("branches" if c.pack_mode == "branches" else parse_model_name(c.model)[1], []).append(c)
    return [Unit(f"depth{d}" if d != "branches" else
                 "depths" + "-".join(dict.fromkeys(str(parse_model_name(c.model)[1]) for c in g)), g)
            for d, g in groups.items()]


def auto_parallel(cuda: bool) -> int:
    """``--parallel 0``: one execution at a time with a GPU; on a CPU two when it has 2 cores or more
    (each gets cores/2 threads: ``executor.cpu_threads_env``)."""
    if cuda:
        return 1
    from resnet_nb.runs.environment import usable_cores

    return 2 if usable_cores() >= 2 else 1


def _uses_cuda(cfg) -> bool:
    if cfg.device.startswith("cuda"):
        return True
    if cfg.device == "auto":
        import torch

        return torch.cuda.is_available()
    return False


def _visible_gpus() -> list[str]:
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


# --------------------------------------------------------------------------- execution

def theory_parameters(preset: str, cfg, run_id: str, figures_root: Path, depths: str | None = None,
                      seeds: str | None = None, batch: int | None = None) -> dict:
    """01_theory's parameters: the data of the training runs, probe sizes by preset (the
    smoke preset's smaller probe, ``probes.SMOKE_PROBE``, else ``probes.FULL_PROBE``)."""
    probe = SMOKE_PROBE if preset == "smoke" else FULL_PROBE
    depths, seeds, batch = depths or probe["depths"], seeds or probe["seeds"], batch or probe["batch_size"]
    return {"dataset": cfg.dataset, "data_root": cfg.data_root, "allow_noncanonical": cfg.allow_noncanonical,
            "depths": depths, "seeds": seeds, "batch_size": batch, "normalization": cfg.normalization,
            "run_id": run_id, "figures_root": str(figures_root), "device": cfg.device}


def _theory_done(params: dict, fingerprint: str) -> bool:
    """True when ``<figures_root>/<run_id>/`` already holds the theory outputs of the same
    probe settings and data (01_theory is then not executed again); outputs that do not
    record the data's provenance (older figures, whose titles did not name it) are redone."""
    d = figures_dir_of(params["figures_root"], params["run_id"])
    try:
        stored = json.loads((d / THEORY_JSON).read_text())["parameters"]
    except (OSError, ValueError, KeyError):
        return False
    want = {k: params[k] for k in ("dataset", "depths", "seeds", "batch_size", "normalization")}
    return ({k: stored.get(k) for k in want} == want and stored.get("fingerprint") == fingerprint
            and bool(stored.get("provenance")) and all((d / f).is_file() for f in THEORY_FIGURE_FILES.values()))


# --------------------------------------------------------------------------- CLI

def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="seed", help="recipe: seed, paper, short (the seed recipe at 20 epochs, for a CPU) or smoke")
    p.add_argument("--models", default=",".join(SEED_MODELS), help="comma list of plain<depth>/resnet<depth>, "
                   f"or a set: {'; '.join(k + ' = ' + ','.join(v) for k, v in MODEL_SETS.items())} "
                   f"(nets of >= {PAPER_WARMUP['min_depth']} layers get the paper's warm-up unless --set warmup_iters=...)")
    p.add_argument("--seeds", default="", help="comma list of seeds (several: runs <model>-seed<s>); "
                   "empty: the preset's seed")
    p.add_argument("--parallel", type=int, default=0,
                   help="executions at once, spread over the visible GPUs (on a CPU the cores are shared out); "
                        "0 = auto: 1 with a GPU, 2 on a CPU of 2 cores or more (whether two trainings at once "
                        "beat one after the other depends on the CPU: resnet-nb bench --device cpu measures it; "
                        "docs/speed.md)")
    add_field_arguments(p, _FIELD_FLAGS, defaults=True)  # as train's flags, one value for all runs
    p.add_argument("--time-budget", type=float, default=0.0, metavar="SECONDS",
                   help="time budget in seconds (default: 0 = none). --executor local: a deadline for the "
                        "whole reproduction from its start; each training execution gets the time left when "
                        "it starts, none starts after the deadline. --executor slurm: a budget per array task "
                        "from when it starts running (the queue does not count; a requeued task gets it again; "
                        "the wall limit is --slurm-time). A training pauses at the epoch boundary where its "
                        "next epoch would not fit (its first epoch always runs). Paused runs keep a resumable "
                        "last.pth, the theory and "
                        f"analysis notebooks wait for the rerun that finishes them, the exit status is "
                        f"{EXIT_PAUSED}: rerun the same command to resume")
    p.add_argument("--figures-root", default="report/figures", help="figures go to <figures-root>/<run-id>/")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                   help="override any TrainConfig field, e.g. --set epochs=2 (repeatable)")
    p.add_argument("--skip-theory", action="store_true", help="do not execute 01_theory")
    p.add_argument("--theory-depths", default=None, help="depths 01_theory probes (default: 20,56,110)")
    p.add_argument("--theory-seeds", default=None, help="seeds 01_theory probes (default: 0,1,2; smoke 0)")
    p.add_argument("--theory-batch", type=int, default=None,
                   help="images in 01_theory's probe batch (default: 128; smoke 16)")
    p.add_argument("--kernel", default=KERNEL, help="Jupyter kernel that executes the notebooks")
    cluster.add_arguments(p)  # --executor local|slurm and the --slurm-* resources


def _overrides(items: Sequence[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep:
            raise ValueError(f"--set takes FIELD=VALUE (e.g. epochs=2); got {item!r}")
        if key in _OWN_FLAGS:
            raise ValueError(f"--set {key}=... is not used by reproduce; give it as {_OWN_FLAGS[key]}")
        out[key] = coerce_field(key, value)  # unknown fields: ValueError naming the valid ones
    return out


def _execute_units(args: argparse.Namespace, runner: Runner, jobs: list, base: Path) -> None:
    """The executor seam: run the 02_train executions ``jobs`` (unit, notebook, outputs,
    parameters) on this machine, or (``--executor slurm``) as one SLURM job array through
    ``resnet_nb.pipeline.cluster``; either way every unit ends with its status and failure set."""
    if args.executor == "slurm":
        cluster.run_units(jobs, args, base, kernel=runner.kernel, cwd=runner.cwd)
    else:
        runner.run(jobs)


def _check_notebooks(nb_dir: Path) -> None:
    for nb in ("01_theory", "02_train", "03_analysis"):
        if not (nb_dir / f"{nb}.ipynb").is_file():
            raise FileNotFoundError(f"{nb_dir / nb}.ipynb is missing; run reproduce from a checkout "
                                    f"of resnet-nb (jupytext --sync notebooks/*.py recreates it)")


def _configs(args: argparse.Namespace) -> tuple[list, list[str], bool]:
    """``(cfgs, models, several seeds)``: one config per model and seed of the flags, under
    one run id."""
    if args.parallel < 0:
        raise ValueError(f"--parallel must be >= 1, or 0 for auto; got {args.parallel}")
    make_config(args.preset, time_budget=args.time_budget)   # a negative or infinite budget: one line
    models = expand_models(split_list(args.models))  # "sweep": models.SWEEP_MODELS
    if not models:
        raise ValueError("--models must name at least one model (e.g. plain20,resnet20)")
    for m in models:
        parse_model_name(m)
    try:
        seeds = [int(s) for s in split_list(args.seeds)]
    except ValueError:
        raise ValueError(f"--seeds must be a comma list of integers; got {args.seeds!r}") from None
    out_dir = Path(args.out_dir).expanduser().resolve()
    data_root = str(Path(args.data_root).expanduser().resolve()) if args.data_root else None
    overrides = _overrides(args.overrides)
    run_name = overrides.pop("run_name", "")
    common = dict(dataset=args.dataset, data_root=data_root, allow_noncanonical=args.allow_noncanonical,
                  device=args.device, out_dir=str(out_dir), run_id=args.run_id, pack_mode=args.pack_mode,
                  **overrides)
    seed_list = seeds or [make_config(args.preset, **common).seed]
    several = len(seed_list) > 1
    if run_name and len(models) * len(seed_list) > 1:
        raise ValueError(f"--set run_name={run_name} names one run's folder, but --models/--seeds give "
                         f"{len(models) * len(seed_list)} runs (named <model> or <model>-seed<s>); "
                         f"drop it, or use --run-id to name the folder that groups them")
    cfgs = [make_config(args.preset, **{**common, "model": m, "seed": s,
                                        "run_name": run_name or (f"{m}-seed{s}" if several else m)})
            for s in seed_list for m in models]   # seed-major: a paused CPU run has whole seeds done
    _say_warmups(cfgs, overrides)
    return resolve_run_ids(cfgs), models, several


def _say_warmups(cfgs: list, overrides: dict) -> None:
    """One line per model of >= 110 layers: the warm-up its config got (``make_config``
    applies the paper's rule, ``config.paper_warmup``, scaled to a short run, unless --set
    gave warmup_iters)."""
    said = set()
    for c in cfgs:
        if parse_model_name(c.model)[1] < PAPER_WARMUP["min_depth"] or c.model in said:
            continue
        said.add(c.model)
        if "warmup_iters" in overrides:
            how = "as given by --set warmup_iters"
        elif c.warmup_iters < PAPER_WARMUP["iters"]:
            how = (f"the paper's rule, scaled from its {PAPER_WARMUP['iters']} of {PAPER_WARMUP['of_iters']} "
                   f"iterations to this short run; --set warmup_iters=N overrides")
        else:
            how = "the paper's rule, as in the paper; --set warmup_iters=N overrides"
        what = (f"lr {c.warmup_lr:g} for {c.warmup_iters} iteration{'s' if c.warmup_iters != 1 else ''}"
                if c.warmup_iters else "none")
        print(f"reproduce: {c.model}: warm-up {what} ({how})", flush=True)


def _final_jobs(args: argparse.Namespace, cfgs: list, units: list[Unit], models: list[str], fingerprint: str,
                nb_dir: Path, figures_root: Path) -> list:
    """The executions after training: 01_theory (unless skipped or already done for these
    settings) and 03_analysis (once any run has epochs)."""
    run_id, out_dir = cfgs[0].run_id, Path(cfgs[0].out_dir)
    base = out_dir / run_id
    finals = []
    theory = theory_parameters(args.preset, cfgs[0], run_id, figures_root, args.theory_depths,
                               args.theory_seeds, args.theory_batch)
    if args.skip_theory:
        pass
    elif _theory_done(theory, fingerprint):
        print("[01_theory] skipped (its figures for these settings exist)", flush=True)
    else:
        finals.append((Unit("01_theory", []), nb_dir / "01_theory.ipynb", [base / "01_theory.ipynb"], theory))
    if any((d / "metrics.json").is_file() for u in units for d in u.run_dirs):
        finals.append((Unit("03_analysis", []), nb_dir / "03_analysis.ipynb", [base / "03_analysis.ipynb"],
                       {"run_id": run_id, "runs_dir": str(out_dir), "figures_root": str(figures_root),
                        "expected_models": ",".join(models)}))
    return finals


def _interrupt(runner: Runner, run_id: str) -> int:
    """Ctrl-C: stop the executions cleanly (a second Ctrl-C kills them); exit code 130."""
    print("reproduce: interrupting the running executions (the runs keep a resumable "
          "last.pth) ...", file=sys.stderr, flush=True)
    try:
        runner.stop()
    except KeyboardInterrupt:  # a second Ctrl-C: stop waiting
        for p in runner.procs:
            p.kill()
    print(f"reproduce: interrupted; rerun with --run-id {run_id} (same options) to resume", file=sys.stderr)
    return 130


def _paused_note(unit: Unit) -> str:
    """"paused by --time-budget after N/M epochs: ..." from the unit's run dirs."""
    done = []
    for d in unit.run_dirs:
        try:
            run = load_run(d)
        except (OSError, ValueError):
            continue
        if run.get("status") == "paused":
            done.append(f"{len(run['metrics'])}/{run.get('epochs_planned') or run['config'].get('epochs')}")
    if not done:
        return "not started: the time budget was spent; rerun the same command to resume"
    after = done[0] if len(set(done)) == 1 else ", ".join(done)
    return f"paused by --time-budget after {after} epochs: rerun the same command to resume"


def _mark_paused(units: list[Unit]) -> list[Unit]:
    """Units whose runs the time budget paused (or that it kept from starting), with their note."""
    out = []
    for u in units:
        if u.status == "paused" or (u.status == "ok" and any(_status(c) == "paused" for c in u.cfgs)):
            u.status, u.note = "paused", _paused_note(u)
            out.append(u)
    return out


def analysis_waits_for(units: list[Unit]) -> list[str]:
    """The planned runs that 01_theory and 03_analysis wait for (run names): every run whose
    run dir says ``paused`` (``train.paused_runs``), whichever invocation's time budget paused
    it (a resume that failed before its first epoch leaves the run paused), and the runs of
    units the budget kept from starting. Failed runs are not waited for: the analysis shows
    what exists, and the exit status is 1."""
    paused = set(paused_runs([d for u in units for d in u.run_dirs]))
    return [c.run_name for u in units for c, d in zip(u.cfgs, u.run_dirs) if u.status == "paused" or d in paused]


def run_cli(args: argparse.Namespace) -> int:
    started = time.monotonic()         # --time-budget counts from here
    root = project_root()
    nb_dir = root / "notebooks"
    _check_notebooks(nb_dir)
    cfgs, models, several = _configs(args)
    run_id = cfgs[0].run_id

    # ---- everything that can fail, before any run
    check_kernel(args.kernel)
    if args.executor == "slurm":  # options, client commands, controller: before anything is submitted
        cluster.check_slurm(args)
    ds = load_dataset(args.dataset, cfgs[0].data_root, args.allow_noncanonical)   # DataError: shown once
    check_run_dirs(cfgs)
    pack = _uses_cuda(cfgs[0]) if args.executor == "local" else cluster.uses_cuda(args, cfgs[0])
    gpus = _visible_gpus() if pack else []
    if args.parallel == 0:
        args.parallel = auto_parallel(pack)
    units = plan_units(cfgs, pack_by_depth=pack)
    for u in units:
        if u.finished:
            u.status = "skipped"
    todo = [u for u in units if u.status != "skipped"]
    print(f"reproduce: run id {run_id}, preset {args.preset}, {_count(len(cfgs), 'run')} in "
          f"{_count(len(units), 'execution')} ({len(units) - len(todo)} finished, skipped); data: {ds.provenance} "
          f"({ds.train_y.numel()} train / {ds.test_y.numel()} test, fingerprint {ds.fingerprint[:12]}); "
          f"{'CUDA, ' + str(len(gpus)) + ' GPU(s), one execution per depth' if pack else 'CPU, one execution per model'}; "
          f"--parallel {args.parallel}", flush=True)
    print(f"reproduce: to resume after an interruption: resnet-nb reproduce --preset {args.preset} "
          f"--run-id {run_id} ... (same options)", flush=True)
    for u in units:
        if u.status == "skipped":
            print(f"[{u.name}] {describe(u)}", flush=True)
    figures_root = Path(args.figures_root).expanduser().resolve()
    base = Path(cfgs[0].out_dir) / run_id

    deadline = started + args.time_budget if args.time_budget > 0 else None
    # the whole budget: Runner.budget_left makes it the time left until the deadline (local),
    # cluster.task_deadline counts it from each task's start (slurm)
    budget = {"time_budget": args.time_budget} if deadline is not None else {}
    with tempfile.TemporaryDirectory(prefix="resnet-nb-reproduce-") as tmp:
        runner = Runner(args.parallel, gpus, args.kernel, root, Path(tmp), deadline=deadline)
        finals = []
        try:  # local: each execution's time_budget becomes the time left when it starts
            _execute_units(args, runner, [(u, nb_dir / "02_train.ipynb", [d / "02_train.ipynb" for d in u.run_dirs],
                                           {**u.parameters(several), **budget}) for u in todo], base)
            paused = _mark_paused(units)
            waiting = analysis_waits_for(units)
            if waiting:
                print(f"reproduce: 01_theory and 03_analysis wait for the rerun that finishes every run "
                      f"(paused: {', '.join(waiting)})", flush=True)
            else:
                finals = _final_jobs(args, cfgs, units, models, ds.fingerprint, nb_dir, figures_root)
            runner.parallel = 1
            runner.run(finals)
        except KeyboardInterrupt:
            return _interrupt(runner, run_id)
    failed = [u for u in units + [j[0] for j in finals] if u.status == "failed"]
    wait = f"01_theory and 03_analysis wait for {_count(len(waiting), 'paused run')}; " if waiting else ""
    print(f"reproduce: {sum(u.status == 'ok' for u in units)} executed, "
          f"{sum(u.status == 'skipped' for u in units)} skipped, {f'{len(paused)} paused, ' if paused else ''}"
          f"{len(failed)} failed; {wait}"
          f"runs in {base}, figures in {figures_root / run_id}", flush=True)
    for u in paused:
        print(f"reproduce: {u.name}: {describe(u)}", flush=True)
    for u in failed:
        print(f"reproduce: {u.name}: {describe(u)}", file=sys.stderr, flush=True)
    return 1 if failed else EXIT_PAUSED if waiting else 0


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
