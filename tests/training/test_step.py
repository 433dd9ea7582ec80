"""CPU-testable parts of the training step (resnet_nb.training.step): lr in a tensor, eager step, bf16,
and the pack's per-member data streams."""
import contextlib
import copy
import warnings
from types import SimpleNamespace

import pytest
import torch

from resnet_nb.data import augment
from resnet_nb.models.packed import member_state_dict, pack_models
from resnet_nb.models.resnet import build_model
from resnet_nb.training import evaluation, graphs, precision, schedule
from resnet_nb.training import step as S
from resnet_nb.training.batches import PackBatcher, evaluate_pack
from resnet_nb.training.config import make_config
from resnet_nb.training.precision import autocast

pytestmark = pytest.mark.usefixtures("one_thread")


def batch(b=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 3, 32, 32, generator=g), torch.randint(0, 10, (b,), generator=g)


def test_bf16_is_a_valid_precision():
    assert "bf16" in precision.CONCRETE_PRECISIONS
    assert make_config("smoke", precision="bf16").precision == "bf16"


def test_lr_tensor_follows_lr_at_without_replacing_the_tensor():
    cfg = make_config("seed", warmup_iters=5)
    ipe = 391
    opt = torch.optim.SGD(build_model("resnet20").parameters(), lr=cfg.lr, momentum=0.9)
    t = schedule.lr_in_tensor(opt, "cpu")
    for it in [0, 4, 5, 100, 99 * ipe, 100 * ipe - 1, 100 * ipe, 150 * ipe, 199 * ipe + 390]:
        schedule.set_lr(opt, schedule.lr_at(cfg, it, ipe))
        assert all(g["lr"] is t for g in opt.param_groups)      # same tensor: no recapture
        assert t.item() == torch.tensor(schedule.lr_at(cfg, it, ipe), dtype=torch.float32).item()


