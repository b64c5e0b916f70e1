"""PURE: the run ledger -- every unit of work, its attempts, and what becomes of it. Runs in the controller.

The ledger is the one place that decides what happens to a unit of work (a
module, or a part of one; see :class:`~pytest_parallel_modules.grouping.WorkUnit`).
The controller tells it what happened -- a unit was handed to a worker, a test
started or finished, a unit finished, a worker was lost -- and carries out what
it answers: replay these reports into pytest's hooks, run this unit again on a
fresh worker, put the rest of this unit back on the queue, announce this
module's report. It never sends anything, starts no process and reads no clock:
times come in as arguments. It is unit-tested without processes, as
:mod:`~pytest_parallel_modules.scheduling` is.

Life of a unit::

    PENDING --assign--> RUNNING --finished--> FINAL
                          |  ^       \\--failed, retries left--> AWAITING_RETRY --assign (fresh worker)--> RUNNING
                          |  |
                          |  \\--assign (any worker)-- AWAITING_CONTINUATION <--worker crashed, tests left--/
                          \\--worker lost (timeout, interrupt), or crashed with nothing left--> FINAL

Every unit has one list of attempts. An attempt is the first run, a retry
(``--module-retries``: the whole unit again, on a fresh worker) or a
continuation (the tests a crashed worker did not reach, on another worker). The
unit's result is its last retry together with the continuations that followed
it; earlier retries are kept as the report's ``attempts``.

At the end, :meth:`RunLedger.finish` turns whatever is not final into a final
result (never started: ``not_run``; its rest never ran after a crash:
``crashed``; a retry that never ran: the failed attempt stands), so every
selected test ends in the report exactly once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
import enum
import math
from typing import Final
from typing import final
from typing import Literal

import pytest

from pytest_parallel_modules.grouping import WorkUnit
from pytest_parallel_modules.history import measured_outcome
from pytest_parallel_modules.history import MeasuredModule
from pytest_parallel_modules.history import MeasuredRun
from pytest_parallel_modules.history import MeasuredTest
from pytest_parallel_modules.outcomes import module_verdict
from pytest_parallel_modules.outcomes import ModuleOutcome
from pytest_parallel_modules.outcomes import ModuleVerdict
from pytest_parallel_modules.outcomes import worst_module_outcome
from pytest_parallel_modules.reports import AttemptRecord
from pytest_parallel_modules.reports import build_module_report
from pytest_parallel_modules.reports import count_results
from pytest_parallel_modules.reports import derive_module_outcome
from pytest_parallel_modules.reports import FailureRecord
from pytest_parallel_modules.reports import fold_test_reports
from pytest_parallel_modules.reports import ModuleReport
from pytest_parallel_modules.reports import ResultRecord
from pytest_parallel_modules.reports import UnitRecord
from pytest_parallel_modules.timing import isoformat


Location = tuple[str, int | None, str]


class UnitState(enum.Enum):
    """Where a unit of work is in its life (see the module docstring)."""

    PENDING = "pending"
    RUNNING = "running"
    AWAITING_RETRY = "awaiting_retry"
    AWAITING_CONTINUATION = "awaiting_continuation"
    FINAL = "final"


class AttemptKind(enum.Enum):
    """Why an attempt runs."""

    FIRST = "first"
    #: ``--module-retries``: the whole unit again, on a fresh worker.
    RETRY = "retry"
    #: The tests a crashed worker did not reach, on another worker.
    CONTINUATION = "continuation"


class LossKind(enum.Enum):
    """How the controller lost a worker that still had work."""

    #: The worker's process died (or its session ended early): the rest of its unit runs elsewhere.
    CRASH = "crash"
    #: The controller killed it for running past ``--module-timeout``.
    TIMEOUT = "timeout"
    #: The run was interrupted (Ctrl-C, SIGTERM), or a worker did not stop in time after a
    #: fail-fast stop: what it was running has no result of its own.
    INTERRUPT = "interrupt"


ReplayKind = Literal["logstart", "report", "logfinish"]


@final
@dataclass(frozen=True, slots=True)
class ReplayEvent:
    """One call of pytest's hooks, held back while a retry may still replace the attempt."""

    kind: ReplayKind
    worker_id: str
    nodeid: str
    location: Location
    report: pytest.TestReport | None = None


