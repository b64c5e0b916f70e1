"""The Chrome trace of a run: the format's required fields, one slice per unit and per test."""

from __future__ import annotations

import json
from typing import Any

from pytest_parallel_modules.reports import MergedReport
from pytest_parallel_modules.reports import ShardInfo
from pytest_parallel_modules.timeline_data import merge_timelines
from pytest_parallel_modules.trace import render_trace
from tests.unit.test_timeline import module
from tests.unit.test_timeline import report
from tests.unit.test_timeline import result
from tests.unit.test_timeline import T0
from tests.unit.test_timeline import timeline
from tests.unit.test_timeline import two_lane_report
from tests.unit.test_timeline import unit


#: Required fields of each event phase used, per the Trace Event Format document.
REQUIRED: dict[str, dict[str, type | tuple[type, ...]]] = {
    "X": {"name": str, "ph": str, "ts": int, "dur": int, "pid": int, "tid": int},
    "M": {"name": str, "ph": str, "pid": int, "tid": int, "args": dict},
}


def validate_trace(trace: dict[str, Any]) -> list[dict[str, Any]]:
    """Check the JSON Object Format and every event's required fields; return the events."""
    assert set(trace) >= {"traceEvents"}
    json.dumps(trace, allow_nan=False)  # plain JSON
    events = trace["traceEvents"]
    assert isinstance(events, list)
    for event in events:
        assert event["ph"] in REQUIRED, event
        for field, kind in REQUIRED[event["ph"]].items():
            assert isinstance(event[field], kind), (field, event)
        if event["ph"] == "X":
            assert event["ts"] >= 0 and event["dur"] >= 0, event
        else:
            assert event["name"] in (
                "process_name",
                "process_sort_index",
                "thread_name",
                "thread_sort_index",
            )
    return events


def slices(events: list[dict[str, Any]], category: str) -> list[dict[str, Any]]:
    return [event for event in events if event["ph"] == "X" and event["cat"] == category]


def test_one_slice_per_unit_and_per_test_inside_it() -> None:
    merged = two_lane_report()
    events = validate_trace(render_trace(merged))
    units = slices(events, "unit")
    assert sorted(event["name"] for event in units) == ["a.py", "b.py", "c.py"]
    a = next(event for event in units if event["name"] == "a.py")
    assert (a["ts"], a["dur"], a["args"]["outcome"], a["args"]["tests"]) == (
        2_000_000,
        2_000_000,
        "passed",
        2,
    )
    tests = slices(events, "test")
    assert [(t["name"], t["ts"], t["dur"], t["args"]["nodeid"]) for t in tests] == [
        ("t1", 2_000_000, 100_000, "a.py::t1"),
        ("t2", 3_000_000, 100_000, "a.py::t2"),
    ]
    for test in tests:  # nested in their unit, on its thread
        assert (test["pid"], test["tid"]) == (a["pid"], a["tid"])
        assert a["ts"] <= test["ts"] and test["ts"] + test["dur"] <= a["ts"] + a["dur"]


def test_processes_and_threads_are_named_and_collection_and_start_up_are_slices() -> None:
    events = validate_trace(render_trace(two_lane_report()))
    names = {
        (event["pid"], event["tid"]): event["args"]["name"]
        for event in events
        if event["name"] == "thread_name"
    }
    assert names == {(1, 0): "controller", (1, 1): "w1", (1, 2): "w2"}
    processes = [event for event in events if event["name"] == "process_name"]
    assert [(event["pid"], event["args"]["name"]) for event in processes] == [
        (1, "pytest-parallel-modules")
    ]
    (collect,) = slices(events, "controller")
    assert (collect["name"], collect["ts"], collect["dur"], collect["tid"]) == (
        "collect",
        0,
        500_000,
        0,
    )
    startups = slices(events, "startup")
    assert [(event["tid"], event["ts"], event["dur"]) for event in startups] == [
        (1, 100_000, 1_900_000),
        (2, 200_000, 2_300_000),
    ]


def test_a_merge_of_shards_is_one_process_per_shard() -> None:
    def shard(index: int, start: float, name: str) -> MergedReport:
        merged = report([module(name, [result(name + "::t")])])
        merged["timeline"] = timeline(
            [unit(name, "w1", 1.0, 2.0, tests="0")],
            {"w1": (0.1, 1.0, 2.5)},
            start=start,
        )
        merged["shard"] = ShardInfo(
            index=index, count=2, history_fingerprint="f", selected_modules={}
        )
        return merged

    first, second = shard(1, T0, "a.py"), shard(2, T0 + 1, "b.py")
    merged = report(first["modules"] + second["modules"])
    joined = merge_timelines([first, second])
    assert joined is not None
    merged["timeline"] = joined
    events = validate_trace(render_trace(merged))
    processes = {
        event["pid"]: event["args"]["name"] for event in events if event["name"] == "process_name"
    }
    assert processes == {1: "shard 1", 2: "shard 2"}
    units = {(event["pid"], event["name"], event["ts"]) for event in slices(events, "unit")}
    assert units == {(1, "a.py", 1_000_000), (2, "b.py", 2_000_000)}
    threads = {
        (event["pid"], event["args"]["name"]) for event in events if event["name"] == "thread_name"
    }
    assert threads == {(1, "controller"), (1, "w1"), (2, "w1")}


def test_a_report_without_a_timeline_still_gives_a_trace() -> None:
    from pytest_parallel_modules.reports import build_module_report

    merged = report(
        [
            build_module_report(
                module="a.py",
                worker="w1",
                started=T0,
                finished=T0 + 1,
                results=[result("a.py::t")],
            )
        ]
    )
    events = validate_trace(render_trace(merged))
    assert [event["name"] for event in slices(events, "unit")] == ["a.py"]
    assert slices(events, "test") == []
    assert render_trace(merged)["otherData"]["run_start_epoch_s"] is None
