"""resnet-nb bench --sync-check: the host syncs per training step of the real loop on a GPU
(torch's sync debug mode), counted for both pack modes in two one-epoch runs of different
lengths, so syncs that grow with the steps stand out.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import traceback
import warnings
from collections import Counter
from pathlib import Path

import torch

from resnet_nb.bench.cpu import describe_device
from resnet_nb.data import cifar10
from resnet_nb.models.resnet import parse_model_name
from resnet_nb.training.prepare import resolve_device

__all__ = ["SYNC_STEPS", "SYNC_TEST_IMAGES", "SYNC_PACK_MODES", "SYNC_WARNING", "SYNC_NEEDS_CUDA",
           "sync_check", "run_sync_check"]


SYNC_STEPS = (20, 120)      # training steps of the two measured one-epoch runs (the last one partial)


SYNC_TEST_IMAGES = 2000     # two full evaluation batches: evaluation is captured and replayed too


SYNC_PACK_MODES = ("grouped", "branches")


SYNC_WARNING = "synchronizing CUDA operation"   # torch's text under set_sync_debug_mode("warn")


SYNC_NEEDS_CUDA = ("resnet-nb bench --sync-check needs CUDA: it counts host syncs with "
                   "torch.cuda.set_sync_debug_mode, which watches CUDA streams only; the device here is {device}. "
                   "Run it on a machine with a CUDA GPU (resnet-nb gpu-check runs it)")


class _SyncLog:
    """Counts torch's sync warnings, each by the innermost resnet_nb frame that made it (its
    function names the part of the loop: ``_train_epoch``, ``evaluate_pack``, ``_save`` ...)."""

    def __init__(self) -> None:
        self.n, self.where, self.show = 0, Counter(), warnings.showwarning

    def __call__(self, message, category, filename, lineno, file=None, line=None):
        if SYNC_WARNING not in str(message):
            return self.show(message, category, filename, lineno, file, line)
        self.n += 1
        ours = [f for f in traceback.extract_stack()[:-1]
                if f"{os.sep}resnet_nb{os.sep}" in f.filename and not f.filename.endswith("bench.py")]
        f = ours[-1] if ours else None
        self.where[f"{Path(f.filename).name}:{f.lineno} ({f.name})" if f else f"{Path(filename).name}:{lineno}"] += 1


def _count_syncs(fn) -> _SyncLog:
    """Run ``fn()`` under ``torch.cuda.set_sync_debug_mode("warn")``; its syncs, counted."""
    log = _SyncLog()
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = log
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return log


def sync_check(args: argparse.Namespace, device: torch.device) -> dict:
    """Host syncs per training step of the real loop on ``device``, a CUDA device (see the
    module docstring): per pack mode, ``{"mode", "steps", "syncs", "per_step", "per_run",
    "growing", "where", "runtime"}``; ``growing``: the places whose count grows with the
    steps (the per-step syncs)."""
    from resnet_nb.runs.rundir import CONFIG_FILE, read_json
    from resnet_nb.training.config import make_config
    from resnet_nb.training.loop import plan_packs
    from resnet_nb.training.train import train_many

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    b = args.batch_size
    sizes = [(s - 1) * b + max(b // 2, 1) for s in SYNC_STEPS]     # s steps, the last one partial
    modes = []
    with tempfile.TemporaryDirectory(prefix="resnet-nb-sync-") as tmp:
        root = cifar10.write_fake_cifar10(Path(tmp) / "data", max(sizes), SYNC_TEST_IMAGES, seed=0).parent

        def train_run(mode: str, n: int, tag: str) -> list[Path]:
            cfgs = [make_config("seed", model=m, run_name=m, epochs=1, batch_size=b, train_subset=n,
                                test_subset=SYNC_TEST_IMAGES, dataset="synthetic", data_root=str(root),
                                device=str(device), precision=args.precision, pack_mode=mode,
                                out_dir=str(Path(tmp) / "runs"), run_id=f"sync-{mode}-{tag}") for m in models]
            out = io.StringIO()                # no progress bar (its syncs are for terminals), a quiet log
            try:
                with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                    return train_many(cfgs, pack=True)
            except BaseException:
                print(out.getvalue()[-4000:], file=sys.stderr)
                raise

        for mode in SYNC_PACK_MODES:
            n_packs = len(plan_packs([make_config("seed", model=m, pack_mode=mode) for m in models], pack=True))
            train_run(mode, sizes[0], "warm-up")          # cuDNN autotuning, lazy initialisation
            logs, dirs = [], None
            for n, tag in zip(sizes, ("short", "long")):
                holder = {}
                logs.append(_count_syncs(lambda: holder.update(dirs=train_run(mode, n, tag))))
                dirs = holder["dirs"]
            short, long = logs
            per_step = (long.n - short.n) / ((SYNC_STEPS[1] - SYNC_STEPS[0]) * n_packs)
            modes.append({"mode": mode, "models": models, "packs": n_packs, "steps": list(SYNC_STEPS),
                          "syncs": [short.n, long.n], "per_step": per_step,
                          "per_run": short.n - per_step * SYNC_STEPS[0] * n_packs,
                          "growing": dict(long.where - short.where), "where": dict(long.where.most_common()),
                          "runtime": read_json(dirs[0] / CONFIG_FILE).get("runtime")})
            print(_sync_line(modes[-1]), flush=True)
    return {"device": describe_device(device), "torch": torch.__version__, "batch_size": b,
            "precision": args.precision, "data": "synthetic fixture (timing-free: counts only)", "modes": modes}


def _sync_line(m: dict) -> str:
    rt = m["runtime"] or {}
    line = (f"sync check, pack mode {m['mode']} ({'+'.join(m['models'])}, {m['packs']} pack(s)): "
            f"{m['syncs'][0]} syncs in a run of {m['steps'][0]} steps, {m['syncs'][1]} in one of {m['steps'][1]}: "
            f"{m['per_step']:.3g} per step, {m['per_run']:.0f} per run (start-up, capture, evaluation, checkpoint); "
            f"training graph steps {rt.get('graph_steps')}, evaluation graph batches {rt.get('eval_graph_batches')}")
    if m["growing"]:
        line += "\n  syncs that grow with the steps: " + ", ".join(f"{k} x{v}" for k, v in m["growing"].items())
    return line


def run_sync_check(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    if device.type != "cuda":
        print(SYNC_NEEDS_CUDA.format(device=device), file=sys.stderr)
        return 2
    if getattr(args, "models", None) is None:
        args.models = "plain20,resnet20"
    for m in args.models.split(","):
        parse_model_name(m)
    if args.precision == "auto":
        args.precision = "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if args.batch_size < 2:
        raise ValueError(f"--batch-size must be at least 2 for --sync-check (a partial last batch); got {args.batch_size}")
    res = sync_check(args, device)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
        print(f"results: {args.out}")
    bad = [m for m in res["modes"] if m["per_step"] > 0]
    for m in bad:
        print(f"resnet-nb bench --sync-check: pack mode {m['mode']}: {m['per_step']:.3g} host syncs per training "
              f"step; where: {', '.join(m['growing']) or 'see the JSON'}", file=sys.stderr)
    if not bad:
        print("no host sync per training step (the syncs left are once per run or epoch)")
    return 1 if bad else 0
