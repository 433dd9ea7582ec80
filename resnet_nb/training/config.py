"""One frozen ``TrainConfig`` describes a training run completely.

Every field is flat and typed; its help text carries the unit. The CLI flags of
``resnet-nb train`` and the papermill parameters of ``02_train`` map 1:1 onto the field
names, and ``asdict(cfg)`` is written into ``config.json`` and every checkpoint.

Presets (``make_config(preset, **overrides)``; any field can be overridden):

* ``seed``: the seed report's control recipe (the field defaults): SGD momentum 0.9,
  lr 0.1 divided by 10 at epochs 100 and 150, weight decay 1e-4, 200 epochs, batch 128,
  full 50k train set, crop + flip, per-channel normalisation, test set every epoch.
* ``paper``: He et al. 2016, sec. 4.2: a 45k/5k train/val split, lr divided by 10 at 32k
  and 48k iterations, stop at 64k iterations (182 epochs of 352 iterations), per-pixel
  mean subtraction, option A shortcuts.
* ``short``: the seed recipe compressed ten times, for a CPU: 20 epochs, lr divided by 10
  at epochs 10 and 15, everything else the seed's. A few hours per seed of the four models on
  a 2-core CPU (docs/speed.md); its claims are judged "at 20 epochs", never as the paper's
  200-epoch result.
* ``smoke``: CPU-sized: 640 train / 200 test images, batch 32, lr 0.01, 3 epochs (lr /10
  for the last): 60 SGD steps per model, so that ``reproduce`` of the four default models
  (theory probes and analysis included) takes under 3 minutes on 2 cores (171-187 s
  measured with the cores lightly shared, against 515 s for the former 2000-image,
  5-epoch preset). lr 0.1 makes ResNet-56 diverge in its first steps at this size (the
  paper warms ResNet-110 up at 0.01 for the same reason); at 0.01 every default model ends
  clearly above chance on the synthetic fixture. fp32, so that its numbers are the same on
  every machine. A check that everything runs and learns, not a result.

Every value is checked when the config is built; errors are one line that says what to do.
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import math
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Sequence

from resnet_nb.models.resnet import SHORTCUTS, parse_model_name
from resnet_nb.runs.rundir import check_run_id

__all__ = [
    "TrainConfig", "PRESETS", "make_config", "config_from_dict", "config_diff",
    "NON_MATH_FIELDS", "SCHEDULES", "NORMALIZATIONS", "DATASETS", "PRECISIONS",
    "field_help", "coerce_field", "SEED_LIMIT", "add_field_arguments", "cli_value",
    "PAPER_WARMUP", "paper_warmup", "PACK_MODES", "LEGACY_PRECISION",
]

SCHEDULES = ("epochs", "iterations")
NORMALIZATIONS = ("channel", "pixel")
DATASETS = ("cifar10", "synthetic")
# bf16: autocast with fp32 master weights (resnet_nb.training.step); auto: what the run already uses, else
# fp32 (precision.default_precision: bf16 is opt-in until measured to pay and to train as fp32 does)
PRECISIONS = ("auto", "fp32", "bf16")
LEGACY_PRECISION = "fp32"  # what a stored config without a precision field trained in
PACK_MODES = ("grouped", "branches")  # how a pack's members step together (resnet_nb.training.loop)
DEVICES_HINT = "auto, cpu, cuda or cuda:<index>"
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
# seeds are 0 <= seed < 2**63: torch.manual_seed takes 64 bits, and the data stream uses
# seed + 2**32 (prepare.DATA_SEED_OFFSET), which must fit as well
SEED_LIMIT = 2**63

# Fields that may differ between a stored run and the config that resumes it: they say
# where things are or what is permitted, not what is computed (device: the device *type*
# must still match, because the data generator's state lives on it; time_budget: when this
# process stops, at an epoch boundary, never what an epoch computes; pack_mode: how the
# members of a pack are scheduled, each member's mathematics are its standalone run's).
NON_MATH_FIELDS = ("out_dir", "data_root", "allow_noncanonical", "device", "time_budget", "pack_mode")


def _f(default: Any, help: str):  # noqa: A002 - "help" is the natural name here
    """A dataclass field whose help text (unit included) feeds ``--help`` and the docs."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines one training run (defaults: the ``seed`` preset)."""

    preset: str = _f("seed", "preset the other values started from (seed, paper, short, smoke)")
    # --- model (sec. 4.2)
    model: str = _f("resnet20", "plain<depth> or resnet<depth>, depth = 6n+2 (20, 32, 44, 56, 110, 1202)")
    shortcut: str = _f("A", "shortcut for shape-changing blocks: A (zero-pad, paper) or B (1x1 projection)")
    # --- optimisation
    epochs: int = _f(200, "epochs: full passes over the training images")
    batch_size: int = _f(128, "images per SGD step (mini-batch size)")
    lr: float = _f(0.1, "initial learning rate")
    momentum: float = _f(0.9, "SGD momentum")
    weight_decay: float = _f(1e-4, "L2 weight decay, applied by SGD to every parameter")
    schedule: str = _f("epochs", "lr schedule unit: epochs (MultiStep at epoch milestones) or iterations")
    milestones: tuple[int, ...] = _f((100, 150), "lr is multiplied by gamma at each milestone "
                                                 "(epochs or iterations, per schedule); comma list")
    gamma: float = _f(0.1, "lr multiplier at each milestone")
    max_iters: int = _f(0, "stop after this many iterations (SGD steps); 0 = no limit (paper: 64000)")
    warmup_iters: int = _f(0, "iterations at warmup_lr before the schedule starts; nets of >= 110 layers "
                              "get the paper's 400 (ResNet-110), scaled to a short run, unless given (0 too)")
    warmup_lr: float = _f(0.01, "constant learning rate during warm-up (the paper's rule: lr / 10)")
    # --- data
    normalization: str = _f("channel", "channel (mean/std per colour channel) or pixel (subtract the "
                                       "per-pixel mean image, paper)")
    val_split: int = _f(0, "training images held out as a validation set (paper: 5000); 0 = none")
    train_subset: int = _f(0, "use only this many training images (fixed subset); 0 = all")
    test_subset: int = _f(0, "use only this many test images (fixed subset); 0 = all")
    dataset: str = _f("cifar10", "cifar10, or synthetic (a generated fixture for demos and tests)")
    data_root: str | None = _f(None, "folder with CIFAR-10 (none: $RESNET_NB_DATA or data/cifar10)")
    allow_noncanonical: bool = _f(False, "accept a CIFAR-10 copy whose md5 sums differ (labelled non-canonical)")
    # --- run
    seed: int = _f(0, "seed of the weight init and of the data order/augmentation stream")
    device: str = _f("auto", f"training device: {DEVICES_HINT} (auto = cuda if available)")
    precision: str = _f("auto", "arithmetic of the training step: fp32; bf16 (bfloat16 autocast, fp32 master "
                                "weights: GPUs of compute capability 8.0+, CPUs with AVX512-BF16 or AMX); "
                                "auto: a resumed run keeps its precision, a new one gets fp32 "
                                "(config.json records the choice)")
    out_dir: str = _f("experiments", "root folder of run directories")
    run_id: str = _f("", "run id: the folder grouping the runs of one reproduction "
                         "(empty: resume the newest unfinished matching run, else repro-YYYYmmdd-HHMMSS)")
    run_name: str = _f("", "leaf folder of this run (empty: the model name)")
    eval_every: int = _f(1, "evaluate on the test (and val) set every this many epochs, and after the last")
    time_budget: float = _f(0.0, "seconds this process may train (counted from its start; 0 = no limit): "
                                 "it stops at the epoch boundary where the next epoch would not fit "
                                 "(judged by the last epoch's time; the first epoch always runs), "
                                 "status paused, last.pth written; rerunning resumes")
    pack_mode: str = _f("grouped", "how the members of a pack step together: grouped (same-depth members in "
                                   "one grouped-convolution network, depths one after the other) or branches "
                                   "(a network per member, all depths of one recipe together; on CUDA one "
                                   "graph with a stream per member). Same mathematics either way, so a run "
                                   "may resume in the other mode; grouped stays the default until a GPU "
                                   "measurement (resnet-nb bench --concurrent) says branches is faster")

    def __post_init__(self) -> None:
        # normalise types first (lists from JSON/papermill, ints given for floats), then check
        for f in fields(self):
            object.__setattr__(self, f.name, coerce_field(f.name, getattr(self, f.name)))
        family, depth = parse_model_name(self.model)  # unknown model / bad depth: one line
        object.__setattr__(self, "model", f"{family}{depth}")  # " ResNet20" -> "resnet20"
        object.__setattr__(self, "shortcut", self.shortcut.upper())
        _validate(self)


