"""Exception and warning classes. Imported by the controller and by the CLI."""

from __future__ import annotations

from typing import final

import pytest


@final
class ParallelModulesWarning(pytest.PytestWarning):
    """A problem the run survived: a corrupt history file, a worker that could not start, ..."""

    __module__ = "pytest_parallel_modules"


class ParallelModulesError(Exception):
    """A problem that ends the run with a clear message instead of a traceback."""
