"""The CIFAR-10 networks of He et al. 2016, sec. 4.2 ("CIFAR-10 and Analysis").

The network inputs are 32x32 images. The first layer is a 3x3 convolution with 16
filters, followed by three stages of ``n`` basic blocks (``2n`` 3x3 conv layers each)
on feature maps of 32x32, 16x16 and 8x8 with 16, 32 and 64 filters. The first block of
stages 2 and 3 subsamples with stride 2. The network ends with global average pooling
and a 10-way fully-connected layer, so depth = 6n + 2 weighted layers.

A residual block computes ``y = relu(F(x) + shortcut(x))`` where ``F`` is
conv-BN-relu-conv-BN: the block learns the residual ``F(x) = H(x) - x`` of the mapping
``H`` it should represent (eq. 1 of the paper). The plain counterpart is the same stack
without the ``+ shortcut(x)``; both have identical layers and parameter names.

Where a block changes the shape (stages 2 and 3), the shortcut is

* option A (the paper's choice on CIFAR, parameter-free): ``ShortcutA`` subsamples
  with stride 2 and appends zero channels;
* option B: ``ShortcutB``, a 1x1 conv (stride 2) + BN projection; identity elsewhere.

Parameters with option A (plain nets have exactly the same counts):

=====  ===  ==========  ========  =========================
depth   n   parameters  paper     paper test error (Tab. 6)
=====  ===  ==========  ========  =========================
20      3      269,722  0.27M     8.75 %
32      5      464,154  0.46M     7.51 %
44      7      658,586  0.66M     7.17 %
56      9      853,018  0.85M     6.97 %
110    18    1,727,962  1.7M      6.43 %
1202  200   19,421,274  19.4M     7.93 %
=====  ===  ==========  ========  =========================

``tests/models/test_models.py`` checks this table against ``count_parameters``.
"""
from __future__ import annotations

import re
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ShortcutA", "ShortcutB", "BasicBlock", "CifarResNet", "build_model", "parse_model_name",
    "count_parameters", "he_init_", "VALID_DEPTHS_HINT", "STAGES", "SHORTCUTS",
    "make_stages", "blocks_per_stage", "SEED_MODELS", "SWEEP_MODELS", "MODEL_SETS", "expand_models",
    "model_label", "sort_models",
]

# the seed report's 2x2 design (sec. 4.2, Fig. 6): two depths, without and with shortcuts;
# the default of reproduce, the analysis and the report
SEED_MODELS = ("plain20", "plain56", "resnet20", "resnet56")
# the depth sweep of sec. 4.2 (Fig. 6, Table 6): plain and residual nets at 20/32/44/56 layers,
# and ResNet-110 (trained with the paper's warm-up, config.paper_warmup)
SWEEP_MODELS = ("plain20", "plain32", "plain44", "plain56",
                "resnet20", "resnet32", "resnet44", "resnet56", "resnet110")
MODEL_SETS = {"seed": SEED_MODELS, "sweep": SWEEP_MODELS}  # names --models accepts for a whole set
SHORTCUTS = ("A", "B")
VALID_DEPTHS_HINT = "20, 32, 44, 56, 110, 1202"  # any 6n+2 with n >= 1 is accepted
# sec. 4.2's table: (filters, stride of the stage's first block) of the three stages of n
# blocks, on 32x32, 16x16 and 8x8 feature maps
STAGES = ((16, 1), (32, 2), (64, 2))


class ShortcutA(nn.Module):
    """Option A: parameter-free shortcut for a shape-changing block.

    Subsamples the input with ``stride`` (keeps every stride-th pixel) and appends
    ``out_planes - in_planes`` all-zero channels after the input channels:
    (B, C_in, H, W) -> (B, C_out, H/stride, W/stride).
    """

    def __init__(self, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        if out_planes < in_planes:
            raise ValueError(f"option A can only add channels; got {in_planes} -> {out_planes}")
        self.in_planes, self.out_planes, self.stride = in_planes, out_planes, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        # F.pad pads dimensions from the last backwards: (W_l, W_r, H_t, H_b, C_front, C_back)
        return F.pad(x, (0, 0, 0, 0, 0, self.out_planes - self.in_planes))

    def extra_repr(self) -> str:
        return f"{self.in_planes}->{self.out_planes}, stride={self.stride}"


class ShortcutB(nn.Sequential):
    """Option B: projection shortcut, 1x1 conv with ``stride`` followed by BN."""

    def __init__(self, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__(
            nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False),
            nn.BatchNorm2d(out_planes),
        )


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers; ``shortcut=None`` makes it a plain block.

    residual: y = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))
    plain:    y = relu(bn2(conv2(relu(bn1(conv1(x))))))
    The parent network builds the shortcut (identity, option A or option B).
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1,
                 shortcut: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = shortcut

    def residual_branch(self, x: torch.Tensor) -> torch.Tensor:
        """F(x): the part of the block that learns the residual."""
        return self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.residual_branch(x)
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return F.relu(out)


def _make_shortcut(kind: str, in_planes: int, planes: int, stride: int) -> nn.Module:
    if stride == 1 and in_planes == planes:
        return nn.Identity()
    if kind == "A":
        return ShortcutA(in_planes, planes, stride)
    return ShortcutB(in_planes, planes, stride)


