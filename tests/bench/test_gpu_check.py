"""The GPU fast path on a real card (skipped without CUDA): the graphed step equals the eager one,
and ``resnet-nb gpu-check`` writes its results folder. Run with ``pytest tests/bench/test_gpu_check.py`` on a GPU."""
import json

import pytest
import torch

from resnet_nb.bench.gpu_check import graph_vs_eager
from resnet_nb.cli import main

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_graphed_step_and_evaluation_equal_the_eager_ones():
    for r in graph_vs_eager():
        assert r["captured"], r
        assert r["max_param_diff"] < 1e-4 and r["eval_max_loss_diff"] < 1e-2 and r["eval_correct_diff"] <= 1, r


def test_gpu_check_writes_one_results_folder(tmp_path):
    rc = main(["gpu-check", "--out", str(tmp_path), "--time-budget", "300", "--skip", "parity"])
    summary = (tmp_path / "summary.txt").read_text()
    assert rc == 0, summary
    steps = json.loads((tmp_path / "gpu_check.json").read_text())
    assert [s["step"] for s in steps[1:]] == ["graph_check", "sync", "bench", "parity"]
    assert (tmp_path / "graph_check.json").is_file() and (tmp_path / "bench.json").is_file()
