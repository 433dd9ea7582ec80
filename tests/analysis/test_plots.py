"""Figure titles name the data they show: CIFAR-10, the non-canonical copy
or the synthetic fixture, read from the run files; never "CIFAR-10" or "real" for synthetic data."""
from dataclasses import asdict

import pytest

from resnet_nb.analysis import aggregate, plots, probes
from resnet_nb.runs.rundir import atomic_write_json, list_runs
from resnet_nb.training.config import make_config

PROVENANCES = ("canonical", "noncanonical", "synthetic")


def titles(fig) -> str:
    """Every title of ``fig``: the axes' titles and the suptitle, one text (titles are
    wrapped to the figure's width: line breaks become spaces)."""
    parts = [ax.get_title() for ax in fig.axes]
    if fig._suptitle is not None:
        parts.append(fig._suptitle.get_text())
    return " ".join(" ".join(parts).split())


def make_runs(out, provenance, preset="smoke", epochs=3, planned=3):
    """Run dirs of plain20 and resnet20 on data of ``provenance``, read back from the files."""
    dataset = {"provenance": provenance, "canonical": provenance == "canonical", "fingerprint": "f" * 64,
               "n_train": 2000, "n_test": 500}
    for model in ("plain20", "resnet20"):
        cfg = make_config(preset, model=model, run_id="r", out_dir=str(out), epochs=planned,
                          milestones=(planned,), run_name=model)
        d = out / "r" / model
        d.mkdir(parents=True)
        atomic_write_json(d / "config.json", {"config": asdict(cfg), "preset": preset, "dataset": dataset,
                                              "status": "finished", "params": 1000})
        atomic_write_json(d / "metrics.json", [
            {"epoch": e, "train_loss": 2.0 / e, "train_acc": 0.3 + 0.1 * e, "test_loss": 2.1 / e,
             "test_acc": 0.2 + 0.1 * e, "lr": 0.1, "time": 1.0, "elapsed": float(e)}
            for e in range(1, epochs + 1)])
    return list_runs(out, "r")


@pytest.fixture
def saved(monkeypatch):
    """The figures ``plots.save`` is given, by file name (nothing is written)."""
    figs = {}
    monkeypatch.setattr(plots, "save", lambda fig, path, dpi=plots.DPI: figs.setdefault(path.name, fig) and path)
    return figs


def test_provenance_label_words():
    assert plots.provenance_label({"provenance": "canonical"}) == "CIFAR-10"
    assert plots.provenance_label("noncanonical") == "non-canonical CIFAR-10 copy"
    assert plots.provenance_label("synthetic") == "synthetic data"
    assert plots.provenance_label(None) == "data of unknown provenance (not recorded)"
    assert (plots.provenance_label({"provenance": "synthetic"}, "smoke", 5)
            == "synthetic data, smoke preset, 5 epochs: shows the code runs, not the paper's result")
    assert plots.provenance_label("canonical", "seed", 200) == "CIFAR-10, seed preset, 200 epochs"
    assert plots.provenance_label("canonical", "seed", 37, 200) == "CIFAR-10, seed preset, 37 of 200 epochs"
    # a real-data smoke run is no result either
    assert plots.provenance_label("canonical", "smoke", 5).endswith("not the paper's result")
    assert "not the paper's result" not in plots.provenance_label("noncanonical", "paper", 182)


@pytest.mark.parametrize("provenance", PROVENANCES)
def test_result_figures_name_the_runs_data(tmp_path, saved, provenance):
    runs = make_runs(tmp_path, provenance)
    seed_figures = {k: f for k, f in aggregate.FIGURE_FILES.items() if k != "error_vs_depth"}  # no sweep here
    assert aggregate.write_figures(runs, tmp_path / "figs") == seed_figures
    assert set(saved) == set(seed_figures.values())   # the seed report's file names
    for name, fig in saved.items():
        text = titles(fig)
        assert "smoke preset, 3 epochs" in text, name
        if provenance == "synthetic":
            assert "synthetic data" in text and "CIFAR-10" not in text, name
        elif provenance == "noncanonical":
            assert "non-canonical CIFAR-10 copy" in text, name
        else:
            assert "CIFAR-10" in text and "non-canonical" not in text and "synthetic" not in text, name


def test_unfinished_runs_say_how_far_they_got(tmp_path):
    runs = make_runs(tmp_path, "canonical", preset="seed", epochs=2, planned=4)
    assert aggregate.runs_label(runs) == "CIFAR-10, seed preset, 2 of 4 epochs"


def test_run_curves_and_data_figures_take_the_label():
    import torch

    curves = {"plain20": {"epoch": [1, 2], "train_loss": [2, 1], "test_loss": [2, 1], "train_acc": [.2, .4],
                          "test_acc": [.2, .3]}}
    assert "synthetic data" in titles(plots.run_curves_figure(curves, plots.provenance_label("synthetic")))
    label = plots.provenance_label("noncanonical")
    x = torch.zeros(20, 3, 32, 32, dtype=torch.uint8)
    y = torch.arange(20) % 10
    classes = [str(i) for i in range(10)]
    for fig in (plots.sample_grid_figure(x, y, classes, per_class=2, data_label=label),
                plots.augmentation_figure(x[:2], [x[:2]], data_label=label),
                plots.class_balance_figure([2] * 10, [1] * 10, classes, label)):
        assert "non-canonical CIFAR-10 copy" in titles(fig)


