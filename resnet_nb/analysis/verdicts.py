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
models out of a ``summary.json`` record (``resnet_nb.analysis.aggregate.summarize``) and calls it.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import NamedTuple, Sequence

__all__ = ["SIGMA_PUB_PP", "SIGMA_POOLED_PP", "ONE_SEED_MARGIN_PP", "ALPHA", "Z_ALPHA", "RESOLUTION_PP", "margin_pp", "welch", "holm", "STATUSES", "UNITS", "PROVENANCES", "RULES", "Rule", "Progress", "Verdict", "compare", "not_assessable", "rule_table"]

SIGMA_PUB_PP = 0.27  # percentage points: the largest of the five published 5-seed stds of CIFAR-10
#                      test error (nabla0001/resnet: ResNet-56 7.40 ± 0.27; pooled over the five: 0.21),
#                      a conservative choice for the seed noise of one model
SIGMA_POOLED_PP = 0.21
ALPHA = 0.05  # one error rate for every rule: one-sided tests at level 0.05
Z_ALPHA = NormalDist().inv_cdf(1 - ALPHA)   # 1.645: the one-sided z quantile of ALPHA
Z_CI = NormalDist().inv_cdf(0.975)          # 1.960: a two-sided 95 % interval
RESOLUTION_PP = 0.01  # one test image of 10,000: a seed-to-seed spread below it is no spread


def margin_pp(n_a: int = 1, n_b: int = 1, sigma_pp: float = SIGMA_PUB_PP) -> float:
    """The gap (points) a one-sided z-test at :data:`ALPHA` needs when the seed noise is
    ``sigma_pp`` per run: z · σ · √(1/n_a + 1/n_b)."""
    return Z_ALPHA * sigma_pp * math.sqrt(1 / n_a + 1 / n_b)


ONE_SEED_MARGIN_PP = margin_pp(1, 1)  # 0.63 points: one run of each model, σ_pub

STATUSES = ("not_assessable", "shown", "not_shown", "within_noise", "not_resolved")
UNITS = ("fraction", "pp", "loss")  # accuracies as fractions (0.9127), in percentage points, or a loss
PROVENANCES = ("canonical", "noncanonical", "synthetic", "unknown")  # summary.json "dataset.provenance"
_TO_DISPLAY = {"fraction": 100.0, "pp": 1.0, "loss": 1.0}  # gaps are shown in points (accuracies)


class Rule(NamedTuple):
    """One row of the rule table; every cell is ``(English, Chinese)``."""

    data: tuple[str, str]
    recipe: tuple[str, str]
    seeds: tuple[str, str]
    verdict: tuple[str, str]


