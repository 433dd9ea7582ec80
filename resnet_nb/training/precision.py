"""The arithmetic of a training step: fp32, or bf16 autocast with fp32 master weights; what
precision="auto" settles to; whether a device can run it.
"""
from __future__ import annotations

import contextlib
import warnings

import torch

from resnet_nb.runs.environment import cpu_has_native_bf16

__all__ = ["AUTOCAST_DTYPES", "CONCRETE_PRECISIONS", "default_precision", "settle_precision",
           "check_precision", "autocast"]


AUTOCAST_DTYPES = {"bf16": torch.bfloat16}


CONCRETE_PRECISIONS = ("fp32", "bf16")   # what a step runs in (config's "auto" settled first)


def default_precision(device: torch.device | str) -> str:
    """What ``precision="auto"`` means for a new run: fp32, on every device. bf16 is opt-in: it is
    not faster on every CPU with native bf16 (``resnet-nb bench --device cpu`` measures both on
    yours), and on one such CPU ``resnet-nb parity`` found that it does not train these nets as
    fp32 does in their first epochs (docs/speed.md, the published ``parity.json``)."""
    torch.device(device)              # a bad device name is still an error here
    return "fp32"


def settle_precision(precision: str, device: torch.device | str, stored: str | None = None) -> str:
    """``precision`` made concrete: ``auto`` becomes the stored run's precision (``stored``, from
    its config.json) when there is one, else :func:`default_precision`; fp32 and bf16 stay."""
    if precision != "auto":
        return precision
    return stored if stored in CONCRETE_PRECISIONS else default_precision(device)


def check_precision(precision: str, device: torch.device | str) -> None:
    """One-line ValueError unless ``precision`` can run on ``device`` (a concrete one: settle
    ``auto`` first, :func:`settle_precision`).

    bf16 needs a GPU with bfloat16 arithmetic (compute capability 8.0+: A100, H100, ...); on
    the CPU torch's autocast provides it everywhere, in hardware only with AVX512-BF16 or AMX
    (elsewhere emulated and slower than fp32: a one-line warning says so).
    """
    device = torch.device(device)
    if precision not in CONCRETE_PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(CONCRETE_PRECISIONS)} here "
                         f"(settle 'auto' with precision.settle_precision first); got {precision!r}")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"precision bf16 needs a GPU with bfloat16 support (compute capability 8.0+); "
                         f"{torch.cuda.get_device_name(device)} has none: use --precision fp32")
    if precision == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
        warnings.warn("bf16 on this CPU is emulated (no AVX512-BF16 or AMX): expect it slower than fp32 "
                      "(--precision fp32 or auto)", RuntimeWarning, stacklevel=2)


def autocast(precision: str, device: torch.device | str):
    """Context of the forward pass: bf16 autocast, or nothing for fp32. The autocast weight
    cache is off, as CUDA-graph capture requires."""
    device = torch.device(device)
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=AUTOCAST_DTYPES[precision], cache_enabled=False)
