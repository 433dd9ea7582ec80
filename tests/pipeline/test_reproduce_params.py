"""02_train's parameters -> configs (resnet_nb.pipeline.notebook), and bad input through papermill."""
import json
from dataclasses import asdict
from pathlib import Path

import pytest

from resnet_nb.pipeline.notebook import _SNAPSHOT, check_run_dirs, configs_from_parameters, train_parameter_names
from resnet_nb.pipeline.reproduce import Unit, plan_units
from resnet_nb.runs.rundir import atomic_write_json
from resnet_nb.training.config import make_config

REPO = Path(__file__).resolve().parents[2]


def params(tmp_path, **kw):
    """A notebook namespace: imports (snapshotted), then the parameters cell's defaults."""
    ns = {"train": print, "json": json}
    ns[_SNAPSHOT] = set(ns)
    ns.update({n: None for n in train_parameter_names()})
    ns.update(preset="seed", model="resnet20", models="", seed=0, seeds="", dataset="cifar10",
              out_dir=str(tmp_path), run_id="r", run_name="", device="auto")
    ns.update(kw)
    return ns


def test_none_takes_the_presets_value(tmp_path):
    (cfg,) = configs_from_parameters(params(tmp_path, preset="smoke", epochs=None, lr=0.05))
    assert cfg == make_config("smoke", lr=0.05, out_dir=str(tmp_path), run_id="r", run_name="resnet20")


def test_models_and_seeds_cross_product(tmp_path):
    cfgs = configs_from_parameters(params(tmp_path, models="plain20,resnet20", seeds="1,2"))
    assert [(c.model, c.seed, c.run_name) for c in cfgs] == [
        ("plain20", 1, "plain20-seed1"), ("plain20", 2, "plain20-seed2"),
        ("resnet20", 1, "resnet20-seed1"), ("resnet20", 2, "resnet20-seed2")]
    assert {c.run_id for c in cfgs} == {"r"}
    one_seed = configs_from_parameters(params(tmp_path, models="plain56, resnet56", seed=3))
    assert [(c.run_name, c.seed) for c in one_seed] == [("plain56", 3), ("resnet56", 3)]
    with pytest.raises(ValueError, match="run_name names one run"):
        configs_from_parameters(params(tmp_path, models="plain20,resnet20", run_name="x"))


def test_unknown_preset_is_reported_first_with_the_presets(tmp_path):
    for kw in (dict(), dict(seeds="0,1"), dict(seed=None)):
        with pytest.raises(ValueError, match=r"^unknown preset 'bogus': use one of seed, paper, short, smoke$"):
            configs_from_parameters(params(tmp_path, preset="bogus", **kw))


def test_a_single_milestone_number_is_accepted(tmp_path):
    (cfg,) = configs_from_parameters(params(tmp_path, preset="smoke", milestones=4))   # -p milestones 4
    assert cfg.milestones == (4,)


