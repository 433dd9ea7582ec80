"""The depth sweep's model set and ResNet-110's warm-up rule, and the published
numbers file (report/literature.json) with its checks."""
from __future__ import annotations

import argparse
import json

import pytest

from resnet_nb.analysis.literature import LiteratureError, load_literature
from resnet_nb.models.resnet import SWEEP_MODELS, expand_models
from resnet_nb.pipeline import reproduce
from resnet_nb.training.config import make_config, paper_warmup


def test_sweep_expands_to_the_nine_models():
    assert expand_models(["sweep"]) == list(SWEEP_MODELS) == [
        "plain20", "plain32", "plain44", "plain56", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110"]
    assert expand_models(["plain20", "seed", "resnet110"]) == ["plain20", "plain56", "resnet20", "resnet56", "resnet110"]
    with pytest.raises(ValueError, match="unknown model 'sweeps'"):
        expand_models(["sweeps"])


def test_resnet110_gets_the_papers_warmup_scaled_in_a_smoke_run():
    full = paper_warmup(make_config("paper", model="resnet110"), 50_000)   # 64000 iterations
    assert (full.warmup_iters, full.warmup_lr) == (400, 0.01)
    smoke = paper_warmup(make_config("smoke", model="resnet110"), 2_000)   # 640 images / 32 x 3 epochs = 60
    assert (smoke.warmup_iters, smoke.warmup_lr) == (1, 0.001)              # 60 x 400/64000 = 0.375 -> at least 1
    longer = paper_warmup(make_config("smoke", model="resnet110", epochs=400), 2_000)  # 8000 iterations -> 50
    assert longer.warmup_iters == 50
    plain = make_config("paper", model="resnet56")
    assert paper_warmup(plain, 50_000) is plain                             # below 110 layers: unchanged
    mine = make_config("smoke", model="resnet110", warmup_iters=7)
    assert paper_warmup(mine, 2_000, keep_iters=True) is mine               # the user's value wins


def test_make_config_applies_the_rule_for_every_entry_point():
    """make_config is where train, 02_train, reproduce and the cluster tasks build configs."""
    assert (make_config("paper", model="resnet110").warmup_iters, make_config("paper", model="resnet110").warmup_lr) \
        == (400, 0.01)
    smoke = make_config("smoke", model="resnet110")
    assert (smoke.warmup_iters, smoke.warmup_lr) == (1, 0.001)
    assert make_config("smoke", model="plain110").warmup_iters == 1          # the rule is about depth, not shortcuts
    assert make_config("smoke", model="resnet56").warmup_iters == 0
    # no train_subset: the dataset's nominal size. CIFAR-10: 2 epochs of 391 = 782 iterations -> 4.9 -> 5
    assert make_config("seed", model="resnet110", epochs=2).warmup_iters == 5
    # the default synthetic fixture, 2000 images: 100 epochs of 16 = 1600 iterations -> 10
    assert make_config("seed", model="resnet110", dataset="synthetic", epochs=100).warmup_iters == 10
    # the user's value wins, 0 included; a given warmup_lr stays with the rule's iterations
    assert make_config("smoke", model="resnet110", warmup_iters=0).warmup_iters == 0
    assert make_config("smoke", model="resnet110", warmup_iters=7).warmup_lr == 0.01
    given_lr = make_config("smoke", model="resnet110", warmup_lr=0.002)
    assert (given_lr.warmup_iters, given_lr.warmup_lr) == (1, 0.002)


def test_train_cli_and_02_train_get_the_rule(tmp_path):
    from resnet_nb.pipeline.notebook import configs_from_parameters
    from resnet_nb.training import train
    from resnet_nb.training.config import TrainConfig

    p = argparse.ArgumentParser()
    train.add_arguments(p)
    names = [f for f in TrainConfig.__dataclass_fields__ if f != "preset"]
    for argv, want in ((["--model", "resnet110"], 1), (["--model", "resnet110", "--warmup-iters", "0"], 0)):
        args = p.parse_args(["--preset", "smoke", *argv])   # what train.run_cli passes to make_config
        cfg = make_config(args.preset, **{n: getattr(args, n) for n in names if hasattr(args, n)})
        assert cfg.warmup_iters == want
    nb = dict(preset="smoke", model="resnet110", warmup_iters=None, warmup_lr=None, out_dir=str(tmp_path), run_id="x")
    assert configs_from_parameters(nb)[0].warmup_iters == 1                  # a parameter left at None
    assert configs_from_parameters({**nb, "warmup_iters": 0})[0].warmup_iters == 0


def _reproduce_args(*argv):
    p = argparse.ArgumentParser()
    reproduce.add_arguments(p)
    return p.parse_args(list(argv))


def test_reproduce_sweep_applies_the_rule_unless_the_user_set_warmup_iters(tmp_path, capsys):
    base = ("--preset", "smoke", "--dataset", "synthetic", "--out-dir", str(tmp_path), "--run-id", "x")
    cfgs, models, several = reproduce._configs(_reproduce_args(*base, "--models", "sweep", "--seeds", "0,1"))
    assert models == list(SWEEP_MODELS) and several and len(cfgs) == 18
    warm = {c.model: c.warmup_iters for c in cfgs}
    assert warm["resnet110"] == 1 and all(v == 0 for m, v in warm.items() if m != "resnet110")
    out = capsys.readouterr().out
    assert "resnet110: warm-up lr 0.001 for 1 iteration (the paper's rule, scaled from its 400 of 64000" in out
    assert out.count("warm-up") == 1                                  # one line per deep model, not per seed
    cfgs, _, _ = reproduce._configs(_reproduce_args(*base, "--models", "resnet110", "--set", "warmup_iters=5"))
    assert cfgs[0].warmup_iters == 5 and cfgs[0].warmup_lr == 0.01   # as given (warmup_lr: the default)
    assert "resnet110: warm-up lr 0.01 for 5 iterations (as given by --set warmup_iters)" in capsys.readouterr().out


@pytest.mark.parametrize("given", [(), ("--set", "warmup_iters=0"), ("--set", "warmup_lr=0.05"),
                                   ("--set", "warmup_lr=0.01")])
def test_02_train_rebuilds_the_configs_reproduce_planned(tmp_path, capsys, given):
    """The papermill parameters of each unit give 02_train the same configs, warm-up included
    (a --set warmup_iters=0 equals the field default, yet must not bring the rule back)."""
    from resnet_nb.pipeline.notebook import configs_from_parameters

    base = ("--preset", "smoke", "--dataset", "synthetic", "--out-dir", str(tmp_path), "--run-id", "x")
    cfgs, _, several = reproduce._configs(_reproduce_args(*base, "--models", "resnet20,resnet110", *given))
    units = reproduce.plan_units(cfgs, pack_by_depth=False) + reproduce.plan_units(cfgs, pack_by_depth=True)
    for unit in units + [reproduce.Unit("all-depths", cfgs)]:   # one unit of several depths too
        assert configs_from_parameters(unit.parameters(several)) == unit.cfgs
    assert {c.model: c.warmup_iters for c in cfgs}["resnet110"] == (0 if "warmup_iters=0" in given else 1)


def test_the_literature_file_loads_with_its_sources():
    lit = load_literature()
    src = lit["sources"]
    assert list(src) == ["paper", "seed_report", "nabla0001", "akamaster"]
    r110 = src["paper"]["results"]["resnet110"]
    assert (r110["error_pct"], r110["best_of"], r110["mean_error_pct"], r110["mean_std_pct"]) == (6.43, 5, 6.61, 0.16)
    assert src["seed_report"]["results"]["plain56"]["best_test_acc"] == 0.8769
    assert src["seed_report"]["results"]["plain56"]["error_pct"] == 12.31 and src["paper"]["params_m"][56] == 0.85
    assert (src["nabla0001"]["results"]["resnet56"]["error_pct"], src["nabla0001"]["results"]["resnet56"]["std_pct"]) == (7.40, 0.27)
    assert src["akamaster"]["results"]["resnet20"]["error_pct"] == 8.27
    # a table column's header is short (the full name is in the text above the table)
    assert src["akamaster"]["column"]["en"] == "akamaster" and src["seed_report"]["column"] == src["seed_report"]["name"]


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["sources"][0].update(cite="nobody2099"), "citation key 'nobody2099' is not in"),
    (lambda d: d["sources"][2]["results"]["plain20"].update(best_test_acc=0.9), "exactly one of error_pct"),
    (lambda d: d["sources"][2]["results"].update(plain21={"error_pct": 1.0}), "model 'plain21'"),
    (lambda d: d["sources"][3]["results"]["resnet20"].update(error_pct="8.27"), r"error_pct must be a number in \[0, 100\]"),
    (lambda d: d["sources"][2]["results"]["plain20"].pop("n"), "std_pct needs n"),
    (lambda d: d["sources"][3].update(column={"en": "akamaster/pytorch_resnet_cifar10", "zh": "a"}),
     r"column: at most 20 characters"),
    (lambda d: d["sources"][3].update(column="akamaster"), r"column must be \{"),
])
def test_a_malformed_literature_file_is_refused_with_the_place(tmp_path, edit, message):
    from resnet_nb.analysis.literature import LITERATURE_FILE

    data = json.loads(LITERATURE_FILE.read_text(encoding="utf-8"))
    edit(data)
    bad = tmp_path / "literature.json"
    bad.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(LiteratureError, match=message) as e:
        load_literature(bad)
    assert "literature.json: sources[" in str(e.value) and str(bad) in str(e.value)
    with pytest.raises(LiteratureError, match="is missing"):
        load_literature(tmp_path / "none.json")
