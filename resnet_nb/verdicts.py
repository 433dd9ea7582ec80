"""One rule table for every verdict: model A vs model B on a metric, in a claimed direction.

He et al. 2016 claim directions (sec. 4.2, Fig. 6, Table 6): the deeper *plain* net tests and
trains worse than the shallower one (degradation), the deeper *ResNet* beats the deeper plain
net and gains from its depth. One run of each model cannot tell such a gap from seed noise
unless the gap is large: a public five-seed reproduction (nabla0001/resnet) reports standard
deviations of CIFAR-10 test error of 0.13 to 0.27 percentage points. So every comparison the
report, the README and the notebooks print goes through :func:`compare`, which applies
:data:`RULES` top to bottom; the report prints :func:`rule_table` in its method section, in
Chinese and English, from the same constant.

``compare`` is pure (numbers in, :class:`Verdict` out); :func:`compare_models` reads the two
models out of a ``summary.json`` record (``resnet_nb.analysis.summarize``) and calls it.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import NamedTuple, Sequence

from resnet_nb.models import model_label, parse_model_name

__all__ = [
    "SIGMA_PUB_PP", "ONE_SEED_MARGIN_PP", "ALPHA", "STATUSES", "UNITS", "PROVENANCES", "RULES",
    "Rule", "Progress", "Verdict", "compare", "compare_models", "not_assessable", "recipe_verdict", "rule_table",
    "seed_values", "CLAIMS", "CLAIM_WORDS", "paper_claims", "claims_table", "paired_depths",
]

SIGMA_PUB_PP = 0.27  # percentage points: the largest published 5-seed std of CIFAR-10 test error
#                      (nabla0001/resnet: ResNet-56 7.40 ± 0.27)
ONE_SEED_MARGIN_PP = 2 * math.sqrt(2) * SIGMA_PUB_PP  # 0.76 points: 2 x the std of a difference
#                      of two single runs (sqrt(2) * sigma): a one-seed gap beyond it is unlikely noise
ALPHA = 0.05  # one-sided Welch t-test level

STATUSES = ("not_assessable", "shown", "not_shown", "within_noise", "not_resolved")
UNITS = ("fraction", "pp", "loss")  # accuracies as fractions (0.9127), in percentage points, or a loss
PROVENANCES = ("canonical", "noncanonical", "synthetic", "unknown")  # summary.json "dataset.provenance"
_PUBLISHED_NOISE = {"fraction": SIGMA_PUB_PP / 100, "pp": SIGMA_PUB_PP}  # no published seed std of a loss
_TO_DISPLAY = {"fraction": 100.0, "pp": 1.0, "loss": 1.0}  # gaps are shown in points (accuracies)


class Rule(NamedTuple):
    """One row of the rule table; every cell is ``(English, Chinese)``."""

    data: tuple[str, str]
    recipe: tuple[str, str]
    seeds: tuple[str, str]
    verdict: tuple[str, str]


_M, _S = f"{ONE_SEED_MARGIN_PP:.2f}", f"{SIGMA_PUB_PP:.2f}"
_REAL = ("CIFAR-10, canonical or the labelled non-canonical copy", "CIFAR-10（标准版，或注明的非标准副本）")
RULES: tuple[Rule, ...] = (
    Rule(("synthetic (or of unknown provenance)", "合成数据（或来源未知）"), ("any", "任意"), ("any", "任意"),
         ('"not assessable: synthetic data" ("... unknown data provenance")', "“无法判断：合成数据”（“……数据来源未知”）")),
    Rule(("any", "任意"), ("smoke preset, or a run unfinished", "smoke 预设，或有运行未完成"), ("any", "任意"),
         ('"not assessable", naming the preset and its epochs ("smoke preset, 5 epochs") or the unfinished '
          'run ("Plain-56 unfinished at epoch 37 of 200")',
          "“无法判断”，并写明预设与轮数（“smoke 预设，5 个 epoch”）或未完成的运行（“Plain-56 未完成（第 37/200 轮）”）")),
    Rule(_REAL, ("finished", "已完成"), ("1 (either model)", "1（任一模型）"),
         (f'direction and size of the gap; "shown (one seed)" only when the gap in the claimed direction '
          f'exceeds 2·√2·σ_pub = {_M} points (σ_pub = {_S} points, the largest published 5-seed std, '
          f'nabla0001/resnet), otherwise "within the published seed noise"; a gap against the claim: '
          f'"not shown"; a metric without a published seed std (training loss): "direction only"',
          f"差值的方向与大小；只有当所述方向上的差值超过 2·√2·σ_pub = {_M} 个百分点时才判为“成立（单个种子）”"
          f"（σ_pub = {_S} 个百分点，公开的 5 种子复现 nabla0001/resnet 中最大的标准差），否则为“在公开的种子噪声之内”；"
          f"方向与论文相反：“未体现”；没有公开种子标准差的指标（训练 loss）：“仅方向”")),
    Rule(_REAL, ("finished", "已完成"), ("≥ 2 each", "每个模型 ≥ 2"),
         (f"Welch's t-test, one-sided, α = {ALPHA:g}, p reported: \"shown (p=…)\" when p < α, \"not shown\" "
          f"when the mean gap is against the claim, otherwise \"not resolved (p=…)\" (expected with 2 seeds)",
          f"单侧 Welch t 检验，α = {ALPHA:g}，报告 p 值：p < α 时为“成立（p=…）”，均值差与论文方向相反时为“未体现”，"
          f"否则为“未能分辨（p=…）”（2 个种子时通常如此）")),
)
_HEADER = {"en": ("Data", "Recipe", "Seeds per model", "Verdict"),
           "zh": ("数据", "训练配方", "每个模型的种子数", "结论")}


_MATH = (("2·√2·σ_pub", r"$2\sqrt{2}\,\sigma_\mathrm{pub}$"), ("σ_pub", r"$\sigma_\mathrm{pub}$"),
         ("α", r"$\alpha$"), ("≥", r"$\geq$"))  # the PDF's text fonts lack these glyphs


def rule_table(lang: str = "en", math: bool = False) -> str:
    """:data:`RULES` as a pandoc pipe table in ``lang`` (``en`` or ``zh``); the report's
    method section prints it (``math=True``: the Greek letters as TeX math, which pandoc sets
    in every format), and :func:`compare`'s docstring shows the English one."""
    i = {"en": 0, "zh": 1}[lang]
    lines = ["| " + " | ".join(_HEADER[lang]) + " |", "|:------------|:----------|:-------|:-------------------------------|"]
    lines += ["| " + " | ".join(cell[i] for cell in rule) + " |" for rule in RULES]
    table = "\n".join(lines)
    for text, tex in _MATH if math else ():
        table = table.replace(text, tex)
    return table


