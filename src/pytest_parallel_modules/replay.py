"""Rebuild what workers report and replay it into the controller's pytest hooks. Runs in the controller.

Workers send pytest's own serialisation of their reports; the controller
rebuilds them with ``pytest_report_from_serializable`` and calls
``pytest_runtest_logstart`` / ``pytest_runtest_logreport`` /
``pytest_runtest_logfinish``, ``pytest_collectreport`` and
``pytest_warning_recorded`` as a plain run would, so the terminal, junitxml,
the ``--lf`` cache and other plugins see a normal run. Paths inside a worker's
worktree are turned back into the user's checkout first, so tracebacks and
warnings name the user's files.
"""

from __future__ import annotations

from dataclasses import dataclass
import importlib
from pathlib import Path
import sys
from typing import Any
from typing import Final
from typing import final
from typing import Literal
from typing import TYPE_CHECKING
import warnings

import pytest

from pytest_parallel_modules.isolation import restore_checkout_paths
from pytest_parallel_modules.worker import own_serialisation_only


#: The plugin's entry-point name: its report-deserialisation wrapper never misses a report.
PLUGIN_NAME: Final = "pytest_parallel_modules"


if TYPE_CHECKING:
    from collections.abc import Callable

    from pytest_parallel_modules import worker
    from pytest_parallel_modules.ledger import Location
    from pytest_parallel_modules.ledger import ReplayEvent


@final
@dataclass(frozen=True, slots=True)
class GatewayName:
    """The part of ``report.node`` pytest's terminal reads: ``report.node.gateway.id``."""

    id: str


@final
class WorkerNode:
    """What a replayed report carries as ``report.node``.

    pytest's terminal and junitxml recognise reports from parallel workers by this
    attribute (the pytest-xdist convention): ``-v`` lines say which worker ran the
    test, a failure's section starts with a line naming the worker, and junitxml
    keeps interleaved reports of different tests apart. pytest reads
    ``node.gateway.id`` and ``node.workerinfo``, and caches on the object.
    """

    def __init__(self, worker_id: str) -> None:
        self.gateway = GatewayName(worker_id)
        self.workerinput: dict[str, Any] = {"workerid": worker_id}
        #: The controller's config, for plugins' ``pytest_configure_node``.
        self.config: pytest.Config | None = None
        self.workerinfo = {
            "id": worker_id,
            "sysplatform": sys.platform,
            "version_info": tuple(sys.version_info),
            "executable": sys.executable,
        }

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WorkerNode) and other.gateway == self.gateway

    def __hash__(self) -> int:
        return hash(self.gateway)


