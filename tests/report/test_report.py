"""The report's facts and sentences come from the run files: verdicts, missing and running
runs, provenance, refusals; and a missing PDF engine still leaves DOCX and HTML.

Run dirs are written by hand in the run-directory contract (no training), summaries by the real
``resnet_nb.analysis.aggregate.summarize``, so these tests take a few seconds.
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict
from pathlib import Path

import pytest

from resnet_nb.analysis import verdicts
from resnet_nb.analysis.aggregate import summarize
from resnet_nb.models.resnet import SEED_MODELS
from resnet_nb.report import render
from resnet_nb.runs.rundir import atomic_write_json, list_runs, lock_run_dir
from resnet_nb.training.config import make_config

PARAMS = {20: 269_722, 56: 853_018}
FINGERPRINT = "ab" * 32


def write_run(root: Path, run_id: str, model: str, best: float, final_loss: float, *,
              epochs: int = 4, done: int | None = None, preset: str = "seed",
              provenance: str = "canonical", status: str | None = None, seed: int | None = None) -> Path:
    """A run dir whose test accuracy peaks at ``best`` at epoch ``done - 1`` and stays there at the
    last epoch (the verdicts compare the final epoch, Table 4-1 shows the best), and whose
    training loss ends at ``final_loss``."""
    done = epochs if done is None else done
    name = model if seed is None else f"{model}-seed{seed}"
    cfg = make_config(preset, model=model, epochs=epochs, milestones=(max(1, epochs - 1),),
                      run_id=run_id, out_dir=str(root), seed=seed or 0, run_name=name)
    run_dir = root / run_id / name
    run_dir.mkdir(parents=True)
    metrics = []
    for e in range(1, done + 1):
        acc = best if e >= max(1, done - 1) else round(best - 0.01 * (done - e + 1), 4)
        metrics.append({"epoch": e, "iteration": 10 * e, "train_loss": final_loss + 0.3 * (done - e),
                        "train_acc": 0.5, "test_loss": 1.0, "test_acc": acc, "lr": 0.1,
                        "time": 60.0, "elapsed": 60.0 * e})
    depth = int(model.lstrip("plainresnet"))
    t0 = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.timezone.utc)
    finished = status is None and done == epochs
    atomic_write_json(run_dir / "config.json", {
        "config": asdict(cfg), "preset": preset,
        "environment": {"python": "3.11.7", "torch": "2.14.1", "torchvision": "0.29.1", "cuda": "13.0",
                        "cudnn": 91002, "cuda_available": True, "device": "cuda",
                        "device_name": "NVIDIA H200", "cpu_model": "AMD EPYC", "cpu_count": 16,
                        "ram_gb": 125.0, "os": "Linux-6.1-x86_64", "git_commit": "0123456789abcdef",
                        "git_dirty": False},
        "dataset": {"provenance": provenance, "canonical": provenance == "canonical",
                    "fingerprint": FINGERPRINT, "md5_mismatches": [] if provenance == "canonical" else ["test_batch"],
                    "n_train": 50000, "n_test": 10000, "n_train_used": 50000, "n_test_used": 10000, "n_val": 0},
        "status": status or ("finished" if finished else "running"),
        "start_time": t0.isoformat(), "end_time": (t0 + dt.timedelta(hours=1)).isoformat() if finished else None,
        "params": PARAMS.get(depth, 1000)})
    atomic_write_json(run_dir / "metrics.json", metrics)
    return run_dir


def write_summary(runs_root: Path, figures_root: Path, run_id: str, expected=SEED_MODELS) -> dict:
    summary = summarize(list_runs(runs_root, run_id), run_id, expected, figures={})
    (figures_root / run_id).mkdir(parents=True, exist_ok=True)
    atomic_write_json(figures_root / run_id / "summary.json", summary)
    return summary


def seed_like(tmp_path: Path, run_id: str = "r1", **kw) -> tuple[Path, Path]:
    """The seed report's four runs with its best accuracies (plain56 degrades)."""
    runs, figs = tmp_path / "exp", tmp_path / "fig"
    for model, best, loss in (("plain20", 0.9127, 0.010), ("plain56", 0.8769, 0.090),
                              ("resnet20", 0.9144, 0.008), ("resnet56", 0.9358, 0.002)):
        write_run(runs, run_id, model, best, loss, **kw)
    write_summary(runs, figs, run_id)
    return runs, figs


def facts_of(runs: Path, figs: Path, run_id: str = "r1") -> dict:
    return render.collect_facts(render.load_inputs(run_id, runs, figs), str(runs), str(figs))


