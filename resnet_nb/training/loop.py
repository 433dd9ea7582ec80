"""The training loop of N >= 1 members at once: one model, or a pack.

A single run is the one-member case of the same loop: the same data stream
(``batches.PackBatcher``: each member its own seeded generator, so a member of a pack sees the
batches of its standalone run), step, evaluation, run-dir writes (``run_writer.RunWriter``) and
divergence rule. A pack is stepped as its configs' ``pack_mode`` says: ``grouped`` (default: the
same-depth members as one ``PackedCifarResNet``) or ``branches`` (a network and a ``TrainStep``
each, stepped together by ``step.ConcurrentSteps``); either way each member takes exactly the
steps of its standalone run and writes its own run dir, so any mode resumes it. Divergence: a
member whose training or test loss is NaN or infinite in an epoch stops (``failed``, last good
checkpoint kept) and the others train on. ``Budget``: the time budget; an epoch starts only when
the estimate from the last one fits, and a run stopped so is ``paused`` and resumable. What ran
(captures, graph and eager steps, fallbacks) goes into every member's config.json.
"""
from __future__ import annotations

import math
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import NamedTuple, Sequence

import torch
from torch import nn

from resnet_nb.data import augment
from resnet_nb.models.packed import (
    PackedCifarResNet,
    member_optimizer_state,
    member_state_dict,
    pack_models,
    pack_optimizer_state,
)
from resnet_nb.models.resnet import CifarResNet, build_model, count_parameters, parse_model_name
from resnet_nb.runs.environment import collect
from resnet_nb.runs.rundir import NoSpaceError, is_no_space
from resnet_nb.training.batches import PackBatcher, evaluate_pack
from resnet_nb.training.budget import Budget, clock
from resnet_nb.training.config import LEGACY_PRECISION
from resnet_nb.training.evaluation import EVAL_BATCH, EvalForward
from resnet_nb.training.precision import check_precision, settle_precision
from resnet_nb.training.prepare import DATA_SEED_OFFSET, PreparedData, prepare_data, resolve_device
from resnet_nb.training.run_writer import RunWriter, check_fingerprint, inspect_run
from resnet_nb.training.schedule import iters_per_epoch, lr_at, make_optimizer, planned_epochs, set_lr
from resnet_nb.training.step import ConcurrentSteps, TrainStep, prepare_model

__all__ = ["PACK_FREE_FIELDS", "plan_packs", "train_pack", "Trained", "EVAL_BATCH"]

# TrainConfig fields that may differ between members of one pack: everything else (the
# recipe, the data, the device, the pack mode) must be equal, and in a grouped pack the depth too.
PACK_FREE_FIELDS = ("model", "seed", "run_name")


def plan_packs(cfgs: Sequence, pack: bool | None = None) -> list[list[int]]:
    """Group ``cfgs`` (indices) into packs: same recipe (and ``pack_mode``); in a grouped
    pack the same depth and option-A shortcuts, in branches mode any depths and shortcuts.

    ``pack=None`` packs on CUDA only; ``True`` packs on any device; ``False`` never. A
    residual config with shortcut B trains on its own in grouped mode (grouped packing
    supports option A only).
    """
    groups: dict = {}
    for i, c in enumerate(cfgs):
        family, depth = parse_model_name(c.model)
        dev = resolve_device(c.device)
        want = (dev.type == "cuda") if pack is None else pack
        branches = c.pack_mode == "branches"
        if want and not branches and family == "resnet" and c.shortcut != "A":
            print(f"{c.run_name or c.model}: shortcut {c.shortcut} cannot be packed (option A only); "
                  f"it trains on its own", flush=True)
            want = False
        if want:
            key = (None if branches else depth, dev.type,
                   tuple((k, v) for k, v in sorted(asdict(c).items()) if k not in PACK_FREE_FIELDS))
        else:
            key = ("alone", i)
        groups.setdefault(key, []).append(i)
    return list(groups.values())


class Trained(NamedTuple):
    """A member's run dir, why it stopped when its loss became NaN/inf (else None), and why
    the time budget paused it (else None)."""

    run_dir: Path
    diverged: str | None = None
    paused: str | None = None


