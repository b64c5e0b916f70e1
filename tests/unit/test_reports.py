"""Unit tests for reports.py: folding, building, merging, writing and loading reports."""

from __future__ import annotations

from collections.abc import Sequence
import json
import os
from pathlib import Path
import stat
from typing import Any
from typing import Literal

from hypothesis import given
from hypothesis import strategies as st
import jsonschema  # type: ignore[import-untyped]  # the test environment has no stubs for it
import pytest

from pytest_parallel_modules.errors import ParallelModulesError
from pytest_parallel_modules.outcomes import COUNT_FIELDS
from pytest_parallel_modules.reports import build_merged_report
from pytest_parallel_modules.reports import build_module_report
from pytest_parallel_modules.reports import Counts
from pytest_parallel_modules.reports import failed_modules
from pytest_parallel_modules.reports import fold_test_reports
from pytest_parallel_modules.reports import has_failures
from pytest_parallel_modules.reports import load_report
from pytest_parallel_modules.reports import merge_reports
from pytest_parallel_modules.reports import MergedReport
from pytest_parallel_modules.reports import module_report_filename
from pytest_parallel_modules.reports import module_results
from pytest_parallel_modules.reports import ModuleReport
from pytest_parallel_modules.reports import not_run_record
from pytest_parallel_modules.reports import ReportError
from pytest_parallel_modules.reports import ResultRecord
from pytest_parallel_modules.reports import write_json_atomic


SCHEMA_PATH = Path(__file__).parents[2] / "docs" / "report.schema.json"
#: 2025-01-01T00:00:00Z, so ISO strings in assertions are readable.
T0 = 1_735_689_600.0
HAS_SUBTESTS = hasattr(pytest, "SubtestReport")
needs_subtests = pytest.mark.skipif(not HAS_SUBTESTS, reason="subtests are built in from pytest 9")


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def module_schema(validator: jsonschema.Draft202012Validator) -> jsonschema.Draft202012Validator:
    return validator.evolve(
        schema={"$defs": validator.schema["$defs"], "$ref": "#/$defs/module_report"}
    )


def phase(
    nodeid: str,
    when: Literal["setup", "call", "teardown"],
    outcome: Literal["passed", "failed", "skipped"] = "passed",
    *,
    longrepr: Any = None,
    duration: float = 0.1,
    sections: Sequence[tuple[str, str]] = (),
    wasxfail: str | None = None,
) -> pytest.TestReport:
    extra: dict[str, Any] = {} if wasxfail is None else {"wasxfail": wasxfail}
    return pytest.TestReport(
        nodeid=nodeid,
        location=(nodeid.split("::")[0], 0, nodeid.split("::")[-1]),
        keywords={},
        outcome=outcome,
        longrepr=longrepr,
        when=when,
        sections=list(sections),
        duration=duration,
        **extra,
    )


def three_phases(
    nodeid: str,
    setup: Literal["passed", "failed", "skipped"] = "passed",
    call: Literal["passed", "failed", "skipped"] | None = "passed",
    teardown: Literal["passed", "failed", "skipped"] = "passed",
    **call_kwargs: Any,
) -> list[pytest.TestReport]:
    reports = [phase(nodeid, "setup", setup, longrepr="setup boom" if setup == "failed" else None)]
    if call is not None:
        reports.append(phase(nodeid, "call", call, **call_kwargs))
    reports.append(
        phase(
            nodeid, "teardown", teardown, longrepr="teardown boom" if teardown == "failed" else None
        )
    )
    return reports


def record(nodeid: str, outcome: str = "passed", duration: float = 0.5) -> ResultRecord:
    return ResultRecord(
        nodeid=nodeid,
        subtest=None,
        outcome=outcome,  # type: ignore[typeddict-item]  # tests pass outcomes as plain strings
        duration_s=duration,
        when="call",
        longrepr="boom" if outcome in ("failed", "error") else None,
        message="boom" if outcome in ("failed", "error") else None,
        stdout="",
        stderr="",
    )


def module(name: str, *outcomes: str, duration: float = 1.0, worker: str = "w1") -> ModuleReport:
    return build_module_report(
        module=name,
        worker=worker,
        started=T0,
        finished=T0 + duration,
        results=[record(f"{name}::test_{i}", outcome) for i, outcome in enumerate(outcomes)],
    )


