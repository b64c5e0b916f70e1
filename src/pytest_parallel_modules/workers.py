"""PURE: the worker lifecycle -- an explicit state machine per worker, and how many to start. Runs in the controller.

Every worker of a run is a :class:`WorkerRecord` whose :class:`WorkerState`
changes only through :meth:`WorkerFleet.move`, which rejects a transition the
table :data:`TRANSITIONS` does not allow::

    STARTING --ready--> IDLE --unit--> BUSY --unit done--> IDLE
        |                 |              |
        |                 +--no work-->  +--stop / no work--> STOPPING --exit--> GONE
        |                                |
        |                                +--past --module-timeout--> TIMED_OUT --exit--> GONE
        +--(any live state)--killed--> KILLED --exit--> GONE
        +--(any state)--channel closed / start failed--> GONE

:class:`WorkerFleet` decides, from the work left, how many workers to start:
never more than ``N`` that may run work at once, never more than the units left
to run, a crashed worker replaced within the restart budget, and a unit
awaiting a retry given a fresh worker only when one of the ``N`` places is free.
It starts nothing itself: the controller asks it and starts processes.
"""

from __future__ import annotations

from collections.abc import Iterator
from collections.abc import Mapping
from dataclasses import dataclass
import enum
from pathlib import Path
from typing import Final
from typing import final
from typing import Literal


class WorkerState(enum.Enum):
    """Where a worker is in its life."""

    #: Asked for; being placed (worktree) and spawned, or collecting.
    STARTING = "starting"
    #: Ready, and holding no unit.
    IDLE = "idle"
    #: Holding at least one unit.
    BUSY = "busy"
    #: Told to run nothing more; finishing its session.
    STOPPING = "stopping"
    #: Killed by the controller (a fail-fast grace ran out, the run was interrupted, or it
    #: was never needed); its channel has not closed yet.
    KILLED = "killed"
    #: Killed for running past ``--module-timeout``; its channel has not closed yet.
    TIMED_OUT = "timed_out"
    #: Its channel closed (or it never started): final.
    GONE = "gone"


#: Every allowed transition. Staying in a state is always allowed and changes nothing.
TRANSITIONS: Final[Mapping[WorkerState, frozenset[WorkerState]]] = {
    WorkerState.STARTING: frozenset(
        {WorkerState.IDLE, WorkerState.STOPPING, WorkerState.KILLED, WorkerState.GONE}
    ),
    WorkerState.IDLE: frozenset(
        {WorkerState.BUSY, WorkerState.STOPPING, WorkerState.KILLED, WorkerState.GONE}
    ),
    WorkerState.BUSY: frozenset(
        {
            WorkerState.IDLE,
            WorkerState.STOPPING,
            WorkerState.KILLED,
            WorkerState.TIMED_OUT,
            WorkerState.GONE,
        }
    ),
    WorkerState.STOPPING: frozenset({WorkerState.KILLED, WorkerState.GONE}),
    WorkerState.KILLED: frozenset({WorkerState.GONE}),
    WorkerState.TIMED_OUT: frozenset({WorkerState.GONE}),
    WorkerState.GONE: frozenset(),
}

#: States of a worker that may still be handed work (or is about to be).
MAY_RUN_WORK: Final = frozenset({WorkerState.STARTING, WorkerState.IDLE, WorkerState.BUSY})
#: States of a worker whose process may still be alive.
ALIVE: Final = frozenset(set(WorkerState) - {WorkerState.GONE})

#: Why a worker was started.
StartReason = Literal["initial", "replacement", "retry"]


@final
class IllegalTransition(RuntimeError):
    """A worker was moved to a state its current state cannot lead to (a controller bug)."""


