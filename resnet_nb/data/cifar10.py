"""CIFAR-10: find, download, verify, load; batched augmentation; normalisation; batches.

Data flow: archive -> ``cifar-10-batches-py`` pickles -> uint8 tensors (N, 3, 32, 32) and
int64 labels, held on the training device. Augmentation (random 32x32 crop of the
4-pixel zero-padded image + horizontal flip, He et al. sec. 4.2) runs batched on that
device as pure tensor functions, one whole epoch at a time in training (``augment_epoch``:
the epoch's permutation and every image's crop and flip, drawn at once), then ``normalize``
turns uint8 into float.

Provenance is explicit: every load returns whether the six batch files match the
published md5 sums (``canonical``), differ (``noncanonical``, only with the opt-in
``allow_noncanonical``), or come from ``write_fake_cifar10`` (``synthetic``), plus a
sha256 ``fingerprint`` of the pixels and labels that goes into every run's config.

Loading is safe against hostile files; the batch files are pickles, and unpickling can run
code, so:

1. The md5 sums are computed and acted on before any pickle is opened: without
   ``allow_noncanonical`` a folder whose sums differ is refused unread.
2. A synthetic fixture is recognised by a JSON sidecar (``RESNET_NB_SYNTHETIC.json``, written
   by ``write_fake_cifar10``) that records the md5 of each batch file; it counts only when
   those sums match the files. Nothing inside a pickle decides provenance.
3. Every batch, canonical or not, goes through ``_BatchUnpickler``, whose ``find_class``
   admits only the globals a numpy array needs (``ALLOWED_PICKLE_GLOBALS``); any other
   global raises a ``DataError`` naming it, before it is imported or called.
4. The loaded pixels must be uint8 (N, 3072) and the labels integers in 0..9; anything else
   is refused rather than converted.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import socket
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from resnet_nb import REPO

__all__ = ["CIFAR10_URL", "CIFAR10_ARCHIVE", "CIFAR10_ARCHIVE_MD5", "BATCH_MD5", "CLASSES", "DataError", "Cifar10", "default_root", "find_batches_dir", "download_cifar10", "verify_cifar10", "load_cifar10", "fingerprint", "file_digest", "write_fake_cifar10", "train_val_split", "synthetic_root", "load_dataset", "SYNTHETIC_SIZE", "SYNTHETIC_SIDECAR", "ALLOWED_PICKLE_GLOBALS", "DOWNLOAD_TIMEOUT_S"]

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
BATCHES_DIR = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
BATCH_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SYNTHETIC_MARK = "resnet-nb synthetic fixture"  # human-readable batch_label text only
SYNTHETIC_SIDECAR = "RESNET_NB_SYNTHETIC.json"  # next to the batches; decides "synthetic"
# The only globals a CIFAR-10 batch pickle needs: numpy arrays (protocol 2, numpy 1 and 2
# module paths) and _codecs.encode, which Python-3-written protocol-2 pickles use for bytes.
ALLOWED_PICKLE_GLOBALS = frozenset({
    "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct",
    "numpy.ndarray", "numpy.dtype", "_codecs.encode",
})
DOWNLOAD_TIMEOUT_S = 60.0  # seconds per blocking network read; env RESNET_NB_DOWNLOAD_TIMEOUT


class DataError(RuntimeError):
    """A user-fixable problem with the dataset; the message says what to do."""


@dataclass(frozen=True)
class Cifar10:
    """CIFAR-10 in memory. Images uint8 (N, 3, 32, 32) RGB; labels int64 (N,)."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    root: str
    provenance: str          # "canonical" | "noncanonical" | "synthetic"
    fingerprint: str         # sha256 hex of train/test pixels and labels
    md5_mismatches: tuple[str, ...] = ()

    @property
    def canonical(self) -> bool:
        return self.provenance == "canonical"

    def info(self) -> dict:
        """Provenance record stored in every run's config.json."""
        return {
            "root": self.root, "provenance": self.provenance, "canonical": self.canonical,
            "fingerprint": self.fingerprint, "md5_mismatches": list(self.md5_mismatches),
            "n_train": int(self.train_y.numel()), "n_test": int(self.test_y.numel()),
        }


# --------------------------------------------------------------------------- locating

def default_root() -> Path:
    """``$RESNET_NB_DATA`` if set, else ``data/cifar10`` of this checkout."""
    env = os.environ.get("RESNET_NB_DATA")
    if env:
        return Path(env).expanduser()
    return REPO / "data" / "cifar10"


