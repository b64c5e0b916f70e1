"""Per-module and merged JSON reports: schema, building, PURE merge, I/O. Runs in the controller.

The controller folds the :class:`pytest.TestReport` s of each module into a
:class:`ModuleReport` (:func:`fold_test_reports`, :func:`build_module_report`),
joins the module reports of a run into a :class:`MergedReport`
(:func:`build_merged_report`) and writes both with :func:`write_json_atomic`.
``python -m pytest_parallel_modules merge`` loads several merged reports
(:func:`load_report`) and joins them with :func:`merge_reports`.

The JSON shapes are versioned by :data:`SCHEMA_VERSION` and described by
``docs/report.schema.json``. Everything here except :func:`write_json_atomic`
and :func:`load_report` is pure: plain data in, plain data out.

How a test's phases fold into one outcome follows pytest's terminal, with two
choices of our own, documented in the schema:

- The first failing phase decides: a failed setup or teardown is ``error``, a
  failed call is ``failed``. A test whose call passed and whose teardown failed
  is therefore ``error`` (pytest counts it once as passed *and* once as error).
  A test whose call failed and whose teardown failed too is ``failed``; the
  teardown error's text is appended to its ``longrepr``.
- Subtests (pytest 9's ``SubtestReport``) are entries of their own, with the
  parent's ``nodeid`` and a ``subtest`` description. ``counts`` and ``totals``
  count tests, not subtests; a test whose call passed but which contains failed
  subtests is ``failed``, as pytest 9 reports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from datetime import timezone
import hashlib
import json
import math
import os
from pathlib import Path
import re
from typing import Any
from typing import cast
from typing import Final
from typing import final
from typing import get_args
from typing import Literal
from typing import TypedDict

import pytest

from pytest_parallel_modules.atomic_files import write_atomic
from pytest_parallel_modules.errors import ParallelModulesError
from pytest_parallel_modules.outcomes import COUNT_FIELDS
from pytest_parallel_modules.outcomes import COUNT_KEYS
from pytest_parallel_modules.outcomes import FAILING_MODULE_OUTCOMES
from pytest_parallel_modules.outcomes import MODULE_OUTCOMES
from pytest_parallel_modules.outcomes import ModuleOutcome
from pytest_parallel_modules.outcomes import RESULT_OUTCOMES
from pytest_parallel_modules.outcomes import ResultOutcome
from pytest_parallel_modules.scheduling import lower_bound
from pytest_parallel_modules.timeline_data import parse_timeline
from pytest_parallel_modules.timeline_data import TimelineFormatError
from pytest_parallel_modules.timeline_data import TimelineRecord
from pytest_parallel_modules.timing import isoformat


#: Version of the JSON shapes below. Bump it on any change a reader of an older version
#: could misread. Version 2 added the ``interrupted`` test outcome and count, and the
#: ``units`` of a module that ran as several units of work.
SCHEMA_VERSION: Final = 2
#: Versions :func:`load_report` reads (older ones are read as if written now).
READABLE_SCHEMA_VERSIONS: Final = frozenset({1, 2})

Phase = Literal["setup", "call", "teardown"]
_PHASES: Final[tuple[Phase, ...]] = get_args(Phase)


class Counts(TypedDict):
    """How many tests ended in each outcome. ``tests`` is the sum of all the others."""

    tests: int
    passed: int
    failed: int
    errors: int
    skipped: int
    xfailed: int
    xpassed: int
    interrupted: int
    not_run: int


class ResultRecord(TypedDict):
    """One test (or one subtest) of a module, all of its phases folded into one outcome."""

    #: The test's node id; a subtest carries its parent's.
    nodeid: str
    #: ``None`` for a test; the subtest's description (``"[msg] (i=1)"``) for a subtest.
    subtest: str | None
    outcome: ResultOutcome
    #: Sum of the durations of the test's phases, in seconds.
    duration_s: float
    #: The phase that decided the outcome; ``None`` when the test never ran.
    when: Phase | None
    #: Full failure text of failures and errors, ``None`` otherwise.
    longrepr: str | None
    #: One line: the crash message of a failure or error, the reason of a skip or xfail.
    message: str | None
    #: Captured standard output of all phases.
    stdout: str
    #: Captured standard error of all phases.
    stderr: str


class FailureRecord(TypedDict):
    """One failing phase of one test in one attempt of a module."""

    nodeid: str
    when: Phase | None
    longrepr: str | None


class AttemptRecord(TypedDict):
    """One run of a module when ``--module-retries`` ran it more than once."""

    #: 1 for the first run, 2 for the first retry...
    attempt: int
    worker: str | None
    outcome: ModuleOutcome
    duration_s: float
    failures: list[FailureRecord]


class UnitRecord(TypedDict):
    """One unit of work of a module that ran as several (its parts)."""

    #: ``tests/test_x.py[2/3]``.
    id: str
    worker: str | None
    started: str | None
    finished: str | None
    duration_s: float
    outcome: ModuleOutcome
    #: How many tests the unit held.
    tests: int


class _ModuleRetries(TypedDict, total=False):
    #: Every run of the module, oldest first (present when it was retried).
    attempts: list[AttemptRecord]
    #: Node ids that failed in an earlier attempt and passed in the last one.
    flaky: list[str]
    #: The module's units of work, when it ran as more than one (schema version 2).
    units: list[UnitRecord]


class ModuleReport(_ModuleRetries):
    """The result of one module (test file), as one worker ran it."""

    #: Path of the module relative to the rootdir, ``/``-separated.
    module: str
    outcome: ModuleOutcome
    #: Id of the worker that ran the module (``"w1"``); ``None`` if it never started.
    worker: str | None
    #: ISO 8601 UTC times; ``None`` if unknown.
    started: str | None
    finished: str | None
    duration_s: float
    counts: Counts
    #: Every test that did not simply pass (and every test with output or a message):
    #: full records, in the order they ran.
    tests: list[ResultRecord]
    #: Tests that passed with nothing to show, a few bytes each (schema version 2): the
    #: node id after ``<module>::`` -> seconds. :func:`module_results` gives full records.
    passed: dict[str, float]


class Timing(TypedDict):
    """How well the run used its workers."""

    #: Sum of module durations: roughly what a sequential run would take.
    sum_module_s: float
    #: LB(N) = max(longest module, sum / N): no module-level scheduler can finish sooner.
    lower_bound_s: float
    #: ``sum_module_s / wall_s``; ``None`` when the wall time is zero.
    speedup: float | None


class ShardInfo(TypedDict):
    """What a shard's report says about the split it ran (``--module-shard=K/N``).

    Enough for ``merge`` to tell a complete set of shards from one that misses or
    repeats modules: every shard of one run must show the same ``count``,
    ``selected_modules`` and ``history_fingerprint``.
    """

    #: K: which share, counted from 1.
    index: int
    #: N: how many shares the run was split into.
    count: int
    #: Identifies the module estimates the split was computed from (the duration
    #: history as it applies to the selection, and the file sizes that break ties):
    #: shards with different fingerprints may have split differently.
    history_fingerprint: str
    #: Every module of the whole selection (all shares) -> its number of selected tests.
    selected_modules: dict[str, int]


class _MergedReportShard(TypedDict, total=False):
    #: Present in the report of a shard (``--module-shard``); absent in a merge of shards.
    shard: ShardInfo
    #: When each part of the run happened (#17); absent from reports of older releases.
    timeline: TimelineRecord


class SplitRecord(TypedDict):
    """A module that held more than its fair share of a run's estimated work (``--split-modules``)."""

    module: str
    #: The module's estimated seconds, from the duration history.
    estimate_s: float
    #: Its share of the run's estimated work, in ``(0, 1]``.
    share: float
    #: How many parts it ran as; 1: it ran whole.
    parts: int
    #: With one part, why it was not split; with several, the safety rule that
    #: ``--split-modules=always`` overrode (``None`` when it was safe).
    reason: str | None


