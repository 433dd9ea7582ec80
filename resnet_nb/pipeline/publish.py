"""Publish a finished reproduction: ``report/published/<run id>/``, committed with the repository.

A reproduction trains run dirs in ``experiments/<run id>/`` (git-ignored), the analysis writes
``report/figures/<run id>/`` and ``resnet-nb report`` builds ``report/build/<run id>/`` (both
git-ignored). ``publish(run_id)`` copies what a reader needs into one committed folder, keeping
the design card's top level (it lives under ``report/``)::

    report/published/<run id>/
        <run>/config.json, metrics.json, best.pth, 02_train.ipynb   (no last.pth, no .lock; the
                                                                     notebook where papermill ran)
        01_theory.ipynb, 03_analysis.ipynb                          (where reproduce ran them)
        summary.json, theory_probes.json, *.png                     (report/figures/<run id>/)
        report.zh.pdf, report.en.pdf                                 (report/build/<run id>/)
        bench.json                                                   (--bench FILE)
        parity.json                                                  (--parity FILE)
        published.json                                               (what was copied, sha256)

The run dirs and the figures share the folder, so ``report/published`` is both the runs root
and the figures root of the report (``locate``): ``make report RUN_ID=<id>`` rebuilds the same
report from it on a machine that never trained. ``readme_block`` turns every published run id
into the README's headline table (verdicts by ``resnet_nb.analysis.verdicts``); ``update_readme`` writes
it between the README's markers. Published weights are committed, so the command prints their size.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from resnet_nb import REPO
from resnet_nb.analysis.aggregate import stale_runs
from resnet_nb.data.cifar10 import file_digest
from resnet_nb.runs.published import MANIFEST_FILE, PUBLISHED_DIR, published_ids
from resnet_nb.runs.rundir import (
    BEST_FILE,
    CONFIG_FILE,
    METRICS_FILE,
    check_run_id,
    effective_status,
    format_size,
    list_runs,
    read_json,
    tree_bytes,
)

__all__ = ["RUN_FILES", "RUN_ID_NOTEBOOKS", "REPORT_PDFS", "BENCH_FILE", "PARITY_FILE",
           "README_BEGIN", "README_END", "Published", "publish", "readme_block", "update_readme",
           "checked_data_note", "add_arguments", "run_cli"]

TRAIN_NOTEBOOK = "02_train.ipynb"                       # the executed notebook reproduce keeps per run
RUN_FILES = (CONFIG_FILE, METRICS_FILE, BEST_FILE, TRAIN_NOTEBOOK)  # last.pth is a resume point: left out
RUN_ID_NOTEBOOKS = ("01_theory.ipynb", "03_analysis.ipynb")
REPORT_PDFS = ("report.zh.pdf", "report.en.pdf")        # resnet_nb.report.render.build_report, languages zh, en
BENCH_FILE = "bench.json"
PARITY_FILE = "parity.json"                              # resnet-nb parity --out FILE
README_BEGIN = "<!-- published-results:begin -->"  # update_readme rewrites everything in between
README_END = "<!-- published-results:end -->"


# --------------------------------------------------------------------------- publish

@dataclass
class Published:
    """What :func:`publish` wrote: the folder, its files (relative path -> bytes), the runs
    left unfinished (with ``allow_unfinished``) and what each run dir kept back."""

    path: Path
    files: dict[str, int] = field(default_factory=dict)
    unfinished: list[str] = field(default_factory=list)
    left_out: dict[str, list[str]] = field(default_factory=dict)
    all_published_bytes: int = 0
    data_note: str | None = None

    @property
    def total_bytes(self) -> int:
        return sum(self.files.values())




def _progress(run: dict) -> str:
    done = len(run.get("metrics") or [])
    planned = run.get("epochs_planned") or (run.get("config") or {}).get("epochs")
    return f"{Path(run['path']).name}: {effective_status(run)} at epoch {done} of {planned}"


def _executed_notebooks(runs: list[dict]) -> dict[str, Path | None]:
    """Run name -> the executed training notebook to publish, or None. config.json's
    ``executed_by`` (``run_writer.how_trained``) says which processes papermill ran: each left
    its notebook where it recorded it (``run_writer.papermill_notebooks``), and a missing one
    is refused, naming it; the last one is published. A run that records no papermill process
    publishes none, even if a notebook lies in its run dir (it is from another training); a run
    dir older than the record publishes the notebook it holds, if any."""
    from resnet_nb.training.run_writer import papermill_notebooks

    out, missing = {}, []
    for run in runs:
        run_dir, name = Path(run["path"]), Path(run["path"]).name
        expected = papermill_notebooks(run)
        missing += [f"{p} (run {name})" for p in expected if not p.is_file()]
        if expected:
            out[name] = expected[-1]
        elif run.get("executed_by"):
            out[name] = None
        else:
            out[name] = run_dir / TRAIN_NOTEBOOK if (run_dir / TRAIN_NOTEBOOK).is_file() else None
    if missing:
        raise FileNotFoundError(f"executed notebook missing: {'; '.join(missing)}: config.json (executed_by) says "
                                f"papermill trained the run there. Restore it (the run's tar from the machine "
                                f"that trained it holds it: resnet-nb transfer import), or retrain the run; "
                                f"nothing was published")
    return out


def _sha256(path: Path) -> str:
    return file_digest(path, "sha256")


def publish(run_id: str, runs_dir: str | os.PathLike = "experiments",
            figures_dir: str | os.PathLike = "report/figures", build_dir: str | os.PathLike = "report/build",
            published_dir: str | os.PathLike = PUBLISHED_DIR, bench: str | os.PathLike | None = None,
            allow_unfinished: bool = False, force: bool = False, data_note: str | None = None,
            parity: str | os.PathLike | None = None) -> Published:
    """Copy the finished reproduction ``run_id`` into ``<published_dir>/<run_id>/`` (layout in the
    module docstring). Everything is checked before anything is written: unfinished runs (unless
    ``allow_unfinished``), an existing published copy (unless ``force``), a missing or stale
    summary.json, missing or stale PDFs, a bench file that is not JSON, a parity file that is not a
    ``resnet-nb parity`` result. The copy is written to a
    temporary folder and moved into place, so a failed publish leaves no half copy.

    ``data_note``: the publisher's one-line description of the data (what a non-canonical copy is,
    e.g. how it was re-encoded), shown in the README beside the fingerprint; replacing a copy
    (``force``) without one keeps the previous copy's note."""
    check_run_id(run_id, "RUN_ID")
    data_note = checked_data_note(data_note) if data_note is not None else None
    src, fig, build = Path(runs_dir) / run_id, Path(figures_dir) / run_id, Path(build_dir) / run_id
    dest = Path(published_dir) / run_id
    runs, unfinished = _runs_to_publish(run_id, runs_dir, src, dest, allow_unfinished, force)
    pdfs = _checked_report(run_id, runs, fig, build)
    bench = _checked_bench(bench)
    parity = _checked_parity(parity)
    if data_note is None and (dest / MANIFEST_FILE).is_file():
        data_note = _data_note_of(dest)
    result = Published(dest, unfinished=unfinished, data_note=data_note)
    copies = _copies(runs, src, fig, pdfs, result) + [(f, name) for f, name in ((bench, BENCH_FILE),
                                                                              (parity, PARITY_FILE)) if f is not None]
    sources = {k: f.as_posix() for k, f in (("bench", bench), ("parity", parity)) if f is not None}
    _write_atomically(dest, copies, result, lambda tmp: _manifest(run_id, runs, src, fig, build, sources, result, tmp))
    root = Path(published_dir)
    result.all_published_bytes = tree_bytes(root) if root.is_dir() else 0
    return result