_M, _S, _A = f"{ONE_SEED_MARGIN_PP:.2f}", f"{SIGMA_PUB_PP:.2f}", f"{ALPHA:g}"
_REAL = ("CIFAR-10, canonical or the labelled non-canonical copy", "CIFAR-10（标准版，或注明的非标准副本）")
RULES: tuple[Rule, ...] = (
    Rule(("synthetic (or of unknown provenance)", "合成数据（或来源未知）"), ("any", "任意"), ("any", "任意"),
         ('"not assessable: synthetic data" ("... unknown data provenance")', "“无法判断：合成数据”（“……数据来源未知”）")),
    Rule(("any", "任意"), ("smoke preset, or a run unfinished", "smoke 预设，或有运行未完成"), ("any", "任意"),
         ('"not assessable", naming the preset and its epochs ("smoke preset, 5 epochs") or the unfinished '
          'run ("Plain-56 unfinished at epoch 37 of 200"); a diverged seed (NaN/inf) is excluded and named',
          "“无法判断”，并写明预设与轮数（“smoke 预设，5 个 epoch”）或未完成的运行（“Plain-56 未完成（第 37/200 轮）”）；"
          "发散（NaN/inf）的种子被排除并注明")),
    Rule(_REAL, ("finished (short preset: at its 20 epochs)", "已完成（short 预设：按其 20 个 epoch 判断）"),
         ("1 (either model)", "1（任一模型）"),
         (f'one-sided z-test on the published seed noise, α = {_A}: σ = max(σ_pub, the other model\'s observed sd), '
          f'"shown (one seed)" when the gap in the claimed direction exceeds z·σ·√(1/n_A+1/n_B) '
          f'({_M} points for one run each; σ_pub = {_S} points, the largest of the published 5-seed stds, '
          f'nabla0001/resnet: conservative), otherwise "within the published seed noise"; a gap against the claim: '
          f'"not shown"; 95 % interval gap ± 1.96·σ·√(1/n_A+1/n_B), marked σ_pub; the short preset and a metric '
          f'without a published seed std (training loss): "direction only"',
          f"基于公开种子噪声的单侧 z 检验，α = {_A}：σ = max(σ_pub, 另一模型实测的标准差)，所述方向上的差值超过 "
          f"z·σ·√(1/n_A+1/n_B) 时判为“成立（单个种子）”（每个模型一次运行时为 {_M} 个百分点；σ_pub = {_S} 个百分点，"
          f"公开的 5 种子复现 nabla0001/resnet 中最大的标准差：保守的选择），否则为“在公开的种子噪声之内”；方向与论文相反："
          f"“未体现”；95 % 区间为差值 ± 1.96·σ·√(1/n_A+1/n_B)，注明基于 σ_pub；short 预设与没有公开种子标准差的指标"
          f"（训练 loss）：“仅方向”")),
    Rule(_REAL, ("finished (short preset: at its 20 epochs)", "已完成（short 预设：按其 20 个 epoch 判断）"),
         ("≥ 2 each", "每个模型 ≥ 2"),
         (f"a gap against the claim: \"not shown\" (checked first); otherwise Welch's t-test, one-sided, α = {_A}, "
          f"each model's variance floored at σ_pub² (a spread of two or three seeds below the seed noise is chance; "
          f"losses: no floor), p reported: \"shown (p=…)\" when p < α, otherwise \"not resolved (p=…)\"; "
          f"95 % Welch interval of the gap",
          f"方向与论文相反：“未体现”（先检查）；否则单侧 Welch t 检验，α = {_A}，每个模型的方差下限为 σ_pub²"
          f"（两三个种子的离散度小于种子噪声属偶然；loss 不设下限），报告 p 值：p < α 时为“成立（p=…）”，否则为"
          f"“未能分辨（p=…）”；给出差值的 95 % Welch 区间")),
    Rule(_REAL, ("finished", "已完成"), ("any", "任意"),
         (f"the three primary claims (degradation, shortcuts fix the deep net, depth helps ResNets; final-epoch "
          f"test accuracy): Holm's step-down over their p values at α = {_A}, so a primary claim is shown only "
          f"when its Holm-adjusted p < α; every other comparison (best-of-epochs accuracy, training loss, "
          f"ResNet vs plain at the shallow depth) is secondary, unadjusted, exploratory",
          f"三个主要论断（退化、shortcut 修复深层网络、ResNet 随深度变好；最后一轮测试精度）：对其 p 值做 Holm 逐步校正，"
          f"α = {_A}，只有校正后 p < α 才判为成立；其余比较（各轮最佳精度、训练 loss、浅层的 ResNet 对 plain）为次要、"
          f"未校正的探索性比较")),
)
_HEADER = {"en": ("Data", "Recipe", "Seeds per model", "Verdict"),
           "zh": ("数据", "训练配方", "每个模型的种子数", "结论")}