class _MergedOptional(_MergedReportShard, total=False):
    #: The modules above the fair share and what became of them, largest first.
    splits: list[SplitRecord]


class MergedReport(_MergedOptional):
    """All module reports of one run (or of several shards or runs, merged)."""

    schema_version: int
    #: ISO 8601 UTC time the report was built (the earliest one, for a merge).
    created: str
    wall_s: float
    workers: int
    #: The pytest command-line arguments of the run.
    args: list[str]
    rootdir: str
    #: The snapshot commit the workers ran, ``None`` if unknown or if merged runs differ.
    snapshot: str | None
    totals: Counts
    timing: Timing
    #: Sorted by module path, so equal runs give equal reports.
    modules: list[ModuleReport]
    #: Free-form JSON added by plugins (hook ``pytest_parallel_modules_report``).
    extra: dict[str, Any]


@final
class ReportError(ParallelModulesError):
    """A report file that cannot be read: missing, not JSON, or not shaped like a report."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        #: The file, as given.
        self.path = path
        #: What is wrong with it, naming the offending field when there is one.
        self.reason = reason


# --------------------------------------------------------------------------- folding


def _empty_counts() -> Counts:
    return Counts(
        tests=0,
        passed=0,
        failed=0,
        errors=0,
        skipped=0,
        xfailed=0,
        xpassed=0,
        interrupted=0,
        not_run=0,
    )


def _seconds(value: float) -> float:
    """Round a duration for the JSON; a non-finite value (a broken clock) becomes 0."""
    # json.dumps(allow_nan=False) would refuse NaN/inf, and one bad phase must not lose the report.
    if not math.isfinite(value) or value < 0:
        return 0.0
    return round(value, 6)


def _subtest_description(report: pytest.TestReport) -> str | None:
    """Return the description of a subtest report, ``None`` for an ordinary phase report.

    pytest 9's ``SubtestReport`` (and the ``pytest-subtests`` plugin's ``SubTestReport`` on
    older pytest) carry a ``context`` with ``msg`` and ``kwargs``; duck typing covers both.
    The text matches what pytest prints after ``SUBPASSED``/``SUBFAILED``.
    """
    context = getattr(report, "context", None)
    if context is None or not hasattr(context, "msg") or not hasattr(context, "kwargs"):
        return None
    parts: list[str] = []
    if context.msg is not None:
        parts.append(f"[{context.msg}]")
    if context.kwargs:
        parts.append("(" + ", ".join(f"{k}={v}" for k, v in context.kwargs.items()) + ")")
    return " ".join(parts) or "(<subtest>)"


def _phase_outcome(report: pytest.TestReport) -> ResultOutcome:
    """Classify one phase report the way pytest's ``pytest_report_teststatus`` hooks do."""
    if report.failed:
        # A strict XPASS arrives here too: pytest turns it into a failed call.
        return "failed" if report.when == "call" else "error"
    xfail = hasattr(report, "wasxfail")
    if report.skipped:
        return "xfailed" if xfail else "skipped"
    return "xpassed" if xfail else "passed"


def _longrepr_text(report: pytest.TestReport) -> str | None:
    text = report.longreprtext if report.longrepr is not None else ""
    return text or None


def _message(report: pytest.TestReport, outcome: ResultOutcome) -> str | None:
    """Return the one-line summary pytest's short test summary would show."""
    if outcome in ("xfailed", "xpassed"):
        return str(getattr(report, "wasxfail", "")) or None
    longrepr = report.longrepr
    if outcome == "skipped":
        # A skip's longrepr is (path, lineno, "Skipped: reason"); a list once it went through JSON.
        reason: object = longrepr
        if isinstance(reason, (tuple, list)) and len(reason) == 3:
            return str(reason[2])
        return _first_line(_longrepr_text(report))
    if outcome in ("failed", "error"):
        crash = getattr(longrepr, "reprcrash", None)
        message = getattr(crash, "message", None)
        if isinstance(message, str) and message:
            return _first_line(message)
        return _first_line(_longrepr_text(report))
    return None


def _first_line(text: str | None) -> str | None:
    if not text:
        return None
    return next((line.strip() for line in text.splitlines() if line.strip()), None)


def _captured(reports: Sequence[pytest.TestReport], stream: Literal["stdout", "stderr"]) -> str:
    """Join the captured ``stream`` sections of ``reports``, each section once.

    pytest's reports are cumulative: the teardown report repeats the setup and call
    sections (``item._report_sections`` grows phase by phase), so keep the last
    content per heading instead of concatenating every report's sections.
    """
    prefix = f"Captured {stream} "
    by_heading: dict[str, str] = {}
    for report in reports:
        # Not report.get_sections(): it yields the prefix in place of the heading.
        for heading, content in report.sections:
            if heading.startswith(prefix):
                by_heading[heading] = content
    return "".join(by_heading.values())


