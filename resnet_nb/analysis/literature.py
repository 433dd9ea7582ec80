"""Published numbers as data: ``report/literature.json``, loaded and checked.

The report sets our results beside published CIFAR-10 numbers: He et al. 2016's Table 6, the
seed report's best accuracies, and two public reproductions (nabla0001/resnet: 5-seed means ±
std; akamaster/pytorch_resnet_cifar10: one run each). They live in one JSON file, each source
with its citation key in ``report/references.bib``, so no published number is typed into code
or prose. :func:`load_literature` reads the file, refuses anything malformed with one line
naming the place and what to do, and returns every result in one shape::

    lit = load_literature()
    lit["sources"]["paper"]["results"]["resnet110"]
    -> {"error_pct": 6.43, "std_pct": None, "n": None, "best_of": 5, "mean_error_pct": 6.61,
        "mean_std_pct": 0.16, "best_test_acc": None, "given": "error_pct"}

A result gives either ``error_pct`` (test error in %; ``std_pct`` and ``n`` when it is a mean
over runs) or ``best_test_acc`` (a fraction, as the seed report states it); the other is
derived (``error_pct = 100 (1 - acc)``), and ``given`` says which one the source printed.
``last_test_acc``: the final epoch's accuracy, where the source gives it too.
"""
from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

from resnet_nb import REPO
from resnet_nb.models.resnet import parse_model_name

__all__ = ["LITERATURE_FILE", "REFERENCES_BIB", "LiteratureError", "load_literature", "bib_keys",
           "std_range"]

_REPORT = REPO / "report"
LITERATURE_FILE = _REPORT / "literature.json"
REFERENCES_BIB = _REPORT / "references.bib"

_SOURCE_FIELDS = {"key", "cite", "name", "column", "protocol", "results", "params_m"}
_RESULT_FIELDS = {"error_pct", "std_pct", "n", "best_test_acc", "last_test_acc", "best_of", "mean_error_pct",
                  "mean_std_pct"}


class LiteratureError(ValueError):
    """``report/literature.json`` is missing or malformed (the message names where)."""


def bib_keys(path: str | os.PathLike = REFERENCES_BIB) -> set[str]:
    """The citation keys of a BibTeX file (``@misc{key,`` ...)."""
    return set(re.findall(r"^@\w+\s*\{\s*([^,\s]+)\s*,", Path(path).read_text(encoding="utf-8"), re.M))


