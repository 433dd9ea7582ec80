#!/usr/bin/env bash
# Device check of the fast path (issue 6), for a session that has the GPU machine.
#
# Once, in the checkout (../shared/DEVICE.md):
#   mkdir -p .git/info && echo /.device/ >> .git/info/exclude
#   mkdir -p .device && cp ../shared/data/cifar10-jpeg-q75.npz ../shared/tools/cifar10_jpeg_bundle.py .device/
# Then one device call:  run(command="bash scripts/device_check.sh", carry=[".device"], timeout_s=600)
# and, in a later call if device time is left, the whole four-run reproduction alone, timed end
# to end:                run(command="MODE=repro BUDGET=570 bash scripts/device_check.sh", ...)
#
# Steps, inside BUDGET seconds (default 540 = 9 min; each step has its own timeout):
#   0. environment (GPU, torch 2.11 there; papermill is not needed)
#   1. extract the non-canonical CIFAR-10 stand-in (JPEG q75) to $DATA
#   2. graph check: the CUDA-graphed step vs the eager step on the same batches (one model, a pack),
#      an lr change and a partial batch included
#   3. resnet-nb bench: common recipe (a) vs fast path (b) vs packs (c), measured in this same call;
#      3b. in its own process (a crash there cannot cost step 3's results): bench --concurrent (d)
#   4. accuracy: 15 epochs of resnet20, seeds 0 and 1, fast path (bf16 + graphs, seeds packed) vs
#      fp32 eager (RESNET_NB_CUDA_GRAPHS=0, one run at a time); the seed difference is the noise
#   5. if time is left: the seed's four-run reproduction (plain/resnet 20/56, 200 epochs, packed
#      by depth) until the budget ends; its metrics.json say how far it got and how long it took
# Everything goes to $OUT/device_check.tar.gz (logs, JSON, metrics; no checkpoints); a summary
# table prints last. Results on this data are labelled non-canonical by the dataset fingerprint.
set -u
BUDGET=${BUDGET:-540}
MODE=${MODE:-all}          # all | repro (steps 0, 1 and 5 only, with the whole budget)
OUT=${OUT:-/tmp/device_check_out}
W=$(mktemp -d /tmp/device_check.XXXX)
DATA=${DATA:-/root/cifar10}
PY=${PY:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 RESNET_NB_DATA="$DATA"
mkdir -p "$OUT" "$W"
left() { echo $((BUDGET - SECONDS)); }
cap() { local l=$(left); if [ "$l" -lt "$1" ]; then echo $(( l > 5 ? l : 5 )); else echo "$1"; fi; }
step() { echo; echo "=== $1 (t=${SECONDS}s, $(left)s left)"; }
finish() {
  step "summary"
  $PY - "$W" <<'EOF' 2>&1 | tee "$W/summary.txt"
import json, sys
from pathlib import Path
w = Path(sys.argv[1])
print(open(w / "env.txt").read().strip() if (w / "env.txt").exists() else "no environment record")
gc = w / "graph_check.json"
if gc.exists():
    for r in json.loads(gc.read_text()):
        print(f"graph check {r['what']}: max |graph - eager| param diff {r['max_param_diff']:.2e}, captured={r['captured']}")
from resnet_nb.bench import format_table
for name in ("bench.json", "bench_concurrent.json"):
    if (w / name).exists():
        print(f"\n--- {name}")
        print(format_table(json.loads((w / name).read_text())))
def best(run_dir):
    m = json.loads((run_dir / "metrics.json").read_text())
    accs = [r["test_acc"] for r in m if r.get("test_acc") is not None]
    return (m[-1]["epoch"], m[-1]["test_acc"], max(accs), m[-1]["elapsed"]) if m else None
acc = w / "runs" / "acc"
if acc.exists():
    print("\naccuracy, resnet20, 15 epochs (non-canonical JPEG-q75 CIFAR-10 stand-in):")
    res = {}
    for mode in ("fast", "eager"):
        for seed in (0, 1):
            d = acc / mode / f"resnet20-seed{seed}"
            if (d / "metrics.json").exists():
                res[mode, seed] = best(d)
                e, last, top, el = res[mode, seed]
                print(f"  {mode:5s} seed {seed}: epochs {e}, final test acc {last:.4f}, best {top:.4f}, {el:.0f} s")
    for s in (0, 1):
        if ("fast", s) in res and ("eager", s) in res:
            print(f"  seed {s}: fast - eager final test acc {res['fast', s][1] - res['eager', s][1]:+.4f}")
    for mode in ("fast", "eager"):
        if (mode, 0) in res and (mode, 1) in res:
            print(f"  noise ({mode}): seed 1 - seed 0 final test acc {res[mode, 1][1] - res[mode, 0][1]:+.4f}")
rep = w / "runs" / "repro"
if rep.exists():
    print("\nseed reproduction (200 epochs planned; packed by depth; wall time from metrics.json):")
    for d in sorted(p for p in rep.glob("*/*") if (p / "metrics.json").exists()):
        r = best(d)
        if r:
            print(f"  {d.name:10s} epochs done {r[0]:3d}, best test acc {r[2]:.4f}, elapsed {r[3]:.0f} s")
t = w / "repro_time.txt"
if t.exists():
    print("  " + t.read_text().strip())
EOF
  tar --exclude='*.pth' -czf "$OUT/device_check.tar.gz" -C "$W" . && ls -la "$OUT"
}
trap finish EXIT

step "0 environment"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -2
  $PY -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'NO CUDA')"
  $PY -c "import papermill" 2>/dev/null && echo "papermill: present" || echo "papermill: missing (not needed here)"
} 2>&1 | tee "$W/env.txt"

