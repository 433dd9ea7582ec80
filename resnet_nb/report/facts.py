"""What the reproduction report says: run files -> facts (plain data).

Reads only files (the data flow is one-directional): the run directories
``<runs_dir>/<run_id>/<run_name>/{config.json,metrics.json}`` and the analysis outputs
``<figures_dir>/<run_id>/{summary.json,*.png}``. :func:`collect_facts` turns them into
plain data: every number, every comparison and every provenance flag. The comparisons are
the claims of He et al. 2016 tested on this run:

* degradation (sec. 4.2, Fig. 6 left): the deeper *plain* net has the higher training loss
  and the lower test accuracy;
* residual learning fixes it (sec. 3.1, Fig. 6 right): the deeper *ResNet* beats the deeper
  plain net and gains from its depth.

Each is judged by the one rule table of ``resnet_nb.analysis.verdicts`` (synthetic data, a smoke
run or an unfinished run: not assessable; one seed: against the published seed noise;
several seeds: Welch's t-test), which the report prints in its method section.
``resnet_nb.report.render`` phrases these facts in markdown and builds the documents with pandoc.
"""
from __future__ import annotations

import datetime as dt
import math
import os
import statistics
from pathlib import Path

from resnet_nb.models.resnet import model_label, parse_model_name, sort_models
from resnet_nb.report.figure_facts import (
    RESULT_FIGURES,
    THEORY_FIGURES,
    figure_captions,
    figures_present,
    layer_response_facts,
    shattering_facts,
    theory_facts,
)
from resnet_nb.report.provenance import (
    command_lines,
    devlog_rows,
    environment_rows,
    git_log,
    hyperparameter_rows,
    paper_warmup_of,
    tree_listing,
)
from resnet_nb.runs.rundir import effective_status

__all__ = ["load_inputs", "collect_facts", "DECIMALS"]

DECIMALS = 4  # accuracies and losses are reported (and compared) at 4 decimals, as the seed report

# Published numbers (He et al. 2016, Table 6; the seed report; public reproductions) are data:
# report/literature.json, loaded and checked by resnet_nb.analysis.literature (_literature below).


# --------------------------------------------------------------------------- inputs

def load_inputs(run_id: str, runs_dir: str | os.PathLike = "experiments",
                figures_dir: str | os.PathLike = "report/figures") -> dict:
    """``{"summary", "runs", "figures_dir", "run_dir", "exported", "published"}``: summary.json of the
    analysis and every run dir of ``run_id`` (``resnet_nb.runs.rundir.list_runs``). Without a
    summary.json the analysis is run first (``resnet_nb.analysis.aggregate.analyze``; ``exported``).
    ``published``: the run dirs are a copy written by ``resnet-nb publish``."""
    from resnet_nb.runs.rundir import check_run_id, list_runs, read_json

    check_run_id(run_id)  # "../x" or an absolute path would read and write outside the roots
    runs = list_runs(runs_dir, run_id)  # FileNotFoundError naming the known run ids
    if not runs:
        raise FileNotFoundError(f"{Path(runs_dir) / run_id} holds no run directory yet; "
                                f"train into it first (resnet-nb reproduce --run-id {run_id})")
    fig_dir = Path(figures_dir) / run_id
    summary_path = fig_dir / "summary.json"
    exported = False
    if not summary_path.is_file():  # the analysis has not run yet: run it (files in, files out)
        from resnet_nb.analysis.aggregate import analyze

        analyze(runs_dir, run_id, figures_dir)
        exported = True
    summary = read_json(summary_path)
    if summary.get("run_id") not in (None, run_id):
        raise ValueError(f"{summary_path} belongs to run id {summary.get('run_id')!r}, not {run_id!r}; "
                         f"re-export the analysis of {run_id}")
    from resnet_nb.analysis.aggregate import stale_runs

    by_name = {Path(r["path"]).name: _model_key(r) for r in runs}
    stale = sorted({by_name[name] for name in stale_runs(summary, runs)})   # the models to refresh
    if stale and not exported:  # runs went on (or were added) after the export: refresh it
        from resnet_nb.analysis.aggregate import analyze

        expected = [*summary.get("models", {}), *summary.get("missing", [])]
        _check_presets(runs, {}, run_id)  # refuse a mix before the analysis does, in our words
        analyze(runs_dir, run_id, figures_dir, expected=expected)
        summary = read_json(summary_path)
    from resnet_nb.runs.published import is_published

    return {"summary": summary, "runs": runs, "figures_dir": fig_dir,
            "run_dir": Path(runs_dir) / run_id, "exported": exported, "refreshed": stale if not exported else [],
            "published": is_published(Path(runs_dir) / run_id)}  # report/published/<id>/ (resnet-nb publish)


