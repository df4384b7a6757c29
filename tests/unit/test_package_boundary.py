"""The runtime package never imports the workshop: every Lambda ships ``learnrec/`` alone."""

from __future__ import annotations

import ast
from pathlib import Path

RUNTIME = Path(__file__).resolve().parents[2] / "learnrec"


def _imported_modules(source: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text(), filename=str(source))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_learnrec_never_imports_learnrec_dev() -> None:
    offenders = {
        str(path.relative_to(RUNTIME.parent)): sorted(
            name for name in _imported_modules(path) if name.split(".")[0] == "learnrec_dev"
        )
        for path in sorted(RUNTIME.rglob("*.py"))
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_the_boundary_check_sees_an_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from learnrec_dev.local import aws\n")
    assert "learnrec_dev.local" in _imported_modules(module)
