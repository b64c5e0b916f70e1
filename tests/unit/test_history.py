"""The duration history: pure merge, parse and serialize; tolerant load; locked atomic save."""

from __future__ import annotations

from collections.abc import Iterator
import contextlib
import json
import math
import os
from pathlib import Path
import re
import subprocess
import sys
import tempfile
import textwrap
import threading
from typing import Any

from hypothesis import example
from hypothesis import given
from hypothesis import HealthCheck
from hypothesis import settings
from hypothesis import strategies as st
import pytest

from pytest_parallel_modules import history as history_module
from pytest_parallel_modules.history import History
from pytest_parallel_modules.history import history_to_json
from pytest_parallel_modules.history import HistoryFormatError
from pytest_parallel_modules.history import load_history
from pytest_parallel_modules.history import MAX_DURATION_S
from pytest_parallel_modules.history import MeasuredModule
from pytest_parallel_modules.history import MeasuredRun
from pytest_parallel_modules.history import MeasuredTest
from pytest_parallel_modules.history import merge_history
from pytest_parallel_modules.history import OUTCOMES_BY_SEVERITY
from pytest_parallel_modules.history import parse_history
from pytest_parallel_modules.history import RecordedModule
from pytest_parallel_modules.history import RecordedTest
from pytest_parallel_modules.history import save_history
from pytest_parallel_modules.history import serialize_history
from pytest_parallel_modules.history import SMOOTHING_ALPHA
from pytest_parallel_modules.recent import RECENT_RUNS


NOW = 1_700_000_000

#: Deterministic and small: the whole file runs in a few seconds.
FUZZ = settings(max_examples=200, derandomize=True, deadline=None)
PROPERTY = settings(max_examples=100, derandomize=True, deadline=None)


def slots(*words: str) -> str:
    """A ``recent`` field holding ``words``, its other slots empty."""
    return " ".join([*words, *["-"] * (RECENT_RUNS - len(words))])


def passed(duration: float, *, complete: bool = True) -> MeasuredTest:
    return MeasuredTest(duration, "passed", complete)


def one_test_run(nodeid: str, measured: MeasuredTest) -> MeasuredRun:
    return MeasuredRun(tests={nodeid: measured})


# -- merge ------------------------------------------------------------------------------------


def test_first_complete_measurement_is_taken_as_is() -> None:
    merged = merge_history(History(), one_test_run("a.py::t", passed(1.25)), now=NOW)
    assert merged.run_count == 1
    assert merged.tests == {"a.py::t": RecordedTest(1.25, "passed", NOW, 1, 1, slots("P1250"))}


def test_later_complete_measurements_are_smoothed_with_the_documented_alpha() -> None:
    history = merge_history(History(), one_test_run("a.py::t", passed(1.0)), now=NOW)
    history = merge_history(history, one_test_run("a.py::t", passed(2.0)), now=NOW + 1)
    record = history.tests["a.py::t"]
    assert record.duration_s == pytest.approx(1.0 + SMOOTHING_ALPHA * (2.0 - 1.0))
    assert (record.runs, record.last_seen, record.last_seen_run) == (2, NOW + 1, 2)


def test_smoothing_follows_a_step_change_within_a_few_runs() -> None:
    history = merge_history(History(), one_test_run("a.py::t", passed(1.0)), now=NOW)
    for _ in range(5):
        history = merge_history(history, one_test_run("a.py::t", passed(10.0)), now=NOW)
    # 1 - 0.7**5 = 83% of the way from 1 to 10.
    assert history.tests["a.py::t"].duration_s == pytest.approx(1 + 9 * (1 - 0.7**5), abs=1e-5)


def test_alpha_is_a_parameter_and_is_validated() -> None:
    history = merge_history(History(), one_test_run("a.py::t", passed(1.0)), now=NOW)
    history = merge_history(history, one_test_run("a.py::t", passed(3.0)), now=NOW, alpha=1.0)
    assert history.tests["a.py::t"].duration_s == 3.0
    for alpha in (0.0, -0.1, 1.5, math.nan):
        with pytest.raises(ValueError, match="alpha"):
            merge_history(History(), MeasuredRun(), now=NOW, alpha=alpha)


def test_an_incomplete_measurement_never_overwrites_a_good_figure() -> None:
    history = merge_history(History(), one_test_run("a.py::t", passed(1.0)), now=NOW)
    crashed = MeasuredTest(60.0, "error", complete=False)
    history = merge_history(history, one_test_run("a.py::t", crashed), now=NOW + 5)
    assert history.tests["a.py::t"] == RecordedTest(
        1.0, "error", NOW + 5, 2, 1, slots("E60000", "P1000")
    )


def test_without_a_complete_run_the_longest_incomplete_one_is_a_lower_bound() -> None:
    timed_out = MeasuredTest(30.0, "failed", complete=False)
    history = merge_history(History(), one_test_run("a.py::t", timed_out), now=NOW)
    assert history.tests["a.py::t"].duration_s == 30.0
    assert history.tests["a.py::t"].runs == 0
    shorter = MeasuredTest(10.0, "failed", complete=False)
    history = merge_history(history, one_test_run("a.py::t", shorter), now=NOW)
    assert history.tests["a.py::t"].duration_s == 30.0
    # The first complete figure replaces the bound instead of being averaged with it.
    history = merge_history(history, one_test_run("a.py::t", passed(2.0)), now=NOW)
    assert (history.tests["a.py::t"].duration_s, history.tests["a.py::t"].runs) == (2.0, 1)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, -1.0, MAX_DURATION_S * 2])
