#!/usr/bin/env bash
# The GPU machine's script (../shared/DEVICE.md, issue 10): the device check of the fast path,
# and the seed reproduction, resumed across device commands and windows.
#
# ---- Once, in the checkout (DEVICE.md):
#   mkdir -p .git/info && echo /.device/ >> .git/info/exclude
#   mkdir -p .device && cp ../shared/data/cifar10-jpeg-q75.npz ../shared/tools/cifar10_jpeg_bundle.py .device/
#
# ---- Before every device command, here:
#   .venv/bin/resnet-nb carry size .device
# prints what the command carries (the checkout's tracked + untracked-not-ignored files plus
# .device) against the 64 MiB limit (exit 1 when over), and the prefix that gives the copy on
# the device its commit (it has no .git): RESNET_NB_COMMIT=<hash> RESNET_NB_COMMIT_DIRTY=<0|1>.
# Write that prefix literally into the command. Then status(): BUDGET = budget_left_s minus
# 150 when no machine is warm (start-up 30-90 s, the transfers, the return), minus 40 when
# one is; the script caps BUDGET at 570 (the 600 s per-command limit minus 30). timeout_s of
# the run call: BUDGET + 20 (the script stops itself before BUDGET; what it left under $OUT
# comes back even when the command is killed).
#
# ---- A first window (no run tars yet): the device check, then the start of the reproduction
# (budget_left_s 900, cold: BUDGET = min(900 - 150, 570))
#   run(command="RESNET_NB_COMMIT=<hash> RESNET_NB_COMMIT_DIRTY=<0|1> BUDGET=570 bash scripts/device_check.sh",
#       carry=[".device"], timeout_s=590)
# Back here, from files_at: device_check.tar.gz (logs, JSON, metrics, summary.txt, steps.tsv)
# and runs/gpu-seed__<run>.tar (one per run dir, last.pth and best.pth included):
#   rm -rf .device/runs && mkdir -p .device/runs && cp <files_at>/runs/*.tar .device/runs/
#   .venv/bin/resnet-nb carry restore <files_at>/runs/*.tar --run-id gpu-seed   # a copy in experiments/
# Then at once, if the window has time left, the next command (MODE=repro, as below, with
# BUDGET = budget_left_s - 40): within 30 s of the last command the machine is still warm
# and the run dirs are still in $RUNS there (the restore step then keeps them: they are as far
# along as the carried tars); a machine gone cold restores the tars just copied.
#
# ---- A resume window (or a later command): the reproduction only, with the training CLI
# (papermill's wheels do not fit beside the data and the checkpoints)
#   .venv/bin/resnet-nb carry size .device      # data ~37 MB + .device/runs/*.tar ~27 MB + checkout
#   run(command="RESNET_NB_COMMIT=<hash> RESNET_NB_COMMIT_DIRTY=0 MODE=repro BUDGET=<n> bash scripts/device_check.sh",
#       carry=[".device"], timeout_s=<n + 20>)
# The restore step untars .device/runs/*.tar into $RUNS (checked: another run id or config is
# refused, a run dir further along is kept); the four runs then resume from last.pth. Repeat,
# copying the returned tars into .device/runs/, until the summary says every run finished.
# Then locally: resnet-nb carry restore ... --run-id gpu-seed, and the report.
#
# ---- Environment
#   BUDGET    seconds this command may use: required (a default would assume a fresh window)
#   MODE      all (steps 0-5) | repro (steps 0, 1, R, 5) | summary (print the summary of an
#             extracted device_check.tar.gz, W=<folder>, on any machine: its run dirs are W/runs)
#   RUN_ID    gpu-seed: the reproduction's fixed run id, the same in every window (the card is
#             recorded in each run's config.json; a window may get an H100 instead of an H200)
#   RUNS      /root/resnet-nb-runs: the fixed folder of the run dirs (a command on the
#             still-warm machine resumes there; a fresh machine restores the carried tars)
#   PRECISION bf16 (the reproduction's and the fast accuracy runs'); DEVICE cuda
#   PACK_MODE grouped | branches: the reproduction's --pack-mode (default grouped: same-depth pairs
#             as one grouped network, depth 20 then 56; branches: the four nets as the branches of one
#             CUDA graph, a stream each). Same mathematics, so a run resumes in either mode: choose
#             from step 3b's bench (the (e) vs (c) lines and the implied wall times), e.g. PACK_MODE=branches
#   PRESET, MODELS, DATASET, EXTRA: the reproduction's preset (seed), models (the seed four),
#             dataset (cifar10) and further TrainConfig values as JSON ({}), for the CPU smoke
#             test (tests/integration/test_device_script.py); PY python3; DATA /root/cifar10;
#             CARRIED .device/runs (the carried run tars); PACK_EVERY 60 (s between packs in step 5)
#   COMPILE_DEPTHS "56 20": step 4c's depths, a process each, in this order ("" skips step 4c); a depth
#             starts only with 60 s or more left. RESNET_NB_COMPILE_BACKEND / RESNET_NB_COMPILE_MODE
#             (resnet_nb.step) reach it through the environment
#
# ---- Steps; each caps its timeout to the time left, a training step passes the time it has
# left as --time-budget (it then pauses cleanly at an epoch boundary, status paused, exit 75)
#   0. environment (GPU, torch, the commit; papermill is not needed)
#   1. extract the non-canonical CIFAR-10 stand-in (JPEG q75) to $DATA
#   R. restore carried run tars (.device/runs/*.tar) into $RUNS/$RUN_ID
#   2. graph check: the CUDA-graphed step vs the eager step on the same batches (one model, a pack),
#      an lr change and a partial batch included
#      2b. sync check (resnet-nb bench --sync-check, ~30 s estimated, cap 90 s): host syncs per training step of the real
#          loop (plain20+resnet20, both pack modes) under torch.cuda.set_sync_debug_mode; failed = a step syncs
#   3. resnet-nb bench: common recipe (a) vs fast path (b) vs packs (c), measured in this same call;
#      3b. in its own process (a crash there cannot cost step 3's results): bench --concurrent: the
#          pack modes, (c) grouped pairs vs (e) branch pairs per depth, (f) all four as branches of one
#          graph (--pack-mode branches), (d) the grouped pairs of 20 and 56 in one graph
#   4. accuracy: 15 epochs of resnet20, seeds 0 and 1, fast path (bf16 + graphs, seeds packed) vs
#      fp32 eager (RESNET_NB_CUDA_GRAPHS=0, one run at a time); the seed difference is the noise
#      4c. (after 4, so the precision comparison is never starved by it) compile, then capture (issue 10): bench --compile, a process per depth of COMPILE_DEPTHS (56, then
#          20), each capped at 150 s: (b) one resnet<d> and (c) the grouped pair against (g) the same steps with
#          forward+loss through torch.compile (inductor, no inductor CUDA graphs) captured in the step's graph:
#          img/s, compile seconds apart, loss difference to the uncompiled step. Compiling a ResNet-56 forward
#          and backward with inductor may take 1-3 min on a cold machine: a depth that runs out of its 150 s
#          fails alone (its rows lost, the other depth's kept). Training does not compile yet
#   5. the seed reproduction (plain/resnet 20/56, 200 epochs, packed as PACK_MODE says) until it finishes
#      or pauses for the budget; its run dirs are packed into $OUT/runs every 60 s and at the end
# After every step: $OUT/device_check.tar.gz (this command's logs and JSON, the run dirs'
# config.json/metrics.json; no checkpoints) and $OUT/runs/<run id>__<run>.tar (resnet-nb carry
# pack, <= 16 MiB each): 1 + 4 files, each replaced atomically. A step's verdict: finished
# (exit 0), paused (resumable) (75), failed (anything else). The summary table prints last;
# the script exits 1 if a step failed, else 75 if one paused, else 0.
set -u -o pipefail

