"""The clock seam. Runs in the controller.

The functions are bound when this module is imported, so a test that freezes or
mocks :mod:`time` (freezegun, ``monkeypatch.setattr(time, "time", ...)``) cannot
skew the durations we record, as pytest's own ``_pytest.timing`` does.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from datetime import timezone
from time import perf_counter
from time import sleep as _sleep
from time import time
from typing import Final


#: Monotonic seconds, for measuring durations.
perf: Final[Callable[[], float]] = perf_counter

#: Wall-clock seconds since the epoch, for timestamps.
now: Final[Callable[[], float]] = time

#: Wait this many seconds (bound at import, like the clocks).
sleep: Final[Callable[[float], None]] = _sleep


def isoformat(timestamp: float) -> str:
    """Return ``timestamp`` (seconds since the epoch) as an ISO 8601 UTC string."""
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).isoformat(timespec="milliseconds")
