"""Layer responses (resnet_nb.analysis.responses, paper Fig. 7): the std against a hand computation,
a measurement from hand-made run dirs with best.pth, the skip reason, and the report's
Fig. 7 section present or omitted."""
from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "report"))  # the report tests' run-dir writers
from test_report import facts_of, seed_like, write_run, write_summary  # noqa: E402

from resnet_nb.analysis import responses
from resnet_nb.models.resnet import build_model
from resnet_nb.report import render
from resnet_nb.runs.rundir import atomic_save, atomic_write_json, list_runs
from resnet_nb.training.config import make_config
from resnet_nb.training.prepare import prepare_data


def _trained_looking(name: str, shortcut: str = "A", seed: int = 0):
    """A tiny net with BN running statistics and affine parameters away from their defaults."""
    torch.manual_seed(seed)
    model = build_model(name, shortcut=shortcut)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.2, 1.5)
            m.bias.data.uniform_(-0.3, 0.3)
    return model.eval()


@pytest.mark.parametrize("name,shortcut", [("resnet8", "A"), ("plain8", "A"), ("resnet8", "B")])
def test_response_std_matches_a_hand_computation_with_hooks(name, shortcut, one_thread):
    model = _trained_looking(name, shortcut)
    images = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    names, stds = responses.response_stds(model, images, batch_size=3)  # batches of 3, 3, 2
    # the BN after each 3x3 conv, in forward order; option B's projection BN is not one of them
    assert names == ["bn1", "layer1.0.bn1", "layer1.0.bn2", "layer2.0.bn1", "layer2.0.bn2",
                     "layer3.0.bn1", "layer3.0.bn2"]
    outs = {}
    handles = [model.get_submodule(n).register_forward_hook(
        lambda _m, _i, out, n=n: outs.__setitem__(n, out.detach().double())) for n in names]
    with torch.no_grad():
        model(images)                                              # all 8 images at once
    for h in handles:
        h.remove()
    by_hand = [float(outs[n].std(unbiased=False)) for n in names]  # every element pooled
    assert stds == pytest.approx(by_hand, rel=1e-9)
    # the block's BN output is F's, before the addition: bn2 is the end of residual_branch
    block = model.layer2[0]
    with torch.no_grad():
        x = torch.relu(model.layer1(torch.relu(model.bn1(model.conv1(images)))))
        branch = block.residual_branch(x).double()
    assert stds[4] == pytest.approx(float(branch.std(unbiased=False)), rel=1e-9)


def _config(root, run_id, model, fake_cifar):
    return make_config("smoke", model=model, dataset="cifar10", data_root=str(fake_cifar), allow_noncanonical=True,
                       train_subset=200, test_subset=40, run_id=run_id, run_name=model, out_dir=str(root))


def _run(root, run_id, model, fake_cifar, best=True, data=None):
    """A finished run dir of ``model`` with a best.pth (a net of ``_trained_looking``)."""
    cfg = _config(root, run_id, model, fake_cifar)
    data = data or prepare_data(cfg)
    run_dir = root / run_id / model
    run_dir.mkdir(parents=True)
    atomic_write_json(run_dir / "config.json", {"config": asdict(cfg), "preset": "smoke", "dataset": data.info,
                                               "status": "finished", "best_epoch": 3 if best else None})
    atomic_write_json(run_dir / "metrics.json", [])
    net = None
    if best:
        net = _trained_looking(model)
        atomic_save({"model": net.state_dict(), "config": asdict(cfg), "epoch": 3, "test_acc": 0.5,
                     "normalization": {}}, run_dir / "best.pth")
    return run_dir, net, data