def test_degradation_verdict_and_sentences_are_computed(tmp_path):
    runs, figs = seed_like(tmp_path)
    facts = facts_of(runs, figs)
    c = facts["cmp"]
    assert c["degradation_acc"]["status"] == "shown" and (c["degradation_acc"]["va"], c["degradation_acc"]["vb"]) == (0.8769, 0.9127)
    assert c["residual_fix_acc"]["status"] == c["depth_gain_acc"]["status"] == "shown"
    # one seed: a loss has no published seed noise, so its gap gives the direction only
    assert c["degradation_loss"]["status"] == "not_resolved" and not facts["verdict"]["optimisation"]
    assert facts["verdict"]["overall"] == "reproduced" and facts["missing"] == []
    en, zh = render.render_markdown(facts, "en"), render.render_markdown(facts, "zh")
    assert "Plain-56 final-epoch test accuracy 0.8769 < Plain-20 0.9127 (Plain-20 ahead by +3.58 percentage points; 95 % CI " \
           "[+2.83, +4.33], on the published noise); verdict: **shown (one seed, Holm p<0.001): +3.58 points, " \
           "beyond the published seed noise of 0.63**" in en
    assert "Best of epochs (secondary): 0.8769 < 0.9127 (shown (one seed)" in en
    assert "Plain-56 final training loss 0.0900 > Plain-20 0.0100; verdict: **direction only (one seed)" in en
    assert "ResNet-56 final-epoch test accuracy 0.9358 > ResNet-20 0.9144" in en
    assert "the deeper residual network gains from its depth" in en
    assert "not overfitting, as in the paper" not in en and "优化困难而不是过拟合" not in zh  # needs the loss shown too
    assert ("| Deeper plain net tests worse (Plain-56 vs Plain-20, final-epoch test acc; primary) | shown (one seed, "
            "Holm p<0.001): +3.58 points") in en
    assert "Plain-56 的最后一轮测试精度 0.8769 < Plain-20 的 0.9127（Plain-20 领先 +3.58 个百分点；95 % 区间 [+2.83, +4.33]" in zh and "判定：**成立（单个种子，Holm 校正 p<0.001）：+3.58" in zh
    assert "Data: the canonical CIFAR-10" in en and "Synthetic" not in en.split("---")[1]
    # tables, environment, hyperparameters and references come from the files
    assert "| ResNet-56 | 0.9358 | 3 | 6.42 |" in en and "NVIDIA H200" in en and "| `lr` | 0.1 |" in en
    assert "[@he2016deep]" in en and "::: {#refs}" in zh and "第四章 程序测试" in zh
    assert "ResNet-20, ResNet-56 (to 0.01M)" in en  # parameter counts checked against Table 6


def test_theory_probes_are_tabulated_and_compared(tmp_path):
    runs, figs = seed_like(tmp_path)
    def probe(depth, spread):
        return {"family": "x", "depth": depth, "n_seeds": 2, "conv_grad_norms_mean": [1.0, spread],
                "block_output_std_mean": [1.0, 0.5], "input_grad_norm_mean": 0.25}
    atomic_write_json(figs / "r1" / "theory_probes.json", {"parameters": {}, "results": [], "summary": {
        "plain56": probe(56, 5247.1), "resnet56": probe(56, 8.234)}})
    facts = facts_of(runs, figs)
    assert facts["theory"]["contrast"] == [{"depth": 56, "plain": "Plain-56", "resnet": "ResNet-56",
                                            "plain_spread": 5247.1, "resnet_spread": 8.234, "smaller": True}]
    facts["theory_figures"] = ["theory_grad_norm.png"]  # the table goes with the figures
    en, zh = render.render_markdown(facts, "en"), render.render_markdown(facts, "zh")
    assert "| Plain-56 | 2 | 5,247 | 0.5 | 0.25 |" in en
    assert "8.23 times the smallest in ResNet-56 and 5,247 times in Plain-56" in en
    assert "ResNet-56 中最大的层梯度是最小的 8.23 倍，Plain-56 中为 5,247 倍" in zh


def test_no_effect_is_said_when_the_data_do_not_show_it(tmp_path):
    runs, figs = tmp_path / "exp", tmp_path / "fig"
    for model, best, loss in (("plain20", 0.9000, 0.05), ("plain56", 0.9050, 0.04),
                              ("resnet20", 0.9100, 0.03), ("resnet56", 0.9100, 0.03)):
        write_run(runs, "r1", model, best, loss)
    write_summary(runs, figs, "r1")
    facts = facts_of(runs, figs)
    v = facts["verdict"]
    assert (v["degradation"], v["residual_fix"], v["depth_gain"], v["overall"]) == (
        "not_shown", "within_noise", "within_noise", "not_reproduced")
    en, zh = render.render_markdown(facts, "en"), render.render_markdown(facts, "zh")
    assert ("Plain-56 final-epoch test accuracy 0.9050 > Plain-20 0.9000 (Plain-20 ahead by -0.50 percentage points; 95 % CI "
            "[-1.25, +0.25], on the published noise); verdict: **not shown (one seed): -0.50 points, against the claim**") in en
    assert "This run does not show degradation (not shown (one seed)" in en
    assert "ResNet-56 final-epoch test accuracy 0.9100 = ResNet-20 0.9100" in en
    assert "**within the published seed noise (one seed): +0.00 points, not beyond 0.63**" in en
    assert "gains from its depth" not in en and "this run does not show the paper's claims" in en
    assert "本次运行没有体现 degradation（未体现（单个种子）" in zh and "在公开的种子噪声之内（单个种子）" in zh


def test_missing_models_build_with_what_exists_and_are_listed(tmp_path):
    runs, figs = tmp_path / "exp", tmp_path / "fig"
    write_run(runs, "r1", "plain20", 0.91, 0.01)
    write_run(runs, "r1", "resnet20", 0.92, 0.01)
    write_summary(runs, figs, "r1")
    facts = facts_of(runs, figs)
    assert facts["missing"] == ["Plain-56", "ResNet-56"] and facts["verdict"]["overall"] == "not_assessable"
    en, zh = render.render_markdown(facts, "en"), render.render_markdown(facts, "zh")
    assert "**Missing runs:** Plain-56, ResNet-56" in en and "| Plain-56 | missing |" in en
    assert "| not assessable: Plain-56 missing |" in en and "ResNet-56 and Plain-56 missing" in en
    assert "**缺失的运行：** Plain-56、ResNet-56" in zh and "无法判断：缺少 Plain-56" in zh


