"""From run directories to the reproduction's evidence: curves, summary.json, tables, figures.

The analysis reads only files (``resnet_nb.runs.rundir``), never live objects, so a report can
be rebuilt anywhere from run directories trained elsewhere. It answers the
questions of He et al. 2016, sec. 4.2 on CIFAR-10: does the deeper plain net train and
test worse than the shallower one (degradation, Fig. 6 left), and does the residual net
of the same depth remove that (Fig. 6 right, Table 6)?

Runs are grouped by ``config.model``; several seeds of a model (run names
``<model>-seed<s>``) are averaged: the summary reports means over seeds, the sample
std of the best test accuracy and every seed's own numbers (``per_seed``), and curves are
the per-epoch means over the epochs all seeds have finished. Run directories are stored
relative to ``<runs_dir>/<run_id>/`` (``resolve_run_dir`` also reads the absolute paths of
older summaries), so a summary stays valid when the folders move. Every verdict comes from
the one rule table of ``resnet_nb.analysis.verdicts``.
"""
from __future__ import annotations

import math
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np

from resnet_nb.models.resnet import SEED_MODELS, model_label, parse_model_name, sort_models
from resnet_nb.runs.rundir import (
    CONFIG_FILE,
    atomic_write_json,
    check_run_id,
    effective_status,
    list_run_ids,
    list_runs,
    read_json,
)

__all__ = [
    "FIGURE_FILES", "THEORY_FIGURE_FILES", "latest_run_id", "choose_run_id", "load_runs",
    "group_by_model", "model_curves", "summarize", "results_tables", "write_figures",
    "analyze", "figures_dir_of", "dataset_overview", "degradation_checks", "per_seed_table", "dataset_of",
    "stale_runs",
    "resolve_run_dir", "SWEEP_MIN_DEPTHS", "depth_sweep", "sweep_ready", "depth_table",
]

FIGURE_FILES = {  # summary.json "figures" key -> file name (the seed report's names kept)
    "train_loss": "resnet_train_loss.png",
    "test_accuracy": "resnet_test_accuracy.png",
    "error_fig6": "resnet_error_fig6.png",
    "error_vs_depth": "resnet_error_vs_depth.png",  # only with a depth sweep (sweep_ready)
}
THEORY_FIGURE_FILES = {  # written by 01_theory (resnet_nb.analysis.probes + plots)
    "theory_grad_norm": "theory_grad_norm.png",
    "theory_activation_std": "theory_activation_std.png",
    "theory_input_grad": "theory_input_grad.png",
    "theory_grad_correlation": "theory_grad_correlation.png",
}
_STATUS_RANK = ("failed", "interrupted", "paused", "running", "finished")  # worst first (paused: by the time budget)
_CURVE_KEYS = ("train_loss", "train_acc", "test_loss", "test_acc", "lr", "val_loss", "val_acc")


def figures_dir_of(figures_root: str | os.PathLike, run_id: str) -> Path:
    """``<figures_root>/<run_id>`` (e.g. ``report/figures/repro-20251218-140032``); a run id
    that is not one plain folder name (``../x``, an absolute path) is refused."""
    return Path(figures_root).expanduser() / check_run_id(run_id)