@dataclass(slots=True)
class WorkerRecord:
    """The controller's view of one worker."""

    worker_id: str
    reason: StartReason = "initial"
    state: WorkerState = WorkerState.STARTING
    #: The worker's process id, once it said it is ready.
    pid: int | None = None
    #: Its worktree, once placed (isolated runs only).
    worktree: Path | None = None
    #: The unit id a retry worker was started for.
    retry_unit: str | None = None
    #: The worker's pytest session ended normally (it sent its last message).
    session_finished: bool = False
    exitstatus: int | None = None
    #: INTERNALERROR text the worker sent, for the crash report.
    internal_error: str | None = None
    #: The controller's monotonic clock after which a stopping worker is killed.
    stop_deadline: float | None = None
    #: Why the controller killed it (shown in the report of what it was running).
    kill_reason: str | None = None
    #: Seconds of ``--module-timeout`` it ran past.
    timed_out_after: float | None = None
    #: When the stack dump of a timed-out worker was asked for; the kill follows.
    dump_requested: float | None = None
    #: Its stderr file's size before the dump was asked for, and at the last look.
    dump_size: int | None = None
    dump_last_size: int | None = None
    #: Node id of a test already reported as unusually slow (reported once).
    slow_warned: str | None = None


@final
class WorkerFleet:
    """Every worker of one run, their states, and how many more to start. PURE.

    :param limit: ``N``: at most this many workers may run work at once.
    :param restart_budget: how many crashed workers may be replaced.
    """

    def __init__(self, limit: int, restart_budget: int) -> None:
        self.limit = max(1, limit)
        self.restarts_left = restart_budget
        self.restart_budget = restart_budget
        self.records: dict[str, WorkerRecord] = {}

    def __iter__(self) -> Iterator[WorkerRecord]:
        return iter(self.records.values())

    def __getitem__(self, worker_id: str) -> WorkerRecord:
        return self.records[worker_id]

    def __len__(self) -> int:
        return len(self.records)

    def add(self, reason: StartReason, *, retry_unit: str | None = None) -> WorkerRecord:
        """Record a worker about to be started (ids ``w1``, ``w2``... in start order)."""
        record = WorkerRecord(f"w{len(self.records) + 1}", reason=reason, retry_unit=retry_unit)
        self.records[record.worker_id] = record
        return record

    def move(self, record: WorkerRecord, state: WorkerState) -> None:
        """The one place a worker changes state; an illegal transition raises."""
        if state is record.state:
            return
        if state not in TRANSITIONS[record.state]:
            raise IllegalTransition(
                f"worker {record.worker_id}: {record.state.value} -> {state.value} is not allowed"
            )
        record.state = state

    def in_states(self, states: frozenset[WorkerState]) -> list[WorkerRecord]:
        return [record for record in self.records.values() if record.state in states]

    def all_gone(self) -> bool:
        return all(record.state is WorkerState.GONE for record in self.records.values())

    def may_run_work(self) -> int:
        """Workers that may still be handed work: starting, idle or busy."""
        return sum(1 for record in self.records.values() if record.state in MAY_RUN_WORK)

    def waiting_for_work(self) -> int:
        """Workers that will ask for a unit of the queue soon: starting or idle, not retries."""
        return sum(
            1
            for record in self.records.values()
            if record.state in (WorkerState.STARTING, WorkerState.IDLE)
            and record.retry_unit is None
        )

    def starts_wanted(self, pending: int, *, after_crash: bool = False) -> int:
        """How many workers to start for ``pending`` queued units (rests of units included).

        Never more than the free places of ``N``, never more than there are units no
        starting or idle worker will take; after a crash, within the restart budget.
        """
        free = self.limit - self.may_run_work()
        wanted = max(0, min(free, pending - self.waiting_for_work()))
        if after_crash:
            wanted = min(wanted, self.restarts_left)
        return wanted

    def retry_starts_wanted(self, awaiting_retry: int) -> int:
        """How many fresh workers to start for units awaiting a retry: only into free places."""
        starting = sum(
            1
            for record in self.records.values()
            if record.retry_unit is not None and record.state is WorkerState.STARTING
        )
        free = self.limit - self.may_run_work()
        return max(0, min(free, awaiting_retry - starting))
