"""Shared fixtures of the example suite."""

from __future__ import annotations

from collections.abc import Iterator
import os
import time

import pytest


@pytest.fixture(scope="session")
def service() -> Iterator[dict[str, object]]:
    """An expensive resource set up once per session: a stand-in for a test server.

    With ``--parallel-modules=N`` each worker is its own pytest session, so this
    runs once per worker, not once per module: ``pid`` tells the workers apart.
    """
    time.sleep(0.1)  # waiting for the server to accept connections
    yield {"pid": os.getpid(), "url": "http://127.0.0.1:8000"}