step "1 extract the CIFAR-10 stand-in"
if [ ! -f "$DATA/cifar-10-batches-py/test_batch" ]; then
  timeout 120 $PY .device/cifar10_jpeg_bundle.py extract .device/cifar10-jpeg-q75.npz "$DATA" 2>&1 | tail -3
fi
ls "$DATA/cifar-10-batches-py" 2>&1 | tr '\n' ' '; echo

if [ "$MODE" != repro ]; then
step "2 graph check (captured step == eager step)"
timeout 120 $PY - "$W/graph_check.json" <<'EOF' 2>&1 | tee "$W/graph_check.log"
import copy, json, sys, torch
from resnet_nb import step as fast
from resnet_nb.models import build_model
from resnet_nb.packed import pack_models
dev = torch.device("cuda")
out = []
for what, make, shape in (("resnet20", lambda: build_model("resnet20"), (128, 3, 32, 32)),
                          ("pack plain20+resnet20", lambda: pack_models([build_model("plain20"), build_model("resnet20")]), (2, 128, 3, 32, 32))):
    torch.manual_seed(0)
    a = fast.prepare_model(make(), dev); b = copy.deepcopy(a)
    oa = fast.make_optimizer(a.parameters(), 0.1, 0.9, 1e-4, dev); ob = fast.make_optimizer(b.parameters(), 0.1, 0.9, 1e-4, dev)
    sa, sb = fast.TrainStep(a, oa, "fp32", graph=True), fast.TrainStep(b, ob, "fp32", graph=False)
    g = torch.Generator(device=dev).manual_seed(0)
    for i, lr in enumerate([0.1, 0.1, 0.1, 0.01, 0.01]):
        n = shape[-4] if i < 4 else 80                               # the last batch is partial
        sh = shape[:-4] + (n,) + shape[-3:]
        x = torch.randn(sh, device=dev, generator=g); y = torch.randint(0, 10, sh[:-3], device=dev, generator=g)
        fast.set_lr(oa, lr); fast.set_lr(ob, lr)
        la, _ = sa(x, y); lb, _ = sb(x, y)
    torch.cuda.synchronize()
    diff = max((p - q).abs().max().item() for p, q in zip(a.state_dict().values(), b.state_dict().values()) if p.is_floating_point())
    out.append({"what": what, "captured": sa.captures == 1 and sa.graph is not None, "eager_steps_graphed_run": sa.eager_steps,
                "max_param_diff": diff, "loss_graph": la.tolist(), "loss_eager": lb.tolist()})
    print(out[-1])
json.dump(out, open(sys.argv[1], "w"), indent=1)
EOF

step "3 resnet-nb bench"
timeout $(cap 220) $PY -m resnet_nb.cli bench --out "$W/bench.json" 2>&1 | tee "$W/bench.log"

step "3b experimental: depth-20 and depth-56 pairs in one graph on two streams (own process)"
timeout $(cap 90) $PY -m resnet_nb.cli bench --skip-common --models resnet20,resnet56 --packs 2 --concurrent \
  --out "$W/bench_concurrent.json" 2>&1 | tee "$W/bench_concurrent.log" | tail -12

step "4 accuracy: fast path vs fp32 eager, resnet20, 15 epochs, seeds 0 and 1"
cat > "$W/acc.py" <<'EOF'
import sys
from resnet_nb.config import make_config
from resnet_nb.train import train_many
mode, out = sys.argv[1], sys.argv[2]
cfgs = [make_config("seed", model="resnet20", epochs=15, seed=s, run_name=f"resnet20-seed{s}",
                    precision="bf16" if mode == "fast" else "fp32", device="cuda",
                    allow_noncanonical=True, out_dir=out, run_id=mode) for s in (0, 1)]
train_many(cfgs, pack=(mode == "fast"))
EOF
timeout $(cap 90) $PY "$W/acc.py" fast "$W/runs/acc" 2>&1 | tail -40 > "$W/acc_fast.log"; tail -3 "$W/acc_fast.log"
RESNET_NB_CUDA_GRAPHS=0 timeout $(cap 200) $PY "$W/acc.py" eager "$W/runs/acc" 2>&1 | tail -40 > "$W/acc_eager.log"; tail -3 "$W/acc_eager.log"

fi  # MODE != repro

if [ "$(left)" -gt 90 ]; then
  step "5 seed reproduction, four models packed by depth, until the budget ends"
  t0=$SECONDS
  timeout $(( $(left) - 25 )) $PY - "$W/runs/repro" <<'EOF' 2>&1 | tail -30 > "$W/repro.log"
import sys
from resnet_nb.config import make_config
from resnet_nb.train import train_many
cfgs = [make_config("seed", model=m, precision="bf16", device="cuda", allow_noncanonical=True,
                    out_dir=sys.argv[1], run_id="seed-repro") for m in ("plain20", "resnet20", "plain56", "resnet56")]
train_many(cfgs)
EOF
  rc=$?
  echo "four-run reproduction: exit $rc after $((SECONDS - t0)) s wall ($([ $rc = 0 ] && echo finished || echo 'stopped by the time budget'))" > "$W/repro_time.txt"
  tail -3 "$W/repro.log"
fi