def train_pack(cfgs: Sequence, restart: bool = False, budget: Budget | None = None) -> list[Trained]:
    """Train same-depth configs (one or more) together; each writes its own run dir under
    the contract of ``resnet_nb.runs.rundir``. Returns one ``Trained`` per config, in order.

    Members that already finished are skipped; members whose checkpoints stopped at
    different epochs are trained one by one. Run ids must already be resolved
    (``train.resolve_run_ids``). When another process wrote to a member's run dir while
    the data loaded, the locks are released and the members are looked at again.
    ``budget``: the process's time budget (default: ``cfgs[0].time_budget`` from now).
    """
    budget = budget if budget is not None else Budget(cfgs[0].time_budget)
    device = resolve_device(cfgs[0].device)
    data = None
    while True:
        seen = [inspect_run(c, device.type, restart) for c in cfgs]
        cfgs = [_settle_precision(c, s, device) for c, s in zip(cfgs, seen)]
        for c in cfgs:
            check_precision(c.precision, device)
        out = [Trained(s.run_dir) for s in seen]
        todo = [i for i, s in enumerate(seen) if not s.finished]
        starts = {(seen[i].ckpt or {}).get("epoch", 0) for i in todo}
        if len(starts) > 1:
            print(f"pack {', '.join(cfgs[i].run_name for i in todo)}: the members' checkpoints are at "
                  f"different epochs {sorted(starts)}; training them one by one", flush=True)
            for i in todo:
                out[i] = train_pack([cfgs[i]], restart, budget)[0]
            return out
        if not todo:
            return out
        data = data or prepare_data(cfgs[todo[0]], device)   # same data for every member
        for i in todo:
            check_fingerprint(seen[i], data.info["fingerprint"])
        writers: list[RunWriter] = []
        try:
            for i in todo:
                writers.append(RunWriter.claim(cfgs[i], device.type, restart, seen[i]))
            if any(w.seen.state != seen[i].state for w, i in zip(writers, todo)):
                continue              # another process trained into a run dir: look again
            diverged, paused = _train_claimed(writers, device, data, budget)
        finally:
            for w in writers:
                w.release()
        for k, i in enumerate(todo):
            out[i] = Trained(out[i].run_dir, diverged.get(k), paused.get(k))
        return out


def _settle_precision(cfg, seen, device: torch.device):
    """``cfg`` with a concrete precision (``precision.settle_precision``): a resumed run keeps the one
    its checkpoint trained in, a new run with ``auto`` gets this device's default."""
    stored = None
    if seen.ckpt is not None:
        stored = seen.ckpt.get("config", {}).get("precision", LEGACY_PRECISION)
    return replace(cfg, precision=settle_precision(cfg.precision, device, stored))


