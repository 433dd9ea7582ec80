"""No lost work: races on a run dir, lost or corrupt config.json, a full disk, crash debris,
killed runs and the run dir's lock.

Every run is a ResNet-8 on 128 synthetic images (4 iterations per epoch, 2 epochs, CPU).
"""
import errno
import json
import os
import socket
from dataclasses import replace

import pytest
import torch

from resnet_nb.cli import main
from resnet_nb.runs import rundir
from resnet_nb.training import loop, run_writer
from resnet_nb.training import train as T
from resnet_nb.training.config import make_config
from resnet_nb.training.step import TrainStep
from resnet_nb.training.train import train, train_many

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


def tiny(fake_cifar, out_dir, **kw):
    base = dict(model="resnet8", dataset="synthetic", data_root=str(fake_cifar), epochs=2, lr=0.1,
                batch_size=32, train_subset=128, test_subset=50, milestones=(1,), device="cpu",
                out_dir=str(out_dir), run_id="t")
    return make_config("smoke", **{**base, **kw})


def snapshot(run_dir):
    """The run files' bytes, to show they survived untouched."""
    return {n: (run_dir / n).read_bytes() for n in rundir.RUN_FILES if (run_dir / n).is_file()}


def epoch_of(path):
    return torch.load(path, map_location="cpu", weights_only=True)["epoch"]


def interrupt_after_epoch_1(monkeypatch, cfg):
    """Train ``cfg`` and stop it with Ctrl-C in its 2nd epoch: last.pth holds epoch 1."""
    real, calls = TrainStep.__call__, {"n": 0}

    def step(*a):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return real(*a)
    monkeypatch.setattr(TrainStep, "__call__", step)
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    monkeypatch.setattr(TrainStep, "__call__", real)
    return rundir.run_dir_of(cfg.out_dir, cfg.run_id, cfg.run_name or cfg.model)


def another_process_trains_while_data_loads(monkeypatch, other_cfgs, then=None):
    """Between this command's look at the run dir and its lock, ``other_cfgs`` really train
    (to the end) into the same run dirs: two commands interleaved."""
    real = loop.prepare_data

    def interleaved(cfg, device="cpu"):
        monkeypatch.setattr(loop, "prepare_data", real)
        for c in other_cfgs:
            train(c)
        if then:
            then()
        return real(cfg, device)
    monkeypatch.setattr(loop, "prepare_data", interleaved)


# --------------------------------------------------------------------------- item 7: the race

def test_a_run_finished_meanwhile_with_another_config_survives(fake_cifar, tmp_path, monkeypatch):
    cfg = tiny(fake_cifar, tmp_path)
    other = replace(cfg, lr=0.05)
    another_process_trains_while_data_loads(monkeypatch, [other])
    with pytest.raises(ValueError, match=r"holds a run with another config: lr \(stored 0.05, now 0.1\)"):
        train(cfg)
    run_dir = rundir.run_dir_of(tmp_path, "t", "resnet8")
    run = rundir.load_run(run_dir)
    assert run["status"] == "finished" and run["config"]["lr"] == 0.05 and len(run["metrics"]) == 2
    assert epoch_of(run_dir / "last.pth") == 2 and (run_dir / "best.pth").is_file()
    assert not (run_dir / ".lock").exists()


def test_a_run_finished_meanwhile_with_the_same_config_is_not_trained_again(fake_cifar, tmp_path,
                                                                            monkeypatch, capsys):
    cfg = tiny(fake_cifar, tmp_path)

    def no_training(*a, **k):
        raise AssertionError("the finished run must not be trained again")
    another_process_trains_while_data_loads(
        monkeypatch, [cfg], then=lambda: monkeypatch.setattr(TrainStep, "__call__", no_training))
    run_dir = rundir.run_dir_of(tmp_path, "t", "resnet8")
    assert train(cfg) == run_dir
    assert "already finished (2 epochs)" in capsys.readouterr().out
    assert rundir.load_run(run_dir)["status"] == "finished" and epoch_of(run_dir / "last.pth") == 2