@dataclass
class _TestPhases:
    """Accumulates the reports of one test while :func:`fold_test_reports` walks them."""

    nodeid: str
    phases: list[pytest.TestReport] = field(default_factory=list)
    subtests: list[pytest.TestReport] = field(default_factory=list)


def _fold_subtest(report: pytest.TestReport, description: str) -> ResultRecord:
    outcome = _phase_outcome(report)
    failing = outcome in ("failed", "error")
    return ResultRecord(
        nodeid=report.nodeid,
        subtest=description,
        outcome=outcome,
        duration_s=_seconds(report.duration),
        when=report.when,
        longrepr=_longrepr_text(report) if failing else None,
        message=_message(report, outcome),
        stdout=_captured([report], "stdout"),
        stderr=_captured([report], "stderr"),
    )


def _fold_phases(test: _TestPhases) -> ResultRecord:
    phases = test.phases
    failures = [report for report in phases if report.failed]
    # A failure in any phase decides (it is what fails the run); failing that, a skip in any
    # phase (the test did not really pass); failing that, the call's own verdict.
    decisive = (
        failures[0]
        if failures
        else next((r for r in phases if r.skipped), None)
        or next((r for r in phases if r.when == "call"), None)
    )
    outcome: ResultOutcome = "not_run"
    when: Phase | None = phases[-1].when if phases else None
    longrepr: str | None = None
    message: str | None = None
    # With no decisive phase, only a passed setup and/or teardown arrived: the body never
    # ran (the worker crashed or was stopped mid-test, or --setup-only).
    if decisive is not None:
        outcome, when = _phase_outcome(decisive), decisive.when
        longrepr = _join_failure_texts(failures)
        message = _message(decisive, outcome)
    failed_subtests = sum(1 for report in test.subtests if report.failed)
    if outcome in ("passed", "xpassed") and failed_subtests:
        # Mirrors pytest 9's subtests plugin, which turns such a passed call into a failure.
        outcome, when = "failed", "call"
        message = f"contains {failed_subtests} failed subtest{'s' if failed_subtests > 1 else ''}"
        longrepr = message
    return ResultRecord(
        nodeid=test.nodeid,
        subtest=None,
        outcome=outcome,
        duration_s=_seconds(math.fsum(report.duration for report in phases)),
        when=when,
        longrepr=longrepr,
        message=message,
        stdout=_captured(phases, "stdout"),
        stderr=_captured(phases, "stderr"),
    )


def _join_failure_texts(failures: Sequence[pytest.TestReport]) -> str | None:
    texts = [(report.when, _longrepr_text(report)) for report in failures]
    present = [(when, text) for when, text in texts if text]
    if len(present) <= 1:
        return present[0][1] if present else None
    return "\n\n".join(f"---------- {when} ----------\n{text}" for when, text in present)


def fold_test_reports(reports: Sequence[pytest.TestReport]) -> tuple[ResultRecord, ...]:
    """Fold the phase reports of a module's tests into one record per test. PURE.

    Called by the controller with the reports of one module, in the order they
    arrived. A test's records follow the test in that order, its subtests right
    after it. A ``setup`` report for a node id that already has phases starts a
    new test, so duplicated node ids (``--keep-duplicates``) stay separate, except
    after an attempt that pytest-rerunfailures marked ``rerun``, which it replaces.

    :param reports: setup/call/teardown (and subtest) reports, as pytest produced them.
    :returns: one :class:`ResultRecord` per test, then one per subtest of it.
    """
    plain = _plain_pass(reports)
    if plain is not None:
        return (plain,)
    tests: list[_TestPhases] = []
    current: dict[str, _TestPhases] = {}
    for report in reports:
        nodeid = report.nodeid
        test = current.get(nodeid)
        is_subtest = _subtest_description(report) is not None
        if test is None or (not is_subtest and report.when == "setup" and test.phases):
            if test is not None and any(_is_rerun(phase) for phase in test.phases):
                # pytest-rerunfailures marks an attempt "rerun" and runs the test
                # again: only the last attempt is the test's result.
                tests.remove(test)
            test = current[nodeid] = _TestPhases(nodeid)
            tests.append(test)
        (test.subtests if is_subtest else test.phases).append(report)

    records: list[ResultRecord] = []
    for test in tests:
        if any(_is_rerun(phase) for phase in test.phases):
            # pytest-rerunfailures runs a test marked "rerun" again; the controller folds
            # each test as it ends, so that attempt arrives (and is folded) on its own.
            continue
        records.append(_fold_phases(test))
        for report in test.subtests:
            description = _subtest_description(report)
            assert description is not None  # sorted into .subtests for having one
            records.append(_fold_subtest(report, description))
    return tuple(records)


#: The fields pytest itself sets on a :class:`pytest.TestReport` (the same set as
#: ``worker.PLAIN_REPORT_FIELDS``, which the self-contained worker module repeats).
PLAIN_REPORT_FIELDS: Final = frozenset(
    {
        "nodeid",
        "_id",  # pytest 9 keeps the node id here (``nodeid`` is a property)
        "location",
        "keywords",
        "outcome",
        "longrepr",
        "when",
        "user_properties",
        "sections",
        "duration",
        "start",
        "stop",
    }
)


def _plain_pass(reports: Sequence[pytest.TestReport]) -> ResultRecord | None:
    """The record of one test whose phases all passed with nothing to show, or None.

    The common case, folded without the general walk: the controller folds every
    test as it ends, so this runs once per test of the run.
    """
    if not reports or len(reports) > 3:
        return None
    nodeid = reports[0].nodeid
    whens = set()
    for report in reports:
        if (
            type(report) is not pytest.TestReport  # a subtest's report is a subclass
            or report.outcome != "passed"
            or report.longrepr is not None
            or report.sections
            or report.nodeid != nodeid
            or report.when in whens
            or not report.__dict__.keys() <= PLAIN_REPORT_FIELDS  # wasxfail, a plugin's field
        ):
            return None
        whens.add(report.when)
    if "call" not in whens:
        return None  # the body never ran: not_run (see _fold_phases)
    return ResultRecord(
        nodeid=nodeid,
        subtest=None,
        outcome="passed",
        duration_s=_seconds(math.fsum(report.duration for report in reports)),
        when=reports[-1].when,
        longrepr=None,
        message=None,
        stdout="",
        stderr="",
    )


