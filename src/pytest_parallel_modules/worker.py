"""Runs inside a worker process: one long-lived pytest session that runs the modules it is handed.

The controller ships this module with ``gateway.remote_exec(worker)``, so it
imports only the standard library, pytest and execnet -- never
``pytest_parallel_modules`` -- and the controller imports the message names and
payload types from here (the same "the other way around" arrangement as
pytest-xdist's ``remote.py``).

The protocol, worker -> controller: ``READY`` once the session has collected
what a plain run with the same arguments collects; then per module ``COLLECTED``,
``TESTS`` batches of test events (each test's start, and its end with its
reports; see :class:`_Outbox`), ``MODULE_FINISHED``,
and ``NEED_WORK``: as the module's last test starts its teardown, so that
teardown keeps what the next module shares, as pytest's does with its next
test (see :class:`_AfterLastTest`), or once the module is done;
``SESSION_FINISHED`` last. Controller -> worker:
``RUN_MODULE`` or ``NO_MORE_WORK`` in answer to ``READY`` and ``NEED_WORK``, and
``STOP`` at any time (finish the current test, run nothing more).
"""

from __future__ import annotations

import faulthandler
import marshal
import os
import queue
import signal
import sys
import threading
import time
from typing import Any
from typing import cast
from typing import Final
from typing import TYPE_CHECKING
from typing import TypedDict

import pytest


if TYPE_CHECKING:
    from collections.abc import Generator
    from collections.abc import Sequence
    import warnings

    import execnet


# Worker -> controller.
READY: Final = "ready"
COLLECTED: Final = "collected"
TESTS: Final = "tests"
WARNING: Final = "warning"
NEED_WORK: Final = "need_work"
MODULE_FINISHED: Final = "module_finished"
EXIT_REQUESTED: Final = "exit_requested"
INTERNAL_ERROR: Final = "internal_error"
SESSION_FINISHED: Final = "session_finished"

#: Every message a worker sends; the controller's dispatch table must cover exactly these.
WORKER_MESSAGES: Final = frozenset(
    {
        READY,
        COLLECTED,
        TESTS,
        WARNING,
        NEED_WORK,
        MODULE_FINISHED,
        EXIT_REQUESTED,
        INTERNAL_ERROR,
        SESSION_FINISHED,
    }
)

# Controller -> worker.
RUN_MODULE: Final = "run_module"
NO_MORE_WORK: Final = "no_more_work"
STOP: Final = "stop"
# Put on the worker's inbox when the controller's end of the channel closes.
_CONTROLLER_GONE: Final = "controller_gone"

#: The environment variable that tells a test which worker runs it (``w1``, ``w2``...).
WORKER_ID_ENV: Final = "PYTEST_PARALLEL_MODULES_WORKER"
#: The environment variable holding the number of workers of the run.
WORKER_COUNT_ENV: Final = "PYTEST_PARALLEL_MODULES_WORKER_COUNT"
#: The worker's process id: a pytest started *in* the worker's process (pytester's
#: in-process runs) sees it equal to its own and leaves the environment alone.
WORKER_PID_ENV: Final = "PYTEST_PARALLEL_MODULES_WORKER_PID"

# Bound at import so a test that patches ``time`` cannot skew what we measure.
_perf: Final = time.perf_counter
_times: Final = os.times


def _cpu() -> float:
    """CPU seconds (user + system) of this process and of the children it has waited for."""
    times = _times()
    return times.user + times.system + times.children_user + times.children_system


class WorkerSetup(TypedDict):
    """The first message on the channel: everything the worker needs to start its session."""

    worker_id: str
    worker_count: int
    #: The user's command-line arguments, parsed again in the worker.
    args: list[str]
    #: The controller's ``sys.path`` (mapped into the worktree when there is one).
    sys_path: list[str]
    #: This worker's own ``--basetemp``, so ``tmp_path`` never clashes between workers.
    basetemp: str
    #: ``(main checkout, worktree)`` roots: editable installs pointing into the
    #: main checkout are redirected to the worktree. Empty when running in place.
    path_map: list[tuple[str, str]]
    #: File that receives the worker's stderr (fd 2) and faulthandler's stack dumps.
    stderr_path: str
    #: What plugins added to ``config.workerinput`` in the controller (through
    #: pytest-xdist's ``pytest_configure_node`` hook, which the controller calls).
    workerinput: dict[str, Any]
    #: Whether the controller rebuilds plain passing tests from :data:`TEST_PASSED`
    #: records (no plugin of its own hooks report deserialisation).
    compact_reports: bool


