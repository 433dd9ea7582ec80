"""What the notebooks import: setup, and their papermill parameters -> validated configs.

Every notebook starts with ``notebook_setup(globals())``: relative paths then mean the
project root wherever the kernel started, and the names defined so far (the imports) are
recorded. ``02_train``'s parameters map 1:1 onto the ``TrainConfig`` fields plus ``models``
and ``seeds`` (comma lists); ``configs_from_parameters(globals())`` turns them into the
configs to train and refuses a name papermill injected that is not a parameter.

Why ``globals()``: papermill injects its values as a cell of assignments after the
parameters cell, so a misspelt ``-p epoch 2`` becomes one more global and would silently
be ignored. The notebook's namespace is the only place that shows it; the snapshot taken
before the parameters cell tells the notebook's own imports apart from what came after.

``resnet_nb.pipeline.reproduce`` (the orchestrator) uses the same helpers to plan its executions.
"""
from __future__ import annotations

import difflib
import os
import types
from dataclasses import fields
from pathlib import Path
from typing import Any, Mapping, Sequence

from resnet_nb import REPO
from resnet_nb.runs.rundir import CONFIG_FILE, read_json, run_dir_of
from resnet_nb.training.config import PRESETS, TrainConfig, config_diff, make_config
from resnet_nb.training.train import resolve_run_ids

__all__ = ["project_root", "notebook_setup", "TRAIN_EXTRAS", "train_parameter_names", "split_list",
           "configs_from_parameters", "check_run_dirs"]

TRAIN_EXTRAS = ("models", "seeds")        # 02_train parameters beyond the TrainConfig fields
_SNAPSHOT = "_resnet_nb_names_before_parameters"


def project_root() -> Path:
    """The checkout holding ``resnet_nb`` (the folder with ``notebooks/``), else the cwd."""
    root = REPO
    return root if (root / "notebooks").is_dir() else Path.cwd()


def notebook_setup(namespace: dict | None = None) -> None:
    """First call of every notebook. Makes relative paths mean the same in JupyterLab
    (which starts kernels in ``notebooks/``), under nbval (``tests/notebooks/``) and under
    papermill (started from the project root): the working directory becomes the project
    root when the kernel started in one of those two folders. With the notebook's
    ``globals()`` it also records the names defined so far, so that
    ``configs_from_parameters`` can tell parameters apart from imports."""
    root = project_root()
    if Path.cwd().resolve() in (root / "notebooks", root / "tests" / "notebooks"):
        os.chdir(root)
    if namespace is not None:
        namespace[_SNAPSHOT] = set(namespace)


def train_parameter_names() -> list[str]:
    """The parameters of ``02_train``: every TrainConfig field, then ``models``, ``seeds``."""
    return [f.name for f in fields(TrainConfig)] + list(TRAIN_EXTRAS)


def _is_parameter_value(name: str, value: Any) -> bool:
    return not (name.startswith("_") or isinstance(value, (types.ModuleType, type)) or callable(value))


def split_list(value: Any) -> list[str]:
    """``"a, b,,c"`` or a list -> ``["a", "b", "c"]`` (papermill and CLI comma lists)."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    return [p.strip() for p in str(value).split(",") if p.strip()]


def configs_from_parameters(namespace: Mapping[str, Any]) -> list:
    """The ``TrainConfig`` list that ``02_train``'s parameters ask for.

    ``namespace`` is the notebook's ``globals()``. Parameters left at ``None`` take the
    preset's value. ``models``/``seeds`` (comma lists) give the cross product of models and
    seeds; the run name is the model, or ``<model>-seed<s>`` with several seeds. All configs
    share one run id (an unfinished matching run's, else a new one: ``resnet_nb.training.train``).
    A name papermill injected that is not a parameter is refused with the valid names.
    """
    known = train_parameter_names()
    hidden = set(namespace.get(_SNAPSHOT, ()))
    try:  # names IPython itself defines (In, Out, exit, ...)
        hidden |= set(get_ipython().user_ns_hidden)  # type: ignore[name-defined]  # noqa: F821
    except NameError:
        pass
    unknown = sorted(k for k, v in namespace.items()
                     if k not in known and k not in hidden and _is_parameter_value(k, v))
    if unknown:
        hints = [f"{u} (did you mean {c[0]}?)" if (c := difflib.get_close_matches(u, known, n=1)) else u
                 for u in unknown]
        raise ValueError(f"unknown parameter(s) {', '.join(hints)}: 02_train takes the TrainConfig "
                         f"fields and models, seeds: {', '.join(known)}")
    values = {k: namespace[k] for k in known if k in namespace}
    preset = values.pop("preset", None) or "seed"
    if preset not in PRESETS:  # first: every default below comes from the preset
        raise ValueError(f"unknown preset {preset!r}: use one of {', '.join(PRESETS)}")
    models, seeds = split_list(values.pop("models", "")), split_list(values.pop("seeds", ""))
    overrides = {k: v for k, v in values.items() if v is not None}
    models = models or [overrides.pop("model", None) or make_config(preset).model]
    overrides.pop("model", None)
    try:
        seed_list = [int(s) for s in seeds] if seeds else [int(overrides.pop("seed", make_config(preset).seed))]
    except ValueError:
        raise ValueError(f"seeds must be a comma list of integers (e.g. 0,1,2); got {seeds!r}") from None
    overrides.pop("seed", None)
    pairs = [(m, s) for m in models for s in seed_list]
    if len(pairs) > 1 and overrides.get("run_name"):
        raise ValueError("run_name names one run; leave it empty when models/seeds give several "
                         "(runs are named <model> or <model>-seed<s>)")
    cfgs = []
    for m, s in pairs:
        name = overrides.get("run_name") or (m if len(seed_list) == 1 else f"{m}-seed{s}")
        cfgs.append(make_config(preset, **{**overrides, "model": m, "seed": s, "run_name": name}))
    return resolve_run_ids(cfgs)


def check_run_dirs(cfgs: Sequence) -> None:
    """Refuse configs whose run dir already holds a run with other settings (e.g. another
    preset under the same run id), listing every differing field, before anything runs."""
    problems = []
    for c in cfgs:
        d = run_dir_of(c.out_dir, c.run_id, c.run_name)
        if not (d / CONFIG_FILE).is_file():
            continue
        try:
            stored = read_json(d / CONFIG_FILE)["config"]
        except (ValueError, KeyError, TypeError):  # unreadable: train rebuilds it from last.pth or refuses
            continue
        diff = config_diff(stored, c)
        if diff:
            fields_ = ", ".join(f"{k} (stored {a!r}, now {b!r})" for k, (a, b) in diff.items())
            problems.append(f"{d}: {fields_}")
    if problems:
        raise ValueError(f"run id {cfgs[0].run_id!r} already holds runs with other settings: "
                         f"{'; '.join(problems)}. Use another --run-id (or the stored settings)")