def test_layer_responses_of_hand_made_run_dirs(tmp_path, fake_cifar, one_thread):
    runs, figs = tmp_path / "exp", tmp_path / "fig"
    _, net, data = _run(runs, "r1", "plain8", fake_cifar)
    _run(runs, "r1", "resnet8", fake_cifar, data=data)
    _run(runs, "r1", "resnet14", fake_cifar, best=False, data=data)  # no best.pth: listed, not measured
    out = responses.layer_responses(runs, "r1", figs)
    assert sorted(out["models"]) == ["plain8", "resnet8"] and out["not_measured"] == ["resnet14"]
    p8 = out["models"]["plain8"]
    assert p8["runs"][0]["checkpoint"] == "plain8/best.pth" and p8["runs"][0]["epoch"] == 3
    assert out["n_images"] == 40 and out["label"] == ("synthetic data, smoke preset: shows the code runs, not the "
                                                      "paper's result; each net's best.pth, 40 test images")
    # the run's test subset, normalised with the statistics of its training subset
    _, direct = responses.response_stds(net, data.normalize(data.test_x))
    assert p8["std"] == pytest.approx(direct, rel=1e-9)
    c = out["comparisons"]["by_depth"][0]
    assert c["depth"] == 8 and c["layers"] == 7 and 0 <= c["smaller_layers"] <= 7
    # synthetic data: the claims table's "not assessable" leads, and no verdict word follows
    assert c["caveat"] == {"en": "not assessable: synthetic data", "zh": "无法判断：合成数据"}
    line = responses.comparison_lines(out)[1]
    assert line.startswith("8 layers: not assessable: synthetic data. In this run only, the layer responses of "
                           "ResNet-8 against those of Plain-8: median ratio") and "(no verdict;" in line
    assert not any(w in line for w in ("smaller than", "larger than", "within ±10 %", "neither clearly"))
    stored = json.loads((figs / "r1" / responses.RESPONSES_JSON).read_text())
    assert stored["definition"] == responses.STD_DEFINITION and (figs / "r1" / responses.RESPONSES_FIGURE).is_file()
    assert responses.comparison_lines(out)[0] == f"data: {out['label']}"
    # another dataset than the run recorded: refused
    rec = json.loads((runs / "r1" / "plain8" / "config.json").read_text())
    rec["dataset"]["fingerprint"] = "0" * 64
    atomic_write_json(runs / "r1" / "plain8" / "config.json", rec)
    with pytest.raises(ValueError, match="differ from the data .* was trained on"):
        responses.measure_run(list_runs(runs, "r1")[0])


def test_fig7_is_skipped_without_best_pth_of_both_families(tmp_path, fake_cifar):
    runs, figs = tmp_path / "exp", tmp_path / "fig"
    _, _, data = _run(runs, "r1", "plain8", fake_cifar)
    _run(runs, "r1", "resnet8", fake_cifar, best=False, data=data)
    reason = responses.skip_reason(list_runs(runs, "r1"))
    assert reason == "Fig. 7 needs best.pth of both families (plain and ResNet); best.pth found for Plain-8"
    assert responses.layer_responses(runs, "r1", figs) == {"skipped": reason}
    assert not (figs / "r1" / responses.RESPONSES_JSON).exists()


def _summary(models, provenance="canonical", preset="seed", status=None):
    """A summary.json record of finished runs of ``models`` (``status``: model -> another status)."""
    status = status or {}
    return {"preset": preset, "dataset": {"provenance": provenance},
            "models": {m: {"status": status.get(m, "finished"), "last_epoch": 4 if m not in status else 2,
                           "epochs_planned": 4} for m in models}}


def test_comparisons_by_hand():
    models = {"plain20": {"std": [2.0, 4.0, 1.0]}, "resnet20": {"std": [1.0, 1.0, 2.0]},
              "resnet56": {"std": [0.5, 0.5, 0.6]}}
    c = responses.response_comparisons(models, _summary(models))
    assert c["by_depth"] == [{"depth": 20, "plain": "Plain-20", "resnet": "ResNet-20", "median_ratio": 0.5,
                              "smaller_layers": 2, "layers": 3, "plain_median": 2.0, "resnet_median": 1.0,
                              "verdict": "smaller", "seeds": [1, 1], "caveat": None}]
    assert c["resnet_depth"] == {"depths": [20, 56], "median_std": [1.0, 0.5], "trend": "smaller", "seeds": [1, 1],
                                 "caveat": None}
    lines = responses.comparison_lines({"label": "x", "comparisons": c})
    assert lines[1].startswith("20 layers: the layer responses of ResNet-20 are smaller than those of Plain-20: "
                               "median ratio ResNet/plain over the layers 0.5, smaller in 2 of 3 layers (")
    assert "one seed per net" in lines[1] and "deeper ResNets respond less" in lines[2]