def _resolve(root: str | os.PathLike | None) -> Path:
    return Path(root).expanduser() if root is not None else default_root()


SYNTHETIC_HINT = ('To try the code without CIFAR-10, use --dataset synthetic '
                  '(in a notebook: set dataset = "synthetic" in the parameters cell).')


def _missing_message(root: Path, reason: str, download_tried: bool = True) -> str:
    fetch = "" if download_tried else (
        f"  With network access, `resnet-nb data download --data-root {root}` fetches it.\n")
    return (
        f"CIFAR-10 is not available under {root} and could not be downloaded ({reason}).\n"
        f"{fetch}"
        f"  Otherwise download {CIFAR10_URL}\n"
        f"  (md5 {CIFAR10_ARCHIVE_MD5}) on a machine with network access and place it at\n"
        f"  {root / CIFAR10_ARCHIVE}\n"
        f"  (or its extracted folder at {root / BATCHES_DIR}); then rerun. Another location can be\n"
        f"  given with --data-root / data_root or the environment variable RESNET_NB_DATA.\n"
        f"  {SYNTHETIC_HINT}")


def find_batches_dir(root: str | os.PathLike | None = None, download: bool = True) -> Path:
    """Return the ``cifar-10-batches-py`` folder under ``root``.

    Looks for the extracted folder, then for the official archive (extracted after its
    md5 is checked), then downloads the archive when ``download`` is true.
    """
    root = _resolve(root)
    for cand in (root / BATCHES_DIR, root):
        if (cand / TEST_FILE).is_file() and (cand / TRAIN_FILES[0]).is_file():
            return cand
    archive = root / CIFAR10_ARCHIVE
    if not archive.is_file():
        if not download:
            raise DataError(_missing_message(root, "downloading was not requested",
                                             download_tried=False))
        download_cifar10(root)
    _extract(archive, root)
    return root / BATCHES_DIR


