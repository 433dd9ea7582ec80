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
* ``grad_corr_lags`` / ``neighbour_grad_corr``: how *shattered* the input gradient is
  (Balduzzi et al. 2017, Fig. 1). The inputs are ``K`` points on the straight line from one
  probe image towards another, ``SHATTER_STEP`` (1/1000) of the distance between the two
  images apart (``K`` = the probe's batch size, one batch; a fixed step keeps the lag-1 value
  comparable between probe sizes); at every point the gradient ``g_k = d logit_0 / dx`` of the class-0 logit with respect to the input
  (3x32x32 values). ``grad_corr_lags[l - 1]`` is the mean over ``k`` of the Pearson
  correlation (over the 3072 input values) of ``g_k`` and ``g_{k+l}``; the scalar
  ``neighbour_grad_corr`` is its lag-1 value: 1 for a gradient that does not change along
  the line (a linear model), about 0 (within ~1/sqrt(3072) = 0.02) for white noise. BN is in
  training mode as in the other probes, so it normalises with the statistics of the line's
  ``K`` points, and each ``g_k`` includes the (small, O(1/K)) path through those statistics.

``run_probes`` repeats this for plain and residual nets of several depths and seeds;
``summarize_probes`` gives mean and std over seeds. Results are plain JSON-able dicts,
plotted by ``resnet_nb.analysis.plots`` and written by ``01_theory`` for the report. The full probe
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

from resnet_nb.data.augment import channel_stats, normalize, pixel_mean
from resnet_nb.data.cifar10 import Cifar10
from resnet_nb.models.resnet import BasicBlock, CifarResNet, build_model

__all__ = [
    "probe_batch", "conv_layers", "conv_grad_norms", "block_output_std", "input_grad_norm",
    "probe_model", "run_probes", "summarize_probes", "parse_int_list", "probe_table",
    "probe_shapes", "residual_contrast", "write_theory_outputs", "THEORY_JSON",
    "FULL_PROBE", "SMOKE_PROBE", "probe_scope", "probe_label",
    "input_line", "line_input_gradients", "gradient_correlation", "grad_correlation_probe",
    "literature_checks", "literature_lines", "EXPLODE_FACTOR", "SHATTER_STEP",
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


def input_line(x_a: torch.Tensor, x_b: torch.Tensor, n: int) -> torch.Tensor:
    """``n`` evenly spaced points on the straight line from ``x_a`` to ``x_b`` (both ends
    included): (n, *x_a.shape)."""
    if n < 2:
        raise ValueError(f"a line through input space needs at least 2 points; got {n}")
    t = torch.linspace(0, 1, n, dtype=x_a.dtype, device=x_a.device).view(n, *([1] * x_a.dim()))
    return (1 - t) * x_a + t * x_b


def line_input_gradients(model: nn.Module, xs: torch.Tensor, output: int = 0) -> torch.Tensor:
    """``d f(x_k) / d x_k`` at every row ``x_k`` of ``xs``, with ``f`` the logit ``output``,
    from one forward/backward of the whole batch (model used as given: in train mode BN
    couples the rows through the batch statistics). Returns (K, D) with D the input size.
    Only the input's gradient is computed (``torch.autograd.grad``): no weight gradients."""
    xs = xs.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(xs)[:, output].sum(), xs)
    return grad.detach().flatten(1)