_MATH = (("z·σ·√(1/n_A+1/n_B)", r"$z\,\sigma\sqrt{1/n_A+1/n_B}$"),
         ("1.96·σ·√(1/n_A+1/n_B)", r"$1.96\,\sigma\sqrt{1/n_A+1/n_B}$"),
         ("σ_pub²", r"$\sigma_\mathrm{pub}^2$"), ("σ_pub", r"$\sigma_\mathrm{pub}$"), ("σ =", r"$\sigma$ ="),
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
    mean(A) - mean(B) in the input unit; ``ci``: the 95 % interval of ``gap`` (same unit), on
    ``ci_basis`` ``welch`` (>= 2 seeds each) or ``sigma_pub`` (one seed: the published noise);
    ``p``: the one-sided p value of the rule that decided (Welch, or the z-test on σ_pub);
    ``p_holm``: Holm-adjusted over the primary claims (set by :func:`paper_claims`);
    ``excluded_a``/``excluded_b``: seeds left out because their value is NaN or infinite
    (diverged); ``rule``: the 1-based row of :data:`RULES` that decided (0: a model is missing).
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
    ci: tuple[float, float] | None = None
    ci_basis: str | None = None
    p_holm: float | None = None
    excluded_a: int = 0
    excluded_b: int = 0

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


def p_text(p: float) -> str:
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def _gap_text(gap: float, unit: str, lang: str) -> str:
    if unit == "loss":
        return f"{gap:+.4f} in loss" if lang == "en" else f"loss 差 {gap:+.4f}"
    return f"{gap:+.2f} points" if lang == "en" else f"{gap:+.2f} 个百分点"


def ci_text(v: Verdict, lang: str = "en") -> str:
    """``95 % CI [+1.20, +4.80]`` (and ``, on the published noise`` when it rests on it), or ""."""
    if v.ci is None:
        return ""
    fmt = "{:+.4f}" if v.unit == "loss" else "{:+.2f}"
    basis = {"en": ", on the published noise", "zh": "，基于公开的种子噪声"}[lang] if v.ci_basis == "sigma_pub" else ""
    return (f"95 % CI [{fmt.format(v.ci[0])}, {fmt.format(v.ci[1])}]{basis}" if lang == "en" else
            f"95 % 区间 [{fmt.format(v.ci[0])}, {fmt.format(v.ci[1])}]{basis}")


def _finite(values: Sequence[float | None]) -> tuple[list[float], int]:
    """(the finite values, how many were NaN or infinite: diverged seeds); None (no result) is skipped."""
    vals = [float(x) for x in values if x is not None]
    kept = [x for x in vals if math.isfinite(x)]
    return kept, len(vals) - len(kept)


def _var(xs: Sequence[float]) -> float:
    m = sum(xs) / len(xs)
    return sum((x - m) ** 2 for x in xs) / (len(xs) - 1)


def welch(a: Sequence[float], b: Sequence[float], *, a_higher: bool, var_floor: float = 0.0
          ) -> tuple[float, float, float, float]:
    """One-sided Welch t-test of "mean(a) > mean(b)" (``a_higher``) or "<": ``(p, df, se, t)``.
    Each sample variance is floored at ``var_floor`` first (0: the plain Welch test). Needs >= 2
    values each and a positive standard error."""
    from scipy import stats

    va, vb = max(_var(a), var_floor), max(_var(b), var_floor)
    qa, qb = va / len(a), vb / len(b)
    se = math.sqrt(qa + qb)
    df = (qa + qb) ** 2 / (qa ** 2 / (len(a) - 1) + qb ** 2 / (len(b) - 1))
    diff = sum(a) / len(a) - sum(b) / len(b)
    t = (diff if a_higher else -diff) / se
    return float(stats.t.sf(t, df)), df, se, t


def holm(p_values: dict[str, float | None]) -> dict[str, float | None]:
    """Holm's step-down adjusted p values (None stays None; the others form the family):
    the k-th smallest of m becomes max over j <= k of min(1, (m - j + 1) p_(j))."""
    named = sorted(((p, k) for k, p in p_values.items() if p is not None), key=lambda t: t[0])
    m, out, running = len(named), {k: None for k in p_values}, 0.0
    for j, (p, k) in enumerate(named):
        running = max(running, min(1.0, (m - j) * p))
        out[k] = running
    return out


def compare(a_values: Sequence[float | None], b_values: Sequence[float | None], *, higher_is_better: bool,
            data_provenance: str, preset: str, finished: bool = True, unfinished: Sequence[Progress] = (),
            epochs: int | None = None, unit: str = "fraction", p_holm: float | None = None) -> Verdict:
    """Is model A better than model B on a metric (one value per seed), as the paper claims?

    ``higher_is_better``: the claimed direction (True: A's value is claimed to be higher, e.g.
    test accuracy; False: lower, e.g. training loss). ``data_provenance``: summary.json's
    ``canonical | noncanonical | synthetic | unknown``. ``preset`` and ``epochs``: the recipe
    (``smoke`` is never assessable; ``short`` is judged "at its epochs", and one seed of it
    gives the direction only: the published noise is that of 200 epochs). ``finished``: False
    when a run of A or B is unfinished; ``unfinished`` names them for the wording (and implies
    ``finished=False``). ``unit``: ``fraction`` (accuracy 0.9127), ``pp`` (percentage points)
    or ``loss``. ``p_holm``: this comparison's Holm-adjusted p among the primary claims
    (:func:`paper_claims`), which then decides instead of its own p. NaN or infinite values
    (diverged seeds) are left out and named.

    The rules, first match wins (the table the report prints, :func:`rule_table`):

    {RULE_TABLE}

    A non-canonical copy is assessed and labelled ("on a non-canonical CIFAR-10 copy").
    """
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {', '.join(UNITS)}; got {unit!r}")
    if data_provenance not in PROVENANCES:
        raise ValueError(f"data_provenance must be one of {', '.join(PROVENANCES)}; got {data_provenance!r}")
    a, bad_a = _finite(a_values)
    b, bad_b = _finite(b_values)
    n = {"n_a": len(a), "n_b": len(b), "mean_a": sum(a) / len(a) if a else None,
         "mean_b": sum(b) / len(b) if b else None, "unit": unit,
         "excluded_a": bad_a, "excluded_b": bad_b}  # also when not assessable
    early = _unassessable(data_provenance, preset, epochs, finished, unfinished, a, b, bad_a, bad_b, n)
    if early is not None:
        return early
    g = _Gap.of(a, b, bad_a, bad_b, higher_is_better, unit, data_provenance, preset, epochs, n)
    if len(a) == 1 or len(b) == 1:
        return _one_seed_rule(g, a, b, preset, p_holm)
    return _welch_rule(g, a, b, higher_is_better, p_holm)


def _unassessable(provenance: str, preset: str, epochs: int | None, finished: bool,
                  unfinished: Sequence[Progress], a: list[float], b: list[float], bad_a: int, bad_b: int,
                  n: dict) -> Verdict | None:
    """Rows 1 and 2 of the rule table (and no values at all): the verdict, or None to go on."""
    if provenance == "synthetic":
        return Verdict("not_assessable", "not assessable: synthetic data", "无法判断：合成数据", 1, **n)
    if provenance == "unknown":
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
        if bad_a or bad_b:
            side = [w for w, bad, ok in (("A", bad_a, a), ("B", bad_b, b)) if bad and not ok]
            return not_assessable(f"every seed of {' and '.join(side)} diverged",
                                  f"{'、'.join(side)} 的每个种子都发散了", **n)
        return not_assessable("no result yet", "尚无结果", **n)
    return None


@dataclass
class _Gap:
    """The gap in the claimed direction and the words every verdict line shares."""

    gap: float            # in display units (points, or loss), positive = as the paper claims
    text_en: str
    text_zh: str
    where_en: str         # the data and recipe qualifier, excluded seeds
    where_zh: str
    scale: float          # input unit -> display unit
    accuracy: bool
    sigma: float | None   # the published seed noise in the input unit (accuracies only)
    nums: dict

    @classmethod
    def of(cls, a, b, bad_a, bad_b, higher_is_better, unit, provenance, preset, epochs, n) -> "_Gap":
        diff = n["mean_a"] - n["mean_b"]
        scale = _TO_DISPLAY[unit]
        gap = (diff if higher_is_better else -diff) * scale
        where_en, where_zh = _where(provenance, preset, epochs)
        excl_en, excl_zh = _excluded_text(bad_a, bad_b)
        accuracy = unit != "loss"
        return cls(gap, _gap_text(gap, unit, "en"), _gap_text(gap, unit, "zh"), where_en + excl_en,
                   where_zh + excl_zh, scale, accuracy, SIGMA_PUB_PP / scale if accuracy else None,
                   dict(gap=gap, diff=diff, **n))

    def verdict(self, status: str, row: int, en: str, zh: str, tail_en: str = "", tail_zh: str = "") -> Verdict:
        """``<en> : <gap><tail>`` in both languages; "not_shown" always reads "against the claim"."""
        if status == "not_shown":
            tail_en, tail_zh = ", against the claim", "，与论文方向相反"
        return Verdict(status, f"{en}: {self.text_en}{tail_en}", f"{zh}：{self.text_zh}{tail_zh}", row, **self.nums)


def _one_seed_rule(g: _Gap, a: list[float], b: list[float], preset: str, p_holm: float | None) -> Verdict:
    """Row 3: one seed of at least one model, against the published seed noise (z-test)."""
    if len(a) == len(b) == 1:
        one_en, one_zh = "one seed" + g.where_en, "单个种子" + g.where_zh
        z_en, z_zh = one_en, one_zh
    else:   # the test is named only where it is made (not for a loss or the short preset)
        one_en, one_zh = f"{len(a)} vs {len(b)} seeds{g.where_en}", f"{len(a)} 对 {len(b)} 个种子{g.where_zh}"
        z_en = f"{len(a)} vs {len(b)} seeds, z-test on the published noise{g.where_en}"
        z_zh = f"{len(a)} 对 {len(b)} 个种子，基于公开种子噪声的 z 检验{g.where_zh}"
    if g.gap < 0 and (not g.accuracy or preset == "short"):
        return g.verdict("not_shown", 3, f"not shown ({one_en})", f"未体现（{one_zh}）")
    if not g.accuracy:
        return g.verdict("not_resolved", 3, f"direction only ({one_en})", f"仅方向（{one_zh}）",
                         "; no seed-to-seed noise is published for a loss", "；loss 没有公开的种子间噪声")
    if preset == "short":
        return g.verdict("not_resolved", 3, f"direction only ({one_en})", f"仅方向（{one_zh}）",
                         "; the published seed-to-seed noise is that of 200-epoch runs, not of this schedule",
                         "；公开的种子间噪声来自 200 个 epoch 的训练，不适用于此训练长度")
    observed = [math.sqrt(_var(xs)) for xs in (a, b) if len(xs) > 1]
    sig = max([g.sigma, *observed])
    se = sig * math.sqrt(1 / len(a) + 1 / len(b)) * g.scale          # in display points
    p = 1 - NormalDist().cdf(g.gap / se)
    g.nums.update(p=p, ci=(g.gap - Z_CI * se, g.gap + Z_CI * se), ci_basis="sigma_pub", p_holm=p_holm)
    margin = margin_pp(len(a), len(b), sig * g.scale)                 # = Z_ALPHA * se
    if g.gap < 0:
        return g.verdict("not_shown", 3, f"not shown ({z_en})", f"未体现（{z_zh}）")
    holm_en, holm_zh = _holm_text(p_holm)
    if (p if p_holm is None else p_holm) < ALPHA:
        return g.verdict("shown", 3, f"shown ({z_en}{holm_en})", f"成立（{z_zh}{holm_zh}）",
                         f", beyond the published seed noise of {margin:.2f}", f"，超过公开的种子噪声 {margin:.2f}")
    if g.gap > margin:
        tail_en, tail_zh = f", but not after Holm's correction{holm_en}", f"，但经 Holm 校正后不成立{holm_zh}"
    else:
        tail_en, tail_zh = f", not beyond {margin:.2f}", f"，未超过 {margin:.2f}"
    return g.verdict("within_noise", 3, f"within the published seed noise ({z_en})",
                     f"在公开的种子噪声之内（{z_zh}）", tail_en, tail_zh)


def _welch_rule(g: _Gap, a: list[float], b: list[float], higher_is_better: bool,
                p_holm: float | None) -> Verdict:
    """Row 4: two or more seeds of each model, Welch's t-test with the variance floor."""
    seeds_en = f"Welch, {len(a)} vs {len(b)} seeds{g.where_en}"
    seeds_zh = f"Welch 检验，{len(a)} 对 {len(b)} 个种子{g.where_zh}"
    floor = g.sigma ** 2 if g.accuracy else 0.0
    resolution = RESOLUTION_PP / g.scale if g.accuracy else 1e-4    # losses are reported at 4 decimals
    if not g.accuracy and max(_var(a), _var(b)) <= resolution ** 2:
        if g.gap < 0:
            return g.verdict("not_shown", 4, f"not shown ({seeds_en})", f"未体现（{seeds_zh}）")
        return g.verdict("not_resolved", 4, f"not resolved ({seeds_en}: no seed-to-seed spread)",
                         f"未能分辨（{seeds_zh}：种子之间没有差异）")
    p, df, se, _ = welch(a, b, a_higher=higher_is_better, var_floor=floor)
    from scipy import stats

    half = float(stats.t.ppf(0.975, df)) * se * g.scale
    g.nums.update(p=p, ci=(g.gap - half, g.gap + half), ci_basis="welch", p_holm=p_holm)
    pt = p_text(p)
    holm_en, holm_zh = _holm_text(p_holm)
    if g.gap < 0:
        return g.verdict("not_shown", 4, f"not shown ({pt}, {seeds_en})", f"未体现（{pt}，{seeds_zh}）")
    if (p if p_holm is None else p_holm) < ALPHA:
        return g.verdict("shown", 4, f"shown ({pt}{holm_en}, {seeds_en})", f"成立（{pt}{holm_zh}，{seeds_zh}）")
    return g.verdict("not_resolved", 4, f"not resolved ({pt}{holm_en}, {seeds_en})",
                     f"未能分辨（{pt}{holm_zh}，{seeds_zh}）")


def _where(provenance: str, preset: str, epochs: int | None) -> tuple[str, str]:
    """The data and recipe qualifiers of a verdict line."""
    en = " on a non-canonical CIFAR-10 copy" if provenance == "noncanonical" else ""
    zh = "，非标准 CIFAR-10 副本" if provenance == "noncanonical" else ""
    if preset == "short":
        en += f", at {epochs or 20} epochs"
        zh += f"，{epochs or 20} 个 epoch 时"
    return en, zh


def _excluded_text(bad_a: int, bad_b: int) -> tuple[str, str]:
    parts = [(f"{k} diverged seed{'s' if k > 1 else ''} of {w} excluded", f"排除 {w} 的 {k} 个发散种子")
             for w, k in (("A", bad_a), ("B", bad_b)) if k]
    return "".join(f"; {e}" for e, _ in parts), "".join(f"；{z}" for _, z in parts)


def _holm_text(p_holm: float | None) -> tuple[str, str]:
    if p_holm is None:
        return "", ""
    t = p_text(p_holm).removeprefix("p")
    return f", Holm p{t}", f"，Holm 校正 p{t}"


compare.__doc__ = compare.__doc__.replace("{RULE_TABLE}", rule_table("en").replace("\n", "\n    "))


