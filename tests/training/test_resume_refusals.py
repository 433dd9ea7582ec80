"""Refusals to resume a run dir name a way out that works where they are read: resnet-nb
reproduce and the 02_train notebook have no --restart, so the message says another --run-id
(which works everywhere) and that --restart is resnet-nb train's and discards the run."""
from __future__ import annotations

import json
from dataclasses import asdict, replace

import pytest

from resnet_nb.pipeline.notebook import configs_from_parameters
from resnet_nb.runs.rundir import run_dir_of
from resnet_nb.training.run_writer import start_over
from resnet_nb.training.train import train_many


@pytest.mark.parametrize("damage, cause, goal", [
    ("config", r"holds a run with another config: lr \(stored 0.05, now 0.01\)", "to train this config"),
    ("last.pth", r"last.pth cannot be read", "to train the run from the start"),
])
def test_the_02_train_notebooks_call_is_told_a_way_out_it_can_take(tmp_path, damage, cause, goal):
    """What 02_train runs (and so resnet-nb reproduce): configs_from_parameters, then
    train_many. The run dir is refused before any data loads, with the shared tail."""
    cfgs = configs_from_parameters({"preset": "smoke", "models": "plain20,resnet20", "dataset": "synthetic",
                                    "device": "cpu", "out_dir": str(tmp_path), "run_id": "r1"})
    d = run_dir_of(tmp_path, "r1", "plain20")
    d.mkdir(parents=True)
    stored = replace(cfgs[0], lr=0.05) if damage == "config" else cfgs[0]
    (d / "config.json").write_text(json.dumps({"config": asdict(stored), "status": "paused"}))
    if damage == "last.pth":
        (d / "last.pth").write_bytes(b"truncated")
    with pytest.raises(ValueError, match=cause) as e:
        train_many(cfgs)
    msg = str(e.value)
    assert "\n" not in msg and msg.endswith(start_over(goal)) and "pass --restart" not in msg
    assert "another --run-id (run_id in the 02_train notebook" in msg
    assert "resnet-nb train --restart (discards its checkpoints and metrics)" in msg
    assert sorted(p.name for p in d.iterdir()) == sorted(["config.json"] + (["last.pth"] if damage != "config"
                                                                            else []))