MAX_COMMAND_S=600                    # the device tool's per-command limit
MODE=${MODE:-all}
RUN_ID=${RUN_ID:-gpu-seed}
RUNS_GIVEN=${RUNS:-}
RUNS=${RUNS:-/root/resnet-nb-runs}
OUT=${OUT:-/tmp/device_check_out}
DATA=${DATA:-/root/cifar10}
PY=${PY:-python3}
PRESET=${PRESET:-seed}
MODELS=${MODELS:-plain20,resnet20,plain56,resnet56}
DATASET=${DATASET:-cifar10}
DEVICE=${DEVICE:-cuda}
PRECISION=${PRECISION:-bf16}
EXTRA=${EXTRA:-"{}"}
PACK_MODE=${PACK_MODE:-grouped}
PACK_EVERY=${PACK_EVERY:-60}
COMPILE_DEPTHS=${COMPILE_DEPTHS-56 20}
CARRIED=${CARRIED:-.device/runs}     # the run tars carried in
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 RESNET_NB_DATA="$DATA"

if [ "$MODE" != summary ]; then
  case ${BUDGET:-} in
    '' | *[!0-9]*)
      echo "device_check.sh: BUDGET=<seconds> is required: the device tool's status.budget_left_s minus" \
           "150 (no machine warm) or 40 (one warm), at most $((MAX_COMMAND_S - 30)); got '${BUDGET:-}'" >&2
      exit 2 ;;
  esac
  if [ "$BUDGET" -gt $((MAX_COMMAND_S - 30)) ]; then
    echo "BUDGET $BUDGET capped at $((MAX_COMMAND_S - 30)) s (one command runs at most $MAX_COMMAND_S s)"
    BUDGET=$((MAX_COMMAND_S - 30))
  fi
