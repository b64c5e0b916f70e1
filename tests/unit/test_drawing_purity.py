"""The modules that draw a run are pure: they import nothing that does I/O (STYLE R1)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path
import subprocess
import sys

import pytest

from tests.unit.test_scheduling import FORBIDDEN_IMPORTS


PURE_MODULES = (
    "pytest_parallel_modules.recent",
    "pytest_parallel_modules.trends",
    "pytest_parallel_modules.timeline_data",
    "pytest_parallel_modules.timeline",
    "pytest_parallel_modules.timing_analysis",
    "pytest_parallel_modules.trace",
    "pytest_parallel_modules.html_report",
)


@pytest.mark.parametrize("name", PURE_MODULES)
def test_a_drawing_module_imports_nothing_that_does_io(name: str) -> None:
    source = Path(importlib.import_module(name).__file__ or "").read_text(encoding="utf-8")
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            imported.add(node.module)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in {"open", "print", "input", "exec", "eval"}
    # Imports under TYPE_CHECKING are for annotations only; the runtime check below covers
    # what is actually loaded.
    roots = {module.split(".")[0] for module in imported}
    runtime = (imported | roots) - {"pytest_parallel_modules.history"}
    assert not runtime & FORBIDDEN_IMPORTS


def test_importing_the_drawing_modules_loads_no_io_library() -> None:
    code = (
        f"import sys\nimport {', '.join(PURE_MODULES)}\n"
        "print(sorted(m for m in ('filelock', 'execnet', 'pytest_parallel_modules.history') "
        "if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"
