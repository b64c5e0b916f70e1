"""PURE layout of a run's timeline: lanes, bars, gaps, the critical path and the lower bound. Runs in the controller and in ``merge``.

:func:`layout_timeline` turns a merged report (its ``timeline`` object, or one
made up from its modules' times for reports of older releases) into a
:class:`TimelineLayout`: one :class:`Lane` per worker (``s2/w1`` after a merge of
shards), one :class:`Bar` per unit of work from its start to its end, the idle
:class:`Gap` s of each lane, the phases before the first bar (collection, each
worker's start-up) and the tail after the last, the critical path and the lower
bound. The HTML report and the trace draw from it; nothing here knows about
either. :func:`unit_tests` places the tests of one unit on the same clock.

Times are seconds from the run's start (pytest's session start, where its own clock starts).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
import re
from typing import Final
from typing import final
from typing import TYPE_CHECKING

from pytest_parallel_modules.scheduling import lower_bound as compute_lower_bound
from pytest_parallel_modules.timeline_data import decode_test_starts
from pytest_parallel_modules.timeline_data import module_tests
from pytest_parallel_modules.timeline_data import timeline_of


if TYPE_CHECKING:
    from pytest_parallel_modules.reports import MergedReport
    from pytest_parallel_modules.reports import ModuleReport
    from pytest_parallel_modules.timeline_data import UnitRecord


#: Idle time shorter than this (seconds) is not a gap: the round trip to the controller.
MIN_GAP_S: Final = 0.001


@final
@dataclass(frozen=True, slots=True)
class Bar:
    """One unit of work on its lane."""

    #: Index of its lane in :attr:`TimelineLayout.lanes`.
    lane: int
    module: str
    worker: str
    start_s: float
    end_s: float
    #: A module outcome (``passed``, ``failed``, ``crashed`` ...).
    outcome: str
    #: How many tests it ran; ``None`` when the report does not say (a part of a module).
    tests: int | None
    #: On the critical path: a unit of the lane that finished last.
    critical: bool
    #: Index of the unit in the timeline's ``units``.
    unit: int

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@final
@dataclass(frozen=True, slots=True)
class Gap:
    """Time a lane sat idle between its start-up and the end of the last bar of the run."""

    lane: int
    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@final
@dataclass(frozen=True, slots=True)
class Lane:
    """One worker's row."""

    #: Worker id (``w1``), or ``s<k>/<worker>`` after a merge of shards.
    name: str
    #: When its process was spawned, its session was ready, and it ended; ``None`` if unknown.
    spawned_s: float | None
    ready_s: float | None
    exited_s: float | None
    #: Seconds it spent running units.
    busy_s: float
    #: Seconds it sat idle between being ready and the end of the run's last bar.
    idle_s: float
    #: When its last bar ended (``None``: it ran nothing).
    last_end_s: float | None
    #: The lane that finished last: the one that decided the run's length.
    critical: bool


@final
@dataclass(frozen=True, slots=True)
class TimelineLayout:
    """Everything a drawing of the run needs, in seconds from the run's start."""

    lanes: tuple[Lane, ...]
    #: Sorted by lane, then start.
    bars: tuple[Bar, ...]
    gaps: tuple[Gap, ...]
    #: When the controller had collected (``None`` if unknown).
    collected_s: float | None
    #: The first bar's start and the last bar's end (``None`` without bars).
    first_start_s: float | None
    last_end_s: float | None
    #: When every worker had stopped (the tail runs from ``last_end_s`` to here).
    end_s: float
    #: Where the lower bound puts the end of the run: the first bar's start plus
    #: ``LB(N) = max(longest bar, sum of bars / N)``; ``None`` without bars.
    lower_bound_end_s: float | None
    #: ``LB(N)`` of the bars (of the modules' durations for a report without a timeline).
    lower_bound_s: float
    #: Index of the lane that finished last, ``None`` without bars.
    critical_lane: int | None
    #: Whether the report had a real timeline (else it was made up from module times,
    #: which say nothing about collection, start-up or the tests inside a unit).
    measured: bool

    @property
    def critical_bars(self) -> tuple[Bar, ...]:
        return tuple(bar for bar in self.bars if bar.critical)

    @property
    def longest_critical_bar(self) -> Bar | None:
        """The unit that held the critical lane longest."""
        bars = self.critical_bars
        return max(bars, key=lambda bar: (bar.duration_s, -bar.start_s)) if bars else None


