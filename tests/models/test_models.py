import pytest
import torch

from resnet_nb.models.resnet import (
    BasicBlock,
    CifarResNet,
    ShortcutA,
    ShortcutB,
    build_model,
    count_parameters,
    parse_model_name,
)

# (depth, parameters with option A): the docstring table of resnet_nb.models.resnet
PARAMS = {20: 269_722, 32: 464_154, 44: 658_586, 56: 853_018, 110: 1_727_962}
PAPER_M = {20: 0.27, 32: 0.46, 44: 0.66, 56: 0.85, 110: 1.7, 1202: 19.4}


@pytest.mark.parametrize("family", ["plain", "resnet"])
@pytest.mark.parametrize("depth", sorted(PARAMS))
def test_parameter_counts(family, depth):
    n = count_parameters(build_model(f"{family}{depth}"))
    assert n == PARAMS[depth]
    assert round(n / 1e6, 2 if depth < 100 else 1) == PAPER_M[depth]


def test_resnet1202_builds_and_counts():
    m = build_model("resnet1202")
    assert round(count_parameters(m) / 1e6, 1) == 19.4
    assert sum(isinstance(b, BasicBlock) for b in m.modules()) == 600


def test_docstring_table_matches_counts():
    import resnet_nb.models.resnet as mod
    for depth, n in PARAMS.items():
        assert f"{n:,}" in mod.__doc__


@pytest.mark.parametrize("name", ["plain20", "resnet20", "resnet32"])
def test_output_and_stage_shapes(name):
    m = build_model(name).eval()
    x = torch.randn(2, 3, 32, 32)
    feats = []
    for module in (m.bn1, m.layer1, m.layer2, m.layer3):
        module.register_forward_hook(lambda mod, inp, out: feats.append(out))
    assert m(x).shape == (2, 10)
    assert [tuple(f.shape) for f in feats] == [(2, 16, 32, 32), (2, 16, 32, 32), (2, 32, 16, 16), (2, 64, 8, 8)]


def test_layer_count_is_depth():
    for depth in (20, 56):
        m = build_model(f"resnet{depth}")
        convs = [mod for mod in m.modules() if isinstance(mod, torch.nn.Conv2d)]
        linears = [mod for mod in m.modules() if isinstance(mod, torch.nn.Linear)]
        assert len(convs) + len(linears) == depth
        # stride 2 exactly in the first block of stages 2 and 3
        strided = [n for n, mod in m.named_modules() if isinstance(mod, torch.nn.Conv2d) and mod.stride == (2, 2)]
        assert strided == ["layer2.0.conv1", "layer3.0.conv1"]
        bns = [mod for mod in m.modules() if isinstance(mod, torch.nn.BatchNorm2d)]
        assert len(bns) == len(convs)


def test_option_a_is_subsample_plus_zero_channels():
    sc = ShortcutA(16, 32, 2)
    x = torch.randn(3, 16, 32, 32)
    y = sc(x)
    assert y.shape == (3, 32, 16, 16)
    assert torch.equal(y[:, :16], x[:, :, ::2, ::2])
    assert torch.count_nonzero(y[:, 16:]) == 0
    assert list(sc.parameters()) == []


def test_option_b_projection():
    m = build_model("resnet20", shortcut="B")
    assert isinstance(m.layer2[0].shortcut, ShortcutB)
    assert isinstance(m.layer1[0].shortcut, torch.nn.Identity)
    assert isinstance(m.layer2[1].shortcut, torch.nn.Identity)
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("depth", [20, 56])
def test_plain_and_residual_share_parameter_names_and_shapes(depth):
    plain, res = build_model(f"plain{depth}"), build_model(f"resnet{depth}")
    ps = {k: v.shape for k, v in plain.state_dict().items()}
    rs = {k: v.shape for k, v in res.state_dict().items()}
    assert ps == rs
    # same weights -> the only difference is the shortcut add
    res.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 32, 32)
    assert not torch.allclose(plain.eval()(x), res.eval()(x))
    assert all(b.shortcut is None for b in plain.modules() if isinstance(b, BasicBlock))


def test_zero_residual_branch_is_identity():
    block = BasicBlock(16, 16, 1, torch.nn.Identity()).eval()
    torch.nn.init.zeros_(block.bn2.weight)   # F(x) = bn2(...) = 0
    x = torch.relu(torch.randn(4, 16, 8, 8))  # a block input is a ReLU output (>= 0)
    assert torch.equal(block(x), x)
    # the same plain block maps x to relu(0) = 0, not to x
    plain = BasicBlock(16, 16, 1, None).eval()
    torch.nn.init.zeros_(plain.bn2.weight)
    assert torch.count_nonzero(plain(x)) == 0


def test_he_init():
    torch.manual_seed(0)
    m = build_model("resnet56")
    w = m.layer3[4].conv1.weight
    fan_in = w.shape[1] * w.shape[2] * w.shape[3]
    assert w.std().item() == pytest.approx((2.0 / fan_in) ** 0.5, rel=0.05)


@pytest.mark.parametrize("bad", ["resnet51", "resnet", "vgg16", "resnet-20", "plain2", ""])
def test_invalid_names_raise_value_error_listing_valid(bad):
    with pytest.raises(ValueError, match=r"6n\+2|plain<depth>"):
        build_model(bad)


def test_bad_depth_message():
    with pytest.raises(ValueError, match=r"depth must be 6n\+2 .*20, 32, 44, 56, 110, 1202.*got 21"):
        CifarResNet(21)
    with pytest.raises(ValueError, match="shortcut must be one of A, B"):
        build_model("resnet20", shortcut="C")
    assert parse_model_name("ResNet56") == ("resnet", 56)