# --------------------------------------------------------------------------- facts

def _model_key(run: dict) -> str:
    return str(run.get("config", {}).get("model", Path(run["path"]).name))


def _rounded(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), DECIMALS)


def _fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    seconds = float(seconds)
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def _check_presets(runs: list[dict], summary: dict, run_id: str) -> str:
    presets = {}
    for run in runs:
        presets[Path(run["path"]).name] = run.get("preset") or run.get("config", {}).get("preset")
    distinct = sorted({p for p in presets.values() if p})
    if len(distinct) > 1:
        listing = ", ".join(f"{name}: {p}" for name, p in sorted(presets.items()))
        raise ValueError(f"run id {run_id} mixes presets ({listing}); a report compares runs of one "
                         f"recipe: move the odd runs to their own run id and report each separately")
    preset = distinct[0] if distinct else (summary.get("preset") or "?")
    if summary.get("preset") and summary["preset"] != preset:
        raise ValueError(f"summary.json of {run_id} says preset {summary['preset']!r} but the runs "
                         f"are {preset!r}; re-export the analysis of {run_id}")
    return preset


def _check_datasets(runs: list[dict], run_id: str) -> dict:
    prints = {}
    for run in runs:
        ds = run.get("dataset") or {}
        prints[Path(run["path"]).name] = (ds.get("provenance"), ds.get("fingerprint"))
    if len(set(prints.values())) > 1:
        listing = ", ".join(f"{n}: {p} {str(f)[:12]}" for n, (p, f) in sorted(prints.items()))
        raise ValueError(f"run id {run_id} mixes datasets ({listing}); train every model of one "
                         f"report on the same data")
    return dict(runs[0].get("dataset") or {})


def _mean_curve(runs: list[dict], key: str) -> dict[int, float]:
    """epoch -> mean of ``key`` over the runs (seeds) that reached that epoch."""
    acc: dict[int, list[float]] = {}
    for run in runs:
        for rec in run.get("metrics", []):
            v = rec.get(key)
            if v is not None and not (isinstance(v, float) and math.isnan(v)):
                acc.setdefault(int(rec["epoch"]), []).append(float(v))
    return {e: sum(v) / len(v) for e, v in sorted(acc.items())}


