"""The CUDA fast path: the same SGD step, with less launch overhead per image.

These nets are small: at batch 128 a ResNet-56 step is ~600 tiny kernels, so an eager GPU
step is bound by kernel-launch latency, not arithmetic (DESIGN.md, "Speed facts"). The
levers, none of which changes the mathematics of the recipe (sec. 4.2):

* the data already lives on the device and is augmented there in batches (``resnet_nb.data``);
* ``precision="bf16"``: autocast to bfloat16 for convolutions and matmuls, fp32 master
  weights, fp32 loss and BN statistics (``autocast``);
* channels_last activations and fused SGD (``make_optimizer``);
* the whole step (forward, backward, SGD update) captured once in a CUDA graph and replayed
  (``TrainStep``). The learning rate lives in a device tensor that the graph reads, so an lr
  change is a ``fill_`` and never a recapture. Capture runs 3 warm-up steps on the first
  batch and then restores weights, BN state and momentum buffers, so the run's mathematics
  are those of the eager loop. Momentum buffers start as zeros, which with dampening 0 is
  exactly SGD's first step (buf = grad);
* a batch of another shape (the last, partial batch of an epoch: 50000 = 390 x 128 + 80)
  runs eagerly on the same weights and optimiser: no image is dropped, the recipe and the
  iteration count per epoch are unchanged;
* packing same-depth models into one grouped network (``resnet_nb.packed``): ``plan_packs``
  decides which configs share a pack (same depth and recipe; on CUDA by default) and
  ``train_pack`` trains one, each member into its own run directory, with the data order
  and augmentation its own seed gives it in ``train.train`` (``PackBatcher``).

On a device without CUDA the same API runs eagerly. Where capture fails, a warning says so
and the run continues eagerly. ``RESNET_NB_CUDA_GRAPHS=0`` turns capture off (eager
reference runs on a GPU, e.g. ``scripts/device_check.sh``).
"""
from __future__ import annotations

import contextlib
import copy
import os
import warnings
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from resnet_nb import config as _config
from resnet_nb import data as D

__all__ = [
    "PRECISIONS", "check_precision", "autocast", "make_optimizer", "prepare_model",
    "TrainStep", "member_losses", "draw_crop_flip", "PackBatcher", "WARMUP_STEPS", "set_lr",
    "lr_in_tensor", "ConcurrentSteps", "plan_packs", "train_pack", "evaluate_pack", "PACK_FREE_FIELDS",
]

# the precisions TrainConfig accepts; this module implements bf16
PRECISIONS = _config.PRECISIONS
AUTOCAST_DTYPES = {"bf16": torch.bfloat16}
WARMUP_STEPS = 3  # eager steps before capture (cuDNN autotuning, lazy init), then undone


def check_precision(precision: str, device: torch.device | str) -> None:
    """One-line ValueError unless ``precision`` can run on ``device``.

    bf16 needs a GPU with bfloat16 arithmetic (compute capability 8.0+: A100, H100, ...);
    on the CPU torch's CPU autocast provides it (slowly: it is for testing the API).
    """
    device = torch.device(device)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"precision bf16 needs a GPU with bfloat16 support (compute capability 8.0+); "
                         f"{torch.cuda.get_device_name(device)} has none: use --precision fp32")


def autocast(precision: str, device: torch.device | str):
    """Context of the forward pass: bf16 autocast, or nothing for fp32. The autocast weight
    cache is off, as CUDA-graph capture requires."""
    device = torch.device(device)
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=AUTOCAST_DTYPES[precision], cache_enabled=False)


def make_optimizer(params, lr: float, momentum: float, weight_decay: float,
                   device: torch.device | str) -> torch.optim.SGD:
    """SGD with momentum and weight decay (every parameter, as the paper and the seed
    report do); the fused CUDA kernel on a GPU (one launch per step instead of ~3 per tensor)."""
    kw = dict(lr=lr, momentum=momentum, weight_decay=weight_decay)
    if torch.device(device).type == "cuda":
        try:
            return torch.optim.SGD(params, fused=True, **kw)
        except (TypeError, RuntimeError) as e:  # a torch without fused SGD
            warnings.warn(f"fused SGD unavailable ({e}); using the default SGD kernel", RuntimeWarning)
    return torch.optim.SGD(params, **kw)


