"""``resnet-nb bench`` in its CPU mode with tiny sizes, and the implied-time arithmetic."""
import json

import pytest

from resnet_nb.bench import table, throughput
from resnet_nb.cli import main


def test_bench_cli_cpu_tiny(tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = main(["bench", "--device", "cpu", "--models", "resnet8", "--packs", "2,3", "--steps", "2",
               "--warmup", "1", "--repeats", "1", "--batch-size", "8", "--n-train", "64",
               "--eval-images", "16", "--workers", "0", "--out", str(out)])
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["device"].startswith("CPU") and "synthetic" in res["data"]
    assert [(r["variant"], r["members"]) for r in res["rows"]] == [("a", 1), ("b", 1), ("c", 2), ("c", 3)]
    assert all(r["train_img_s"] > 0 and r["eval_img_s"] > 0 for r in res["rows"])
    assert res["rows"][0]["ratio_to_a"] == 1.0
    assert res["settings"]["precision"] == "fp32"                       # auto on CPU
    text = capsys.readouterr().out
    assert "train img/s" in text and "vs (a)" in text and "implied wall time" in text


def test_implied_times_follow_the_seed_recipe():
    rows = []
    for d in (20, 56):
        rows.append({"variant": "a", "model": f"resnet{d}", "depth": d, "members": 1,
                     "train_img_s": 10_000.0, "eval_img_s": 20_000.0})
        rows.append({"variant": "c", "model": None, "depth": d, "members": 2,
                     "train_img_s": 50_000.0, "eval_img_s": 100_000.0})
        rows.append({"variant": "c", "model": None, "depth": d, "members": 10,
                     "train_img_s": 25_000.0, "eval_img_s": 100_000.0})
    rows.append({"variant": "d", "model": None, "depth": 0, "depths": [20, 56], "members": 4,
                 "train_img_s": 40_000.0, "eval_img_s": None})
    assert table.implied_times(rows, [20, 56])["f_branches"] is None
    rows.append({"variant": "f", "model": None, "depth": 0, "depths": [20, 56], "members": 4,
                 "train_img_s": 20_000.0, "eval_img_s": 50_000.0})
    imp = table.implied_times(rows, [20, 56])
    assert imp["d_concurrent_pairs"] == pytest.approx(200 * 50_000 / 40_000 + 2 * 200 * 0.1)
    assert imp["f_branches"] == pytest.approx(200 * (50_000 / 20_000 + 10_000 / 50_000))   # all four at once
    one_a = 200 * (50_000 / 10_000 + 10_000 / 20_000)                   # 1100 s per run
    assert imp["a_common"] == pytest.approx(4 * one_a)                  # plain taken at resnet's rate
    assert imp["c_pairs"] == pytest.approx(2 * 200 * (1 + 0.1))         # one pack per depth
    assert imp["c_5_seeds"] == pytest.approx(2 * 200 * (2 + 0.1))
    assert imp["a_common_5_seeds"] == pytest.approx(20 * one_a)
    assert imp["b_fast_single"] is None


def test_bench_refuses_missing_cuda_and_bad_sizes(capsys, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert main(["bench", "--device", "cuda", "--steps", "1"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err
    assert main(["bench", "--device", "cpu", "--steps", "0"]) == 2
    assert "--steps must be at least 1" in capsys.readouterr().err


def test_bench_concurrent_on_the_cpu_runs_every_pack_mode_row(tmp_path, capsys):
    """--concurrent on the CPU: (e) per depth, (f) and (d) over both depths run (eagerly, no
    graph), and the table compares each depth's branches with its grouped pair."""
    out = tmp_path / "bench.json"
    rc = main(["bench", "--device", "cpu", "--models", "resnet8,resnet14", "--packs", "2", "--steps", "1",
               "--warmup", "1", "--repeats", "1", "--batch-size", "4", "--n-train", "16", "--eval-images", "8",
               "--skip-common", "--concurrent", "--out", str(out)])
    assert rc == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["variant"], r["members"]) for r in rows] == [
        ("b", 1), ("b", 1), ("c", 2), ("c", 2), ("e", 2), ("e", 2), ("f", 4), ("d", 4)]
    assert [r["label"] for r in rows[4:]] == ["(e) branches plain8+resnet8", "(e) branches plain14+resnet14",
                                              "(f) branches 8+14: 4 nets, one graph", "(d) grouped pairs 8+14, a stream each"]
    assert all(r["train_img_s"] > 0 and r["graph"] is False for r in rows[4:])
    text = capsys.readouterr().out
    assert "eagerly (no graph)" in text
    assert "depth-14 pair, training img/s per member: branches (e)" in text and "(no graph: eager" in text


def test_bench_compile_on_the_cpu_adds_a_compiled_row_next_to_b_and_c(tmp_path, capsys, monkeypatch):
    """--compile (aot_eager here: the CPU check that it runs, not a speed): a (g) row after the
    (b) row and after the (c) row, each with its first call apart, compiled, and its loss
    difference to the uncompiled step over the first steps (fp32 CPU: tiny)."""
    monkeypatch.setenv("RESNET_NB_COMPILE_BACKEND", "aot_eager")
    out = tmp_path / "bench.json"
    rc = main(["bench", "--device", "cpu", "--models", "resnet8", "--packs", "2", "--steps", "1", "--warmup", "0",
               "--repeats", "1", "--batch-size", "4", "--n-train", "16", "--eval-images", "8", "--skip-common",
               "--compile", "--out", str(out)])
    assert rc == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["variant"], r["members"], r["label"]) for r in rows] == [
        ("b", 1, "(b) fast resnet8"), ("g", 1, "(g) compiled resnet8"),
        ("c", 2, "(c) grouped plain8+resnet8"), ("g", 2, "(g) compiled grouped plain8+resnet8")]
    assert all(r["first_step_s"] > 0 and r["train_img_s"] > 0 for r in rows)
    for g in rows[1::2]:
        assert g["compiled"] is True and g["compile_fallback"] is None and g["compile_backend"] == "aot_eager"
        assert g["compile_s"] > 0 and g["graph"] is False and len(g["loss_diff_steps"]) == throughput.COMPILE_CHECK_STEPS
        assert 0 <= g["loss_diff_max"] < 1e-4
    assert "compiled" not in rows[0]                          # the (b), (c) rows are what they were
    text = capsys.readouterr().out
    assert "compiled resnet8: training img/s per member" in text and "vs uncompiled (b)" in text
    assert "compiled grouped plain8+resnet8: training img/s per member" in text and "vs uncompiled (c)" in text
    assert "four runs, compiled grouped pairs (g; no training mode yet):        not measured" in text