@dataclass(slots=True)
class Attempt:
    """One run of a unit (or of the rest of one) on one worker."""

    unit_id: str
    kind: AttemptKind
    worker_id: str
    #: The node ids this attempt was asked to run.
    nodeids: tuple[str, ...]
    #: Epoch seconds the unit was handed to the worker.
    assigned: float
    #: Epoch seconds the worker started it (``None`` until it said so).
    started: float | None = None
    #: The controller's monotonic clock when the worker started it (for ``--module-timeout``).
    started_perf: float | None = None
    #: Epoch seconds it ended.
    finished: float | None = None
    collect_s: float = 0.0
    run_s: float = 0.0
    #: CPU seconds the worker spent on its tests (``None`` when it did not say: it crashed).
    cpu_s: float | None = None
    #: The worker ran every test it was asked to.
    completed: bool = False
    #: How it ended; ``None`` while it runs.
    end: LossKind | Literal["finished"] | None = None
    #: The node id running now, where it is, and since when (the controller's monotonic clock).
    running: str | None = None
    running_location: Location | None = None
    running_since: float | None = None
    #: Node ids that ran to the end of their teardown (or were given up on).
    done: set[str] = field(default_factory=set)
    #: Every test of the attempt, its reports folded as it ended, in the order they ran.
    results: list[ResultRecord] = field(default_factory=list)
    #: Events not replayed yet (``--module-retries``).
    held: list[ReplayEvent] = field(default_factory=list)
    #: Results the ledger decided itself (an interrupted test), by node id.
    overrides: dict[str, ResultRecord] = field(default_factory=dict)

    def has_failures(self) -> bool:
        return any(result["outcome"] in ("failed", "error") for result in self.results)

    def left(self, *, exclude: Iterable[str] = ()) -> tuple[str, ...]:
        """The node ids of this attempt that did not run."""
        skip = self.done.union(exclude)
        return tuple(nodeid for nodeid in self.nodeids if nodeid not in skip)


@dataclass(slots=True)
class UnitEntry:
    """The ledger's record of one unit of work."""

    unit: WorkUnit
    state: UnitState = UnitState.PENDING
    attempts: list[Attempt] = field(default_factory=list)
    #: How the unit ended, once final, when the ledger knows better than its tests.
    outcome: ModuleOutcome | None = None
    #: The unit's results, once final.
    results: tuple[ResultRecord, ...] = ()
    #: Node ids that failed in an earlier retry and passed in the last one.
    flaky: list[str] = field(default_factory=list)
    #: What the final attempts measured, for the history (kept once reports are dropped).
    measured: dict[str, MeasuredTest] = field(default_factory=dict)
    #: ``(run_s, collect_s, complete)`` per final attempt that ran.
    parts: list[tuple[float, float, bool]] = field(default_factory=list)

    def final_chain(self) -> list[Attempt]:
        """The last retry (or the first attempt) and the continuations after it."""
        chain: list[Attempt] = []
        for attempt in self.attempts:
            if attempt.kind is not AttemptKind.CONTINUATION:
                chain = []
            chain.append(attempt)
        return chain

    def retries(self) -> list[list[Attempt]]:
        """The attempts grouped by retry: each group a retry and its continuations."""
        groups: list[list[Attempt]] = []
        for attempt in self.attempts:
            if attempt.kind is not AttemptKind.CONTINUATION or not groups:
                groups.append([])
            groups[-1].append(attempt)
        return groups


@final
@dataclass(slots=True)
class Decisions:
    """What the controller must do after an event the ledger judged."""

    #: Calls of pytest's hooks to make now, in order.
    replay: list[ReplayEvent] = field(default_factory=list)
    #: Modules whose every unit is final: announce and write their reports.
    finished_modules: list[ModuleReport] = field(default_factory=list)
    #: Units that wait for a fresh worker (``--module-retries``).
    retries: list[WorkUnit] = field(default_factory=list)
    #: Units (or their rest) back on the queue, for any worker.
    requeued: list[WorkUnit] = field(default_factory=list)

    def extend(self, other: Decisions) -> None:
        self.replay.extend(other.replay)
        self.finished_modules.extend(other.finished_modules)
        self.retries.extend(other.retries)
        self.requeued.extend(other.requeued)


