"""Figures of the reproduction: data previews, training curves, paper Fig. 6, theory probes.

Every function takes plain data (tensors, lists, the dicts of ``resnet_nb.analysis.aggregate`` and
``resnet_nb.analysis.probes``) and returns a ``matplotlib.figure.Figure`` built without pyplot,
so nothing depends on the interactive backend: batch runs render with Agg, and no
global figure state leaks between calls. ``save`` writes a PNG, ``show`` displays a
figure in a notebook (as PNG) or does nothing outside IPython.

Every figure says what data it shows: its title carries a ``data_label`` built by
``provenance_label`` from the run files (config.json's ``dataset`` record, the theory
probes' parameters), so a figure of the synthetic fixture never reads as CIFAR-10.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from resnet_nb.models.resnet import model_label, parse_model_name

__all__ = [
    "PROVENANCE_NAMES", "provenance_label", "model_color", "new_figure", "save", "show",
    "sample_grid_figure", "augmentation_figure", "class_balance_figure",
    "run_curves_figure", "train_loss_figure", "test_accuracy_figure", "error_fig6_figure",
    "PAPER_FIG6_YMAX", "depth_color", "error_vs_depth_figure",
    "grad_norm_figure", "activation_std_figure", "input_grad_figure",
    "layer_responses_figure", "grad_correlation_figure",
]

DPI = 120  # dots per inch of saved PNGs
# one hue per family (plain: warm, residual: cool), darker for deeper nets
_FAMILY_CMAP = {"plain": "Oranges", "resnet": "Blues"}


# config.json "dataset" -> "provenance" (resnet_nb.data.cifar10) -> the words every figure title uses
PROVENANCE_NAMES = {
    "canonical": "CIFAR-10",                          # md5 sums match the published archive
    "noncanonical": "non-canonical CIFAR-10 copy",    # md5 sums differ (e.g. a re-encoded stand-in)
    "synthetic": "synthetic data",                    # resnet_nb.data.cifar10.write_fake_cifar10
}
NOT_A_RESULT = "shows the code runs, not the paper's result"


def provenance_label(dataset_info: Mapping | str | None, preset: str | None = None,
                     epochs: int | None = None, epochs_planned: int | None = None) -> str:
    """The words a figure title uses for its data, from the run files.

    ``dataset_info``: a ``dataset`` record (config.json, summary.json, ``Cifar10.info()``,
    the theory probes' parameters) or its ``provenance`` string. With ``preset`` and
    ``epochs`` (training results) the recipe is named too, and results of the synthetic
    data or of the smoke preset say that they are no evidence for the paper's claims::

        provenance_label({"provenance": "synthetic"}, "smoke", 5)
        -> "synthetic data, smoke preset, 5 epochs: shows the code runs, not the paper's result"
        provenance_label("canonical", "seed", 37, 200) -> "CIFAR-10, seed preset, 37 of 200 epochs"
    """
    prov = dataset_info if isinstance(dataset_info, str) or dataset_info is None \
        else dataset_info.get("provenance")
    words = [PROVENANCE_NAMES.get(prov, f"data of unknown provenance ({prov or 'not recorded'})")]
    if preset:
        words.append(f"{preset} preset")
    if epochs is not None:
        of = f" of {epochs_planned}" if epochs_planned and epochs_planned != epochs else ""
        words.append(f"{epochs}{of} epoch{'' if epochs == 1 and not of else 's'}")
    label = ", ".join(words)
    trained = preset is not None or epochs is not None
    if trained and (prov not in ("canonical", "noncanonical") or preset == "smoke"):
        label += f": {NOT_A_RESULT}"
    return label


def _set_title(target, what: str, data_label: str | None, fontsize: float = 10) -> None:
    """Title ``target`` (a Figure: its suptitle; an Axes: its title) with ``what`` on the
    first line and the data it shows below, wrapped to the figure's width."""
    import textwrap

    from matplotlib.figure import Figure

    fig = target if isinstance(target, Figure) else target.figure
    width = max(40, int(fig.get_figwidth() * 72 / (0.6 * fontsize)))  # characters per line (~0.6 em each)
    text = "\n".join([what, *textwrap.wrap(data_label, width)]) if data_label else what
    if isinstance(target, Figure):
        target.suptitle(text, fontsize=fontsize)
    else:
        target.set_title(text, fontsize=fontsize)


def model_color(name: str, depths: Sequence[int] = (20, 56, 110)) -> tuple:
    """A colour for ``name``: family picks the hue, depth the shade."""
    from matplotlib import colormaps

    family, depth = parse_model_name(name)
    ds = sorted(set(depths) | {depth})
    shade = 0.5 + 0.4 * (ds.index(depth) / max(1, len(ds) - 1))
    return colormaps[_FAMILY_CMAP[family]](shade)


def new_figure(nrows: int = 1, ncols: int = 1, size: tuple[float, float] = (6.4, 4.0),
               **subplot_kw):
    """A pyplot-free Figure and its axes array (always 2-D: ``axes[row][col]``)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **subplot_kw)
    return fig, axes


def save(fig, path: str | os.PathLike, dpi: int = DPI) -> Path:
    """Write ``fig`` as PNG to ``path`` (parents created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png")
    return path


def show(fig, dpi: int = 90) -> None:
    """Display ``fig`` as a PNG in IPython/Jupyter; a no-op elsewhere."""
    try:
        from IPython import get_ipython
        from IPython.display import Image, display
    except ImportError:  # pragma: no cover - IPython comes with ipykernel
        return
    if get_ipython() is None:
        return
    buf = io.BytesIO()
    fig.savefig(buf, dpi=dpi, format="png")
    display(Image(data=buf.getvalue(), format="png"))


# --------------------------------------------------------------------------- data

def _to_hwc(img) -> np.ndarray:
    """uint8 (3, H, W) tensor/array -> (H, W, 3) array for imshow."""
    a = img.cpu().numpy() if hasattr(img, "cpu") else np.asarray(img)
    return np.ascontiguousarray(a.transpose(1, 2, 0))


def sample_grid_figure(images, labels, classes: Sequence[str], per_class: int = 8, seed: int = 0,
                       data_label: str | None = None):
    """A grid with one row per class and ``per_class`` random images of it.

    images: uint8 (N, 3, 32, 32); labels: (N,) ints; data_label: ``provenance_label``.
    """
    labels = np.asarray(labels.cpu() if hasattr(labels, "cpu") else labels)
    rng = np.random.default_rng(seed)
    fig, axes = new_figure(len(classes), per_class, size=(per_class * 0.8, len(classes) * 0.85))
    for c, name in enumerate(classes):
        idx = np.flatnonzero(labels == c)
        pick = rng.choice(idx, size=min(per_class, idx.size), replace=False) if idx.size else []
        for j in range(per_class):
            ax = axes[c][j]
            ax.set_axis_off()
            if j < len(pick):
                ax.imshow(_to_hwc(images[int(pick[j])]), interpolation="nearest")
        axes[c][0].text(-4, 16, name, ha="right", va="center", fontsize=8)
    _set_title(fig, f"{per_class} random training images per class", data_label, fontsize=9)
    return fig


def augmentation_figure(original, augmented: Sequence, titles: Sequence[str] | None = None,
                        data_label: str | None = None):
    """Rows: the original images, then one row per augmented version of the same images.

    original: uint8 (K, 3, 32, 32); augmented: list of uint8 (K, 3, 32, 32).
    """
    rows = [original, *augmented]
    titles = list(titles) if titles else ["original"] + [f"augmented #{i + 1}" for i in range(len(augmented))]
    k = original.shape[0]
    fig, axes = new_figure(len(rows), k, size=(k * 0.9, len(rows) * 1.0))
    for r, batch in enumerate(rows):
        for j in range(k):
            ax = axes[r][j]
            ax.set_axis_off()
            ax.imshow(_to_hwc(batch[j]), interpolation="nearest")
        axes[r][0].text(-4, 16, titles[r], ha="right", va="center", fontsize=8)
    _set_title(fig, "random 32x32 crop of the 4-pixel padded image + horizontal flip (sec. 4.2)", data_label,
               fontsize=9)
    return fig


def class_balance_figure(train_counts: Sequence[int], test_counts: Sequence[int], classes: Sequence[str],
                         data_label: str | None = None):
    """Bar chart of images per class in the training and the test set."""
    fig, axes = new_figure(1, 1, size=(7.0, 3.2))
    ax = axes[0][0]
    x = np.arange(len(classes))
    ax.bar(x - 0.2, train_counts, width=0.4, label="train")
    ax.bar(x + 0.2, test_counts, width=0.4, label="test")
    ax.set_xticks(x, classes, rotation=30, ha="right")
    ax.set_ylabel("images")
    ax.legend()
    _set_title(ax, "class balance", data_label)
    return fig


# --------------------------------------------------------------------------- training curves

def _epochs(curve: Mapping) -> np.ndarray:
    return np.asarray(curve["epoch"], dtype=float)


def _integer_x(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def run_curves_figure(curves: Mapping[str, Mapping], data_label: str | None = None):
    """Loss (left) and accuracy (right) per epoch of one or more runs; train dashed,
    test solid. ``curves``: ``{label: {"epoch": [...], "train_loss": [...], ...}}``;
    ``data_label`` (``provenance_label``) goes into the title."""
    fig, axes = new_figure(1, 2, size=(10.0, 3.8))
    loss_ax, acc_ax = axes[0]
    for i, (label, c) in enumerate(curves.items()):
        color = f"C{i}"
        e = _epochs(c)
        loss_ax.plot(e, c["train_loss"], "--", color=color, label=f"{label} train")
        loss_ax.plot(e, c["test_loss"], "-", color=color, label=f"{label} test")
        acc_ax.plot(e, c["train_acc"], "--", color=color, label=f"{label} train")
        acc_ax.plot(e, c["test_acc"], "-", color=color, label=f"{label} test")
    loss_ax.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    acc_ax.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in (loss_ax, acc_ax):
        _integer_x(ax)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if data_label:
        _set_title(fig, "loss and accuracy per epoch", data_label)
    return fig


def _per_model_figure(curves: Mapping[str, Mapping], key: str, ylabel: str, title: str,
                      data_label: str, logy: bool = False):
    fig, axes = new_figure(1, 1, size=(7.0, 4.2))
    ax = axes[0][0]
    depths = sorted({int("".join(ch for ch in m if ch.isdigit())) for m in curves})
    for name, c in curves.items():
        ax.plot(_epochs(c), c[key], color=model_color(name, depths), label=model_label(name),
                linestyle="--" if name.startswith("plain") else "-", linewidth=1.6)
        std = c.get(f"{key}_std")
        if std is not None and np.any(np.asarray(std) > 0):
            m, s = np.asarray(c[key]), np.asarray(std)
            ax.fill_between(_epochs(c), m - s, m + s, color=model_color(name, depths), alpha=0.2)
    if logy:
        ax.set_yscale("log")
    ax.set(xlabel="epoch", ylabel=ylabel)
    _set_title(ax, title, data_label)
    _integer_x(ax)
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def train_loss_figure(curves: Mapping[str, Mapping], data_label: str):
    """The seed report's ``resnet_train_loss.png``: training loss per epoch, every model.
    ``data_label``: ``provenance_label`` of the runs (their data, preset and epochs)."""
    return _per_model_figure(curves, "train_loss", "training loss (cross-entropy)",
                             "training loss: plain vs residual", data_label, logy=True)


def test_accuracy_figure(curves: Mapping[str, Mapping], data_label: str):
    """The seed report's ``resnet_test_accuracy.png``: test accuracy per epoch, every model."""
    return _per_model_figure(curves, "test_acc", "test accuracy",
                             "test accuracy: plain vs residual", data_label)


PAPER_FIG6_YMAX = 20.0  # % : the y-axis of the paper's Fig. 6 (CIFAR-10 training and test error)


def depth_color(depth: int, depths: Sequence[int]):
    """One distinct colour per depth (the same depth has the same colour in every panel)."""
    from matplotlib import colormaps

    return colormaps["tab10"](sorted(set(depths) | {depth}).index(depth) % 10)


def _error_band(ax, x, acc, std, color, style: str, width: float, label: str | None) -> np.ndarray:
    """Plot the error (%) of the accuracy curve ``acc`` (fractions), with a +-std band when
    ``std`` (the per-epoch std over seeds) is given; returns the error values."""
    err = 100 * (1 - np.asarray(acc, dtype=float))
    ax.plot(x, err, style, color=color, linewidth=width, label=label)
    if std is not None and np.any(np.asarray(std) > 0):
        s = 100 * np.asarray(std, dtype=float)
        ax.fill_between(x, err - s, err + s, color=color, alpha=0.15, linewidth=0)
    return err


def error_fig6_figure(curves: Mapping[str, Mapping], data_label: str):
    """Paper Fig. 6 style: left plain nets, right ResNets, one colour per depth; training
    error (%) dashed, test error (%) solid, per epoch. With several seeds the curves are the
    means with a shaded +-std band (``analysis.model_curves``' ``<key>_std``). The y-axis is
    the paper's 0-20 %, extended (and the title says so) when errors lie above it."""
    fig, axes = new_figure(1, 2, size=(11.0, 4.4), sharey=True)
    depths = sorted({parse_model_name(m)[1] for m in curves})
    top = 0.0
    for ax, family, title in ((axes[0][0], "plain", "plain networks"),
                              (axes[0][1], "resnet", "ResNets")):
        for name, c in curves.items():
            fam, depth = parse_model_name(name)
            if fam != family:
                continue
            color, e = depth_color(depth, depths), _epochs(c)
            n = c.get("n_seeds", 1)
            label = model_label(name) + (f" (mean of {n} seeds, ±std)" if n > 1 else "")
            tr = _error_band(ax, e, c["train_acc"], c.get("train_acc_std"), color, "--", 1.0, None)
            te = _error_band(ax, e, c["test_acc"], c.get("test_acc_std"), color, "-", 2.2, label)
            top = max(top, float(np.nanmax(np.concatenate([tr, te]))) if len(e) else 0.0)
        ax.set(xlabel="epoch", title=title)
        _integer_x(ax)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(title="dashed: train, solid: test", fontsize=8, title_fontsize=8)
        else:  # a panel without runs says so instead of showing an empty axis
            ax.set_xticks([])
            ax.text(0.5, 0.5, f"no {title} in these runs", transform=ax.transAxes, ha="center", va="center",
                    color="0.4")
    ymax = PAPER_FIG6_YMAX if top <= PAPER_FIG6_YMAX else min(100.0, 10 * np.ceil(top / 10))
    axes[0][0].set_ylim(0, ymax)
    axes[0][0].set_ylabel("error (%)")
    what = "training (dashed) and test (solid) error, as in the paper's Fig. 6"
    if ymax > PAPER_FIG6_YMAX:
        what += f"\n(y-axis 0-{ymax:.0f} %, not the paper's 0-{PAPER_FIG6_YMAX:.0f} %: errors reach {top:.0f} %)"
    _set_title(fig, what, data_label)
    return fig


def error_vs_depth_figure(rows: Sequence[Mapping], data_label: str,
                          published: Mapping[str, Mapping[int, float]] | None = None):
    """Table 6 as a figure: test error (%) against depth, plain vs ResNet; each family's mean
    over seeds with a +-std error bar, every seed as a dot. ``rows``: ``analysis.depth_sweep``;
    ``published``: ``{label: {depth: error %}}`` drawn as grey dashed lines (the paper's ResNets)."""
    fig, axes = new_figure(1, 1, size=(6.4, 4.2))
    ax = axes[0][0]
    depths = sorted({r["depth"] for r in rows})
    for family, marker in (("plain", "s"), ("resnet", "o")):
        pts = [(r["depth"], r[family]) for r in rows if r.get(family) and r[family]["err_pct"] is not None]
        if not pts:
            continue
        color = model_color(f"{family}{depths[-1]}", depths)
        xs = [d for d, _ in pts]
        ax.errorbar(xs, [p["err_pct"] for _, p in pts], yerr=[p["std_pct"] or 0 for _, p in pts], fmt="-" + marker,
                    color=color, capsize=3, label="plain" if family == "plain" else "ResNet")
        for d, p in pts:
            ax.scatter([d] * len(p["seeds_pct"]), p["seeds_pct"], color=color, s=10, alpha=0.5)
    for i, (label, values) in enumerate((published or {}).items()):
        ds = sorted(values)
        ax.plot(ds, [values[d] for d in ds], ":" if i else "--", color="0.45", marker="x", label=label)
    ax.set_xticks(sorted(set(depths) | {d for v in (published or {}).values() for d in v}))
    ax.set(xlabel="depth (weighted layers)", ylabel="test error (%)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _set_title(ax, "test error against depth (mean ± std over seeds), as the paper's Table 6", data_label, fontsize=9)
    return fig


# --------------------------------------------------------------------------- theory probes

def _probe_models(summary: Mapping[str, Mapping]) -> tuple[list[int], list[str]]:
    depths = sorted({v["depth"] for v in summary.values()})
    families = [f for f in ("plain", "resnet") if any(v["family"] == f for v in summary.values())]
    return depths, families


def _band(ax, x, mean, std, color, label):
    mean, std = np.asarray(mean), np.asarray(std)
    ax.plot(x, mean, color=color, label=label, linewidth=1.5)
    if np.any(std > 0):
        ax.fill_between(x, np.clip(mean - std, mean * 1e-3, None), mean + std, color=color, alpha=0.25)


def _probe_panels(summary: Mapping[str, Mapping], key: str, x0: int, label_seeds: bool):
    """One panel per depth, plain vs residual: ``summary[model][key + "_mean"]`` against
    its index (starting at ``x0``) with a +-std band of ``key + "_std"``."""
    depths, families = _probe_models(summary)
    fig, axes = new_figure(1, len(depths), size=(4.2 * len(depths), 3.8))
    for ax, depth in zip(axes[0], depths):
        for name in (f"{family}{depth}" for family in families):
            if name not in summary:
                continue
            s = summary[name]
            mean = s[f"{key}_mean"]
            n = s["n_seeds"]
            label = model_label(name) + (f" ({n} seed{'' if n == 1 else 's'})" if label_seeds else "")
            _band(ax, np.arange(x0, len(mean) + x0), mean, s[f"{key}_std"], model_color(name, depths), label)
        ax.set(title=f"depth {depth}")
        ax.legend(fontsize=8)
    return fig, axes


def grad_norm_figure(summary: Mapping[str, Mapping], data_label: str):
    """One panel per depth: ``||dL/dW||`` of every conv layer (1 = stem) at
    initialisation, plain vs residual, mean over seeds with a +-std band (log scale).
    ``data_label``: what the probe batch was (``resnet_nb.analysis.probes.probe_label``)."""
    fig, axes = _probe_panels(summary, "conv_grad_norms", 1, label_seeds=True)
    for ax in axes[0]:
        ax.set_yscale("log")
        ax.set(xlabel="conv layer (1 = first)")
        ax.grid(alpha=0.3, which="both")
    axes[0][0].set_ylabel("||dL/dW|| at init")
    _set_title(fig, "gradient norm of every conv weight at initialisation", data_label)
    return fig


def activation_std_figure(summary: Mapping[str, Mapping], data_label: str):
    """One panel per depth: std of the stem (0) and of every block output, plain vs residual."""
    fig, axes = _probe_panels(summary, "block_output_std", 0, label_seeds=False)
    for ax in axes[0]:
        ax.set(xlabel="block (0 = stem)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("std of the block output")
    _set_title(fig, "forward activation std by depth at initialisation", data_label)
    return fig


def input_grad_figure(summary: Mapping[str, Mapping], data_label: str):
    """``||dL/dx||`` reaching the input images against depth, plain vs residual: every
    seed as a dot, the mean as a line (log scale)."""
    depths, families = _probe_models(summary)
    fig, axes = new_figure(1, 1, size=(5.5, 4.0))
    ax = axes[0][0]
    for family in families:
        names = [f"{family}{d}" for d in depths if f"{family}{d}" in summary]
        xs = [summary[n]["depth"] for n in names]
        color = model_color(names[-1], depths)
        ax.plot(xs, [summary[n]["input_grad_norm_mean"] for n in names], "-o", color=color,
                label="plain" if family == "plain" else "residual")
        for n in names:
            seeds = summary[n]["input_grad_norm_seeds"]
            ax.scatter([summary[n]["depth"]] * len(seeds), seeds, color=color, s=10, alpha=0.6)
    ax.set_yscale("log")
    ax.set_xticks(depths)
    ax.set(xlabel="depth (weighted layers)", ylabel="||dL/dx|| at init")
    _set_title(ax, "gradient reaching the input at initialisation", data_label, fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    return fig


# --------------------------------------------------------------------------- layer responses (Fig. 7)

def layer_responses_figure(models: Mapping[str, Mapping], data_label: str):
    """Paper Fig. 7: the std of every 3x3 layer's response (after BN, before ReLU and the
    addition; ``resnet_nb.analysis.responses``) of the trained nets; top in layer order, bottom each
    net's stds sorted in descending order. Plain nets dashed, ResNets solid, one shade per
    depth. ``models``: ``{model: {"std": [...], "n_seeds": int, "runs": [{"epoch": ...}]}}``."""
    fig, axes = new_figure(2, 1, size=(8.0, 7.0))
    top, bottom = axes[0][0], axes[1][0]
    depths = sorted({parse_model_name(m)[1] for m in models})
    for name in models:
        m = models[name]
        std = np.asarray(m["std"])
        epochs = sorted({r["epoch"] for r in m.get("runs", [])})
        n = m.get("n_seeds", 1)
        label = model_label(name) + (f" (epoch {epochs[0]})" if len(epochs) == 1 else "") + \
            (f", mean of {n} seeds" if n > 1 else "")
        style = dict(color=model_color(name, depths), linestyle="--" if name.startswith("plain") else "-",
                     linewidth=1.3, label=label)
        top.plot(np.arange(1, std.size + 1), std, **style)
        bottom.plot(np.arange(1, std.size + 1), np.sort(std)[::-1], **style)
    values = np.concatenate([np.asarray(models[n]["std"], dtype=float).ravel() for n in models] or [np.ones(1)])
    # one net's responses tens of times another's (an undertrained deep plain net) would flatten the
    # rest into one line on a linear axis: a log axis then, said on the axis
    log = bool(np.all(values > 0) and values.max() > 10 * values.min())
    ylabel = "std of the response" + (" (log scale)" if log else "")
    top.set(xlabel="layer index (1 = first 3x3 conv)", ylabel=ylabel, title="original order")
    bottom.set(xlabel="layer index (sorted by magnitude)", ylabel=ylabel, title="sorted by magnitude")
    for ax in (top, bottom):
        if log:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    _set_title(fig, "std of the 3x3 layers' responses (after BN, before ReLU/addition), paper Fig. 7",
               data_label)
    return fig


def grad_correlation_figure(summary: Mapping[str, Mapping], data_label: str, step: float):
    """The shattering probe (``resnet_nb.analysis.probes``, Balduzzi et al. 2017 Fig. 1): left, the
    correlation of input gradients ``l`` points apart on a line through input space, every
    model (plain dashed, residual solid); right, the neighbour correlation (lag 1) against
    depth, every seed a dot. 1: the gradient does not change along the line; 0: white noise.
    ``step``: the spacing of the line's points, a fraction of the distance between its images."""
    depths, families = _probe_models(summary)
    fig, axes = new_figure(1, 2, size=(10.0, 4.0))
    lag_ax, depth_ax = axes[0]
    for name, s in summary.items():
        if "grad_corr_lags_mean" not in s:
            continue
        lags = np.arange(1, len(s["grad_corr_lags_mean"]) + 1)
        lag_ax.plot(lags, s["grad_corr_lags_mean"], color=model_color(name, depths),
                    linestyle="--" if s["family"] == "plain" else "-", marker=".", label=model_label(name))
    lag_ax.axhline(0, color="grey", linewidth=0.8)
    lag_ax.set(xlabel=f"points apart on the line (1 step = {step:g} of the distance between two images)",
               ylabel="correlation of input gradients",
               title="autocorrelation along the line")
    _integer_x(lag_ax)
    for family in families:
        names = [f"{family}{d}" for d in depths if "neighbour_grad_corr_mean" in summary.get(f"{family}{d}", {})]
        if not names:
            continue
        color = model_color(names[-1], depths)
        depth_ax.plot([summary[n]["depth"] for n in names], [summary[n]["neighbour_grad_corr_mean"] for n in names],
                      "-o", color=color, label="plain" if family == "plain" else "residual")
        for n in names:
            seeds = summary[n]["neighbour_grad_corr_seeds"]
            depth_ax.scatter([summary[n]["depth"]] * len(seeds), seeds, color=color, s=10, alpha=0.6)
    depth_ax.axhline(0, color="grey", linewidth=0.8)
    depth_ax.set_xticks(depths)
    depth_ax.set(xlabel="depth (weighted layers)", ylabel="neighbour correlation (lag 1)",
                 title="neighbouring points, by depth")
    for ax in (lag_ax, depth_ax):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    _set_title(fig, "shattered gradients at initialisation: correlation of d logit / d input between nearby "
                    "inputs", data_label)
    return fig