class Progress(NamedTuple):
    """An unfinished run, for the wording: ``Progress("Plain-56", 37, 200)``."""

    label: str
    epoch: int
    planned: int


@dataclass(frozen=True)
class Verdict:
    """The outcome of one comparison, machine-readable (``status``) and worded (``en``, ``zh``).

    ``gap``: mean(A) - mean(B) in the claimed direction (positive = as claimed), in percentage
    points for accuracies (``unit`` fraction or pp), else in the metric's own unit; ``diff``:
    mean(A) - mean(B) in the input unit; ``p``: the one-sided Welch p value (>= 2 seeds each);
    ``rule``: the 1-based row of :data:`RULES` that decided (0: a model is missing).
    """

    status: str
    en: str
    zh: str
    rule: int
    gap: float | None = None
    diff: float | None = None
    p: float | None = None
    n_a: int = 0
    n_b: int = 0
    mean_a: float | None = None
    mean_b: float | None = None
    unit: str = "fraction"

    @property
    def shown(self) -> bool:
        return self.status == "shown"

    @property
    def assessable(self) -> bool:
        return self.status != "not_assessable"

    def as_dict(self) -> dict:
        return {**asdict(self), "shown": self.shown, "assessable": self.assessable}


def not_assessable(en: str, zh: str, **numbers) -> Verdict:
    """A verdict that cannot be reached, with the reason (``"Plain-56 missing"``, ``"缺少 Plain-56"``);
    ``numbers``: the other :class:`Verdict` fields known (``n_a``, ``mean_a``, ``unit``, ...)."""
    return Verdict("not_assessable", f"not assessable: {en}", f"无法判断：{zh}", 0, **numbers)


def _p_text(p: float) -> str:
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def _gap_text(gap: float, unit: str, lang: str) -> str:
    if unit == "loss":
        return f"{gap:+.4f}"
    return f"{gap:+.2f} points" if lang == "en" else f"{gap:+.2f} 个百分点"


