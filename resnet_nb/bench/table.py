"""The bench's results as numbers and as text: the speed-up of each row over its baseline, the wall
times the measured rates imply for the seed reproduction, several results merged, and the
printed table.
"""
from __future__ import annotations

__all__ = ["SEED_RECIPE", "SEEDS_PER_PACK", "seed_run_seconds", "baseline_of", "implied_times", "merge_results", "row_line", "compiled_line", "format_seconds",
           "format_table"]

SEED_RECIPE = {"epochs": 200, "n_train": 50_000, "n_test": 10_000, "models": 4}
SEEDS_PER_PACK = 5


def seed_run_seconds(img_s_train: float, img_s_eval: float) -> float:
    """Wall time of one run of the seed recipe (or of a pack, at per-member rates)."""
    r = SEED_RECIPE
    return r["epochs"] * (r["n_train"] / img_s_train + r["n_test"] / img_s_eval)


def baseline_of(rows, row):
    """The common-recipe row a row is compared with: same model, else resnet<depth>, else any
    model of that depth."""
    cands = [r for r in rows if r["variant"] == "a" and r["depth"] == row["depth"]]
    for want in (row.get("model"), f"resnet{row['depth']}"):
        for r in cands:
            if r["model"] == want:
                return r
    return cands[0] if cands else None


def implied_times(rows: list[dict], depths: list[int]) -> dict:
    """Implied wall times (s) of the seed's four runs (plain+resnet at depths 20 and 56) and
    of 5 seeds of them, per variant; None where a depth or variant was not measured. For
    (a), (b) and (g) a model that was not measured is taken at the rate of the other family
    of its depth (plain and resnet differ only in the shortcut adds). (g): the compiled step,
    one model at a time (``g_compiled_single``) and as grouped pairs (``g_compiled_pairs``)."""
    def find(variant, **kw):
        c = [r for r in rows if r["variant"] == variant and all(r.get(k) == v for k, v in kw.items())]
        return c[0] if c else None

    out = {}
    for key, variant in (("a_common", "a"), ("b_fast_single", "b"), ("g_compiled_single", "g")):
        rs = [find(variant, model=f"{fam}{d}", members=1) or find(variant, depth=d, members=1)
              for d in (20, 56) for fam in ("plain", "resnet")]
        out[key] = sum(seed_run_seconds(r["train_img_s"], r["eval_img_s"]) for r in rs) if all(rs) else None
    for key, variant, members in (("c_pairs", "c", 2), ("c_5_seeds", "c", 2 * SEEDS_PER_PACK),
                                  ("g_compiled_pairs", "g", 2)):
        # one pack per depth trains its members together, each at the per-member rate
        rs = [find(variant, depth=d, members=members) for d in (20, 56)]
        out[key] = sum(seed_run_seconds(r["train_img_s"], r["eval_img_s"]) for r in rs) if all(rs) else None
    seed_depths = [20, 56]
    conc = find("d", depths=seed_depths)
    pairs = [find("c", depth=d, members=2) for d in seed_depths]
    out["d_concurrent_pairs"] = (
        SEED_RECIPE["epochs"] * SEED_RECIPE["n_train"] / conc["train_img_s"]
        + sum(SEED_RECIPE["epochs"] * SEED_RECIPE["n_test"] / r["eval_img_s"] for r in pairs)
        if conc and all(pairs) else None)
    # --pack-mode branches: the four runs as four branches of one graph, evaluated one by one
    f = find("f", depths=seed_depths)
    out["f_branches"] = seed_run_seconds(f["train_img_s"], f["eval_img_s"]) if f else None
    for key in ("a_common", "b_fast_single"):  # 5 seeds: 20 runs one after the other
        out[f"{key}_5_seeds"] = SEEDS_PER_PACK * out[key] if out[key] else None
    return out


def merge_results(parts: list[dict]) -> dict:
    """One result from several ``run_bench`` results of one machine (e.g. ``--compile`` run in a
    process per depth): rows in order, implied times
    recomputed over all of them; device and settings those of the first part."""
    if not parts:
        raise ValueError("merge_results needs at least one bench result")
    rows = [r for p in parts for r in p["rows"]]
    depths = sorted({r["depth"] for r in rows if r["depth"]})
    return {**parts[0], "rows": rows, "implied": implied_times(rows, depths), "merged_from": len(parts)}


def row_line(r: dict) -> str:
    ratio = f"{r['ratio_to_a']:6.2f}x" if r.get("ratio_to_a") else "   -   "
    ev = f"{r['eval_img_s']:>12,.0f}" if r.get("eval_img_s") else f"{'-':>12s}"
    return f"{r['label']:<44s} {r['members']:>3d} {r['train_img_s']:>12,.0f} {ratio} {ev}"


