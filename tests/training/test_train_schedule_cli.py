"""Training engine, fast parts: lr schedule, epochs, run-dir I/O, environment, CLI help/errors."""
import json
import os

import pytest
import torch

from resnet_nb.cli import main
from resnet_nb.runs import rundir
from resnet_nb.runs.environment import collect
from resnet_nb.training.config import TrainConfig, make_config
from resnet_nb.training.schedule import iters_per_epoch, lr_at, planned_epochs

IPE = 391  # iterations per epoch of the seed recipe: ceil(50000 / 128)


@pytest.mark.parametrize("epoch,lr", [(0, 0.1), (99, 0.1), (100, 0.01), (149, 0.01), (150, 0.001),
                                      (199, 0.001)])
def test_lr_epoch_schedule_seed(epoch, lr):
    cfg = make_config("seed")
    assert lr_at(cfg, epoch * IPE, IPE) == pytest.approx(lr, rel=1e-12)
    assert lr_at(cfg, epoch * IPE + IPE - 1, IPE) == pytest.approx(lr, rel=1e-12)  # constant in an epoch


@pytest.mark.parametrize("iteration,lr", [(0, 0.1), (31999, 0.1), (32000, 0.01), (47999, 0.01),
                                          (48000, 0.001), (63999, 0.001)])
def test_lr_iteration_schedule_paper(iteration, lr):
    cfg = make_config("paper")
    assert lr_at(cfg, iteration, 352) == pytest.approx(lr, rel=1e-12)
    assert lr_at(cfg, iteration, 352) == lr  # exact decimal values in metrics.json


def test_warmup_then_schedule():
    cfg = make_config("paper", warmup_iters=400)
    assert [lr_at(cfg, i, 352) for i in (0, 399, 400)] == [0.01, 0.01, 0.1]


def test_epochs_and_iterations_per_epoch():
    assert iters_per_epoch(50000, 128) == 391 and iters_per_epoch(45000, 128) == 352
    assert planned_epochs(make_config("seed"), 391) == 200
    paper = make_config("paper")
    assert planned_epochs(paper, 352) == 182 and 181 * 352 < paper.max_iters <= 182 * 352
    assert planned_epochs(make_config("seed", max_iters=1000), 391) == 3


def test_atomic_json_and_load_run(tmp_path):
    d = tmp_path / "exp" / "rid" / "resnet20"
    d.mkdir(parents=True)
    rundir.atomic_write_json(d / "config.json", {"config": {"model": "resnet20"}, "status": "finished"})
    rundir.atomic_write_json(d / "metrics.json", [{"epoch": 1, "test_acc": 0.5}])
    assert sorted(p.name for p in d.iterdir()) == ["config.json", "metrics.json"]  # no tmp left
    assert oct((d / "metrics.json").stat().st_mode & 0o777) != oct(0o600)
    run = rundir.load_run(d)
    assert run["status"] == "finished" and run["metrics"][0]["test_acc"] == 0.5
    assert run["config"]["model"] == "resnet20" and run["path"] == str(d)
    (tmp_path / "exp" / "rid" / "plain20").mkdir()                     # no config.json: skipped
    assert [r["config"]["model"] for r in rundir.list_runs(tmp_path / "exp", "rid")] == ["resnet20"]
    assert rundir.list_run_ids(tmp_path / "exp") == ["rid"]
    with pytest.raises(FileNotFoundError, match="no run id 'nope'.*known run ids: rid"):
        rundir.list_runs(tmp_path / "exp", "nope")
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        rundir.load_run(tmp_path)
    (d / "metrics.json").write_text("[{")
    with pytest.raises(ValueError, match="metrics.json is not valid JSON"):
        rundir.load_run(d)


def test_atomic_save_failure_keeps_old_file(tmp_path):
    p = tmp_path / "last.pth"
    rundir.atomic_save({"epoch": 1}, p)

    class Boom:
        def __reduce__(self):
            raise RuntimeError("boom")
    with pytest.raises(RuntimeError):
        rundir.atomic_save({"epoch": 2, "x": Boom()}, p)
    assert torch.load(p)["epoch"] == 1 and os.listdir(tmp_path) == ["last.pth"]


def test_environment_record():
    env = collect("cpu")
    for key in ("python", "torch", "torchvision", "cuda", "cudnn", "device_name", "cpu_model",
                "ram_gb", "os", "git_commit"):
        assert key in env
    json.dumps(env)


def test_cli_help_lists_every_field_with_default(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    assert e.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # independent of the terminal width
    for name in TrainConfig.__dataclass_fields__:
        if name != "preset":
            assert "--" + name.replace("_", "-") in out, name
    assert "--preset" in out and "--restart" in out and "(default: 0.1)" in out
    assert "(default: 100,150)" in out and "paper" in out and "smoke" in out
    assert "--no-allow-noncanonical" in out
    assert "--precision {auto,fp32,bf16}" in out and "--shortcut {A,B}" in out and ",..}" not in out


def test_top_level_help_is_for_users(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "Deep Residual Learning for Image Recognition" in out and "CIFAR-10" in out
    assert "sub-command per module" not in out and "run_cli" not in out     # not the module docstring
    assert "typical commands:" in out
    for cmd in ("resnet-nb reproduce --preset smoke --dataset synthetic", "resnet-nb data download",
                "resnet-nb train --preset smoke", "resnet-nb report --run-id"):
        assert cmd in out, cmd
    for name in ("data", "train", "reproduce", "report", "bench"):
        assert f"    {name} " in out, name


@pytest.mark.parametrize("argv,message", [
    (["--model", "resnet21"], "depth must be 6n+2"),
    (["--model", "vgg"], "unknown model 'vgg'"),
    (["--epochs", "0"], "epochs must be a positive integer"),
    (["--train-subset", "-3"], "train_subset must be >= 0"),
    (["--lr", "inf"], "lr must be a finite number; got inf"),
    (["--seed", str(10**20)], "seed must be below 2**63"),
    (["--device", "cuda", "--out-dir", "{tmp}"], "CUDA is not available"),
])
def test_cli_bad_input_one_line(argv, message, capsys, tmp_path, monkeypatch):
    if "CUDA" in message:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(["train", "--preset", "smoke", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and err.startswith("resnet-nb train: error:")


def test_cli_parse_errors(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--preset", "fast"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "invalid choice: 'fast'" in err and len(err.splitlines()) == 1
    with pytest.raises(SystemExit):
        main(["train", "--epochs", "many"])
    err = capsys.readouterr().err
    assert "epochs must be an integer; got 'many'" in err and len(err.splitlines()) == 1
    with pytest.raises(SystemExit):
        main(["train", "--learning-rate", "0.1"])
    assert "unrecognized arguments" in capsys.readouterr().err


def test_gpu_check_without_cuda_says_where_to_run_it(capsys, monkeypatch):
    import torch

    from resnet_nb.cli import main
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["gpu-check", "--out", "unused"]) == 2
    err = capsys.readouterr().err
    assert "no CUDA GPU here" in err and "resnet-nb bench --device cpu" in err
