"""About 1.2 s: a module-scoped fixture and an expected failure."""

from __future__ import annotations

from collections.abc import Iterator
import time

import pytest


@pytest.fixture(scope="module")
def database(service: dict[str, object]) -> Iterator[dict[str, int]]:
    """Set up once for this module and torn down after its last test."""
    time.sleep(0.6)  # stands in for creating and migrating a schema
    rows = {"alice": 1, "bob": 2}
    yield rows
    rows.clear()


@pytest.fixture
def transaction(database: dict[str, int]) -> dict[str, int]:
    """A per-test copy of the rows, so tests that write stay independent.

    Tests may run in any order: pytest-randomly, for one, shuffles them.
    """
    return dict(database)


def test_lookup(database: dict[str, int]) -> None:
    time.sleep(0.3)
    assert database["alice"] == 1


def test_insert(transaction: dict[str, int]) -> None:
    time.sleep(0.3)
    transaction["carol"] = 3
    assert len(transaction) == 3


@pytest.mark.xfail(reason="duplicate keys are not detected yet", strict=True)
def test_rejects_duplicates(transaction: dict[str, int]) -> None:
    before = len(transaction)
    transaction["alice"] = 4  # a dict silently overwrites
    assert len(transaction) == before + 1
