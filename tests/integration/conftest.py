"""Fixtures shared by several integration test modules."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reproduce_e2e import LocalReproduction, run_local_reproduction  # noqa: E402


@pytest.fixture(scope="session")
def local_reproduction(tmp_path_factory) -> LocalReproduction:
    """reproduce_e2e's local reproduction (interrupted, then rerun with a failing third model),
    once per session: test_reproduce.py checks it, test_slurm.py compares the SLURM executor's
    run dirs with it. Nobody writes into it afterwards."""
    return run_local_reproduction(tmp_path_factory.mktemp("local-reproduction"))
