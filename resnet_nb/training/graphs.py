"""CUDA-graph capture and torch.compile, shared by TrainStep, ConcurrentSteps and EvalForward:
warm-up on a side stream, capture, the fallback warning. On the CPU none of it runs.
RESNET_NB_CUDA_GRAPHS=0 turns capture off.
"""
from __future__ import annotations

import os
import warnings
from typing import Callable

import torch

__all__ = ["WARMUP_STEPS", "graph_default", "wants_graph", "COMPILE_BACKEND_ENV",
           "COMPILE_MODE_ENV", "compile_or_none", "error_text", "static_input",
           "warm_up_on_side_stream", "capture_graph", "warn_fallback"]


WARMUP_STEPS = 3  # eager steps before capture (cuDNN autotuning, lazy init), then undone


def graph_default(device: torch.device | str) -> bool:
    """Whether a step captures a CUDA graph unless told: on CUDA, unless
    ``RESNET_NB_CUDA_GRAPHS=0`` (eager reference runs on a GPU)."""
    return torch.device(device).type == "cuda" and os.environ.get("RESNET_NB_CUDA_GRAPHS", "1") != "0"


def wants_graph(graph: bool | None, device: torch.device) -> bool:
    """Whether a step or forward on ``device`` captures a CUDA graph: ``graph``, or
    ``graph_default`` when None; a request on a non-CUDA device is refused (ValueError)."""
    if graph is None:
        graph = graph_default(device)
    if graph and device.type != "cuda":
        raise ValueError("CUDA-graph capture needs a CUDA device; use graph=False on the CPU")
    return bool(graph)


COMPILE_BACKEND_ENV = "RESNET_NB_COMPILE_BACKEND"   # default inductor; the CPU tests use aot_eager


COMPILE_MODE_ENV = "RESNET_NB_COMPILE_MODE"         # inductor's mode; default: inductor's default mode


def compile_or_none(fn: Callable, what: str) -> tuple[Callable | None, str, str | None]:
    """(``torch.compile(fn)`` or None, the backend in words, why it failed or None).

    The backend is ``$RESNET_NB_COMPILE_BACKEND`` (default ``inductor``). Inductor's mode is
    its default unless ``$RESNET_NB_COMPILE_MODE`` says otherwise: the default mode fuses the
    pointwise ops (BN, ReLU, the shortcut add, their backward) into Triton kernels and leaves
    the convolutions to cuDNN, and it does NOT capture CUDA graphs itself. "reduce-overhead"
    and "max-autotune" would (inductor's cudagraph trees), and those cannot run inside the
    CUDA graph this module captures around the whole step; "max-autotune-no-cudagraphs" is
    allowed but benchmarks conv/GEMM templates for minutes. ``dynamic=False``: one static
    shape (the full batch); other shapes run the uncompiled forward (``TrainStep``)."""
    backend = os.environ.get(COMPILE_BACKEND_ENV, "") or "inductor"
    mode = os.environ.get(COMPILE_MODE_ENV, "") or None
    if mode in ("reduce-overhead", "max-autotune"):
        raise ValueError(f"{COMPILE_MODE_ENV}={mode} makes inductor capture its own CUDA graphs, which cannot "
                         f"nest in the step's capture; use default or max-autotune-no-cudagraphs")
    kw = {"mode": mode} if mode and backend == "inductor" else {}
    words = backend + (f" ({mode})" if kw else "")
    try:
        return torch.compile(fn, backend=backend, dynamic=False, **kw), words, None
    except Exception as e:  # noqa: BLE001 - an unknown backend, a torch without dynamo: warn, run uncompiled
        reason = error_text(e)
        warnings.warn(f"torch.compile of {what} ({words}) failed ({reason}); it runs uncompiled "
                      f"(same mathematics)", RuntimeWarning)
        return None, words, reason


def error_text(e: BaseException) -> str:
    """A capture failure in one line (config.json's ``runtime.fallbacks`` keeps it)."""
    return f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"


def static_input(x: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(buffer, view): a static channels_last input buffer holding ``x`` and the view of it in
    ``x``'s shape that a replay's input is copied into. A pack's (N, B, C, H, W) input lives
    as the (B, N*C, H, W) tensor its grouped network reads (``packed.PackedCifarResNet``)."""
    if x.dim() == 5:
        n, b, c, h, w = x.shape
        buf = torch.empty(b, n * c, h, w, device=device, dtype=x.dtype, memory_format=torch.channels_last)
        view = buf.unflatten(1, (n, c)).permute(1, 0, 2, 3, 4)          # (N, B, C, H, W)
    else:
        buf = torch.empty_like(x, memory_format=torch.channels_last)
        view = buf
    view.copy_(x)
    return buf, view


def warm_up_on_side_stream(device: torch.device, body: Callable[[], object], times: int = WARMUP_STEPS) -> None:
    """``body()`` ``times`` times on a side stream before a capture (cuDNN autotuning, lazy
    allocations), ordered after and before the current stream's work."""
    cur = torch.cuda.current_stream(device)
    side = torch.cuda.Stream(device)
    side.wait_stream(cur)
    with torch.cuda.stream(side):
        for _ in range(times):
            body()
    cur.wait_stream(side)


def capture_graph(body: Callable[[], object]) -> tuple[torch.cuda.CUDAGraph, object]:
    """(graph, what ``body()`` returned while captured): replaying the graph rewrites those
    output tensors in place."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = body()
    return graph, out


def warn_fallback(what: str, e: BaseException, after: str) -> tuple[str, str]:
    """(reason, message) of a failed capture of ``what``, warned (RuntimeWarning): never silent."""
    reason = error_text(e)
    message = f"CUDA-graph capture of {what} failed ({reason}); {after}"
    warnings.warn(message, RuntimeWarning)
    return reason, message
