"""Layer responses of the trained nets: He et al. 2016, sec. 4.2 ("Analysis of Layer
Responses"), Fig. 7.

The paper measures "the standard deviations (std) of layer responses. The responses are
the outputs of each 3x3 layer, after BN and before other nonlinearity (ReLU/addition)."
Its reading: ResNets have generally smaller responses than their plain counterparts, so
the residual functions are closer to zero than non-residual ones, and the deeper the
ResNet, the smaller its responses (each layer modifies the signal less).

Here, for every run of a run id that has a ``best.pth`` (the checkpoint of its best test
accuracy, written by ``resnet_nb.training.run_writer``):

* the net is rebuilt from the run's config and loaded (``torch.load(weights_only=True)``),
  in **eval mode**: BN uses its running statistics, as in the trained net the paper analyses;
* the run's test images are built by the data layer from the run's config
  (``resnet_nb.training.prepare.prepare_data``: dataset, ``test_subset``, ``normalization`` with the
  statistics of the training images the run used), and their fingerprint is checked against
  the one the run recorded;
* a forward hook on the BN that follows each 3x3 conv (the stem's ``bn1``, then ``bn1`` and
  ``bn2`` of every block, ``depth - 1`` layers; an option-B projection's BN is a shortcut and
  left out) accumulates, in float64, per channel the count, sum and sum of squares of its
  output over the whole test set, batch by batch.

**The std of a layer** is the population standard deviation of *all* elements of its output
(every test image, channel and position pooled): ``sqrt(E[r^2] - E[r]^2)`` over
``n_images x C x H x W`` values. It is the same pooled std as ``probes.block_output_std``.
Several seeds of a model are averaged layer by layer.

``layer_responses`` writes ``layer_responses.json`` (provenance, the checkpoint of every run,
the std definition, the stds, the comparisons) and the figure
``resnet_layer_responses_fig7.png`` next to ``summary.json``; ``response_comparisons``
computes what the notebook and the report say about them, caveated by the claims table's
rule when the runs cannot carry a result (synthetic data, the smoke preset, a run unfinished
or paused: ``claims.recipe_verdict``).
"""
from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from resnet_nb.analysis.aggregate import dataset_of, summarize
from resnet_nb.analysis.claims import recipe_verdict
from resnet_nb.analysis.probes import conv_layers
from resnet_nb.data.augment import normalize
from resnet_nb.models.resnet import build_model, model_label, parse_model_name, sort_models
from resnet_nb.runs.rundir import BEST_FILE, atomic_write_json, check_run_id, list_runs
from resnet_nb.training.config import config_from_dict

__all__ = [
    "RESPONSES_JSON", "RESPONSES_FIGURE", "STD_DEFINITION", "response_layers", "response_stds",
    "measure_run", "checkpoint_models", "skip_reason", "SAME_BAND", "CLEAR_MAJORITY", "family_verdict",
    "depth_trend", "response_comparisons", "depth_sentence", "trend_sentence", "comparison_lines", "responses_label",
    "layer_responses",
]

RESPONSES_JSON = "layer_responses.json"
RESPONSES_FIGURE = "resnet_layer_responses_fig7.png"
STD_DEFINITION = ("population std of all elements (test images x channels x positions) of the output of "
                  "the BN after each 3x3 conv, before ReLU and before the shortcut addition; model in eval "
                  "mode (BN running statistics); float64 sums over the whole test set; mean over seeds")
EVAL_BATCH = 500  # test images per forward (memory, not results: the sums are exact)

# When the data say "smaller" or "larger" (``family_verdict``, ``depth_trend``; the notebook and
# both reports print the sentences of ``depth_sentence`` and ``trend_sentence``, and nothing else
# decides them). A ratio of stds within +-SAME_BAND of 1 is "about the same", worded "within
# ±10 % of": 10 % is a chosen tolerance, not a statistical test.
# A run usually holds one seed per net (no seed-to-seed spread to test a difference against),
# and a few per cent is what another seed, another best epoch or a smaller test subset can
# move a trained net's pooled std by; the paper's effect (Fig. 7) is a visible gap between the
# curves, not a few per cent. "Smaller" also needs CLEAR_MAJORITY of the layers to agree, so
# that a median carried by half of the layers is not read as the whole net responding less.
SAME_BAND = 0.10         # |ratio - 1| <= 0.10: about the same
CLEAR_MAJORITY = 2 / 3   # fraction of layers that must agree for "smaller"/"larger"