def prepare_model(model: nn.Module, device: torch.device | str) -> nn.Module:
    """Move to ``device``; channels_last on CUDA (cuDNN's fast layout for these convs)."""
    device = torch.device(device)
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if device.type == "cuda" else model


def member_losses(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits (N, B, K) of a pack (or (B, K) of one model), labels (N, B) (or (B,)).

    Returns (loss to minimise: sum of the members' mean cross-entropies, per-member summed
    loss (N,) or 0-d, per-member correct count (N,) or 0-d). fp32 loss under any autocast.
    """
    if logits.dtype in (torch.float16, torch.bfloat16):    # autocast output: loss in fp32
        logits = logits.float()
    if logits.dim() == 2:
        loss = F.cross_entropy(logits, y)
        return loss, loss.detach() * y.numel(), (logits.detach().argmax(1) == y).sum()
    n, b, k = logits.shape
    per = F.cross_entropy(logits.reshape(n * b, k), y.reshape(-1), reduction="none").view(n, b)
    return per.mean(1).sum(), per.detach().sum(1), (logits.detach().argmax(-1) == y).sum(1)


class TrainStep:
    """One SGD step of ``model`` (a CifarResNet on (B, 3, H, W) or a PackedCifarResNet on
    (N, B, 3, H, W)), usable as ``resnet_nb.train``'s ``step(model, optimizer, x, y)``.

    Returns device tensors without a host sync: the summed loss of the batch and the number
    of correct predictions (0-d for one model, (N,) for a pack). With ``graph`` (default:
    on CUDA) the first full batch triggers capture; later batches of that shape replay the
    graph; other shapes run eagerly. ``model`` and ``optimizer`` passed to a call must be
    the ones given here (the graph holds their tensors).
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, precision: str = "fp32",
                 graph: bool | None = None) -> None:
        self.model, self.optimizer, self.precision = model, optimizer, precision
        self.device = next(model.parameters()).device
        check_precision(precision, self.device)
        if graph is None:  # default: graphs on CUDA, unless RESNET_NB_CUDA_GRAPHS=0 (eager reference runs)
            graph = self.device.type == "cuda" and os.environ.get("RESNET_NB_CUDA_GRAPHS", "1") != "0"
        self.graph_wanted = bool(graph)
        if self.device.type == "cuda":  # let cuDNN time its kernels for these shapes once (warm-up)
            torch.backends.cudnn.benchmark = True
        if self.graph_wanted and self.device.type != "cuda":
            raise ValueError("CUDA-graph capture needs a CUDA device; use graph=False on the CPU")
        self.graph: torch.cuda.CUDAGraph | None = None
        self.captures = 0            # successful captures (tests and the bench read it)
        self.eager_steps = 0
        self.lr_tensor: torch.Tensor | None = None

    # ------------------------------------------------------------------ eager
    def _forward_backward(self, x: torch.Tensor, y: torch.Tensor):
        with autocast(self.precision, self.device):
            logits = self.model(x)
        loss, loss_sum, correct = member_losses(logits, y)
        loss.backward()
        return loss_sum, correct

    def eager(self, x: torch.Tensor, y: torch.Tensor):
        """The step without a graph (CPU, fallback, batches of another shape)."""
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum, correct = self._forward_backward(x, y)
        self.optimizer.step()
        self.eager_steps += 1
        return loss_sum, correct

    # ------------------------------------------------------------------ graph
    def _state_tensors(self) -> list[torch.Tensor]:
        """Everything a step mutates: parameters, buffers (BN), momentum buffers."""
        ts = [p.data for p in self.model.parameters()] + list(self.model.buffers())
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                buf = self.optimizer.state.get(p, {}).get("momentum_buffer")
                if buf is not None:
                    ts.append(buf)
        return ts

    def _align_momentum(self) -> None:
        """Momentum buffers with their parameter's strides (channels_last weights; a
        resumed buffer may come contiguous): the fused kernel wants matching layouts."""
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                st = self.optimizer.state.get(p, {})
                buf = st.get("momentum_buffer")
                if buf is not None and buf.stride() != p.stride():
                    st["momentum_buffer"] = torch.empty_like(p).copy_(buf)

    def _lr_to_tensor(self) -> None:
        self.lr_tensor = lr_in_tensor(self.optimizer, self.device)

    def _lr_to_float(self) -> None:
        for group in self.optimizer.param_groups:
            if torch.is_tensor(group["lr"]):
                group["lr"] = float(group["lr"])
        self.lr_tensor = None

    def _prepare_capture(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Zero momentum buffers, lr in a tensor, static input buffers holding (x, y)."""
        opt = self.optimizer
        for group in opt.param_groups:
            if group.get("momentum", 0) and group.get("dampening", 0):
                raise ValueError("graph capture assumes SGD dampening 0 (zero-initialised momentum)")
            for p in group["params"]:            # zeros == SGD's first step with dampening 0
                opt.state[p].setdefault("momentum_buffer", torch.zeros_like(p, memory_format=torch.preserve_format))
        self._align_momentum()
        self._lr_to_tensor()
        if x.dim() == 5:                         # pack: input buffer in the network's layout
            n, b, c, h, w = x.shape
            self.static_x = torch.empty(b, n * c, h, w, device=self.device, dtype=x.dtype,
                                        memory_format=torch.channels_last)
            self._static_in = self.static_x.unflatten(1, (n, c)).permute(1, 0, 2, 3, 4)  # (N, B, C, H, W) view
        else:
            self.static_x = torch.empty_like(x, memory_format=torch.channels_last)
            self._static_in = self.static_x
        self._static_in.copy_(x)
        self.static_y = y.clone()
        self._in_shape, self._y_shape = tuple(x.shape), tuple(y.shape)

    def _warmup(self) -> None:
        """WARMUP_STEPS eager steps on a side stream (cuDNN autotuning, lazy allocations),
        then every mutated tensor is restored: the run's mathematics are the eager loop's."""
        saved = [t.detach().clone() for t in self._state_tensors()]
        cur = torch.cuda.current_stream(self.device)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(cur)
        with torch.cuda.stream(side):
            for _ in range(WARMUP_STEPS):
                self.optimizer.zero_grad(set_to_none=True)
                self._forward_backward(self.static_x, self.static_y)
                self.optimizer.step()
        cur.wait_stream(side)
        with torch.no_grad():
            for t, s in zip(self._state_tensors(), saved):
                t.copy_(s)
        self.optimizer.zero_grad(set_to_none=True)   # capture starts with no gradients

    def _capture(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self._prepare_capture(x, y)
        self._warmup()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.static_loss, self.static_correct = self._graph_body()
        self.graph = graph
        self.captures += 1

    def fits(self, x: torch.Tensor, y: torch.Tensor) -> bool:
        """Whether (x, y) have the captured shapes."""
        return tuple(x.shape) == self._in_shape and tuple(y.shape) == self._y_shape

    def _graph_body(self):
        """What the graph holds: forward, backward and SGD update on the static buffers (the
        gradients are None when capture starts, so every replay writes them afresh)."""
        loss_sum, correct = self._forward_backward(self.static_x, self.static_y)
        self.optimizer.step()
        return loss_sum, correct

    def _try_capture(self, x, y) -> None:
        # the whole state before any warm-up: model tensors (restored in place) and the
        # optimiser's state dict (momentum buffers may not exist yet and must not after)
        model_saved = [(t, t.detach().clone()) for t in
                       [p.data for p in self.model.parameters()] + list(self.model.buffers())]
        opt_saved = copy.deepcopy(self.optimizer.state_dict())
        try:
            self._capture(x, y)
        except Exception as e:  # noqa: BLE001 - any capture failure: warn, continue eagerly
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            with torch.no_grad():
                for t, s in model_saved:
                    t.copy_(s)
            self.optimizer.state.clear()
            self.optimizer.load_state_dict(opt_saved)
            self.graph, self.graph_wanted = None, False
            self._lr_to_float()
            self._align_momentum()
            self.optimizer.zero_grad(set_to_none=True)
            warnings.warn(f"CUDA-graph capture of the training step failed ({type(e).__name__}: "
                          f"{str(e)[:200]}); training continues eagerly (same mathematics, slower)",
                          RuntimeWarning)

    def __call__(self, model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor,
                 y: torch.Tensor):
        if model is not self.model or optimizer is not self.optimizer:
            raise ValueError("TrainStep was built for another model/optimizer")
        if self.graph is None and self.captures == 0 and self.eager_steps == 0:
            self._align_momentum()
            self._lr_to_float()              # a resumed optimiser may bring a CPU lr tensor
        if self.graph_wanted and self.graph is None:
            self._try_capture(x, y)
        if self.graph is not None and self.fits(x, y):
            self._static_in.copy_(x)
            self.static_y.copy_(y)
            self.graph.replay()
            return self.static_loss.clone(), self.static_correct.clone()
        return self.eager(x, y)


class ConcurrentSteps:
    """Experimental, used by ``resnet-nb bench --concurrent`` only: several ``TrainStep``s
    (e.g. the depth-20 and the depth-56 pack) captured in *one* CUDA graph whose branches
    run on their own streams, so that the GPU can overlap their small kernels.

    Each branch is exactly its step's graph body; only the scheduling differs. A batch of
    another shape runs every step eagerly. Not used by training (yet): a GPU session
    measures first whether it pays off.
    """

    def __init__(self, steps: Sequence[TrainStep]) -> None:
        self.steps, self.graph = list(steps), None      # CUDA only (the capture needs it)

    def _capture(self, batches) -> None:
        for st, (x, y) in zip(self.steps, batches):
            st._prepare_capture(x, y)
            st._warmup()
        dev = self.steps[0].device
        streams = [torch.cuda.Stream(dev) for _ in self.steps]
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            cur = torch.cuda.current_stream(dev)
            for s in streams:                    # fork ...
                s.wait_stream(cur)
            for st, s in zip(self.steps, streams):
                with torch.cuda.stream(s):
                    st.static_loss, st.static_correct = st._graph_body()
            for s in streams:                    # ... and join before the capture ends
                cur.wait_stream(s)
        self.graph = graph

    def __call__(self, batches):
        """batches: one (x, y) per step, in order; returns one (loss_sum, correct) per step."""
        if self.graph is None:
            self._capture(batches)
        if not all(st.fits(x, y) for st, (x, y) in zip(self.steps, batches)):
            return [st.eager(x, y) for st, (x, y) in zip(self.steps, batches)]
        for st, (x, y) in zip(self.steps, batches):
            st._static_in.copy_(x)
            st.static_y.copy_(y)
        self.graph.replay()
        return [(st.static_loss.clone(), st.static_correct.clone()) for st in self.steps]


def lr_in_tensor(optimizer: torch.optim.Optimizer, device: torch.device | str) -> torch.Tensor:
    """Move lr into one float32 device tensor shared by every param group; returns it.

    A captured step reads the lr from this tensor's memory, so ``set_lr`` (a ``fill_``)
    changes the lr of later replays without a recapture. (fp32 is also what the fused
    kernel computes with when given a Python float.)"""
    lr = optimizer.param_groups[0]["lr"]
    t = torch.tensor(float(lr), dtype=torch.float32, device=device)
    for group in optimizer.param_groups:
        group["lr"] = t
    return t


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Write ``lr`` into every param group: in place when it lives in a (graph-read) tensor."""
    for group in optimizer.param_groups:
        if torch.is_tensor(group["lr"]):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


# --------------------------------------------------------------------------- pack data

def draw_crop_flip(n: int, generator: torch.Generator, pad: int = D.PAD):
    """The random draws of ``data.random_crop_flip`` for ``n`` images, in its order (top,
    left, flip), so a member of a pack sees the augmentation its standalone run would."""
    dev = generator.device
    top = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=dev)
    left = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=dev)
    flip = torch.rand(n, generator=generator, device=dev) < 0.5
    return top, left, flip