def test_a_run_in_progress_is_marked_with_its_last_epoch(tmp_path):
    runs, figs = tmp_path / "exp", tmp_path / "fig"
    for model in ("plain20", "plain56", "resnet20"):
        write_run(runs, "r1", model, 0.9, 0.05, epochs=10)
    write_run(runs, "r1", "resnet56", 0.8, 0.2, epochs=10, done=3)
    with lock_run_dir(runs / "r1" / "resnet56"):  # its training process is alive
        write_summary(runs, figs, "r1")
        facts = facts_of(runs, figs)
        assert [r["label"] for r in facts["in_progress"]] == ["ResNet-56"]
        en, zh = render.render_markdown(facts, "en"), render.render_markdown(facts, "zh")
        assert "**Incomplete runs:** ResNet-56 (running, last finished epoch 3 of 10)" in en
        assert "| running, epoch 3/10 |" in en
        assert "**not assessable: ResNet-56 unfinished at epoch 3 of 10**" in en  # its verdicts wait
        assert facts["verdict"]["overall"] == "incomplete" and facts["verdict"]["degradation"] == "within_noise"
        assert "ResNet-56（运行中，已完成第 3/10 轮）" in zh
        assert "still running at epoch 3 of 10" in en  # development log

        # the run goes on: the report re-runs the analysis instead of reporting a stale summary
        metrics_path = runs / "r1" / "resnet56" / "metrics.json"
        metrics = json.loads(metrics_path.read_text())
        atomic_write_json(metrics_path, metrics + [{**metrics[-1], "epoch": 4, "test_acc": 0.85}])
        inputs = render.load_inputs("r1", runs, figs)
        assert inputs["refreshed"] == ["resnet56"] and inputs["summary"]["models"]["resnet56"]["last_epoch"] == 4
        assert inputs["summary"]["missing"] == [] and (figs / "r1" / "resnet_train_loss.png").is_file()


def test_a_killed_run_is_interrupted_not_running(tmp_path):
    """config.json still says running, but no process holds the run dir's lock: the run was
    killed. The summary and the report say interrupted, and the development log does not
    call it still running; a summary exported while it ran is refreshed."""
    runs, figs = tmp_path / "exp", tmp_path / "fig"
    for model in ("plain20", "plain56", "resnet20"):
        write_run(runs, "r1", model, 0.9, 0.05, epochs=10)
    killed = write_run(runs, "r1", "resnet56", 0.8, 0.2, epochs=10, done=3)
    assert json.loads((killed / "config.json").read_text())["status"] == "running"
    with lock_run_dir(killed):  # exported while it trained
        assert write_summary(runs, figs, "r1")["models"]["resnet56"]["status"] == "running"
    facts = facts_of(runs, figs)  # its process is gone now
    row = facts["by_key"]["resnet56"]
    assert row["status"] == "interrupted" and not row["in_progress"] and row["incomplete"]
    saved = json.loads((figs / "r1" / "summary.json").read_text())["models"]["resnet56"]
    assert saved["status"] == "interrupted" and saved["per_seed"][0]["status"] == "interrupted"
    en = render.render_markdown(facts, "en")
    assert "still running" not in en and "ResNet-56 (interrupted, last finished epoch 3 of 10)" in en


@pytest.mark.parametrize("provenance, en_text, zh_text", [
    ("synthetic", "**Synthetic data, not CIFAR-10.**", "**注意：本报告使用合成数据，而非 CIFAR-10。**"),
    ("noncanonical", "**Non-canonical CIFAR-10 copy.**", "**注意：使用的是非标准的 CIFAR-10 副本。**"),
])
def test_noncanonical_and_synthetic_data_are_stated_in_the_abstract(tmp_path, provenance, en_text, zh_text):
    runs, figs = seed_like(tmp_path, provenance=provenance)
    facts = facts_of(runs, figs)
    en, zh = render.render_markdown(facts, "en"), render.render_markdown(facts, "zh")
    front_en, front_zh = en.split("\n---\n")[0], zh.split("\n---\n")[0]  # YAML: title block + abstract
    assert en_text in front_en and zh_text in front_zh
    assert FINGERPRINT[:16] in front_en and FINGERPRINT[:16] in front_zh
    subtitle = {"synthetic": ("SYNTHETIC DATA, not CIFAR-10", "合成数据，并非 CIFAR-10"),
                "noncanonical": ("NON-CANONICAL CIFAR-10 copy", "非标准 CIFAR-10 副本")}[provenance]
    assert subtitle[0] in front_en.split("subtitle:")[1].splitlines()[0]
    assert subtitle[1] in front_zh.split("subtitle:")[1].splitlines()[0]
    assert "not comparable with the published ones" in en


def test_several_seeds_give_means_std_and_say_when_a_difference_is_not_resolved(tmp_path):
    runs, figs = tmp_path / "exp", tmp_path / "fig"
    for seed, bests in enumerate([(0.910, 0.905, 0.915, 0.930), (0.912, 0.915, 0.917, 0.934)]):
        for model, best in zip(("plain20", "plain56", "resnet20", "resnet56"), bests):
            write_run(runs, "r1", model, best, 0.05 if model == "plain56" else 0.02, seed=seed)
    write_summary(runs, figs, "r1")
    facts = facts_of(runs, figs)
    assert facts["by_key"]["plain20"]["n_seeds"] == 2 and facts["varied"] == []
    c = facts["cmp"]
    deg = c["degradation_acc"]
    assert (deg["va"], deg["vb"], deg["status"], deg["n_a"], deg["n_b"]) == (0.91, 0.911, "not_resolved", 2, 2)
    assert 0.4 < deg["p"] < 0.5  # Welch, one-sided: a 0.1-point gap over 2 seeds each
    # a 2.2-point gap is not resolved with 2 seeds (p = 0.053; Holm over the three primary claims 0.106),
    # a tighter 1.6-point one is (p = 0.014, Holm 3 x 0.014 = 0.043 < 0.05)
    assert c["residual_fix_acc"]["status"] == "not_resolved" and c["residual_fix_acc"]["p"] == pytest.approx(0.053, abs=1e-3)
    assert c["residual_fix_acc"]["p_holm"] == pytest.approx(2 * c["residual_fix_acc"]["p"])
    assert c["depth_gain_acc"]["status"] == "shown" and c["depth_gain_acc"]["p_holm"] == pytest.approx(
        3 * c["depth_gain_acc"]["p"]) and c["depth_gain_acc"]["p_holm"] < 0.05
    en = render.render_markdown(facts, "en")
    assert "| Plain-56 | 0.9100 ± 0.0071 |" in en and "(mean ± std over seeds; Epoch: each seed" in en
    assert f"**not resolved (p={deg['p']:.3f}, Holm p={deg['p']:.3f}, Welch, 2 vs 2 seeds): +0.10 points**" in en
    assert "| +1.60 pp [+0.41, +2.79] | 0.014 (0.043) | shown (p=0.014, Holm p=0.043, Welch, 2 vs 2 seeds): +1.60 points |" in en
    assert facts["verdict"]["overall"] == "partial"
    # the training losses are equal across seeds: no spread, so those have no p, and the report says why
    assert ("7 of 10 comparisons have a p value; no p value is computed for 3 of them, because the seeds of each "
            "model gave identical values, so there is no seed-to-seed spread to test a gap against. 2 of 10 are "
            "shown.\n\n| Claim |") in en
    assert "The 8 runs differ only in the model and the seed" in en
    assert "--seeds 0,1" in en


