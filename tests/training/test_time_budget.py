"""The time budget and the record of what the step ran.

``--time-budget`` stops training at an epoch boundary when the next epoch would not fit;
the run is ``paused`` (resumable, exit status 75) and its rerun ends exactly where an
uninterrupted run does. The clock is replaced (every epoch "takes" 10 s), so no test
sleeps. Every run is a ResNet-8 (or a pack of plain8 + resnet8) on 64 synthetic images.
"""
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from resnet_nb.cli import main
from resnet_nb.pipeline.executor import Runner
from resnet_nb.pipeline.reproduce import Unit, _mark_paused
from resnet_nb.report.provenance import environment_rows, graphs_value
from resnet_nb.runs import rundir
from resnet_nb.training import budget, loop
from resnet_nb.training.config import make_config
from resnet_nb.training.run_writer import merge_runtime
from resnet_nb.training.step import TrainStep
from resnet_nb.training.train import EXIT_PAUSED, paused_runs, train, train_many

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]
TIMING = ("time", "elapsed")
EPOCH_S = 10.0
FIXTURE_V0 = Path(__file__).resolve().parent.parent / "fixtures" / "run-v0" / "resnet20"


def tiny(fake_cifar, out_dir, **kw):
    base = dict(model="resnet8", dataset="synthetic", data_root=str(fake_cifar), epochs=3, lr=0.1,
                batch_size=32, train_subset=64, test_subset=20, milestones=(2,), device="cpu",
                out_dir=str(out_dir), run_id="t")
    return make_config("smoke", **{**base, **kw})


@pytest.fixture
def slow_epochs(monkeypatch):
    """A fake clock on which every epoch's training takes EPOCH_S seconds (evaluation 0)."""
    now = [1000.0]
    for module in (loop, budget):          # epoch times and the budget read the same clock
        monkeypatch.setattr(module, "clock", lambda: now[0])
    real = loop._train_epoch

    def epoch(*a, **k):
        now[0] += EPOCH_S
        return real(*a, **k)
    monkeypatch.setattr(loop, "_train_epoch", epoch)
    return now


def math_fields(metrics):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in metrics]


def weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def test_budget_pauses_at_an_epoch_boundary_and_the_rerun_resumes_exactly(fake_cifar, tmp_path, slow_epochs,
                                                                          capsys):
    reference = train(tiny(fake_cifar, tmp_path / "ref"))                   # no budget: 3 epochs
    cfg = tiny(fake_cifar, tmp_path, time_budget=25)                        # 10 + 10 fit, a third does not
    done = loop.train_pack([replace(cfg, run_name="resnet8")], budget=budget.Budget(25))[0]
    run = rundir.load_run(done.run_dir)
    assert run["status"] == "paused" and rundir.effective_status(run) == "paused"
    assert [r["epoch"] for r in run["metrics"]] == [1, 2]
    assert torch.load(done.run_dir / "last.pth", weights_only=True)["epoch"] == 2   # exact resume point
    assert done.paused and "after epoch 2 of 3" in done.paused and "rerun the same command" in done.paused
    assert "paused by the time budget after epoch 2 of 3" in capsys.readouterr().out
    assert paused_runs([done.run_dir, reference]) == [done.run_dir]
    # run_id "" finds the paused run (an unfinished status), whatever budget the rerun has
    again = train(replace(cfg, run_id="", time_budget=0))
    assert again == done.run_dir
    run, ref = rundir.load_run(again), rundir.load_run(reference)
    assert run["status"] == "finished" and math_fields(run["metrics"]) == math_fields(ref["metrics"])
    for k, v in weights(reference / "best.pth").items():
        assert torch.equal(v, weights(again / "best.pth")[k]), k
    assert [r["epoch"] for r in run["resumed"]] == [2]
    # what ran, summed over both processes: 3 epochs x 2 eager steps and 1 eager evaluation batch on the CPU
    assert run["runtime"] == {"graph_requested": False, "captures": 0, "graph_steps": 0, "eager_steps": 6,
                              "fallbacks": [], "eval_graph_requested": False, "eval_captures": 0,
                              "eval_graph_batches": 0, "eval_eager_batches": 3, "eval_fallbacks": []}
    assert graphs_value(run) == ("not used (CPU run)", "未使用（CPU 运行）")