def response_layers(model: nn.Module) -> list[tuple[str, nn.BatchNorm2d]]:
    """The BN after every 3x3 conv of the main path, in forward order: ``bn1`` (stem), then
    ``layerS.B.bn1`` and ``layerS.B.bn2`` of every block (``depth - 1`` layers). The convs are
    ``probes.conv_layers`` (option-B projection shortcuts excluded); each ``...convK`` is
    followed by its ``...bnK``."""
    out = []
    for name, _ in conv_layers(model):
        head, _, last = name.rpartition(".")
        bn_name = f"{head}.{last.replace('conv', 'bn')}" if head else last.replace("conv", "bn")
        bn = model.get_submodule(bn_name)
        if not isinstance(bn, nn.BatchNorm2d):
            raise TypeError(f"{name} is not followed by a BatchNorm2d named {bn_name}")
        out.append((bn_name, bn))
    return out


@torch.no_grad()
def response_stds(model: nn.Module, images: torch.Tensor, batch_size: int = EVAL_BATCH,
                  transform=None) -> tuple[list[str], list[float]]:
    """``(layer names, stds)`` of ``response_layers(model)`` over ``images`` (``STD_DEFINITION``),
    the model as given (call ``model.eval()`` first for the trained net's BN statistics).

    images: (N, 3, 32, 32), fed in batches of ``batch_size`` through ``transform`` (e.g. the
    run's normalisation of uint8 images) when given. Per layer only three (C,) float64 sums
    are kept, never the activations."""
    layers = response_layers(model)
    sums: dict[str, list] = {name: [0, None, None] for name, _ in layers}  # count, sum (C,), sum sq (C,)

    def hook(name):
        def record(_m, _i, out):                                   # out: (B, C, H, W)
            o = out.detach().to(torch.float64)
            acc = sums[name]
            s, sq = o.sum(dim=(0, 2, 3)), (o * o).sum(dim=(0, 2, 3))   # (C,), (C,)
            acc[0] += o.numel()
            acc[1] = s if acc[1] is None else acc[1] + s
            acc[2] = sq if acc[2] is None else acc[2] + sq
        return record

    handles = [bn.register_forward_hook(hook(name)) for name, bn in layers]
    try:
        for i in range(0, images.shape[0], batch_size):
            xb = images[i:i + batch_size]
            model(transform(xb) if transform is not None else xb)
    finally:
        for h in handles:
            h.remove()
    stds = []
    for name, _ in layers:
        n, s, sq = sums[name]
        if not n:
            raise ValueError("no images: the test set to measure the responses on is empty")
        mean = float(s.sum()) / n
        stds.append(float(np.sqrt(max(float(sq.sum()) / n - mean * mean, 0.0))))
    return [name for name, _ in layers], stds


def _checkpoint(run: dict) -> Path:
    return Path(run["path"]) / BEST_FILE


def checkpoint_models(runs: Sequence[dict]) -> list[str]:
    """The models of ``runs`` that have a best.pth (``models.sort_models`` order)."""
    return sort_models({r["config"]["model"] for r in runs if _checkpoint(r).is_file()})


def skip_reason(runs: Sequence[dict]) -> str | None:
    """Why Fig. 7 cannot be drawn from ``runs`` (one line), or None: it needs a best.pth of
    at least one plain and one residual net."""
    have = checkpoint_models(runs)
    families = {parse_model_name(m)[0] for m in have}
    if {"plain", "resnet"} <= families:
        return None
    found = f"best.pth found for {', '.join(model_label(m) for m in have)}" if have else "no best.pth found"
    return f"Fig. 7 needs best.pth of both families (plain and ResNet); {found}"


