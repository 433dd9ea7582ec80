"""The one rule table (resnet_nb.analysis.verdicts): every row on summaries of hand-built run dirs,
the Welch test against a hand computation and scipy, one error rate, intervals, diverged seeds,
unequal seed counts, zero spread, Holm over the primary claims, and the table the report prints."""
from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path
from statistics import NormalDist

import pytest

from resnet_nb.analysis import claims, verdicts
from resnet_nb.analysis.aggregate import degradation_checks, summarize
from resnet_nb.analysis.claims import compare_models
from resnet_nb.analysis.verdicts import ONE_SEED_MARGIN_PP, compare
from resnet_nb.runs.rundir import atomic_write_json, list_runs
from resnet_nb.training.config import make_config

REAL = dict(data_provenance="canonical", preset="seed")


def write_run(root: Path, model: str, best: float, *, seed: int = 0, epochs: int = 4, done: int | None = None,
              preset: str = "seed", provenance: str = "canonical", final_loss: float = 0.05) -> None:
    """A run dir of run id ``r`` whose best test accuracy is ``best`` after ``done`` epochs."""
    done = epochs if done is None else done
    name = f"{model}-seed{seed}"
    cfg = make_config(preset, model=model, epochs=epochs, milestones=(max(1, epochs - 1),), seed=seed,
                      run_id="r", run_name=name, out_dir=str(root))
    d = root / "r" / name
    d.mkdir(parents=True)
    atomic_write_json(d / "config.json", {
        "config": asdict(cfg), "preset": preset, "environment": {}, "params": 1000,
        "dataset": {"provenance": provenance, "canonical": provenance == "canonical", "fingerprint": "ab" * 32},
        "status": "finished" if done == epochs else "running", "start_time": None, "end_time": None})
    atomic_write_json(d / "metrics.json", [
        {"epoch": e, "train_loss": final_loss + 0.1 * (done - e), "train_acc": 0.5, "test_loss": 1.0,
         "test_acc": best if e == done else best - 0.05, "lr": 0.1, "time": 1.0, "elapsed": float(e)}
        for e in range(1, done + 1)])


def summary_of(tmp_path: Path, deep: list[float], shallow: list[float], **kw) -> dict:
    """summary.json of plain56 (one run per seed, with these best accuracies) and plain20;
    ``kw``: write_run options for ``plain56``, ``plain20`` or ``all``."""
    for model, bests in (("plain56", deep), ("plain20", shallow)):
        for seed, best in enumerate(bests):
            write_run(tmp_path, model, best, seed=seed, **kw.get(model, {}), **kw.get("all", {}))
    return summarize(list_runs(tmp_path, "r"), "r", expected=["plain20", "plain56"])


def degradation(summary: dict) -> verdicts.Verdict:
    """Plain-56 tests worse than Plain-20 (the claim: A lower), on the best test accuracy
    (write_run makes it the last epoch's + 0.05: the rules do not depend on the metric)."""
    return compare_models(summary, "plain56", "plain20", "best_test_acc", higher_is_better=False)


def test_synthetic_data_is_never_assessable(tmp_path):
    v = degradation(summary_of(tmp_path, [0.50], [0.99], all={"provenance": "synthetic"}))
    assert (v.status, v.en, v.zh, v.rule) == ("not_assessable", "not assessable: synthetic data",
                                              "无法判断：合成数据", 1)
    assert not v.shown and v.mean_a == pytest.approx(0.50)  # the numbers are still there to print


def test_smoke_preset_names_preset_and_epochs(tmp_path):
    v = degradation(summary_of(tmp_path, [0.50], [0.99], all={"preset": "smoke", "epochs": 5}))
    assert (v.status, v.en, v.zh) == ("not_assessable", "not assessable: smoke preset, 5 epochs",
                                      "无法判断：smoke 预设，5 个 epoch")


