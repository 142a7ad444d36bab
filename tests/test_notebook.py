"""examples/notebook/ensemble.ipynb runs top to bottom in a real Jupyter kernel and computes what it says."""

from __future__ import annotations

import pathlib
import re
import shutil

import nbclient
import nbformat
import pytest

NOTEBOOK = pathlib.Path(__file__).resolve().parents[1] / "examples" / "notebook" / "ensemble.ipynb"
TEMPERATURES = [1.0, 1.5, 2.0]


def _stdout(cell) -> str:
    return "".join(out.get("text", "") for out in cell.outputs if out.get("name") == "stdout")


@pytest.fixture
def executed(tmp_path, no_leaked_processes):
    """The notebook after running every cell in a fresh ipykernel, in tmp_path (its work directory's parent)."""
    copy = tmp_path / NOTEBOOK.name
    shutil.copy(NOTEBOOK, copy)
    notebook = nbformat.read(copy, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), (
        "the notebook is stored without outputs"
    )
    client = nbclient.NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError, with the cell and traceback, if a cell fails
    return notebook, tmp_path


def test_notebook_runs_the_ensemble_and_reruns_from_cache(executed):
    notebook, tmp_path = executed
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.execution_count for cell in code), "every code cell ran"
    outputs = [_stdout(cell) for cell in code]

    # The analysis tasks read what each member wrote: E = -6 + 1.25 T.
    rows = re.findall(r"T\* = ([\d.]+)\s+E =\s+(-?[\d.]+)", outputs[1])
    assert [float(t) for t, _ in rows] == TEMPERATURES
    assert [float(e) for _, e in rows] == pytest.approx([-6.0 + 1.25 * t for t in TEMPERATURES])

    # Each echo member's stdout file, and its task directory named after the label.
    assert outputs[2].splitlines() == [f"member {i}: T* = {t} -> hello-{i}" for i, t in enumerate(TEMPERATURES)]

    # The second workflow found every task in the record.
    assert "same energies: True" in outputs[3]
    assert "from cache: [True, True, True]" in outputs[3]

    # What the last cell listed is what is on disk.
    work = tmp_path / "ensemble-run"
    tasks = sorted(p.name for p in (work / "scalems_tasks").iterdir())
    assert tasks == ["hello-0", "hello-1", "hello-2", "model-0", "model-1", "model-2"]
    assert str(tasks) in outputs[4]
    assert (work / "scalems_0_0" / "record.sqlite").is_file()
    for i, t in enumerate(TEMPERATURES):
        assert float((work / "scalems_tasks" / f"model-{i}" / "energy.dat").read_text()) == pytest.approx(
            -6.0 + 1.25 * t
        )
