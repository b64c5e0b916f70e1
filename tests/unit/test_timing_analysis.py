"""The timing analysis: the wall in four parts, the tests' own time, the lower bound and
wall / LB, what dominated, and the warning about more workers than CPUs (#16)."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_parallel_modules.reports import build_merged_report
from pytest_parallel_modules.reports import build_module_report
from pytest_parallel_modules.reports import MergedReport
from pytest_parallel_modules.reports import ModuleReport
from pytest_parallel_modules.reports import not_run_record
from pytest_parallel_modules.reports import ResultRecord
from pytest_parallel_modules.summary import oversubscription_warning
from pytest_parallel_modules.summary import timing_lines
from pytest_parallel_modules.timeline_data import TimelineRecord
from pytest_parallel_modules.timeline_data import UnitRecord
from pytest_parallel_modules.timeline_data import WorkerTimes
from pytest_parallel_modules.timing_analysis import analyze_timing
from pytest_parallel_modules.timing_analysis import first_test_start


T0 = 1_800_000_000.0


def result(nodeid: str, duration: float) -> ResultRecord:
    record = not_run_record(nodeid)
    record["outcome"] = "passed"
    record["duration_s"] = duration
    record["when"] = "call"
    return record


def module(name: str, *durations: float, seconds: float = 0.0, worker: str = "w1") -> ModuleReport:
    return build_module_report(
        module=name,
        worker=worker,
        started=T0,
        finished=T0 + seconds,
        results=[result(f"{name}::t{i}", duration) for i, duration in enumerate(durations)],
    )


def unit(name: str, worker: str, start: float, end: float, **extra: Any) -> UnitRecord:
    record = UnitRecord(module=name, worker=worker, start_s=start, end_s=end, outcome="passed")
    record.update(extra)  # type: ignore[typeddict-item]  # tests / cpu_s
    return record


def run(
    modules: list[ModuleReport],
    units: list[UnitRecord] | None,
    *,
    wall: float,
    workers: int = 2,
    collected: float | None = 1.0,
    cpus: int | None = None,
) -> MergedReport:
    report = build_merged_report(
        modules=modules,
        wall_s=wall,
        workers=workers,
        args=[],
        rootdir="/r",
        snapshot=None,
        created=T0,
    )
    if units is not None:
        timeline = TimelineRecord(
            start=T0,
            collected_s=collected,
            end_s=None,
            workers={
                name: WorkerTimes(spawned_s=0.1, ready_s=1.5, exited_s=None)
                for name in sorted({u["worker"] for u in units})
            },
            units=units,
        )
        if cpus is not None:
            timeline["cpus"] = cpus
        report["timeline"] = timeline
    return report


def balanced() -> MergedReport:
    """Collected at 1 s, first test at 2 s, units end at 6 s, report at 7 s: 1 + 1 + 4 + 1."""
    return run(
        [module("a.py", 1.0, 1.0, seconds=4), module("b.py", 3.5, seconds=3.5, worker="w2")],
        [
            # a.py's first test started 0.2 s into its unit; b.py's unit started at 2.0.
            unit("a.py", "w1", 2.0, 6.0, tests="200 1200"),
            unit("b.py", "w2", 2.3, 5.8, tests="-"),
        ],
        wall=7.0,
    )


# --------------------------------------------------------------------------- the split


def test_the_wall_splits_into_collection_start_up_schedule_and_tail() -> None:
    split = analyze_timing(balanced()).split
    assert split is not None
    parts = (split.collection_s, split.startup_s, split.schedule_s, split.tail_s)
    assert parts == pytest.approx((1.0, 1.2, 3.8, 1.0))
    assert split.total_s == pytest.approx(7.0)


def test_the_first_test_start_is_a_units_first_measured_test_else_the_unit() -> None:
    assert first_test_start(balanced()) == pytest.approx(2.2)
    report = balanced()
    assert "timeline" in report
    report["timeline"]["units"][1]["start_s"] = 2.1
    assert first_test_start(report) == pytest.approx(2.1)


@pytest.mark.parametrize(
    ("collected", "last_end", "wall"),
    [
        (1.0, 6.0, 7.0),
        (0.0, 0.0, 0.0),
        (3.0, 3.0, 3.0),  # no tail
        (5.0, 6.0, 5.8),  # the last unit ended a little after the report's clock read
    ],
)
def test_the_four_parts_always_add_up_to_the_wall(
    collected: float, last_end: float, wall: float
) -> None:
    report = run(
        [module("a.py", 0.1)],
        [unit("a.py", "w1", min(collected, last_end), last_end)],
        wall=wall,
        collected=collected,
    )
    split = analyze_timing(report).split
    assert split is not None
    assert split.total_s == pytest.approx(wall)
    assert min(split.collection_s, split.startup_s, split.schedule_s, split.tail_s) >= 0


def test_no_split_without_a_timeline_or_collection_or_when_units_outlast_the_wall() -> None:
    assert analyze_timing(run([module("a.py", 1.0, seconds=1)], None, wall=2.0)).split is None
    no_collection = run([module("a.py", 1.0)], [unit("a.py", "w1", 1, 2)], wall=3, collected=None)
    assert analyze_timing(no_collection).split is None
    # Shards that ran one after another, merged: the wall is the longest shard's.
    later = run([module("a.py", 1.0)], [unit("a.py", "w1", 10, 12)], wall=5)
    assert analyze_timing(later).split is None


# --------------------------------------------------------------------------- the lower bound


def test_the_lower_bound_takes_the_units_lengths_on_the_walls_clock() -> None:
    analysis = analyze_timing(balanced())
    # Units of 4.0 and 3.5 s on 2 workers: max(4.0, 7.5 / 2) = 4.0.
    assert analysis.measured
    assert analysis.lower_bound_s == pytest.approx(4.0)
    assert analysis.longest_s == pytest.approx(4.0)
    assert analysis.longest_module == "a.py"
    assert analysis.shown_wall_over_lower == pytest.approx(7.0 / 4.0)
    assert not analysis.clamped


def test_wall_over_lb_is_never_below_one_under_contention() -> None:
    # Four modules measured at 10 s each while they fought over one CPU: their durations
    # say sum / 2 = 20 s, yet the run took 12 s. No timeline: only those durations.
    modules = [module(f"m{i}.py", 10.0, seconds=10.0, worker=f"w{i % 2 + 1}") for i in range(4)]
    analysis = analyze_timing(run(modules, None, wall=12.0))
    assert analysis.lower_bound_s == pytest.approx(20.0)
    assert analysis.wall_over_lower == pytest.approx(0.6)
    assert analysis.clamped
    assert analysis.shown_wall_over_lower == 1.0
    lines = timing_lines(analysis)
    assert any("wall / LB = 1.00 (clamped:" in line for line in lines)


def test_units_on_the_walls_clock_cannot_beat_the_wall() -> None:
    # The same contended run with its timeline: two lanes, each 2 units back to back.
    modules = [module(f"m{i}.py", 5.0, seconds=10.0, worker=f"w{i % 2 + 1}") for i in range(4)]
    units = [
        unit("m0.py", "w1", 1.0, 6.0),
        unit("m1.py", "w2", 1.0, 6.0),
        unit("m2.py", "w1", 6.0, 11.0),
        unit("m3.py", "w2", 6.0, 11.0),
    ]
    analysis = analyze_timing(run(modules, units, wall=12.0, collected=0.5))
    assert analysis.lower_bound_s == pytest.approx(10.0)
    assert analysis.shown_wall_over_lower == pytest.approx(1.2)
    assert not analysis.clamped


# --------------------------------------------------------------------------- the tests' time


def test_the_tests_own_time_is_their_durations_summed_and_labelled_under_contention() -> None:
    analysis = analyze_timing(balanced())
    assert analysis.tests_s == pytest.approx(5.5)
    assert analysis.contended
    lines = timing_lines(analysis)
    assert lines[0] == "Wall 7.00s: collection 1.00s, start-up 1.20s, schedule 3.80s, tail 1.00s"
    assert lines[1] == "Tests' own time 5.50s (measured under contention) in 7.00s wall, 2 workers"
    assert lines[2] == "Lower bound LB(2) = 4.00s = max(longest unit, sum / 2); wall / LB = 1.75"
    assert not any("speedup" in line.lower() or "sequential" in line.lower() for line in lines)


def test_one_worker_measures_without_contention() -> None:
    report = run([module("a.py", 2.0)], [unit("a.py", "w1", 1.0, 3.0)], wall=3.5, workers=1)
    assert (
        timing_lines(analyze_timing(report))[1] == "Tests' own time 2.00s in 3.50s wall, 1 worker"
    )


# --------------------------------------------------------------------------- what dominated


def test_what_dominated_is_the_largest_part() -> None:
    slow_collection = run(
        [module("a.py", 1.0), module("b.py", 1.0, worker="w2")],
        [unit("a.py", "w1", 2.6, 3.6), unit("b.py", "w2", 2.6, 3.6)],
        wall=3.8,
        collected=2.5,
    )
    analysis = analyze_timing(slow_collection)
    assert analysis.dominant == "collection"
    assert analysis.dominant_s == pytest.approx(2.5)
    assert timing_lines(analysis)[-1] == ("Most of the wall: collection and planning, 2.50s (66%)")


def test_the_longest_module_dominates_when_it_is_the_bound() -> None:
    report = run(
        [module("big.py", 8.0), module("small.py", 1.0, worker="w2")],
        [unit("big.py", "w1", 0.6, 8.6), unit("small.py", "w2", 0.6, 1.6)],
        wall=9.0,
        collected=0.5,
    )
    analysis = analyze_timing(report)
    assert analysis.dominant == "longest unit"
    assert timing_lines(analysis)[-1].startswith(
        "Most of the wall: the longest module, big.py, 8.00s"
    )


def test_start_up_and_tail_can_dominate() -> None:
    startup = run([module("a.py", 1.0)], [unit("a.py", "w1", 4.0, 5.0)], wall=5.2, workers=1)
    assert analyze_timing(startup).dominant == "start-up"
    tail = run([module("a.py", 1.0)], [unit("a.py", "w1", 1.0, 2.0)], wall=6.0, workers=1)
    assert analyze_timing(tail).dominant == "tail"


def test_a_stopped_run_says_nothing_about_what_dominated() -> None:
    lines = timing_lines(analyze_timing(balanced()), stopped=True)
    assert not any(line.startswith("Most of the wall") for line in lines)


# --------------------------------------------------------------------------- oversubscription


def cpu_run(*, workers: int, cpus: int | None, cpu_s: float) -> MergedReport:
    units = [unit(f"m{i}.py", f"w{i % workers + 1}", 1.0, 5.0, cpu_s=cpu_s) for i in range(workers)]
    return run(
        [module(f"m{i}.py", 4.0, worker=f"w{i % workers + 1}") for i in range(workers)],
        units,
        wall=5.5,
        workers=workers,
        cpus=cpus,
    )


@pytest.mark.parametrize(
    ("workers", "cpus", "cpu_s", "warned"),
    [
        # 4 workers on 2 CPUs: a CPU-bound module gets half a CPU, 2 of its 4 s.
        (4, 2, 2.0, True),
        (4, 2, 1.7, True),
        (4, 2, 1.0, False),  # a quarter: the modules waited for something else
        (4, 2, 0.05, False),  # waiting modules (sleep, network): more workers help
        (2, 2, 4.0, False),  # not more workers than CPUs
        (3, 1, 1.2, True),
        (4, None, 2.0, False),  # CPUs unknown (a merge of several reports)
    ],
)
def test_the_oversubscription_warning_needs_more_workers_than_cpus_and_cpu_bound_modules(
    workers: int, cpus: int | None, cpu_s: float, warned: bool
) -> None:
    analysis = analyze_timing(cpu_run(workers=workers, cpus=cpus, cpu_s=cpu_s))
    assert analysis.oversubscribed is warned
    warning = oversubscription_warning(analysis)
    if warned:
        assert warning == (
            f"{workers} workers on {cpus} CPU{'s' if cpus != 1 else ''}: CPU-bound modules "
            f"contended; try --parallel-modules={cpus}"
        )
    else:
        assert warning is None


def test_units_without_cpu_times_say_nothing() -> None:
    analysis = analyze_timing(cpu_run(workers=4, cpus=2, cpu_s=2.0))
    assert analysis.cpu_share == pytest.approx(0.5)
    report = cpu_run(workers=4, cpus=2, cpu_s=2.0)
    assert "timeline" in report
    for record in report["timeline"]["units"]:
        del record["cpu_s"]
    assert analyze_timing(report).cpu_share is None
    assert not analyze_timing(report).oversubscribed


def test_lines_fit_80_columns_for_a_typical_run() -> None:
    lines = timing_lines(analyze_timing(balanced()))
    assert all(len(line) <= 80 for line in lines), lines
