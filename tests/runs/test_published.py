"""The published results' bookkeeping without training: where a run id is read from, the
README block as committed, the evaluation tolerance, and that report/published/ is committed.
(tests/pipeline/test_publish.py publishes, evaluates and tabulates a real tiny run.)"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from resnet_nb.pipeline import publish as P
from resnet_nb.pipeline.evaluate import TOLERANCE_PP, tolerance_images
from resnet_nb.runs import published

REPO = Path(__file__).resolve().parents[2]


def test_nothing_published_is_one_honest_line(tmp_path):
    block = P.readme_block(tmp_path / "published", tmp_path)
    lines = [ln for ln in block.splitlines() if ln and not ln.startswith("<!--")]
    assert lines == ["No result has been published yet: `published/` is empty "
                     "(`make publish RUN_ID=<run id>` adds one)."]
    assert block.startswith(P.README_BEGIN) and block.endswith(P.README_END)


def test_the_committed_readme_table_is_generated_from_the_committed_copies():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    begin, end = text.index(P.README_BEGIN), text.index(P.README_END) + len(P.README_END)
    assert text[begin:end] == P.readme_block(REPO / published.PUBLISHED_DIR, REPO), \
        "README.md's results block is stale: run make readme"


def test_update_readme_needs_its_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# no block\n")
    with pytest.raises(ValueError, match="has no results block"):
        P.update_readme(readme, tmp_path / "published")


def test_locate_prefers_the_run_dirs_then_the_published_copy(tmp_path):
    runs, figs, pub = tmp_path / "experiments", tmp_path / "figures", tmp_path / "published"
    assert published.locate("r", runs, figs, pub) == published.Located(runs, figs, False)  # neither: the caller's error
    (pub / "r").mkdir(parents=True)
    assert published.locate("r", runs, figs, pub) == published.Located(pub, pub, True)
    (runs / "r").mkdir(parents=True)
    assert published.locate("r", runs, figs, pub) == published.Located(runs, figs, False)
    with pytest.raises(ValueError):
        published.locate("../r", runs, figs, pub)
    assert not published.is_published(pub / "r") and published.published_ids(pub) == []


@pytest.mark.parametrize("n, images", [(10_000, 10), (1_000, 1), (999, 0), (50, 0)])
def test_tolerance_is_a_tenth_of_a_point(n, images):
    assert TOLERANCE_PP == 0.1 and tolerance_images(n) == images


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(), reason="not a git checkout")
def test_published_copies_are_not_gitignored():
    for path in ("report/published/r/resnet56/best.pth", "report/published/r/report.en.pdf",
                 "report/published/r/resnet_error_fig6.png"):
        rc = subprocess.run(["git", "-C", str(REPO), "check-ignore", "-q", path]).returncode
        assert rc == 1, f"{path} is git-ignored: report/published/ must be committed"


def _run(root: Path, run_id: str, model: str, status: str = "finished") -> None:
    import json

    (root / run_id / model).mkdir(parents=True)
    (root / run_id / model / "config.json").write_text(json.dumps({"config": {"model": model}, "status": status}))


def _published(pub: Path, run_id: str, when: str) -> None:
    import json

    (pub / run_id).mkdir(parents=True)
    (pub / run_id / published.MANIFEST_FILE).write_text(json.dumps({"run_id": run_id, "published_at": when}))


def test_report_without_run_id_falls_back_to_the_newest_published_copy(tmp_path, monkeypatch, capsys):
    """make report (no RUN_ID): experiments/ first when it holds a complete reproduction, else
    the newest published run id (by published_at), and it says which it chose."""
    from resnet_nb.analysis import aggregate
    from resnet_nb.cli import main
    from resnet_nb.report import render

    runs, pub = tmp_path / "experiments", tmp_path / "published"
    with pytest.raises(FileNotFoundError, match="no runs under"):
        aggregate.choose_run_id(runs)
    _published(pub, "gpu-a", "2026-01-02T10:00:00+00:00")
    _published(pub, "gpu-b", "2026-01-03T10:00:00+00:00")
    _published(pub, "gpu-old", "2025-12-31T10:00:00+00:00")
    assert published.newest_published(pub) == "gpu-b" and published.newest_published(pub, exclude=["gpu-b"]) == "gpu-a"
    assert aggregate.choose_run_id(runs, published=("gpu-b", pub)) == (
        "gpu-b", f"no runs under {runs}; the newest published run id in {pub}")
    _run(runs, "smoke", "plain20")                                      # incomplete: published wins
    rid, why = aggregate.choose_run_id(runs, published=("gpu-b", pub))
    assert rid == "gpu-b" and why.startswith(f"no run id under {runs} has plain20, plain56, resnet20, resnet56 all")
    assert aggregate.choose_run_id(runs)[0] == "smoke"                   # without a published copy: as before
    for m in ("plain20", "plain56", "resnet20", "resnet56"):
        _run(runs, "full", m)
    assert aggregate.choose_run_id(runs, published=("gpu-b", pub))[0] == "full"  # a complete reproduction first

    shutil.rmtree(runs / "full")
    built = []
    monkeypatch.setattr(published, "PUBLISHED_DIR", str(pub))
    monkeypatch.setattr(render, "build_report", lambda run_id, langs, formats, runs_dir, figures_dir, out: built.append(
        (run_id, runs_dir, figures_dir)) or render.BuildResult())
    assert main(["report", "--runs-dir", str(runs), "--formats", "html"]) == 0
    err = capsys.readouterr().err
    assert built == [("gpu-b", str(pub), str(pub))]
    assert "resnet-nb report: run id gpu-b: no run id under" in err and f"the newest published run id in {pub}" in err
    assert f"building from the published copy {pub / 'gpu-b'}/" in err


def test_how_trained_says_papermill_jupyter_cli_or_python(tmp_path, monkeypatch):
    import json
    import sys

    from resnet_nb.runs.rundir import PAPERMILL_ENV
    from resnet_nb.training import run_writer

    run_dir = tmp_path / "r" / "resnet20"
    monkeypatch.setattr(sys, "argv", ["/venv/bin/resnet-nb", "train", "--model", "resnet20"])
    monkeypatch.setenv(PAPERMILL_ENV, json.dumps({"notebook": "/x/notebooks/02_train.ipynb",
                                                  "outputs": [str(tmp_path / "r" / "plain20" / "02_train.ipynb"),
                                                              str(run_dir / "02_train.ipynb")]}))
    rec = run_writer.how_trained(run_dir, 3)          # not in a kernel: the variable alone is not papermill
    assert (rec["by"], rec["argv"], rec["epoch"]) == ("cli", ["resnet-nb", "train", "--model", "resnet20"], 3)
    monkeypatch.setattr(run_writer, "_in_kernel", lambda: True)
    rec = run_writer.how_trained(run_dir)             # its own copy of the pack's executed notebook
    assert (rec["by"], rec["notebook"], rec["source"]) == ("papermill", "02_train.ipynb", "02_train.ipynb")
    assert run_writer.how_trained(tmp_path / "elsewhere")["notebook"] == str(tmp_path / "r" / "plain20" / "02_train.ipynb")
    monkeypatch.delenv(PAPERMILL_ENV)
    assert run_writer.how_trained(run_dir)["by"] == "jupyter"
    monkeypatch.setattr(run_writer, "_in_kernel", lambda: False)
    monkeypatch.setattr(sys, "argv", ["/venv/bin/pytest", "-q"])
    assert run_writer.how_trained(run_dir)["by"] == "python"
    run = {"path": str(run_dir), "executed_by": [rec, {"by": "papermill", "notebook": "02_train.ipynb"},
                                                 {"by": "papermill", "notebook": "/abs/nb.ipynb"}]}
    assert run_writer.papermill_notebooks(run) == [run_dir / "02_train.ipynb", Path("/abs/nb.ipynb")]
    assert run_writer.papermill_notebooks({"path": str(run_dir)}) == []   # a run dir older than the record


def test_a_resumed_run_appends_how_this_process_trains_it(tmp_path):
    import json

    from resnet_nb.training.config import make_config
    from resnet_nb.training.run_writer import RunWriter, Seen

    cfg = make_config("smoke", out_dir=str(tmp_path), run_id="r")
    run_dir = tmp_path / "r" / "resnet20"
    run_dir.mkdir(parents=True)
    before = {"by": "papermill", "notebook": "02_train.ipynb", "epoch": 0}
    for old, want in ((None, ["python"]), ({"executed_by": [before], "resumed": []}, ["papermill", "python"])):
        RunWriter(cfg, Seen(run_dir, None, old, False, ()), None).start(
            environment={}, dataset={}, params=1, iters_per_epoch=1, epochs_planned=3)
        assert [e["by"] for e in json.loads((run_dir / "config.json").read_text())["executed_by"]] == want