_NUMBER: Final = re.compile(r"(\d+)")


def lane_sort_key(name: str) -> tuple[tuple[int, str], ...]:
    """PURE: ``w2`` before ``w10``, ``s1/w3`` before ``s2/w1``."""
    return tuple(
        (int(part), "") if part.isdigit() else (-1, part) for part in _NUMBER.split(name) if part
    )


def _unit_test_count(unit: UnitRecord, module: ModuleReport | None, parts: int) -> int | None:
    if module is None:
        return None
    if "tests" in unit:
        positions = {position for position, _ in decode_test_starts(unit["tests"])}
        tests = module_tests(module)
        return sum(
            1 for position in positions if position < len(tests) and tests[position][1] is None
        )
    return module["counts"]["tests"] if parts == 1 else None


def layout_timeline(report: MergedReport) -> TimelineLayout:
    """PURE: lay the run of ``report`` out as lanes and bars.

    Called by the HTML report and the trace, for a run's report and for ``merge``'s.

    - One lane per worker the timeline knows, in natural order (``w2`` before ``w10``).
    - One bar per unit of work, from its start to its end; on a lane, a bar never
      starts before the previous one ended (older reports give the time a module was
      handed out, which may be while the worker still ran the one before).
    - A lane's gaps: from when it was ready (else its first bar) to its first bar,
      between its bars, and from its last bar to the end of the run's last bar.
    - The critical lane is the one whose last bar ended last (ties: the first lane);
      its bars are the critical path: what held the run.
    - The lower bound is ``LB(N) = max(longest bar, sum of bars / N)`` from the first
      bar's start, ``N`` the report's workers: no scheduler handing out these units could
      have ended sooner. (A report without a timeline has only its modules' durations.)
    """
    timeline = timeline_of(report)
    modules = {module["module"]: module for module in report["modules"]}
    units = timeline["units"]
    parts: dict[str, int] = {}
    for unit in units:
        parts[unit["module"]] = parts.get(unit["module"], 0) + 1
    names = set(timeline["workers"]) | {unit["worker"] for unit in units}
    ordered_names = sorted(names, key=lane_sort_key)
    lane_of = {name: index for index, name in enumerate(ordered_names)}
    per_lane: list[list[tuple[float, float, int]]] = [[] for _ in ordered_names]
    for index, unit in enumerate(units):
        per_lane[lane_of[unit["worker"]]].append((unit["start_s"], unit["end_s"], index))
    spans: list[tuple[int, float, float, int]] = []
    for lane, items in enumerate(per_lane):
        previous_end = 0.0
        for start, end, index in sorted(items):
            start = max(start, previous_end)
            end = max(end, start)
            spans.append((lane, start, end, index))
            previous_end = end
    last_end = max((end for _, _, end, _ in spans), default=None)
    first_start = min((start for _, start, _, _ in spans), default=None)
    lane_last_end: list[float | None] = [None] * len(ordered_names)
    for lane, _, end, _ in spans:
        current = lane_last_end[lane]
        lane_last_end[lane] = end if current is None else max(current, end)
    critical_lane: int | None = None
    if last_end is not None:
        critical_lane = min(lane for lane, end in enumerate(lane_last_end) if end == last_end)
    bars = tuple(
        Bar(
            lane=lane,
            module=units[index]["module"],
            worker=units[index]["worker"],
            start_s=start,
            end_s=end,
            outcome=units[index]["outcome"],
            tests=_unit_test_count(
                units[index], modules.get(units[index]["module"]), parts[units[index]["module"]]
            ),
            critical=lane == critical_lane,
            unit=index,
        )
        for lane, start, end, index in spans
    )
    gaps: list[Gap] = []
    lanes: list[Lane] = []
    for lane, name in enumerate(ordered_names):
        times = timeline["workers"].get(name)
        lane_bars = [bar for bar in bars if bar.lane == lane]
        ready = times["ready_s"] if times is not None else None
        cursor = ready if ready is not None else (lane_bars[0].start_s if lane_bars else None)
        lane_gaps: list[Gap] = []
        if cursor is not None and last_end is not None:
            for bar in lane_bars:
                if bar.start_s - cursor >= MIN_GAP_S:
                    lane_gaps.append(Gap(lane, cursor, bar.start_s))
                cursor = max(cursor, bar.end_s)
            if last_end - cursor >= MIN_GAP_S:
                lane_gaps.append(Gap(lane, cursor, last_end))
        gaps.extend(lane_gaps)
        lanes.append(
            Lane(
                name=name,
                spawned_s=times["spawned_s"] if times is not None else None,
                ready_s=ready,
                exited_s=times["exited_s"] if times is not None else None,
                busy_s=sum(bar.duration_s for bar in lane_bars),
                idle_s=sum(gap.duration_s for gap in lane_gaps),
                last_end_s=lane_last_end[lane],
                critical=lane == critical_lane,
            )
        )
    ends = [
        value
        for value in (
            timeline["end_s"],
            timeline["collected_s"],
            last_end,
            *(lane.exited_s for lane in lanes),
            *(lane.ready_s for lane in lanes),
        )
        if value is not None
    ]
    measured = "timeline" in report
    lower_bound = report["timing"]["lower_bound_s"]
    if measured and bars:
        # The bars' own lengths, not the modules' duration_s: a module's report counts from
        # when it was handed to its worker, which may be while the worker still ran the
        # one before; a bar starts when the worker began it.
        lower_bound = compute_lower_bound(
            [bar.duration_s for bar in bars], max(report["workers"], 1)
        )
    return TimelineLayout(
        lanes=tuple(lanes),
        bars=bars,
        gaps=tuple(gaps),
        collected_s=timeline["collected_s"],
        first_start_s=first_start,
        last_end_s=last_end,
        end_s=max(ends, default=0.0),
        lower_bound_end_s=None if first_start is None else first_start + lower_bound,
        lower_bound_s=lower_bound,
        critical_lane=critical_lane,
        measured=measured,
    )


