"""Every notebook in ``notebooks/`` runs top to bottom (nbclient, a real kernel) without
errors within its stated time; their outputs are not committed."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
#: Seconds each notebook may take on a loaded 2-core machine (each finishes in a fraction).
BUDGET = 150


def test_notebooks_are_committed_without_outputs():
    assert len(NOTEBOOKS) >= 4
    for path in NOTEBOOKS:
        nb = json.loads(path.read_text())
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                assert not cell.get("outputs") and cell.get("execution_count") is None, path.name


@pytest.mark.timeout(BUDGET + 60)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path, tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        p for p in [str(ROOT), os.environ.get("PYTHONPATH", "")] if p))
    monkeypatch.setenv("OFFERPOOL_PROGRESS", "0")
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=BUDGET, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = json.dumps(outputs)
    if path.stem.endswith("quickstart"):
        assert "dashboard:" in text and "/frameworks/" in text  # the job links its page
    if "evolutionary" in path.stem:
        assert any("image/png" in o.get("data", {}) for o in outputs)  # tour and convergence