@final
class Replayer:
    """Turns worker messages into calls of the controller's pytest hooks."""

    def __init__(self, config: pytest.Config, repo_root: Path | None) -> None:
        self.config = config
        self.hook = config.hook
        self.repo_root = repo_root
        #: Looked up at the first logstart, once every plugin is registered.
        self._logstart_hook: Callable[..., Any] | None = None
        self._nodes: dict[str, WorkerNode] = {}
        #: Worker id -> its worktree root, as a string (isolated runs only).
        self._worktrees: dict[str, str] = {}
        #: Whether workers may send plain passing tests as compact records: only when no
        #: plugin of this process takes part in rebuilding reports (it would miss them).
        self.compact_reports = own_serialisation_only(
            config.hook.pytest_report_from_serializable.get_hookimpls(),
            frozenset({PLUGIN_NAME}),
        )

    def node(self, worker_id: str) -> WorkerNode:
        """The ``report.node`` of a worker's reports (one object per worker)."""
        node = self._nodes.get(worker_id)
        if node is None:
            node = self._nodes[worker_id] = WorkerNode(worker_id)
        return node

    def worker_placed(self, worker_id: str, worktree: Path | None) -> None:
        """Remember where a worker runs, to map its paths back to the checkout."""
        if worktree is not None:
            self._worktrees[worker_id] = str(worktree)

    def restore_paths(self, worker_id: str, value: Any) -> Any:
        """``value`` (text or nested JSON) with the worker's worktree paths mapped to the checkout."""
        worktree = self._worktrees.get(worker_id)
        if worktree is None or self.repo_root is None:
            return value
        return restore_checkout_paths(value, worktree, str(self.repo_root))

    def rebuild(self, worker_id: str, data: dict[str, Any]) -> pytest.TestReport:
        """A test report from its serialised form, as the controller's hooks expect it."""
        if "longrepr" in data and data["longrepr"] is not None and worker_id in self._worktrees:
            data = dict(data)
            data["longrepr"] = self.restore_paths(worker_id, data["longrepr"])
        report: pytest.TestReport = self.hook.pytest_report_from_serializable(
            config=self.config, data=data
        )
        report.node = self.node(worker_id)  # type: ignore[attr-defined]  # the pytest-xdist convention
        return report

    def rebuild_passed(
        self,
        worker_id: str,
        nodeid: str,
        location: Location,
        keywords: list[str],
        phases: list[tuple[str, float, float, float]],
    ) -> list[pytest.TestReport]:
        """The reports of a test whose phases all passed with nothing to show (worker.TEST_PASSED).

        Built directly: what pytest's deserialiser would build from the same fields,
        without its generic walk over every key of a full serialisation.
        """
        node = self.node(worker_id)
        marks: dict[str, Literal[1]] = dict.fromkeys(keywords, 1)
        reports = []
        for when, duration, start, stop in phases:
            report = pytest.TestReport(
                nodeid=nodeid,
                location=location,
                keywords=marks,
                outcome="passed",
                longrepr=None,
                when=when,  # type: ignore[arg-type]  # "setup" | "call" | "teardown" on the wire
                sections=[],
                duration=duration,
                start=start,
                stop=stop,
                user_properties=[],
            )
            report.node = node  # type: ignore[attr-defined]  # the pytest-xdist convention
            reports.append(report)
        return reports

    def logstart(self, nodeid: str, location: Location) -> None:
        if self._logstart_hook is None:
            self._logstart_hook = logstart_hook_for_replay(self.config)
        self._logstart_hook(nodeid=nodeid, location=location)

    def logreport(self, report: pytest.TestReport) -> None:
        self.hook.pytest_runtest_logreport(report=report)

    def logfinish(self, nodeid: str, location: Location) -> None:
        self.hook.pytest_runtest_logfinish(nodeid=nodeid, location=location)

    def event(self, event: ReplayEvent) -> None:
        """Replay one event the ledger held back or made (a crash's failed report)."""
        if event.kind == "logstart":
            self.logstart(event.nodeid, event.location)
        elif event.kind == "logfinish":
            self.logfinish(event.nodeid, event.location)
        elif event.report is not None:
            if getattr(event.report, "node", None) is None:
                event.report.node = self.node(event.worker_id)  # type: ignore[attr-defined]  # the pytest-xdist convention
            self.logreport(event.report)

    def collection_error(self, nodeid: str, text: str) -> None:
        """Report a collection error, as pytest reports a module that does not import."""
        self.hook.pytest_collectreport(
            report=pytest.CollectReport(nodeid=nodeid, outcome="failed", longrepr=text, result=[])
        )

    def warning(self, worker_id: str, payload: worker.WarningPayload) -> None:
        """Replay a warning a worker recorded, naming the user's files."""
        if payload["when"] == "config":
            # Every worker configures from the same files and options as the
            # controller, which recorded these warnings once already.
            return
        payload = self.restore_paths(worker_id, payload)
        category = _warning_category(payload["category_module"], payload["category_name"])
        try:
            message: Warning | str = category(payload["message"])
        except Exception:  # a category whose constructor takes other arguments
            message = payload["message"]
        warning_message = warnings.WarningMessage(
            message=message,
            category=category,
            filename=payload["filename"],
            lineno=payload["lineno"],
        )
        location = payload["location"]
        self.hook.pytest_warning_recorded.call_historic(
            kwargs={
                "warning_message": warning_message,
                "when": payload["when"],
                "nodeid": payload["nodeid"],
                "location": tuple(location) if location is not None else None,
            }
        )


def logstart_hook_for_replay(config: pytest.Config) -> Callable[..., Any]:
    """The hook a worker's ``logstart`` is replayed through. Runs in the controller.

    Every plugin's ``pytest_runtest_logstart`` but the terminal reporter's. In a plain
    ``-v`` run the reporter prints a test's location at its start and the outcome on
    the same line at its end; replayed reports carry the worker (``report.node``), so
    the reporter prints them as pytest-xdist's: a whole line of their own, with the
    location. Its logstart line would then stand alone above, a second line per test
    (issue #16). At other verbosities (the plugin turns ``showfspath`` off) it prints
    nothing there.
    """
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return config.hook.pytest_runtest_logstart
    return config.pluginmanager.subset_hook_caller(
        "pytest_runtest_logstart", remove_plugins=[reporter]
    )


def _warning_category(module: str, name: str) -> type[Warning]:
    """Import a worker's warning category by name; fall back to UserWarning."""
    try:
        found: object = importlib.import_module(module)
        for part in name.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError):
        return UserWarning
    if isinstance(found, type) and issubclass(found, Warning):
        return found
    return UserWarning