def test_implied_times_of_the_compiled_rows_and_merged_results():
    """(g) rows give the four runs' wall time as (b) and (c) do; step 3c's two processes (a
    depth each) merge into one result whose implied times cover both depths."""
    def part(d):
        rows = [{"variant": "b", "model": f"resnet{d}", "depth": d, "members": 1, "train_img_s": 10_000.0,
                 "eval_img_s": 20_000.0},
                {"variant": "g", "model": f"resnet{d}", "depth": d, "members": 1, "train_img_s": 20_000.0,
                 "eval_img_s": 20_000.0},
                {"variant": "c", "model": None, "depth": d, "members": 2, "train_img_s": 25_000.0,
                 "eval_img_s": 100_000.0},
                {"variant": "g", "model": None, "depth": d, "members": 2, "train_img_s": 50_000.0,
                 "eval_img_s": 100_000.0}]
        return {"device": "GPU", "rows": rows, "implied": table.implied_times(rows, [d])}

    p56, p20 = part(56), part(20)
    assert p56["implied"]["g_compiled_pairs"] is None                  # one depth: not the four runs
    merged = table.merge_results([p56, p20])
    imp = merged["implied"]
    assert merged["merged_from"] == 2 and len(merged["rows"]) == 8
    assert imp["g_compiled_single"] == pytest.approx(4 * 200 * (50_000 / 20_000 + 10_000 / 20_000))
    assert imp["b_fast_single"] == pytest.approx(4 * 200 * (50_000 / 10_000 + 10_000 / 20_000))
    assert imp["g_compiled_pairs"] == pytest.approx(2 * 200 * (1 + 0.1))
    assert imp["c_pairs"] == pytest.approx(2 * 200 * (2 + 0.1))
    with pytest.raises(ValueError, match="at least one"):
        table.merge_results([])


