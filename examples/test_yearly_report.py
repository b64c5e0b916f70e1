"""The slowest module (about 2.4 s): a yearly report, exported month by month to files.

Plain pytest, and a first run without a duration history, start it last
(it is last in collection order); --parallel-modules starts it first once the
history knows it is the slowest.
"""

from __future__ import annotations

from pathlib import Path
import time

import pytest


@pytest.mark.slow
@pytest.mark.parametrize("month", ["january", "february", "march", "april"])
def test_month_is_exported(month: str, tmp_path: Path) -> None:
    time.sleep(0.6)  # rendering and uploading the report
    report = tmp_path / f"{month}.csv"
    report.write_text("customer,total\nalice,12\n")
    assert report.read_text().splitlines()[0] == "customer,total"
