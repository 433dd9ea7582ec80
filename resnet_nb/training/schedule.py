"""The recipe's optimiser and learning-rate schedule (He et al. 2016, sec. 4.2): SGD with momentum
and weight decay, the lr steps at the milestones (epochs or iterations), the optional warm-up,
the lr held in a device tensor for graphed steps.
"""
from __future__ import annotations

import math
import warnings

import torch

from resnet_nb.training.config import TrainConfig

__all__ = ["make_optimizer", "set_lr", "lr_in_tensor", "iters_per_epoch", "planned_epochs", "lr_at"]


def make_optimizer(params, lr: float, momentum: float, weight_decay: float,
                   device: torch.device | str) -> torch.optim.SGD:
    """SGD with momentum and weight decay (every parameter, as the paper and the seed
    report do); the fused CUDA kernel on a GPU (one launch per step instead of ~3 per tensor)."""
    kw = dict(lr=lr, momentum=momentum, weight_decay=weight_decay)
    if torch.device(device).type == "cuda":
        try:
            return torch.optim.SGD(params, fused=True, **kw)
        except (TypeError, RuntimeError) as e:  # a torch without fused SGD
            warnings.warn(f"fused SGD unavailable ({e}); using the default SGD kernel", RuntimeWarning)
    return torch.optim.SGD(params, **kw)


def lr_in_tensor(optimizer: torch.optim.Optimizer, device: torch.device | str) -> torch.Tensor:
    """Move lr into one float32 device tensor shared by every param group; returns it.

    A captured step reads the lr from this tensor's memory, so ``set_lr`` (a ``fill_``)
    changes the lr of later replays without a recapture. (fp32 is also what the fused
    kernel computes with when given a Python float.)"""
    lr = optimizer.param_groups[0]["lr"]
    t = torch.tensor(float(lr), dtype=torch.float32, device=device)
    for group in optimizer.param_groups:
        group["lr"] = t
    return t


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Write ``lr`` into every param group: in place when it lives in a (graph-read) tensor."""
    for group in optimizer.param_groups:
        if torch.is_tensor(group["lr"]):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


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
