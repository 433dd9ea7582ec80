"""The paper's claims judged on a summary.json: which comparisons the paper makes at two depths
(CLAIMS; the primary ones corrected together with Holm's method), each by the rule table of
resnet_nb.analysis.verdicts, and the table of them the report, the notebooks and the README
print.
"""
from __future__ import annotations

import math
from typing import Sequence

from resnet_nb.analysis.verdicts import PROVENANCES, Progress, Verdict, compare, holm, not_assessable, p_text
from resnet_nb.models.resnet import model_label, parse_model_name

__all__ = ["seed_values", "compare_models", "recipe_verdict", "CLAIMS", "PRIMARY_CLAIMS",
           "paper_claims", "CLAIM_WORDS", "claims_table", "paired_depths"]


def seed_values(model_summary: dict, metric: str) -> list[float | None]:
    """The per-seed values of ``metric`` of one model of summary.json (``per_seed``; a diverged
    seed gives NaN, so that :func:`compare` names it). A summary written before ``per_seed``
    existed has only the model's mean: it is judged as one value (one seed), never as k equal
    seeds, which would pretend a spread of zero."""
    per_seed = model_summary.get("per_seed")
    if per_seed is not None:
        return [math.nan if p.get("diverged") else p.get(metric) for p in per_seed]
    return [model_summary.get(metric)] if model_summary.get(metric) is not None else []


def compare_models(summary: dict, a: str, b: str, metric: str, *, higher_is_better: bool,
                   unit: str | None = None, label=model_label, p_holm: float | None = None) -> Verdict:
    """:func:`compare` of models ``a`` and ``b`` (``plain56``, ``plain20``) of a summary.json
    record on ``metric`` (``last_test_acc``, ``best_test_acc``, ``final_train_loss``): data
    provenance, preset, epochs and the finished state all come from the summary."""
    models = summary.get("models") or {}
    unit = unit or ("loss" if "loss" in metric else "fraction")
    gone = [label(m) for m in (a, b) if m not in models]
    if gone:
        return not_assessable(f"{' and '.join(gone)} missing", f"缺少 {'、'.join(gone)}", unit=unit)
    return compare(seed_values(models[a], metric), seed_values(models[b], metric), higher_is_better=higher_is_better,
                   unit=unit, p_holm=p_holm, **_recipe(summary, (a, b), label))


def _recipe(summary: dict, names: Sequence[str], label=model_label) -> dict:
    """:func:`compare`'s ``data_provenance``, ``preset``, ``unfinished`` and ``epochs`` for
    the models ``names`` (all in the summary's ``models``)."""
    ms = [(m, summary["models"][m]) for m in names]
    unfinished = [Progress(label(m), int(s.get("last_epoch") or 0), int(s.get("epochs_planned") or 0))
                  for m, s in ms if _unfinished(s)]
    provenance = (summary.get("dataset") or {}).get("provenance")
    return {"data_provenance": provenance if provenance in PROVENANCES else "unknown",
            "preset": str(summary.get("preset")), "unfinished": unfinished,
            "epochs": max(int(s.get("epochs_planned") or 0) for _, s in ms) or None}


def _unfinished(model_summary: dict) -> bool:
    """Is a seed of this model still to train? A diverged seed is a result (named, excluded),
    not an unfinished run; a summary without ``per_seed`` is judged by its status."""
    per_seed = model_summary.get("per_seed")
    if per_seed is not None:
        live = [p for p in per_seed if not p.get("diverged")]
        return any(p.get("status") != "finished" or (p.get("last_epoch") or 0) < (p.get("epochs_planned") or 0)
                   for p in live)
    return (model_summary.get("status") != "finished"
            or (model_summary.get("last_epoch") or 0) < (model_summary.get("epochs_planned") or 0))


