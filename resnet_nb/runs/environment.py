"""The software and hardware a run used, recorded in every run's ``config.json``.

``collect(device)`` returns plain JSON values only; every probe is best-effort (a missing
``/proc`` or ``git`` gives ``None``, never an exception), so recording the environment can
not stop a training run.

The commit comes from git when the checkout holding resnet_nb is a git work tree, else from
``RESNET_NB_COMMIT`` (and ``RESNET_NB_COMMIT_DIRTY``, 1/0), which a copy without ``.git``
(e.g. a checkout copied to a rented GPU) is given by the command that starts it
(``resnet-nb transfer commit`` prints them);
``git_commit_source`` records which it was.
"""
from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import torch

from resnet_nb import REPO

__all__ = ["collect", "git", "git_commit", "cpu_model", "cpu_has_native_bf16", "usable_cores", "ram_gb", "device_name", "COMMIT_ENV", "COMMIT_DIRTY_ENV"]

COMMIT_ENV, COMMIT_DIRTY_ENV = "RESNET_NB_COMMIT", "RESNET_NB_COMMIT_DIRTY"
_SHA = re.compile(r"^[0-9a-f]{7,64}$")  # abbreviated to full (sha1: 40, sha256: 64) hex ids
_BOOL = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


def git(*args: str, repo: str | os.PathLike | None = None, timeout: float = 10) -> str | None:
    """The stripped output of ``git -C <repo> <args>`` (default repo: the checkout holding
    resnet_nb), or None when git is missing, fails or times out: the one way the package asks git."""
    try:
        out = subprocess.run(["git", "-C", str(repo or REPO), *args], capture_output=True, text=True,
                             timeout=timeout, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def git_commit(repo: str | os.PathLike | None = None, environ: bool = True) -> dict:
    """``{"commit", "dirty", "source"}`` of the checkout ``repo`` (default: the one holding resnet_nb).

    From git (``source`` "git") when ``repo`` is the top of a git work tree; otherwise (with
    ``environ``) from
    ``$RESNET_NB_COMMIT`` (a hex commit id; ``source`` "RESNET_NB_COMMIT") and
    ``$RESNET_NB_COMMIT_DIRTY`` (1/0, true/false; unset: dirty unknown, None); otherwise all
    None. An environment value that is not a hex id is ignored (a typo must not pass for a commit).
    """
    repo = Path(repo or REPO)
    top = git("rev-parse", "--show-toplevel", repo=repo)
    if top and _same_dir(top, repo):
        sha = git("rev-parse", "HEAD", repo=repo)
        if sha:
            status = git("status", "--porcelain", "--untracked-files=no", repo=repo)
            return {"commit": sha, "dirty": (bool(status) if status is not None else None), "source": "git"}
    sha = os.environ.get(COMMIT_ENV, "").strip().lower() if environ else ""
    if _SHA.match(sha):
        dirty = _BOOL.get(os.environ.get(COMMIT_DIRTY_ENV, "").strip().lower())
        return {"commit": sha, "dirty": dirty, "source": COMMIT_ENV}
    return {"commit": None, "dirty": None, "source": None}


def _same_dir(a: str, b: Path) -> bool:
    try:
        return Path(a).resolve() == b.resolve()
    except OSError:
        return False


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity where the OS tells, else all)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def cpu_has_native_bf16() -> bool:
    """True when this CPU computes bfloat16 in hardware (AVX512-BF16 or AMX-BF16; Linux flags).
    Elsewhere torch's CPU autocast emulates bf16, which is slower than fp32."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return bool(set(line.split(":", 1)[1].split()) & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def cpu_model() -> str | None:
    """The CPU's marketing name (``/proc/cpuinfo`` on Linux, else ``platform.processor()``)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def ram_gb() -> float | None:
    """Total physical memory in GiB."""
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def device_name(device: torch.device | str) -> str:
    """GPU name for a CUDA device, the CPU model for the CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        try:
            return torch.cuda.get_device_name(device)
        except Exception:  # noqa: BLE001 - best effort
            return "cuda (name unavailable)"
    return cpu_model() or "cpu"


def collect(device: torch.device | str = "cpu") -> dict:
    """Versions (Python, torch, torchvision, CUDA, cuDNN), device, CPU, RAM, OS, git commit."""
    import numpy

    try:
        import torchvision
        tv = torchvision.__version__
    except Exception:  # noqa: BLE001
        tv = None
    cuda_ok = torch.cuda.is_available()
    try:
        cudnn = torch.backends.cudnn.version() if cuda_ok else None
    except Exception:  # noqa: BLE001
        cudnn = None
    from resnet_nb import __version__

    git = git_commit()
    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torchvision": tv,
        "numpy": numpy.__version__,
        "resnet_nb": __version__,
        "cuda": torch.version.cuda,            # CUDA version torch was built with
        "cudnn": cudnn,
        "cuda_available": cuda_ok,
        "gpu_count": torch.cuda.device_count() if cuda_ok else 0,
        "device": str(device),
        "device_name": device_name(device),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_native_bf16": cpu_has_native_bf16(),
        "torch_threads": torch.get_num_threads(),
        "ram_gb": ram_gb(),
        "os": platform.platform(),
        "git_commit": git["commit"],
        "git_dirty": git["dirty"],
        "git_commit_source": git["source"],   # "git", "RESNET_NB_COMMIT" (a copy without .git) or None
    }