class PackBatcher:
    """Per-member data order and augmentation for a pack, batched into one crop/flip call.

    Member ``i`` draws from ``generators[i]`` exactly the calls that ``resnet_nb.train``'s
    standalone loop makes (a permutation per epoch; top/left/flip per batch), so each member
    sees the batches of its own seed. ``batches()`` yields (x (N, B, 3, H, W) uint8 augmented,
    y (N, B)) for one epoch; the last batch may be smaller.
    """

    def __init__(self, train_x: torch.Tensor, train_y: torch.Tensor, batch_size: int,
                 generators: Sequence[torch.Generator]) -> None:
        self.x, self.y, self.batch_size, self.generators = train_x, train_y, batch_size, list(generators)

    def batches(self):
        n = self.x.shape[0]
        orders = [torch.randperm(n, generator=g, device=g.device) for g in self.generators]
        perm = torch.stack(orders).to(self.x.device)                        # (N, n)
        members = len(self.generators)
        for i in range(0, n, self.batch_size):
            idx = perm[:, i:i + self.batch_size]                            # (N, B)
            b = idx.shape[1]
            draws = [draw_crop_flip(b, g) for g in self.generators]
            top, left, flip = (torch.cat([d[k] for d in draws]).to(self.x.device) for k in range(3))
            x = D.crop_flip(self.x[idx.reshape(-1)], top, left, flip)      # (N*B, 3, H, W)
            yield x.view(members, b, *x.shape[1:]), self.y[idx]