def file_digest(path: str | os.PathLike, algorithm: str = "md5") -> str:
    """Hex digest of a file, read in 1 MiB blocks (md5: the published CIFAR-10 sums)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _extract(archive: Path, root: Path) -> None:
    digest = file_digest(archive)
    if digest != CIFAR10_ARCHIVE_MD5:
        raise DataError(
            f"{archive} has md5 {digest}, expected {CIFAR10_ARCHIVE_MD5}: the archive is incomplete "
            f"or not the official CIFAR-10 python archive. Delete it and download it again from {CIFAR10_URL}.")
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(BATCHES_DIR)]
            tar.extractall(root, members=members, filter="data") if hasattr(tarfile, "data_filter") \
                else tar.extractall(root, members=members)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataError(f"could not extract {archive}: {e}. Delete it and download it again.") from None


def _download_timeout() -> float:
    raw = os.environ.get("RESNET_NB_DOWNLOAD_TIMEOUT")
    if raw is None:
        return DOWNLOAD_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise DataError(f"RESNET_NB_DOWNLOAD_TIMEOUT must be a positive number of seconds; got {raw!r}. "
                        f"Unset it for the default of {DOWNLOAD_TIMEOUT_S:g} s.")
    return value


def _is_timeout(e: BaseException) -> bool:
    """socket timeouts arrive bare (reading) or wrapped in URLError.reason (connecting)."""
    return isinstance(e, TimeoutError) or isinstance(getattr(e, "reason", None), TimeoutError)


def download_cifar10(root: str | os.PathLike | None = None, url: str | None = None) -> Path:
    """Download the official archive into ``root`` (md5-checked by torchvision's utility).

    ``url`` defaults to ``$RESNET_NB_CIFAR_URL`` or the official address. Every blocking
    network operation times out after ``$RESNET_NB_DOWNLOAD_TIMEOUT`` seconds (default
    ``DOWNLOAD_TIMEOUT_S``). Network failures and timeouts become a ``DataError`` that says
    where to place the file by hand.
    """
    from torchvision.datasets.utils import download_url  # lazy: heavy import

    root = _resolve(root)
    url = url or os.environ.get("RESNET_NB_CIFAR_URL", CIFAR10_URL)
    timeout = _download_timeout()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create the data folder {root}: {e}. Choose a writable --data-root.") from None
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)  # torchvision's urlopen calls take no timeout argument
    try:
        download_url(url, str(root), filename=CIFAR10_ARCHIVE, md5=CIFAR10_ARCHIVE_MD5)
    except Exception as e:  # urllib/http errors, timeouts, md5 failures: all user-fixable
        partial = root / CIFAR10_ARCHIVE
        if partial.exists() and file_digest(partial) != CIFAR10_ARCHIVE_MD5:
            partial.unlink()
        reason = (f"no answer from {url} within {timeout:g} s; a slow link can raise "
                  f"RESNET_NB_DOWNLOAD_TIMEOUT (seconds)") if _is_timeout(e) else f"{type(e).__name__}: {e}"
        raise DataError(_missing_message(root, reason)) from None
    finally:
        socket.setdefaulttimeout(previous)
    return root / CIFAR10_ARCHIVE


# --------------------------------------------------------------------------- loading

class _BatchUnpickler(pickle.Unpickler):
    """Unpickler that resolves only ``ALLOWED_PICKLE_GLOBALS``; any other global (``os.system``,
    ``builtins.eval``, ...) raises a DataError before it is imported, so it cannot run."""

    def __init__(self, f, path: Path):
        super().__init__(f, encoding="bytes")   # the original batches are Python 2 pickles
        self.path = path

    def find_class(self, module: str, name: str):
        qualified = f"{module}.{name}"
        if qualified not in ALLOWED_PICKLE_GLOBALS:
            raise DataError(
                f"{self.path} asks to load the Python global {qualified}, which a CIFAR-10 batch "
                f"never needs: the file is not a CIFAR-10 batch and was not loaded. Delete "
                f"{self.path.parent} and extract or download the official archive ({CIFAR10_URL}) again.")
        if name == "_reconstruct":  # both module paths name the same numpy function
            try:
                from numpy._core.multiarray import _reconstruct
            except ImportError:  # numpy < 2
                from numpy.core.multiarray import _reconstruct
            return _reconstruct
        return super().find_class(module, name)


def _not_a_batch(path: Path, what: str) -> DataError:
    return DataError(f"{path} is not a CIFAR-10 batch ({what}). "
                     f"Delete {path.parent} and extract or download the archive again.")


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 (N, 3, 32, 32) and labels int64 (N,) of one batch file, read with the
    restricted unpickler and checked, never converted: a wrong dtype is refused."""
    try:
        with open(path, "rb") as f:
            d = _BatchUnpickler(f, path).load()
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path} is missing: the CIFAR-10 folder is incomplete. "
                        f"Delete {path.parent} and extract or download the archive again.") from None
    except Exception as e:
        raise DataError(f"{path} is truncated or corrupt ({type(e).__name__}: {e}). "
                        f"Delete {path.parent} and extract or download the archive again.") from None
    if not isinstance(d, dict) or b"data" not in d or b"labels" not in d:
        raise _not_a_batch(path, "expected a dict with keys b'data' and b'labels'")
    data = d[b"data"]
    try:
        labels = np.asarray(d[b"labels"])
    except (ValueError, TypeError) as e:
        raise _not_a_batch(path, f"labels do not form an array: {e}") from None
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
        dtype = data.dtype if isinstance(data, np.ndarray) else type(data).__name__
        raise _not_a_batch(path, f"pixels are {dtype}, expected uint8 values 0..255; "
                                 f"they are refused rather than wrapped to uint8")
    if labels.size and labels.dtype.kind not in "iu":
        raise _not_a_batch(path, f"labels are {labels.dtype}, expected integers 0..9")
    labels = labels.astype(np.int64)
    if data.ndim != 2 or data.shape[1] != 3072 or data.shape[0] != labels.shape[0]:
        raise _not_a_batch(path, f"data {data.shape} / labels {labels.shape} do not form N x 3072 images")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise _not_a_batch(path, f"labels span {labels.min()}..{labels.max()}, expected 0..9")
    return data.reshape(-1, 3, 32, 32), labels


def _batch_md5s(batches_dir: Path) -> dict[str, str]:
    """md5 of each of the six batch files (read as bytes, never unpickled)."""
    sums = {}
    for name in BATCH_MD5:
        p = batches_dir / name
        if not p.is_file():
            raise DataError(f"{p} is missing: the CIFAR-10 folder is incomplete. "
                            f"Delete {batches_dir} and extract or download the archive again.")
        sums[name] = file_digest(p)
    return sums


def verify_cifar10(batches_dir: str | os.PathLike) -> list[str]:
    """Names of the six batch files whose md5 differs from the published sums."""
    sums = _batch_md5s(Path(batches_dir))
    return [name for name, want in BATCH_MD5.items() if sums[name] != want]


