"""A selection run in the pytest process itself, heard by the run ledger. Runs in the controller.

Under ``auto``, a selection too small for workers runs in pytest's own loop (see
``ParallelSession._runs_in_process``). This plugin, registered only then, tells
the ledger about it as if this process were a worker named ``local``: the
run's history and failed-modules state are updated like any other run's.
"""

from __future__ import annotations

from typing import Any
from typing import Final
from typing import final
from typing import TYPE_CHECKING

import pytest

from pytest_parallel_modules import timing


if TYPE_CHECKING:
    from pytest_parallel_modules.grouping import WorkUnit
    from pytest_parallel_modules.ledger import RunLedger

#: The name the ledger knows this process by.
LOCAL_WORKER: Final = "local"
#: The plugin's registration name.
LOCAL_RUN_PLUGIN_NAME: Final = "pytest_parallel_modules-local-run"


@final
class LocalRun:
    """Feeds the ledger from pytest's own test hooks, one unit at a time."""

    def __init__(self, ledger: RunLedger, units: tuple[WorkUnit, ...]) -> None:
        self.ledger = ledger
        self._unit_of = {nodeid: unit.id for unit in units for nodeid in unit.nodeids}
        self._unit: str | None = None
        self._started = 0.0
        self._reports: list[pytest.TestReport] = []

    def pytest_runtest_logstart(self, nodeid: str, location: Any) -> None:
        unit_id = self._unit_of.get(nodeid)
        if unit_id is None:
            return
        if unit_id != self._unit:
            # pytest's loop runs the items in collection order: a unit ends when the
            # next one's first test starts.
            self.finish_unit()
            unit = self.ledger.entries[unit_id].unit
            self.ledger.assign(unit, LOCAL_WORKER, timing.now())
            self.ledger.started(
                LOCAL_WORKER, unit_id, now=timing.now(), perf=timing.perf(), collect_s=0.0
            )
            self._unit = unit_id
            self._started = timing.perf()
        self.ledger.test_started(LOCAL_WORKER, nodeid, location, at=timing.perf())

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if self._unit is not None:
            self._reports.append(report)

    def pytest_runtest_logfinish(self, nodeid: str, location: Any) -> None:
        if self._unit is None:
            return
        reports, self._reports = self._reports, []
        self.ledger.test_finished(LOCAL_WORKER, nodeid, location, reports)

    def finish_unit(self) -> None:
        """The unit running here ended (the next one starts, or the session ends)."""
        if self._unit is None:
            return
        attempt = self.ledger.current(LOCAL_WORKER)
        self.ledger.unit_finished(
            LOCAL_WORKER,
            self._unit,
            now=timing.now(),
            collect_s=0.0,
            run_s=timing.perf() - self._started,
            completed=attempt is not None and not attempt.left(),
        )
        self._unit = None
