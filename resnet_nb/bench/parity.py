"""``resnet-nb parity``: does bf16 train these nets as fp32 does? The check to run before training in bf16.

A deep plain net sits on a loss plateau at the start of training, and when it leaves it depends
on the seed. If bf16 arithmetic made it leave later, a bf16 run would overstate the degradation
for a reason that is not the paper's. So for each model (default plain56 and resnet56) and seed
(default 0 and 1) the first ``--epochs`` (3) epochs of the ``short`` recipe are trained in fp32
and in bf16 (same init, same batches), and the bf16 - fp32 difference of one seed is set against
the difference between two fp32 seeds: parity holds for a model when, at every epoch, the mean
|bf16 - fp32| of its test accuracy and training loss is no larger than |fp32 seed a - fp32 seed b|.

The ``short`` recipe's first epochs are those of any run of it (lr 0.1 until epoch 10), so
``--reuse <runs>/<run id>`` takes a side from a short reproduction's runs (their first epochs)
instead of training it again: the fp32 side from an fp32 reproduction, the bf16 side from a bf16
one (a run counts for a seed and precision only when its recorded recipe is the parity run's but
for the epochs, and its recorded data fingerprint is that of ``--data-root``).

What it can tell: whether bf16 moves the first epochs (all at lr 0.1, before the first decay) by
more than a change of seed does, with two fp32 seeds as the yardstick. It cannot tell whether the
two precisions end a full run alike. Runs go to ``<out-dir>/parity/<model>-<precision>-seed<s>``
and resume like any run; ``--time-budget`` pauses them (exit 75, rerun to resume).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from resnet_nb.analysis.parity import compare_precisions, parity_sentence, parity_table
from resnet_nb.runs.rundir import read_json, run_dir_of
from resnet_nb.training.config import cli_value, make_config

__all__ = ["parity_runs", "side_source", "add_arguments", "run_cli"]

RUN_ID = "parity"
PRECISIONS = ("fp32", "bf16")


def parity_runs(models: list[str], seeds: list[int], epochs: int, common: dict) -> list:
    """The configs: every model x seed x precision, the short recipe cut at ``epochs``."""
    return [make_config("short", **{**common, "model": m, "seed": s, "precision": p, "epochs": epochs,
                                    "run_id": RUN_ID, "run_name": f"{m}-{p}-seed{s}"})
            for m in models for s in seeds for p in PRECISIONS]


def _metrics(run_dir: Path, epochs: int) -> list[dict] | None:
    """The first ``epochs`` epochs of a run dir's metrics.json, or None when it has fewer."""
    try:
        m = read_json(run_dir / "metrics.json")
    except (OSError, ValueError):
        return None
    return m[:epochs] if isinstance(m, list) and len(m) >= epochs else None


def side_source(run_dir: Path, reused: bool) -> dict:
    """Where one side's epochs come from, as its config.json records it: the run dir, whether it
    was reused, the machine and torch it trained on, its threads and its data."""
    try:
        record = read_json(run_dir / "config.json")
        env, data = record.get("environment") or {}, record.get("dataset") or {}
    except (OSError, ValueError, AttributeError):
        env, data = {}, {}
    return {"run": run_dir.as_posix(), "reused": reused, "device_name": env.get("device_name"),
            "cpu_native_bf16": env.get("cpu_native_bf16"), "torch": env.get("torch"),
            "torch_threads": env.get("torch_threads"), "git_commit": env.get("git_commit"),
            "data": data.get("provenance"), "fingerprint": data.get("fingerprint")}


def _reused(reuse: Path, model: str, seed: int, epochs: int, cfg, fingerprint: str) -> Path | None:
    """One side from a short reproduction: the run dir of ``model`` and ``seed`` in ``cfg``'s
    precision whose recipe equals ``cfg``'s but for the epochs (the first ``epochs`` are the same
    run), trained on the data of ``fingerprint``, with at least ``epochs`` epochs."""
    for name in (f"{model}-seed{seed}", model):
        d = reuse / name
        try:
            record = read_json(d / "config.json")
            stored, data = record["config"], record.get("dataset") or {}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
        if data.get("fingerprint") != fingerprint:
            print(f"{d}: not reused: trained on other data (fingerprint {str(data.get('fingerprint'))[:16]}, "
                  f"--data-root's {fingerprint[:16]})", flush=True)
            continue
        same = {k: v for k, v in stored.items() if k not in ("epochs", "out_dir", "run_id", "run_name", "data_root",
                                                              "time_budget", "device", "pack_mode")}
        want = {k: v for k, v in json.loads(json.dumps(cfg.__dict__)).items() if k in same}
        if same == want and stored.get("precision") == cfg.precision and _metrics(d, epochs) is not None:
            return d
    return None


def _train_argv(cfg) -> list[str]:
    argv = [sys.executable, "-m", "resnet_nb.cli", "train", "--preset", cfg.preset]
    for k, v in cfg.__dict__.items():
        flag = "--" + k.replace("_", "-")
        if isinstance(v, bool):
            argv.append(flag if v else "--no-" + k.replace("_", "-"))
        elif k != "preset" and v is not None:
            argv += [flag, cli_value(v)]
    return argv