# --------------------------------------------------------------------------- packed training

# TrainConfig fields that may differ between members of one pack: everything else (the
# recipe, the data, the device) must be equal, and the depth too.
PACK_FREE_FIELDS = ("model", "seed", "run_name")


def plan_packs(cfgs: Sequence, pack: bool | None = None) -> list[list[int]]:
    """Group ``cfgs`` (indices) into packs: same depth and same recipe, option-A shortcuts.

    ``pack=None`` packs on CUDA only; ``True`` packs on any device; ``False`` never. A
    residual config with shortcut B trains on its own (packing supports option A only).
    """
    from dataclasses import asdict

    from resnet_nb.models import parse_model_name
    from resnet_nb.train import resolve_device

    groups: dict = {}
    for i, c in enumerate(cfgs):
        family, depth = parse_model_name(c.model)
        dev = resolve_device(c.device)
        want = (dev.type == "cuda") if pack is None else pack
        if want and family == "resnet" and c.shortcut != "A":
            print(f"{c.run_name or c.model}: shortcut {c.shortcut} cannot be packed (option A only); "
                  f"it trains on its own", flush=True)
            want = False
        if want:
            key = (depth, dev.type, tuple((k, v) for k, v in sorted(asdict(c).items())
                                          if k not in PACK_FREE_FIELDS))
        else:
            key = ("alone", i)
        groups.setdefault(key, []).append(i)
    return list(groups.values())