def test_restart_refuses_a_run_dir_that_changed_meanwhile(fake_cifar, tmp_path, monkeypatch):
    cfg = tiny(fake_cifar, tmp_path)
    another_process_trains_while_data_loads(monkeypatch, [replace(cfg, lr=0.05)])
    run_dir = rundir.run_dir_of(tmp_path, "t", "resnet8")
    with pytest.raises(ValueError, match="changed while this command was loading the data.*nothing was deleted"):
        train(cfg, restart=True)
    assert rundir.load_run(run_dir)["config"]["lr"] == 0.05 and epoch_of(run_dir / "last.pth") == 2


def test_a_pack_member_finished_meanwhile_survives(fake_cifar, tmp_path, monkeypatch):
    cfgs = [tiny(fake_cifar, tmp_path, model="plain8"), tiny(fake_cifar, tmp_path, model="resnet8")]
    cfgs = T.resolve_run_ids(cfgs)
    another_process_trains_while_data_loads(monkeypatch, [replace(cfgs[1], lr=0.05)])
    with pytest.raises(ValueError, match=r"resnet8 holds a run with another config: lr"):
        train_many(cfgs, pack=True)
    run_dir = rundir.run_dir_of(tmp_path, "t", "resnet8")
    assert rundir.load_run(run_dir)["config"]["lr"] == 0.05 and epoch_of(run_dir / "last.pth") == 2
    assert not (tmp_path / "t" / "plain8").exists()       # the pack never started


# --------------------------------------------------------------------------- item 8: config.json

def test_corrupt_config_json_is_rebuilt_from_last_pth_and_the_run_resumes(fake_cifar, tmp_path,
                                                                         monkeypatch, capsys):
    cfg = tiny(fake_cifar, tmp_path)
    run_dir = interrupt_after_epoch_1(monkeypatch, cfg)
    (run_dir / "config.json").write_text('{"config": {"model": "resn')   # cut short
    capsys.readouterr()
    assert train(cfg) == run_dir
    out = capsys.readouterr().out
    assert "config.json is unreadable (JSONDecodeError" in out and "rebuilding it from last.pth (epoch 1)" in out
    assert "resuming after epoch 1" in out
    run = rundir.load_run(run_dir)
    assert run["status"] == "finished" and [r["epoch"] for r in run["metrics"]] == [1, 2]
    assert run["config"] == rundir.read_json(run_dir / "config.json")["config"] and run["config"]["lr"] == 0.1


def test_missing_config_json_and_last_pth_of_another_config_is_refused(fake_cifar, tmp_path, monkeypatch):
    cfg = tiny(fake_cifar, tmp_path)
    run_dir = interrupt_after_epoch_1(monkeypatch, cfg)
    (run_dir / "config.json").unlink()
    before = snapshot(run_dir)
    with pytest.raises(ValueError, match=r"holds a run with another config: epochs \(stored 2, now 3\), "
                                         r"lr \(stored 0.1, now 0.05\)"):
        train(replace(cfg, epochs=3, lr=0.05))
    assert snapshot(run_dir) == before and "last.pth" in before


def test_unreadable_config_json_and_last_pth_are_kept_and_refused(fake_cifar, tmp_path, monkeypatch, capsys):
    cfg = tiny(fake_cifar, tmp_path)
    run_dir = interrupt_after_epoch_1(monkeypatch, cfg)
    (run_dir / "config.json").write_text("{not json")
    (run_dir / "last.pth").write_bytes(b"truncated")
    before = snapshot(run_dir)
    argv = ["train", "--preset", "smoke", "--model", "resnet8", "--dataset", "synthetic", "--data-root",
            str(fake_cifar), "--epochs", "2", "--batch-size", "32", "--train-subset", "128",
            "--test-subset", "50", "--milestones", "1", "--device", "cpu", "--out-dir", str(tmp_path),
            "--run-id", "t"]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    for text in ("config.json is unreadable", "last.pth cannot be read", "the files (config.json, last.pth",
                 "are kept", run_writer.start_over()):
        assert text in err, text
    assert snapshot(run_dir) == before                                  # nothing deleted
    assert main(argv + ["--restart"]) == 0                              # the way out it names
    assert rundir.load_run(run_dir)["status"] == "finished"


