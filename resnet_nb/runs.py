"""Run directories: atomic writers and the readers analysis, report and notebooks use.

A run directory ``<out_dir>/<run_id>/<run_name>/`` holds (DESIGN.md contract):

* ``config.json``: ``{"config": asdict(cfg), "preset", "environment", "dataset", "status",
  "start_time", "end_time", "params", ...}``; status is running | finished | failed |
  interrupted;
* ``metrics.json``: a list, one record per finished epoch (``epoch`` is 1-based);
* ``best.pth`` and ``last.pth``: ``torch.save`` dicts with ``"config": asdict(cfg)``.

Every file is written to a temporary name in the same folder and moved into place with
``os.replace``, so a reader (or a run killed mid-write) sees the old or the new file,
never a half-written one.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["atomic_write_json", "atomic_save", "read_json", "load_run", "list_runs",
           "list_run_ids", "run_dir_of", "CONFIG_FILE", "METRICS_FILE", "BEST_FILE", "LAST_FILE"]

CONFIG_FILE, METRICS_FILE = "config.json", "metrics.json"
BEST_FILE, LAST_FILE = "best.pth", "last.pth"


def _atomic(path: str | os.PathLike, write) -> Path:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically (tmp file + ``os.replace``)."""
    text = json.dumps(obj, indent=2, allow_nan=True) + "\n"
    return _atomic(path, lambda f: f.write(text.encode()))


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj, path)`` atomically."""
    return _atomic(path, lambda f: torch.save(obj, f))


def read_json(path: str | os.PathLike) -> Any:
    """Read JSON; a corrupt file raises ValueError naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); delete it or rerun the training") from None


def run_dir_of(out_dir: str | os.PathLike, run_id: str, run_name: str) -> Path:
    """``<out_dir>/<run_id>/<run_name>``."""
    return Path(out_dir).expanduser() / run_id / run_name


def load_run(run_dir: str | os.PathLike) -> dict:
    """Everything a run directory says, as plain data.

    Returns config.json's keys (``config``, ``preset``, ``environment``, ``dataset``,
    ``status``, ``start_time``, ``end_time``, ``params``, ...) plus ``metrics`` (the list
    from metrics.json, ``[]`` before the first epoch ends) and ``path`` (str).
    """
    run_dir = Path(run_dir)
    cfg_path = run_dir / CONFIG_FILE
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no {CONFIG_FILE}); "
                                f"train into it first (resnet-nb train)")
    meta = read_json(cfg_path)
    metrics_path = run_dir / METRICS_FILE
    metrics = read_json(metrics_path) if metrics_path.is_file() else []
    return {**meta, "status": meta.get("status"), "metrics": metrics, "path": str(run_dir)}


def list_run_ids(out_dir: str | os.PathLike) -> list[str]:
    """Run ids under ``out_dir`` (folders holding at least one run directory), sorted."""
    out = Path(out_dir).expanduser()
    if not out.is_dir():
        return []
    return sorted(p.name for p in out.iterdir()
                  if p.is_dir() and any((q / CONFIG_FILE).is_file() for q in p.iterdir() if q.is_dir()))


def list_runs(out_dir: str | os.PathLike, run_id: str) -> list[dict]:
    """``load_run`` of every run directory of ``run_id``, sorted by run name."""
    base = Path(out_dir).expanduser() / run_id
    if not base.is_dir():
        known = list_run_ids(out_dir)
        hint = f"known run ids: {', '.join(known)}" if known else "it holds no runs yet"
        raise FileNotFoundError(f"no run id {run_id!r} under {Path(out_dir)} ({hint})")
    return [load_run(p) for p in sorted(base.iterdir()) if (p / CONFIG_FILE).is_file()]
