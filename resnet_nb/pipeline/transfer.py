"""``resnet-nb transfer``: move run dirs between machines, one checked tar per run dir.

Train on a rented GPU or a cluster, analyse on a laptop; or resume there a run paused elsewhere
(``--time-budget``): the run dirs travel as tarballs.

* ``export``: ``<out_dir>/<run_id>/<run>/`` -> ``<to>/<run_id>__<run>.tar`` (uncompressed:
  checkpoints do not compress), every regular file of the run dir except hidden ones (the
  ``.lock``, a killed writer's ``.*.tmp``): config.json, metrics.json, last.pth, best.pth,
  the executed notebook. Each tar is written to a temporary name and renamed, so a killed
  command leaves the previous tar or the new one, never half. A damaged metrics.json in any
  of the run dirs is refused before anything is written: import would refuse its tar.
* ``import``: the tars back into ``<out_dir>/<run_id>/<run>/``. A tarball is untrusted
  input: only regular files named ``<run_id>/<run>/<file>`` (plain names) are taken, and
  they are extracted with tarfile's ``data`` filter, as ``resnet_nb.data.cifar10`` does; a tar that
  unpacks to more than ``MAX_TAR_BYTES`` is refused. A tar of another run id is refused,
  naming both. A run dir already there that is as far along (epochs in metrics.json) or
  further is kept; a run dir holding another config is refused (it would be lost). A damaged
  metrics.json (not a JSON list), in a tar or in a run dir already there, is refused before
  anything is written, naming the file. Training's own resume check refuses an imported run
  whose config differs from the one it is asked to train (``run_writer.inspect_run``).
* ``commit``: the environment variables that give a copy of the checkout without ``.git`` its
  commit (``resnet_nb.runs.environment.git_commit``), for the machine the runs train on.

``python -m resnet_nb.pipeline.transfer`` runs the same command without importing torch for export.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Sequence

from resnet_nb import REPO
from resnet_nb.runs.rundir import format_size

__all__ = ["MAX_TAR_BYTES", "tar_name", "pack", "restore", "commit_env", "add_arguments", "run_cli",
           "main"]

# what a tar may unpack to: far above any run dir of these nets (a ResNet-1202's two checkpoints are
# ~0.3 GB), a guard against a decompression bomb in a tar from elsewhere
MAX_TAR_BYTES = 2 * 2**30
SEP = "__"                     # <run_id>__<run>.tar, a label: restore reads the members' names
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")   # a run id, run name or run file name


def tar_name(run_id: str, run: str) -> str:
    """``<run_id>__<run>.tar``: the tar of one run dir."""
    return f"{run_id}{SEP}{run}.tar"




def _n_epochs(n: int) -> str:
    return f"{n} epoch{'' if n == 1 else 's'}"


# --------------------------------------------------------------------------- pack

def _run_dirs(out_dir: Path, run_id: str) -> list[Path]:
    base = out_dir / run_id
    if not base.is_dir():
        raise FileNotFoundError(f"no run id {run_id!r} under {out_dir}: nothing to pack "
                                f"(train into {base} first, or give --out-dir)")
    dirs = sorted(p for p in base.iterdir() if p.is_dir() and (p / "config.json").is_file())
    if not dirs:
        raise FileNotFoundError(f"{base} holds no run dirs (folders with config.json): nothing to pack")
    return dirs


def _run_files(run_dir: Path) -> list[Path]:
    """The regular, non-hidden files of a run dir (no .lock, no .*.tmp, no subfolders)."""
    return sorted(p for p in run_dir.iterdir()
                  if not p.name.startswith(".") and p.is_file() and not p.is_symlink())


def _check_packable(run_dir: Path) -> None:
    """Refuse a run dir whose metrics.json import would refuse (its ``_epochs``): its tar would
    fail on the other machine."""
    try:
        _epochs(run_dir)
    except ValueError as e:
        raise ValueError(f"{e}: transfer import would refuse its tar, so nothing was exported. Restore "
                         f"it from a copy, or rerun the command that trains {run_dir.name} (resuming an "
                         f"unfinished run rewrites metrics.json from last.pth), then export again") from None


def pack(out_dir: str | os.PathLike, run_id: str, to: str | os.PathLike,
         max_bytes: int | None = None) -> list[Path]:
    """One tar per run dir of ``<out_dir>/<run_id>/`` into ``to``; returns the tars' paths.

    Members are ``<run_id>/<run>/<file>``. ``max_bytes`` (None: no limit): a ValueError
    (naming the run and its files' sizes) for a run dir whose tar would exceed it, e.g. for a
    transfer service with a size limit; the tars written before stay.
    A run dir whose metrics.json restore would refuse (``_epochs``) is refused before anything
    is written (``to`` is not even created).
    """
    out_dir, to = Path(out_dir).expanduser(), Path(to).expanduser()
    run_dirs = _run_dirs(out_dir, run_id)
    for run_dir in run_dirs:
        _check_packable(run_dir)
    to.mkdir(parents=True, exist_ok=True)
    written = []
    for run_dir in run_dirs:
        files = _run_files(run_dir)
        # each member: a 512-byte header + data padded to 512; the end: two zero blocks, padded
        # to tarfile's 10 KiB record
        estimate = sum(512 + -(-f.stat().st_size // 512) * 512 for f in files) + 10240
        final = to / tar_name(run_id, run_dir.name)
        if max_bytes is not None and estimate > max_bytes:
            sizes = ", ".join(f"{f.name} {format_size(f.stat().st_size)}" for f in files)
            raise ValueError(f"{run_dir} would make a tar of {format_size(estimate)}, over the {format_size(max_bytes)} "
                             f"asked for ({sizes}); nothing written for it")
        fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=to)
        try:
            os.chmod(tmp, 0o644)             # mkstemp makes 0600
            with os.fdopen(fd, "wb") as f:
                with tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tar:
                    for p in files:
                        tar.add(p, arcname=f"{run_id}/{run_dir.name}/{p.name}", recursive=False)
                f.flush()
                os.fsync(f.fileno())
            size = os.path.getsize(tmp)
            if max_bytes is not None and size > max_bytes:  # a file grew while it was read
                raise ValueError(f"{final.name} came to {format_size(size)}, over {format_size(max_bytes)}; not written")
            os.replace(tmp, final)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        written.append(final)
    return written


# --------------------------------------------------------------------------- restore

def _count_epochs(text: bytes, where: str) -> int:
    """The number of epochs in the text of a metrics.json (a JSON list, one record per
    epoch); ValueError naming ``where`` when it is not one: a damaged metrics.json says
    nothing about how far its run dir is, so it must not count as 0 epochs (restore would
    then replace the run dir, or keep a damaged one over an intact tar)."""
    try:
        m = json.loads(text)
    except ValueError as e:
        raise ValueError(f"{where} is not readable JSON ({e})") from None
    if not isinstance(m, list):
        raise ValueError(f"{where} holds a JSON {type(m).__name__}, not the list of epochs training writes")
    return len(m)


def _epochs(run_dir: Path) -> int:
    """Epochs recorded in ``run_dir``'s metrics.json: 0 when there is none (no epoch has
    finished yet), a ValueError when it is damaged (``_count_epochs``)."""
    path = run_dir / "metrics.json"
    if not path.is_file():
        return 0
    return _count_epochs(path.read_bytes(), str(path))


def _check_local(base: Path, path: Path, runs: dict) -> None:
    """Refuse (nothing written yet) when a run dir already here that ``path`` would restore
    has a damaged metrics.json: which copy is further along cannot be told."""
    for run in runs:
        target = base / run
        if not target.is_dir():
            continue
        try:
            _epochs(target)
        except ValueError as e:
            raise ValueError(f"{e}: whether {target} or {path.name} is further along cannot be told, so "
                             f"nothing was restored. If {target} is the damaged copy, move it away and "
                             f"restore again; if it is the one to keep, repair its metrics.json (or leave "
                             f"it and do not restore {path.name})") from None


def _stored_config(run_dir: Path) -> dict | None:
    try:
        c = json.loads((run_dir / "config.json").read_text()).get("config")
    except (OSError, ValueError, AttributeError):
        return None
    return c if isinstance(c, dict) else None


def _check_members(tar: tarfile.TarFile, path: Path, run_id: str) -> dict[str, list[tarfile.TarInfo]]:
    """``{run: [file members]}`` of a tar to import, or a ValueError saying what is wrong."""
    runs: dict[str, list[tarfile.TarInfo]] = {}
    total = 0
    for m in tar.getmembers():
        parts = m.name.split("/")
        if m.isdir() and parts[0] == run_id and len(parts) <= 2 and all(_NAME.match(p) for p in parts):
            continue                                   # <run_id>/ or <run_id>/<run>/: created anyway
        if parts[0] != run_id and _NAME.match(parts[0]):
            raise ValueError(f"{path} holds run id {parts[0]!r} ({m.name}), not {run_id!r}: it is the "
                             f"tar of another reproduction; import it with --run-id {parts[0]}, or "
                             f"import the tars of {run_id}")
        if not (len(parts) == 3 and parts[0] == run_id and all(_NAME.match(p) for p in parts[1:])):
            raise ValueError(f"{path}: member {m.name!r} is not a file of a run dir "
                             f"({run_id}/<run>/<file>); refusing the whole tar")
        if not m.isreg():
            raise ValueError(f"{path}: member {m.name!r} is not a regular file (a link, device or "
                             f"folder); refusing the whole tar")
        total += m.size
        runs.setdefault(parts[1], []).append(m)
    if total > MAX_TAR_BYTES:
        raise ValueError(f"{path} unpacks to {format_size(total)}, more than any run dir of these nets holds "
                         f"({format_size(MAX_TAR_BYTES)}); refusing it")
    for run, members in runs.items():
        if not any(m.name.endswith("/config.json") for m in members):
            raise ValueError(f"{path}: {run_id}/{run}/ has no config.json: not a run dir; refusing it")
        for m in members:
            if m.name.endswith("/metrics.json"):
                try:
                    _count_epochs(tar.extractfile(m).read(), f"{path}: {m.name}")
                except ValueError as e:
                    raise ValueError(f"{e}; refusing the whole tar (nothing imported): export {run_id}/{run} "
                                     f"again where it was trained (resnet-nb transfer export)") from None
    if not runs:
        raise ValueError(f"{path} holds no run dir files ({run_id}/<run>/<file>)")
    return runs


def _extract(tar: tarfile.TarFile, members: list[tarfile.TarInfo], dest: Path) -> None:
    if hasattr(tarfile, "data_filter"):
        tar.extractall(dest, members=members, filter="data")
    else:  # pragma: no cover - Pythons before the filters (3.11.4 / 3.12): members checked above
        tar.extractall(dest, members=members)


def _restore_run(tar: tarfile.TarFile, path: Path, run_id: str, run: str,
                 members: list[tarfile.TarInfo], base: Path) -> str:
    """Import one run dir of a tar into ``base/run``; returns what was done."""
    from resnet_nb.runs.rundir import is_locked
    from resnet_nb.training.config import config_diff  # imports torch: only here

    target = base / run
    with tempfile.TemporaryDirectory(prefix=f".restore-{run}-", dir=base) as tmp:
        _extract(tar, members, Path(tmp))
        new = Path(tmp) / run_id / run
        got = _epochs(new)
        if target.exists():
            if is_locked(target):
                raise ValueError(f"{target} is being trained by a running process; restore after it "
                                 f"stops (nothing changed)")
            have = _epochs(target)
            old_cfg, new_cfg = _stored_config(target), _stored_config(new)
            if old_cfg is not None and new_cfg is not None:
                diff = config_diff(old_cfg, new_cfg)
                if diff:
                    fields = ", ".join(f"{k} (here {a!r}, in the tar {b!r})" for k, (a, b) in diff.items())
                    raise ValueError(f"{path}: {target} holds a run with another config: {fields}; "
                                     f"move {target} away to restore the tar (nothing changed)")
            if have >= got:
                return (f"kept {target} ({_n_epochs(have)}): it is as far along as {path.name} "
                        f"({_n_epochs(got)}) or further")
            old = target.with_name(f".{run}.replaced")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)                 # swap: a failure between leaves old + new aside
            os.replace(new, target)
            shutil.rmtree(old, ignore_errors=True)
            return f"restored {target} from {path.name}: {_n_epochs(got)} (it held {have})"
        os.replace(new, target)
        return f"restored {target} from {path.name}: {_n_epochs(got)}"


def restore(tars: Sequence[str | os.PathLike], run_id: str, out_dir: str | os.PathLike = "experiments") -> list[str]:
    """Import run-dir tars into ``<out_dir>/<run_id>/``; returns one line per run dir.

    Every tar is checked before anything is written (see the module docstring); an error is
    a one-line ValueError (a tar of another run id names it; so does a damaged metrics.json,
    in a tar or in a run dir already here). A run dir already there with as many epochs or
    more is kept (the line says so).
    """
    from resnet_nb.runs.rundir import check_run_id

    check_run_id(run_id)
    base = Path(out_dir).expanduser() / run_id
    handles, checked = [], []
    try:
        for t in map(Path, tars):
            if not t.is_file():
                raise FileNotFoundError(f"no tar {t} to import")
            try:
                tar = tarfile.open(t, "r:*")
                handles.append(tar)
                checked.append((t, tar, _check_members(tar, t, run_id)))
            except (tarfile.TarError, EOFError) as e:
                raise ValueError(f"{t} is not a readable tar ({e})") from None
        for t, _, runs in checked:
            _check_local(base, t, runs)
        base.mkdir(parents=True, exist_ok=True)
        lines = []
        for t, tar, runs in checked:
            for run, members in sorted(runs.items()):
                try:
                    lines.append(_restore_run(tar, t, run_id, run, members, base))
                except (tarfile.TarError, EOFError) as e:
                    raise ValueError(f"{t}: could not extract {run_id}/{run} ({e}); nothing changed "
                                     f"for it") from None
        return lines
    finally:
        for tar in handles:
            tar.close()


# --------------------------------------------------------------------------- sizes, commit



def commit_env(repo: str | os.PathLike | None = None) -> str:
    """``RESNET_NB_COMMIT=<sha> RESNET_NB_COMMIT_DIRTY=<0|1>`` of the checkout: set them where a
    copy of it without ``.git`` trains, and its run dirs record the commit."""
    from resnet_nb.runs.environment import COMMIT_DIRTY_ENV, COMMIT_ENV, git_commit

    g = git_commit(repo or REPO, environ=False)
    if g["commit"] is None:
        raise ValueError(f"{Path(repo or REPO)} is not a git checkout (or git is missing): no commit to record")
    return f"{COMMIT_ENV}={g['commit']} {COMMIT_DIRTY_ENV}={int(bool(g['dirty']))}"


# --------------------------------------------------------------------------- CLI

def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    a = sub.add_parser("export", help="one tar per run dir of a run id (<run id>__<run>.tar)",
                       description="Write one tar per run dir of RUN_ID (config.json, metrics.json, last.pth, "
                                   "best.pth, the executed notebook), each written atomically, to move the "
                                   "runs to another machine (to analyse them there, or to resume them). A "
                                   "damaged metrics.json (which import would refuse) is refused before "
                                   "anything is written.")
    a.add_argument("--run-id", required=True, help="run id whose run dirs to export")
    a.add_argument("--out-dir", default="experiments", help="root folder of run directories (default: experiments)")
    a.add_argument("--to", required=True, help="folder the tars go to")
    r = sub.add_parser("import", help="untar run dirs into <out-dir>/<run id>/ (checked, newer kept)",
                       description="Untar run dirs written by 'transfer export' into OUT_DIR/RUN_ID/. Tars are "
                                   "untrusted: only regular files RUN_ID/<run>/<file> are taken (tarfile's data "
                                   "filter); a tar of another run id or config is refused; a run dir already "
                                   "as far along (epochs in metrics.json) is kept; a damaged metrics.json, in "
                                   "a tar or here, is refused before anything is written.")
    r.add_argument("tars", nargs="+", metavar="TAR", help="tars written by transfer export")
    r.add_argument("--run-id", required=True, help="run id the tars must hold")
    r.add_argument("--out-dir", default="experiments", help="root folder of run directories (default: experiments)")
    sub.add_parser("commit", help="the RESNET_NB_COMMIT=... variables for a copy of this checkout without .git",
                   description="Print RESNET_NB_COMMIT=<sha> RESNET_NB_COMMIT_DIRTY=<0|1> of this checkout: set "
                               "them where a copy without .git trains, and its run dirs record the commit.")


def run_cli(args: argparse.Namespace) -> int:
    if args.action == "export":
        for t in pack(args.out_dir, args.run_id, args.to):
            print(f"{t} ({format_size(t.stat().st_size)})")
        return 0
    if args.action == "import":
        for line in restore(args.tars, args.run_id, args.out_dir):
            print(line)
        return 0
    print(commit_env())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m resnet_nb.pipeline.transfer ...``: as ``resnet-nb transfer ...``, without importing torch
    for export (``resnet_nb.cli`` imports the data layer for its error types)."""
    p = argparse.ArgumentParser(prog="resnet-nb transfer", description=__doc__.splitlines()[0])
    add_arguments(p)
    args = p.parse_args(argv)
    try:
        return run_cli(args)
    except (ValueError, OSError) as e:
        print(f"resnet-nb transfer: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
