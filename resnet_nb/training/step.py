"""One SGD step of the recipe (He et al. 2016, sec. 4.2), for one network or a pack of them.

``TrainStep(model, optimizer, precision)(x, y)`` is the only SGD step in the project: it serves a
single ``CifarResNet`` on (B, 3, H, W) and a ``PackedCifarResNet`` on (N, B, 3, H, W) alike, and
returns device tensors (no host sync: the loop reads them once per epoch). ``ConcurrentSteps``
steps several ``TrainStep``s together (``pack_mode="branches"``): on CUDA one graph with a
stream per member, on the CPU one after another; only the scheduling differs, never the
mathematics. The levers, none of which changes the recipe: the precision (``precision``),
channels_last and fused SGD (``prepare_model``, ``schedule.make_optimizer``), and on CUDA the
whole step captured once in a CUDA graph and replayed (``graphs``; a batch of another shape,
the last partial one, runs eagerly on the same weights). ``compile=True`` (measured by
``resnet-nb bench --compile``, not a training default) compiles the forward and loss.
``TrainStep.counts()`` records what really ran (captures, graph and eager steps, fallbacks)
into each run's config.json.
"""
from __future__ import annotations

import contextlib
import copy
import time
import warnings
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from resnet_nb.training.graphs import (
    capture_graph,
    compile_or_none,
    error_text,
    static_input,
    wants_graph,
    warm_up_on_side_stream,
    warn_fallback,
)
from resnet_nb.training.precision import autocast, check_precision
from resnet_nb.training.schedule import lr_in_tensor

__all__ = ["prepare_model", "TrainStep", "ConcurrentSteps", "member_losses"]


def prepare_model(model: nn.Module, device: torch.device | str) -> nn.Module:
    """Move to ``device`` in channels_last: cuDNN's and oneDNN's fast layout for these convs
    (on a 2-core AVX-512 CPU 1.1-1.4x the img/s of NCHW: ``resnet-nb bench --device cpu``)."""
    return model.to(torch.device(device)).to(memory_format=torch.channels_last)


