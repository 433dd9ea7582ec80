"""Theory probes (resnet_nb.probes): shapes, seeding, and the plain/residual contrast."""
import math

import pytest
import torch

from resnet_nb import plots, probes
from resnet_nb.data import load_cifar10
from resnet_nb.models import build_model


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


def test_parse_int_list():
    assert probes.parse_int_list("20, 56,110") == [20, 56, 110]
    assert probes.parse_int_list([1, 2]) == [1, 2]
    with pytest.raises(ValueError, match="comma list of integers"):
        probes.parse_int_list("20,x", "depths")