class _StateOf:
    """Something with a ``state_dict()`` (a member's slice of the pack), for train._last_state."""

    def __init__(self, state: dict) -> None:
        self._state = state

    def state_dict(self) -> dict:
        return self._state


@torch.no_grad()
def evaluate_pack(packed: nn.Module, x: torch.Tensor, y: torch.Tensor, data, precision: str = "fp32",
                  batch_size: int = 1000) -> tuple[list[float], list[float]]:
    """Per-member mean cross-entropy and top-1 accuracy on uint8 images x (n, 3, 32, 32)
    (every member sees the same images, like ``train.evaluate`` for one model)."""
    packed.eval()
    n_members = packed.members
    loss = torch.zeros(n_members, device=x.device)
    correct = torch.zeros(n_members, device=x.device, dtype=torch.long)
    for i in range(0, x.shape[0], batch_size):
        with autocast(precision, x.device):
            logits = packed(data.normalize(x[i:i + batch_size]))          # (N, B, K)
        yb = y[i:i + batch_size].expand(n_members, -1)                    # (N, B)
        _, loss_sum, corr = member_losses(logits, yb)
        loss += loss_sum
        correct += corr
    n = x.shape[0]
    return (loss / n).tolist(), (correct.double() / n).tolist()


def train_pack(cfgs: Sequence, restart: bool = False, train_one=None) -> list:
    """Train same-depth configs as one packed network; each member writes its own run dir
    under the contract of ``resnet_nb.train`` (checkpoints load into the single model, and
    ``train(cfg)`` or a later pack resumes them). Returns the run dirs in ``cfgs`` order.

    Members that already finished are skipped; members whose checkpoints stopped at
    different epochs (or a single member left) are trained one by one with ``train_one``
    (default ``train.train``). Run ids must already be resolved (``train_many`` does it).
    When another process wrote to a member's run dir while the data loaded, the locks are
    released and the pack is planned again from what the run dirs hold now.
    """
    from resnet_nb import train as T

    train_one = train_one or (lambda c, restart: T.train(c, restart=restart))
    device = T.resolve_device(cfgs[0].device)
    check_precision(cfgs[0].precision, device)
    data = None
    while True:
        seen = [T._inspect_run(c, device, restart) for c in cfgs]
        paths = [s.run_dir for s in seen]
        todo = [i for i, s in enumerate(seen) if not s.finished]
        starts = {(seen[i].ckpt or {}).get("epoch", 0) for i in todo}
        if len(todo) <= 1 or len(starts) > 1:
            if len(starts) > 1:
                print(f"pack {', '.join(cfgs[i].run_name for i in todo)}: the members' checkpoints are at "
                      f"different epochs {sorted(starts)}; training them one by one", flush=True)
            for i in todo:
                paths[i] = train_one(cfgs[i], restart)
            return paths
        members = [cfgs[i] for i in todo]
        data = data or T.prepare_data(members[0], device)   # same data for every member
        for i in todo:
            T._check_fingerprint(paths[i], seen[i].ckpt, data)
        locks = []
        try:
            now = []
            for i in todo:
                lock, s = T._claim_run(cfgs[i], device, restart, seen[i])
                locks.append(lock)
                now.append(s)
            if any(s.state != seen[i].state for s, i in zip(now, todo)):
                print(f"pack {', '.join(c.run_name for c in members)}: a run dir changed while the "
                      f"data loaded (another process trained into it); planning the pack again", flush=True)
                continue                          # the finally below releases the locks first
            _train_pack_locked(T, members, device, data, [paths[i] for i in todo],
                               [seen[i].ckpt for i in todo], [seen[i].meta_old for i in todo])
        finally:
            for lock in locks:
                if lock is not None:
                    lock.release()
        return paths


