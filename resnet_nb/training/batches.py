"""The data stream of a run or a pack (PackBatcher: the epoch's augmented batches, one stream per
member seed) and evaluation over the test or validation images (evaluate_pack; evaluate for one
model).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from resnet_nb.data import augment
from resnet_nb.training.evaluation import EVAL_BATCH, EvalForward, eval_sums
from resnet_nb.training.prepare import PreparedData

__all__ = ["PackBatcher", "evaluate_pack", "evaluate"]


class PackBatcher:
    """The training batches of N members, each from its own generator.

    Member ``i`` makes the call of a single run: once per epoch ``data.augment.augment_epoch`` (the
    epoch's permutation and all its crops and flips, drawn at once from its generator).
    ``batches()`` stacks the members' epochs once, (N, n, 3, H, W) uint8 and (N, n), then
    yields views of it, batch after batch: (x (N, B, 3, H, W), y (N, B)), no copy per step;
    the last batch may be smaller. Each epoch is a new tensor, so a batch stays valid after
    the next epoch starts. The whole epoch is drawn when its first batch is asked for.
    """

    def __init__(self, train_x: torch.Tensor, train_y: torch.Tensor, batch_size: int,
                 generators: Sequence[torch.Generator]) -> None:
        self.x, self.y, self.batch_size, self.generators = train_x, train_y, batch_size, list(generators)

    def batches(self):
        n, b = self.x.shape[0], self.batch_size
        if b <= 0:
            raise ValueError(f"batch_size must be positive; got {b}")
        xs = self.x.new_empty((len(self.generators), *self.x.shape))         # (N, n, 3, H, W)
        ys = self.y.new_empty((len(self.generators), n))                     # (N, n)
        for k, g in enumerate(self.generators):      # one member's epoch at a time: peak N+1 epochs
            xs[k], ys[k] = augment.augment_epoch(self.x, self.y, g)
        for i in range(0, n, b):
            yield xs[:, i:i + b], ys[:, i:i + b]


@torch.no_grad()
def evaluate_pack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, data: PreparedData,
                  precision: str = "fp32", batch_size: int = EVAL_BATCH,
                  forward: EvalForward | None = None) -> tuple[list[float], list[float]]:
    """Per-member mean cross-entropy and top-1 accuracy (fraction) on uint8 images x
    (n, 3, 32, 32), labels y (n,); every member sees the same images. ``model`` is a pack,
    or one ``CifarResNet`` (a pack of one: lists of length 1).

    Each batch of ``batch_size`` images is normalised (``data.normalize``) and evaluated by
    ``forward`` (``evaluation.EvalForward`` of ``model``: on CUDA a replayed graph for full batches,
    what training passes) or, without one, eagerly (``evaluation.eval_sums``): the same sums. The
    sums stay on the device; the two lists at the end are the one host sync."""
    if forward is not None and (forward.model is not model or forward.precision != precision
                                or forward.batch_size != batch_size):
        raise ValueError(f"evaluate_pack: the forward was made for another network, precision or batch size "
                         f"({forward.precision}, {forward.batch_size}; asked {precision}, {batch_size}): "
                         f"make it with evaluation.EvalForward(model, precision, batch_size=batch_size)")
    model.eval()
    loss = correct = None
    for i in range(0, x.shape[0], batch_size):
        xb, yb = data.normalize(x[i:i + batch_size]), y[i:i + batch_size]
        loss_sum, corr = forward(xb, yb) if forward is not None else eval_sums(model, xb, yb, precision)
        loss, correct = (loss_sum, corr) if loss is None else (loss + loss_sum, correct + corr)
    n = x.shape[0]
    return [v / n for v in loss.tolist()], [v / n for v in correct.tolist()]


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, data: PreparedData,
             precision: str = "fp32", batch_size: int = EVAL_BATCH,
             forward: EvalForward | None = None) -> tuple[float, float]:
    """``evaluate_pack`` of one model: (mean cross-entropy, top-1 accuracy)."""
    loss, acc = evaluate_pack(model, x, y, data, precision, batch_size, forward)
    return loss[0], acc[0]