def test_impossible_measurements_count_as_incomplete(bad: float) -> None:
    history = merge_history(History(), one_test_run("a.py::t", passed(1.0)), now=NOW)
    history = merge_history(history, one_test_run("a.py::t", passed(bad)), now=NOW)
    assert (history.tests["a.py::t"].duration_s, history.tests["a.py::t"].runs) == (1.0, 1)
    fresh = merge_history(History(), one_test_run("a.py::t", passed(bad)), now=NOW)
    assert (fresh.tests["a.py::t"].duration_s, fresh.tests["a.py::t"].runs) == (0.0, 0)
    assert parse_history(serialize_history(fresh)) == fresh


def test_durations_are_stored_to_the_microsecond_and_timestamps_to_the_second() -> None:
    run = one_test_run("a.py::t", passed(0.123456789))
    history = merge_history(History(), run, now=NOW + 0.923456)
    assert history.tests["a.py::t"].duration_s == 0.123457
    assert history.tests["a.py::t"].last_seen == NOW
    assert type(history.tests["a.py::t"].last_seen) is int
    smoothed = merge_history(history, one_test_run("a.py::t", passed(0.2)), now=NOW)
    assert smoothed.tests["a.py::t"].duration_s == round(0.123456789 + 0.3 * (0.2 - 0.123457), 6)


def test_an_unknown_outcome_is_rejected() -> None:
    run = one_test_run("a.py::t", MeasuredTest(1.0, "exploded", True))  # type: ignore[arg-type]  # the point of the test
    with pytest.raises(ValueError, match=re.escape("unknown outcome 'exploded' for a.py::t")):
        merge_history(History(), run, now=NOW)


def test_a_module_records_its_total_collect_time_and_fixed_cost() -> None:
    run = MeasuredRun(
        tests={"a.py::x": passed(1.0), "a.py::y": passed(2.0), "b.py::z": passed(5.0)},
        modules={"a.py": MeasuredModule(3.5, 0.25, True), "b.py": MeasuredModule(4.9, 0.1, True)},
    )
    history = merge_history(History(), run, now=NOW)
    assert history.modules["a.py"] == RecordedModule(
        0.25, 3.5, 0.5, "passed", NOW, 1, 1, content="", content_run=1, recent=slots("P3500")
    )
    # Clocks read at slightly different times can make the parts exceed the whole: floor at 0.
    assert history.modules["b.py"].fixed_s == 0.0


def test_module_figures_are_smoothed_and_kept_on_incomplete_runs() -> None:
    def module_run(total: float, complete: bool) -> MeasuredRun:
        return MeasuredRun(
            tests={"a.py::x": passed(1.0, complete=complete)},
            modules={"a.py": MeasuredModule(total, 0.5, complete)},
        )

    history = merge_history(History(), module_run(3.0, True), now=NOW)
    history = merge_history(history, module_run(5.0, True), now=NOW)
    smoothed = history.modules["a.py"]
    assert smoothed.duration_s == pytest.approx(3.0 + SMOOTHING_ALPHA * 2.0)
    assert smoothed.fixed_s == pytest.approx(2.0 + SMOOTHING_ALPHA * 2.0)
    assert smoothed.runs == 2
    history = merge_history(history, module_run(0.7, False), now=NOW + 9)
    assert history.modules["a.py"] == smoothed._replace(
        last_seen=NOW + 9, last_seen_run=3, content_run=3, recent=slots("P700", "P5000", "P3000")
    )


@pytest.mark.parametrize(
    ("outcomes", "module_outcome"),
    [
        (["passed", "skipped", "xfailed"], "passed"),
        (["passed", "failed", "error"], "error"),
        (["passed", "failed", "xpassed"], "failed"),
        (["skipped", "skipped"], "skipped"),
        (["xfailed", "skipped"], "xfailed"),
    ],
)
def test_a_module_outcome_is_the_most_severe_of_its_tests(
    outcomes: list[str], module_outcome: str
) -> None:
    tests = {
        f"a.py::t{index}": MeasuredTest(0.1, outcome, True)  # type: ignore[arg-type]  # parametrized
        for index, outcome in enumerate(outcomes)
    }
    run = MeasuredRun(tests, {"a.py": MeasuredModule(1.0, 0.1, True)})
    assert merge_history(History(), run, now=NOW).modules["a.py"].last_outcome == module_outcome


def test_a_module_without_test_reports_is_an_error_when_it_did_not_complete() -> None:
    run = MeasuredRun(
        modules={
            "crashed.py": MeasuredModule(0.3, 0.3, False),
            "empty.py": MeasuredModule(0.1, 0.1, True),
        }
    )
    modules = merge_history(History(), run, now=NOW).modules
    assert modules["crashed.py"].last_outcome == "error"
    assert modules["empty.py"].last_outcome == "skipped"


