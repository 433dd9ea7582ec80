"""``resnet-nb bench``: training images/s of the common recipe against this project's fast paths.

Measured on the current device in one call, on synthetic uint8 data (timing only): (a) the common
recipe of popular reproductions (DataLoader + torchvision transforms in worker processes, fp32,
eager); (b) the fast path for one model (data and augmentation on the device, channels_last,
fused SGD, bf16 autocast and a CUDA-graphed step on a GPU); (c) grouped packs of plain<d> +
resnet<d> and of 5 seeds of both. Options add (d)-(f) ``--concurrent`` (branches of one CUDA
graph, to choose the pack mode), (g) ``--compile`` (the step through ``torch.compile``, with its
compile time apart and the loss difference to the uncompiled step) and ``--sync-check``
(``bench.sync_check``). On a CPU the table is ``bench.cpu``'s. Each figure is the median over
``repeats`` of ``steps`` timed steps after ``warmup`` untimed ones, the device synchronised before
the clock is read; evaluation img/s too. ``bench.table`` turns the rates into the wall time of
the seed reproduction. docs/speed.md describes the rows and the measured numbers.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from resnet_nb.bench.cpu import _cycle, _median_time, _sync, _synthetic, bench_common, describe_device
from resnet_nb.bench.sync_check import SYNC_STEPS, run_sync_check
from resnet_nb.bench.table import baseline_of, format_table, implied_times, row_line
from resnet_nb.data import augment
from resnet_nb.models.packed import PackedCifarResNet
from resnet_nb.models.resnet import build_model, parse_model_name
from resnet_nb.training.batches import PackBatcher, evaluate_pack
from resnet_nb.training.config import PRECISIONS
from resnet_nb.training.evaluation import EvalForward
from resnet_nb.training.graphs import COMPILE_BACKEND_ENV, COMPILE_MODE_ENV
from resnet_nb.training.precision import check_precision
from resnet_nb.training.prepare import resolve_device
from resnet_nb.training.schedule import make_optimizer, set_lr
from resnet_nb.training.step import ConcurrentSteps, TrainStep, prepare_model

__all__ = ["run_bench", "add_arguments", "run_cli", "COMPILE_CHECK_STEPS"]

# the seed report's reproduction: epochs, training images, test images per epoch
COMPILE_CHECK_STEPS = 3     # (g): first steps compared with the uncompiled step (same weights, same batches)


# --------------------------------------------------------------------------- (b), (c) fast paths

def bench_fast(depth: int, residual: list[bool], data, device, args, label: str, variant: str,
               single_name: str | None = None, compile: bool = False) -> dict:
    """One model (``single_name``) or a pack (``residual`` flags) on the fast path; with
    ``compile`` (the (g) rows) its step compiled, checked against the uncompiled step on the
    first ``COMPILE_CHECK_STEPS`` batches from the same initial weights."""
    n = len(residual)
    torch.manual_seed(0)
    model = build_model(single_name) if single_name else PackedCifarResNet(depth, residual)
    model = prepare_model(model, device)
    reference = copy.deepcopy(model) if compile else None       # same initial weights, uncompiled
    opt = make_optimizer(model.parameters(), 0.1, 0.9, 1e-4, device)
    step = TrainStep(model, opt, precision=args.precision, compile=compile)
    x_dev, y_dev = data["x_dev"], data["y_dev"]
    gens = [torch.Generator(device=device).manual_seed(1000 + i) for i in range(n)]
    batches = _cycle(PackBatcher(x_dev, y_dev, args.batch_size, gens).batches)
    mean, std = data["mean"].to(device), data["std"].to(device)

    def draw():
        xb, yb = next(batches)
        if single_name:
            xb, yb = xb[0], yb[0]
        return augment.normalize(xb, mean, std), yb

    def run(st, o, x, y):
        set_lr(o, 0.1)                              # as the training loop does every step
        return st(x, y)

    def train_step():
        run(step, opt, *draw())

    model.train()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    first = [draw() for _ in range(COMPILE_CHECK_STEPS)]
    t0 = time.perf_counter()
    losses = [run(step, opt, *first[0])[0]]          # the first call: (compile,) warm-up, capture
    _sync(device)
    first_s = time.perf_counter() - t0
    losses += [run(step, opt, x, y)[0] for x, y in first[1:]]
    extra = {}
    if compile:
        ref_opt = make_optimizer(reference.parameters(), 0.1, 0.9, 1e-4, device)
        ref_step = TrainStep(reference.train(), ref_opt, precision=args.precision)
        ref = [run(ref_step, ref_opt, x, y)[0] for x, y in first]
        diffs = [((a - b).abs().max() / args.batch_size).item() for a, b in zip(losses, ref)]   # mean loss
        extra = {**{k: v for k, v in step.counts().items() if k.startswith("compile")},
                 "compiled": step.compiled, "loss_diff_max": max(diffs), "loss_diff_steps": diffs,
                 "reference_graph": ref_step.graph is not None}
        del reference, ref_opt, ref_step
    t = _median_time(train_step, device, args.warmup, args.steps, args.repeats)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    n_eval = min(x_dev.shape[0], args.eval_images)
    norm = SimpleNamespace(normalize=lambda x: augment.normalize(x, mean, std))
    forward = EvalForward(model, args.precision)                  # as training evaluates

    def evaluate():
        evaluate_pack(model, x_dev[:n_eval], y_dev[:n_eval], norm, args.precision, forward=forward)

    te = _median_time(evaluate, device, 1, 1, args.repeats)
    return {"variant": variant, "label": label, "model": single_name, "depth": depth, "members": n,
            "train_img_s": args.steps * args.batch_size / t,           # per member
            "eval_img_s": n_eval / te,                                  # per member
            "precision": args.precision, "graph": step.graph is not None,
            "eval_graph": forward.graph is not None, "peak_mem_bytes": peak, "first_step_s": first_s, **extra}


def _bench_steps(steps, opts, draw, data, device, args):
    """(median seconds of ``args.steps`` calls of ``ConcurrentSteps(steps)``, the object);
    ``draw()`` gives the next (uint8 x, y) of every step."""
    both = ConcurrentSteps(steps)
    mean, std = data["mean"].to(device), data["std"].to(device)

    def train_step():
        batches = []
        for (xb, yb), opt in zip(draw(), opts):
            set_lr(opt, 0.1)                            # as the training loop does every step
            batches.append((augment.normalize(xb, mean, std), yb))
        both(batches)

    return _median_time(train_step, device, args.warmup, args.steps, args.repeats), both


def bench_concurrent(depths: list[int], data, device, args) -> dict:
    """(d) the grouped plain<d>+resnet<d> pairs of ``depths`` stepped together by one CUDA graph
    with a branch (stream) per pack (``ConcurrentSteps``): not a training mode (yet)."""
    x_dev, y_dev = data["x_dev"], data["y_dev"]
    opts, steps, streams_of_batches = [], [], []
    for d in depths:
        torch.manual_seed(0)
        model = prepare_model(PackedCifarResNet(d, [False, True]), device)
        opt = make_optimizer(model.parameters(), 0.1, 0.9, 1e-4, device)
        steps.append(TrainStep(model, opt, precision=args.precision, graph=False))
        opts.append(opt)
        gens = [torch.Generator(device=device).manual_seed(2000 + 10 * d + i) for i in range(2)]
        streams_of_batches.append(_cycle(PackBatcher(x_dev, y_dev, args.batch_size, gens).batches))
        model.train()
    t, both = _bench_steps(steps, opts, lambda: [next(it) for it in streams_of_batches], data, device, args)
    return {"variant": "d", "label": f"(d) grouped pairs {'+'.join(map(str, depths))}, a stream each",
            "model": None, "depth": 0, "depths": depths, "members": 2 * len(depths),
            "train_img_s": args.steps * args.batch_size / t, "eval_img_s": None,
            "precision": args.precision, "graph": both.graph is not None, "peak_mem_bytes": None}


def bench_branches(depths: list[int], data, device, args, variant: str) -> dict:
    """(e) one depth's plain+resnet pair, (f) the pairs of several depths: every member its own
    network, optimiser and ``TrainStep``, stepped as the branches of one CUDA graph, a stream
    each (``--pack-mode branches``). Rates per member, as for a pack; evaluation: every
    member's network one after another (``evaluate_pack`` of each, as training does)."""
    names = [f"{fam}{d}" for d in depths for fam in ("plain", "resnet")]
    x_dev, y_dev = data["x_dev"], data["y_dev"]
    models, opts, steps = [], [], []
    for name in names:
        torch.manual_seed(0)
        model = prepare_model(build_model(name), device).train()
        opt = make_optimizer(model.parameters(), 0.1, 0.9, 1e-4, device)
        models.append(model)
        opts.append(opt)
        steps.append(TrainStep(model, opt, precision=args.precision, graph=False))
    gens = [torch.Generator(device=device).manual_seed(3000 + i) for i in range(len(names))]
    batches = _cycle(PackBatcher(x_dev, y_dev, args.batch_size, gens).batches)

    def draw():                                         # member k's batch of the next (N, B, ...) draw
        xb, yb = next(batches)
        return [(xb[k], yb[k]) for k in range(len(names))]

    t, both = _bench_steps(steps, opts, draw, data, device, args)
    n_eval = min(x_dev.shape[0], args.eval_images)
    mean, std = data["mean"].to(device), data["std"].to(device)
    norm = SimpleNamespace(normalize=lambda x: augment.normalize(x, mean, std))
    forwards = [EvalForward(m, args.precision) for m in models]   # as training evaluates

    def evaluate():
        for m, forward in zip(models, forwards):
            evaluate_pack(m, x_dev[:n_eval], y_dev[:n_eval], norm, args.precision, forward=forward)

    te = _median_time(evaluate, device, 1, 1, args.repeats)
    pairs = "+".join(f"plain{d}+resnet{d}" for d in depths)
    label = (f"(e) branches {pairs}" if variant == "e"
             else f"(f) branches {'+'.join(map(str, depths))}: {len(names)} nets, one graph")
    return {"variant": variant, "label": label, "model": None, "depth": depths[0] if variant == "e" else 0,
            "depths": depths, "members": len(names), "train_img_s": args.steps * args.batch_size / t,
            "eval_img_s": n_eval / te, "precision": args.precision, "graph": both.graph is not None,
            "eval_graph": all(f.graph is not None for f in forwards), "peak_mem_bytes": None}