def merged(
    modules: Sequence[ModuleReport], *, wall_s: float = 2.0, workers: int = 2
) -> MergedReport:
    return build_merged_report(
        modules=modules,
        wall_s=wall_s,
        workers=workers,
        args=["--parallel-modules=2"],
        rootdir="/repo",
        snapshot="abc123",
        created=T0,
    )


# --------------------------------------------------------------------------- folding


def test_passed_test_sums_phases_and_joins_captured_output() -> None:
    reports = [
        phase("t.py::a", "setup", duration=0.1, sections=[("Captured stdout setup", "s\n")]),
        phase("t.py::a", "call", duration=0.2, sections=[("Captured stdout call", "c\n")]),
        phase("t.py::a", "teardown", duration=0.3, sections=[("Captured stderr teardown", "e\n")]),
    ]
    (result,) = fold_test_reports(reports)
    assert result == ResultRecord(
        nodeid="t.py::a",
        subtest=None,
        outcome="passed",
        duration_s=pytest.approx(0.6),  # type: ignore[typeddict-item]  # approx compares equal
        when="call",
        longrepr=None,
        message=None,
        stdout="s\nc\n",
        stderr="e\n",
    )


def test_cumulative_sections_are_not_repeated() -> None:
    # pytest's later phase reports repeat the sections of the earlier phases.
    setup = ("Captured stdout setup", "s\n")
    call = ("Captured stdout call", "c\n")
    reports = [
        phase("t.py::a", "setup", sections=[setup]),
        phase("t.py::a", "call", sections=[setup, call]),
        phase("t.py::a", "teardown", sections=[setup, call]),
    ]
    (result,) = fold_test_reports(reports)
    assert result["stdout"] == "s\nc\n"


@pytest.mark.parametrize(
    ("phases", "outcome", "when", "longrepr"),
    [
        pytest.param(
            {"setup": "failed", "call": None}, "error", "setup", "setup boom", id="setup-failed"
        ),
        pytest.param(
            {"call": "failed", "longrepr": "assert 1 == 2"},
            "failed",
            "call",
            "assert 1 == 2",
            id="call-failed",
        ),
        pytest.param(
            {"teardown": "failed"}, "error", "teardown", "teardown boom", id="teardown-failed"
        ),
        pytest.param(
            {"call": "skipped", "longrepr": ("t.py", 1, "Skipped: later")},
            "skipped",
            "call",
            None,
            id="call-skipped",
        ),
        pytest.param(
            {"setup": "skipped", "call": None}, "skipped", "setup", None, id="setup-skipped"
        ),
        pytest.param(
            {"call": "skipped", "wasxfail": "known bug"}, "xfailed", "call", None, id="xfailed"
        ),
        pytest.param(
            {"call": "passed", "wasxfail": "flaky"}, "xpassed", "call", None, id="xpassed"
        ),
        pytest.param(
            {"call": "failed", "longrepr": "[XPASS(strict)] flaky"},
            "failed",
            "call",
            "[XPASS(strict)] flaky",
            id="strict-xpass",
        ),
        pytest.param(
            {"setup": "skipped", "call": None, "teardown": "failed"},
            "error",
            "teardown",
            "teardown boom",
            id="failure-beats-skip",
        ),
    ],
)
def test_phases_fold_like_pytest_terminal(
    phases: dict[str, Any], outcome: str, when: str, longrepr: str | None
) -> None:
    (result,) = fold_test_reports(three_phases("t.py::a", **phases))
    assert (result["outcome"], result["when"], result["longrepr"]) == (outcome, when, longrepr)


def test_failed_call_and_teardown_keep_both_texts() -> None:
    (result,) = fold_test_reports(
        three_phases("t.py::a", call="failed", teardown="failed", longrepr="call boom")
    )
    assert (result["outcome"], result["when"], result["message"]) == ("failed", "call", "call boom")
    assert result["longrepr"] == (
        "---------- call ----------\ncall boom\n\n---------- teardown ----------\nteardown boom"
    )