class ReadyPayload(TypedDict):
    pid: int
    python: str
    rootdir: str
    #: How many items the worker collected (the whole selection, before any test ran).
    collected: int


class RunModulePayload(TypedDict):
    #: The unit of work's id, echoed in COLLECTED and MODULE_FINISHED.
    unit: str
    module: str
    nodeids: list[str]
    #: The module is expected to be quick: ask for the next one as it starts,
    #: so the answer is waiting when it ends (no idle round trip per module).
    prefetch: bool
    #: Ask for the next module when the last test's teardown starts, and tear down
    #: only what the next module does not share (as pytest does with its real next
    #: test); otherwise tear down all but the session and ask once idle. Off with
    #: -x/--maxfail, --fail-fast-modules and --module-retries, which decide what
    #: follows from the module's last report.
    ask_in_last_teardown: bool


class CollectedPayload(TypedDict):
    unit: str
    module: str
    #: Node ids the controller asked for that this worker did not collect.
    missing: list[str]
    collect_s: float
    #: This worker's collection error for the module, when it could not collect it.
    error: str | None


Location = tuple[str, "int | None", str]

#: ``TESTS`` carries ``marshal.dumps`` of a list of the records below.
#: A ``TESTS`` record: a test started -- ``(TEST_STARTED, nodeid, location)``.
TEST_STARTED: Final = "s"
#: A ``TESTS`` record: a test ended -- ``(TEST_FINISHED, nodeid, location, reports)``, its
#: reports serialized by ``pytest_report_to_serializable`` (setup, call, teardown, subtests).
TEST_FINISHED: Final = "f"
#: A ``TESTS`` record: a test whose every phase passed and carries nothing but the
#: fields below ended -- ``(TEST_PASSED, nodeid, location, keywords, phases)`` with
#: ``phases`` a list of ``(when, duration, start, stop)``. A few dozen bytes, where
#: pytest's serialisation of its three reports takes a kilobyte and the controller's
#: rebuild of them dominated its time on suites of quick tests.
TEST_PASSED: Final = "p"

#: The fields of a :class:`pytest.TestReport` that pytest itself sets; a report with
#: any other (``wasxfail``, a plugin's) travels whole.
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


class WarningPayload(TypedDict):
    message: str
    category_module: str
    category_name: str
    filename: str
    lineno: int
    when: str
    nodeid: str
    location: tuple[str, int, str] | None


class ModuleFinishedPayload(TypedDict):
    unit: str
    module: str
    collect_s: float
    #: Wall time of every test's setup, call and teardown (module fixtures included).
    run_s: float
    #: CPU time (user + system, this process and the children it waited for) over the
    #: same span as ``run_s``: tells CPU-bound modules from waiting ones (#16).
    cpu_s: float
    #: Tests of the module that ran to the end of their teardown.
    executed: int
    #: True when every selected test ran; False when the run stopped inside the module.
    completed: bool
    #: False for a unit handed out ahead and given back unstarted (the worker stopped).
    started: bool


class ExitPayload(TypedDict):
    message: str
    returncode: int | None


class InternalErrorPayload(TypedDict):
    text: str


class SessionFinishedPayload(TypedDict):
    exitstatus: int
    #: The worker's ``config.workeroutput`` (the pytest-xdist convention: what
    #: plugins such as pytest-cov leave for their controller side).
    workeroutput: dict[str, Any]


