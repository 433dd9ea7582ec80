"""Published copies of reproductions: ``report/published/<run id>/``, and where a run id is read from.

``resnet_nb.pipeline.publish`` writes a copy (run dirs without last.pth, figures, summary.json, the
PDFs and ``published.json``, its manifest); the report, the README block and the notebooks read it
through these functions, as they read ``experiments/<run id>/``. A published copy is both the runs
root and the figures root of its run id.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from resnet_nb.runs.rundir import check_run_id, read_json

__all__ = ["PUBLISHED_DIR", "MANIFEST_FILE", "Located", "locate", "is_published", "published_ids",
           "newest_published"]

PUBLISHED_DIR = "report/published"
MANIFEST_FILE = "published.json"


@dataclass(frozen=True)
class Located:
    """The roots a run id is read from: ``<runs_dir>/<run_id>/<run>/`` and
    ``<figures_dir>/<run_id>/summary.json``; ``published``: taken from ``report/published``."""

    runs_dir: Path
    figures_dir: Path
    published: bool


def locate(run_id: str, runs_dir: str | os.PathLike = "experiments",
           figures_dir: str | os.PathLike = "report/figures",
           published_dir: str | os.PathLike = PUBLISHED_DIR) -> Located:
    """Where to read ``run_id`` from: ``runs_dir`` and ``figures_dir`` when ``<runs_dir>/<run_id>``
    exists (or neither place has it: the caller's error names the run ids it knows), else the
    published copy ``<published_dir>/<run_id>/`` (run dirs and figures in one folder)."""
    check_run_id(run_id)
    own, pub = Path(runs_dir) / run_id, Path(published_dir) / run_id
    if own.is_dir() or not pub.is_dir():
        return Located(Path(runs_dir), Path(figures_dir), False)
    return Located(Path(published_dir), Path(published_dir), True)


def is_published(run_id_dir: str | os.PathLike) -> bool:
    """Whether ``run_id_dir`` is a copy written by :func:`publish` (it holds ``published.json``)."""
    return (Path(run_id_dir) / MANIFEST_FILE).is_file()


def published_ids(published_dir: str | os.PathLike = PUBLISHED_DIR) -> list[str]:
    """The run ids under ``published_dir`` (folders holding ``published.json``), sorted."""
    root = Path(published_dir)
    return sorted(p.name for p in root.iterdir() if p.is_dir() and is_published(p)) if root.is_dir() else []


def newest_published(published_dir: str | os.PathLike = PUBLISHED_DIR, exclude=()) -> str | None:
    """The run id under ``published_dir`` published last (``published.json``'s ``published_at``,
    then the name), leaving out ``exclude``; None when there is none."""
    def when(run_id: str) -> tuple[str, str]:
        try:
            manifest = read_json(Path(published_dir) / run_id / MANIFEST_FILE)
        except (OSError, ValueError):  # an unreadable manifest: oldest
            manifest = {}
        return str((manifest if isinstance(manifest, dict) else {}).get("published_at") or ""), run_id
    ids = [r for r in published_ids(published_dir) if r not in set(exclude)]
    return max(ids, key=when) if ids else None