def test_skip_and_xfail_messages_carry_the_reason() -> None:
    skipped, xfailed = fold_test_reports(
        [
            *three_phases("t.py::a", call="skipped", longrepr=("t.py", 3, "Skipped: no db")),
            *three_phases("t.py::b", call="skipped", wasxfail="issue 12"),
        ]
    )
    assert (skipped["message"], xfailed["message"]) == ("Skipped: no db", "issue 12")
    # The same skip after a trip through JSON, where the tuple became a list.
    (from_json,) = fold_test_reports(
        three_phases("t.py::a", call="skipped", longrepr=["t.py", 3, "Skipped: no db"])
    )
    assert from_json["message"] == "Skipped: no db"


def test_test_that_never_reached_its_call_is_not_run() -> None:
    (result,) = fold_test_reports([phase("t.py::a", "setup")])
    assert (result["outcome"], result["when"]) == ("not_run", "setup")


def test_duplicate_nodeids_stay_separate_tests() -> None:
    reports = three_phases("t.py::a") + three_phases("t.py::a", call="failed", longrepr="x")
    assert [r["outcome"] for r in fold_test_reports(reports)] == ["passed", "failed"]


def test_an_attempt_marked_rerun_is_replaced_by_the_next_one() -> None:
    # pytest-rerunfailures: a failed call reported as "rerun", then the test runs again.
    first = three_phases("t.py::a", call="failed", longrepr="flaky")
    first[1].outcome = "rerun"  # type: ignore[assignment]  # pytest-rerunfailures' own outcome
    reports = first + three_phases("t.py::a") + three_phases("t.py::b")
    results = fold_test_reports(reports)
    assert [(r["nodeid"], r["outcome"]) for r in results] == [
        ("t.py::a", "passed"),
        ("t.py::b", "passed"),
    ]


def test_tests_keep_arrival_order() -> None:
    reports = three_phases("t.py::b") + three_phases("t.py::a")
    assert [r["nodeid"] for r in fold_test_reports(reports)] == ["t.py::b", "t.py::a"]


def subtest_report(
    nodeid: str, outcome: Literal["passed", "failed", "skipped"], msg: str | None, **kwargs: object
) -> pytest.TestReport:
    report = pytest.SubtestReport(
        nodeid=nodeid,
        location=("t.py", 0, "test_a"),
        keywords={},
        outcome=outcome,
        longrepr="assert 1 != 1" if outcome == "failed" else None,
        when="call",
        duration=0.01,
    )
    # The context type is private to pytest; the fold reads only its msg and kwargs.
    report.context = type("Context", (), {"msg": msg, "kwargs": kwargs})()
    return report


@needs_subtests
def test_subtests_are_entries_of_their_own_and_fail_their_parent() -> None:
    reports = [
        phase("t.py::a", "setup"),
        subtest_report("t.py::a", "passed", "loop", i=0),
        subtest_report("t.py::a", "failed", "loop", i=1),
        subtest_report("t.py::a", "passed", None),
        phase("t.py::a", "call", duration=0.5),
        phase("t.py::a", "teardown"),
    ]
    parent, *subtests = fold_test_reports(reports)
    assert (parent["subtest"], parent["outcome"], parent["message"]) == (
        None,
        "failed",
        "contains 1 failed subtest",
    )
    # Subtest time is part of the call; it is not added to the parent a second time.
    assert parent["duration_s"] == pytest.approx(0.7)
    assert [(s["nodeid"], s["subtest"], s["outcome"]) for s in subtests] == [
        ("t.py::a", "[loop] (i=0)", "passed"),
        ("t.py::a", "[loop] (i=1)", "failed"),
        ("t.py::a", "(<subtest>)", "passed"),
    ]
    report = build_module_report(
        module="t.py", worker="w1", started=T0, finished=T0 + 1, results=[parent, *subtests]
    )
    assert (report["counts"]["tests"], report["counts"]["failed"], report["outcome"]) == (
        1,
        1,
        "failed",
    )


REAL_TESTS = """
import pytest

@pytest.fixture
def broken_teardown():
    yield
    raise RuntimeError("teardown boom")

def test_pass():
    print("hello")

def test_fail():
    assert 1 == 2, "nope"

def test_teardown_error(broken_teardown):
    pass

@pytest.mark.xfail(reason="known")
def test_xfail():
    assert False

@pytest.mark.xfail(reason="lucky")
def test_xpass():
    pass

@pytest.mark.xfail(reason="strictly", strict=True)
def test_xpass_strict():
    pass

@pytest.mark.skip(reason="no db")
def test_skip():
    pass
"""

