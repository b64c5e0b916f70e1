"""PURE trends and flake rates from the duration history. Runs in the controller and the commands.

The history keeps the last :data:`~pytest_parallel_modules.recent.RECENT_RUNS`
measurements of every test and module (duration, outcome, run number, and
whether the module file had the same content as at the measurement before).
From them:

- :func:`module_trend`: a module's duration and outcome over its last runs, with
  the runs where it got much slower marked (:data:`SLOWDOWN_RATIO`,
  :data:`SLOWDOWN_MIN_S`), for the HTML report's sparklines;
- :func:`flake_rate` and :func:`flakiest_tests`: how often a test's outcome
  changed while its module's file did not, for the report's flaky tests and
  ``python -m pytest_parallel_modules durations --flaky``.

**Flake rate.** Over a test's last measurements, newest first, each pair of
consecutive measurements is a *comparison* when the module file had the same
content at both (its SHA-1, taken when the controller collected it: the test's
own code and its module's fixtures did not change, so a change of outcome is the
test's own doing, or its environment's). A comparison is a *change* when one of
the two failed (``failed`` or ``error``) and the other did not, or when the
newer was ``flaky`` (it failed, then passed on a ``--module-retries`` retry,
within one run). The flake rate is changes / comparisons. Skips and expected
failures count as not failing. The module file is a proxy: a change to a
conftest.py or to the code under test is not seen, so a test fixed by a change
elsewhere counts one change (its rate falls as it keeps passing).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
import statistics
from typing import Final
from typing import final
from typing import TYPE_CHECKING

from pytest_parallel_modules.recent import decode_recent
from pytest_parallel_modules.recent import RECENT_LETTERS
from pytest_parallel_modules.recent import RecentMeasurement


if TYPE_CHECKING:
    from pytest_parallel_modules.history import History
    from pytest_parallel_modules.history import RecordedModule
    from pytest_parallel_modules.history import RecordedTest


#: A run is "much slower" when it took more than this times the median of the runs before it ...
SLOWDOWN_RATIO: Final = 1.5
#: ... and at least this many seconds more (a 2 ms module taking 4 ms is noise).
SLOWDOWN_MIN_S: Final = 0.1
#: How many earlier runs a slowdown needs to be judged against.
SLOWDOWN_MIN_HISTORY: Final = 2

#: Outcomes that count as failing for the flake rate.
FAILING_OUTCOMES: Final = frozenset({"failed", "error"})


@final
@dataclass(frozen=True, slots=True)
class TrendPoint:
    """One run of a module, for a sparkline."""

    run: int
    duration_s: float
    outcome: str
    #: It took much longer than the runs before it.
    slower: bool


@final
@dataclass(frozen=True, slots=True)
class Trend:
    """A module's last runs, oldest first."""

    points: tuple[TrendPoint, ...]

    @property
    def slowdowns(self) -> tuple[TrendPoint, ...]:
        return tuple(point for point in self.points if point.slower)


def trend_of(measurements: Sequence[RecentMeasurement]) -> Trend:
    """PURE: the trend of measurements given newest first (as :func:`decode_recent` returns them)."""
    oldest_first = list(reversed(measurements))
    points: list[TrendPoint] = []
    for index, measurement in enumerate(oldest_first):
        before = [earlier.duration_s for earlier in oldest_first[:index]]
        slower = False
        if len(before) >= SLOWDOWN_MIN_HISTORY:
            typical = statistics.median(before)
            slower = (
                measurement.duration_s > SLOWDOWN_RATIO * typical
                and measurement.duration_s - typical >= SLOWDOWN_MIN_S
            )
        points.append(
            TrendPoint(measurement.run, measurement.duration_s, measurement.outcome, slower)
        )
    return Trend(tuple(points))


def module_trend(record: RecordedModule) -> Trend:
    """PURE: a module's duration and outcome over the last runs the history has seen."""
    return trend_of(decode_recent(record.recent, record.last_seen_run))


@final
@dataclass(frozen=True, slots=True)
class FlakeRate:
    """How often a test's outcome changed while its module did not."""

    nodeid: str
    changes: int
    comparisons: int
    #: Outcomes of the last measurements, newest first.
    outcomes: tuple[str, ...]

    @property
    def rate(self) -> float:
        return self.changes / self.comparisons if self.comparisons else 0.0


def flake_rate(nodeid: str, record: RecordedTest) -> FlakeRate:
    """PURE: the flake rate of one test (see the module docstring for the definition)."""
    measurements = decode_recent(record.recent, record.last_seen_run)
    changes = comparisons = 0
    for newer, older in pairwise(measurements):
        if not newer.same_content:
            continue
        comparisons += 1
        flipped = (newer.outcome in FAILING_OUTCOMES) != (older.outcome in FAILING_OUTCOMES)
        if flipped or newer.outcome == "flaky":
            changes += 1
    return FlakeRate(
        nodeid, changes, comparisons, tuple(measurement.outcome for measurement in measurements)
    )


#: Letters of failing and flaky outcomes in a ``recent`` field, either case.
_CHANGE_LETTERS: Final = tuple(
    letter
    for outcome in (*FAILING_OUTCOMES, "flaky")
    for letter in (RECENT_LETTERS[outcome], RECENT_LETTERS[outcome].upper())
)


def could_be_flaky(record: RecordedTest) -> bool:
    """PURE: a quick test, in C, that rules out most tests: one that never failed never changed."""
    recent = record.recent
    return any(letter in recent for letter in _CHANGE_LETTERS)


def flakiest_tests(history: History, top: int | None = None) -> tuple[FlakeRate, ...]:
    """PURE: tests whose outcome changed while their module did not, flakiest first.

    Sorted by rate, then by number of changes (both descending), then by node id.

    :param top: keep only this many; ``None`` keeps all.
    """
    rates = [
        rate
        for rate in (
            flake_rate(nodeid, record)
            for nodeid, record in history.tests.items()
            if could_be_flaky(record)
        )
        if rate.changes
    ]
    rates.sort(key=lambda rate: (-rate.rate, -rate.changes, rate.nodeid))
    return tuple(rates if top is None else rates[:top])