@final
@dataclass(frozen=True, slots=True)
class TestSlice:
    """One test of a unit, on the run's clock."""

    __test__ = False  # not a pytest test class, whatever its name

    nodeid: str
    #: ``None`` for a test; the subtest's description for a subtest.
    subtest: str | None
    outcome: str
    start_s: float
    duration_s: float
    #: Whether ``start_s`` was measured (else it follows the test before it).
    measured: bool


def unit_tests(report: MergedReport) -> list[tuple[TestSlice, ...]]:
    """PURE: the tests of every unit of ``report``'s timeline, each where it ran.

    Indexed like the timeline's ``units`` (:attr:`Bar.unit`). A test with no known
    start (an older pytest) is put right after the test before it (the unit's start
    for the first); tests that never ran are left out. A unit's tuple is empty when its
    tests are not known: a report without a timeline, an earlier attempt of a retried
    module, a unit of a module that a later report of a ``merge`` replaced.
    """
    modules = {module["module"]: module for module in report["modules"]}
    tests_of: dict[str, list[tuple[str, str | None, str, float]]] = {}
    slices: list[tuple[TestSlice, ...]] = []
    for unit in timeline_of(report)["units"]:
        module = modules.get(unit["module"])
        if module is None or "tests" not in unit:
            slices.append(())
            continue
        if unit["module"] not in tests_of:
            tests_of[unit["module"]] = module_tests(module)
        slices.append(_slices(tests_of[unit["module"]], unit["tests"], unit["start_s"]))
    return slices


def _slices(
    tests: Sequence[tuple[str, str | None, str, float]], starts: str, start: float
) -> tuple[TestSlice, ...]:
    slices: list[TestSlice] = []
    cursor = start
    for position, offset in decode_test_starts(starts):
        if position >= len(tests):
            break
        nodeid, subtest, outcome, duration = tests[position]
        if outcome in ("not_run", "interrupted") and offset is None:
            continue
        begin = start + offset if offset is not None else cursor
        slices.append(
            TestSlice(
                nodeid=nodeid,
                subtest=subtest,
                outcome=outcome,
                start_s=begin,
                duration_s=duration,
                measured=offset is not None,
            )
        )
        if subtest is None:
            cursor = max(cursor, begin + duration)
    return tuple(slices)
