"""The paper's augmentation and normalisation as pure tensor functions on uint8 images (He et al.
2016, sec. 4.2): a random 32x32 crop of the 4-pixel zero-padded image and a horizontal flip,
drawn for a whole epoch at once on the training device (augment_epoch); per-channel statistics
and normalize.
"""
from __future__ import annotations

import torch

__all__ = ["PAD", "crop_flip", "random_crop_flip", "AUGMENT_SCHEME", "AUGMENT_CHUNK",
           "augment_epoch", "channel_stats", "pixel_mean", "normalize"]


PAD = 4  # pixels of zero padding before the random 32x32 crop (sec. 4.2)


def crop_flip(x: torch.Tensor, top: torch.Tensor, left: torch.Tensor, flip: torch.Tensor,
              pad: int = PAD) -> torch.Tensor:
    """Crop each image of the zero-padded batch at (top, left) and mirror where ``flip``.

    x: (N, C, H, W) of any dtype; top, left: (N,) ints in [0, 2*pad]; flip: (N,) bool.
    Returns (N, C, H, W), equal to torchvision's ``crop(pad(img, pad), top, left, H, W)``
    followed by ``hflip`` where ``flip``.
    """
    n, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))         # (N, C, H+2p, W+2p), zeros
    dev = x.device
    ar_h, ar_w = torch.arange(h, device=dev), torch.arange(w, device=dev)
    rows = top.to(dev).long()[:, None] + ar_h                         # (N, H)
    cols_fwd = ar_w.expand(n, w)
    cols = torch.where(flip.to(dev)[:, None], (w - 1) - cols_fwd, cols_fwd) + left.to(dev).long()[:, None]
    batch = torch.arange(n, device=dev)[:, None, None, None]
    chan = torch.arange(c, device=dev)[None, :, None, None]
    return padded[batch, chan, rows[:, None, :, None], cols[:, None, None, :]]


def _draw_crop_flip(n: int, generator: torch.Generator | None, device: torch.device,
                    pad: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(top, left, flip) of n images: offsets uniform in [0, 2*pad], flips Bernoulli(0.5),
    in three draws from ``generator`` (top, then left, then flip)."""
    top = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=device)
    left = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=device)
    flip = torch.rand(n, generator=generator, device=device) < 0.5
    return top, left, flip


def random_crop_flip(x: torch.Tensor, generator: torch.Generator | None = None,
                     pad: int = PAD) -> torch.Tensor:
    """RandomCrop(32, padding=pad) + RandomHorizontalFlip(p=0.5), batched.

    Offsets are uniform in [0, 2*pad] and flips Bernoulli(0.5), drawn with ``generator``
    (which must live on x's device, or be None). Training draws a whole epoch at once
    (``augment_epoch``); this draws one batch (the data notebook's preview).
    """
    dev = generator.device if generator is not None else x.device
    return crop_flip(x, *_draw_crop_flip(x.shape[0], generator, dev, pad), pad)


# The random stream training draws from a member's data generator, recorded in every
# last.pth (rng["augment"]): "epoch" = augment_epoch (one permutation, then top, left and
# flip of all images, once per epoch). Checkpoints without it were written by resnet-nb
# versions that drew a crop/flip per batch; they do not resume (run_writer.inspect_run).
AUGMENT_SCHEME = "epoch"


AUGMENT_CHUNK = 10_000   # images per crop_flip call in augment_epoch (bounds its temporaries)


def augment_epoch(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None,
                  pad: int = PAD, chunk: int = AUGMENT_CHUNK) -> tuple[torch.Tensor, torch.Tensor]:
    """One epoch of training data in a few calls: (x_epoch (n, C, H, W), y_epoch (n,)).

    Draws from ``generator`` (on x's device, or None), in this order: a permutation of
    range(n), then top, left and flip of all n images (as ``random_crop_flip`` draws them
    for a batch). Image ``k`` of the epoch is ``crop_flip`` of ``x[order[k]]`` with draw
    ``k``; batch ``j`` is ``[j*B:(j+1)*B]``. The gather and crop run ``chunk`` images at a
    time (the same result for any chunk), so the temporaries stay a few times one chunk.
    """
    if chunk <= 0:
        raise ValueError(f"chunk must be positive; got {chunk}")
    n = x.shape[0]
    dev = generator.device if generator is not None else x.device
    order = torch.randperm(n, generator=generator, device=dev)
    top, left, flip = _draw_crop_flip(n, generator, dev, pad)
    order_x = order.to(x.device)
    out = torch.empty_like(x)
    for i in range(0, n, chunk):
        j = slice(i, i + chunk)
        out[j] = crop_flip(x[order_x[j]], top[j], left[j], flip[j], pad)
    return out, y[order.to(y.device)]


def channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of uint8 images (N, 3, H, W), in [0, 1] units: (3,), (3,)."""
    xf = x.double().div_(255)
    return xf.mean(dim=(0, 2, 3)).float(), xf.std(dim=(0, 2, 3)).float()


def pixel_mean(x: torch.Tensor) -> torch.Tensor:
    """The mean image (3, H, W) of uint8 images, in [0, 1] units (the paper's per-pixel mean)."""
    return x.double().mean(dim=0).div_(255).float()


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor | None = None,
              dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float (x/255 - mean) / std.

    mean/std are (3,) per-channel statistics or a (3, H, W) mean image; std=None divides by 1.
    """
    mean = mean.to(x.device, dtype)
    if mean.dim() == 1:
        mean = mean[:, None, None]
    out = x.to(dtype).div_(255).sub_(mean)
    if std is not None:
        std = std.to(x.device, dtype)
        out = out.div_(std[:, None, None] if std.dim() == 1 else std)
    return out