def test_bench_cpu_table_precision_layout_threads(tmp_path, capsys, monkeypatch):
    """``resnet-nb bench --device cpu`` alone: the CPU table (tiny sizes)."""
    from resnet_nb.bench import cpu
    monkeypatch.setattr(cpu, "default_precision", lambda device: "bf16")
    out = tmp_path / "cpu.json"
    rc = main(["bench", "--device", "cpu", "--models", "resnet8", "--steps", "2", "--warmup", "1",
               "--batch-size", "8", "--n-train", "64", "--eval-images", "16", "--workers", "0",
               "--parallel", "2", "--out", str(out)])
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["device"].startswith("CPU: ") and isinstance(res["native_bf16"], bool)
    got = [(r["variant"], r["precision"], r["layout"]) for r in res["rows"]]
    assert got[0][0] == "a" and got[1:5] == [("layout", p, l) for p, l in cpu.LAYOUTS]
    par = res["rows"][5]
    assert par["variant"] == "parallel" and par["processes"] == 2 and len(par["per_process_img_s"]) == 2
    assert par["precision"] == "bf16" and all(r["train_img_s"] > 0 for r in res["rows"])
    # resnet8 stands in for every model of its depth only: the short recipe's depths are not measured
    assert set(res["implied_short_s"].values()) == {None}
    text = capsys.readouterr().out
    assert "implied wall time of the short reproduction" in text and "x fp32 NCHW" in text
    per = res["train_flops_per_image"]["resnet8"]
    assert all(r["train_gflop_s"] == pytest.approx(r["train_img_s"] * per / 1e9) for r in res["rows"])
    assert "GFLOP/s" in text and f"{res['short_flops'] / 1e15:.2f} PFLOP" in text


def test_flops_per_image_are_the_nets_convolutions_and_linear_layer():
    """Counted by hand: CIFAR ResNet-20's forward is 3x3 convolutions (16, 32, 64 channels at
    32x32, 16x16, 8x8) and a 64->10 linear layer; a training step is three times its forward but
    for the gradient of the input image. Option-A shortcuts add no arithmetic: Plain-20 = ResNet-20."""
    from resnet_nb.bench.cpu import SHORT_RECIPE, flops_per_image, short_flops
    conv = lambda cin, cout, hw: 2 * cin * cout * 9 * hw * hw
    first = conv(3, 16, 32)

    def forward(n):         # depth 6n + 2: three stages of n two-conv blocks
        return (first + (2 * n) * conv(16, 16, 32) + conv(16, 32, 16) + (2 * n - 1) * conv(32, 32, 16)
                + conv(32, 64, 8) + (2 * n - 1) * conv(64, 64, 8) + 2 * 64 * 10)

    assert forward(3) == 81_102_080
    assert flops_per_image("resnet20") == flops_per_image("plain20") == {"train": 3 * forward(3) - first,
                                                                          "eval": forward(3)}
    f56 = flops_per_image("resnet56")
    assert f56 == flops_per_image("plain56") == {"train": 3 * forward(9) - first, "eval": forward(9)}
    r = SHORT_RECIPE
    assert short_flops() == pytest.approx(2 * r["epochs"] * sum(r["n_train"] * f["train"] + r["n_test"] * f["eval"]
                                                                for f in (flops_per_image("resnet20"), f56)))


def test_short_wall_time_schedules_the_four_runs_in_slots():
    from resnet_nb.bench.cpu import short_wall_time
    one = {"plain20": 1000.0, "resnet20": 1000.0, "plain56": 500.0, "resnet56": 500.0}
    ev = {m: 1e12 for m in one}                               # evaluation free: training time only
    t20, t56 = 20 * 50_000 / 1000, 20 * 50_000 / 500
    assert short_wall_time(one, ev) == pytest.approx(2 * t20 + 2 * t56)
    # two slots, seed-major order plain20, plain56, resnet20, resnet56: plain20 || plain56, then
    # resnet20 after plain20 (slot 1), resnet56 after resnet20 (slot 1 frees at 2 t20 < t56)
    assert short_wall_time(one, ev, slots=2) == pytest.approx(max(2 * t20 + t56, t56))