REAL_SUBTESTS = """
def test_subtests(subtests):
    for i in range(2):
        with subtests.test(msg="loop", i=i):
            assert i != 1
"""


@pytest.mark.parametrize("over_the_wire", [False, True], ids=["in-process", "serialized"])
def test_fold_agrees_with_a_real_pytest_run(pytester: pytest.Pytester, over_the_wire: bool) -> None:
    pytester.makepyfile(test_demo=REAL_TESTS + (REAL_SUBTESTS if HAS_SUBTESTS else ""))
    recorder = pytester.inline_run("-p", "no:cacheprovider")
    reports: Sequence[pytest.TestReport] = recorder.getreports("pytest_runtest_logreport")
    if over_the_wire:
        # What the controller folds: reports rebuilt from pytest's own serialisation.
        hook = pytester.parseconfig().hook
        reports = [
            hook.pytest_report_from_serializable(
                config=None, data=hook.pytest_report_to_serializable(config=None, report=report)
            )
            for report in reports
        ]
    results = fold_test_reports(reports)
    outcomes = {(r["nodeid"].split("::")[1], r["subtest"]): r["outcome"] for r in results}
    expected: dict[tuple[str, str | None], str] = {
        ("test_pass", None): "passed",
        ("test_fail", None): "failed",
        ("test_teardown_error", None): "error",
        ("test_xfail", None): "xfailed",
        ("test_xpass", None): "xpassed",
        ("test_xpass_strict", None): "failed",
        ("test_skip", None): "skipped",
    }
    if HAS_SUBTESTS:
        expected[("test_subtests", None)] = "failed"
        # pytest's SubtestContext repr()s kwarg values again when it is rebuilt from
        # JSON, so a serialised subtest reads (i='0'): the text pytest itself prints.
        quote = "'" if over_the_wire else ""
        expected[("test_subtests", f"[loop] (i={quote}0{quote})")] = "passed"
        expected[("test_subtests", f"[loop] (i={quote}1{quote})")] = "failed"
    assert outcomes == expected
    by_name = {r["nodeid"].split("::")[1]: r for r in results if r["subtest"] is None}
    assert by_name["test_pass"]["stdout"] == "hello\n"
    assert by_name["test_fail"]["message"] == "AssertionError: nope"
    assert "assert 1 == 2" in (by_name["test_fail"]["longrepr"] or "")
    assert by_name["test_teardown_error"]["message"] == "RuntimeError: teardown boom"
    assert by_name["test_skip"]["message"] == "Skipped: no db"
    assert by_name["test_xfail"]["message"] == "known"


# --------------------------------------------------------------------------- building


def test_module_report_counts_and_times(validator: jsonschema.Draft202012Validator) -> None:
    report = build_module_report(
        module="tests/test_x.py",
        worker="w2",
        started=T0,
        finished=T0 + 3.21,
        results=[record("a"), record("b", "skipped"), record("c", "xfailed")],
    )
    assert report["outcome"] == "passed"
    assert report["started"] == "2025-01-01T00:00:00.000+00:00"
    assert report["finished"] == "2025-01-01T00:00:03.210+00:00"
    assert report["duration_s"] == pytest.approx(3.21)
    assert report["counts"] == Counts(
        tests=3,
        passed=1,
        failed=0,
        errors=0,
        skipped=1,
        xfailed=1,
        xpassed=0,
        interrupted=0,
        not_run=0,
    )
    module_schema(validator).validate(report)


@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [
        (["passed", "error", "failed"], "failed"),
        (["passed", "error"], "error"),
        (["passed", "not_run"], "interrupted"),
        (["not_run", "not_run"], "not_run"),
        ([], "not_run"),
        (["skipped", "xfailed", "xpassed"], "passed"),
    ],
)
def test_module_outcome_is_derived_from_its_tests(outcomes: list[str], expected: str) -> None:
    assert module("t.py", *outcomes)["outcome"] == expected


