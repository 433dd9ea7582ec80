"""scripts/device_check.sh on the CPU: what can be checked without the GPU machine.

Its functions are sourced (``DEVICE_CHECK_LIB=1``) and run on small commands: the verdict of a
step is its command's exit status (0 finished, 75 paused, else failed), seen through no pipe;
results reach $OUT after every step; the summary survives a metrics.json that is still ``[]``
or missing; the training driver of step 5 pauses for the budget with exit 75.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "device_check.sh"


def _bash(code: str, tmp: Path, timeout: float = 60, **env) -> subprocess.CompletedProcess:
    """``code`` in bash after sourcing the script's functions; $W, $OUT, $RUNS under ``tmp``."""
    full = {**os.environ, "DEVICE_CHECK_LIB": "1", "BUDGET": "300", "PY": sys.executable,
            "RUNS": str(tmp / "runs"), "OUT": str(tmp / "out"), "OMP_NUM_THREADS": "1", **env}
    script = f'source "{SCRIPT}"\nW="{tmp}/w"; mkdir -p "$W" "$RUNS"\n{code}'
    return subprocess.run(["bash", "-c", script], cwd=ROOT, env=full, capture_output=True, text=True,
                          timeout=timeout)


def _steps(tmp: Path) -> list[list[str]]:
    return [line.split("\t") for line in (tmp / "w" / "steps.tsv").read_text().splitlines()]


def test_the_script_parses():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_budget_is_required_and_capped_at_one_command(tmp_path):
    r = subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, capture_output=True, text=True, timeout=30,
                       env={k: v for k, v in os.environ.items() if k != "BUDGET"})
    assert r.returncode == 2 and "BUDGET=<seconds> is required" in r.stderr and "budget_left_s" in r.stderr
    r = _bash('echo "budget $BUDGET"', tmp_path, BUDGET="900")
    assert r.stdout.splitlines()[-1] == "budget 570" and "capped at 570" in r.stdout


def test_a_step_verdict_is_its_commands_exit_status(tmp_path):
    r = _bash("""
false | true; echo "pipefail: $?"
run_step ok 20 bash -c 'echo done | cat'
run_step failing 20 bash -c 'echo log line; exit 3' | tail -n 1; echo "through a pipe: $?"
run_step paused 20 bash -c 'exit 75'
run_step slow 1 sleep 20
echo "rc of the last: $?"
""", tmp_path)
    assert "pipefail: 1" in r.stdout and "through a pipe: 3" in r.stdout and "rc of the last: 124" in r.stdout
    steps = _steps(tmp_path)
    assert [(s[0], s[1], s[3]) for s in steps] == [
        ("ok", "0", "finished"), ("failing", "3", "failed"), ("paused", "75", "paused (resumable)"),
        ("slow", "124", "failed (killed by its 1s timeout; its runs resume from last.pth)")]
    assert (tmp_path / "w" / "failing.log").read_text() == "log line\n"
    with tarfile.open(tmp_path / "out" / "device_check.tar.gz") as t:   # published after every step
        assert "./steps.tsv" in t.getnames()


def test_summary_of_a_run_without_epochs_yet(tmp_path):
    cfg = {"config": {"epochs": 200}, "status": "running"}
    for run, metrics in (("plain20", "[]"), ("resnet20", None)):       # [] and missing
        d = tmp_path / "w" / "runs" / "gpu-seed" / run
        d.mkdir(parents=True)
        (d / "config.json").write_text(json.dumps(cfg))
        if metrics is not None:
            (d / "metrics.json").write_text(metrics)
    acc = tmp_path / "w" / "runs" / "acc" / "fast" / "resnet20-seed0"
    acc.mkdir(parents=True)
    (acc / "metrics.json").write_text("[]")
    (tmp_path / "w" / "steps.tsv").write_text("repro\t75\t500\tpaused (resumable)\n")
    r = subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, capture_output=True, text=True, timeout=60,
                       env={**os.environ, "MODE": "summary", "W": str(tmp_path / "w"), "PY": sys.executable})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Traceback" not in r.stdout
    assert "repro            paused (resumable) (exit 75, 500 s)" in r.stdout
    assert "plain20    running, epochs 0/200, last test acc -, best -, elapsed - s" in r.stdout
    assert "resnet20   running, epochs 0/200" in r.stdout
    assert "fast  seed 0: -, epochs 0, final test acc -" in r.stdout


def test_the_reproduction_step_pauses_for_its_budget_and_returns_its_run_dirs(tmp_path):
    """Step 5's driver through run_step: exit 75 (paused), one tar per run dir under $OUT/runs,
    the results tar without checkpoints (the end-to-end test: ~10 s on 2 cores)."""
    spec = {"preset": "smoke", "models": ["plain20"], "dataset": "synthetic", "device": "cpu",
            "out_dir": str(tmp_path / "runs"), "run_id": "gpu-seed", "epochs": 2, "train_subset": 64,
            "test_subset": 32, "time_budget": 0.001}
    r = _bash(f"write_driver\nTRAINS=1 run_step repro 120 $PY \"$W/train_runs.py\" '{json.dumps(spec)}'\n"
              f"echo rc=$?", tmp_path, timeout=120)
    assert r.stdout.splitlines()[-1] == "rc=75", r.stdout + r.stderr
    assert "statuses: plain20=paused" in (tmp_path / "w" / "repro.log").read_text()
    assert _steps(tmp_path)[0][3] == "paused (resumable)"
    with tarfile.open(tmp_path / "out" / "runs" / "gpu-seed__plain20.tar") as t:
        assert {"gpu-seed/plain20/last.pth", "gpu-seed/plain20/metrics.json"} <= set(t.getnames())
    with tarfile.open(tmp_path / "out" / "device_check.tar.gz") as t:
        names = t.getnames()
    assert "runs/gpu-seed/plain20/metrics.json" in names and not any(n.endswith(".pth") for n in names)


