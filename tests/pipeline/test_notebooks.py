"""The notebooks: .py sources and .ipynb pairs in sync, golden copies current, parameters 1:1."""
import ast
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest

from resnet_nb.pipeline.executor import check_kernel
from resnet_nb.pipeline.notebook import train_parameter_names

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
GOLDEN = REPO / "tests" / "notebooks"
NAMES = ("00_data", "01_theory", "02_train", "03_analysis")
sys.path.insert(0, str(GOLDEN))
from make_golden import GOLDEN_PARAMS  # noqa: E402


def _cells(nb, skip_injected=True):
    """(type, source, tags) of every cell; the papermill-injected parameters cell left out."""
    out = []
    for c in nb.cells:
        tags = list(c.metadata.get("tags", []))
        if skip_injected and "injected-parameters" in tags:
            continue
        out.append((c.cell_type, c.source.strip(), tags))
    return out


def _parameters_cell(nb):
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, "exactly one cell tagged parameters"
    return cells[0]


def test_every_notebook_is_a_pair():
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.py")) == list(NAMES)
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == list(NAMES)
    assert 'formats = "ipynb,py:percent"' in (NOTEBOOKS / "jupytext.toml").read_text()


@pytest.mark.parametrize("name", NAMES)
def test_ipynb_in_sync_with_py_and_without_outputs(name):
    """The .py is the source; `jupytext --sync notebooks/*.py` regenerates the .ipynb."""
    src = jupytext.read(NOTEBOOKS / f"{name}.py")
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    assert _cells(nb) == _cells(src), f"notebooks/{name}.ipynb is out of sync: run jupytext --sync notebooks/*.py"
    assert nb.metadata["kernelspec"]["name"] == "python3"
    for c in nb.cells:
        if c.cell_type == "code":
            assert c.outputs == [] and c.execution_count is None, f"{name}.ipynb is committed with outputs"


@pytest.mark.parametrize("name", NAMES)
def test_golden_copy_matches_source(name):
    """The golden copy is the current notebook executed with GOLDEN_PARAMS: regenerate it
    with `make golden` after changing the notebook."""
    src = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    gold = nbformat.read(GOLDEN / f"{name}.ipynb", as_version=4)
    assert _cells(gold) == _cells(src), f"tests/notebooks/{name}.ipynb is stale: run make golden"
    injected = [c for c in gold.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1
    tree = ast.parse(injected[0].source)
    values = {t.targets[0].id: ast.literal_eval(t.value) for t in tree.body}
    assert values == GOLDEN_PARAMS[name]
    code = [c for c in gold.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code), "golden copies are executed notebooks"
    assert not any(o.get("output_type") == "error" for c in code for o in c.outputs)
    checked = [c for c in code if "# NBVAL_CHECK_OUTPUT" in c.source]
    assert checked and all(c.outputs for c in checked)


@pytest.mark.parametrize("name", NAMES)
def test_structure_imports_parameters_then_the_rest(name):
    """Fixed cell order: narrative, imports (with notebook_setup), parameters, ..."""
    nb = jupytext.read(NOTEBOOKS / f"{name}.py")
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "notebook_setup(globals())" in code[0].source
    assert "parameters" in code[1].metadata.get("tags", [])
    from papermill.translators import PythonTranslator
    assignments = [line for line in code[1].source.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert len(PythonTranslator.inspect(code[1])) == len(assignments), \
        "papermill must parse every parameter line (no '=' in comments)"


def test_train_parameters_map_onto_trainconfig_fields():
    cell = _parameters_cell(jupytext.read(NOTEBOOKS / "02_train.py"))
    names = [t.targets[0].id for t in ast.parse(cell.source).body]
    assert names and sorted(names) == sorted(train_parameter_names())


def test_kernel_runs_this_python():
    check_kernel("python3")
    with pytest.raises(ValueError, match="no Jupyter kernel named 'no-such-kernel'.*ipykernel install"):
        check_kernel("no-such-kernel")
