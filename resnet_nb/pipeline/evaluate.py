"""Verify published weights: re-compute a run's test accuracy from its ``best.pth``.

``resnet-nb evaluate RUN_DIR`` rebuilds the model and the test data exactly as the run's
``config.json`` says (model, shortcut, dataset, normalisation statistics of the training images
in use, val split, subsets: ``resnet_nb.training.prepare.prepare_data``), loads ``best.pth`` with
``torch.load(weights_only=True)`` (tensors only, no code) and evaluates it with the project's
one evaluation function (``resnet_nb.training.loop.evaluate``). It then compares the number of
correctly classified test images with the best test accuracy recorded in ``metrics.json``.

The data must be the data the run was trained on: the dataset fingerprint recorded in the run
(sha256 of the pixels and labels, ``resnet_nb.data.cifar10.fingerprint``) is checked against the data
found, and a difference is refused with what to point ``--data-root`` at.

Tolerance: a run trained on a GPU in bf16 was evaluated there in bf16; evaluated again in fp32
on a CPU, a few test images whose two best logits nearly tie can flip. Up to
``TOLERANCE_PP`` = 0.1 percentage points (10 of 10,000 images; 0 of fewer than 1,000) count as
the same accuracy. A CPU run in fp32 reproduces its count exactly.
"""
from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from resnet_nb.data import cifar10
from resnet_nb.runs.rundir import BEST_FILE, CONFIG_FILE, load_run
from resnet_nb.training.config import config_diff, config_from_dict

__all__ = ["TOLERANCE_PP", "tolerance_images", "Check", "evaluate_run", "run_dirs_of",
           "add_arguments", "run_cli"]

TOLERANCE_PP = 0.1  # percentage points of the test set: bf16 (GPU) vs fp32 (CPU) evaluation noise


def tolerance_images(n_test: int, tolerance_pp: float = TOLERANCE_PP) -> int:
    """Images of ``n_test`` that ``tolerance_pp`` percentage points allow (rounded down)."""
    return int(math.floor(n_test * tolerance_pp / 100 + 1e-9))


@dataclass
class Check:
    """The outcome for one run dir: recorded vs recomputed, and what does not match."""

    run_dir: Path
    model: str
    epoch: int
    n_test: int
    data_label: str
    recorded_acc: float
    recomputed_acc: float
    tolerance: int                 # images
    precision: str
    device: str
    trained_on: str                # card and precision of the run
    problems: list[str] = field(default_factory=list)

    @property
    def recorded_correct(self) -> int:
        return round(self.recorded_acc * self.n_test)

    @property
    def recomputed_correct(self) -> int:
        return round(self.recomputed_acc * self.n_test)

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self, tolerance_pp: float) -> list[str]:
        diff = self.recomputed_correct - self.recorded_correct
        n = f"{self.n_test:,}"
        return [
            f"{self.model} ({self.run_dir}): best.pth of epoch {self.epoch}, {n} test images of the "
            f"{self.data_label}; evaluated in {self.precision} on {self.device}",
            f"  recorded   {self.recorded_acc:.4f} ({self.recorded_correct:,} / {n} correct; metrics.json, "
            f"trained on {self.trained_on})",
            f"  recomputed {self.recomputed_acc:.4f} ({self.recomputed_correct:,} / {n} correct)",
            f"  difference {diff:+d} images ({100 * diff / self.n_test:+.2f} points); tolerance "
            f"{self.tolerance} images ({tolerance_pp:g} points): "
            + ("MATCH" if self.ok else "MISMATCH: " + "; ".join(self.problems)),
        ]


def _trained_on(run: dict) -> str:
    env, cfg = run.get("environment") or {}, run.get("config") or {}
    where = env.get("device_name") if str(env.get("device", "")).startswith("cuda") else "cpu"
    return f"{where or 'device not recorded'}, {cfg.get('precision', 'fp32')}"


