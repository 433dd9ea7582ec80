"""Publishing a reproduction: ``resnet-nb publish`` copies what a reader needs
into ``report/published/<run id>/``, the report rebuilds from that copy, ``resnet-nb evaluate``
re-computes a published ``best.pth``'s test accuracy, and the README table comes from the copy.

One tiny synthetic reproduction (Plain/ResNet-8 and -14, 64 images, 2 epochs, CPU, trained one
by one: conftest's ``tiny_reproduction``, shared with test_report_build.py) is published once
for the module; the report PDFs are stand-in
files (building real ones takes a minute: tests/report/test_report_build.py does that).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from resnet_nb import REPO
from resnet_nb.cli import main
from resnet_nb.data.cifar10 import write_fake_cifar10
from resnet_nb.pipeline import publish as P
from resnet_nb.report import render
from resnet_nb.runs import published
from resnet_nb.training.config import config_from_dict
from resnet_nb.training.prepare import prepare_data

pytestmark = pytest.mark.slow

MODELS = ("plain8", "resnet8", "plain14", "resnet14")
RUN_ID = "t"


@pytest.fixture(scope="module")
def site(tmp_path_factory, tiny_reproduction):
    """``{"runs", "figures", "build", "published", "bench"}`` of one published tiny reproduction
    (conftest's ``tiny_reproduction``: its run dirs and figures, read-only here)."""
    assert (tiny_reproduction["run_id"], tiny_reproduction["models"]) == (RUN_ID, MODELS)
    root = tmp_path_factory.mktemp("publish")
    (root / "build" / RUN_ID).mkdir(parents=True)
    for name in P.REPORT_PDFS:  # stand-ins for resnet-nb report's PDFs, written after summary.json
        (root / "build" / RUN_ID / name).write_bytes(b"%PDF-1.5 stand-in\n")
    (root / "bench.json").write_text(json.dumps({"device": "cpu", "results": []}))
    runs_dir, figures = tiny_reproduction["experiments"], tiny_reproduction["figures"]
    P.publish(RUN_ID, runs_dir, figures, root / "build", root / "published", bench=root / "bench.json")
    return {"experiments": runs_dir, "figures": figures} | {
        k: root / k for k in ("build", "published")} | {"bench": root / "bench.json"}


def test_the_copy_holds_what_a_reader_needs(site):
    pub = site["published"] / RUN_ID
    for m in MODELS:
        assert sorted(p.name for p in (pub / m).iterdir()) == ["best.pth", "config.json", "metrics.json"]
        assert (site["experiments"] / RUN_ID / m / "last.pth").is_file()  # kept back, not copied
    assert {"summary.json", "resnet_error_fig6.png", "report.zh.pdf", "report.en.pdf", "bench.json",
            published.MANIFEST_FILE} <= {p.name for p in pub.iterdir()}
    manifest = json.loads((pub / published.MANIFEST_FILE).read_text())
    assert manifest["runs"]["resnet8"] == {"status": "finished", "epochs": 2, "executed_by": ["python"]}
    assert "last.pth" in manifest["left_out"]["resnet8"]
    best = manifest["files"]["resnet8/best.pth"]
    assert best["bytes"] == (pub / "resnet8" / "best.pth").stat().st_size
    assert best["sha256"] == P._sha256(pub / "resnet8" / "best.pth")
    assert published.published_ids(site["published"]) == [RUN_ID]


def test_refusals_name_what_to_do(site, tmp_path, capsys):
    args = ["publish", RUN_ID, "--runs-dir", str(site["experiments"]), "--figures-dir", str(site["figures"]),
            "--build-dir", str(site["build"]), "--published-dir", str(site["published"]), "--bench", str(site["bench"])]
    assert main(args) == 2
    assert "already exists; pass --force" in capsys.readouterr().err
    assert main([*args, "--force"]) == 0
    out, err = capsys.readouterr()
    assert "left out: last.pth" in out and "committed with the repository" in out and "MiB" in out
    assert "warning: " in err and "synthetic data" in err and "shows the code runs, not a result" in err
    assert published.published_ids(site["published"]) == [RUN_ID] and not list(site["published"].glob(".*"))

    # an unfinished run: refused unless --allow-unfinished, naming it
    shutil.copytree(site["experiments"] / RUN_ID, tmp_path / "runs" / "u")
    cfg = tmp_path / "runs" / "u" / "plain14" / "config.json"
    cfg.write_text(cfg.read_text().replace('"status": "finished"', '"status": "paused"'))
    other = ["publish", "u", "--runs-dir", str(tmp_path / "runs"), "--figures-dir", str(tmp_path / "figs"),
             "--build-dir", str(tmp_path / "build"), "--published-dir", str(tmp_path / "pub")]
    assert main(other) == 2
    err = capsys.readouterr().err
    assert "plain14: paused at epoch 2 of 2" in err and "--allow-unfinished" in err
    assert main([*other, "--allow-unfinished"]) == 2  # no analysis yet: build the report first
    assert "make report RUN_ID=u" in capsys.readouterr().err
    assert not (tmp_path / "pub" / "u").exists()


def test_the_executed_notebook_is_expected_exactly_where_papermill_ran(site, tmp_path, capsys):
    """config.json's executed_by says which processes papermill ran; publish
    refuses a run whose executed notebook is missing (naming it), copies it where it exists,
    and leaves out a notebook that no recorded papermill process wrote."""
    runs, figs, build = tmp_path / "runs", tmp_path / "figs", tmp_path / "build"
    shutil.copytree(site["experiments"], runs)
    shutil.copytree(site["figures"], figs)
    shutil.copytree(site["build"], build)
    cfg_path = runs / RUN_ID / "plain8" / "config.json"
    meta = json.loads(cfg_path.read_text())
    assert [e["by"] for e in meta["executed_by"]] == ["python"] and meta["executed_by"][0]["epoch"] == 0
    meta["executed_by"] = [{"by": "papermill", "notebook": "02_train.ipynb", "source": "02_train.ipynb", "epoch": 0},
                           {"by": "cli", "argv": ["resnet-nb", "train"], "epoch": 1}]   # resumed by the CLI
    cfg_path.write_text(json.dumps(meta))
    (runs / RUN_ID / "resnet8" / "02_train.ipynb").write_text("{}")  # no papermill process wrote it
    args = ["publish", RUN_ID, "--runs-dir", str(runs), "--figures-dir", str(figs), "--build-dir", str(build),
            "--published-dir", str(tmp_path / "pub")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"executed notebook missing: {runs / RUN_ID / 'plain8' / '02_train.ipynb'} (run plain8)" in err
    assert "resnet-nb transfer import" in err and not (tmp_path / "pub").exists()
    (runs / RUN_ID / "plain8" / "02_train.ipynb").write_text('{"cells": []}')
    assert main(args) == 0
    out = capsys.readouterr().out
    pub = tmp_path / "pub" / RUN_ID
    assert (pub / "plain8" / "02_train.ipynb").read_text() == '{"cells": []}'
    assert not (pub / "resnet8" / "02_train.ipynb").exists() and "02_train.ipynb last.pth" in out  # resnet8: left out
    assert json.loads((pub / published.MANIFEST_FILE).read_text())["runs"]["plain8"]["executed_by"] == ["papermill", "cli"]


def test_report_rebuilds_from_the_published_copy(site, tmp_path, monkeypatch):
    where = published.locate(RUN_ID, tmp_path / "experiments", tmp_path / "figures", site["published"])
    assert where == published.Located(site["published"], site["published"], True)
    assert not published.locate(RUN_ID, site["experiments"], site["figures"], site["published"]).published
    inputs = render.load_inputs(RUN_ID, where.runs_dir, where.figures_dir)
    assert inputs["published"] and not inputs["exported"] and not inputs["refreshed"]  # nothing re-analysed
    facts = render.collect_facts(inputs, str(where.runs_dir), str(where.figures_dir))
    en, zh = render.render_markdown(facts, "en"), render.render_markdown(facts, "zh")
    assert "built from the published copy" in en and "已发布的副本" in zh
    assert "--out-dir" not in "\n".join(facts["commands"]["train"])  # retrain into experiments/, not the copy
    assert facts["commands"]["report"] == f"resnet-nb report --run-id {RUN_ID}"

    # the CLI (make report RUN_ID=t) finds report/published/t when experiments/t is absent
    monkeypatch.chdir(tmp_path)
    shutil.copytree(site["published"], tmp_path / published.PUBLISHED_DIR)
    seen = {}
    monkeypatch.setattr(render, "build_report", lambda run_id, langs, formats, runs_dir, figures_dir, out_dir:
                        seen.update(runs=runs_dir, figures=figures_dir) or render.BuildResult())
    assert main(["report", "--run-id", RUN_ID, "--formats", "html"]) == 0
    assert seen == {"runs": published.PUBLISHED_DIR, "figures": published.PUBLISHED_DIR}


def test_evaluate_reproduces_the_record_and_detects_tampering(site, tmp_path, capsys):
    run = site["published"] / RUN_ID / "resnet8"
    assert main(["evaluate", str(run)]) == 0
    out = capsys.readouterr().out
    recorded = max(m["test_acc"] for m in json.loads((run / "metrics.json").read_text()))
    assert f"recorded   {recorded:.4f} ({round(recorded * 50)} / 50 correct" in out
    assert "difference +0 images" in out and "MATCH" in out

    # tampered weights: every image is called the class the record does not count right
    bad = tmp_path / "resnet8"
    shutil.copytree(run, bad)
    ckpt = torch.load(bad / "best.pth", map_location="cpu", weights_only=True)
    labels = prepare_data(config_from_dict(json.loads((run / "config.json").read_text())["config"])).test_y
    cls = next(c for c in range(10) if int((labels == c).sum()) != round(recorded * 50))
    ckpt["model"]["fc.bias"][cls] += 1e4
    torch.save(ckpt, bad / "best.pth")
    assert main(["evaluate", str(bad)]) == 1
    out = capsys.readouterr()
    assert "MISMATCH" in out.out and "do not reproduce" in out.err

    # other data than the run's: refused before any number, naming the data it needs
    other = tmp_path / "other"
    write_fake_cifar10(other, n_train=500, n_test=100, seed=1)
    assert main(["evaluate", str(run), "--data-root", str(other)]) == 2
    assert "trained on the synthetic fixture" in capsys.readouterr().err


def test_readme_table_from_the_published_copy(site, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{P.README_BEGIN}\nold\n{P.README_END}\n\nrest\n")
    assert P.update_readme(readme, site["published"])
    text = readme.read_text()
    assert text.startswith("# x\n\n<!-- published-results:begin -->") and text.endswith("\n\nrest\n")
    assert "old" not in text and f"### `{RUN_ID}`: synthetic data, smoke preset, 2 epochs" in text
    assert "final-epoch test acc (synthetic data)" in text and "CPU (" in text and "resnet_error_fig6.png)" in text
    assert text.count(": **not assessable: synthetic data**;") == 4  # every claim, by the rule table
    assert "| seeds (ids) |" in text and "| 1 (0) |" in text          # how many seeds, and which
    assert "Wall time: the run's training time, the mean over its seeds where a model has several" in text
    rel = Path(os.path.relpath(site["published"], tmp_path)).as_posix()
    assert f"]({rel}/{RUN_ID}/report.en.pdf)" in text and f"]({rel}/{RUN_ID}/bench.json)" in text
    import re                                                        # the training code, from the run configs
    trained = {json.loads(c.read_text())["environment"]["git_commit"][:7]
               for c in (site["published"] / RUN_ID).glob("*/config.json")}
    assert re.search(r"Trained with the code at commit (`[0-9a-f]{7}`(, )?)+ \(config.json\)", text)
    assert all(f"`{c}`" in text for c in trained) and "(below)" not in text
    docs = Path(os.path.relpath(REPO / "docs" / "report.md", tmp_path)).as_posix()
    assert f"]({docs}))" in text                                      # how to verify: a link that resolves
    assert not P.update_readme(readme, site["published"])  # generated: a second run changes nothing


CPU_BENCH = {"device": "CPU: Some CPU, 2 cores", "native_bf16": True, "torch": "2.x", "batch_size": 128,
             "rows": [{"variant": "a", "model": "resnet20", "precision": "fp32", "layout": "common recipe",
                       "train_img_s": 200.0},
                      {"variant": "layout", "model": "resnet20", "precision": "fp32", "layout": "channels_last",
                       "train_img_s": 500.0},
                      {"variant": "parallel", "model": "resnet20", "precision": "fp32", "layout": "channels_last",
                       "processes": 2, "threads": 1, "train_img_s": 450.0}],
             "implied_short_s": {"common_fp32": 36000.0, "fp32_channels_last": 14400.0, "bf16_nchw": None}}


def test_data_note_and_cpu_bench_reach_the_readme(site, tmp_path, capsys):
    """--data-note says what the data is, beside its fingerprint, and stays when the copy is
    replaced without one; a CPU bench file becomes a table of img/s and multiples of the common
    recipe (a bench file of another shape is only linked: the module's site has one)."""
    (tmp_path / "bench.json").write_text(json.dumps(CPU_BENCH))
    args = ["publish", RUN_ID, "--runs-dir", str(site["experiments"]), "--figures-dir", str(site["figures"]),
            "--build-dir", str(site["build"]), "--published-dir", str(tmp_path / "pub"),
            "--bench", str(tmp_path / "bench.json")]
    assert main([*args, "--data-note", "two lines\nof text"]) == 2
    assert "--data-note must be one line" in capsys.readouterr().err and not (tmp_path / "pub").exists()
    assert main([*args, "--data-note", "<b>html</b>"]) == 2
    assert main([*args, "--data-note", "CIFAR-10 with every image re-encoded as JPEG at quality 75."]) == 0
    block = P.readme_block(tmp_path / "pub")
    assert "The data, as its publisher describes it: CIFAR-10 with every image re-encoded as JPEG at quality 75." in block
    assert main([*args, "--force"]) == 0                                         # replaced: the note stays
    block = P.readme_block(tmp_path / "pub")
    assert "re-encoded as JPEG at quality 75" in block
    assert "Training speed on the CPU these runs used" in block and "Some CPU, 2 cores, native bf16" in block
    assert "| common recipe (DataLoader + transforms), fp32 | 200 |" in block
    assert "| fp32 channels_last | 500 (2.50x) |" in block
    assert "| fp32 channels_last, 2 runs at once x 1 thread(s) | 450 (2.25x) |" in block
    assert "4.0 h at the fastest (fp32 channels_last), 10.0 h at the slowest (the common recipe)" in block
    # a tampered manifest's note is not shown; the site's bench file (another shape) gets no table
    man = tmp_path / "pub" / RUN_ID / published.MANIFEST_FILE
    man.write_text(man.read_text().replace("quality 75.", "quality 75.<script>"))
    assert "publisher describes" not in P.readme_block(tmp_path / "pub")
    assert "Training speed" not in P.readme_block(site["published"])


def _parity_result(bf16_shift: float) -> dict:
    """A ``resnet-nb parity --out`` result of two epochs for plain56, from compare_precisions."""
    from resnet_nb.analysis.parity import compare_precisions

    def run(acc, loss):
        return [{"test_acc": acc + 0.1 * e, "train_loss": loss - 0.1 * e} for e in range(2)]
    series = {("fp32", 0): run(0.20, 2.0), ("fp32", 1): run(0.24, 1.9),
              ("bf16", 0): run(0.20 + bf16_shift, 2.0), ("bf16", 1): run(0.24 + bf16_shift, 1.9)}
    src = {"device_name": "Some CPU", "torch": "2.x", "data": "noncanonical", "fingerprint": "ab" * 32}
    return {"epochs": 2, "seeds": [0, 1], "recipe": "short", "models": {"plain56": compare_precisions(series, [0, 1])},
            "sources": {f"plain56-{p}-seed{s}": {**src, "reused": p == "fp32", "run": f"x/plain56-{p}-seed{s}"}
                        for p in ("fp32", "bf16") for s in (0, 1)}}


@pytest.mark.parametrize("shift, verdict", [(0.01, "within"), (0.2, "NOT within")])
def test_parity_result_reaches_the_readme(site, tmp_path, capsys, shift, verdict):
    """--parity publishes a ``resnet-nb parity`` result as parity.json and the README shows its
    table, the machine and data each side trained on, and one line per model; a file that is not
    such a result is refused before anything is written."""
    args = ["publish", RUN_ID, "--runs-dir", str(site["experiments"]), "--figures-dir", str(site["figures"]),
            "--build-dir", str(site["build"]), "--published-dir", str(tmp_path / "pub"), "--parity"]
    (tmp_path / "bad.json").write_text(json.dumps({"epochs": 2, "models": {}}))
    assert main([*args, str(tmp_path / "bad.json")]) == 2
    assert "is not a result of resnet-nb parity" in capsys.readouterr().err and not (tmp_path / "pub").exists()
    (tmp_path / "parity.json").write_text(json.dumps(_parity_result(shift)))
    assert main([*args, str(tmp_path / "parity.json")]) == 0
    assert (tmp_path / "pub" / RUN_ID / "parity.json").read_bytes() == (tmp_path / "parity.json").read_bytes()
    block = P.readme_block(tmp_path / "pub")
    assert ("`resnet-nb parity` on Some CPU, torch 2.x; data: non-canonical CIFAR-10 copy (fingerprint "
            "`abababababababab`)): the first 2 epochs" in block)
    assert "(2 of the 4 sides are the first epochs of runs trained for a reproduction)" in block
    assert f"| Plain-56 | 2 | 0.3000 / 0.3400 | {0.3 + shift:.4f} / {0.34 + shift:.4f} | {shift:.4f} | 0.0400 |" in block
    assert f"- Plain-56: bf16 {verdict} the fp32 seed-to-seed difference" in block
    # which way bf16 went at the last epoch, from the same numbers
    assert (f"at epoch 2 bf16's mean test accuracy is {0.32 + shift:.4f} against fp32's 0.3200 ({shift:+.4f}) and its "
            f"mean training loss 1.8500 against 1.8500 (+0.0000)") in block
    assert ("every epoch of 2;" if shift < 0.04 else "(epochs 1, 2 of 2);") in block
    assert f"[`parity.json`]({(tmp_path / 'pub').as_posix()}/{RUN_ID}/parity.json)" in block