class _AfterLastTest:
    """Stands in for "the next test" after a module's last test, which this worker learns late.

    pytest's teardown (``SetupState.teardown_exact(nextitem)``) keeps exactly the
    collectors of ``nextitem.listchain()``, and asks for that chain when the last
    test's teardown starts -- after its call, the long part. Only then does this
    stand-in ask the controller for the next module (see
    :meth:`WorkerSession.chain_after_module`), so the chain it answers is that of
    the next module's first test: package fixtures it shares stay up, as in a
    plain run, and a module whose last test is long never holds one another
    worker could run.
    """

    def __init__(
        self, worker: WorkerSession, session: pytest.Session, batch: _Batch, *, asked: bool
    ) -> None:
        self.worker = worker
        self.session = session
        self.config = session.config
        self.nodeid = ""
        self.batch = batch
        #: Whether NEED_WORK was sent for the module after this one (ahead, or by listchain).
        self.asked = asked
        #: Whether the controller's answer was received; then ``assignment`` holds it.
        self.answered = False
        self.assignment: RunModulePayload | None = None
        #: The next module's items, picked when the answer arrived.
        self.next_batch: _Batch | None = None
        self._chain: list[pytest.Collector] | None = None

    def listchain(self) -> list[pytest.Collector]:
        # pytest-rerunfailures tears a test down once per attempt: decide once.
        if self._chain is None:
            self._chain = self.worker.chain_after_module(self)
        return self._chain


# Plain classes, not dataclasses: execnet runs this file as ``__channelexec__``,
# a module missing from sys.modules, where dataclasses cannot resolve annotations.
class _Batch:
    """One module's collected items, as this worker runs them."""

    def __init__(
        self,
        unit: str,
        module: str,
        items: list[pytest.Item],
        collect_s: float,
        prefetch: bool = False,
        ask_in_last_teardown: bool = False,
    ) -> None:
        self.unit = unit
        self.module = module
        self.prefetch = prefetch
        self.ask_in_last_teardown = ask_in_last_teardown
        self.items = items
        self.collect_s = collect_s
        self.run_s = 0.0
        self.cpu_s = 0.0
        self.executed = 0
        #: Node ids the controller asked for that this worker did not collect.
        self.missing: list[str] = []


#: Seconds a test event may wait in the outbox before it is sent.
BATCH_WINDOW_S: Final = 0.05


class _Outbox:
    """Sends this worker's messages; test events go together. Runs inside a worker process.

    A message per test event (and a pickled report per phase) cost the controller
    more than running the tests did on suites of quick tests. A test's end is
    buffered here and leaves with the next test's start, as one ``TESTS`` message
    sent before that test runs (so a crash never loses a result nor hides which
    test it hit), or with any other message (which keeps the order of everything
    the controller hears), or once it has waited :data:`BATCH_WINDOW_S` (a thread
    of its own sends it: the last test of a module whose teardown is long).
    """

    def __init__(self, channel: execnet.Channel, window: float = BATCH_WINDOW_S) -> None:
        self.channel = channel
        self.window = window
        self._lock = threading.Lock()
        self._records: list[tuple[Any, ...]] = []
        self._oldest = 0.0
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._flush_late, name="parallel-modules-outbox", daemon=True
        )
        self._thread.start()

    def add(self, record: tuple[Any, ...]) -> None:
        with self._lock:
            if not self._records:
                self._oldest = _perf()
            self._records.append(record)

    def send(self, name: str, payload: Any) -> None:
        with self._lock:
            self._flush_locked()
            self.channel.send((name, payload))

    def flush(self) -> None:
        with self._lock:
            self._flush_locked()

    def close(self) -> None:
        self._closed.set()
        self.flush()

    def _flush_locked(self) -> None:
        if self._records:
            records, self._records = self._records, []
            # One bytes object for execnet, marshalled in C on both sides: execnet's own
            # serialiser walks every element in Python, in the controller's receiver
            # thread, which then holds the GIL the controller's main thread needs to
            # replay. Both ends run the same interpreter (the marshal format is its own),
            # and records hold only str, int, float, None, lists, tuples and dicts.
            self.channel.send((TESTS, marshal.dumps(records)))

    def _flush_late(self) -> None:
        while not self._closed.wait(self.window / 2):
            with self._lock:
                if self._records and _perf() - self._oldest >= self.window:
                    try:
                        self._flush_locked()
                    except (OSError, EOFError, ValueError):
                        return  # the channel is gone: the worker is ending