def _is_rerun(report: pytest.TestReport) -> bool:
    # pytest-rerunfailures' own outcome, outside pytest's Literal of outcomes.
    outcome: str = report.outcome
    return outcome == "rerun"


def not_run_record(nodeid: str) -> ResultRecord:
    """Return the record of a test that never ran (its module crashed, timed out or was stopped)."""
    return ResultRecord(
        nodeid=nodeid,
        subtest=None,
        outcome="not_run",
        duration_s=0.0,
        when=None,
        longrepr=None,
        message=None,
        stdout="",
        stderr="",
    )


# --------------------------------------------------------------------------- building


def count_results(results: Sequence[ResultRecord]) -> Counts:
    """Count tests by outcome; subtest records are details of their test, not counted. PURE."""
    counts = _empty_counts()
    for result in results:
        if result["subtest"] is None:
            counts[COUNT_KEYS[result["outcome"]]] += 1
            counts["tests"] += 1
    return counts


def _add_counts(all_counts: Sequence[Counts]) -> Counts:
    total = _empty_counts()
    for counts in all_counts:
        for key in COUNT_FIELDS:
            total[key] += counts[key]
    return total


def derive_module_outcome(counts: Counts) -> ModuleOutcome:
    """PURE: a module's outcome from its counts, when nothing else is known of how it ended."""
    if counts["failed"]:
        return "failed"
    if counts["errors"]:
        return "error"
    if counts["interrupted"]:
        return "interrupted"
    if counts["not_run"]:
        # Some tests never ran and the caller did not say why: the module was cut short.
        return "not_run" if counts["not_run"] == counts["tests"] else "interrupted"
    if counts["tests"] == 0:
        return "not_run"
    return "passed"


def build_module_report(
    *,
    module: str,
    worker: str | None,
    started: float | None,
    finished: float | None,
    results: Sequence[ResultRecord],
    outcome: ModuleOutcome | None = None,
    expected_nodeids: Sequence[str] = (),
    duration_s: float | None = None,
) -> ModuleReport:
    """Build the report of one module. PURE.

    Called by the controller when a module is done, crashed, timed out or was
    never started.

    :param module: path relative to the rootdir (``tests/test_x.py``).
    :param worker: id of the worker that ran it, ``None`` if none did.
    :param started: epoch seconds the worker started the module, ``None`` if it never did.
    :param finished: epoch seconds it finished, ``None`` if unknown.
    :param results: the module's records, from :func:`fold_test_reports`.
    :param outcome: how the module ended, when the controller knows better than its
        tests (``crashed``, ``timeout``, ``interrupted``). Derived otherwise: any failed
        test -> ``failed``, else any error -> ``error``, else tests that never ran ->
        ``not_run`` (none ran) or ``interrupted`` (some did), else ``passed``.
    :param expected_nodeids: node ids the module should have run; those without a
        record are added as ``not_run``.
    :param duration_s: the module's duration, when it is not ``finished - started``
        (the sum of its units' when it ran as several).
    """
    records = list(results)
    seen = {record["nodeid"] for record in records}
    records.extend(not_run_record(nodeid) for nodeid in expected_nodeids if nodeid not in seen)
    counts = count_results(records)
    if duration_s is not None:
        duration = duration_s
    elif started is not None and finished is not None:
        duration = finished - started
    else:
        duration = math.fsum(record["duration_s"] for record in records)
    tests, passed = _compact(module, records)
    return ModuleReport(
        module=module,
        outcome=outcome if outcome is not None else derive_module_outcome(counts),
        worker=worker,
        started=isoformat(started) if started is not None else None,
        finished=isoformat(finished) if finished is not None else None,
        duration_s=_seconds(duration),
        counts=counts,
        tests=tests,
        passed=passed,
    )


def _compact(
    module: str, records: Sequence[ResultRecord]
) -> tuple[list[ResultRecord], dict[str, float]]:
    """Split records into full ones and plain passes (``passed``: id within the module -> seconds).

    A 62,000-test suite's reports were 62 MB of records saying "passed, no output"; a
    plain pass now costs its id and duration. A node id seen twice (``--keep-duplicates``)
    keeps full records, so none is lost.
    """
    prefix = module + "::"
    seen: dict[str, int] = {}
    for record in records:
        seen[record["nodeid"]] = seen.get(record["nodeid"], 0) + 1
    tests: list[ResultRecord] = []
    passed: dict[str, float] = {}
    for record in records:
        nodeid = record["nodeid"]
        if (
            record["outcome"] == "passed"
            and record["subtest"] is None
            and not record["message"]
            and not record["longrepr"]
            and not record["stdout"]
            and not record["stderr"]
            and seen[nodeid] == 1
            and nodeid.startswith(prefix)
        ):
            passed[nodeid[len(prefix) :]] = record["duration_s"]
        else:
            tests.append(record)
    return tests, passed


def module_results(module: ModuleReport) -> list[ResultRecord]:
    """Every test (and subtest) of a module as full records: its ``tests``, then its ``passed``. PURE."""
    prefix = module["module"] + "::"
    return [
        *module["tests"],
        *(
            ResultRecord(
                nodeid=prefix + name,
                subtest=None,
                outcome="passed",
                duration_s=seconds,
                when="call",
                longrepr=None,
                message=None,
                stdout="",
                stderr="",
            )
            for name, seconds in module.get("passed", {}).items()
        ),
    ]


#: Captured output longer than this is kept whole only in the module's own report file;
#: the merged report keeps its start, so no output is stored twice.
MERGED_OUTPUT_LIMIT: Final = 2_000


