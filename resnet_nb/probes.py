"""Measurements at initialisation that show why ``y = F(x) + x`` eases optimisation.

He et al. 2016 (sec. 1 and 3.1) argue that deep plain nets are hard to *optimise*, not
that they overfit, and that a residual block, which only has to learn ``F(x) = H(x) - x``,
keeps an identity path through the whole network. Sec. 4.2 ("Analysis of Layer
Responses", Fig. 7) measures layer responses of trained nets; here the same kind of
probe is taken at initialisation (He init, BN in training mode, one batch of training
images), where the effect of the shortcut on signal and gradient propagation is already
visible:

* ``conv_grad_norms``: ``||dL/dW||`` of every conv weight, in forward order. In the plain
  net the backward signal passes through every conv-BN-relu; in the residual net
  ``dL/dx = dL/dy (1 + dF/dx)`` carries an identity term back to every block.
* ``block_output_std``: the standard deviation of the stem and of every block's output.
  Each residual block adds a BN-normalised branch to its input, so the signal grows with
  depth while the plain net re-normalises at every block.
* ``input_grad_norm``: ``||dL/dx||`` of the loss with respect to the input images, the
  gradient that survives the whole backward pass.

``run_probes`` repeats this for plain and residual nets of several depths and seeds;
``summarize_probes`` gives mean and std over seeds. Results are plain JSON-able dicts,
plotted by ``resnet_nb.plots`` and written by ``01_theory`` for the report. The full probe
(``FULL_PROBE``) is 01_theory's default; a smaller one (the smoke preset's, ``SMOKE_PROBE``)
says what it left out (``probe_scope``) in the notebook and in every figure title, and every
title names the data of the probe batch (``probe_label``: CIFAR-10, a non-canonical copy or
the synthetic fixture).
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from resnet_nb.data import Cifar10, channel_stats, normalize, pixel_mean
from resnet_nb.models import BasicBlock, CifarResNet, build_model

__all__ = [
    "probe_batch", "conv_layers", "conv_grad_norms", "block_output_std", "input_grad_norm",
    "probe_model", "run_probes", "summarize_probes", "parse_int_list", "probe_table",
    "probe_shapes", "residual_contrast", "write_theory_outputs", "THEORY_JSON",
    "FULL_PROBE", "SMOKE_PROBE", "probe_scope", "probe_label",
]

# the probe the report describes (01_theory's defaults), and the smoke preset's smaller one:
# every depth, but one seed and a batch of 16 (about a quarter of the CPU time of two seeds
# at batch 32; the plain/residual contrast of residual_contrast holds at every depth)
FULL_PROBE = {"depths": "20,56,110", "seeds": "0,1,2", "batch_size": 128}
SMOKE_PROBE = {"depths": "20,56,110", "seeds": "0", "batch_size": 16}


def parse_int_list(value: str | Iterable[int], what: str = "value") -> list[int]:
    """``"20,56,110"`` or ``[20, 56]`` -> ``[20, 56, 110]``; one-line ValueError otherwise."""
    if isinstance(value, str):
        parts = [p.strip() for p in value.replace(";", ",").split(",") if p.strip()]
    else:
        parts = list(value)
    try:
        out = [int(p) for p in parts]
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a comma list of integers (e.g. 20,56,110); got {value!r}") from None
    if not out:
        raise ValueError(f"{what} must name at least one integer (e.g. 20,56,110); got {value!r}")
    return out


def probe_batch(ds: Cifar10, batch_size: int = 128, seed: int = 0, normalization: str = "channel",
                device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed random batch of training images of ``ds``, normalised like training does.

    Returns x: (B, 3, 32, 32) float32 on ``device`` and y: (B,) int64. Statistics are
    those of the whole training set (per channel, or the per-pixel mean image for the
    paper's ``normalization="pixel"``).
    """
    n = ds.train_y.numel()
    if not 0 < batch_size <= n:
        raise ValueError(f"batch_size must be in 1..{n} (training images available); got {batch_size}")
    idx = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:batch_size]
    x_u8, y = ds.train_x[idx], ds.train_y[idx]                     # (B, 3, 32, 32) uint8, (B,)
    if normalization == "channel":
        mean, std = channel_stats(ds.train_x)                       # (3,), (3,)
    elif normalization == "pixel":
        mean, std = pixel_mean(ds.train_x), None                    # (3, 32, 32)
    else:
        raise ValueError(f"normalization must be channel or pixel; got {normalization!r}")
    return normalize(x_u8.to(device), mean, std), y.to(device)


