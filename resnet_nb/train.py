"""Training engine: one controlled recipe for every model (He et al. 2016, sec. 4.2).

``train(cfg)`` trains one ``TrainConfig`` into its run directory
``<out_dir>/<run_id>/<run_name>/`` (the contract of DESIGN.md, see ``resnet_nb.runs``):

* data: the uint8 images live on the training device; each epoch draws a seeded
  permutation, augments every batch on the device (random 32x32 crop of the 4-pixel
  zero-padded image + horizontal flip, sec. 4.2) and normalises it (per-channel mean/std,
  or the paper's per-pixel mean), with statistics of the training images in use;
* optimisation: SGD with momentum and weight decay; the learning rate is the pure function
  ``lr_at(cfg, iteration, iters_per_epoch)`` (MultiStep at epoch or iteration milestones,
  optional constant warm-up), written into the optimiser before every step;
* evaluation on the test set (and the val split when there is one) every ``eval_every``
  epochs; ``best.pth`` keeps the weights of the best test accuracy (as the seed report did);
* exact resume: ``last.pth`` (model, optimiser, RNG states, epoch, iteration, best
  accuracy, the metrics so far) is written atomically after every epoch. Rerunning the
  same config continues from it; on CPU the finished ``metrics.json`` equals that of an
  uninterrupted run in every field except the timings (``time``, ``elapsed``).

A stored run is only resumed by a config that differs from it at most in
``config.NON_MATH_FIELDS`` (out_dir, data_root, allow_noncanonical, device: where things
are, not what is computed; the device *type* must match). Otherwise it is refused with the
differing fields listed; ``restart=True`` (``--restart``) starts it over.

With ``run_id=""`` the newest unfinished run under ``out_dir`` whose config matches is
resumed (so rerunning a killed command continues it); if there is none, a new id
``repro-YYYYmmdd-HHMMSS`` is made. ``train_many`` gives all its configs one run id.

``train_step`` and ``train_epoch`` are kept separate and generic so that a packed or
graph-captured model (``resnet_nb.packed`` / ``resnet_nb.fast``) can reuse the loop.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from resnet_nb import data as D
from resnet_nb import fast, runs
from resnet_nb.config import (DATASETS, NON_MATH_FIELDS, NORMALIZATIONS, PRECISIONS, PRESETS,
                              SCHEDULES, TrainConfig, config_diff, field_help, make_config)
from resnet_nb.models import SHORTCUTS, build_model, count_parameters
from resnet_nb.runs import (BEST_FILE, CONFIG_FILE, LAST_FILE, METRICS_FILE, NoSpaceError,
                            atomic_save, atomic_write_json, read_json, run_dir_of)

__all__ = [
    "TrainingDiverged", "PreparedData", "resolve_device", "prepare_data", "iters_per_epoch",
    "planned_epochs", "lr_at", "set_lr", "make_optimizer", "train_step", "train_epoch",
    "evaluate", "train", "train_many", "resolve_run_ids", "add_arguments", "run_cli", "SUBSET_SEED",
]

SUBSET_SEED = 0          # the val split and the train/test subsets are fixed (part of the data)
DATA_SEED_OFFSET = 2**32  # data-order/augmentation stream seed = seed + 2**32 (disjoint from init)
EVAL_BATCH = 1000        # images per evaluation forward pass
UNFINISHED = ("running", "interrupted")


class TrainingDiverged(RuntimeError):
    """The training loss (or an evaluation loss) became NaN or infinite."""


# --------------------------------------------------------------------------- device, data

def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda if available else cpu; a requested but missing GPU is a one-line error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} requested but CUDA is not available here; "
                             f"use --device cpu (or auto)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r}: only {torch.cuda.device_count()} GPU(s) visible; "
                             f"use cuda:0..cuda:{torch.cuda.device_count() - 1}")
    return dev


@dataclass
class PreparedData:
    """The images of one run, on its device. uint8 (N, 3, 32, 32) images, int64 (N,) labels;
    ``mean``/``std``: normalisation statistics of the training images in use ((3,) each for
    ``channel``; a (3, 32, 32) mean image and ``std=None`` for ``pixel``)."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    val_x: torch.Tensor | None
    val_y: torch.Tensor | None
    mean: torch.Tensor
    std: torch.Tensor | None
    info: dict            # dataset provenance (Cifar10.info()) + sizes in use + normalisation

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 images -> float32 network input."""
        return D.normalize(x, self.mean, self.std)


def _fixed_subset(n: int, k: int) -> torch.Tensor:
    """The first ``k`` of a fixed permutation of range(n), sorted (same for every seed)."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(SUBSET_SEED))
    return perm[:k].sort().values