def test_mixed_presets_are_refused(tmp_path):
    runs, figs = seed_like(tmp_path)
    write_run(runs, "r1", "resnet110", 0.93, 0.01, preset="smoke")
    with pytest.raises(ValueError, match="mixes presets.*resnet110: smoke"):
        render.build_report("r1", ["en"], ["html"], str(runs), str(figs), str(tmp_path / "build"))
    assert not (tmp_path / "build").exists()


def test_missing_pdf_engine_names_what_to_install_and_still_builds_docx_html(tmp_path, monkeypatch):
    runs, figs = seed_like(tmp_path)
    monkeypatch.setattr(render, "PDF_ENGINE", "xelatex-not-installed-for-this-test")
    result = render.build_report("r1", ["en"], list(render.FORMATS), str(runs), str(figs),
                                 str(tmp_path / "build"))
    assert sorted(p.suffix for p in result.outputs) == [".docx", ".html"]
    assert all(p.stat().st_size > 5000 for p in result.outputs)
    assert len(result.errors) == 1
    err = result.errors[0]
    assert "report.en.pdf not built" in err and "make sysdeps" in err and "texlive-xetex" in err
    html = " ".join((tmp_path / "build" / "r1" / "report.en.html").read_text().split())
    assert "0.8769" in html and "Deep Residual Learning for Image Recognition" in html
    assert "Proceedings of the IEEE Conference on Computer Vision" in html  # citeproc ran


def test_cli_errors_are_one_line(tmp_path, capsys):
    from resnet_nb.cli import main

    runs, figs = seed_like(tmp_path)
    assert main(["report", "--run-id", "r1", "--runs-dir", str(runs), "--lang", "fr"]) == 2
    assert "--lang must be a comma list of zh, en" in capsys.readouterr().err
    assert main(["report", "--run-id", "nope", "--runs-dir", str(runs)]) == 2
    err = capsys.readouterr().err
    assert "known run ids: r1" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_relative_directories_as_given_on_the_command_line(tmp_path, monkeypatch):
    """make report passes the defaults (experiments, report/figures, report/build): relative."""
    seed_like(tmp_path)
    monkeypatch.chdir(tmp_path)
    result = render.build_report("r1", ["en"], ["html"], "exp", "fig", "build")
    assert result.errors == [] and [p.name for p in result.outputs] == ["report.en.html"]
    assert (tmp_path / "build" / "r1" / "report.en.html").stat().st_size > 5000


def test_a_smoke_run_on_synthetic_data_never_claims_a_result(tmp_path):
    """A 1-seed, 5-epoch synthetic smoke run once printed "shown"/「成立」 (Table 4-4,
    4.5.1's Fig. 6 sentence, conclusion 2) even where Plain-20 reached 100 % test accuracy."""
    runs, figs = seed_like(tmp_path, preset="smoke", provenance="synthetic")
    facts = facts_of(runs, figs)
    assert {x["status"] for x in facts["cmp"].values()} == {"not_assessable"}
    assert {x["en"] for x in facts["cmp"].values()} == {"not assessable: synthetic data"}
    assert facts["verdict"]["overall"] == "not_assessable" and not facts["verdict"]["optimisation"]
    en, zh = render.render_markdown(facts, "en"), render.render_markdown(facts, "zh")
    verdicts_en = en[en.index("### 4.5.1"):en.index("# References")]
    verdicts_zh = zh[zh.index("### 4.5.1"):zh.index("# 参考文献")]
    assert "shown" not in verdicts_en.replace("not shown", "") and "not overfitting" not in verdicts_en
    assert "成立" not in verdicts_zh and "过拟合" not in verdicts_zh
    assert "the paper's claims cannot be assessed from this run (not assessable: synthetic data)" in en
    assert "Degradation (Plain-56 vs Plain-20): not assessable: synthetic data (final-epoch test accuracy 0.8769 < 0.9127)" in en
    assert "Degradation（Plain-56 对 Plain-20）：无法判断：合成数据" in zh
    # the rule table is printed in the method section, in both languages, from one constant
    assert verdicts.rule_table("en", math=True) in en and verdicts.rule_table("zh", math=True) in zh
    method_en, method_zh = en.split("## 3.6")[1].split("# 4 ")[0], zh.split("## 3.6")[1].split("# 第四章")[0]
    assert r"$z\,\sigma\sqrt{1/n_A+1/n_B}$ (0.63 points for one run each" in method_en and "σ" not in method_en and "α" not in method_zh
    assert en.index("## 3.6 How a comparison is judged") < en.index("# 4 Testing")