def probe_results():
    """Two depths, two seeds of made-up probe values in ``run_probes``' shape."""
    out = []
    for depth in (20, 26):
        for family in ("plain", "resnet"):
            for seed in (0, 1):
                n = (depth - 2) // 6
                out.append({"model": f"{family}{depth}", "family": family, "depth": depth, "seed": seed,
                            "conv_grad_norms": [1.0 + seed + i for i in range(depth - 1)],
                            "block_output_std": [1.0 + i for i in range(1 + 3 * n)],
                            "input_grad_norm": 0.1 * (seed + 1), "loss": 2.3})
    return out


@pytest.mark.parametrize("provenance", PROVENANCES)
def test_theory_figures_name_the_probe_data(tmp_path, saved, provenance):
    params = dict(dataset="synthetic" if provenance == "synthetic" else "cifar10", provenance=provenance,
                  fingerprint="f" * 64, depths="20,26", seeds="0,1", batch_size=16, normalization="channel")
    probes.write_theory_outputs(probe_results(), tmp_path, params)
    assert set(saved) == set(aggregate.THEORY_FIGURE_FILES.values())
    stored = (tmp_path / probes.THEORY_JSON).read_text()
    assert f'"provenance": "{provenance}"' in stored
    for name, fig in saved.items():
        text = titles(fig)
        assert "one batch of 16 training images" in text and "real" not in text, name
        assert "depths 56, 110 not probed" in text, name
        if provenance == "synthetic":
            assert "synthetic data" in text and "CIFAR-10" not in text, name
        elif provenance == "noncanonical":
            assert "non-canonical CIFAR-10 copy" in text, name
        else:
            assert "CIFAR-10" in text and "non-canonical" not in text, name


def test_theory_outputs_need_the_provenance(tmp_path):
    with pytest.raises(ValueError, match="provenance"):
        probes.write_theory_outputs(probe_results(), tmp_path, {"dataset": "cifar10", "batch_size": 16})


def test_probe_scope_says_what_a_smaller_probe_left_out():
    assert probes.probe_scope(probes.FULL_PROBE) == ""
    assert probes.probe_scope(dict(depths="20,56", seeds="0", batch_size=32)) == (
        "reduced probe: depth 110 not probed, 1 of 3 seeds, batch of 32, not 128")
    assert probes.probe_scope(dict(depths="20", seeds="0,1,2", batch_size=128)) == (
        "reduced probe: depths 56, 110 not probed")
    label = probes.probe_label(dict(provenance="synthetic", **probes.SMOKE_PROBE))
    assert label.startswith("one batch of ") and "synthetic data; reduced probe:" in label


def test_fig6_bands_colours_per_depth_and_an_extended_axis_said_in_the_title():
    """One colour per depth, train dashed / test solid in %, a +-std band per curve
    with several seeds, the paper's 0-20 % axis unless errors lie above it (then said)."""
    from matplotlib.collections import PolyCollection

    low = {"plain20": {"epoch": [1, 2], "train_acc": [0.90, 0.95], "test_acc": [0.88, 0.91], "n_seeds": 1},
           "plain56": {"epoch": [1, 2], "train_acc": [0.85, 0.90], "test_acc": [0.84, 0.87], "n_seeds": 1}}
    fig = plots.error_fig6_figure(low, "CIFAR-10, seed preset, 2 epochs")
    left = fig.axes[0]
    assert left.get_ylim() == (0, 20) and "y-axis" not in fig._suptitle.get_text()
    styles = {(ln.get_linestyle(), ln.get_color()) for ln in left.get_lines()}
    assert len({c for _, c in styles}) == 2 and {s for s, _ in styles} == {"--", "-"}
    assert left.get_lines()[1].get_ydata()[0] == pytest.approx(12.0)  # test error of plain20, epoch 1, in %
    assert not [c for c in left.collections if isinstance(c, PolyCollection)]  # one seed: no band
    high = {"resnet20": {"epoch": [1, 2], "train_acc": [0.40, 0.60], "test_acc": [0.35, 0.55],
                         "train_acc_std": [0.02, 0.01], "test_acc_std": [0.03, 0.02], "n_seeds": 2}}
    fig = plots.error_fig6_figure(high, "synthetic data")
    right = fig.axes[1]
    assert right.get_ylim() == (0, 70) and "errors reach 65 %" in fig._suptitle.get_text()
    assert len([c for c in right.collections if isinstance(c, PolyCollection)]) == 2  # train and test bands
    assert "ResNet-20 (mean of 2 seeds, ±std)" in [t.get_text() for t in right.get_legend().get_texts()]
    assert [t.get_text() for t in right.texts] == []                              # a panel with runs: no note
    assert [t.get_text() for t in fig.axes[0].texts] == ["no plain networks in these runs"]   # and one without


def test_layer_responses_go_to_a_log_axis_when_one_net_dwarfs_the_others():
    """An undertrained Plain-56 (stds up to ~27) beside nets near 1 would flatten them into one line."""
    near_one = {"resnet20": {"std": [0.8, 1.0, 1.2]}, "plain20": {"std": [0.9, 1.1, 1.3]}}
    fig = plots.layer_responses_figure(near_one, "data")
    assert [ax.get_yscale() for ax in fig.axes] == ["linear", "linear"]
    fig = plots.layer_responses_figure({**near_one, "plain56": {"std": [27.0, 9.0, 1.5]}}, "data")
    assert [ax.get_yscale() for ax in fig.axes] == ["log", "log"]
    assert all(ax.get_ylabel() == "std of the response (log scale)" for ax in fig.axes)
