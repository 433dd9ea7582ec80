"""A data file must never run code. The md5 verdict is acted on before any
pickle is read, every batch goes through the restricted unpickler, and "synthetic" is
decided by the fixture's sidecar, never by the pickle's contents."""
import builtins
import hashlib
import json
import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest

from resnet_nb.data import cifar10
from resnet_nb.data.cifar10 import DataError


class _OsSystem:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _Exec:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return builtins.exec, (f"open({str(self.marker)!r}, 'w').close()",)


# the global as a protocol-2 pickle names it (Python 2 spelling of builtins)
PAYLOADS = {"os.system": (_OsSystem, f"{os.name}.system"), "builtins.exec": (_Exec, "__builtin__.exec")}


def _hostile_folder(tmp_path: Path, payload: str) -> tuple[Path, Path, str]:
    """A fixture folder whose test_batch runs ``payload`` when unpickled; returns
    (root, marker file the payload would create, the global the pickle names)."""
    root, marker = tmp_path / "hostile", tmp_path / "pwned"
    d = cifar10.write_fake_cifar10(root, 50, 10)
    cls, global_name = PAYLOADS[payload]
    with open(d / "test_batch", "wb") as f:
        pickle.dump({b"batch_label": b"testing batch 1 of 1", b"labels": [0],
                     b"data": cls(marker)}, f, protocol=2)
    return root, marker, global_name


def _canonicalise(monkeypatch, batches_dir: Path) -> None:
    """Pretend this folder's md5 sums are the published ones."""
    sums = {n: hashlib.md5((batches_dir / n).read_bytes()).hexdigest() for n in cifar10.BATCH_MD5}
    monkeypatch.setattr(cifar10, "BATCH_MD5", sums)


def test_allowed_pickle_globals_are_exactly_the_five():
    assert cifar10.ALLOWED_PICKLE_GLOBALS == {
        "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct",
        "numpy.ndarray", "numpy.dtype", "_codecs.encode"}


@pytest.mark.parametrize("payload", sorted(PAYLOADS))
def test_hostile_batch_is_refused_without_the_opt_in_before_any_pickle_is_read(tmp_path, payload, monkeypatch):
    root, marker, _ = _hostile_folder(tmp_path, payload)
    opened = []
    monkeypatch.setattr(cifar10._BatchUnpickler, "load", lambda self: opened.append(self.path))
    with pytest.raises(DataError, match=r"md5 mismatch .*--allow-noncanonical"):
        cifar10.load_cifar10(root)
    assert opened == [] and not marker.exists()


@pytest.mark.parametrize("payload", sorted(PAYLOADS))
@pytest.mark.parametrize("how", ["allow_noncanonical", "md5 matches"])
def test_hostile_batch_names_the_global_and_runs_nothing(tmp_path, monkeypatch, payload, how):
    root, marker, global_name = _hostile_folder(tmp_path, payload)
    if how == "md5 matches":   # even a copy that passes the md5 check is unpickled safely
        _canonicalise(monkeypatch, root / cifar10.BATCHES_DIR)
    with pytest.raises(DataError) as e:
        cifar10.load_cifar10(root, allow_noncanonical=how == "allow_noncanonical")
    msg = str(e.value)
    assert global_name in msg and "not a CIFAR-10 batch and was not loaded" in msg
    assert "test_batch" in msg and "Delete" in msg
    assert not marker.exists()


def test_hostile_folder_as_synthetic_dataset_is_refused(tmp_path):
    root, marker, _ = _hostile_folder(tmp_path, "os.system")
    with pytest.raises(DataError, match=f"does not hold a resnet-nb synthetic fixture.*{cifar10.SYNTHETIC_SIDECAR}"):
        cifar10.load_dataset("synthetic", root)
    assert not marker.exists()


@pytest.mark.parametrize("flags", [[], ["--allow-noncanonical"]])
def test_train_cli_refuses_hostile_batch(tmp_path, capsys, flags):
    from resnet_nb.cli import main
    root, marker, _ = _hostile_folder(tmp_path, "os.system")
    out = tmp_path / "runs"
    rc = main(["train", "--preset", "smoke", "--data-root", str(root), "--out-dir", str(out), *flags])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert ("posix.system" in err) if flags else ("md5 mismatch" in err)
    assert not marker.exists()


# ------------------------------------------------------------------ the allowed layouts

def test_fixture_pickles_name_only_allowed_globals(fake_cifar):
    import pickletools
    d = fake_cifar / cifar10.BATCHES_DIR
    for name in cifar10.BATCH_MD5:
        names = {arg.replace(" ", ".") for op, arg, _ in pickletools.genops((d / name).read_bytes())
                 if op.name == "GLOBAL"}
        assert names and names <= cifar10.ALLOWED_PICKLE_GLOBALS, (name, names)


