"""The controller's dispatch table must answer every message a worker can send."""

from __future__ import annotations

import pytest

from pytest_parallel_modules import worker
from pytest_parallel_modules.controller import ParallelSession
from pytest_parallel_modules.options import Options
from pytest_parallel_modules.worker_pool import CHANNEL_CLOSED
from pytest_parallel_modules.worker_pool import START_FAILED


def test_every_worker_message_has_exactly_one_handler(pytestconfig: pytest.Config) -> None:
    session = ParallelSession(
        pytestconfig, Options(workers=2, workers_source="--parallel-modules=2")
    )
    assert set(session.handlers) == worker.WORKER_MESSAGES | {CHANNEL_CLOSED, START_FAILED}


def test_message_names_are_distinct() -> None:
    names = [*worker.WORKER_MESSAGES, worker.RUN_MODULE, worker.NO_MORE_WORK, worker.STOP]
    assert len(names) == len(set(names))