def _runs_to_publish(run_id: str, runs_dir, src: Path, dest: Path, allow_unfinished: bool,
                     force: bool) -> tuple[list[dict], list[str]]:
    """The run id's runs and the unfinished ones' progress, refused unless there is something to
    publish and nothing would be overwritten or published half-trained without asking."""
    if src.resolve() == dest.resolve():
        raise ValueError(f"{src} is already the published copy; publish from the run dirs (--runs-dir experiments)")
    runs = list_runs(runs_dir, run_id)  # FileNotFoundError naming the known run ids
    if not runs:
        raise FileNotFoundError(f"{src} holds no run directory; train into it first "
                                f"(resnet-nb reproduce --run-id {run_id})")
    unfinished = [_progress(r) for r in runs if effective_status(r) != "finished"]
    if unfinished and not allow_unfinished:
        raise ValueError(f"run id {run_id} has unfinished runs ({'; '.join(unfinished)}): finish them "
                         f"(rerun the same command, it resumes) or pass --allow-unfinished to publish "
                         f"them marked as such")
    if dest.exists() and not force:
        raise ValueError(f"{dest} already exists; pass --force to replace it")
    return runs, unfinished


def _checked_report(run_id: str, runs: list[dict], fig: Path, build: Path) -> list[Path]:
    """The report's PDFs, once summary.json and the PDFs are known to be there and newer than the
    run files they come from."""
    summary_path = fig / "summary.json"
    remake = f"make report RUN_ID={run_id} (it re-runs the analysis when the run files are newer)"
    if not summary_path.is_file():
        raise FileNotFoundError(f"{summary_path} is missing: build the report first: {remake}")
    summary = read_json(summary_path)
    if summary.get("run_id") not in (None, run_id):
        raise ValueError(f"{summary_path} belongs to run id {summary.get('run_id')!r}; re-run {remake}")
    stale = stale_runs(summary, runs)
    if stale:
        raise ValueError(f"{summary_path} is older than the run files of {', '.join(stale)}: rebuild the "
                         f"figures and the report first: {remake}")
    pdfs = [build / name for name in REPORT_PDFS]
    missing = [str(p) for p in pdfs if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{', '.join(missing)} not built: {remake}; the PDF needs xelatex with "
                                f"a CJK font (make sysdeps)")
    old = [p.name for p in pdfs if p.stat().st_mtime < summary_path.stat().st_mtime]
    if old:
        raise ValueError(f"{', '.join(old)} in {build} are older than {summary_path}: rebuild them: {remake}")
    return pdfs


