"""reproduce's decision to run 01_theory and 03_analysis (resnet_nb.pipeline.reproduce.analysis_waits_for):
they wait for every paused run, also one paused by an earlier invocation; failed runs do not
hold them back."""
from pathlib import Path

from resnet_nb.pipeline.reproduce import Unit, _count, analysis_waits_for
from resnet_nb.runs.rundir import atomic_write_json
from resnet_nb.training.config import make_config


def _unit(tmp_path: Path, model: str, unit_status: str, run_status: str | None) -> Unit:
    """A unit of one run whose config.json says ``run_status`` (None: no run dir yet)."""
    cfg = make_config("smoke", model=model, out_dir=str(tmp_path), run_id="r", run_name=model)
    if run_status is not None:
        (tmp_path / "r" / model).mkdir(parents=True)
        atomic_write_json(tmp_path / "r" / model / "config.json", {"status": run_status})
    return Unit(model, [cfg], status=unit_status)


def test_analysis_waits_for_runs_paused_now_or_earlier_not_for_failed_ones(tmp_path):
    units = [_unit(tmp_path, "plain20", "failed", "paused"),    # an earlier pause; this resume failed early
             _unit(tmp_path, "resnet20", "ok", "finished"),
             _unit(tmp_path, "plain56", "failed", "failed"),
             _unit(tmp_path, "resnet56", "paused", None),        # the budget kept it from starting
             _unit(tmp_path, "plain32", "skipped", "finished"),
             _unit(tmp_path, "resnet32", "ok", "paused")]        # paused by this invocation's budget
    assert analysis_waits_for(units) == ["plain20", "resnet56", "resnet32"]
    # failed and finished runs only: the analysis runs (README: a failing run does not stop the others)
    assert analysis_waits_for([units[1], units[2], units[4]]) == []


def test_counts_are_worded_in_the_singular_and_the_plural():
    assert (_count(1, "run"), _count(2, "execution"), _count(0, "paused run")) == \
        ("1 run", "2 executions", "0 paused runs")