def compare(a_values: Sequence[float | None], b_values: Sequence[float | None], *, higher_is_better: bool,
            data_provenance: str, preset: str, finished: bool = True, unfinished: Sequence[Progress] = (),
            epochs: int | None = None, unit: str = "fraction") -> Verdict:
    """Is model A better than model B on a metric (one value per seed), as the paper claims?

    ``higher_is_better``: the claimed direction (True: A's value is claimed to be higher, e.g.
    test accuracy; False: lower, e.g. training loss). ``data_provenance``: summary.json's
    ``canonical | noncanonical | synthetic | unknown``. ``preset`` and ``epochs``: the recipe
    (``smoke`` is never assessable). ``finished``: False when a run of A or B is unfinished;
    ``unfinished`` names them for the wording (and implies ``finished=False``). ``unit``:
    ``fraction`` (accuracy 0.9127), ``pp`` (percentage points) or ``loss``.

    The rules, first match wins (the table the report prints, :func:`rule_table`):

    | Data | Recipe | Seeds per model | Verdict |
    |:------------|:----------|:-------|:-------------------------------|
    | synthetic (or of unknown provenance) | any | any | "not assessable: synthetic data" ("... unknown data provenance") |
    | any | smoke preset, or a run unfinished | any | "not assessable", naming the preset and its epochs ("smoke preset, 5 epochs") or the unfinished run ("Plain-56 unfinished at epoch 37 of 200") |
    | CIFAR-10, canonical or the labelled non-canonical copy | finished | 1 (either model) | direction and size of the gap; "shown (one seed)" only when the gap in the claimed direction exceeds 2·√2·σ_pub = 0.76 points (σ_pub = 0.27 points, the largest published 5-seed std, nabla0001/resnet), otherwise "within the published seed noise"; a gap against the claim: "not shown"; a metric without a published seed std (training loss): "direction only" |
    | CIFAR-10, canonical or the labelled non-canonical copy | finished | ≥ 2 each | Welch's t-test, one-sided, α = 0.05, p reported: "shown (p=…)" when p < α, "not shown" when the mean gap is against the claim, otherwise "not resolved (p=…)" (expected with 2 seeds) |

    A non-canonical copy is assessed and labelled ("on a non-canonical CIFAR-10 copy").
    """
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {', '.join(UNITS)}; got {unit!r}")
    if data_provenance not in PROVENANCES:
        raise ValueError(f"data_provenance must be one of {', '.join(PROVENANCES)}; got {data_provenance!r}")
    a = [float(x) for x in a_values if x is not None and not math.isnan(float(x))]
    b = [float(x) for x in b_values if x is not None and not math.isnan(float(x))]
    mean_a = sum(a) / len(a) if a else None
    mean_b = sum(b) / len(b) if b else None
    n = {"n_a": len(a), "n_b": len(b), "mean_a": mean_a, "mean_b": mean_b, "unit": unit}  # also when not assessable
    if data_provenance == "synthetic":
        return Verdict("not_assessable", "not assessable: synthetic data", "无法判断：合成数据", 1, **n)
    if data_provenance == "unknown":
        return Verdict("not_assessable", "not assessable: unknown data provenance",
                       "无法判断：数据来源未知", 1, **n)
    if preset == "smoke":
        ep_en = f", {epochs} epoch{'s' if epochs != 1 else ''}" if epochs else ""
        ep_zh = f"，{epochs} 个 epoch" if epochs else ""
        return Verdict("not_assessable", f"not assessable: smoke preset{ep_en}",
                       f"无法判断：smoke 预设{ep_zh}", 2, **n)
    if unfinished or not finished:
        en = "; ".join(f"{u.label} unfinished at epoch {u.epoch} of {u.planned}" for u in unfinished)
        zh = "；".join(f"{u.label} 未完成（第 {u.epoch}/{u.planned} 轮）" for u in unfinished)
        return Verdict("not_assessable", f"not assessable: {en or 'a run is unfinished'}",
                       f"无法判断：{zh or '有运行未完成'}", 2, **n)
    if not a or not b:
        return not_assessable("no result yet", "尚无结果", **n)

    diff = mean_a - mean_b
    gap = (diff if higher_is_better else -diff) * _TO_DISPLAY[unit]
    where_en = " on a non-canonical CIFAR-10 copy" if data_provenance == "noncanonical" else ""
    where_zh = "（非标准 CIFAR-10 副本）" if data_provenance == "noncanonical" else ""
    nums = dict(gap=gap, diff=diff, **n)
    g_en, g_zh = _gap_text(gap, unit, "en"), _gap_text(gap, unit, "zh")

    if len(a) == 1 or len(b) == 1:  # row 3: one seed (of at least one model)
        noise = _PUBLISHED_NOISE.get(unit)
        margin = None if noise is None else 2 * math.sqrt(2) * noise * _TO_DISPLAY[unit]
        if gap < 0:
            return Verdict("not_shown", f"not shown (one seed{where_en}): {g_en}, against the claim",
                           f"未体现（单个种子{where_zh}）：{g_zh}，与论文方向相反", 3, **nums)
        if margin is None:
            return Verdict("not_resolved", f"direction only (one seed{where_en}): {g_en}; no published seed "
                           f"noise for this metric", f"仅方向（单个种子{where_zh}）：{g_zh}；该指标没有公开的种子噪声",
                           3, **nums)
        if gap > margin:
            return Verdict("shown", f"shown (one seed{where_en}): {g_en}, beyond the published seed noise "
                           f"of {margin:.2f}", f"成立（单个种子{where_zh}）：{g_zh}，超过公开的种子噪声 {margin:.2f}",
                           3, **nums)
        return Verdict("within_noise", f"within the published seed noise (one seed{where_en}): {g_en}, "
                       f"not beyond {margin:.2f}", f"在公开的种子噪声之内（单个种子{where_zh}）：{g_zh}，"
                       f"未超过 {margin:.2f}", 3, **nums)

    seeds_en, seeds_zh = f"Welch, {len(a)} vs {len(b)} seeds{where_en}", f"Welch 检验，{len(a)} 对 {len(b)} 个种子{where_zh}"
    if len(set(a)) == 1 and len(set(b)) == 1:  # identical seeds: no spread to test a gap against
        return Verdict("not_resolved", f"not resolved ({seeds_en}: no seed-to-seed spread): {g_en}",
                       f"未能分辨（{seeds_zh}：种子之间没有差异）：{g_zh}", 4, **nums)
    from scipy import stats  # row 4: several seeds of each model

    p = float(stats.ttest_ind(a, b, equal_var=False,
                              alternative="greater" if higher_is_better else "less").pvalue)
    pt = _p_text(p)
    if p < ALPHA and gap > 0:
        return Verdict("shown", f"shown ({pt}, {seeds_en}): {g_en}", f"成立（{pt}，{seeds_zh}）：{g_zh}",
                       4, p=p, **nums)
    if gap < 0:
        return Verdict("not_shown", f"not shown ({pt}, {seeds_en}): {g_en}, against the claim",
                       f"未体现（{pt}，{seeds_zh}）：{g_zh}，与论文方向相反", 4, p=p, **nums)
    return Verdict("not_resolved", f"not resolved ({pt}, {seeds_en}): {g_en}",
                   f"未能分辨（{pt}，{seeds_zh}）：{g_zh}", 4, p=p, **nums)


