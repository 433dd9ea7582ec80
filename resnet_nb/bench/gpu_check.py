"""``resnet-nb gpu-check``: check and measure the GPU fast path on your own card, in one go.

Four steps, each in its own process with a share of ``--time-budget`` (a step that runs out is
stopped and reported, the next one still runs), results in one folder (``--out``):

1. ``graph_check.json``: the CUDA-graphed training step against the eager one on the same
   batches from the same weights (one network and a grouped pack; the last batch partial, an lr
   change on the way), and the graphed evaluation forward against the eager one: the largest
   parameter and loss differences, and whether the graph was captured;
2. ``sync.json``: host syncs per training step of the real loop (``bench --sync-check``);
3. ``bench.json``: training images/s, common recipe vs fast paths (``resnet-nb bench``);
4. ``parity.json``: the short recipe's first epochs in fp32 and bf16 on the GPU, against the
   seed-to-seed difference (``resnet-nb parity``; needs CIFAR-10, ``--data-root``), so that a
   bf16 GPU default rests on a measurement as the CPU's does.

``summary.txt`` lists every step's outcome. Without CUDA the command says so and exits 2.
"""
from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["graph_vs_eager", "add_arguments", "run_cli", "STEPS"]

# step -> (share of the budget, the command after "resnet-nb"), {out} the results folder
STEPS = {
    "graph_check": (0.1, None),
    "sync": (0.15, ["bench", "--device", "cuda", "--sync-check", "--out", "{out}/sync.json"]),
    "bench": (0.3, ["bench", "--device", "cuda", "--out", "{out}/bench.json"]),
    "parity": (0.45, ["parity", "--device", "cuda", "--models", "plain56,resnet56", "--seeds", "0,1",
                      "--epochs", "3", "--parallel", "1", "--out", "{out}/parity.json"]),
}


def graph_vs_eager(device: str = "cuda") -> list[dict]:
    """The graphed step and evaluation against the eager ones (step 1), on ``device``."""
    import torch

    from resnet_nb.models.packed import pack_models
    from resnet_nb.models.resnet import build_model
    from resnet_nb.training import evaluation, schedule, step

    dev = torch.device(device)
    out = []
    cases = (("resnet20", lambda: build_model("resnet20"), (128, 3, 32, 32)),
             ("pack plain20+resnet20", lambda: pack_models([build_model("plain20"), build_model("resnet20")]),
              (2, 128, 3, 32, 32)))
    for what, make, shape in cases:
        torch.manual_seed(0)
        a = step.prepare_model(make(), dev)
        b = copy.deepcopy(a)
        oa, ob = (schedule.make_optimizer(m.parameters(), 0.1, 0.9, 1e-4, dev) for m in (a, b))
        sa, sb = step.TrainStep(a, oa, "fp32", graph=True), step.TrainStep(b, ob, "fp32", graph=False)
        g = torch.Generator(device=dev).manual_seed(0)
        for i, lr in enumerate([0.1, 0.1, 0.1, 0.01, 0.01]):
            n = shape[-4] if i < 4 else 80                              # the last batch is partial
            sh = shape[:-4] + (n,) + shape[-3:]
            x = torch.randn(sh, device=dev, generator=g)
            y = torch.randint(0, 10, sh[:-3], device=dev, generator=g)
            schedule.set_lr(oa, lr)
            schedule.set_lr(ob, lr)
            la, _ = sa(x, y)
            lb, _ = sb(x, y)
        params = max((p - q).abs().max().item() for p, q in zip(a.state_dict().values(), b.state_dict().values())
                     if p.is_floating_point())
        a.eval()
        fwd = evaluation.EvalForward(a, "fp32", graph=True)
        xe = torch.randn(2500, 3, 32, 32, device=dev, generator=g)
        ye = torch.randint(0, 10, (2500,), device=dev, generator=g)
        with torch.no_grad():
            ge = [fwd(xe[i:i + 1000], ye[i:i + 1000]) for i in range(0, 2500, 1000)]
            ee = [evaluation.eval_sums(a, xe[i:i + 1000], ye[i:i + 1000]) for i in range(0, 2500, 1000)]
        out.append({"what": what, "captured": sa.graph is not None, "counts": sa.counts(),
                    "max_param_diff": params, "last_loss_diff": (la - lb).abs().max().item(),
                    "eval_counts": fwd.counts(),
                    "eval_max_loss_diff": max((p[0] - q[0]).abs().max().item() for p, q in zip(ge, ee)),
                    "eval_correct_diff": max((p[1] - q[1]).abs().max().item() for p, q in zip(ge, ee))})
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="gpu-check", help="folder for the results (created)")
    p.add_argument("--time-budget", type=float, default=1800.0,
                   help="seconds for all four steps, shared out as 10/15/30/45 %% (default: 1800)")
    p.add_argument("--data-root", default=None, help="folder with CIFAR-10, for the parity step")
    p.add_argument("--allow-noncanonical", action="store_true", help="accept a CIFAR-10 copy with other md5 sums")
    p.add_argument("--skip", default="", help="comma list of steps to leave out (graph_check, sync, bench, parity)")