def test_entries_unseen_for_max_unseen_runs_runs_are_dropped() -> None:
    run = MeasuredRun({"old.py::t": passed(1.0)}, {"old.py": MeasuredModule(1.0, 0.1, True)})
    history = merge_history(History(), run, now=NOW, max_unseen_runs=3)
    other = one_test_run("new.py::t", passed(1.0))
    history = merge_history(history, other, now=NOW, max_unseen_runs=3)
    history = merge_history(history, other, now=NOW, max_unseen_runs=3)
    assert "old.py::t" in history.tests  # unseen for 2 runs
    assert "old.py" in history.modules
    history = merge_history(history, other, now=NOW, max_unseen_runs=3)
    assert "old.py::t" not in history.tests  # unseen for 3 runs
    assert "old.py" not in history.modules
    assert "new.py::t" in history.tests
    with pytest.raises(ValueError, match="max_unseen_runs"):
        merge_history(history, other, now=NOW, max_unseen_runs=0)


def test_merge_does_not_modify_its_inputs() -> None:
    history = merge_history(History(), one_test_run("a.py::t", passed(1.0)), now=NOW)
    before = history_to_json(history)
    merge_history(history, one_test_run("a.py::t", passed(9.0)), now=NOW)
    assert history_to_json(history) == before


# -- serialize and parse -------------------------------------------------------------------

# Any text as ids: unicode, quotes, backslashes, control characters, lone surrogates.
_ids = st.text(max_size=12)
# Seconds to the microsecond, as the merge stores them and the file writes them.
_seconds = st.integers(min_value=0, max_value=int(MAX_DURATION_S * 1e6)).map(lambda us: us / 1e6)
_timestamps = st.integers(min_value=0, max_value=4 * 10**9)
_outcomes = st.sampled_from(OUTCOMES_BY_SEVERITY)
_counts = st.integers(min_value=0, max_value=10**6)
# What the merge writes into the recent lists and content digests (any word of these characters).
_plain = st.text(alphabet="pfesxuk PFESXUK0123456789abcdef", max_size=40)


@st.composite
def histories(draw: st.DrawFn) -> History:
    run_count = draw(st.integers(min_value=0, max_value=100))
    seen_runs = st.integers(min_value=0, max_value=run_count)
    tests = st.builds(RecordedTest, _seconds, _outcomes, _timestamps, seen_runs, _counts, _plain)
    modules = st.builds(
        RecordedModule,
        _seconds,
        _seconds,
        _seconds,
        _outcomes,
        _timestamps,
        seen_runs,
        _counts,
        _plain,
        seen_runs,
        _plain,
    )
    return History(
        run_count=run_count,
        tests=draw(st.dictionaries(_ids, tests, max_size=6)),
        modules=draw(st.dictionaries(_ids, modules, max_size=4)),
    )


_ENTRY_LINE = re.compile(r'    "(?:[^"\\]|\\.)*": \[[^\n]*\],?')


@PROPERTY
@given(histories())
def test_serialize_writes_sorted_keys_one_line_per_entry_and_parses_back(history: History) -> None:
    text = serialize_history(history)
    assert text.isascii()
    assert text.endswith("}\n")
    assert json.loads(text) == history_to_json(history)
    assert parse_history(text) == history
    # Top-level keys and every section's keys in sorted order, as json.dumps(sort_keys=True).
    document = json.loads(text, object_pairs_hook=lambda pairs: [key for key, _ in pairs])
    assert document == sorted(document)
    sections = json.loads(text)
    for name in ("tests", "modules"):
        assert list(sections[name]) == sorted(history_to_json(history)[name])
    # One line per entry, so a diff of two files shows the entries that changed.
    entry_lines = [line for line in text.splitlines() if _ENTRY_LINE.fullmatch(line)]
    # (and the two lines of the columns header)
    assert len(entry_lines) == len(history.tests) + len(history.modules) + 2


def test_an_empty_history_serializes_to_empty_objects_and_a_columns_header() -> None:
    assert json.loads(serialize_history(History())) == {
        "columns": {
            "modules": [
                "collect_s",
                "duration_s",
                "fixed_s",
                "last_outcome",
                "last_seen",
                "last_seen_run",
                "runs",
                "content",
                "content_run",
                "recent",
            ],
            "tests": ["duration_s", "last_outcome", "last_seen", "last_seen_run", "runs", "recent"],
        },
        "modules": {},
        "run_count": 0,
        "tests": {},
        "version": 3,
    }


def test_the_file_reads_well_and_diffs_line_by_line() -> None:
    run = MeasuredRun(
        {"tests/test_b.py::test_x[1]": passed(0.5), "tests/test_a.py::T::test_y": passed(1.25)},
        {"tests/test_a.py": MeasuredModule(1.5, 0.125, True, content_hash="4e1f0a7c9b2d")},
    )
    history = merge_history(History(), run, now=NOW)
    history = merge_history(history, run, now=NOW + 60)
    text = serialize_history(history)
    assert text == textwrap.dedent(
        """\
        {
          "columns": {
            "modules": ["collect_s", "duration_s", "fixed_s", "last_outcome", "last_seen", "last_seen_run", "runs", "content", "content_run", "recent"],
            "tests": ["duration_s", "last_outcome", "last_seen", "last_seen_run", "runs", "recent"]
          },
          "modules": {
            "tests/test_a.py": [0.125000, 1.500000, 0.250000, "passed", 1700000060, 2, 2, "4e1f0a7c9b2d", 1, "p1500 P1500 - - - - - - - -"]
          },
          "run_count": 2,
          "tests": {
            "tests/test_a.py::T::test_y": [1.250000, "passed", 1700000060, 2, 2, "p1250 P1250 - - - - - - - -"],
            "tests/test_b.py::test_x[1]": [0.500000, "passed", 1700000060, 2, 2, "P500 P500 - - - - - - - -"]
          },
          "version": 3
        }
        """
    )


