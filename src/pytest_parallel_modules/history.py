"""Duration history: tolerant load, PURE merge, locked atomic save. Runs in the controller.

The history remembers, per test node id and per module, how long it took on a
worker, so the next run can hand out the slowest modules first. It lives in one
JSON file (by default ``.pytest_cache/d/parallel-modules/durations.json``) with
one line per entry, its values in the order the ``columns`` header names them::

    {
      "columns": {
        "modules": ["collect_s", "duration_s", "fixed_s", "last_outcome", "last_seen", ...],
        "tests": ["duration_s", "last_outcome", "last_seen", "last_seen_run", "runs"]
      },
      "modules": {
        "tests/test_x.py": [0.021, 1.304, 0.118, "passed", 1763712000, 12, 9]
      },
      "run_count": 12,
      "tests": {
        "tests/test_x.py::test_y": [0.0412, "passed", 1763712000, 12, 9]
      },
      "version": 2
    }

Keys are sorted and every entry is one line, so a checked-in copy diffs line by
line: a run changes the lines of the tests it ran, nothing else. Rows rather
than an object per entry keep a 100,000-test file at 12 MB instead of 24 and
loading and saving it within 0.3 s (see ``benchmarks/bench_history.py``).
Version 1 files (an object per entry) still load, and are written back as
version 2.

The parts:

* :func:`parse_history` and :func:`merge_history` are pure: text -> data and
  data -> data. :func:`serialize_history` is the pure inverse of the parser.
* :func:`load_history` never raises: a bad file becomes a warning message and is
  moved aside (``<name>.corrupt-<timestamp>``), never deleted.
* :func:`save_history` takes a :class:`filelock.FileLock`, re-reads the file,
  merges and replaces the file atomically, so concurrent runs (two terminals,
  shards on one machine) never lose each other's data. When the file is still
  byte for byte what this run loaded, the history loaded then is reused rather
  than parsed again.

**Smoothing.** Durations are an exponentially weighted moving average (EWMA)
with :data:`SMOOTHING_ALPHA` = 0.3: ``new = old + 0.3 * (measured - old)``; the
first complete measurement is taken as is. Why an EWMA: it needs O(1) state per
entry (one float, so the file does not grow with the number of runs), it
follows real changes -- a test that became 10x slower is 83% of the way there
after 5 runs (``1 - 0.7**5``) -- and it damps one-off outliers such as a cold
disk cache or a loaded CI machine, which move the estimate by only 30% of their
excess. The scheduler only needs a good *ranking* of modules, which this
converges to within a couple of runs.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import field
from functools import partial
import gc
import hashlib
import json
from json.encoder import encode_basestring_ascii
import math
import operator
from operator import itemgetter
import os
from pathlib import Path
import stat
from typing import Any
from typing import cast
from typing import Final
from typing import final
from typing import get_args
from typing import Literal
from typing import NamedTuple
from typing import TypedDict
from typing import TypeVar

import filelock

from pytest_parallel_modules import timing
from pytest_parallel_modules.atomic_files import is_plain_file
from pytest_parallel_modules.atomic_files import move_aside
from pytest_parallel_modules.atomic_files import write_atomic
from pytest_parallel_modules.recent import EMPTY_TAIL
from pytest_parallel_modules.recent import push_recent
from pytest_parallel_modules.recent import RECENT_LETTERS
from pytest_parallel_modules.recent import recent_token


#: Version of the file format written; other versions than this,
#: :data:`ROWS_HISTORY_VERSION` and :data:`LEGACY_HISTORY_VERSION` are treated as a bad file.
HISTORY_VERSION: Final = 3

#: Version 2 stored rows without the recent measurements and the module content; it is
#: read (those fields empty), and written back as :data:`HISTORY_VERSION`.
ROWS_HISTORY_VERSION: Final = 2

#: Version 1 stored an object per entry; it is read, and written back as :data:`HISTORY_VERSION`.
LEGACY_HISTORY_VERSION: Final = 1

#: Decimal text of 0 ... 999: most tests take under a second, and looking their milliseconds
#: up here is 3x faster than formatting them, in the merge's loop over every test.
_MILLISECONDS_TEXT: Final[tuple[str, ...]] = tuple(map(str, range(1000)))

#: Longest ``recent`` field accepted when loading: ten measurements of a test that took
#: days and ran every 50th run are 10 x 12 characters, so this only rejects garbage.
MAX_RECENT_CHARS: Final = 200

#: Longest ``content`` field accepted when loading.
MAX_CONTENT_CHARS: Final = 64

#: Weight of the newest complete measurement in the moving average (see the module docstring).
SMOOTHING_ALPHA: Final = 0.3

#: Entries not seen for this many runs are dropped (deleted tests, renamed modules).
MAX_UNSEEN_RUNS: Final = 50

#: Durations above this many seconds (about 116 days) mark a file as corrupt.
MAX_DURATION_S: Final = 1e7

#: Timestamps above this (year 5138) mark a file as corrupt.
MAX_TIMESTAMP: Final = 1e11

#: Run counters above this mark a file as corrupt (a run per second for 30 years is 1e9).
MAX_COUNT: Final = 10**12

#: Seconds to wait for another process that holds the history lock.
LOCK_TIMEOUT_S: Final = 30.0

#: Where the history lives, relative to the rootdir (pytest's cache directory, ``d/`` for data).
DEFAULT_HISTORY_PATH: Final = Path(".pytest_cache", "d", "parallel-modules", "durations.json")

#: Outcome of one test, as pytest names them in its summary.
Outcome = Literal["passed", "failed", "error", "skipped", "xfailed", "xpassed", "flaky"]

#: Test outcomes a measurement can have: a test that never ran, or was interrupted, was not measured.
_MEASURED_OUTCOMES: Final[frozenset[str]] = frozenset(get_args(Outcome))


def measured_outcome(outcome: str) -> Outcome | None:
    """PURE: ``outcome`` as the history records it; ``None`` for a test that was not measured."""
    return cast("Outcome", outcome) if outcome in _MEASURED_OUTCOMES else None


#: Every :data:`Outcome`, most severe first; a module's outcome is the most severe of its tests'.
OUTCOMES_BY_SEVERITY: Final[tuple[Outcome, ...]] = (
    "error",
    "failed",
    # Failed, then passed on a --module-retries retry.
    "flaky",
    "passed",
    "xpassed",
    "xfailed",
    "skipped",
)

_SEVERITY: Final[dict[str, int]] = {name: rank for rank, name in enumerate(OUTCOMES_BY_SEVERITY)}


# -- what the controller measured in one run -------------------------------------------------


@final
@dataclass(frozen=True, slots=True)
class MeasuredTest:
    """One test as a worker ran it in this run. Built by the controller."""

    #: Seconds of setup + call + teardown.
    duration_s: float
    #: How the test ended.
    outcome: Outcome
    #: False if the test was interrupted, timed out or its worker crashed: then
    #: ``duration_s`` is only a lower bound and never replaces a good figure.
    complete: bool


@final
@dataclass(frozen=True, slots=True)
class MeasuredModule:
    """One module as a worker ran it in this run. Built by the controller."""

    #: Seconds from the start of its collection to the end of its last teardown:
    #: collecting (importing) it + all its tests + its module fixtures.
    total_s: float
    #: Seconds spent collecting (importing) it.
    collect_s: float
    #: False if the module did not run to its end (``-x``, a crash, a timeout, Ctrl-C).
    complete: bool
    #: Short digest of the module file's content (see
    #: :func:`pytest_parallel_modules.timeline_recorder.content_digest`), ``None`` when
    #: unknown. A test whose outcome changes while this stays the same is flaky.
    content_hash: str | None = None


@final
@dataclass(frozen=True, slots=True)
class MeasuredRun:
    """Everything one run measured, keyed by node id and by module path."""

    #: Node id -> measurement.
    tests: Mapping[str, MeasuredTest] = field(default_factory=dict)
    #: Module path (as :func:`~pytest_parallel_modules.grouping.module_of` returns it)
    #: -> measurement.
    modules: Mapping[str, MeasuredModule] = field(default_factory=dict)


# -- what the history file remembers ---------------------------------------------------------


@final
class RecordedTest(NamedTuple):
    """What the history knows about one test node id. Built by the parser and the merge.

    A :class:`~typing.NamedTuple` rather than a frozen dataclass, for speed: a history
    holds one per test, and on Python 3.11 building 100,000 frozen dataclasses takes
    0.15 s against 0.05 s for these tuples -- half the budget for loading a large
    history. Fields are in the order the file's ``columns`` header names them: the
    fields of version 2 in sorted order, then those version 3 added (with defaults,
    which is what a version 2 entry migrates to).
    """

    #: Smoothed seconds of setup + call + teardown. With ``runs == 0`` it is the
    #: longest incomplete measurement: a lower bound, replaced by the first complete one.
    duration_s: float
    #: Outcome the last time the test ran (complete or not), one of :data:`Outcome`.
    last_outcome: str
    #: Whole seconds since the epoch when it last ran.
    last_seen: int
    #: Value of :attr:`History.run_count` in the run that last saw it.
    last_seen_run: int
    #: How many complete measurements the figure is based on.
    runs: int
    #: The last :data:`~pytest_parallel_modules.recent.RECENT_RUNS` measurements, newest first, in the compact form
    #: :func:`~pytest_parallel_modules.recent.decode_recent` reads (``"p412 p398 3F1203 - - - - - - -"``, a word per
    #: slot, ``-`` for an empty one); empty when none is known (a version 1 or 2 file).
    recent: str = ""


@final
class RecordedModule(NamedTuple):
    """What the history knows about one module. Built by the parser and the merge.

    A :class:`~typing.NamedTuple` for the same reason as :class:`RecordedTest`.
    """

    #: Smoothed seconds spent collecting (importing) it.
    collect_s: float
    #: Smoothed seconds of collect + tests + module fixtures (of the tests that were selected).
    duration_s: float
    #: Smoothed seconds that do not belong to any test: ``total - sum(tests)``, floored at 0.
    #: Used to estimate a run of only some of its tests (``-k``, ``--lf``).
    fixed_s: float
    #: Most severe outcome of its tests the last time it ran (see :data:`OUTCOMES_BY_SEVERITY`).
    last_outcome: str
    #: Whole seconds since the epoch when it last ran.
    last_seen: int
    #: Value of :attr:`History.run_count` in the run that last saw it.
    last_seen_run: int
    #: How many complete measurements the figures are based on.
    runs: int
    #: Short digest of the module file's content when it last ran (see
    #: :attr:`MeasuredModule.content_hash`); empty when unknown.
    content: str = ""
    #: The run since which the module has had that content (``last_seen_run`` when it
    #: changed in the run that last saw it, or is unknown).
    content_run: int = 0
    #: The last :data:`~pytest_parallel_modules.recent.RECENT_RUNS` measurements, newest first (see :attr:`RecordedTest.recent`).
    recent: str = ""


@final
@dataclass(frozen=True, slots=True)
class History:
    """The whole duration history. Built by the loader and the merge, in the controller.

    Read by the scheduler (estimates) and by the ``durations`` command.
    """

    #: How many runs have been merged into this history.
    run_count: int = 0
    #: Node id -> record.
    tests: Mapping[str, RecordedTest] = field(default_factory=dict)
    #: Module path -> record.
    modules: Mapping[str, RecordedModule] = field(default_factory=dict)


@final
@dataclass(frozen=True, slots=True)
class LoadedHistory:
    """A history read from disk, and what was wrong with the file, if anything."""

    #: The history (empty when the file was missing or bad).
    history: History
    #: One message naming the file and the problem; the caller turns it into a
    #: :class:`~pytest_parallel_modules.ParallelModulesWarning`. ``None`` when all was well.
    warning: str | None = None
    #: Digest of the bytes ``history`` was parsed from; ``None`` when it was not parsed
    #: from a file. Lets :func:`save_history` skip parsing a file nobody changed since.
    #: Not compared: two loads of the same history are equal whatever file they came from.
    digest: bytes | None = field(default=None, compare=False)


class HistoryFormatError(ValueError):
    """Raised by :func:`parse_history` for any text that is not a valid history."""


#: JSON value of one field of a row.
JsonValue = float | int | str


class HistoryJson(TypedDict):
    """JSON shape of the whole file (version 2)."""

    columns: dict[str, list[str]]
    modules: dict[str, list[JsonValue]]
    run_count: int
    tests: dict[str, list[JsonValue]]
    version: int


# -- parsing (pure) ----------------------------------------------------------------------------


def _is_seconds(value: Any) -> bool:
    # ``type() in`` rather than isinstance: bool is an int subclass and must be rejected.
    # NaN fails both comparisons, inf fails the upper one.
    return type(value) in (int, float) and 0 <= value <= MAX_DURATION_S


def _is_timestamp(value: Any) -> bool:
    return type(value) in (int, float) and 0 <= value <= MAX_TIMESTAMP


def _is_count(value: Any) -> bool:
    return type(value) is int and 0 <= value <= MAX_COUNT


def _is_outcome(value: Any) -> bool:
    return type(value) is str and value in _SEVERITY


_NUMBER_TYPES: Final = frozenset({int, float})
_INT_TYPES: Final = frozenset({int})
_STR_TYPES: Final = frozenset({str})


def _numbers_within(column: Sequence[Any], types: frozenset[type], upper: float) -> bool:
    """Whether every value's type is in ``types`` and it lies in ``[0, upper]``.

    The same answer as ``all(map(_is_seconds, column))`` and friends, computed with
    loops that run in C: 10x faster on a large history.
    """
    if not set(map(type, column)) <= types:
        return False
    if not column:
        return True
    try:
        # min/max are unreliable with NaN in the list; a NaN or inf anywhere makes the sum
        # non-finite. OverflowError: an int too large to become a float.
        if not math.isfinite(sum(column)):
            return False
    except OverflowError:
        return False
    return bool(min(column) >= 0 and max(column) <= upper)


def _outcomes(column: Sequence[Any]) -> bool:
    """Whether every value is a known outcome; like ``all(map(_is_outcome, column))``."""
    return set(map(type, column)) <= _STR_TYPES and set(column) <= _SEVERITY.keys()


@final
@dataclass(frozen=True, slots=True)
class _FieldCheck:
    """How to check one field of every entry of a section, and how to store it."""

    #: Check for the whole column: fast, run on every load.
    column_ok: Callable[[Sequence[Any]], bool]
    #: Check for one value: slow, run to find the culprit once the column failed.
    value_ok: Callable[[Any], bool]
    #: What a good value is, for the message.
    expected: str
    #: The type the record stores; a good column of other types is converted
    #: (JSON may spell a float as ``1``; version 1 stored timestamps as floats).
    stored: type[int] | type[float] | None = None


_SECONDS_CHECK: Final = _FieldCheck(
    lambda column: _numbers_within(column, _NUMBER_TYPES, MAX_DURATION_S),
    _is_seconds,
    f"a number of seconds in [0, {MAX_DURATION_S:g}]",
    float,
)

#: Field name -> its check.
_CHECKS: Final[dict[str, _FieldCheck]] = {
    "collect_s": _SECONDS_CHECK,
    "duration_s": _SECONDS_CHECK,
    "fixed_s": _SECONDS_CHECK,
    "last_outcome": _FieldCheck(
        _outcomes, _is_outcome, "one of " + ", ".join(OUTCOMES_BY_SEVERITY)
    ),
    "last_seen": _FieldCheck(
        lambda column: _numbers_within(column, _NUMBER_TYPES, MAX_TIMESTAMP),
        _is_timestamp,
        "seconds since the epoch",
        int,
    ),
    "last_seen_run": _FieldCheck(
        lambda column: _numbers_within(column, _INT_TYPES, MAX_COUNT),
        _is_count,
        "a run number >= 0",
    ),
    "runs": _FieldCheck(
        lambda column: _numbers_within(column, _INT_TYPES, MAX_COUNT), _is_count, "a count >= 0"
    ),
    "recent": _FieldCheck(
        lambda column: _plain_strings(column, MAX_RECENT_CHARS),
        lambda value: _plain_strings([value], MAX_RECENT_CHARS),
        f"a string of printable ASCII without quotes or backslashes (at most {MAX_RECENT_CHARS})",
    ),
    "content": _FieldCheck(
        lambda column: _plain_strings(column, MAX_CONTENT_CHARS),
        lambda value: _plain_strings([value], MAX_CONTENT_CHARS),
        f"a string of printable ASCII without quotes or backslashes (at most {MAX_CONTENT_CHARS})",
    ),
    "content_run": _FieldCheck(
        lambda column: _numbers_within(column, _INT_TYPES, MAX_COUNT),
        _is_count,
        "a run number >= 0",
    ),
}

_Record = TypeVar("_Record", RecordedTest, RecordedModule)

#: How many leading fields of each record version 1 and 2 files hold (the rest are new).
_OLD_FIELD_COUNT: Final[dict[type[tuple[Any, ...]], int]] = {RecordedTest: 5, RecordedModule: 7}


def _plain_strings(column: Sequence[Any], longest: int) -> bool:
    """Whether every value is a string JSON writes as it is, at most ``longest`` long.

    The serializer writes these fields between quotes without escaping them, so a value
    that would need escaping must never get past the parser. What a value means is
    checked only where it is read (:func:`decode_recent` skips what it cannot read): a
    garbled trend must not cost the durations that order the next run. One check of all
    values joined runs in C: a few milliseconds for 100,000 tests.
    """
    if not set(map(type, column)) <= _STR_TYPES:
        return False
    if not column:
        return True
    if max(map(len, column)) > longest:
        return False
    joined = "".join(column)
    return joined.isascii() and joined.isprintable() and '"' not in joined and "\\" not in joined


def _describe(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _columns_of_objects(
    section: str, keys: list[str], values: list[Any], fields: tuple[str, ...]
) -> list[Sequence[Any]]:
    """Version 1: every entry is an object; return its fields as columns, in ``fields`` order."""
    if values and set(map(type, values)) != {dict}:
        key, bad = next((k, v) for k, v in zip(keys, values, strict=True) if type(v) is not dict)
        raise HistoryFormatError(f"{section}[{key!r}] is {_describe(bad)}, expected an object")
    columns: list[Sequence[Any]] = []
    for name in fields:
        try:
            columns.append(list(map(itemgetter(name), values)))
        except KeyError:
            key = next(k for k, v in zip(keys, values, strict=True) if name not in v)
            raise HistoryFormatError(f"{section}[{key!r}] has no {name!r}") from None
    return columns


def _columns_of_rows(
    section: str, keys: list[str], values: list[Any], fields: tuple[str, ...]
) -> list[Sequence[Any]]:
    """Version 2: every entry is a row; return its values as columns, in ``fields`` order."""
    width = len(fields)
    if values and (set(map(type, values)) != {list} or set(map(len, values)) != {width}):
        key, bad = next(
            (k, v)
            for k, v in zip(keys, values, strict=True)
            if type(v) is not list or len(v) != width
        )
        raise HistoryFormatError(
            f"{section}[{key!r}] is {_describe(bad)}, expected a list of {width} values"
        )
    if not values:
        return [() for _ in fields]
    return list(zip(*values, strict=True))


def _parse_section(
    data: dict[str, Any], section: str, record_type: type[_Record], run_count: int, version: int
) -> dict[str, _Record]:
    """Check one section (``tests`` or ``modules``) column by column and build its records.

    Column-wise checks keep the loops in C (``map``, ``set``, ``sum``, ``min``), which
    keeps a 100,000-test history loading fast; the slow scans that find the culprit for
    the message only run once something is known to be wrong.
    """
    if section not in data:
        raise HistoryFormatError(f"no {section!r} field")
    entries = data[section]
    if type(entries) is not dict:
        raise HistoryFormatError(f"{section!r} is {_describe(entries)}, expected an object")
    keys = list(entries)
    values = list(entries.values())
    fields = record_type._fields
    # Versions 1 and 2 lack the fields version 3 added: they migrate to their defaults.
    stored_fields = (
        fields if version == HISTORY_VERSION else fields[: _OLD_FIELD_COUNT[record_type]]
    )
    columnize = _columns_of_objects if version == LEGACY_HISTORY_VERSION else _columns_of_rows
    columns = columnize(section, keys, values, stored_fields)
    converted = version != HISTORY_VERSION
    for index, (name, column) in enumerate(zip(stored_fields, columns, strict=True)):
        check = _CHECKS[name]
        if not check.column_ok(column):
            key, bad = next(
                (k, v) for k, v in zip(keys, column, strict=True) if not check.value_ok(v)
            )
            raise HistoryFormatError(
                f"{section}[{key!r}].{name} is {_describe(bad)}, expected {check.expected}"
            )
        if name in ("last_seen_run", "content_run") and column and max(column) > run_count:
            key, bad = next((k, v) for k, v in zip(keys, column, strict=True) if v > run_count)
            raise HistoryFormatError(
                f"{section}[{key!r}].{name} is {bad}, after run_count {run_count}"
            )
        stored = check.stored
        if stored is not None and not set(map(type, column)) <= {stored}:
            columns[index] = list(map(stored, column))
            converted = True
    for name in fields[len(stored_fields) :]:
        columns.append([record_type._field_defaults[name]] * len(keys))
    # tuple.__new__ straight from C: NamedTuple's own __new__ and _make are Python functions.
    make = cast(Callable[[Iterable[Any]], _Record], partial(tuple.__new__, record_type))
    # Rows that needed no conversion become records as they are, without a second zip.
    rows = values if not converted else zip(*columns, strict=True)
    return dict(zip(keys, map(make, rows), strict=True))


def parse_history(text: str) -> History:
    """PURE: parse the text of a history file. Runs in the controller and in ``durations``.

    Accepts what :func:`serialize_history` writes, with any whitespace and key
    order, ignoring unknown keys, and version 1 and 2 files; rejects everything else: not
    JSON, the wrong shape, another version, NaN or infinite numbers, negative or
    absurd values (durations above :data:`MAX_DURATION_S`).

    :param text: the file's content.
    :returns: the history it holds.
    :raises HistoryFormatError: with a message saying what is wrong, for any bad text.
    """
    if not text or text.isspace():
        raise HistoryFormatError("the file is empty")
    try:
        data = json.loads(text)
    except RecursionError:
        raise HistoryFormatError("not valid JSON (nested too deeply)") from None
    except ValueError as error:  # JSONDecodeError, and ints longer than sys.get_int_max_str_digits
        raise HistoryFormatError(f"not valid JSON ({error})") from None
    if type(data) is not dict:
        raise HistoryFormatError(f"the top level is {_describe(data)}, expected an object")
    if "version" not in data:
        raise HistoryFormatError("no 'version' field")
    version = data["version"]
    supported = (LEGACY_HISTORY_VERSION, ROWS_HISTORY_VERSION, HISTORY_VERSION)
    if type(version) is not int or version not in supported:
        raise HistoryFormatError(
            f"version {_describe(version)} is not a supported version"
            f" ({', '.join(map(str, supported))})"
        )
    run_count = data.get("run_count")
    if not _is_count(run_count):
        raise HistoryFormatError(f"'run_count' is {_describe(run_count)}, expected a count >= 0")
    assert isinstance(run_count, int)  # for mypy: _is_count checked it
    return History(
        run_count=run_count,
        tests=_parse_section(data, "tests", RecordedTest, run_count, version),
        modules=_parse_section(data, "modules", RecordedModule, run_count, version),
    )


# -- serializing (pure) ------------------------------------------------------------------------

# One template per line. Seconds are written to the microsecond (the merge rounds them so);
# fixed-point formatting is faster than repr's shortest form and lines up in the file. The
# outcome goes between quotes unescaped: it is one of the known outcome names. Formatting
# with % is faster than json.dumps of the rows, and json.dumps with indent (one line per
# entry needs it) runs json's pure-Python encoder. Tests check that json reads back what
# was written. The recent measurements and the content digest go between quotes unescaped
# too: the merge writes only letters, digits and spaces there, and the parser accepts
# nothing else.
# A row is formatted from the record tuple as it is and its key put in front: building a
# new tuple with the key for every row costs a tenth of the serializer's time.
_TEST_ROW: Final = '[%.6f, "%s", %d, %d, %d, "%s"]'
_MODULE_ROW: Final = '[%.6f, %.6f, %.6f, "%s", %d, %d, %d, "%s", %d, "%s"]'
_ENTRY_SEPARATOR: Final = ",\n    "


def _json_object(lines: list[str]) -> str:
    return "{\n    " + _ENTRY_SEPARATOR.join(lines) + "\n  }" if lines else "{}"


def _json_list(names: tuple[str, ...]) -> str:
    return "[" + ", ".join(map(encode_basestring_ascii, names)) + "]"


#: The ``columns`` header: the field names of the rows, for a reader of the file.
_COLUMNS_HEADER: Final = (
    '{\n    "modules": '
    + _json_list(RecordedModule._fields)
    + ',\n    "tests": '
    + _json_list(RecordedTest._fields)
    + "\n  }"
)


def _sorted_entries(entries: Mapping[str, _Record]) -> tuple[list[str], Iterable[_Record]]:
    """The keys of ``entries`` sorted, as JSON string contents, and the records in that order."""
    keys = list(entries)
    # A merged history is in sorted order but for new entries at its end: check before
    # sorting, and skip a lookup per entry when nothing moved.
    if all(map(operator.le, keys, keys[1:])):
        records: Iterable[_Record] = entries.values()
    else:
        keys.sort()
        records = map(entries.__getitem__, keys)
    # Node ids are almost always printable ASCII without quotes or backslashes, which JSON
    # writes as they are: one check of all of them is 2x faster than encoding each.
    joined = "".join(keys)
    if joined.isascii() and joined.isprintable() and '"' not in joined and "\\" not in joined:
        return keys, records
    return [encode_basestring_ascii(key)[1:-1] for key in keys], records


def serialize_history(history: History) -> str:
    """PURE: the text of a history file: sorted keys, one line per entry, a trailing newline.

    :param history: the history to write; its numbers must be finite and its outcomes
        known (the parser and the merge guarantee both). Seconds are written to the
        microsecond, as the merge rounds them.
    :returns: the file's content, ASCII only (``ensure_ascii`` escapes, as json does).
    """
    keys, tests = _sorted_entries(history.tests)
    row = _TEST_ROW.__mod__
    test_lines = [f'"{key}": {row(record)}' for key, record in zip(keys, tests, strict=True)]
    keys, modules = _sorted_entries(history.modules)
    row = _MODULE_ROW.__mod__
    module_lines = [f'"{key}": {row(record)}' for key, record in zip(keys, modules, strict=True)]
    return (
        f'{{\n  "columns": {_COLUMNS_HEADER},'
        f'\n  "modules": {_json_object(module_lines)},'
        f'\n  "run_count": {history.run_count:d},'
        f'\n  "tests": {_json_object(test_lines)},'
        f'\n  "version": {HISTORY_VERSION:d}\n}}\n'
    )


def history_to_json(history: History) -> HistoryJson:
    """PURE: the JSON object :func:`serialize_history` writes, as Python data.

    :param history: the history.
    :returns: a dict ready for :func:`json.dumps`.
    """
    return {
        "columns": {
            "modules": list(RecordedModule._fields),
            "tests": list(RecordedTest._fields),
        },
        "modules": {key: list(record) for key, record in history.modules.items()},
        "run_count": history.run_count,
        "tests": {key: list(record) for key, record in history.tests.items()},
        "version": HISTORY_VERSION,
    }


# -- merging (pure) ----------------------------------------------------------------------------


def _round_duration(seconds: float) -> float:
    # Microseconds: finer digits are noise that would churn every line of the file. An int
    # round and a division (correctly rounded, so repr prints at most 6 decimals) are 5x
    # faster than round(seconds, 6), which matters at 100,000 tests.
    return round(seconds * 1e6) / 1e6


def _clean_content(content_hash: str | None) -> str:
    """The digest as the file stores it: ``""`` for none, or for one the file could not hold.

    Digests come from reports too (``merge --durations``), which anyone may have edited.
    """
    if not content_hash or len(content_hash) > MAX_CONTENT_CHARS:
        return ""
    return content_hash if content_hash.isascii() and content_hash.isalnum() else ""


def _content_run(previous: RecordedModule | None, content: str, run_index: int) -> int:
    """The run since which a module has had ``content``: this one, unless it is known unchanged."""
    if content and previous is not None and previous.content == content:
        return previous.content_run
    return run_index


def _merge_module(
    previous: RecordedModule | None,
    measured: MeasuredModule,
    tests_s: float,
    outcome: str,
    alpha: float,
    seen: int,
    run_index: int,
) -> RecordedModule:
    total, collect = measured.total_s, measured.collect_s
    usable = 0 <= total <= MAX_DURATION_S and 0 <= collect <= MAX_DURATION_S
    complete = usable and measured.complete
    if usable:
        # Fixed cost: what the module costs beyond its tests (import, module fixtures). Floored
        # at 0: the clocks of the parts and of the whole are read at slightly different times.
        fixed = _round_duration(max(total - tests_s, 0.0))
        total, collect = _round_duration(total), _round_duration(collect)
    else:
        total = collect = fixed = 0.0
    content = _clean_content(measured.content_hash)
    content_run = _content_run(previous, content, run_index)
    if previous is None:
        token = recent_token(1, RECENT_LETTERS[outcome].upper(), total) + EMPTY_TAIL
        return RecordedModule(
            collect,
            total,
            fixed,
            outcome,
            seen,
            run_index,
            int(complete),
            content,
            run_index,
            token,
        )
    same = previous.last_seen_run >= content_run
    letter = RECENT_LETTERS[outcome] if same else RECENT_LETTERS[outcome].upper()
    recent = push_recent(
        recent_token(run_index - previous.last_seen_run, letter, total), previous.recent
    )
    if complete and previous.runs:
        return RecordedModule(
            _round_duration(previous.collect_s + alpha * (collect - previous.collect_s)),
            _round_duration(previous.duration_s + alpha * (total - previous.duration_s)),
            _round_duration(previous.fixed_s + alpha * (fixed - previous.fixed_s)),
            outcome,
            seen,
            run_index,
            previous.runs + 1,
            content,
            content_run,
            recent,
        )
    if complete:  # the old figures were lower bounds: replace them
        return RecordedModule(
            collect, total, fixed, outcome, seen, run_index, 1, content, content_run, recent
        )
    if previous.runs == 0:  # still only lower bounds: keep the largest
        return RecordedModule(
            max(previous.collect_s, collect),
            max(previous.duration_s, total),
            max(previous.fixed_s, fixed),
            outcome,
            seen,
            run_index,
            0,
            content,
            content_run,
            recent,
        )
    return previous._replace(
        last_outcome=outcome,
        last_seen=seen,
        last_seen_run=run_index,
        content=content,
        content_run=content_run,
        recent=recent,
    )


def merge_history(
    old: History,
    run: MeasuredRun,
    *,
    now: float,
    alpha: float = SMOOTHING_ALPHA,
    max_unseen_runs: int = MAX_UNSEEN_RUNS,
) -> History:
    """PURE: fold one run's measurements into a history. Called by :func:`save_history`.

    * A complete measurement updates the smoothed figure (see the module
      docstring); the first one is taken as is.
    * An incomplete one (interrupted, timed out, crashed) never overwrites a
      figure based on complete runs: it only updates the last outcome and when
      the entry was last seen. Without any complete run yet, it is kept as a
      lower bound (``runs == 0``) so a test that always times out still ranks high.
    * Measurements that are NaN, infinite, negative or above
      :data:`MAX_DURATION_S` count as incomplete, so the result always parses.
    * A module's outcome is the most severe of its tests' outcomes in this run.
    * Every measurement, complete or not, goes in front of the entry's ``recent``
      list (the last :data:`~pytest_parallel_modules.recent.RECENT_RUNS`), its letter in lower case when the module's
      content is known to be what it was at the entry's previous measurement.
    * Entries not seen in the last ``max_unseen_runs`` runs are dropped. Runs that
      select only some tests (``-k``) count too: entries age while unselected.

    :param old: the history so far.
    :param run: what this run measured.
    :param now: seconds since the epoch, stored as "last seen".
    :param alpha: weight of the new measurement, in ``(0, 1]``.
    :param max_unseen_runs: drop an entry once it went unseen this many runs (>= 1).
    :returns: the new history, with ``run_count`` one higher.
    :raises ValueError: for an unknown outcome, or ``alpha`` or ``max_unseen_runs`` out of range.
    """
    if not 0 < alpha <= 1:
        raise ValueError(f"alpha must be in (0, 1], got {alpha!r}")
    if max_unseen_runs < 1:
        raise ValueError(f"max_unseen_runs must be >= 1, got {max_unseen_runs!r}")
    run_index = old.run_count + 1
    oldest_kept = run_index - max_unseen_runs + 1
    seen = int(now) if 0 <= now <= MAX_TIMESTAMP else 0

    old_tests = old.tests
    # Field 3 is last_seen_run, read by index for speed. A plain copy is 10x faster than a
    # filtering one, and most runs have nothing to drop.
    tests = dict(old_tests)
    if tests and min(map(itemgetter(3), tests.values())) < oldest_kept:
        tests = {key: record for key, record in old_tests.items() if record[3] >= oldest_kept}
    # Module -> the run since which it has had its present content: a test measured in
    # that run or later saw the same module file as now.
    content_runs = {
        module: _content_run(
            old.modules.get(module), _clean_content(measured.content_hash), run_index
        )
        for module, measured in run.modules.items()
    }
    # Per module: the sum of its tests' durations and the most severe outcome (its index).
    tests_s: dict[str, float] = {}
    worst: dict[str, int] = {}
    least_severe = len(OUTCOMES_BY_SEVERITY)
    # tuple.__new__ straight from C: RecordedTest's own __new__ is a Python function.
    new_tuple = cast(Callable[[type[RecordedTest], tuple[Any, ...]], RecordedTest], tuple.__new__)
    severities, previous_of = _SEVERITY, old_tests.get
    lower, upper = RECENT_LETTERS, {key: letter.upper() for key, letter in RECENT_LETTERS.items()}
    milliseconds_texts, empty_tail = _MILLISECONDS_TEXT, EMPTY_TAIL
    longest = MAX_DURATION_S
    module: str | None = None
    # "<module>::": a test of the current module starts with it, checked without splitting.
    prefix = "\0"
    module_s, module_worst, content_run = 0.0, least_severe, run_index
    # One pass over every measured test: this loop is most of the time of saving a large
    # history, hence inlined rather than split into helpers (rounding as _round_duration,
    # the recent list as _recent_token and _push_recent). A run reports a module's tests
    # one after another, so a module's sums are kept in locals until the next module
    # starts, rather than looked up for every test.
    for nodeid, measured in run.tests.items():
        outcome = measured.outcome
        severity = severities.get(outcome)
        if severity is None:
            raise ValueError(f"unknown outcome {outcome!r} for {nodeid}")
        if not nodeid.startswith(prefix):
            test_module = nodeid.split("::", 1)[0]  # grouping.module_of(), inlined
            if test_module != module:
                if module is not None:
                    tests_s[module] = tests_s.get(module, 0.0) + module_s
                    worst[module] = min(worst.get(module, least_severe), module_worst)
                module, module_s, module_worst = test_module, 0.0, least_severe
                prefix = test_module + "::"
                content_run = content_runs.get(test_module, run_index)
        value = measured.duration_s
        usable = 0 <= value <= longest  # False for NaN and inf too
        if not usable:
            value = 0.0
        measured_value = value
        milliseconds = int(value * 1000 + 0.5)
        milliseconds_text = (
            milliseconds_texts[milliseconds] if milliseconds < 1000 else str(milliseconds)
        )
        previous = previous_of(nodeid)
        if previous is None:
            duration, runs = round(value * 1e6) / 1e6, int(usable and measured.complete)
            recent = upper[outcome] + milliseconds_text + empty_tail
        else:
            old_value, _, _, old_seen_run, old_runs, old_recent = previous
            if usable and measured.complete:
                # runs == 0: the old figure is only a lower bound; replace it, don't average.
                if old_runs:
                    value = old_value + alpha * (value - old_value)
                duration, runs = round(value * 1e6) / 1e6, old_runs + 1
            elif old_runs == 0:
                duration, runs = max(old_value, round(value * 1e6) / 1e6), 0
            else:
                duration, runs = old_value, old_runs
            letter = (lower if old_seen_run >= content_run else upper)[outcome]
            gap = run_index - old_seen_run
            if gap != 1:
                letter = f"{gap}{letter}"
            if old_recent:
                recent = f"{letter}{milliseconds_text} {old_recent.rpartition(' ')[0]}"
            else:  # from a version 1 or 2 file
                recent = letter + milliseconds_text + empty_tail
        tests[nodeid] = new_tuple(RecordedTest, (duration, outcome, seen, run_index, runs, recent))
        module_s += measured_value
        if severity < module_worst:
            module_worst = severity
    if module is not None:
        tests_s[module] = tests_s.get(module, 0.0) + module_s
        worst[module] = min(worst.get(module, least_severe), module_worst)

    modules = {
        key: record for key, record in old.modules.items() if record.last_seen_run >= oldest_kept
    }
    for module, measured_module in run.modules.items():
        # A module none of whose tests reported: it started but nothing finished (a crash or
        # an import error) unless it completed, in which case nothing was selected to run.
        if module in worst:
            outcome = OUTCOMES_BY_SEVERITY[worst[module]]
        else:
            outcome = "skipped" if measured_module.complete else "error"
        modules[module] = _merge_module(
            old.modules.get(module),
            measured_module,
            tests_s.get(module, 0.0),
            outcome,
            alpha,
            seen,
            run_index,
        )
    return History(run_count=run_index, tests=tests, modules=modules)


# -- the file (I/O) ----------------------------------------------------------------------------


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a large history is built.

    Parsing, merging and serializing allocate one container per test and create no
    cycles; with the collector running, a 100,000-test history takes a third longer,
    spent scanning the same young objects again and again. Only the collector's
    automatic passes pause: reference counting frees memory as usual.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _lock(path: Path, timeout: float) -> filelock.FileLock:
    # One lock file next to the history, shared by load (moving a bad file aside) and save.
    return filelock.FileLock(str(path) + ".lock", timeout=timeout)


def _digest(raw: bytes) -> bytes:
    # Not for security: only to tell whether a file changed. SHA-1 runs in OpenSSL at
    # about 2 GB/s, 6 ms for a 100,000-test history.
    return hashlib.sha1(raw, usedforsecurity=False).digest()


def _read(path: Path, known: LoadedHistory | None = None) -> LoadedHistory | HistoryFormatError:
    """Read and parse ``path``: a history, a format error, or a warning for an unreadable file.

    :param known: a history loaded earlier; if the file still holds the bytes it was
        parsed from, it is returned without parsing again.
    """
    try:
        # stat before reading: reading a FIFO would block the run forever.
        if not stat.S_ISREG(path.stat().st_mode):
            return LoadedHistory(
                History(), f"ignored the duration history {path}: it is not a regular file"
            )
        raw = path.read_bytes()
    except FileNotFoundError:
        return LoadedHistory(History())
    except OSError as error:  # no permission, a loop of links, ...: not ours to move aside
        return LoadedHistory(
            History(), f"cannot read the duration history {path}: {error}; starting from scratch"
        )
    digest = _digest(raw)
    if known is not None and known.digest == digest:
        return LoadedHistory(known.history, digest=digest)
    try:
        with _gc_paused():
            return LoadedHistory(parse_history(raw.decode("utf-8")), digest=digest)
    except UnicodeDecodeError as error:
        return HistoryFormatError(f"not UTF-8 text ({error.reason} at byte {error.start})")
    except HistoryFormatError as error:
        return error


def _read_locked(path: Path, now: float, known: LoadedHistory | None = None) -> LoadedHistory:
    """Read ``path`` and move it aside if it is bad; the caller holds the lock."""
    result = _read(path, known)
    if isinstance(result, LoadedHistory):
        return result
    if not is_plain_file(path):
        return LoadedHistory(History(), f"ignored the duration history {path}: {result}")
    try:
        moved = move_aside(path, now)
    except OSError as error:
        return LoadedHistory(
            History(),
            f"ignored the duration history {path}: {result}; it could not be moved aside ({error})",
        )
    return LoadedHistory(
        History(), f"ignored the duration history {path}: {result}; it was moved to {moved.name}"
    )


def load_history(
    path: str | os.PathLike[str],
    *,
    now: float | None = None,
    lock_timeout: float = LOCK_TIMEOUT_S,
) -> LoadedHistory:
    """Read the history at ``path``; never raises. Runs in the controller before scheduling.

    A missing file is an empty history without a warning. A bad file (empty,
    truncated, not JSON, wrong shape or version, bad numbers) gives an empty
    history and one warning message, and is renamed to
    ``<name>.corrupt-<timestamp>`` so the next run starts clean and the user can
    still look at it. Anything else gives a warning and is left alone: an
    unreadable file, a path that is not a regular file (a directory, a device
    such as ``/dev/null``, a FIFO), and a bad file reached through a link.

    :param path: the history file.
    :param now: seconds since the epoch for the moved-aside file's name; defaults to
        :data:`pytest_parallel_modules.timing.now`.
    :param lock_timeout: seconds to wait for the lock before giving up on moving a bad file aside.
    :returns: the history and a warning message or ``None``.
    """
    path = Path(path)
    # Unlocked first: writers replace the file atomically, so a reader sees the old or the new
    # content, never a mix. The lock is only needed to move a bad file aside.
    result = _read(path)
    if isinstance(result, LoadedHistory):
        return result
    if not is_plain_file(path):
        # Nothing to move aside, so no lock either: a lock file next to a link's target or
        # in /dev is not ours to create.
        return LoadedHistory(History(), f"ignored the duration history {path}: {result}")
    try:
        with _lock(path, lock_timeout):
            # Re-read under the lock: a concurrent save may have replaced the bad file with a
            # good one since, and that one must not be moved aside.
            return _read_locked(path, timing.now() if now is None else now)
    except (filelock.Timeout, OSError) as error:
        return LoadedHistory(
            History(),
            f"ignored the duration history {path}: {result}; it could not be moved aside ({error})",
        )


def save_history(
    path: str | os.PathLike[str],
    run: MeasuredRun,
    *,
    now: float,
    alpha: float = SMOOTHING_ALPHA,
    max_unseen_runs: int = MAX_UNSEEN_RUNS,
    lock_timeout: float = LOCK_TIMEOUT_S,
    create_parents: bool = False,
    loaded: LoadedHistory | None = None,
) -> LoadedHistory:
    """Merge one run into the history file, safely. Runs in the controller after the run.

    Takes ``<path>.lock``, re-reads the file (another process may have saved since
    this run loaded it), merges with :func:`merge_history`, writes a temp file in
    the same directory and :func:`os.replace`\\ s it, so readers never see half a
    file and concurrent savers never lose each other's entries. A bad file found
    on re-reading is moved aside as :func:`load_history` does.

    :param path: the history file.
    :param run: what this run measured.
    :param loaded: what :func:`load_history` returned for ``path`` at the start of the
        run. If the file still holds the same bytes, that history is merged into
        rather than parsed again: the same result, a third of the time for a large file.
    :param now: seconds since the epoch, stored as "last seen".
    :param alpha: see :func:`merge_history`.
    :param max_unseen_runs: see :func:`merge_history`.
    :param lock_timeout: seconds to wait for another process's save.
    :param create_parents: create missing parent directories (``.pytest_cache/d/...``).
    :returns: the history now on disk, and a warning if the old file was bad.
    :raises FileNotFoundError: if the parent directory is missing and ``create_parents`` is false.
    :raises filelock.Timeout: if the lock stayed taken for ``lock_timeout`` seconds.
    :raises OSError: if the file cannot be written, or ``path`` is a link, a directory or a
        device: replacing it would damage what is not ours.
    :raises ValueError: see :func:`merge_history`.
    """
    path = Path(path)
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise OSError(f"cannot save the duration history {path}: it is not a regular file")
    if create_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    elif not path.parent.is_dir():
        raise FileNotFoundError(
            f"cannot save the duration history {path}: directory {path.parent} does not exist"
        )
    with _lock(path, lock_timeout):
        current = _read_locked(path, now, loaded)
        with _gc_paused():
            merged = merge_history(
                current.history, run, now=now, alpha=alpha, max_unseen_runs=max_unseen_runs
            )
            text = serialize_history(merged)
        write_atomic(path, text)
    return LoadedHistory(merged, current.warning)
