"""The project's set-up files agree with each other."""
import re
import subprocess
import sys

import pytest

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _make_targets() -> set[str]:
    text = (REPO / "Makefile").read_text()
    return set(re.findall(r"^([a-z][a-z0-9_-]*):", text, flags=re.M))


def test_pixi_tasks_match_makefile_targets():
    pixi = tomllib.loads((REPO / "pixi.toml").read_text())
    tasks = set(pixi["tasks"])
    assert {"test", "reproduce", "lab", "report"} <= tasks
    assert tasks <= _make_targets(), f"pixi tasks without a Makefile target: {tasks - _make_targets()}"


def test_pixi_and_pyproject_declare_the_same_core_dependencies():
    pixi = tomllib.loads((REPO / "pixi.toml").read_text())["dependencies"]
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    names = {re.split(r"[<>=;\[ ]", d)[0].lower() for d in project["dependencies"]}
    names |= {re.split(r"[<>=;\[ ]", d)[0].lower() for d in project["optional-dependencies"]["dev"]}
    names |= {re.split(r"[<>=;\[ ]", d)[0].lower() for d in project["optional-dependencies"]["lab"]}
    conda_names = {"torch": "pytorch", "pypandoc-binary": "pandoc", "tomli": None}
    for n in names:
        n = conda_names.get(n, n)
        if n:
            assert n in pixi, f"{n} is in pyproject.toml but not in pixi.toml"


def test_ci_runs_the_readme_test_command():
    ci = (REPO / ".ci" / "run").read_text()
    readme = (REPO / "README.md").read_text()
    assert "make test" in ci and "make test" in readme
    assert "make reproduce" in readme


def test_cli_help_lists_commands():
    out = subprocess.run([sys.executable, "-m", "resnet_nb.cli", "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert "data" in out


def test_data_cli_info_on_noncanonical_copy(fake_cifar, capsys):
    from resnet_nb.cli import main
    assert main(["data", "info", "--data-root", str(fake_cifar)]) == 2
    err = capsys.readouterr().err
    assert "md5 mismatch" in err and "--allow-noncanonical" in err and "Traceback" not in err
    assert main(["data", "info", "--data-root", str(fake_cifar), "--allow-noncanonical"]) == 0
    out = capsys.readouterr().out
    assert "canonical:   no" in out and "fingerprint:" in out and "airplane" in out
    assert main(["data", "verify", "--data-root", str(fake_cifar)]) == 1
    assert "canonical: no" in capsys.readouterr().out


def test_data_cli_missing_data_is_one_clear_error(tmp_path, capsys):
    from resnet_nb.cli import main
    assert main(["data", "download", "--data-root", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "cifar-10-python.tar.gz" in err and "Traceback" not in err


def test_no_import_cycles_between_the_package_modules():
    """Data flows one way: no module imports (even lazily) a module that imports it back."""
    import ast

    pkg = REPO / "resnet_nb"
    mods = {p.stem for p in pkg.glob("*.py")}
    edges: dict[str, set[str]] = {}
    for m in mods:
        deps = set()
        for n in ast.walk(ast.parse((pkg / f"{m}.py").read_text(encoding="utf-8"))):
            if isinstance(n, ast.ImportFrom) and n.module and n.module.split(".")[0] == "resnet_nb":
                parts = n.module.split(".")
                deps |= {parts[1]} if len(parts) > 1 else {a.name for a in n.names if a.name in mods}
            elif isinstance(n, ast.Import):
                deps |= {a.name.split(".")[1] for a in n.names if a.name.startswith("resnet_nb.")}
        edges[m] = deps & mods - {m}

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for v in edges[todo.pop()]:
                if v not in seen:
                    seen.add(v)
                    todo.append(v)
        return seen
    cycles = sorted(m for m in mods if m in reach(m))
    assert not cycles, f"modules on an import cycle: {cycles}"
