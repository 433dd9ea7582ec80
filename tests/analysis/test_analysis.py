"""resnet_nb.analysis.aggregate on hand-built run directories (the run-directory contract)."""
import json
from dataclasses import asdict

import pytest

from resnet_nb.analysis import aggregate
from resnet_nb.models.resnet import SEED_MODELS
from resnet_nb.runs.rundir import atomic_write_json, lock_run_dir
from resnet_nb.training.config import make_config

DATASET = {"root": "/x", "provenance": "synthetic", "canonical": False, "fingerprint": "f" * 64,
           "md5_mismatches": [], "n_train": 2000, "n_test": 500}


def make_run(out, run_id, model, seed=0, accs=(0.3, 0.5, 0.45), losses=(2.0, 1.5, 1.2),
             status="finished", preset="smoke", dataset=DATASET, run_name=None, params=1000):
    cfg = make_config(preset, model=model, seed=seed, run_id=run_id, out_dir=str(out), epochs=3, milestones=(2,),
                      run_name=run_name or model)
    d = out / run_id / cfg.run_name
    d.mkdir(parents=True)
    atomic_write_json(d / "config.json", {
        "config": asdict(cfg), "preset": preset, "environment": {}, "dataset": dataset,
        "status": status, "start_time": "2026-01-01T00:00:00+00:00", "end_time": None, "params": params})
    metrics, elapsed = [], 0.0
    for e, (a, l) in enumerate(zip(accs, losses), 1):
        elapsed += 10.0
        metrics.append({"epoch": e, "iteration": 16 * e, "train_loss": l, "train_acc": a + 0.1,
                        "test_loss": l + 0.1, "test_acc": a, "lr": 0.1, "time": 10.0, "elapsed": elapsed})
    atomic_write_json(d / "metrics.json", metrics)
    return d


def test_summary_schema_best_and_last(tmp_path):
    make_run(tmp_path, "r1", "plain20", accs=(0.3, 0.5, 0.45))
    make_run(tmp_path, "r1", "resnet20", accs=(0.4, 0.6, 0.6), status="interrupted", params=2000)
    summary = aggregate.analyze(tmp_path, "r1", tmp_path / "figs")
    fig_dir = tmp_path / "figs" / "r1"
    on_disk = json.loads((fig_dir / "summary.json").read_text())
    assert on_disk == summary
    assert set(summary) == {"run_id", "preset", "generated_at", "dataset", "models", "missing", "figures"}
    assert summary["run_id"] == "r1" and summary["preset"] == "smoke"
    assert summary["dataset"] == {"provenance": "synthetic", "fingerprint": "f" * 64, "canonical": False}
    assert summary["missing"] == ["plain56", "resnet56"]
    p = summary["models"]["plain20"]
    assert p["best_test_acc"] == 0.5 and p["best_epoch"] == 2
    assert p["last_test_acc"] == 0.45 and p["last_epoch"] == 3 and p["epochs_planned"] == 3
    assert p["final_train_loss"] == 1.2 and p["min_train_loss"] == 1.2
    assert p["params"] == 1000 and p["wall_time_s"] == 30.0 and p["status"] == "finished"
    assert p["n_seeds"] == 1 and p["seeds"] == [0] and p["best_test_acc_std"] is None
    # paths relative to <runs_dir>/<run_id>/: the summary stays valid when folders move
    assert p["run_dirs"] == ["plain20"] and p["per_seed"][0]["run_dir"] == "plain20"
    assert p["per_seed"][0]["best_test_acc"] == 0.5 and p["per_seed"][0]["final_train_loss"] == 1.2
    assert str(tmp_path) not in (fig_dir / "summary.json").read_text()
    for stored in ("plain20", str(tmp_path / "r1" / "plain20")):  # new and old summaries
        assert aggregate.resolve_run_dir(stored, tmp_path, "r1") == tmp_path / "r1" / "plain20"
    r = summary["models"]["resnet20"]
    assert r["best_epoch"] == 2 and r["status"] == "interrupted" and r["params"] == 2000
    for name in summary["figures"].values():
        assert (fig_dir / name).stat().st_size > 5000
    assert summary["figures"]["train_loss"] == "resnet_train_loss.png"
    assert summary["figures"]["error_fig6"] == "resnet_error_fig6.png"


def test_seeds_are_averaged_with_std(tmp_path):
    make_run(tmp_path, "r", "resnet56", seed=1, run_name="resnet56-seed1", accs=(0.5, 0.7))
    make_run(tmp_path, "r", "resnet56", seed=2, run_name="resnet56-seed2", accs=(0.6, 0.8, 0.7))
    _, runs = aggregate.load_runs(tmp_path, "r")
    s = aggregate.summarize(runs, "r", expected=["resnet56"])
    m = s["models"]["resnet56"]
    assert m["n_seeds"] == 2 and m["seeds"] == [1, 2]
    assert m["best_test_acc"] == pytest.approx(0.75)
    assert m["best_test_acc_std"] == pytest.approx(0.0707107, rel=1e-4)
    assert m["last_epoch"] == 2 and s["missing"] == []
    curves = aggregate.model_curves(aggregate.group_by_model(runs)["resnet56"])
    assert curves["epoch"] == [1, 2] and curves["test_acc"] == pytest.approx([0.55, 0.75])
    assert "test_acc_std" in curves
    best, last = aggregate.results_tables(s)
    assert "| ResNet-56 | 0.7500 ± 0.0707 | 2 | 2 |" in best
    assert "Test Acc @ last epoch" in last


