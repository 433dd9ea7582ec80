"""nbval regression of the four notebooks (golden copies in this folder, ``make golden``).

``pytest --nbval-lax tests/notebooks`` re-executes each golden copy top to bottom and
compares the outputs of the cells marked ``# NBVAL_CHECK_OUTPUT`` (deterministic facts:
shapes, parameter counts, class counts, rounded statistics) after ``sanitize.cfg``.
Plain ``pytest`` (``make test``) runs them the same way: this conftest switches on
``--nbval-lax`` for this folder when no nbval mode was chosen, always uses a kernel of
the running Python (``--nbval-current-env``) and the sanitize file. The environment
points every kernel at the synthetic fixture only: no real data, no network, one thread.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from make_golden import ROOT, WORK  # noqa: E402

# pytest imports every conftest.py as the module ``conftest``; tests that do
# ``from conftest import REPO`` (meaning tests/conftest.py) may get this one
REPO = ROOT


def pytest_configure(config):
    opt = config.option
    if not (opt.nbval or opt.nbval_lax):
        opt.nbval_lax = True
    if not opt.nbval_kernel_name:
        opt.nbval_current_env = True
    if not opt.nbval_sanitize_with:
        opt.nbval_sanitize_with = str(HERE / "sanitize.cfg")
    # inherited by the kernels nbval starts (the autouse fixtures of tests/conftest.py do
    # not apply to notebook cells)
    os.environ["RESNET_NB_DATA"] = str(ROOT / WORK / "no-data")
    os.environ["RESNET_NB_CIFAR_URL"] = "http://127.0.0.1:9/cifar-10-python.tar.gz"
    os.environ["RESNET_NB_SYNTHETIC"] = str(ROOT / WORK / "synthetic-default")
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MPLBACKEND"] = "Agg"
    # a clean work folder: the golden 02_train must train, not find finished runs
    shutil.rmtree(ROOT / WORK, ignore_errors=True)
    (ROOT / WORK).mkdir(parents=True)