def measure_run(run: dict, device: torch.device | str = "cpu", data_root: str | None = None,
                data_cache: dict | None = None) -> dict:
    """The layer-response stds of one run's best.pth on its test images (module docstring).

    ``data_root``: where the run's dataset lies here, when not where the run recorded it (a
    run trained elsewhere); the data's fingerprint must match the one the run recorded.
    ``data_cache`` shares the prepared data between runs of one data config."""
    from resnet_nb.training.prepare import prepare_data

    path = _checkpoint(run)
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    cfg = config_from_dict(ckpt["config"])
    if data_root is not None:
        cfg = config_from_dict({**ckpt["config"], "data_root": data_root})
    key = (cfg.dataset, cfg.data_root, cfg.allow_noncanonical, cfg.val_split, cfg.train_subset,
           cfg.test_subset, cfg.normalization)
    cache = data_cache if data_cache is not None else {}
    if key not in cache:
        cache[key] = prepare_data(cfg, "cpu")
    data = cache[key]
    recorded = (run.get("dataset") or {}).get("fingerprint")
    if recorded and data.info["fingerprint"] != recorded:
        raise ValueError(f"the {cfg.dataset} data found here (fingerprint {data.info['fingerprint'][:12]}) "
                         f"differ from the data {run['path']} was trained on ({recorded[:12]}); point "
                         f"data_root at the same data")
    device = torch.device(device)
    model = build_model(cfg.model, shortcut=cfg.shortcut).to(device)
    model.load_state_dict(ckpt["model"])
    model.eval()
    mean = data.mean.to(device)
    std = data.std.to(device) if data.std is not None else None
    names, stds = response_stds(model, data.test_x, transform=lambda xb: normalize(xb.to(device), mean, std))
    return {"model": cfg.model, "seed": int(cfg.seed), "run_dir": Path(run["path"]).name,
            "checkpoint": f"{Path(run['path']).name}/{BEST_FILE}", "epoch": int(ckpt.get("epoch", 0)),
            "test_acc": ckpt.get("test_acc"), "n_images": int(data.test_x.shape[0]),
            "layers": names, "std": stds}


def family_verdict(median_ratio: float, smaller_layers: int, layers: int) -> str:
    """The ResNet against the plain net of its depth, from the median over layers of the
    ratio ResNet std / plain std and the number of layers where the ResNet's is smaller:

    * ``"smaller"``: median ratio below ``1 - SAME_BAND`` and smaller in at least
      ``CLEAR_MAJORITY`` of the layers (the paper's observation);
    * ``"larger"``: median ratio above ``1 + SAME_BAND`` and larger in at least that many;
    * ``"about the same"``: median ratio within ``1 +- SAME_BAND``;
    * ``"mixed"``: the median is outside the band but the layers do not clearly agree."""
    if abs(median_ratio - 1) <= SAME_BAND:
        return "about the same"
    need = CLEAR_MAJORITY * layers
    if median_ratio < 1 and smaller_layers >= need:
        return "smaller"
    if median_ratio > 1 and layers - smaller_layers >= need:
        return "larger"
    return "mixed"


def depth_trend(median_std: Sequence[float]) -> str | None:
    """How the ResNets' median response std goes with depth (``median_std`` by ascending
    depth; None with fewer than two depths), with the band of ``family_verdict``:

    * ``"smaller"``: the deepest is below ``1 - SAME_BAND`` times the shallowest and no step
      to the next depth goes up by more than the band (the paper: the deeper, the smaller);
    * ``"larger"``: the same upwards;
    * ``"about the same"``: the deepest and every step within the band;
    * ``"mixed"``: otherwise (steps up and down beyond the band)."""
    m = [float(v) for v in median_std]
    if len(m) < 2:
        return None
    steps = [b / max(a, 1e-300) for a, b in zip(m, m[1:])]
    overall = m[-1] / max(m[0], 1e-300)
    if overall < 1 - SAME_BAND and all(s <= 1 + SAME_BAND for s in steps):
        return "smaller"
    if overall > 1 + SAME_BAND and all(s >= 1 - SAME_BAND for s in steps):
        return "larger"
    if all(abs(s - 1) <= SAME_BAND for s in steps + [overall]):
        return "about the same"
    return "mixed"


