"""``resnet-nb bench --device cpu``: training images/s on a CPU, by precision, memory layout and
thread layout, next to the common recipe; and what they imply for the ``short`` reproduction.

Rows (each a net of ``--models``, default resnet20 and plain56, batch 128, synthetic uint8 images:
timing only), all through the project's own step (``step.TrainStep``) except (a):

* (a) the common recipe: DataLoader + torchvision transforms, fp32, NCHW (``bench.bench_common``);
* fp32 NCHW, bf16 NCHW, fp32 channels_last, bf16 channels_last: one process with every core;
* the training default (``precision=auto``, channels_last) in ``--parallel`` processes of
  cores/parallel threads each, stepping at once (``reproduce --parallel``): the summed img/s.

bf16 is autocast with fp32 master weights; where the CPU has no native bf16 (AVX512-BF16 or AMX)
it is emulated, and the table says so. From the rates it derives the wall time of the ``short``
reproduction (plain/resnet 20/56, 20 epochs of 50k training images and 10k test images each),
one model after the other per layout, and for the parallel layout the makespan of the four runs
in ``--parallel`` slots (seed-major order, as ``reproduce`` runs them). Bookkeeping between
epochs is not included; a plain net and a ResNet of one depth train at the same rate (they
differ only in the shortcut additions), so a model not measured takes the other's rate.

Every row also gives its arithmetic rate (GFLOP/s: img/s times the net's training FLOPs per image,
counted by ``torch.utils.flop_counter`` over the forward and backward convolutions and the linear
layer, a multiply-add counted as two), and the table ends with the short reproduction's total
arithmetic: what the wall time of any layout is bounded by, whatever the code around the step.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from argparse import Namespace

import torch
import torch.nn.functional as F

from resnet_nb.data import augment
from resnet_nb.models.resnet import build_model, parse_model_name
from resnet_nb.runs.environment import cpu_has_native_bf16, cpu_model, device_name, usable_cores
from resnet_nb.training.evaluation import EVAL_BATCH, eval_sums
from resnet_nb.training.precision import default_precision
from resnet_nb.training.schedule import make_optimizer
from resnet_nb.training.step import TrainStep

__all__ = ["LAYOUTS", "SHORT_RECIPE", "measure_step", "run_cpu_bench", "format_cpu_table", "short_wall_time",
           "flops_per_image", "short_flops"]

LAYOUTS = (("fp32", "nchw"), ("bf16", "nchw"), ("fp32", "channels_last"), ("bf16", "channels_last"))
SHORT_RECIPE = {"epochs": 20, "n_train": 50_000, "n_test": 10_000,
                "models": ("plain20", "plain56", "resnet20", "resnet56")}


def flops_per_image(model_name: str) -> dict[str, float]:
    """FLOPs per image of ``model_name``: ``train`` (forward and backward of a training step) and
    ``eval`` (the forward alone), as ``torch.utils.flop_counter`` counts them (convolutions and the
    linear layer, a multiply-add as two FLOPs; batch norm, ReLU and the additions not counted)."""
    from torch.utils.flop_counter import FlopCounterMode
    model, x = build_model(model_name), torch.zeros(2, 3, 32, 32)
    with FlopCounterMode(display=False) as fwd, torch.no_grad():
        model.eval()(x)
    model.train()
    with FlopCounterMode(display=False) as both:
        model(x).sum().backward()
    return {"train": both.get_total_flops() / 2, "eval": fwd.get_total_flops() / 2}


def short_flops() -> float:
    """The short reproduction's arithmetic (FLOPs): its four runs' training and evaluation images."""
    r = SHORT_RECIPE
    return sum(r["epochs"] * (r["n_train"] * f["train"] + r["n_test"] * f["eval"])
               for f in (flops_per_image(m) for m in r["models"]))


def describe_device(device: torch.device) -> str:
    """The measured device in a bench result: the GPU's name, or "CPU: <model>, <n> threads"."""
    if device.type == "cuda":
        return device_name(device)
    return f"CPU: {device_name(device)}, {torch.get_num_threads()} threads"


