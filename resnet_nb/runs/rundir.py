"""Run directories: atomic writers and the readers analysis, report and notebooks use.

A run directory ``<out_dir>/<run_id>/<run_name>/`` holds (docs/run-directory.md):

* ``config.json``: ``{"format_version", "config": asdict(cfg), "preset", "environment",
  "dataset", "status", "start_time", "end_time", "params", "runtime", ...}``; status is
  running | finished | failed | interrupted | paused (``STATUSES``; ``paused``: stopped by
  the time budget at an epoch boundary). ``runtime`` (version 2) says what really ran,
  written when the run stops (finish, pause, failure, interrupt) and summed over the
  processes that trained it: ``graph_requested``, ``captures``, ``graph_steps``,
  ``eager_steps``, ``fallbacks`` (why CUDA-graph capture failed; empty when it never did),
  and evaluation's (``evaluation.EvalForward``) ``eval_graph_requested``, ``eval_captures``,
  ``eval_graph_batches``, ``eval_eager_batches``, ``eval_fallbacks`` (absent: not recorded).
  ``format_version`` is ``FORMAT_VERSION`` (run dirs written before it existed have none
  and read as version 0; every version reads, ``runtime`` is None before version 2).
  Version 3: last.pth's ``rng["augment"]`` names the data generator's random stream
  (``augment.AUGMENT_SCHEME``, ``"epoch"``: ``data.augment.augment_epoch``); earlier run dirs drew a
  crop/flip per batch and still read, but do not resume (``run_writer.inspect_run``);
* ``metrics.json``: a list, one record per finished epoch (``epoch`` is 1-based);
* ``best.pth`` and ``last.pth``: ``torch.save`` dicts with ``"config": asdict(cfg)``;
* ``.lock`` while a process trains into it (``lock_run_dir``), holding its pid and host.

Every file is written to a temporary name in the same folder and moved into place with
``os.replace``, so a reader (or a run killed mid-write) sees the old or the new file,
never a half-written one. A full disk raises ``NoSpaceError`` (one line, the old file kept).
``resnet_nb.training.run_writer`` writes run dirs; this module reads them.

config.json's status says ``running`` from the start of a run until it ends; a process
killed with SIGKILL (or a machine that lost power) cannot change it, so readers show
``effective_status(run)``, which checks the run dir's lock.
"""
from __future__ import annotations

import errno
import json
import os
import re
import socket
import tempfile
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "check_run_id", "PAPERMILL_ENV", "format_size", "tree_bytes","atomic_write_json", "atomic_save", "read_json", "load_run", "list_runs",
           "list_run_ids", "run_dir_of", "NoSpaceError", "is_no_space", "RunLock", "lock_run_dir", "is_locked",
           "lock_holder", "process_info", "effective_status", "stored_status", "remove_stale_tmp_files",
           "dir_state", "CONFIG_FILE", "METRICS_FILE", "BEST_FILE", "LAST_FILE", "LOCK_FILE",
           "RUN_FILES", "FORMAT_VERSION", "STATUSES", "UNFINISHED"]

CONFIG_FILE, METRICS_FILE = "config.json", "metrics.json"
BEST_FILE, LAST_FILE = "best.pth", "last.pth"
LOCK_FILE = ".lock"
# of config.json; 0: the run dirs written before it had the field; 2: status paused, runtime;
# 3: the augmentation stream of data.augment.augment_epoch (recorded in last.pth)
FORMAT_VERSION = 3
STATUSES = ("running", "finished", "failed", "interrupted", "paused")
UNFINISHED = ("running", "interrupted", "paused")  # a rerun of the same command resumes these
RUN_FILES = (CONFIG_FILE, METRICS_FILE, BEST_FILE, LAST_FILE)
_NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # run ids and run names: one plain folder name
# set for the kernel papermill starts: {"notebook": source, "outputs": [executed copies]}; the
# training records it in config.json (training.run_writer.how_trained: executed_by "papermill")
PAPERMILL_ENV = "RESNET_NB_PAPERMILL"

class NoSpaceError(OSError):
    """A write failed because its file system is full (errno ENOSPC or a quota); one line."""

    def __init__(self, message: str, filename: str | None = None) -> None:
        super().__init__(errno.ENOSPC, message)
        self.message, self.filename = message, filename

    def __str__(self) -> str:
        return self.message


