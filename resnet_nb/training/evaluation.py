"""Evaluation's forward pass: per-member loss and correct-answer sums on the device (eval_sums),
and EvalForward, which captures the full-batch forward in a CUDA graph and replays it (eagerly
for a partial batch and on the CPU).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from resnet_nb.training.graphs import (
    capture_graph,
    static_input,
    wants_graph,
    warm_up_on_side_stream,
    warn_fallback,
)
from resnet_nb.training.precision import autocast, check_precision
from resnet_nb.training.step import member_losses

__all__ = ["EVAL_BATCH", "eval_sums", "EvalForward"]


EVAL_BATCH = 1000        # images per evaluation forward pass (batches.evaluate_pack)


def eval_sums(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
              precision: str = "fp32") -> tuple[torch.Tensor, torch.Tensor]:
    """One evaluation batch: normalised x (B, 3, H, W), labels y (B,); every member of a pack
    sees the same images. Returns per-member summed cross-entropy (N,) and correct count
    (N,) on the device (one ``CifarResNet``: N = 1), computed by ``member_losses``."""
    with autocast(precision, x.device):
        logits = model(x)                                             # (N, B, K) or (B, K)
    if logits.dim() == 2:
        logits = logits.unsqueeze(0)                                  # one model: (1, B, K)
    _, loss_sum, correct = member_losses(logits, y.expand(logits.shape[0], -1))   # y as (N, B)
    return loss_sum, correct


class EvalForward:
    """Evaluation's forward pass of one network (a ``CifarResNet`` or a ``PackedCifarResNet``)
    in eval mode: ``forward(x, y)`` on a normalised batch x (B, 3, H, W), labels y (B,)
    returns ``eval_sums``: per-member summed loss (N,) and correct count (N,), device tensors,
    no host sync. ``batches.evaluate_pack(..., forward=...)`` runs it for every batch.

    With ``graph`` (default ``graph_default``: on CUDA) the first batch of ``batch_size``
    images triggers a capture as ``TrainStep``'s does (static input buffer, warm-up on a
    side stream, the same autocast without weight cache); every later batch of that shape
    replays it, and a batch of another shape (the partial last batch) runs eagerly. A failed
    capture warns, is recorded (``counts()``) and evaluation continues eagerly.

    A replay reads the network's parameters and BN running statistics from the memory they
    had at capture: the training step (graphed or eager: fused SGD, BN's running-stat
    update) and resuming (``load_state_dict`` before the network is built into the step)
    change them in place, never by swapping the tensors, so every replay evaluates the
    current weights. Anything that replaced a parameter tensor (``param.data = ...``,
    ``model.to(...)`` after capture) would leave the graph reading stale memory.

    ``counts()``: ``eval_graph_requested``, ``eval_captures``, ``eval_graph_batches``
    (replays), ``eval_eager_batches``, ``eval_fallback`` (why capture failed, else None):
    the evaluation part of config.json's ``runtime``.
    """

    def __init__(self, model: nn.Module, precision: str = "fp32", graph: bool | None = None,
                 batch_size: int = EVAL_BATCH) -> None:
        self.model, self.precision, self.batch_size = model, precision, batch_size
        self.device = next(model.parameters()).device
        check_precision(precision, self.device)
        self.graph_requested = self.capture_allowed = wants_graph(graph, self.device)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.captures = self.graph_batches = self.eager_batches = 0
        self.fallback: str | None = None
        self.announce: Callable[[str], None] | None = None

    def counts(self) -> dict:
        """What ran so far, as config.json's ``runtime`` records it (plain data)."""
        return {"eval_graph_requested": self.graph_requested, "eval_captures": self.captures,
                "eval_graph_batches": self.graph_batches, "eval_eager_batches": self.eager_batches,
                "eval_fallback": self.fallback}

    def eager(self, x: torch.Tensor, y: torch.Tensor):
        self.eager_batches += 1
        return eval_sums(self.model, x, y, self.precision)

    def graph_body(self):
        return eval_sums(self.model, self._static_in, self.static_y, self.precision)

    def _capture(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.static_x, self._static_in = static_input(x, self.device)
        self.static_y = y.clone()
        warm_up_on_side_stream(self.device, self.graph_body)   # eval mode changes no state: nothing to undo
        self.graph, (self.static_loss, self.static_correct) = capture_graph(self.graph_body)
        self._shapes = (tuple(x.shape), tuple(y.shape))
        self.captures += 1

    def _try_capture(self, x: torch.Tensor, y: torch.Tensor) -> None:
        try:
            self._capture(x, y)
            self._tell(f"evaluation's forward captured in a CUDA graph ({tuple(x.shape)} batches replay it)")
        except Exception as e:  # noqa: BLE001 - any capture failure: warn, record, continue eagerly
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.graph, self.capture_allowed = None, False
            self.fallback, message = warn_fallback("the evaluation forward", e,
                                                    "evaluation continues eagerly (same mathematics, slower)")
            self._tell(message)

    def _tell(self, line: str) -> None:
        if self.announce is not None:
            self.announce(line)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, y: torch.Tensor):
        if self.model.training:
            raise ValueError("EvalForward evaluates a network in eval mode: call model.eval() first "
                             "(batches.evaluate_pack does)")
        full = x.shape[0] == self.batch_size
        if full and self.capture_allowed and self.graph is None:
            self._try_capture(x, y)
        if self.graph is not None and (tuple(x.shape), tuple(y.shape)) == self._shapes:
            self._static_in.copy_(x)
            self.static_y.copy_(y)
            self.graph.replay()
            self.graph_batches += 1
            return self.static_loss.clone(), self.static_correct.clone()   # the next replay rewrites them
        return self.eager(x, y)