def resolve_run_dir(path: str | os.PathLike, runs_dir: str | os.PathLike, run_id: str) -> Path:
    """A run dir as summary.json stores it: relative to ``<runs_dir>/<run_id>/`` (``plain20``),
    or absolute (summaries written before paths were stored relative)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else Path(runs_dir).expanduser() / run_id / p


def choose_run_id(out_dir: str | os.PathLike, expected: Sequence[str] = SEED_MODELS,
                  published: tuple[str, str] | None = None) -> tuple[str, str]:
    """``(run_id, why)``: the run id to analyse or report when none is given. The newest
    complete reproduction (every model of ``expected`` present and all its seeds finished),
    else ``published`` = ``(run id, where)``, a published copy the caller found (report.py:
    ``publish.newest_published``, so that a checkout that never trained still reports the
    committed result; analysis comes before publishing in the data flow and does not look),
    else the newest of the run ids with the most models; "newest" by the newest config.json.
    ``why`` is one line saying which rule picked it."""
    ids = list_run_ids(out_dir)
    published, published_dir = published or (None, None)
    if not ids:
        if published:
            return published, f"no runs under {out_dir}; the newest published run id in {published_dir}"
        raise FileNotFoundError(f"no runs under {out_dir}: train first (make reproduce), "
                                f"or point runs_dir at the folder holding your run ids")
    base = Path(out_dir).expanduser()
    found = {}  # run id -> (models, finished models, newest config.json mtime)
    for rid in ids:
        models, unfinished, newest = set(), set(), 0.0
        for path in (base / rid).glob(f"*/{CONFIG_FILE}"):
            newest = max(newest, path.stat().st_mtime)
            try:
                meta = read_json(path)
                model = str(meta["config"]["model"])
            except (ValueError, KeyError, TypeError, OSError):  # unreadable: counts as no model
                continue
            models.add(model)
            if meta.get("status") != "finished":
                unfinished.add(model)
        found[rid] = (models, models - unfinished, newest)
    wanted = set(expected)
    complete = [rid for rid, (_, done, _) in found.items() if wanted <= done]
    if complete:
        rid = max(complete, key=lambda r: found[r][2])
        return rid, (f"the newest complete reproduction under {out_dir} "
                     f"({', '.join(sort_models(wanted))} all finished)")
    if published:
        return published, (f"no run id under {out_dir} has {', '.join(sort_models(wanted))} all finished; "
                           f"the newest published run id in {published_dir}")
    rid = max(found, key=lambda r: (len(found[r][0]), found[r][2]))
    models = sort_models(found[rid][0]) if found[rid][0] else []
    return rid, (f"no run id under {out_dir} has {', '.join(sort_models(wanted))} all finished; "
                 f"the newest of those with the most models ({len(models)}: {', '.join(models) or 'none'})")


def latest_run_id(out_dir: str | os.PathLike) -> str:
    """The run id :func:`choose_run_id` picks: the newest complete reproduction, else the
    newest run id with the most models."""
    return choose_run_id(out_dir)[0]


def load_runs(out_dir: str | os.PathLike, run_id: str = "") -> tuple[str, list[dict]]:
    """``(run_id, runs)``: every run dir of ``run_id`` (when empty, the one :func:`choose_run_id`
    picks). A run id that is not one plain folder name (``../x``) is refused."""
    run_id = check_run_id(run_id) if run_id else latest_run_id(out_dir)
    runs = list_runs(out_dir, run_id)
    if not runs:
        raise FileNotFoundError(f"run id {run_id!r} under {out_dir} holds no run directories yet")
    return run_id, runs


def group_by_model(runs: Sequence[dict]) -> dict[str, list[dict]]:
    """``{model: [runs sorted by seed]}`` in ``sort_models`` order."""
    groups: dict[str, list[dict]] = {}
    for r in runs:
        groups.setdefault(r["config"]["model"], []).append(r)
    return {m: sorted(groups[m], key=lambda r: r["config"]["seed"]) for m in sort_models(groups)}


def model_curves(runs: Sequence[dict]) -> dict[str, list[float]]:
    """Per-epoch curves of one model: ``epoch`` and the means over seeds of train/test
    loss and accuracy (and val, lr), over the epochs every seed has finished; ``<key>_std``
    holds the sample std when there are several seeds. Empty lists before epoch 1."""
    n = min(len(r["metrics"]) for r in runs)
    out: dict[str, list[float]] = {"epoch": [int(runs[0]["metrics"][i]["epoch"]) for i in range(n)],
                                   "n_seeds": len(runs)}
    for key in _CURVE_KEYS:
        if n and all(key in r["metrics"][0] for r in runs):
            a = np.asarray([[np.nan if m[key] is None else float(m[key]) for m in r["metrics"][:n]]
                            for r in runs])                                  # (seeds, epochs)
            out[key] = a.mean(axis=0).tolist()
            if len(runs) > 1:
                out[f"{key}_std"] = a.std(axis=0, ddof=1).tolist()
    return out


def _mean(xs: Sequence[float]) -> float | None:
    xs = [x for x in xs if x is not None]
    return float(np.mean(xs)) if xs else None


def _epochs_planned(run: dict) -> int:
    """Epochs the config asks for; for the iteration schedule, the epochs max_iters spans."""
    if run.get("epochs_planned"):  # written by resnet_nb.training.train
        return int(run["epochs_planned"])
    cfg = run["config"]
    if cfg.get("schedule") == "iterations" and cfg.get("max_iters"):
        n = (run.get("dataset") or {}).get("n_train") or 0
        n = (cfg.get("train_subset") or n) - cfg.get("val_split", 0)
        if n > 0:
            return min(int(cfg["epochs"]), math.ceil(cfg["max_iters"] / math.ceil(n / cfg["batch_size"])))
    return int(cfg["epochs"])


def _diverged(error) -> bool:
    """Does a failed run's error say its loss became NaN or infinite (``train.TrainingDiverged``)?"""
    return bool(error) and re.search(r"\b(nan|inf|infinite)\b", str(error), re.IGNORECASE) is not None


