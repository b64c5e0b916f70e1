"""A split module everywhere but the rules: options, ledger, reports, summary, live display.

Everything here is driven by plain calls (the ledger, the pure report and
summary builders, the display's state) except the option tests, which run
pytest in-process without workers.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
import xml.etree.ElementTree as ET

import jsonschema  # type: ignore[import-untyped]  # the test environment has no stubs for it
import pytest
from rich.console import Console

from pytest_parallel_modules.grouping import ModuleGroup
from pytest_parallel_modules.grouping import units_of
from pytest_parallel_modules.grouping import WorkUnit
from pytest_parallel_modules.junit_retries import add_attempts
from pytest_parallel_modules.junit_retries import earlier_attempts
from pytest_parallel_modules.ledger import LossKind
from pytest_parallel_modules.ledger import RunLedger
from pytest_parallel_modules.options import parse_split_mode
from pytest_parallel_modules.progress import estimate_remaining
from pytest_parallel_modules.progress import ProgressState
from pytest_parallel_modules.progress import render_progress
from pytest_parallel_modules.reports import AttemptRecord
from pytest_parallel_modules.reports import build_merged_report
from pytest_parallel_modules.reports import FailureRecord
from pytest_parallel_modules.reports import load_report
from pytest_parallel_modules.reports import merge_reports
from pytest_parallel_modules.reports import MergedReport
from pytest_parallel_modules.reports import SplitRecord
from pytest_parallel_modules.reports import write_json_atomic
from pytest_parallel_modules.summary import bottleneck
from pytest_parallel_modules.summary import render_markdown
from pytest_parallel_modules.summary import render_summary
from pytest_parallel_modules.summary import split_notes


SCHEMA_PATH = Path(__file__).parents[2] / "docs" / "report.schema.json"
BIG = "tests/test_big.py"


def phases(nodeid: str, outcome: str = "passed") -> list[pytest.TestReport]:
    return [
        pytest.TestReport(
            nodeid=nodeid,
            location=(BIG, 1, nodeid),
            keywords={},
            outcome=outcome if when == "call" else "passed",  # type: ignore[arg-type]
            longrepr="boom" if outcome == "failed" and when == "call" else None,
            when=when,  # type: ignore[arg-type]
            duration=0.5,
        )
        for when in ("setup", "call", "teardown")
    ]


def split_units(parts: int = 3, per_part: int = 2) -> tuple[WorkUnit, ...]:
    groups = [
        ModuleGroup(BIG, tuple(f"{BIG}::test_{p}_{i}" for i in range(per_part)))
        for p in range(parts)
    ] + [ModuleGroup("tests/test_small.py", ("tests/test_small.py::test_a",))]
    return units_of(groups)


def run(
    ledger: RunLedger,
    unit: WorkUnit,
    worker: str,
    *,
    start: float,
    failing: tuple[str, ...] = (),
    tests: int | None = None,
) -> None:
    ledger.assign(unit, worker, start)
    ledger.started(worker, unit.id, now=start, perf=start, collect_s=0.2)
    for nodeid in unit.nodeids[:tests]:
        location = (BIG, 1, nodeid)
        ledger.test_started(worker, nodeid, location)
        ledger.test_finished(
            worker, nodeid, location, phases(nodeid, "failed" if nodeid in failing else "passed")
        )


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("raw", "mode"), [("auto", "auto"), (" OFF ", "off"), ("Always", "always")]
)
def test_split_modes_parse(raw: str, mode: str) -> None:
    assert parse_split_mode(raw, source="--split-modules") == mode


@pytest.mark.parametrize(
    ("args", "ini", "message"),
    [
        (
            ["--split-modules=sometimes"],
            "",
            "--split-modules: expected 'auto', 'off' or 'always', got 'sometimes'",
        ),
        (
            [],
            "split_modules = yes",
            "ini split_modules: expected 'auto', 'off' or 'always', got 'yes'",
        ),
    ],
)
def test_a_bad_split_mode_is_a_usage_error_naming_the_option_and_value(
    pytester: pytest.Pytester, args: list[str], ini: str, message: str
) -> None:
    pytester.makeini(f"[pytest]\nasyncio_default_fixture_loop_scope = function\n{ini}\n")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])


# --------------------------------------------------------------------------- the ledger


def test_a_split_module_is_reported_once_and_measured_as_the_sum_of_its_parts() -> None:
    units = split_units()
    ledger = RunLedger(units)
    for index, worker in enumerate(("w1", "w2", "w3")):
        unit = ledger.next_unit()
        assert unit is not None and unit.module == BIG
        run(ledger, unit, worker, start=100.0 + index)
    finished = [
        ledger.unit_finished(w, u.id, now=110.0, collect_s=0.2, run_s=3.0, completed=True)
        for w, u in zip(("w1", "w2", "w3"), units, strict=False)
    ]
    # Announced once, when its last part is final.
    assert [len(decisions.finished_modules) for decisions in finished] == [0, 0, 1]
    [report] = finished[-1].finished_modules
    assert report["counts"]["passed"] == 6
    assert [(unit["id"], unit["worker"]) for unit in report["units"]] == [
        (f"{BIG}[1/3]", "w1"),
        (f"{BIG}[2/3]", "w2"),
        (f"{BIG}[3/3]", "w3"),
    ]
    measured = ledger.measurements()
    # The history's module figure is the sum of the parts' run times; collection
    # (once per worker, before any test) counts once.
    assert measured.modules[BIG].total_s == pytest.approx(9.0)
    assert measured.modules[BIG].collect_s == pytest.approx(0.2)
    assert measured.modules[BIG].complete
    assert len(measured.tests) == 6


def test_a_failure_in_one_part_fails_the_module_as_one_for_rerun_and_fail_fast() -> None:
    units = split_units(parts=2)
    ledger = RunLedger(units)
    first, second = ledger.next_unit(), ledger.next_unit()
    assert first is not None and second is not None
    run(ledger, first, "w1", start=1.0, failing=(first.nodeids[0],))
    run(ledger, second, "w2", start=1.0, tests=1)
    ledger.unit_finished("w1", first.id, now=5.0, collect_s=0.1, run_s=1.0, completed=True)
    # --fail-fast-modules stops the run: the other part's worker is stopped mid-part.
    ledger.stop()
    decisions = ledger.worker_lost("w2", LossKind.INTERRUPT, "stopped", now=6.0)
    [report] = decisions.finished_modules
    assert report["outcome"] == "failed"  # the worst of its parts'
    assert report["counts"]["failed"] == 1 and report["counts"]["not_run"] == 1
    # The failed-modules state (what --rerun-failed-modules reruns, whole) names the module.
    assert ledger.module_verdicts()[BIG] == "failed"
    assert not ledger.measurements().modules[BIG].complete


def test_a_failing_part_is_retried_alone_and_the_module_still_reported_once() -> None:
    units = split_units(parts=2)
    ledger = RunLedger(units, retries=1)
    first, second = ledger.next_unit(), ledger.next_unit()
    assert first is not None and second is not None
    run(ledger, first, "w1", start=1.0, failing=(first.nodeids[1],))
    run(ledger, second, "w2", start=1.0)
    retry = ledger.unit_finished("w1", first.id, now=5.0, collect_s=0.1, run_s=1.0, completed=True)
    assert [unit.id for unit in retry.retries] == [first.id]
    assert (
        ledger.unit_finished(
            "w2", second.id, now=5.0, collect_s=0.1, run_s=1.0, completed=True
        ).finished_modules
        == []
    )
    again = ledger.next_retry()
    assert again is not None and again.id == first.id
    run(ledger, again, "w3", start=6.0)
    [report] = ledger.unit_finished(
        "w3", again.id, now=9.0, collect_s=0.1, run_s=1.0, completed=True
    ).finished_modules
    assert report["outcome"] == "passed"
    assert report["flaky"] == [first.nodeids[1]]
    assert [attempt["outcome"] for attempt in report["attempts"]] == ["failed", "passed"]


# --------------------------------------------------------------------------- reports


def split_report(
    *, workers: int = 3, splits: list[SplitRecord] | None = None, wall_s: float = 4.2
) -> MergedReport:
    units = split_units()
    ledger = RunLedger(units)
    for index, unit in enumerate(units):
        worker = f"w{index % workers + 1}"
        run(ledger, unit, worker, start=100.0)
        ledger.unit_finished(
            worker,
            unit.id,
            now=104.0 if unit.module == BIG else 100.5,
            collect_s=0.1,
            run_s=4.0,
            completed=True,
        )
    return build_merged_report(
        modules=ledger.module_reports,
        wall_s=wall_s,
        workers=workers,
        args=[],
        rootdir="/repo",
        snapshot=None,
        created=100.0,
        splits=splits
        if splits is not None
        else [
            SplitRecord(module=BIG, estimate_s=12.0, share=0.8, parts=3, reason=None),
            SplitRecord(
                module="tests/test_db.py",
                estimate_s=5.0,
                share=0.33,
                parts=1,
                reason="module-scoped fixture `db` in tests/test_db.py:12",
            ),
        ],
    )


def test_the_merged_report_keeps_splits_and_bounds_a_split_module_by_its_parts(
    tmp_path: Path,
) -> None:
    report = split_report()
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(schema).validate(report)
    # Three parts of 4 s side by side: the longest piece is 4 s, not their 12 s sum.
    assert report["timing"]["sum_module_s"] == pytest.approx(12.5)
    assert report["timing"]["lower_bound_s"] == pytest.approx(12.5 / 3)
    path = tmp_path / "report.json"
    write_json_atomic(path, report)
    loaded = load_report(path)
    assert loaded["splits"] == report["splits"]
    merged = merge_reports([loaded, split_report(splits=[])])
    assert [split["module"] for split in merged["splits"]] == [BIG, "tests/test_db.py"]
    without = split_report(splits=[])
    assert "splits" not in without
    jsonschema.Draft202012Validator(schema).validate(without)


def test_a_split_module_is_no_bottleneck_for_its_summed_duration() -> None:
    report = split_report()
    [big] = [module for module in report["modules"] if module["module"] == BIG]
    assert big["duration_s"] == pytest.approx(12.0)
    assert big["duration_s"] > report["wall_s"]
    assert bottleneck(report) is None


# --------------------------------------------------------------------------- summary


def plain(renderable: object) -> list[str]:
    file = io.StringIO()
    Console(file=file, width=120, color_system=None, force_terminal=False).print(renderable)
    return [line.rstrip() for line in file.getvalue().splitlines()]


def test_the_summary_says_how_a_module_was_split_and_why_another_was_not() -> None:
    report = split_report()
    notes = [
        f"{BIG} ran as 3 parts on w1, w2, w3",
        "tests/test_db.py holds 33% of the work; not split: module-scoped fixture `db` in "
        "tests/test_db.py:12",
    ]
    assert split_notes(report) == notes
    lines = plain(render_summary(report, verbosity=0, rerun_command=None))
    assert all(note in lines for note in notes)
    # The module is one row of the table.
    assert sum(1 for line in lines if BIG in line and "PASSED" in line) == 1
    assert "### Split modules" in render_markdown(report)
    # Quiet: no notes.
    assert not set(notes) & set(plain(render_summary(report, verbosity=-1, rerun_command=None)))


def test_the_summary_names_the_rule_always_overrode() -> None:
    report = split_report(
        splits=[
            SplitRecord(
                module=BIG, estimate_s=12.0, share=0.8, parts=3, reason="setup_module in x.py:1"
            )
        ]
    )
    assert split_notes(report) == [
        f"{BIG} ran as 3 parts on w1, w2, w3 (--split-modules=always, although: "
        "setup_module in x.py:1)"
    ]


# --------------------------------------------------------------------------- live display


def words(line: str) -> str:
    return " ".join(line.split())


def test_the_live_display_shows_each_part_on_its_worker_and_counts_the_module_once() -> None:
    units = split_units(parts=2, per_part=2)
    first, second = units[0], units[1]
    state = ProgressState(
        started=0.0,
        plan=(BIG, "tests/test_small.py"),
        estimates={BIG: 8.0, "tests/test_small.py": 1.0},
        estimates_known=True,
        worker_count=2,
        tests_total=5,
    )
    for unit, worker in ((first, "w1"), (second, "w2")):
        state.module_started(
            BIG, worker, len(unit.nodeids), 0.0, part=unit.part, nodeids=frozenset(unit.nodeids)
        )
    state.test_finished(second.nodeids[0], 1.0)
    lines = [words(line) for line in plain(render_progress(state, 2.0, max_lines=10))]
    assert lines[:2] == [f"w1 {BIG}[1/2] 0/2 2.0s", f"w2 {BIG}[2/2] 1/2 2.0s"]
    # Each part is about half the module: 4 s estimated, 2 s gone.
    assert estimate_remaining(state, 2.0) == pytest.approx(2.0 + 1.0 / 2)
    # A part is off its worker's line with its last test; the module is done with its last part.
    state.test_finished(second.nodeids[1], 3.0)
    state.module_started("tests/test_small.py", "w2", 1, 3.0)
    lines = [words(line) for line in plain(render_progress(state, 3.5, max_lines=10))]
    assert lines[1] == "w2 tests/test_small.py 0/1 0.5s"
    assert state.modules_done == 0
    for nodeid in first.nodeids:
        state.test_finished(nodeid, 4.0)
    state.module_finished(BIG, 8.0, 4.0)
    assert state.modules_done == 1


def test_junit_gets_only_the_earlier_attempts_of_each_retried_part() -> None:
    def attempt(number: int, outcome: str, *failing: str) -> AttemptRecord:
        return AttemptRecord(
            attempt=number,
            worker="w1",
            outcome=outcome,  # type: ignore[typeddict-item]
            duration_s=0.1,
            failures=[
                FailureRecord(nodeid=nodeid, when="call", longrepr="E boom") for nodeid in failing
            ],
        )

    # Two parts retried: each part's attempts in turn, each numbered from 1.
    attempts = [
        attempt(1, "failed", f"{BIG}::test_a"),
        attempt(2, "failed", f"{BIG}::test_a"),
        attempt(1, "failed", f"{BIG}::test_b"),
        attempt(2, "passed"),
    ]
    assert earlier_attempts(attempts) == [attempts[0], attempts[2]]
    root = ET.fromstring(
        '<testsuites><testsuite><testcase classname="tests.test_big" name="test_a">'
        '<failure message="x"/></testcase>'
        '<testcase classname="tests.test_big" name="test_b"/></testsuite></testsuites>'
    )
    module = {"module": BIG, "flaky": [f"{BIG}::test_b"], "attempts": attempts}
    assert add_attempts(root, [module]) == 2  # type: ignore[list-item]
    kinds = {case.get("name"): [child.tag for child in case] for case in root.iter("testcase")}
    assert kinds == {"test_a": ["failure", "rerunFailure"], "test_b": ["flakyFailure"]}
