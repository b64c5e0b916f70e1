"""Hooks that pytest-parallel-modules offers to other plugins and conftest files. Called in the controller.

Registered by :func:`pytest_parallel_modules.plugin.pytest_addhooks`; implement
them in a ``conftest.py`` at the rootdir or in a plugin.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest


if TYPE_CHECKING:
    from pathlib import Path

    from pytest_parallel_modules.grouping import ModuleGroup
    from pytest_parallel_modules.reports import MergedReport
    from pytest_parallel_modules.reports import ModuleReport


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


def pytest_parallel_modules_module_started(
    config: pytest.Config, module: str, worker_id: str, nodeids: list[str]
) -> None:
    """A module was handed to a worker (once per part when ``--split-modules`` split it).

    :param config: the controller's pytest config.
    :param module: the module's path relative to the rootdir.
    :param worker_id: the worker that runs it.
    :param nodeids: the node ids it will run, in order.

    .. versionadded:: 0.1
    """


def pytest_parallel_modules_module_finished(config: pytest.Config, report: ModuleReport) -> None:
    """A module is done: passed, failed, crashed, interrupted or never run.

    Called once per module, in the order modules finish, with the module's
    report exactly as it is written to ``<report dir>/modules/``. A module whose
    worker crashed is reported once, after its remaining tests ran elsewhere.

    :param config: the controller's pytest config.
    :param report: the module report (see the JSON schema in the docs).

    .. versionadded:: 0.1
    """


def pytest_parallel_modules_report(config: pytest.Config, report: MergedReport) -> None:
    """The merged report of the run, before it is written and summarised.

    An implementation may add keys under ``report["extra"]`` (a dict of JSON
    values); other keys are read-only.

    :param config: the controller's pytest config.
    :param report: the merged report (see the JSON schema in the docs).

    .. versionadded:: 0.1
    """


@pytest.hookspec(firstresult=True)
def pytest_parallel_modules_plan(
    config: pytest.Config, plan: list[ModuleGroup]
) -> list[ModuleGroup] | None:
    """Change the modules' order (or how tests are grouped) before any is handed out.

    ``plan`` is the controller's order: slowest first from the duration history
    (modules that failed last time first under ``--fail-fast-modules``); a module
    that ``--split-modules`` split is there as consecutive groups, one per part. Return
    a new list to use instead, or None to keep it. The returned groups must hold
    exactly the node ids of ``plan``, each once (split a module into several
    groups, merge groups, reorder); anything else is a usage error, since a test
    would silently not run or run twice.

    :param config: the controller's pytest config.
    :param plan: the groups in dispatch order (:class:`~pytest_parallel_modules.grouping.ModuleGroup`:
        ``module`` and ``nodeids``).

    .. versionadded:: 0.1
    """