@pytest.mark.parametrize(
    "key",
    ['quote"d', "back\\slash", "tab\there", "new\nline", "caf\u00e9", "\ud800 lone", "del\x7f"],
)
def test_keys_that_json_must_escape_are_escaped(key: str) -> None:
    history = History(
        1,
        {key: RecordedTest(1.0, "passed", 5, 1, 1), "plain": RecordedTest(2.0, "failed", 5, 1, 1)},
    )
    text = serialize_history(history)
    assert text.isascii()
    assert parse_history(text) == history


_measured_seconds = st.floats(allow_nan=True, allow_infinity=True) | st.floats(0, 100)


@st.composite
def measured_runs(draw: st.DrawFn) -> MeasuredRun:
    modules = st.sampled_from(["a.py", "b.py", "sub/c.py"])
    nodeids = st.builds(lambda module, name: f"{module}::{name}", modules, st.sampled_from("xyz"))
    tests = st.builds(MeasuredTest, _measured_seconds, _outcomes, st.booleans())
    measured_modules = st.builds(
        MeasuredModule, _measured_seconds, _measured_seconds, st.booleans()
    )
    return MeasuredRun(
        tests=draw(st.dictionaries(nodeids, tests, max_size=6)),
        modules=draw(st.dictionaries(modules, measured_modules, max_size=3)),
    )


@PROPERTY
@given(st.lists(measured_runs(), max_size=6), st.integers(min_value=1, max_value=4))
def test_any_sequence_of_runs_merges_into_a_history_that_round_trips(
    runs: list[MeasuredRun], max_unseen_runs: int
) -> None:
    history = History()
    for index, run in enumerate(runs):
        previous = history
        history = merge_history(previous, run, now=NOW + index, max_unseen_runs=max_unseen_runs)
        for nodeid, measured in run.tests.items():
            old, new = previous.tests.get(nodeid), history.tests[nodeid]
            assert new.last_outcome == measured.outcome
            if old is not None and old.runs and not measured.complete:
                assert new.duration_s == old.duration_s  # a good figure survives
            assert new.runs >= (old.runs if old is not None else 0)
    assert history.run_count == len(runs)
    assert parse_history(serialize_history(history)) == history


def test_parse_accepts_any_whitespace_and_key_order_ignores_unknown_keys_and_converts() -> None:
    text = json.dumps(
        {
            "future_field": [1, 2],
            "version": 2,
            "tests": {"a.py::t": [1, "failed", 1700000000.75, 3, 2]},
            "run_count": 3,
            "modules": {"a.py": [0, 2, 1, "failed", 1700000000, 3, 2]},
        },
        indent=7,
    )
    history = parse_history(text)
    assert history.tests["a.py::t"] == RecordedTest(1.0, "failed", 1700000000, 3, 2)
    assert type(history.tests["a.py::t"].duration_s) is float
    assert type(history.tests["a.py::t"].last_seen) is int
    assert history.modules["a.py"] == RecordedModule(0.0, 2.0, 1.0, "failed", 1700000000, 3, 2)
    assert all(type(value) is float for value in history.modules["a.py"][:3])


def test_a_version_1_file_loads_and_is_written_back_as_version_3(tmp_path: Path) -> None:
    # Version 1 stored an object per entry, and timestamps to the millisecond.
    version_1 = {
        "modules": {
            "a.py": {
                "collect_s": 0.1,
                "duration_s": 1.5,
                "fixed_s": 0.5,
                "last_outcome": "passed",
                "last_seen": 1700000000.123,
                "last_seen_run": 2,
                "runs": 2,
            }
        },
        "run_count": 2,
        "tests": {
            "a.py::t": {
                "duration_s": 1,
                "last_outcome": "passed",
                "last_seen": 1700000000.123,
                "last_seen_run": 2,
                "runs": 2,
            }
        },
        "version": 1,
    }
    path = tmp_path / "durations.json"
    path.write_text(json.dumps(version_1, sort_keys=True, indent=2) + "\n")
    loaded = load_history(path)
    assert loaded.warning is None
    assert loaded.history == History(
        2,
        {"a.py::t": RecordedTest(1.0, "passed", 1700000000, 2, 2)},
        {"a.py": RecordedModule(0.1, 1.5, 0.5, "passed", 1700000000, 2, 2)},
    )
    save_history(path, one_test_run("a.py::t", passed(2.0)), now=NOW, loaded=loaded)
    assert json.loads(path.read_text())["version"] == 3
    # No measurement survives from version 1: the recent list starts with this run's.
    assert load_history(path).history.tests["a.py::t"] == RecordedTest(
        1.3, "passed", NOW, 3, 3, slots("P2000")
    )


def _valid_file() -> dict[str, Any]:
    run = MeasuredRun({"a.py::t": passed(1.0)}, {"a.py": MeasuredModule(1.5, 0.2, True)})
    document: dict[str, Any] = json.loads(serialize_history(merge_history(History(), run, now=NOW)))
    return document


_FIELDS = {"tests": RecordedTest._fields, "modules": RecordedModule._fields}


