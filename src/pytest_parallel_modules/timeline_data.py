"""When each part of a run happened: the merged report's optional ``timeline`` object. PURE; runs in the controller and in ``merge``.

The module reports say what ran and how long it took; the timeline says *when*,
on one clock, which is what a picture of the run needs: the controller's
collection, each worker's start-up, each unit of work (a module, the part of one
a worker ran before it crashed, or one attempt of a retried module) and each test
inside it. The controller notes the times
(:class:`~pytest_parallel_modules.timeline_recorder.TimelineRecorder`) and
:func:`build_timeline` turns them into a :class:`TimelineRecord`;
:func:`parse_timeline` reads one back from JSON, :func:`merge_timelines` puts the
timelines of several shards on one clock, and :func:`timeline_of` gives every
report one, made up from its modules' ``started``/``finished`` when it has none
(reports written before it existed).

Every time is an offset in seconds, to the millisecond, from the run's start,
whose epoch time (``time.time()``, the clock of pytest's ``TestReport.start``) is
``start``. The object is optional (``schema_version`` stays 1).

A test's start is stored compactly, because a suite of 62,000 tests must not make
the report much bigger: each unit holds one string, ``tests``, with a word per
test of its module, in the order :func:`module_tests` gives (the module report's
``tests``, then its ``passed`` sorted by name): the test's start in milliseconds
from the unit's start (``"0 12 250"``), ``-`` for a test of the unit with no known
start (it never ran, or pytest older than 8.2 did not say), and ``~k`` for ``k``
tests in a row that other units of the module ran.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from datetime import timezone
import math
import re
from typing import cast
from typing import Final
from typing import final
from typing import TYPE_CHECKING
from typing import TypedDict


if TYPE_CHECKING:
    from pytest_parallel_modules.reports import MergedReport
    from pytest_parallel_modules.reports import ModuleReport


#: Outcomes a unit of work can end with (those of a module).
UNIT_OUTCOMES: Final = ("passed", "failed", "error", "crashed", "timeout", "interrupted", "not_run")

#: What a unit's ``tests`` string may hold: offsets in ms, ``-`` or ``~skip``, one space apart.
_TEST_STARTS: Final = re.compile(r"(?:-|~?[0-9]{1,10})(?: (?:-|~?[0-9]{1,10}))*")

#: What a content digest may look like (hex digits, as the recorder writes them).
_CONTENT: Final = re.compile(r"[0-9a-f]{1,64}")


class WorkerTimes(TypedDict):
    """When one worker process was started, became ready for work, and ended (offsets)."""

    #: The process was spawned (its worktree, if any, was ready); ``None`` if it never was.
    spawned_s: float | None
    #: Its pytest session was ready to run tests; ``None`` if it never was.
    ready_s: float | None
    #: The controller saw it end; ``None`` if unknown.
    exited_s: float | None


class _UnitExtras(TypedDict, total=False):
    #: Start of each of the unit's tests, in ms from ``start_s`` (see the module docstring).
    tests: str
    #: Short digest of the module file's content the run collected.
    content: str
    #: CPU seconds its worker spent on its tests (user + system, the worker process and
    #: the children it waited for); absent when unknown (its worker died).
    cpu_s: float


class UnitRecord(_UnitExtras):
    """One unit of work: a module (or a part, or an attempt, of one) as one worker ran it."""

    module: str
    #: The lane it ran on: a worker id (``"w1"``), ``"s2/w1"`` after a merge of shards.
    worker: str
    start_s: float
    end_s: float
    #: How the unit ended: the module's outcome; ``crashed`` for the part a worker ran
    #: before it died; an earlier attempt's outcome for a retried module.
    outcome: str


class _TimelineExtras(TypedDict, total=False):
    #: CPUs the run's process could use; absent in a merge of several reports (their
    #: machines may differ) and in reports of older releases.
    cpus: int


class TimelineRecord(_TimelineExtras):
    """JSON shape of the merged report's ``timeline`` object."""

    #: Epoch seconds of the run's start: when pytest's session started (the start of
    #: pytest's own clock, which its last line reads; #16).
    start: float
    #: The controller had collected and planned the run; ``None`` if unknown.
    collected_s: float | None
    #: Every worker had stopped; ``None`` if unknown.
    end_s: float | None
    #: Worker (lane) id -> its times.
    workers: dict[str, WorkerTimes]
    #: Every unit of work that started, in the order they started.
    units: list[UnitRecord]


class TimelineFormatError(ValueError):
    """A ``timeline`` object with the wrong shape; the message names the field."""


