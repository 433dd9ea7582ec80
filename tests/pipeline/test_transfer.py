"""resnet_nb.pipeline.transfer: run-dir tars exported on one machine and imported on another, and the
commit of a copy without .git (resnet_nb.runs.environment.git_commit)."""
from __future__ import annotations

import io
import json
import subprocess
import tarfile
from dataclasses import asdict
from pathlib import Path

import pytest

from resnet_nb.pipeline import transfer
from resnet_nb.runs import environment
from resnet_nb.training.config import make_config

RID = "rented-gpu"


def _cfg(run, out, **kw):
    return make_config("smoke", model=run, dataset="synthetic", device="cpu", out_dir=str(out), run_id=RID, **kw)


def _run_dir(out: Path, run: str = "plain20", epochs: int = 2, **kw) -> Path:
    """A run dir as training leaves it (checkpoints as opaque bytes), plus what pack must skip."""
    d = out / RID / run
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"config": asdict(_cfg(run, out, **kw)), "status": "paused"}))
    (d / "metrics.json").write_text(json.dumps([{"epoch": e + 1, "test_acc": 0.1 * e} for e in range(epochs)]))
    (d / "last.pth").write_bytes(b"L" * 3000)
    (d / "best.pth").write_bytes(b"B" * 2000)
    (d / "02_train.ipynb").write_text("{}")
    (d / ".lock").write_text('{"pid": 1}')
    (d / ".last.pth.abc.tmp").write_bytes(b"half")
    return d


def _tar(path: Path, members: list[tuple[str, bytes | None, bytes]]) -> Path:
    """A tar with (name, type, data) members: type None = regular file, else a TarInfo type."""
    with tarfile.open(path, "w") as t:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            if kind is None:
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
            else:
                info.type, info.linkname = kind, data.decode()
                t.addfile(info)
    return path


def test_pack_one_tar_per_run_dir_with_the_run_files_only(tmp_path):
    _run_dir(tmp_path / "exp", "plain20")
    _run_dir(tmp_path / "exp", "resnet20")
    tars = transfer.pack(tmp_path / "exp", RID, tmp_path / "out")
    assert [t.name for t in tars] == ["rented-gpu__plain20.tar", "rented-gpu__resnet20.tar"]
    with tarfile.open(tars[0]) as t:
        assert sorted(t.getnames()) == [f"{RID}/plain20/{n}" for n in
                                        ("02_train.ipynb", "best.pth", "config.json", "last.pth", "metrics.json")]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [t.name for t in tars]   # no tmp left


def test_pack_refuses_a_tar_over_a_given_limit_and_keeps_the_previous_one(tmp_path):
    d = _run_dir(tmp_path / "exp")
    old = transfer.pack(tmp_path / "exp", RID, tmp_path / "out")[0]
    before = old.read_bytes()
    (d / "last.pth").write_bytes(b"L" * 20000)
    assert len(transfer.pack(tmp_path / "exp", RID, tmp_path / "other")) == 1      # no limit of ours
    with pytest.raises(ValueError, match=r"over the 15.6 KiB asked for.*last.pth"):
        transfer.pack(tmp_path / "exp", RID, tmp_path / "out", max_bytes=16000)
    assert old.read_bytes() == before and len(list((tmp_path / "out").iterdir())) == 1


