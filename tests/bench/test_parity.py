"""``resnet-nb parity`` on the synthetic fixture with tiny sizes: fp32 and bf16 runs of the short
recipe's first epochs, the comparison against the seed-to-seed difference, and --reuse."""
import json

import pytest

from resnet_nb.cli import main
from resnet_nb.training.config import make_config
from resnet_nb.training.train import train

pytestmark = pytest.mark.slow
TINY = ["--set", "train_subset=64", "--set", "test_subset=32", "--set", "batch_size=32"]


def test_parity_trains_both_precisions_and_compares_with_two_seeds(fake_cifar, tmp_path, capsys):
    out = tmp_path / "parity.json"
    rc = main(["parity", "--dataset", "synthetic", "--data-root", str(fake_cifar), "--models", "resnet8",
               "--seeds", "0,1", "--epochs", "2", "--out-dir", str(tmp_path / "runs"), "--out", str(out),
               "--parallel", "2", *TINY])
    assert rc in (0, 3)                                   # 3: parity does not hold (tiny runs: either)
    res = json.loads(out.read_text())
    assert [r["epoch"] for r in res["models"]["resnet8"]["epochs"]] == [1, 2]
    e = res["models"]["resnet8"]["epochs"][1]["test_acc"]
    assert len(e["fp32"]) == len(e["bf16"]) == 2 and e["seed_vs_seed"] == pytest.approx(abs(e["fp32"][0] - e["fp32"][1]))
    assert res["models"]["resnet8"]["holds"] == (rc == 0)
    runs = sorted(p.name for p in (tmp_path / "runs" / "parity").iterdir())
    assert runs == ["resnet8-bf16-seed0", "resnet8-bf16-seed1", "resnet8-fp32-seed0", "resnet8-fp32-seed1"]
    cfg = json.loads((tmp_path / "runs" / "parity" / "resnet8-bf16-seed0" / "config.json").read_text())["config"]
    assert (cfg["preset"], cfg["precision"], cfg["milestones"]) == ("short", "bf16", [10, 15])
    assert "| ResNet-8 | 2 |" in capsys.readouterr().out


@pytest.mark.parametrize("reused, trained", [("bf16", "fp32"), ("fp32", "bf16")])
def test_parity_reuses_a_short_reproductions_runs_for_their_precision(fake_cifar, tmp_path, capsys, reused, trained):
    common = dict(dataset="synthetic", data_root=str(fake_cifar), train_subset=64, test_subset=32, batch_size=32,
                  device="cpu", out_dir=str(tmp_path / "repro"), run_id="short")
    for seed in (0, 1):     # a longer short-recipe run: its first 2 epochs are the parity run's
        train(make_config("short", model="resnet8", seed=seed, precision=reused, epochs=3,
                          run_name=f"resnet8-seed{seed}", **common))
    rc = main(["parity", "--dataset", "synthetic", "--data-root", str(fake_cifar), "--models", "resnet8",
               "--epochs", "2", "--out-dir", str(tmp_path / "runs"), "--reuse", str(tmp_path / "repro" / "short"),
               "--out", str(tmp_path / "parity.json"), *TINY])
    assert rc in (0, 3)
    out = capsys.readouterr().out
    assert out.count(f"({reused}, same recipe)") == 2 and f"({trained}, same recipe)" not in out
    # the result names where each side's epochs come from, and on what they trained
    sources = json.loads((tmp_path / "parity.json").read_text())["sources"]
    assert sorted(sources) == sorted(f"resnet8-{p}-seed{s}" for p in ("bf16", "fp32") for s in (0, 1))
    assert {k: (v["reused"], v["run"].split("/")[-1]) for k, v in sources.items() if k.startswith(f"resnet8-{reused}")} \
        == {f"resnet8-{reused}-seed{s}": (True, f"resnet8-seed{s}") for s in (0, 1)}
    assert all(not v["reused"] for k, v in sources.items() if k.startswith(f"resnet8-{trained}"))
    assert all(v["device_name"] and v["torch"] and v["data"] == "synthetic" for v in sources.values())
    assert sorted(p.name for p in (tmp_path / "runs" / "parity").iterdir()) == [f"resnet8-{trained}-seed0",
                                                                                 f"resnet8-{trained}-seed1"]
    # a run of the same recipe on other data is not reused
    from resnet_nb.bench.parity import _reused, parity_runs
    cfg = next(c for c in parity_runs(["resnet8"], [0, 1], 2, {k: v for k, v in common.items() if k != "run_id"})
               if c.precision == reused and c.seed == 0)
    from resnet_nb.data.cifar10 import load_dataset
    right = load_dataset("synthetic", str(fake_cifar)).fingerprint
    assert _reused(tmp_path / "repro" / "short", "resnet8", 0, 2, cfg, right) is not None
    capsys.readouterr()
    assert _reused(tmp_path / "repro" / "short", "resnet8", 0, 2, cfg, "0" * 64) is None
    assert "not reused: trained on other data" in capsys.readouterr().out
    # the reused epochs are exactly a fresh run's: train one and compare
    fresh = train(make_config("short", model="resnet8", seed=0, precision=reused, epochs=2, run_name="x",
                              **{**common, "out_dir": str(tmp_path / "fresh")}))
    a = json.loads((fresh / "metrics.json").read_text())
    b = json.loads((tmp_path / "repro" / "short" / "resnet8-seed0" / "metrics.json").read_text())[:2]
    assert [(r["train_loss"], r["test_acc"]) for r in a] == [(r["train_loss"], r["test_acc"]) for r in b]


def test_parity_needs_two_seeds():
    assert main(["parity", "--seeds", "0"]) == 2
