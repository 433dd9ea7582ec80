"""The project's set-up files agree with each other."""
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

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


# the data flow, bottom up: a sub-package may import only the ones before it (models and data
# share the first layer and do not import each other)
LAYERS = [("models", "data"), ("runs",), ("training",), ("analysis",), ("report",), ("pipeline",),
          ("bench",), ("cli",)]


def _package_imports() -> dict[str, set[str]]:
    """For every module of resnet_nb ("training.step", "cli", ...), the modules it imports,
    lazily inside functions too."""
    import ast

    pkg = REPO / "resnet_nb"
    mods = {".".join(p.relative_to(pkg).with_suffix("").parts) for p in pkg.rglob("*.py")}
    mods = {m.removesuffix(".__init__") for m in mods}
    edges: dict[str, set[str]] = {}
    for m in mods:
        path = pkg / (m.replace(".", "/") + ".py")
        if not path.is_file():
            path = pkg / m.replace(".", "/") / "__init__.py"
        deps = set()
        for n in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(n, ast.ImportFrom) and n.module and n.module.split(".")[0] == "resnet_nb" and n.level == 0:
                base = n.module.removeprefix("resnet_nb").lstrip(".")
                names = [f"{base}.{a.name}".lstrip(".") for a in n.names] + ([base] if base else [])
            elif isinstance(n, ast.Import):
                names = [a.name.removeprefix("resnet_nb.") for a in n.names if a.name.startswith("resnet_nb.")]
            deps |= {x for x in names if x in mods}
        edges[m] = deps - {m}
    return edges


def test_sub_packages_import_only_the_layers_below_them():
    """The folder tree is the data flow: models, data -> runs -> training -> analysis -> report ->
    pipeline -> bench, cli. No module imports (even lazily) one of a later layer or of its own
    layer's other package."""
    rank = {pkg: i for i, layer in enumerate(LAYERS) for pkg in layer}
    top = {p.name for p in (REPO / "resnet_nb").iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    top |= {p.stem for p in (REPO / "resnet_nb").glob("*.py") if p.stem != "__init__"}
    assert top == set(rank), f"sub-packages without a layer (or layers without a package): {sorted(top ^ set(rank))}"
    bad = []
    for m, deps in _package_imports().items():
        if not m:
            continue
        for d in deps:
            a, b = m.split(".")[0], d.split(".")[0]
            if b and a != b and rank[b] >= rank[a]:
                bad.append(f"{m} imports {d}")
    assert not bad, "imports against the data flow: " + "; ".join(sorted(bad))


def test_no_import_cycles_between_the_package_modules():
    """No module imports (even lazily) a module that imports it back, inside a sub-package too."""
    edges = _package_imports()

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for v in edges.get(todo.pop(), ()):
                if v not in seen:
                    seen.add(v)
                    todo.append(v)
        return seen
    cycles = sorted(m for m in edges if m in reach(m))
    assert not cycles, f"modules on an import cycle: {cycles}"