class CifarResNet(nn.Module):
    """The 6n+2-layer CIFAR network; ``residual=False`` gives the plain net."""

    def __init__(self, depth: int, residual: bool = True, shortcut: str = "A",
                 num_classes: int = 10) -> None:
        super().__init__()
        n = blocks_per_stage(depth)
        if shortcut not in SHORTCUTS:
            raise ValueError(f"shortcut must be one of {', '.join(SHORTCUTS)}; got {shortcut!r}")
        self.depth, self.residual, self.shortcut_kind = depth, residual, shortcut

        def block(in_planes: int, planes: int, stride: int) -> BasicBlock:
            sc = _make_shortcut(shortcut, in_planes, planes, stride) if residual else None
            return BasicBlock(in_planes, planes, stride, sc)

        width = STAGES[0][0]
        self.conv1 = nn.Conv2d(3, width, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.layer1, self.layer2, self.layer3 = make_stages(block, n)
        self.fc = nn.Linear(STAGES[-1][0], num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        he_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))           # (B, 16, 32, 32)
        x = self.layer1(x)                            # (B, 16, 32, 32)
        x = self.layer2(x)                            # (B, 32, 16, 16)
        x = self.layer3(x)                            # (B, 64, 8, 8)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)    # (B, 64)
        return self.fc(x)                             # (B, num_classes)

    @property
    def name(self) -> str:
        return f"{'resnet' if self.residual else 'plain'}{self.depth}"


def make_stages(block, n: int) -> tuple[nn.Sequential, ...]:
    """The three stages of ``STAGES``, ``n`` blocks each: ``block(in_planes, planes, stride)``
    builds one (a ``BasicBlock`` here, a ``PackedBasicBlock`` in ``resnet_nb.models.packed``)."""
    stages, in_planes = [], STAGES[0][0]
    for planes, stride in STAGES:
        stages.append(_make_stage(block, in_planes, planes, stride, n))
        in_planes = planes
    return tuple(stages)


def _make_stage(block, in_planes: int, planes: int, stride: int, n: int) -> nn.Sequential:
    """``n`` blocks; the first one changes the shape (stride, filters), the rest keep it."""
    return nn.Sequential(block(in_planes, planes, stride), *(block(planes, planes, 1) for _ in range(n - 1)))


def he_init_(model: nn.Module, weighted: tuple[type, ...] = (nn.Conv2d, nn.Linear)) -> None:
    """He init (He et al. 2015, "Delving deep into rectifiers"), as sec. 3.4 prescribes:
    weights of ``weighted`` layers ~ N(0, 2 / fan_in), biases 0; BN scale 1, shift 0."""
    for m in model.modules():
        if isinstance(m, weighted):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def blocks_per_stage(depth: int) -> int:
    """n of depth = 6n + 2; a depth of another form raises a one-line ValueError."""
    if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6 != 0:
        raise ValueError(f"depth must be 6n+2 with n >= 1 ({VALID_DEPTHS_HINT}, ...); got {depth}")
    return (depth - 2) // 6


_NAME_RE = re.compile(r"^(plain|resnet)(\d+)$")


def parse_model_name(name: str) -> tuple[str, int]:
    """'resnet56' -> ('resnet', 56). Raises ValueError listing the valid forms."""
    m = _NAME_RE.match(str(name).strip().lower())
    if not m:
        raise ValueError(
            f"unknown model {name!r}: use plain<depth> or resnet<depth> with depth = 6n+2 "
            f"(e.g. plain20, plain56, resnet20, resnet56, resnet110; depths {VALID_DEPTHS_HINT})")
    family, depth = m.group(1), int(m.group(2))
    try:
        blocks_per_stage(depth)
    except ValueError as e:
        raise ValueError(f"model {name!r}: {e}") from None
    return family, depth


def expand_models(names: Iterable[str]) -> list[str]:
    """A list of model names where a set name of :data:`MODEL_SETS` (``sweep``, ``seed``) stands
    for its models: ``["sweep"]`` -> the nine of :data:`SWEEP_MODELS`; duplicates dropped, order
    kept; any other name is checked by :func:`parse_model_name`."""
    out: list[str] = []
    for name in names:
        key = str(name).strip().lower()
        for m in MODEL_SETS.get(key, (key,)):
            parse_model_name(m)
            if m not in out:
                out.append(m)
    return out


def model_label(name: str) -> str:
    """``plain20`` -> ``Plain-20``, ``resnet56`` -> ``ResNet-56`` (the paper's names)."""
    family, depth = parse_model_name(name)
    return f"{'Plain' if family == 'plain' else 'ResNet'}-{depth}"


def sort_models(names: Iterable[str]) -> list[str]:
    """Plain before residual, then by depth: plain20, plain56, resnet20, resnet56;
    duplicates dropped. A name that is no model raises :func:`parse_model_name`'s error."""
    def key(name):
        family, depth = parse_model_name(name)
        return family != "plain", depth, name
    return sorted(set(names), key=key)


def build_model(name: str, shortcut: str = "A", num_classes: int = 10) -> CifarResNet:
    """Build ``plain<depth>`` or ``resnet<depth>`` (e.g. plain20, resnet56, plain1202).

    For plain nets ``shortcut`` is checked but has no effect (they have no shortcuts).
    """
    family, depth = parse_model_name(name)
    return CifarResNet(depth, residual=(family == "resnet"), shortcut=shortcut,
                       num_classes=num_classes)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (BN running statistics are buffers, not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
