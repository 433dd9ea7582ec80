"""TrainConfig: fields, presets, overrides and one-line errors for bad input."""
import dataclasses
import json

import pytest

from resnet_nb.training.config import (
    NON_MATH_FIELDS,
    PRESETS,
    TrainConfig,
    coerce_field,
    config_diff,
    config_from_dict,
    field_help,
    make_config,
)

# The field names are a fixed interface (CLI flags, papermill parameters, config.json); defaults are the seed recipe.
SEED_DEFAULTS = dict(
    preset="seed", model="resnet20", shortcut="A", epochs=200, batch_size=128, lr=0.1,
    momentum=0.9, weight_decay=1e-4, schedule="epochs", milestones=(100, 150), gamma=0.1,
    max_iters=0, warmup_iters=0, warmup_lr=0.01, normalization="channel", val_split=0, seed=0,
    device="auto", precision="auto", data_root=None, allow_noncanonical=False, dataset="cifar10",
    out_dir="experiments", run_id="", run_name="", train_subset=0, test_subset=0, eval_every=1,
    time_budget=0.0, pack_mode="grouped")


def test_fields_and_seed_defaults():
    assert dataclasses.asdict(TrainConfig()) == SEED_DEFAULTS
    assert make_config("seed") == TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        assert field_help(f.name), f"{f.name} has no help/unit text"


def test_frozen_and_json_roundtrip():
    cfg = make_config("paper", model="plain56", seed=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lr = 1.0
    back = config_from_dict(json.loads(json.dumps(dataclasses.asdict(cfg))))
    assert back == cfg and isinstance(back.milestones, tuple)


def test_paper_preset_is_sec_4_2():
    c = make_config("paper")
    assert (c.schedule, c.milestones, c.max_iters) == ("iterations", (32000, 48000), 64000)
    assert (c.val_split, c.normalization, c.shortcut) == (5000, "pixel", "A")
    assert (c.lr, c.momentum, c.weight_decay, c.batch_size) == (0.1, 0.9, 1e-4, 128)


def test_smoke_preset_is_small_and_overridable():
    c = make_config("smoke", model="plain20", dataset="synthetic", epochs=4)
    assert c.preset == "smoke" and c.train_subset and c.test_subset
    assert (c.model, c.dataset, c.epochs) == ("plain20", "synthetic", 4)
    assert set(PRESETS) == {"seed", "paper", "short", "smoke"}


@pytest.mark.parametrize("value,expected", [
    ("100,150", (100, 150)), ([32000, 48000], (32000, 48000)), ("(5, 7)", (5, 7)), ("", ()),
    (4, (4,)), (4.0, (4,)), ("4", (4,))])       # papermill -p milestones 4 gives the int 4
def test_milestones_coercion(value, expected):
    assert make_config(milestones=value).milestones == expected


@pytest.mark.parametrize("value", [4.5, True, None])
def test_milestones_refuses_non_integers(value):
    with pytest.raises(ValueError, match="milestones must be a comma list of integers"):
        coerce_field("milestones", value)


def test_coercion_of_strings_and_numbers():
    c = make_config(lr=1, epochs="7", allow_noncanonical="true", data_root="none", model=" ResNet56 ")
    assert (c.lr, c.epochs, c.allow_noncanonical, c.data_root, c.model) == (1.0, 7, True, None, "resnet56")
    assert coerce_field("shortcut", "b") == "b" and make_config(shortcut="b").shortcut == "B"


@pytest.mark.parametrize("overrides,message", [
    (dict(model="resnet50x"), r"unknown model 'resnet50x': use plain<depth> or resnet<depth>"),
    (dict(model="vgg16"), r"unknown model 'vgg16'"),
    (dict(model="resnet21"), r"model 'resnet21': depth must be 6n\+2"),
    (dict(model="plain4"), r"depth must be 6n\+2"),
    (dict(epochs=0), r"epochs must be a positive integer; got 0"),
    (dict(batch_size=-1), r"batch_size must be a positive integer; got -1"),
    (dict(eval_every=0), r"eval_every must be a positive integer"),
    (dict(train_subset=-5), r"train_subset must be >= 0"),
    (dict(test_subset=-1), r"test_subset must be >= 0"),
    (dict(val_split=-1), r"val_split must be >= 0"),
    (dict(max_iters=-1), r"max_iters must be >= 0"),
    (dict(lr=0), r"lr must be positive"),
    (dict(lr=-0.1), r"lr must be positive"),
    (dict(lr="inf"), r"lr must be a finite number; got inf"),
    (dict(lr=float("nan")), r"lr must be a finite number; got nan"),
    (dict(momentum="-inf"), r"momentum must be a finite number"),
    (dict(weight_decay=float("inf")), r"weight_decay must be a finite number"),
    (dict(gamma="nan"), r"gamma must be a finite number"),
    (dict(warmup_lr="inf"), r"warmup_lr must be a finite number"),
    (dict(lr=10**400), r"lr must be a number"),
    (dict(seed=1e20), r"seed must be below 2\*\*63"),
    (dict(seed=2**63), r"seed must be below 2\*\*63"),
    (dict(seed=-1), r"seed must be >= 0"),
    (dict(momentum=1.5), r"momentum must be in \[0, 1\)"),
    (dict(milestones="150,100"), r"milestones must be increasing positive epochs"),
    (dict(milestones="0"), r"milestones must be increasing"),
    (dict(schedule="cosine"), r"schedule must be epochs or iterations"),
    (dict(normalization="imagenet"), r"normalization must be channel or pixel"),
    (dict(dataset="mnist"), r"dataset must be cifar10 or synthetic"),
    (dict(device="gpu"), r"device must be auto, cpu, cuda"),
    (dict(precision="fp8"), r"precision must be one of"),
    (dict(shortcut="C"), r"shortcut must be A or B"),
    (dict(run_id="a/b"), r"run_id must be a plain folder name"),
    (dict(run_name=".."), r"run_name must be a plain folder name"),
    (dict(epochs="many"), r"epochs must be an integer; got 'many'"),
    (dict(epochs=True), r"epochs must be an integer"),
    (dict(out_dir=" "), r"out_dir must not be empty"),
    (dict(time_budget=-1), r"time_budget must be >= 0 seconds \(0 = no limit\); got -1"),
    (dict(time_budget="inf"), r"time_budget must be a finite number"),
    (dict(time_budget="soon"), r"time_budget must be a number; got 'soon'"),
    (dict(pack_mode="both"), r"pack_mode must be one of grouped, branches; got 'both'"),
])
def test_bad_values_give_one_line_errors(overrides, message):
    with pytest.raises(ValueError, match=message) as e:
        make_config("seed", **overrides)
    assert "\n" not in str(e.value)


def test_unknown_preset_and_field():
    with pytest.raises(ValueError, match=r"unknown preset 'fast': use one of seed, paper, short, smoke"):
        make_config("fast")
    with pytest.raises(ValueError, match=r"unknown TrainConfig field 'learning_rate'") as e:
        make_config("seed", learning_rate=0.1)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match=r"did you mean epochs\?"):
        make_config("seed", epoch=3)
    with pytest.raises(ValueError, match="preset"):
        make_config("seed", preset="paper")
    with pytest.raises(ValueError, match="unknown TrainConfig field 'foo'"):
        config_from_dict({"foo": 1})