def _kind(name: str) -> str:
    f = _FIELDS.get(name)
    if f is None:
        raise ValueError(_unknown_field_message(name))
    return str(f.type)


def coerce_field(name: str, value: Any) -> Any:
    """Convert ``value`` (from Python, JSON, papermill or a CLI string) to the field's type.

    ``"100,150"``, ``[100, 150]`` -> ``(100, 150)``, a single ``4`` (papermill ``-p milestones
    4``) -> ``(4,)``; ``"true"`` -> ``True``; ``"none"`` -> None for ``data_root``; an int
    given for a float field -> float. Raises ValueError otherwise.
    """
    kind = _kind(name)
    bad = ValueError(f"{name} must be {_KIND_WORDS[kind]}; got {value!r}")
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return value.strip().lower() in ("1", "true", "yes", "on")
        raise bad
    if kind == "int":
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                raise bad from None
        raise bad
    if kind == "float":
        if isinstance(value, bool):
            raise bad
        try:
            if isinstance(value, (int, float)):
                return float(value)
            if isinstance(value, str):
                return float(value.strip())
        except (ValueError, OverflowError):  # OverflowError: an int beyond float range
            raise bad from None
        raise bad
    if kind == "tuple[int, ...]":
        if isinstance(value, str):
            parts = [p for p in re.split(r"[,\s]+", value.strip().strip("()[]")) if p]
        elif isinstance(value, (list, tuple)):
            parts = list(value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            parts = [value]                                   # one milestone given as a number
        else:
            raise bad
        try:
            out = []
            for p in parts:
                if isinstance(p, bool) or (isinstance(p, float) and not p.is_integer()):
                    raise ValueError
                out.append(int(p))
            return tuple(out)
        except (TypeError, ValueError):
            raise bad from None
    if kind == "str | None":
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
            return None
        if isinstance(value, str):
            return value
        if hasattr(value, "__fspath__"):
            return str(value)
        raise bad
    if kind == "str":
        if isinstance(value, str):
            return value
        raise bad
    raise AssertionError(f"unhandled field type {kind} of {name}")  # pragma: no cover


_KIND_WORDS = {
    "int": "an integer", "float": "a number", "str": "a string", "bool": "true or false",
    "tuple[int, ...]": "a comma list of integers (e.g. 100,150)", "str | None": "a path or none",
}




def _validate(c: TrainConfig) -> None:
    """One-line ValueErrors that say what to do; called for every config built."""
    def need(ok: bool, msg: str) -> None:
        if not ok:
            raise ValueError(msg)

    if c.preset not in PRESETS:
        raise ValueError(_unknown_preset_message(c.preset))
    need(c.shortcut in SHORTCUTS, f"shortcut must be A or B (sec. 3.3 options); got {c.shortcut!r}")
    for name in ("epochs", "batch_size", "eval_every"):
        v = getattr(c, name)
        need(v > 0, f"{name} must be a positive integer; got {v}")
    for name in ("max_iters", "warmup_iters", "val_split", "train_subset", "test_subset", "seed"):
        v = getattr(c, name)
        need(v >= 0, f"{name} must be >= 0 (0 = {'none' if name != 'seed' else 'seed 0'}); got {v}")
    need(c.seed < SEED_LIMIT, f"seed must be below 2**63 = {SEED_LIMIT} (torch seeds are 64-bit); got {c.seed}")
    for f in fields(c):
        if str(f.type) == "float":
            v = getattr(c, f.name)
            need(math.isfinite(v), f"{f.name} must be a finite number; got {v}")
    need(c.lr > 0, f"lr must be positive; got {c.lr}")
    need(c.warmup_lr > 0, f"warmup_lr must be positive; got {c.warmup_lr}")
    need(0 <= c.momentum < 1, f"momentum must be in [0, 1); got {c.momentum}")
    need(c.weight_decay >= 0, f"weight_decay must be >= 0; got {c.weight_decay}")
    need(c.time_budget >= 0, f"time_budget must be >= 0 seconds (0 = no limit); got {c.time_budget:g}")
    need(c.gamma > 0, f"gamma must be positive (0.1 divides lr by 10); got {c.gamma}")
    need(c.schedule in SCHEDULES, f"schedule must be epochs or iterations; got {c.schedule!r}")
    need(all(m > 0 for m in c.milestones) and list(c.milestones) == sorted(set(c.milestones)),
         f"milestones must be increasing positive {c.schedule} (e.g. 100,150); got {c.milestones}")
    need(c.normalization in NORMALIZATIONS, f"normalization must be channel or pixel; got {c.normalization!r}")
    need(c.dataset in DATASETS, f"dataset must be cifar10 or synthetic; got {c.dataset!r}")
    need(bool(_DEVICE_RE.match(c.device)), f"device must be {DEVICES_HINT}; got {c.device!r}")
    need(c.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}; got {c.precision!r}")
    need(c.pack_mode in PACK_MODES, f"pack_mode must be one of {', '.join(PACK_MODES)}; got {c.pack_mode!r}")
    need(bool(c.out_dir.strip()), "out_dir must not be empty; use e.g. experiments")
    for name in ("run_id", "run_name"):
        if getattr(c, name):
            check_run_id(getattr(c, name), name)
    # sizes against the data (val_split < training images, subsets <= available) are
    # checked by resnet_nb.training.prepare.prepare_data once the dataset is known.


# --------------------------------------------------------------------------- presets

PRESETS: dict[str, dict[str, Any]] = {
    "seed": {},
    "paper": dict(schedule="iterations", milestones=(32000, 48000), max_iters=64000, epochs=182,
                  val_split=5000, normalization="pixel", shortcut="A"),
    "short": dict(epochs=20, milestones=(10, 15)),
    "smoke": dict(epochs=3, milestones=(2,), train_subset=640, test_subset=200, batch_size=32, lr=0.01,
                  precision="fp32"),
}

_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def _unknown_preset_message(name: str) -> str:
    return f"unknown preset {name!r}: use one of {', '.join(PRESETS)}"


def _unknown_field_message(name: str) -> str:
    close = difflib.get_close_matches(name, list(_FIELDS), n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"unknown TrainConfig field {name!r}{hint}; fields: {', '.join(_FIELDS)}"


def make_config(preset: str = "seed", /, **overrides: Any) -> TrainConfig:
    """The ``preset``'s config with ``overrides`` applied (any field except ``preset``)."""
    if preset not in PRESETS:
        raise ValueError(_unknown_preset_message(preset))
    for name in overrides:
        if name not in _FIELDS:
            raise ValueError(_unknown_field_message(name))
    if "preset" in overrides and overrides["preset"] != preset:
        raise ValueError("give the preset as make_config's first argument, not as an override")
    values = {**PRESETS[preset], **overrides, "preset": preset}
    cfg = TrainConfig(**values)
    # the paper's warm-up of nets of >= 110 layers, unless warmup_iters was given (0 included)
    return paper_warmup(cfg, keep_iters="warmup_iters" in overrides, keep_lr="warmup_lr" in overrides)


# He et al. 2016, sec. 4.2: ResNet-110 trains at lr 0.01 "until the training error is below 80%
# (about 400 iterations)", then at 0.1, in a run of 64000 iterations
PAPER_WARMUP = {"iters": 400, "of_iters": 64000, "min_depth": 110, "lr_factor": 0.1}


def paper_warmup(cfg: TrainConfig, n_train: int | None = None, *, keep_iters: bool = False,
                 keep_lr: bool = False) -> TrainConfig:
    """``cfg`` with the paper's warm-up when its net has >= 110 layers (else unchanged):
    ``warmup_lr = lr / 10`` for ``warmup_iters`` = 400 iterations, or, in a run shorter than the
    paper's 64000 (a smoke run: ~60), the same fraction of the run (400/64000), at least 1.
    :func:`make_config` applies it, so every entry point (``resnet-nb train``, 02_train,
    ``reproduce``, the cluster tasks) builds the same config.
    ``n_train``: training images of the dataset (before ``train_subset`` and ``val_split``);
    None: the dataset's nominal size (CIFAR-10 and its stand-in 50,000, the default synthetic
    fixture ``data.SYNTHETIC_SIZE``; with ``train_subset`` the size does not matter);
    ``keep_iters`` / ``keep_lr``: the user set that field, which then stays as given (with
    ``keep_iters`` nothing changes). config.json records the values; the report says when
    they were scaled (``warmup_iters`` < 400)."""
    depth = parse_model_name(cfg.model)[1]
    if keep_iters or depth < PAPER_WARMUP["min_depth"]:
        return cfg
    if n_train is None:
        from resnet_nb.data.cifar10 import SYNTHETIC_SIZE

        n_train = SYNTHETIC_SIZE[0] if cfg.dataset == "synthetic" else 50_000
    per_epoch = math.ceil(max(1, (cfg.train_subset or n_train) - cfg.val_split) / cfg.batch_size)
    total = cfg.epochs * per_epoch if not cfg.max_iters else min(cfg.max_iters, cfg.epochs * per_epoch)
    iters = min(PAPER_WARMUP["iters"], max(1, round(total * PAPER_WARMUP["iters"] / PAPER_WARMUP["of_iters"])))
    lr = cfg.warmup_lr if keep_lr else float(f"{cfg.lr * PAPER_WARMUP['lr_factor']:.12g}")
    return dataclasses.replace(cfg, warmup_iters=iters, warmup_lr=lr)


def config_from_dict(d: dict) -> TrainConfig:
    """Rebuild a config from ``asdict`` output (config.json, a checkpoint); unknown keys
    are refused, missing keys take the defaults (configs written by older versions)."""
    unknown = [k for k in d if k not in _FIELDS]
    if unknown:
        raise ValueError(_unknown_field_message(unknown[0]))
    return TrainConfig(**{"precision": LEGACY_PRECISION, **d})


def config_diff(stored: dict | TrainConfig, new: dict | TrainConfig,
                ignore: tuple[str, ...] = NON_MATH_FIELDS) -> dict[str, tuple[Any, Any]]:
    """``{field: (stored value, new value)}`` for the fields that differ, minus ``ignore``."""
    a = stored if isinstance(stored, dict) else asdict(stored)
    b = new if isinstance(new, dict) else asdict(new)
    a = {k: coerce_field(k, v) for k, v in a.items() if k in _FIELDS}
    b = {k: coerce_field(k, v) for k, v in b.items() if k in _FIELDS}
    defaults = {**asdict(TrainConfig()), "precision": LEGACY_PRECISION}
    out = {}
    for k in _FIELDS:
        if k in ignore:
            continue
        va, vb = a.get(k, defaults[k]), b.get(k, defaults[k])
        if k == "precision" and "auto" in (va, vb):
            continue          # auto takes the stored run's precision (loop.train_pack settles it)
        if va != vb:
            out[k] = (va, vb)
    return out


def field_help(name: str) -> str:
    """The help text (with unit) of a field."""
    return _FIELDS[name].metadata.get("help", "") if name in _FIELDS else ""


# --------------------------------------------------------------------------- CLI flags

def cli_value(v: Any) -> str:
    """A field value as a flag takes it: ``(100, 150)`` -> ``100,150``, None -> ``none``."""
    if isinstance(v, tuple):
        return ",".join(map(str, v))
    return "none" if v is None else str(v)


def _cli_type(name: str):
    def parse(text: str):
        try:
            return coerce_field(name, text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    parse.__name__ = name
    return parse


def _choices(values) -> str:
    return "{" + ",".join(values) + "}"


_METAVARS = {"shortcut": _choices(SHORTCUTS), "schedule": _choices(SCHEDULES),
             "normalization": _choices(NORMALIZATIONS), "dataset": _choices(DATASETS),
             "device": "DEVICE", "out_dir": "PATH", "precision": _choices(PRECISIONS), "time_budget": "SECONDS",
             "pack_mode": _choices(PACK_MODES)}


def add_field_arguments(p: argparse.ArgumentParser, names: Sequence[str], *, defaults: bool = False) -> None:
    """One flag per TrainConfig field of ``names`` (``data_root`` -> ``--data-root``; a bool
    field also gets ``--no-<name>``), parsed by :func:`coerce_field`, its help the field's.
    A flag not given is absent from the namespace (the preset's value applies: ``train``),
    or with ``defaults`` holds the field's default (``reproduce``)."""
    default_of = asdict(TrainConfig())
    for name in names:
        flag = "--" + name.replace("_", "-")
        default = default_of[name]
        text = f"{field_help(name)} (default: {cli_value(default) if default != '' else 'empty'})"
        given = default if defaults else argparse.SUPPRESS
        kind = _kind(name)
        if kind == "bool":
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=given, help=text)
        else:
            metavar = _METAVARS.get(name) or {"int": "N", "float": "X", "tuple[int, ...]": "N,N,..",
                                              "str | None": "PATH"}.get(kind, "NAME")
            p.add_argument(flag, type=_cli_type(name), default=given, metavar=metavar, help=text)