def test_summary_shows_the_sync_check_and_the_graphed_evaluation(tmp_path):
    """Step 2b's JSON (bench --sync-check) and step 2's evaluation comparison reach the summary."""
    w = tmp_path / "w"
    w.mkdir()
    (w / "sync_check.json").write_text(json.dumps({"modes": [
        {"mode": "grouped", "per_step": 0.0, "syncs": [31, 31], "steps": [20, 120], "growing": {},
         "runtime": {"graph_steps": 119, "eval_graph_batches": 2}},
        {"mode": "branches", "per_step": 1.0, "syncs": [50, 150], "steps": [20, 120],
         "growing": {"packing.py:321 (set_lr)": 100}, "runtime": None}]}))
    (w / "graph_check.json").write_text(json.dumps([
        {"what": "resnet20", "max_param_diff": 0.0, "captured": True, "eval_max_loss_diff": 1.5e-5,
         "eval_correct_diff": 0, "eval_counts": {"eval_captures": 1}}]))
    r = subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, capture_output=True, text=True, timeout=60,
                       env={**os.environ, "MODE": "summary", "W": str(w), "PY": sys.executable})
    assert r.returncode == 0 and "Traceback" not in r.stdout, r.stdout + r.stderr
    assert ("sync check grouped: 0 host syncs per training step (31 in 20 steps, 31 in 120); graph steps 119, "
            "evaluation graph batches 2") in r.stdout
    assert "sync check branches: 1 host syncs per training step" in r.stdout
    assert "per step at packing.py:321 (set_lr)" in r.stdout
    assert "evaluation: max |graph - eager| summed loss 1.50e-05, correct count 0 (of 1000)" in r.stdout


def _compile_bench(d: int, graph: bool = True) -> dict:
    """What step 4c's ``bench --compile`` of one depth writes (the fields the summary reads)."""
    def row(variant, members, label, rate, **kw):
        return {"variant": variant, "label": label, "model": f"resnet{d}" if members == 1 else None, "depth": d,
                "members": members, "train_img_s": rate, "eval_img_s": 90_000.0, "precision": "bf16",
                "graph": graph, "first_step_s": 1.5, **kw}
    g = {"compiled": True, "compile_s": 70.0, "compile_fallback": None, "loss_diff_steps": [1e-3, 2e-3, 4e-3],
         "loss_diff_max": 4e-3}
    return {"device": "NVIDIA H200", "torch": "2.11", "data": "synthetic uint8: timing only",
            "settings": {"batch_size": 128, "steps": 100, "repeats": 3, "warmup": 20, "precision": "bf16", "workers": 4},
            "rows": [row("b", 1, f"(b) fast resnet{d}", 20_000.0),
                     row("g", 1, f"(g) compiled resnet{d}", 26_000.0, **{**g, "first_step_s": 80.0}),
                     row("c", 2, f"(c) grouped plain{d}+resnet{d}", 16_000.0),
                     row("g", 2, f"(g) compiled grouped plain{d}+resnet{d}", 21_000.0, **g)], "implied": {}}


def test_summary_merges_the_compile_steps_of_both_depths(tmp_path):
    """Step 4c: a bench --compile JSON per depth (own processes) reach the summary as one table
    with the compiled rows' comparison lines and the implied times of both depths."""
    w = tmp_path / "w"
    w.mkdir()
    (w / "bench_compile56.json").write_text(json.dumps(_compile_bench(56)))
    (w / "bench_compile20.json").write_text(json.dumps(_compile_bench(20)))
    (w / "steps.tsv").write_text("bench_compile56\t0\t140\tfinished\nbench_compile20\t124\t100\tfailed\n")
    r = subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, capture_output=True, text=True, timeout=60,
                       env={**os.environ, "MODE": "summary", "W": str(w), "PY": sys.executable})
    assert r.returncode == 0 and "Traceback" not in r.stdout, r.stdout + r.stderr
    assert "--- bench_compile20.json + bench_compile56.json (bench --compile, a process per depth, merged)" in r.stdout
    assert ("compiled resnet56: training img/s per member 26,000 vs uncompiled (b) 20,000: 1.30x; first call "
            "(compile, warm-up, capture) 80.0 s vs 1.5 s; compile 70.0 s; graph captured") in r.stdout
    assert "max |mean loss, compiled - uncompiled| over the first 3 steps 4.00e-03 (bf16)" in r.stdout
    assert "four runs, compiled grouped pairs (g; no training mode yet):             997 s" in r.stdout
    assert "bench_compile56  finished (exit 0, 140 s)" in r.stdout


def test_the_compile_step_runs_in_its_own_processes_outside_mode_repro():
    """Step 4c sits with steps 2-4 (MODE=repro skips them), after step 4 (the precision comparison,
    which the issue's done-when needs, is never starved by the speculative compile lever), a run_step
    per depth with the 150 s cap."""
    text = SCRIPT.read_text()
    only_all = text[text.index('if [ "$MODE" != repro ]; then\nbanner "2 graph'):text.index("fi  # MODE != repro")]
    assert 'run_step "bench_compile$d" 150 $PY -m resnet_nb.cli bench' in only_all and "--compile" in only_all
    assert "4c. (after 4" in text[:text.index("set -u")]                  # the header's step list
    assert only_all.index('banner "4 accuracy') < only_all.index('run_step "bench_compile$d"')
