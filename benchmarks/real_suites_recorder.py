"""Record every test's outcome for ``real_suites.py``. Runs in the pytest controller process.

``real_suites.py`` loads this module with ``-p real_suites_recorder`` (its directory on
``PYTHONPATH``) and names the output file in ``$REAL_SUITES_RECORD``. It only reads
pytest's public hooks, so it records exactly what reaches the terminal of the process
the user started:

- plain ``pytest``: the process that runs the tests;
- ``--parallel-modules`` and pytest-xdist: the controller, into whose hooks the workers'
  reports are replayed. Workers load this module too (they get the same ``-p``) but
  have ``config.workerinput`` set and record nothing, so no report is counted twice.

Two files are written:

- ``$REAL_SUITES_RECORD`` (JSON, at ``pytest_unconfigure``): each test's outcome with
  its phases folded the way pytest's terminal counts them, keyed by node id (subtests
  by their parent's node id, their place among its subtests, their message and
  keyword names; see ``subtest_identity``); failed or skipped collectors; and the
  seconds spent per module file.
- ``$REAL_SUITES_RECORD.progress`` (text, while the run goes on): a line when a test
  starts and one when it finishes, so that when the harness has to kill a hung run it
  can still say which tests were running and since when. Each line is one unbuffered
  ``os.write`` (about 2 us: 0.25 s over packaging's 62,000 tests, in every tool's run).

Only the standard library and pytest are imported: the module must load in any venv.
"""

from __future__ import annotations

import ast
from collections import Counter
import json
import os
import time
from typing import Any
from typing import Final

import pytest


#: The environment variable naming the JSON file to write. Unset: record nothing.
RECORD_ENV: Final = "REAL_SUITES_RECORD"
#: Version of the JSON document; ``real_suites.py`` refuses any other.
RECORD_VERSION: Final = 2
#: Registration name of the recording object.
PLUGIN_NAME: Final = "real-suites-recorder"


def fold_phases(phases: dict[str, tuple[str, bool]]) -> str:
    """Fold one test's phase reports into the outcome pytest's terminal would count.

    Setup failed: ``error``. Setup skipped: ``skipped`` (``xfailed`` for an xfail).
    Otherwise the call decides: ``passed``, ``failed``, ``skipped``, ``xfailed`` or
    ``xpassed`` (a strict xpass is a failed call report, so ``failed``). A failed
    teardown adds ``+error``, as the terminal counts an error besides the outcome.
    A test whose phases stopped early (a crash, a kill) says which report is missing.

    :param phases: ``when`` -> (report outcome, whether the report has ``wasxfail``).
    """
    setup = phases.get("setup")
    call = phases.get("call")
    if setup is not None and setup[0] == "failed":
        folded = "error"
    elif setup is not None and setup[0] == "skipped":
        folded = "xfailed" if setup[1] else "skipped"
    elif call is None:
        return "incomplete (no call report)"
    elif call[0] == "passed":
        folded = "xpassed" if call[1] else "passed"
    elif call[0] == "failed":
        folded = "failed"
    else:
        folded = "xfailed" if call[1] else "skipped"
    teardown = phases.get("teardown")
    if teardown is None:
        return f"{folded} (no teardown report)"
    if teardown[0] == "failed":
        folded += "+error"
    return folded


def subtest_outcome(report: pytest.TestReport) -> str:
    """The outcome of one subtest report, named as pytest's terminal names it."""
    if hasattr(report, "wasxfail"):
        return "xfailed" if report.skipped else "xpassed"
    return report.outcome


def unwrap_repr(value: str) -> str:
    """Undo ``repr`` applied to a string, however many times it was applied.

    pytest 9.2's ``SubtestContext`` passes every keyword value through ``saferepr``
    when it is created, and again when a serialized report is read back, so a value
    ``'af.py'`` reads ``"'af.py'"`` in a report that crossed a process boundary
    (ours and pytest-xdist's alike). Unwrapping both to ``af.py`` compares the
    subtest, not the number of trips its report made.
    """
    while True:
        try:
            inner = ast.literal_eval(value)
        except Exception:  # not a literal: ValueError, SyntaxError, RecursionError ...
            return value
        if not isinstance(inner, str):
            return value
        value = inner


def subtest_identity(report: pytest.TestReport) -> tuple[str, str] | None:
    """How to match a pytest 9 ``SubtestReport`` across runs, and how to show it.

    Returns (identity, description), or None for a report that is not a subtest's.
    The identity is the message and the keyword *names*: the values cannot be
    compared, because pytest 9.2's ``SubtestContext`` applies ``saferepr`` (which
    truncates long values to 240 characters) when it is created and again when a
    serialized report is read back, so a report that crossed a process boundary (ours,
    pytest-xdist's) carries a differently truncated repr of the repr. The recorder adds
    the subtest's place among its test's subtests, which a test's own code fixes. The
    description is ``SubtestReport``'s, with the values unwrapped (``unwrap_repr``).
    Duck-typed so this module loads under pytest 8 too, which has no subtests.
    """
    context = getattr(report, "context", None)
    if context is None or not hasattr(report, "_sub_test_description"):
        return None
    identity = []
    description = []
    if context.msg is not None:
        identity.append(f"[{context.msg}]")
        description.append(f"[{context.msg}]")
    if context.kwargs:
        identity.append(f"({', '.join(context.kwargs)})")
        values = ", ".join(f"{k}={unwrap_repr(str(v))}" for k, v in context.kwargs.items())
        description.append(f"({values})")
    return " ".join(identity), " ".join(description) or "(<subtest>)"