def _model_rows(summary: dict, runs: list[dict]) -> list[dict]:
    by_model: dict[str, list[dict]] = {}
    for run in runs:
        by_model.setdefault(_model_key(run), []).append(run)
    rows = []
    for key, s in summary.get("models", {}).items():
        mruns = by_model.get(key, [])
        fam, depth = parse_model_name(key)
        status = s.get("status") or (effective_status(mruns[0]) if mruns else None) or "unknown"
        last_epoch, planned = s.get("last_epoch"), s.get("epochs_planned")
        if planned is None and mruns:
            planned = mruns[0].get("config", {}).get("epochs")
        in_progress = status == "running"
        incomplete = status != "finished" or (last_epoch is not None and planned is not None
                                              and last_epoch < planned)
        rows.append({
            "key": key, "label": model_label(key), "family": fam, "depth": depth,
            "best_test_acc": _rounded(s.get("best_test_acc")), "best_epoch": s.get("best_epoch"),
            "last_test_acc": _rounded(s.get("last_test_acc")), "last_epoch": last_epoch,
            "epochs_planned": planned,
            "final_train_loss": _rounded(s.get("final_train_loss")), "min_train_loss": _rounded(s.get("min_train_loss")),
            "best_test_err_pct": None if s.get("best_test_acc") is None else round(100 * (1 - s["best_test_acc"]), 2),
            "params": s.get("params"), "params_m": None if s.get("params") is None else s["params"] / 1e6,
            "wall_time_s": s.get("wall_time_s"), "wall_time": _fmt_duration(s.get("wall_time_s")),
            "status": status, "in_progress": in_progress, "incomplete": incomplete,
            "n_seeds": int(s.get("n_seeds") or max(len(mruns), 1)), "seeds": s.get("seeds") or [],
            "best_test_acc_std": _rounded(s.get("best_test_acc_std")),
            "run_dirs": [Path(p).name for p in s.get("run_dirs") or [r["path"] for r in mruns]],
            "per_seed": s.get("per_seed") or [],
            # each seed's epoch of its best test accuracy (the summary's best_epoch is their median)
            "best_epochs": [p["best_epoch"] for p in s.get("per_seed") or []
                            if p.get("best_epoch") is not None and not p.get("diverged")],
            "_runs": mruns,
        })
    by_key = {r["key"]: r for r in rows}
    return [by_key[k] for k in sort_models(by_key)]


def _total_wall_time_s(rows: list[dict]) -> float:
    """Every run's own training time added up: each seed's (a model row's wall time is the mean
    over its seeds), or the row's where a summary lists no seeds."""
    total = 0.0
    for r in rows:
        seeds = [p.get("wall_time_s") for p in r["per_seed"] if p.get("wall_time_s") is not None]
        total += sum(seeds) if seeds else (r["wall_time_s"] or 0)
    return total


def _compare(rows: dict[str, dict], verdict, a: str, b: str, metric: str) -> dict:
    """The numbers of ``a`` vs ``b`` on ``metric`` as the tables print them (4 decimals) and the
    verdict of the rule table (``resnet_nb.analysis.verdicts``: ``status``, ``en``, ``zh``, ``p``, ``gap``
    ...; ``ci_en``/``ci_zh`` its 95 % interval as text). ``va``/``vb`` are None when a model has no
    result (``missing`` names it)."""
    from resnet_nb.analysis.verdicts import ci_text

    ra, rb = rows.get(a), rows.get(b)
    out = {"a": a, "b": b, "a_label": model_label(a), "b_label": model_label(b), "metric": metric,
           "va": None, "vb": None, "diff": None, "op": "?",
           "missing": [model_label(k) for k, r in ((a, ra), (b, rb)) if r is None or r.get(metric) is None],
           "incomplete": [r["label"] for r in (ra, rb) if r is not None and r["incomplete"]],
           **verdict.as_dict(), "ci_en": ci_text(verdict, "en"), "ci_zh": ci_text(verdict, "zh")}
    if not out["missing"]:
        va, vb = ra[metric], rb[metric]
        # the verdict's own difference of the unrounded means where it has one, so that the
        # sentence's "+1.78 points" and the verdict's "+1.79 points" cannot disagree in rounding
        raw = out.get("diff")
        diff = raw if isinstance(raw, float) and math.isfinite(raw) else round(va - vb, DECIMALS)
        out.update(va=va, vb=vb, diff=diff, op="<" if diff < 0 else (">" if diff > 0 else "="))
    return out