def is_no_space(err: BaseException) -> bool:
    """ENOSPC anywhere in the exception chain, or torch's zip writer reporting a failed write
    (``[enforce fail at inline_container.cc:...] ... file write failed``: torch.save turns the
    OSError of the file object into a RuntimeError without the errno)."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in _NO_SPACE:
            return True
        if isinstance(err, RuntimeError) and ("No space left" in str(err) or "Disk quota" in str(err)):
            return True
        err = err.__cause__ or err.__context__
    return False


def _atomic(path: str | os.PathLike, write) -> Path:
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        if e.errno in _NO_SPACE:
            raise NoSpaceError(f"no space left on {path.parent}", str(path)) from e
        raise
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        full = isinstance(e, Exception) and (is_no_space(e) or _zip_write_failed_on_full_disk(e, path.parent))
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if full:
            raise NoSpaceError(f"no space left on {path.parent}", str(path)) from e
        raise
    return path


def _zip_write_failed_on_full_disk(err: BaseException, folder: Path) -> bool:
    """torch's zip writer can fail with ``[enforce fail at inline_container.cc:...]`` and no
    errno: call that a full disk when the file system has (almost) no space left (checked
    before the partial file is removed)."""
    if not (isinstance(err, RuntimeError) and ("inline_container" in str(err) or "write failed" in str(err))):
        return False
    try:
        import shutil
        return shutil.disk_usage(folder).free < 1 << 20
    except OSError:
        return False


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically (tmp file + ``os.replace``)."""
    text = json.dumps(obj, indent=2, allow_nan=True) + "\n"
    return _atomic(path, lambda f: f.write(text.encode()))


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj, path)`` atomically."""
    return _atomic(path, lambda f: torch.save(obj, f))


def read_json(path: str | os.PathLike) -> Any:
    """Read JSON; a corrupt file raises ValueError naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e}); restore it from a copy, or rerun the "
                         f"command that writes it (resnet-nb train rebuilds a run's {CONFIG_FILE} "
                         f"from its {LAST_FILE})") from None


def check_run_id(value: str, what: str = "run_id") -> str:
    """``value`` if it is one plain folder name (letters, digits, . _ -, starting with a letter
    or digit: no path separator, no ``..``, not absolute), else a ValueError. The one rule for
    run ids and run names, in training, analysis and the report."""
    if not (isinstance(value, str) and _NAME_RE.fullmatch(value)):
        raise ValueError(f"{what} must be a plain folder name (letters, digits, . _ -), or empty; got {value!r}")
    return value



def format_size(n: float) -> str:
    """Bytes for people: 512 B, 3.4 KiB, 1.2 MiB, 2.0 GiB."""
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def tree_bytes(path: str | os.PathLike) -> int:
    """Bytes of a file or of every file below a folder (links counted as links)."""
    path = Path(path)
    if path.is_symlink() or path.is_file():
        return path.lstat().st_size
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += (Path(root) / name).lstat().st_size
            except OSError:
                pass
    return total


def run_dir_of(out_dir: str | os.PathLike, run_id: str, run_name: str) -> Path:
    """``<out_dir>/<run_id>/<run_name>``."""
    return Path(out_dir).expanduser() / run_id / run_name


def load_run(run_dir: str | os.PathLike) -> dict:
    """Everything a run directory says, as plain data.

    Returns config.json's keys (``format_version``, 0 for a run dir older than the field,
    ``config``, ``preset``, ``environment``, ``dataset``, ``status``, ``start_time``,
    ``end_time``, ``params``, ``runtime`` (None for a run dir older than version 2, or one
    whose process has not stopped yet), ...) plus ``metrics`` (the list from metrics.json,
    ``[]`` before the first epoch ends) and ``path`` (str). A run dir of a newer format than
    this code knows is refused (one line).
    """
    run_dir = Path(run_dir)
    cfg_path = run_dir / CONFIG_FILE
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no {CONFIG_FILE}); "
                                f"train into it first (resnet-nb train)")
    meta = read_json(cfg_path)
    version = meta.get("format_version", 0) if isinstance(meta, dict) else 0
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(f"{cfg_path} has format_version {version!r}; this resnet-nb reads versions up "
                         f"to {FORMAT_VERSION}: update resnet-nb to read it")
    metrics_path = run_dir / METRICS_FILE
    metrics = read_json(metrics_path) if metrics_path.is_file() else []
    return {**meta, "format_version": version, "status": meta.get("status"), "runtime": meta.get("runtime"),
            "metrics": metrics, "path": str(run_dir)}