def _replace(document: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    """Replace (or delete) the value at ``path``; a field of a row is named, as in a record."""
    target: Any = document
    last: Any = path[-1]
    if len(path) == 3:  # (section, key, field name): the field's place in the row
        target = document[path[0]][path[1]]
        last = _FIELDS[path[0]].index(path[2])
    else:
        for key in path[:-1]:
            target = target[key]
    if value is _DELETE:
        del target[last]
    else:
        target[last] = value


def _with(path: tuple[str, ...], value: Any) -> str:
    data = _valid_file()
    _replace(data, path, value)
    return json.dumps(data)


_DELETE = object()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the file is empty"),
        ("  \n\t", "the file is empty"),
        ('{"version": 1, "run_count"', "not valid JSON"),
        ("not json at all", "not valid JSON"),
        ("[" * 100_000, "not valid JSON"),
        ("1" * 5000, "not valid JSON"),
        ("[]", "the top level is [], expected an object"),
        ('"text"', "the top level is 'text'"),
        (_with(("version",), _DELETE), "no 'version' field"),
        (_with(("version",), 4), "version 4 is not a supported version (1, 2, 3)"),
        (_with(("version",), "2"), "version '2' is not a supported version"),
        (_with(("version",), True), "version True is not a supported version"),
        (_with(("run_count",), -1), "'run_count' is -1"),
        (_with(("run_count",), _DELETE), "'run_count' is None"),
        (_with(("tests",), _DELETE), "no 'tests' field"),
        (_with(("tests",), []), "'tests' is [], expected an object"),
        (_with(("tests", "a.py::t"), 3), "tests['a.py::t'] is 3, expected a list of 6 values"),
        (_with(("tests", "a.py::t"), {}), "tests['a.py::t'] is {}, expected a list of 6 values"),
        (_with(("tests", "a.py::t", "runs"), _DELETE), "tests['a.py::t'] is [1.0, 'passed', 1700"),
        (
            _with(("tests", "a.py::t"), [1.0, "passed", 1, 1, 1, "", 1]),
            "expected a list of 6 values",
        ),
        (_with(("tests", "a.py::t", "duration_s"), -0.5), "tests['a.py::t'].duration_s is -0.5"),
        (_with(("tests", "a.py::t", "duration_s"), 1e8), "duration_s is 100000000.0, expected"),
        (_with(("tests", "a.py::t", "duration_s"), "1.0"), "duration_s is '1.0'"),
        (_with(("tests", "a.py::t", "duration_s"), True), "duration_s is True"),
        (_with(("tests", "a.py::t", "duration_s"), None), "duration_s is None"),
        (_with(("tests", "a.py::t", "duration_s"), 10**400), "duration_s is 1000000000"),
        (_with(("tests", "a.py::t", "runs"), 1.5), "runs is 1.5, expected a count"),
        (_with(("tests", "a.py::t", "last_outcome"), "boom"), "last_outcome is 'boom'"),
        (_with(("tests", "a.py::t", "last_outcome"), ["x"]), "last_outcome is ['x']"),
        (_with(("tests", "a.py::t", "last_seen"), -1), "last_seen is -1"),
        (_with(("tests", "a.py::t", "last_seen_run"), 2), "last_seen_run is 2, after run_count 1"),
        (_with(("modules", "a.py", "fixed_s"), -1), "modules['a.py'].fixed_s is -1"),
        (_with(("modules", "a.py", "collect_s"), _DELETE), "expected a list of 10 values"),
        (_with(("tests", "a.py::t", "recent"), 'p1 "x'), "recent is 'p1 \"x', expected a string"),
        (_with(("tests", "a.py::t", "recent"), "p1\\"), "recent is 'p1\\\\', expected a string"),
        (_with(("tests", "a.py::t", "recent"), "p1\n"), "recent is 'p1\\n', expected a string"),
        (_with(("tests", "a.py::t", "recent"), "caf\u00e9"), "recent is 'café', expected a string"),
        (_with(("tests", "a.py::t", "recent"), "p1 " * 100), "recent is 'p1 p1"),
        (_with(("tests", "a.py::t", "recent"), 1), "recent is 1, expected a string"),
        (_with(("modules", "a.py", "content"), None), "content is None, expected a string"),
        (_with(("modules", "a.py", "content_run"), 5), "content_run is 5, after run_count 1"),
        (
            '{"version": 1, "run_count": 0, "tests": {"a": {"runs": 0}}, "modules": {}}',
            "tests['a'] has no 'duration_s'",
        ),
        (
            '{"version": 1, "run_count": 0, "tests": {"a": []}, "modules": {}}',
            "tests['a'] is [], expected an object",
        ),
    ],
)
def test_parse_rejects_bad_text_with_a_message_saying_what_is_wrong(
    text: str, message: str
) -> None:
    with pytest.raises(HistoryFormatError) as caught:
        parse_history(text)
    assert message in str(caught.value)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize("field", ["duration_s", "last_seen"])
def test_parse_rejects_nan_and_infinity(constant: str, field: str) -> None:
    document = _valid_file()
    # A second, good entry first: a NaN that is not first in its column hides from min/max.
    good = document["tests"]["a.py::t"]
    document["tests"] = {"0.py::first": good, "a.py::t": list(good)}
    _replace(document, ("tests", "a.py::t", field), 12345.5)
    text = json.dumps(document).replace("12345.5", constant)
    assert constant in text
    with pytest.raises(HistoryFormatError, match=rf"tests\['a.py::t'\].{field} is "):
        parse_history(text)