def _checked_bench(bench: str | os.PathLike | None) -> Path | None:
    if bench is None:
        return None
    bench = Path(bench)
    if not bench.is_file():
        raise FileNotFoundError(f"bench file {bench} not found; write one with resnet-nb bench --out FILE")
    read_json(bench)  # a file that is not JSON: ValueError naming it
    return bench


def _checked_parity(parity: str | os.PathLike | None) -> Path | None:
    if parity is None:
        return None
    parity = Path(parity)
    if not parity.is_file():
        raise FileNotFoundError(f"parity file {parity} not found; write one with resnet-nb parity --out FILE")
    if not _parity_lines(parity, ""):
        raise ValueError(f"{parity} is not a result of resnet-nb parity (no models with epochs compared); "
                         f"write one with resnet-nb parity --out FILE")
    return parity


DATA_NOTE_MAX = 300


def checked_data_note(note: str) -> str:
    """A data note fit for the README: one line of at most DATA_NOTE_MAX printable characters,
    no HTML; else ValueError saying so."""
    note = str(note).strip()
    if not note or len(note) > DATA_NOTE_MAX or any(not c.isprintable() for c in note) or set(note) & set("<>"):
        raise ValueError(f"--data-note must be one line of 1 to {DATA_NOTE_MAX} printable characters without "
                         f"'<' or '>'; got {note[:60]!r}{'...' if len(note) > 60 else ''}")
    return note


def _data_note_of(published: Path) -> str | None:
    """The data note a published copy's manifest holds (untrusted: None unless it passes the check)."""
    try:
        note = read_json(published / MANIFEST_FILE).get("data_note")
        return checked_data_note(note) if isinstance(note, str) else None
    except (OSError, ValueError, AttributeError):
        return None


def _copies(runs: list[dict], src: Path, fig: Path, pdfs: list[Path], result: Published) -> list[tuple[Path, str]]:
    """(source, path in the copy) of every file published; what each run dir keeps back goes
    into ``result.left_out``."""
    notebooks = _executed_notebooks(runs)  # where papermill ran: there, and only there
    copies: list[tuple[Path, str]] = []
    for run in runs:
        run_dir, name = Path(run["path"]), Path(run["path"]).name
        nb = notebooks[name]
        copies += [(run_dir / f, f"{name}/{f}") for f in RUN_FILES if f != TRAIN_NOTEBOOK and (run_dir / f).is_file()]
        if nb is not None:
            copies.append((nb, f"{name}/{TRAIN_NOTEBOOK}"))
        result.left_out[name] = sorted(p.name for p in run_dir.iterdir()
                                       if p.name not in RUN_FILES or (p.name == TRAIN_NOTEBOOK and nb is None))
    copies += [(src / nb, nb) for nb in RUN_ID_NOTEBOOKS if (src / nb).is_file()]
    copies += [(p, p.name) for p in sorted(fig.iterdir()) if p.is_file() and not p.name.startswith(".")]
    copies += [(p, p.name) for p in pdfs]
    return copies