def list_run_ids(out_dir: str | os.PathLike) -> list[str]:
    """Run ids under ``out_dir`` (folders holding at least one run directory), sorted."""
    out = Path(out_dir).expanduser()
    if not out.is_dir():
        return []
    return sorted(p.name for p in out.iterdir()
                  if p.is_dir() and any((q / CONFIG_FILE).is_file() for q in p.iterdir() if q.is_dir()))


def list_runs(out_dir: str | os.PathLike, run_id: str) -> list[dict]:
    """``load_run`` of every run directory of ``run_id``, sorted by run name."""
    base = Path(out_dir).expanduser() / run_id
    if not base.is_dir():
        known = list_run_ids(out_dir)
        hint = f"known run ids: {', '.join(known)}" if known else "it holds no runs yet"
        raise FileNotFoundError(f"no run id {run_id!r} under {Path(out_dir)} ({hint})")
    return [load_run(p) for p in sorted(base.iterdir()) if (p / CONFIG_FILE).is_file()]


# --------------------------------------------------------------------------- the run dir's lock

def process_info() -> dict:
    """``{"pid", "host"}`` of this process: written into ``.lock`` and config.json."""
    return {"pid": os.getpid(), "host": socket.gethostname()}


def dir_state(run_dir: str | os.PathLike) -> tuple:
    """What the run files look like now (inode, size, mtime of each of ``RUN_FILES``, or None):
    equal states mean that no process wrote to the run dir in between (every write
    replaces the file, so it changes the inode)."""
    out = []
    for name in RUN_FILES:
        try:
            st = os.stat(Path(run_dir) / name)
            out.append((st.st_ino, st.st_size, st.st_mtime_ns))
        except OSError:
            out.append(None)
    return tuple(out)


def remove_stale_tmp_files(run_dir: str | os.PathLike) -> list[str]:
    """Delete the ``.<run file>.*.tmp`` files that ``_atomic`` leaves when its process is
    killed mid-write. Call it only while holding the run dir's lock (no writer is active)."""
    removed = []
    for name in RUN_FILES:
        for p in Path(run_dir).glob(f".{name}.*.tmp"):
            try:
                p.unlink()
                removed.append(p.name)
            except FileNotFoundError:
                pass
    return removed


class RunLock:
    """An exclusive ``flock`` on ``<run_dir>/.lock``, held by this process (``lock_run_dir``).

    The OS releases the flock when the process dies, even on SIGKILL. ``release()`` removes
    the lock file (and the run dir itself when nothing was written into it) so that a
    finished run dir holds only the run's files. Removing a lock file is safe only in this
    order: unlink the file *while still holding the flock*, then close it. A process that
    opened the old file before the unlink cannot hold its flock before we close it, and
    ``lock_run_dir`` only counts a flock as the lock when the locked file is still the one
    at ``.lock`` (same inode) after flock returns, and otherwise retries on the new path.
    So at no moment do two processes both believe they hold the lock.
    """

    def __init__(self, run_dir: Path, file) -> None:
        self.run_dir, self._file = run_dir, file

    def release(self) -> None:
        f, self._file = self._file, None
        if f is None:
            return
        try:
            path = self.run_dir / LOCK_FILE
            if _same_file(f, path):
                path.unlink()                      # still under our flock: see the class docstring
            try:
                self.run_dir.rmdir()               # only succeeds when nothing was written into it
            except OSError:
                pass
        except OSError:
            pass
        finally:
            f.close()                              # releases the flock

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _same_file(f, path: Path) -> bool:
    try:
        a, b = os.fstat(f.fileno()), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _describe_holder(holder: dict | None) -> str:
    if not holder:
        return "pid ?"
    host = holder.get("host")
    return f"pid {holder.get('pid', '?')}" + (f" on {host}" if host else "")