def _sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_time(fn, device, warmup: int, steps: int, repeats: int) -> float:
    """Median seconds of ``steps`` calls of ``fn`` over ``repeats`` (after ``warmup`` calls)."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _cycle(make_iter):
    """An endless iterator over epochs of ``make_iter()``."""
    while True:
        yield from make_iter()


# --------------------------------------------------------------------------- (a) common recipe

class _UInt8Cifar(torch.utils.data.Dataset):
    """What torchvision.datasets.CIFAR10 does per item: uint8 HWC array -> PIL -> transform."""

    def __init__(self, x_hwc, y, transform):
        self.x, self.y, self.transform = x_hwc, y, transform

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        from PIL import Image
        return self.transform(Image.fromarray(self.x[i])), int(self.y[i])


def _common_loader(x_hwc, y, mean, std, batch_size, workers, train: bool, device):
    import torchvision.transforms as T
    tfs = ([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()] if train else []) + \
          [T.ToTensor(), T.Normalize(mean.tolist(), std.tolist())]
    return torch.utils.data.DataLoader(
        _UInt8Cifar(x_hwc, y, T.Compose(tfs)), batch_size=batch_size, shuffle=train,
        num_workers=workers, pin_memory=device.type == "cuda", persistent_workers=workers > 0,
        drop_last=train)


def bench_common(name, data, device, args) -> dict:
    x_hwc = data["x"].permute(0, 2, 3, 1).contiguous().numpy()
    y = data["y"].numpy()
    torch.manual_seed(0)
    model = build_model(name).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    loader = _common_loader(x_hwc, y, data["mean"], data["std"], args.batch_size, args.workers, True, device)
    batches = _cycle(lambda: iter(loader))

    def step():
        xb, yb = next(batches)
        xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(xb), yb).backward()
        opt.step()

    model.train()
    t = _median_time(step, device, args.warmup, args.steps, args.repeats)
    n_eval = min(len(y), args.eval_images)
    test_loader = _common_loader(x_hwc[:n_eval], y[:n_eval], data["mean"], data["std"], args.batch_size,
                                 args.workers, False, device)

    @torch.no_grad()
    def evaluate():
        model.eval()
        for xb, yb in test_loader:
            (model(xb.to(device, non_blocking=True)).argmax(1) == yb.to(device)).sum()

    te = _median_time(evaluate, device, 1, 1, args.repeats)
    return {"variant": "a", "label": f"(a) common recipe {name}", "model": name,
            "depth": parse_model_name(name)[1],
            "members": 1, "train_img_s": args.steps * args.batch_size / t, "eval_img_s": n_eval / te,
            "precision": "fp32", "workers": args.workers}


def _synthetic(n: int, device) -> dict:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    mean, std = augment.channel_stats(x[:5000])
    return {"x": x, "y": y, "mean": mean, "std": std, "x_dev": x.to(device), "y_dev": y.to(device)}


def measure_step(model_name: str, precision: str, layout: str, steps: int, warmup: int, batch_size: int,
                 eval_images: int = 0) -> dict:
    """img/s of ``steps`` training steps (after ``warmup``) of one net on the CPU, in this process
    and its thread count; with ``eval_images`` also the evaluation forward's img/s."""
    torch.manual_seed(0)
    model = build_model(model_name)
    if layout == "channels_last":
        model = model.to(memory_format=torch.channels_last)
    opt = make_optimizer(model.parameters(), 0.1, 0.9, 1e-4, "cpu")
    step = TrainStep(model, opt, precision)
    g = torch.Generator().manual_seed(0)
    n = max(batch_size, 1024)
    x8 = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    mean, std = augment.channel_stats(x8)
    batches = [(augment.normalize(xb, mean, std), yb) for xb, yb in zip(x8.split(batch_size), y.split(batch_size))
               if yb.numel() == batch_size]
    model.train()
    for i in range(warmup):
        step(*batches[i % len(batches)])
    t0 = time.perf_counter()
    for i in range(steps):
        loss, _ = step(*batches[i % len(batches)])
    float(loss)                                     # the step's result is ready
    train_s = time.perf_counter() - t0
    out = {"model": model_name, "precision": precision, "layout": layout, "threads": torch.get_num_threads(),
           "train_img_s": steps * batch_size / train_s}
    if eval_images:
        xe = augment.normalize(x8[:min(eval_images, EVAL_BATCH)], mean, std)
        model.eval()
        with torch.no_grad():
            eval_sums(model, xe, y[:xe.shape[0]], precision)        # warm-up
            t0 = time.perf_counter()
            eval_sums(model, xe, y[:xe.shape[0]], precision)
            out["eval_img_s"] = xe.shape[0] / (time.perf_counter() - t0)
    return out


