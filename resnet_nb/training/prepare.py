"""What a run trains on: its device, and its images on that device (He et al. 2016, sec. 4.2).

``prepare_data(cfg, device)`` loads the dataset of a ``TrainConfig``, takes the fixed val
split and subsets, computes the normalisation statistics of the training images in use and
moves the uint8 images to the training device, where each epoch's images are augmented
(``resnet_nb.data.augment.augment_epoch``). Every member of a pack trains on the same ``PreparedData``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from resnet_nb.data import augment, cifar10
from resnet_nb.training.config import TrainConfig

__all__ = ["PreparedData", "prepare_data", "resolve_device", "SUBSET_SEED", "DATA_SEED_OFFSET"]

SUBSET_SEED = 0          # the val split and the train/test subsets are fixed (part of the data)
DATA_SEED_OFFSET = 2**32  # data-order/augmentation stream seed = seed + 2**32 (disjoint from init)


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda if available else cpu; a requested but missing GPU is a one-line error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} requested but CUDA is not available here; "
                             f"use --device cpu (or auto)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r}: only {torch.cuda.device_count()} GPU(s) visible; "
                             f"use cuda:0..cuda:{torch.cuda.device_count() - 1}")
    return dev


@dataclass
class PreparedData:
    """The images of one run, on its device. uint8 (N, 3, 32, 32) images, int64 (N,) labels;
    ``mean``/``std``: normalisation statistics of the training images in use ((3,) each for
    ``channel``; a (3, 32, 32) mean image and ``std=None`` for ``pixel``)."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    val_x: torch.Tensor | None
    val_y: torch.Tensor | None
    mean: torch.Tensor
    std: torch.Tensor | None
    info: dict            # dataset provenance (Cifar10.info()) + sizes in use + normalisation

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 images -> float32 network input."""
        return augment.normalize(x, self.mean, self.std)


def _fixed_subset(n: int, k: int) -> torch.Tensor:
    """The first ``k`` of a fixed permutation of range(n), sorted (same for every seed)."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(SUBSET_SEED))
    return perm[:k].sort().values


def prepare_data(cfg: TrainConfig, device: torch.device | str = "cpu") -> PreparedData:
    """Load the dataset of ``cfg``, split and subset it, compute normalisation statistics.

    The val split (``val_split`` images, sec. 4.2: 45k/5k) and the subsets are fixed: they
    depend on the data, not on ``cfg.seed``, so every model and seed sees the same images.
    Sizes that do not fit the data raise a one-line ValueError.
    """
    ds = cifar10.load_dataset(cfg.dataset, cfg.data_root, allow_noncanonical=cfg.allow_noncanonical)
    n_all = int(ds.train_y.numel())
    if cfg.val_split:
        if cfg.val_split >= n_all:
            raise ValueError(f"val_split={cfg.val_split} leaves no training images "
                             f"({cfg.dataset} has {n_all}); use a smaller --val-split")
        train_idx, val_idx = cifar10.train_val_split(n_all, cfg.val_split, seed=SUBSET_SEED)
    else:
        train_idx, val_idx = torch.arange(n_all), None
    if cfg.train_subset:
        if cfg.train_subset > train_idx.numel():
            raise ValueError(f"train_subset={cfg.train_subset} exceeds the {train_idx.numel()} "
                             f"training images available; use a smaller --train-subset or 0 (all)")
        train_idx = train_idx[_fixed_subset(train_idx.numel(), cfg.train_subset)]
    n_test = int(ds.test_y.numel())
    test_idx = torch.arange(n_test)
    if cfg.test_subset:
        if cfg.test_subset > n_test:
            raise ValueError(f"test_subset={cfg.test_subset} exceeds the {n_test} test images; "
                             f"use a smaller --test-subset or 0 (all)")
        test_idx = _fixed_subset(n_test, cfg.test_subset)

    train_x = ds.train_x[train_idx]
    if cfg.normalization == "channel":
        mean, std = augment.channel_stats(train_x)
        norm = {"kind": "channel", "mean": mean.tolist(), "std": std.tolist()}
    else:
        mean, std = augment.pixel_mean(train_x), None
        norm = {"kind": "pixel", "mean_of_mean_image": mean.mean(dim=(1, 2)).tolist()}
    to = dict(device=device)
    info = {**ds.info(), "dataset": cfg.dataset, "n_train_used": int(train_idx.numel()),
            "n_val": int(val_idx.numel()) if val_idx is not None else 0,
            "n_test_used": int(test_idx.numel()), "normalization": norm}
    return PreparedData(
        train_x=train_x.to(**to), train_y=ds.train_y[train_idx].to(**to),
        test_x=ds.test_x[test_idx].to(**to), test_y=ds.test_y[test_idx].to(**to),
        val_x=ds.train_x[val_idx].to(**to) if val_idx is not None else None,
        val_y=ds.train_y[val_idx].to(**to) if val_idx is not None else None,
        mean=mean.to(**to), std=std.to(**to) if std is not None else None, info=info)
