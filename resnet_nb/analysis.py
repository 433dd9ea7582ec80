"""From run directories to the reproduction's evidence: curves, summary.json, tables, figures.

The analysis reads only files (``resnet_nb.runs``), never live objects, so a report can
be rebuilt anywhere from run directories trained elsewhere (DESIGN.md). It answers the
questions of He et al. 2016, sec. 4.2 on CIFAR-10: does the deeper plain net train and
test worse than the shallower one (degradation, Fig. 6 left), and does the residual net
of the same depth remove that (Fig. 6 right, Table 6)?

Runs are grouped by ``config.model``; several seeds of a model (run names
``<model>-seed<s>``) are averaged: the summary reports means over seeds and the sample
std of the best test accuracy, and curves are the per-epoch means over the epochs all
seeds have finished.
"""
from __future__ import annotations

import math
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from resnet_nb.models import parse_model_name

__all__ = [
    "SEED_MODELS", "FIGURE_FILES", "THEORY_FIGURE_FILES", "latest_run_id", "load_runs",
    "group_by_model", "model_curves", "summarize", "results_tables", "write_figures",
    "analyze", "figures_dir_of", "sort_models", "dataset_overview", "degradation_checks",
]

SEED_MODELS = ("plain20", "plain56", "resnet20", "resnet56")  # the seed report's comparison
FIGURE_FILES = {  # summary.json "figures" key -> file name (the seed report's names kept)
    "train_loss": "resnet_train_loss.png",
    "test_accuracy": "resnet_test_accuracy.png",
    "error_fig6": "resnet_error_fig6.png",
}
THEORY_FIGURE_FILES = {  # written by 01_theory (resnet_nb.probes + plots)
    "theory_grad_norm": "theory_grad_norm.png",
    "theory_activation_std": "theory_activation_std.png",
    "theory_input_grad": "theory_input_grad.png",
}
_STATUS_RANK = ("failed", "interrupted", "running", "finished")  # worst first
_CURVE_KEYS = ("train_loss", "train_acc", "test_loss", "test_acc", "lr", "val_loss", "val_acc")


def figures_dir_of(figures_root: str | os.PathLike, run_id: str) -> Path:
    """``<figures_root>/<run_id>`` (e.g. ``report/figures/repro-20251218-140032``)."""
    return Path(figures_root).expanduser() / run_id


def sort_models(names: Iterable[str]) -> list[str]:
    """Plain before residual, then by depth: plain20, plain56, resnet20, resnet56."""
    def key(n):
        family, depth = parse_model_name(n)
        return (family != "plain", depth, n)
    return sorted(set(names), key=key)


def latest_run_id(out_dir: str | os.PathLike) -> str:
    """The newest run id under ``out_dir`` (by the newest config.json in it)."""
    from resnet_nb.runs import CONFIG_FILE, list_run_ids

    ids = list_run_ids(out_dir)
    if not ids:
        raise FileNotFoundError(f"no runs under {out_dir}: train first (make reproduce), "
                                f"or point runs_dir at the folder holding your run ids")
    base = Path(out_dir).expanduser()
    return max(ids, key=lambda i: max(p.stat().st_mtime for p in (base / i).glob(f"*/{CONFIG_FILE}")))


def load_runs(out_dir: str | os.PathLike, run_id: str = "") -> tuple[str, list[dict]]:
    """``(run_id, runs)``: every run dir of ``run_id`` (the newest id when empty)."""
    from resnet_nb.runs import list_runs

    run_id = run_id or latest_run_id(out_dir)
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
    out: dict[str, list[float]] = {"epoch": [int(runs[0]["metrics"][i]["epoch"]) for i in range(n)]}
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
    if run.get("epochs_planned"):  # written by resnet_nb.train
        return int(run["epochs_planned"])
    cfg = run["config"]
    if cfg.get("schedule") == "iterations" and cfg.get("max_iters"):
        n = (run.get("dataset") or {}).get("n_train") or 0
        n = (cfg.get("train_subset") or n) - cfg.get("val_split", 0)
        if n > 0:
            return min(int(cfg["epochs"]), math.ceil(cfg["max_iters"] / math.ceil(n / cfg["batch_size"])))
    return int(cfg["epochs"])