def _without_long_output(module: ModuleReport) -> ModuleReport:
    """The module as the merged report keeps it: long captured output cut, with a pointer."""
    if not any(
        len(test["stdout"]) > MERGED_OUTPUT_LIMIT or len(test["stderr"]) > MERGED_OUTPUT_LIMIT
        for test in module["tests"]
    ):
        return module
    where = f"modules/{module_report_filename(module['module'])}"
    tests = []
    for test in module["tests"]:
        test = ResultRecord(**test)
        for stream in ("stdout", "stderr"):
            text = test[stream]
            if len(text) > MERGED_OUTPUT_LIMIT:
                test[stream] = (
                    text[:MERGED_OUTPUT_LIMIT]
                    + f"\n[... {len(text) - MERGED_OUTPUT_LIMIT} more characters: the whole {stream} is in {where}]"
                )
        tests.append(test)
    return ModuleReport(**{**module, "tests": tests})


def _assemble(
    *,
    modules: Sequence[ModuleReport],
    wall_s: float,
    workers: int,
    args: Sequence[str],
    rootdir: str,
    snapshot: str | None,
    created: str,
    extra: Mapping[str, Any] | None = None,
    splits: Sequence[SplitRecord] = (),
) -> MergedReport:
    ordered = sorted(
        (_without_long_output(report) for report in modules), key=lambda report: report["module"]
    )
    durations = [report["duration_s"] for report in ordered]
    total = math.fsum(durations)
    wall = _seconds(wall_s)
    report = MergedReport(
        schema_version=SCHEMA_VERSION,
        created=created,
        wall_s=wall,
        workers=workers,
        args=list(args),
        rootdir=rootdir,
        snapshot=snapshot,
        totals=_add_counts([report["counts"] for report in ordered]),
        timing=Timing(
            sum_module_s=_seconds(total),
            # A report always names at least one worker; max() only guards hand-made input.
            lower_bound_s=_seconds(lower_bound(_piece_durations(ordered), max(workers, 1))),
            speedup=round(total / wall, 3) if wall > 0 else None,
        ),
        modules=ordered,
        extra=dict(extra or {}),
    )
    if splits:
        report["splits"] = list(splits)
    return report


def _piece_durations(modules: Sequence[ModuleReport]) -> list[float]:
    """The durations a scheduler placed: each module's, or each of its units' when it ran as several.

    A split module's parts ran side by side, so its longest part, not the sum of
    its parts, is what bounds the wall time.
    """
    durations: list[float] = []
    for module in modules:
        units = module.get("units")
        if units:
            durations.extend(unit["duration_s"] for unit in units)
        else:
            durations.append(module["duration_s"])
    return durations


def build_merged_report(
    *,
    modules: Sequence[ModuleReport],
    wall_s: float,
    workers: int,
    args: Sequence[str],
    rootdir: str | os.PathLike[str],
    snapshot: str | None,
    created: float,
    shard: ShardInfo | None = None,
    splits: Sequence[SplitRecord] = (),
) -> MergedReport:
    """Build the report of a whole run from its module reports. PURE.

    Called by the controller at the end of the run.

    :param modules: one report per module, in any order (the result is sorted by path).
    :param wall_s: wall-clock seconds of the run.
    :param workers: number of workers, the N of LB(N).
    :param args: pytest's command-line arguments.
    :param rootdir: pytest's rootdir.
    :param snapshot: the snapshot commit the workers ran, if any.
    :param created: epoch seconds, from :func:`pytest_parallel_modules.timing.now`.
    :param shard: for a ``--module-shard`` run, the split it ran.
    :param splits: the modules above the fair share and what became of them
        (``--split-modules``); the field is left out when there are none.
    """
    report = _assemble(
        modules=modules,
        wall_s=wall_s,
        workers=workers,
        args=args,
        rootdir=os.fspath(rootdir),
        snapshot=snapshot,
        created=isoformat(created),
        splits=splits,
    )
    if shard is not None:
        report["shard"] = shard
    return report


def _instant(iso: str) -> datetime:
    moment = datetime.fromisoformat(iso)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def _extra(report: Mapping[str, Any], where: str) -> dict[str, Any]:
    value = report.get("extra", {})
    if not isinstance(value, dict):
        raise _ShapeError(f"{where}: extra: expected an object")
    return dict(value)


def merge_reports(reports: Sequence[MergedReport]) -> MergedReport:
    """Join the merged reports of several shards or runs into one. PURE.

    Merging the reports of the shards of a run gives the report of the same run
    unsharded: same modules, totals and timing. A module present in several
    reports is taken from the last one, so ``merge run.json rerun.json`` shows the
    rerun's result. ``wall_s`` is the longest shard's (shards run side by side),
    ``workers`` the sum, ``created`` the earliest; ``args`` and ``rootdir`` are the
    first report's; ``snapshot`` is kept only when every report agrees.

    A shard's workers are named after it (``s2/w1``: worker w1 of shard 2), and a
    module the shards selected that no report holds (a shard missing, or shards
    that split differently: see :func:`shard_problems`) is added as ``not_run``
    with its selected tests, so the merged report is never greener than the run.

    :raises ValueError: if ``reports`` is empty.
    """
    if not reports:
        raise ValueError("merge_reports() needs at least one report")
    modules: dict[str, ModuleReport] = {}
    splits: dict[str, SplitRecord] = {}
    for report in reports:
        shard = report.get("shard")
        for module in report["modules"]:
            modules[module["module"]] = module if shard is None else _in_shard(module, shard)
        for split in report.get("splits", []):
            splits[split["module"]] = split
    for name, tests in missing_modules(reports).items():
        modules[name] = _missing_module(name, tests)
    snapshots = {report["snapshot"] for report in reports}
    first = reports[0]
    return _assemble(
        modules=list(modules.values()),
        wall_s=max(report["wall_s"] for report in reports),
        workers=sum(report["workers"] for report in reports),
        args=first["args"],
        rootdir=first["rootdir"],
        snapshot=snapshots.pop() if len(snapshots) == 1 else None,
        created=min((report["created"] for report in reports), key=_instant),
        extra={key: value for report in reports for key, value in report.get("extra", {}).items()},
        splits=sorted(splits.values(), key=lambda split: (-split["share"], split["module"])),
    )


def module_failed(module: ModuleReport) -> bool:
    """Whether ``module`` failed: a test failed or errored, or its worker crashed or timed out. PURE."""
    return (
        module["outcome"] in FAILING_MODULE_OUTCOMES
        or module["counts"]["failed"] > 0
        or module["counts"]["errors"] > 0
    )