def member_losses(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits (N, B, K) of a pack (or (B, K) of one model), labels (N, B) (or (B,)).

    Returns (loss to minimise: sum of the members' mean cross-entropies, per-member summed
    loss (N,) or 0-d, per-member correct count (N,) or 0-d). fp32 loss under any autocast.
    """
    if logits.dtype in (torch.float16, torch.bfloat16):    # autocast output: loss in fp32
        logits = logits.float()
    if logits.dim() == 2:
        loss = F.cross_entropy(logits, y)
        return loss, loss.detach() * y.numel(), (logits.detach().argmax(1) == y).sum()
    n, b, k = logits.shape
    per = F.cross_entropy(logits.reshape(n * b, k), y.reshape(-1), reduction="none").view(n, b)
    return per.mean(1).sum(), per.detach().sum(1), (logits.detach().argmax(-1) == y).sum(1)


class TrainStep:
    """One SGD step of ``model`` (a CifarResNet on (B, 3, H, W) or a PackedCifarResNet on
    (N, B, 3, H, W)): ``step(x, y)``.

    Returns device tensors without a host sync: the summed loss of the batch and the number
    of correct predictions (0-d for one model, (N,) for a pack). With ``graph`` (default:
    on CUDA) the first full batch triggers capture; later batches of that shape replay the
    graph; other shapes run eagerly.

    It counts what ran (``counts()``): ``captures``, ``graph_steps`` (replays),
    ``eager_steps``, and ``fallback``, the reason capture failed (None when it did not).
    ``announce``, when set, is called once with a line saying how the first capture
    attempt ended (the start of a run prints what was requested, this line the truth).

    ``compile=True`` (default False; the bench measures it, training does not use it yet):
    the forward pass and loss of full batches (the shape of the first batch) run through
    ``torch.compile`` (``compile_or_none``: backend ``$RESNET_NB_COMPILE_BACKEND``, default inductor,
    without inductor's own CUDA graphs); batches of another shape run uncompiled. The first
    compiled call compiles (on CUDA: the first warm-up step, so the capture records the
    compiled kernels). If compiling fails (any exception there), a warning says so, the
    state that call touched is restored and the step continues uncompiled. ``counts()`` then
    also has ``compile_requested``, ``compiled`` (True once a compiled step really ran),
    ``compile_backend``, ``compile_s`` (host seconds of the first compiled forward+backward:
    the compilation) and ``compile_fallback`` (why it failed, else None).
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, precision: str = "fp32",
                 graph: bool | None = None, compile: bool = False) -> None:
        self.model, self.optimizer, self.precision = model, optimizer, precision
        self.device = next(model.parameters()).device
        check_precision(precision, self.device)
        # default: graphs on CUDA, unless RESNET_NB_CUDA_GRAPHS=0 (eager reference runs)
        self.graph_requested = self.capture_allowed = wants_graph(graph, self.device)  # allowed: off after a failed capture
        if self.device.type == "cuda":  # let cuDNN time its kernels for these shapes once (warm-up)
            torch.backends.cudnn.benchmark = True
        self.graph: torch.cuda.CUDAGraph | None = None
        self.captures = 0            # successful captures (tests and the bench read it)
        self.graph_steps = 0         # steps run by replaying the graph
        self.eager_steps = 0         # steps run eagerly (CPU, fallback, batches of another shape)
        self.fallback: str | None = None   # why capture failed, when it did
        self.announce: Callable[[str], None] | None = None
        self.lr_tensor: torch.Tensor | None = None
        model_, precision_, device_ = model, precision, self.device

        def losses(x: torch.Tensor, y: torch.Tensor):
            """Forward pass and ``member_losses``: what ``compile`` compiles."""
            with autocast(precision_, device_):
                logits = model_(x)
            return member_losses(logits, y)

        self._losses = losses
        self.compile_requested = bool(compile)
        self.compiled = False                  # True once a compiled step ran
        self.compile_s: float | None = None    # host seconds of the first compiled call
        self.compile_fallback: str | None = None
        self._compiled_losses, self._compile_shape = None, None
        if compile:
            self._compiled_losses, self.compile_backend, self.compile_fallback = compile_or_none(losses, "the training step")

    def counts(self) -> dict:
        """What ran so far, as config.json's ``runtime`` records it (plain data)."""
        out = {"graph_requested": self.graph_requested, "captures": self.captures,
               "graph_steps": self.graph_steps, "eager_steps": self.eager_steps, "fallback": self.fallback}
        if self.compile_requested:
            out.update(compile_requested=True, compiled=self.compiled, compile_backend=self.compile_backend,
                       compile_s=self.compile_s, compile_fallback=self.compile_fallback)
        return out

    # ------------------------------------------------------------------ eager
    def _forward_backward(self, x: torch.Tensor, y: torch.Tensor):
        """Forward, loss and backward (gradients are None on entry: every caller zeroes them
        with set_to_none); compiled for the compiled shape when ``compile`` is on."""
        fn = self._losses
        if self._compiled_losses is not None:
            if self._compile_shape is None:
                return self._first_compiled(x, y)
            if tuple(x.shape) == self._compile_shape:
                fn = self._compiled_losses
        loss, loss_sum, correct = fn(x, y)
        loss.backward()
        return loss_sum, correct

    def _first_compiled(self, x: torch.Tensor, y: torch.Tensor):
        """The first compiled forward+backward (the compilation): timed; on any failure the
        parameters and buffers it may have touched are restored, gradients cleared (as on
        entry), warned and recorded, and the call reruns uncompiled."""
        tensors = [p.data for p in self.model.parameters()] + list(self.model.buffers())
        saved = [t.detach().clone() for t in tensors]
        # every TrainStep compiles the same code object (``losses``), one cache entry per model:
        # past dynamo's recompile limit it would run the function uncompiled and only log it;
        # raise instead, so that the fallback below is warned and recorded, never silent
        cfg = torch._dynamo.config
        strict = (cfg.patch(fail_on_recompile_limit_hit=True) if hasattr(cfg, "fail_on_recompile_limit_hit")
                  else contextlib.nullcontext())
        t0 = time.perf_counter()
        try:
            with strict:
                loss, loss_sum, correct = self._compiled_losses(x, y)
            loss.backward()
        except Exception as e:  # noqa: BLE001 - any compile failure: warn, record, continue uncompiled
            with torch.no_grad():
                for t, s in zip(tensors, saved):
                    t.copy_(s)
            for p in self.model.parameters():
                p.grad = None
            self._compiled_losses = None
            self.compile_fallback = error_text(e)
            warnings.warn(f"torch.compile of the training step ({self.compile_backend}) failed "
                          f"({self.compile_fallback}); the step runs uncompiled (same mathematics)", RuntimeWarning)
            return self._forward_backward(x, y)
        self.compile_s = time.perf_counter() - t0
        self._compile_shape = tuple(x.shape)
        self.compiled = True
        return loss_sum, correct

    def eager(self, x: torch.Tensor, y: torch.Tensor):
        """The step without a graph (CPU, fallback, batches of another shape)."""
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum, correct = self._forward_backward(x, y)
        self.optimizer.step()
        self.eager_steps += 1
        return loss_sum, correct

    # ------------------------------------------------------------------ graph
    def _state_tensors(self) -> list[torch.Tensor]:
        """Everything a step mutates: parameters, buffers (BN), momentum buffers."""
        ts = [p.data for p in self.model.parameters()] + list(self.model.buffers())
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                buf = self.optimizer.state.get(p, {}).get("momentum_buffer")
                if buf is not None:
                    ts.append(buf)
        return ts

    def _align_momentum(self) -> None:
        """Momentum buffers with their parameter's strides (channels_last weights; a
        resumed buffer may come contiguous): the fused kernel wants matching layouts."""
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                st = self.optimizer.state.get(p, {})
                buf = st.get("momentum_buffer")
                if buf is not None and buf.stride() != p.stride():
                    st["momentum_buffer"] = torch.empty_like(p).copy_(buf)

    def begin(self) -> None:
        """Before the first step: momentum layouts aligned, lr a float (a resumed optimiser
        may bring a CPU lr tensor)."""
        self._align_momentum()
        self._lr_to_float()

    def _lr_to_tensor(self) -> None:
        self.lr_tensor = lr_in_tensor(self.optimizer, self.device)

    def _lr_to_float(self) -> None:
        for group in self.optimizer.param_groups:
            if torch.is_tensor(group["lr"]):
                group["lr"] = float(group["lr"])
        self.lr_tensor = None

    def prepare_capture(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Zero momentum buffers, lr in a tensor, static input buffers holding (x, y)."""
        opt = self.optimizer
        for group in opt.param_groups:
            if group.get("momentum", 0) and group.get("dampening", 0):
                raise ValueError("graph capture assumes SGD dampening 0 (zero-initialised momentum)")
            for p in group["params"]:            # zeros == SGD's first step with dampening 0
                opt.state[p].setdefault("momentum_buffer", torch.zeros_like(p, memory_format=torch.preserve_format))
        self._align_momentum()
        self._lr_to_tensor()
        self.static_x, self.static_in = static_input(x, self.device)   # a pack: in the network's layout
        self.static_y = y.clone()
        self._in_shape, self._y_shape = tuple(x.shape), tuple(y.shape)

    def warmup(self) -> None:
        """WARMUP_STEPS eager steps on a side stream (cuDNN autotuning, lazy allocations),
        then every mutated tensor is restored: the run's mathematics are the eager loop's."""
        saved = [t.detach().clone() for t in self._state_tensors()]

        def one_step():
            self.optimizer.zero_grad(set_to_none=True)
            self._forward_backward(self.static_x, self.static_y)
            self.optimizer.step()

        warm_up_on_side_stream(self.device, one_step)
        with torch.no_grad():
            for t, s in zip(self._state_tensors(), saved):
                t.copy_(s)
        self.optimizer.zero_grad(set_to_none=True)   # capture starts with no gradients

    def _capture(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.prepare_capture(x, y)
        self.warmup()
        graph, (self.static_loss, self.static_correct) = capture_graph(self.graph_body)
        self.graph = graph
        self.captures += 1

    def fits(self, x: torch.Tensor, y: torch.Tensor) -> bool:
        """Whether (x, y) have the captured shapes."""
        return tuple(x.shape) == self._in_shape and tuple(y.shape) == self._y_shape

    def graph_body(self):
        """What the graph holds: forward, backward and SGD update on the static buffers (the
        gradients are None when capture starts, so every replay writes them afresh)."""
        loss_sum, correct = self._forward_backward(self.static_x, self.static_y)
        self.optimizer.step()
        return loss_sum, correct

    def snapshot(self):
        """The whole state before any warm-up: model tensors (restored in place) and the
        optimiser's state dict (momentum buffers may not exist yet and must not after)."""
        model_saved = [(t, t.detach().clone()) for t in
                       [p.data for p in self.model.parameters()] + list(self.model.buffers())]
        return model_saved, copy.deepcopy(self.optimizer.state_dict())

    def undo_capture(self, saved) -> None:
        """Back to ``saved`` (``snapshot``) after a failed capture: eager from here on."""
        model_saved, opt_saved = saved
        with torch.no_grad():
            for t, s in model_saved:
                t.copy_(s)
        self.optimizer.state.clear()
        self.optimizer.load_state_dict(opt_saved)
        self.graph, self.capture_allowed = None, False
        self._lr_to_float()
        self._align_momentum()
        self.optimizer.zero_grad(set_to_none=True)

    def _try_capture(self, x, y) -> None:
        saved = self.snapshot()
        try:
            self._capture(x, y)
            self._tell(f"CUDA graph captured ({tuple(x.shape)} batches replay it; other shapes run eagerly)")
        except Exception as e:  # noqa: BLE001 - any capture failure: warn, record, continue eagerly
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.undo_capture(saved)
            self.fallback, message = warn_fallback("the training step", e,
                                                    "training continues eagerly (same mathematics, slower)")
            self._tell(message)

    def _tell(self, line: str) -> None:
        if self.announce is not None:
            self.announce(line)

    def __call__(self, x: torch.Tensor, y: torch.Tensor):
        """One step on a normalised batch x ((B, 3, H, W), or (N, B, 3, H, W) for a pack)
        and labels y ((B,) or (N, B)); returns (summed loss, correct count) on the device."""
        if self.graph is None and self.captures == 0 and self.eager_steps == 0:
            self.begin()
        if self.capture_allowed and self.graph is None:
            self._try_capture(x, y)
        if self.graph is not None and self.fits(x, y):
            self.static_in.copy_(x)
            self.static_y.copy_(y)
            self.graph.replay()
            self.graph_steps += 1
            return self.static_loss.clone(), self.static_correct.clone()
        return self.eager(x, y)


class ConcurrentSteps:
    """Several ``TrainStep``s stepped together: ``steps([(x_0, y_0), (x_1, y_1), ...])``
    returns one (summed loss, correct count) per step, device tensors, no host sync.

    Used by ``pack_mode="branches"`` (one single-model step per member of a pack, whatever
    their depths: ``loop``) and by ``resnet-nb bench --concurrent``. On CUDA (``graph``,
    default: ``graph_default``) the first call captures every step's graph body in ONE CUDA
    graph: forked from the current stream onto a stream per step and joined before the
    capture ends, so the GPU may overlap the branches' small kernels. Each branch is exactly
    its step's body (``TrainStep.graph_body``: warm-up undone, lr read from a tensor):
    only the scheduling differs. A call where any batch has another shape than the captured
    ones (the partial last batch) runs every step eagerly. On the CPU, and after a capture
    failure (warned, every step's state restored, recorded in ``counts()``), the steps run
    one after another eagerly: the same mathematics.

    ``counts()`` has ``TrainStep.counts()``'s keys, counted per call (one graph step steps
    every branch once), so a run's config.json records it the same way. Steps built with
    ``compile=True`` compile at their warm-up before the one capture, as alone; ``counts()``
    then says whether every branch ran compiled (``compiled``) and the first failure's reason.
    """

    def __init__(self, steps: Sequence[TrainStep], graph: bool | None = None) -> None:
        self.steps = list(steps)
        if not self.steps:
            raise ValueError("ConcurrentSteps needs at least one TrainStep")
        self.device = self.steps[0].device
        if any(st.device != self.device for st in self.steps):
            raise ValueError(f"ConcurrentSteps steps models on one device; got "
                             f"{sorted({str(st.device) for st in self.steps})}")
        self.graph_requested = self.capture_allowed = wants_graph(graph, self.device)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.captures = self.graph_steps = self.eager_steps = 0
        self.fallback: str | None = None
        self.announce: Callable[[str], None] | None = None
        self._begun = False

    def counts(self) -> dict:
        """What ran so far, as config.json's ``runtime`` records it (``TrainStep.counts``'s keys)."""
        out = {"graph_requested": self.graph_requested, "captures": self.captures,
               "graph_steps": self.graph_steps, "eager_steps": self.eager_steps, "fallback": self.fallback}
        comp = [st for st in self.steps if st.compile_requested]
        if comp:
            out.update(compile_requested=True, compiled=all(st.compiled for st in comp),
                       compile_backend=comp[0].compile_backend,
                       compile_s=sum(st.compile_s or 0.0 for st in comp),
                       compile_fallback=next((st.compile_fallback for st in comp if st.compile_fallback), None))
        return out

    def _capture(self, batches) -> None:
        for st, (x, y) in zip(self.steps, batches, strict=True):
            st.prepare_capture(x, y)
            st.warmup()
        streams = [torch.cuda.Stream(self.device) for _ in self.steps]

        def fork_join():
            cur = torch.cuda.current_stream(self.device)
            for s in streams:                    # fork ...
                s.wait_stream(cur)
            for st, s in zip(self.steps, streams):
                with torch.cuda.stream(s):
                    st.static_loss, st.static_correct = st.graph_body()
            for s in streams:                    # ... and join before the capture ends
                cur.wait_stream(s)

        self.graph, _ = capture_graph(fork_join)
        self.captures += 1

    def _try_capture(self, batches) -> None:
        saved = [st.snapshot() for st in self.steps]
        try:
            self._capture(batches)
            self._tell(f"one CUDA graph captured with {len(self.steps)} branches, a stream each (batches of "
                       f"the captured shapes replay it; other shapes run the steps eagerly)")
        except Exception as e:  # noqa: BLE001 - any capture failure: warn, record, continue eagerly
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            for st, s in zip(self.steps, saved):
                st.undo_capture(s)
            self.graph, self.capture_allowed = None, False
            self.fallback, message = warn_fallback(
                f"the {len(self.steps)} concurrent training steps", e,
                "they continue eagerly, one after another (same mathematics, slower)")
            self._tell(message)

    def _tell(self, line: str) -> None:
        if self.announce is not None:
            self.announce(line)

    def __call__(self, batches: Sequence[tuple[torch.Tensor, torch.Tensor]]):
        """batches: one (x, y) per step, in order (a step's own shapes: (B, 3, H, W) and (B,)
        for one model, (N, B, 3, H, W) and (N, B) for a pack); one (loss_sum, correct) per step."""
        if len(batches) != len(self.steps):
            raise ValueError(f"ConcurrentSteps of {len(self.steps)} steps got {len(batches)} batches")
        if not self._begun:
            for st in self.steps:
                st.begin()
            self._begun = True
        if self.capture_allowed and self.graph is None:
            self._try_capture(batches)
        if self.graph is not None and all(st.fits(x, y) for st, (x, y) in zip(self.steps, batches)):
            for st, (x, y) in zip(self.steps, batches):
                st.static_in.copy_(x)
                st.static_y.copy_(y)
            self.graph.replay()
            self.graph_steps += 1
            return [(st.static_loss.clone(), st.static_correct.clone()) for st in self.steps]
        self.eager_steps += 1
        return [st.eager(x, y) for st, (x, y) in zip(self.steps, batches)]