def _parse_holder(text: str) -> dict | None:
    text = text.strip()
    if not text:
        return None
    try:
        d = json.loads(text)
        return d if isinstance(d, dict) else {"pid": d}
    except ValueError:
        return {"pid": text}  # an older plain "<pid>" lock file


def lock_run_dir(run_dir: str | os.PathLike) -> RunLock | None:
    """Create ``run_dir`` and take its lock; None where the OS has no advisory locks.

    Raises a one-line ValueError when another process holds it (naming its pid and host)
    or when the folder cannot be created.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - no advisory locks (Windows): run unguarded
        return None
    run_dir = Path(run_dir)
    for _ in range(50):
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            if e.errno in _NO_SPACE:
                raise NoSpaceError(f"no space left on {run_dir.parent}", str(run_dir)) from e
            raise ValueError(f"cannot create the run directory {run_dir}: {e.strerror}; "
                             f"choose a writable --out-dir") from None
        path = run_dir / LOCK_FILE
        try:
            f = open(path, "a+")
        except FileNotFoundError:  # a releasing holder removed the empty dir: again
            continue
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            who = _describe_holder(_parse_holder(f.read()))
            f.close()
            raise ValueError(f"{run_dir} is being trained by another process ({who}); "
                             f"wait for it, or stop it and rerun") from None
        if not _same_file(f, path):  # the previous holder removed it after we opened it: again
            f.close()
            continue
        try:
            f.seek(0)
            f.truncate()
            f.write(json.dumps(process_info()))
            f.flush()
        except OSError as e:
            lock = RunLock(run_dir, f)
            lock.release()
            if e.errno in _NO_SPACE:
                raise NoSpaceError(f"no space left on {run_dir}", str(path)) from e
            raise
        return RunLock(run_dir, f)
    raise RuntimeError(f"could not lock {run_dir}: its lock file kept changing")  # pragma: no cover


def _lock_state(run_dir: Path) -> bool | None:
    """True: a process holds the run dir's lock; False: none does; None: cannot tell here."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover
        return None
    try:
        f = open(run_dir / LOCK_FILE)
    except FileNotFoundError:
        return False
    except OSError:
        return None
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:
            return None
        fcntl.flock(f, fcntl.LOCK_UN)
    return False


def is_locked(run_dir: str | os.PathLike) -> bool:
    """Whether a process (on this machine) is training into ``run_dir`` right now."""
    return bool(_lock_state(Path(run_dir)))


def lock_holder(run_dir: str | os.PathLike) -> dict | None:
    """``{"pid", "host"}`` written by the process that locked ``run_dir`` last, if any."""
    try:
        return _parse_holder((Path(run_dir) / LOCK_FILE).read_text())
    except (OSError, UnicodeDecodeError):
        return None


def _pid_alive(pid) -> bool | None:
    try:
        os.kill(int(pid), 0)
    except (TypeError, ValueError):
        return None
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    except OSError:
        return None
    return True


def stored_status(run_dir: str | os.PathLike) -> str | None:
    """The status config.json records for ``run_dir`` (running, finished, paused, failed,
    interrupted), or None when there is no readable config.json: a quick look without loading
    the run; :func:`effective_status` also tells a killed ``running`` run."""
    try:
        meta = read_json(Path(run_dir) / CONFIG_FILE)
    except (OSError, ValueError):
        return None
    return meta.get("status") if isinstance(meta, dict) else None


def effective_status(run: dict | str | os.PathLike) -> str | None:
    """The status to show for a run (a ``load_run`` dict or a run dir).

    config.json's status, except that ``running`` becomes ``interrupted`` when no process
    is training into the run dir any more: its lock is free (or gone), or, where locks
    cannot be checked, its pid is not alive. A run recorded on another host is taken at
    its word (its processes cannot be seen from here). ``paused`` (stopped by the time
    budget, resumable) and the other statuses are shown as recorded.
    """
    if not isinstance(run, dict):
        run = load_run(run)
    status = run.get("status")
    if status != "running":
        return status
    run_dir = Path(run["path"])
    holder = {**(lock_holder(run_dir) or {}), **{k: run[k] for k in ("pid", "host") if run.get(k)}}
    if holder.get("host") and holder["host"] != socket.gethostname():
        return status
    held = _lock_state(run_dir)
    if held is None:
        held = _pid_alive(holder.get("pid"))
    return "interrupted" if held is False else status