def _model_summary(runs: Sequence[dict]) -> dict:
    per_seed = []
    for r in runs:
        ms = [m for m in r["metrics"] if m.get("test_acc") is not None]  # evaluated epochs
        rec = {"seed": int(r["config"]["seed"]), "path": str(r["path"]), "status": r.get("status"),
               "params": r.get("params"), "epochs_planned": _epochs_planned(r)}
        if ms:
            best = max(ms, key=lambda m: (m["test_acc"], -m["epoch"]))  # earliest epoch of the max
            rec.update(best_test_acc=float(best["test_acc"]), best_epoch=int(best["epoch"]),
                       last_test_acc=float(ms[-1]["test_acc"]), last_epoch=int(ms[-1]["epoch"]),
                       final_train_loss=float(r["metrics"][-1]["train_loss"]),
                       min_train_loss=float(min(m["train_loss"] for m in r["metrics"])),
                       wall_time_s=float(r["metrics"][-1].get("elapsed", 0.0)))
        per_seed.append(rec)
    done = [p for p in per_seed if "best_test_acc" in p]
    statuses = [p["status"] or "running" for p in per_seed]
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
        "seeds": [p["seed"] for p in per_seed],
        "best_test_acc_std": float(np.std(bests, ddof=1)) if len(bests) > 1 else None,
        "last_test_acc_std": (float(np.std([p["last_test_acc"] for p in done], ddof=1))
                              if len(done) > 1 else None),
        "run_dirs": [p["path"] for p in per_seed],
    }


def _dataset_of(runs: Sequence[dict]) -> dict:
    """The one dataset all runs used; refuses a mix (accuracies would not be comparable)."""
    seen: dict[str, list[str]] = {}
    runs = [r for r in runs if r.get("dataset")] or list(runs)  # a run that never started has none
    for r in runs:
        d = r.get("dataset") or {}
        seen.setdefault(d.get("fingerprint", "?"), []).append(Path(r["path"]).name)
    if len(seen) > 1:
        detail = "; ".join(f"{fp[:12]}: {', '.join(names)}" for fp, names in seen.items())
        raise ValueError(f"the runs of this run id used different datasets ({detail}); "
                         f"analyse runs trained on one dataset together (give them their own run id)")
    d = runs[0].get("dataset") or {}
    return {"provenance": d.get("provenance", "unknown"), "fingerprint": d.get("fingerprint", ""),
            "canonical": bool(d.get("canonical", False))}


def _preset_of(runs: Sequence[dict]) -> str:
    presets = sorted({str(r.get("preset") or r["config"].get("preset")) for r in runs})
    if len(presets) > 1:
        raise ValueError(f"the runs of this run id come from different presets ({', '.join(presets)}); "
                         f"give each preset its own run id")
    return presets[0]