# --------------------------------------------------------------------------- --sync-check


# --------------------------------------------------------------------------- driver

def run_bench(args: argparse.Namespace) -> dict:
    device = resolve_device(args.device)
    if args.precision == "auto":
        args.precision = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    check_precision(args.precision, device)
    if args.workers < 0:
        args.workers = min(4, os.cpu_count() or 1)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    depths = sorted({parse_model_name(m)[1] for m in models})
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    data = _synthetic(args.n_train, device)
    rows = []
    compiled = getattr(args, "compile", False)
    if compiled:
        print(f"--compile: (g) rows, the step through torch.compile ({os.environ.get(COMPILE_BACKEND_ENV) or 'inductor'}"
              f"{', mode ' + os.environ[COMPILE_MODE_ENV] if os.environ.get(COMPILE_MODE_ENV) else ''}); the first call "
              f"of each compiles" + (" (CPU: slow, a check that it runs, not a speed)" if device.type != "cuda" else ""),
              flush=True)
    for name in models:
        if not args.skip_common:
            rows.append(bench_common(name, data, device, args))
            print(row_line(rows[-1]), flush=True)
        rows.append(bench_fast(parse_model_name(name)[1], [True], data, device, args,
                               f"(b) fast {name}", "b", single_name=name))
        print(row_line(rows[-1]), flush=True)
        if compiled:
            rows.append(bench_fast(parse_model_name(name)[1], [True], data, device, args,
                                   f"(g) compiled {name}", "g", single_name=name, compile=True))
            print(row_line(rows[-1]), flush=True)
    for d in depths:
        for n in args.packs:
            residual = [False, True] * (n // 2) + [True] * (n % 2)
            label = (f"grouped plain{d}+resnet{d}" if n == 2
                     else f"grouped {n}: plain{d}+resnet{d} x {n // 2} seeds")
            rows.append(bench_fast(d, residual, data, device, args, f"(c) {label}", "c"))
            print(row_line(rows[-1]), flush=True)
            if compiled:
                rows.append(bench_fast(d, residual, data, device, args, f"(g) compiled {label}", "g", compile=True))
                print(row_line(rows[-1]), flush=True)
    if getattr(args, "concurrent", False):
        if device.type != "cuda":
            print("--concurrent on the CPU: (d), (e), (f) step one after another, eagerly (no graph): "
                  "a check that they run, not their speed", flush=True)
        for d in depths:
            rows.append(bench_branches([d], data, device, args, "e"))
            print(row_line(rows[-1]), flush=True)
        if len(depths) > 1:
            rows.append(bench_branches(depths, data, device, args, "f"))
            print(row_line(rows[-1]), flush=True)
            rows.append(bench_concurrent(depths, data, device, args))
            print(row_line(rows[-1]), flush=True)
        else:
            print("(d), (f) need models of two depths or more (--models): skipped", flush=True)
    for r in rows:
        base = baseline_of(rows, r)
        r["ratio_to_a"] = r["train_img_s"] / base["train_img_s"] if base else None
    result = {"device": describe_device(device), "device_type": device.type, "torch": torch.__version__,
              "data": f"synthetic uint8 ({args.n_train} random images): timing only",
              "settings": {k: v for k, v in vars(args).items() if not k.startswith("_") and k != "func"},
              "rows": rows, "implied": implied_times(rows, depths)}
    return result


# defaults per device type: a GPU gets the full measurement, the CPU a short demonstration
DEFAULTS = {
    "cuda": dict(models="plain20,resnet20,plain56,resnet56", packs=[2, 10], steps=100, warmup=20,
                 repeats=3, n_train=50_000, eval_images=10_000),
    "cpu": dict(models="resnet20", packs=[2], steps=3, warmup=1, repeats=1, n_train=2_048,
                eval_images=1_000),
}
# --device cpu alone (the CPU table, resnet_nb.bench.cpu): its own defaults
CPU_TABLE_DEFAULTS = dict(models="resnet20,plain56", steps=10, warmup=2, n_train=2_048, eval_images=1_000)


def _packs(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--packs must be a comma list of integers; got {text!r}") from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    g, c = DEFAULTS["cuda"], {**DEFAULTS["cpu"], **CPU_TABLE_DEFAULTS}   # the CPU: its table's defaults
    p.add_argument("--models", default=argparse.SUPPRESS,
                   help=f"comma list of models for (a) and (b); their depths get the packs (c) "
                        f"(default: {g['models']} on a GPU, {c['models']} on the CPU)")
    p.add_argument("--packs", default=argparse.SUPPRESS, type=_packs,
                   help="pack sizes per depth: 2 = plain+resnet pair, 10 = 5 seeds of the pair "
                        "(default: 2,10 on a GPU, 2 on the CPU)")
    p.add_argument("--steps", type=int, default=argparse.SUPPRESS,
                   help=f"timed training steps per repeat (default: {g['steps']} GPU, {c['steps']} CPU)")
    p.add_argument("--warmup", type=int, default=argparse.SUPPRESS,
                   help=f"untimed steps first: graph capture, autotuning (default: {g['warmup']} GPU, {c['warmup']} CPU)")
    p.add_argument("--repeats", type=int, default=argparse.SUPPRESS,
                   help=f"repeats; the median is reported (default: {g['repeats']} GPU, {c['repeats']} CPU)")
    p.add_argument("--batch-size", type=int, default=128, help="images per step (per member)")
    p.add_argument("--n-train", type=int, default=argparse.SUPPRESS,
                   help=f"synthetic training images held in memory (default: {g['n_train']} GPU, {c['n_train']} CPU)")
    p.add_argument("--eval-images", type=int, default=argparse.SUPPRESS,
                   help=f"images per evaluation pass (default: {g['eval_images']} GPU, {c['eval_images']} CPU)")
    p.add_argument("--workers", type=int, default=-1,
                   help="DataLoader workers of the common recipe (-1: min(4, CPU cores))")
    p.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="fast-path precision (auto: bf16 on a GPU that has it, else fp32)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:<index>")
    p.add_argument("--skip-common", action="store_true", help="do not measure the common recipe (a)")
    p.add_argument("--concurrent", action="store_true",
                   help="also measure what chooses --pack-mode: (e) each depth's plain+resnet pair as two "
                        "branches (a network and a stream each) of one CUDA graph, against the grouped pair "
                        "(c); (f) all the models' pairs as branches of one graph (--pack-mode branches); "
                        "(d) the grouped pairs of all depths in one graph, a stream per pack (no training "
                        "mode). Run it in its own process (a crash in a capture costs only its rows); on "
                        "the CPU they run eagerly, one after another")
    p.add_argument("--compile", action="store_true",
                   help="also measure (g): each (b) and (c) row's step with its forward and loss through "
                        "torch.compile (backend $RESNET_NB_COMPILE_BACKEND, default inductor, without inductor's "
                        "own CUDA graphs; the step's graph then captures the compiled kernels): img/s, the first "
                        "call's seconds (compilation) apart, and the loss difference to the uncompiled step over "
                        f"the first {COMPILE_CHECK_STEPS} steps. Training does not compile yet. Run it in its "
                        "own process (compiling a ResNet-56 step can take minutes)")
    p.add_argument("--sync-check", action="store_true",
                   help="CUDA only, instead of the measurement: count the host syncs per training step of the "
                        "real loop (torch.cuda.set_sync_debug_mode), in both pack modes, on one-epoch runs of "
                        f"{SYNC_STEPS[0]} and {SYNC_STEPS[1]} steps of --models (default here: plain20,resnet20) on a "
                        "synthetic fixture; exit 1 when a step syncs")
    p.add_argument("--parallel", type=int, default=2,
                   help="CPU table: also the training default in this many processes at once, cores/N threads "
                        "each, as reproduce --parallel N runs them (1: skip that row; default: 2)")
    p.add_argument("--out", default="", help="write the results as JSON to this file")


def _cpu_table_wanted(args: argparse.Namespace) -> bool:
    """``--device cpu`` (or auto without a GPU) and none of the GPU path's options: the CPU
    table of ``resnet_nb.bench.cpu`` (precision x memory layout x threads)."""
    gpu_options = (getattr(args, "packs", None) is not None or getattr(args, "concurrent", False)
                   or getattr(args, "compile", False))
    return resolve_device(args.device).type == "cpu" and not gpu_options


def _run_cpu_table(args: argparse.Namespace) -> int:
    from resnet_nb.bench.cpu import format_cpu_table, run_cpu_bench

    for name, value in CPU_TABLE_DEFAULTS.items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)
    for name in ("steps", "batch_size", "eval_images", "parallel"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1; got {getattr(args, name)}")
    if args.warmup < 0:
        raise ValueError(f"--warmup must be >= 0; got {args.warmup}")
    for m in args.models.split(","):
        parse_model_name(m)
    if args.workers < 0:
        args.workers = min(4, os.cpu_count() or 1)
    args.repeats = getattr(args, "repeats", None) or 1
    return _report(run_cpu_bench(args), format_cpu_table, args.out)


def _report(res: dict, table, out: str) -> int:
    """Print a bench result as its table, and write it as JSON to ``out`` when given."""
    print()
    print(table(res))
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(res, indent=2) + "\n")
        print(f"results: {out}")
    return 0


def run_cli(args: argparse.Namespace) -> int:
    if getattr(args, "sync_check", False):
        return run_sync_check(args)
    if _cpu_table_wanted(args):
        return _run_cpu_table(args)
    defaults = DEFAULTS["cuda" if resolve_device(args.device).type == "cuda" else "cpu"]
    for name, value in defaults.items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)
    for name in ("steps", "repeats", "batch_size", "n_train", "eval_images"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1; got {getattr(args, name)}")
    if args.warmup < 0:
        raise ValueError(f"--warmup must be >= 0; got {args.warmup}")
    if any(n < 1 for n in args.packs):
        raise ValueError(f"--packs sizes must be >= 1; got {args.packs}")
    for m in args.models.split(","):
        parse_model_name(m)
    if args.n_train < args.batch_size:
        raise ValueError(f"--n-train ({args.n_train}) must hold at least one batch ({args.batch_size})")
    return _report(run_bench(args), format_table, args.out)
