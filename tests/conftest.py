"""Shared fixtures: small CIFAR-format datasets written by the real fixture writer, and the tiny
reproductions several test modules read (trained once per session)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from resnet_nb.data.cifar10 import write_fake_cifar10

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "pipeline"))  # reproduce_e2e, slurm_cluster: helpers, not tests
from reproduce_e2e import LocalReproduction, run_local_reproduction  # noqa: E402


@pytest.fixture(autouse=True)
def _no_real_data(monkeypatch, tmp_path_factory):
    """Tests read only their own fixtures, never a user's data: point the default root at an empty dir
    and any download at a closed loopback port."""
    monkeypatch.setenv("RESNET_NB_DATA", str(tmp_path_factory.mktemp("no-data")))
    monkeypatch.setenv("RESNET_NB_CIFAR_URL", "http://127.0.0.1:9/cifar-10-python.tar.gz")
    monkeypatch.setenv("RESNET_NB_SYNTHETIC", str(tmp_path_factory.mktemp("synthetic")))


@pytest.fixture(scope="session")
def fake_cifar(tmp_path_factory) -> Path:
    """Root holding a 500/100-image synthetic CIFAR-10 in the real pickle layout."""
    root = tmp_path_factory.mktemp("fake-cifar")
    write_fake_cifar10(root, n_train=500, n_test=100, seed=0)
    return root


@pytest.fixture
def one_thread():
    """torch on one thread: small nets on a shared 2-core CPU run fastest (and repeatably) so."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def local_reproduction(tmp_path_factory) -> LocalReproduction:
    """reproduce_e2e's local reproduction (interrupted, then rerun with a failing third model),
    once per session: test_reproduce.py checks it, test_slurm.py compares the SLURM executor's
    run dirs with it. Nobody writes into it afterwards."""
    return run_local_reproduction(tmp_path_factory.mktemp("local-reproduction"))


TINY_MODELS = ("plain8", "resnet8", "plain14", "resnet14")  # the 2x2 design at depths 8 and 14 (6n+2, n = 1, 2)
TINY_RUN_ID = "t"


@pytest.fixture(scope="session")
def tiny_reproduction(tmp_path_factory, fake_cifar) -> dict:
    """One tiny synthetic reproduction, trained and analysed once per session:
    ``{"experiments", "figures", "run_id", "models"}`` (Plain/ResNet-8 and -14 of ``TINY_MODELS``, run id
    ``TINY_RUN_ID``, 64 images, batch 32, 2 epochs, lr 0.1 then 0.01, CPU, one thread,
    trained one by one). test_publish.py publishes it, test_report_build.py builds its report
    in all languages and formats. Read-only: a test that changes a run copies it first."""
    import torch

    from resnet_nb.analysis.aggregate import analyze
    from resnet_nb.training.config import make_config
    from resnet_nb.training.train import train_many

    root = tmp_path_factory.mktemp("tiny-reproduction")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfgs = [make_config("smoke", model=m, dataset="synthetic", data_root=str(fake_cifar), epochs=2, lr=0.1,
                            batch_size=32, train_subset=64, test_subset=50, milestones=(1,), device="cpu",
                            out_dir=str(root / "experiments"), run_id=TINY_RUN_ID) for m in TINY_MODELS]
        train_many(cfgs, pack=False)
    finally:
        torch.set_num_threads(threads)
    analyze(root / "experiments", TINY_RUN_ID, root / "figures", expected=TINY_MODELS)
    return {"experiments": root / "experiments", "figures": root / "figures", "run_id": TINY_RUN_ID,
            "models": TINY_MODELS}