def _is_synthetic_folder(batches_dir: Path) -> bool:
    """``_is_synthetic`` for a folder that may be incomplete (then False)."""
    if not all((batches_dir / n).is_file() for n in BATCH_MD5):
        return False
    return _is_synthetic(batches_dir, _batch_md5s(batches_dir))


def _is_synthetic(batches_dir: Path, sums: dict[str, str]) -> bool:
    """True when ``write_fake_cifar10``'s sidecar is present and its recorded md5 sums match
    the files: an edited fixture, or a sidecar copied next to other files, does not count."""
    try:
        record = json.loads((batches_dir / SYNTHETIC_SIDECAR).read_text())
        return isinstance(record, dict) and record.get("md5") == sums
    except (OSError, ValueError):
        return False


def fingerprint(train_x, train_y, test_x, test_y) -> str:
    """sha256 over the uint8 images and int64 labels (train, then test)."""
    h = hashlib.sha256()
    for t in (train_x, train_y, test_x, test_y):
        h.update(np.ascontiguousarray(t.cpu().numpy() if torch.is_tensor(t) else t).tobytes())
    return h.hexdigest()


def load_cifar10(root: str | os.PathLike | None = None, allow_noncanonical: bool = False,
                 download: bool = True) -> Cifar10:
    """Find (or download), verify and load CIFAR-10 as uint8 tensors.

    A folder whose md5 sums differ from the published ones is refused, before any file is
    unpickled, unless ``allow_noncanonical``; then it loads marked ``noncanonical`` (or
    ``synthetic`` for a ``write_fake_cifar10`` fixture whose sidecar matches its files).
    Every batch is read with the restricted unpickler (see the module docstring).
    """
    d = find_batches_dir(root, download=download)
    sums = _batch_md5s(d)
    bad = [name for name, want in BATCH_MD5.items() if sums[name] != want]
    synthetic = bool(bad) and _is_synthetic(d, sums)
    if bad and not allow_noncanonical:
        what = "a synthetic resnet-nb fixture" if synthetic else "not the canonical CIFAR-10"
        raise DataError(
            f"md5 mismatch in {d} for {', '.join(bad)}: this copy is {what}. Replace it with the "
            f"official archive ({CIFAR10_URL}), or pass --allow-noncanonical (allow_noncanonical=True) "
            f"to use it anyway; every result is then labelled non-canonical. {SYNTHETIC_HINT}")
    parts = [_read_batch(d / n) for n in TRAIN_FILES]
    test_x, test_y = _read_batch(d / TEST_FILE)
    train_x = np.concatenate([p[0] for p in parts])
    train_y = np.concatenate([p[1] for p in parts])
    provenance = "canonical" if not bad else ("synthetic" if synthetic else "noncanonical")
    tensors = [torch.from_numpy(a) for a in (train_x, train_y, test_x, test_y)]
    return Cifar10(*tensors, root=str(d), provenance=provenance,
                   fingerprint=fingerprint(*tensors), md5_mismatches=tuple(bad))


class _Py2Str(str):
    """A str pickled as a Python 2 byte string (SHORT_BINSTRING/BINSTRING), as in the
    original CIFAR-10 files: it loads as bytes with encoding='bytes', str with 'latin1'."""


class _Py2Pickler(pickle._Pickler):
    dispatch = pickle._Pickler.dispatch.copy()

    def _save_py2str(self, obj):
        b = obj.encode("latin1")
        if len(b) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(b)]) + b)
        else:
            self.write(pickle.BINSTRING + len(b).to_bytes(4, "little") + b)
        self.memoize(obj)

    dispatch[_Py2Str] = _save_py2str


def _dump_py2(obj: dict, path: Path) -> None:
    """Pickle like the original (Python 2, protocol 2) batch files."""
    with open(path, "wb") as f:
        _Py2Pickler(f, protocol=2).dump(obj)