def test_an_unfinished_run_is_named_with_its_epoch(tmp_path):
    v = degradation(summary_of(tmp_path, [0.80], [0.93], plain56={"epochs": 200, "done": 37},
                               plain20={"epochs": 200}))
    assert v.status == "not_assessable"
    assert v.en == "not assessable: Plain-56 unfinished at epoch 37 of 200"
    assert v.zh == "无法判断：Plain-56 未完成（第 37/200 轮）"


def test_a_missing_model_is_not_assessable(tmp_path):
    s = summary_of(tmp_path, [0.80], [0.93])
    v = compare_models(s, "resnet56", "plain56", "best_test_acc", higher_is_better=True)
    assert (v.status, v.en, v.zh) == ("not_assessable", "not assessable: ResNet-56 missing", "无法判断：缺少 ResNet-56")


@pytest.mark.parametrize("plain56, status, start", [
    (0.9027, "shown", "shown (one seed): +1.00 points, beyond the published seed noise of 0.63"),
    (0.9097, "within_noise", "within the published seed noise (one seed): +0.30 points, not beyond 0.63"),
    (0.9177, "not_shown", "not shown (one seed): -0.50 points, against the claim"),
])
def test_one_seed_is_judged_against_the_published_seed_noise(tmp_path, plain56, status, start):
    v = degradation(summary_of(tmp_path, [plain56], [0.9127]))
    assert (v.status, v.rule, v.n_a, v.n_b) == (status, 3, 1, 1)
    # the z-test on sigma_pub: p = 1 - Phi(gap / (0.27 sqrt 2)); shown exactly when p < 0.05
    gap = 100 * (0.9127 - plain56)
    assert v.p == pytest.approx(1 - NormalDist().cdf(gap / (0.27 * math.sqrt(2))), rel=1e-4)
    assert (v.p < 0.05) == (status == "shown")
    half = 1.959964 * 0.27 * math.sqrt(2)                              # 95 % interval on sigma_pub
    assert v.ci == pytest.approx((gap - half, gap + half), abs=1e-4) and v.ci_basis == "sigma_pub"
    assert v.en == start and v.shown == (status == "shown")
    assert v.gap == pytest.approx(100 * (0.9127 - plain56))
    assert {"shown": "成立", "within_noise": "在公开的种子噪声之内", "not_shown": "未体现"}[status] in v.zh


def test_one_error_rate_the_one_seed_margin_is_the_one_sided_z_at_alpha():
    assert verdicts.ALPHA == 0.05 and verdicts.Z_ALPHA == pytest.approx(1.6449, abs=1e-4)
    assert ONE_SEED_MARGIN_PP == pytest.approx(1.6449 * math.sqrt(2) * 0.27, abs=1e-4)
    assert f"{ONE_SEED_MARGIN_PP:.2f}" == "0.63" and verdicts.margin_pp(1, 1) == ONE_SEED_MARGIN_PP
    # either side of the margin, in percentage points and as fractions
    assert compare([90.64], [90.0], higher_is_better=True, unit="pp", **REAL).status == "shown"
    assert compare([0.9062], [0.9], higher_is_better=True, **REAL).status == "within_noise"


def test_one_seed_against_three_uses_the_larger_observed_spread():
    """1 vs 3 seeds: the 3 seeds' own sd (1.0 point) replaces sigma_pub, n = 1 and 3."""
    v = compare([0.9180], [0.900, 0.920, 0.910], higher_is_better=True, **REAL)
    margin = 1.6449 * 1.0 * math.sqrt(1 + 1 / 3)
    assert v.status == "within_noise" and v.gap == pytest.approx(0.80) and "not beyond 1.90" in v.en
    assert verdicts.margin_pp(1, 3, 1.0) == pytest.approx(margin, abs=1e-3) and "1 vs 3 seeds" in v.en
    # with three tight seeds the published noise stays the floor: sigma_pub sqrt(1 + 1/3)
    w = compare([0.9180], [0.9001, 0.9002, 0.9000], higher_is_better=True, **REAL)
    assert w.status == "shown" and w.p == pytest.approx(1 - NormalDist().cdf(1.79 / (0.27 * math.sqrt(4 / 3))), rel=1e-3)