def _epochs_higher(rows: dict[str, dict], a: str, b: str, metric: str = "train_loss") -> dict | None:
    """In how many common epochs is the (seed-mean) ``metric`` of ``a`` above that of ``b``?"""
    if a not in rows or b not in rows:
        return None
    ca, cb = _mean_curve(rows[a]["_runs"], metric), _mean_curve(rows[b]["_runs"], metric)
    common = sorted(set(ca) & set(cb))
    if not common:
        return None
    higher = sum(1 for e in common if ca[e] > cb[e])
    last_half = common[len(common) // 2:]
    return {"higher": higher, "n": len(common), "first": common[0], "last": common[-1],
            "higher_second_half": sum(1 for e in last_half if ca[e] > cb[e]), "n_second_half": len(last_half)}


def _design(summary: dict, by_key: dict[str, dict]) -> tuple[int, int, list[str]]:
    """``(shallow, deep, missing)``: the depths the comparisons use (the shallowest and the
    deepest of the design; 20 and 56, the seed's, with fewer than two) and the models of the
    2x2 at those depths that have no result."""
    missing = sort_models(set(summary.get("missing") or []) - set(by_key))
    depths = sorted({parse_model_name(k)[1] for k in {*by_key, *missing}})
    paired = [d for d in depths if {f"plain{d}", f"resnet{d}"} <= {*by_key, *missing}]
    depths = paired if len(paired) >= 2 else depths  # a sweep (resnet110 alone): the deepest pair
    shallow, deep = (depths[0], depths[-1]) if depths else (20, 56)
    if len(depths) < 2:
        shallow, deep = 20, 56  # the seed design; comparisons then report the missing models
    for k in (f"plain{shallow}", f"plain{deep}", f"resnet{shallow}", f"resnet{deep}"):
        if k not in by_key and k not in missing:
            missing.append(k)
    return shallow, deep, sort_models(missing)


def _judge(summary: dict, by_key: dict[str, dict], shallow: int, deep: int) -> tuple[dict, dict, dict]:
    """``(cmp, curves, verdict)``: every claim of ``claims.CLAIMS`` at these depths judged by
    the one rule table, the epochs where one curve lies above another, and the overall verdict."""
    from resnet_nb.analysis.claims import CLAIMS, paper_claims

    judged = paper_claims(summary, shallow, deep)  # the one rule table
    cmp = {name: _compare(by_key, judged[name], CLAIMS[name][0].format(s=shallow, d=deep),
                          CLAIMS[name][1].format(s=shallow, d=deep), CLAIMS[name][2]) for name in CLAIMS}
    p_s, p_d, r_d = f"plain{shallow}", f"plain{deep}", f"resnet{deep}"
    curves = {"plain_deep_vs_shallow": _epochs_higher(by_key, p_d, p_s),
              "plain_deep_vs_resnet_deep": _epochs_higher(by_key, p_d, r_d)}
    main = [cmp["degradation_acc"], cmp["residual_fix_acc"], cmp["depth_gain_acc"]]  # the paper's claims
    statuses = [x["status"] for x in main]
    verdict = {
        "degradation": cmp["degradation_acc"]["status"],
        # the Fig. 6 reading (an optimisation problem, not overfitting) needs both measures shown
        "optimisation": cmp["degradation_acc"]["shown"] and cmp["degradation_loss"]["shown"],
        "residual_fix": cmp["residual_fix_acc"]["status"],
        "depth_gain": cmp["depth_gain_acc"]["status"],
        "overall": ("not_assessable" if all(st == "not_assessable" for st in statuses) else
                    "reproduced" if all(st == "shown" for st in statuses) else
                    "incomplete" if "not_assessable" in statuses else
                    "partial" if "shown" in statuses else "not_reproduced"),
        "first_not_assessable": next((x for x in main if x["status"] == "not_assessable"), None),
    }
    return cmp, curves, verdict


# why a comparison has no p value: the row of the rule table (verdicts.RULES) that decided it
P_REASONS = ("synthetic", "unknown_data", "smoke", "unfinished", "one_seed", "no_spread", "missing")


def _p_values(cmp: dict, provenance: str, preset: str, epochs: list[int]) -> dict:
    """How many comparisons have a Welch p value, how many are shown, and why the others have
    none, from the rule (``verdicts.RULES``) that decided each: ``without`` lists ``{reason, n,
    rule}`` in the table's order (reasons: :data:`P_REASONS`), so the report says what the
    data can carry (synthetic data, the smoke preset, one seed ...) instead of a bare count."""
    counts: dict[str, int] = {}
    for c in cmp.values():
        if c.get("p") is not None:
            continue
        rule = c.get("rule")
        reason = ("missing" if rule == 0 else
                  ("synthetic" if provenance == "synthetic" else "unknown_data") if rule == 1 else
                  ("smoke" if preset == "smoke" else "unfinished") if rule == 2 else
                  "one_seed" if rule == 3 else "no_spread")
        counts[reason] = counts.get(reason, 0) + 1
    return {"n": len(cmp), "with_p": sum(c.get("p") is not None for c in cmp.values()),
            "shown": sum(c.get("status") == "shown" for c in cmp.values()),
            "assessable": sum(c.get("status") != "not_assessable" for c in cmp.values()),
            "without": [{"reason": r, "n": counts[r]} for r in P_REASONS if r in counts],
            "epochs": max(epochs, default=0)}


def _anchors(rows: list[dict], literature: dict) -> list[dict]:
    """Each model against the published numbers of ``report/literature.json``: the paper's
    test error and parameters (Table 6), the seed report's best test accuracy, and every
    source's test error (``lit``: source key -> the literature result or None)."""
    sources = literature["sources"]
    paper = sources["paper"]
    anchors = []
    for r in rows:
        paper_params = paper["params_m"].get(r["depth"]) if r["family"] == "resnet" else None
        paper_res = paper["results"].get(r["key"])
        seed = sources.get("seed_report", {}).get("results", {}).get(r["key"])
        errs = [100 * (1 - v) for v in (p.get("best_test_acc") for p in r["per_seed"]) if v is not None]
        anchors.append({"key": r["key"], "label": r["label"], "err": r["best_test_err_pct"],
                        "err_std": round(statistics.stdev(errs), 2) if len(errs) > 1 else None,
                        "n_seeds": r["n_seeds"],
                        "paper_err": paper_res["error_pct"] if paper_res else None, "paper": paper_res,
                        "seed_best": seed["best_test_acc"] if seed else None, "best": r["best_test_acc"],
                        "lit": {k: src["results"].get(r["key"]) for k, src in sources.items()},
                        "params_m": r["params_m"], "paper_params_m": paper_params,
                        "params_match": (None if paper_params is None or r["params_m"] is None
                                         else round(r["params_m"], 2) == round(paper_params, 2))})
    return anchors


def _literature(literature: dict, dataset: dict, is_smoke: bool) -> dict:
    """The literature file for the templates: its sources (name, citation key, protocol, in
    file order), the published seed noise (nabla0001's smallest and largest 5-seed std) and the
    data provenance of our column (``canonical`` | ``noncanonical`` | ``synthetic`` | ``unknown``,
    and whether it may be compared with the published numbers: the canonical data, not smoke)."""
    from resnet_nb.analysis.literature import std_range

    prov = dataset.get("provenance") or "unknown"
    noise = std_range(literature, "nabla0001")
    return {"sources": list(literature["sources"].values()), "path": "report/literature.json",
            "noise": None if noise is None else {"lo": noise[0], "hi": noise[1],
                                                 **{k: literature["sources"]["nabla0001"][k] for k in ("cite", "name")}},
            "provenance": prov, "comparable": prov == "canonical" and not is_smoke}


def _sweep(summary: dict, literature: dict, cmp_of) -> dict:
    """The depth sweep (Table 6, Fig. 6): ``ready`` and the one-line reason when not
    (``analysis.sweep_ready``), per depth the error of each family (mean ± std, n) beside the
    paper's, and per family the error at its shallowest and deepest depth with the verdict of
    the rule table on that pair (``cmp_of(a, b, metric, a_higher)``)."""
    from resnet_nb.analysis.aggregate import SWEEP_MIN_DEPTHS, depth_sweep, sweep_ready

    models = summary.get("models") or {}
    ready, why = sweep_ready(models)
    counts = {f: sum(1 for r in depth_sweep(models) if r[f]) for f in ("plain", "resnet")}
    paper = literature["sources"]["paper"]["results"]
    rows = [{**r, "paper": paper.get(f"resnet{r['depth']}")} for r in depth_sweep(models)]
    ends = {}
    # claimed direction of the deeper net's accuracy: plain lower (degradation), ResNet higher (depth gain)
    for family, deep_higher in (("plain", False), ("resnet", True)):
        ds = [r["depth"] for r in rows if r[family]]
        if len(ds) >= 2:
            a, b = f"{family}{ds[-1]}", f"{family}{ds[0]}"
            ends[family] = {"shallow": ds[0], "deep": ds[-1], "shallow_label": model_label(b), "deep_label": model_label(a),
                            "err_shallow": rows[[r["depth"] for r in rows].index(ds[0])][family]["err_pct"],
                            "err_deep": rows[[r["depth"] for r in rows].index(ds[-1])][family]["err_pct"],
                            "rises": None, "verdict": cmp_of(a, b, "last_test_acc", deep_higher)}
            ends[family]["rises"] = ends[family]["err_deep"] > ends[family]["err_shallow"]
    return {"ready": ready, "min_depths": SWEEP_MIN_DEPTHS, "counts": counts,
            "why": {"en": why, "zh": (f"深度扫描需要某一族至少 {SWEEP_MIN_DEPTHS} 个深度的结果；本运行 ID 有 "
                                      f"{counts['plain']} 个 plain、{counts['resnet']} 个残差网络的深度；"
                                      f"深度扫描可用 resnet-nb reproduce --models sweep 训练") if not ready else ""},
            "rows": rows, "ends": ends}


def _warmups(runs: list[dict]) -> list[dict]:
    """The warm-up each model trained with (config.json ``warmup_iters`` > 0): iterations, lr,
    the run's iterations (metrics.json), and whether it was scaled down from the paper's 400
    (``config.PAPER_WARMUP``; e.g. in a smoke run)."""
    from resnet_nb.training.config import PAPER_WARMUP

    out = {}
    for run in runs:
        cfg = run.get("config") or {}
        if not cfg.get("warmup_iters"):
            continue
        total = int((run.get("metrics") or [{}])[-1].get("iteration") or 0)
        key = _model_key(run)
        out.setdefault(key, {"key": key, "label": model_label(key), "iters": int(cfg["warmup_iters"]),
                             "lr": float(cfg["warmup_lr"]), "base_lr": float(cfg.get("lr", 0)), "run_iters": total,
                             "paper_iters": PAPER_WARMUP["iters"], "paper_of": PAPER_WARMUP["of_iters"],
                             "scaled": int(cfg["warmup_iters"]) < PAPER_WARMUP["iters"]})
    return [out[k] for k in sort_models(out)]


def collect_facts(inputs: dict, runs_dir: str = "experiments", figures_dir: str = "report/figures",
                  out_dir: str = "report/build", now: dt.datetime | None = None) -> dict:
    """Everything the templates say, computed from the run files (no prose here but the
    verdicts' wording, which comes from the rule table of ``resnet_nb.analysis.verdicts``)."""
    from resnet_nb.analysis.aggregate import per_seed_table
    from resnet_nb.analysis.claims import claims_table, compare_models
    from resnet_nb.analysis.literature import load_literature
    from resnet_nb.analysis.verdicts import ALPHA, SIGMA_POOLED_PP, SIGMA_PUB_PP, rule_table

    literature = load_literature()  # LiteratureError naming the place in report/literature.json
    summary, runs = inputs["summary"], inputs["runs"]
    run_id = summary.get("run_id") or Path(inputs["run_dir"]).name
    preset = _check_presets(runs, summary, run_id)
    dataset = {**_check_datasets(runs, run_id), **(summary.get("dataset") or {})}
    dataset["fingerprint_short"] = str(dataset.get("fingerprint") or "")[:16]
    dataset.setdefault("provenance", "unknown")
    rows = _model_rows(summary, runs)
    by_key = {r["key"]: r for r in rows}
    shallow, deep, missing = _design(summary, by_key)
    cmp, curves, verdict = _judge(summary, by_key, shallow, deep)
    fig_dir = Path(inputs["figures_dir"])
    figs = figures_present(summary, fig_dir)
    extra_figs = [n for n, ok in figs.items() if ok and n not in RESULT_FIGURES + THEORY_FIGURES]
    hparams, varied = hyperparameter_rows(runs)
    expected_varied = {"seed"} if any(r["n_seeds"] > 1 for r in rows) else set()
    if _warmups(runs) and all(paper_warmup_of(r) == {k: (r.get("config") or {}).get(k) for k in paper_warmup_of(r)}
                              if paper_warmup_of(r) else not (r.get("config") or {}).get("warmup_iters") for r in runs):
        expected_varied |= {"warmup_iters", "warmup_lr"}  # the paper's warm-up of >= 110 layers, by rule
    now = now or dt.datetime.now(dt.timezone.utc)
    train_commits = sorted({((r.get("environment") or {}).get("git_commit") or "")[:7] for r in runs} - {""})
    git = git_log(train_commits)
    epochs_planned = sorted({r["epochs_planned"] for r in rows if r["epochs_planned"]})
    theory = theory_facts(fig_dir)
    return {
        "run_id": run_id, "preset": preset, "is_smoke": preset == "smoke",
        "generated_at": now.strftime("%Y-%m-%d %H:%M UTC"),
        "summary_generated_at": summary.get("generated_at"),
        "dataset": dataset, "models": rows, "by_key": by_key,
        "missing": [model_label(k) for k in missing], "missing_keys": missing,
        "in_progress": [r for r in rows if r["incomplete"]],
        "design": {"shallow": shallow, "deep": deep,
                   "plain_shallow": model_label(f"plain{shallow}"), "plain_deep": model_label(f"plain{deep}"),
                   "resnet_shallow": model_label(f"resnet{shallow}"), "resnet_deep": model_label(f"resnet{deep}")},
        "cmp": cmp, "curves": curves, "verdict": verdict,
        "p_values": _p_values(cmp, dataset["provenance"], preset, epochs_planned),
        "rules": {"en": rule_table("en", math=True), "zh": rule_table("zh", math=True)},
        "environment": environment_rows(runs), "hparams": hparams,
        "varied": [v for v in varied if v not in expected_varied], "n_runs": len(runs),
        "epochs_planned": epochs_planned,
        "total_wall_time": _fmt_duration(_total_wall_time_s(rows)),
        "anchors": _anchors(rows, literature),
        "literature": _literature(literature, dataset, preset == "smoke"),
        "sweep": _sweep(summary, literature, lambda a, b, metric, higher: compare_models(
            summary, a, b, metric, higher_is_better=higher).as_dict()),
        "warmups": _warmups(runs),
        "claims_tables": {lang: claims_table(summary, shallow, deep, lang) for lang in ("en", "zh")},
        "per_seed_tables": {lang: per_seed_table(summary, lang) for lang in ("en", "zh")},
        "sigma": {"pub": SIGMA_PUB_PP, "pooled": SIGMA_POOLED_PP, "alpha": f"{ALPHA:g}"},
        "figures": figs, "result_figures": [n for n in RESULT_FIGURES if figs.get(n)],
        "theory_figures": [n for n in THEORY_FIGURES if figs.get(n)], "extra_figures": extra_figs,
        "theory": theory,
        "layer_responses": layer_response_facts(fig_dir, runs, summary), "shattering": shattering_facts(fig_dir),
        "captions": figure_captions(runs, theory),
        "paths": {"runs": (Path(runs_dir) / run_id).as_posix(), "figures": fig_dir.as_posix(),
                  "build": (Path(out_dir) / run_id).as_posix()},
        "tree": {"runs": tree_listing(Path(inputs["run_dir"])),  # a published copy holds its figures beside the runs
                 "figures": tree_listing(fig_dir) if fig_dir != Path(inputs["run_dir"]) else ""},
        "published": bool(inputs.get("published")),
        # a published copy is rebuilt by `resnet-nb report --run-id` (publish.locate) and retrained into
        # experiments/, never into report/published/
        "commands": command_lines(run_id, preset, runs, *(("experiments", "report/figures") if inputs.get("published")
                                                      else (str(runs_dir), str(figures_dir)))),
        "git": {"omitted": git["omitted"], "available": git["available"], "since": git["since"],
                "train_commits": train_commits},
        "devlog": devlog_rows(runs, git, now),
    }
