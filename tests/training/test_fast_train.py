"""``train`` with precision bf16 on the CPU: the fast path's API runs eagerly (CPU autocast)."""
import math

import pytest
import torch

from resnet_nb.models.resnet import build_model
from resnet_nb.runs import rundir
from resnet_nb.training.config import make_config
from resnet_nb.training.train import train

pytestmark = pytest.mark.slow


def test_bf16_run_on_cpu(fake_cifar, tmp_path):
    torch.set_num_threads(1)
    cfg = make_config("smoke", model="resnet8", dataset="synthetic", data_root=str(fake_cifar), epochs=1,
                      batch_size=32, train_subset=64, test_subset=20, milestones=(1,), device="cpu",
                      precision="bf16", out_dir=str(tmp_path), run_id="b")
    run = rundir.load_run(train(cfg))
    assert run["status"] == "finished" and run["config"]["precision"] == "bf16"
    assert all(math.isfinite(run["metrics"][0][k]) for k in ("train_loss", "test_loss"))
    ck = torch.load(tmp_path / "b" / "resnet8" / "last.pth", map_location="cpu", weights_only=True)
    assert all(v.dtype in (torch.float32, torch.int64) for v in ck["model"].values())   # fp32 master weights
    build_model("resnet8").load_state_dict(ck["model"])