class _Py2BytesPickler(cifar10._Py2Pickler):
    """Writes bytes as Python 2 str (BINSTRING), as the original CIFAR-10 files do."""
    dispatch = cifar10._Py2Pickler.dispatch.copy()
    dispatch[bytes] = lambda self, b: cifar10._Py2Pickler._save_py2str(self, cifar10._Py2Str(b.decode("latin1")))


def test_original_python2_numpy1_layout_loads_without_warnings(tmp_path, monkeypatch):
    """The official batches name numpy.core.multiarray._reconstruct (numpy 1) and hold the
    pixels as a Python 2 str: they load, and numpy 2 gives no deprecation warning."""
    d = cifar10.write_fake_cifar10(tmp_path, 50, 10)
    want = cifar10.load_cifar10(tmp_path, allow_noncanonical=True)
    for name in cifar10.BATCH_MD5:
        with open(d / name, "rb") as f:
            obj = pickle.load(f, encoding="bytes")
        path = d / name
        with open(path, "wb") as f:
            _Py2BytesPickler(f, protocol=2).dump(obj)
        raw = path.read_bytes().replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
        assert b"numpy.core.multiarray\n_reconstruct" in raw and b"_codecs" not in raw
        path.write_bytes(raw)
    _canonicalise(monkeypatch, d)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = cifar10.load_cifar10(tmp_path)
    assert ds.provenance == "canonical" and ds.fingerprint == want.fingerprint


# ------------------------------------------------------------------ the synthetic sidecar

def test_sidecar_records_size_seed_and_md5(tmp_path):
    d = cifar10.write_fake_cifar10(tmp_path, 50, 10, seed=7)
    record = json.loads((d / cifar10.SYNTHETIC_SIDECAR).read_text())
    assert record["n_train"] == 50 and record["n_test"] == 10 and record["seed"] == 7
    assert record["md5"] == {n: hashlib.md5((d / n).read_bytes()).hexdigest() for n in cifar10.BATCH_MD5}
    assert cifar10.load_cifar10(tmp_path, allow_noncanonical=True).provenance == "synthetic"


def test_without_a_matching_sidecar_a_fixture_is_noncanonical(tmp_path):
    d = cifar10.write_fake_cifar10(tmp_path, 50, 10)
    sidecar = d / cifar10.SYNTHETIC_SIDECAR
    # edit one batch: the sidecar's md5 no longer matches, whatever the batch_label says
    with open(d / "data_batch_2", "rb") as f:
        obj = pickle.load(f, encoding="bytes")
    obj[b"data"][0, 0] ^= 1
    with open(d / "data_batch_2", "wb") as f:
        pickle.dump(obj, f, protocol=2)
    assert cifar10.SYNTHETIC_MARK in obj[b"batch_label"].decode()
    with pytest.raises(DataError, match="not the canonical CIFAR-10"):
        cifar10.load_cifar10(tmp_path)
    assert cifar10.load_cifar10(tmp_path, allow_noncanonical=True).provenance == "noncanonical"
    for bad_sidecar in ("{not json", "[1, 2]", ""):
        sidecar.write_text(bad_sidecar)
        assert cifar10.load_cifar10(tmp_path, allow_noncanonical=True).provenance == "noncanonical"
    sidecar.unlink()
    assert cifar10.load_cifar10(tmp_path, allow_noncanonical=True).provenance == "noncanonical"


def test_load_dataset_synthetic_rewrites_its_own_folder_but_not_a_given_one(tmp_path, monkeypatch):
    monkeypatch.setenv("RESNET_NB_SYNTHETIC", str(tmp_path / "own"))
    monkeypatch.setattr(cifar10, "SYNTHETIC_SIZE", (50, 10))   # small and fast
    own = cifar10.synthetic_root() / cifar10.BATCHES_DIR
    cifar10.load_dataset("synthetic")
    (own / cifar10.SYNTHETIC_SIDECAR).unlink()        # as written by a version without sidecars
    assert cifar10.load_dataset("synthetic").provenance == "synthetic"
    assert (own / cifar10.SYNTHETIC_SIDECAR).is_file()
    given = tmp_path / "given"
    cifar10.write_fake_cifar10(given, 50, 10)
    (given / cifar10.BATCHES_DIR / cifar10.SYNTHETIC_SIDECAR).unlink()
    with pytest.raises(DataError, match=r"does not hold a resnet-nb synthetic fixture.*Delete"):
        cifar10.load_dataset("synthetic", given)
    assert not (given / cifar10.BATCHES_DIR / cifar10.SYNTHETIC_SIDECAR).exists()
    np.testing.assert_equal(len(list((given / cifar10.BATCHES_DIR).iterdir())), 7)