def test_given_module_outcome_wins_and_missing_tests_are_not_run(
    validator: jsonschema.Draft202012Validator,
) -> None:
    report = build_module_report(
        module="t.py",
        worker="w1",
        started=T0,
        finished=None,
        results=[record("t.py::a", duration=0.25), record("t.py::b", "failed", duration=0.5)],
        outcome="crashed",
        expected_nodeids=["t.py::a", "t.py::b", "t.py::c"],
    )
    assert report["outcome"] == "crashed"
    assert report["tests"][-1] == not_run_record("t.py::c")
    assert report["counts"]["not_run"] == 1
    # Without a finish time, the duration is what the tests took.
    assert (report["finished"], report["duration_s"]) == (None, 0.75)
    module_schema(validator).validate(report)


def test_never_started_module(validator: jsonschema.Draft202012Validator) -> None:
    report = build_module_report(
        module="t.py",
        worker=None,
        started=None,
        finished=None,
        results=[],
        expected_nodeids=["t.py::a"],
    )
    assert (report["outcome"], report["worker"], report["started"]) == ("not_run", None, None)
    module_schema(validator).validate(report)


def test_merged_report_totals_and_timing(validator: jsonschema.Draft202012Validator) -> None:
    report = merged(
        [
            module("b.py", "passed", "failed", duration=3.0),
            module("a.py", "passed", "skipped", duration=1.0),
        ],
        wall_s=3.5,
        workers=2,
    )
    validator.validate(report)
    assert [m["module"] for m in report["modules"]] == ["a.py", "b.py"]
    assert report["totals"]["tests"] == 4
    assert (report["totals"]["passed"], report["totals"]["failed"]) == (2, 1)
    assert report["timing"] == {"sum_module_s": 4.0, "lower_bound_s": 3.0, "speedup": 1.143}
    assert report["created"] == "2025-01-01T00:00:00.000+00:00"
    assert failed_modules(report) == ["b.py"]
    assert has_failures(report)


def test_empty_run_has_no_speedup(validator: jsonschema.Draft202012Validator) -> None:
    report = merged([], wall_s=0.0)
    validator.validate(report)
    assert report["timing"] == {"sum_module_s": 0.0, "lower_bound_s": 0.0, "speedup": None}
    assert not has_failures(report)


def test_lower_bound_uses_the_longest_module_or_the_fair_share() -> None:
    long_module = merged([module("a.py", duration=4.0), module("b.py", duration=1.0)], workers=2)
    balanced = merged([module(f"{i}.py", duration=2.0) for i in range(3)], workers=2)
    assert long_module["timing"]["lower_bound_s"] == 4.0
    assert balanced["timing"]["lower_bound_s"] == 3.0
    assert merged([module("a.py")], workers=0)["timing"]["lower_bound_s"] == 1.0


def test_crashed_module_makes_the_run_fail_without_failed_tests() -> None:
    crashed = build_module_report(
        module="c.py", worker="w1", started=T0, finished=T0, results=[], outcome="crashed"
    )
    report = merged([module("a.py", "passed"), crashed])
    assert failed_modules(report) == ["c.py"]


def test_tests_that_never_ran_make_the_run_not_green() -> None:
    never_started = build_module_report(
        module="n.py",
        worker=None,
        started=None,
        finished=None,
        results=[],
        outcome="not_run",
        expected_nodeids=["n.py::a", "n.py::b"],
    )
    # A worker that collected none of the module's tests: it "finished" without running any.
    collected_none = build_module_report(
        module="w.py",
        worker="w1",
        started=T0,
        finished=T0,
        results=[],
        expected_nodeids=["w.py::a"],
    )
    # Some of its tests ran, the rest never did.
    cut_short = build_module_report(
        module="p.py",
        worker="w1",
        started=T0,
        finished=T0,
        results=[record("p.py::a", "passed")],
        expected_nodeids=["p.py::a", "p.py::b"],
    )
    assert collected_none["outcome"] == "not_run"
    assert cut_short["outcome"] == "interrupted"
    for incomplete in (never_started, collected_none, cut_short):
        report = merged([module("a.py", "passed"), incomplete])
        assert has_failures(report), incomplete["module"]
        # "Modules to rerun": running them again completes the run.
        assert failed_modules(report) == [incomplete["module"]]
    assert not has_failures(merged([module("a.py", "passed", "skipped", "xfailed")]))