def _model_summary(runs: Sequence[dict]) -> dict:
    per_seed = []
    for r in runs:
        ms = [m for m in r["metrics"] if m.get("test_acc") is not None]  # evaluated epochs
        rec = {"seed": int(r["config"]["seed"]), "run_dir": Path(r["path"]).name,
               "status": effective_status(r),  # a killed run (lock free): interrupted
               "params": r.get("params"), "epochs_planned": _epochs_planned(r),
               # training stopped on a NaN/inf loss (the training loop's divergence rule): a result, not a
               # run to wait for; the verdicts name it and leave its numbers out
               "diverged": effective_status(r) == "failed" and _diverged(r.get("error"))}
        if ms:
            best = max(ms, key=lambda m: (m["test_acc"], -m["epoch"]))  # earliest epoch of the max
            rec.update(best_test_acc=float(best["test_acc"]), best_epoch=int(best["epoch"]),
                       last_test_acc=float(ms[-1]["test_acc"]), last_epoch=int(ms[-1]["epoch"]),
                       final_train_loss=float(r["metrics"][-1]["train_loss"]),
                       min_train_loss=float(min(m["train_loss"] for m in r["metrics"])),
                       wall_time_s=float(r["metrics"][-1].get("elapsed", 0.0)))
        per_seed.append(rec)
    done = [p for p in per_seed if "best_test_acc" in p and not p["diverged"]]
    statuses = [p["status"] or "running" for p in per_seed if not p["diverged"]] or ["failed"]
    bests = [p["best_test_acc"] for p in done]
    return {
        "best_test_acc": _mean(bests),
        "best_epoch": int(np.median([p["best_epoch"] for p in done])) if done else None,
        "last_test_acc": _mean([p["last_test_acc"] for p in done]),
        "last_epoch": min(p["last_epoch"] for p in done) if done else 0,
        "epochs_planned": max(p["epochs_planned"] for p in per_seed),
        "final_train_loss": _mean([p["final_train_loss"] for p in done]),
        "min_train_loss": _mean([p["min_train_loss"] for p in done]),
        "params": next((p["params"] for p in per_seed if p["params"] is not None), None),
        "wall_time_s": _mean([p["wall_time_s"] for p in done]),
        "status": min(statuses, key=lambda s: _STATUS_RANK.index(s) if s in _STATUS_RANK else -1),
        "n_seeds": len(per_seed),
        "n_diverged": sum(p["diverged"] for p in per_seed),
        "seeds": [p["seed"] for p in per_seed],
        "best_test_acc_std": float(np.std(bests, ddof=1)) if len(bests) > 1 else None,
        "last_test_acc_std": (float(np.std([p["last_test_acc"] for p in done], ddof=1))
                              if len(done) > 1 else None),
        "run_dirs": [p["run_dir"] for p in per_seed],  # relative to <runs_dir>/<run_id>/
        "per_seed": per_seed,  # every seed's own numbers: the verdicts test differences with them
    }