def _data_hint(recorded: dict) -> str:
    """What to point --data-root at, from the run's dataset record."""
    fp = str(recorded.get("fingerprint") or "not recorded")[:16]
    prov = recorded.get("provenance")
    if prov == "noncanonical":
        bad = ", ".join(recorded.get("md5_mismatches") or []) or "some batch files"
        return (f"this run was trained on a non-canonical CIFAR-10 copy (fingerprint {fp}; md5 sums differ in "
                f"{bad}): point --data-root at that copy (its fingerprint must match; the run's config "
                f"already accepts a non-canonical copy)")
    if prov == "synthetic":
        return (f"this run was trained on the synthetic fixture of {recorded.get('n_train', '?')} / "
                f"{recorded.get('n_test', '?')} images (fingerprint {fp}, recorded in {recorded.get('root') or '?'}); "
                f"point --data-root at that fixture")
    return (f"this run was trained on the canonical CIFAR-10 (fingerprint {fp}); point --data-root at the "
            f"official archive (resnet-nb data download)")


def _prepare(cfg, recorded: dict, device: torch.device, cache: dict):
    """The run's test data (``prepare_data`` of its config), checked against its fingerprint."""
    from resnet_nb.training.prepare import prepare_data

    key = (cfg.dataset, cfg.data_root, cfg.allow_noncanonical, cfg.normalization, cfg.val_split,
           cfg.train_subset, cfg.test_subset, str(device))
    if key not in cache:
        try:
            if cfg.dataset == "cifar10":  # no download unless the run was trained on the official archive
                cifar10.find_batches_dir(cfg.data_root, download=recorded.get("provenance") == "canonical")
            cache[key] = prepare_data(cfg, device)
        except cifar10.DataError as e:
            raise cifar10.DataError(f"{_data_hint(recorded)}.\n{e}") from None
    data = cache[key]
    found, want = data.info["fingerprint"], recorded.get("fingerprint")
    if want != found:
        raise cifar10.DataError(f"the data found differs from the data the run was trained on: found the "
                          f"{data.info['provenance']} copy in {data.info['root']} (fingerprint {found[:16]}); "
                          f"{_data_hint(recorded)}")
    return data