def _offset(value: float) -> float:
    """An offset as the JSON keeps it: to the millisecond, never negative or non-finite."""
    if not math.isfinite(value) or value < 0:
        return 0.0
    return round(value, 3)


def _optional_offset(value: float | None) -> float | None:
    return None if value is None else _offset(value)


# --------------------------------------------------------------------------- building


@final
@dataclass(frozen=True, slots=True)
class UnitRun:
    """What the controller knows about one unit of work when the run is over.

    Plain data, so whatever keeps the run's books can fill it.
    """

    module: str
    worker: str
    #: Epoch seconds the worker began it.
    began: float
    #: Epoch seconds it finished, crashed or was stopped; ``None`` if it never did.
    finished: float | None
    #: Its worker died while running it.
    crashed: bool
    #: 1 for the first run of the module, 2 for its first retry (``--module-retries``)...
    attempt: int
    #: ``(node id, epoch seconds it began)`` for every test of the unit, in the order
    #: they ended (``None`` when the reports do not say).
    test_starts: Sequence[tuple[str, float | None]] = ()
    #: The ledger's unit id (``tests/test_x.py``, ``tests/test_x.py[2/3]`` for a part a
    #: plan hook made); attempts of one unit share it.
    unit_id: str = ""
    #: The unit's outcome when the module ran as several units (the module report's
    #: ``units``), else ``None``: the module's is the unit's.
    unit_outcome: str | None = None
    #: CPU seconds its worker spent on its tests; ``None`` when unknown.
    cpu_s: float | None = None


@final
@dataclass(frozen=True, slots=True)
class RecordedTimes:
    """When the run and its workers started and ended; epoch seconds. Noted by the controller."""

    start: float
    collected: float | None = None
    end: float | None = None
    spawned: Mapping[str, float] = field(default_factory=dict)
    ready: Mapping[str, float] = field(default_factory=dict)
    exited: Mapping[str, float] = field(default_factory=dict)
    #: Module -> short digest of its file's content.
    contents: Mapping[str, str] = field(default_factory=dict)
    #: CPUs the run's process could use; ``None`` if unknown.
    cpus: int | None = None


def build_timeline(
    times: RecordedTimes, units: Sequence[UnitRun], modules: Sequence[ModuleReport]
) -> TimelineRecord:
    """The ``timeline`` object of a run. PURE; called by the controller for the merged report.

    :param times: when the run and its workers started and ended.
    :param units: every unit of work the run started, in any order.
    :param modules: the run's module reports (for outcomes and for the order of tests).
    """
    start = times.start
    end_s = _optional_offset(None if times.end is None else times.end - start)
    by_module = {report["module"]: report for report in modules}
    chains = _final_chains(units)
    final = {index for chain in chains.values() for index in chain}
    records: list[UnitRecord] = []
    for index, unit in enumerate(units):
        start_s = _offset(unit.began - start)
        finished = unit.finished if unit.finished is not None else times.end
        record = UnitRecord(
            module=unit.module,
            worker=unit.worker,
            start_s=start_s,
            end_s=start_s if finished is None else max(start_s, _offset(finished - start)),
            outcome=_unit_outcome(unit, index in final, by_module.get(unit.module)),
        )
        content = times.contents.get(unit.module)
        if content is not None:
            record["content"] = content
        if unit.cpu_s is not None:
            record["cpu_s"] = _offset(unit.cpu_s)
        records.append(record)
    for module, chain in chains.items():
        report = by_module.get(module)
        if report is not None:
            _place_tests(report, [records[i] for i in chain], [units[i] for i in chain], start)
    workers = sorted(
        set(times.spawned) | set(times.ready) | set(times.exited) | {u.worker for u in units}
    )

    def offset_of(moments: Mapping[str, float], worker: str) -> float | None:
        moment = moments.get(worker)
        return None if moment is None else _offset(moment - start)

    order = sorted(range(len(records)), key=lambda i: (records[i]["start_s"], i))
    timeline = TimelineRecord(
        start=round(start, 6),
        collected_s=_optional_offset(None if times.collected is None else times.collected - start),
        end_s=end_s,
        workers={
            worker: WorkerTimes(
                spawned_s=offset_of(times.spawned, worker),
                ready_s=offset_of(times.ready, worker),
                exited_s=offset_of(times.exited, worker),
            )
            for worker in workers
        },
        units=[records[i] for i in order],
    )
    if times.cpus is not None:
        timeline["cpus"] = times.cpus
    return timeline