@pytest.mark.parametrize("provenance, preset, status, caveat", [
    ("synthetic", "smoke", None, "not assessable: synthetic data"),
    ("canonical", "smoke", None, "not assessable: smoke preset, 4 epochs"),
    ("canonical", "seed", {"resnet20": "paused"}, "not assessable: ResNet-20 unfinished at epoch 2 of 4"),
    ("noncanonical", "seed", {"plain20": "failed"}, "not assessable: Plain-20 unfinished at epoch 2 of 4"),
])
def test_runs_that_carry_no_result_lead_with_the_claims_tables_caveat(provenance, preset, status, caveat):
    """The claims table's rule (verdicts.recipe_verdict) decides; the numbers stay, the verdict goes."""
    models = {"plain20": {"std": [2.0, 4.0, 1.0]}, "resnet20": {"std": [1.0, 1.0, 2.0]},
              "resnet56": {"std": [0.5, 0.5, 0.6]}}
    summary = _summary(models, provenance, preset, status)
    c = responses.response_comparisons(models, summary)
    assert c["by_depth"][0]["verdict"] == "smaller" and c["by_depth"][0]["caveat"]["en"] == caveat
    en = responses.comparison_lines({"label": "x", "comparisons": c})
    assert en[1] == (f"20 layers: {caveat}. In this run only, the layer responses of ResNet-20 against those of "
                     f"Plain-20: median ratio ResNet/plain over the layers 0.5, smaller in 2 of 3 layers (no verdict; "
                     f"one seed per net, so there is no seed-to-seed spread to judge the difference against; "
                     f"the paper: ResNets respond less).")
    zh = responses.depth_sentence(c["by_depth"][0], "zh")
    assert zh.startswith(f"20 层：{c['by_depth'][0]['caveat']['zh']}。仅就本次运行而言") and "不作判定" in zh
    if status != {"plain20": "failed"}:       # the trend of the ResNets: caveated by the same rule
        assert en[2].startswith("Median response std of the ResNets: not assessable: ") and "respond less" not in en[2]
    from resnet_nb.analysis.claims import compare_models
    assert not compare_models(summary, "resnet20", "plain20", "best_test_acc", higher_is_better=True).assessable


@pytest.mark.parametrize("ratio, resnet, en_tail, zh_tail", [
    (0.944, [0.944] * 18 + [1.2], ", though smaller in 18 of 19 layers", "，但 19 层中有 18 层更小"),
    (1.05, [1.05] * 19, ", though larger in 19 of 19 layers", "，但 19 层中有 19 层更大"),
    (1.0, [0.98] * 9 + [1.0] + [1.02] * 9, "; smaller in 9 of 19 layers", "；19 层中有 9 层更小"),
])
def test_within_the_band_the_words_and_the_layer_counts_agree(ratio, resnet, en_tail, zh_tail):
    """A median ratio within ±10 % reads "within ±10 % of", never "about the same" beside a
    majority of smaller layers."""
    models = {"plain20": {"std": [1.0] * 19}, "resnet20": {"std": resnet}}
    c = responses.response_comparisons(models, _summary(models))["by_depth"][0]
    assert c["verdict"] == "about the same" and c["median_ratio"] == pytest.approx(ratio)
    en = responses.depth_sentence(c)
    assert en.startswith(f"20 layers: the layer responses of ResNet-20 are within ±10 % of those of Plain-20 "
                         f"(median ratio ResNet/plain over the layers {ratio:.3g}){en_tail} (")
    assert "about the same" not in en
    assert responses.depth_sentence(c, "zh").startswith(
        f"20 层：ResNet-20 的层响应与 Plain-20 相差在 ±10 % 以内（各层 ResNet/plain 比值的中位数为 {ratio:.3g}）{zh_tail}（")