@pytest.mark.parametrize("provenance, preset, en_why, zh_why", [
    ("synthetic", "smoke", "no p value is computed for all of them, because the data are synthetic, and Table 3-4 "
     "draws no conclusion from synthetic data, whatever the number of seeds (rule 1).",
     "全部不计算 p 值，因为数据是合成数据，无论有多少个种子，表 3-4 都不对合成数据下结论（规则 1）。"),
    ("canonical", "smoke", "because the runs use the smoke preset (4 epochs), a check that the code runs, which "
     "Table 3-4 does not assess (rule 2).", "因为这些运行使用 smoke 预设（4 个 epoch）"),
])
def test_section_4_6_says_why_no_comparison_has_a_p_value(tmp_path, provenance, preset, en_why, zh_why):
    """"0 of 10 comparisons have a p value" must say why."""
    runs, figs = tmp_path / "exp", tmp_path / "fig"
    for seed in (0, 1):
        for model, best in zip(("plain20", "plain56", "resnet20", "resnet56"), (0.91, 0.90, 0.915, 0.93)):
            write_run(runs, "r1", model, best + seed / 1000, 0.05, seed=seed, preset=preset, provenance=provenance)
    write_summary(runs, figs, "r1")
    facts = facts_of(runs, figs)
    reason = "synthetic" if provenance == "synthetic" else "smoke"
    assert facts["p_values"]["without"] == [{"reason": reason, "n": 10}] and facts["p_values"]["with_p"] == 0
    en, zh = render.render_markdown(facts, "en"), render.render_markdown(facts, "zh")
    sec_en, sec_zh = en[en.index("## 4.6"):en.index("## 4.7")], zh[zh.index("## 4.6"):zh.index("## 4.7")]
    assert "None of the 10 comparisons has a p value; " in sec_en and en_why in sec_en
    assert "are shown" not in sec_en                     # nothing is assessable: no count of verdicts
    assert "10 项比较都没有 p 值；" in sec_zh and zh_why in sec_zh


def test_one_seed_says_why_more_seeds_would_not_help_on_synthetic_data(tmp_path):
    runs, figs = seed_like(tmp_path, preset="smoke", provenance="synthetic")
    en, zh = (render.render_markdown(facts_of(runs, figs), lang) for lang in ("en", "zh"))
    assert ("so no comparison can be tested against its own seed-to-seed spread: an accuracy gap is tested against "
            "the published seed noise (a z-test, rule 3), a loss gap gives its direction only; more seeds would not "
            "help here: the data are synthetic") in en
    assert "即使有更多种子这里也无济于事：数据是合成数据" in zh
    runs, figs = seed_like(tmp_path / "real")
    en = render.render_markdown(facts_of(runs, figs), "en")
    assert "a loss gap gives its direction only. Table 4-5" in en             # real data: one seed is the reason


def test_smoke_preset_on_real_data_is_not_assessable_either(tmp_path):
    runs, figs = seed_like(tmp_path, preset="smoke")
    facts = facts_of(runs, figs)
    assert facts["cmp"]["degradation_acc"]["en"] == "not assessable: smoke preset, 4 epochs"
    assert "| not assessable: smoke preset, 4 epochs |" in render.render_markdown(facts, "en")


def test_the_fig6_reading_needs_both_measures_shown_over_seeds(tmp_path):
    runs, figs = tmp_path / "exp", tmp_path / "fig"
    for seed in range(3):
        for model, best, loss in (("plain20", 0.9127, 0.010), ("plain56", 0.8769, 0.090),
                                  ("resnet20", 0.9144, 0.008), ("resnet56", 0.9358, 0.002)):
            write_run(runs, "r1", model, best + 0.002 * seed, loss + 0.001 * seed, seed=seed)
    write_summary(runs, figs, "r1")
    facts = facts_of(runs, figs)
    assert facts["cmp"]["degradation_loss"]["status"] == "shown" and facts["verdict"]["optimisation"]
    en, zh = render.render_markdown(facts, "en"), render.render_markdown(facts, "zh")
    assert "the gap is an optimisation problem, not overfitting, as in the paper's Fig. 6 (left)" in en
    assert "差距来自优化困难而不是过拟合" in zh


@pytest.mark.parametrize("bad", ["../x", "/tmp/x", "a/b", "..", "x\n"])
def test_run_ids_outside_the_roots_are_refused(tmp_path, capsys, bad):
    from resnet_nb.analysis.aggregate import analyze, figures_dir_of, load_runs
    from resnet_nb.cli import main

    runs, figs = seed_like(tmp_path)
    outside = tmp_path / "x"
    (outside / "plain20").mkdir(parents=True)  # what "../x" from exp/ would reach
    with pytest.raises(ValueError, match="run_id must be a plain folder name"):
        render.build_report(bad, ["en"], ["html"], str(runs), str(figs), str(tmp_path / "build"))
    for call in (lambda: render.load_inputs(bad, runs, figs), lambda: load_runs(runs, bad),
                 lambda: analyze(runs, bad, figs), lambda: figures_dir_of(figs, bad)):
        with pytest.raises(ValueError, match="must be a plain folder name"):
            call()
    assert main(["report", "--run-id", bad, "--runs-dir", str(runs), "--figures-dir", str(figs),
                 "--out-dir", str(tmp_path / "build")]) == 2
    err = capsys.readouterr().err
    assert "--run-id must be a plain folder name" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "build").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["exp", "fig", "x"]


