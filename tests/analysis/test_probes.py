"""Theory probes (resnet_nb.analysis.probes): shapes, seeding, and the plain/residual contrast."""
import math

import pytest
import torch

from resnet_nb.analysis import plots, probes
from resnet_nb.data.cifar10 import load_cifar10
from resnet_nb.models.resnet import build_model


@pytest.fixture(scope="module")
def batch(fake_cifar):
    torch.set_num_threads(1)
    ds = load_cifar10(fake_cifar, allow_noncanonical=True)
    return probes.probe_batch(ds, batch_size=8, seed=0)


def test_probe_batch_is_normalised_and_seeded(fake_cifar):
    ds = load_cifar10(fake_cifar, allow_noncanonical=True)
    x, y = probes.probe_batch(ds, 16, seed=3)
    x2, y2 = probes.probe_batch(ds, 16, seed=3)
    assert x.shape == (16, 3, 32, 32) and x.dtype == torch.float32 and y.shape == (16,)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert abs(float(x.mean())) < 0.5
    xp, _ = probes.probe_batch(ds, 16, seed=3, normalization="pixel")
    assert xp.shape == x.shape
    with pytest.raises(ValueError, match="batch_size must be in 1..500"):
        probes.probe_batch(ds, 1000)


@pytest.mark.parametrize("name,n_conv,n_blocks", [("plain20", 19, 10), ("resnet20", 19, 10)])
def test_probe_model_shapes(batch, name, n_conv, n_blocks):
    torch.manual_seed(0)
    model = build_model(name)
    r = probes.probe_model(model, *batch)
    assert len(r["conv_grad_norms"]) == n_conv == len(probes.conv_layers(model))
    assert len(r["block_output_std"]) == n_blocks
    assert all(math.isfinite(v) and v > 0 for v in r["conv_grad_norms"] + r["block_output_std"])
    assert r["input_grad_norm"] > 0
    assert all(p.grad is None for p in model.parameters())  # left clean


def test_run_probes_seeds_and_summary(batch):
    res = probes.run_probes(*batch, depths=(20, 26), seeds=(0, 1))
    assert [r["model"] for r in res] == ["plain20"] * 2 + ["resnet20"] * 2 + ["plain26"] * 2 + ["resnet26"] * 2
    again = probes.run_probes(*batch, depths=(20,), seeds=(0,), families=("plain",))
    assert again[0]["conv_grad_norms"] == pytest.approx(res[0]["conv_grad_norms"], rel=1e-5)
    s = probes.summarize_probes(res)
    assert list(s) == ["plain20", "resnet20", "plain26", "resnet26"]
    assert s["resnet26"]["n_seeds"] == 2 and len(s["resnet26"]["conv_grad_norms_mean"]) == 25
    assert s["plain20"]["input_grad_norm_std"] >= 0
    # the residual sum grows the forward signal with depth; BN keeps the plain net flat
    assert s["resnet26"]["block_output_std_mean"][-1] > 1.5 * s["plain26"]["block_output_std_mean"][-1]
    # the comparisons 01_theory prints, as measured here
    assert probes.residual_contrast(s) == {20: {"grad_spread_smaller": True, "signal_grows": True},
                                           26: {"grad_spread_smaller": True, "signal_grows": True}}
    assert "| resnet26 | 25 |" in probes.probe_table(s)
    label = probes.probe_label(dict(provenance="synthetic", depths="20,26", seeds="0,1", batch_size=8))
    for make in (plots.grad_norm_figure, plots.activation_std_figure, plots.input_grad_figure):
        assert make(s, label).axes
    # the shattering probe: 8 points on the line, lags 1..4; the residual net keeps them correlated
    assert len(s["plain26"]["grad_corr_lags_mean"]) == 4 and s["plain26"]["neighbour_grad_corr_seeds"]
    assert s["resnet26"]["neighbour_grad_corr_mean"] > s["plain26"]["neighbour_grad_corr_mean"]
    assert plots.grad_correlation_figure(s, label, probes.SHATTER_STEP).axes