def write_fake_cifar10(root: str | os.PathLike, n_train: int = 500, n_test: int = 100,
                       seed: int = 0) -> Path:
    """Write a small learnable CIFAR-10 stand-in in the real pickle layout.

    Each class has its own smooth random colour pattern; images are that pattern plus
    noise, so a network can learn it quickly. Files land in ``root/cifar-10-batches-py``
    (5 train batches + test batch + batches.meta), then the sidecar ``SYNTHETIC_SIDECAR``
    records the size, seed and md5 of each batch file: that sidecar, written last, is what
    marks the folder synthetic.
    """
    if n_train < 5 or n_test < 1:
        raise ValueError(f"need n_train >= 5 and n_test >= 1; got {n_train}, {n_test}")
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, size=(10, 3, 4, 4))
    patterns = coarse.repeat(8, axis=2).repeat(8, axis=3)            # (10, 3, 32, 32)

    def make(n):
        y = np.arange(n) % 10
        rng.shuffle(y)
        x = patterns[y] * 0.6 + rng.normal(100, 40, size=(n, 3, 32, 32))
        return np.clip(x, 0, 255).astype(np.uint8).reshape(n, 3072), y

    S = _Py2Str
    d = Path(root) / BATCHES_DIR
    d.mkdir(parents=True, exist_ok=True)
    x, y = make(n_train)
    for k, idx in enumerate(np.array_split(np.arange(n_train), 5)):
        _dump_py2({S("batch_label"): S(f"{SYNTHETIC_MARK}: training batch {k + 1} of 5"),
                   S("labels"): y[idx].tolist(), S("data"): x[idx],
                   S("filenames"): [S(f"synthetic_{i:05d}.png") for i in idx]},
                  d / TRAIN_FILES[k])
    xt, yt = make(n_test)
    _dump_py2({S("batch_label"): S(f"{SYNTHETIC_MARK}: testing batch 1 of 1"),
               S("labels"): yt.tolist(), S("data"): xt,
               S("filenames"): [S(f"synthetic_test_{i:05d}.png") for i in range(n_test)]},
              d / TEST_FILE)
    _dump_py2({S("num_cases_per_batch"): int(np.ceil(n_train / 5)),
               S("label_names"): [S(c) for c in CLASSES], S("num_vis"): 3072}, d / "batches.meta")
    record = {"generator": "resnet_nb.data.cifar10.write_fake_cifar10", "n_train": n_train,
              "n_test": n_test, "seed": seed, "md5": _batch_md5s(d)}
    tmp = d / f".{SYNTHETIC_SIDECAR}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    tmp.replace(d / SYNTHETIC_SIDECAR)
    return d


SYNTHETIC_SIZE = (2000, 500)  # (train, test) images of the default synthetic fixture


def synthetic_root(n_train: int = SYNTHETIC_SIZE[0], n_test: int = SYNTHETIC_SIZE[1],
                   seed: int = 0) -> Path:
    """Where the synthetic fixture of this size lives: ``$RESNET_NB_SYNTHETIC`` or
    ``data/synthetic`` of this checkout, one sub-folder per (size, seed)."""
    base = os.environ.get("RESNET_NB_SYNTHETIC")
    base = Path(base).expanduser() if base else REPO / "data" / "synthetic"
    return base / f"cifar10-n{n_train}-{n_test}-s{seed}"


def load_dataset(dataset: str = "cifar10", root: str | os.PathLike | None = None,
                 allow_noncanonical: bool = False, download: bool = True) -> Cifar10:
    """``"cifar10"``: ``load_cifar10``. ``"synthetic"``: the generated fixture (written on
    first use under ``root`` or ``synthetic_root()``), always labelled synthetic.

    A folder given as ``root`` must hold a fixture whose sidecar matches its files; the
    default ``synthetic_root()`` folder is (re)written when it does not (e.g. a fixture from
    a version without the sidecar)."""
    if dataset == "cifar10":
        return load_cifar10(root, allow_noncanonical=allow_noncanonical, download=download)
    if dataset == "synthetic":
        own_folder = root is None
        root = Path(root) if root is not None else synthetic_root()
        d = root / BATCHES_DIR
        if not (d / TEST_FILE).is_file() or (own_folder and not _is_synthetic_folder(d)):
            write_fake_cifar10(root, *SYNTHETIC_SIZE, seed=0)
        if not _is_synthetic_folder(d):
            raise DataError(
                f"{root} does not hold a resnet-nb synthetic fixture (no {SYNTHETIC_SIDECAR} whose md5 "
                f"sums match the batch files; fixtures written by older versions lack it). Delete "
                f"{d} to have it written again, use dataset='cifar10' for real data, or point "
                f"data_root elsewhere.")
        return load_cifar10(root, allow_noncanonical=True, download=False)
    raise ValueError(f"dataset must be 'cifar10' or 'synthetic'; got {dataset!r}")


# --------------------------------------------------------------------------- augmentation


# --------------------------------------------------------------------------- normalisation


# --------------------------------------------------------------------------- batching

def train_val_split(n: int, val_size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded split of range(n) into (train_idx, val_idx); the paper uses 45k/5k."""
    if not 0 <= val_size < n:
        raise ValueError(f"val_size must be in [0, {n}); got {val_size}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[val_size:].sort().values, perm[:val_size].sort().values