def test_read_json_does_not_say_delete(tmp_path):
    (tmp_path / "config.json").write_text("[{")
    with pytest.raises(ValueError, match="is not valid JSON") as e:
        rundir.read_json(tmp_path / "config.json")
    assert "delete" not in str(e.value) and "rebuilds" in str(e.value)


# --------------------------------------------------------------------------- item 10: full disk

def test_full_disk_one_line_failed_status_last_pth_intact(fake_cifar, tmp_path, monkeypatch, capsys):
    real = rundir.atomic_save

    def full_at_epoch_2(obj, path):
        if path.name == "last.pth" and obj["epoch"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(obj, path)
    monkeypatch.setattr(rundir, "atomic_save", full_at_epoch_2)
    argv = ["train", "--preset", "smoke", "--model", "resnet8", "--dataset", "synthetic", "--data-root",
            str(fake_cifar), "--epochs", "2", "--batch-size", "32", "--train-subset", "128",
            "--test-subset", "50", "--milestones", "1", "--device", "cpu", "--out-dir", str(tmp_path),
            "--run-id", "t"]
    assert main(argv) == 2
    run_dir = rundir.run_dir_of(tmp_path, "t", "resnet8")
    err = capsys.readouterr().err.strip()
    line = f"no space left on {run_dir}; last good checkpoint is epoch 1"
    assert err.startswith(f"resnet-nb train: error: {line}") and len(err.splitlines()) == 1
    meta = rundir.read_json(run_dir / "config.json")
    assert meta["status"] == "failed" and meta["error"].startswith(line)
    assert epoch_of(run_dir / "last.pth") == 1
    assert not (run_dir / ".lock").exists()
    monkeypatch.setattr(rundir, "atomic_save", real)
    assert main(argv) == 0 and rundir.load_run(run_dir)["status"] == "finished"


def test_torch_save_on_a_full_disk_becomes_no_space_error(tmp_path, monkeypatch):
    """Through runs.atomic_save: the errno (or torch's zip-writer RuntimeError on a full
    file system) becomes NoSpaceError; the old file and no temporary file remain."""
    rundir.atomic_save({"epoch": 1}, tmp_path / "last.pth")
    real = torch.save

    def enospc(obj, f):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(torch, "save", enospc)
    with pytest.raises(rundir.NoSpaceError, match=f"^no space left on {tmp_path}$"):
        rundir.atomic_save({"epoch": 2}, tmp_path / "last.pth")

    def zip_writer(obj, f):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")
    monkeypatch.setattr(torch, "save", zip_writer)
    import shutil
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9, 4096))
    with pytest.raises(rundir.NoSpaceError):
        rundir.atomic_save({"epoch": 2}, tmp_path / "last.pth")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 0, 10**9))
    with pytest.raises(RuntimeError, match="inline_container"):     # plenty of space: not a full disk
        rundir.atomic_save({"epoch": 2}, tmp_path / "last.pth")
    monkeypatch.setattr(torch, "save", real)
    assert torch.load(tmp_path / "last.pth")["epoch"] == 1 and os.listdir(tmp_path) == ["last.pth"]


# --------------------------------------------------------------------------- item 11, 14: debris, lock

def test_temporary_files_of_a_crash_are_removed_on_the_next_claim(fake_cifar, tmp_path, monkeypatch):
    cfg = tiny(fake_cifar, tmp_path)
    run_dir = interrupt_after_epoch_1(monkeypatch, cfg)
    for name in (".last.pth.k2j3h4.tmp", ".config.json.abc.tmp", ".metrics.json.x.tmp", ".notes.tmp"):
        (run_dir / name).write_bytes(b"debris")
    train(cfg)
    assert sorted(p.name for p in run_dir.iterdir()) == [".notes.tmp", "best.pth", "config.json",
                                                         "last.pth", "metrics.json"]


