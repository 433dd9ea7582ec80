"""A packed network is its members: forward, BN statistics, gradients, SGD step, checkpoints."""
import pytest
import torch
import torch.nn.functional as F

from resnet_nb.models.packed import PackedCifarResNet, member_state_dict, pack_models
from resnet_nb.models.resnet import build_model

TOL = dict(rtol=1e-4, atol=1e-5)  # fp32; grouped vs dense convs sum in a different order
PACKS = {
    "mixed": ["plain20", "resnet20", "resnet20"],
    "residual": ["resnet20", "resnet20"],
    "plain": ["plain20"],
}

pytestmark = pytest.mark.usefixtures("one_thread")


def make_members(names, seed=0):
    models = []
    for k, name in enumerate(names):
        torch.manual_seed(seed + k)              # each member its own init, as its seed dictates
        m = build_model(name)
        # non-trivial BN state so that eval mode and the state dicts are really compared
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.8, 1.2)
                mod.weight.data.uniform_(0.5, 1.5)
                mod.bias.data.uniform_(-0.1, 0.1)
        models.append(m)
    return models


def batches(n, b=4, seed=123):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, b, 3, 32, 32, generator=g), torch.randint(0, 10, (n, b), generator=g)


def assert_members_equal(packed, models, **tol):
    for i, m in enumerate(models):
        got, want = member_state_dict(packed, i), m.state_dict()
        assert got.keys() == want.keys()
        for k in want:
            torch.testing.assert_close(got[k], want[k], **(tol or TOL), msg=lambda s: f"member {i} {k}: {s}")


@pytest.mark.parametrize("pack", sorted(PACKS))
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_forward_equals_standalone(pack, mode):
    models = make_members(PACKS[pack])
    packed = pack_models(models)
    for m in models + [packed]:
        m.train(mode == "train")
    x, _ = batches(len(models))
    out = packed(x)
    assert out.shape == (len(models), 4, 10)
    for i, m in enumerate(models):
        torch.testing.assert_close(out[i], m(x[i]), **TOL)
    assert_members_equal(packed, models)  # BN running statistics (train mode updates them)


def test_shared_input_and_channels_last():
    models = make_members(PACKS["mixed"])
    packed = pack_models(models).eval()
    for m in models:
        m.eval()
    x, _ = batches(1)
    out = packed(x[0])                                    # (B, 3, H, W): one batch for all members
    for i, m in enumerate(models):
        torch.testing.assert_close(out[i], m(x[0]), **TOL)
    cl = packed.to(memory_format=torch.channels_last)
    xin = packed.pack_input(x[0]).contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(cl(xin), out, **TOL)


def _summed_loss(out, y):
    """Sum over members of each member's mean cross-entropy (what packed training minimises)."""
    n, b, k = out.shape
    return F.cross_entropy(out.reshape(n * b, k), y.reshape(-1), reduction="none").view(n, b).mean(1).sum()


def assert_grad_close(got, want, dtype, what):
    """float64: equal to 1e-10 of the tensor's scale: the packing is exact mathematics.

    fp32 cannot be tight here: the gradients of these deep nets at init are ill-conditioned.
    A pre-activation that rounds to the other side of a ReLU kink flips one term, which
    BN's batch statistics spread over the channel; measured over 10 seeds, the standalone
    fp32 model's own gradients differ from its float64 gradients by up to 1.4e-2 (relative
    norm), the packed model's from the standalone's by up to 3.9e-2, and both are 1e-5
    when no kink flips. So fp32 gets a relative-norm bound of 5e-2 (a wrong packing, e.g.
    a member's gradient missing or mixed with another's, is off by O(1))."""
    rel = ((got - want).norm() / want.norm().clamp_min(1e-30)).item()
    assert rel < (1e-10 if dtype == torch.float64 else 5e-2), f"{what}: relative error {rel:.2e}"


DTYPES = [torch.float32, torch.float64]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pack", ["mixed", "residual"])
def test_gradients_equal_standalone(pack, dtype):
    models = [m.to(dtype) for m in make_members(PACKS[pack])]
    packed = pack_models(models)
    x, y = batches(len(models), b=16)
    x = x.to(dtype)
    _summed_loss(packed(x), y).backward()
    grads = {n: p.grad for n, p in packed.named_parameters()}
    for i, m in enumerate(models):
        F.cross_entropy(m(x[i]), y[i]).backward()
        for name, p in m.named_parameters():
            assert_grad_close(grads[name].chunk(packed.members, 0)[i], p.grad, dtype, f"member {i} {name}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_sgd_steps_equal_standalone(dtype):
    """Two steps of SGD (momentum 0.9, weight decay 1e-4), so momentum buffers matter too."""
    models = [m.to(dtype) for m in make_members(PACKS["mixed"])]
    packed = pack_models(models)
    opt_kw = dict(lr=0.1, momentum=0.9, weight_decay=1e-4)
    opt = torch.optim.SGD(packed.parameters(), **opt_kw)
    opts = [torch.optim.SGD(m.parameters(), **opt_kw) for m in models]
    steps = 2 if dtype == torch.float64 else 1   # fp32: step 2 amplifies step 1's rounding
    for step in range(steps):
        x, y = batches(len(models), b=16, seed=step)
        opt.zero_grad()
        _summed_loss(packed(x.to(dtype)), y).backward()
        opt.step()
        for i, (m, o) in enumerate(zip(models, opts)):
            o.zero_grad()
            F.cross_entropy(m(x[i].to(dtype)), y[i]).backward()
            o.step()
    # fp32: parameters move by lr * gradient, so the gradients' rounding (above) shows, scaled by lr
    tol = dict(rtol=1e-3, atol=5e-3) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    assert_members_equal(packed, models, **tol)


def test_member_checkpoints_load_into_single_model(tmp_path):
    models = make_members(PACKS["mixed"])
    packed = pack_models(models)
    for i, name in enumerate(packed.member_names):
        torch.save({"model": member_state_dict(packed, i)}, tmp_path / f"{i}.pth")
        single = build_model(name)
        single.load_state_dict(torch.load(tmp_path / f"{i}.pth")["model"], strict=True)
        for k, v in models[i].state_dict().items():
            assert torch.equal(single.state_dict()[k], v), k
    singles = [build_model(name) for name in packed.member_names]   # and back into a pack
    for i, m in enumerate(singles):
        m.load_state_dict(member_state_dict(packed, i))
    again = pack_models(singles)
    for k, v in packed.state_dict().items():
        assert torch.equal(again.state_dict()[k], v), k


def test_fresh_pack_has_member_parameter_counts():
    packed = PackedCifarResNet(56, [False, True])
    single = sum(p.numel() for p in build_model("resnet56").parameters())
    assert sum(p.numel() for p in packed.parameters()) == 2 * single
    assert packed.member_names == ["plain56", "resnet56"]
    names = [n for n, _ in packed.named_parameters()]
    assert names == [n for n, _ in build_model("resnet56").named_parameters()]


def test_bad_packs_are_refused():
    with pytest.raises(ValueError, match="same depth"):
        pack_models([build_model("resnet20"), build_model("resnet56")])
    with pytest.raises(ValueError, match="option B"):
        pack_models([build_model("resnet20", shortcut="B"), build_model("resnet20")])
    with pytest.raises(ValueError, match="depth must be 6n\\+2"):
        PackedCifarResNet(21, [True])
    packed = PackedCifarResNet(20, [True, False])
    with pytest.raises(ValueError, match="expected input"):
        packed(torch.zeros(3, 2, 3, 32, 32))
    with pytest.raises(ValueError, match="member index"):
        member_state_dict(packed, 2)
