"""The slowest module (about 2 s), last in collection order.

Plain pytest and naive schedulers start it last; --parallel-modules starts it
first once it has a duration history (after the first run).
"""

from __future__ import annotations

import time

import pytest


@pytest.mark.slow
@pytest.mark.parametrize("month", ["january", "february", "march", "april"])
def test_monthly_report(month: str) -> None:
    time.sleep(0.5)
    assert month.isalpha()