@pytest.mark.parametrize("extra,message", [
    (["--models", "plain20,resnet20", "--set", "run_name=foo"],
     "--set run_name=foo names one run's folder, but --models/--seeds give 2 runs"),
    (["--models", "resnet20", "--seeds", "0,1", "--set", "run_name=foo"], "give 2 runs"),
    (["--set", "seed=3"], "--set seed=... is not used by reproduce; give it as --seeds"),
    (["--set", "run_id=x"], "give it as --run-id"),
])
def test_reproduce_refuses_set_values_it_cannot_apply(extra, message, tmp_path, capsys):
    from resnet_nb.cli import main

    assert main(["reproduce", "--preset", "smoke", "--dataset", "synthetic", "--out-dir", str(tmp_path),
                 *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not any(tmp_path.iterdir())


def test_empty_run_id_gets_one_shared_new_id(tmp_path):
    cfgs = configs_from_parameters(params(tmp_path, models="plain20,resnet20", run_id=""))
    assert cfgs[0].run_id.startswith("repro-") and cfgs[0].run_id == cfgs[1].run_id


def test_unknown_parameter_names_the_valid_fields(tmp_path):
    with pytest.raises(ValueError) as e:
        configs_from_parameters(params(tmp_path, epochz=3))
    msg = str(e.value)
    assert "unknown parameter(s) epochz (did you mean epochs?)" in msg
    for name in ("preset", "epochs", "weight_decay", "eval_every", "models", "seeds"):
        assert name in msg
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        configs_from_parameters(params(tmp_path, epochs=0))


def test_run_dir_of_another_preset_is_refused_with_the_fields(tmp_path):
    stored = make_config("seed", model="plain20", out_dir=str(tmp_path), run_id="r", run_name="plain20")
    d = tmp_path / "r" / "plain20"
    d.mkdir(parents=True)
    atomic_write_json(d / "config.json", {"config": asdict(stored), "status": "finished"})
    check_run_dirs([stored])  # the same config: fine
    cfgs = configs_from_parameters(params(tmp_path, preset="smoke", models="plain20,resnet20"))
    with pytest.raises(ValueError) as e:
        check_run_dirs(cfgs)
    msg = str(e.value)
    assert "run id 'r' already holds runs with other settings" in msg
    assert "preset (stored 'seed', now 'smoke')" in msg and "epochs (stored 200, now " in msg
    assert "resnet20" not in msg


def test_plan_units_cpu_per_model_cuda_per_depth(tmp_path):
    cfgs = configs_from_parameters(params(tmp_path, models="plain20,resnet20,plain56,resnet56", seeds="0,1"))
    assert [u.name for u in plan_units(cfgs, pack_by_depth=False)][:2] == ["plain20-seed0", "plain20-seed1"]
    packs = plan_units(cfgs, pack_by_depth=True)
    assert [(u.name, len(u.cfgs)) for u in packs] == [("depth20", 4), ("depth56", 4)]
    p = packs[0].parameters(several_seeds=True)
    assert p["models"] == "plain20,resnet20" and p["seeds"] == "0,1" and "model" not in p
    single = Unit("plain20-seed1", [cfgs[1]]).parameters(several_seeds=True)
    assert (single["model"], single["seed"], single["run_name"]) == ("plain20", 1, "plain20-seed1")
    assert set(p) <= set(train_parameter_names())


@pytest.mark.slow
def test_papermill_unknown_parameter_is_a_clear_error(tmp_path):
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    with pytest.raises(PapermillExecutionError) as e:
        pm.execute_notebook(str(REPO / "notebooks" / "02_train.ipynb"), str(tmp_path / "out.ipynb"),
                            parameters=dict(preset="smoke", dataset="synthetic", epochz=1,
                                            out_dir=str(tmp_path)),
                            kernel_name="python3", progress_bar=False, cwd=str(REPO))
    assert e.value.ename == "ValueError"
    assert "unknown parameter(s) epochz (did you mean epochs?)" in e.value.evalue
    assert "batch_size" in e.value.evalue
    assert not (tmp_path / "r").exists()


def test_theory_is_skipped_only_for_the_same_settings_and_data(tmp_path):
    from resnet_nb.analysis.aggregate import THEORY_FIGURE_FILES
    from resnet_nb.pipeline.reproduce import _theory_done, theory_parameters

    cfg = make_config("smoke", dataset="synthetic")
    params = theory_parameters("smoke", cfg, "r", tmp_path)
    from resnet_nb.analysis.probes import SMOKE_PROBE
    assert (params["depths"], params["seeds"], params["batch_size"]) == tuple(SMOKE_PROBE.values())
    assert not _theory_done(params, "f" * 64)
    d = tmp_path / "r"
    d.mkdir()
    for f in THEORY_FIGURE_FILES.values():
        (d / f).write_bytes(b"png")
    stored = {k: params[k] for k in ("dataset", "depths", "seeds", "batch_size", "normalization")}
    atomic_write_json(d / "theory_probes.json", {"parameters": {**stored, "fingerprint": "f" * 64}})
    assert not _theory_done(params, "f" * 64)   # no provenance recorded: figures from before titles named it
    atomic_write_json(d / "theory_probes.json", {"parameters": {**stored, "fingerprint": "f" * 64,
                                                                "provenance": "synthetic"}})
    assert _theory_done(params, "f" * 64)
    assert not _theory_done(params, "0" * 64)
    assert not _theory_done({**params, "seeds": "0,1,2"}, "f" * 64)