def test_failed_modules_lists_every_module_to_rerun_in_path_order() -> None:
    never_started = build_module_report(
        module="c.py",
        worker=None,
        started=None,
        finished=None,
        results=[],
        outcome="not_run",
        expected_nodeids=["c.py::a"],
    )
    report = merged(
        [module("d.py", "failed"), module("b.py", "passed"), never_started, module("a.py", "error")]
    )
    assert failed_modules(report) == ["a.py", "c.py", "d.py"]


def test_non_finite_durations_do_not_break_the_json(tmp_path: Path) -> None:
    (result,) = fold_test_reports([phase("t.py::a", "call", duration=float("nan"))])
    assert result["duration_s"] == 0.0
    write_json_atomic(tmp_path / "r.json", {"tests": [result]})


# --------------------------------------------------------------------------- merging

module_names = st.lists(
    st.from_regex(r"tests/test_[a-z]{1,6}\.py", fullmatch=True), min_size=1, max_size=8, unique=True
)


@given(
    names=module_names,
    data=st.data(),
)
def test_merge_of_shards_equals_the_unsharded_run(names: list[str], data: st.DataObject) -> None:
    outcomes = st.sampled_from(["passed", "failed", "error", "skipped", "xfailed", "not_run"])
    modules = [
        module(
            name,
            *data.draw(st.lists(outcomes, max_size=4)),
            duration=data.draw(st.floats(0, 100, allow_nan=False)),
        )
        for name in names
    ]
    shard_of = data.draw(st.lists(st.integers(0, 2), min_size=len(modules), max_size=len(modules)))
    workers = data.draw(st.lists(st.integers(1, 4), min_size=3, max_size=3))
    walls = data.draw(st.lists(st.floats(0, 100, allow_nan=False), min_size=3, max_size=3))
    shards = [
        merged(
            [m for m, s in zip(modules, shard_of, strict=True) if s == index],
            wall_s=walls[index],
            workers=workers[index],
        )
        for index in range(3)
    ]
    unsharded = merged(modules, wall_s=max(walls), workers=sum(workers))
    assert merge_reports(shards) == unsharded
    # Merging is order-insensitive when no module repeats.
    assert merge_reports(shards[::-1]) == unsharded


def test_later_reports_replace_earlier_modules() -> None:
    first = merged([module("a.py", "failed"), module("b.py", "passed")])
    rerun = merged([module("a.py", "passed", "passed")], workers=1)
    result = merge_reports([first, rerun])
    assert [m["outcome"] for m in result["modules"]] == ["passed", "passed"]
    assert result["totals"]["tests"] == 3
    assert result["workers"] == 3


def test_merge_keeps_earliest_time_and_agreeing_snapshot() -> None:
    early = merged([module("a.py", "passed")])
    late = {**merged([module("b.py", "passed")]), "created": "2025-01-02T00:00:00.000+00:00"}
    other = {**late, "snapshot": "def456"}
    assert merge_reports([late, early])["created"] == early["created"]  # type: ignore[list-item]
    assert merge_reports([early, late])["snapshot"] == "abc123"  # type: ignore[list-item]
    assert merge_reports([early, other])["snapshot"] is None  # type: ignore[list-item]


def test_merge_does_not_mutate_its_inputs() -> None:
    shard = merged([module("b.py", "passed"), module("a.py", "failed")])
    before = json.dumps(shard, sort_keys=True)
    merge_reports([shard, shard])
    assert json.dumps(shard, sort_keys=True) == before


def test_merge_needs_a_report() -> None:
    with pytest.raises(ValueError, match="at least one"):
        merge_reports([])


# --------------------------------------------------------------------------- files


def test_write_json_atomic_is_sorted_indented_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "new" / "report.json"
    write_json_atomic(target, {"b": 1, "a": [1, 2]})
    write_json_atomic(target, {"b": 2, "a": []})
    assert target.read_text(encoding="utf-8") == '{\n  "a": [],\n  "b": 2\n}\n'
    assert os.listdir(target.parent) == ["report.json"]


