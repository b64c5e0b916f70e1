"""pytest-parallel-modules: run test modules on parallel workers, slowest first."""

from __future__ import annotations

from pytest_parallel_modules.errors import ParallelModulesWarning
from pytest_parallel_modules.grouping import ModuleGroup
from pytest_parallel_modules.grouping import WorkUnit


try:
    from pytest_parallel_modules._version import __version__
except ImportError:  # pragma: no cover - only in a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["ModuleGroup", "ParallelModulesWarning", "WorkUnit", "__version__"]