def prepare_data(cfg: TrainConfig, device: torch.device | str = "cpu") -> PreparedData:
    """Load the dataset of ``cfg``, split and subset it, compute normalisation statistics.

    The val split (``val_split`` images, sec. 4.2: 45k/5k) and the subsets are fixed: they
    depend on the data, not on ``cfg.seed``, so every model and seed sees the same images.
    Sizes that do not fit the data raise a one-line ValueError.
    """
    ds = D.load_dataset(cfg.dataset, cfg.data_root, allow_noncanonical=cfg.allow_noncanonical)
    n_all = int(ds.train_y.numel())
    if cfg.val_split:
        if cfg.val_split >= n_all:
            raise ValueError(f"val_split={cfg.val_split} leaves no training images "
                             f"({cfg.dataset} has {n_all}); use a smaller --val-split")
        train_idx, val_idx = D.train_val_split(n_all, cfg.val_split, seed=SUBSET_SEED)
    else:
        train_idx, val_idx = torch.arange(n_all), None
    if cfg.train_subset:
        if cfg.train_subset > train_idx.numel():
            raise ValueError(f"train_subset={cfg.train_subset} exceeds the {train_idx.numel()} "
                             f"training images available; use a smaller --train-subset or 0 (all)")
        train_idx = train_idx[_fixed_subset(train_idx.numel(), cfg.train_subset)]
    n_test = int(ds.test_y.numel())
    test_idx = torch.arange(n_test)
    if cfg.test_subset:
        if cfg.test_subset > n_test:
            raise ValueError(f"test_subset={cfg.test_subset} exceeds the {n_test} test images; "
                             f"use a smaller --test-subset or 0 (all)")
        test_idx = _fixed_subset(n_test, cfg.test_subset)

    train_x = ds.train_x[train_idx]
    if cfg.normalization == "channel":
        mean, std = D.channel_stats(train_x)
        norm = {"kind": "channel", "mean": mean.tolist(), "std": std.tolist()}
    else:
        mean, std = D.pixel_mean(train_x), None
        norm = {"kind": "pixel", "mean_of_mean_image": mean.mean(dim=(1, 2)).tolist()}
    to = dict(device=device)
    info = {**ds.info(), "dataset": cfg.dataset, "n_train_used": int(train_idx.numel()),
            "n_val": int(val_idx.numel()) if val_idx is not None else 0,
            "n_test_used": int(test_idx.numel()), "normalization": norm}
    return PreparedData(
        train_x=train_x.to(**to), train_y=ds.train_y[train_idx].to(**to),
        test_x=ds.test_x[test_idx].to(**to), test_y=ds.test_y[test_idx].to(**to),
        val_x=ds.train_x[val_idx].to(**to) if val_idx is not None else None,
        val_y=ds.train_y[val_idx].to(**to) if val_idx is not None else None,
        mean=mean.to(**to), std=std.to(**to) if std is not None else None, info=info)


# --------------------------------------------------------------------------- schedule

def iters_per_epoch(n_train: int, batch_size: int) -> int:
    """SGD steps per epoch; the last batch may be smaller (no images are dropped)."""
    return math.ceil(n_train / batch_size)


def planned_epochs(cfg: TrainConfig, ipe: int) -> int:
    """Epochs the run will have: ``epochs``, or fewer when ``max_iters`` stops it earlier
    (paper: 64000 iterations of 352 per epoch on 45k images -> 182 epochs, the last partial)."""
    if cfg.max_iters:
        return min(cfg.epochs, math.ceil(cfg.max_iters / ipe))
    return cfg.epochs


def lr_at(cfg: TrainConfig, iteration: int, iters_per_epoch: int) -> float:
    """Learning rate of the (0-based) ``iteration``-th SGD step.

    ``warmup_lr`` for the first ``warmup_iters`` steps (sec. 4.2, ResNet-110: 0.01 until the
    training error is below 80 %, about 400 iterations), then ``lr * gamma**k`` where ``k``
    counts the milestones reached: epoch milestones compare with ``iteration //
    iters_per_epoch`` (MultiStepLR: epochs 0-99 at 0.1, 100-149 at 0.01, 150- at 0.001),
    iteration milestones with ``iteration`` (32k and 48k in the paper).
    """
    if iteration < cfg.warmup_iters:
        return cfg.warmup_lr
    t = iteration // iters_per_epoch if cfg.schedule == "epochs" else iteration
    k = sum(1 for m in cfg.milestones if t >= m)
    return float(f"{cfg.lr * cfg.gamma ** k:.12g}")  # 0.01, not 0.010000000000000002


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    fast.set_lr(optimizer, lr)  # in place where the lr lives in a tensor that a CUDA graph reads


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD with momentum; weight decay on every parameter, as in the paper and seed report
    (the fused kernel on CUDA, see ``resnet_nb.fast``)."""
    return fast.make_optimizer(model.parameters(), cfg.lr, cfg.momentum, cfg.weight_decay,
                               next(model.parameters()).device)


# --------------------------------------------------------------------------- step, epoch, eval

def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor,
               y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One SGD step on a normalised batch x (B, 3, 32, 32), labels y (B,).

    Returns 0-d tensors on the device (no host sync): the summed cross-entropy loss of the
    batch and the number of correct top-1 predictions.
    """
    optimizer.zero_grad(set_to_none=True)
    logits = model(x)                                  # (B, 10)
    loss = F.cross_entropy(logits, y)                  # mean over the batch
    loss.backward()
    optimizer.step()
    return loss.detach() * y.numel(), (logits.detach().argmax(1) == y).sum()