def gradient_correlation(grads: torch.Tensor, max_lag: int | None = None) -> list[float]:
    """The autocorrelation of a sequence of gradients (K, D) along the line: for lag
    ``l = 1..max_lag`` (default ``K // 2``) the mean over ``k`` of the Pearson correlation
    over the D values of ``g_k`` and ``g_{k+l}``. A zero (or constant) gradient counts as
    uncorrelated (0)."""
    k = grads.shape[0]
    max_lag = max(1, k // 2) if max_lag is None else max_lag
    if not 1 <= max_lag < k:
        raise ValueError(f"max_lag must be in 1..{k - 1} for {k} gradients; got {max_lag}")
    g = grads.to(torch.float64)
    g = g - g.mean(dim=1, keepdim=True)
    norm = g.norm(dim=1, keepdim=True)
    g = torch.where(norm > 0, g / norm.clamp_min(torch.finfo(torch.float64).tiny), torch.zeros_like(g))
    return [float((g[:-lag] * g[lag:]).sum(dim=1).mean()) for lag in range(1, max_lag + 1)]


# the shattering probe's step along its line, as a fraction of the distance between the two
# images: small enough that a depth-20 plain net's neighbouring gradients still correlate
SHATTER_STEP = 1e-3


def grad_correlation_probe(model: nn.Module, x: torch.Tensor, output: int = 0,
                           step: float = SHATTER_STEP) -> dict:
    """The shattering probe (module docstring): ``len(x)`` points from ``x[0]`` towards
    ``x[1]``, ``step`` of their distance apart, the input gradient of logit ``output`` at each
    point, and the gradients' autocorrelation along the line."""
    k = x.shape[0]
    end = x[0] + step * (k - 1) * (x[1] - x[0])
    lags = gradient_correlation(line_input_gradients(model, input_line(x[0], end, k), output))
    return {"grad_corr_lags": lags, "neighbour_grad_corr": lags[0]}


def probe_model(model: CifarResNet, x: torch.Tensor, y: torch.Tensor) -> dict:
    """All four probes on one freshly initialised model (train mode)."""
    model.train()
    # BN running statistics change on every forward in train mode; they are not used
    # by these probes (batch statistics are), so the order of the probes does not matter.
    grads = conv_grad_norms(model, x, y)
    inp = input_grad_norm(model, x, y)
    stds = block_output_std(model, x)
    shatter = grad_correlation_probe(model, x)
    with torch.no_grad():
        loss = float(F.cross_entropy(model(x), y))
    model.zero_grad(set_to_none=True)
    return {"conv_grad_norms": grads, "block_output_std": stds, "input_grad_norm": inp, "loss": loss,
            **shatter}


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
        if all("grad_corr_lags" in r for r in rows):  # older theory_probes.json: no shattering probe
            c_mean, c_std = stats(rows, "grad_corr_lags")
            corr = [r["neighbour_grad_corr"] for r in rows]
            summary[name].update(
                grad_corr_lags_mean=c_mean, grad_corr_lags_std=c_std,
                neighbour_grad_corr_mean=float(np.mean(corr)),
                neighbour_grad_corr_std=float(np.std(corr, ddof=1)) if len(corr) > 1 else 0.0,
                neighbour_grad_corr_seeds=corr)
    return summary


def probe_table(summary: dict[str, dict]) -> str:
    """A Markdown table of the probes per model: conv layers, the ratio of the largest to
    the smallest conv-weight gradient norm (1 = every layer gets the same size of update
    signal), output std of the last block, ``||dL/dx||`` and the shattering probe's neighbour
    gradient correlation (means over seeds)."""
    rows = ["| model | conv layers | max/min conv grad norm | last block std | ‖dL/dx‖ | grad corr (lag 1) |",
            "|---|---:|---:|---:|---:|---:|"]
    for name, s in summary.items():
        g = s["conv_grad_norms_mean"]
        corr = s.get("neighbour_grad_corr_mean")
        rows.append(f"| {name} | {len(g)} | {max(g) / min(g):.3g} | "
                    f"{s['block_output_std_mean'][-1]:.3g} | {s['input_grad_norm_mean']:.3g} | "
                    f"{'n/a' if corr is None else f'{corr:.3f}'} |")
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


# "explodes": the plain nets' input gradient grows by at least an order of magnitude from the
# shallowest to the deepest depth probed (and with every step in depth)
EXPLODE_FACTOR = 10.0


def literature_checks(summary: dict[str, dict]) -> dict | None:
    """The probes against three published statements, at the depths probed in both families
    (None with fewer than two such depths). Numbers are means over seeds.

    * ``shattering`` (Balduzzi et al. 2017): deep plain nets' input gradients decorrelate
      (white noise) while residual nets keep them correlated. ``plain_falls``: the deepest
      plain net's ``neighbour_grad_corr`` is below the shallowest's; ``resnet_above``: the
      residual net's is higher than the plain net's at every depth; ``agrees``: both.
    * ``explosion`` (Yang et al. 2019): at initialisation BN makes the gradients of plain
      nets explode with depth. ``plain_growth``/``resnet_growth``: input-gradient norm at the
      deepest over the shallowest depth; ``plain_explodes``: the plain nets' rises with every
      step and by at least ``EXPLODE_FACTOR``; ``agrees``: it explodes and grows more than the
      residual nets'.
    * ``healthy`` (He et al. 2016, sec. 4.1: with BN "the backward propagated gradients
      exhibit healthy norms", measured there during training): ``plain_vanishes``: the deepest
      plain net's input gradient is below the shallowest's by ``EXPLODE_FACTOR`` or more;
      ``agrees``: neither vanishing nor exploding, here at initialisation only.
    """
    depths = sorted(d for d in {s["depth"] for s in summary.values()}
                    if f"plain{d}" in summary and f"resnet{d}" in summary)
    if len(depths) < 2:
        return None
    plain = [summary[f"plain{d}"] for d in depths]
    res = [summary[f"resnet{d}"] for d in depths]
    rising = lambda v: all(b > a for a, b in zip(v, v[1:]))  # noqa: E731
    p_in, r_in = [s["input_grad_norm_mean"] for s in plain], [s["input_grad_norm_mean"] for s in res]
    p_growth, r_growth = p_in[-1] / p_in[0], r_in[-1] / r_in[0]
    explodes = rising(p_in) and p_growth >= EXPLODE_FACTOR
    vanishes = p_growth <= 1 / EXPLODE_FACTOR
    out = {"depths": depths,
           "explosion": {"plain_input_grad": p_in, "resnet_input_grad": r_in, "plain_growth": p_growth,
                         "resnet_growth": r_growth, "plain_explodes": explodes,
                         "agrees": explodes and p_growth > r_growth},
           "healthy": {"plain_growth": p_growth, "plain_vanishes": vanishes, "plain_explodes": explodes,
                       "agrees": not vanishes and not explodes},
           "shattering": None}
    if all("neighbour_grad_corr_mean" in s for s in plain + res):
        p_c = [s["neighbour_grad_corr_mean"] for s in plain]
        r_c = [s["neighbour_grad_corr_mean"] for s in res]
        falls = p_c[-1] < p_c[0]
        above = all(r > p for r, p in zip(r_c, p_c))
        out["shattering"] = {"plain_corr": p_c, "resnet_corr": r_c, "plain_falls": falls,
                             "resnet_above": above, "agrees": falls and above}
    return out


def literature_lines(checks: dict | None) -> list[str]:
    """``literature_checks`` as sentences (English; the report phrases the same numbers)."""
    if checks is None:
        return ["the literature checks need at least two depths probed in both families"]
    ds = checks["depths"]
    span = f"depth {ds[0]} to {ds[-1]}"
    lines = []
    sh = checks["shattering"]
    if sh is not None:
        pairs = "; ".join(f"depth {d}: plain {p:.3f}, residual {r:.3f}"
                          for d, p, r in zip(ds, sh["plain_corr"], sh["resnet_corr"]))
        lines.append(f"neighbour input-gradient correlation ({pairs}): "
                     f"{'agrees with' if sh['agrees'] else 'does not fully agree with'} Balduzzi et al. 2017 "
                     f"(the deepest plain net's correlation is below the shallowest's: {sh['plain_falls']}; "
                     f"residual above plain at every depth: {sh['resnet_above']})")
    ex = checks["explosion"]
    lines.append(f"input-gradient norm from {span}: plain x{ex['plain_growth']:.3g}, residual "
                 f"x{ex['resnet_growth']:.3g}: {'agrees with' if ex['agrees'] else 'does not agree with'} "
                 f"Yang et al. 2019 (plain nets' gradients explode with depth at initialisation)")
    he = checks["healthy"]
    state = "vanish" if he["plain_vanishes"] else "explode" if he["plain_explodes"] else "stay within an order of magnitude"
    lines.append(f"He et al.'s 'healthy' backward norms with BN: at initialisation the plain nets' input "
                 f"gradients {state} from {span} ({'consistent' if he['agrees'] else 'not consistent'} "
                 f"with 'healthy'; He et al. measured during training, this probe at initialisation)")
    return lines


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
    from resnet_nb.analysis.plots import provenance_label

    prov = parameters.get("provenance") or ("synthetic" if parameters.get("dataset") == "synthetic" else None)
    label = f"one batch of {parameters.get('batch_size', '?')} training images, {provenance_label(prov)}"
    scope = probe_scope(parameters)
    return f"{label}; {scope}" if scope else label


THEORY_JSON = "theory_probes.json"


def write_theory_outputs(results: list[dict], fig_dir, parameters: dict) -> dict[str, str]:
    """Write the four theory figures (names of ``analysis.THEORY_FIGURE_FILES``) and
    ``theory_probes.json`` (parameters, per-seed results, summary) into ``fig_dir``;
    returns ``{key: path}``. ``parameters`` must name the data's ``provenance`` (and the
    ``depths``, ``seeds``, ``batch_size`` probed): the figure titles are built from them."""
    from pathlib import Path

    from resnet_nb.analysis import plots
    from resnet_nb.analysis.aggregate import THEORY_FIGURE_FILES
    from resnet_nb.runs.rundir import atomic_write_json

    if not parameters.get("provenance"):
        raise ValueError("parameters must name the probe data's provenance (canonical, noncanonical "
                         "or synthetic: Cifar10.provenance) so the figures can say what they show")
    fig_dir = Path(fig_dir)
    summary = summarize_probes(results)
    label = probe_label(parameters)
    makers = {"theory_grad_norm": plots.grad_norm_figure,
              "theory_activation_std": plots.activation_std_figure,
              "theory_input_grad": plots.input_grad_figure}
    makers["theory_grad_correlation"] = lambda summ, lab: plots.grad_correlation_figure(summ, lab, SHATTER_STEP)
    out = {k: str(plots.save(make(summary, label), fig_dir / THEORY_FIGURE_FILES[k]))
           for k, make in makers.items()}
    atomic_write_json(fig_dir / THEORY_JSON, {"parameters": {**parameters, "shatter_step": SHATTER_STEP},
                                               "results": results,
                                               "summary": summary})
    out["theory_probes"] = str(fig_dir / THEORY_JSON)
    return out