class _Branch(NamedTuple):
    """One network of a pack and its optimiser: a ``CifarResNet`` (one member) or a
    ``PackedCifarResNet`` (members ``first .. first + count - 1``, grouped)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    first: int
    count: int


class _Members:
    """What one pack trains, as the loop sees it: its networks (``branches``), their
    optimisers and the step that steps them all, for one model, a grouped pack (one
    branch) or a pack in branches mode (a branch per member). Every method speaks per
    member, in the members' order, in the single model's format."""

    def __init__(self, branches: list[_Branch], precision: str) -> None:
        self.branches = branches
        steps = [TrainStep(b.model, b.optimizer, precision) if len(branches) == 1
                 else TrainStep(b.model, b.optimizer, precision, graph=False) for b in branches]
        # one branch: its own TrainStep (captures alone); several: one graph, a branch each
        self.step = steps[0] if len(steps) == 1 else ConcurrentSteps(steps)
        # evaluation: a forward per network (on CUDA each captured once, replayed every epoch:
        # the step updates the weights in place, so a replay evaluates the current ones)
        self.forwards = [EvalForward(b.model, precision) for b in branches]

    @property
    def n(self) -> int:
        return sum(b.count for b in self.branches)

    def _of(self, b: _Branch, t: torch.Tensor) -> torch.Tensor:
        """The part of a per-member stack (N, ...) that branch ``b`` takes."""
        return t[b.first] if isinstance(b.model, CifarResNet) else t[b.first:b.first + b.count]

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One SGD step of every member on its batch x[i] (N, B, 3, H, W), y[i] (N, B):
        per-member summed loss (N,) and correct count (N,), on the device."""
        if len(self.branches) == 1:
            out = [self.step(self._of(self.branches[0], x), self._of(self.branches[0], y))]
        else:
            out = self.step([(self._of(b, x), self._of(b, y)) for b in self.branches])
        if len(out) == 1:                                           # views, no copy
            return out[0][0].reshape(-1), out[0][1].reshape(-1)
        return torch.cat([v.reshape(-1) for v, _ in out]), torch.cat([c.reshape(-1) for _, c in out])

    def train(self) -> None:
        for b in self.branches:
            b.model.train()

    def set_lr(self, lr: float) -> None:
        for b in self.branches:
            set_lr(b.optimizer, lr)

    def evaluate(self, x, y, data, precision) -> tuple[list[float], list[float]]:
        """``evaluate_pack`` of every network: per-member (losses, accuracies)."""
        loss, acc = [], []
        for b, forward in zip(self.branches, self.forwards):
            lb, ab = evaluate_pack(b.model, x, y, data, precision, forward=forward)
            loss += lb
            acc += ab
        return loss, acc

    def states(self, members) -> dict[int, tuple[dict, dict]]:
        """{member: (model state, optimiser state)} in the single model's format (lr a float)."""
        out = {}
        for b in self.branches:
            wanted = [i for i in members if b.first <= i < b.first + b.count]
            if not wanted:
                continue
            opt_sd = b.optimizer.state_dict()
            for i in wanted:
                if isinstance(b.model, PackedCifarResNet):
                    out[i] = (member_state_dict(b.model, i - b.first),
                              member_optimizer_state(opt_sd, b.count, i - b.first))
                else:
                    out[i] = (b.model.state_dict(), member_optimizer_state(opt_sd, 1, 0))
        return out

    def counts(self) -> dict:
        """The step's counts (``TrainStep.counts``) and evaluation's (``EvalForward.counts``,
        summed over the networks), as config.json's ``runtime`` records them."""
        ev = [f.counts() for f in self.forwards]
        reasons = [c["eval_fallback"] for c in ev if c["eval_fallback"]]
        return {**self.step.counts(), "eval_graph_requested": any(c["eval_graph_requested"] for c in ev),
                **{k: sum(c[k] for c in ev) for k in ("eval_captures", "eval_graph_batches", "eval_eager_batches")},
                "eval_fallback": "; ".join(dict.fromkeys(reasons)) or None}