StepFn = Callable[[nn.Module, torch.optim.Optimizer, torch.Tensor, torch.Tensor],
                  tuple[torch.Tensor, torch.Tensor]]


def train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, data: PreparedData,
                cfg: TrainConfig, generator: torch.Generator, start_iteration: int, ipe: int,
                epoch: int, step: StepFn | None = None, desc: str = "") -> dict:
    """One pass over the training images (stops early at ``cfg.max_iters``).

    Returns ``{"train_loss", "train_acc", "iteration", "lr", "images"}``. A non-finite loss
    raises ``TrainingDiverged`` naming the epoch and the first bad iteration (checked every
    step on CPU, where it costs nothing, and at the end of the epoch on a GPU).
    """
    step = step or train_step
    model.train()
    n = data.train_x.shape[0]
    stop = cfg.max_iters or math.inf
    check_every_step = data.train_x.device.type == "cpu"
    losses, corrects = [], []
    it, lr, images = start_iteration, cfg.lr, 0
    bar = _progress(ipe, desc)
    try:
        for idx in D.iterate_batches(n, cfg.batch_size, shuffle=True, generator=generator):
            if it >= stop:
                break
            lr = lr_at(cfg, it, ipe)
            set_lr(optimizer, lr)
            x = D.random_crop_flip(data.train_x[idx], generator)   # (B, 3, 32, 32) uint8
            loss_sum, correct = step(model, optimizer, data.normalize(x), data.train_y[idx])
            losses.append(loss_sum)
            corrects.append(correct)
            images += idx.numel()
            it += 1
            if check_every_step and not math.isfinite(float(loss_sum)):
                _diverged(desc, epoch, it, float(loss_sum))
            done = it - start_iteration
            if bar is not None and (done % 10 == 0 or done == ipe):  # host sync: terminals only
                bar.set_postfix(loss=f"{float(torch.stack(losses).sum()) / images:.3f}",
                                acc=f"{float(torch.stack(corrects).sum()) / images:.3f}", lr=f"{lr:.4g}",
                                refresh=False)
                bar.update(done - bar.n)
    finally:
        if bar is not None:
            bar.close()
    if not losses:
        return {"train_loss": float("nan"), "train_acc": float("nan"), "iteration": it, "lr": lr, "images": 0}
    per_step = torch.stack(losses)
    bad = (~torch.isfinite(per_step)).nonzero()
    if bad.numel():
        first = int(bad[0, 0])
        _diverged(desc, epoch, start_iteration + first + 1, float(per_step[first]))
    return {"train_loss": float(per_step.sum()) / images,
            "train_acc": float(torch.stack(corrects).sum()) / images,
            "iteration": it, "lr": lr, "images": images}


def _diverged(desc: str, epoch: int, iteration: int, value: float) -> None:
    raise TrainingDiverged(
        f"{desc or 'training'}: the training loss became {value} at epoch {epoch}, iteration "
        f"{iteration}; the run stops and keeps its last good checkpoint and metrics "
        f"(try a lower --lr or --warmup-iters)")


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, data: PreparedData,
             batch_size: int = EVAL_BATCH, precision: str = "fp32") -> tuple[float, float]:
    """Mean cross-entropy and top-1 accuracy (fraction) of uint8 images x (N, 3, 32, 32)."""
    model.eval()
    loss, correct = torch.zeros((), device=x.device), torch.zeros((), device=x.device, dtype=torch.long)
    for i in range(0, x.shape[0], batch_size):
        with fast.autocast(precision, x.device):
            logits = model(data.normalize(x[i:i + batch_size]))
        yb = y[i:i + batch_size]
        loss += F.cross_entropy(logits.float(), yb, reduction="sum")
        correct += (logits.argmax(1) == yb).sum()
    n = x.shape[0]
    return float(loss) / n, int(correct) / n


def _progress(total: int, desc: str):
    """A tqdm bar on stderr when it is a terminal; None otherwise (papermill, logs, CI)."""
    if not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty()):
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, file=sys.stderr, leave=False, dynamic_ncols=True)


# --------------------------------------------------------------------------- run directories

def _now() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


def _check_writable(path: Path) -> None:
    """Fail before any training when ``path`` cannot be created or written."""
    p = path
    while not p.exists():
        p = p.parent
    if not p.is_dir():
        raise ValueError(f"cannot create the run directory {path}: {p} is a file; choose another --out-dir")
    if not os.access(p, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write the run directory {path}: {p} is not writable; "
                         f"choose a writable --out-dir")