def dataset_of(runs: Sequence[dict], action: str = "analyse runs") -> dict:
    """The one dataset all runs used (provenance, fingerprint, canonical); refuses a mix, whose
    accuracies would not be comparable, saying what to ``action`` together instead."""
    seen: dict[str, list[str]] = {}
    runs = [r for r in runs if r.get("dataset")] or list(runs)  # a run that never started has none
    for r in runs:
        d = r.get("dataset") or {}
        seen.setdefault(d.get("fingerprint", "?"), []).append(Path(r["path"]).name)
    if len(seen) > 1:
        detail = "; ".join(f"{fp[:12]}: {', '.join(names)}" for fp, names in seen.items())
        raise ValueError(f"the runs of this run id used different datasets ({detail}); "
                         f"{action} trained on one dataset together (give them their own run id)")
    d = runs[0].get("dataset") or {}
    return {"provenance": d.get("provenance", "unknown"), "fingerprint": d.get("fingerprint", ""),
            "canonical": bool(d.get("canonical", False))}


def stale_runs(summary: dict, runs: Sequence[dict]) -> list[str]:
    """The run dirs (names) whose files say more than, or other than, summary.json holds: no
    entry in a model's ``per_seed``, another status (a run killed since: ``runs.effective_status``),
    or another last evaluated epoch. The one rule for "is the summary stale?" (the report
    refreshes it, publish refuses it)."""
    held = {p.get("run_dir"): p for m in (summary.get("models") or {}).values() for p in m.get("per_seed", [])}
    stale = []
    for run in runs:
        name = Path(run["path"]).name
        entry = held.get(name)
        evaluated = [int(m["epoch"]) for m in run.get("metrics") or [] if m.get("test_acc") is not None]
        if entry is None or entry.get("status") != effective_status(run) \
                or (entry.get("last_epoch") or 0) != (evaluated[-1] if evaluated else 0):
            stale.append(name)
    return stale


def _preset_of(runs: Sequence[dict]) -> str:
    presets = sorted({str(r.get("preset") or r["config"].get("preset")) for r in runs})
    if len(presets) > 1:
        raise ValueError(f"the runs of this run id come from different presets ({', '.join(presets)}); "
                         f"give each preset its own run id")
    return presets[0]


def summarize(runs: Sequence[dict], run_id: str, expected: Sequence[str] = SEED_MODELS,
              figures: dict[str, str] | None = None) -> dict:
    """The ``summary.json`` record (its fields are the keys written below) of the runs of ``run_id``.

    ``expected``: the models the comparison needs; those without a run dir are listed
    under ``missing``. ``figures``: key -> file name of the figures written next to it.
    """
    if not runs:
        raise ValueError(f"run id {run_id!r} has no runs to summarise")
    groups = group_by_model(runs)
    return {
        "run_id": run_id,
        "preset": _preset_of(runs),
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "dataset": dataset_of(runs),
        "models": {m: _model_summary(rs) for m, rs in groups.items()},
        "missing": [m for m in sort_models(expected) if m not in groups],
        "figures": dict(figures or {}),
    }