def _train_pack_locked(T, cfgs, device, data, run_dirs, ckpts, metas_old) -> None:
    import math
    import sys
    import time
    from dataclasses import asdict

    from resnet_nb.models import build_model, count_parameters
    from resnet_nb.packed import member_optimizer_state, pack_models, pack_optimizer_state
    from resnet_nb.runs import (BEST_FILE, CONFIG_FILE, LAST_FILE, METRICS_FILE, NoSpaceError,
                                atomic_save, atomic_write_json, is_no_space, process_info)
    from resnet_nb.train import no_space_message, record_status

    n, c0 = len(cfgs), cfgs[0]
    singles = []
    for c, ck in zip(cfgs, ckpts):
        torch.manual_seed(c.seed)                                   # He init of this member's seed
        m = build_model(c.model, c.shortcut)
        if ck is not None:
            m.load_state_dict(ck["model"])
        singles.append(m)
    params = count_parameters(singles[0])
    packed = prepare_model(pack_models(singles), device)
    del singles
    opt = make_optimizer(packed.parameters(), c0.lr, c0.momentum, c0.weight_decay, device)
    if ckpts[0] is not None:
        opt.load_state_dict(pack_optimizer_state([ck["optimizer"] for ck in ckpts]))
        torch.set_rng_state(ckpts[0]["rng"]["torch"])
    step = TrainStep(packed, opt, c0.precision)
    gens = [torch.Generator(device=device).manual_seed(c.seed + T.DATA_SEED_OFFSET) for c in cfgs]
    for g, ck in zip(gens, ckpts):
        if ck is not None:
            g.set_state(ck["rng"]["data"])
    batcher = PackBatcher(data.train_x, data.train_y, c0.batch_size, gens)
    ipe = T.iters_per_epoch(data.train_x.shape[0], c0.batch_size)
    n_epochs = T.planned_epochs(c0, ipe)
    names = [c.run_name for c in cfgs]

    st = [{"best_acc": -1.0, "best_epoch": 0, "metrics": [], "alive": True, "saved": 0} for _ in cfgs]
    epoch, iteration = 0, 0
    if ckpts[0] is not None:
        epoch, iteration = ckpts[0]["epoch"], ckpts[0]["iteration"]
        for s, ck in zip(st, ckpts):
            s.update(best_acc=ck["best_acc"], best_epoch=ck["best_epoch"], metrics=list(ck["metrics"]),
                     saved=ck["epoch"])                 # saved: the epoch last.pth holds
    env = T._environment(device)
    metas = []
    for i, (c, rd, old) in enumerate(zip(cfgs, run_dirs, metas_old)):
        s = st[i]
        meta = {"config": asdict(c), "preset": c.preset, "environment": env, "dataset": data.info,
                "status": "running", "start_time": T._now(), "end_time": None, "params": params,
                "iters_per_epoch": ipe, "epochs_planned": n_epochs,
                "best_test_acc": s["best_acc"] if s["best_epoch"] else None,
                "best_epoch": s["best_epoch"] or None, "error": None, "resumed": [],
                "packed_with": names, "pack_index": i, **process_info()}
        if old is not None:
            meta["start_time"] = old.get("start_time") or meta["start_time"]
            meta["resumed"] = list(old.get("resumed", [])) + [{"time": T._now(), "epoch": epoch}]
        metas.append(meta)
    kind = "synthetic data" if c0.dataset == "synthetic" else f"{data.info['provenance']} CIFAR-10"
    print(f"pack of {n} ({', '.join(names)}): {'resuming after epoch %d' % epoch if ckpts[0] else 'starting'}; "
          f"{params:,} params each, {kind}, {device}, {c0.precision}, graph={'on' if step.graph_wanted else 'off'}, "
          f"{n_epochs} epochs x {ipe} iterations", flush=True)

    def finish(i, status, error=None):
        s = st[i]
        metas[i].update(status=status, end_time=T._now(), error=error,
                        best_test_acc=s["best_acc"] if s["best_epoch"] else None,
                        best_epoch=s["best_epoch"] or None)
        record_status(run_dirs[i], metas[i])

    def alive():
        return [i for i in range(n) if st[i]["alive"]]

    stop = c0.max_iters or math.inf
    elapsed = st[0]["metrics"][-1]["elapsed"] if st[0]["metrics"] else 0.0
    try:
        for rd, meta, s in zip(run_dirs, metas, st):
            atomic_write_json(rd / CONFIG_FILE, meta)
            atomic_write_json(rd / METRICS_FILE, s["metrics"])
        while epoch < n_epochs and iteration < stop and alive():
            t0 = time.perf_counter()
            e = epoch + 1
            packed.train()
            losses, corrects, it, lr, images = [], [], iteration, c0.lr, 0
            for x, y in batcher.batches():
                if it >= stop:
                    break
                lr = T.lr_at(c0, it, ipe)
                T.set_lr(opt, lr)
                loss_sum, correct = step(packed, opt, data.normalize(x), y)
                losses.append(loss_sum)
                corrects.append(correct)
                images += y.shape[1]
                it += 1
            train_loss = (torch.stack(losses).sum(0) / images).tolist()           # (N,)
            train_acc = (torch.stack(corrects).sum(0).double() / images).tolist()
            last = e == n_epochs or it >= stop
            test = val = None
            if e % c0.eval_every == 0 or last:
                test = evaluate_pack(packed, data.test_x, data.test_y, data, c0.precision)
                if data.val_x is not None:
                    val = evaluate_pack(packed, data.val_x, data.val_y, data, c0.precision)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            dt = time.perf_counter() - t0          # the pack's epoch: shared by its members
            elapsed += dt
            epoch, iteration = e, it
            model_sd, opt_sd = packed.state_dict(), opt.state_dict()
            for i in alive():
                s = st[i]
                record = {"epoch": e, "iteration": it, "train_loss": train_loss[i], "train_acc": train_acc[i],
                          "test_loss": test[0][i] if test else None, "test_acc": test[1][i] if test else None,
                          "lr": lr}
                if data.val_x is not None:
                    record["val_loss"], record["val_acc"] = (val[0][i], val[1][i]) if val else (None, None)
                record["time"], record["elapsed"] = dt, elapsed
                bad = [k for k in ("train_loss", "test_loss", "val_loss")
                       if record.get(k) is not None and not math.isfinite(record[k])]
                if bad:
                    msg = (f"{names[i]}: the {bad[0].replace('_', ' ')} became {record[bad[0]]} at epoch {e}; "
                           f"the member stops and keeps its last good checkpoint and metrics (the rest of "
                           f"the pack trains on; try a lower --lr or --warmup-iters)")
                    print(f"{names[i]}: FAILED: {msg}", file=sys.stderr, flush=True)
                    finish(i, "failed", msg)
                    s["alive"] = False
                    continue
                s["metrics"].append(record)
                atomic_write_json(run_dirs[i] / METRICS_FILE, s["metrics"])
                member = _StateOf({k: split_packed(v, n, i) for k, v in model_sd.items()})
                if record["test_acc"] is not None and record["test_acc"] > s["best_acc"]:
                    s["best_acc"], s["best_epoch"] = record["test_acc"], e
                    atomic_save({"model": member.state_dict(), "config": asdict(cfgs[i]), "epoch": e,
                                 "iteration": it, "test_acc": s["best_acc"],
                                 "normalization": T._norm_state(data)}, run_dirs[i] / BEST_FILE)
                atomic_save(T._last_state(cfgs[i], member, _StateOf(member_optimizer_state(opt_sd, n, i)),
                                          gens[i], device, data, e, it, s["best_acc"], s["best_epoch"],
                                          s["metrics"]), run_dirs[i] / LAST_FILE)
                s["saved"] = e
                print(T._summary_line(names[i], record, n_epochs), flush=True)
    except OSError as err:
        if not is_no_space(err):
            for i in alive():
                finish(i, "failed", f"{type(err).__name__}: {err}")
            raise
        msgs = {i: no_space_message(err, st[i]["saved"], run_dirs[i]) for i in alive()}
        for i, msg in msgs.items():
            finish(i, "failed", msg)
        if not msgs:
            raise
        raise NoSpaceError(msgs[min(msgs)] if len(set(msgs.values())) == 1 else "; ".join(
            f"{names[i]}: {m}" for i, m in msgs.items()), err.filename) from None
    except KeyboardInterrupt:
        for i in alive():
            finish(i, "interrupted", f"interrupted during epoch {epoch + 1}; last.pth holds epoch {epoch}; "
                                     f"rerun the same command to resume")
        raise
    except BaseException as err:
        for i in alive():
            finish(i, "failed", f"{type(err).__name__}: {err}")
        raise
    for i in alive():
        finish(i, "finished")
        s = st[i]
        best = f"best test acc {s['best_acc']:.4f} at epoch {s['best_epoch']}" if s["best_epoch"] else "no evaluation"
        print(f"{names[i]}: finished {epoch} epochs, {iteration} iterations, {best}; "
              f"{elapsed:.1f} s (packed with {n - 1} other{'s' if n > 2 else ''}); {run_dirs[i]}", flush=True)


def split_packed(t: torch.Tensor, members: int, i: int) -> torch.Tensor:
    """Member ``i``'s slice of a packed state tensor, on the CPU (for checkpoints)."""
    from resnet_nb.packed import split_packed_tensor
    return split_packed_tensor(t.detach(), members, i)