def test_config_diff_lists_math_fields_only():
    a = make_config("seed", run_id="r")
    b = dataclasses.replace(a, lr=0.2, epochs=10, out_dir="elsewhere", device="cpu", data_root="/x",
                            time_budget=540)
    assert config_diff(a, b) == {"lr": (0.1, 0.2), "epochs": (200, 10)}
    assert set(NON_MATH_FIELDS) == {"out_dir", "data_root", "allow_noncanonical", "device", "time_budget",
                                    "pack_mode"}
    assert config_diff(a, dataclasses.replace(a, pack_mode="branches")) == {}   # resumes in the other mode
    assert make_config("seed", time_budget="540").time_budget == 540.0   # CLI/papermill text and ints
    assert config_diff(dataclasses.asdict(a), a) == {}


def test_short_preset_is_the_seed_recipe_compressed_ten_times():
    seed, short = make_config("seed"), make_config("short")
    assert (short.epochs, short.milestones) == (seed.epochs // 10, tuple(m // 10 for m in seed.milestones))
    same = {k for k, v in dataclasses.asdict(short).items() if dataclasses.asdict(seed)[k] == v}
    assert set(dataclasses.asdict(seed)) - same == {"preset", "epochs", "milestones"}


def test_precision_auto_matches_any_stored_precision_and_old_configs_were_fp32():
    from resnet_nb.training.config import LEGACY_PRECISION, config_diff, config_from_dict
    assert make_config("seed").precision == "auto" and make_config("smoke").precision == "fp32"
    assert config_diff({"precision": "bf16"}, make_config("seed")) == {}          # auto: the stored one
    assert config_diff({"precision": "bf16"}, make_config("seed", precision="fp32")) == {
        "precision": ("bf16", "fp32")}
    old = dataclasses.asdict(make_config("seed"))
    del old["precision"]                                   # a config.json written before the field existed
    assert config_from_dict(old).precision == LEGACY_PRECISION == "fp32"
    assert config_diff(old, make_config("seed", precision="bf16")) == {"precision": ("fp32", "bf16")}
