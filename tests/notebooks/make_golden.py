"""Regenerate the nbval golden copies: ``make golden`` (or ``python tests/notebooks/make_golden.py``).

Executes ``notebooks/<name>.ipynb`` with papermill and the smoke parameters below on the
synthetic fixture, from the project root, writing ``tests/notebooks/<name>.ipynb``. All
paths are relative to the project root (the notebooks ``chdir`` there when nbval starts
them in ``tests/notebooks/``), and every file goes under ``build/nbval/`` (git-ignored),
which is emptied first. ``pytest --nbval-lax tests/notebooks`` then re-executes the copies
and compares the cells marked ``# NBVAL_CHECK_OUTPUT``.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
WORK = "build/nbval"                       # relative to ROOT; emptied before each execution
DATA = dict(dataset="synthetic", data_root=f"{WORK}/synthetic")

GOLDEN_PARAMS: dict[str, dict] = {
    "00_data": dict(**DATA, samples_per_class=4, preview_images=4),
    "01_theory": dict(**DATA, depths="20,26", seeds="0,1", batch_size=16, device="cpu",
                      run_id="golden", figures_root=f"{WORK}/figures"),
    "02_train": dict(preset="smoke", models="plain20,resnet20", **DATA, train_subset=200, test_subset=100,
                     epochs=2, device="cpu", out_dir=f"{WORK}/experiments", run_id="golden"),
    "03_analysis": dict(run_id="golden", runs_dir=f"{WORK}/experiments", figures_root=f"{WORK}/figures",
                        expected_models="plain20,resnet20"),
}


def reset_workdir() -> Path:
    work = ROOT / WORK
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    return work


def main() -> int:
    import nbformat
    import papermill as pm

    os.environ.setdefault("OMP_NUM_THREADS", "1")   # small nets on a shared CPU: one thread is fastest
    os.environ["MPLBACKEND"] = "Agg"
    reset_workdir()
    for name, params in GOLDEN_PARAMS.items():
        out = HERE / f"{name}.ipynb"
        print(f"golden: executing notebooks/{name}.ipynb -> {out.relative_to(ROOT)}", flush=True)
        pm.execute_notebook(str(ROOT / "notebooks" / f"{name}.ipynb"), str(out), parameters=params,
                            kernel_name="python3", progress_bar=False, cwd=str(ROOT))
        nb = nbformat.read(out, as_version=4)
        nb.metadata.pop("papermill", None)           # timings and absolute paths: not golden
        for cell in nb.cells:
            cell.metadata.pop("papermill", None)
            cell.metadata.pop("execution", None)
        nbformat.write(nb, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
