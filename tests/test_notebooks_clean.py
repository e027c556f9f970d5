"""The committed notebooks are clean teaching material: no outputs, no widget state, no engine code.

Running them is a separate job (``PINNLAB_SMOKE=1 pytest --nbval-lax --nbval-current-env notebooks/``);
this file only reads them, so it is fast and runs with the unit tests.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
# The paper notebooks and the preset each one must call (they reproduce figures through pinnlab.paper).
PRESETS = {
    "01_ntk_spectra.ipynb": "paper.e2(",
    "02_ntk_vs_width.ipynb": "paper.e1(",
    "03_poisson_weights.ipynb": "paper.e3(",
    "04_wave_algorithm1.ipynb": "paper.e4(",
}
# Code that belongs in the engine, not in a notebook: residuals, derivatives, Jacobians, optimisers, modules.
ENGINE_CODE = re.compile(
    r"jax\.(grad|jacfwd|jacrev|hessian|vmap|jvp|vjp)\(|\bdef residual|\boptax\.|\bnnx\.|lax\.scan\(|"
    r"ravel_pytree"
)


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def _code(nb: nbformat.NotebookNode) -> list[str]:
    return [cell.source for cell in nb.cells if cell.cell_type == "code"]


def test_the_notebooks_are_there():
    names = {p.name for p in NOTEBOOKS}
    assert {"index.ipynb", *PRESETS} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_valid_and_without_outputs(path):
    nb = _read(path)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"cell {i} has outputs: clear them before committing"
            assert cell.execution_count is None, f"cell {i} has an execution count"
        assert "widgets" not in cell.metadata, f"cell {i} carries widget state"
    assert "widgets" not in nb.metadata, "notebook metadata carries widget state"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_engine_code(path):
    for i, source in enumerate(_code(_read(path))):
        hit = ENGINE_CODE.search(source)
        assert hit is None, f"code cell {i} defines engine code ({hit.group(0)!r}): call pinnlab instead"


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if _code(_read(p))], ids=lambda p: p.name)
def test_first_cell_installs_only_on_colab(path):
    first = _code(_read(path))[0]
    assert "google.colab" in first, "the first code cell is the Colab install cell"
    assert "--no-deps" in first, "pinnlab is installed without its dependencies, so Colab's jax stays"
    assert not re.search(r"(\s-U\b|--upgrade)", first), "never upgrade Colab's packages"


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_paper_notebooks_call_their_preset(name):
    code = "\n".join(_code(_read(NOTEBOOKS_DIR / name)))
    assert PRESETS[name] in code
    assert "scale=SCALE" in code, "presets run at the notebook's SCALE (smoke under test)"
    assert re.search(r'SCALE = "smoke" if os\.environ\.get\("PINNLAB_SMOKE"\) == "1" else', code)
    assert re.search(r"^\s*assert ", code, re.MULTILINE), "results are checked with assert lines"
    assert ".show()" in code, "the notebook shows its figure"


def test_index_lists_every_notebook():
    index = "\n".join(cell.source for cell in _read(NOTEBOOKS_DIR / "index.ipynb").cells)
    missing = [p.name for p in NOTEBOOKS if p.name != "index.ipynb" and p.name not in index]
    assert not missing, f"index.ipynb does not mention {missing}"