@pytest.mark.parametrize("ratio, smaller, layers, verdict", [
    (0.987, 12, 19, "about the same"),   # a 1.3 % difference is no difference
    (1.05, 2, 19, "about the same"),
    (0.5, 17, 19, "smaller"),            # below the band, and most layers agree
    (0.5, 10, 19, "mixed"),              # below the band, but only about half of the layers
    (1.3, 0, 19, "larger"),
    (1.3, 12, 19, "mixed"),
    (0.9, 19, 19, "about the same"),     # the band's edge belongs to the band
])
def test_family_verdict_needs_the_band_and_a_clear_majority(ratio, smaller, layers, verdict):
    assert responses.family_verdict(ratio, smaller, layers) == verdict


@pytest.mark.parametrize("medians, trend", [
    ([1.0], None),
    ([1.0, 0.99, 0.98], "about the same"),
    ([1.0, 0.8, 0.6], "smaller"),
    ([1.0, 1.05, 0.7], "smaller"),       # a step up within the band does not break the trend
    ([1.0, 1.3, 0.7], "mixed"),
    ([1.04, 1.02, 1.12, 1.17, 1.32], "larger"),
    ([1.0, 1.3, 1.0], "mixed"),
])
def test_depth_trend_with_the_same_band(medians, trend):
    assert responses.depth_trend(medians) == trend


def test_report_words_follow_the_verdicts_and_name_the_seeds(tmp_path):
    """A ratio of 0.987 reads "about the same" in both reports, and the seeds are named."""
    runs, figs = seed_like(tmp_path)
    for r in list_runs(runs, "r1"):
        (tmp_path / "exp" / "r1" / r["config"]["run_name"] / "best.pth").write_bytes(b"")
    models = {m: {"std": v, "n_seeds": n, "runs": [{"run_dir": m, "epoch": None}]} for m, v, n in (
        ("plain20", [1.0, 1.0, 1.0], 1), ("resnet20", [0.987, 0.987, 1.2], 1),
        ("plain56", [1.0, 1.0, 1.0], 3), ("resnet56", [1.3, 1.3, 1.3], 3))}
    old = responses.response_comparisons(models, _summary(models))  # a JSON of the old rule: the report redecides
    for c in old["by_depth"]:
        c.pop("verdict")
    atomic_write_json(figs / "r1" / responses.RESPONSES_JSON, {
        "dataset": {"provenance": "canonical"}, "preset": "seed", "n_images": 10000, "models": models,
        "label": "CIFAR-10, seed preset; each net's best.pth, 10,000 test images", "not_measured": [],
        "comparisons": old})
    facts = facts_of(runs, figs)
    en, zh = render.render_markdown(facts, "en"), render.render_markdown(facts, "zh")
    assert "- 20 layers: the layer responses of ResNet-20 are within ±10 % of those of Plain-20 (median " \
           "ratio ResNet/plain over the layers 0.987), though smaller in 2 of 3 layers" in en
    assert "one seed per net, so there is no seed-to-seed spread" in en
    assert "the layer responses of ResNet-56 are larger than those of Plain-56: median ratio ResNet/plain over " \
           "the layers 1.3, larger in 3 of 3 layers" in en
    assert "stds averaged over 3 seeds per net" in en
    assert "deeper ResNets respond more (changes within ±10 % count as the same; stds averaged over 1 to 3 " \
           "seeds per net" in en
    assert "ResNet-20 的层响应与 Plain-20 相差在 ±10 % 以内" in zh and "ResNet-56 的层响应大于 Plain-56" in zh
    assert "更深的 ResNet 响应更大" in zh and "每个网络只有一个种子" in zh
    assert "about the same" not in en.split("## 4.8")[1].split("# 5 ")[0] and "not assessable" not in en.split("## 4.8")[1].split("# 5 ")[0]