def evaluate_run(run_dir: str | Path, data_root: str | None = None, device: str = "cpu",
                 precision: str = "fp32", tolerance_pp: float = TOLERANCE_PP, cache: dict | None = None) -> Check:
    """Re-compute the test accuracy of ``<run_dir>/best.pth`` and compare it with metrics.json.

    ``data_root``: where the run's data is (default: the run's own ``data_root`` when it exists
    here, else the default root). Bad input (no best.pth, unreadable files, weights of another
    config, other data) raises a one-line error; a difference is reported in ``Check.problems``.
    """
    from resnet_nb.analysis.plots import provenance_label
    from resnet_nb.models.resnet import build_model
    from resnet_nb.training.batches import evaluate
    from resnet_nb.training.precision import check_precision
    from resnet_nb.training.prepare import resolve_device

    run_dir = Path(run_dir)
    run = load_run(run_dir)  # FileNotFoundError: not a run dir
    best_path = run_dir / BEST_FILE
    if not best_path.is_file():
        raise FileNotFoundError(f"{best_path} is missing: the run never finished an evaluated epoch")
    try:  # tensors, dicts and numbers only: a tampered file cannot run code here
        ckpt = torch.load(best_path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - truncated or foreign file
        raise ValueError(f"{best_path} cannot be read as a resnet-nb checkpoint ({type(e).__name__}: "
                         f"{str(e).strip().splitlines()[0] if str(e).strip() else ''})") from None
    if not isinstance(ckpt, dict) or not {"model", "config", "epoch"} <= set(ckpt):
        raise ValueError(f"{best_path} is not a resnet-nb best.pth (it lacks model, config or epoch)")
    stored = run.get("config") or {}
    diff = config_diff(ckpt["config"], stored)
    if diff:
        raise ValueError(f"{best_path} belongs to another config than {run_dir / CONFIG_FILE}: "
                         + ", ".join(f"{k} ({a!r} vs {b!r})" for k, (a, b) in diff.items()))
    evaluated = [m for m in run.get("metrics") or [] if m.get("test_acc") is not None]
    if not evaluated:
        raise ValueError(f"{run_dir} records no test accuracy in metrics.json: nothing to check against")
    best = max(evaluated, key=lambda m: (m["test_acc"], -m["epoch"]))  # earliest epoch of the max

    cfg = config_from_dict(stored)
    if data_root is None:  # the recorded root, unless it was on another machine: the default root here
        data_root = cfg.data_root if cfg.data_root and Path(cfg.data_root).expanduser().exists() else None
    cfg = replace(cfg, data_root=data_root)
    dev = resolve_device(device)
    check_precision(precision, dev)
    recorded = run.get("dataset") or {}
    data = _prepare(cfg, recorded, dev, {} if cache is None else cache)
    if recorded.get("n_test_used") not in (None, int(data.test_y.numel())):
        raise ValueError(f"{run_dir} was tested on {recorded['n_test_used']} images; this data gives "
                         f"{int(data.test_y.numel())} (test_subset {cfg.test_subset})")

    model = build_model(cfg.model, cfg.shortcut)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise ValueError(f"{best_path} does not hold {cfg.model} weights: {str(e).splitlines()[0]}") from None
    model.to(dev)
    _, acc = evaluate(model, data.test_x, data.test_y, data, precision)

    n = int(data.test_y.numel())
    check = Check(run_dir=run_dir, model=cfg.run_name or cfg.model, epoch=int(ckpt["epoch"]), n_test=n,
                  data_label=provenance_label(recorded), recorded_acc=float(best["test_acc"]),
                  recomputed_acc=float(acc), tolerance=tolerance_images(n, tolerance_pp),
                  precision=precision, device=str(dev), trained_on=_trained_on(run))
    if int(ckpt["epoch"]) != int(best["epoch"]):
        check.problems.append(f"best.pth holds epoch {ckpt['epoch']}, but metrics.json's best test accuracy "
                              f"is at epoch {best['epoch']}")
    if ckpt.get("test_acc") is not None and abs(float(ckpt["test_acc"]) - check.recorded_acc) > 1e-12:
        check.problems.append(f"best.pth says test acc {float(ckpt['test_acc']):.4f}, metrics.json "
                              f"{check.recorded_acc:.4f}")
    if abs(check.recomputed_correct - check.recorded_correct) > check.tolerance:
        check.problems.append(f"the weights classify {check.recomputed_correct - check.recorded_correct:+d} "
                              f"images differently from the record, beyond the tolerance")
    return check


def run_dirs_of(path: str | Path) -> list[Path]:
    """``path`` itself when it is a run dir, else the run dirs in it (a run id folder)."""
    path = Path(path)
    if (path / CONFIG_FILE).is_file():
        return [path]
    found = sorted(p for p in path.iterdir() if (p / CONFIG_FILE).is_file()) if path.is_dir() else []
    if not found:
        raise FileNotFoundError(f"{path} is neither a run dir (no {CONFIG_FILE}) nor a folder of run dirs")
    return found


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Re-compute the test accuracy of a run's best.pth (model and data rebuilt from its config.json, "
        "the dataset fingerprint checked) and compare it with the best test accuracy in its metrics.json. "
        f"Tolerance: {TOLERANCE_PP:g} percentage points (10 of 10,000 test images), since a GPU run trained "
        "and evaluated in bf16 can differ in a few borderline images when evaluated again in fp32 on a CPU. "
        "Exit status: 0 when every run matches, 1 when one does not, 2 on bad input (no best.pth, other data, "
        "weights of another config).")
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                        help="run dir(s), e.g. report/published/<run id>/resnet56-seed0, or a run id folder (all its runs)")
    parser.add_argument("--data-root", default=None, help="folder with the run's data (default: the run's "
                        "recorded data_root when it exists here, else $RESNET_NB_DATA or data/cifar10)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:<index> or auto")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"),
                        help="arithmetic of the evaluation (bf16: autocast, as the GPU runs evaluate)")
    parser.add_argument("--tolerance-pp", type=float, default=TOLERANCE_PP,
                        help="percentage points of the test set that may differ (default: %(default)s)")


def run_cli(args: argparse.Namespace) -> int:
    if args.tolerance_pp < 0:
        raise ValueError(f"--tolerance-pp must be >= 0; got {args.tolerance_pp}")
    dirs = [d for p in args.run_dirs for d in run_dirs_of(p)]
    cache: dict = {}
    failed = []
    for d in dirs:
        check = evaluate_run(d, args.data_root, args.device, args.precision, args.tolerance_pp, cache)
        print("\n".join(check.lines(args.tolerance_pp)), flush=True)
        if not check.ok:
            failed.append(check.model)
    if len(dirs) > 1:
        print(f"{len(dirs) - len(failed)} of {len(dirs)} runs match" + (f"; mismatch: {', '.join(failed)}" if failed else ""))
    if failed:
        print(f"resnet-nb evaluate: {', '.join(failed)}: the weights do not reproduce the recorded accuracy",
              file=sys.stderr)
    return 1 if failed else 0