class WorkerSession:
    """The plugin that turns a pytest session into a worker. Runs inside a worker process.

    Registered through ``pytest.main(plugins=[...])``; pytest calls its hooks.
    """

    def __init__(
        self, channel: execnet.Channel, inbox: queue.Queue[Any], setup: WorkerSetup
    ) -> None:
        self.channel = channel
        self.outbox = _Outbox(channel)
        self.inbox = inbox
        self.setup = setup
        self.stop_requested = False
        self.config: pytest.Config | None = None
        #: The worker's own process id: a process a test forked has another.
        self.pid = os.getpid()
        #: Every item this worker collected, by node id (a node id may repeat).
        self.items_by_nodeid: dict[str, list[pytest.Item]] = {}
        #: Seconds spent collecting each file (a module's node id), for the history.
        self.collect_seconds: dict[str, float] = {}
        #: This worker's collection errors, by the failing collector's file.
        self.collect_errors: dict[str, str] = {}
        #: Answers to NEED_WORK that arrived while a module was running.
        self.answers: list[tuple[str, Any]] = []
        #: Reports of the test running now, sent with its logfinish.
        self.pending_reports: list[pytest.TestReport] = []
        #: Whether plain passing tests may travel as TEST_PASSED records (both sides agree).
        self.compact_reports = False

    def send(self, name: str, payload: Any) -> None:
        self._leave_if_forked()
        self.outbox.send(name, payload)

    def _leave_if_forked(self) -> None:
        """End a process a test forked, where the worker would talk to the controller.

        A test that forks a child which raises instead of calling ``os._exit``
        leaves that child in pytest's loop, where it reports the test and goes on.
        In a plain run it then runs the rest of the session and exits. Here it
        shares the worker's channel, which only the worker may use (a second
        writer garbles the stream, and the child has no receiver thread to hear
        the answer it would wait for). So the child ends where the worker would
        speak next, with the exit status of a session that failed.
        """
        if os.getpid() != self.pid:
            os._exit(1)

    @pytest.hookimpl(tryfirst=True)
    def pytest_cmdline_main(self, config: pytest.Config) -> None:
        self.config = config
        # Other plugins (cacheprovider, junitxml, stepwise, pytest-xdist-aware ones)
        # recognise a worker by ``config.workerinput``; they must see it from their
        # pytest_configure on, so it is set here, before configure.
        config.workerinput = {  # type: ignore[attr-defined]  # the pytest-xdist convention
            **self.setup["workerinput"],
            "workerid": self.setup["worker_id"],
            "workercount": self.setup["worker_count"],
        }
        config.workeroutput = {}  # type: ignore[attr-defined]  # the pytest-xdist convention
        option = config.option
        # The controller already selected the tests; a worker runs exactly the
        # node ids it is sent, so selection options must not act here again.
        # -x/--maxfail stay: a worker's own failures never exceed the run's, so
        # stopping itself at its own limit is never early, and it is immediate
        # (the controller counts across workers and stops the others).
        option.keyword = ""
        option.markexpr = ""
        option.deselect = []
        option.lf = False
        option.failedfirst = False
        option.newfirst = False
        option.stepwise = False
        option.stepwise_skip = False
        option.usepdb = False
        option.trace = False
        option.basetemp = self.setup["basetemp"]

    @pytest.hookimpl(trylast=True)
    def pytest_configure(self, config: pytest.Config) -> None:
        # Everything a worker's terminal reporter would write goes to /dev/null
        # (execnet owns the real stdout); without it, no plugin's
        # pytest_terminal_summary runs in the worker either -- some are slow
        # (hypothesis' imports hypothesis there: ~0.5 s per worker).
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            config.pluginmanager.unregister(reporter)
        # Compact records skip pytest_report_to_serializable: only where no plugin
        # (here or in the controller) takes part in report serialisation.
        self.compact_reports = self.setup["compact_reports"] and own_serialisation_only(
            config.hook.pytest_report_to_serializable.get_hookimpls(),
            frozenset({WORKER_COMPAT_PLUGIN_NAME}),
        )
        self.outbox.start()

    # The worker collects what a plain run with the same arguments collects, once,
    # before it runs anything: every module of the selection is imported before
    # any test runs, as in a plain run and under pytest-xdist, and each file is
    # collected with the run's own rules (python_files, conftest collectors,
    # --ignore, testpaths). Suites depend on both: a module may use what another
    # module imported at collection time, and a conftest may collect *.py data
    # files as non-Python items (see docs/how-it-works.md).

    @pytest.hookimpl(wrapper=True)
    def pytest_make_collect_report(
        self, collector: pytest.Collector
    ) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
        if not isinstance(collector, pytest.File):
            return (yield)
        started = _perf()
        report = yield
        self.collect_seconds[collector.nodeid] = _perf() - started
        return report

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        index = self.items_by_nodeid
        for item in session.items:
            index.setdefault(item.nodeid, []).append(item)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool:
        config = session.config
        # The controller counts collection errors and failures across workers (and
        # stops the run); what this worker's collection counted must not stop it.
        session.testsfailed = 0
        session.shouldfail = False
        session.shouldstop = False
        self.send(
            READY,
            ReadyPayload(
                pid=os.getpid(),
                python=sys.executable,
                rootdir=str(config.rootpath),
                collected=len(session.items),
            ),
        )
        try:
            batch = self._take(session, self._wait_for_assignment())
            while batch is not None:
                batch = self._run_batch(session, batch)
        except pytest.exit.Exception as exc:
            self.send(EXIT_REQUESTED, ExitPayload(message=exc.msg, returncode=exc.returncode))
            raise
        return True

    def _wait_for_assignment(self) -> RunModulePayload | None:
        """Block until the controller answers READY or NEED_WORK; remember a STOP on the way."""
        while True:
            name, payload = self.answers.pop(0) if self.answers else self.inbox.get()
            if name == RUN_MODULE:
                assignment: RunModulePayload = payload
                return assignment
            if name == NO_MORE_WORK:
                return None
            if name == _CONTROLLER_GONE:
                self.stop_requested = True
                return None
            if name == STOP:
                self.stop_requested = True
                continue
            raise RuntimeError(f"unexpected message from the controller: {name!r}")

    def _poll_stop(self) -> bool:
        """Return True once the controller asked this worker to stop (never blocks)."""
        while not self.stop_requested:
            try:
                name, payload = self.inbox.get_nowait()
            except queue.Empty:
                break
            if name in (STOP, _CONTROLLER_GONE):
                self.stop_requested = True
            elif name in (RUN_MODULE, NO_MORE_WORK):
                # The answer to a request made ahead (a quick module): kept for
                # when the current module is done.
                self.answers.append((name, payload))
            else:
                raise RuntimeError(f"unexpected message from the controller: {name!r}")
        return self.stop_requested

    def _take(
        self, session: pytest.Session, assignment: RunModulePayload | None, *, announce: bool = True
    ) -> _Batch | None:
        """The collected items the assignment names, in the controller's order."""
        if assignment is None:
            return None
        module = assignment["module"]
        items: list[pytest.Item] = []
        missing: list[str] = []
        taken: dict[str, int] = {}
        for nodeid in assignment["nodeids"]:
            # The k-th request of a repeated node id takes its k-th item.
            position = taken.get(nodeid, 0)
            candidates = self.items_by_nodeid.get(nodeid, ())
            if position < len(candidates):
                items.append(candidates[position])
                taken[nodeid] = position + 1
            else:
                missing.append(nodeid)
        batch = _Batch(
            unit=assignment["unit"],
            module=module,
            items=items,
            collect_s=self.collect_seconds.get(module, 0.0),
            prefetch=assignment["prefetch"],
            ask_in_last_teardown=assignment["ask_in_last_teardown"],
        )
        batch.missing = missing
        if announce:
            self._announce(batch)
        return batch

    def _announce(self, batch: _Batch) -> None:
        """Tell the controller a module starts here, and which of its tests this worker lacks."""
        error = None
        if batch.missing:
            error = next(
                (
                    text
                    for nodeid, text in self.collect_errors.items()
                    if nodeid == batch.module or nodeid.startswith(batch.module + "::")
                ),
                None,
            )
        self.send(
            COLLECTED,
            CollectedPayload(
                unit=batch.unit,
                module=batch.module,
                missing=batch.missing,
                collect_s=batch.collect_s,
                error=error,
            ),
        )

    def _run_batch(self, session: pytest.Session, batch: _Batch) -> _Batch | None:
        """Run one module's items; then ask for and return the next module (or None)."""
        asked_ahead = batch.prefetch and not self.stop_requested
        if asked_ahead:
            self.send(NEED_WORK, {})
        after_last = _AfterLastTest(self, session, batch, asked=asked_ahead)
        for index, item in enumerate(batch.items):
            if self._poll_stop():
                break
            nextitem = batch.items[index + 1] if index + 1 < len(batch.items) else after_last
            started = _perf()
            cpu_started = _cpu()
            item.config.hook.pytest_runtest_protocol(item=item, nextitem=nextitem)
            batch.run_s += _perf() - started
            batch.cpu_s += _cpu() - cpu_started
            batch.executed += 1
            if session.shouldfail or session.shouldstop:
                self.stop_requested = True
        self._send_module_finished(batch, completed=batch.executed == len(batch.items))
        assignment = after_last.assignment
        if after_last.asked and not after_last.answered:
            assignment = self._wait_for_assignment()
        if self.stop_requested:
            # The controller answers every request: a module it sent ahead is
            # reported back unstarted.
            if assignment is not None:
                unstarted = _Batch(assignment["unit"], assignment["module"], [], 0.0)
                self._send_module_finished(unstarted, completed=False, started=False)
            return None
        if not after_last.asked:
            assignment = self._request_work()
        if after_last.next_batch is not None:
            self._announce(after_last.next_batch)
            return after_last.next_batch
        return self._take(session, assignment)

    def chain_after_module(self, after_last: _AfterLastTest) -> list[pytest.Collector]:
        """The collector chain a module's last test tears down to; asks for the next module.

        Called by pytest as the last test's teardown starts. The answer:

        * ``[]`` when this worker runs nothing more (stopping, or no more work):
          everything is torn down, session fixtures too, as after a plain run's
          last test;
        * the chain of the next module's first test, once the controller has sent
          it: pytest keeps exactly what the two tests share (the session, common
          packages and directories), as in a plain run;
        * the session alone when the batch may not ask this early
          (``ask_in_last_teardown`` off): module, class and package fixtures go.
        """
        self._leave_if_forked()
        session = after_last.session
        if not after_last.batch.ask_in_last_teardown and not after_last.asked:
            return [session]
        if self.stop_requested or session.shouldfail or session.shouldstop:
            return []
        if not after_last.asked:
            self.send(NEED_WORK, {})
            after_last.asked = True
        after_last.assignment = self._wait_for_assignment()
        after_last.answered = True
        if after_last.assignment is None or self.stop_requested:
            return []
        if not after_last.batch.ask_in_last_teardown:
            return [session]
        after_last.next_batch = self._take(session, after_last.assignment, announce=False)
        if after_last.next_batch is None or not after_last.next_batch.items:
            return [session]
        # Everything above the item itself: its collectors, the session first.
        return cast("list[pytest.Collector]", after_last.next_batch.items[0].listchain()[:-1])

    def _request_work(self) -> RunModulePayload | None:
        self.send(NEED_WORK, {})
        return self._wait_for_assignment()

    def _send_module_finished(
        self, batch: _Batch, *, completed: bool, started: bool = True
    ) -> None:
        self.send(
            MODULE_FINISHED,
            ModuleFinishedPayload(
                unit=batch.unit,
                started=started,
                module=batch.module,
                collect_s=batch.collect_s,
                run_s=batch.run_s,
                cpu_s=round(batch.cpu_s, 3),
                executed=batch.executed,
                completed=completed,
            ),
        )

    def pytest_internalerror(self, excrepr: object) -> None:
        # The worker's stdout is /dev/null (execnet owns the real one): without
        # this, an internal error in a worker would vanish.
        self.send(INTERNAL_ERROR, InternalErrorPayload(text=str(excrepr)))

    def pytest_runtest_logstart(self, nodeid: str, location: Location) -> None:
        self._leave_if_forked()
        self.outbox.add((TEST_STARTED, nodeid, location))
        # Sent before the test runs, with the previous test's end: if this test kills
        # the worker, the controller knows which test it was and has every result
        # before it (a crash costs at most the test it was running).
        self.outbox.flush()

    def pytest_runtest_logfinish(self, nodeid: str, location: Location) -> None:
        self._leave_if_forked()
        reports, self.pending_reports = self.pending_reports, []
        if self.compact_reports and all(_is_plain_pass(report) for report in reports):
            keywords = list(reports[0].keywords) if reports else []
            phases = [(r.when, r.duration, r.start, r.stop) for r in reports]
            self.outbox.add((TEST_PASSED, nodeid, location, keywords, phases))
        else:
            serialized = [self._serialize(report) for report in reports]
            self.outbox.add((TEST_FINISHED, nodeid, location, serialized))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.pending_reports.append(report)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        # The controller collected the same files and reported its own errors; an
        # error of this worker's alone (a file its snapshot lacks...) is named when
        # the controller hands it a module it could not collect (see _announce).
        if report.failed:
            self.collect_errors[report.nodeid] = report.longreprtext

    def _serialize(self, report: pytest.TestReport | pytest.CollectReport) -> dict[str, Any]:
        assert self.config is not None, "reports arrive only after pytest_cmdline_main"
        data: dict[str, Any] = self.config.hook.pytest_report_to_serializable(
            config=self.config, report=report
        )
        return data

    def pytest_warning_recorded(
        self,
        warning_message: warnings.WarningMessage,
        when: str,
        nodeid: str,
        location: tuple[str, int, str] | None,
    ) -> None:
        category = warning_message.category
        self.send(
            WARNING,
            WarningPayload(
                message=str(warning_message.message),
                category_module=category.__module__,
                category_name=category.__qualname__,
                filename=str(warning_message.filename),
                lineno=warning_message.lineno,
                when=when,
                nodeid=nodeid,
                location=location,
            ),
        )