def _final_chains(units: Sequence[UnitRun]) -> dict[str, list[int]]:
    """Module -> indexes of the units whose tests its report holds, in the order they ran.

    Those of each of its units' last attempt: with ``--module-retries`` only the last
    attempt is reported; a crashed part and the rest run after it are one attempt.
    """
    last_attempt: dict[str, int] = {}
    for unit in units:
        key = unit.unit_id or unit.module
        last_attempt[key] = max(last_attempt.get(key, 0), unit.attempt)
    chains: dict[str, list[int]] = {}
    for index, unit in enumerate(units):
        if unit.attempt == last_attempt[unit.unit_id or unit.module]:
            chains.setdefault(unit.module, []).append(index)
    for chain in chains.values():
        chain.sort(key=lambda index: (units[index].began, index))
    return chains


def _unit_outcome(unit: UnitRun, final: bool, report: ModuleReport | None) -> str:
    """How one unit ended: ``crashed`` if its worker died, else its attempt's or module's outcome."""
    if unit.crashed:
        return "crashed"
    if report is None:
        return "not_run"
    if final:
        return unit.unit_outcome or report["outcome"]
    # An earlier attempt of a retried module: the report lists every attempt's outcome
    # (of every retried unit, in turn: only a module of one unit reads unambiguously).
    attempts = report.get("attempts") or []
    if "units" not in report and 0 < unit.attempt <= len(attempts):
        return attempts[unit.attempt - 1]["outcome"]
    return "failed"


def module_tests(module: ModuleReport) -> list[tuple[str, str | None, str, float]]:
    """PURE: ``(node id, subtest, outcome, seconds)`` of every test of a module, in timeline order.

    The module report's ``tests`` (every test that did not simply pass, in the order they
    ran), then its ``passed`` (plain passes) sorted by name: an order that survives the
    JSON file, which sorts the keys of ``passed``. The positions of a unit's ``tests``
    string count in this order.
    """
    prefix = module["module"] + "::"
    return [
        *(
            (test["nodeid"], test["subtest"], test["outcome"], test["duration_s"])
            for test in module["tests"]
        ),
        *(
            (prefix + name, None, "passed", seconds)
            for name, seconds in sorted(module.get("passed", {}).items())
        ),
    ]


def _place_tests(
    report: ModuleReport,
    records: Sequence[UnitRecord],
    chain: Sequence[UnitRun],
    run_start: float,
) -> None:
    """Give each unit of a module's last attempt the start offsets of its tests.

    A test belongs to the first unit of the attempt that reported its node id (a subtest
    to its test's unit; a test no unit reported, which never ran, to the last unit);
    a subtest gets its test's start. Tests of other units are skipped with ``~k``.
    """
    first_starts: list[dict[str, float | None]] = []
    for unit in chain:
        starts: dict[str, float | None] = {}
        for nodeid, start in unit.test_starts:
            starts.setdefault(nodeid, start)
        first_starts.append(starts)
    words: list[list[str]] = [[] for _ in records]
    skips = [0] * len(records)
    for nodeid, _, outcome, _ in module_tests(report):
        owner = next(
            (index for index, starts in enumerate(first_starts) if nodeid in starts),
            len(records) - 1,
        )
        for index in range(len(records)):
            if index != owner:
                skips[index] += 1
                continue
            if skips[index]:
                words[index].append(f"~{skips[index]}")
                skips[index] = 0
            start = first_starts[index].get(nodeid)
            if start is None or outcome in ("not_run", "interrupted"):
                words[index].append("-")
            else:
                unit_epoch = run_start + records[index]["start_s"]
                words[index].append(str(max(0, round((start - unit_epoch) * 1000))))
    for record, unit_words in zip(records, words, strict=True):
        if unit_words:
            record["tests"] = " ".join(unit_words)


def decode_test_starts(tests: str) -> list[tuple[int, float | None]]:
    """PURE: ``(position, start)`` of each test a unit's ``tests`` string holds.

    The position counts in :func:`module_tests` order; the start is in seconds from the
    unit's start, ``None`` when it is not known.
    """
    decoded: list[tuple[int, float | None]] = []
    position = 0
    for word in tests.split():
        if word.startswith("~"):
            position += int(word[1:])
            continue
        decoded.append((position, None if word == "-" else int(word) / 1000))
        position += 1
    return decoded


# --------------------------------------------------------------------------- reading