#: How a unit ends when its worker is lost this way and its rest does not run elsewhere.
_LOSS_OUTCOMES: Final[Mapping[LossKind, ModuleOutcome]] = {
    LossKind.CRASH: "crashed",
    LossKind.TIMEOUT: "timeout",
    LossKind.INTERRUPT: "interrupted",
}

#: The longrepr of a test reported ``interrupted`` when no stack of it could be had.
INTERRUPTED_TEXT: Final = "interrupted while it ran: the run was stopped before this test ended"


@final
class RunLedger:
    """Every unit of one run, its attempts and its fate. PURE; owned by the controller.

    :param units: the plan, in the order units are handed out.
    :param retries: ``--module-retries``: how many times a failing unit runs again.
    :param strict_retries: ``--module-retries-strict``: a test that passed only on a
        retry is reported failed.
    """

    def __init__(
        self, units: Sequence[WorkUnit], *, retries: int = 0, strict_retries: bool = False
    ) -> None:
        self.retries = retries
        self.strict_retries = strict_retries
        #: Every unit, by id, in plan order.
        self.entries: dict[str, UnitEntry] = {unit.id: UnitEntry(unit) for unit in units}
        self._queue: deque[WorkUnit] = deque(units)
        self._retry_queue: deque[WorkUnit] = deque()
        self._stopped = False
        #: Worker id -> its attempts not finished yet, oldest first (the running one,
        #: then at most one handed out ahead).
        self._in_flight: dict[str, list[Attempt]] = {}
        #: Units per module, in plan order.
        self._units_of_module: dict[str, list[str]] = {}
        for unit in units:
            self._units_of_module.setdefault(unit.module, []).append(unit.id)
        self._announced: set[str] = set()
        #: Workers an attempt of which failed or crashed (kept once reports are dropped).
        self._failed_workers: set[str] = set()
        #: Node ids lost with a crashed or timed-out worker: never run again, never measured.
        self.lost: set[str] = set()
        #: Module reports, in the order their modules became final.
        self.module_reports: list[ModuleReport] = []

    # -- the queue --------------------------------------------------------------

    @property
    def stopped(self) -> bool:
        """Whether :meth:`stop` was called: no unit is handed out any more."""
        return self._stopped

    def pending(self) -> int:
        """How many units (or rests of units) any worker may still be handed."""
        return 0 if self._stopped else len(self._queue)

    def awaiting_retry(self) -> int:
        """How many units wait for a fresh worker to be retried on."""
        return 0 if self._stopped else len(self._retry_queue)

    def next_unit(self) -> WorkUnit | None:
        """The unit an idle worker should run next, removed from the queue (None: none)."""
        if self._stopped or not self._queue:
            return None
        return self._queue.popleft()

    def next_retry(self) -> WorkUnit | None:
        """The unit a fresh retry worker should run, removed from the retry queue."""
        if self._stopped or not self._retry_queue:
            return None
        return self._retry_queue.popleft()

    def stop(self) -> None:
        """Hand out nothing more (``-x``, ``--fail-fast-modules``, Ctrl-C, no worker left)."""
        self._stopped = True

    def all_final(self) -> bool:
        """Whether every unit of the plan is final (nothing runs, waits or is queued)."""
        return all(entry.state is UnitState.FINAL for entry in self.entries.values())

    def never_started(self) -> tuple[WorkUnit, ...]:
        """Units (or rests of units) still queued: what no worker will run once stopped."""
        return (*self._queue, *self._retry_queue)

    # -- events -----------------------------------------------------------------

    def assign(self, unit: WorkUnit, worker_id: str, now: float) -> Attempt:
        """A unit (from :meth:`next_unit` or :meth:`next_retry`) was handed to a worker."""
        entry = self.entries[unit.id]
        if entry.state is UnitState.PENDING:
            kind = AttemptKind.FIRST
        elif entry.state is UnitState.AWAITING_RETRY:
            kind = AttemptKind.RETRY
        elif entry.state is UnitState.AWAITING_CONTINUATION:
            kind = AttemptKind.CONTINUATION
        else:
            raise ValueError(f"unit {unit.id} cannot be assigned in state {entry.state.value}")
        attempt = Attempt(
            unit_id=unit.id, kind=kind, worker_id=worker_id, nodeids=unit.nodeids, assigned=now
        )
        entry.attempts.append(attempt)
        entry.state = UnitState.RUNNING
        self._in_flight.setdefault(worker_id, []).append(attempt)
        return attempt

    def in_flight(self, worker_id: str) -> tuple[Attempt, ...]:
        """The attempts a worker was handed and has not finished, oldest first."""
        return tuple(self._in_flight.get(worker_id, ()))

    def current(self, worker_id: str) -> Attempt | None:
        """The attempt a worker is running (or will run next)."""
        attempts = self._in_flight.get(worker_id)
        return attempts[0] if attempts else None

    def started(
        self,
        worker_id: str,
        unit_id: str,
        *,
        now: float,
        perf: float,
        collect_s: float,
        missing: Sequence[str] = (),
    ) -> Attempt:
        """The worker started a unit; ``missing`` are node ids it did not collect (R10)."""
        attempt = self._attempt(worker_id, unit_id)
        attempt.started = now
        attempt.started_perf = perf
        attempt.collect_s = collect_s
        # Reported as a collection error by the controller; never run.
        attempt.done.update(missing)
        return attempt

    def test_started(
        self, worker_id: str, nodeid: str, location: Location, *, at: float | None = None
    ) -> bool:
        """A test started (at ``at``); True when the controller replays its logstart now (else held)."""
        attempt = self._current_or_none(worker_id)
        if attempt is None:
            return True
        attempt.running = nodeid
        attempt.running_location = location
        attempt.running_since = at
        if self.retries:
            attempt.held.append(ReplayEvent("logstart", worker_id, nodeid, location))
            return False
        return True

    def test_finished(
        self,
        worker_id: str,
        nodeid: str,
        location: Location,
        reports: Sequence[pytest.TestReport],
    ) -> bool:
        """A test ended with ``reports``; True when the controller replays them now (else held)."""
        attempt = self._current_or_none(worker_id)
        if attempt is None:
            return True
        attempt.results.extend(fold_test_reports(reports))
        attempt.running = None
        attempt.done.add(nodeid)
        if self.retries:
            held = attempt.held
            for report in reports:
                held.append(ReplayEvent("report", worker_id, nodeid, location, report))
            held.append(ReplayEvent("logfinish", worker_id, nodeid, location))
            return False
        return True

    def unit_finished(
        self,
        worker_id: str,
        unit_id: str,
        *,
        now: float,
        collect_s: float,
        run_s: float,
        completed: bool,
        cpu_s: float | None = None,
    ) -> Decisions:
        """The worker reported a unit done (or stopped inside it, ``completed`` False).

        :param cpu_s: the CPU seconds it spent on the unit's tests, when it measured them.
        """
        attempt = self._attempt(worker_id, unit_id)
        self._in_flight[worker_id].remove(attempt)
        attempt.finished = now
        if attempt.started is None:
            # Handed out ahead and given back unstarted (the worker was stopping).
            entry = self.entries[unit_id]
            entry.attempts.remove(attempt)
            entry.state = (
                UnitState.PENDING if not entry.attempts else UnitState.AWAITING_CONTINUATION
            )
            self._queue.appendleft(self.entries[unit_id].unit.with_nodeids(attempt.nodeids))
            return Decisions()
        attempt.collect_s = collect_s
        attempt.run_s = run_s
        attempt.cpu_s = cpu_s
        attempt.completed = completed
        attempt.end = "finished"
        entry = self.entries[unit_id]
        chain = entry.final_chain()
        if self._wants_retry(entry, chain):
            entry.state = UnitState.AWAITING_RETRY
            self._retry_queue.append(entry.unit)
            return Decisions(retries=[entry.unit])
        return self._settle(entry, outcome=None)

    def worker_lost(
        self, worker_id: str, kind: LossKind, evidence: str, *, now: float
    ) -> Decisions:
        """A worker ended with work in hand: decide the fate of everything it held.

        The test it was running fails with ``evidence`` (a crash, a timeout) or is
        ``interrupted``; a crash puts the rest of its unit back on the queue unless the
        run is stopping; a timeout or an interruption ends the unit with its other tests
        ``not_run``. Units it was handed ahead and had not started go back to the queue.
        """
        decisions = Decisions()
        attempts = self._in_flight.pop(worker_id, [])
        for position, attempt in enumerate(attempts):
            entry = self.entries[attempt.unit_id]
            if attempt.started is None and position > 0:
                # Never started: as if never handed out.
                entry.attempts.remove(attempt)
                entry.state = (
                    UnitState.PENDING if not entry.attempts else UnitState.AWAITING_CONTINUATION
                )
                decisions.requeued.append(entry.unit.with_nodeids(attempt.nodeids))
                continue
            attempt.finished = now
            attempt.end = kind
            lost = attempt.running
            attempt.running = None
            if lost is not None:
                attempt.done.add(lost)
                if kind is LossKind.INTERRUPT:
                    attempt.overrides[lost] = _interrupted_record(lost, evidence)
                else:
                    self.lost.add(lost)
                    decisions.replay.extend(self._lost_test(attempt, lost, kind, evidence))
            rest = attempt.left()
            if kind is LossKind.CRASH and rest and not self._stopped:
                entry.state = UnitState.AWAITING_CONTINUATION
                decisions.requeued.append(entry.unit.with_nodeids(rest))
                continue
            decisions.extend(self._settle(entry, outcome=_LOSS_OUTCOMES[kind]))
        # What the worker held runs next, in the order it held it.
        self._queue.extendleft(reversed(decisions.requeued))
        return decisions

    def finish(self) -> Decisions:
        """The run ended: make every unit final. Called once, after the last event."""
        self._stopped = True
        decisions = Decisions()
        self._queue.clear()
        self._retry_queue.clear()
        for entry in self.entries.values():
            if entry.state is UnitState.FINAL:
                continue
            if entry.state is UnitState.PENDING:
                decisions.extend(self._settle(entry, outcome="not_run"))
            elif entry.state is UnitState.AWAITING_CONTINUATION:
                decisions.extend(self._settle(entry, outcome="crashed"))
            elif entry.state is UnitState.AWAITING_RETRY:
                # The retry never ran: the failed attempt is the result.
                decisions.extend(self._settle(entry, outcome=None))
            else:  # RUNNING: its worker's end was never reported (should not happen)
                for attempt in entry.attempts:
                    for attempts in self._in_flight.values():
                        if attempt in attempts:
                            attempts.remove(attempt)
                decisions.extend(self._settle(entry, outcome="interrupted"))
        return decisions

    # -- what the run measured --------------------------------------------------

    def measurements(self) -> MeasuredRun:
        """What this run measured, for the history; only what ran to its end is complete."""
        tests: dict[str, MeasuredTest] = {}
        modules: dict[str, list[tuple[float, float, bool]]] = {}
        for entry in self.entries.values():
            tests.update(entry.measured)
            if entry.parts:
                modules.setdefault(entry.unit.module, []).extend(entry.parts)
        measured_modules = {}
        for module, parts in modules.items():
            expected = len(self._units_of_module.get(module, ()))
            measured_modules[module] = MeasuredModule(
                # The module's tests, fixtures and teardown: collection happens once per
                # worker before any test runs, so it is not part of a unit's cost.
                total_s=math.fsum(run for run, _, _ in parts),
                collect_s=max(collect for _, collect, _ in parts),
                complete=len(parts) >= expected and all(done for _, _, done in parts),
            )
        return MeasuredRun(tests=tests, modules=measured_modules)

    def module_verdicts(self) -> dict[str, ModuleVerdict]:
        """How each module of the run changes the failed-modules state."""
        return {
            report["module"]: module_verdict(
                report["outcome"], report["counts"]["failed"], report["counts"]["errors"]
            )
            for report in self.module_reports
        }

    def workers_of_failed_modules(self) -> set[str]:
        """Workers that ran a test of a module that failed or crashed (``--keep-failed-worktrees``)."""
        workers = set(self._failed_workers)
        for entry in self.entries.values():
            for attempt in entry.attempts:
                if attempt.end in (LossKind.CRASH, LossKind.TIMEOUT) or attempt.has_failures():
                    workers.add(attempt.worker_id)
        return workers

    def ran_before(self, module: str) -> dict[str, list[str]]:
        """Worker id -> the modules it started before ``module``'s first unit, in order.

        What a user needs to tell a real failure from state leaking between modules
        run one after another in one worker process.
        """
        firsts: dict[str, float] = {}
        for unit_id in self._units_of_module.get(module, ()):
            for attempt in self.entries[unit_id].attempts:
                if attempt.started is not None:
                    worker = attempt.worker_id
                    firsts[worker] = min(firsts.get(worker, math.inf), attempt.started)
        before: dict[str, list[str]] = {}
        for worker, start in firsts.items():
            earlier = sorted(
                (attempt.started, entry.unit.module)
                for entry in self.entries.values()
                for attempt in entry.attempts
                if attempt.worker_id == worker
                and attempt.started is not None
                and attempt.started < start
                and entry.unit.module != module
            )
            names: list[str] = []
            for _, name in earlier:
                if name not in names:
                    names.append(name)
            before[worker] = names
        return before

    # -- internals --------------------------------------------------------------

    def _attempt(self, worker_id: str, unit_id: str) -> Attempt:
        for attempt in self._in_flight.get(worker_id, ()):
            if attempt.unit_id == unit_id:
                return attempt
        raise LookupError(f"worker {worker_id} reported on {unit_id}, which it was not handed")

    def _current_or_none(self, worker_id: str) -> Attempt | None:
        attempts = self._in_flight.get(worker_id)
        return attempts[0] if attempts else None

    def _wants_retry(self, entry: UnitEntry, chain: Sequence[Attempt]) -> bool:
        return (
            self.retries > 0
            and not self._stopped
            and len(entry.retries()) <= self.retries
            # A crash is not retried: its rest already ran on another worker.
            and all(attempt.kind is not AttemptKind.CONTINUATION for attempt in chain)
            and any(attempt.has_failures() for attempt in chain)
        )

    def _lost_test(
        self, attempt: Attempt, nodeid: str, kind: LossKind, evidence: str
    ) -> list[ReplayEvent]:
        """The failed report of a test whose worker crashed or timed out under it."""
        location = attempt.running_location or (nodeid.split("::", 1)[0], None, nodeid)
        report = pytest.TestReport(
            nodeid=nodeid,
            location=location,
            keywords={},
            outcome="failed",
            longrepr=evidence,
            when="call",
            sections=[],
            duration=0.0,
            user_properties=[],
        )
        attempt.results.extend(fold_test_reports([report]))
        events = [
            ReplayEvent("report", attempt.worker_id, nodeid, location, report),
            ReplayEvent("logfinish", attempt.worker_id, nodeid, location),
        ]
        if self.retries:
            attempt.held.extend(events)
            return []
        return events

    def _settle(self, entry: UnitEntry, *, outcome: ModuleOutcome | None) -> Decisions:
        """Make a unit final: its results, the events it held, and its module's report when complete."""
        decisions = Decisions()
        groups = entry.retries()
        chain = groups[-1] if groups else []
        earlier = [attempt for group in groups[:-1] for attempt in group]
        failed_before = {
            result["nodeid"]
            for attempt in earlier
            for result in attempt.results
            if result["outcome"] in ("failed", "error")
        }
        failed_now = {
            result["nodeid"]
            for attempt in chain
            for result in attempt.results
            if result["outcome"] in ("failed", "error")
        }
        done_now = {nodeid for attempt in chain for nodeid in attempt.done}
        entry.flaky = sorted(
            nodeid for nodeid in failed_before if nodeid not in failed_now and nodeid in done_now
        )
        for attempt in chain:
            for event in attempt.held:
                if (
                    event.kind == "report"
                    and event.report is not None
                    and self.strict_retries
                    and event.nodeid in entry.flaky
                    and event.report.when == "call"
                ):
                    strict = _strict_flaky_report(event.report, earlier)
                    # The report says what pytest's hooks are told.
                    attempt.overrides[event.nodeid] = fold_test_reports([strict])[0]
                    event = ReplayEvent(
                        "report", event.worker_id, event.nodeid, event.location, strict
                    )
                decisions.replay.append(event)
            attempt.held.clear()
        for attempt in earlier:
            attempt.held.clear()
        results: list[ResultRecord] = []
        for attempt in chain:
            folded: tuple[ResultRecord, ...] = tuple(attempt.results)
            if attempt.overrides:
                folded = tuple(
                    attempt.overrides.get(record["nodeid"], record)
                    if record["subtest"] is None
                    else record
                    for record in folded
                )
                seen = {record["nodeid"] for record in folded}
                folded += tuple(
                    record for nodeid, record in attempt.overrides.items() if nodeid not in seen
                )
            self._measure(entry, attempt, folded)
            results.extend(folded)
        entry.results = tuple(results)
        if outcome is None and any(attempt.end is LossKind.CRASH for attempt in chain):
            outcome = "crashed"  # its rest ran elsewhere, but the module crashed a worker
        entry.outcome = outcome
        entry.state = UnitState.FINAL
        report = self._module_report_if_final(entry.unit.module)
        if report is not None:
            decisions.finished_modules.append(report)
        return decisions

    def _measure(self, entry: UnitEntry, attempt: Attempt, folded: Sequence[ResultRecord]) -> None:
        """Note what one attempt of a final unit measured, for :meth:`measurements`."""
        for record in folded:
            outcome = measured_outcome(record["outcome"])
            if record["subtest"] is not None or outcome is None:
                continue
            nodeid = record["nodeid"]
            entry.measured[nodeid] = MeasuredTest(
                duration_s=record["duration_s"],
                outcome=outcome,
                complete=nodeid in attempt.done and nodeid not in self.lost,
            )
        if attempt.done and attempt.started is not None:
            entry.parts.append(
                (attempt.run_s, attempt.collect_s, attempt.completed and attempt.end == "finished")
            )

    def _module_report_if_final(self, module: str) -> ModuleReport | None:
        unit_ids = self._units_of_module[module]
        entries = [self.entries[unit_id] for unit_id in unit_ids]
        if module in self._announced or any(e.state is not UnitState.FINAL for e in entries):
            return None
        self._announced.add(module)
        report = build_unit_module_report(module, entries)
        self.module_reports.append(report)
        # The report holds what the run needs from here on: the reports of the module's
        # attempts, often most of the controller's memory, go now rather than at exit.
        for entry in entries:
            for attempt in entry.attempts:
                if attempt.end in (LossKind.CRASH, LossKind.TIMEOUT) or attempt.has_failures():
                    self._failed_workers.add(attempt.worker_id)
                attempt.results = []
                attempt.held = []
                attempt.overrides = {}
            entry.results = ()
        return report