#: The name under which the plugin's worker-side fixes register (compat.py).
WORKER_COMPAT_PLUGIN_NAME: Final = "pytest_parallel_modules-worker-compat"
#: pytest's own plugins that (de)serialise reports: ``reports``, and ``subtests``, which
#: only handles its own kind of report.
PYTEST_SERIALISERS: Final = frozenset({"reports", "subtests"})


def own_serialisation_only(impls: Sequence[Any], ours: frozenset[str]) -> bool:
    """Whether only pytest itself and this plugin (the names in ``ours``) implement a
    report (de)serialisation hook: then a compact record loses nothing any plugin sees."""
    allowed = PYTEST_SERIALISERS | ours
    return all(impl.plugin_name in allowed for impl in impls)


def _is_plain_pass(report: pytest.TestReport) -> bool:
    """Whether a report is a passed phase with nothing but pytest's own, empty-handed fields."""
    return (
        report.outcome == "passed"
        and report.longrepr is None
        and not report.sections
        and not report.user_properties
        and report.__dict__.keys() <= PLAIN_REPORT_FIELDS
        and all(value == 1 for value in report.keywords.values())
    )


def _remap(path: str, path_map: Sequence[tuple[str, str]]) -> str:
    """Return ``path`` moved from the main checkout into the worktree, if it exists there."""
    for source, target in path_map:
        if path == source or path.startswith(source + os.sep):
            candidate = target + path[len(source) :]
            if os.path.exists(candidate):
                return candidate
    return path