def seed_values(model_summary: dict, metric: str) -> list[float | None]:
    """The per-seed values of ``metric`` of one model of summary.json (``per_seed``); a
    summary written before ``per_seed`` existed gives its mean, once per seed that has one."""
    per_seed = model_summary.get("per_seed")
    if per_seed is not None:
        return [p.get(metric) for p in per_seed]
    return [model_summary.get(metric)] if model_summary.get(metric) is not None else []


def compare_models(summary: dict, a: str, b: str, metric: str, *, higher_is_better: bool,
                   unit: str | None = None, label=model_label) -> Verdict:
    """:func:`compare` of models ``a`` and ``b`` (``plain56``, ``plain20``) of a summary.json
    record on ``metric`` (``best_test_acc``, ``last_test_acc``, ``final_train_loss``): data
    provenance, preset, epochs and the finished state all come from the summary."""
    models = summary.get("models") or {}
    unit = unit or ("loss" if "loss" in metric else "fraction")
    gone = [label(m) for m in (a, b) if m not in models]
    if gone:
        return not_assessable(f"{' and '.join(gone)} missing", f"缺少 {'、'.join(gone)}", unit=unit)
    return compare(seed_values(models[a], metric), seed_values(models[b], metric), higher_is_better=higher_is_better,
                   unit=unit, **_recipe(summary, (a, b), label))