def response_comparisons(models: dict[str, dict], summary: dict) -> dict:
    """What the data say about the paper's two observations, from ``models`` (model ->
    ``{"std": [...], "n_seeds": ...}``, the per-layer stds, averaged over ``n_seeds`` seeds)
    and ``summary`` (the run id's summary.json record, ``analysis.summarize``: data provenance,
    preset and every model's status):

    * ``by_depth``: per depth with both families, the median over layers of the ratio
      ResNet std / plain std, how many layers of the ResNet respond less, the medians, the
      ``verdict`` of ``family_verdict`` and ``seeds`` ([fewest, most] seeds of the two nets);
    * ``resnet_depth``: the ResNets' median std by depth (ascending), the ``trend`` of
      ``depth_trend`` (None with fewer than two ResNet depths) and ``seeds`` ([fewest, most]).

    Each comparison has a ``caveat``: None when the runs can carry a result, else
    ``{"en", "zh"}`` of the claims table's "not assessable" (``claims.recipe_verdict``:
    synthetic or unknown data, the smoke preset, a run unfinished or paused). A caveated
    comparison keeps its numbers, and the sentences (``depth_sentence``, ``trend_sentence``)
    lead with the caveat and give no verdict.

    The report recomputes this from a stored ``layer_responses.json``'s ``models``, so the
    words always follow the rules above."""
    by_depth = []
    for name in sort_models(models):
        fam, depth = parse_model_name(name)
        plain = models.get(f"plain{depth}")
        if fam != "resnet" or plain is None:
            continue
        r, p = np.asarray(models[name]["std"]), np.asarray(plain["std"])
        ratio = r / np.maximum(p, 1e-300)
        median_ratio, smaller = float(np.median(ratio)), int((r < p).sum())
        by_depth.append({"depth": depth, "plain": model_label(f"plain{depth}"), "resnet": model_label(name),
                         "median_ratio": median_ratio, "smaller_layers": smaller,
                         "layers": int(r.size), "plain_median": float(np.median(p)),
                         "resnet_median": float(np.median(r)),
                         "verdict": family_verdict(median_ratio, smaller, int(r.size)),
                         "seeds": _seed_range([models[name], plain]),
                         "caveat": _caveat(summary, [name, f"plain{depth}"])})
    resnets = [n for n in models if parse_model_name(n)[0] == "resnet"]
    res = sorted((parse_model_name(n)[1], float(np.median(models[n]["std"]))) for n in resnets)
    median_std = [m for _, m in res]
    return {"by_depth": by_depth,
            "resnet_depth": {"depths": [d for d, _ in res], "median_std": median_std,
                             "trend": depth_trend(median_std),
                             "seeds": _seed_range([models[n] for n in resnets]),
                             "caveat": _caveat(summary, sort_models(resnets)) if len(res) > 1 else None}}


def _caveat(summary: dict, names: list[str]) -> dict | None:
    """The claims table's "not assessable" for a comparison among ``names``, or None."""
    verdict = recipe_verdict(summary, names)
    return None if verdict is None else {"en": verdict.en, "zh": verdict.zh}


def _seed_range(nets: list[dict]) -> list[int]:
    """[fewest, most] seeds the per-layer stds of ``nets`` are averaged over."""
    n = [int(m.get("n_seeds", 1)) for m in nets] or [0]
    return [min(n), max(n)]


def _seeds_note(seeds: list[int], lang: str) -> str:
    lo, hi = seeds
    if lang == "zh":
        if hi == 1:
            return "每个网络只有一个种子，没有种子间的波动可供判断差异"
        return f"标准差为每个网络 {lo} 个种子的平均" if lo == hi else \
            f"标准差为每个网络 {lo} 至 {hi} 个种子的平均" + ("；只有一个种子的网络没有波动可言" if lo == 1 else "")
    if hi == 1:
        return "one seed per net, so there is no seed-to-seed spread to judge the difference against"
    return f"stds averaged over {lo} seeds per net" if lo == hi else \
        f"stds averaged over {lo} to {hi} seeds per net" + ("; one seed gives no spread" if lo == 1 else "")


def _three_digits(x: float) -> str:
    return f"{x:.3g}"


# The words of the verdicts, decided here once: the notebook (comparison_lines) and both
# reports (report_facts puts these sentences into the templates) print nothing else.
_VS_PLAIN = {"en": {"smaller": "are smaller than those of", "larger": "are larger than those of",
                    "about the same": "are within {band} of those of",
                    "mixed": "are neither clearly smaller nor clearly larger than those of"},
             "zh": {"smaller": "小于", "larger": "大于"}}  # zh: "about the same" and "mixed" have their own order
_WITH_DEPTH = {"en": {"smaller": "respond less", "larger": "respond more",
                      "about the same": "stay within {band} of each other", "mixed": "show no consistent trend"},
               "zh": {"smaller": "响应更小", "larger": "响应更大", "about the same": "彼此相差在 {band} 以内",
                      "mixed": "没有一致的趋势"}}


