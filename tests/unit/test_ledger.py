"""The run ledger, driven by plain method calls: no process, no pytest session."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from pytest_parallel_modules.grouping import group_by_module
from pytest_parallel_modules.grouping import ModuleGroup
from pytest_parallel_modules.grouping import units_of
from pytest_parallel_modules.grouping import WorkUnit
from pytest_parallel_modules.ledger import AttemptKind
from pytest_parallel_modules.ledger import LossKind
from pytest_parallel_modules.ledger import RunLedger
from pytest_parallel_modules.ledger import UnitState


def report(nodeid: str, when: str = "call", outcome: str = "passed") -> pytest.TestReport:
    return pytest.TestReport(
        nodeid=nodeid,
        location=(nodeid.split("::")[0], 1, nodeid),
        keywords={},
        outcome=outcome,  # type: ignore[arg-type]
        longrepr="boom" if outcome == "failed" else None,
        when=when,  # type: ignore[arg-type]
        duration=0.5,
    )


def test_phases(nodeid: str, outcome: str = "passed") -> list[pytest.TestReport]:
    return [report(nodeid, "setup"), report(nodeid, "call", outcome), report(nodeid, "teardown")]


test_phases.__test__ = False  # type: ignore[attr-defined]


def units(*modules: tuple[str, int]) -> tuple[WorkUnit, ...]:
    return units_of(
        group_by_module(f"{module}::test_{i}" for module, count in modules for i in range(count))
    )


def run_unit(
    ledger: RunLedger,
    unit: WorkUnit,
    worker: str,
    *,
    now: float = 100.0,
    failing: Sequence[str] = (),
    stop_after: int | None = None,
) -> None:
    """Drive one unit through a worker as the controller would."""
    ledger.assign(unit, worker, now)
    ledger.started(worker, unit.id, now=now, perf=now, collect_s=0.1)
    ran = 0
    for nodeid in unit.nodeids:
        if stop_after is not None and ran >= stop_after:
            break
        location = (unit.module, 1, nodeid)
        ledger.test_started(worker, nodeid, location)
        ledger.test_finished(
            worker,
            nodeid,
            location,
            test_phases(nodeid, "failed" if nodeid in failing else "passed"),
        )
        ran += 1


def finish(ledger: RunLedger, unit: WorkUnit, worker: str, *, completed: bool = True):
    return ledger.unit_finished(
        worker, unit.id, now=110.0, collect_s=0.1, run_s=2.0, completed=completed
    )


def test_units_of_numbers_the_parts_of_one_module() -> None:
    groups = (
        ModuleGroup("a.py", ("a.py::x",)),
        ModuleGroup("b.py", ("b.py::y", "b.py::z")),
        ModuleGroup("a.py", ("a.py::w",)),
    )
    assert [(unit.id, unit.part) for unit in units_of(groups)] == [
        ("a.py[1/2]", (1, 2)),
        ("b.py", (1, 1)),
        ("a.py[2/2]", (2, 2)),
    ]


def test_a_unit_that_ran_to_its_end_makes_its_module_report() -> None:
    plan = units(("a.py", 2), ("b.py", 1))
    ledger = RunLedger(plan)
    unit = ledger.next_unit()
    assert unit == plan[0]
    run_unit(ledger, unit, "w1", failing=["a.py::test_1"])
    decisions = finish(ledger, unit, "w1")
    [module] = decisions.finished_modules
    assert module["module"] == "a.py"
    assert module["outcome"] == "failed"
    assert module["counts"]["passed"] == 1
    assert module["counts"]["failed"] == 1
    assert module["worker"] == "w1"
    assert ledger.entries["a.py"].state is UnitState.FINAL


def test_test_events_replay_at_once_without_retries() -> None:
    ledger = RunLedger(units(("a.py", 1)))
    unit = ledger.next_unit()
    assert unit is not None
    ledger.assign(unit, "w1", 1.0)
    assert ledger.test_started("w1", "a.py::test_0", ("a.py", 1, "t"))
    assert ledger.test_finished("w1", "a.py::test_0", ("a.py", 1, "t"), test_phases("a.py::test_0"))


def test_a_crash_fails_the_running_test_and_requeues_the_rest_in_front() -> None:
    plan = units(("a.py", 3), ("b.py", 1))
    ledger = RunLedger(plan)
    unit = ledger.next_unit()
    assert unit is not None
    ledger.assign(unit, "w1", 1.0)
    ledger.started("w1", unit.id, now=1.0, perf=1.0, collect_s=0.0)
    location = ("a.py", 1, "x")
    ledger.test_started("w1", "a.py::test_0", location)
    ledger.test_finished("w1", "a.py::test_0", location, test_phases("a.py::test_0"))
    ledger.test_started("w1", "a.py::test_1", location)
    decisions = ledger.worker_lost("w1", LossKind.CRASH, "worker w1 crashed", now=2.0)
    [event, logfinish] = decisions.replay
    assert event.report is not None and event.report.failed
    assert event.nodeid == "a.py::test_1"
    assert logfinish.kind == "logfinish"
    [rest] = decisions.requeued
    assert rest.id == "a.py" and rest.nodeids == ("a.py::test_2",)
    assert decisions.finished_modules == []
    assert ledger.next_unit() == rest
    # The rest runs on another worker as a continuation; the module report has all three.
    ledger.assign(rest, "w2", 3.0)
    ledger.started("w2", rest.id, now=3.0, perf=3.0, collect_s=0.0)
    ledger.test_started("w2", "a.py::test_2", location)
    ledger.test_finished("w2", "a.py::test_2", location, test_phases("a.py::test_2"))
    decisions = ledger.unit_finished("w2", rest.id, now=4.0, collect_s=0, run_s=1, completed=True)
    [module] = decisions.finished_modules
    assert [attempt.kind for attempt in ledger.entries["a.py"].attempts] == [
        AttemptKind.FIRST,
        AttemptKind.CONTINUATION,
    ]
    assert module["counts"]["tests"] == 3
    assert module["counts"]["failed"] == 1
    assert module["outcome"] == "crashed"
    assert "a.py::test_1" in ledger.lost


def test_a_timeout_ends_the_unit_with_the_rest_not_run() -> None:
    ledger = RunLedger(units(("a.py", 3)))
    unit = ledger.next_unit()
    assert unit is not None
    ledger.assign(unit, "w1", 1.0)
    ledger.started("w1", unit.id, now=1.0, perf=1.0, collect_s=0.0)
    ledger.test_started("w1", "a.py::test_0", ("a.py", 1, "x"))
    decisions = ledger.worker_lost("w1", LossKind.TIMEOUT, "timed out after 5s", now=6.0)
    assert decisions.requeued == []
    [module] = decisions.finished_modules
    assert module["outcome"] == "timeout"
    assert module["counts"]["failed"] == 1
    assert module["counts"]["not_run"] == 2


def test_an_interrupt_names_the_running_test_and_counts_every_selected_test() -> None:
    plan = units(("a.py", 3), ("b.py", 2))
    ledger = RunLedger(plan)
    unit = ledger.next_unit()
    assert unit is not None
    ledger.assign(unit, "w1", 1.0)
    ledger.started("w1", unit.id, now=1.0, perf=1.0, collect_s=0.0)
    location = ("a.py", 1, "x")
    ledger.test_started("w1", "a.py::test_0", location)
    ledger.test_finished("w1", "a.py::test_0", location, test_phases("a.py::test_0"))
    ledger.test_started("w1", "a.py::test_1", location)
    ledger.stop()
    decisions = ledger.worker_lost(
        "w1", LossKind.INTERRUPT, "Thread 0x1 (most recent call first)", now=2.0
    )
    assert decisions.replay == []  # an interrupted test has no result to replay
    [module] = decisions.finished_modules
    assert module["outcome"] == "interrupted"
    interrupted = [t for t in module["tests"] if t["outcome"] == "interrupted"]
    assert [t["nodeid"] for t in interrupted] == ["a.py::test_1"]
    assert "most recent call first" in (interrupted[0]["longrepr"] or "")
    rest = ledger.finish()
    [never] = rest.finished_modules
    assert never["outcome"] == "not_run"
    total = sum(report["counts"]["tests"] for report in ledger.module_reports)
    assert total == 5
    assert module["counts"]["passed"] == 1 and module["counts"]["not_run"] == 1


def test_a_unit_handed_out_ahead_goes_back_unstarted() -> None:
    plan = units(("a.py", 1), ("b.py", 1))
    ledger = RunLedger(plan)
    first, second = ledger.next_unit(), ledger.next_unit()
    assert first is not None and second is not None
    ledger.assign(first, "w1", 1.0)
    ledger.started("w1", first.id, now=1.0, perf=1.0, collect_s=0.0)
    ledger.assign(second, "w1", 1.0)
    decisions = ledger.worker_lost("w1", LossKind.CRASH, "died", now=2.0)
    assert [unit.id for unit in decisions.requeued] == ["a.py", "b.py"]
    assert ledger.next_unit() == first
    assert ledger.entries["b.py"].state is UnitState.PENDING
    assert ledger.entries["b.py"].attempts == []


def test_a_failing_unit_is_retried_and_only_the_last_attempt_replays() -> None:
    ledger = RunLedger(units(("a.py", 2)), retries=1)
    unit = ledger.next_unit()
    assert unit is not None
    run_unit(ledger, unit, "w1", failing=["a.py::test_0"])
    decisions = finish(ledger, unit, "w1")
    assert decisions.retries == [unit]
    assert decisions.replay == []
    assert ledger.next_unit() is None
    retry = ledger.next_retry()
    assert retry == unit
    run_unit(ledger, retry, "w2")
    decisions = finish(ledger, retry, "w2")
    kinds = [event.kind for event in decisions.replay]
    assert kinds == ["logstart", "report", "report", "report", "logfinish"] * 2
    assert {event.worker_id for event in decisions.replay} == {"w2"}
    [module] = decisions.finished_modules
    assert module["outcome"] == "passed"
    assert module["flaky"] == ["a.py::test_0"]
    assert [attempt["attempt"] for attempt in module["attempts"]] == [1, 2]


def test_a_retry_that_never_ran_leaves_the_failed_attempt_standing() -> None:
    ledger = RunLedger(units(("a.py", 1)), retries=2)
    unit = ledger.next_unit()
    assert unit is not None
    run_unit(ledger, unit, "w1", failing=["a.py::test_0"])
    finish(ledger, unit, "w1")
    ledger.stop()
    decisions = ledger.finish()
    [module] = decisions.finished_modules
    assert module["outcome"] == "failed"
    assert next(event.kind for event in decisions.replay) == "logstart"


def test_strict_retries_turn_a_flaky_pass_into_a_failure() -> None:
    ledger = RunLedger(units(("a.py", 1)), retries=1, strict_retries=True)
    unit = ledger.next_unit()
    assert unit is not None
    run_unit(ledger, unit, "w1", failing=["a.py::test_0"])
    finish(ledger, unit, "w1")
    retry = ledger.next_retry()
    assert retry is not None
    run_unit(ledger, retry, "w2")
    decisions = finish(ledger, retry, "w2")
    calls = [e.report for e in decisions.replay if e.report is not None and e.report.when == "call"]
    assert [r.outcome for r in calls] == ["failed"]
    [module] = decisions.finished_modules
    assert module["outcome"] == "failed"


def test_parts_of_a_module_make_one_module_report_with_units() -> None:
    groups = (ModuleGroup("a.py", ("a.py::x",)), ModuleGroup("a.py", ("a.py::y", "a.py::z")))
    ledger = RunLedger(units_of(groups))
    first, second = ledger.next_unit(), ledger.next_unit()
    assert first is not None and second is not None
    run_unit(ledger, first, "w1")
    assert finish(ledger, first, "w1").finished_modules == []
    run_unit(ledger, second, "w2", failing=["a.py::z"])
    [module] = finish(ledger, second, "w2").finished_modules
    assert module["counts"]["tests"] == 3
    assert module["outcome"] == "failed"
    assert [unit["id"] for unit in module["units"]] == ["a.py[1/2]", "a.py[2/2]"]
    assert module["duration_s"] == pytest.approx(20.0)  # 10 s each, summed
    assert ledger.module_verdicts() == {"a.py": "failed"}


def test_measurements_are_complete_only_for_what_ran_to_its_end() -> None:
    ledger = RunLedger(units(("a.py", 2), ("b.py", 2)))
    a, b = ledger.next_unit(), ledger.next_unit()
    assert a is not None and b is not None
    run_unit(ledger, a, "w1")
    finish(ledger, a, "w1")
    run_unit(ledger, b, "w2", stop_after=1)
    ledger.test_started("w2", "b.py::test_1", ("b.py", 1, "x"))
    ledger.worker_lost("w2", LossKind.CRASH, "died", now=5.0)
    measured = ledger.measurements()
    assert measured.modules["a.py"].complete
    assert not measured.modules["b.py"].complete
    assert measured.tests["b.py::test_0"].complete
    assert not measured.tests["b.py::test_1"].complete


def test_ran_before_names_what_a_worker_ran_earlier() -> None:
    ledger = RunLedger(units(("a.py", 1), ("b.py", 1), ("c.py", 1)))
    for now, worker in ((1.0, "w1"), (2.0, "w2"), (3.0, "w1")):
        unit = ledger.next_unit()
        assert unit is not None
        run_unit(ledger, unit, worker, now=now)
        finish(ledger, unit, worker)
    assert ledger.ran_before("c.py") == {"w1": ["a.py"]}
    assert ledger.ran_before("a.py") == {"w1": []}


def test_a_stopped_ledger_hands_out_nothing_and_finishes_the_rest_as_not_run() -> None:
    ledger = RunLedger(units(("a.py", 1), ("b.py", 1)))
    ledger.stop()
    assert ledger.next_unit() is None
    assert ledger.pending() == 0
    decisions = ledger.finish()
    assert [m["outcome"] for m in decisions.finished_modules] == ["not_run", "not_run"]


def test_reporting_on_a_unit_never_handed_out_is_an_error() -> None:
    ledger = RunLedger(units(("a.py", 1)))
    with pytest.raises(LookupError, match="not handed"):
        ledger.unit_finished("w1", "a.py", now=1.0, collect_s=0, run_s=0, completed=True)


def test_the_worker_and_the_reports_agree_on_what_a_plain_report_is() -> None:
    from pytest_parallel_modules import reports
    from pytest_parallel_modules import worker

    assert worker.PLAIN_REPORT_FIELDS == reports.PLAIN_REPORT_FIELDS


def test_a_plain_passing_test_s_reports_take_the_compact_path(pytester: pytest.Pytester) -> None:
    from pytest_parallel_modules import worker

    pytester.makepyfile(
        "import pytest\n"
        "def test_plain():\n    pass\n"
        "def test_prints():\n    print('out')\n"
        "@pytest.mark.xfail\ndef test_xpass():\n    pass\n"
    )
    # pytest-html, when installed, adds an ``extras`` field to every report.
    recorder = pytester.inline_run("-p", "no:randomly", "-p", "no:html", "-p", "no:cacheprovider")
    reports = recorder.getreports("pytest_runtest_logreport")
    plain = {r.nodeid.split("::")[1]: [] for r in reports}
    for report in reports:
        plain[report.nodeid.split("::")[1]].append(worker._is_plain_pass(report))
    assert plain == {
        "test_plain": [True, True, True],
        "test_prints": [True, False, False],  # captured output travels in later phases too
        "test_xpass": [True, False, True],
    }