def _stored_config(run_dir: Path) -> dict | None:
    try:
        return read_json(run_dir / CONFIG_FILE).get("config")
    except (OSError, ValueError, AttributeError):
        return None


def _stored_status(run_dir: Path) -> str | None:
    try:
        return read_json(run_dir / CONFIG_FILE).get("status")
    except (OSError, ValueError, AttributeError):
        return None


def _new_run_id() -> str:
    return datetime.now().strftime("repro-%Y%m%d-%H%M%S")


def _with_names(cfg: TrainConfig) -> TrainConfig:
    return cfg if cfg.run_name else replace(cfg, run_name=cfg.model)


def _pending_run_id(cfgs: list[TrainConfig]) -> str | None:
    """The newest run id under the configs' out_dir that holds an unfinished (running or
    interrupted), unlocked run of one of them and no run whose stored config differs."""
    out = Path(cfgs[0].out_dir).expanduser()
    if not out.is_dir():
        return None
    candidates = []
    for rid_dir in out.iterdir():
        dirs = [(c, rid_dir / c.run_name) for c in cfgs if (rid_dir / c.run_name / CONFIG_FILE).is_file()]
        if not dirs:
            continue
        if any(config_diff(_stored_config(d) or {}, replace(c, run_id=rid_dir.name)) for c, d in dirs):
            continue
        if any(runs.is_locked(d) for _, d in dirs):
            continue
        if any(_stored_status(d) in UNFINISHED for _, d in dirs):
            candidates.append((max((d / CONFIG_FILE).stat().st_mtime for _, d in dirs), rid_dir.name))
    return max(candidates)[1] if candidates else None


def resolve_run_ids(cfgs: list[TrainConfig], restart: bool = False) -> list[TrainConfig]:
    """Fill empty run_name (-> model) and run_id (-> a pending matching run, else one new
    id shared by all configs that have none)."""
    cfgs = [_with_names(c) for c in cfgs]
    empty = [c for c in cfgs if not c.run_id]
    if not empty:
        return cfgs
    rid = None if restart else _pending_run_id(empty)
    if rid is None:  # a new id; never one that already exists (two runs in one second)
        base = rid = _new_run_id()
        k = 1
        while (Path(empty[0].out_dir).expanduser() / rid).exists():
            k += 1
            rid = f"{base}-{k}"
    return [c if c.run_id else replace(c, run_id=rid) for c in cfgs]


_resolve_run_ids = resolve_run_ids  # the name reproduce.py first imported


def _describe_diff(diff: dict) -> str:
    return ", ".join(f"{k} (stored {a!r}, now {b!r})" for k, a, b in ((k, *v) for k, v in diff.items()))