def test_short_preset_one_seed_gives_the_direction_only_at_its_epochs():
    v = compare([0.80], [0.60], higher_is_better=True, data_provenance="noncanonical", preset="short", epochs=20)
    assert v.status == "not_resolved" and v.p is None and v.ci is None
    assert v.en.startswith("direction only (one seed on a non-canonical CIFAR-10 copy, at 20 epochs): +20.00")
    assert "noise is that of 200-epoch runs" in v.en and "20 个 epoch 时" in v.zh and "200 个 epoch" in v.zh
    w = compare([0.80, 0.81], [0.60, 0.62], higher_is_better=True, data_provenance="noncanonical", preset="short",
                epochs=20)
    assert w.status == "shown" and "at 20 epochs" in w.en and w.ci_basis == "welch"
    # two seeds against one: still no test is made on the short preset, so none is named
    u = compare([0.80, 0.81], [0.60], higher_is_better=True, data_provenance="noncanonical", preset="short", epochs=20)
    assert u.status == "not_resolved" and u.p is None
    assert u.en.startswith("direction only (2 vs 1 seeds on a non-canonical CIFAR-10 copy, at 20 epochs): ")
    assert "z-test" not in u.en and "z 检验" not in u.zh and u.zh.startswith("仅方向（2 对 1 个种子")


def test_a_noncanonical_copy_is_assessed_and_labelled(tmp_path):
    v = degradation(summary_of(tmp_path, [0.8769], [0.9127], all={"provenance": "noncanonical"}))
    assert v.status == "shown"
    assert v.en.startswith("shown (one seed on a non-canonical CIFAR-10 copy): +3.58 points")
    assert "非标准 CIFAR-10 副本" in v.zh


def test_one_seed_on_a_loss_gives_the_direction_only():
    v = compare([0.09], [0.01], higher_is_better=True, unit="loss", **REAL)
    assert v.status == "not_resolved" and v.en.startswith("direction only (one seed): +0.0800")
    assert compare([0.01], [0.09], higher_is_better=True, unit="loss", **REAL).status == "not_shown"


def test_several_seeds_use_a_one_sided_welch_test_checked_by_hand(tmp_path):
    a, b = [0.93, 0.94, 0.95], [0.90, 0.91, 0.92]  # ResNet-56 vs Plain-56 (claimed higher)
    for model, bests in (("resnet56", a), ("plain56", b)):
        for seed, best in enumerate(bests):
            write_run(tmp_path, model, best, seed=seed)
    s = summarize(list_runs(tmp_path, "r"), "r", expected=["plain56", "resnet56"])
    v = compare_models(s, "resnet56", "plain56", "best_test_acc", higher_is_better=True)
    # by hand: sample variances 1e-4 each, se = sqrt(1e-4/3 + 1e-4/3), t = 0.03 / se,
    # Welch-Satterthwaite df = 4; Student t with 4 df: P(T > t) = 1/2 - 3x/4 (1 - x^2/3), x = t/sqrt(4 + t^2)
    t = 0.03 / math.sqrt(2e-4 / 3)
    x = t / math.sqrt(4 + t * t)
    p = 0.5 - 0.75 * x * (1 - x * x / 3)
    assert t == pytest.approx(3.6742, abs=1e-4) and p == pytest.approx(0.010656, abs=1e-6)
    assert (v.status, v.rule, v.n_a, v.n_b) == ("shown", 4, 3, 3) and v.p == pytest.approx(p, rel=1e-6)
    assert v.en == "shown (p=0.011, Welch, 3 vs 3 seeds): +3.00 points" and v.zh.startswith("成立（p=0.011")
    # the 95 % Welch interval: gap +- t(0.975, 4) se, t(0.975, 4) = 2.776445
    half = 2.776445 * 100 * math.sqrt(2e-4 / 3)
    assert v.ci == pytest.approx((3 - half, 3 + half), abs=1e-3) and v.ci_basis == "welch"
    # the other direction of the claim gives the mirror p value, and says "not shown"
    w = compare(a, b, higher_is_better=False, **REAL)
    assert w.status == "not_shown" and w.p == pytest.approx(1 - p, rel=1e-6)


