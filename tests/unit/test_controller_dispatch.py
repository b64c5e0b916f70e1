"""The controller's dispatch table must answer every message a worker can send."""

from __future__ import annotations

import pytest

from pytest_parallel_modules import controller
from pytest_parallel_modules import worker
from pytest_parallel_modules.controller import ParallelSession
from pytest_parallel_modules.options import Options
from pytest_parallel_modules.worker_pool import CHANNEL_CLOSED
from pytest_parallel_modules.worker_pool import START_FAILED
from pytest_parallel_modules.workers import WorkerState


def test_every_worker_message_has_exactly_one_handler(pytestconfig: pytest.Config) -> None:
    session = ParallelSession(
        pytestconfig, Options(workers=2, workers_source="--parallel-modules=2")
    )
    assert set(session.handlers) == worker.WORKER_MESSAGES | {CHANNEL_CLOSED, START_FAILED}


def test_message_names_are_distinct() -> None:
    names = [*worker.WORKER_MESSAGES, worker.RUN_MODULE, worker.NO_MORE_WORK, worker.STOP]
    assert len(names) == len(set(names))


def test_the_event_loop_calls_the_ticks_on_every_wake_up(
    pytestconfig: pytest.Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The live display's clock: with no message at all, the loop still calls the ticks."""
    session = ParallelSession(
        pytestconfig, Options(workers=1, workers_source="--parallel-modules=1")
    )
    record = session.fleet.add("initial")
    monkeypatch.setattr(controller, "POLL_S", 0.01)
    ticks: list[int] = []

    def tick() -> None:
        ticks.append(1)
        if len(ticks) == 3:
            session.fleet.move(record, WorkerState.GONE)

    session.view.ticks.append(tick)
    session._drain_events(pytestconfig.pluginmanager.getplugin("session"))
    assert len(ticks) == 3
