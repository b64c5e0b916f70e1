"""Hooks that pytest-parallel-modules offers to other plugins and conftest files. Called in the controller.

Registered by :func:`pytest_parallel_modules.plugin.pytest_addhooks`; implement
them in a ``conftest.py`` at the rootdir or in a plugin.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest


if TYPE_CHECKING:
    from pathlib import Path


def pytest_parallel_modules_worktree_ready(
    config: pytest.Config, worktree: Path, worker_id: str
) -> None:
    """A worker's worktree holds the run's snapshot; its worker starts when this returns.

    Use it to prepare what the snapshot lacks: build an extension module,
    generate code, copy local data, migrate a database. Called once per worker
    (and per replacement worker), on the controller's starter thread while the
    controller collects, so an implementation must not touch pytest's
    collection state. An exception fails that worker's start, which the run
    reports.

    :param config: the controller's pytest config.
    :param worktree: the root of the worktree (the repository's top level).
    :param worker_id: the worker that will run there (``w1``, ``w2`` ...).

    .. versionadded:: 0.1
    """