def _redirect_editable_installs(path_map: Sequence[tuple[str, str]]) -> None:
    """Point editable installs of the project at the worktree instead of the main checkout.

    ``.pth``-file editable installs are plain ``sys.path`` entries, which the
    controller already mapped. setuptools' import-hook kind installs a finder
    module (``__editable___<name>_finder``) at interpreter start-up whose
    ``MAPPING`` (package -> directory) and ``NAMESPACES`` point into the checkout.
    """
    if not path_map:
        return
    for name, module in list(sys.modules.items()):
        if not (name.startswith("__editable__") and name.endswith("_finder")):
            continue
        mapping = getattr(module, "MAPPING", None)
        if isinstance(mapping, dict):
            for package, directory in list(mapping.items()):
                if isinstance(directory, str):
                    mapping[package] = _remap(directory, path_map)
        namespaces = getattr(module, "NAMESPACES", None)
        if isinstance(namespaces, dict):
            for package, directories in list(namespaces.items()):
                if isinstance(directories, list):
                    namespaces[package] = [
                        _remap(d, path_map) if isinstance(d, str) else d for d in directories
                    ]
    # Subprocesses a test starts import from the snapshot too.
    pythonpath = os.environ.get("PYTHONPATH")
    if pythonpath:
        os.environ["PYTHONPATH"] = os.pathsep.join(
            _remap(entry, path_map) for entry in pythonpath.split(os.pathsep)
        )