def depth_sentence(c: dict, lang: str = "en") -> str:
    """One ``by_depth`` comparison of ``response_comparisons`` as a sentence in ``lang``
    (``en`` | ``zh``): its caveat first when it has one (then the numbers, "in this run",
    without a verdict), else the verdict with the numbers that decided it, worded so that
    they agree ("within ±10 % of ..., though smaller in 18 of 19 layers")."""
    band = f"±{SAME_BAND * 100:.0f} %"
    k, n = c["smaller_layers"], c["layers"]
    ratio, plain, resnet, verdict = _three_digits(c["median_ratio"]), c["plain"], c["resnet"], c["verdict"]
    seeds = _seeds_note(c["seeds"], lang)
    need = CLEAR_MAJORITY * n
    if lang == "zh":
        nums = f"各层 ResNet/plain 比值的中位数为 {ratio}"
        if c.get("caveat"):
            return (f"{c['depth']} 层：{c['caveat']['zh']}。仅就本次运行而言，{resnet} 与 {plain} 的层响应：{nums}，"
                    f"{n} 层中有 {k} 层更小（不作判定；{seeds}；论文：ResNet 的响应更小）。")
        rule = f"（中位数偏离 1 超过 {band} 且至少三分之二的层一致，才算“更小”或“更大”；{seeds}；论文：ResNet 的响应更小）。"
        if verdict == "about the same":
            tail = (f"，但 {n} 层中有 {k} 层更小" if k >= need else f"，但 {n} 层中有 {n - k} 层更大"
                    if n - k >= need else f"；{n} 层中有 {k} 层更小")
            return f"{c['depth']} 层：{resnet} 的层响应与 {plain} 相差在 {band} 以内（{nums}）{tail}{rule}"
        if verdict == "mixed":
            agree = f"只有 {k} 层更小" if c["median_ratio"] < 1 else f"只有 {n - k} 层更大"
            return (f"{c['depth']} 层：{resnet} 的层响应既不明显小于也不明显大于 {plain}：{nums}，超出 {band}，"
                    f"但 {n} 层中{agree}{rule}")
        count = f"{n} 层中有 {k} 层更小" if verdict == "smaller" else f"{n} 层中有 {n - k} 层更大"
        return f"{c['depth']} 层：{resnet} 的层响应{_VS_PLAIN['zh'][verdict]} {plain}：{nums}，{count}{rule}"
    nums = f"median ratio ResNet/plain over the layers {ratio}"
    if c.get("caveat"):
        return (f"{c['depth']} layers: {c['caveat']['en']}. In this run only, the layer responses of {resnet} "
                f"against those of {plain}: {nums}, smaller in {k} of {n} layers (no verdict; {seeds}; the paper: "
                f"ResNets respond less).")
    rule = (f' ("smaller" or "larger" needs the median ratio beyond {band} and two thirds of the layers agreeing; '
            f"{seeds}; the paper: ResNets respond less).")
    head = f"{c['depth']} layers: the layer responses of {resnet} {_VS_PLAIN['en'][verdict].format(band=band)} {plain}"
    if verdict == "about the same":
        tail = (f", though smaller in {k} of {n} layers" if k >= need else f", though larger in {n - k} of {n} layers"
                if n - k >= need else f"; smaller in {k} of {n} layers")
        return f"{head} ({nums}){tail}{rule}"
    if verdict == "mixed":
        agree = f"only {k} of {n} layers are smaller" if c["median_ratio"] < 1 else \
            f"only {n - k} of {n} layers are larger"
        return f"{head}: {nums}, beyond {band}, but {agree}{rule}"
    count = f"smaller in {k} of {n} layers" if verdict == "smaller" else f"larger in {n - k} of {n} layers"
    return f"{head}: {nums}, {count}{rule}"


def trend_sentence(rd: dict, lang: str = "en") -> str | None:
    """The ``resnet_depth`` comparison of ``response_comparisons`` as a sentence in ``lang``
    (None with fewer than two ResNet depths): caveat first when it has one, as
    ``depth_sentence``."""
    if rd["trend"] is None:
        return None
    band = f"±{SAME_BAND * 100:.0f} %"
    seeds = _seeds_note(rd["seeds"], lang)
    labels = [model_label(f"resnet{d}") for d in rd["depths"]]
    if lang == "zh":
        values = "，".join(f"{lb} {_three_digits(m)}" for lb, m in zip(labels, rd["median_std"]))
        if rd.get("caveat"):
            return (f"ResNet 响应标准差的中位数：{rd['caveat']['zh']}。仅就本次运行而言：{values}"
                    f"（不作判定；{seeds}；论文：ResNet 越深，响应越小）。")
        return (f"ResNet 响应标准差的中位数：{values}：更深的 ResNet {_WITH_DEPTH['zh'][rd['trend']].format(band=band)}"
                f"（{band} 以内的变化视为相同；{seeds}；论文：ResNet 越深，响应越小）。")
    values = ", ".join(f"{lb} {_three_digits(m)}" for lb, m in zip(labels, rd["median_std"]))
    if rd.get("caveat"):
        return (f"Median response std of the ResNets: {rd['caveat']['en']}. In this run only: {values} "
                f"(no verdict; {seeds}; the paper: the deeper the ResNet, the smaller its responses).")
    return (f"Median response std of the ResNets: {values}: deeper ResNets "
            f"{_WITH_DEPTH['en'][rd['trend']].format(band=band)} (changes within {band} count as the same; "
            f"{seeds}; the paper: the deeper the ResNet, the smaller its responses).")