@pytest.mark.parametrize("durable", [False, True])
def test_write_json_atomic_fsyncs_only_when_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, durable: bool
) -> None:
    synced: list[int] = []
    monkeypatch.setattr(os, "fsync", synced.append)
    write_json_atomic(tmp_path / "r.json", {"a": 1}, durable=durable)
    assert len(synced) == (1 if durable else 0)
    assert json.loads((tmp_path / "r.json").read_text(encoding="utf-8")) == {"a": 1}


def test_write_json_atomic_honours_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_json_atomic(tmp_path / "r.json", {})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "r.json").stat().st_mode) == 0o644


def test_write_json_atomic_keeps_the_old_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    write_json_atomic(target, {"ok": True})
    with pytest.raises(ValueError, match="JSON"):
        write_json_atomic(target, {"bad": float("nan")})
    assert json.loads(target.read_text(encoding="utf-8")) == {"ok": True}
    assert os.listdir(tmp_path) == ["r.json"]


def test_report_round_trips_through_a_file(
    tmp_path: Path, validator: jsonschema.Draft202012Validator
) -> None:
    report = merged([module("a.py", "passed", "failed"), module("b.py")])
    write_json_atomic(tmp_path / "r.json", report)
    validator.validate(json.loads((tmp_path / "r.json").read_text(encoding="utf-8")))
    assert load_report(tmp_path / "r.json") == report


def test_load_ignores_unknown_keys(tmp_path: Path) -> None:
    report = merged([module("a.py", "failed", "passed")])
    data: dict[str, Any] = json.loads(json.dumps(report))
    data["from_the_future"] = 1
    data["modules"][0]["tests"][0]["extra"] = "x"
    # Optional text fields may be missing.
    del data["modules"][0]["tests"][0]["stdout"]
    (tmp_path / "r.json").write_text(json.dumps(data), encoding="utf-8")
    assert load_report(tmp_path / "r.json") == report