def _train_all(cfgs: list, parallel: int, deadline: float | None) -> int:
    """Train ``cfgs`` with ``resnet-nb train``, ``parallel`` at once (cores shared out); returns
    the worst exit status (75: paused by the budget)."""
    from resnet_nb.runs.environment import usable_cores

    cores = usable_cores()
    env = dict(os.environ, OMP_NUM_THREADS=str(max(1, cores // parallel))) if parallel > 1 else dict(os.environ)
    pending, running, worst = list(cfgs), [], 0
    while pending or running:
        while pending and len(running) < parallel:
            cfg = pending.pop(0)
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    worst = max(worst, 75)
                    continue
                cfg = replace(cfg, time_budget=round(left, 1))
            running.append(subprocess.Popen(_train_argv(cfg), env=env))
        time.sleep(0.5)
        for p in [p for p in running if p.poll() is not None]:
            running.remove(p)
            worst = max(worst, p.returncode)
    return worst


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", default="plain56,resnet56", help="comma list of models")
    p.add_argument("--seeds", default="0,1", help="comma list of seeds (at least two: the seed-to-seed yardstick)")
    p.add_argument("--epochs", type=int, default=3, help="epochs of the short recipe compared")
    p.add_argument("--dataset", default="cifar10", choices=("cifar10", "synthetic"))
    p.add_argument("--data-root", default=None, help="folder with CIFAR-10")
    p.add_argument("--allow-noncanonical", action="store_true", help="accept a CIFAR-10 copy with other md5 sums")
    p.add_argument("--out-dir", default="experiments", help="runs go to <out-dir>/parity/")
    p.add_argument("--reuse", default="", help="a short reproduction's run-id folder: its runs give the side of their precision "
                        "(fp32 or bf16) instead of being trained again")
    p.add_argument("--parallel", type=int, default=2, help="trainings at once (on a CPU the cores are shared out)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:<index> (default: cpu)")
    p.add_argument("--time-budget", type=float, default=0.0, help="seconds for all the training (0: no limit)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a TrainConfig field of every run (tests: train_subset=...)")
    p.add_argument("--out", default="", help="write the result as JSON to this file")


def run_cli(args: argparse.Namespace) -> int:
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    if len(seeds) < 2:
        raise ValueError(f"--seeds needs at least two seeds (their difference is the yardstick); got {args.seeds!r}")
    if args.epochs < 1 or args.parallel < 1:
        raise ValueError("--epochs and --parallel must be at least 1")
    extra = dict(kv.split("=", 1) for kv in args.overrides)
    common = dict(dataset=args.dataset, data_root=args.data_root, allow_noncanonical=args.allow_noncanonical,
                  out_dir=str(Path(args.out_dir).expanduser().resolve()), device=args.device, **extra)
    cfgs = parity_runs(models, seeds, args.epochs, common)
    reuse = Path(args.reuse).expanduser() if args.reuse else None
    if reuse is not None:
        if not reuse.is_dir():
            raise FileNotFoundError(f"--reuse {reuse}: no such folder (give a reproduction's <out-dir>/<run id>)")
        from resnet_nb.data.cifar10 import load_dataset
        fingerprint = load_dataset(args.dataset, args.data_root, args.allow_noncanonical).fingerprint
    series: dict[str, dict] = {m: {} for m in models}
    sources: dict[str, dict] = {}
    todo = []
    for c in cfgs:
        got = _reused(reuse, c.model, c.seed, args.epochs, c, fingerprint) if reuse else None
        if got is not None:
            print(f"{c.run_name}: the first {args.epochs} epochs of {reuse.name}'s run ({c.precision}, same recipe)",
                  flush=True)
            series[c.model][(c.precision, c.seed)] = _metrics(got, args.epochs)
            sources[c.run_name] = side_source(got, reused=True)
        else:
            todo.append(c)
    deadline = time.monotonic() + args.time_budget if args.time_budget > 0 else None
    rc = _train_all(todo, args.parallel, deadline) if todo else 0
    for c in todo:
        got = _metrics(run_dir_of(c.out_dir, c.run_id, c.run_name), args.epochs)
        if got is None:
            print(f"resnet-nb parity: {c.run_name} has not finished {args.epochs} epochs "
                  f"({'paused: rerun the same command' if rc == 75 else 'see its output above'})", file=sys.stderr)
            return 75 if rc == 75 else 1
        series[c.model][(c.precision, c.seed)] = got
        sources[c.run_name] = side_source(run_dir_of(c.out_dir, c.run_id, c.run_name), reused=False)
    result = {"epochs": args.epochs, "seeds": seeds, "recipe": "short",
              "models": {m: compare_precisions(series[m], seeds) for m in models},
              "sources": {k: sources[k] for k in sorted(sources)}}
    print(parity_table(result))
    for m, res in result["models"].items():
        print(parity_sentence(m, res))
    if args.out:
        Path(args.out).write_text(json.dumps({**result, "models": {m: {**r} for m, r in result["models"].items()}},
                                             indent=2) + "\n")
        print(f"results: {args.out}")
    return 0 if all(r["holds"] for r in result["models"].values()) else 3