def _parses_or_rejects(text: str) -> None:
    try:
        history = parse_history(text)
    except HistoryFormatError as error:
        assert str(error)
    else:
        # Writing rounds seconds to the microsecond; from then on a file reads back as written.
        written = serialize_history(history)
        again = parse_history(written)
        assert serialize_history(again) == written
        assert again.tests.keys() == history.tests.keys()
        assert again.modules.keys() == history.modules.keys()


@FUZZ
@given(st.text())
def test_parse_never_raises_anything_else_on_any_text(text: str) -> None:
    _parses_or_rejects(text)


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@FUZZ
@given(_json)
def test_parse_never_raises_anything_else_on_any_json(value: Any) -> None:
    _parses_or_rejects(json.dumps(value))


@FUZZ
@given(st.data())
def test_parse_never_raises_anything_else_on_a_valid_file_with_one_value_replaced(
    data: st.DataObject,
) -> None:
    document = _valid_file()
    paths: list[tuple[str, ...]] = [
        ("version",),
        ("run_count",),
        ("tests",),
        ("modules",),
        ("tests", "a.py::t"),
        ("modules", "a.py"),
        *(("tests", "a.py::t", name) for name in RecordedTest._fields),
        *(("modules", "a.py", name) for name in RecordedModule._fields),
    ]
    path = data.draw(st.sampled_from(paths))
    _replace(document, path, data.draw(_json))
    _parses_or_rejects(json.dumps(document))


_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
) | st.sampled_from(OUTCOMES_BY_SEVERITY)


_numbers = st.integers(min_value=-2, max_value=10**12) | st.floats() | st.integers()


@FUZZ
@given(
    st.lists(_scalars | st.lists(st.integers(), max_size=2), max_size=6)
    | st.lists(_numbers, max_size=6)
    | st.lists(st.sampled_from(OUTCOMES_BY_SEVERITY), max_size=4)
)
@example([1.0, math.nan])  # min/max skip a NaN that is not first
@example([1, 10**400])  # too big for a float
@example([1e308, 1e308])  # finite values with an infinite sum
def test_column_checks_agree_with_value_checks(column: list[Any]) -> None:
    # The fast column checks decide what loads; the value checks find the culprit for the
    # message. If they disagreed, bad values could load or a good file could be discarded.
    for check in {id(check): check for check in history_module._CHECKS.values()}.values():
        assert check.column_ok(column) == all(map(check.value_ok, column))


# -- load --------------------------------------------------------------------------------------


@pytest.fixture
def history_path(tmp_path: Path) -> Path:
    return tmp_path / "durations.json"


def test_a_missing_file_is_an_empty_history_without_a_warning(history_path: Path) -> None:
    loaded = load_history(history_path)
    assert loaded.history == History()
    assert loaded.warning is None
    assert list(history_path.parent.iterdir()) == []


def test_a_good_file_loads(history_path: Path) -> None:
    saved = save_history(history_path, one_test_run("a.py::t", passed(1.0)), now=NOW)
    loaded = load_history(history_path)
    assert (loaded.history, loaded.warning) == (saved.history, None)
    assert saved.warning is None


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "the file is empty"),
        (b'{"version": 1, "tests": {', "not valid JSON"),
        (b"\xff\xfe garbage", "not UTF-8 text"),
        (b'{"version": 7, "run_count": 0, "tests": {}, "modules": {}}', "version 7"),
    ],
)
def test_a_bad_file_gives_one_warning_and_is_moved_aside_not_deleted(
    history_path: Path, content: bytes, problem: str
) -> None:
    history_path.write_bytes(content)
    loaded = load_history(history_path, now=0.0)
    assert loaded.history == History()
    assert loaded.warning is not None
    assert str(history_path) in loaded.warning
    assert problem in loaded.warning
    moved = history_path.with_name("durations.json.corrupt-19700101T000000Z")
    assert "moved to durations.json.corrupt-19700101T000000Z" in loaded.warning
    assert moved.read_bytes() == content
    assert not history_path.exists()
    # The next run starts clean and quietly.
    assert load_history(history_path).warning is None


def test_two_bad_files_in_the_same_second_are_both_kept(history_path: Path) -> None:
    for content in (b"first", b"second"):
        history_path.write_bytes(content)
        assert load_history(history_path, now=0.0).warning is not None
    kept = sorted(path.name for path in history_path.parent.glob("*.corrupt-*"))
    assert kept == [
        "durations.json.corrupt-19700101T000000Z",
        "durations.json.corrupt-19700101T000000Z-1",
    ]