def test_report_fig7_section_present_and_omitted(tmp_path):
    runs, figs = seed_like(tmp_path)
    facts = facts_of(runs, figs)
    en, zh = render.render_markdown(facts, "en"), render.render_markdown(facts, "zh")
    assert "## 4.8 Layer responses" in en and "Omitted: Fig. 7 needs best.pth of both families" in en
    assert "从略：图 7 需要两类网络" in zh and "resnet_layer_responses_fig7.png" not in en
    # a measurement on record (hand-written JSON; the seed runs have no best.pth, so touch them)
    for r in list_runs(runs, "r1"):
        (tmp_path / "exp" / "r1" / r["config"]["run_name"] / "best.pth").write_bytes(b"")
    models = {m: {"std": v, "n_seeds": 1, "runs": [{"run_dir": m, "epoch": None}]} for m, v in (
        ("plain20", [2.0, 4.0, 1.0]), ("plain56", [3.0, 3.0, 3.0]),
        ("resnet20", [1.0, 1.0, 2.0]), ("resnet56", [0.5, 0.5, 0.6]))}
    atomic_write_json(figs / "r1" / responses.RESPONSES_JSON, {
        "dataset": {"provenance": "canonical"}, "preset": "seed", "n_images": 10000, "models": models,
        "label": "CIFAR-10, seed preset; each net's best.pth, 10,000 test images", "not_measured": [],
        "comparisons": responses.response_comparisons(models, _summary(models))})
    facts = facts_of(runs, figs)
    en, zh = render.render_markdown(facts, "en"), render.render_markdown(facts, "zh")
    assert "- 20 layers: the layer responses of ResNet-20 are smaller than those of Plain-20: median ratio " \
           "ResNet/plain over the layers 0.5, smaller in 2 of 3 layers" in en
    assert "Here the same measurement is made on this run's trained networks" in en
    assert "ResNet-20 1, ResNet-56 0.5: deeper ResNets respond less" in en and "not the paper's result" not in en
    assert "ResNet-20 的层响应小于 Plain-20" in zh and "更深的 ResNet 响应更小" in zh
    assert "Omitted: Fig. 7" not in en


def test_report_caveats_fig7_of_a_paused_cifar_run_as_its_claims_table_does(tmp_path):
    """CIFAR-10, seed preset, ResNet-20 paused at epoch 2 of 4: the claims table says "not
    assessable" for ResNet-20 vs Plain-20, and so does Fig. 7's line, first, without a verdict."""
    runs, figs = tmp_path / "exp", tmp_path / "fig"
    for model, best, loss in (("plain20", 0.9127, 0.010), ("plain56", 0.8769, 0.090),
                              ("resnet20", 0.9144, 0.008), ("resnet56", 0.9358, 0.002)):
        paused = model == "resnet20"
        write_run(runs, "r1", model, best, loss, done=2 if paused else None, status="paused" if paused else None)
        (runs / "r1" / model / "best.pth").write_bytes(b"")
    write_summary(runs, figs, "r1")
    models = {m: {"std": v, "n_seeds": 1, "runs": [{"run_dir": m, "epoch": None}]} for m, v in (
        ("plain20", [1.0] * 19), ("resnet20", [0.944] * 18 + [1.2]),
        ("plain56", [3.0] * 55), ("resnet56", [0.5] * 55))}
    atomic_write_json(figs / "r1" / responses.RESPONSES_JSON, {
        "dataset": {"provenance": "canonical"}, "preset": "seed", "n_images": 10000, "models": models,
        "label": "CIFAR-10, seed preset; each net's best.pth, 10,000 test images", "not_measured": []})
    facts = facts_of(runs, figs)
    en, zh = render.render_markdown(facts, "en"), render.render_markdown(facts, "zh")
    caveat = "not assessable: ResNet-20 unfinished at epoch 2 of 4"
    assert f"| {caveat} |" in facts["claims_tables"]["en"]           # the claims table's own words
    assert f"- 20 layers: {caveat}. In this run only, the layer responses of ResNet-20 against those of " \
           f"Plain-20: median ratio ResNet/plain over the layers 0.944, smaller in 18 of 19 layers (no verdict;" in en
    assert "- 56 layers: the layer responses of ResNet-56 are smaller than those of Plain-56" in en  # both finished
    assert f"- Median response std of the ResNets: {caveat}. In this run only: ResNet-20 0.944, ResNet-56 0.5" in en
    assert "- 20 层：无法判断：ResNet-20 未完成（第 2/4 轮）。仅就本次运行而言" in zh
