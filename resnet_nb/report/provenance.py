"""Where a report's numbers came from: the environment table, the hyperparameters, the
development log (git), the file trees and the commands that rebuild the run.

Part of the report's facts (``resnet_nb.report.facts`` calls these); like it, it reads only
run files and the git history, never live objects.
"""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from resnet_nb import REPO
from resnet_nb.models.resnet import SEED_MODELS, sort_models
from resnet_nb.runs.rundir import effective_status, format_size
from resnet_nb.training.config import NON_MATH_FIELDS

_ENV_ROWS = (  # (row label, environment keys tried in order)
    ("OS", ("os", "platform")), ("CPU", ("cpu_model", "cpu")), ("CPU cores", ("cpu_count",)),
    ("CPU bf16", ()), ("Threads per training", ("torch_threads",)),
    ("RAM", ("ram_gb",)), ("GPU", ("gpu",)), ("Device", ("device",)), ("CUDA graphs", ()), ("Python", ("python",)),
    ("PyTorch", ("torch",)), ("CUDA (torch.version.cuda)", ("cuda",)), ("cuDNN", ("cudnn",)),
    ("torchvision", ("torchvision",)), ("NumPy", ("numpy",)), ("resnet-nb", ("resnet_nb",)),
    ("git commit", ("git_commit",)), ("Executed by", ()),
)
# where environment.git_commit found the commit ("git_commit_source"), (English, Chinese)
_COMMIT_SOURCES = {"git": ("from git", "来自 git"),
                   "RESNET_NB_COMMIT": ("from $RESNET_NB_COMMIT: the copy had no .git", "来自 $RESNET_NB_COMMIT：副本没有 .git")}


def commit_value(env: dict) -> tuple[str, str] | None:
    """The environment table's "git commit" (English, Chinese): the commit, whether the tree
    had uncommitted changes, and where the commit came from (``git_commit_source``: git, or
    ``$RESNET_NB_COMMIT`` on a copy without .git); "none ..." when neither gave one; None for
    an environment record older than ``git_commit_source`` that has no commit."""
    source = env.get("git_commit_source")
    if env.get("git_commit") is None:
        if "git_commit_source" not in env:
            return None  # template says "not recorded"
        return ("none (no .git and no $RESNET_NB_COMMIT)", "无（没有 .git，也没有 $RESNET_NB_COMMIT）")
    dirty = env.get("git_dirty")
    notes_en = ["uncommitted changes"] if dirty else (["uncommitted changes unknown"] if dirty is None and source else [])
    notes_zh = ["含未提交的修改"] if dirty else (["是否有未提交的修改未知"] if dirty is None and source else [])
    if source:
        en, zh = _COMMIT_SOURCES.get(source, (f"from {source}", f"来自 {source}"))
        notes_en.append(en)
        notes_zh.append(zh)
    commit = str(env["git_commit"])[:12]
    return (commit + (f" ({'; '.join(notes_en)})" if notes_en else ""),
            commit + (f"（{'；'.join(notes_zh)}）" if notes_zh else ""))


_EXECUTED = {"papermill": ("papermill", "papermill"), "jupyter": ("a Jupyter kernel", "Jupyter 内核"),
             "cli": ("resnet-nb train", "resnet-nb train 命令"), "python": ("a Python process", "Python 进程")}


def executed_value(run: dict) -> tuple[str, str] | None:
    """How the run was trained (English, Chinese), from config.json's ``executed_by``
    (``run_writer.how_trained``), one entry per process: "papermill (executed notebook
    02_train.ipynb)", "papermill (...), resumed after a pause by resnet-nb train", "papermill
    (...), resumed after pauses by papermill" (the epochs are in config.json); None for a run
    dir older than the record."""
    records = [r for r in run.get("executed_by") or [] if isinstance(r, dict)]
    if not records:
        return None

    def who(rec: dict) -> tuple[str, str]:
        return _EXECUTED.get(rec.get("by"), (str(rec.get("by")), str(rec.get("by"))))

    en, zh = who(records[0])
    if records[0].get("by") == "papermill":
        en += f" (executed notebook {records[0].get('notebook') or 'not recorded'})"
        zh += f"（已执行的 notebook：{records[0].get('notebook') or '未记录'}）"
    if len(records) > 1:   # paused and resumed: by whom (config.json has each process and its epoch)
        later = list(dict.fromkeys(who(r) for r in records[1:]))
        en += f", resumed after {'a pause' if len(records) == 2 else 'pauses'} by " + " and ".join(w[0] for w in later)
        zh += "，暂停后由 " + " 与 ".join(w[1] for w in later) + " 续训"
    return en, zh