def comparison_lines(record: dict) -> list[str]:
    """What ``layer_responses`` found, as the English sentences of the report (``depth_sentence``,
    ``trend_sentence``): the data first, then the comparisons of ``response_comparisons``,
    each led by its caveat when the runs cannot carry a result."""
    comparisons = record["comparisons"]
    lines = [f"data: {record['label']}"] + [depth_sentence(c) for c in comparisons["by_depth"]]
    trend = trend_sentence(comparisons["resnet_depth"])
    return lines + ([trend] if trend else [])


def responses_label(dataset: dict, preset: str | None, n_images: int) -> str:
    """The data line of Fig. 7 (``plots.provenance_label`` + what was measured)."""
    from resnet_nb.analysis.plots import provenance_label

    return f"{provenance_label(dataset, preset)}; each net's best.pth, {n_images:,} test images"


def layer_responses(runs_dir: str | os.PathLike = "experiments", run_id: str = "",
                    figures_root: str | os.PathLike = "report/figures", device: str = "cpu",
                    data_root: str | None = None) -> dict:
    """Measure every run of ``run_id`` that has a best.pth, write ``layer_responses.json`` and
    ``resnet_layer_responses_fig7.png`` into ``<figures_root>/<run_id>/`` and return the JSON's
    record. When ``skip_reason`` says Fig. 7 cannot be drawn, nothing is measured or written:
    ``{"skipped": <reason>}`` (and a stale JSON of an earlier measurement is removed)."""
    from resnet_nb.analysis import plots

    check_run_id(run_id)
    runs = list_runs(runs_dir, run_id)
    fig_dir = Path(figures_root).expanduser() / run_id
    reason = skip_reason(runs)
    if reason:
        (fig_dir / RESPONSES_JSON).unlink(missing_ok=True)
        return {"skipped": reason}
    measured = [r for r in runs if _checkpoint(r).is_file()]
    cache: dict = {}
    per_run = [measure_run(r, device, data_root, cache) for r in measured]
    models = {}
    for name in sort_models({p["model"] for p in per_run}):
        rows = sorted((p for p in per_run if p["model"] == name), key=lambda p: p["seed"])
        stds = np.asarray([p["std"] for p in rows])                # (seeds, layers)
        fam, depth = parse_model_name(name)
        models[name] = {"family": fam, "depth": depth, "n_seeds": len(rows), "layers": rows[0]["layers"],
                        "std": stds.mean(axis=0).tolist(),
                        "std_over_seeds": stds.std(axis=0, ddof=1).tolist() if len(rows) > 1 else None,
                        "runs": rows}
    presets = sorted({str(r.get("preset") or r["config"].get("preset")) for r in measured})
    dataset = dataset_of(measured, "measure the layer responses of runs")
    n_images = per_run[0]["n_images"]
    out = {"run_id": run_id, "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "preset": presets[0] if len(presets) == 1 else ",".join(presets), "dataset": dataset,
           "definition": STD_DEFINITION, "n_images": n_images,
           "label": responses_label(dataset, presets[0] if len(presets) == 1 else None, n_images),
           "not_measured": [Path(r["path"]).name for r in runs if not _checkpoint(r).is_file()],
           "models": models, "comparisons": response_comparisons(models, summarize(runs, run_id, expected=())),
           "figure": RESPONSES_FIGURE}
    plots.save(plots.layer_responses_figure(models, out["label"]), fig_dir / RESPONSES_FIGURE)
    atomic_write_json(fig_dir / RESPONSES_JSON, out)
    return out