def test_report_without_run_id_prefers_the_newest_complete_reproduction(tmp_path, capsys, monkeypatch):
    """make report (no RUN_ID) once picked a newer single-model papermill run."""
    import os

    from resnet_nb.cli import main

    runs = tmp_path / "exp"
    for model in ("plain20", "plain56", "resnet20", "resnet56"):
        write_run(runs, "full", model, 0.9, 0.05)
    write_run(runs, "papermill-1", "resnet20", 0.9, 0.05)  # newer, one model
    for i, rid in enumerate(("full", "papermill-1")):
        for cfg in (runs / rid).glob("*/config.json"):
            os.utime(cfg, (1_000_000 + i, 1_000_000 + i))
    built = []
    monkeypatch.setattr(render, "build_report", lambda run_id, *a, **k: built.append(run_id) or render.BuildResult())
    from resnet_nb.runs import published
    monkeypatch.setattr(published, "PUBLISHED_DIR", str(tmp_path / "published"))  # none (test_published: the fallback)
    assert main(["report", "--runs-dir", str(runs)]) == 0
    err = capsys.readouterr().err.strip()
    assert built == ["full"] and len(err.splitlines()) == 1
    assert err.startswith("resnet-nb report: run id full: the newest complete reproduction under ")
    assert "(plain20, plain56, resnet20, resnet56 all finished)" in err

    # with no complete reproduction, the newest of the run ids with the most models
    write_run(runs, "three", "plain20", 0.9, 0.05)
    write_run(runs, "three", "plain56", 0.9, 0.05)
    write_run(runs, "three", "resnet20", 0.9, 0.05, epochs=10, done=3)  # unfinished
    cfg = runs / "full" / "resnet56" / "config.json"
    atomic_write_json(cfg, {**json.loads(cfg.read_text()), "status": "interrupted"})
    for cfg in (runs / "three").glob("*/config.json"):
        os.utime(cfg, (900_000, 900_000))  # older than full
    for cfg in (runs / "full").glob("*/config.json"):
        os.utime(cfg, (800_000, 800_000))
    assert main(["report", "--runs-dir", str(runs)]) == 0
    err = capsys.readouterr().err.strip()
    assert built[-1] == "full" and "no run id under" in err
    assert "the newest of those with the most models (4: plain20, plain56, resnet20, resnet56)" in err


def test_make_commands_are_code_blocks_not_inline_code(tmp_path, monkeypatch):
    """A wrapped command in inline code showed its shell continuation ``\\`` in the PDF."""
    import re

    monkeypatch.chdir(tmp_path)
    runs, figs = Path("experiments"), Path("report/figures")
    for model in SEED_MODELS:  # the seed preset as it is: make reproduce repeats it
        cfg = write_run(runs, "a-rather-long-run-id-20261128-183200", model, 0.9, 0.05, epochs=200) / "config.json"
        meta = json.loads(cfg.read_text())
        atomic_write_json(cfg, {**meta, "config": {**meta["config"], "milestones": [100, 150]}})
    write_summary(runs, figs, "a-rather-long-run-id-20261128-183200")
    facts = facts_of(runs, figs, "a-rather-long-run-id-20261128-183200")
    assert facts["commands"]["make_reproduce"] and "\\\n" in facts["commands"]["make_reproduce"]
    for lang in render.LANGS:
        md = render.render_markdown(facts, lang)
        assert f"```bash\n{facts['commands']['make_reproduce']}\n{facts['commands']['make_report']}\n```" in md
        assert "\\\n" not in re.sub(r"```.*?```", "", md, flags=re.S), lang


@pytest.mark.parametrize("provenance,en_word,zh_word", [
    ("synthetic", "synthetic data", "合成数据"),
    ("noncanonical", "non-canonical CIFAR-10 copy", "非标准 CIFAR-10 副本"),
    ("canonical", "CIFAR-10, ", "CIFAR-10，"),
])
def test_figure_captions_name_the_data(tmp_path, provenance, en_word, zh_word):
    """Every result figure's caption names the data's provenance, from the run files."""
    runs, figs = seed_like(tmp_path, preset="smoke" if provenance == "synthetic" else "seed", provenance=provenance)
    from resnet_nb.report.figure_facts import RESULT_FIGURES
    for name in RESULT_FIGURES:                       # the figures exist (their content does not matter here)
        (figs / "r1" / name).write_bytes(b"")
    facts = facts_of(runs, figs)
    en, zh = render.render_markdown(facts, "en"), render.render_markdown(facts, "zh")
    captions_en = [line for line in en.splitlines() if line.startswith("![") and "resnet_" in line]
    captions_zh = [line for line in zh.splitlines() if line.startswith("![") and "resnet_" in line]
    assert captions_en and len(captions_en) == len(captions_zh)
    assert all(en_word in c for c in captions_en), captions_en
    assert all(zh_word in c for c in captions_zh), captions_zh
    if provenance == "synthetic":
        assert all("not the paper" in c for c in captions_en) and all("不是论文的结果" in c for c in captions_zh)
    else:
        assert not any("synthetic" in c for c in captions_en)


# ---- the published numbers come from report/literature.json; the sweep's sections

@pytest.mark.parametrize("lang", ["en", "zh"])
def test_every_table_caption_ends_its_paragraph(tmp_path, lang):
    """A caption line directly followed by text makes pandoc read the text as part of the caption
    (the zh Table 4-3 caption swallowed the next paragraph: trim_blocks ate its newline)."""
    runs, figs = seed_like(tmp_path)
    lines = render.render_markdown(facts_of(runs, figs), lang).splitlines()
    glued = [(a, b) for a, b in zip(lines, lines[1:]) if a.startswith(": ") and b.strip()]
    assert not glued, glued