def _parallel_rows(models: list[str], precision: str, parallel: int, args: Namespace) -> list[dict]:
    """The training default in ``parallel`` processes at once, each with cores/parallel threads:
    for every model, ``parallel`` copies of its step measured together (their img/s summed)."""
    threads = max(1, usable_cores() // parallel)
    rows = []
    for m in models:
        spec = json.dumps({"model": m, "precision": precision, "layout": "channels_last", "steps": args.steps,
                           "warmup": args.warmup, "batch_size": args.batch_size})
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        procs = [subprocess.Popen([sys.executable, "-m", "resnet_nb.bench.cpu", "--worker", spec], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(parallel)]
        results = []
        for p in procs:
            out, err = p.communicate()
            if p.returncode != 0:
                raise RuntimeError(f"bench worker for {m} failed: {err.strip().splitlines()[-1] if err.strip() else p.returncode}")
            results.append(json.loads(out.strip().splitlines()[-1]))
        rows.append({"model": m, "precision": precision, "layout": "channels_last", "threads": threads,
                     "processes": parallel, "train_img_s": sum(r["train_img_s"] for r in results),
                     "per_process_img_s": [r["train_img_s"] for r in results]})
    return rows


def _rate(rows: list[dict], model: str, **match) -> dict | None:
    """The row of ``model`` (else of the other family at its depth) with ``match``."""
    depth = parse_model_name(model)[1]
    for want in (model, *(f"{f}{depth}" for f in ("plain", "resnet"))):
        for r in rows:
            if r["model"] == want and all(r.get(k) == v for k, v in match.items()):
                return r
    return None


def short_wall_time(train_rate: dict[str, float], eval_rate: dict[str, float], slots: int = 1) -> float:
    """Seconds of the short reproduction's four runs at these img/s per model (``train_rate``:
    one run's training img/s; ``eval_rate``: its evaluation img/s), run in ``slots`` at once in
    seed-major order (greedy: the next run takes the first free slot)."""
    r = SHORT_RECIPE
    free = [0.0] * slots
    for m in r["models"]:
        t = r["epochs"] * (r["n_train"] / train_rate[m] + r["n_test"] / eval_rate[m])
        i = free.index(min(free))
        free[i] += t
    return max(free)


def run_cpu_bench(args: Namespace) -> dict:
    """Every row of the module docstring, and the implied wall times of the short reproduction."""
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    rows: list[dict] = []
    if not args.skip_common:
        data = _synthetic(max(args.n_train, args.batch_size), torch.device("cpu"))
        for m in models:
            a = bench_common(m, data, torch.device("cpu"), args)
            rows.append({"model": m, "precision": "fp32", "layout": "common recipe (DataLoader + transforms)",
                         "threads": torch.get_num_threads(), "train_img_s": a["train_img_s"],
                         "eval_img_s": a["eval_img_s"], "variant": "a"})
            print(_line(rows[-1]), flush=True)
    for m in models:
        for precision, layout in LAYOUTS:
            rows.append({**measure_step(m, precision, layout, args.steps, args.warmup, args.batch_size,
                                        eval_images=args.eval_images), "variant": "layout"})
            print(_line(rows[-1]), flush=True)
    default = default_precision("cpu")
    if args.parallel > 1:
        for r in _parallel_rows(models, default, args.parallel, args):
            rows.append({**r, "variant": "parallel"})
            print(_line(rows[-1]), flush=True)
    implied = {}
    for key, match in (("common_fp32", {"variant": "a"}), ("fp32_nchw", {"variant": "layout", "precision": "fp32",
                                                                          "layout": "nchw"}),
                       ("bf16_nchw", {"variant": "layout", "precision": "bf16", "layout": "nchw"}),
                       ("fp32_channels_last", {"variant": "layout", "precision": "fp32", "layout": "channels_last"}),
                       ("bf16_channels_last", {"variant": "layout", "precision": "bf16", "layout": "channels_last"})):
        got = {m: _rate(rows, m, **match) for m in SHORT_RECIPE["models"]}
        implied[key] = (short_wall_time({m: g["train_img_s"] for m, g in got.items()},
                                        {m: g["eval_img_s"] for m, g in got.items()}) if all(got.values()) else None)
    par = {m: _rate(rows, m, variant="parallel") for m in SHORT_RECIPE["models"]}
    same = {m: _rate(rows, m, variant="layout", precision=default, layout="channels_last") for m in SHORT_RECIPE["models"]}
    if all(par.values()) and all(same.values()):
        # one process of the parallel layout trains at its per-process rate; evaluation shares the cores alike
        per = {m: par[m]["train_img_s"] / par[m]["processes"] for m in par}
        ev = {m: same[m]["eval_img_s"] * per[m] / same[m]["train_img_s"] for m in par}
        implied[f"{default}_channels_last_parallel{args.parallel}"] = short_wall_time(per, ev, slots=args.parallel)
    flops = {m: flops_per_image(m)["train"] for m in models}
    for r in rows:
        r["train_gflop_s"] = r["train_img_s"] * flops[r["model"]] / 1e9
    return {"device": f"CPU: {cpu_model() or platform.machine()}, {usable_cores()} cores", "native_bf16": cpu_has_native_bf16(),
            "default_precision": default, "torch": torch.__version__, "threads": torch.get_num_threads(),
            "data": "synthetic uint8 images: timing only", "batch_size": args.batch_size, "steps": args.steps,
            "warmup": args.warmup, "parallel": args.parallel, "rows": rows, "implied_short_s": implied,
            "train_flops_per_image": flops, "short_flops": short_flops()}


def _line(r: dict) -> str:
    what = r["layout"] if r.get("variant") != "parallel" else f"channels_last, {r['processes']} processes x {r['threads']} thread(s)"
    ev = f"{r['eval_img_s']:>10,.0f}" if r.get("eval_img_s") else f"{'-':>10s}"
    gf = f"{r['train_gflop_s']:>8,.0f}" if r.get("train_gflop_s") else f"{'-':>8s}"
    return f"{r['model']:<10s} {r['precision']:<5s} {what:<44s} {r['train_img_s']:>10,.0f} {gf} {ev}"


def format_cpu_table(res: dict) -> str:
    bf16 = "native bf16 (AVX512-BF16/AMX)" if res["native_bf16"] else "no native bf16: bf16 is emulated"
    lines = [f"device: {res['device']}, {bf16}; torch {res['torch']}, {res['threads']} threads; {res['data']}",
             f"batch {res['batch_size']}, {res['steps']} timed steps after {res['warmup']} warm-up steps; the training "
             f"default here: precision {res['default_precision']}, channels_last", "",
             f"{'model':<10s} {'prec':<5s} {'layout':<44s} {'train img/s':>10s} {'GFLOP/s':>8s} {'eval img/s':>10s}"]
    lines += [_line(r) for r in res["rows"]]
    base = {r["model"]: r["train_img_s"] for r in res["rows"] if r.get("variant") == "a"}
    fp32 = {r["model"]: r["train_img_s"] for r in res["rows"]
            if r.get("variant") == "layout" and (r["precision"], r["layout"]) == ("fp32", "nchw")}
    for r in res["rows"]:
        if r.get("variant") in ("layout", "parallel") and r["model"] in fp32:
            extra = f", {r['train_img_s'] / base[r['model']]:.2f}x the common recipe" if r["model"] in base else ""
            r_what = r["layout"] if r.get("variant") == "layout" else f"{r['processes']} processes"
            lines.append(f"  {r['model']} {r['precision']} {r_what}: {r['train_img_s'] / fp32[r['model']]:.2f}x fp32 NCHW{extra}")
    lines += ["", "implied wall time of the short reproduction (plain/resnet 20/56, 20 epochs x 50k train + 10k test; "
                  "no per-epoch bookkeeping):"]
    for key, s in res["implied_short_s"].items():
        lines.append(f"  {key:<34s} " + ("not measured" if s is None else f"{s:8.0f} s = {s / 60:6.1f} min"))
    if res.get("short_flops"):
        total, best = res["short_flops"], max((r.get("train_gflop_s") or 0 for r in res["rows"]), default=0)
        lines += ["", f"the short reproduction is {total / 1e15:.2f} PFLOP of arithmetic (training and evaluation); "
                      + (f"at the best training rate above ({best:,.0f} GFLOP/s) that alone takes {total / best / 1e9 / 60:.0f} min"
                         if best else "no rate measured")]
    return "\n".join(lines)


def _worker(spec: str) -> int:
    s = json.loads(spec)
    print(json.dumps(measure_step(s["model"], s["precision"], s["layout"], s["steps"], s["warmup"], s["batch_size"])))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        sys.exit(_worker(sys.argv[2]))
    sys.exit("usage: python -m resnet_nb.bench.cpu --worker SPEC_JSON (started by resnet-nb bench --device cpu)")