def test_parse_int_list():
    assert probes.parse_int_list("20, 56,110") == [20, 56, 110]
    assert probes.parse_int_list([1, 2]) == [1, 2]
    with pytest.raises(ValueError, match="comma list of integers"):
        probes.parse_int_list("20,x", "depths")


def test_gradient_correlation_of_a_linear_net_is_one(batch):
    """A linear model's input gradient is its weight row at every input: correlation 1 at
    every lag (the closed form), whatever the line."""
    x, _ = batch                                                   # (8, 3, 32, 32)
    torch.manual_seed(0)
    linear = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
    g = probes.line_input_gradients(linear, probes.input_line(x[0], x[1], 8), output=3)
    assert torch.allclose(g, linear[1].weight[3].detach().expand(8, -1))
    r = probes.grad_correlation_probe(linear, x, output=3)
    assert r["grad_corr_lags"] == pytest.approx([1.0] * 4, abs=1e-9) and r["neighbour_grad_corr"] == r["grad_corr_lags"][0]


def test_gradient_correlation_by_hand():
    v = torch.tensor([1.0, -2.0, 0.5, 3.0])
    alternating = torch.stack([(-1) ** k * v + 7.0 for k in range(6)])   # a constant offset is centred away
    assert probes.gradient_correlation(alternating) == pytest.approx([-1.0, 1.0, -1.0], abs=1e-12)
    a, b, c = torch.tensor([[1.0, 2.0, 4.0], [2.0, 1.0, 3.0], [0.0, 1.0, 5.0]])
    corr = lambda u, w: float(torch.corrcoef(torch.stack([u, w]))[0, 1])  # noqa: E731
    assert probes.gradient_correlation(torch.stack([a, b, c]), max_lag=2) == \
        pytest.approx([(corr(a, b) + corr(b, c)) / 2, corr(a, c)], abs=1e-6)
    assert probes.gradient_correlation(torch.zeros(3, 4)) == [0.0]       # no gradient: uncorrelated
    line = probes.input_line(torch.zeros(2), torch.ones(2), 5)
    assert line[:, 0].tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    with pytest.raises(ValueError, match="max_lag must be in 1..2"):
        probes.gradient_correlation(torch.zeros(3, 4), max_lag=3)


def test_literature_checks_on_constructed_summaries():
    def rec(family, depth, grad, corr):
        return {"family": family, "depth": depth, "input_grad_norm_mean": grad, "neighbour_grad_corr_mean": corr}
    shattered = {"plain20": rec("plain", 20, 1.0, 0.9), "resnet20": rec("resnet", 20, 0.3, 0.99),
                 "plain56": rec("plain", 56, 500.0, 0.01), "resnet56": rec("resnet", 56, 1.2, 0.95)}
    c = probes.literature_checks(shattered)
    assert c["depths"] == [20, 56] and c["shattering"]["agrees"] and c["explosion"]["agrees"]
    assert c["explosion"]["plain_growth"] == 500.0 and not c["healthy"]["agrees"]
    lines = probes.literature_lines(c)
    assert "agrees with Balduzzi" in lines[0] and "plain x500" in lines[1] and "explode from depth 20 to 56" in lines[2]
    calm = {"plain20": rec("plain", 20, 1.0, 0.9), "resnet20": rec("resnet", 20, 1.0, 0.8),
            "plain56": rec("plain", 56, 2.0, 0.95), "resnet56": rec("resnet", 56, 1.0, 0.9)}
    c = probes.literature_checks(calm)
    assert not c["shattering"]["agrees"] and not c["explosion"]["agrees"] and c["healthy"]["agrees"]
    assert probes.literature_checks({"plain20": shattered["plain20"], "resnet20": shattered["resnet20"]}) is None