def modules_that_failed(merged: MergedReport) -> list[str]:
    """Return the modules that failed (see :func:`module_failed`), in path order. PURE.

    What "rerun only the failed modules" names: not the modules a stopped run never
    got to (:func:`modules_not_finished` lists those apart).
    """
    return [module["module"] for module in merged["modules"] if module_failed(module)]


def modules_not_finished(merged: MergedReport) -> list[str]:
    """Return the modules with tests that have no result, in path order. PURE.

    Modules never started and modules cut short (``--fail-fast-modules``, Ctrl-C, a
    timeout, no worker left): tests that never ran (``not_run``) or were running when
    the run was interrupted (``interrupted``). A module can be in both this list and
    :func:`modules_that_failed` (a timed-out module's other tests never ran).
    """
    return [
        module["module"]
        for module in merged["modules"]
        if module["outcome"] in ("interrupted", "not_run")
        or module["counts"]["not_run"] > 0
        or module["counts"]["interrupted"] > 0
    ]


def _in_shard(module: ModuleReport, shard: ShardInfo) -> ModuleReport:
    """A copy of ``module`` with its workers named after ``shard`` (``w1`` -> ``s2/w1``)."""
    prefix = f"s{shard['index']}/"
    renamed = module.copy()
    if module["worker"] is not None:
        renamed["worker"] = prefix + module["worker"]
    if "attempts" in module:
        attempts = [attempt.copy() for attempt in module["attempts"]]
        for attempt in attempts:
            if attempt["worker"] is not None:
                attempt["worker"] = prefix + attempt["worker"]
        renamed["attempts"] = attempts
    return renamed


def _missing_module(name: str, tests: int) -> ModuleReport:
    """The report of a module that a shard selected and no report holds: all ``not_run``."""
    counts = _empty_counts()
    counts["tests"] = counts["not_run"] = tests
    return ModuleReport(
        module=name,
        outcome="not_run",
        worker=None,
        started=None,
        finished=None,
        duration_s=0.0,
        counts=counts,
        tests=[],
        passed={},
    )


def _shard_label(shard: ShardInfo) -> str:
    return f"{shard['index']}/{shard['count']}"


def missing_modules(reports: Sequence[MergedReport]) -> dict[str, int]:
    """Return the modules some shard selected that no report holds -> their tests. PURE.

    The selection is every shard's ``selected_modules`` together, so a shard whose
    report is missing leaves its modules here, and so do modules that shards split
    with different histories handed to none of them.
    """
    selected: dict[str, int] = {}
    for report in reports:
        shard = report.get("shard")
        if shard is not None:
            selected.update(shard["selected_modules"])
    present = {module["module"] for report in reports for module in report["modules"]}
    return {name: tests for name, tests in sorted(selected.items()) if name not in present}


def shard_problems(reports: Sequence[MergedReport]) -> list[str]:
    """Say what makes a set of shard reports not one complete run, one line each. PURE.

    Called by ``merge``. Looks at the reports that carry a ``shard`` (reports
    without one, such as a rerun's, are taken as they are): shares missing or given
    twice, runs split a different number of ways, from different selections or
    from different histories, modules in no report and modules in several shards.
    An empty list means the shards add up to exactly one run.
    """
    shards = [(report, report["shard"]) for report in reports if "shard" in report]
    if not shards:
        return []
    problems: list[str] = []
    counts = sorted({shard["count"] for _, shard in shards})
    if len(counts) > 1:
        problems.append(
            f"the shards come from runs split {' and '.join(map(str, counts))} ways: "
            "merge the shards of one run"
        )
    seen: dict[int, int] = {}
    for _, shard in shards:
        seen[shard["index"]] = seen.get(shard["index"], 0) + 1
    repeated = sorted(index for index, times in seen.items() if times > 1)
    if repeated:
        problems.append(
            "shard "
            + ", ".join(f"{index}/{counts[-1]}" for index in repeated)
            + " given more than once"
        )
    absent = [index for index in range(1, counts[-1] + 1) if index not in seen]
    if absent:
        problems.append(
            "no report of shard " + ", ".join(f"{index}/{counts[-1]}" for index in absent)
        )
    selections = {tuple(sorted(shard["selected_modules"].items())) for _, shard in shards}
    if len(selections) > 1:
        problems.append(
            "the shards selected different tests (different arguments, -k, -m or paths?): "
            + _by_value(
                {_shard_label(shard): str(len(shard["selected_modules"])) for _, shard in shards},
                "modules",
            )
        )
    fingerprints = {shard["history_fingerprint"] for _, shard in shards}
    if len(fingerprints) > 1:
        problems.append(
            "the shards split with different duration histories, so modules may have run "
            "in two shards or in none; give every shard the same --module-durations file: "
            + _by_value(
                {_shard_label(shard): shard["history_fingerprint"] for _, shard in shards},
                "history",
            )
        )
    missing = missing_modules(reports)
    if missing:
        tests = sum(missing.values())
        problems.append(
            f"{len(missing)} selected module(s) ({tests} test(s)) are in no report: "
            + ", ".join(missing)
        )
    ran_in: dict[str, list[str]] = {}
    for report, shard in shards:
        for module in report["modules"]:
            if (
                module["outcome"] != "not_run"
                or module["counts"]["not_run"] < module["counts"]["tests"]
            ):
                ran_in.setdefault(module["module"], []).append(_shard_label(shard))
    twice = {name: labels for name, labels in sorted(ran_in.items()) if len(labels) > 1}
    if twice:
        problems.append(
            f"{len(twice)} module(s) ran in more than one shard: "
            + ", ".join(f"{name} ({', '.join(labels)})" for name, labels in twice.items())
        )
    return problems


def _by_value(values: Mapping[str, str], noun: str) -> str:
    """``1/2: history ab12, 2/2: history cd34``."""
    return ", ".join(f"{label}: {noun} {value}" for label, value in sorted(values.items()))


def failed_modules(merged: MergedReport) -> list[str]:
    """Return the modules to run again to complete the run, in path order. PURE.

    Those that failed, errored, crashed, timed out or were cut short, and those with
    tests that never ran (a module never started, a worker that collected none of its
    tests): :func:`modules_that_failed` and :func:`modules_not_finished` together.
    """
    failed = set(modules_that_failed(merged)) | set(modules_not_finished(merged))
    return [module["module"] for module in merged["modules"] if module["module"] in failed]


