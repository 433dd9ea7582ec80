"""The one rule table (resnet_nb.verdicts): every row on summaries of hand-built run dirs,
the Welch test against a hand computation, and the table the report prints."""
from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path

import pytest

from resnet_nb import verdicts
from resnet_nb.analysis import degradation_checks, summarize
from resnet_nb.config import make_config
from resnet_nb.runs import atomic_write_json, list_runs
from resnet_nb.verdicts import ONE_SEED_MARGIN_PP, Progress, compare, compare_models

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
    """Plain-56 tests worse than Plain-20 (the claim: A lower)."""
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
    (0.9027, "shown", "shown (one seed): +1.00 points, beyond the published seed noise of 0.76"),
    (0.9097, "within_noise", "within the published seed noise (one seed): +0.30 points, not beyond 0.76"),
    (0.9177, "not_shown", "not shown (one seed): -0.50 points, against the claim"),
])
def test_one_seed_is_judged_against_the_published_seed_noise(tmp_path, plain56, status, start):
    v = degradation(summary_of(tmp_path, [plain56], [0.9127]))
    assert (v.status, v.rule, v.n_a, v.n_b, v.p) == (status, 3, 1, 1, None)
    assert v.en == start and v.shown == (status == "shown")
    assert v.gap == pytest.approx(100 * (0.9127 - plain56))
    assert {"shown": "成立", "within_noise": "在公开的种子噪声之内", "not_shown": "未体现"}[status] in v.zh


def test_the_one_seed_margin_is_two_root_two_published_sigma():
    assert ONE_SEED_MARGIN_PP == pytest.approx(2 * math.sqrt(2) * 0.27) and f"{ONE_SEED_MARGIN_PP:.2f}" == "0.76"
    # either side of the margin, in percentage points and as fractions
    assert compare([90.77], [90.0], higher_is_better=True, unit="pp", **REAL).status == "shown"
    assert compare([0.9075], [0.9], higher_is_better=True, **REAL).status == "within_noise"


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
    # the other direction of the claim gives the mirror p value, and says "not shown"
    w = compare(a, b, higher_is_better=False, **REAL)
    assert w.status == "not_shown" and w.p == pytest.approx(1 - p, rel=1e-6)


def test_two_overlapping_seeds_are_not_resolved(tmp_path):
    v = degradation(summary_of(tmp_path, [0.905, 0.915], [0.912, 0.910]))
    assert (v.status, v.n_a, v.n_b) == ("not_resolved", 2, 2) and 0.05 < v.p < 0.5
    assert v.en.startswith(f"not resolved (p={v.p:.3f}, Welch, 2 vs 2 seeds)") and "未能分辨" in v.zh


def test_identical_seeds_have_no_spread_to_test_against():
    v = compare([0.9, 0.9], [0.8, 0.8], higher_is_better=True, **REAL)
    assert v.status == "not_resolved" and v.p is None and "no seed-to-seed spread" in v.en


def test_bad_arguments_say_what_is_allowed():
    with pytest.raises(ValueError, match="unit must be one of fraction, pp, loss"):
        compare([1], [0], higher_is_better=True, unit="percent", **REAL)
    with pytest.raises(ValueError, match="data_provenance must be one of"):
        compare([1], [0], higher_is_better=True, data_provenance="cifar10", preset="seed")


def test_machine_readable_verdict():
    d = compare([0.9127], [0.8769], higher_is_better=True, **REAL).as_dict()
    assert d["status"] in verdicts.STATUSES and d["shown"] is True and d["assessable"] is True
    assert set(d) >= {"status", "en", "zh", "p", "gap", "n_a", "n_b", "rule"}


def test_the_printed_table_is_the_docstring_table_and_has_both_languages():
    en, zh = verdicts.rule_table("en"), verdicts.rule_table("zh")
    doc = " ".join(verdicts.compare.__doc__.split())
    for line in en.splitlines():
        assert " ".join(line.split()) in doc
    assert len(en.splitlines()) == len(zh.splitlines()) == 2 + len(verdicts.RULES)
    assert "0.76" in en and "0.76" in zh and "Welch" in zh and "“无法判断：合成数据”" in zh


def test_degradation_checks_use_the_rule_table(tmp_path):
    lines = degradation_checks(summary_of(tmp_path, [0.50], [0.99], all={"provenance": "synthetic"}))
    assert lines[0] == ("degradation: Plain-56 tests worse than Plain-20 (best test acc): "
                        "0.5000 vs 0.9900: not assessable: synthetic data")
    assert all("not assessable: synthetic data" in line for line in lines)


# ---- issue 12: the verdicts of several seeds as a table, on constructed runs

def test_claims_table_clear_gap_no_gap_and_one_seed(tmp_path):
    """A clear gap over 3 seeds is shown with its Welch p; equal means are not resolved; one
    seed of a model has no p (the published seed noise decides)."""
    gap = summary_of(tmp_path / "gap", [0.88, 0.89, 0.90], [0.91, 0.92, 0.93])
    v = degradation(gap)
    assert v.status == "shown" and v.p == pytest.approx(0.0109, abs=5e-4)  # the hand value above
    row = next(line for line in verdicts.claims_table(gap, 20, 56).splitlines() if "tests worse (best" in line)
    assert "| Plain-56 vs Plain-20 | 3/3 | 0.8900 | 0.9200 | +3.00 pp | 0.011 | shown (p=0.011" in row
    none = summary_of(tmp_path / "none", [0.90, 0.92], [0.92, 0.90])
    v = degradation(none)
    assert v.status == "not_resolved" and v.p == pytest.approx(0.5) and v.gap == pytest.approx(0.0, abs=1e-9)
    one = summary_of(tmp_path / "one", [0.88], [0.91, 0.92])
    row = next(line for line in verdicts.claims_table(one, 20, 56, "zh").splitlines() if "测试更差（最佳" in line)
    assert "| 1/2 |" in row and "| n/a | 成立（单个种子）" in row  # 3.5 points > 0.76: shown, without p


def test_paired_depths_skip_a_depth_with_one_family():
    assert verdicts.paired_depths(["plain20", "plain56", "resnet20", "resnet56", "resnet110", "plain32"]) == (20, 56)
    assert verdicts.paired_depths(["plain20", "resnet20", "resnet110"]) is None


def test_the_published_seed_noise_is_the_literature_files():
    from resnet_nb.literature import load_literature, std_range

    assert std_range(load_literature(), "nabla0001")[1] == verdicts.SIGMA_PUB_PP