def recipe_verdict(summary: dict, names: Sequence[str], label=model_label) -> Verdict | None:
    """Can a comparison among the models ``names`` of a summary.json record carry a result
    at all, whatever its numbers? The "not assessable" verdict of :func:`compare_models` that
    does not depend on the values (a model missing; rows 1-2 of :data:`RULES`: synthetic or
    unknown data, the smoke preset, a run unfinished, paused included), or None when the data
    and the recipe allow one. For comparisons the claims table does not make (Fig. 7's layer
    responses), so that they are caveated by the same rule."""
    models = summary.get("models") or {}
    gone = [label(m) for m in dict.fromkeys(names) if m not in models]
    if gone:
        return not_assessable(f"{' and '.join(gone)} missing", f"缺少 {'、'.join(gone)}")
    verdict = compare([], [], higher_is_better=True, **_recipe(summary, list(dict.fromkeys(names)), label))
    return verdict if verdict.rule in (1, 2) else None  # rule 0 here: only the values are missing


# The comparisons of He et al. 2016 at a shallow depth s and a deep depth d (sec. 4.2, Fig. 6,
# Table 6): name -> (model A, model B, metric, is A claimed higher?). The primary metric is the
# final-epoch test accuracy (the paper reports the net at the end of training; the best epoch is
# chosen on the test set and biased upward, most for the noisiest curve); best-of-epochs is kept
# as a secondary comparison, for the seed report, which reports it.
CLAIMS: dict[str, tuple[str, str, str, bool]] = {
    "degradation_acc": ("plain{d}", "plain{s}", "last_test_acc", False),       # deeper plain tests worse
    "residual_fix_acc": ("resnet{d}", "plain{d}", "last_test_acc", True),      # shortcuts fix the deep net
    "depth_gain_acc": ("resnet{d}", "resnet{s}", "last_test_acc", True),       # deeper ResNet gains
    "degradation_loss": ("plain{d}", "plain{s}", "final_train_loss", True),    # ... and trains worse
    "residual_fix_loss": ("resnet{d}", "plain{d}", "final_train_loss", False),
    "depth_gain_loss": ("resnet{d}", "resnet{s}", "final_train_loss", False),
    "degradation_best_acc": ("plain{d}", "plain{s}", "best_test_acc", False),
    "residual_fix_best_acc": ("resnet{d}", "plain{d}", "best_test_acc", True),
    "depth_gain_best_acc": ("resnet{d}", "resnet{s}", "best_test_acc", True),
    "residual_shallow_acc": ("resnet{s}", "plain{s}", "last_test_acc", True),  # not a claim of the paper
}


PRIMARY_CLAIMS = ("degradation_acc", "residual_fix_acc", "depth_gain_acc")  # Holm over these three


def paper_claims(summary: dict, shallow: int, deep: int, label=model_label) -> dict[str, Verdict]:
    """Every comparison of :data:`CLAIMS` at depths ``shallow`` < ``deep`` on a summary.json
    record, each judged by the rule table (:func:`compare_models`); the primary claims with
    Holm's adjustment over their p values (row 5)."""
    def judge(name: str, p_holm: float | None = None) -> Verdict:
        a, b, metric, a_higher = CLAIMS[name]
        return compare_models(summary, a.format(s=shallow, d=deep), b.format(s=shallow, d=deep), metric,
                              higher_is_better=a_higher, label=label, p_holm=p_holm)

    out = {name: judge(name) for name in CLAIMS}
    adjusted = holm({k: out[k].p for k in PRIMARY_CLAIMS})
    for k in PRIMARY_CLAIMS:
        if adjusted[k] is not None:
            out[k] = judge(k, adjusted[k])
    return out


# how the tables name each claim (English, Chinese)
CLAIM_WORDS: dict[str, tuple[str, str]] = {
    "degradation_acc": ("deeper plain net tests worse (final-epoch test acc)", "更深的 plain 网络测试更差（最后一轮测试精度）"),
    "residual_fix_acc": ("shortcuts fix the deep net (final-epoch test acc)", "shortcut 修复深层网络（最后一轮测试精度）"),
    "depth_gain_acc": ("deeper ResNet gains (final-epoch test acc)", "更深的 ResNet 更好（最后一轮测试精度）"),
    "degradation_loss": ("deeper plain net trains worse (final training loss)", "更深的 plain 网络训练更差（最终训练 loss）"),
    "residual_fix_loss": ("shortcuts fix the deep net (final training loss)", "shortcut 修复深层网络（最终训练 loss）"),
    "depth_gain_loss": ("deeper ResNet gains (final training loss)", "更深的 ResNet 更好（最终训练 loss）"),
    "degradation_best_acc": ("deeper plain net tests worse (best-of-epochs test acc)", "更深的 plain 网络测试更差（各轮最佳测试精度）"),
    "residual_fix_best_acc": ("shortcuts fix the deep net (best-of-epochs test acc)", "shortcut 修复深层网络（各轮最佳测试精度）"),
    "depth_gain_best_acc": ("deeper ResNet gains (best-of-epochs test acc)", "更深的 ResNet 更好（各轮最佳测试精度）"),
    "residual_shallow_acc": ("shortcuts at the shallow depth (final-epoch test acc; not a claim of the paper)",
                             "浅层的 shortcut（最后一轮测试精度；非论文的论断）"),
}


