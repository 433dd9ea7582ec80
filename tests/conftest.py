"""Shared fixtures: small CIFAR-format datasets written by the real fixture writer."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from resnet_nb.data.cifar10 import write_fake_cifar10

REPO = Path(__file__).resolve().parent.parent


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