def test_tables_in_seed_report_order(tmp_path):
    for m in ("resnet56", "plain20", "resnet20", "plain56"):
        make_run(tmp_path, "r", m)
    _, runs = aggregate.load_runs(tmp_path, "")          # newest run id
    best, last = aggregate.results_tables(aggregate.summarize(runs, "r"))
    rows = [line.split("|")[1].strip() for line in best.splitlines()[2:]]
    assert rows == ["Plain-20", "Plain-56", "ResNet-20", "ResNet-56"]
    assert "| Plain-20 | 0.4500 | 3 | 3 |" in last


def test_mixed_inputs_are_refused(tmp_path):
    make_run(tmp_path, "a", "plain20")
    make_run(tmp_path, "a", "resnet20", dataset={**DATASET, "fingerprint": "0" * 64})
    _, runs = aggregate.load_runs(tmp_path, "a")
    with pytest.raises(ValueError, match="different datasets"):
        aggregate.summarize(runs, "a")
    make_run(tmp_path, "b", "plain20")
    make_run(tmp_path, "b", "resnet20", preset="seed")
    _, runs = aggregate.load_runs(tmp_path, "b")
    with pytest.raises(ValueError, match="different presets"):
        aggregate.summarize(runs, "b")
    with pytest.raises(FileNotFoundError, match="no run id 'zzz'"):
        aggregate.load_runs(tmp_path, "zzz")
    with pytest.raises(FileNotFoundError, match="no runs under"):
        aggregate.load_runs(tmp_path / "empty")


def test_run_without_epochs_is_reported_not_plotted(tmp_path):
    make_run(tmp_path, "r", "plain20")
    started = make_run(tmp_path, "r", "plain56", accs=(), losses=(), status="running")
    with lock_run_dir(started):  # its training process is alive
        s = aggregate.analyze(tmp_path, "r", tmp_path / "f")
    assert s["models"]["plain56"]["best_test_acc"] is None and s["models"]["plain56"]["status"] == "running"
    best, _ = aggregate.results_tables(s)
    assert "| Plain-56 | n/a |" in best


def test_choose_run_id_prefers_a_complete_reproduction(tmp_path):
    import os

    for m in SEED_MODELS:
        make_run(tmp_path, "full", m)
    make_run(tmp_path, "single", "resnet20")   # newer, one model (a papermill run)
    make_run(tmp_path, "pair", "plain20")
    make_run(tmp_path, "pair", "plain56", status="running")
    for t, rid in enumerate(("full", "pair", "single")):
        for cfg in (tmp_path / rid).glob("*/config.json"):
            os.utime(cfg, (1000 + t, 1000 + t))
    rid, why = aggregate.choose_run_id(tmp_path)
    assert rid == "full" and why.startswith("the newest complete reproduction")
    assert aggregate.load_runs(tmp_path, "")[0] == "full"
    # an unfinished model makes it incomplete: then the most models wins, newest first
    make_run(tmp_path, "full2", "plain20")
    for m in SEED_MODELS[1:]:
        make_run(tmp_path, "full2", m, status="interrupted" if m == "resnet56" else "finished")
    for cfg in (tmp_path / "full2").glob("*/config.json"):
        os.utime(cfg, (2000, 2000))
    assert aggregate.choose_run_id(tmp_path)[0] == "full"   # still complete, though older
    (tmp_path / "full" / "resnet56" / "config.json").unlink()
    rid, why = aggregate.choose_run_id(tmp_path)
    assert rid == "full2" and "the newest of those with the most models (4: " in why


def test_run_ids_must_be_plain_folder_names(tmp_path):
    make_run(tmp_path, "r", "plain20")
    for bad in ("../r", str(tmp_path / "r"), "r/plain20"):
        with pytest.raises(ValueError, match="run_id must be a plain folder name"):
            aggregate.load_runs(tmp_path, bad)
        with pytest.raises(ValueError, match="run_id must be a plain folder name"):
            aggregate.analyze(tmp_path, bad, tmp_path / "figs")
    assert not (tmp_path / "figs").exists()


# ---- per-epoch std, the seeds column, the depth sweep (Table 6)