def test_budget_shorter_than_one_epoch_runs_one_and_says_so(fake_cifar, tmp_path, slow_epochs, capsys):
    args = ["train", "--preset", "smoke", "--model", "resnet8", "--dataset", "synthetic", "--data-root",
            str(fake_cifar), "--device", "cpu", "--epochs", "3", "--milestones", "2", "--train-subset", "64",
            "--test-subset", "50", "--out-dir", str(tmp_path), "--run-id", "t", "--time-budget", "4"]
    assert main(args) == EXIT_PAUSED == 75
    out = capsys.readouterr()
    assert "the time budget (4 s) is shorter than start-up (0.0 s) and one epoch (10.0 s)" in out.out
    assert "nothing is lost" in out.out and "paused by --time-budget" in out.err
    run = rundir.load_run(tmp_path / "t" / "resnet8")
    assert run["status"] == "paused" and len(run["metrics"]) == 1
    assert torch.load(tmp_path / "t" / "resnet8" / "last.pth", weights_only=True)["epoch"] == 1
    assert main(args) == EXIT_PAUSED                                        # one epoch per command
    assert main(args) == 0                                                  # the third: finished
    assert rundir.load_run(tmp_path / "t" / "resnet8")["status"] == "finished"


def test_the_hint_counts_the_start_up_the_budget_paid_for(monkeypatch):
    """The budget runs from the process's start: data, model and graph capture come out of it,
    so the suggested budget for two epochs adds the measured start-up to them."""
    now = [100.0]
    monkeypatch.setattr(budget, "clock", lambda: now[0])
    b = budget.Budget(5)
    now[0] += 3.0 + 4.0                        # 3 s of start-up, then a first epoch of 4 s
    b.ran_epoch(4.0)
    msg = b.stop_before(4.0, 1, 3)
    assert "shorter than start-up (3.0 s) and one epoch (4.0 s)" in msg
    assert "e.g. 12 s for two epochs per command, start-up included" in msg


def test_negative_budget_is_a_clear_error(capsys):
    assert main(["train", "--time-budget", "-5", "--dataset", "synthetic"]) == 2
    assert "time_budget must be >= 0 seconds (0 = no limit); got -5" in capsys.readouterr().err


def test_a_pack_pauses_together_and_later_packs_wait(fake_cifar, tmp_path, slow_epochs):
    cfgs = [tiny(fake_cifar, tmp_path, model=m, time_budget=8) for m in ("plain8", "resnet8")]
    cfgs.append(tiny(fake_cifar, tmp_path, model="resnet14", time_budget=8))  # another depth: a later pack
    paths = train_many(cfgs, pack=True)         # the pack's first epoch runs and spends the budget
    got = {p.name: rundir.load_run(p) for p in paths}
    assert {n: r["status"] for n, r in got.items()} == {"plain8": "paused", "resnet8": "paused",
                                                        "resnet14": "paused"}
    assert [len(got[n]["metrics"]) for n in ("plain8", "resnet8", "resnet14")] == [1, 1, 0]
    assert all("and one epoch (10.0 s)" in got[n]["error"] for n in ("plain8", "resnet8"))
    assert "before its first epoch" in got["resnet14"]["error"]
    assert not (paths[2] / "last.pth").exists()
    # the reproduce end message of a unit that ran, and of one the deadline kept from training
    cfgs = [replace(c, run_name=c.model) for c in cfgs]                    # as resolve_run_ids names them
    units = [Unit("depth8", cfgs[:2], status="ok"), Unit("depth14", cfgs[2:], status="ok")]
    assert [u.name for u in _mark_paused(units)] == ["depth8", "depth14"]
    assert units[0].note == "paused by --time-budget after 1/3 epochs: rerun the same command to resume"
    assert units[1].note == "paused by --time-budget after 0/3 epochs: rerun the same command to resume"