def _number(data: Mapping[str, object], key: str, where: str, *, nullable: bool) -> float | None:
    if key not in data:
        raise TimelineFormatError(f"{where}: missing field {key!r}")
    value = data[key]
    if value is None and nullable:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0:
        raise TimelineFormatError(f"{where}.{key}: expected a non-negative number, got {value!r}")
    if not math.isfinite(value):
        raise TimelineFormatError(f"{where}.{key}: expected a finite number, got {value!r}")
    return float(value)


def _required(data: Mapping[str, object], key: str, where: str) -> float:
    value = _number(data, key, where, nullable=False)
    assert value is not None  # not nullable
    return value


def _object(value: object, where: str) -> Mapping[str, object]:
    if not isinstance(value, dict):
        raise TimelineFormatError(f"{where}: expected an object")
    return cast("Mapping[str, object]", value)


def _string(data: Mapping[str, object], key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise TimelineFormatError(f"{where}.{key}: expected a string, got {value!r}")
    return value


def _parse_unit(value: object, where: str) -> UnitRecord:
    data = _object(value, where)
    outcome = _string(data, "outcome", where)
    if outcome not in UNIT_OUTCOMES:
        raise TimelineFormatError(f"{where}.outcome: expected one of {', '.join(UNIT_OUTCOMES)}")
    unit = UnitRecord(
        module=_string(data, "module", where),
        worker=_string(data, "worker", where),
        start_s=_required(data, "start_s", where),
        end_s=_required(data, "end_s", where),
        outcome=outcome,
    )
    if unit["end_s"] < unit["start_s"]:
        raise TimelineFormatError(f"{where}: ends before it starts")
    if "tests" in data:
        tests = _string(data, "tests", where)
        if not _TEST_STARTS.fullmatch(tests):
            raise TimelineFormatError(f"{where}.tests: expected start offsets in ms, - or ~skip")
        unit["tests"] = tests
    if "content" in data:
        content = _string(data, "content", where)
        if not _CONTENT.fullmatch(content):
            raise TimelineFormatError(f"{where}.content: expected hex digits")
        unit["content"] = content
    if "cpu_s" in data:
        unit["cpu_s"] = _required(data, "cpu_s", where)
    return unit


def parse_timeline(value: object) -> TimelineRecord:
    """PURE: check that decoded JSON ``value`` is a ``timeline`` object; return a clean copy.

    Unknown keys are dropped, as for the rest of the report.

    :raises TimelineFormatError: naming the offending field (``timeline.units[2].end_s: ...``).
    """
    where = "timeline"
    data = _object(value, where)
    workers_value = _object(data.get("workers"), f"{where}.workers")
    workers: dict[str, WorkerTimes] = {}
    for worker, times_value in workers_value.items():
        at = f"{where}.workers[{worker!r}]"
        times = _object(times_value, at)
        workers[worker] = WorkerTimes(
            spawned_s=_number(times, "spawned_s", at, nullable=True),
            ready_s=_number(times, "ready_s", at, nullable=True),
            exited_s=_number(times, "exited_s", at, nullable=True),
        )
    units_value = data.get("units")
    if not isinstance(units_value, list):
        raise TimelineFormatError(f"{where}.units: expected a list")
    timeline = TimelineRecord(
        start=_required(data, "start", where),
        collected_s=_number(data, "collected_s", where, nullable=True),
        end_s=_number(data, "end_s", where, nullable=True),
        workers=workers,
        units=[
            _parse_unit(unit, f"{where}.units[{index}]") for index, unit in enumerate(units_value)
        ],
    )
    if "cpus" in data:
        cpus = data["cpus"]
        if not isinstance(cpus, int) or isinstance(cpus, bool) or cpus < 1:
            raise TimelineFormatError(
                f"{where}.cpus: expected a positive whole number, got {cpus!r}"
            )
        timeline["cpus"] = cpus
    return timeline


# --------------------------------------------------------------------------- any report


def _epoch(iso: str | None) -> float | None:
    if iso is None:
        return None
    moment = datetime.fromisoformat(iso)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def timeline_from_modules(modules: Sequence[ModuleReport]) -> TimelineRecord:
    """PURE: a timeline made up from the modules' ``started``/``finished`` times.

    For reports without a ``timeline`` (written by an older release): one unit per module
    that a worker started, nothing about collection, start-up or the tests inside.
    """
    spans = [
        (module, _epoch(module["started"]), _epoch(module["finished"]))
        for module in modules
        if module["worker"] is not None and module["started"] is not None
    ]
    starts = [begun for _, begun, _ in spans if begun is not None]
    start = min(starts) if starts else 0.0
    units: list[UnitRecord] = []
    for module, begun, finished in spans:
        assert begun is not None  # filtered above
        start_s = _offset(begun - start)
        end = finished if finished is not None else begun + module["duration_s"]
        units.append(
            UnitRecord(
                module=module["module"],
                worker=cast("str", module["worker"]),
                start_s=start_s,
                end_s=max(start_s, _offset(end - start)),
                outcome=module["outcome"],
            )
        )
    units.sort(key=lambda unit: (unit["start_s"], unit["worker"], unit["module"]))
    ends = [unit["end_s"] for unit in units]
    return TimelineRecord(
        start=round(start, 6),
        collected_s=None,
        end_s=max(ends) if ends else None,
        workers={
            worker: WorkerTimes(spawned_s=None, ready_s=None, exited_s=None)
            for worker in sorted({unit["worker"] for unit in units})
        },
        units=units,
    )


def timeline_of(report: MergedReport) -> TimelineRecord:
    """PURE: the report's timeline, or one made up from its modules (:func:`timeline_from_modules`)."""
    timeline = report.get("timeline")
    return timeline if timeline is not None else timeline_from_modules(report["modules"])


def _shifted(value: float | None, by: float) -> float | None:
    return None if value is None else _offset(value + by)


def merge_timelines(reports: Sequence[MergedReport]) -> TimelineRecord | None:
    """PURE: the timelines of several shards' (or runs') reports, on one clock.

    Called by ``merge``. The earliest start becomes the start; a shard's lanes are
    renamed ``s<K>/<worker>`` as :func:`~pytest_parallel_modules.reports.merge_reports`
    renames its modules' workers (``K`` the shard's index), and when several reports
    are merged, another report's lanes ``r<k>/<worker>`` (``k`` its place among
    ``reports``, from 1), so every report's ``w1`` stays apart. A module found in several reports is reported
    from the last one (as :func:`~pytest_parallel_modules.reports.merge_reports`
    does), so the units of the others keep their bars but not their tests'
    starts, which describe a report that is no longer there.

    :returns: ``None`` when no report has a unit of work.
    """
    if not reports:
        return None
    timelines = [timeline_of(report) for report in reports]
    if not any(timeline["units"] for timeline in timelines):
        return None
    start = min(timeline["start"] for timeline in timelines if timeline["units"])
    owner = {
        module["module"]: index
        for index, report in enumerate(reports)
        for module in report["modules"]
    }
    workers: dict[str, WorkerTimes] = {}
    units: list[UnitRecord] = []
    collected: list[float] = []
    ends: list[float] = []
    for index, timeline in enumerate(timelines):
        if not timeline["units"] and not timeline["workers"]:
            continue
        shift = timeline["start"] - start
        shard = reports[index].get("shard")
        if shard is not None:
            prefix = f"s{shard['index']}/"
        else:
            prefix = f"r{index + 1}/" if len(reports) > 1 else ""
        for worker, times in timeline["workers"].items():
            workers[prefix + worker] = WorkerTimes(
                spawned_s=_shifted(times["spawned_s"], shift),
                ready_s=_shifted(times["ready_s"], shift),
                exited_s=_shifted(times["exited_s"], shift),
            )
        for unit in timeline["units"]:
            moved = UnitRecord(
                module=unit["module"],
                worker=prefix + unit["worker"],
                start_s=_offset(unit["start_s"] + shift),
                end_s=_offset(unit["end_s"] + shift),
                outcome=unit["outcome"],
            )
            if "tests" in unit and owner.get(unit["module"]) == index:
                moved["tests"] = unit["tests"]
            if "content" in unit:
                moved["content"] = unit["content"]
            if "cpu_s" in unit:
                moved["cpu_s"] = unit["cpu_s"]
            units.append(moved)
        if timeline["collected_s"] is not None:
            collected.append(timeline["collected_s"] + shift)
        if timeline["end_s"] is not None:
            ends.append(timeline["end_s"] + shift)
    units.sort(key=lambda unit: (unit["start_s"], unit["worker"], unit["module"]))
    merged = TimelineRecord(
        start=round(start, 6),
        # The last shard to finish collecting: before it, some lane was still starting.
        collected_s=_offset(max(collected)) if collected else None,
        end_s=_offset(max(ends)) if ends else None,
        workers=dict(sorted(workers.items())),
        units=units,
    )
    # One report's machine is known; several reports may come from several machines.
    if len(timelines) == 1 and "cpus" in timelines[0]:
        merged["cpus"] = timelines[0]["cpus"]
    return merged