def _number(value, where: str, lo: float, hi: float, integer: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
        and lo <= value <= hi and (not integer or float(value).is_integer())
    if not ok:
        kind = "an integer" if integer else "a number"
        raise LiteratureError(f"{where} must be {kind} in [{lo:g}, {hi:g}]; got {value!r}")
    return int(value) if integer else float(value)


def _text(value, where: str) -> dict[str, str]:
    if not (isinstance(value, dict) and all(isinstance(value.get(k), str) and value[k] for k in ("en", "zh"))):
        raise LiteratureError(f'{where} must be {{"en": "...", "zh": "..."}}; got {value!r}')
    return {"en": value["en"], "zh": value["zh"]}


def _result(raw, where: str) -> dict:
    if not isinstance(raw, dict):
        raise LiteratureError(f"{where} must be an object such as {{\"error_pct\": 8.75}}; got {raw!r}")
    unknown = sorted(set(raw) - _RESULT_FIELDS)
    if unknown:
        raise LiteratureError(f"{where}: unknown field {unknown[0]!r}; fields: {', '.join(sorted(_RESULT_FIELDS))}")
    if ("error_pct" in raw) == ("best_test_acc" in raw):
        raise LiteratureError(f"{where} must give exactly one of error_pct (test error in %) and "
                              f"best_test_acc (a fraction); got {sorted(raw)}")
    out = {k: None for k in _RESULT_FIELDS}
    if "error_pct" in raw:
        out["error_pct"] = _number(raw["error_pct"], f"{where}.error_pct", 0, 100)
        out["given"] = "error_pct"
    else:
        acc = _number(raw["best_test_acc"], f"{where}.best_test_acc", 0, 1)
        out.update(best_test_acc=acc, error_pct=round(100 * (1 - acc), 2), given="best_test_acc")
    if "last_test_acc" in raw:   # a source that also states the final epoch's accuracy (the seed report)
        out["last_test_acc"] = _number(raw["last_test_acc"], f"{where}.last_test_acc", 0, 1)
    for name, lo, hi, integer in (("std_pct", 0, 100, False), ("n", 1, 10**6, True), ("best_of", 1, 10**6, True),
                                  ("mean_error_pct", 0, 100, False), ("mean_std_pct", 0, 100, False)):
        if name in raw:
            out[name] = _number(raw[name], f"{where}.{name}", lo, hi, integer)
    if out["std_pct"] is not None and out["n"] is None:
        raise LiteratureError(f"{where}: std_pct needs n (the number of runs it is over)")
    return out


def load_literature(path: str | os.PathLike = LITERATURE_FILE,
                    bib: str | os.PathLike | None = REFERENCES_BIB) -> dict:
    """``{"path", "sources": {key: {"key", "cite", "name", "protocol", "results", "params_m"}}}``
    from ``path`` (sources in file order; ``params_m``: depth -> millions). Every ``cite``
    must be a key of ``bib`` (None: not checked). Raises :class:`LiteratureError`."""
    path = Path(path)
    fix = f"fix {path} (its \"about\" field describes the format)"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LiteratureError(f"{path} is missing: the published numbers the report compares with live "
                              f"there; restore it from the repository (git checkout report/literature.json)") from None
    except (OSError, ValueError) as e:
        raise LiteratureError(f"{path} is not readable JSON ({e}); {fix}") from None
    if not isinstance(data, dict) or not isinstance(data.get("sources"), list) or not data["sources"]:
        raise LiteratureError(f"{path} must be an object with a non-empty list \"sources\"; {fix}")
    keys = bib_keys(bib) if bib is not None else None
    sources: dict[str, dict] = {}
    for i, raw in enumerate(data["sources"]):
        where = f"{path.name}: sources[{i}]"
        try:
            if not isinstance(raw, dict):
                raise LiteratureError(f"{where} must be an object")
            where = f"{where} ({raw.get('key', '?')})"
            missing = sorted({"key", "cite", "name", "protocol", "results"} - set(raw))
            unknown = sorted(set(raw) - _SOURCE_FIELDS)
            if missing or unknown:
                raise LiteratureError(f"{where}: " + (f"missing {', '.join(missing)}" if missing
                                                       else f"unknown field {unknown[0]!r}"))
            key = raw["key"]
            if not isinstance(key, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", key) or key in sources:
                raise LiteratureError(f"{where}: key must be a new lower-case name; got {key!r}")
            if keys is not None and raw["cite"] not in keys:
                raise LiteratureError(f"{where}: citation key {raw['cite']!r} is not in {bib}; add its entry there")
            if not isinstance(raw["results"], dict) or not raw["results"]:
                raise LiteratureError(f"{where}: results must map model names to results")
            results = {}
            for model, res in raw["results"].items():
                try:
                    fam, depth = parse_model_name(model)
                except ValueError as e:
                    raise LiteratureError(f"{where}.results: {e}") from None
                results[f"{fam}{depth}"] = _result(res, f"{where}.results.{model}")
            params = {}
            for depth, value in (raw.get("params_m") or {}).items():
                if not str(depth).isdigit():
                    raise LiteratureError(f"{where}.params_m: keys are depths (\"20\"); got {depth!r}")
                params[int(depth)] = _number(value, f"{where}.params_m.{depth}", 0, 10**4)
            name = _text(raw["name"], f"{where}.name")
            column = _text(raw["column"], f"{where}.column") if "column" in raw else name
            if any(len(v) > 20 for v in column.values()):   # a table header cell: short, or it overruns
                raise LiteratureError(f"{where}.column: at most 20 characters (a table column's header); "
                                      f"got {column!r}")
            sources[key] = {"key": key, "cite": raw["cite"], "name": name, "column": column,
                            "protocol": _text(raw["protocol"], f"{where}.protocol"),
                            "results": results, "params_m": params}
        except LiteratureError as e:
            raise LiteratureError(f"{e}; {fix}") from None
    return {"path": str(path), "sources": sources}


def std_range(literature: dict, key: str) -> tuple[float, float] | None:
    """``(smallest, largest)`` ``std_pct`` of source ``key`` (the published seed noise), or
    None when it gives none."""
    stds = [r["std_pct"] for r in literature["sources"].get(key, {}).get("results", {}).values()
            if r["std_pct"] is not None]
    return (min(stds), max(stds)) if stds else None