def test_lock_file_is_removed_when_a_run_ends(fake_cifar, tmp_path, monkeypatch):
    run_dir = interrupt_after_epoch_1(monkeypatch, tiny(fake_cifar, tmp_path))
    assert rundir.load_run(run_dir)["status"] == "interrupted" and not (run_dir / ".lock").exists()
    train(tiny(fake_cifar, tmp_path))
    assert not (run_dir / ".lock").exists()
    meta = rundir.read_json(run_dir / "config.json")
    assert (meta["pid"], meta["host"]) == (os.getpid(), socket.gethostname())


def test_lock_holder_release_and_retry(tmp_path):
    d = tmp_path / "rid" / "resnet8"
    lock = rundir.lock_run_dir(d)
    assert rundir.is_locked(d) and rundir.lock_holder(d) == rundir.process_info()
    with pytest.raises(ValueError, match=rf"being trained by another process \(pid {os.getpid()} "
                                         rf"on {socket.gethostname()}\)"):
        rundir.lock_run_dir(d)
    stale = open(d / ".lock")          # a process that opened the lock file before the release
    lock.release()
    assert not d.exists()              # nothing was written: no empty run dir is left
    import fcntl
    fcntl.flock(stale, fcntl.LOCK_EX | fcntl.LOCK_NB)   # it gets the flock of the removed file ...
    again = rundir.lock_run_dir(d)                         # ... which is not the lock any more
    assert rundir.is_locked(d)
    (d / "config.json").write_text("{}")
    again.release()
    stale.close()
    assert sorted(p.name for p in d.iterdir()) == ["config.json"] and not rundir.is_locked(d)


def test_effective_status_of_a_killed_run(tmp_path):
    d = tmp_path / "rid" / "resnet8"
    d.mkdir(parents=True)
    meta = {"config": {}, "status": "running", **rundir.process_info()}
    rundir.atomic_write_json(d / "config.json", meta)
    (d / ".lock").write_text(json.dumps({"pid": 2**22 + 7, "host": socket.gethostname()}))  # its process died
    assert rundir.load_run(d)["status"] == "running" and rundir.effective_status(rundir.load_run(d)) == "interrupted"
    with rundir.lock_run_dir(d):
        assert rundir.effective_status(d) == "running"
    rundir.atomic_write_json(d / "config.json", {**meta, "host": "gpu-box-elsewhere"})
    assert rundir.effective_status(d) == "running"          # another machine's process: taken at its word
    rundir.atomic_write_json(d / "config.json", {**meta, "status": "finished"})
    assert rundir.effective_status(d) == "finished"


def test_invalid_seed_creates_no_run_dir(fake_cifar, tmp_path, capsys):
    argv = ["train", "--preset", "smoke", "--dataset", "synthetic", "--data-root", str(fake_cifar),
            "--device", "cpu", "--out-dir", str(tmp_path / "exp"), "--seed", str(10**20)]
    assert main(argv) == 2
    assert "seed must be below 2**63" in capsys.readouterr().err
    assert not (tmp_path / "exp").exists()


def test_packed_run_bookkeeping(fake_cifar, tmp_path, monkeypatch):
    """The packed path shares the claim: debris removed, no lock left, pid recorded."""
    cfgs = T.resolve_run_ids([tiny(fake_cifar, tmp_path, model=m, epochs=1) for m in ("plain8", "resnet8")])
    for c in cfgs:
        d = rundir.run_dir_of(c.out_dir, c.run_id, c.run_name)
        d.mkdir(parents=True)
        (d / ".best.pth.zz.tmp").write_bytes(b"debris")
    for d in train_many(cfgs, pack=True):
        assert sorted(p.name for p in d.iterdir()) == ["best.pth", "config.json", "last.pth", "metrics.json"]
        assert rundir.read_json(d / "config.json")["pid"] == os.getpid()