#: Signal the controller sends to make a worker dump every thread's stack (before a kill).
DUMP_STACKS_SIGNAL: Final = signal.SIGUSR1


def _prepare_process(stderr_path: str) -> None:
    """Make this process a worker the controller can observe and end completely.

    - Its own process group: the controller ends the worker together with every
      process a test started (servers, daemons), and the terminal's Ctrl-C goes to
      the controller only, which stops the workers in order.
    - fd 2 goes to a per-worker file: after a crash the controller shows its tail.
    - faulthandler writes every thread's stack there on a fatal signal, and on
      :data:`DUMP_STACKS_SIGNAL` (sent before a timeout kill).
    """
    os.setpgid(0, 0)
    fd = os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 2)
    # faulthandler gets its own descriptor of the file: during a test pytest's fd
    # capture points fd 2 elsewhere, and a stack dump must not land in a capture.
    dump_file = os.fdopen(fd, "w")
    faulthandler.enable(file=dump_file, all_threads=True)
    faulthandler.register(DUMP_STACKS_SIGNAL, file=dump_file, all_threads=True)


def run_worker(channel: execnet.Channel) -> None:
    """Start the worker's pytest session and serve the controller until it says there is no more work."""
    setup: WorkerSetup = channel.receive()
    _prepare_process(setup["stderr_path"])
    sys.path[:] = setup["sys_path"]
    _redirect_editable_installs(setup["path_map"])
    os.environ[WORKER_ID_ENV] = setup["worker_id"]
    os.environ[WORKER_COUNT_ENV] = str(setup["worker_count"])
    os.environ[WORKER_PID_ENV] = str(os.getpid())
    inbox: queue.Queue[Any] = queue.Queue()
    # Incoming messages are queued by execnet's receiver thread, so the session
    # can check for STOP between tests without blocking.
    channel.setcallback(inbox.put, endmarker=(_CONTROLLER_GONE, None))
    session = WorkerSession(channel=channel, inbox=inbox, setup=setup)
    exitstatus = pytest.main(setup["args"], plugins=[session])
    session.outbox.close()
    workeroutput = getattr(session.config, "workeroutput", {})
    channel.send(
        (
            SESSION_FINISHED,
            SessionFinishedPayload(
                exitstatus=int(exitstatus), workeroutput=_portable(workeroutput)
            ),
        )
    )


def _portable(output: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``output`` that execnet can send (a plugin may leave anything there)."""
    import execnet

    portable: dict[str, Any] = {}
    for key, value in output.items():
        try:
            execnet.dumps(value)
        except execnet.DumpError:
            continue
        portable[key] = value
    return portable


if __name__ == "__channelexec__":
    run_worker(channel)  # type: ignore[name-defined]  # noqa: F821  # execnet injects ``channel``