fi

left() { echo $((BUDGET - SECONDS)); }
# cap S: S, or the time left when that is less (at least 1)
cap() { local l; l=$(left); if [ "$l" -lt "$1" ]; then echo $((l > 1 ? l : 1)); else echo "$1"; fi; }
banner() { echo; echo "=== $1 (t=${SECONDS}s, $(left)s left)"; }
verdict() {
  case $1 in
    0) echo "finished" ;;
    75) echo "paused (resumable)" ;;
    124 | 137) echo "failed (killed by its ${2}s timeout; its runs resume from last.pth)" ;;
    *) echo "failed" ;;
  esac
}
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$W/steps.tsv"; }

# The results, after every step: the small tar (tmp + rename) and one tar per run dir.
publish() {
  mkdir -p "$OUT"
  local tmp="$OUT/.device_check.tar.gz.tmp" parts=(-C "$W" .)
  local base; base=$(basename "$RUNS")
  [ -d "$RUNS" ] && parts+=(-C "$(dirname "$RUNS")" "$base")     # as runs/ in the tar
  tar -czf "$tmp" --exclude='*.pth' --exclude='.lock' --exclude='.*.tmp' --exclude='.stop_packer' \
    --transform="s|^$base/|runs/|" "${parts[@]}"
  if [ $? -le 1 ]; then                # 1: a file changed while it was read (still written)
    mv -f "$tmp" "$OUT/device_check.tar.gz"
  else
    rm -f "$tmp"; echo "publish: tar of the results failed"
  fi
  pack_runs
}
pack_runs() {
  compgen -G "$RUNS/$RUN_ID/*/config.json" > /dev/null || return 0     # no run dir yet
  $PY -m resnet_nb.carry pack --run-id "$RUN_ID" --out-dir "$RUNS" --to "$OUT/runs" >> "$W/pack.log" 2>&1 \
    || echo "pack of $RUNS/$RUN_ID failed: $(tail -n 1 "$W/pack.log")"
}
# Packs the run dirs every PACK_EVERY s while a training step runs; stopped through a file
# (killing it could leave a pack running that replaces a newer tar after the final one).
start_packer() {
  rm -f "$W/.stop_packer"
  ( n=0; while [ ! -e "$W/.stop_packer" ]; do
      sleep 1; n=$((n + 1))
      if [ "$n" -ge "$PACK_EVERY" ]; then n=0; pack_runs; fi
    done ) &
  PACKER=$!
}
stop_packer() { touch "$W/.stop_packer"; wait "$PACKER" 2>/dev/null; }