def test_the_comparison_table_reads_the_literature_file(tmp_path, monkeypatch):
    import resnet_nb.analysis.literature as lit_mod

    runs, figs = seed_like(tmp_path)
    md = render.render_markdown(facts_of(runs, figs), "en")
    assert "| Plain-56 | 12.31 | 1 | n/a | 12.31 | 12.95 ± 0.13" not in md  # nabla0001's P56 std is 0.22
    assert "| Plain-56 | 12.31 | 1 | n/a | 12.31 | 12.95 ± 0.22 | n/a |" in md
    assert "standard deviations of 0.13 to 0.27 percentage points" in md and "[@nabla0001resnet]" in md
    assert "Our column: **the canonical CIFAR-10**" in md
    assert "`resnet-nb publish` leaves it out of a published copy" in md   # the tree lists last.pth
    assert ".All are CIFAR-10" not in md and "\nAll are CIFAR-10 test errors" in md   # two sentences, not glued
    # headers: the short column names with the citation (a long name overran the next column in the PDF)
    assert "| Model | This run: error % | n | He et al. Table 6 [@he2016deep] | seed report [@seedreport] | " \
           "nabla0001 [@nabla0001resnet] | akamaster [@idelbayev2018resnet] | Params: ours / paper |" in md
    data = json.loads(lit_mod.LITERATURE_FILE.read_text(encoding="utf-8"))
    data["sources"][2]["results"]["plain56"] = {"error_pct": 99.5, "std_pct": 0.5, "n": 5}
    edited = tmp_path / "lit.json"
    edited.write_text(json.dumps(data), encoding="utf-8")
    monkeypatch.setattr(lit_mod, "LITERATURE_FILE", edited)
    monkeypatch.setattr(lit_mod.load_literature, "__defaults__", (edited, lit_mod.REFERENCES_BIB))
    md = render.render_markdown(facts_of(runs, figs), "zh")
    assert "| 99.50 ± 0.50 |" in md and "0.13 到 0.50 个百分点" in md
    assert "省略：深度扫描需要某一族至少 3 个深度的结果" in md  # the seed's 2x2 is no sweep


def test_sweep_sections_and_the_scaled_warmup_are_reported(tmp_path):
    runs, figs = tmp_path / "exp", tmp_path / "fig"
    for model in ("plain20", "plain32", "plain56", "resnet20", "resnet32", "resnet56", "resnet110"):
        for seed in (0, 1):
            d = write_run(runs, "w", model, 0.90 - (0.02 if model.startswith("plain") else -0.01) * (seed + int(model[-2:]) / 56),
                          0.05, seed=seed)
            if model == "resnet110":  # what reproduce writes for a short run (config.paper_warmup)
                from resnet_nb.training.config import config_from_dict, paper_warmup

                cfg = json.loads((d / "config.json").read_text())
                w = paper_warmup(config_from_dict(cfg["config"]), 50_000)  # 4 epochs of 391: 10 iterations
                cfg["config"].update(warmup_iters=w.warmup_iters, warmup_lr=w.warmup_lr)
                atomic_write_json(d / "config.json", cfg)
    write_summary(runs, figs, "w", expected=[])
    facts = facts_of(runs, figs, "w")
    assert facts["design"]["deep"] == 56 and facts["sweep"]["ready"] and facts["varied"] == []
    # train and reproduce apply the rule themselves (make_config): no warm-up flag in the commands
    assert not any("warmup" in c for c in facts["commands"]["train"]) and "warmup" not in facts["commands"]["reproduce"]
    en, zh = (render.render_markdown(facts, lang) for lang in ("en", "zh"))
    assert "| 110 | n/a | 0 |" in en and "(best of 5; mean 6.61 ± 0.16) |" in en
    assert "ResNet-110 starts with the paper's warm-up" in en and "rate 0.01 (the base rate 0.1 / 10) for the first 10 iterations" in en
    assert "**scaled down** from the paper's 400 of 64,000" in en
    assert "**按比例缩短**" in zh and "## 4.7 深度扫描" in zh
    assert "- Plain nets: from 20 to 56 layers the mean test error rises" in en
    assert "| Seeds (A/B) | p |" in en and "| 2/2 | " in en


def test_environment_table_says_how_each_run_was_trained_and_where_the_commit_came_from(tmp_path):
    """The commit's source (git, $RESNET_NB_COMMIT, none) and, per run,
    whether papermill executed it (config.json executed_by)."""
    runs, figs = seed_like(tmp_path)
    papermill = {"by": "papermill", "notebook": "02_train.ipynb", "source": "02_train.ipynb", "epoch": 0}
    edits = {"plain20": ([papermill, {"by": "cli", "argv": ["resnet-nb", "train"], "epoch": 36}],
                         {"git_commit_source": "RESNET_NB_COMMIT", "git_dirty": None}),
             "plain56": ([papermill], {"git_commit_source": "git"}),
             "resnet20": ([papermill], {"git_commit_source": "git"}),
             "resnet56": (None, {"git_commit": None, "git_commit_source": None})}
    for name, (executed, env) in edits.items():
        path = runs / "r1" / name / "config.json"
        meta = json.loads(path.read_text())
        meta["environment"].update(env)
        if executed:
            meta["executed_by"] = executed
        atomic_write_json(path, meta)
    write_summary(runs, figs, "r1")
    en, zh = (render.render_markdown(facts_of(runs, figs), lang) for lang in ("en", "zh"))
    assert ("| git commit | 0123456789ab (uncommitted changes unknown; from \\$RESNET\\_NB\\_COMMIT: the copy had "
            "no .git) / 0123456789ab (from git) / none (no .git and no \\$RESNET\\_NB\\_COMMIT) |") in en
    assert "| git 提交 | 0123456789ab（是否有未提交的修改未知；来自 \\$RESNET\\_NB\\_COMMIT：副本没有 .git） / " in zh
    assert ("| Executed by | papermill (executed notebook 02\\_train.ipynb), resumed after a pause by resnet-nb train: "
            "plain20 / papermill (executed notebook 02\\_train.ipynb): plain56, resnet20 / not recorded: resnet56 |") in en
    assert ("| 训练的执行方式 | papermill（已执行的 notebook：02\\_train.ipynb），暂停后由 resnet-nb train 命令 续训："
            "plain20 / ") in zh
    runs, figs = seed_like(tmp_path / "old")   # run dirs older than both records
    en = render.render_markdown(facts_of(runs, figs), "en")
    assert "| git commit | 0123456789ab |" in en and "| Executed by | not recorded |" in en