def _interrupted_record(nodeid: str, evidence: str) -> ResultRecord:
    text = evidence or INTERRUPTED_TEXT
    return ResultRecord(
        nodeid=nodeid,
        subtest=None,
        outcome="interrupted",
        duration_s=0.0,
        when="call",
        longrepr=text,
        message=text.splitlines()[0] if text else None,
        stdout="",
        stderr="",
    )


def _strict_flaky_report(
    report: pytest.TestReport, earlier: Sequence[Attempt]
) -> pytest.TestReport:
    """--module-retries-strict: the passing call of a flaky test, turned into a failure naming why."""
    first_failure = next(
        (
            result
            for attempt in earlier
            for result in attempt.results
            if result["nodeid"] == report.nodeid and result["outcome"] in ("failed", "error")
        ),
        None,
    )
    text = "flaky (--module-retries-strict): failed in an earlier attempt, passed on a retry"
    if first_failure is not None and first_failure["longrepr"]:
        text += f"\n\nThe first failure:\n{first_failure['longrepr']}"
    return pytest.TestReport(
        nodeid=report.nodeid,
        location=report.location,
        keywords=dict(report.keywords),
        outcome="failed",
        longrepr=text,
        when="call",
        sections=list(report.sections),
        duration=report.duration,
        user_properties=list(report.user_properties),
    )


