"""PURE: where a run's wall time went, and how it compares with what it could be. Runs in the controller and in ``merge``.

:func:`analyze_timing` reads a merged report and returns a :class:`TimingAnalysis`;
the summary renders it (:mod:`pytest_parallel_modules.summary`). Every figure is
one a stopwatch can check (#16):

- **Wall** is the report's ``wall_s``: from pytest's session start to the report,
  the clock pytest's own last line (``in 6.84s``) reads (the terminal summary
  passes a copy read again as it prints). With the report's ``timeline`` it
  splits into four parts that add up to it (:class:`WallSplit`): collection (the
  controller's collection and planning), start-up (until the first test started
  on a worker), the schedule span (the first test's start to the last unit's end)
  and the tail (the last unit's end to the report: stopping the workers, saving
  the history and the reports).
- **The tests' own time** is the sum of every test's own duration (setup, call
  and teardown). With several workers it was measured while they ran side by side,
  and says so: it is not what a sequential run takes, so no "speedup" is derived
  from it.
- **The lower bound** ``LB(N) = max(longest unit, sum of units / N)`` takes the
  units' lengths from the timeline, the wall's clock (a report without one has only
  its modules' durations). ``wall / LB`` is never shown below 1: when the
  durations at hand add up to more than the wall, it is clamped and the summary
  says why.
- **Oversubscription**: more workers than CPUs, and modules that kept the CPUs
  they got busy (their CPU seconds, ``cpu_s``, against their length).
"""

from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Final
from typing import final
from typing import Literal
from typing import TYPE_CHECKING

from pytest_parallel_modules.scheduling import lower_bound
from pytest_parallel_modules.timeline import layout_timeline
from pytest_parallel_modules.timeline_data import decode_test_starts
from pytest_parallel_modules.timeline_data import module_tests


if TYPE_CHECKING:
    from pytest_parallel_modules.reports import MergedReport
    from pytest_parallel_modules.timeline import TimelineLayout


#: A split whose units end this much after the report's wall is not one run on one
#: clock (a merge of shards that ran one after another): it is not shown.
SPLIT_TOLERANCE_S: Final = 0.5
#: Modules count as CPU-bound when their CPU seconds reach this share of what the
#: CPUs could give them: ``min(1, CPUs / workers)`` of each second they ran.
CPU_BOUND_SHARE: Final = 0.8

#: What took the largest share of the wall (see :attr:`TimingAnalysis.dominant`).
Dominant = Literal["collection", "start-up", "tail", "uneven scheduling", "longest unit", "tests"]


@final
@dataclass(frozen=True, slots=True)
class WallSplit:
    """The wall time in four consecutive parts, in seconds; they add up to the wall."""

    #: pytest's session start to the end of the controller's collection and planning.
    collection_s: float
    #: Then until the first test started on a worker (workers starting, collecting).
    startup_s: float
    #: The first test's start to the end of the last unit of work.
    schedule_s: float
    #: The last unit's end to the report (stopping workers, saving the history).
    tail_s: float

    @property
    def total_s(self) -> float:
        return self.collection_s + self.startup_s + self.schedule_s + self.tail_s


@final
@dataclass(frozen=True, slots=True)
class TimingAnalysis:
    """Everything the summary says about a run's time. Built by :func:`analyze_timing`."""

    #: From pytest's session start to the report.
    wall_s: float
    #: N: the run's workers.
    workers: int
    #: The wall in four parts; ``None`` without a measured timeline on the wall's clock.
    split: WallSplit | None
    #: Sum of every test's own duration (setup + call + teardown).
    tests_s: float
    #: The tests ran side by side (several workers): their own time was measured under
    #: contention and is no sequential run's time.
    contended: bool
    #: The longest unit of work (a module, or a part of one) and its length.
    longest_s: float
    longest_module: str | None
    #: Sum of the units' lengths (the ``sum`` of ``LB``).
    units_s: float
    #: ``LB(N) = max(longest unit, units_s / N)``.
    lower_bound_s: float
    #: The units' lengths came from the timeline (the wall's clock), not module durations.
    measured: bool
    #: What took the largest share of the wall; ``None`` for an empty run.
    dominant: Dominant | None
    #: Seconds of the wall that :attr:`dominant` took.
    dominant_s: float
    #: CPUs the run could use; ``None`` when unknown (a merge of several reports).
    cpus: int | None
    #: CPU seconds per second of the units that measured them; ``None`` when none did.
    cpu_share: float | None

    @property
    def wall_over_lower(self) -> float | None:
        """``wall / LB`` as measured (may be below 1, see :attr:`clamped`); ``None`` without LB."""
        if self.lower_bound_s <= 0:
            return None
        return self.wall_s / self.lower_bound_s

    @property
    def clamped(self) -> bool:
        """The lower bound came out above the wall: durations that overlap in contention."""
        ratio = self.wall_over_lower
        return ratio is not None and ratio < 1.0

    @property
    def shown_wall_over_lower(self) -> float | None:
        """``wall / LB`` as the summary shows it: never below 1."""
        ratio = self.wall_over_lower
        return None if ratio is None else max(1.0, ratio)

    @property
    def cpu_bound(self) -> bool:
        """The units used at least :data:`CPU_BOUND_SHARE` of the CPU time they could get.

        With N workers on C CPUs, a module that would keep a CPU busy gets ``C / N`` of
        one; a module that mostly waits (network, sleep, a subprocess it does not wait
        for) uses far less, whatever N.
        """
        if self.cpu_share is None or self.cpus is None:
            return False
        return self.cpu_share >= CPU_BOUND_SHARE * min(1.0, self.cpus / max(self.workers, 1))

    @property
    def oversubscribed(self) -> bool:
        """More workers than CPUs, running CPU-bound modules: they only took turns."""
        return self.cpus is not None and self.workers > self.cpus and self.cpu_bound


