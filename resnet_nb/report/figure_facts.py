"""The figures' part of the report's facts: which figures exist, the theory probes' and the layer
responses' numbers (Fig. 7), the shattering measure, and every figure's caption in zh and en
naming its data's provenance.
"""
from __future__ import annotations

from pathlib import Path

from resnet_nb.models.resnet import model_label, parse_model_name, sort_models

__all__ = ["RESULT_FIGURES", "THEORY_FIGURES", "PROVENANCE_ZH", "figures_present", "theory_facts",
           "layer_response_facts", "shattering_facts", "figure_captions"]


# summary.json figure file -> the section that shows it (others go to "further figures")
RESULT_FIGURES = ("resnet_train_loss.png", "resnet_test_accuracy.png", "resnet_error_fig6.png",
                  "resnet_error_vs_depth.png")


THEORY_FIGURES = ("theory_grad_norm.png", "theory_activation_std.png", "theory_input_grad.png",
                  "theory_grad_correlation.png")


def theory_facts(fig_dir: Path) -> dict | None:
    """The probes of ``notebooks/01_theory`` (``theory_probes.json``) at initialisation, per
    model: conv layers, spread of the conv gradient norms (max/min, 1 = every layer gets the
    same size of update), last block's output std, input-gradient norm; and per depth whether
    the residual net spreads the gradient less than the plain net (sec. 3.1's argument)."""
    path = fig_dir / "theory_probes.json"
    if not path.is_file():
        return None
    from resnet_nb.runs.rundir import read_json

    data = read_json(path)
    summary = data.get("summary") or {}
    rows, spread = [], {}
    for name in sorted(sort_models(summary), key=lambda n: summary[n].get("depth", 0)):
        s = summary[name]
        g = s.get("conv_grad_norms_mean") or []
        if not g or min(g) <= 0:
            continue
        spread[name] = max(g) / min(g)
        rows.append({"key": name, "label": model_label(name), "layers": len(g), "spread": spread[name],
                     "last_std": (s.get("block_output_std_mean") or [None])[-1],
                     "input_grad": s.get("input_grad_norm_mean"), "n_seeds": s.get("n_seeds")})
    contrast = []
    for name in spread:
        fam, depth = parse_model_name(name)
        if fam == "resnet" and f"plain{depth}" in spread:
            contrast.append({"depth": depth, "plain": model_label(f"plain{depth}"), "resnet": model_label(name),
                             "plain_spread": spread[f"plain{depth}"], "resnet_spread": spread[name],
                             "smaller": spread[name] < spread[f"plain{depth}"]})
    params = data.get("parameters") or {}
    return {"rows": rows, "contrast": sorted(contrast, key=lambda c: c["depth"]),
            "n_seeds": max((r["n_seeds"] or 0 for r in rows), default=0), "parameters": params}


def figures_present(summary: dict, fig_dir: Path) -> dict[str, bool]:
    """Figure file -> whether it exists: those summary.json lists (else every PNG of
    ``fig_dir``), and the result and theory figures the report places."""
    listed = list((summary.get("figures") or {}).values())
    if not listed:
        listed = sorted(p.name for p in fig_dir.glob("*.png")) if fig_dir.is_dir() else []
    return {name: (fig_dir / name).is_file() for name in dict.fromkeys([*listed, *RESULT_FIGURES, *THEORY_FIGURES])}


PROVENANCE_ZH = {"canonical": "CIFAR-10", "noncanonical": "非标准 CIFAR-10 副本", "synthetic": "合成数据"}


