"""``resnet-nb bench --sync-check`` on the CPU: it refuses (it needs CUDA), and its counting
(the real loop of two run lengths, per step = difference / difference in steps) is checked
here with a fake per-step sync, on tiny runs (~5 s on 2 cores)."""
from __future__ import annotations

import argparse
import warnings

import pytest
import torch

from resnet_nb.bench import sync_check
from resnet_nb.cli import main
from resnet_nb.training import loop

pytestmark = pytest.mark.usefixtures("one_thread")


def test_sync_check_says_it_needs_cuda(capsys):
    assert main(["bench", "--sync-check", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "--sync-check needs CUDA" in err and "the device here is cpu" in err


@pytest.mark.filterwarnings("ignore:called a synchronizing CUDA operation")   # the uncounted warm-up run's
def test_sync_check_counts_the_syncs_of_each_step(monkeypatch, tmp_path, capsys):
    """A sync per network per step (planted in the loop's lr update) is found, per step, in both
    pack modes, and named by where the loop made it; the once-per-run syncs are not counted."""
    monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", lambda mode: None)
    monkeypatch.setattr(sync_check, "SYNC_STEPS", (2, 5))
    monkeypatch.setattr(sync_check, "SYNC_TEST_IMAGES", 4)
    monkeypatch.setenv("RESNET_NB_CUDA_GRAPHS", "0")
    real_set_lr = loop.set_lr

    def syncing_set_lr(opt, lr):
        warnings.warn("called a synchronizing CUDA operation", UserWarning)
        real_set_lr(opt, lr)

    monkeypatch.setattr(loop, "set_lr", syncing_set_lr)
    once = loop._save

    def syncing_save(*a, **k):               # once per epoch: not a per-step sync
        warnings.warn("called a synchronizing CUDA operation", UserWarning)
        return once(*a, **k)

    monkeypatch.setattr(loop, "_save", syncing_save)
    args = argparse.Namespace(models="plain8,resnet8", batch_size=4, precision="fp32")
    res = sync_check.sync_check(args, torch.device("cpu"))
    grouped, branches = res["modes"]
    assert grouped["mode"] == "grouped" and grouped["packs"] == 1 and grouped["per_step"] == 1.0
    assert branches["mode"] == "branches" and branches["per_step"] == 2.0       # a network each
    assert grouped["syncs"] == [2 + 2, 5 + 2] and grouped["per_run"] == 2       # 2 members' checkpoints
    assert list(grouped["growing"]) == [next(k for k in grouped["where"] if k.endswith("(set_lr)"))]
    assert grouped["runtime"]["eval_eager_batches"] == 1
    out = capsys.readouterr().out
    assert "sync check, pack mode grouped (plain8+resnet8, 1 pack(s)): 4 syncs in a run of 2 steps" in out
    assert "syncs that grow with the steps: loop.py:" in out