def test_pack_killed_mid_write_leaves_the_previous_tar_whole(tmp_path, monkeypatch):
    _run_dir(tmp_path / "exp")
    old = transfer.pack(tmp_path / "exp", RID, tmp_path / "out")[0]
    before = old.read_bytes()
    real_add = tarfile.TarFile.add
    calls = []

    def add_then_die(self, *a, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt   # as a kill between two members
        return real_add(self, *a, **kw)
    monkeypatch.setattr(tarfile.TarFile, "add", add_then_die)
    with pytest.raises(KeyboardInterrupt):
        transfer.pack(tmp_path / "exp", RID, tmp_path / "out")
    assert old.read_bytes() == before and [p.name for p in (tmp_path / "out").iterdir()] == [old.name]


@pytest.mark.parametrize("damaged", [b"[{\"epoch\": 1}, {\"ep", b'{"epoch": 7}'])
def test_pack_refuses_a_damaged_metrics_json_before_writing_anything(tmp_path, damaged):
    """import's own check (a tar of it would be refused on the other machine): nothing is written,
    not even the --to folder; a tar packed before stays as it was."""
    _run_dir(tmp_path / "exp", "plain20")
    bad = _run_dir(tmp_path / "exp", "resnet20")
    (bad / "metrics.json").write_bytes(damaged)
    for to in (tmp_path / "fresh", tmp_path / "old"):
        if to.name == "old":
            (bad / "metrics.json").write_text("[]")
            before = {t.name: t.read_bytes() for t in transfer.pack(tmp_path / "exp", RID, to)}
            (bad / "metrics.json").write_bytes(damaged)
        with pytest.raises(ValueError, match=rf"{bad / 'metrics.json'} (is not readable JSON|holds a JSON dict)"
                                             r".*transfer import would refuse its tar, so nothing was exported"):
            transfer.pack(tmp_path / "exp", RID, to)
    assert not (tmp_path / "fresh").exists()
    assert {t.name: t.read_bytes() for t in (tmp_path / "old").iterdir()} == before
    assert transfer.main(["export", "--run-id", RID, "--out-dir", str(tmp_path / "exp"), "--to",
                       str(tmp_path / "fresh")]) == 2 and not (tmp_path / "fresh").exists()


def test_restore_round_trip_into_a_fresh_out_dir(tmp_path):
    src = _run_dir(tmp_path / "exp")
    tars = transfer.pack(tmp_path / "exp", RID, tmp_path / "out")
    lines = transfer.restore(tars, RID, tmp_path / "laptop")
    dst = tmp_path / "laptop" / RID / "plain20"
    assert lines == [f"restored {dst} from rented-gpu__plain20.tar: 2 epochs"]
    assert sorted(p.name for p in dst.iterdir()) == ["02_train.ipynb", "best.pth", "config.json", "last.pth",
                                                     "metrics.json"]
    assert (dst / "last.pth").read_bytes() == (src / "last.pth").read_bytes()
    assert [p.name for p in (tmp_path / "laptop" / RID).iterdir()] == ["plain20"]   # no temp folder left


def test_restore_refuses_a_tar_of_another_run_id_naming_both(tmp_path):
    _run_dir(tmp_path / "exp")
    tar = transfer.pack(tmp_path / "exp", RID, tmp_path / "out")[0]
    with pytest.raises(ValueError, match=r"holds run id 'rented-gpu'.*not 'other-run'.*--run-id rented-gpu"):
        transfer.restore([tar], "other-run", tmp_path / "laptop")
    assert not (tmp_path / "laptop" / "other-run").exists()


@pytest.mark.parametrize("members, why", [
    ([(f"{RID}/plain20/config.json", None, b"{}"), (f"{RID}/plain20/last.pth", tarfile.SYMTYPE, b"/etc/passwd")],
     "not a regular file"),
    ([(f"{RID}/plain20/config.json", None, b"{}"), (f"{RID}/plain20/../../evil", None, b"x")],
     "not a file of a run dir"),
    ([(f"{RID}/plain20/config.json", None, b"{}"), (f"/{RID}/plain20/x", None, b"x")], "not a file of a run dir"),
    ([(f"{RID}/plain20/config.json", None, b"{}"), (f"{RID}/plain20/sub/x", None, b"x")], "not a file of a run dir"),
    ([(f"{RID}/plain20/config.json", None, b"{}"), (f"{RID}/plain20/.lock", None, b"x")], "not a file of a run dir"),
    ([(f"{RID}/plain20/metrics.json", None, b"[]")], "no config.json"),
])
def test_restore_refuses_untrusted_members_and_writes_nothing(tmp_path, members, why):
    tar = _tar(tmp_path / "bad.tar", members)
    with pytest.raises(ValueError, match=why):
        transfer.restore([tar], RID, tmp_path / "laptop")
    assert not (tmp_path / "laptop").exists() and not (tmp_path / "evil").exists()


def test_restore_keeps_a_run_dir_further_along_and_replaces_one_behind(tmp_path):
    _run_dir(tmp_path / "a", epochs=5)
    _run_dir(tmp_path / "b", epochs=3)
    ahead = transfer.pack(tmp_path / "a", RID, tmp_path / "ta")
    behind = transfer.pack(tmp_path / "b", RID, tmp_path / "tb")
    dev = tmp_path / "laptop"
    transfer.restore(ahead, RID, dev)                      # 5 epochs imported here
    [line] = transfer.restore(behind, RID, dev)            # an older tar: kept, and said
    assert line.startswith(f"kept {dev / RID / 'plain20'} (5 epochs)") and "(3 epochs)" in line
    assert len(json.loads((dev / RID / "plain20" / "metrics.json").read_text())) == 5
    dev2 = tmp_path / "laptop2"
    transfer.restore(behind, RID, dev2)
    [line] = transfer.restore(ahead, RID, dev2)            # a newer tar replaces the older run dir
    assert line.endswith("5 epochs (it held 3)")
    assert len(json.loads((dev2 / RID / "plain20" / "metrics.json").read_text())) == 5
    assert [p.name for p in (dev2 / RID).iterdir()] == ["plain20"]


@pytest.mark.parametrize("damaged", [b"[{\"epoch\": 1}, {\"ep", b'{"epoch": 7}'])
def test_restore_never_counts_a_damaged_metrics_json_as_0_epochs(tmp_path, damaged):
    """Neither a damaged tar nor a damaged run dir here decides 'further along': refused,
    naming the file, before anything is written; the intact copy is untouched."""
    _run_dir(tmp_path / "a", epochs=5)
    good_tar = transfer.pack(tmp_path / "a", RID, tmp_path / "good")
    # a damaged tar over an intact run dir here (2 epochs): refused whole, nothing written
    here = _run_dir(tmp_path / "laptop", epochs=2)
    (tmp_path / "bad").mkdir()            # pack refuses a damaged metrics.json: a tar from elsewhere
    with tarfile.open(good_tar[0]) as t:
        members = [(m.name, None, damaged if m.name.endswith("/metrics.json") else t.extractfile(m).read())
                   for m in t.getmembers()]
    bad_tar = _tar(tmp_path / "bad" / good_tar[0].name, members)
    with pytest.raises(ValueError, match=r"bad/rented-gpu__plain20.tar: rented-gpu/plain20/metrics.json (is not "
                                         r"readable JSON|holds a JSON dict).*refusing the whole tar"):
        transfer.restore([bad_tar], RID, tmp_path / "laptop")
    assert len(json.loads((here / "metrics.json").read_text())) == 2
    assert sorted(p.name for p in (tmp_path / "laptop" / RID).iterdir()) == ["plain20"]
    # a damaged run dir here and an intact tar of 5 epochs: refused, the run dir here untouched
    (here / "metrics.json").write_bytes(damaged)
    with pytest.raises(ValueError, match=r"plain20/metrics.json .*cannot be told, so nothing was restored"):
        transfer.restore(good_tar, RID, tmp_path / "laptop")
    assert (here / "metrics.json").read_bytes() == damaged and (here / "last.pth").read_bytes() == b"L" * 3000
    # a run dir with no metrics.json yet (no epoch finished): 0 epochs, replaced by the tar
    (here / "metrics.json").unlink()
    [line] = transfer.restore(good_tar, RID, tmp_path / "laptop")
    assert line.endswith("5 epochs (it held 0)")


def test_restore_refuses_to_replace_a_run_dir_of_another_config(tmp_path):
    _run_dir(tmp_path / "a", epochs=5)
    d = _run_dir(tmp_path / "laptop", epochs=1, lr=0.05)  # the same run dir name, another recipe
    tar = transfer.pack(tmp_path / "a", RID, tmp_path / "t")
    with pytest.raises(ValueError, match=r"another config: lr \(here 0.05, in the tar 0.01\)"):
        transfer.restore(tar, RID, tmp_path / "laptop")
    assert len(json.loads((d / "metrics.json").read_text())) == 1


def test_training_refuses_an_imported_run_of_another_config_naming_the_field(tmp_path):
    import torch

    from resnet_nb.training.train import train

    d = _run_dir(tmp_path / "exp", epochs=1)                             # smoke: 3 epochs
    torch.save({"config": asdict(_cfg("plain20", tmp_path / "exp")), "epoch": 1, "device_type": "cpu"},
               d / "last.pth")                                         # what the resume check reads
    transfer.restore(transfer.pack(tmp_path / "exp", RID, tmp_path / "t"), RID, tmp_path / "laptop")
    with pytest.raises(ValueError, match=r"another config: epochs \(stored 3, now 4\)"):
        train(_cfg("plain20", tmp_path / "laptop", epochs=4))


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def test_commit_prints_the_variables_for_a_copy_without_git(tmp_path, capsys, monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "a.py").write_text("x")
    _git(repo, "add", "a.py")
    _git(repo, "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qm", "one")
    monkeypatch.setattr(transfer, "REPO", repo)
    assert transfer.main(["commit"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{environment.COMMIT_ENV}=") and line.endswith(f"{environment.COMMIT_DIRTY_ENV}=0")
    (repo / "a.py").write_text("y")                                 # a change not committed
    assert transfer.commit_env(repo).endswith("=1")
    monkeypatch.setattr(transfer, "REPO", tmp_path / "nogit")
    (tmp_path / "nogit").mkdir()
    assert transfer.main(["commit"]) == 2 and "no commit to record" in capsys.readouterr().err


def test_git_commit_from_the_environment_when_the_copy_has_no_git(tmp_path, monkeypatch):
    monkeypatch.setattr(environment, "REPO", tmp_path)           # a copy without .git
    monkeypatch.delenv(environment.COMMIT_ENV, raising=False)
    assert environment.git_commit() == {"commit": None, "dirty": None, "source": None}
    sha = "0123456789abcdef0123456789abcdef01234567"
    monkeypatch.setenv(environment.COMMIT_ENV, sha.upper())
    monkeypatch.setenv(environment.COMMIT_DIRTY_ENV, "0")
    assert environment.git_commit() == {"commit": sha, "dirty": False, "source": "RESNET_NB_COMMIT"}
    monkeypatch.setenv(environment.COMMIT_DIRTY_ENV, "")
    assert environment.git_commit()["dirty"] is None
    monkeypatch.setenv(environment.COMMIT_ENV, "<hash>")        # the placeholder, never a commit
    assert environment.git_commit()["commit"] is None


def test_git_commit_prefers_git_in_a_checkout(monkeypatch):
    if not (environment.REPO / ".git").exists():
        pytest.skip("not a git checkout")
    monkeypatch.setenv(environment.COMMIT_ENV, "0" * 40)
    g = environment.git_commit()
    assert g["source"] == "git" and g["commit"] != "0" * 40 and len(g["commit"]) == 40