def test_welch_with_unequal_seeds_and_spreads_is_not_students_test():
    from scipy import stats
    a, b = [.9358, .9340, .9371], [.8769, .8650]
    p, df, _, _ = verdicts.welch(a, b, a_higher=True)
    assert p == pytest.approx(0.02673, abs=2e-5) and df == pytest.approx(1.046, abs=1e-3)
    assert p == pytest.approx(stats.ttest_ind(a, b, equal_var=False, alternative="greater").pvalue)
    student = stats.ttest_ind(a, b, equal_var=True, alternative="greater").pvalue
    assert student == pytest.approx(0.000386, abs=2e-6) and abs(p - student) > 0.02   # the two differ
    v = compare(a, b, higher_is_better=True, **REAL)          # A's variance floored at sigma_pub^2
    p_floor = verdicts.welch(a, b, a_higher=True, var_floor=0.0027 ** 2)[0]
    assert v.status == "shown" and v.p == pytest.approx(p_floor) and p_floor != pytest.approx(p)


def test_two_tiny_spreads_do_not_make_a_tenth_of_a_point_shown():
    """2 seeds each with a chance-tiny spread: the plain Welch p would be ~0.002; floored, it is not shown."""
    a, b = [0.9011, 0.9012], [0.9000, 0.9001]
    assert verdicts.welch(a, b, a_higher=True)[0] < 0.01
    v = compare(a, b, higher_is_better=True, **REAL)
    assert v.status == "not_resolved" and v.p > 0.3


def test_two_overlapping_seeds_are_not_resolved(tmp_path):
    v = degradation(summary_of(tmp_path, [0.905, 0.915], [0.912, 0.910]))
    assert (v.status, v.n_a, v.n_b) == ("not_resolved", 2, 2) and 0.05 < v.p < 0.5
    assert v.en.startswith(f"not resolved (p={v.p:.3f}, Welch, 2 vs 2 seeds)") and "未能分辨" in v.zh


def test_zero_spread_checks_the_sign_first_and_falls_back_to_the_published_noise():
    v = compare([0.9, 0.9], [0.8, 0.8], higher_is_better=True, **REAL)     # 10 points, sigma_pub with n = 2
    assert v.status == "shown" and v.p == pytest.approx(verdicts.welch([0.9, 0.9], [0.8, 0.8], a_higher=True,
                                                                           var_floor=0.0027 ** 2)[0])
    against = compare([0.8, 0.8], [0.9, 0.9], higher_is_better=True, **REAL)
    assert against.status == "not_shown" and "against the claim" in against.en
    eps = compare([0.9, 0.9 + 1e-16], [0.9, 0.9], higher_is_better=True, **REAL)   # no flip to p ~ 1e-16
    assert eps.status == "not_resolved" and eps.p == pytest.approx(0.5, abs=1e-6)
    loss = compare([0.1, 0.1], [0.2, 0.2], higher_is_better=False, unit="loss", **REAL)
    assert loss.status == "not_resolved" and "no seed-to-seed spread" in loss.en
    assert compare([0.3, 0.3], [0.2, 0.2], higher_is_better=False, unit="loss", **REAL).status == "not_shown"


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_diverged_seed_is_named_and_excluded(bad):
    v = compare([0.9, bad], [0.8, 0.81], higher_is_better=True, **REAL)
    assert (v.n_a, v.excluded_a, v.mean_a) == (1, 1, 0.9) and "1 diverged seed of A excluded" in v.en
    assert "发散种子" in v.zh and v.p is not None and math.isfinite(v.gap) and "inf" not in v.en
    every = compare([bad, bad], [0.8, 0.81], higher_is_better=True, **REAL)
    assert every.status == "not_assessable" and every.en == "not assessable: every seed of A diverged"