def module_of(nodeid: str) -> str:
    """The module file of a node id: everything before the first ``::``."""
    return nodeid.split("::", 1)[0]


class Recorder:
    """Collects reports in memory and writes them once, at the end of the run."""

    def __init__(self, path: str) -> None:
        self.path = path
        #: nodeid -> when -> (outcome, wasxfail), for top-level test reports.
        self.phases: dict[str, dict[str, tuple[str, bool]]] = {}
        #: (nodeid, "#<n> <identity>") -> (outcome, description) of the n-th subtest.
        self.subtests: dict[tuple[str, str], tuple[str, str]] = {}
        #: nodeid -> how many subtest reports it has had so far.
        self.subtest_counts: Counter[str] = Counter()
        #: nodeid -> outcome of a collector that failed or was skipped.
        self.collectors: dict[str, str] = {}
        #: module file -> seconds of its tests' setup, call and teardown.
        self.module_seconds: dict[str, float] = {}
        self.progress_fd: int | None = None
        #: Moments of the run (epoch seconds) and this process's CPU seconds at some of
        #: them, for the harness's overhead figures.
        self.times: dict[str, float] = {"configured": time.time()}

    def open_progress(self) -> None:
        """Start the progress file (truncating an old one)."""
        self.progress_fd = os.open(
            self.path + ".progress", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644
        )

    def progress(self, kind: str, nodeid: str) -> None:
        if self.progress_fd is not None:
            os.write(self.progress_fd, f"{kind}\t{time.time():.3f}\t{nodeid}\n".encode())

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logstart(self, nodeid: str) -> None:
        self.progress("start", nodeid)
        self.times.setdefault("first_test_started", time.time())

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logfinish(self, nodeid: str) -> None:
        self.progress("finish", nodeid)
        self.times["last_test_finished"] = time.time()

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self) -> None:
        self.times["collection_finished"] = time.time()
        self.times["cpu_at_collection_finished"] = time.process_time()

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self) -> None:
        self.times["session_finished"] = time.time()
        self.times["cpu_at_session_finished"] = time.process_time()

    # trylast: pytest's subtests support turns a passed call into "failed" inside
    # pytest_report_teststatus, which the terminal reporter calls from its own
    # pytest_runtest_logreport; record the outcome the user was shown.
    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        subtest = subtest_identity(report)
        if subtest is not None:
            identity, description = subtest
            self.subtest_counts[report.nodeid] += 1
            key = (report.nodeid, f"#{self.subtest_counts[report.nodeid]} {identity}".rstrip())
            self.subtests[key] = (subtest_outcome(report), description)
            return
        self.phases.setdefault(report.nodeid, {})[report.when] = (
            report.outcome,
            hasattr(report, "wasxfail"),
        )
        module = module_of(report.nodeid)
        self.module_seconds[module] = self.module_seconds.get(module, 0.0) + report.duration

    @pytest.hookimpl(trylast=True)
    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.collectors[report.nodeid] = "error"
        elif report.skipped:
            self.collectors[report.nodeid] = "skipped"

    def document(self) -> dict[str, Any]:
        """The JSON document; outcome rows are ``[nodeid, subtest, kind, outcome, description]``.

        ``subtest`` and ``description`` are null except for subtests; ``kind`` is
        ``test``, ``subtest`` or ``collector``.
        """
        rows: list[list[Any]] = []
        for nodeid, outcome in self.collectors.items():
            rows.append([nodeid, None, "collector", outcome, None])
        for nodeid, phases in self.phases.items():
            rows.append([nodeid, None, "test", fold_phases(phases), None])
        for (nodeid, subtest), (outcome, description) in self.subtests.items():
            rows.append([nodeid, subtest, "subtest", outcome, description])
        self.times["unconfigured"] = time.time()
        return {
            "version": RECORD_VERSION,
            "outcomes": rows,
            "module_seconds": self.module_seconds,
            "times": self.times,
        }

    def write(self) -> None:
        """Write the JSON document atomically, so a half-written file is never read."""
        if self.progress_fd is not None:
            os.close(self.progress_fd)
            self.progress_fd = None
        temporary = self.path + ".tmp"
        with open(temporary, "w", encoding="utf-8") as file:
            json.dump(self.document(), file)
        os.replace(temporary, self.path)


def pytest_configure(config: pytest.Config) -> None:
    path = os.environ.get(RECORD_ENV)
    # Workers (ours and pytest-xdist's) carry ``workerinput``; their reports reach
    # the controller's hooks, where they are recorded once.
    if not path or hasattr(config, "workerinput"):
        return
    recorder = Recorder(path)
    recorder.open_progress()
    config.pluginmanager.register(recorder, PLUGIN_NAME)


def pytest_unconfigure(config: pytest.Config) -> None:
    recorder = config.pluginmanager.get_plugin(PLUGIN_NAME)
    if isinstance(recorder, Recorder):
        recorder.write()
        config.pluginmanager.unregister(recorder, PLUGIN_NAME)