def break_field(data: dict[str, Any]) -> None:
    data["modules"][0]["counts"]["passed"] = "x"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(None, "cannot read the report", id="missing"),
        pytest.param(b"\xff\xfe", "not a UTF-8 text file", id="binary"),
        pytest.param(b"{", r"not valid JSON \(line 1, column 2", id="truncated"),
        pytest.param(b"[]", "not a pytest-parallel-modules report", id="list"),
        pytest.param(b'{"a": 1}', "not a pytest-parallel-modules report", id="no-version"),
        pytest.param(b'{"schema_version": 3}', "schema_version 3 is not supported", id="newer"),
        pytest.param(b'{"schema_version": true}', "schema_version True", id="bool-version"),
    ],
)
def test_load_rejects_bad_files(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "r.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ReportError, match=message) as excinfo:
        load_report(path)
    assert isinstance(excinfo.value, ParallelModulesError)
    assert excinfo.value.path == str(path)
    assert str(excinfo.value).startswith(f"{path}: ")


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("modules", 0, "counts", "passed"), "x", r"modules\[0\]\.counts\.passed: expected a non"),
        (("modules", 0, "counts", "failed"), True, r"modules\[0\]\.counts\.failed"),
        (("modules", 0, "outcome"), "exploded", r"modules\[0\]\.outcome: expected one of passed"),
        (("modules", 0, "tests", 0, "when"), "later", r"modules\[0\]\.tests\[0\]\.when"),
        (("modules", 0, "started"), "yesterday", r"modules\[0\]\.started: expected an ISO 8601"),
        (("timing", "speedup"), "fast", r"timing\.speedup"),
        (("wall_s",), -1, r"report\.wall_s: expected a non-negative number"),
        (("args",), ["ok", 1], r"args: expected a list of strings"),
        (("modules",), {}, r"report\.modules: expected a list, got dict"),
        (("modules", 0), None, r"modules\[0\]: expected an object, got null"),
    ],
)
def test_load_names_the_bad_field(
    tmp_path: Path, path: tuple[str | int, ...], value: object, message: str
) -> None:
    data: Any = json.loads(json.dumps(merged([module("a.py", "failed", "passed")])))
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    (tmp_path / "r.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ReportError, match=message):
        load_report(tmp_path / "r.json")


def test_load_reports_a_missing_field(tmp_path: Path) -> None:
    data: Any = json.loads(json.dumps(merged([module("a.py", "passed")])))
    del data["modules"][0]["counts"]["xfailed"]
    (tmp_path / "r.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ReportError, match=r"modules\[0\]\.counts: missing field 'xfailed'"):
        load_report(tmp_path / "r.json")


def test_counts_cover_every_outcome() -> None:
    assert set(COUNT_FIELDS) == set(Counts.__annotations__)


# --------------------------------------------------------------------------- file names


@pytest.mark.parametrize(
    ("module_path", "expected"),
    [
        ("tests/unit/test_x.py", "tests__unit__test_x.py.json"),
        ("test_x.py", "test_x.py.json"),
        ("tests/sub-dir/test_a-b.py", "tests__sub-dir__test_a-b.py.json"),
    ],
)
def test_plain_module_names_stay_readable(module_path: str, expected: str) -> None:
    assert module_report_filename(module_path) == expected


@pytest.mark.parametrize(
    ("module_path", "prefix"),
    [
        ("../../etc/passwd", "________etc__passwd+"),
        (".hidden/test_x.py", "_hidden__test_x.py+"),
        ("tests\\test_x.py", "tests_test_x.py+"),
        ("a__b.py", "a__b.py+"),
        ("tests/__init__.py", "tests____init__.py+"),
        ("", "+"),
        ("x.", "x_+"),
        ("-rf", "_rf+"),
        ("tests/tést.py", "tests__t_st.py+"),
        ("a" * 300, "a" * 120 + "+"),
    ],
)
def test_unsafe_or_ambiguous_names_get_a_hash(module_path: str, prefix: str) -> None:
    name = module_report_filename(module_path)
    assert name.startswith(prefix)
    assert len(name) == len(prefix) + 16 + len(".json")


def test_names_that_would_collide_are_told_apart() -> None:
    # "a_/b" and "a/_b" both read "a___b"; "a/b" and "a__b" both read "a__b".
    names = {module_report_filename(m) for m in ["a_/b", "a/_b", "a/b", "a__b", "a\\b", "a?b"]}
    assert len(names) == 6


@given(st.text())
def test_file_names_never_escape_the_directory(module_path: str) -> None:
    name = module_report_filename(module_path)
    assert name.endswith(".json")
    assert 0 < len(name) <= 142
    assert set(name) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._+-")
    assert ".." not in name
    assert not name.startswith((".", "-"))
    directory = Path("/reports")
    assert (directory / name).parent == directory
    assert os.path.normpath(directory / name) == str(directory / name)


@given(st.text(), st.text())
def test_distinct_modules_get_distinct_file_names(first: str, second: str) -> None:
    if first != second:
        assert module_report_filename(first) != module_report_filename(second)


@given(st.lists(st.from_regex(r"[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?", fullmatch=True), min_size=1))
def test_plain_paths_get_no_hash(components: list[str]) -> None:
    path = "/".join(components)
    readable = path.replace("/", "__")
    if ".." not in path and len(readable) <= 120:
        assert module_report_filename(path) == readable + ".json"


def test_plain_passes_cost_a_few_bytes_and_expand_back_to_full_records() -> None:
    report = module("pkg/test_a.py", "passed", "failed", "passed")
    assert [test["outcome"] for test in report["tests"]] == ["failed"]
    assert sorted(report["passed"]) == ["test_0", "test_2"]
    expanded = module_results(report)
    assert sorted(record["nodeid"] for record in expanded) == [
        "pkg/test_a.py::test_0",
        "pkg/test_a.py::test_1",
        "pkg/test_a.py::test_2",
    ]
    assert report["counts"]["passed"] == 2


def test_long_output_is_stored_whole_only_in_the_module_file() -> None:
    text = "x" * 50_000
    record_ = record("a.py::test_0", "failed")
    record_["stdout"] = text
    report = build_module_report(
        module="a.py", worker="w1", started=1.0, finished=2.0, results=[record_]
    )
    assert report["tests"][0]["stdout"] == text  # the module file keeps it whole
    kept = merged([report])["modules"][0]["tests"][0]["stdout"]
    assert len(kept) < 2_200
    assert "the whole stdout is in modules/a.py.json" in kept