def claims_table(summary: dict, shallow: int, deep: int, lang: str = "en", label=model_label) -> str:
    """Every claim of :data:`CLAIMS` at depths ``shallow`` < ``deep`` as a Markdown table: primary
    or secondary, the models (A vs B), the seeds of each (n), their means, the gap in the claimed
    direction with its 95 % interval (†: resting on the published seed noise), the one-sided p
    (Holm-adjusted for the primary claims
    beside it; "n/a" where the rule gives none) and the verdict of the rule table."""
    i = {"en": 0, "zh": 1}[lang]
    head = (("Claim", "A vs B", "n (A/B)", "mean A", "mean B", "gap [95 % CI]", "p (Holm)", "verdict"),
            ("论断", "A 对 B", "种子数 (A/B)", "A 均值", "B 均值", "差值 [95 % 区间]", "p（Holm）", "结论"))[i]
    kind = (("primary", "secondary"), ("主要", "次要"))[i]
    # pandoc gives a wide table's columns the shares of these dash counts: the verdict, the longest
    # text, gets the widest column (with equal shares it wraps to a word per line)
    rule = "|" + "|".join(("-" * w + ":" if right else ":" + "-" * w) for w, right in
                          ((15, False), (11, False), (6, True), (7, True), (7, True), (13, True), (8, True), (33, False)))
    lines = ["| " + " | ".join(head) + " |", rule + "|"]
    for name, v in paper_claims(summary, shallow, deep, label=label).items():
        a, b = (CLAIMS[name][j].format(s=shallow, d=deep) for j in (0, 1))
        num = (lambda x: "n/a" if x is None else f"{x:.4f}")
        fmt = "{:+.4f}" if v.unit == "loss" else "{:+.2f}"
        gap = "n/a" if v.gap is None else fmt.format(v.gap) + ("" if v.unit == "loss" else " pp")
        if v.ci is not None:
            gap += f" [{fmt.format(v.ci[0])}, {fmt.format(v.ci[1])}]" + ("†" if v.ci_basis == "sigma_pub" else "")
        p = "n/a" if v.p is None else p_text(v.p).removeprefix("p=").replace("p<", "<")
        if v.p_holm is not None:
            p += f" ({p_text(v.p_holm).removeprefix('p=').replace('p<', '<')})"
        claim = f"{CLAIM_WORDS[name][i]} ({kind[0] if name in PRIMARY_CLAIMS else kind[1]})" if lang == "en" else \
            f"{CLAIM_WORDS[name][i]}（{kind[0] if name in PRIMARY_CLAIMS else kind[1]}）"
        lines.append(f"| {claim} | {label(a)} vs {label(b)} | {v.n_a}/{v.n_b} | {num(v.mean_a)} | "
                     f"{num(v.mean_b)} | {gap} | {p} | {(v.en, v.zh)[i]} |")
    return "\n".join(lines)


def paired_depths(models) -> tuple[int, int] | None:
    """``(shallow, deep)``: the shallowest and the deepest depth at which both a plain and a
    residual net have results (names of ``models``), or None with fewer than two such depths
    (a sweep's ResNet-110 has no plain partner, so the claims use 20 and 56)."""
    by_family: dict[str, set[int]] = {"plain": set(), "resnet": set()}
    for m in models:
        family, depth = parse_model_name(m)
        by_family[family].add(depth)
    both = sorted(by_family["plain"] & by_family["resnet"])
    return (both[0], both[-1]) if len(both) >= 2 else None