def _build(writers: list[RunWriter], device: torch.device) -> tuple[_Members, list[int]]:
    """The members' networks (one ``CifarResNet``; a grouped pack; or in branches mode a
    ``CifarResNet`` per member), their optimisers and the step, and the parameter count of
    each member; resumed from the members' last.pth where they have one."""
    cfgs, ckpts = [w.cfg for w in writers], [w.seen.ckpt for w in writers]
    singles = []
    for c, ck in zip(cfgs, ckpts):
        torch.manual_seed(c.seed)                                   # He init of this member's seed
        m = build_model(c.model, c.shortcut)
        if ck is not None:
            m.load_state_dict(ck["model"])
        singles.append(m)
    params = [count_parameters(m) for m in singles]
    c0 = cfgs[0]
    if len(singles) > 1 and c0.pack_mode == "grouped":
        parts = [(pack_models(singles), 0, len(singles))]
    else:
        parts = [(m, i, 1) for i, m in enumerate(singles)]
    branches = []
    for model, first, count in parts:
        model = prepare_model(model, device)
        opt = make_optimizer(model.parameters(), c0.lr, c0.momentum, c0.weight_decay, device)
        if ckpts[0] is not None:
            states = [ck["optimizer"] for ck in ckpts[first:first + count]]
            opt.load_state_dict(states[0] if count == 1 else pack_optimizer_state(states))
        branches.append(_Branch(model, opt, first, count))
    if ckpts[0] is not None:
        torch.set_rng_state(ckpts[0]["rng"]["torch"])
        if device.type == "cuda" and ckpts[0]["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state_all(ckpts[0]["rng"]["cuda"])
    return _Members(branches, c0.precision), params


def _start_line(writers, params, data, device, precision, graph, n_epochs, ipe, epoch, budget) -> str:
    """What the run (or pack) starts with; ``params``: per member."""
    info, n = data.info, len(writers)
    kind = "synthetic data" if info["dataset"] == "synthetic" else f"{info['provenance']} CIFAR-10"
    start = f"resuming after epoch {epoch}" if writers[0].seen.ckpt is not None else "starting"
    # what is requested: whether capture worked is printed after the first attempt
    step = ", CUDA graph requested" if graph else (", eager (CUDA graphs off)" if device.type == "cuda" else "")
    left = budget.left()
    limit = f", time budget {max(left, 0):.0f} s left of {budget.seconds:g} s" if budget.deadline is not None else ""
    if n == 1:
        split = f"{info['n_train_used']} train / {info['n_val']} val / {info['n_test_used']} test"
        return (f"{writers[0].cfg.run_name}: {start}; {params[0]:,} params, {kind} ({split}), {device}{step}, "
                f"{n_epochs} epochs x {ipe} iterations{limit}; run dir {writers[0].run_dir}")
    how = ("one grouped network" if writers[0].cfg.pack_mode == "grouped"
           else f"branches (a network each{', one CUDA graph' if graph else ''})")
    each = f"{params[0]:,} params each" if len(set(params)) == 1 else f"{'/'.join(f'{p:,}' for p in params)} params"
    return (f"pack of {n} ({', '.join(w.cfg.run_name for w in writers)}) as {how}: {start}; {each}, "
            f"{kind}, {device}, {precision}{step}, {n_epochs} epochs x {ipe} iterations{limit}")


def _train_claimed(writers: list[RunWriter], device: torch.device, data: PreparedData,
                   budget: Budget) -> tuple[dict[int, str], dict[int, str]]:
    """Train the claimed members to the end, or until the time budget pauses them; returns
    ({member index: divergence message}, {member index: pause message})."""
    n, c0 = len(writers), writers[0].cfg
    members, params = _build(writers, device)
    step = members.step                     # TrainStep or ConcurrentSteps: counts, announce
    desc = c0.run_name if n == 1 else f"pack of {n}"
    step.announce = lambda line: print(f"{desc}: {line}", flush=True)
    for forward in members.forwards:        # and how evaluation's capture ended
        forward.announce = step.announce
    gens = [torch.Generator(device=device).manual_seed(w.cfg.seed + DATA_SEED_OFFSET) for w in writers]
    ck0 = writers[0].seen.ckpt
    if ck0 is not None:
        for g, w in zip(gens, writers):
            g.set_state(w.seen.ckpt["rng"]["data"])
    batcher = PackBatcher(data.train_x, data.train_y, c0.batch_size, gens)
    ipe = iters_per_epoch(data.train_x.shape[0], c0.batch_size)
    n_epochs, stop = planned_epochs(c0, ipe), c0.max_iters or math.inf
    epoch, iteration = (ck0["epoch"], ck0["iteration"]) if ck0 is not None else (0, 0)
    elapsed = writers[0].metrics[-1]["elapsed"] if writers[0].metrics else 0.0
    print(_start_line(writers, params, data, device, c0.precision, step.graph_requested, n_epochs, ipe, epoch,
                      budget), flush=True)
    env, diverged, paused = collect(device), {}, {}
    alive = list(range(n))
    train_s = eval_s = None       # this pack's last epoch in this process: training time, last evaluation time
    try:
        for i, w in enumerate(writers):
            w.start(environment=env, dataset=data.info, params=params[i], iters_per_epoch=ipe,
                    epochs_planned=n_epochs,
                    **({"packed_with": [v.cfg.run_name for v in writers], "pack_index": i} if n > 1 else {}))
        while epoch < n_epochs and iteration < stop and alive:
            e = epoch + 1
            evaluates = e % c0.eval_every == 0 or e == n_epochs or min(iteration + ipe, stop) >= stop
            estimate = None if train_s is None else train_s + ((eval_s or 0.0) if evaluates else 0.0)
            why = budget.stop_before(estimate, epoch, n_epochs)
            if why:
                for i in alive:
                    writers[i].finish("paused", why, members.counts())
                    paused[i] = why
                    print(f"{writers[i].cfg.run_name}: {why}", flush=True)
                return diverged, paused
            t0 = clock()
            res = _train_epoch(members, batcher, data, c0, iteration, ipe, f"{desc} {e}/{n_epochs}")
            t1 = clock()                          # _train_epoch ends with a host sync
            test = val = None
            if e % c0.eval_every == 0 or e == n_epochs or res["iteration"] >= stop:
                test = members.evaluate(data.test_x, data.test_y, data, c0.precision)
                if data.val_x is not None:
                    val = members.evaluate(data.val_x, data.val_y, data, c0.precision)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t2 = clock()
            dt = t2 - t0                           # the epoch of all members together
            train_s, eval_s = t1 - t0, (t2 - t1 if test is not None else eval_s)
            budget.ran_epoch(dt)
            elapsed += dt
            epoch, iteration = e, res["iteration"]
            states = members.states(alive)
            for i in list(alive):
                record = _record(res, i, test, val, data.val_x is not None, dt, elapsed, e)
                why = _diverged(writers[i].cfg.run_name, record, res["first_bad"][i], n > 1 and len(alive) > 1)
                if why:
                    writers[i].finish("failed", why, members.counts())
                    diverged[i] = why
                    alive.remove(i)
                    continue
                _save(writers[i], record, *states[i], gens[i], device, data)
                print(writers[i].epoch_line(record, n_epochs), flush=True)
    except OSError as err:
        if not is_no_space(err):
            _finish(writers, alive, "failed", f"{type(err).__name__}: {err}", members)
            raise
        msgs = {i: writers[i].no_space_message(err) for i in alive}
        for i, msg in msgs.items():
            writers[i].finish("failed", msg, members.counts())
        if not msgs:
            raise
        raise NoSpaceError(msgs[min(msgs)] if len(set(msgs.values())) == 1 else "; ".join(
            f"{writers[i].cfg.run_name}: {m}" for i, m in msgs.items()), err.filename) from None
    except KeyboardInterrupt:
        msg = (f"interrupted during epoch {epoch + 1}; last.pth holds epoch {epoch}; "
               f"rerun the same command to resume")
        _finish(writers, alive, "interrupted", msg, members)
        for i in alive:
            print(f"{writers[i].cfg.run_name}: {msg}", file=sys.stderr, flush=True)
        raise
    except BaseException as err:
        _finish(writers, alive, "failed", f"{type(err).__name__}: {err}", members)
        raise
    note = f" (packed with {n - 1} other{'s' if n > 2 else ''})" if n > 1 else ""
    for i in alive:
        writers[i].finish("finished", runtime=members.counts())
        print(writers[i].finished_line(epoch, iteration, elapsed, note), flush=True)
    return diverged, paused


def _finish(writers, alive, status, error, members) -> None:
    for i in alive:
        writers[i].finish(status, error, members.counts())


def _train_epoch(members: _Members, batcher, data, cfg, start_iteration, ipe, desc) -> dict:
    """One pass over the training images (stops early at ``cfg.max_iters``), every member
    stepped on its own batches by ``members``.

    Returns per-member lists ``train_loss``, ``train_acc`` and ``first_bad`` ((iteration,
    loss) of the first non-finite step loss, or None), and ``iteration``, ``lr``.
    """
    members.train()
    stop = cfg.max_iters or math.inf
    losses, corrects = [], []
    it, lr, images = start_iteration, cfg.lr, 0
    bar = _progress(ipe, desc)
    try:
        for x, y in batcher.batches():
            if it >= stop:
                break
            lr = lr_at(cfg, it, ipe)
            members.set_lr(lr)
            loss_sum, correct = members(data.normalize(x), y)       # x (N, B, 3, 32, 32), y (N, B)
            losses.append(loss_sum)                                 # (N,)
            corrects.append(correct)
            images += y.shape[-1]
            it += 1
            done = it - start_iteration
            if bar is not None and (done % 10 == 0 or done == ipe):  # host sync: terminals only
                n = losses[0].numel()                               # means over the members
                bar.set_postfix(loss=f"{float(torch.stack(losses).sum()) / images / n:.3f}",
                                acc=f"{float(torch.stack(corrects).sum()) / images / n:.3f}",
                                lr=f"{lr:.4g}", refresh=False)
                bar.update(done - bar.n)
    finally:
        if bar is not None:
            bar.close()
    n = members.n
    if not losses:
        nan = [float("nan")] * n
        return {"train_loss": nan, "train_acc": nan, "first_bad": [None] * n, "iteration": it, "lr": lr}
    per_step = torch.stack(losses)                                  # (steps, N)
    bad = (~torch.isfinite(per_step)).cpu()
    first_bad = []
    for i in range(n):
        rows = bad[:, i].nonzero()
        first_bad.append((start_iteration + int(rows[0]) + 1, float(per_step[int(rows[0]), i]))
                         if rows.numel() else None)
    return {"train_loss": [v / images for v in per_step.sum(0).tolist()],
            "train_acc": [v / images for v in torch.stack(corrects).sum(0).tolist()],
            "first_bad": first_bad, "iteration": it, "lr": lr}


def _record(res, i, test, val, has_val, dt, elapsed, epoch) -> dict:
    """Member ``i``'s metrics.json record of the epoch."""
    record = {"epoch": epoch, "iteration": res["iteration"], "train_loss": res["train_loss"][i],
              "train_acc": res["train_acc"][i], "test_loss": test[0][i] if test else None,
              "test_acc": test[1][i] if test else None, "lr": res["lr"]}
    if has_val:
        record["val_loss"], record["val_acc"] = (val[0][i], val[1][i]) if val else (None, None)
    record["time"], record["elapsed"] = dt, elapsed
    return record


def _diverged(name: str, record: dict, first_bad, others_train_on: bool) -> str | None:
    """The one-line reason a member stops (a NaN/inf loss), naming it, or None."""
    if first_bad is not None:
        what, (it, value) = "training loss", first_bad
    else:
        key = next((k for k in ("test_loss", "val_loss")
                    if record.get(k) is not None and not math.isfinite(record[k])), None)
        if key is None:
            return None
        what, it, value = key.replace("_", " "), record["iteration"], record[key]
    rest = "; the rest of the pack trains on" if others_train_on else ""
    return (f"{name}: the {what} became {value} at epoch {record['epoch']}, iteration {it}; the run "
            f"stops and keeps its last good checkpoint and metrics{rest} (try a lower --lr or --warmup-iters)")


def _save(writer, record, model_state, opt_state, generator, device, data) -> None:
    """A member's best.pth/last.pth: its model and optimiser state in the single model's
    format (``_Members.states``), whatever the pack mode; ``rng["augment"]`` names the random
    stream its data generator is in (``augment.AUGMENT_SCHEME``, checked on resume)."""
    norm = {"kind": data.info["normalization"]["kind"], "mean": data.mean.cpu(),
            "std": data.std.cpu() if data.std is not None else None}
    writer.save_epoch(record, model_state, {
        "optimizer": opt_state,
        "scheduler": {"kind": "lr_at", "schedule": writer.cfg.schedule, "iteration": record["iteration"]},
        "rng": {"torch": torch.get_rng_state(), "data": generator.get_state(), "augment": augment.AUGMENT_SCHEME,
                "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else None},
        "device_type": device.type, "dataset_fingerprint": data.info["fingerprint"]}, norm)


def _progress(total: int, desc: str):
    """A tqdm bar on stderr when it is a terminal; None otherwise (papermill, logs, CI)."""
    if not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty()):
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, file=sys.stderr, leave=False, dynamic_ncols=True)