# run_step NAME LIMIT CMD...: CMD under timeout (LIMIT capped to the time left), output in
# $W/NAME.log (no pipe: the status is CMD's); records the verdict, prints the log's tail,
# publishes the results. Returns CMD's status.
run_step() {
  local name=$1 limit t0=$SECONDS rc v
  limit=$(cap "$2"); shift 2
  [ "${TRAINS:-0}" = 1 ] && start_packer
  timeout -k 10 "$limit" "$@" > "$W/$name.log" 2>&1
  rc=$?
  [ "${TRAINS:-0}" = 1 ] && stop_packer
  v=$(verdict "$rc" "$limit")
  record "$name" "$rc" "$((SECONDS - t0))" "$v"
  tail -n "${TAIL:-4}" "$W/$name.log"
  echo "--> $name: $v (exit $rc, $((SECONDS - t0)) s of at most $limit s)"
  publish
  return "$rc"
}
skip_step() { record "$1" - 0 "skipped ($2)"; echo "--> $1: skipped ($2)"; }

# The training driver of steps 4 and 5 (the training CLI's train_many: same-depth runs packed
# on CUDA; no papermill): one config per model and seed from a JSON spec; exit 0 when every
# run finished, 75 when the others paused for the time budget, 1 otherwise.
write_driver() {
  cat > "$W/train_runs.py" <<'EOF'
import json, sys
from resnet_nb.config import make_config
from resnet_nb.runs import CONFIG_FILE, read_json
from resnet_nb.train import train_many
spec = json.loads(sys.argv[1])
models, seeds = spec.pop("models"), spec.pop("seeds", [None])
several = len(seeds) > 1
pack = spec.pop("pack", None)
preset = spec.pop("preset")
cfgs = [make_config(preset, model=m, **({"seed": s} if s is not None else {}),
                    run_name=f"{m}-seed{s}" if several else m, **spec) for m in models for s in seeds]
dirs = train_many(cfgs, pack=pack)
status = {d.name: read_json(d / CONFIG_FILE).get("status") for d in dirs}
print("statuses:", " ".join(f"{k}={v}" for k, v in status.items()))
sys.exit(0 if all(v == "finished" for v in status.values())
         else 75 if all(v in ("finished", "paused") for v in status.values()) else 1)
EOF
}