def test_sgd_step_with_lr_tensor_equals_float_lr():
    torch.manual_seed(0)
    a = build_model("resnet20")
    b = copy.deepcopy(a)
    oa = torch.optim.SGD(a.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    ob = torch.optim.SGD(b.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    schedule.lr_in_tensor(ob, "cpu")
    for step, lr in enumerate([0.1, 0.1, 0.01]):
        schedule.set_lr(oa, lr)
        schedule.set_lr(ob, lr)
        x, y = batch(seed=step)
        for m, o in ((a, oa), (b, ob)):
            o.zero_grad()
            torch.nn.functional.cross_entropy(m(x), y).backward()
            o.step()
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k


def sgd_step(model, optimizer, x, y):
    """The reference: plain torch SGD on the mean cross-entropy (summed loss, correct count)."""
    optimizer.zero_grad(set_to_none=True)
    logits = model(x)
    loss = torch.nn.functional.cross_entropy(logits, y)
    loss.backward()
    optimizer.step()
    return loss.detach() * y.numel(), (logits.detach().argmax(1) == y).sum()


def sgd(model):
    cfg = make_config("smoke")
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def test_eager_step_equals_plain_sgd():
    torch.manual_seed(0)
    a = build_model("plain20")
    b = copy.deepcopy(a)
    oa, ob = sgd(a), sgd(b)
    step = S.TrainStep(b, ob)                      # CPU: eager, no graph
    for s in range(2):
        x, y = batch(seed=s)
        la, ca = sgd_step(a, oa, x, y)
        lb, cb = step(x, y)
        assert torch.equal(la, lb) and torch.equal(ca, cb)
    assert step.graph is None and step.eager_steps == 2
    assert step.counts() == {"graph_requested": False, "captures": 0, "graph_steps": 0, "eager_steps": 2,
                             "fallback": None}
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k


def test_packed_step_returns_per_member_sums():
    torch.manual_seed(0)
    models = [build_model("plain20"), build_model("resnet20")]
    packed = pack_models(models)
    opt = schedule.make_optimizer(packed.parameters(), 0.1, 0.9, 1e-4, "cpu")
    x = torch.randn(2, 8, 3, 32, 32)
    y = torch.randint(0, 10, (2, 8))
    loss_sum, correct = S.TrainStep(packed, opt)(x, y)
    assert loss_sum.shape == (2,) and correct.shape == (2,)
    for i, m in enumerate(models):
        want = torch.nn.functional.cross_entropy(m(x[i]), y[i]) * 8
        torch.testing.assert_close(loss_sum[i], want, rtol=1e-4, atol=1e-4)
    assert member_state_dict(packed, 0)["conv1.weight"].shape == (16, 3, 3, 3)


def test_bf16_on_cpu_runs_with_fp32_master_weights():
    torch.manual_seed(0)
    m = build_model("resnet20")
    opt = schedule.make_optimizer(m.parameters(), 0.1, 0.9, 1e-4, "cpu")
    x, y = batch()
    loss_sum, correct = S.TrainStep(m, opt, precision="bf16")(x, y)
    assert torch.isfinite(loss_sum) and loss_sum.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in m.parameters())


def test_bad_precision_and_unsupported_bf16(monkeypatch):
    with pytest.raises(ValueError, match="precision must be one of"):
        precision.check_precision("fp16", "cpu")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Old GPU")
    with pytest.raises(ValueError, match="bf16 needs a GPU.*--precision fp32"):
        precision.check_precision("bf16", "cuda")
    m = build_model("resnet20")
    with pytest.raises(ValueError, match="needs a CUDA device"):
        S.TrainStep(m, torch.optim.SGD(m.parameters(), lr=0.1), graph=True)


def test_capture_failure_warns_and_falls_back_to_eager(monkeypatch):
    torch.manual_seed(0)
    a = build_model("resnet20")
    b = copy.deepcopy(a)
    oa, ob = sgd(a), sgd(b)
    step = S.TrainStep(b, ob)
    step.capture_allowed = step.graph_requested = True   # pretend we are on a GPU

    def broken_capture(x, y):
        step._lr_to_tensor()                          # get half-way (as after the warm-up steps):
        for p in b.parameters():                      # weights moved, momentum buffers created...
            p.data.add_(1.0)
            ob.state[p]["momentum_buffer"] = torch.ones_like(p)
        for buf in b.buffers():
            buf.add_(1)
        raise RuntimeError("operation not permitted when stream is capturing")   # ...then fail

    monkeypatch.setattr(step, "_capture", broken_capture)
    heard = []
    step.announce = heard.append
    x, y = batch()
    with pytest.warns(RuntimeWarning, match="capture .* failed.*eagerly"):
        lb, _ = step(x, y)
    la, _ = sgd_step(a, oa, x, y)
    assert torch.equal(la, lb)
    assert not step.capture_allowed and step.graph is None
    assert all(isinstance(g["lr"], float) for g in ob.param_groups)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        step(x, y)                                    # no second attempt, no second warning
    # recorded, not only printed: the reason goes into the run's config.json (TrainStep.counts)
    assert step.counts() == {"graph_requested": True, "captures": 0, "graph_steps": 0, "eager_steps": 2,
                             "fallback": "RuntimeError: operation not permitted when stream is capturing"}
    assert len(heard) == 1 and "failed (RuntimeError: operation not permitted" in heard[0]


def test_pack_batcher_gives_each_member_its_standalone_batches():
    """Member i of a pack sees exactly the batches a single run draws with its seed: its
    own generator's augment_epoch, cut into batches; and a pack of one is that run."""
    g = torch.Generator().manual_seed(0)
    xs = torch.randint(0, 256, (50, 3, 32, 32), dtype=torch.uint8, generator=g)
    ys = torch.randint(0, 10, (50,), generator=g)
    seeds = [3, 7]
    batcher = PackBatcher(xs, ys, 16, [torch.Generator().manual_seed(s) for s in seeds])
    got = [b for epoch in range(2) for b in batcher.batches()]        # 2 epochs x 4 batches
    assert len(got) == 8 and got[3][0].shape == (2, 2, 3, 32, 32)      # 16+16+16+2 per epoch
    for i, s in enumerate(seeds):
        gi = torch.Generator().manual_seed(s)
        ref = []
        for epoch in range(2):
            xe, ye = augment.augment_epoch(xs, ys, gi)
            ref += [(xe[j:j + 16], ye[j:j + 16]) for j in range(0, 50, 16)]
        single = PackBatcher(xs, ys, 16, [torch.Generator().manual_seed(s)])          # train() of seed s
        alone = [b for epoch in range(2) for b in single.batches()]
        for (gx, gy), (rx, ry), (ax, ay) in zip(got, ref, alone, strict=True):
            assert torch.equal(gx[i], rx) and torch.equal(gy[i], ry)
            assert torch.equal(ax[0], rx) and torch.equal(ay[0], ry)
    assert not torch.equal(got[0][1][0], got[0][1][1])                 # the members' streams differ
    assert not torch.equal(got[0][1][0], got[4][1][0])                 # and so do the epochs


class _FakeCuda:
    """Stands in for torch.cuda's graph API on the CPU so that the capture logic (static
    buffers, warm-up and its undoing, lr in a tensor, eager partial batches) runs here.
    Capture runs the body and then restores the state (a real capture executes nothing);
    replay runs the body again on the static buffers with fresh gradients."""

    def __init__(self, monkeypatch, *steps):
        self.steps = steps
        cuda = torch.cuda
        monkeypatch.setattr(cuda, "current_stream", lambda *a: self)
        monkeypatch.setattr(cuda, "Stream", lambda *a: self)
        monkeypatch.setattr(cuda, "stream", lambda s: contextlib.nullcontext())
        monkeypatch.setattr(cuda, "synchronize", lambda *a: None)
        monkeypatch.setattr(cuda, "CUDAGraph", lambda: self)
        monkeypatch.setattr(cuda, "graph", lambda g: self)
        self.replays = 0

    def wait_stream(self, other):
        pass

    def __enter__(self):
        self.saved = [(t, t.detach().clone()) for st in self.steps for t in st._state_tensors()]

    def __exit__(self, *exc):
        with torch.no_grad():
            for t, s in self.saved:
                t.copy_(s)

    def replay(self):
        for st in self.steps:
            st.optimizer.zero_grad(set_to_none=True)
            loss, correct = st.graph_body()
            st.static_loss.copy_(loss)
            st.static_correct.copy_(correct)
        self.replays += 1


@pytest.mark.parametrize("packed", [False, True])
def test_graph_logic_equals_eager_steps(monkeypatch, packed):
    """Capture (faked on the CPU, float64) + replays + an lr change + a partial batch give the
    eager run's parameters: the warm-up is undone and the lr tensor is read by every replay."""
    torch.manual_seed(0)
    a = pack_models([build_model("plain8"), build_model("resnet8")]) if packed else build_model("resnet8")
    a = a.double()
    b = copy.deepcopy(a).to(memory_format=torch.channels_last)
    oa = schedule.make_optimizer(a.parameters(), 0.1, 0.9, 1e-4, "cpu")
    ob = schedule.make_optimizer(b.parameters(), 0.1, 0.9, 1e-4, "cpu")
    eager, graphed = S.TrainStep(a, oa), S.TrainStep(b, ob)
    graphed.capture_allowed = graphed.graph_requested = True
    heard = []
    graphed.announce = heard.append
    fake = _FakeCuda(monkeypatch, graphed)
    g = torch.Generator().manual_seed(1)
    lead = (2,) if packed else ()
    for i, lr in enumerate([0.125, 0.125, 0.0625, 0.0625, 0.0625]):   # exact in float32
        n = 6 if i == 4 else 8                                    # the last batch is partial
        x = torch.randn(*lead, n, 3, 32, 32, generator=g, dtype=torch.float64)
        y = torch.randint(0, 10, (*lead, n), generator=g)
        schedule.set_lr(oa, lr)
        schedule.set_lr(ob, lr)
        la, ca = eager(x, y)
        lb, cb = graphed(x, y)
        torch.testing.assert_close(lb, la, rtol=1e-10, atol=1e-10)
        assert torch.equal(ca, cb)
    assert graphed.captures == 1 and fake.replays == 4 and graphed.eager_steps == 1
    assert graphed.counts() == {"graph_requested": True, "captures": 1, "graph_steps": 4, "eager_steps": 1,
                                "fallback": None}
    assert len(heard) == 1 and heard[0].startswith("CUDA graph captured")   # said once, after the attempt
    assert graphed.lr_tensor.item() == 0.0625
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(vb, va, rtol=1e-10, atol=1e-10, msg=k)


def test_concurrent_graph_branches_equal_separate_eager_steps(monkeypatch):
    """Two steps (a pack and a single model) in one (faked) graph with a branch each: the
    replays read the lr tensor (an lr change needs no recapture), a partial batch runs both
    eagerly, and the counts are per call."""
    torch.manual_seed(0)
    refs = [pack_models([build_model("plain8"), build_model("resnet8")]).double(), build_model("resnet14").double()]
    models = [copy.deepcopy(m) for m in refs]
    opts = [schedule.make_optimizer(m.parameters(), 0.125, 0.9, 1e-4, "cpu") for m in refs + models]
    eager = [S.TrainStep(m, o) for m, o in zip(refs, opts[:2])]
    steps = [S.TrainStep(m, o) for m, o in zip(models, opts[2:])]
    both = S.ConcurrentSteps(steps)
    both.capture_allowed = both.graph_requested = True     # pretend we are on a GPU
    heard = []
    both.announce = heard.append
    fake = _FakeCuda(monkeypatch, *steps)
    g = torch.Generator().manual_seed(2)
    for i, lr in enumerate([0.125, 0.125, 0.0625, 0.0625]):            # exact in float32
        n = 5 if i == 3 else 8
        batches = [(torch.randn(2, n, 3, 32, 32, generator=g, dtype=torch.float64), torch.randint(0, 10, (2, n), generator=g)),
                   (torch.randn(n, 3, 32, 32, generator=g, dtype=torch.float64), torch.randint(0, 10, (n,), generator=g))]
        for o in opts:
            schedule.set_lr(o, lr)
        got = both(batches)
        for st, (x, y), (loss, correct) in zip(eager, batches, got):
            want_loss, want_correct = st(x, y)
            torch.testing.assert_close(loss, want_loss, rtol=1e-10, atol=1e-10)
            assert torch.equal(correct, want_correct)
    assert fake.replays == 3 and all(st.eager_steps == 1 for st in steps)
    assert both.counts() == {"graph_requested": True, "captures": 1, "graph_steps": 3, "eager_steps": 1,
                             "fallback": None}
    assert len(heard) == 1 and heard[0].startswith("one CUDA graph captured with 2 branches")
    for ref, m in zip(refs, models):
        for (k, va), vb in zip(ref.state_dict().items(), m.state_dict().values()):
            torch.testing.assert_close(vb, va, rtol=1e-10, atol=1e-10, msg=k)


def test_concurrent_capture_failure_restores_every_step_and_continues_eagerly(monkeypatch):
    """A failed capture of the joint graph (after the warm-ups moved the state) is undone for
    every branch; the steps then run one after another, exactly as separate eager steps."""
    torch.manual_seed(0)
    refs = [build_model("plain8"), build_model("resnet8")]
    models = [copy.deepcopy(m) for m in refs]
    ref_opts, opts = [sgd(m) for m in refs], [sgd(m) for m in models]
    both = S.ConcurrentSteps([S.TrainStep(m, o) for m, o in zip(models, opts)])
    both.capture_allowed = both.graph_requested = True     # pretend we are on a GPU

    def broken_capture(batches):
        for st in both.steps:                           # half-way: lr in a tensor, state moved
            st._lr_to_tensor()
            for p in st.model.parameters():
                p.data.add_(1.0)
                st.optimizer.state[p]["momentum_buffer"] = torch.ones_like(p)
        raise RuntimeError("illegal memory access")

    monkeypatch.setattr(both, "_capture", broken_capture)
    heard = []
    both.announce = heard.append
    for i in range(2):
        batches = [batch(seed=10 * i + k) for k in range(2)]
        if i == 0:
            with pytest.warns(RuntimeWarning, match="concurrent training steps failed .*eagerly"):
                got = both(batches)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("error")          # no second attempt, no second warning
                got = both(batches)
        for m, o, (x, y), (loss, _) in zip(refs, ref_opts, batches, got):
            assert torch.equal(sgd_step(m, o, x, y)[0], loss)
    assert both.counts() == {"graph_requested": True, "captures": 0, "graph_steps": 0, "eager_steps": 2,
                             "fallback": "RuntimeError: illegal memory access"}
    assert len(heard) == 1 and "failed (RuntimeError: illegal memory access)" in heard[0]
    for st in both.steps:
        assert all(isinstance(g["lr"], float) for g in st.optimizer.param_groups)
    for ref, m in zip(refs, models):
        for (k, va), vb in zip(ref.state_dict().items(), m.state_dict().values()):
            assert torch.equal(va, vb), k


def test_concurrent_steps_refuse_what_they_cannot_do():
    m = build_model("resnet8")
    st = S.TrainStep(m, sgd(m))
    with pytest.raises(ValueError, match="needs a CUDA device"):
        S.ConcurrentSteps([st], graph=True)
    with pytest.raises(ValueError, match="at least one TrainStep"):
        S.ConcurrentSteps([])
    with pytest.raises(ValueError, match="of 1 steps got 2 batches"):
        S.ConcurrentSteps([st])([batch(), batch()])
    assert S.ConcurrentSteps([st]).counts()["graph_requested"] is False      # CPU: eager


# --------------------------------------------------------------------------- evaluation's forward

def _todays_evaluate_pack(model, x, y, normalize, precision="fp32", batch_size=1000):
    """The reference: evaluate_pack as it was before EvalForward (eager, one batch after another)."""
    model.eval()
    loss = correct = None
    with torch.no_grad():
        for i in range(0, x.shape[0], batch_size):
            with autocast(precision, x.device):
                logits = model(normalize(x[i:i + batch_size]))
            if logits.dim() == 2:
                logits = logits.unsqueeze(0)
            _, loss_sum, corr = S.member_losses(logits, y[i:i + batch_size].expand(logits.shape[0], -1))
            loss, correct = (loss_sum, corr) if loss is None else (loss + loss_sum, correct + corr)
    return [v / x.shape[0] for v in loss.tolist()], [v / x.shape[0] for v in correct.tolist()]


def _eval_data(n=13, seed=3):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    mean, std = augment.channel_stats(x)
    return x, torch.randint(0, 10, (n,), generator=g), SimpleNamespace(normalize=lambda v: augment.normalize(v, mean, std))


@pytest.mark.parametrize("packed", [False, True])
def test_evaluate_pack_through_eval_forward_is_bitwise_todays(packed):
    """CPU: the forward object runs eagerly; with it, without it and the old loop agree bit for bit,
    a partial last batch (13 = 5 + 5 + 3) included."""
    torch.manual_seed(0)
    model = pack_models([build_model("plain8"), build_model("resnet8")]) if packed else build_model("resnet8")
    x, y, data = _eval_data()
    want = _todays_evaluate_pack(model, x, y, data.normalize, batch_size=5)
    forward = evaluation.EvalForward(model, "fp32", batch_size=5)
    assert evaluate_pack(model, x, y, data, "fp32", 5, forward=forward) == want
    assert evaluate_pack(model, x, y, data, "fp32", 5) == want
    assert len(want[0]) == (2 if packed else 1)
    assert forward.counts() == {"eval_graph_requested": False, "eval_captures": 0, "eval_graph_batches": 0,
                                "eval_eager_batches": 3, "eval_fallback": None}
    with pytest.raises(ValueError, match="another network, precision or batch size"):
        evaluate_pack(model, x, y, data, "fp32", 4, forward=forward)
    with pytest.raises(ValueError, match="needs a CUDA device"):
        evaluation.EvalForward(model, graph=True)
    model.train()
    with pytest.raises(ValueError, match="call model.eval"):
        forward(data.normalize(x[:5]), y[:5])


class _FakeEvalGraph:
    """torch.cuda's graph API on the CPU for an EvalForward: capture runs the body once, replay
    runs it again on the static buffers (a real capture executes nothing)."""

    def __init__(self, monkeypatch, forward):
        self.forward, self.replays = forward, 0
        for name, fake in (("current_stream", lambda *a: self), ("Stream", lambda *a: self),
                           ("stream", lambda s: contextlib.nullcontext()), ("CUDAGraph", lambda: self),
                           ("graph", lambda g: contextlib.nullcontext()), ("synchronize", lambda *a: None)):
            monkeypatch.setattr(torch.cuda, name, fake)

    def wait_stream(self, other):
        pass

    def replay(self):
        loss, correct = self.forward.graph_body()
        self.forward.static_loss.copy_(loss)
        self.forward.static_correct.copy_(correct)
        self.replays += 1


def test_eval_graph_logic_replays_full_batches_reads_current_weights_and_runs_the_partial_eagerly(monkeypatch):
    """Capture (faked on the CPU, float64) on the first full batch, replays for the full ones, the
    partial batch eager; after the weights change in place (as training changes them) the next
    evaluation's replays give the new weights' numbers."""
    torch.manual_seed(0)
    model = build_model("resnet8").double()
    x, y, _ = _eval_data()                                       # 5 + 5 + 3
    data = SimpleNamespace(normalize=lambda v: v.double() / 255)
    forward = evaluation.EvalForward(model, "fp32", batch_size=5)
    forward.capture_allowed = forward.graph_requested = True        # as on a GPU
    heard = []
    forward.announce = heard.append
    fake = _FakeEvalGraph(monkeypatch, forward)
    for _ in range(2):
        want = _todays_evaluate_pack(model, x, y, data.normalize, batch_size=5)
        got = evaluate_pack(model, x, y, data, "fp32", 5, forward=forward)
        for g, w in zip(got, want):
            assert g == pytest.approx(w, rel=1e-12, abs=1e-12)
        with torch.no_grad():                                    # a training step: in place
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
    assert fake.replays == 4 and forward.captures == 1
    assert forward.counts() == {"eval_graph_requested": True, "eval_captures": 1, "eval_graph_batches": 4,
                                "eval_eager_batches": 2, "eval_fallback": None}
    assert len(heard) == 1 and heard[0].startswith("evaluation's forward captured in a CUDA graph")


def test_eval_capture_failure_warns_records_and_evaluates_eagerly(monkeypatch):
    torch.manual_seed(0)
    model = build_model("resnet8")
    x, y, data = _eval_data()
    want = _todays_evaluate_pack(model, x, y, data.normalize, batch_size=5)
    forward = evaluation.EvalForward(model, "fp32", batch_size=5)
    forward.capture_allowed = forward.graph_requested = True

    def broken(*a):
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(forward, "_capture", broken)
    with pytest.warns(RuntimeWarning, match="capture of the evaluation forward failed.*continues eagerly"):
        assert evaluate_pack(model, x, y, data, "fp32", 5, forward=forward) == want
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        evaluate_pack(model, x, y, data, "fp32", 5, forward=forward)        # no second attempt
    assert forward.counts() == {"eval_graph_requested": True, "eval_captures": 0, "eval_graph_batches": 0,
                                "eval_eager_batches": 6,
                                "eval_fallback": "RuntimeError: operation not permitted when stream is capturing"}


# ------------------------------------------------------------------ compile=True (bench --compile's lever)

def _compile_pair(monkeypatch, backend="aot_eager", dtype=torch.float32):
    """Two resnet8 steps from the same weights (lr 0.125: exact in the graph's float32 lr
    tensor): uncompiled and compiled (``backend``)."""
    monkeypatch.setenv(graphs.COMPILE_BACKEND_ENV, backend)
    monkeypatch.delenv(graphs.COMPILE_MODE_ENV, raising=False)
    torch.manual_seed(0)
    a = build_model("resnet8").to(dtype)
    b = copy.deepcopy(a)
    oa = schedule.make_optimizer(a.parameters(), 0.125, 0.9, 1e-4, "cpu")
    ob = schedule.make_optimizer(b.parameters(), 0.125, 0.9, 1e-4, "cpu")
    return (a, S.TrainStep(a, oa)), (b, S.TrainStep(b, ob, compile=True))


def _steps_agree(plain, compiled, sizes, exact):
    g = torch.Generator().manual_seed(4)
    dtype = next(plain[0].parameters()).dtype
    for n in sizes:
        x, y = torch.randn(n, 3, 32, 32, generator=g, dtype=dtype), torch.randint(0, 10, (n,), generator=g)
        (la, ca), (lb, cb) = plain[1](x, y), compiled[1](x, y)
        if exact:
            assert torch.equal(la, lb) and torch.equal(ca, cb)
        else:
            torch.testing.assert_close(lb, la, rtol=1e-5, atol=1e-5)
    for (k, va), vb in zip(plain[0].state_dict().items(), compiled[0].state_dict().values()):
        if exact:
            assert torch.equal(va, vb), k
        else:
            torch.testing.assert_close(vb, va, rtol=1e-4, atol=1e-5, msg=k)


def test_compiled_step_equals_the_uncompiled_step(monkeypatch):
    """compile=True (aot_eager on the CPU: dynamo + AOTAutograd's forward and backward graphs)
    gives the uncompiled step's losses and weights over 3 full batches and a partial one (which
    runs uncompiled: one static shape), and records that the compiled step ran."""
    plain, compiled = _compile_pair(monkeypatch)
    assert compiled[1].counts()["compiled"] is False                 # requested, not yet run
    _steps_agree(plain, compiled, [8, 8, 8, 5], exact=False)
    c = compiled[1].counts()
    assert c["compile_requested"] and c["compiled"] is True and c["compile_fallback"] is None
    assert c["compile_backend"] == "aot_eager" and c["compile_s"] > 0 and c["eager_steps"] == 4
    assert compiled[1]._compile_shape == (8, 3, 32, 32)
    assert "compiled" not in plain[1].counts()                       # the default step's record is unchanged


def test_compile_failure_warns_records_and_runs_uncompiled(monkeypatch):
    """A backend that raises at the first call (compilation): warned, recorded, the state it
    touched restored, and the step is exactly the uncompiled one from then on."""
    def broken(gm, example_inputs):
        raise RuntimeError("no C++ compiler")

    plain, compiled = _compile_pair(monkeypatch, backend="aot_eager")
    torch._dynamo.reset()
    compiled[1]._compiled_losses = torch.compile(compiled[1]._losses, backend=broken, dynamic=False)
    with pytest.warns(RuntimeWarning, match="torch.compile of the training step .*failed.*uncompiled"):
        _steps_agree(plain, compiled, [8, 8], exact=True)
    c = compiled[1].counts()
    assert c["compiled"] is False and c["compile_s"] is None and "no C++ compiler" in c["compile_fallback"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _steps_agree(plain, compiled, [8], exact=True)                # no second attempt, no warning


def test_an_unknown_compile_backend_warns_and_runs_uncompiled(monkeypatch):
    with pytest.warns(RuntimeWarning, match="torch.compile of the training step \\(no-such-backend\\) failed"):
        plain, compiled = _compile_pair(monkeypatch, backend="no-such-backend")
    _steps_agree(plain, compiled, [8], exact=True)
    c = compiled[1].counts()
    assert c["compiled"] is False and c["compile_fallback"] and c["compile_backend"] == "no-such-backend"
    monkeypatch.setenv(graphs.COMPILE_MODE_ENV, "reduce-overhead")        # inductor's own graphs: refused
    with pytest.raises(ValueError, match="cannot nest in the step's capture"):
        S.TrainStep(plain[0], plain[1].optimizer, compile=True)


def test_compiled_step_compiles_at_warm_up_and_its_capture_replays_it(monkeypatch):
    """Graph logic (faked on the CPU) with compile=True: the first warm-up step compiles, the
    capture and the replays run the compiled forward, and the run equals the eager one
    (float64: the graphed and eager fp32 runs drift apart by rounding over a few steps)."""
    plain, compiled = _compile_pair(monkeypatch, dtype=torch.float64)
    step = compiled[1]
    step.capture_allowed = step.graph_requested = True
    fake = _FakeCuda(monkeypatch, step)
    calls = []
    inner = step._compiled_losses
    monkeypatch.setattr(step, "_compiled_losses", lambda x, y: calls.append(step.captures) or inner(x, y))
    _steps_agree(plain, compiled, [8, 8, 8, 5], exact=False)
    assert step.captures == 1 and fake.replays == 3 and step.eager_steps == 1
    # WARMUP_STEPS warm-up calls and the capture's, all before the capture counted; then the replays'
    assert calls == [0] * (graphs.WARMUP_STEPS + 1) + [1] * 3
    assert step.counts()["compiled"] is True and step._compile_shape == (8, 3, 32, 32)


def test_precision_auto_is_settled_by_the_stored_run_then_the_device(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    # bf16 is opt-in: native bf16 is not always faster (and its parity is unmeasured)
    assert precision.default_precision("cpu") == "fp32" and precision.settle_precision("auto", "cpu") == "fp32"
    assert precision.settle_precision("auto", "cpu", stored="bf16") == "bf16"          # a resumed bf16 run stays bf16
    assert precision.settle_precision("auto", "cpu", stored="fp32") == "fp32"          # a resumed run keeps its own
    assert precision.settle_precision("fp32", "cpu", stored="bf16") == "fp32"          # an explicit choice stays
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert precision.default_precision("cpu") == "fp32"
    with pytest.warns(RuntimeWarning, match="emulated"):                   # asked for, but not native
        precision.check_precision("bf16", "cpu")
    with pytest.raises(ValueError, match="settle 'auto'"):
        precision.check_precision("auto", "cpu")


def test_models_train_in_channels_last_on_the_cpu():
    from resnet_nb.models.resnet import build_model
    m = S.prepare_model(build_model("resnet8"), "cpu")
    conv = next(p for p in m.parameters() if p.dim() == 4)
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