def _fmt(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "n/a"
    return f"{mean:.4f}" if std is None else f"{mean:.4f} ± {std:.4f}"


def results_tables(summary: dict) -> tuple[str, str]:
    """The seed report's two Markdown tables: best test accuracy, and test accuracy at
    the last epoch (with the epoch; ``± std`` over seeds when there are several)."""
    seeds = any(s["n_seeds"] > 1 for s in summary["models"].values())
    note = " (mean ± std over seeds)" if seeds else ""
    best = [f"| Model | Best Test Acc{note} | Epoch | Seeds |", "|---|---:|---:|---:|"]
    last = [f"| Model | Test Acc @ last epoch{note} | Epoch | Planned | Seeds |", "|---|---:|---:|---:|---:|"]
    for m, s in summary["models"].items():
        best.append(f"| {model_label(m)} | {_fmt(s['best_test_acc'], s['best_test_acc_std'])} | "
                    f"{s['best_epoch'] if s['best_epoch'] is not None else 'n/a'} | {s['n_seeds']} |")
        last.append(f"| {model_label(m)} | {_fmt(s['last_test_acc'], s.get('last_test_acc_std'))} | "
                    f"{s['last_epoch']} | {s['epochs_planned']} | {s['n_seeds']} |")
    return "\n".join(best), "\n".join(last)


_PER_SEED_HEAD = {
    "en": ("Model", "Seed", "Final test acc", "Best test acc (epoch)", "Final train loss", "Epochs", "Status"),
    "zh": ("模型", "种子", "最后一轮测试精度", "最佳测试精度（轮）", "最终训练 loss", "轮数", "状态"),
}
_STATUS_ZH = {"finished": "已完成", "running": "运行中", "paused": "已暂停", "interrupted": "已中断", "failed": "失败"}
_DIVERGED = {"en": "diverged (NaN/inf loss): excluded from means and verdicts",
             "zh": "发散（loss 为 NaN/inf）：不计入均值与结论"}


def per_seed_table(summary: dict, lang: str = "en") -> str:
    """Every run of a summary.json record as a Markdown table, one row per model and seed: the
    final-epoch test accuracy (what the verdicts compare), the best test accuracy and its epoch
    (chosen on the test set: for comparison with the seed report), the final training loss, the
    epochs done of those planned and the status; a diverged seed is named, never dropped."""
    head = _PER_SEED_HEAD[lang]
    lines = ["| " + " | ".join(head) + " |", "|:---|---:|---:|---:|---:|---:|:---|"]
    f4 = (lambda v: "n/a" if v is None or not math.isfinite(v) else f"{v:.4f}")
    for m in sort_models(summary.get("models") or {}):
        for p in summary["models"][m].get("per_seed") or []:
            best = f"{f4(p.get('best_test_acc'))} ({p['best_epoch']})" if p.get("best_epoch") else "n/a"
            status = p.get("status") or "running"
            status = _DIVERGED[lang] if p.get("diverged") else (_STATUS_ZH.get(status, status) if lang == "zh" else status)
            lines.append(f"| {model_label(m)} | {p['seed']} | {f4(p.get('last_test_acc'))} | {best} | "
                         f"{f4(p.get('final_train_loss'))} | {p.get('last_epoch', 0)}/{p.get('epochs_planned')} | "
                         f"{status} |")
    return "\n".join(lines)


def runs_label(runs: Sequence[dict]) -> str:
    """The data line of a figure of ``runs``, read from their run files (``plots.provenance_label``):
    the dataset's provenance, the preset and the epochs shown (of those planned), e.g.
    ``"synthetic data, smoke preset, 5 epochs: shows the code runs, not the paper's result"``."""
    from resnet_nb.analysis.plots import provenance_label

    shown = max((len(r["metrics"]) and int(r["metrics"][-1]["epoch"]) for r in runs), default=0)
    planned = max((_epochs_planned(r) for r in runs), default=0)
    return provenance_label(dataset_of(runs), _preset_of(runs), shown, planned)


def write_figures(runs: Sequence[dict], out_dir: str | os.PathLike) -> dict[str, str]:
    """Write the seed report's two figures and the Fig. 6 style plot into ``out_dir``;
    returns ``{key: file name}``. Models with no finished epoch are left out. Every title
    names the data, preset and epochs of the runs (``runs_label``)."""
    from resnet_nb.analysis import plots

    curves = {m: c for m, rs in group_by_model(runs).items() if (c := model_curves(rs))["epoch"]}
    if not curves:
        raise ValueError("no run has finished an epoch yet: nothing to plot")
    label = runs_label(runs)
    makers = {"train_loss": plots.train_loss_figure, "test_accuracy": plots.test_accuracy_figure,
              "error_fig6": plots.error_fig6_figure}
    out = Path(out_dir)
    for key, make in makers.items():
        plots.save(make(curves, label), out / FIGURE_FILES[key])
    written = {k: FIGURE_FILES[k] for k in makers}
    models = {m: _model_summary(rs) for m, rs in group_by_model(runs).items()}
    if sweep_ready(models)[0]:  # Table 6 as a figure, beside the paper's ResNets
        from resnet_nb.analysis.literature import load_literature

        paper = load_literature()["sources"]["paper"]
        published = {f"{paper['name']['en']} (ResNets)": {parse_model_name(m)[1]: r["error_pct"]
                                                          for m, r in paper["results"].items()
                                                          if parse_model_name(m)[1] <= max(_depths(models))}}
        plots.save(plots.error_vs_depth_figure(depth_sweep(models), label, published),
                   out / FIGURE_FILES["error_vs_depth"])
        written["error_vs_depth"] = FIGURE_FILES["error_vs_depth"]
    return written


# --------------------------------------------------------------------------- depth sweep (Table 6)

SWEEP_MIN_DEPTHS = 3  # depths with results a family needs before error-vs-depth means anything


def _depths(models: dict) -> list[int]:
    return sorted({parse_model_name(m)[1] for m in models})


def depth_sweep(models: dict) -> list[dict]:
    """Test error (%) per depth and family from summary.json's ``models`` (each seed's
    final-epoch test accuracy, as the paper's Table 6 reports the net at the end of training;
    diverged seeds left out): ``[{"depth": 20, "plain": {"err_pct", "std_pct", "n",
    "seeds_pct"} | None, "resnet": ...}, ...]``; ``std_pct`` is the sample std over seeds
    (None with one seed)."""
    from resnet_nb.analysis.claims import seed_values

    rows = []
    for depth in _depths(models):
        row: dict = {"depth": depth}
        for family in ("plain", "resnet"):
            s = models.get(f"{family}{depth}")
            errs = [100 * (1 - v) for v in (seed_values(s, "last_test_acc") if s else [])
                    if v is not None and math.isfinite(v)]
            row[family] = None if not errs else {
                "err_pct": float(np.mean(errs)), "n": len(errs), "seeds_pct": errs,
                "std_pct": float(np.std(errs, ddof=1)) if len(errs) > 1 else None}
        rows.append(row)
    return rows


def sweep_ready(models: dict) -> tuple[bool, str]:
    """``(ready, why not)``: a depth sweep needs results at :data:`SWEEP_MIN_DEPTHS` depths or
    more in at least one family (summary.json's ``models``)."""
    counts = {f: sum(1 for r in depth_sweep(models) if r[f]) for f in ("plain", "resnet")}
    if max(counts.values()) >= SWEEP_MIN_DEPTHS:
        return True, ""
    return False, (f"the depth sweep needs results at >= {SWEEP_MIN_DEPTHS} depths in a family; this run id "
                   f"has {counts['plain']} plain and {counts['resnet']} residual (resnet-nb reproduce --models sweep)")


def _error_cell(x: dict | None) -> str:
    if not x:
        return "n/a"
    return f"{x['err_pct']:.2f}" + (f" ± {x['std_pct']:.2f}" if x["std_pct"] is not None else "") + f" (n={x['n']})"


def depth_table(summary: dict, literature: dict | None = None) -> str:
    """Table 6 as a Markdown table: test error (%) per depth, ours (mean ± std, n seeds) for
    plain and ResNet, beside the paper's ResNets (``report/literature.json``; ResNet-110: the
    best of 5 runs, with the paper's mean ± std)."""
    if literature is None:
        from resnet_nb.analysis.literature import load_literature

        literature = load_literature()
    paper = literature["sources"]["paper"]["results"]
    lines = ["| Depth | Plain: error % (ours) | ResNet: error % (ours) | ResNet: error % (paper) |",
             "|---:|---:|---:|---:|"]
    for r in depth_sweep(summary["models"]):
        p = paper.get(f"resnet{r['depth']}")
        ptxt = "n/a" if p is None else f"{p['error_pct']:.2f}" + (
            f" (best of {p['best_of']}; mean {p['mean_error_pct']:.2f} ± {p['mean_std_pct']:.2f})"
            if p["best_of"] else "")
        lines.append(f"| {r['depth']} | {_error_cell(r['plain'])} | {_error_cell(r['resnet'])} | {ptxt} |")
    return "\n".join(lines)


def analyze(out_dir: str | os.PathLike = "experiments", run_id: str = "",
            figures_root: str | os.PathLike = "report/figures",
            expected: Sequence[str] = SEED_MODELS) -> dict:
    """Load the runs of ``run_id``, write figures and ``summary.json`` to
    ``<figures_root>/<run_id>/`` and return the summary. Theory figures already in that
    folder (from 01_theory) are listed in ``figures`` too."""
    run_id, runs = load_runs(out_dir, run_id)
    fig_dir = figures_dir_of(figures_root, run_id)
    fig_dir.mkdir(parents=True, exist_ok=True)
    figures = write_figures(runs, fig_dir)
    figures.update({k: f for k, f in THEORY_FIGURE_FILES.items() if (fig_dir / f).is_file()})
    summary = summarize(runs, run_id, expected, figures)
    atomic_write_json(fig_dir / "summary.json", summary)
    return summary


def dataset_overview(ds) -> str:
    """A plain-text description of a loaded dataset (``resnet_nb.data.cifar10.Cifar10``): provenance,
    fingerprint, images per class in train and test, per-channel mean and std (rounded)."""
    from resnet_nb.data.augment import channel_stats
    from resnet_nb.data.cifar10 import CLASSES

    tr = ds.train_y.bincount(minlength=10).tolist()
    te = ds.test_y.bincount(minlength=10).tolist()
    mean, std = channel_stats(ds.train_x)
    lines = [
        f"provenance:  {ds.provenance} ({'the canonical CIFAR-10: md5 sums match' if ds.canonical else 'NOT the canonical CIFAR-10'})",
        f"fingerprint: {ds.fingerprint}",
        f"images:      {sum(tr)} train, {sum(te)} test, shape {tuple(ds.train_x.shape[1:])} {str(ds.train_x.dtype).replace('torch.', '')}",
        "",
        f"{'class':12s} {'train':>6s} {'test':>6s}",
        *(f"{c:12s} {a:6d} {b:6d}" for c, a, b in zip(CLASSES, tr, te)),
        "",
        "per-channel statistics of the training images ([0, 1] units):",
        "        " + "  ".join(f"{c:>6s}" for c in ("R", "G", "B")),
        "mean    " + "  ".join(f"{v:6.3f}" for v in mean.tolist()),
        "std     " + "  ".join(f"{v:6.3f}" for v in std.tolist()),
    ]
    return "\n".join(lines)


def degradation_checks(summary: dict) -> list[str]:
    """The comparisons of sec. 4.2, one line each, judged by the one rule table
    (``resnet_nb.analysis.verdicts``): for every pair of depths d1 < d2 with results, does plain-d2
    test worse and train worse than plain-d1 (degradation), does resnet-d2 beat plain-d2 (the
    residual fix) and resnet-d1 (depth gain)? Each line gives the means and the verdict
    ("not assessable: synthetic data" on the smoke fixture)."""
    from resnet_nb.analysis.claims import CLAIMS, paper_claims

    shown = {"degradation_acc": "degradation: {a} tests worse than {b} (final-epoch test acc)",
             "degradation_loss": "degradation: {a} trains worse than {b} (final training loss)",
             "residual_fix_acc": "residual fix: {a} beats {b} (final-epoch test acc)",
             "depth_gain_acc": "depth gain: {a} beats {b} (final-epoch test acc)"}
    depths = sorted({parse_model_name(m)[1] for m in summary["models"]})
    lines = []
    for i, d1 in enumerate(depths):
        for d2 in depths[i + 1:]:
            verdicts = paper_claims(summary, d1, d2)
            for key, text in shown.items():
                v = verdicts[key]
                if v.mean_a is None or v.mean_b is None:  # a model of this pair has no result
                    continue
                a, b = (CLAIMS[key][j].format(s=d1, d=d2) for j in (0, 1))
                lines.append(f"{text.format(a=model_label(a), b=model_label(b))}: "
                             f"{v.mean_a:.4f} vs {v.mean_b:.4f}: {v.en}")
    return lines or ["no pair of depths with results yet: train at least two depths (e.g. plain20, plain56)"]
