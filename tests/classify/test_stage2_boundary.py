"""Stage 2 reads stage 1's output through the typed contract (:mod:`livercad.types`), never stage 1 itself."""

from __future__ import annotations

import ast
from pathlib import Path

import livercad.classify


def _imports(path: Path) -> list[str]:
    """Every module a file imports (``from livercad import segment`` counts as ``livercad.segment``)."""
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names += [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
    return names


def test_stage2_does_not_import_livercad_segment() -> None:
    root = Path(livercad.classify.__file__).parent
    found = [f"{p.name}: {name}" for p in sorted(root.glob("*.py")) for name in _imports(p)
             if name == "livercad.segment" or name.startswith("livercad.segment.")]
    assert found == []