def compiled_line(g: dict, rows: list[dict]) -> str:
    """A (g) row against its uncompiled twin ((b) same model, (c) same depth and pack size)."""
    twin = [r for r in rows if r["variant"] in ("b", "c") and r["depth"] == g["depth"]
            and r["members"] == g["members"] and r.get("model") == g.get("model")]
    what = g["label"].removeprefix("(g) compiled ")
    line = f"  compiled {what}: training img/s per member {g['train_img_s']:,.0f}"
    if twin:
        t = twin[0]
        line += (f" vs uncompiled ({t['variant']}) {t['train_img_s']:,.0f}: {g['train_img_s'] / t['train_img_s']:.2f}x;"
                 f" first call (compile{', warm-up, capture' if g.get('graph') else ''}) {g['first_step_s']:.1f} s"
                 f" vs {t['first_step_s']:.1f} s")
    else:
        line += f"; first call {g['first_step_s']:.1f} s"
    if not g.get("compiled"):
        line += f"; NOT compiled ({g.get('compile_fallback') or 'no compiled step ran'})"
    line += (f"; compile {g['compile_s']:.1f} s" if g.get("compile_s") is not None else "")
    line += f"; graph {'captured' if g.get('graph') else 'not captured'}"
    line += (f"; max |mean loss, compiled - uncompiled| over the first {len(g['loss_diff_steps'])} steps "
             f"{g['loss_diff_max']:.2e} ({g['precision']})")
    return line


def format_seconds(s):
    return "not measured (needs depths 20 and 56)" if s is None else f"{s:8.0f} s = {s / 60:6.1f} min"


def format_table(res: dict) -> str:
    lines = [f"device: {res['device']} (torch {res['torch']}); data: {res['data']}",
             f"batch {res['settings']['batch_size']}, {res['settings']['steps']} steps x "
             f"{res['settings']['repeats']} repeats (median), warm-up {res['settings']['warmup']} steps excluded; "
             f"fast path precision {res['settings']['precision']}; common recipe workers {res['settings']['workers']}",
             "",
             f"{'variant':<44s} {'N':>3s} {'train img/s':>12s} {'vs (a)':>7s} {'eval img/s':>12s}",
             "  (img/s per member: a pack of N trains N models at this rate each)"]
    lines += [row_line(r) for r in res["rows"]]
    imp = res["implied"]
    lines += ["", "implied wall time, seed recipe (200 epochs x 50k train + 10k test per epoch; "
                  "no per-epoch bookkeeping):",
              f"  four runs (plain/resnet 20/56), common recipe (a):          {format_seconds(imp['a_common'])}",
              f"  four runs, fast path one model at a time (b):             {format_seconds(imp['b_fast_single'])}",
              f"  four runs, grouped pairs by depth (c; --pack-mode grouped): {format_seconds(imp['c_pairs'])}",
              *([f"  four runs, compiled, one model at a time (g; no training mode yet): "
                 f"{format_seconds(imp.get('g_compiled_single'))}",
                 f"  four runs, compiled grouped pairs (g; no training mode yet):        "
                 f"{format_seconds(imp.get('g_compiled_pairs'))}"]
                if any(r["variant"] == "g" for r in res["rows"]) else []),
              *([f"  four runs as four branches of one graph (f; --pack-mode branches): {format_seconds(imp['f_branches'])}"]
                if imp.get("f_branches") else []),
              *([f"  four runs, grouped pairs 20 and 56 in one graph (d; no training mode): "
                 f"{format_seconds(imp['d_concurrent_pairs'])}"] if imp.get("d_concurrent_pairs") else []),
              f"  5 seeds x four models, common recipe (a):                 {format_seconds(imp['a_common_5_seeds'])}",
              f"  5 seeds x four models, fast path one model at a time (b): {format_seconds(imp['b_fast_single_5_seeds'])}",
              f"  5 seeds x four models, packs of 10 per depth (c):         {format_seconds(imp['c_5_seeds'])}"]
    if imp["a_common"] and imp["c_pairs"]:
        lines.append(f"  speed-up of the four runs, (c) pairs vs (a): {imp['a_common'] / imp['c_pairs']:.2f}x")
    if imp["c_pairs"] and imp["c_5_seeds"]:
        lines.append(f"  5 seeds vs 1 seed, packed: {imp['c_5_seeds'] / imp['c_pairs']:.2f}x the time")
    for e in [r for r in res["rows"] if r["variant"] == "e"]:
        c = [r for r in res["rows"] if r["variant"] == "c" and r["depth"] == e["depth"] and r["members"] == 2]
        if c:
            ratio = e["train_img_s"] / c[0]["train_img_s"]
            lines.append(f"  depth-{e['depth']} pair, training img/s per member: branches (e) {e['train_img_s']:,.0f} "
                         f"vs grouped (c) {c[0]['train_img_s']:,.0f}: branches {ratio:.2f}x"
                         + ("" if e.get("graph") else " (no graph: eager, one branch after another)"))
    for g in [r for r in res["rows"] if r["variant"] == "g"]:
        lines.append(compiled_line(g, res["rows"]))
    pair56 = [r for r in res["rows"] if r["variant"] == "c" and r["depth"] == 56 and r["members"] == 2]
    if pair56 and pair56[0].get("peak_mem_bytes"):
        lines.append(f"  peak GPU memory, packed plain56+resnet56 pair at batch "
                     f"{res['settings']['batch_size']}: {pair56[0]['peak_mem_bytes'] / 2**30:.2f} GiB")
    return "\n".join(lines)