def conv_layers(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    """The 3x3 convs of the main path in forward order (stem, then conv1/conv2 of every
    block): ``depth - 1`` layers (the last weighted layer is the fc). Option-B projection
    convs are shortcuts, not layers of the depth count, and are left out."""
    return [(name, m) for name, m in model.named_modules()
            if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]


def _loss_backward(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    return float(loss.detach())


def conv_grad_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    """``||dL/dW||_2`` of every main-path conv weight (``conv_layers`` order) for the
    cross-entropy loss of one batch. The model is used as given (train mode: BN uses the
    batch statistics, as in the first SGD step)."""
    _loss_backward(model, x, y)
    return [float(m.weight.grad.norm()) for _, m in conv_layers(model)]


def block_output_std(model: CifarResNet, x: torch.Tensor) -> list[float]:
    """Std of the stem output and of every block output (forward order): ``1 + 3n`` values
    for depth 6n+2. Measured with forward hooks, no gradient."""
    blocks = [b for b in model.modules() if isinstance(b, BasicBlock)]
    stds: list[float] = []
    hooks = [b.register_forward_hook(lambda _m, _i, out: stds.append(float(out.float().std())))
             for b in blocks]
    try:
        with torch.no_grad():
            stem = F.relu(model.bn1(model.conv1(x)))               # (B, 16, 32, 32)
            stds.append(float(stem.float().std()))
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return stds


def input_grad_norm(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """``||dL/dx||_2`` over the whole batch: the gradient that reaches the input images."""
    x = x.detach().clone().requires_grad_(True)
    _loss_backward(model, x, y)
    return float(x.grad.norm())


def probe_model(model: CifarResNet, x: torch.Tensor, y: torch.Tensor) -> dict:
    """All three probes on one freshly initialised model (train mode)."""
    model.train()
    # BN running statistics change on every forward in train mode; they are not used
    # by these probes (batch statistics are), so the order of the probes does not matter.
    grads = conv_grad_norms(model, x, y)
    inp = input_grad_norm(model, x, y)
    stds = block_output_std(model, x)
    with torch.no_grad():
        loss = float(F.cross_entropy(model(x), y))
    model.zero_grad(set_to_none=True)
    return {"conv_grad_norms": grads, "block_output_std": stds, "input_grad_norm": inp, "loss": loss}


def run_probes(x: torch.Tensor, y: torch.Tensor, depths: Sequence[int] = (20, 56, 110),
               seeds: Sequence[int] = (0, 1, 2), families: Sequence[str] = ("plain", "resnet"),
               shortcut: str = "A", progress: bool = False) -> list[dict]:
    """Probe ``<family><depth>`` at initialisation for every depth, family and seed.

    The seed fixes the He initialisation (``torch.manual_seed(seed)`` before building),
    so plain and residual nets of one seed start from the same conv weights. The model is
    built on ``x``'s device. Returns one record per model: family, depth, seed, model and
    the ``probe_model`` values.
    """
    out = []
    for depth in depths:
        for family in families:
            for seed in seeds:
                torch.manual_seed(seed)
                model = build_model(f"{family}{depth}", shortcut=shortcut).to(x.device)
                rec = {"model": f"{family}{depth}", "family": family, "depth": int(depth),
                       "seed": int(seed), **probe_model(model, x, y)}
                out.append(rec)
                if progress:
                    print(f"{rec['model']:>10s} seed {seed}: loss {rec['loss']:.3f}, "
                          f"||dL/dx|| {rec['input_grad_norm']:.3e}", flush=True)
    return out


def summarize_probes(results: list[dict]) -> dict[str, dict]:
    """Mean and std over seeds per model: ``{"plain20": {"family", "depth", "n_seeds",
    "conv_grad_norms_mean": [...], "conv_grad_norms_std": [...], "block_output_std_mean",
    "block_output_std_std", "input_grad_norm_mean", "input_grad_norm_std",
    "input_grad_norm_seeds"}}`` in the order first seen. Std is the sample std (0 for one seed)."""
    groups: dict[str, list[dict]] = {}
    for r in results:
        groups.setdefault(r["model"], []).append(r)

    def stats(rows: list, key: str) -> tuple[list[float], list[float]]:
        a = np.asarray([r[key] for r in rows], dtype=np.float64)   # (seeds, layers)
        std = a.std(axis=0, ddof=1) if len(rows) > 1 else np.zeros_like(a[0])
        return a.mean(axis=0).tolist(), std.tolist()

    summary = {}
    for name, rows in groups.items():
        g_mean, g_std = stats(rows, "conv_grad_norms")
        s_mean, s_std = stats(rows, "block_output_std")
        inp = [r["input_grad_norm"] for r in rows]
        summary[name] = {
            "family": rows[0]["family"], "depth": rows[0]["depth"], "n_seeds": len(rows),
            "seeds": [r["seed"] for r in rows],
            "conv_grad_norms_mean": g_mean, "conv_grad_norms_std": g_std,
            "block_output_std_mean": s_mean, "block_output_std_std": s_std,
            "input_grad_norm_mean": float(np.mean(inp)),
            "input_grad_norm_std": float(np.std(inp, ddof=1)) if len(inp) > 1 else 0.0,
            "input_grad_norm_seeds": inp,
        }
    return summary


def probe_table(summary: dict[str, dict]) -> str:
    """A Markdown table of the probes per model: conv layers, the ratio of the largest to
    the smallest conv-weight gradient norm (1 = every layer gets the same size of update
    signal), output std of the last block, and ``||dL/dx||`` (means over seeds)."""
    rows = ["| model | conv layers | max/min conv grad norm | last block std | ‖dL/dx‖ |",
            "|---|---:|---:|---:|---:|"]
    for name, s in summary.items():
        g = s["conv_grad_norms_mean"]
        rows.append(f"| {name} | {len(g)} | {max(g) / min(g):.3g} | "
                    f"{s['block_output_std_mean'][-1]:.3g} | {s['input_grad_norm_mean']:.3g} |")
    return "\n".join(rows)


def probe_shapes(summary: dict[str, dict]) -> str:
    """One line per model with the deterministic facts of the probe: how many conv layers
    and blocks were measured, over how many seeds."""
    return "\n".join(f"{name}: {len(s['conv_grad_norms_mean'])} conv layers, "
                     f"{len(s['block_output_std_mean']) - 1} blocks + stem, {s['n_seeds']} seeds"
                     for name, s in summary.items())


def residual_contrast(summary: dict[str, dict]) -> dict[int, dict[str, bool]]:
    """Per depth probed in both families, the comparisons the narrative states, computed:
    ``grad_spread_smaller`` (the residual net's max/min conv gradient ratio is smaller than
    the plain net's) and ``signal_grows`` (its last block output std exceeds the plain net's)."""
    out = {}
    for name, s in summary.items():
        other = summary.get(f"plain{s['depth']}")
        if s["family"] != "resnet" or other is None:
            continue
        spread = lambda g: max(g) / min(g)  # noqa: E731
        out[s["depth"]] = {
            "grad_spread_smaller": spread(s["conv_grad_norms_mean"]) < spread(other["conv_grad_norms_mean"]),
            "signal_grows": s["block_output_std_mean"][-1] > other["block_output_std_mean"][-1],
        }
    return out


def probe_scope(parameters: dict) -> str:
    """What a probe smaller than ``FULL_PROBE`` left out, computed from its parameters
    (``depths``, ``seeds``: comma lists; ``batch_size``); ``""`` for the full probe::

        probe_scope({"depths": "20,56", "seeds": "0", "batch_size": 32})
        -> "reduced probe: depth 110 not probed, 1 of 3 seeds, batch of 32, not 128"
    """
    full_depths = parse_int_list(FULL_PROBE["depths"])
    full_seeds = parse_int_list(FULL_PROBE["seeds"])
    depths = parse_int_list(parameters.get("depths", FULL_PROBE["depths"]), "depths")
    seeds = parse_int_list(parameters.get("seeds", FULL_PROBE["seeds"]), "seeds")
    batch = int(parameters.get("batch_size", FULL_PROBE["batch_size"]))
    left = []
    skipped = [d for d in full_depths if d not in depths]
    if skipped:
        left.append(f"depth{'s' if len(skipped) > 1 else ''} {', '.join(map(str, skipped))} not probed")
    if len(seeds) < len(full_seeds):
        left.append(f"{len(seeds)} of {len(full_seeds)} seeds")
    if batch < FULL_PROBE["batch_size"]:
        left.append(f"batch of {batch}, not {FULL_PROBE['batch_size']}")
    return f"reduced probe: {', '.join(left)}" if left else ""


def probe_label(parameters: dict) -> str:
    """The data line of every theory figure, from the probe's parameters (as stored in
    ``theory_probes.json``): the batch, its provenance, and what a reduced probe left out::

        "one batch of 32 training images, synthetic data; reduced probe: depth 110 not probed, ..."
    """
    from resnet_nb.plots import provenance_label

    prov = parameters.get("provenance") or ("synthetic" if parameters.get("dataset") == "synthetic" else None)
    label = f"one batch of {parameters.get('batch_size', '?')} training images, {provenance_label(prov)}"
    scope = probe_scope(parameters)
    return f"{label}; {scope}" if scope else label


THEORY_JSON = "theory_probes.json"


def write_theory_outputs(results: list[dict], fig_dir, parameters: dict) -> dict[str, str]:
    """Write the three theory figures (names of ``analysis.THEORY_FIGURE_FILES``) and
    ``theory_probes.json`` (parameters, per-seed results, summary) into ``fig_dir``;
    returns ``{key: path}``. ``parameters`` must name the data's ``provenance`` (and the
    ``depths``, ``seeds``, ``batch_size`` probed): the figure titles are built from them."""
    from pathlib import Path

    from resnet_nb import plots
    from resnet_nb.analysis import THEORY_FIGURE_FILES
    from resnet_nb.runs import atomic_write_json

    if not parameters.get("provenance"):
        raise ValueError("parameters must name the probe data's provenance (canonical, noncanonical "
                         "or synthetic: Cifar10.provenance) so the figures can say what they show")
    fig_dir = Path(fig_dir)
    summary = summarize_probes(results)
    label = probe_label(parameters)
    makers = {"theory_grad_norm": plots.grad_norm_figure,
              "theory_activation_std": plots.activation_std_figure,
              "theory_input_grad": plots.input_grad_figure}
    out = {k: str(plots.save(make(summary, label), fig_dir / THEORY_FIGURE_FILES[k]))
           for k, make in makers.items()}
    atomic_write_json(fig_dir / THEORY_JSON, {"parameters": dict(parameters), "results": results,
                                               "summary": summary})
    out["theory_probes"] = str(fig_dir / THEORY_JSON)
    return out