def _recipe(summary: dict, names: Sequence[str], label=model_label) -> dict:
    """:func:`compare`'s ``data_provenance``, ``preset``, ``unfinished`` and ``epochs`` for
    the models ``names`` (all in the summary's ``models``)."""
    ms = [(m, summary["models"][m]) for m in names]
    unfinished = [Progress(label(m), int(s.get("last_epoch") or 0), int(s.get("epochs_planned") or 0))
                  for m, s in ms
                  if s.get("status") != "finished" or (s.get("last_epoch") or 0) < (s.get("epochs_planned") or 0)]
    provenance = (summary.get("dataset") or {}).get("provenance")
    return {"data_provenance": provenance if provenance in PROVENANCES else "unknown",
            "preset": str(summary.get("preset")), "unfinished": unfinished,
            "epochs": max(int(s.get("epochs_planned") or 0) for _, s in ms) or None}


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
# Table 6): name -> (model A, model B, metric, is A claimed higher?).
CLAIMS: dict[str, tuple[str, str, str, bool]] = {
    "degradation_acc": ("plain{d}", "plain{s}", "best_test_acc", False),       # deeper plain tests worse
    "degradation_last_acc": ("plain{d}", "plain{s}", "last_test_acc", False),
    "degradation_loss": ("plain{d}", "plain{s}", "final_train_loss", True),    # ... and trains worse
    "residual_fix_acc": ("resnet{d}", "plain{d}", "best_test_acc", True),      # shortcuts fix the deep net
    "residual_fix_loss": ("resnet{d}", "plain{d}", "final_train_loss", False),
    "depth_gain_acc": ("resnet{d}", "resnet{s}", "best_test_acc", True),       # deeper ResNet gains
    "depth_gain_loss": ("resnet{d}", "resnet{s}", "final_train_loss", False),
    "residual_shallow_acc": ("resnet{s}", "plain{s}", "best_test_acc", True),
}


def paper_claims(summary: dict, shallow: int, deep: int, label=model_label) -> dict[str, Verdict]:
    """Every comparison of :data:`CLAIMS` at depths ``shallow`` < ``deep`` on a summary.json
    record, each judged by the rule table (:func:`compare_models`)."""
    out = {}
    for name, (a, b, metric, a_higher) in CLAIMS.items():
        out[name] = compare_models(summary, a.format(s=shallow, d=deep), b.format(s=shallow, d=deep), metric,
                                   higher_is_better=a_higher, label=label)
    return out


# how the tables name each claim (English, Chinese)
CLAIM_WORDS: dict[str, tuple[str, str]] = {
    "degradation_acc": ("deeper plain net tests worse (best test acc)", "更深的 plain 网络测试更差（最佳测试精度）"),
    "degradation_last_acc": ("deeper plain net tests worse (last-epoch test acc)", "更深的 plain 网络测试更差（最后一轮测试精度）"),
    "degradation_loss": ("deeper plain net trains worse (final training loss)", "更深的 plain 网络训练更差（最终训练 loss）"),
    "residual_fix_acc": ("shortcuts fix the deep net (best test acc)", "shortcut 修复深层网络（最佳测试精度）"),
    "residual_fix_loss": ("shortcuts fix the deep net (final training loss)", "shortcut 修复深层网络（最终训练 loss）"),
    "depth_gain_acc": ("deeper ResNet gains (best test acc)", "更深的 ResNet 更好（最佳测试精度）"),
    "depth_gain_loss": ("deeper ResNet gains (final training loss)", "更深的 ResNet 更好（最终训练 loss）"),
    "residual_shallow_acc": ("shortcuts at the shallow depth (best test acc)", "浅层的 shortcut（最佳测试精度）"),
}


def claims_table(summary: dict, shallow: int, deep: int, lang: str = "en", label=model_label) -> str:
    """Every claim of :data:`CLAIMS` at depths ``shallow`` < ``deep`` as a Markdown table: the
    models (A vs B), the seeds of each (n), their means, the gap in the claimed direction, the
    one-sided Welch p (several seeds each; "n/a" otherwise) and the verdict of the rule table."""
    i = {"en": 0, "zh": 1}[lang]
    head = (("Claim", "A vs B", "n (A/B)", "mean A", "mean B", "gap", "p (Welch)", "verdict"),
            ("论断", "A 对 B", "种子数 (A/B)", "A 均值", "B 均值", "差值", "p（Welch）", "结论"))[i]
    lines = ["| " + " | ".join(head) + " |", "|:---|:---|---:|---:|---:|---:|---:|:---|"]
    for name, v in paper_claims(summary, shallow, deep, label=label).items():
        a, b = (CLAIMS[name][j].format(s=shallow, d=deep) for j in (0, 1))
        num = (lambda x: "n/a" if x is None else f"{x:.4f}")
        gap = "n/a" if v.gap is None else (f"{v.gap:+.4f}" if v.unit == "loss" else f"{v.gap:+.2f} pp")
        p = "n/a" if v.p is None else _p_text(v.p).removeprefix("p=").replace("p<", "<")
        lines.append(f"| {CLAIM_WORDS[name][i]} | {label(a)} vs {label(b)} | {v.n_a}/{v.n_b} | {num(v.mean_a)} | "
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