# ---------------------------------------------------------------------------- summary
summary() {
  cat > "$W/summary.py" <<'EOF'
import json, sys
from pathlib import Path
w, runs, run_id = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
def read(p, default=None):
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return default
env = w / "env.log"
print(env.read_text().strip() if env.exists() else "no environment record")
steps = w / "steps.tsv"
if steps.exists():
    print("\nsteps (exit status: 0 finished, 75 paused (resumable), else failed):")
    for line in steps.read_text().splitlines():
        name, rc, sec, verdict = line.split("\t")
        print(f"  {name:16s} {verdict} (exit {rc}, {sec} s)")
for r in read(w / "graph_check.json", []):
    print(f"graph check {r['what']}: max |graph - eager| param diff {r['max_param_diff']:.2e}, captured={r['captured']}")
    if "eval_counts" in r:
        print(f"  evaluation: max |graph - eager| summed loss {r['eval_max_loss_diff']:.2e}, correct count "
              f"{r['eval_correct_diff']} (of 1000), counts {r['eval_counts']}")
for m in (read(w / "sync_check.json") or {}).get("modes", []):
    rt = m.get("runtime") or {}
    print(f"sync check {m['mode']}: {m['per_step']:.3g} host syncs per training step ({m['syncs'][0]} in "
          f"{m['steps'][0]} steps, {m['syncs'][1]} in {m['steps'][1]}); graph steps {rt.get('graph_steps')}, "
          f"evaluation graph batches {rt.get('eval_graph_batches')}"
          + (f"; per step at {', '.join(m['growing'])}" if m.get("growing") else ""))
for name in ("bench.json", "bench_concurrent.json"):
    b = read(w / name)
    if b is not None:
        from resnet_nb.bench import format_table
        print(f"\n--- {name}")
        print(format_table(b))
compiled = [(p.name, read(p)) for p in sorted(w.glob("bench_compile*.json"))]     # step 4c, a file per depth
compiled = [(n, b) for n, b in compiled if b is not None]
if compiled:
    from resnet_nb.bench import format_table, merge_results
    print(f"\n--- {' + '.join(n for n, _ in compiled)} (bench --compile, a process per depth, merged)")
    print(format_table(merge_results([b for _, b in compiled])))
def state(run_dir):
    """(status, epochs done, planned, last test acc, best test acc, elapsed s); a metrics.json
    that is missing or still [] gives 0 epochs and no accuracies."""
    meta = read(run_dir / "config.json", {}) or {}
    m = read(run_dir / "metrics.json", []) or []
    accs = [r["test_acc"] for r in m if r.get("test_acc") is not None]
    planned = (meta.get("config") or {}).get("epochs")
    last = m[-1] if m else {}
    return (meta.get("status") or "-", len(m), planned, last.get("test_acc"), max(accs) if accs else None,
            last.get("elapsed"))
def fmt(v, spec):
    return "-" if v is None else format(v, spec)
acc = runs / "acc"
if acc.exists():
    print("\naccuracy, resnet20, 15 epochs (non-canonical JPEG-q75 CIFAR-10 stand-in):")
    res = {}
    for mode in ("fast", "eager"):
        for seed in (0, 1):
            d = acc / mode / f"resnet20-seed{seed}"
            if d.exists():
                res[mode, seed] = s = state(d)
                print(f"  {mode:5s} seed {seed}: {s[0]}, epochs {s[1]}, final test acc {fmt(s[3], '.4f')}, "
                      f"best {fmt(s[4], '.4f')}, {fmt(s[5], '.0f')} s")
    def final(k):
        return res[k][3] if k in res and res[k][1] == 15 else None
    for s in (0, 1):
        if final(("fast", s)) is not None and final(("eager", s)) is not None:
            print(f"  seed {s}: fast - eager final test acc {final(('fast', s)) - final(('eager', s)):+.4f}")
    for mode in ("fast", "eager"):
        if final((mode, 0)) is not None and final((mode, 1)) is not None:
            print(f"  noise ({mode}): seed 1 - seed 0 final test acc {final((mode, 1)) - final((mode, 0)):+.4f}")
rep = runs / run_id
if rep.exists():
    print(f"\nreproduction {run_id} (packed by depth; wall time from metrics.json):")
    dirs = sorted(p for p in rep.iterdir() if (p / "config.json").is_file())
    for d in dirs:
        s = state(d)
        print(f"  {d.name:10s} {s[0]}, epochs {s[1]}/{s[2]}, last test acc {fmt(s[3], '.4f')}, "
              f"best {fmt(s[4], '.4f')}, elapsed {fmt(s[5], '.0f')} s")
    if not dirs:
        print("  no run dirs yet")
EOF
  $PY "$W/summary.py" "$W" "$RUNS" "$RUN_ID" 2>&1 | tee "$W/summary.txt"
}

if [ "${DEVICE_CHECK_LIB:-0}" = 1 ]; then return 0 2>/dev/null || exit 0; fi   # tests: functions only