def _env_value(env: dict, label: str, keys: tuple[str, ...]) -> str | None:
    if label == "GPU":
        if env.get("cuda_available") or str(env.get("device", "")).startswith("cuda"):
            return env.get("device_name") or "cuda"
        return None  # template says "none (CPU run)"
    for k in keys:
        if env.get(k) is not None:
            v = env[k]
            if k == "ram_gb":
                return f"{v} GiB"
            return str(v)
    return None


def _count(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _eval_graphs(rt: dict) -> str:
    """Whether evaluation ran as a CUDA graph (``evaluation.EvalForward`` counts in ``runtime``);
    "evaluation: not recorded" for runs trained before they were counted."""
    if "eval_captures" not in rt:
        return "evaluation: not recorded"
    caps, graph, eager = (int(rt.get(k) or 0) for k in ("eval_captures", "eval_graph_batches", "eval_eager_batches"))
    counts = (f"{_count(caps, 'capture')}, {graph:,} graph batch{'' if graph == 1 else 'es'}, "
              f"{eager:,} eager")
    fallbacks = rt.get("eval_fallbacks") or []
    if fallbacks:
        return f"evaluation eager after a failed capture: {'; '.join(map(str, fallbacks))} ({counts})"
    if graph:
        return f"evaluation graphed ({counts})"
    return f"evaluation eager ({eager:,} batch{'' if eager == 1 else 'es'})"


def graphs_value(run: dict) -> str | tuple[str, str] | None:
    """What the training step and evaluation really ran, from config.json's ``runtime``
    (``step.TrainStep`` and ``evaluation.EvalForward`` counts, summed over the run's processes):
    "1 capture, 78,000 graph steps, 200 eager; evaluation graphed (1 capture, 1,800
    graph batches, 200 eager)", "eager fallback: <reason>; ...", or "not used (CPU run)"; None
    where nothing was recorded (a run dir older than format 2, or a run whose first process
    has not stopped yet). Evaluation's part says "not recorded" for runs from before it was
    counted."""
    rt = run.get("runtime")
    if not isinstance(rt, dict):
        return None
    eager = _count(int(rt.get("eager_steps") or 0), "eager step")
    if not rt.get("graph_requested"):
        on_cuda = str((run.get("environment") or {}).get("device", "")).startswith("cuda")
        return f"off (eager only; {eager}); {_eval_graphs(rt)}" if on_cuda else ("not used (CPU run)", "未使用（CPU 运行）")
    counts = (f"{_count(int(rt.get('captures') or 0), 'capture')}, "
              f"{_count(int(rt.get('graph_steps') or 0), 'graph step')}, {int(rt.get('eager_steps') or 0):,} eager")
    fallbacks = rt.get("fallbacks") or []
    step = f"eager fallback: {'; '.join(map(str, fallbacks))} ({counts})" if fallbacks else counts
    return f"{step}; {_eval_graphs(rt)}"


def _bf16_value(env: dict) -> tuple[str, str] | None:
    """Whether the CPU computes bf16 in hardware (``environment.cpu_has_native_bf16``): the
    default precision of a CPU run follows it; None in an older record."""
    native = env.get("cpu_native_bf16")
    if native is None:
        return None
    return (("native (AVX512-BF16 or AMX)", "硬件原生支持（AVX512-BF16 或 AMX）") if native else
            ("emulated (no AVX512-BF16 or AMX)", "软件仿真（无 AVX512-BF16 或 AMX）"))


def environment_rows(runs: list[dict]) -> list[dict]:
    """Table 3-1's rows ``{label, value, value_zh, differs}``: each value once, joined by " / "
    where runs differ; "Executed by" names the runs of each value (whether papermill ran each)."""
    rows = []
    for label, keys in _ENV_ROWS:
        values, names = [], {}   # (en, zh) per distinct value, and the runs that have it
        for run in runs:
            env = run.get("environment") or {}
            v = (executed_value(run) if label == "Executed by" else commit_value(env) if label == "git commit"
                 else graphs_value(run) if label == "CUDA graphs" else _bf16_value(env) if label == "CPU bf16"
                 else _env_value(env, label, keys))
            pair = v if isinstance(v, tuple) or v is None else (v, v)
            if pair not in values:
                values.append(pair)
            names.setdefault(pair, []).append(Path(str(run.get("path", "?"))).name)
        shown = [v for v in values if v is not None]
        if label == "Executed by" and len(values) > 1:  # per run: which were executed by papermill
            shown = [(f"{v[0]}: {', '.join(names[v])}", f"{v[1]}：{'、'.join(names[v])}") for v in shown]
            if None in values:
                shown.append((f"not recorded: {', '.join(names[None])}", f"未记录：{'、'.join(names[None])}"))
        elif label == "Executed by" and shown:
            shown = [(f"{shown[0][0]}: all {len(runs)} runs", f"{shown[0][1]}：全部 {len(runs)} 个运行")]
        rows.append({"label": label, "value": " / ".join(v[0] for v in shown) if shown else None,
                     "value_zh": " / ".join(v[1] for v in shown) if shown else None,
                     "differs": len(values) > 1})
    return rows


_HPARAM_FIELDS = ("preset", "epochs", "schedule", "milestones", "gamma", "max_iters", "warmup_iters",
                  "warmup_lr", "lr", "momentum", "weight_decay", "batch_size", "normalization",
                  "shortcut", "val_split", "train_subset", "test_subset", "dataset", "seed",
                  "precision", "device", "eval_every")
# fields that name a run, or that config.NON_MATH_FIELDS says leave its computation alone (where
# files are, the device, the time budget, the pack mode), rather than change what it computes
_NAMING_FIELDS = ("model", "run_name", "run_id", *NON_MATH_FIELDS)


def _fmt_value(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return ", ".join(str(x) for x in v) if v else "none"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def hyperparameter_rows(runs: list[dict]) -> tuple[list[dict], list[str]]:
    """Rows ``{field, value}`` (distinct values joined) and the computed fields that differ."""
    from resnet_nb.training.config import field_help

    configs = [run.get("config", {}) for run in runs]
    rows = []
    for name in _HPARAM_FIELDS:
        values = []
        for c in configs:
            if name in c and _fmt_value(c[name]) not in values:
                values.append(_fmt_value(c[name]))
        if not values:
            continue
        if name in ("max_iters", "warmup_iters", "val_split", "train_subset", "test_subset") and values == ["0"]:
            continue
        if name == "warmup_lr" and not any(c.get("warmup_iters") for c in configs):
            continue
        rows.append({"field": name, "value": " / ".join(values), "help": field_help(name)})
    varied = sorted({k for c in configs for k in c
                     if k not in _NAMING_FIELDS and len({json.dumps(x.get(k)) for x in configs}) > 1})
    return rows, varied


def git_log(train_commits=(), limit: int = 40) -> dict:
    """The commits of the development log (:func:`log_window`) from this checkout's history."""
    from resnet_nb.runs.environment import git

    out = git("log", "--reverse", "--date=iso-strict", "--format=%h%x09%ad%x09%s", repo=REPO, timeout=20)
    if out is None:
        return {"commits": [], "omitted": 0, "available": False, "since": None}
    commits = []
    for line in out.splitlines():
        parts = line.split("\t", 2)
        if len(parts) == 3:
            commits.append({"hash": parts[0], "time": _utc(parts[1]), "subject": parts[2]})
    return {**log_window(commits, train_commits, limit), "available": True}


def log_window(commits: list[dict], train_commits=(), limit: int = 40, width: int = 160) -> dict:
    """The commits a reproduction's log shows, oldest first: from the oldest commit its runs were
    trained with on (``since``: that commit; the code before it did not make these results), at most
    the newest ``limit`` of them (``since`` is None when that cut it), each subject cut to ``width`` characters; ``omitted`` counts the rest."""
    starts = [i for i, c in enumerate(commits) for t in train_commits if t and c["hash"].startswith(t[:7])]
    first = min(starts) if starts else 0
    first = max(first, len(commits) - limit)
    shown = [{**c, "subject": c["subject"] if len(c["subject"]) <= width else c["subject"][:width - 1].rstrip() + "…"}
             for c in commits[first:]]
    return {"commits": shown, "omitted": first, "since": commits[first]["hash"] if starts and first == min(starts) else None}


def _utc(stamp: str | None) -> dt.datetime | None:
    if not stamp:
        return None
    try:
        t = dt.datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        return None
    if t.tzinfo is None:  # naive stamps are taken as UTC
        t = t.replace(tzinfo=dt.timezone.utc)
    return t.astimezone(dt.timezone.utc)


def devlog_rows(runs: list[dict], git: dict, generated: dt.datetime) -> list[dict]:
    """Days of events (commits, run starts and ends), oldest first, times in UTC."""
    events = [{"time": c["time"], "kind": "commit", "hash": c["hash"], "text": c["subject"]}
              for c in git["commits"] if c["time"] is not None]
    for run in runs:
        name = Path(run["path"]).name
        last = len(run.get("metrics", []))
        planned = run.get("config", {}).get("epochs")
        if _utc(run.get("start_time")):
            events.append({"time": _utc(run["start_time"]), "kind": "run_start", "run": name,
                           "commit": ((run.get("environment") or {}).get("git_commit") or "")[:7]})
        if _utc(run.get("end_time")):
            events.append({"time": _utc(run["end_time"]), "kind": "run_end", "run": name,
                           "status": run.get("status"), "epoch": last, "planned": planned})
        elif effective_status(run) == "running":  # a killed run is not "still running" (a paused one has an end)
            events.append({"time": generated, "kind": "run_running", "run": name, "epoch": last,
                           "planned": planned})
    events.append({"time": generated, "kind": "report"})
    events.sort(key=lambda e: (e["time"], e["kind"] == "report"))
    days: list[dict] = []
    for e in events:
        e["hhmm"] = e["time"].strftime("%H:%M")
        day = e["time"].strftime("%Y-%m-%d")
        if not days or days[-1]["date"] != day:
            days.append({"date": day, "events": []})
        days[-1]["events"].append(e)
    return days


def tree_listing(root: Path, max_files: int = 40) -> str:
    """``root`` and its files two levels deep, with sizes (the artifact tree)."""
    if not root.is_dir():
        return f"{root}/  (missing)"
    lines = [f"{root.as_posix()}/"]
    count = 0
    for p in sorted(root.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_dir():
            lines.append(f"  {p.name}/")
            for q in sorted(p.iterdir()):
                if q.name.startswith(".") or q.is_dir():
                    continue
                lines.append(f"    {q.name:<22} {format_size(q.stat().st_size):>9}")
                count += 1
        else:
            lines.append(f"  {p.name:<24} {format_size(p.stat().st_size):>9}")
            count += 1
        if count > max_files:
            lines.append("  ...")
            break
    return "\n".join(lines)




def _wrap_command(words: list[str], width: int = 72) -> str:
    """A shell command broken with `` \\`` so no line exceeds ``width`` (fits the PDF margin)."""
    lines, cur = [], ""
    for w in words:
        if cur and len(cur) + 1 + len(w) > width - 2:
            lines.append(cur + " \\")
            cur = "    " + w
        else:
            cur = f"{cur} {w}" if cur else w
    lines.append(cur)
    return "\n".join(lines)


def paper_warmup_of(run: dict) -> dict:
    """``{warmup_iters, warmup_lr}`` that ``make_config`` (so ``resnet-nb train``, 02_train and
    ``reproduce``) gives this run's net by the paper's rule (``config.paper_warmup``: >= 110
    layers, the dataset's nominal size), or {} when the rule does not apply."""
    from resnet_nb.training.config import config_from_dict, paper_warmup

    try:
        cfg = config_from_dict({k: v for k, v in run.get("config", {}).items()
                                if k not in ("warmup_iters", "warmup_lr")})
        w = paper_warmup(cfg)
    except (ValueError, TypeError):
        return {}
    return {} if w is cfg else {"warmup_iters": w.warmup_iters, "warmup_lr": w.warmup_lr}


def command_lines(run_id: str, preset: str, runs: list[dict], runs_dir: str, figures_dir: str) -> dict:
    """Exact commands that rebuild this run id: ``resnet-nb reproduce`` with the models, seeds
    and every field where the stored configs differ from the preset, one ``resnet-nb train``
    per run, and ``make reproduce`` when the plain preset reproduces it. Runs on a non-canonical
    copy of CIFAR-10 name it ``--data-root DATA_ROOT --allow-noncanonical`` (DATA_ROOT: the same
    copy, which the report identifies by its fingerprint). ``reproduce`` is None when one call
    cannot repeat the runs: settings beyond model and seed differ, the models do not all have the
    same seeds (it would train the missing ones too), or their names are not the ones it gives
    (``<model>`` for one seed, ``<model>-seed<s>`` for several)."""
    from resnet_nb.training.config import config_diff, make_config

    cfg0 = runs[0].get("config", {})
    dataset = cfg0.get("dataset", "cifar10")
    noncanonical = any((r.get("dataset") or {}).get("provenance") == "noncanonical" for r in runs)
    data_words = ["--data-root DATA_ROOT", "--allow-noncanonical"] if noncanonical else []
    skip = ("preset", "model", "run_id", *NON_MATH_FIELDS)
    train, common, uniform = [], None, True
    for run in runs:
        c = run.get("config", {})
        model = str(c.get("model"))
        words = ["resnet-nb", "train", f"--preset {preset}", f"--model {model}", *data_words]
        try:
            diff = config_diff(make_config(preset, model=model), c, ignore=skip)
        except (ValueError, TypeError):
            diff = {}
        ruled = paper_warmup_of(run)  # warm-up fields make_config sets itself (config.paper_warmup)
        for name, (_, value) in diff.items():
            if (name == "run_name" and value in ("", model)) or (name in ruled and ruled[name] == value):
                continue
            words.append(f"--{name.replace('_', '-')} {_fmt_value(value).replace(', ', ',')}")
        words.append(f"--run-id {run_id}")
        if runs_dir != "experiments":
            words.append(f"--out-dir {runs_dir}")
        train.append(_wrap_command(words))
        fields = {k: _fmt_value(v).replace(", ", ",") for k, (_, v) in diff.items()
                  if k not in ("dataset", "seed", "run_name") and not (k in ruled and ruled[k] == v)}
        uniform = uniform and (common is None or fields == common)
        common = fields if common is None else common
    pairs = [(str(r.get("config", {}).get("model")), int(r.get("config", {}).get("seed", 0))) for r in runs]
    models = sort_models({m for m, _ in pairs})
    seeds = sorted({s for _, s in pairs})
    names = {str(r.get("config", {}).get("run_name") or r.get("config", {}).get("model")) for r in runs}
    given = {f"{m}-seed{s}" if len(seeds) > 1 else m for m, s in pairs}
    # one call trains every model with every seed: it repeats the runs only when they are that grid
    grid = set(pairs) == {(m, s) for m in models for s in seeds}
    uniform = uniform and names == given and grid
    words = ["resnet-nb", "reproduce", f"--preset {preset}", f"--dataset {dataset}", *data_words,
             f"--run-id {run_id}", f"--models {','.join(models)}"]
    if len(seeds) > 1 or seeds != [make_config(preset).seed]:
        words.append(f"--seeds {','.join(map(str, seeds))}")
    words += [f"--set {k}={v}" for k, v in sorted((common or {}).items())]
    if runs_dir != "experiments":
        words.append(f"--out-dir {runs_dir}")
    if figures_dir != "report/figures":
        words.append(f"--figures-root {figures_dir}")
    plain = (not common and not noncanonical and models == sort_models(SEED_MODELS) and seeds == [make_config(preset).seed]
             and runs_dir == "experiments" and figures_dir == "report/figures")
    return {
        "reproduce": _wrap_command(words) if uniform else None,  # None: runs differ beyond model/seed
        "make_reproduce": _wrap_command(["make", "reproduce", f"PRESET={preset}", f"DATASET={dataset}",
                                         f"RUN_ID={run_id}"]) if plain else None,
        "report": _wrap_command(["resnet-nb", "report", f"--run-id {run_id}"]
                                + ([f"--runs-dir {runs_dir}"] if runs_dir != "experiments" else [])
                                + ([f"--figures-dir {figures_dir}"] if figures_dir != "report/figures" else [])),
        "make_report": f"make report RUN_ID={run_id}" if plain else None,
        "train": train,
    }