def test_curve_std_and_table_seeds_against_hand_values(tmp_path):
    make_run(tmp_path, "r", "plain20", seed=0, run_name="plain20-seed0", accs=(0.2, 0.5, 0.4))
    make_run(tmp_path, "r", "plain20", seed=1, run_name="plain20-seed1", accs=(0.4, 0.6, 0.7))
    make_run(tmp_path, "r", "plain20", seed=2, run_name="plain20-seed2", accs=(0.3, 0.7, 0.4))
    _, runs = aggregate.load_runs(tmp_path, "r")
    c = aggregate.model_curves(runs)
    # by hand: epoch 1 (0.2, 0.4, 0.3): mean 0.3, sample std 0.1; epoch 3 (0.4, 0.7, 0.4): 0.5, sqrt(0.03)
    assert c["n_seeds"] == 3 and c["test_acc"] == pytest.approx([0.3, 0.6, 0.5])
    assert c["test_acc_std"] == pytest.approx([0.1, 0.1, 0.0300 ** 0.5])
    best, last = aggregate.results_tables(aggregate.summarize(runs, "r", expected=["plain20"]))
    # best per seed 0.5, 0.7, 0.7: mean 0.6333, std sqrt(((-2/15)^2 + 2 (1/15)^2) / 2) = 0.1155
    assert "| Plain-20 | 0.6333 ± 0.1155 | 2 | 3 |" in best
    assert last.splitlines()[0].endswith("| Seeds |") and last.splitlines()[2].endswith("| 3 |")


def sweep_dirs(tmp_path, depths=(20, 32, 44, 56), resnet110=True):
    """Hand-made run dirs of a 2-seed sweep: plain error grows with depth, ResNet's falls."""
    for fam in ("plain", "resnet"):
        for d in (*depths, *((110,) if fam == "resnet" and resnet110 else ())):
            for s in (0, 1):
                best = (0.60 - d / 1000 if fam == "plain" else 0.50 + d / 1000) + 0.01 * s
                make_run(tmp_path, "s", f"{fam}{d}", seed=s, run_name=f"{fam}{d}-seed{s}", accs=(0.1, best, best - 0.05))


def test_depth_sweep_table_from_hand_made_run_dirs(tmp_path):
    sweep_dirs(tmp_path)
    summary = aggregate.analyze(tmp_path, "s", tmp_path / "figs", expected=[])
    rows = {r["depth"]: r for r in aggregate.depth_sweep(summary["models"])}
    assert sorted(rows) == [20, 32, 44, 56, 110] and rows[110]["plain"] is None
    # plain56 seeds: final-epoch accuracy (best - 0.05) 0.494, 0.504 -> errors 50.6 and 49.6 %: mean 50.1,
    # std sqrt(0.5) = 0.7071 (the final epoch, not the best one, as the paper's Table 6)
    p56 = rows[56]["plain"]
    assert p56["err_pct"] == pytest.approx(50.1) and p56["std_pct"] == pytest.approx(0.5 ** 0.5) and p56["n"] == 2
    table = aggregate.depth_table(summary)
    assert "| 56 | 50.10 ± 0.71 (n=2) | 48.90 ± 0.71 (n=2) | 6.97 |" in table
    assert "| 110 | n/a | 43.50 ± 0.71 (n=2) | 6.43 (best of 5; mean 6.61 ± 0.16) |" in table
    assert summary["figures"]["error_vs_depth"] == "resnet_error_vs_depth.png"
    assert (tmp_path / "figs" / "s" / "resnet_error_vs_depth.png").stat().st_size > 5000


def test_no_depth_sweep_below_three_depths_says_why(tmp_path):
    sweep_dirs(tmp_path, depths=(20, 56), resnet110=False)
    summary = aggregate.analyze(tmp_path, "s", tmp_path / "figs")
    ready, why = aggregate.sweep_ready(summary["models"])
    assert not ready and "2 plain and 2 residual" in why and "--models sweep" in why
    assert "error_vs_depth" not in summary["figures"]
    assert not (tmp_path / "figs" / "s" / "resnet_error_vs_depth.png").exists()


def test_per_seed_table_names_every_seed_and_a_diverged_one(tmp_path):
    make_run(tmp_path, "p", "plain20", seed=0, run_name="plain20-seed0", accs=(0.1, 0.5, 0.45))
    make_run(tmp_path, "p", "plain20", seed=1, run_name="plain20-seed1", accs=(0.1, 0.6, 0.55))
    summary = aggregate.summarize(aggregate.list_runs(tmp_path, "p"), "p", expected=[])
    summary["models"]["plain20"]["per_seed"][1].update(diverged=True, status="failed")
    en, zh = aggregate.per_seed_table(summary, "en"), aggregate.per_seed_table(summary, "zh")
    rows = en.splitlines()[2:]
    assert rows[0].startswith("| Plain-20 | 0 | 0.4500 | 0.5000 (2) |") and rows[0].endswith("| 3/3 | finished |")
    assert "diverged (NaN/inf loss): excluded from means and verdicts" in rows[1]
    assert "已完成" in zh and "发散" in zh