def test_holm_step_down_and_the_primary_claims():
    assert verdicts.holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": None}) == {
        "a": 0.03, "b": pytest.approx(0.06), "c": pytest.approx(0.06), "d": None}
    assert verdicts.holm({"a": 0.5, "b": 0.001}) == {"a": 0.5, "b": 0.002}
    assert claims.PRIMARY_CLAIMS == ("degradation_acc", "residual_fix_acc", "depth_gain_acc")
    assert all(claims.CLAIMS[k][2] == "last_test_acc" for k in claims.PRIMARY_CLAIMS)


def test_bad_arguments_say_what_is_allowed():
    with pytest.raises(ValueError, match="unit must be one of fraction, pp, loss"):
        compare([1], [0], higher_is_better=True, unit="percent", **REAL)
    with pytest.raises(ValueError, match="data_provenance must be one of"):
        compare([1], [0], higher_is_better=True, data_provenance="cifar10", preset="seed")


def test_machine_readable_verdict():
    d = compare([0.9127], [0.8769], higher_is_better=True, **REAL).as_dict()
    assert d["status"] in verdicts.STATUSES and d["shown"] is True and d["assessable"] is True
    assert set(d) >= {"status", "en", "zh", "p", "gap", "n_a", "n_b", "rule", "ci", "ci_basis", "p_holm",
                      "excluded_a", "excluded_b"}


def test_the_printed_table_is_the_docstring_table_and_has_both_languages():
    en, zh = verdicts.rule_table("en"), verdicts.rule_table("zh")
    doc = " ".join(verdicts.compare.__doc__.split())
    for line in en.splitlines():
        assert " ".join(line.split()) in doc
    assert len(en.splitlines()) == len(zh.splitlines()) == 2 + len(verdicts.RULES)
    assert "0.63" in en and "0.63" in zh and "Welch" in zh and "“无法判断：合成数据”" in zh and "Holm" in zh


def test_degradation_checks_use_the_rule_table(tmp_path):
    lines = degradation_checks(summary_of(tmp_path, [0.50], [0.99], all={"provenance": "synthetic"}))
    assert lines[0] == ("degradation: Plain-56 tests worse than Plain-20 (final-epoch test acc): "
                        "0.5000 vs 0.9900: not assessable: synthetic data")
    assert all("not assessable: synthetic data" in line for line in lines)


# ---- the verdicts of several seeds as a table, on constructed runs

def test_claims_table_clear_gap_no_gap_and_one_seed(tmp_path):
    """A clear gap over 3 seeds is shown with its p, interval and Holm p; equal means are not
    resolved; one seed of a model is z-tested on the published noise."""
    gap = summary_of(tmp_path / "gap", [0.88, 0.89, 0.90], [0.91, 0.92, 0.93])
    v = degradation(gap)
    assert v.status == "shown" and v.p == pytest.approx(0.0109, abs=5e-4)  # the hand value above
    table = claims.claims_table(gap, 20, 56)
    row = next(line for line in table.splitlines() if "tests worse (best" in line)
    assert "(secondary) | Plain-56 vs Plain-20 | 3/3 | 0.8900 | 0.9200 | +3.00 pp [+0.73, +5.27] | 0.011 |" in row
    primary = next(line for line in table.splitlines() if "tests worse (final" in line)
    assert "(primary)" in primary and "0.8900 | 0.9200" in primary   # write_run's last epoch is its best
    assert "| 0.011 (0.011) | shown (p=0.011, Holm p=0.011" in primary   # the only primary claim with a p
    none = summary_of(tmp_path / "none", [0.90, 0.92], [0.92, 0.90])
    v = degradation(none)
    assert v.status == "not_resolved" and v.p == pytest.approx(0.5) and v.gap == pytest.approx(0.0, abs=1e-9)
    one = summary_of(tmp_path / "one", [0.88], [0.91, 0.92])
    row = next(line for line in claims.claims_table(one, 20, 56, "zh").splitlines() if "测试更差（各轮最佳" in line)
    assert "| 1/2 |" in row and "]† |" in row and "成立（1 对 2 个种子，基于公开种子噪声的 z 检验）" in row


