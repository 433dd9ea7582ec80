"""N same-depth CIFAR networks trained as one: grouped convolutions, one backward.

Why: a ResNet-56 step at batch 128 is ~600 small kernels, so on a GPU its speed is set by
launch latency, not arithmetic (docs/speed.md). Packing N networks of the same
depth into one network whose every layer is *block-diagonal* over the members runs the N
networks with the kernel count of one.

The packed network is N independent copies of ``resnet_nb.models.resnet.CifarResNet`` (He et al.
2016, sec. 4.2), laid out member-major along the channel axis: member ``i`` owns channels
``[i*C, (i+1)*C)`` of every C-channel feature map, so

* every 3x3 convolution is ``Conv2d(N*C_in, N*C_out, groups=N)``: group ``i`` is member
  ``i``'s convolution, and no weight connects two members;
* ``BatchNorm2d(N*C)`` normalises per channel, i.e. per member, over that member's own
  batch (its statistics, affine parameters and running averages are the member's);
* the option-A shortcut (sec. 4.2) subsamples and appends zero channels *per member*, and a
  per-member mask turns the shortcut add off for plain members (plain and residual nets
  differ only in that add, so a plain20 and a resnet20 pack together);
* the head is a per-member linear layer (a batched matmul).

The loss is the sum of the members' mean cross-entropies, so one backward gives every
member exactly the gradient of its own loss, and an element-wise optimiser (SGD with
momentum and weight decay) then takes each member's own step. ``tests/models/test_packed.py``
checks forward, BN statistics, gradients and an SGD step against the standalone models.

The input is ``(N, B, 3, H, W)``: member ``i`` sees its own batch (its own data order and
augmentation, as its seed dictates). A ``(B, 3, H, W)`` input is shared by all members
(evaluation on the test set). The output is ``(N, B, num_classes)``.

Parameter names and order are those of ``CifarResNet``; every tensor of the packed state
dict is the concatenation of the members' tensors along dim 0 (``num_batches_tracked``, a
scalar, is shared), which makes ``member_state_dict`` a slice.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from resnet_nb.models.resnet import STAGES, CifarResNet, blocks_per_stage, he_init_, make_stages

__all__ = [
    "PackedCifarResNet", "PackedShortcutA", "PackedBasicBlock", "PackedLinear", "pack_models",
    "member_state_dict", "split_packed_tensor", "pack_tensors", "check_packable",
    "pack_optimizer_state", "member_optimizer_state",
]


class PackedShortcutA(nn.Module):
    """Option A for N members at once: (B, N*C_in, H, W) -> (B, N*C_out, H/s, W/s).

    Member ``i``'s input channels are subsampled with ``stride`` and followed by
    ``C_out - C_in`` zero channels, exactly as ``models.ShortcutA`` does for one net.
    With ``in_planes == out_planes`` and stride 1 it is the identity.
    """

    def __init__(self, members: int, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        if out_planes < in_planes:
            raise ValueError(f"option A can only add channels; got {in_planes} -> {out_planes}")
        self.members, self.in_planes, self.out_planes, self.stride = members, in_planes, out_planes, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1 and self.in_planes == self.out_planes:
            return x
        channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        x = x[:, :, :: self.stride, :: self.stride]
        x = x.unflatten(1, (self.members, self.in_planes))              # (B, N, C_in, H', W')
        x = F.pad(x, (0, 0, 0, 0, 0, self.out_planes - self.in_planes))  # (B, N, C_out, H', W')
        x = x.flatten(1, 2)                                              # (B, N*C_out, H', W')
        return x.contiguous(memory_format=torch.channels_last) if channels_last else x

    def extra_repr(self) -> str:
        return f"members={self.members}, {self.in_planes}->{self.out_planes}, stride={self.stride}"


class PackedBasicBlock(nn.Module):
    """``models.BasicBlock`` for N members: grouped convs, per-channel BN, masked shortcut.

    y_i = relu(F_i(x_i) + m_i * shortcut(x_i)) with m_i = 1 for residual members and 0 for
    plain ones (the plain block is y = relu(F(x)), sec. 4.2).
    """

    def __init__(self, residual: Sequence[bool], in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        n = len(residual)
        self.members = n
        self.conv1 = nn.Conv2d(n * in_planes, n * planes, 3, stride=stride, padding=1, bias=False, groups=n)
        self.bn1 = nn.BatchNorm2d(n * planes)
        self.conv2 = nn.Conv2d(n * planes, n * planes, 3, stride=1, padding=1, bias=False, groups=n)
        self.bn2 = nn.BatchNorm2d(n * planes)
        self.all_residual, self.any_residual = all(residual), any(residual)
        self.shortcut = PackedShortcutA(n, in_planes, planes, stride) if self.any_residual else None
        if self.any_residual and not self.all_residual:
            mask = torch.tensor([float(r) for r in residual]).repeat_interleave(planes)
            self.register_buffer("shortcut_mask", mask.view(1, n * planes, 1, 1), persistent=False)
        else:
            self.shortcut_mask = None

    def _mask(self, like: torch.Tensor) -> torch.Tensor:
        """The mask in the activations' dtype (bf16 under autocast), made once per dtype so
        that a captured CUDA graph holds no cast kernel."""
        cache = self.__dict__.setdefault("_mask_cache", {})
        key = (like.dtype, like.device)
        if key not in cache:
            cache[key] = self.shortcut_mask.to(device=like.device, dtype=like.dtype)
        return cache[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        if self.shortcut is not None:
            sc = self.shortcut(x)
            if self.shortcut_mask is None:
                out = out + sc
            else:                                  # mixed pack: plain members add 0 * shortcut
                out = torch.addcmul(out, sc, self._mask(sc))
        return F.relu(out)


class PackedLinear(nn.Module):
    """N linear layers ``in_features -> out_features``; weight (N*out, in), bias (N*out,).

    (B, N*in) -> (N, B, out): member ``i``'s features go through member ``i``'s layer.
    """

    def __init__(self, members: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.members, self.in_features, self.out_features = members, in_features, out_features
        self.weight = nn.Parameter(torch.empty(members * out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(members * out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.members
        x = x.view(x.shape[0], n, self.in_features).transpose(0, 1)         # (N, B, in)
        w = self.weight.view(n, self.out_features, self.in_features)        # (N, out, in)
        b = self.bias.view(n, 1, self.out_features)                         # (N, 1, out)
        return torch.baddbmm(b, x, w.transpose(1, 2))                       # (N, B, out)

    def extra_repr(self) -> str:
        return f"members={self.members}, in_features={self.in_features}, out_features={self.out_features}"


class PackedCifarResNet(nn.Module):
    """N CIFAR nets of one depth as one network; ``residual[i]`` says whether member i is a
    ResNet (option-A shortcuts) or a plain net. See the module docstring for the layout."""

    def __init__(self, depth: int, residual: Sequence[bool], num_classes: int = 10) -> None:
        super().__init__()
        n = blocks_per_stage(depth)
        residual = tuple(bool(r) for r in residual)
        if not residual:
            raise ValueError("a pack needs at least one member")
        n_members = len(residual)
        self.depth, self.residual, self.members, self.num_classes = depth, residual, n_members, num_classes
        width = STAGES[0][0]
        self.conv1 = nn.Conv2d(n_members * 3, n_members * width, 3, padding=1, bias=False, groups=n_members)
        self.bn1 = nn.BatchNorm2d(n_members * width)
        self.layer1, self.layer2, self.layer3 = make_stages(
            lambda in_planes, planes, stride: PackedBasicBlock(residual, in_planes, planes, stride), n)
        self.fc = PackedLinear(n_members, STAGES[-1][0], num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He init per member (fan-in of a grouped conv is its per-group fan-in), sec. 3.4."""
        he_init_(self, (nn.Conv2d, PackedLinear))

    @property
    def member_names(self) -> list[str]:
        return [f"{'resnet' if r else 'plain'}{self.depth}" for r in self.residual]

    def pack_input(self, x: torch.Tensor) -> torch.Tensor:
        """(N, B, 3, H, W) per-member batches -> (B, N*3, H, W); (B, 3, H, W) is shared."""
        if x.dim() == 4:
            return x.repeat(1, self.members, 1, 1)
        if x.dim() != 5 or x.shape[0] != self.members:
            raise ValueError(f"expected input (N={self.members}, B, 3, H, W) or (B, 3, H, W); got {tuple(x.shape)}")
        n, b, c, h, w = x.shape
        return x.transpose(0, 1).reshape(b, n * c, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 5 or x.shape[1] == 3:
            x = self.pack_input(x)                           # (B, N*3, H, W)
        x = F.relu(self.bn1(self.conv1(x)))                  # (B, N*16, 32, 32)
        x = self.layer1(x)                                   # (B, N*16, 32, 32)
        x = self.layer2(x)                                   # (B, N*32, 16, 16)
        x = self.layer3(x)                                   # (B, N*64, 8, 8)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)           # (B, N*64)
        return self.fc(x)                                    # (N, B, num_classes)


# --------------------------------------------------------------------------- packing

def check_packable(models: Sequence[CifarResNet]) -> None:
    """Raise ValueError (saying what to do) unless the models can share one pack."""
    if not models:
        raise ValueError("pack_models needs at least one model")
    for m in models:
        if not isinstance(m, CifarResNet):
            raise ValueError(f"only resnet_nb.models.resnet.CifarResNet models can be packed; got {type(m).__name__}")
        if m.residual and m.shortcut_kind != "A":
            raise ValueError(f"{m.name} uses shortcut option {m.shortcut_kind}: packing supports option A "
                             f"only; train it on its own (resnet_nb.training.train.train) or use shortcut='A'")
    depths = sorted({m.depth for m in models})
    if len(depths) > 1:
        raise ValueError(f"members of a pack must have the same depth; got depths {depths} "
                         f"({', '.join(m.name for m in models)}): pack each depth separately")
    classes = {m.fc.out_features for m in models}
    if len(classes) > 1:
        raise ValueError(f"members of a pack must have the same number of classes; got {sorted(classes)}")


def pack_tensors(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Members' tensors -> the packed tensor (concatenated along dim 0; scalars: the first)."""
    if tensors[0].dim() == 0:
        return tensors[0].clone()
    return torch.cat(list(tensors), dim=0)


def split_packed_tensor(t: torch.Tensor, members: int, i: int) -> torch.Tensor:
    """Member ``i``'s part of a packed tensor (a copy); scalars are shared."""
    if t.dim() == 0:
        return t.clone()
    return t.chunk(members, dim=0)[i].clone()


def pack_models(models: Sequence[CifarResNet]) -> PackedCifarResNet:
    """One ``PackedCifarResNet`` whose member ``i`` equals ``models[i]`` (weights, BN state,
    train/eval mode of the first model), on the models' device and dtype."""
    check_packable(models)
    packed = PackedCifarResNet(models[0].depth, [m.residual for m in models], models[0].fc.out_features)
    states = [m.state_dict() for m in models]
    packed.load_state_dict({k: pack_tensors([s[k] for s in states]) for k in states[0]})
    ref = next(models[0].parameters())
    return packed.to(device=ref.device, dtype=ref.dtype).train(models[0].training)


def member_state_dict(packed: PackedCifarResNet, i: int) -> dict[str, torch.Tensor]:
    """Member ``i``'s weights and BN state as a state dict of the ordinary single model
    (``build_model(packed.member_names[i]).load_state_dict(...)`` accepts it)."""
    if not 0 <= i < packed.members:
        raise ValueError(f"member index must be in [0, {packed.members}); got {i}")
    return {k: split_packed_tensor(v.detach(), packed.members, i) for k, v in packed.state_dict().items()}


# --------------------------------------------------------------------------- optimiser state

def pack_optimizer_state(states: Sequence[dict]) -> dict:
    """Members' SGD ``state_dict()``s (of their single models) -> the pack's: the momentum
    buffer of parameter k is the members' buffers concatenated (parameter order is shared)."""
    packed_state = {}
    for k in states[0]["state"]:
        entries = [s["state"].get(k, {}) for s in states]
        if all("momentum_buffer" in e and e["momentum_buffer"] is not None for e in entries):
            packed_state[k] = {"momentum_buffer": pack_tensors([e["momentum_buffer"] for e in entries])}
    return {"state": packed_state, "param_groups": [dict(g) for g in states[0]["param_groups"]]}


def member_optimizer_state(state: dict, members: int, i: int) -> dict:
    """Member ``i``'s part of the pack's SGD ``state_dict()``, loadable by the optimiser of
    the single model (lr stored as a float)."""
    groups = []
    for g in state["param_groups"]:
        g = dict(g)
        if torch.is_tensor(g.get("lr")):
            g["lr"] = float(g["lr"])
        groups.append(g)
    return {"state": {k: {n: split_packed_tensor(t, members, i) if torch.is_tensor(t) else t
                          for n, t in v.items()} for k, v in state["state"].items()},
            "param_groups": groups}