def layer_response_facts(fig_dir: Path, runs: list[dict], summary: dict) -> dict:
    """Fig. 7 (``resnet_nb.analysis.responses``, written by 03_analysis): the comparisons of the stds
    stored in ``layer_responses.json`` (recomputed by ``response_comparisons`` with ``summary``,
    so the verdicts follow today's rule even for an older JSON and carry the claims table's
    "not assessable" for the runs as summary.json has them now, a paused run included), each
    as the sentences of ``depth_sentence``/``trend_sentence`` in en and zh, the
    figure's caption data line in both languages (the words of its title), or, when it is
    absent, why (``ready`` False, ``why`` in en/zh)."""
    from statistics import median

    from resnet_nb.analysis.responses import (
        RESPONSES_FIGURE,
        RESPONSES_JSON,
        checkpoint_models,
        depth_sentence,
        response_comparisons,
        skip_reason,
        trend_sentence,
    )
    from resnet_nb.runs.rundir import read_json

    path = fig_dir / RESPONSES_JSON
    reason = skip_reason(runs)
    if reason or not path.is_file():
        have = "、".join(model_label(m) for m in checkpoint_models(runs)) or "无"
        why = ({"en": reason, "zh": f"图 7 需要两类网络（plain 与 ResNet）各自的 best.pth；已有 best.pth 的模型：{have}"}
               if reason else
               {"en": "the layer responses were not measured for this run id (run notebooks/03_analysis, "
                      "which calls resnet_nb.analysis.responses.layer_responses)",
                "zh": "本运行尚未测量层响应（运行 notebooks/03_analysis，它调用 resnet_nb.analysis.responses.layer_responses）"})
        return {"ready": False, "why": why}
    data = read_json(path)
    # a run whose best.pth moved on since the measurement (config.json's best_epoch), or is new
    measured = {r["run_dir"]: r["epoch"] for v in (data.get("models") or {}).values() for r in v.get("runs", [])}
    stale = sort_models({r["config"]["model"] for r in runs if (Path(r["path"]) / "best.pth").is_file()
                         and measured.get(Path(r["path"]).name) != r.get("best_epoch")})
    stale = [model_label(m) for m in stale]
    ds, preset = data.get("dataset") or {}, data.get("preset")
    # the caption's data line, as plots.provenance_label words the figure's title
    titled_result = ds.get("provenance") in ("canonical", "noncanonical") and preset != "smoke"
    zh = [PROVENANCE_ZH.get(ds.get("provenance"), "来源不明的数据")] + ([f"{preset} 预设"] if preset else [])
    zh = "，".join(zh) + ("" if titled_result else "：只说明代码能运行，不是论文的结果") + \
        f"；每个网络的 best.pth，{data.get('n_images', 0):,} 张测试图像"
    models = data.get("models") or {}
    rows = [{"label": model_label(m), "layers": len(v["std"]), "n_seeds": v.get("n_seeds", 1),
             "epochs": sorted({r["epoch"] for r in v.get("runs", [])}),
             "median": median(v["std"])} for m, v in models.items()]
    comparisons = response_comparisons(models, summary)  # today's rule and caveats, from the stored stds
    rd = comparisons["resnet_depth"]
    trend = {lang: trend_sentence(rd, lang) for lang in ("en", "zh")}
    return {"ready": True, "figure": (fig_dir / RESPONSES_FIGURE).is_file(), "file": RESPONSES_FIGURE,
            "json": RESPONSES_JSON, "rows": rows,
            "by_depth": [{**c, "text": {lang: depth_sentence(c, lang) for lang in ("en", "zh")}}
                         for c in comparisons["by_depth"]],
            "trend": rd["trend"], "trend_text": trend if rd["trend"] is not None else None,
            "stale": stale,
            "not_measured": data.get("not_measured") or [],
            "caption": {"en": data.get("label", ""), "zh": zh}}


def shattering_facts(fig_dir: Path) -> dict:
    """The shattering probe of 01_theory (``theory_probes.json``) against Balduzzi et al.
    2017, Yang et al. 2019 and He et al.'s "healthy" gradients (``probes.literature_checks``),
    or why it is omitted (``ready`` False, ``why`` in en/zh)."""
    from resnet_nb.analysis.probes import THEORY_JSON, literature_checks
    from resnet_nb.runs.rundir import read_json

    path = fig_dir / THEORY_JSON
    if not path.is_file():
        return {"ready": False, "why": {"en": "the theory probes of notebooks/01_theory were not exported for this run id",
                                        "zh": "本运行没有导出 notebooks/01_theory 的理论探针"}}
    data = read_json(path)
    checks = literature_checks(data.get("summary") or {})
    if checks is None:
        return {"ready": False, "why": {"en": "the theory probes hold fewer than two depths probed in both families",
                                        "zh": "理论探针中两类网络共同探测的深度少于两个"}}
    if checks["shattering"] is None:
        return {"ready": False, "why": {"en": "theory_probes.json predates the shattering probe; rerun notebooks/01_theory",
                                        "zh": "theory_probes.json 早于梯度破碎探针；请重新运行 notebooks/01_theory"}}
    params = data.get("parameters") or {}
    return {"ready": True, "figure": (fig_dir / "theory_grad_correlation.png").is_file(), **checks,
            "step": params.get("shatter_step"), "points": params.get("batch_size"),
            "plain_labels": [model_label(f"plain{d}") for d in checks["depths"]],
            "resnet_labels": [model_label(f"resnet{d}") for d in checks["depths"]]}


def figure_captions(runs: list[dict], theory: dict | None) -> dict[str, dict[str, str]]:
    """The data line of every figure caption, per language: the same words as the figure
    titles (``analysis.runs_label``, ``probes.probe_label``), from the run files."""
    from resnet_nb.analysis.aggregate import runs_label
    from resnet_nb.analysis.plots import NOT_A_RESULT
    from resnet_nb.analysis.probes import probe_label

    en = runs_label(runs) if runs else ""
    prov = next((((r.get("dataset") or {}).get("provenance")) for r in runs), None)
    preset = next((r.get("preset") or (r.get("config") or {}).get("preset") for r in runs), None)
    shown = max((int(r["metrics"][-1]["epoch"]) for r in runs if r.get("metrics")), default=0)
    planned = max((int(r.get("epochs_planned") or 0) for r in runs), default=0)
    zh = [PROVENANCE_ZH.get(prov, "来源不明的数据")]
    if preset:
        zh.append(f"{preset} 预设")
    zh.append(f"{shown}/{planned} 个 epoch" if planned and planned != shown else f"{shown} 个 epoch")
    zh = "，".join(zh)
    if NOT_A_RESULT in en:
        zh += "：只说明代码能运行，不是论文的结果"
    params = (theory or {}).get("parameters") or {}
    t_en = probe_label(params) if params else ""
    t_prov = params.get("provenance") or ("synthetic" if params.get("dataset") == "synthetic" else None)
    t_zh = (f"初始化时的一批 {params.get('batch_size', '?')} 张训练图像，{PROVENANCE_ZH.get(t_prov, '来源不明的数据')}"
            + ("（缩减的探针，见图题）" if "reduced probe" in t_en else "")) if params else ""
    return {"results": {"en": en, "zh": zh}, "theory": {"en": t_en, "zh": t_zh}}