def summarize(runs: Sequence[dict], run_id: str, expected: Sequence[str] = SEED_MODELS,
              figures: dict[str, str] | None = None) -> dict:
    """The ``summary.json`` record (schema in TEAM.md / DESIGN.md) of the runs of ``run_id``.

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
        "dataset": _dataset_of(runs),
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
    from resnet_nb.plots import model_label

    seeds = any(s["n_seeds"] > 1 for s in summary["models"].values())
    note = " (mean ± std over seeds)" if seeds else ""
    best = [f"| Model | Best Test Acc{note} | Epoch | Seeds |", "|---|---:|---:|---:|"]
    last = [f"| Model | Test Acc @ last epoch{note} | Epoch | Planned |", "|---|---:|---:|---:|"]
    for m, s in summary["models"].items():
        best.append(f"| {model_label(m)} | {_fmt(s['best_test_acc'], s['best_test_acc_std'])} | "
                    f"{s['best_epoch'] if s['best_epoch'] is not None else 'n/a'} | {s['n_seeds']} |")
        last.append(f"| {model_label(m)} | {_fmt(s['last_test_acc'], s.get('last_test_acc_std'))} | "
                    f"{s['last_epoch']} | {s['epochs_planned']} |")
    return "\n".join(best), "\n".join(last)


def runs_label(runs: Sequence[dict]) -> str:
    """The data line of a figure of ``runs``, read from their run files (``plots.provenance_label``):
    the dataset's provenance, the preset and the epochs shown (of those planned), e.g.
    ``"synthetic data, smoke preset, 5 epochs: shows the code runs, not the paper's result"``."""
    from resnet_nb.plots import provenance_label

    shown = max((len(r["metrics"]) and int(r["metrics"][-1]["epoch"]) for r in runs), default=0)
    planned = max((_epochs_planned(r) for r in runs), default=0)
    return provenance_label(_dataset_of(runs), _preset_of(runs), shown, planned)


def write_figures(runs: Sequence[dict], out_dir: str | os.PathLike) -> dict[str, str]:
    """Write the seed report's two figures and the Fig. 6 style plot into ``out_dir``;
    returns ``{key: file name}``. Models with no finished epoch are left out. Every title
    names the data, preset and epochs of the runs (``runs_label``)."""
    from resnet_nb import plots

    curves = {m: c for m, rs in group_by_model(runs).items() if (c := model_curves(rs))["epoch"]}
    if not curves:
        raise ValueError("no run has finished an epoch yet: nothing to plot")
    label = runs_label(runs)
    makers = {"train_loss": plots.train_loss_figure, "test_accuracy": plots.test_accuracy_figure,
              "error_fig6": plots.error_fig6_figure}
    out = Path(out_dir)
    for key, make in makers.items():
        plots.save(make(curves, label), out / FIGURE_FILES[key])
    return dict(FIGURE_FILES)


def analyze(out_dir: str | os.PathLike = "experiments", run_id: str = "",
            figures_root: str | os.PathLike = "report/figures",
            expected: Sequence[str] = SEED_MODELS) -> dict:
    """Load the runs of ``run_id``, write figures and ``summary.json`` to
    ``<figures_root>/<run_id>/`` and return the summary. Theory figures already in that
    folder (from 01_theory) are listed in ``figures`` too."""
    from resnet_nb.runs import atomic_write_json

    run_id, runs = load_runs(out_dir, run_id)
    fig_dir = figures_dir_of(figures_root, run_id)
    fig_dir.mkdir(parents=True, exist_ok=True)
    figures = write_figures(runs, fig_dir)
    figures.update({k: f for k, f in THEORY_FIGURE_FILES.items() if (fig_dir / f).is_file()})
    summary = summarize(runs, run_id, expected, figures)
    atomic_write_json(fig_dir / "summary.json", summary)
    return summary


def dataset_overview(ds) -> str:
    """A plain-text description of a loaded dataset (``resnet_nb.data.Cifar10``): provenance,
    fingerprint, images per class in train and test, per-channel mean and std (rounded)."""
    from resnet_nb.data import CLASSES, channel_stats

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
    """The comparisons of sec. 4.2 the report states, computed from ``summary``: for every
    pair of depths d1 < d2 with both plain nets present, whether plain-d2 ends with a higher
    training loss and a lower best test accuracy than plain-d1 (degradation), and whether
    resnet-d2 beats plain-d2 and resnet-d1 (the residual fix). Missing numbers say so."""
    from resnet_nb.plots import model_label

    models = summary["models"]

    def val(m, key):
        return (models.get(m) or {}).get(key)

    depths = sorted({parse_model_name(m)[1] for m in models})
    lines = []
    for i, d1 in enumerate(depths):
        for d2 in depths[i + 1:]:
            p1, p2, r1, r2 = f"plain{d1}", f"plain{d2}", f"resnet{d1}", f"resnet{d2}"
            if val(p1, "best_test_acc") is not None and val(p2, "best_test_acc") is not None:
                higher_loss = val(p2, "final_train_loss") > val(p1, "final_train_loss")
                lower_acc = val(p2, "best_test_acc") < val(p1, "best_test_acc")
                lines.append(
                    f"degradation {model_label(p2)} vs {model_label(p1)}: higher final training loss "
                    f"{higher_loss} ({val(p2, 'final_train_loss'):.4f} vs {val(p1, 'final_train_loss'):.4f}), "
                    f"lower best test acc {lower_acc} ({val(p2, 'best_test_acc'):.4f} vs {val(p1, 'best_test_acc'):.4f})")
            for a, b in ((r2, p2), (r2, r1)):
                if val(a, "best_test_acc") is not None and val(b, "best_test_acc") is not None:
                    lines.append(f"{model_label(a)} beats {model_label(b)} in best test acc: "
                                 f"{val(a, 'best_test_acc') > val(b, 'best_test_acc')} "
                                 f"({val(a, 'best_test_acc'):.4f} vs {val(b, 'best_test_acc'):.4f})")
    return lines or ["no pair of depths with results yet: train at least two depths (e.g. plain20, plain56)"]