def test_claims_table_gives_the_verdict_the_widest_column(tmp_path):
    """pandoc sizes a wide pipe table's columns by the dashes of its rule line: with equal shares the
    verdict sentences wrap to a word per line."""
    table = claims.claims_table(summary_of(tmp_path, [0.88, 0.89], [0.91, 0.92]), 20, 56)
    rule = table.splitlines()[1].strip("|").split("|")
    shares = [cell.count("-") for cell in rule]
    assert len(rule) == len(table.splitlines()[0].strip("|").split("|")) == 8
    assert shares[-1] > sorted(shares)[-2] and rule[-1].startswith(":")   # the widest, left-aligned


def test_seed_values_judge_an_old_summary_mean_as_one_seed():
    old = {"best_test_acc": 0.9, "n_seeds": 3}                    # written before per_seed existed
    assert claims.seed_values(old, "best_test_acc") == [0.9]
    new = {"per_seed": [{"best_test_acc": 0.9}, {"best_test_acc": 0.8, "diverged": True}, {}]}
    got = claims.seed_values(new, "best_test_acc")
    assert got[0] == 0.9 and math.isnan(got[1]) and got[2] is None


def test_sweep_end_verdicts_agree_with_the_claims_in_both_directions(tmp_path):
    """Section 4.7's verdicts on the deepest vs shallowest net of a family are the claims table's."""
    from resnet_nb.analysis.literature import load_literature
    from resnet_nb.report.facts import _sweep

    def cmp_of(a, b, metric, higher):
        return compare_models(s, a, b, metric, higher_is_better=higher).as_dict()

    for name, plain, resnet in (("clear", ([0.9110, 0.9110], [0.8735, 0.8735]), ([0.9145, 0.9145], [0.9350, 0.9350])),
                                ("against", ([0.8735, 0.8735], [0.9110, 0.9110]), ([0.9350, 0.9350], [0.9145, 0.9145]))):
        for model, accs in (("plain20", plain[0]), ("plain56", plain[1]), ("resnet20", resnet[0]), ("resnet56", resnet[1])):
            for seed, acc in enumerate(accs):
                write_run(tmp_path / name, model, acc + 0.0001 * seed, seed=seed)   # last epoch = acc (+ a tiny spread)
        s = summarize(list_runs(tmp_path / name, "r"), "r")
        ends = _sweep(s, load_literature(), cmp_of)["ends"]
        judged = claims.paper_claims(s, 20, 56)
        assert ends["plain"]["verdict"]["status"] == judged["degradation_acc"].status == \
            ("shown" if name == "clear" else "not_shown")
        assert ends["resnet"]["verdict"]["status"] == judged["depth_gain_acc"].status == \
            ("shown" if name == "clear" else "not_shown")
        assert ends["plain"]["verdict"]["p"] == pytest.approx(judged["degradation_acc"].p)


def test_paired_depths_skip_a_depth_with_one_family():
    assert claims.paired_depths(["plain20", "plain56", "resnet20", "resnet56", "resnet110", "plain32"]) == (20, 56)
    assert claims.paired_depths(["plain20", "resnet20", "resnet110"]) is None


def test_the_published_seed_noise_is_the_literature_files():
    from resnet_nb.analysis.literature import load_literature, std_range

    assert std_range(load_literature(), "nabla0001")[1] == verdicts.SIGMA_PUB_PP
