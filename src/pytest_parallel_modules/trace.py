"""PURE: a run's timeline in the Chrome trace event format. Runs in the controller and in ``merge``.

:func:`render_trace` turns a merged report into the JSON object that
``chrome://tracing``, Perfetto (ui.perfetto.dev) and speedscope open: one
*process* per shard (a plain run is one shard), one *thread* per worker, one
complete event (``"ph": "X"``) per unit of work and, inside it, one per test;
the controller's collection and each worker's start-up are slices too, so the
time before the first unit shows. Metadata events (``"ph": "M"``) name the
processes and threads. Times (``ts``, ``dur``) are microseconds from the run's
start; the run's epoch start is in ``otherData``.

The format: https://docs.google.com/document/d/1CvAClvFfyA5R-PhYUmn5OOQtYMH4h6I0nSsKchNAySU
(the "JSON Object Format" with ``traceEvents``).
"""

from __future__ import annotations

from typing import Any
from typing import Final
from typing import TYPE_CHECKING

from pytest_parallel_modules.timeline import layout_timeline
from pytest_parallel_modules.timeline import unit_tests


if TYPE_CHECKING:
    from pytest_parallel_modules.reports import MergedReport

#: The controller's thread id in the first process (worker threads count from 1).
CONTROLLER_TID: Final = 0


def _microseconds(seconds: float) -> int:
    return max(0, round(seconds * 1_000_000))


def _shard_and_worker(lane: str) -> tuple[int, str]:
    """``s2/w1`` -> ``(2, "w1")``; a lane of an unsharded run is in shard 1."""
    prefix, slash, worker = lane.partition("/")
    if slash and prefix.startswith("s") and prefix[1:].isdigit():
        return int(prefix[1:]), worker
    return 1, lane


def _complete(
    title: str, category: str, start_s: float, end_s: float, pid: int, tid: int, **args: Any
) -> dict[str, Any]:
    start = _microseconds(start_s)
    return {
        "name": title,
        "cat": category,
        "ph": "X",
        "ts": start,
        "dur": max(0, _microseconds(end_s) - start),
        "pid": pid,
        "tid": tid,
        "args": args,
    }


def _metadata(kind: str, pid: int, tid: int, **args: Any) -> dict[str, Any]:
    return {"name": kind, "ph": "M", "ts": 0, "pid": pid, "tid": tid, "args": args}


def render_trace(report: MergedReport) -> dict[str, Any]:
    """PURE: the Chrome trace (JSON Object Format) of ``report``'s run.

    :returns: ``{"traceEvents": [...], "displayTimeUnit": "ms", "otherData": {...}}``,
        ready for :func:`json.dumps`.
    """
    layout = layout_timeline(report)
    tests_of_unit = unit_tests(report)
    events: list[dict[str, Any]] = []
    threads: dict[str, tuple[int, int]] = {}
    shards = sorted({_shard_and_worker(lane.name)[0] for lane in layout.lanes} | {1})
    sharded = any("/" in lane.name for lane in layout.lanes)
    for shard in shards:
        name = f"shard {shard}" if sharded else "pytest-parallel-modules"
        events.append(_metadata("process_name", shard, 0, name=name))
        events.append(_metadata("process_sort_index", shard, 0, sort_index=shard))
    events.append(_metadata("thread_name", shards[0], CONTROLLER_TID, name="controller"))
    events.append(_metadata("thread_sort_index", shards[0], CONTROLLER_TID, sort_index=0))
    next_tid: dict[int, int] = {}
    for lane in layout.lanes:
        shard, worker = _shard_and_worker(lane.name)
        tid = next_tid.get(shard, 1)
        next_tid[shard] = tid + 1
        threads[lane.name] = (shard, tid)
        events.append(_metadata("thread_name", shard, tid, name=worker))
        events.append(_metadata("thread_sort_index", shard, tid, sort_index=tid))
    if layout.collected_s is not None:
        events.append(
            _complete("collect", "controller", 0.0, layout.collected_s, shards[0], CONTROLLER_TID)
        )
    for lane in layout.lanes:
        pid, tid = threads[lane.name]
        if lane.spawned_s is not None and lane.ready_s is not None:
            events.append(_complete("start-up", "startup", lane.spawned_s, lane.ready_s, pid, tid))
    for bar in layout.bars:
        pid, tid = threads[bar.worker]
        events.append(
            _complete(
                bar.module,
                "unit",
                bar.start_s,
                bar.end_s,
                pid,
                tid,
                outcome=bar.outcome,
                tests=bar.tests,
                worker=bar.worker,
                critical=bar.critical,
            )
        )
        for test in tests_of_unit[bar.unit]:
            if test.subtest is not None:
                continue
            # Nested inside the unit's slice, as trace viewers draw children.
            start = min(max(test.start_s, bar.start_s), bar.end_s)
            end = min(max(start + test.duration_s, start), bar.end_s)
            _, _, name = test.nodeid.partition("::")
            events.append(
                _complete(
                    name or test.nodeid,
                    "test",
                    start,
                    end,
                    pid,
                    tid,
                    nodeid=test.nodeid,
                    outcome=test.outcome,
                    start_measured=test.measured,
                )
            )
    timeline = report.get("timeline")
    return {
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {
            "producer": "pytest-parallel-modules",
            "run_start_epoch_s": None if timeline is None else timeline["start"],
            "wall_s": report["wall_s"],
            "lower_bound_s": report["timing"]["lower_bound_s"],
        },
    }