if [ "$MODE" = summary ]; then
  : "${W:?MODE=summary needs W=<the extracted device_check.tar.gz>}"
  RUNS=${RUNS_GIVEN:-$W/runs}
  summary
  exit 0
fi

W=$(mktemp -d /tmp/device_check.XXXX)
mkdir -p "$OUT" "$RUNS"
: > "$W/steps.tsv"
finish() {
  local rc=0
  banner "summary"
  summary
  publish
  ls -la "$OUT" "$OUT/runs" 2>/dev/null
  if awk -F'\t' '$4 ~ /^failed/ {f = 1} END {exit !f}' "$W/steps.tsv"; then rc=1
  elif awk -F'\t' '$4 ~ /^paused/ {f = 1} END {exit !f}' "$W/steps.tsv"; then rc=75; fi
  exit "$rc"
}
trap finish EXIT
write_driver

banner "0 environment"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  $PY -c "
import torch, torchvision
from resnet_nb.environment import git_commit
print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'cuda', torch.version.cuda,
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'NO CUDA')
g = git_commit()
print('commit', g['commit'], 'dirty' if g['dirty'] else 'clean' if g['dirty'] is False else 'dirty: unknown',
      'from', g['source'] or 'nowhere: pass RESNET_NB_COMMIT=<hash> (resnet-nb carry size prints it)')"
  $PY -c "import papermill" 2>/dev/null && echo "papermill: present" || echo "papermill: missing (not needed here)"
  echo "carried: $(du -sb .device 2>/dev/null | cut -f1 || echo 0) bytes in .device ($(ls "$CARRIED"/*.tar 2>/dev/null | wc -l) run tars)"
} > "$W/env.log" 2>&1
cat "$W/env.log"

banner "1 extract the CIFAR-10 stand-in"
if [ "$DATASET" != cifar10 ]; then
  skip_step extract "dataset $DATASET"
elif [ -f "$DATA/cifar-10-batches-py/test_batch" ]; then
  skip_step extract "already in $DATA"
else
  run_step extract 120 $PY .device/cifar10_jpeg_bundle.py extract .device/cifar10-jpeg-q75.npz "$DATA"
fi