def has_failures(merged: MergedReport) -> bool:
    """Return whether the run is not green. PURE.

    True when a test failed or errored, a module ended badly, or a selected test never
    ran: a report with tests that never ran must not look like a passing run.
    """
    return bool(failed_modules(merged))


# --------------------------------------------------------------------------- file names

#: Characters kept as they are in a module report's file name.
_UNSAFE_CHARACTER: Final = re.compile(r"[^A-Za-z0-9._-]")
#: Longest readable part of a file name: with the hash suffix, far below NAME_MAX (255).
_MAX_STEM: Final = 120


def module_report_filename(module: str) -> str:
    """Return a file name for the JSON report of ``module``, safe in any directory. PURE.

    ``tests/unit/test_x.py`` -> ``tests__unit__test_x.py.json``. The name is made of
    ``[A-Za-z0-9._+-]``, never starts with ``.`` or ``-``, never contains ``..``, and
    is at most 142 characters long, so joining it to a directory can never leave
    that directory or hide the file.

    Distinct modules get distinct names: when the readable form could be ambiguous
    (a path with ``__``, a component starting or ending with ``_``, an empty
    component, a character outside the safe set) or had to be truncated, ``+`` and
    a hash of the full module path are appended. ``+`` never occurs otherwise, so a
    hashed name cannot equal a plain one.
    """
    components = module.split("/")
    # Splitting a plain name on "__" gives back the components only if none of them is
    # empty, contains "__" or starts/ends with "_" (which would merge into a "___" run).
    reversible = all(
        part and "__" not in part and not part.startswith("_") and not part.endswith("_")
        for part in components
    )
    readable = _UNSAFE_CHARACTER.sub("_", "__".join(components))
    # No "..", no hidden file, nothing a shell tool would take for an option, and no
    # trailing dot (which would form ".." with ".json" and is dropped by Windows).
    readable = re.sub(r"\.{2,}", lambda match: "_" * len(match.group()), readable)
    readable = re.sub(r"^[.-]", "_", readable)
    readable = re.sub(r"\.$", "_", readable)
    plain = reversible and readable == "__".join(components) and len(readable) <= _MAX_STEM
    if plain:
        return f"{readable}.json"
    digest = hashlib.sha256(module.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{readable[:_MAX_STEM]}+{digest}.json"


# --------------------------------------------------------------------------- file I/O


def write_json_atomic(path: Path, data: Mapping[str, object], *, durable: bool = False) -> None:
    """Write ``data`` as JSON to ``path``: readers see the old file or the new one, never half.

    Runs in the controller, through :func:`~pytest_parallel_modules.atomic_files.write_atomic`.

    :param durable: also ``fsync`` the file before the rename (see ``write_atomic``).
    :raises ValueError: if ``data`` holds NaN or infinity, which JSON cannot represent.
    :raises OSError: if the directory is not writable.
    """
    write_atomic(
        path, json.dumps(data, sort_keys=True, indent=2, allow_nan=False) + "\n", durable=durable
    )


def load_report(path: str | os.PathLike[str]) -> MergedReport:
    """Read a merged report written by :func:`write_json_atomic`.

    Runs in the controller or the ``merge`` command. Unknown keys are ignored, so
    files from a newer release of the same schema version load; the returned
    report holds only the keys described here.

    :raises ReportError: if the file cannot be read, is not JSON, was written with
        another schema version, or lacks a field or has one of the wrong type.
    """
    name = os.fspath(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ReportError(name, f"cannot read the report: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise ReportError(name, f"not a UTF-8 text file ({error.reason})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ReportError(
            name, f"not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})"
        ) from None
    try:
        return _parse_merged_report(data)
    except _ShapeError as error:
        raise ReportError(name, str(error)) from None


class _ShapeError(Exception):
    """A JSON value that does not have the shape of a report; the message names the field."""


def _field(data: Mapping[str, object], key: str, where: str) -> object:
    if key not in data:
        raise _ShapeError(f"{where}: missing field {key!r}")
    return data[key]


def _object(value: object, where: str) -> Mapping[str, object]:
    if not isinstance(value, dict):
        raise _ShapeError(f"{where}: expected an object, got {_kind(value)}")
    return cast("Mapping[str, object]", value)


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _int(data: Mapping[str, object], key: str, where: str) -> int:
    value = _field(data, key, where)
    # bool is an int subclass, and true is no count.
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _ShapeError(f"{where}.{key}: expected a non-negative integer, got {value!r}")
    return value


def _optional_number(data: Mapping[str, object], key: str, where: str) -> float | None:
    return None if _field(data, key, where) is None else _number(data, key, where)


def _number(data: Mapping[str, object], key: str, where: str) -> float:
    value = _field(data, key, where)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0:
        raise _ShapeError(f"{where}.{key}: expected a non-negative number, got {value!r}")
    return float(value)


def _str(data: Mapping[str, object], key: str, where: str) -> str:
    value = _field(data, key, where)
    if not isinstance(value, str):
        raise _ShapeError(f"{where}.{key}: expected a string, got {_kind(value)}")
    return value


def _optional_str(data: Mapping[str, object], key: str, where: str, *, default: bool) -> str | None:
    """Read a string-or-null field; with ``default``, a missing field reads as null."""
    if default and key not in data:
        return None
    value = _field(data, key, where)
    if value is not None and not isinstance(value, str):
        raise _ShapeError(f"{where}.{key}: expected a string or null, got {_kind(value)}")
    return value


def _iso_time(data: Mapping[str, object], key: str, where: str, *, nullable: bool) -> str | None:
    value = _optional_str(data, key, where, default=False) if nullable else _str(data, key, where)
    if value is not None:
        try:
            datetime.fromisoformat(value)
        except ValueError:
            raise _ShapeError(f"{where}.{key}: expected an ISO 8601 time, got {value!r}") from None
    return value


def _choice(data: Mapping[str, object], key: str, where: str, choices: Sequence[str]) -> str:
    value = _field(data, key, where)
    if value not in choices:
        raise _ShapeError(f"{where}.{key}: expected one of {', '.join(choices)}; got {value!r}")
    return cast("str", value)


def _list(data: Mapping[str, object], key: str, where: str) -> list[object]:
    value = _field(data, key, where)
    if not isinstance(value, list):
        raise _ShapeError(f"{where}.{key}: expected a list, got {_kind(value)}")
    return value


def _parse_counts(value: object, where: str) -> Counts:
    data = _object(value, where)
    counts = _empty_counts()
    for key in COUNT_FIELDS:
        # Version 1 had no interrupted outcome.
        counts[key] = _int(data, key, where) if key in data or key != "interrupted" else 0
    return counts


def _parse_result(value: object, where: str) -> ResultRecord:
    data = _object(value, where)
    when = _field(data, "when", where)
    if when is not None and when not in _PHASES:
        raise _ShapeError(f"{where}.when: expected setup, call, teardown or null; got {when!r}")
    return ResultRecord(
        nodeid=_str(data, "nodeid", where),
        subtest=_optional_str(data, "subtest", where, default=True),
        outcome=cast("ResultOutcome", _choice(data, "outcome", where, RESULT_OUTCOMES)),
        duration_s=_number(data, "duration_s", where),
        when=when,
        longrepr=_optional_str(data, "longrepr", where, default=True),
        message=_optional_str(data, "message", where, default=True),
        stdout=_optional_str(data, "stdout", where, default=True) or "",
        stderr=_optional_str(data, "stderr", where, default=True) or "",
    )


def _parse_passed(value: object, where: str) -> dict[str, float]:
    data = _object(value, where)
    passed: dict[str, float] = {}
    for name, seconds in data.items():
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
            raise _ShapeError(f"{where}.{name}: expected seconds >= 0, got {seconds!r}")
        passed[name] = float(seconds)
    return passed


def _parse_module(value: object, where: str) -> ModuleReport:
    data = _object(value, where)
    module = ModuleReport(
        module=_str(data, "module", where),
        outcome=cast("ModuleOutcome", _choice(data, "outcome", where, MODULE_OUTCOMES)),
        worker=_optional_str(data, "worker", where, default=False),
        started=_iso_time(data, "started", where, nullable=True),
        finished=_iso_time(data, "finished", where, nullable=True),
        duration_s=_number(data, "duration_s", where),
        counts=_parse_counts(_field(data, "counts", where), f"{where}.counts"),
        tests=[
            _parse_result(test, f"{where}.tests[{index}]")
            for index, test in enumerate(_list(data, "tests", where))
        ],
        passed=_parse_passed(data.get("passed", {}), f"{where}.passed"),
    )
    # Written by --module-retries; kept as they are (the schema describes them).
    if isinstance(data.get("attempts"), list):
        module["attempts"] = cast("list[AttemptRecord]", data["attempts"])
    flaky = data.get("flaky")
    if isinstance(flaky, list):
        module["flaky"] = [str(nodeid) for nodeid in flaky]
    if isinstance(data.get("units"), list):
        module["units"] = cast("list[UnitRecord]", data["units"])
    return module


def _parse_merged_report(data: object) -> MergedReport:
    """Check that decoded JSON ``data`` is a merged report and return a clean copy. PURE.

    :raises _ShapeError: naming the offending field, e.g. ``modules[2].counts.passed: ...``.
    """
    where = "report"
    if not isinstance(data, dict) or "schema_version" not in data:
        raise _ShapeError(
            "not a pytest-parallel-modules report (expected a JSON object with 'schema_version')"
        )
    version = data["schema_version"]
    if version not in READABLE_SCHEMA_VERSIONS or isinstance(version, bool):
        readable = ", ".join(str(known) for known in sorted(READABLE_SCHEMA_VERSIONS))
        raise _ShapeError(
            f"schema_version {version!r} is not supported (this version of "
            f"pytest-parallel-modules reads versions {readable}); "
            "merge reports with the release that wrote them"
        )
    report = _object(data, where)
    timing = _object(_field(report, "timing", where), "timing")
    args = _list(report, "args", where)
    if not all(isinstance(arg, str) for arg in args):
        raise _ShapeError("args: expected a list of strings")
    merged = MergedReport(
        schema_version=SCHEMA_VERSION,
        created=cast("str", _iso_time(report, "created", where, nullable=False)),
        wall_s=_number(report, "wall_s", where),
        workers=_int(report, "workers", where),
        args=cast("list[str]", args),
        rootdir=_str(report, "rootdir", where),
        snapshot=_optional_str(report, "snapshot", where, default=True),
        totals=_parse_counts(_field(report, "totals", where), "totals"),
        timing=Timing(
            sum_module_s=_number(timing, "sum_module_s", "timing"),
            lower_bound_s=_number(timing, "lower_bound_s", "timing"),
            speedup=_optional_number(timing, "speedup", "timing"),
        ),
        modules=[
            _parse_module(module, f"modules[{index}]")
            for index, module in enumerate(_list(report, "modules", where))
        ],
        extra=_extra(report, where),
    )
    # Version 1 reports have no shard (merge then checks nothing).
    if report.get("shard") is not None:
        merged["shard"] = _parse_shard(report["shard"], "shard")
    # Optional (#17): reports of older releases have none.
    if report.get("timeline") is not None:
        try:
            merged["timeline"] = parse_timeline(report["timeline"])
        except TimelineFormatError as error:
            raise _ShapeError(str(error)) from None
    # Written by --split-modules; kept as they are (the schema describes them).
    if isinstance(report.get("splits"), list):
        merged["splits"] = cast("list[SplitRecord]", report["splits"])
    return merged


def _parse_shard(value: object, where: str) -> ShardInfo:
    data = _object(value, where)
    index, count = _int(data, "index", where), _int(data, "count", where)
    if not 1 <= index <= count:
        raise _ShapeError(f"{where}: expected 1 <= index <= count, got {index}/{count}")
    selected = _object(_field(data, "selected_modules", where), f"{where}.selected_modules")
    return ShardInfo(
        index=index,
        count=count,
        history_fingerprint=_str(data, "history_fingerprint", where),
        selected_modules={
            str(name): _int(selected, name, f"{where}.selected_modules") for name in selected
        },
    )
