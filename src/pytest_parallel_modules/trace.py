"""PURE: a run's timeline in the Chrome trace event format. Runs in the controller and in ``merge``.

:func:`render_trace` turns a merged report into the JSON object that
``chrome://tracing``, Perfetto (ui.perfetto.dev) and speedscope open: one
*process* per shard (a plain run is one shard), one *thread* per worker, one
complete event (``"ph": "X"``) per unit of work and, inside it, one per test;
the controller's collection and each worker's start-up are slices too, so the
time before the first unit shows. Metadata events (``"ph": "M"``) name the
processes and threads. Times (``ts``, ``dur``) are microseconds from the run's
start; the run's epoch start is in ``otherData``.

After a ``merge``, lanes named ``s2/w1`` are worker ``w1`` of shard 2 and
``r2/w1`` worker ``w1`` of the second report merged that is not a shard: each
shard and each such report is a process of its own.

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


def _group_and_worker(lane: str) -> tuple[str, str]:
    """``s2/w1`` -> ``("s2", "w1")``; a lane of a single run is in group ``""``."""
    prefix, slash, worker = lane.partition("/")
    if slash and prefix[:1] in ("s", "r") and prefix[1:].isdigit():
        return prefix, worker
    return "", lane


def _process_name(group: str) -> str:
    if not group:
        return "pytest-parallel-modules"
    return f"{'shard' if group[0] == 's' else 'run'} {group[1:]}"


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
    # One process per shard (or merged report), numbered from 1 in the lanes' order.
    groups = list(dict.fromkeys(_group_and_worker(lane.name)[0] for lane in layout.lanes)) or [""]
    pids = {group: number for number, group in enumerate(groups, start=1)}
    for group, pid in pids.items():
        events.append(_metadata("process_name", pid, 0, name=_process_name(group)))
        events.append(_metadata("process_sort_index", pid, 0, sort_index=pid))
    events.append(_metadata("thread_name", 1, CONTROLLER_TID, name="controller"))
    events.append(_metadata("thread_sort_index", 1, CONTROLLER_TID, sort_index=0))
    next_tid: dict[int, int] = {}
    for lane in layout.lanes:
        group, worker = _group_and_worker(lane.name)
        pid = pids[group]
        tid = next_tid.get(pid, 1)
        next_tid[pid] = tid + 1
        threads[lane.name] = (pid, tid)
        events.append(_metadata("thread_name", pid, tid, name=worker))
        events.append(_metadata("thread_sort_index", pid, tid, sort_index=tid))
    if layout.collected_s is not None:
        events.append(
            _complete("collect", "controller", 0.0, layout.collected_s, 1, CONTROLLER_TID)
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