def _run_step(name: str, argv: list[str], limit: float, out: Path) -> dict:
    t0 = time.monotonic()
    log = out / f"{name}.log"
    with open(log, "w") as f:
        try:
            rc = subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT, timeout=max(1.0, limit)).returncode
            verdict = {0: "ok", 75: "paused (rerun to resume)"}.get(rc, f"failed (exit {rc}; see {log.name})")
        except subprocess.TimeoutExpired:
            rc, verdict = None, f"stopped by its share of the time budget ({limit:.0f} s)"
    return {"step": name, "exit": rc, "seconds": round(time.monotonic() - t0, 1), "verdict": verdict}


def run_cli(args: argparse.Namespace) -> int:
    import torch

    if not torch.cuda.is_available():
        print("resnet-nb gpu-check: no CUDA GPU here (torch.cuda.is_available() is False); run it on a machine "
              "with one. On a CPU: resnet-nb bench --device cpu and resnet-nb parity", file=sys.stderr)
        return 2
    out = Path(args.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = skip - set(STEPS)
    if unknown:
        raise ValueError(f"--skip: unknown step {sorted(unknown)[0]!r}; steps: {', '.join(STEPS)}")
    data = (["--data-root", args.data_root] if args.data_root else []) + \
        (["--allow-noncanonical"] if args.allow_noncanonical else [])
    results = [{"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "cuda": torch.version.cuda}]
    for name, (share, cmd) in STEPS.items():
        if name in skip:
            results.append({"step": name, "verdict": "skipped (--skip)"})
            continue
        if cmd is None:
            argv = [sys.executable, "-c", "import json, sys; from resnet_nb.bench.gpu_check import graph_vs_eager; "
                                          f"json.dump(graph_vs_eager(), open({str(out / 'graph_check.json')!r}, 'w'), "
                                          "indent=1)"]
        else:
            argv = [sys.executable, "-m", "resnet_nb.cli", *[c.format(out=out) for c in cmd],
                    *(data if name == "parity" else [])]
        results.append(_run_step(name, argv, share * args.time_budget, out))
        print(f"{name}: {results[-1]['verdict']} ({results[-1]['seconds']} s)", flush=True)
    (out / "gpu_check.json").write_text(json.dumps(results, indent=1) + "\n")
    lines = [f"{results[0]['device']}, torch {results[0]['torch']}, CUDA {results[0]['cuda']}"]
    lines += [f"{r['step']}: {r['verdict']}" for r in results[1:]]
    (out / "summary.txt").write_text("\n".join(lines) + "\n")
    print(f"results in {out}/ (summary.txt)")
    return 0 if all(r.get("exit") in (0, None) and "stopped" not in r["verdict"] for r in results[1:]
                    if "skipped" not in r["verdict"]) else 1
