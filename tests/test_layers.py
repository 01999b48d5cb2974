"""The one rule of DESIGN.md: frameworks use only substrate's public API (plus _native),
and substrate never imports a framework or the kernels."""
from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
FRAMEWORK_DIRS = ["dataflow", "genetic", "substrate/frameworks"]


def _imports(path: pathlib.Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, node.lineno))
    return found


def _files(rel: str) -> list[pathlib.Path]:
    return sorted((ROOT / rel).rglob("*.py"))


@pytest.mark.parametrize("rel", FRAMEWORK_DIRS)
def test_frameworks_use_only_the_public_api(rel: str) -> None:
    bad = []
    for path in _files(rel):
        for module, line in _imports(path):
            if module.startswith("substrate.") or module == "substrate.v1":
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not bad, "frameworks may import only `substrate` itself:\n" + "\n".join(bad)


def test_substrate_core_never_imports_frameworks_or_kernels() -> None:
    bad = []
    for path in _files("substrate"):
        if "frameworks" in path.parts:
            continue
        for module, line in _imports(path):
            top = module.split(".")[0]
            if top in ("dataflow", "genetic", "_native"):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not bad, "\n".join(bad)


def test_the_check_itself_catches_a_private_import(tmp_path: pathlib.Path) -> None:
    sample = tmp_path / "x.py"
    sample.write_text("from substrate.master.core import MasterCore\nimport substrate\n")
    assert [m for m, _ in _imports(sample)] == ["substrate.master.core", "substrate"]


def test_public_api_exposes_no_protobuf() -> None:
    import substrate
    for name in substrate.__all__:
        obj = getattr(substrate, name)
        assert "pb2" not in getattr(obj, "__module__", ""), name