def _unit_outcome(entry: UnitEntry) -> ModuleOutcome:
    if entry.outcome is not None:
        return entry.outcome
    results = list(entry.results)
    seen = {record["nodeid"] for record in results}
    missing = sum(1 for nodeid in entry.unit.nodeids if nodeid not in seen)
    counts = count_results(results)
    counts["not_run"] += missing
    counts["tests"] += missing
    return derive_module_outcome(counts)


def _attempt_span(attempts: Sequence[Attempt]) -> tuple[float | None, float | None]:
    starts = [a.started if a.started is not None else a.assigned for a in attempts]
    ends = [a.finished for a in attempts if a.finished is not None]
    return (min(starts) if starts else None, max(ends) if ends else None)


def _attempt_record(number: int, group: Sequence[Attempt], unit: WorkUnit) -> AttemptRecord:
    results = [result for attempt in group for result in attempt.results]
    started, finished = _attempt_span(group)
    crashed = any(attempt.end is LossKind.CRASH for attempt in group)
    report = build_module_report(
        module=unit.module,
        worker=group[0].worker_id,
        started=started,
        finished=finished,
        results=results,
        outcome="crashed" if crashed else None,
        expected_nodeids=unit.nodeids,
    )
    return AttemptRecord(
        attempt=number,
        worker=group[0].worker_id,
        outcome=report["outcome"],
        duration_s=report["duration_s"],
        failures=[
            FailureRecord(nodeid=result["nodeid"], when=result["when"], longrepr=result["longrepr"])
            for result in results
            if result["outcome"] in ("failed", "error")
        ],
    )