def test_reproduce_deadline_gives_each_execution_the_time_left(tmp_path, monkeypatch):
    now = [100.0]
    monkeypatch.setattr("resnet_nb.pipeline.executor.time.monotonic", lambda: now[0])
    runner = Runner(1, [], "python3", tmp_path, tmp_path, deadline=160.0)
    assert runner.budget_left({"model": "x"}) == {"model": "x"}            # theory/analysis: untouched
    assert runner.budget_left({"time_budget": 60}) == {"time_budget": 60.0}
    now[0] = 130.0
    assert runner.budget_left({"time_budget": 60}) == {"time_budget": 30.0}  # the next one: what is left
    now[0] = 170.0
    assert runner.budget_left({"time_budget": 60}) is None                  # spent: not started
    first = Runner(1, [], "python3", tmp_path, tmp_path, deadline=90.0)
    assert first.budget_left({"time_budget": 60}) == {"time_budget": 0.1}   # the first always starts
    unit = Unit("depth20", [])
    runner.run([(unit, tmp_path / "02_train.ipynb", [tmp_path / "o.ipynb"], {"time_budget": 60})])
    assert unit.status == "paused"                                          # nothing was started


def test_capture_failure_is_recorded_in_the_run_and_the_report(fake_cifar, tmp_path, monkeypatch, capsys):
    """A capture that fails (made to fail here, on the CPU) is saved in config.json and shown in
    the environment table, not only printed."""
    class Failing(TrainStep):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self.capture_allowed = self.graph_requested = True             # as on a GPU

        def _capture(self, x, y):
            raise RuntimeError("operation not permitted when stream is capturing")
    monkeypatch.setattr(loop, "TrainStep", Failing)
    with pytest.warns(RuntimeWarning, match="capture .* failed"):
        run_dir = train(tiny(fake_cifar, tmp_path, epochs=1))
    out = capsys.readouterr().out
    assert "CUDA graph requested" in out.splitlines()[0]                  # the request, before any attempt
    assert "resnet8: CUDA-graph capture of the training step failed (RuntimeError" in out
    run = rundir.load_run(run_dir)
    assert run["runtime"] == {"graph_requested": True, "captures": 0, "graph_steps": 0, "eager_steps": 2,
                              "fallbacks": ["RuntimeError: operation not permitted when stream is capturing"],
                              "eval_graph_requested": False, "eval_captures": 0, "eval_graph_batches": 0,
                              "eval_eager_batches": 1, "eval_fallbacks": []}
    row = next(r for r in environment_rows([run]) if r["label"] == "CUDA graphs")
    assert row["value"] == ("eager fallback: RuntimeError: operation not permitted when stream is capturing "
                            "(0 captures, 0 graph steps, 2 eager); evaluation eager (1 batch)")


def test_graph_counts_in_the_report_and_old_run_dirs():
    cuda = {"environment": {"device": "cuda:0"}}
    step = {"graph_requested": True, "captures": 1, "graph_steps": 78000, "eager_steps": 200, "fallbacks": []}
    graphed = {"eval_graph_requested": True, "eval_captures": 2, "eval_graph_batches": 4000,
               "eval_eager_batches": 0, "eval_fallbacks": []}
    assert graphs_value({**cuda, "runtime": {**step, **graphed}}) == \
        "1 capture, 78,000 graph steps, 200 eager; evaluation graphed (2 captures, 4,000 graph batches, 0 eager)"
    failed = {**graphed, "eval_captures": 0, "eval_graph_batches": 0, "eval_eager_batches": 4000,
              "eval_fallbacks": ["RuntimeError: capture invalidated"]}
    assert graphs_value({**cuda, "runtime": {**step, **failed}}) == (
        "1 capture, 78,000 graph steps, 200 eager; evaluation eager after a failed capture: RuntimeError: "
        "capture invalidated (0 captures, 0 graph batches, 4,000 eager)")
    assert graphs_value({**cuda, "runtime": {"graph_requested": False, "eager_steps": 5, "eval_captures": 0,
                                             "eval_eager_batches": 1}}) == \
        "off (eager only; 5 eager steps); evaluation eager (1 batch)"
    # a run trained before evaluation was counted: its step counts only
    assert graphs_value({**cuda, "runtime": step}) == \
        "1 capture, 78,000 graph steps, 200 eager; evaluation: not recorded"
    # ... and a resumed one: a total over part of its processes would mislead, so none is kept
    later = {**step, "fallback": None, **{k: v for k, v in graphed.items() if k != "eval_fallbacks"},
             "eval_fallback": None}
    assert "eval_captures" not in merge_runtime(step, later)
    assert merge_runtime(None, later)["eval_graph_batches"] == 4000
    assert merge_runtime(merge_runtime(None, later), later)["eval_captures"] == 4
    old = rundir.load_run(FIXTURE_V0)                                       # format 0: no runtime section
    assert old["runtime"] is None and graphs_value(old) is None