def _load_checkpoint(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - truncated or foreign file
        raise ValueError(f"{path} cannot be read ({type(e).__name__}: {_first_line(e)}); it is kept: "
                         f"restore it from a copy, or pass --restart to discard the run's files "
                         f"and start over") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else ""


# --------------------------------------------------------------------------- train

def train(cfg: TrainConfig, restart: bool = False) -> Path:
    """Train ``cfg`` into its run directory and return the directory's path.

    Resumes from ``last.pth`` when the directory holds a compatible run (see the module
    docstring), returns at once when that run is already finished, refuses a stored run
    whose config differs. ``restart`` discards the stored run's checkpoints and metrics.
    Raises ``TrainingDiverged`` on a NaN/inf loss (status "failed"); KeyboardInterrupt
    leaves status "interrupted" and a resumable ``last.pth``; a full disk raises
    ``runs.NoSpaceError`` naming the last good checkpoint (status "failed").
    """
    cfg = resolve_run_ids([cfg], restart)[0]
    device = resolve_device(cfg.device)
    seen = _inspect_run(cfg, device, restart)
    if seen.finished:
        return seen.run_dir
    data = prepare_data(cfg, device)            # nothing is created before the data loads
    _check_fingerprint(seen.run_dir, seen.ckpt, data)
    lock, seen = _claim_run(cfg, device, restart, seen)
    try:
        if seen.finished:
            return seen.run_dir
        _check_fingerprint(seen.run_dir, seen.ckpt, data)
        return _train_locked(cfg, device, data, seen.run_dir, seen.ckpt, seen.meta_old)
    finally:
        if lock is not None:
            lock.release()


class Seen(NamedTuple):
    """What a run dir held when ``_inspect_run`` looked (``state``: ``runs.dir_state``)."""

    run_dir: Path
    ckpt: dict | None        # last.pth, when the run resumes from it
    meta_old: dict | None    # config.json (or rebuilt from last.pth), when the run resumes
    finished: bool
    state: tuple


def _inspect_run(cfg: TrainConfig, device: torch.device, restart: bool) -> Seen:
    """What ``cfg``'s run dir holds (read-only; ``_claim_run`` looks again under the lock).

    A stored run with another config or device type is refused (one-line ValueError). When
    config.json is missing or unreadable, the config comes from last.pth (which stores it)
    and config.json is rebuilt from it; when neither can be read the run's files are kept
    and the run refused (``--restart`` discards them). Nothing is ever deleted here.
    """
    run_dir = run_dir_of(cfg.out_dir, cfg.run_id, cfg.run_name)
    _check_writable(run_dir)
    state = runs.dir_state(run_dir)
    if restart:
        return Seen(run_dir, None, None, False, state)
    meta_old, problem = _read_meta(run_dir)
    ckpt = None
    if meta_old is None:
        work = [n for n in (LAST_FILE, BEST_FILE, METRICS_FILE) if (run_dir / n).is_file()]
        if not work:
            return Seen(run_dir, None, None, False, state)       # a new run (or nothing to lose)
        ckpt, why = _try_checkpoint(run_dir / LAST_FILE)
        if ckpt is None:
            files = ", ".join(([CONFIG_FILE] if problem != "missing" else []) + work)
            raise ValueError(f"{run_dir}: {CONFIG_FILE} is {problem} and {LAST_FILE} {why}, so the "
                             f"stored config cannot be checked; the files ({files}) are kept: "
                             f"restore {CONFIG_FILE} from a copy, or pass --restart to discard "
                             f"them and start over")
        meta_old = {"config": ckpt["config"], "preset": ckpt["config"].get("preset"),
                    "status": "interrupted", "resumed": []}
        print(f"{run_dir}: {CONFIG_FILE} is {problem}; rebuilding it from {LAST_FILE} "
              f"(epoch {ckpt.get('epoch')})", flush=True)
    stored = meta_old["config"]
    if ckpt is None and (run_dir / LAST_FILE).is_file():
        ckpt = _load_checkpoint(run_dir / LAST_FILE)
        stored = ckpt.get("config", stored)
    diff = config_diff(stored, cfg)
    if diff:
        raise ValueError(f"{run_dir} holds a run with another config: {_describe_diff(diff)}; "
                         f"use the stored values, another --run-id/--run-name, or --restart")
    if ckpt is not None and ckpt.get("device_type", device.type) != device.type:
        raise ValueError(f"{run_dir / LAST_FILE} was written on {ckpt['device_type']}; resume it on "
                         f"the same device type (--device {ckpt['device_type']}) or pass --restart")
    if meta_old.get("status") == "finished" and ckpt is not None:
        print(f"{run_dir}: already finished ({len(ckpt.get('metrics', []))} epochs); "
              f"pass --restart to train it again", flush=True)
        return Seen(run_dir, ckpt, meta_old, True, state)
    return Seen(run_dir, ckpt, meta_old if ckpt is not None else None, False, state)


def _read_meta(run_dir: Path) -> tuple[dict | None, str | None]:
    """config.json as a dict with a ``config`` dict, or (None, what is wrong with it)."""
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        return None, "missing"
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        return None, f"unreadable ({type(e).__name__}: {_first_line(e)})"
    if not (isinstance(meta, dict) and isinstance(meta.get("config"), dict)):
        return None, "not a run's config (no \"config\" object)"
    return meta, None


def _try_checkpoint(path: Path) -> tuple[dict | None, str]:
    """(last.pth with its stored config, "") or (None, why it cannot be used)."""
    if not path.is_file():
        return None, "is missing"
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - truncated or foreign file
        return None, f"cannot be read ({type(e).__name__}: {_first_line(e)})"
    if not (isinstance(ckpt, dict) and isinstance(ckpt.get("config"), dict)):
        return None, "holds no config"
    return ckpt, ""


def _check_fingerprint(run_dir: Path, ckpt: dict | None, data: PreparedData) -> None:
    if ckpt is not None and ckpt.get("dataset_fingerprint") != data.info["fingerprint"]:
        raise ValueError(f"the data differs from the data {run_dir} was trained on (fingerprint "
                         f"{data.info['fingerprint'][:12]} vs {str(ckpt.get('dataset_fingerprint'))[:12]}); "
                         f"point --data-root at the same data or pass --restart")


def _claim_run(cfg: TrainConfig, device: torch.device, restart: bool, seen: Seen):
    """Create and lock the run dir; returns ``(lock, seen)``, ``seen`` as it is now.

    ``seen`` was inspected before the data loaded, without the lock: another process may
    have trained into the run dir since. So the run files are compared with what was seen
    and, when they changed, inspected again under the lock (a finished run returns, another
    config is refused); with ``restart`` a changed dir is refused, since the user chose to
    discard what was there before, not what another process wrote since. Then the temporary
    files of writes cut short are removed and a fresh run drops stale checkpoints and
    metrics. Shared by ``train`` and ``fast.train_pack``.
    """
    lock = runs.lock_run_dir(seen.run_dir)
    try:
        if runs.dir_state(seen.run_dir) != seen.state:
            if restart:
                raise ValueError(f"{seen.run_dir} changed while this command was loading the data "
                                 f"(another process trained into it); nothing was deleted: rerun "
                                 f"the command to see what it holds now")
            seen = _inspect_run(cfg, device, restart)
        runs.remove_stale_tmp_files(seen.run_dir)
        if not seen.finished and (restart or seen.ckpt is None):
            for name in (LAST_FILE, BEST_FILE, METRICS_FILE):
                (seen.run_dir / name).unlink(missing_ok=True)
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    return lock, seen


def _train_locked(cfg: TrainConfig, device: torch.device, data: PreparedData, run_dir: Path,
                  ckpt: dict | None, meta_old: dict | None) -> Path:
    torch.manual_seed(cfg.seed)                                     # He init of this seed
    model = fast.prepare_model(build_model(cfg.model, cfg.shortcut), device)  # channels_last on CUDA
    optimizer = make_optimizer(model, cfg)
    # CUDA: the graph-captured step of resnet_nb.fast; CPU fp32: train_step (bf16: autocast, eager)
    use_fast = device.type == "cuda" or cfg.precision != "fp32"
    step = fast.TrainStep(model, optimizer, cfg.precision) if use_fast else None
    generator = torch.Generator(device=device).manual_seed(cfg.seed + DATA_SEED_OFFSET)
    ipe = iters_per_epoch(data.train_x.shape[0], cfg.batch_size)
    n_epochs = planned_epochs(cfg, ipe)

    epoch, iteration, best_acc, best_epoch, metrics = 0, 0, -1.0, 0, []
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        generator.set_state(ckpt["rng"]["data"])
        if device.type == "cuda" and ckpt["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state_all(ckpt["rng"]["cuda"])
        epoch, iteration = ckpt["epoch"], ckpt["iteration"]
        best_acc, best_epoch, metrics = ckpt["best_acc"], ckpt["best_epoch"], list(ckpt["metrics"])

    env = _environment(device)
    meta = {
        "config": asdict(cfg), "preset": cfg.preset, "environment": env, "dataset": data.info,
        "status": "running", "start_time": _now(), "end_time": None,
        "params": count_parameters(model), "iters_per_epoch": ipe, "epochs_planned": n_epochs,
        "best_test_acc": best_acc if best_epoch else None, "best_epoch": best_epoch or None,
        "error": None, "resumed": [], **runs.process_info(),
    }
    if meta_old is not None:  # keep the history of the run being resumed
        meta["start_time"] = meta_old.get("start_time") or meta["start_time"]
        meta["resumed"] = list(meta_old.get("resumed", [])) + [{"time": _now(), "epoch": epoch}]

    name = cfg.run_name
    kind = "synthetic data" if cfg.dataset == "synthetic" else f"{data.info['provenance']} CIFAR-10"
    split = f"{data.info['n_train_used']} train / {data.info['n_val']} val / {data.info['n_test_used']} test"
    start = f"resuming after epoch {epoch}" if ckpt is not None else "starting"
    print(f"{name}: {start}; {meta['params']:,} params, {kind} ({split}), {device}, "
          f"{n_epochs} epochs x {ipe} iterations; run dir {run_dir}", flush=True)

    def finish(status: str, error: str | None = None) -> None:
        meta.update(status=status, end_time=_now(), error=error,
                    best_test_acc=best_acc if best_epoch else None, best_epoch=best_epoch or None)
        record_status(run_dir, meta)

    saved = epoch                    # the epoch last.pth holds (0: none yet)
    elapsed = metrics[-1]["elapsed"] if metrics else 0.0
    try:
        atomic_write_json(run_dir / CONFIG_FILE, meta)
        atomic_write_json(run_dir / METRICS_FILE, metrics)
        while epoch < n_epochs and iteration < (cfg.max_iters or math.inf):
            t0 = time.perf_counter()
            e = epoch + 1
            res = train_epoch(model, optimizer, data, cfg, generator, iteration, ipe, e, step=step,
                              desc=f"{name} {e}/{n_epochs}")
            record = {"epoch": e, "iteration": res["iteration"], "train_loss": res["train_loss"],
                      "train_acc": res["train_acc"], "test_loss": None, "test_acc": None,
                      "lr": res["lr"]}
            last = e == n_epochs or res["iteration"] >= (cfg.max_iters or math.inf)
            if e % cfg.eval_every == 0 or last:
                record["test_loss"], record["test_acc"] = evaluate(model, data.test_x, data.test_y, data,
                                                                   precision=cfg.precision)
                if data.val_x is not None:
                    record["val_loss"], record["val_acc"] = evaluate(model, data.val_x, data.val_y, data,
                                                                     precision=cfg.precision)
                for key in ("test_loss", "val_loss"):
                    if key in record and not math.isfinite(record[key]):
                        _diverged(name, e, res["iteration"], record[key])
            elif data.val_x is not None:
                record["val_loss"], record["val_acc"] = None, None
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            record["time"] = time.perf_counter() - t0
            elapsed += record["time"]
            record["elapsed"] = elapsed
            metrics.append(record)
            epoch, iteration = e, res["iteration"]
            # write order: metrics, best, last (last.pth holds the metrics too, so a kill
            # between the writes resumes from the previous epoch and rewrites the same files)
            atomic_write_json(run_dir / METRICS_FILE, metrics)
            if record["test_acc"] is not None and record["test_acc"] > best_acc:
                best_acc, best_epoch = record["test_acc"], e
                atomic_save({"model": model.state_dict(), "config": asdict(cfg), "epoch": e,
                             "iteration": iteration, "test_acc": best_acc,
                             "normalization": _norm_state(data)}, run_dir / BEST_FILE)
            atomic_save(_last_state(cfg, model, optimizer, generator, device, data, epoch,
                                    iteration, best_acc, best_epoch, metrics), run_dir / LAST_FILE)
            saved = epoch
            print(_summary_line(name, record, n_epochs), flush=True)
    except TrainingDiverged as err:
        finish("failed", str(err))
        raise
    except OSError as err:
        if not runs.is_no_space(err):
            finish("failed", f"{type(err).__name__}: {err}")
            raise
        msg = no_space_message(err, saved, run_dir)
        finish("failed", msg)
        raise NoSpaceError(msg, err.filename) from None
    except KeyboardInterrupt:
        msg = (f"interrupted during epoch {epoch + 1}; last.pth holds epoch {epoch}; "
               f"rerun the same command to resume")
        finish("interrupted", msg)
        print(f"{name}: {msg}", file=sys.stderr, flush=True)
        raise
    except BaseException as err:
        finish("failed", f"{type(err).__name__}: {err}")
        raise
    finish("finished")
    best = f"best test acc {best_acc:.4f} at epoch {best_epoch}" if best_epoch else "no evaluation"
    print(f"{name}: finished {epoch} epochs, {iteration} iterations, {best}; "
          f"{elapsed:.1f} s; {run_dir}", flush=True)
    return run_dir


def no_space_message(err: OSError, saved_epoch: int, run_dir: Path) -> str:
    """"no space left on <dir>; last good checkpoint is epoch N" (+ what to do)."""
    where = Path(err.filename).parent if isinstance(err.filename, str) else run_dir
    head = f"no space left on {where}"
    ckpt = (f"last good checkpoint is epoch {saved_epoch}" if saved_epoch
            else "no checkpoint was written yet")
    return f"{head}; {ckpt}; free some space and rerun the same command to resume"


def record_status(run_dir: Path, meta: dict) -> None:
    """Write the run's final config.json; a failure to write it (a full disk) is reported
    on stderr and does not hide the error that ended the run."""
    try:
        atomic_write_json(run_dir / CONFIG_FILE, meta)
    except OSError as e:
        print(f"{run_dir}: could not record status {meta.get('status')!r} in {CONFIG_FILE}: {e}",
              file=sys.stderr, flush=True)


def _norm_state(data: PreparedData) -> dict:
    return {"kind": data.info["normalization"]["kind"], "mean": data.mean.cpu(),
            "std": data.std.cpu() if data.std is not None else None}


def _last_state(cfg, model, optimizer, generator, device, data, epoch, iteration, best_acc,
                best_epoch, metrics) -> dict:
    return {
        "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "scheduler": {"kind": "lr_at", "schedule": cfg.schedule, "iteration": iteration},
        "rng": {"torch": torch.get_rng_state(), "data": generator.get_state(),
                "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else None},
        "epoch": epoch, "iteration": iteration, "best_acc": best_acc, "best_epoch": best_epoch,
        "metrics": metrics, "config": asdict(cfg), "device_type": device.type,
        "dataset_fingerprint": data.info["fingerprint"], "normalization": _norm_state(data),
    }


def _environment(device: torch.device) -> dict:
    from resnet_nb.environment import collect
    return collect(device)


def _fmt(v, spec: str) -> str:
    return "  -   " if v is None else format(v, spec)


def _summary_line(name: str, r: dict, n_epochs: int) -> str:
    """One line per epoch on stdout (papermill shows it; nothing parses it)."""
    width = len(str(n_epochs))
    val = f" | val loss {_fmt(r['val_loss'], '.4f')} acc {_fmt(r['val_acc'], '.4f')}" if "val_loss" in r else ""
    return (f"{name} epoch {r['epoch']:{width}d}/{n_epochs} it {r['iteration']} | train loss "
            f"{r['train_loss']:.4f} acc {r['train_acc']:.4f} | test loss {_fmt(r['test_loss'], '.4f')} "
            f"acc {_fmt(r['test_acc'], '.4f')}{val} | lr {r['lr']:.4g} | {r['time']:.1f} s")


def train_many(cfgs: list[TrainConfig], restart: bool = False, pack: bool | None = None) -> list[Path]:
    """Train several configs into one run id; returns their run dirs (in ``cfgs`` order).

    Configs with an empty run_id share one id (a pending matching run's, else a new one).
    Same-depth configs with the same recipe train as one packed network
    (``resnet_nb.packed``, ``resnet_nb.fast.train_pack``; each member still writes its own
    run dir) on CUDA, or on any device with ``pack=True``; ``pack=False`` trains them one
    after the other. A run that diverges is reported and the others still train.
    """
    cfgs = resolve_run_ids(list(cfgs), restart)
    paths: list[Path | None] = [None] * len(cfgs)
    for idxs in fast.plan_packs(cfgs, pack):
        group = [cfgs[i] for i in idxs]
        if len(group) > 1:
            got = fast.train_pack(group, restart, train_one=_train_reporting)
        else:
            got = [_train_reporting(group[0], restart)]
        for i, p in zip(idxs, got):
            paths[i] = p
    return paths


def _train_reporting(c: TrainConfig, restart: bool) -> Path:
    """``train(c)``; a diverged run is reported on stderr and its run dir returned."""
    try:
        return train(c, restart=restart)
    except TrainingDiverged as e:
        print(f"{c.run_name}: FAILED: {e}", file=sys.stderr, flush=True)
        return run_dir_of(c.out_dir, c.run_id, c.run_name)


# --------------------------------------------------------------------------- CLI

class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the epilog's layout; defaults are written into each flag's help by hand."""


def _cli_type(name: str):
    from resnet_nb.config import coerce_field

    def parse(text: str):
        try:
            return coerce_field(name, text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    parse.__name__ = name
    return parse


def _show(v) -> str:
    if isinstance(v, tuple):
        return ",".join(map(str, v))
    return "none" if v is None else str(v)


def _presets_epilog() -> str:
    lines = ["presets (values that differ from the defaults above = seed):"]
    for name, values in PRESETS.items():
        items = [f"{k.replace('_', '-')}={_show(v)}" for k, v in values.items()] or ["(the defaults)"]
        for i in range(0, len(items), 4):
            lines.append(f"  {name if i == 0 else '':6s} {' '.join(items[i:i + 4])}")
    lines += [
        "",
        "examples:",
        "  resnet-nb train --preset smoke --model resnet20 --dataset synthetic",
        "  resnet-nb train --preset seed --model resnet56 --run-id my-run",
        "  resnet-nb train --preset paper --model resnet110 --warmup-iters 400",
        "",
        "Rerunning the same command resumes an unfinished run from last.pth (also after kill -9);",
        "a run dir holding another config is refused with the differing fields; --restart starts",
        "over. Fields that may differ on resume: " + ", ".join(NON_MATH_FIELDS) + ".",
        "Output: <out-dir>/<run-id>/<run-name>/{config.json, metrics.json, best.pth, last.pth}.",
    ]
    return "\n".join(lines)


def _choices(values) -> str:
    return "{" + ",".join(values) + "}"


_METAVARS = {"shortcut": _choices(SHORTCUTS), "schedule": _choices(SCHEDULES),
             "normalization": _choices(NORMALIZATIONS), "dataset": _choices(DATASETS),
             "device": "DEVICE", "out_dir": "PATH", "precision": _choices(PRECISIONS)}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """``resnet-nb train``: one flag per TrainConfig field, plus --preset and --restart."""
    p.formatter_class = _HelpFormatter
    p.epilog = _presets_epilog()

    def one_line_error(message: str):  # a bad flag value: one line, not the whole usage
        p.exit(2, f"{p.prog}: error: {message} (see {p.prog} --help)\n")
    p.error = one_line_error
    p.add_argument("--preset", choices=list(PRESETS), default="seed",
                   help="starting values (default: seed); every flag below overrides them")
    p.add_argument("--restart", action="store_true",
                   help="discard the run dir's checkpoints and metrics and start over")
    defaults = asdict(TrainConfig())
    for f in fields(TrainConfig):
        if f.name == "preset":
            continue
        flag = "--" + f.name.replace("_", "-")
        default = defaults[f.name]
        text = f"{field_help(f.name)} (default: {_show(default) if default != '' else 'empty'})"
        kind = str(f.type)
        if kind == "bool":
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                           help=text)
        else:
            metavar = _METAVARS.get(f.name) or {"int": "N", "float": "X", "tuple[int, ...]": "N,N,..",
                                               "str | None": "PATH"}.get(kind, "NAME")
            p.add_argument(flag, type=_cli_type(f.name), default=argparse.SUPPRESS,
                           metavar=metavar, help=text)


def run_cli(args: argparse.Namespace) -> int:
    names = [f.name for f in fields(TrainConfig) if f.name != "preset"]
    overrides = {n: getattr(args, n) for n in names if hasattr(args, n)}
    cfg = make_config(args.preset, **overrides)
    try:
        run_dir = train(cfg, restart=args.restart)
    except TrainingDiverged as e:
        print(f"resnet-nb train: error: {e}", file=sys.stderr)
        return 1
    print(f"run dir: {run_dir}")
    return 0