def test_development_log_starts_at_the_code_of_the_oldest_run():
    """The log lists the commits from the oldest run's code on (older code made none of these
    results), at most ``limit`` of them, long subjects cut; with no known training commit, the newest."""
    from resnet_nb.report.provenance import log_window

    commits = [{"hash": f"{i:07x}", "time": None, "subject": f"change {i}"} for i in range(100)]
    commits[95]["subject"] = "x" * 300
    got = log_window(commits, ["000005a", "0000050"], limit=40)          # 0x50 = 80 is the older of the two
    assert [c["hash"] for c in got["commits"]] == [f"{i:07x}" for i in range(80, 100)]
    assert got["omitted"] == 80 and got["since"] == "0000050"
    assert len(got["commits"][15]["subject"]) == 160 and got["commits"][15]["subject"].endswith("…")
    older = log_window(commits, ["0000003"], limit=40)                      # trained long ago: the newest 40
    assert older["omitted"] == 60 and len(older["commits"]) == 40 and older["since"] is None
    unknown = log_window(commits, ["fffffff"], limit=40)
    assert unknown["omitted"] == 60 and unknown["since"] is None


def test_rerun_commands_name_a_noncanonical_copy_and_the_run_names(tmp_path):
    """Runs on a non-canonical copy are retrained from the same copy (DATA_ROOT), never from the
    downloaded archive; one-seed runs named <model>-seed0 are not what one reproduce call names
    them, so the training commands (with --run-name) rebuild them; several seeds are."""
    import re

    runs, figs = tmp_path / "exp", tmp_path / "fig"
    for model, best in (("plain20", 0.82), ("plain56", 0.44)):
        write_run(runs, "one", model, best, 0.5, provenance="noncanonical", seed=0, epochs=20)
    write_summary(runs, figs, "one", expected=("plain20", "plain56"))
    facts = facts_of(runs, figs, "one")
    cmds = facts["commands"]
    assert cmds["reproduce"] is None and cmds["make_reproduce"] is None
    assert all("--data-root DATA_ROOT" in c and "--allow-noncanonical" in c and "--run-name plain" in c
               for c in cmds["train"])
    for lang in render.LANGS:
        md = render.render_markdown(facts, lang)
        assert "resnet-nb data info --data-root DATA_ROOT --allow-noncanonical" in md, lang
        assert "```bash\nresnet-nb data download" not in md and FINGERPRINT[:16] in md, lang
    for seed in (0, 1):
        for model, best in (("plain20", 0.82), ("plain56", 0.44)):
            write_run(runs, "two", model, best, 0.5, provenance="noncanonical", seed=seed, epochs=20)
    write_summary(runs, figs, "two", expected=("plain20", "plain56"))
    cmds = facts_of(runs, figs, "two")["commands"]
    flat = re.sub(r"\s*\\\n\s*", " ", cmds["reproduce"])
    assert "--data-root DATA_ROOT --allow-noncanonical" in flat and "--seeds 0,1" in flat
    # one model with a seed the other lacks: `--seeds 0,1,2` would train plain56-seed2 as well
    write_run(runs, "two", "plain20", 0.82, 0.5, provenance="noncanonical", seed=2, epochs=20)
    write_summary(runs, figs, "two", expected=("plain20", "plain56"))
    cmds = facts_of(runs, figs, "two")["commands"]
    assert cmds["reproduce"] is None and any("--run-name plain20-seed2" in c for c in cmds["train"])


def test_two_seed_rows_state_their_own_rounding_epochs_and_the_total_time(tmp_path):
    """ResNet-20's two seeds average to 0.83875: the table prints 0.8387 or 0.8388, the verdict's gap
    comes from the unrounded mean; the sentence's difference and the verdict's must be one number.
    Table 4-1 names each seed's best epoch; the total time adds every run's own time."""
    runs, figs = tmp_path / "exp", tmp_path / "fig"
    write_run(runs, "r1", "plain20", 0.8209, 0.44, seed=0, preset="short")
    write_run(runs, "r1", "plain56", 0.4450, 1.56, seed=0, preset="short")
    write_run(runs, "r1", "resnet20", 0.8364, 0.37, seed=0, preset="short")
    write_run(runs, "r1", "resnet20", 0.8411, 0.37, seed=1, preset="short", done=3, epochs=3)
    write_run(runs, "r1", "resnet56", 0.8266, 0.40, seed=0, preset="short")
    write_summary(runs, figs, "r1")
    facts = facts_of(runs, figs)
    en = render.render_markdown(facts, "en")
    line = next(x for x in en.splitlines() if x.startswith("- At 20 layers:"))
    gaps = __import__("re").findall(r"([+-]\d+\.\d\d) points", line)
    assert len(gaps) == 2 and gaps[0] == gaps[1] == "+1.79", line
    # 4 runs of 4 epochs and one of 3, 60 s an epoch: 19 minutes in all (not the sum of per-model means)
    assert facts["total_wall_time"] == "19.0 min" and "Total training time of the runs: 19.0 min." in en
    row = next(x for x in en.splitlines() if x.startswith("| ResNet-20 |") and "±" in x)
    assert "| 3, 2 |" in row, row   # each seed's epoch of its best (seed 0: 4 epochs, best from 3; seed 1: from 2)
    assert "each seed's epoch of its best" in en and "the mean over seeds of each seed's training time" in en


def test_the_zh_pdf_keeps_english_apostrophes_ascii():
    """pandoc's smart quotes turn ' into ’, which xeCJK sets full-width in the zh PDF ("Welch’ s");
    the en report keeps them."""
    from resnet_nb.report.render import _pandoc_args

    args = {lang: _pandoc_args(lang, "pdf", Path("r.md"), Path("r.pdf"), Path("."), {}) for lang in ("en", "zh")}
    assert "--from=markdown+east_asian_line_breaks-smart" in args["zh"]
    assert "--from=markdown+east_asian_line_breaks" in args["en"]