def analyze_timing(report: MergedReport) -> TimingAnalysis:
    """PURE: where ``report``'s wall time went.

    Called by the summary renderers (terminal, Markdown, HTML), for a run's report
    and for ``merge``'s.
    """
    layout = layout_timeline(report)
    wall = report["wall_s"]
    workers = max(report["workers"], 1)
    if layout.measured and layout.bars:
        lengths = [(bar.duration_s, bar.module) for bar in layout.bars]
    else:
        lengths = _module_lengths(report)
    units_s = math.fsum(length for length, _ in lengths)
    longest_s, longest_module = max(
        lengths, key=lambda pair: (pair[0], pair[1]), default=(0.0, None)
    )
    bound = lower_bound([length for length, _ in lengths], workers) if lengths else 0.0
    split = _split(report, layout, wall) if layout.measured else None
    tests_s = math.fsum(
        seconds
        for module in report["modules"]
        for _, subtest, _, seconds in module_tests(module)
        if subtest is None
    )
    timeline = report.get("timeline")
    cpus = timeline.get("cpus") if timeline is not None else None
    dominant, dominant_s = _dominant(split, bound, longest_s, units_s / workers)
    return TimingAnalysis(
        wall_s=wall,
        workers=report["workers"],
        split=split,
        tests_s=tests_s,
        contended=report["workers"] > 1,
        longest_s=longest_s,
        longest_module=longest_module,
        units_s=units_s,
        lower_bound_s=bound,
        measured=layout.measured and bool(layout.bars),
        dominant=dominant,
        dominant_s=dominant_s,
        cpus=cpus,
        cpu_share=_cpu_share(report),
    )


def _module_lengths(report: MergedReport) -> list[tuple[float, str]]:
    """Each module's duration, or each of its parts' when it ran as several."""
    lengths: list[tuple[float, str]] = []
    for module in report["modules"]:
        units = module.get("units")
        if units:
            lengths.extend((unit["duration_s"], module["module"]) for unit in units)
        elif module["worker"] is not None:
            lengths.append((module["duration_s"], module["module"]))
    return lengths


def first_test_start(report: MergedReport) -> float | None:
    """PURE: when the first test started on a worker, in seconds from the run's start.

    A unit's first measured test start, else the unit's own start (it began when its
    worker had collected it, right before its first test).
    """
    timeline = report.get("timeline")
    if timeline is None:
        return None
    starts: list[float] = []
    for unit in timeline["units"]:
        offsets = [
            offset for _, offset in decode_test_starts(unit.get("tests", "")) if offset is not None
        ]
        starts.append(unit["start_s"] + min(offsets) if offsets else unit["start_s"])
    return min(starts, default=None)


def _split(report: MergedReport, layout: TimelineLayout, wall: float) -> WallSplit | None:
    """The wall in four parts, or ``None`` when the timeline does not fit in it."""
    collected = layout.collected_s
    first = first_test_start(report)
    last = layout.last_end_s
    if collected is None or first is None or last is None:
        return None
    if last > wall + SPLIT_TOLERANCE_S or collected > wall + SPLIT_TOLERANCE_S:
        return None
    collection = min(collected, wall)
    startup = min(max(0.0, first - collection), wall - collection)
    schedule = min(max(0.0, last - collection - startup), wall - collection - startup)
    tail = max(0.0, wall - collection - startup - schedule)
    return WallSplit(collection_s=collection, startup_s=startup, schedule_s=schedule, tail_s=tail)


def _dominant(
    split: WallSplit | None, bound: float, longest_s: float, share_s: float
) -> tuple[Dominant | None, float]:
    """The largest of collection, start-up, tail, the bound inside the schedule, and its slack.

    The schedule span is the lower bound plus whatever the schedule lost to uneven
    placement; the bound itself is the longest unit when that is above ``sum / N``
    (no number of workers finishes sooner), else the tests' work spread over N.
    """
    if bound <= 0:
        return None, 0.0
    work: Dominant = "longest unit" if longest_s >= share_s else "tests"
    if split is None:
        return work, bound
    bound_part = min(bound, split.schedule_s)
    parts: list[tuple[float, Dominant]] = [
        (bound_part, work),
        (split.collection_s, "collection"),
        (split.startup_s, "start-up"),
        (split.tail_s, "tail"),
        (split.schedule_s - bound_part, "uneven scheduling"),
    ]
    seconds, name = max(parts, key=lambda part: part[0])
    return name, seconds


def _cpu_share(report: MergedReport) -> float | None:
    """CPU seconds per second the units ran, over the units that measured their CPU time."""
    timeline = report.get("timeline")
    if timeline is None:
        return None
    cpu = 0.0
    length = 0.0
    for unit in timeline["units"]:
        if "cpu_s" in unit:
            cpu += unit["cpu_s"]
            length += unit["end_s"] - unit["start_s"]
    if length <= 0:
        return None
    return cpu / length
