"""The report's timeline: building it from what the controller noted, reading it back,
merging shards onto one clock, and the pure layout the HTML report and the trace draw."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from pytest_parallel_modules.grouping import group_by_module
from pytest_parallel_modules.grouping import units_of
from pytest_parallel_modules.ledger import LossKind
from pytest_parallel_modules.ledger import RunLedger
from pytest_parallel_modules.reports import build_merged_report
from pytest_parallel_modules.reports import build_module_report
from pytest_parallel_modules.reports import MergedReport
from pytest_parallel_modules.reports import ModuleReport
from pytest_parallel_modules.reports import not_run_record
from pytest_parallel_modules.reports import ResultRecord
from pytest_parallel_modules.reports import ShardInfo
from pytest_parallel_modules.timeline import lane_sort_key
from pytest_parallel_modules.timeline import layout_timeline
from pytest_parallel_modules.timeline import unit_tests
from pytest_parallel_modules.timeline_data import build_timeline
from pytest_parallel_modules.timeline_data import decode_test_starts
from pytest_parallel_modules.timeline_data import merge_timelines
from pytest_parallel_modules.timeline_data import module_tests
from pytest_parallel_modules.timeline_data import parse_timeline
from pytest_parallel_modules.timeline_data import RecordedTimes
from pytest_parallel_modules.timeline_data import timeline_from_modules
from pytest_parallel_modules.timeline_data import TimelineFormatError
from pytest_parallel_modules.timeline_data import TimelineRecord
from pytest_parallel_modules.timeline_data import UnitRecord
from pytest_parallel_modules.timeline_data import UnitRun
from pytest_parallel_modules.timeline_data import WorkerTimes
from pytest_parallel_modules.timeline_recorder import content_digest
from pytest_parallel_modules.timeline_recorder import report_starts
from pytest_parallel_modules.timeline_recorder import TimelineRecorder


T0 = 1_800_000_000.0


def result(nodeid: str, outcome: str = "passed", duration: float = 0.1) -> ResultRecord:
    record = not_run_record(nodeid)
    record["outcome"] = outcome  # type: ignore[typeddict-item]  # any test outcome
    record["duration_s"] = duration
    record["when"] = None if outcome == "not_run" else "call"
    return record


def module(
    name: str, tests: list[ResultRecord], *, worker: str | None = "w1", outcome: str | None = None
) -> ModuleReport:
    return build_module_report(
        module=name,
        worker=worker,
        started=None,
        finished=None,
        results=tests,
        outcome=outcome,  # type: ignore[arg-type]  # a module outcome or None
    )


def report(modules: list[ModuleReport], *, workers: int = 2, wall: float = 10.0) -> MergedReport:
    return build_merged_report(
        modules=modules,
        wall_s=wall,
        workers=workers,
        args=[],
        rootdir="/r",
        snapshot=None,
        created=T0,
    )


def unit(
    name: str, worker: str, start: float, end: float, outcome: str = "passed", **extra: Any
) -> UnitRecord:
    record = UnitRecord(module=name, worker=worker, start_s=start, end_s=end, outcome=outcome)
    record.update(extra)  # type: ignore[typeddict-item]  # tests / content
    return record


def timeline(
    units: list[UnitRecord],
    workers: dict[str, tuple[float | None, float | None, float | None]],
    *,
    collected: float | None = 0.5,
    end: float | None = None,
    start: float = T0,
) -> TimelineRecord:
    return TimelineRecord(
        start=start,
        collected_s=collected,
        end_s=end,
        workers={
            name: WorkerTimes(spawned_s=spawned, ready_s=ready, exited_s=exited)
            for name, (spawned, ready, exited) in workers.items()
        },
        units=units,
    )


# --------------------------------------------------------------------------- layout


def two_lane_report() -> MergedReport:
    """w1 runs a.py then c.py with a gap; w2 runs b.py and ends last; LB 5."""
    merged = report(
        [
            module("a.py", [result("a.py::t1"), result("a.py::t2")]),
            module("b.py", [result("b.py::t", "failed")], worker="w2"),
            module("c.py", [result("c.py::t")]),
        ]
    )
    merged["timing"]["lower_bound_s"] = 5.0
    merged["timeline"] = timeline(
        [
            unit("a.py", "w1", 2.0, 4.0, tests="0 1000"),
            unit("b.py", "w2", 2.5, 9.0, "failed"),
            unit("c.py", "w1", 5.0, 6.0),
        ],
        {"w1": (0.1, 2.0, 9.5), "w2": (0.2, 2.5, 9.6)},
        end=9.8,
    )
    return merged


def test_one_lane_per_worker_and_one_bar_per_unit_from_start_to_end() -> None:
    layout = layout_timeline(two_lane_report())
    assert [lane.name for lane in layout.lanes] == ["w1", "w2"]
    assert [(bar.lane, bar.module, bar.start_s, bar.end_s, bar.outcome) for bar in layout.bars] == [
        (0, "a.py", 2.0, 4.0, "passed"),
        (0, "c.py", 5.0, 6.0, "passed"),
        (1, "b.py", 2.5, 9.0, "failed"),
    ]
    assert [bar.tests for bar in layout.bars] == [2, 1, 1]
    assert (layout.collected_s, layout.first_start_s, layout.last_end_s, layout.end_s) == (
        0.5,
        2.0,
        9.0,
        9.8,
    )
    lane = layout.lanes[0]
    assert (lane.spawned_s, lane.ready_s, lane.exited_s) == (0.1, 2.0, 9.5)
    assert lane.busy_s == pytest.approx(3.0)


def test_gaps_between_bars_and_after_a_lane_finished_early() -> None:
    layout = layout_timeline(two_lane_report())
    # w1: idle between a.py and c.py, then from c.py's end to the run's last bar's end.
    assert [(gap.lane, gap.start_s, gap.end_s) for gap in layout.gaps] == [
        (0, 4.0, 5.0),
        (0, 6.0, 9.0),
    ]
    assert layout.lanes[0].idle_s == pytest.approx(4.0)
    assert layout.lanes[1].idle_s == 0


def test_a_lane_ready_before_its_first_bar_idles_until_it() -> None:
    merged = two_lane_report()
    merged["timeline"]["workers"]["w2"]["ready_s"] = 1.5
    layout = layout_timeline(merged)
    assert (1, 1.5, 2.5) in [(gap.lane, gap.start_s, gap.end_s) for gap in layout.gaps]


def test_the_lane_that_ended_last_is_the_critical_path() -> None:
    layout = layout_timeline(two_lane_report())
    assert layout.critical_lane == 1
    assert [lane.critical for lane in layout.lanes] == [False, True]
    assert [bar.module for bar in layout.critical_bars] == ["b.py"]
    longest = layout.longest_critical_bar
    assert longest is not None
    assert longest.module == "b.py"


def test_the_critical_lane_tie_goes_to_the_first_lane() -> None:
    merged = two_lane_report()
    merged["timeline"]["units"][2]["end_s"] = 9.0
    assert layout_timeline(merged).critical_lane == 0


def test_the_lower_bound_line_is_the_first_start_plus_lb_of_the_bars() -> None:
    layout = layout_timeline(two_lane_report())
    # Bars of 2, 6.5 and 1 s on 2 workers: max(6.5, 9.5 / 2). The report's own figure (5, from
    # module durations that count from when a module was handed out) is not the bars'.
    assert layout.lower_bound_s == 6.5
    assert layout.lower_bound_end_s == 8.5
    merged = two_lane_report()
    merged["workers"] = 1
    assert layout_timeline(merged).lower_bound_s == 9.5


def test_without_a_timeline_the_lower_bound_is_the_reports() -> None:
    merged = two_lane_report()
    del merged["timeline"]
    assert layout_timeline(merged).lower_bound_s == 5.0


def test_bars_on_a_lane_never_overlap() -> None:
    # A report of an older release gives the time a module was handed out, which may
    # be while the worker still ran the module before.
    merged = two_lane_report()
    merged["timeline"]["units"][2]["start_s"] = 3.0
    bars = [bar for bar in layout_timeline(merged).bars if bar.lane == 0]
    assert [(bar.start_s, bar.end_s) for bar in bars] == [(2.0, 4.0), (4.0, 6.0)]


def test_lanes_in_natural_order_and_a_worker_that_ran_nothing_has_an_empty_lane() -> None:
    assert sorted(["w10", "w2", "s2/w1", "s1/w3", "w1"], key=lane_sort_key) == [
        "s1/w3",
        "s2/w1",
        "w1",
        "w2",
        "w10",
    ]
    merged = two_lane_report()
    merged["timeline"]["workers"]["w10"] = WorkerTimes(spawned_s=0.3, ready_s=3.0, exited_s=9.7)
    layout = layout_timeline(merged)
    assert [lane.name for lane in layout.lanes] == ["w1", "w2", "w10"]
    assert layout.lanes[2].last_end_s is None
    assert [(gap.lane, gap.start_s, gap.end_s) for gap in layout.gaps if gap.lane == 2] == [
        (2, 3.0, 9.0)
    ]


def test_a_report_without_a_timeline_is_laid_out_from_its_modules_times() -> None:
    first = build_module_report(
        module="a.py", worker="w1", started=T0 + 1, finished=T0 + 3, results=[result("a.py::t")]
    )
    second = build_module_report(
        module="b.py", worker="w1", started=T0 + 2, finished=T0 + 4, results=[result("b.py::t")]
    )
    never = module("c.py", [result("c.py::t", "not_run")], worker=None, outcome="not_run")
    merged = report([first, second, never])
    layout = layout_timeline(merged)
    assert not layout.measured
    assert [lane.name for lane in layout.lanes] == ["w1"]
    assert [(bar.module, bar.start_s, bar.end_s) for bar in layout.bars] == [
        ("a.py", 0.0, 2.0),
        ("b.py", 2.0, 3.0),
    ]
    assert layout.collected_s is None
    assert unit_tests(merged) == [(), ()]


def test_no_units_no_bars() -> None:
    merged = report([module("c.py", [result("c.py::t", "not_run")], worker=None)])
    layout = layout_timeline(merged)
    assert (layout.bars, layout.lanes, layout.critical_lane, layout.lower_bound_end_s) == (
        (),
        (),
        None,
        None,
    )


def test_unit_tests_place_each_test_where_it_ran() -> None:
    merged = two_lane_report()
    slices = unit_tests(merged)
    assert len(slices) == 3
    assert [(s.nodeid, s.start_s, s.duration_s, s.measured) for s in slices[0]] == [
        ("a.py::t1", 2.0, 0.1, True),
        ("a.py::t2", 3.0, 0.1, True),
    ]
    assert slices[1] == () and slices[2] == ()


def test_a_test_without_a_known_start_follows_the_one_before() -> None:
    merged = two_lane_report()
    merged["timeline"]["units"][0]["tests"] = "100 -"
    (first, second) = unit_tests(merged)[0]
    assert (first.start_s, second.start_s, second.measured) == (2.1, pytest.approx(2.2), False)


# --------------------------------------------------------------------------- building


def test_build_timeline_offsets_everything_from_the_run_start() -> None:
    tests = [result("a.py::t1"), result("a.py::t2"), result("a.py::t3", "not_run")]
    modules = [module("a.py", tests, worker="w1", outcome="interrupted")]
    times = RecordedTimes(
        start=T0,
        collected=T0 + 0.4,
        end=T0 + 9,
        spawned={"w1": T0 + 0.1},
        ready={"w1": T0 + 2},
        exited={"w1": T0 + 8.5},
        contents={"a.py": "abc123"},
    )
    units = [
        UnitRun(
            module="a.py",
            worker="w1",
            began=T0 + 2,
            finished=T0 + 5,
            crashed=False,
            attempt=1,
            test_starts=[("a.py::t1", T0 + 2.01), ("a.py::t1", T0 + 2.5), ("a.py::t2", T0 + 3)],
        )
    ]
    built = build_timeline(times, units, modules)
    assert built == {
        "start": T0,
        "collected_s": 0.4,
        "end_s": 9.0,
        "workers": {"w1": {"spawned_s": 0.1, "ready_s": 2.0, "exited_s": 8.5}},
        "units": [
            {
                "module": "a.py",
                "worker": "w1",
                "start_s": 2.0,
                "end_s": 5.0,
                "outcome": "interrupted",
                "content": "abc123",
                # The module's tests in timeline order: its tests (t3, not run), then its
                # plain passes by name (t1, t2).
                "tests": "- 10 1000",
            }
        ],
    }
    assert parse_timeline(built) == built


def test_a_crashed_part_and_the_rest_of_the_module_share_its_tests() -> None:
    # w1 ran t1 and died in t2; w2 ran t3. In timeline order: t2 (failed), then the plain
    # passes t1 and t3.
    tests = [result("a.py::t1"), result("a.py::t2", "failed"), result("a.py::t3")]
    modules = [module("a.py", tests, outcome="crashed")]
    units = [
        UnitRun(
            "a.py", "w1", T0 + 1, T0 + 2, True, 1, [("a.py::t1", T0 + 1), ("a.py::t2", T0 + 1.5)]
        ),
        UnitRun("a.py", "w2", T0 + 3, T0 + 4, False, 1, [("a.py::t3", T0 + 3.25)]),
    ]
    built = build_timeline(RecordedTimes(start=T0), units, modules)
    first, second = built["units"]
    assert (first["outcome"], first["tests"]) == ("crashed", "500 0")
    assert (second["outcome"], second["tests"]) == ("crashed", "~2 250")
    merged = report(modules)
    merged["timeline"] = built
    assert [[(s.nodeid, s.start_s) for s in unit] for unit in unit_tests(merged)] == [
        [("a.py::t2", 1.5), ("a.py::t1", 1.0)],
        [("a.py::t3", 3.25)],
    ]


def test_an_earlier_attempt_of_a_retried_module_has_its_outcome_and_no_tests() -> None:
    final = module("a.py", [result("a.py::t")])
    final["attempts"] = [
        {"attempt": 1, "worker": "w1", "outcome": "failed", "duration_s": 1.0, "failures": []},
        {"attempt": 2, "worker": "w3", "outcome": "passed", "duration_s": 1.0, "failures": []},
    ]
    units = [
        UnitRun("a.py", "w1", T0 + 1, T0 + 2, False, 1, [("a.py::t", T0 + 1)]),
        UnitRun("a.py", "w3", T0 + 3, T0 + 4, False, 2, [("a.py::t", T0 + 3)]),
    ]
    built = build_timeline(RecordedTimes(start=T0), units, [final])
    first, second = built["units"]
    assert first["outcome"] == "failed" and "tests" not in first
    assert (second["outcome"], second["tests"]) == ("passed", "0")


def test_a_unit_still_running_when_the_run_ended_ends_with_it() -> None:
    modules = [module("a.py", [result("a.py::t", "not_run")], outcome="interrupted")]
    units = [UnitRun("a.py", "w1", T0 + 1, None, False, 1)]
    built = build_timeline(RecordedTimes(start=T0, end=T0 + 3), units, modules)
    assert (built["units"][0]["end_s"], built["units"][0]["tests"]) == (3.0, "-")


def test_units_of_a_module_split_by_a_plan_hook_each_have_their_tests() -> None:
    tests = [result(f"a.py::t{index}") for index in range(4)]
    modules = [module("a.py", tests)]
    modules[0]["units"] = [
        {"id": "a.py[1/2]", "worker": "w1", "started": None, "finished": None,
         "duration_s": 1.0, "outcome": "passed", "tests": 2},
        {"id": "a.py[2/2]", "worker": "w2", "started": None, "finished": None,
         "duration_s": 1.0, "outcome": "passed", "tests": 2},
    ]  # fmt: skip
    units = [
        UnitRun("a.py", "w1", T0 + 1, T0 + 2, False, 1, [("a.py::t0", T0 + 1), ("a.py::t2", T0 + 1.5)], "a.py[1/2]"),
        UnitRun("a.py", "w2", T0 + 1, T0 + 2, False, 1, [("a.py::t1", T0 + 1), ("a.py::t3", T0 + 1.1)], "a.py[2/2]"),
    ]  # fmt: skip
    built = build_timeline(RecordedTimes(start=T0), units, modules)
    assert [unit["tests"] for unit in built["units"]] == ["0 ~1 500", "~1 0 ~1 100"]
    merged = report(modules)
    merged["timeline"] = built
    layout = layout_timeline(merged)
    assert [bar.tests for bar in layout.bars] == [2, 2]


def phases(nodeid: str, start: float) -> list[pytest.TestReport]:
    return [
        pytest.TestReport(
            nodeid=nodeid,
            location=(nodeid, 1, nodeid),
            keywords={},
            outcome="passed",
            longrepr=None,
            when=when,  # type: ignore[arg-type]  # a phase
            duration=0.1,
            start=start + index * 0.1,
            stop=start + index * 0.1 + 0.1,
        )
        for index, when in enumerate(("setup", "call", "teardown"))
    ]


def test_the_recorder_reads_the_ledgers_units_and_notes_times(tmp_path: Any) -> None:
    clock = {"now": T0, "perf": 100.0}
    recorder = TimelineRecorder(now=lambda: clock["now"], perf=lambda: clock["perf"])
    recorder.begin()
    (tmp_path / "a.py").write_bytes(b"def test(): pass\n")
    clock["perf"] = 100.5
    recorder.collected(tmp_path, ["a.py", "missing.py"])
    clock["perf"] = 101.0
    recorder.worker_spawned("w1")
    clock["perf"] = 102.0
    recorder.worker_ready("w1")
    # The run: a.py on w1, its second test's worker crashed; the rest on w2.
    (whole,) = units_of(group_by_module(["a.py::t1", "a.py::t2", "a.py::t3"]))
    ledger = RunLedger((whole,))
    assert ledger.next_unit() == whole
    ledger.assign(whole, "w1", T0 + 2)
    ledger.started("w1", whole.id, now=T0 + 2, perf=102.0, collect_s=0.0)
    for nodeid, start in (("a.py::t1", T0 + 2.1),):
        reports = phases(nodeid, start)
        recorder.test_ended("w1", ledger.current("w1"), reports)
        ledger.test_finished("w1", nodeid, (nodeid, 1, nodeid), reports)
    ledger.test_started("w1", "a.py::t2", ("a.py::t2", 1, "a.py::t2"))
    ledger.worker_lost("w1", LossKind.CRASH, "died", now=T0 + 3)
    rest = ledger.next_unit()
    assert rest is not None
    ledger.assign(rest, "w2", T0 + 4)
    ledger.started("w2", rest.id, now=T0 + 4, perf=104.0, collect_s=0.0)
    reports = phases("a.py::t3", T0 + 4.25)
    recorder.test_ended("w2", ledger.current("w2"), reports)
    ledger.test_finished("w2", "a.py::t3", ("a.py::t3", 1, "a.py::t3"), reports)
    decisions = ledger.unit_finished(
        "w2", rest.id, now=T0 + 5, collect_s=0, run_s=1, completed=True, cpu_s=0.25
    )
    (module_report,) = decisions.finished_modules
    clock["perf"] = 106.0
    recorder.worker_exited("w1")
    recorder.ended()

    assert recorder.content_of("a.py") == content_digest(b"def test(): pass\n")
    assert recorder.content_of("missing.py") is None
    built = recorder.build_for(ledger, [module_report])
    assert built["collected_s"] == 0.5
    assert built["end_s"] == 6.0
    assert built["workers"]["w1"] == {"spawned_s": 1.0, "ready_s": 2.0, "exited_s": 6.0}
    first, second = built["units"]
    assert (first["worker"], first["start_s"], first["end_s"], first["outcome"]) == (
        "w1",
        2.0,
        3.0,
        "crashed",
    )
    assert (second["worker"], second["start_s"], second["end_s"]) == ("w2", 4.0, 5.0)
    # CPU seconds: measured by the worker that finished its unit; none from the one that died.
    assert "cpu_s" not in first and second["cpu_s"] == 0.25
    assert built["cpus"] >= 1
    clock["perf"] = 107.5
    assert recorder.elapsed() == 7.5  # from begin(), pytest's session start
    assert first["content"] == second["content"] == content_digest(b"def test(): pass\n")
    names = [nodeid for nodeid, *_ in module_tests(module_report)]
    starts = {names[position]: offset for position, offset in decode_test_starts(first["tests"])}
    assert starts["a.py::t1"] == 0.1
    assert [names[p] for p, _ in decode_test_starts(second["tests"])] == ["a.py::t3"]
    measured = recorder.with_contents(ledger.measurements())
    assert measured.modules["a.py"].content_hash == content_digest(b"def test(): pass\n")


def test_report_starts_reads_what_reports_say() -> None:
    class Report:
        def __init__(self, nodeid: str, start: object) -> None:
            self.nodeid = nodeid
            self.start = start

    reports = [Report("a", T0), Report("b", 0), Report("c", None), Report("d", True)]
    assert report_starts(reports) == [("a", T0), ("b", None), ("c", None), ("d", None)]
    assert decode_test_starts("0 12 - 250") == [(0, 0.0), (1, 0.012), (2, None), (3, 0.25)]
    assert decode_test_starts("~2 5 ~1 -") == [(2, 0.005), (4, None)]


# --------------------------------------------------------------------------- reading


def valid() -> dict[str, Any]:
    return copy.deepcopy(dict(two_lane_report()["timeline"]))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.pop("start"), "timeline: missing field 'start'"),
        (lambda t: t.update(start=-1), "timeline.start: expected a non-negative number"),
        (lambda t: t.update(end_s=float("inf")), "timeline.end_s: expected a finite number"),
        (lambda t: t.update(workers=[]), "timeline.workers: expected an object"),
        (lambda t: t["workers"]["w1"].pop("ready_s"), "timeline.workers['w1']: missing field"),
        (lambda t: t.update(units={}), "timeline.units: expected a list"),
        (lambda t: t["units"][0].update(outcome="odd"), "timeline.units[0].outcome: expected one"),
        (lambda t: t["units"][0].update(end_s=1.0), "timeline.units[0]: ends before it starts"),
        (lambda t: t["units"][0].update(tests="1,2"), "timeline.units[0].tests: expected"),
        (lambda t: t["units"][0].update(tests="~x 1"), "timeline.units[0].tests: expected"),
        (lambda t: t["units"][1].update(content="<b>"), "timeline.units[1].content: expected hex"),
        (lambda t: t["units"][1].update(module=3), "timeline.units[1].module: expected a string"),
    ],
)
def test_parse_rejects_a_bad_timeline_naming_the_field(change: Any, message: str) -> None:
    data = valid()
    change(data)
    with pytest.raises(TimelineFormatError) as caught:
        parse_timeline(data)
    assert message in str(caught.value)


def test_parse_reads_cpus_and_cpu_seconds_and_rejects_bad_ones() -> None:
    data = valid()
    data["cpus"] = 4
    data["units"][0]["cpu_s"] = 1.5
    parsed = parse_timeline(data)
    assert parsed["cpus"] == 4 and parsed["units"][0]["cpu_s"] == 1.5
    for bad in (0, 2.5, True, "4"):
        data["cpus"] = bad
        with pytest.raises(TimelineFormatError, match=r"timeline\.cpus: expected a positive"):
            parse_timeline(data)
    data["cpus"] = 4
    data["units"][0]["cpu_s"] = -1
    with pytest.raises(TimelineFormatError, match=r"timeline\.units\[0\]\.cpu_s"):
        parse_timeline(data)


def test_merging_keeps_one_reports_cpus_and_drops_several_reports() -> None:
    one = shard(1, T0, [unit("a.py", "w1", 1.0, 2.0, cpu_s=0.5)])
    two = shard(2, T0, [unit("b.py", "w1", 1.0, 3.0)])
    for report_ in (one, two):
        report_["timeline"]["cpus"] = 2
    alone = merge_timelines([one])
    assert alone is not None and alone["cpus"] == 2
    assert alone["units"][0]["cpu_s"] == 0.5
    both = merge_timelines([one, two])
    assert both is not None and "cpus" not in both


def test_parse_drops_unknown_keys() -> None:
    data = valid()
    data["future"] = 1
    data["units"][0]["future"] = 2
    parsed = parse_timeline(data)
    assert "future" not in parsed and "future" not in parsed["units"][0]


# --------------------------------------------------------------------------- merging


def shard(index: int | None, start: float, units: list[UnitRecord]) -> MergedReport:
    """A report of a run (``index`` None) or of shard ``index`` of 2, holding ``units``."""
    merged = report([module(unit["module"], [result(unit["module"] + "::t")]) for unit in units])
    merged["timeline"] = timeline(units, {"w1": (0.1, 1.0, 5.0)}, start=start, end=5.5)
    if index is not None:
        merged["shard"] = ShardInfo(
            index=index, count=2, history_fingerprint="f", selected_modules={}
        )
    return merged


def test_merging_shards_puts_their_lanes_on_one_clock() -> None:
    # Given in any order, each shard's lanes are named after its index.
    one = shard(1, T0 + 10, [unit("a.py", "w1", 1.0, 2.0, tests="0")])
    two = shard(2, T0, [unit("b.py", "w1", 1.0, 3.0, tests="5")])
    merged = merge_timelines([one, two])
    assert merged is not None
    assert merged["start"] == T0
    assert merged["workers"] == {
        "s1/w1": {"spawned_s": 10.1, "ready_s": 11.0, "exited_s": 15.0},
        "s2/w1": {"spawned_s": 0.1, "ready_s": 1.0, "exited_s": 5.0},
    }
    assert [(u["worker"], u["module"], u["start_s"], u["end_s"]) for u in merged["units"]] == [
        ("s2/w1", "b.py", 1.0, 3.0),
        ("s1/w1", "a.py", 11.0, 12.0),
    ]
    assert (merged["collected_s"], merged["end_s"]) == (10.5, 15.5)
    assert merge_timelines([two, one]) == merged
    # One shard alone: named after its index too, as merge names its modules' workers.
    (alone,) = merge_timelines([one])["units"]  # type: ignore[index]  # not None
    assert alone["worker"] == "s1/w1"
    run = shard(None, T0, [unit("a.py", "w1", 1.0, 2.0)])
    assert merge_timelines([run]) == run["timeline"]
    assert merge_timelines([]) is None


def test_a_module_replaced_by_a_later_report_keeps_its_bar_but_not_its_tests() -> None:
    first = shard(None, T0, [unit("a.py", "w1", 1.0, 2.0, tests="0")])
    rerun = shard(None, T0 + 60, [unit("a.py", "w1", 1.0, 2.0, tests="3")])
    merged = merge_timelines([first, rerun])
    assert merged is not None
    old, new = merged["units"]
    # Reports that are not shards: lanes named after their place among the arguments.
    assert (old["worker"], new["worker"]) == ("r1/w1", "r2/w1")
    assert "tests" not in old and new["tests"] == "3"


def test_merging_a_report_without_a_timeline_makes_one_from_its_modules() -> None:
    old = report(
        [
            build_module_report(
                module="c.py",
                worker="w1",
                started=T0 + 1,
                finished=T0 + 2,
                results=[result("c.py::t")],
            )
        ]
    )
    new = shard(None, T0, [unit("a.py", "w1", 1.0, 2.0)])
    merged = merge_timelines([new, old])
    assert merged is not None
    assert [(u["worker"], u["module"], u["start_s"]) for u in merged["units"]] == [
        ("r1/w1", "a.py", 1.0),
        ("r2/w1", "c.py", 1.0),
    ]
    assert timeline_from_modules([])["units"] == []