def test_a_path_that_is_not_a_regular_file_gives_a_warning_and_is_left_alone(
    history_path: Path,
) -> None:
    history_path.mkdir()
    loaded = load_history(history_path)
    assert loaded.history == History()
    assert (
        loaded.warning == f"ignored the duration history {history_path}: it is not a regular file"
    )
    assert history_path.is_dir()
    assert sorted(p.name for p in history_path.parent.iterdir()) == ["durations.json"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_fifo_is_never_read_so_loading_cannot_hang(history_path: Path) -> None:
    os.mkfifo(history_path)
    loaded = load_history(history_path)
    assert loaded.warning is not None
    assert "not a regular file" in loaded.warning
    assert sorted(p.name for p in history_path.parent.iterdir()) == ["durations.json"]


@pytest.mark.skipif(os.name == "nt" or os.geteuid() == 0, reason="root reads anything")
def test_an_unreadable_file_gives_a_warning_and_is_left_alone(history_path: Path) -> None:
    history_path.write_text("{}")
    history_path.chmod(0)
    loaded = load_history(history_path)
    assert loaded.warning is not None
    assert f"cannot read the duration history {history_path}" in loaded.warning
    assert history_path.exists()


def test_a_bad_file_behind_a_link_is_not_moved_and_takes_no_lock(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere" / "real.json"
    target.parent.mkdir()
    target.write_text("not json")
    link = tmp_path / "durations.json"
    link.symlink_to(target)
    loaded = load_history(link)
    assert loaded.warning == f"ignored the duration history {link}: not valid JSON " + (
        "(Expecting value: line 1 column 1 (char 0))"
    )
    assert link.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["durations.json", "elsewhere"]
    assert [p.name for p in target.parent.iterdir()] == ["real.json"]


def test_a_good_file_behind_a_link_loads(tmp_path: Path) -> None:
    target = tmp_path / "real.json"
    saved = save_history(target, one_test_run("a.py::t", passed(1.0)), now=NOW)
    link = tmp_path / "durations.json"
    link.symlink_to(target)
    assert load_history(link) == saved


def test_a_bad_file_replaced_by_a_concurrent_save_is_not_moved_aside(
    history_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    history_path.write_text("corrupt")
    good = serialize_history(merge_history(History(), MeasuredRun(), now=NOW))
    real_lock = history_module._lock

    @contextlib.contextmanager
    def lock_after_a_concurrent_save(path: Path, timeout: float) -> Iterator[None]:
        # Another process's save lands between our unlocked read and taking the lock.
        history_path.write_text(good)
        with real_lock(path, timeout):
            yield

    monkeypatch.setattr(history_module, "_lock", lock_after_a_concurrent_save)
    loaded = load_history(history_path)
    assert loaded.warning is None
    assert loaded.history.run_count == 1
    assert list(history_path.parent.glob("*.corrupt-*")) == []


@settings(
    max_examples=50,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.binary(max_size=200))
def test_load_never_raises_on_any_bytes(tmp_path: Path, content: bytes) -> None:
    with tempfile.TemporaryDirectory(dir=tmp_path) as directory:
        path = Path(directory, "durations.json")
        path.write_bytes(content)
        loaded = load_history(path, now=0.0)
        assert (loaded.warning is None) == path.exists()


# -- save --------------------------------------------------------------------------------------


def test_save_writes_a_stable_sorted_file_with_a_trailing_newline(
    history_path: Path,
) -> None:
    run = MeasuredRun({"b.py::t": passed(2.0), "a.py::t": passed(1.0)})
    saved = save_history(history_path, run, now=NOW)
    text = history_path.read_text(encoding="ascii")
    assert text == serialize_history(saved.history)
    assert list(saved.history.tests) != sorted(saved.history.tests)  # insertion order...
    assert list(json.loads(text)["tests"]) == ["a.py::t", "b.py::t"]  # ...but sorted on disk
    # Nothing but the history and its lock file is left behind.
    assert sorted(path.name for path in history_path.parent.iterdir()) == [
        "durations.json",
        "durations.json.lock",
    ]


def test_save_merges_with_what_is_on_disk(history_path: Path) -> None:
    save_history(history_path, one_test_run("a.py::t", passed(1.0)), now=NOW)
    save_history(history_path, one_test_run("b.py::t", passed(2.0)), now=NOW + 1)
    saved = save_history(
        history_path, one_test_run("a.py::t", MeasuredTest(50.0, "error", False)), now=NOW + 2
    )
    on_disk = load_history(history_path).history
    assert on_disk == saved.history
    assert on_disk.run_count == 3
    assert on_disk.tests["a.py::t"] == RecordedTest(
        1.0, "error", NOW + 2, 3, 1, slots("2E50000", "P1000")
    )
    assert on_disk.tests["b.py::t"].duration_s == 2.0


def _counting_parses(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real_parse = history_module.parse_history

    def counting_parse(text: str) -> History:
        calls.append(len(text))
        return real_parse(text)

    monkeypatch.setattr(history_module, "parse_history", counting_parse)
    return calls


def test_save_reuses_the_loaded_history_when_the_file_is_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    for path in (first, second):
        save_history(path, one_test_run("a.py::t", passed(1.0)), now=NOW)
    loaded = load_history(first)
    assert loaded.digest is not None
    parses = _counting_parses(monkeypatch)
    run = MeasuredRun({"a.py::t": passed(2.0), "b.py::t": passed(3.0)})
    save_history(first, run, now=NOW + 1, loaded=loaded)
    assert parses == []
    # The same bytes as a save that parses the file again.
    save_history(second, run, now=NOW + 1)
    assert len(parses) == 1
    assert first.read_bytes() == second.read_bytes()


def test_save_parses_the_file_again_when_another_run_saved_since_the_load(
    history_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save_history(history_path, one_test_run("a.py::t", passed(1.0)), now=NOW)
    loaded = load_history(history_path)
    save_history(history_path, one_test_run("other.py::t", passed(4.0)), now=NOW + 1)
    parses = _counting_parses(monkeypatch)
    saved = save_history(
        history_path, one_test_run("a.py::t", passed(2.0)), now=NOW + 2, loaded=loaded
    )
    assert len(parses) == 1
    assert saved.history.run_count == 3
    assert saved.history.tests["other.py::t"].duration_s == 4.0  # the other run's data landed
    assert saved.history.tests["a.py::t"].duration_s == 1.3


def test_save_with_a_loaded_history_of_a_missing_or_bad_file_starts_from_what_is_there(
    history_path: Path,
) -> None:
    missing = load_history(history_path)
    assert missing.digest is None
    history_path.write_text("not json")
    bad = load_history(history_path, now=0.0)
    assert bad.digest is None
    save_history(history_path, one_test_run("b.py::t", passed(1.0)), now=NOW)
    saved = save_history(history_path, one_test_run("a.py::t", passed(1.0)), now=NOW, loaded=bad)
    assert set(saved.history.tests) == {"a.py::t", "b.py::t"}


def test_save_needs_the_parent_directory_unless_asked_to_create_it(tmp_path: Path) -> None:
    path = tmp_path / ".pytest_cache" / "d" / "parallel-modules" / "durations.json"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save_history(path, MeasuredRun(), now=NOW)
    assert not (tmp_path / ".pytest_cache").exists()
    save_history(path, MeasuredRun(), now=NOW, create_parents=True)
    assert load_history(path).history.run_count == 1


def test_save_over_a_bad_file_moves_it_aside_and_warns(history_path: Path) -> None:
    history_path.write_text('{"version": 1, "run_count": 0, "tests": {"a": NaN}}')
    saved = save_history(history_path, one_test_run("a.py::t", passed(1.0)), now=0.0)
    assert saved.warning is not None
    assert "moved to durations.json.corrupt-19700101T000000Z" in saved.warning
    assert load_history(history_path) == type(saved)(saved.history)
    assert "NaN" in history_path.with_name("durations.json.corrupt-19700101T000000Z").read_text()


def test_save_never_replaces_a_link_a_directory_or_a_device(tmp_path: Path) -> None:
    target = tmp_path / "real.json"
    target.write_text("keep me")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    directory = tmp_path / "directory.json"
    directory.mkdir()
    for path in (link, directory, Path(os.devnull)):
        with pytest.raises(OSError, match="it is not a regular file"):
            save_history(path, one_test_run("a.py::t", passed(1.0)), now=NOW)
    assert link.is_symlink()
    assert target.read_text() == "keep me"
    assert directory.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "directory.json",
        "link.json",
        "real.json",
    ]


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(
    history_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save_history(history_path, one_test_run("a.py::t", passed(1.0)), now=NOW)
    before = history_path.read_bytes()

    def full_disk(source: object, target: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(OSError, match="No space left"):
        save_history(history_path, one_test_run("b.py::t", passed(1.0)), now=NOW)
    monkeypatch.undo()
    assert history_path.read_bytes() == before
    assert list(history_path.parent.glob("*.tmp")) == []


def test_concurrent_saves_from_threads_all_land_and_readers_never_see_half_a_file(
    history_path: Path,
) -> None:
    writers = 16
    failures: list[BaseException] = []
    done = threading.Event()

    def write(index: int) -> None:
        try:
            run = MeasuredRun(
                {f"m{index % 4}.py::t{index}": passed(index / 10)},
                {f"m{index % 4}.py": MeasuredModule(index / 10 + 0.1, 0.05, True)},
            )
            save_history(history_path, run, now=NOW + index)
        except BaseException as error:  # reported below, with the thread's failure
            failures.append(error)

    def read() -> None:
        while not done.is_set():
            loaded = load_history(history_path)
            if loaded.warning is not None:
                failures.append(AssertionError(loaded.warning))

    reader = threading.Thread(target=read)
    reader.start()
    threads = [threading.Thread(target=write, args=(index,)) for index in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    reader.join()
    assert failures == []
    history = load_history(history_path).history
    assert history.run_count == writers
    assert set(history.tests) == {f"m{index % 4}.py::t{index}" for index in range(writers)}
    assert set(history.modules) == {f"m{index}.py" for index in range(4)}


def test_concurrent_saves_from_processes_all_land(history_path: Path) -> None:
    writers = 10
    script = textwrap.dedent(
        """
        import sys
        from pytest_parallel_modules.history import MeasuredRun, MeasuredTest, save_history

        index = int(sys.argv[2])
        run = MeasuredRun({f"p.py::t{index}": MeasuredTest(index / 10, "passed", True)})
        save_history(sys.argv[1], run, now=1_700_000_000.0 + index)
        """
    )
    processes = [
        subprocess.Popen([sys.executable, "-c", script, str(history_path), str(index)])
        for index in range(writers)
    ]
    assert [process.wait(timeout=60) for process in processes] == [0] * writers
    history = load_history(history_path).history
    assert history.run_count == writers
    assert set(history.tests) == {f"p.py::t{index}" for index in range(writers)}
    for index in range(writers):
        assert history.tests[f"p.py::t{index}"].duration_s == index / 10


def test_a_history_path_that_is_not_a_regular_file_is_never_moved(tmp_path: Path) -> None:
    """A bad "file" that is a device or a symlink is ignored, never renamed."""
    target = tmp_path / "real.json"
    target.write_text("not json")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    loaded = load_history(link)
    assert loaded.warning is not None
    assert link.is_symlink() and target.read_text() == "not json"
    devnull = load_history(os.devnull)
    assert devnull.history == History()
    assert os.path.exists(os.devnull) and not os.path.isfile(os.devnull)