def _manifest(run_id: str, runs: list[dict], src: Path, fig: Path, build: Path, sources: dict[str, str],
              result: Published, tmp: Path) -> dict:
    """``published.json``: where the copy came from, each run's status and every file's sha256."""
    from resnet_nb.runs.environment import git_commit

    return {
        "run_id": run_id, "published_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit()["commit"],
        "from": {"runs": src.as_posix(), "figures": fig.as_posix(), "report": build.as_posix(),
                 **sources},
        "runs": {Path(r["path"]).name: {"status": effective_status(r), "epochs": len(r.get("metrics") or []),
                                        "executed_by": [e.get("by") for e in r.get("executed_by") or []
                                                        if isinstance(e, dict)] or None}
                 for r in runs},
        "left_out": result.left_out,
        **({"data_note": result.data_note} if result.data_note else {}),
        "files": {rel: {"bytes": result.files[rel], "sha256": _sha256(tmp / rel)} for rel in sorted(result.files)},
    }


def _write_atomically(dest: Path, copies: list[tuple[Path, str]], result: Published, manifest_of) -> None:
    """Copy into a temporary folder beside ``dest``, write the manifest, then move it into place
    (an existing copy goes only once the new one is complete)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for source, rel in copies:
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, tmp / rel)
            result.files[rel] = (tmp / rel).stat().st_size
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest_of(tmp), indent=2) + "\n", encoding="utf-8")
        result.files[MANIFEST_FILE] = (tmp / MANIFEST_FILE).stat().st_size
        if dest.exists():  # --force
            old_dir = dest.parent / f".{dest.name}.old-{os.getpid()}"
            dest.rename(old_dir)
            tmp.rename(dest)
            shutil.rmtree(old_dir)
        else:
            tmp.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- the README table

_PROVENANCE_NOTE = {
    "noncanonical": ("**Every number here comes from a non-canonical CIFAR-10 copy**, not from CIFAR-10 "
                     "itself: its md5 sums differ from the published archive ({mismatches}; fingerprint "
                     "`{fp}`), {what}: compare with the paper with care."),
    "synthetic": ("**Synthetic data, not CIFAR-10** (fingerprint `{fp}`): these numbers show that the code "
                  "runs, not the paper's result."),
    "canonical": "Data: the canonical CIFAR-10 (md5 sums match the published archive; fingerprint `{fp}`).",
}
_CLAIM_ROWS = (  # claims.CLAIMS key -> what the paper claims (He et al. 2016, sec. 4.2, Fig. 6, Table 6)
    ("degradation_acc", "Degradation: the deeper plain net tests worse"),
    ("degradation_loss", "Degradation: the deeper plain net trains worse"),
    ("residual_fix_acc", "Residual learning: the deep ResNet beats the deep plain net"),
    ("depth_gain_acc", "Depth helps ResNets: the deeper ResNet beats the shallower one"),
)
_HEADLINE_FIGURE = "resnet_error_fig6.png"   # the paper's Fig. 6 layout: training and test error per epoch


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    return f"{seconds:.0f} s" if seconds < 120 else (f"{seconds / 60:.1f} min" if seconds < 7200
                                                      else f"{seconds / 3600:.2f} h")


def _acc(mean: float | None, std: float | None, n: int) -> str:
    if mean is None:
        return "n/a"
    return f"{mean:.4f}" if n < 2 else f"{mean:.4f} ± {std or 0.0:.4f} (n={n})"


def _card(run: dict) -> str:
    """The card a run trained on, from its environment record, and its precision."""
    env, cfg = run.get("environment") or {}, run.get("config") or {}
    if str(env.get("device", "")).startswith("cuda"):
        where = env.get("device_name") or "a CUDA GPU (name not recorded)"
    else:
        where = f"CPU ({env.get('cpu_model') or 'model not recorded'})"
    return f"{where}, {cfg.get('precision', 'fp32')}"


def _link(folder: str, name: str, text: str) -> str:
    return f"[{text}]({folder}/{name})"


def _run_id_section(root: Path, run_id: str, folder: str) -> list[str]:
    """The README section of one published run id; links point into ``folder``."""
    from resnet_nb.analysis.aggregate import runs_label
    from resnet_nb.analysis.claims import paper_claims
    from resnet_nb.models.resnet import model_label, parse_model_name

    summary = read_json(root / run_id / "summary.json")
    runs = list_runs(root, run_id)
    manifest = read_json(root / run_id / MANIFEST_FILE)
    data = runs_label(runs)                                   # the figures' words for the data
    ds = summary.get("dataset") or {}
    prov = ds.get("provenance", "unknown")
    recorded = (runs[0].get("dataset") or {}) if runs else {}
    note = _PROVENANCE_NOTE.get(prov, "**Unknown data provenance**: the run files do not say what data this "
                                      "is (fingerprint `{fp}`); no claim can be made from it.")
    short = {"noncanonical": "non-canonical copy", "synthetic": "synthetic data", "canonical": "CIFAR-10"}.get(
        prov, "unknown data")
    described = _data_note_of(root / run_id)
    what = ("as described below" if described else
            "e.g. a re-encoded copy whose pixels are close to, not equal to, the originals")
    lines = [f"### `{run_id}`: {data}", "",
             note.format(fp=str(ds.get("fingerprint", ""))[:16], what=what,
                         mismatches=", ".join(recorded.get("md5_mismatches") or []) or "not recorded")
             + (f" The data, as its publisher describes it: {described}" if described else ""), ""]
    by_model: dict[str, list[dict]] = {}
    for run in runs:
        by_model.setdefault(str(run["config"]["model"]), []).append(run)
    lines += [f"| model | final-epoch test acc ({short}) | best test acc ({short}) | seeds (ids) | epochs | wall time "
              f"| card, precision |", "|---|---:|---:|---:|---:|---:|---|"]
    models = summary.get("models") or {}
    for key, s in models.items():
        cards = sorted({_card(r) for r in by_model.get(key, [])})
        epochs = f"{s.get('last_epoch')}/{s.get('epochs_planned')}"
        if s.get("status") != "finished":
            epochs += f" ({s.get('status')})"
        seeds = f"{s['n_seeds']} ({', '.join(str(x) for x in s.get('seeds') or []) or '?'})"
        lines.append(f"| {model_label(key)} | {_acc(s.get('last_test_acc'), s.get('last_test_acc_std'), s['n_seeds'])} "
                     f"| {_acc(s.get('best_test_acc'), s.get('best_test_acc_std'), s['n_seeds'])} | {seeds} | {epochs} "
                     f"| {_duration(s.get('wall_time_s'))} | {' / '.join(cards) or 'not recorded'} |")
    depths = sorted({parse_model_name(k)[1] for k in models})
    shallow, deep = (depths[0], depths[-1]) if len(depths) > 1 else (20, 56)
    judged = paper_claims(summary, shallow, deep)
    from resnet_nb.analysis.claims import CLAIMS
    from resnet_nb.analysis.verdicts import ci_text

    if (root / run_id / _HEADLINE_FIGURE).is_file():
        lines += ["", f"![Training error (dashed) and test error (solid) per epoch, plain nets left, ResNets right, "
                      f"as the paper's Fig. 6; data: {data}]({folder}/{_HEADLINE_FIGURE})"]
    lines += ["", f"The paper's claims at depths {shallow} and {deep}, judged by the rule table "
                  f"(`resnet_nb/analysis/verdicts.py`; data: {data}):", ""]
    for name, claim in _CLAIM_ROWS:
        v, (a, b, metric, _) = judged[name], CLAIMS[name]
        a, b = a.format(s=shallow, d=deep), b.format(s=shallow, d=deep)
        what = {"last_test_acc": "final-epoch test acc", "best_test_acc": "best test acc"}.get(metric, metric.replace("_", " "))
        nums = (f"{model_label(a)} {v.mean_a:.4f} vs {model_label(b)} {v.mean_b:.4f} ({what}"
                f"{'; ' + ci_text(v) if v.ci is not None else ''})"
                if v.mean_a is not None and v.mean_b is not None else f"{model_label(a)} vs {model_label(b)}: n/a")
        lines.append(f"- {claim}: **{v.en}**; {nums}.")
    figs = summary.get("figures") or {}  # key -> file, as the analysis listed them
    shown = [_link(folder, f, k.replace("_", " ")) for k, f in figs.items() if (root / run_id / f).is_file()]
    docs = [_link(folder, p, f"report ({p.split('.')[1]}, PDF)") for p in REPORT_PDFS if (root / run_id / p).is_file()]
    extra = [_link(folder, f, f) for f in ("summary.json", BENCH_FILE, PARITY_FILE) if (root / run_id / f).is_file()]
    trained = sorted({str((r.get("environment") or {}).get("git_commit") or "")[:7] for r in runs} - {""})
    lines += _bench_lines(root / run_id / BENCH_FILE, folder)
    lines += _parity_lines(root / run_id / PARITY_FILE, folder)
    lines += ["", f"Wall time: the run's training time, the mean over its seeds where a model has several "
                  f"(metrics.json `elapsed`, pauses excluded; runs packed into "
                  f"one network share it; runs trained side by side on one CPU each count their own, slower, "
                  f"time, so the column does not add up to the time a seed took). Trained with the code at commit "
                  f"{', '.join(f'`{c}`' for c in trained) or 'not recorded'} (config.json); published "
                  f"{str(manifest.get('published_at', '?'))[:10]} from commit "
                  f"`{str(manifest.get('git_commit') or 'unknown')[:7]}`; run dirs with `best.pth` in "
                  f"[`{folder}/`]({folder}/).", "",
              " · ".join(docs + shown + extra)]
    return lines


def _bench_lines(path: Path, folder: str) -> list[str]:
    """The published CPU bench (``resnet-nb bench --device cpu --out``) as a table: training img/s
    per net, precision and layout, each as a multiple of the common recipe; nothing for another
    file (a GPU bench is linked, not tabled) or one that does not read as a CPU table."""
    try:
        res = read_json(path)
        rows = [r for r in res["rows"] if r.get("variant") in ("a", "layout", "parallel")]
        models = list(dict.fromkeys(str(r["model"]) for r in rows))
        base = {r["model"]: float(r["train_img_s"]) for r in rows if r["variant"] == "a"}
        device, native = str(res["device"]), bool(res.get("native_bf16"))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return []
    if not rows or not str(device).startswith("CPU"):
        return []

    def what(r):
        if r["variant"] == "a":
            return "common recipe (DataLoader + transforms), fp32"
        if r["variant"] == "parallel":
            return f"{r.get('precision')} channels_last, {r.get('processes')} runs at once x {r.get('threads')} thread(s)"
        return f"{r.get('precision')} {r.get('layout')}"

    cols = list(dict.fromkeys(what(r) for r in rows))
    cell = {(str(r["model"]), what(r)): float(r["train_img_s"]) for r in rows}
    out = ["", f"Training speed on the CPU these runs used ([`{BENCH_FILE}`]({folder}/{BENCH_FILE}), `resnet-nb bench "
               f"--device cpu`: {device[5:].strip()}, {'native' if native else 'no native'} bf16, torch "
               f"{res.get('torch', '?')}, batch {res.get('batch_size', '?')}, synthetic images): training images/s"
               + (", and the multiple of the common recipe" if base else "") + ".", "",
           "| layout | " + " | ".join(models) + " |", "|---|" + "---:|" * len(models)]
    for c in cols:
        vals = []
        for m in models:
            v = cell.get((m, c))
            vals.append("n/a" if v is None else f"{v:,.0f}" + (f" ({v / base[m]:.2f}x)" if m in base and base[m] > 0
                                                                and not c.startswith("common") else ""))
        out.append(f"| {c} | " + " | ".join(vals) + " |")
    implied = {k: v for k, v in (res.get("implied_short_s") or {}).items() if isinstance(v, (int, float))}
    if implied:
        best, worst = min(implied, key=implied.get), max(implied, key=implied.get)
        name = (lambda k: k.replace("common_fp32", "the common recipe").replace("_parallel", ", runs at once: ")
                .replace("_nchw", " NCHW").replace("_channels_last", " channels_last"))
        out += ["", f"The four-model short reproduction these rates imply (a tight loop: no per-epoch bookkeeping): "
                    f"{implied[best] / 3600:.1f} h at the fastest ({name(best)}), {implied[worst] / 3600:.1f} h at "
                    f"the slowest ({name(worst)})."]
    return out


def _parity_lines(path: Path, folder: str) -> list[str]:
    """The published ``resnet-nb parity`` result: its table, where each side's epochs came from
    (machine, torch, data) and, per model, whether bf16 stayed within the fp32 seed-to-seed
    difference; nothing for a file that does not read as one."""
    from resnet_nb.analysis.plots import provenance_label
    from resnet_nb.analysis.parity import parity_sentence, parity_table

    try:
        res = read_json(path)
        table, epochs, seeds = parity_table(res), int(res["epochs"]), [int(s) for s in res["seeds"]]
        sentences = [parity_sentence(m, r) for m, r in res["models"].items()]
        sources = [v for v in (res.get("sources") or {}).values() if isinstance(v, dict)]
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError):
        return []
    if not sentences or not table.count("\n") > 1:
        return []
    machines = sorted({f"{v.get('device_name')}, torch {v.get('torch')}" for v in sources if v.get("device_name")})
    data = sorted({provenance_label(str(v.get("data"))) + (f" (fingerprint `{str(v['fingerprint'])[:16]}`)"
                                                          if v.get("fingerprint") else "")
                   for v in sources if v.get("data")})
    reused = sum(bool(v.get("reused")) for v in sources)
    where = (f" on {'; '.join(machines)}" if machines else "") + (f"; data: {' and '.join(data)}" if data else "")
    lines = ["", f"bf16 against fp32 ([`{PARITY_FILE}`]({folder}/{PARITY_FILE}), `resnet-nb parity`{where}): the "
                 f"first {epochs} epochs of the short recipe (lr 0.1 throughout) in both precisions, seeds "
                 f"{', '.join(map(str, seeds))}, same init and batches"
                 + (f" ({reused} of the {len(sources)} sides are the first epochs of runs trained for a reproduction)"
                    if reused else "")
                 + f"; mean |bf16 - fp32| over seeds against |fp32 seed {seeds[0]} - fp32 seed {seeds[1]}|.", "", table, ""]
    return lines + [f"- {line}." for line in sentences]


def readme_block(published_dir: str | os.PathLike = PUBLISHED_DIR, links_from: str | os.PathLike | None = None) -> str:
    """The README's results block (markers included) from every run id published under
    ``published_dir``; one honest line when none is. Links are relative to ``links_from``
    (the README's folder; default: as ``published_dir`` is given)."""
    root = Path(published_dir)
    base = root.as_posix() if links_from is None else Path(os.path.relpath(root, links_from)).as_posix()
    ids = published_ids(root)
    body = ["<!-- generated by `make readme` (resnet-nb publish --readme) from report/published/: "
            "edit resnet_nb/pipeline/publish.py, not this block -->", ""]
    if not ids:
        body += [f"No result has been published yet: `{base}/` is empty (`make publish RUN_ID=<run id>` "
                 f"adds one)."]
    else:
        docs = "docs/report.md" if links_from is None else Path(os.path.relpath(REPO / "docs" / "report.md", Path(
                                                                               links_from).resolve())).as_posix()
        body += [f"Generated from the files in `{base}/` (`make readme`): every number comes from the "
                 f"summary.json and run dirs of its run id. `resnet-nb evaluate {base}/<run id> --data-root <the "
                 f"same data>` recomputes the test accuracy of every published `best.pth` ([{docs}]({docs}))."]
        for run_id in ids:
            body += ["", *_run_id_section(root, run_id, f"{base}/{run_id}")]
    return "\n".join([README_BEGIN, *body, "", README_END])


def update_readme(readme: str | os.PathLike = "README.md", published_dir: str | os.PathLike = PUBLISHED_DIR) -> bool:
    """Rewrite the block between ``README_BEGIN`` and ``README_END`` of ``readme`` with
    :func:`readme_block`; True when the file changed. Markers missing: ValueError."""
    path = Path(readme)
    text = path.read_text(encoding="utf-8")
    begin = text.find(README_BEGIN)
    end = text.find(README_END)
    if begin < 0 or end < begin:
        raise ValueError(f"{path} has no results block: add the lines {README_BEGIN!r} and {README_END!r} "
                         f"where the table belongs")
    new = text[:begin] + readme_block(published_dir, path.parent) + text[end + len(README_END):]
    if new == text:
        return False
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(new, encoding="utf-8")
    tmp.replace(path)
    return True


# --------------------------------------------------------------------------- CLI

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Copy a finished reproduction into report/published/<run id>/ (run dirs without last.pth, "
        "figures, summary.json, the zh and en PDFs, the bench and parity JSON), to be committed; and/or "
        "regenerate the README's results table from report/published/ (--readme). Build the report "
        "first: make report RUN_ID=<id>.")
    parser.add_argument("run_id", nargs="?", default="", metavar="RUN_ID",
                        help="run id to publish (default: none, with --readme: only regenerate the README table)")
    parser.add_argument("--bench", default=None, metavar="FILE", help="bench JSON (resnet-nb bench --out FILE) "
                        "measured for this reproduction, published as bench.json (default: none)")
    parser.add_argument("--parity", default=None, metavar="FILE", help="bf16-vs-fp32 result (resnet-nb parity "
                        "--out FILE) for this reproduction's CPU, published as parity.json with a table in the README")
    parser.add_argument("--data-note", default=None, metavar="TEXT",
                        help="one line saying what the data is, shown in the README beside its fingerprint (e.g. how "
                             "a non-canonical copy was made); replacing a copy without it keeps the previous note")
    parser.add_argument("--allow-unfinished", action="store_true",
                        help="publish runs that are not finished (they stay marked with their status)")
    parser.add_argument("--force", action="store_true", help="replace an existing published copy of RUN_ID")
    parser.add_argument("--readme", action="store_true",
                        help="rewrite README.md's results block from every published run id")
    parser.add_argument("--readme-file", default="README.md", help="the README whose block --readme rewrites")
    parser.add_argument("--runs-dir", default="experiments", help="root folder of run directories")
    parser.add_argument("--figures-dir", default="report/figures", help="root folder of the analysis outputs")
    parser.add_argument("--build-dir", default="report/build", help="root folder of the built reports")
    parser.add_argument("--published-dir", default=PUBLISHED_DIR, help="root folder of the published copies")


def run_cli(args: argparse.Namespace) -> int:
    if not args.run_id and not args.readme:
        raise ValueError("give a RUN_ID to publish, or --readme to regenerate the README table")
    if args.run_id:
        res = publish(args.run_id, args.runs_dir, args.figures_dir, args.build_dir, args.published_dir,
                      args.bench, args.allow_unfinished, args.force, args.data_note, args.parity)
        print(f"published {args.run_id} -> {res.path}/ ({len(res.files)} files, {format_size(res.total_bytes)})")
        for name, left in res.left_out.items():
            kept = [f for f in RUN_FILES if f"{name}/{f}" in res.files]
            print(f"  {name}/: {' '.join(kept)}" + (f" (left out: {' '.join(left)})" if left else ""))
        rest = [f for f in res.files if "/" not in f]
        print(f"  {' '.join(rest)}")
        for u in res.unfinished:
            print(f"  published unfinished: {u}")
        total = res.all_published_bytes
        print(f"{Path(args.published_dir)}/ holds {format_size(total)} in all (committed with the repository)")
        summary = read_json(res.path / "summary.json")
        trial = [w for w, bad in (("synthetic data", (summary.get("dataset") or {}).get("provenance") == "synthetic"),
                                  ("the smoke preset", summary.get("preset") == "smoke")) if bad]
        if trial:
            print(f"resnet-nb publish: warning: {res.path.name} is a run of {' and '.join(trial)}: it shows the "
                  f"code runs, not a result; commit it only on purpose (git rm -r {res.path} to take it back)",
                  file=sys.stderr)
    if args.readme:
        changed = update_readme(args.readme_file, args.published_dir)
        n = len(published_ids(args.published_dir))
        print(f"{args.readme_file}: results block {'rewritten' if changed else 'already up to date'} "
              f"({n} published run id{'s' if n != 1 else ''})")
    elif args.run_id:
        print(f"next: git add {Path(args.published_dir) / args.run_id} && make readme")
    return 0