banner "R restore the carried run dirs of $RUN_ID"
restored=ok
shopt -s nullglob
tars=("$CARRIED"/*.tar)
shopt -u nullglob
if [ ${#tars[@]} -eq 0 ]; then
  skip_step restore "no $CARRIED/*.tar carried"
else
  TAIL=10 run_step restore 120 $PY -m resnet_nb.carry restore "${tars[@]}" --run-id "$RUN_ID" --out-dir "$RUNS" \
    || restored=failed
fi

if [ "$MODE" != repro ]; then
banner "2 graph check (captured step == eager step)"
cat > "$W/graph_check.py" <<'EOF'
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
    eager_steps = sa.eager_steps
    a.eval(); fwd = fast.EvalForward(a, "fp32", graph=True)          # evaluation: replayed graph vs eager
    xe = torch.randn(2500, 3, 32, 32, device=dev, generator=g); ye = torch.randint(0, 10, (2500,), device=dev, generator=g)
    ge, ee = [], []
    for _ in range(2):                    # 2 full batches + a partial; a training step in place between the rounds
        with torch.no_grad():
            ge += [fwd(xe[i:i + 1000], ye[i:i + 1000]) for i in range(0, 2500, 1000)]
            ee += [fast.eval_sums(a, xe[i:i + 1000], ye[i:i + 1000]) for i in range(0, 2500, 1000)]
        a.train(); sa(x, y); a.eval()
    torch.cuda.synchronize()
    out.append({"what": what, "captured": sa.captures == 1 and sa.graph is not None, "eager_steps_graphed_run": eager_steps,
                "max_param_diff": diff, "loss_graph": la.tolist(), "loss_eager": lb.tolist(),
                "eval_counts": fwd.counts(), "eval_max_loss_diff": max((p[0] - q[0]).abs().max().item() for p, q in zip(ge, ee)),
                "eval_correct_diff": max((p[1] - q[1]).abs().max().item() for p, q in zip(ge, ee))})
    print(out[-1])
json.dump(out, open(sys.argv[1], "w"), indent=1)
EOF
run_step graph_check 120 $PY "$W/graph_check.py" "$W/graph_check.json"

banner "2b sync check (host syncs per training step of the real loop)"
TAIL=6 run_step sync_check 90 $PY -m resnet_nb.cli bench --sync-check --out "$W/sync_check.json"

banner "3 resnet-nb bench"
TAIL=12 run_step bench 220 $PY -m resnet_nb.cli bench --out "$W/bench.json"

banner "3b pack modes: grouped vs branches, depth-20 and depth-56 pairs, all four in one graph (own process)"
TAIL=16 run_step bench_concurrent 150 $PY -m resnet_nb.cli bench --skip-common --models resnet20,resnet56 --packs 2 \
  --concurrent --out "$W/bench_concurrent.json"

banner "4 accuracy: fast path vs fp32 eager, resnet20, 15 epochs, seeds 0 and 1"
for mode in fast eager; do
  l=$(cap $([ $mode = fast ] && echo 90 || echo 200))
  spec="{\"preset\": \"seed\", \"models\": [\"resnet20\"], \"seeds\": [0, 1], \"epochs\": 15, \"device\": \"cuda\",
         \"precision\": \"$([ $mode = fast ] && echo bf16 || echo fp32)\", \"pack\": $([ $mode = fast ] && echo true || echo false),
         \"allow_noncanonical\": true, \"out_dir\": \"$RUNS/acc\", \"run_id\": \"$mode\", \"time_budget\": $((l > 20 ? l - 15 : 5))}"
  if [ $mode = eager ]; then
    RESNET_NB_CUDA_GRAPHS=0 run_step acc_$mode "$l" $PY "$W/train_runs.py" "$spec"
  else
    run_step acc_$mode "$l" $PY "$W/train_runs.py" "$spec"
  fi
done
for d in $COMPILE_DEPTHS; do
  banner "4c compile, then capture: depth $d, (b)/(c) vs compiled (g) (own process, cap 150 s: compiling takes minutes)"
  if [ "$(left)" -lt 60 ]; then
    skip_step "bench_compile$d" "$(left) s left, under 60"
  else
    TAIL=8 run_step "bench_compile$d" 150 $PY -m resnet_nb.cli bench --skip-common --models "resnet$d" --packs 2 \
      --compile --out "$W/bench_compile$d.json"
  fi
done

fi  # MODE != repro

if [ "$restored" != ok ]; then
  skip_step repro "the carried run dirs were not restored (restore.log): training now would start them over"
elif [ "$(left)" -le 90 ]; then
  skip_step repro "$(left) s left, under 90"
else
  banner "5 seed reproduction $RUN_ID ($MODELS, pack mode $PACK_MODE) until it finishes or the budget ends"
  l=$(( $(left) - 25 ))               # the summary, the last packs and the results tar
  spec="{\"preset\": \"$PRESET\", \"models\": $($PY -c 'import json, sys; print(json.dumps(sys.argv[1].split(",")))' "$MODELS"),
         \"device\": \"$DEVICE\", \"precision\": \"$PRECISION\", \"dataset\": \"$DATASET\", \"allow_noncanonical\": true,
         \"pack_mode\": \"$PACK_MODE\",
         \"out_dir\": \"$RUNS\", \"run_id\": \"$RUN_ID\", \"time_budget\": $((l - 30 > 1 ? l - 30 : 1))}"
  spec=$($PY -c 'import json, sys; print(json.dumps({**json.loads(sys.argv[1]), **json.loads(sys.argv[2])}))' "$spec" "$EXTRA")
  TAIL=8 TRAINS=1 run_step repro "$l" $PY "$W/train_runs.py" "$spec"
fi