def build_unit_module_report(module: str, entries: Sequence[UnitEntry]) -> ModuleReport:
    """PURE: the report of a module from its final units, their figures summed."""
    results = [record for entry in entries for record in entry.results]
    expected = [nodeid for entry in entries for nodeid in entry.unit.nodeids]
    outcomes = [_unit_outcome(entry) for entry in entries]
    spans = [_attempt_span(entry.attempts) for entry in entries]
    durations = [
        (finish - start) if start is not None and finish is not None else None
        for start, finish in spans
    ]
    known = [duration for duration in durations if duration is not None]
    starts = [start for start, _ in spans if start is not None]
    ends = [finish for _, finish in spans if finish is not None]
    first_worker = next((entry.attempts[0].worker_id for entry in entries if entry.attempts), None)
    report = build_module_report(
        module=module,
        worker=first_worker,
        started=min(starts) if starts else None,
        finished=max(ends) if ends else None,
        results=results,
        outcome=worst_module_outcome(outcomes),
        expected_nodeids=expected,
        duration_s=math.fsum(known) if known else None,
    )
    retried = [entry for entry in entries if len(entry.retries()) > 1]
    if retried:
        report["attempts"] = [
            _attempt_record(number, group, entry.unit)
            for entry in retried
            for number, group in enumerate(entry.retries(), start=1)
        ]
        report["flaky"] = sorted({nodeid for entry in retried for nodeid in entry.flaky})
    if len(entries) > 1:
        report["units"] = [
            UnitRecord(
                id=entry.unit.id,
                worker=entry.attempts[0].worker_id if entry.attempts else None,
                started=isoformat(start) if start is not None else None,
                finished=isoformat(finish) if finish is not None else None,
                duration_s=round(duration, 6) if duration is not None else 0.0,
                outcome=outcome,
                tests=len(entry.unit.nodeids),
            )
            for entry, outcome, (start, finish), duration in zip(
                entries, outcomes, spans, durations, strict=True
            )
        ]
    return report


def attempts_by_worker(ledger: RunLedger) -> Mapping[str, list[Attempt]]:
    """Worker id -> every attempt it ran, in the order it started them. For summaries."""
    by_worker: dict[str, list[Attempt]] = {}
    for entry in ledger.entries.values():
        for attempt in entry.attempts:
            by_worker.setdefault(attempt.worker_id, []).append(attempt)
    for attempts in by_worker.values():
        attempts.sort(key=lambda attempt: attempt.started or attempt.assigned)
    return by_worker
