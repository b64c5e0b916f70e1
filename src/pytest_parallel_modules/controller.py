"""The run loop that replaces pytest's own when ``--parallel-modules`` is active. Runs in the controller.

The controller collects as pytest always does (so ``-k``, ``-m``, ``--lf``,
``--deselect`` and node ids select exactly as in a plain run), plans the
selected tests as units of work, and hands one unit at a time to whichever
worker asks. It is hooks, the event loop and dispatch only: the
:class:`~pytest_parallel_modules.ledger.RunLedger` decides what becomes of every
unit, the :class:`~pytest_parallel_modules.workers.WorkerFleet` holds every
worker's state and how many to start, the
:class:`~pytest_parallel_modules.replay.Replayer` turns worker messages into
calls of pytest's hooks, and the
:class:`~pytest_parallel_modules.worker_pool.WorkerStarter` places and spawns
workers on a thread of its own, so nothing here waits on git.

All worker messages arrive on one queue and are handled on the main thread
through :attr:`ParallelSession.handlers`, an explicit table checked against
:data:`pytest_parallel_modules.worker.WORKER_MESSAGES` by a unit test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
import gc
import marshal
import math
import os
from pathlib import Path
import queue
import signal
import sys
import tempfile
import threading
from typing import Any
from typing import Final
from typing import final
from typing import TYPE_CHECKING

import pytest

from pytest_parallel_modules import compat
from pytest_parallel_modules import timing
from pytest_parallel_modules import worker
from pytest_parallel_modules import worker_stderr
from pytest_parallel_modules import worktrees
from pytest_parallel_modules.grouping import group_by_module
from pytest_parallel_modules.grouping import module_of
from pytest_parallel_modules.grouping import units_of
from pytest_parallel_modules.grouping import WorkUnit
from pytest_parallel_modules.history import History
from pytest_parallel_modules.history import LoadedHistory
from pytest_parallel_modules.isolation import WorkerPlacer
from pytest_parallel_modules.ledger import Decisions
from pytest_parallel_modules.ledger import LossKind
from pytest_parallel_modules.ledger import RunLedger
from pytest_parallel_modules.local_run import LOCAL_RUN_PLUGIN_NAME
from pytest_parallel_modules.local_run import LocalRun
from pytest_parallel_modules.module_facts import plan_splits
from pytest_parallel_modules.options import available_cpus
from pytest_parallel_modules.replay import Replayer
from pytest_parallel_modules.reports import build_merged_report
from pytest_parallel_modules.reports import MergedReport
from pytest_parallel_modules.reports import SplitRecord
from pytest_parallel_modules.run_state import RunState
from pytest_parallel_modules.scheduling import build_plan
from pytest_parallel_modules.scheduling import check_plan
from pytest_parallel_modules.scheduling import estimate_modules
from pytest_parallel_modules.scheduling import ModuleEstimates
from pytest_parallel_modules.sharding import module_file_sizes
from pytest_parallel_modules.sharding import shard_info_key
from pytest_parallel_modules.timeline_recorder import TimelineRecorder
from pytest_parallel_modules.worker_pool import CHANNEL_CLOSED
from pytest_parallel_modules.worker_pool import kill_process_group
from pytest_parallel_modules.worker_pool import START_FAILED
from pytest_parallel_modules.worker_pool import StartCancelled
from pytest_parallel_modules.worker_pool import WorkerEvent
from pytest_parallel_modules.worker_pool import WorkerLaunch
from pytest_parallel_modules.worker_pool import WorkerPool
from pytest_parallel_modules.worker_pool import WorkerStarter
from pytest_parallel_modules.workers import WorkerFleet
from pytest_parallel_modules.workers import WorkerRecord
from pytest_parallel_modules.workers import WorkerState


if TYPE_CHECKING:
    from collections.abc import Generator

    from pytest_parallel_modules.options import Options

#: Seconds a stopping worker gets to exit on its own before it is killed.
TERMINATE_TIMEOUT: Final = 10.0
#: A unit estimated under this many seconds lets its worker ask for the next one ahead.
PREFETCH_BELOW_S: Final = 0.5
#: Seconds to wait for a worker's stack dump before the kill.
STACK_DUMP_WAIT_S: Final = 1.0
#: Seconds running workers get to finish their current test after Ctrl-C.
INTERRUPT_GRACE_S: Final = 3.0
#: After a second Ctrl-C, the longest wait for the stacks of what was running.
SECOND_INTERRUPT_DUMP_WAIT_S: Final = 0.3
#: Workers started while the controller collects, when the history knows no module.
EARLY_STARTS_WITHOUT_HISTORY: Final = 2
#: A test is reported as unusually slow past this many times its unit's estimate ...
SLOW_FACTOR: Final = 10.0
#: ... and this many seconds (never killed for it: see --module-timeout).
SLOW_MIN_S: Final = 60.0
#: Seconds between two looks at timeouts and deadlines while no message arrives.
POLL_S: Final = 0.25
#: Under ``auto``, a selection estimated under this many seconds runs in this process:
#: starting workers (a worktree, an interpreter, a collection each) costs about that
#: much here, so they could only make it slower.
IN_PROCESS_BELOW_S: Final = 1.0
#: Options that narrow a run to a few tests: under ``auto``, no worker starts before the
#: selection is known.
_NARROWING_OPTIONS: Final = ("keyword", "markexpr", "lf", "stepwise", "deselect")


@final
@dataclass(slots=True)
class RunView:
    """What the reporting and display plugins may read of a run, as the controller publishes it."""

    #: The plan, in the order units are handed out.
    units: tuple[WorkUnit, ...] = ()
    #: Estimated seconds per module.
    estimates: dict[str, float] = field(default_factory=dict)
    #: Whether the history knew at least one module of the plan.
    estimates_known: bool = False
    #: ``N``.
    workers: int = 1
    #: Worker id -> its state's name, as the fleet holds it.
    worker_states: dict[str, str] = field(default_factory=dict)
    #: The merged report, once the run ended (built once, in ``pytest_sessionfinish``).
    merged: MergedReport | None = None
    #: The command that reruns only what failed, once the run ended.
    rerun_modules: tuple[str, ...] = ()
    #: The duration history as this run saved it, for the HTML report's trends (#17).
    saved_history: History | None = None
    #: The modules above the fair share and what became of them (``--split-modules``).
    splits: list[SplitRecord] = field(default_factory=list)
    #: Called on every wake-up of the event loop (at least every :data:`POLL_S`), so a
    #: display can redraw its clocks while no event arrives, with no thread of its own.
    ticks: list[Callable[[], None]] = field(default_factory=list)
    #: Seconds since pytest's session started (the run's wall so far), on the clock of
    #: the report's ``wall_s``: the summary reads it when it prints (#16).
    elapsed: Callable[[], float] | None = None


@final
class ParallelSession:
    """The plugin object that runs a session on parallel workers. Runs in the controller.

    Registered by :func:`pytest_parallel_modules.plugin.pytest_configure` under
    ``"pytest_parallel_modules-controller"`` when the plugin is active.
    """

    def __init__(self, config: pytest.Config, options: Options) -> None:
        self.config = config
        self.options = options
        self.view = RunView(workers=max(1, options.workers or 1))
        self.events: queue.Queue[WorkerEvent] = queue.Queue()
        self.pool = WorkerPool(self.events)
        limit = max(1, options.workers or 1)
        self.fleet = WorkerFleet(
            limit=limit,
            # By default a crashed worker is replaced at most once per worker of the run.
            restart_budget=limit if options.worker_restarts is None else options.worker_restarts,
        )
        #: Normal (not replacement, not retry) starts left: ``min(N, units)`` once planned.
        self._initial_starts_left = limit
        self.ledger = RunLedger((), retries=options.retries, strict_retries=options.retries_strict)
        self.estimates: ModuleEstimates | None = None
        self._measured_modules: frozenset[str] = frozenset()
        self.rerun_message: str | None = None
        #: Modules that failed in the last recorded run.
        self.last_failed: frozenset[str] = frozenset()
        self.stopping = False
        #: Why the run stops early (fail-fast), as pytest's ``shouldfail`` says it.
        self.stop_reason: str | None = None
        self.exit_request: worker.ExitPayload | None = None
        self.last_start_failure: str | None = None
        self.workers_exhausted = False
        self.session: pytest.Session | None = None
        self._planned = False
        #: ``auto`` found the selection too small for workers: pytest's own loop runs it.
        self.in_process = False
        #: In process: each node id's unit, the unit running, since when, its test's reports.
        #: Feeds the ledger from pytest's own loop when the selection runs in process.
        self.local_run: LocalRun | None = None
        self._finished = False
        self._terminated = False
        self._started_perf = timing.perf()
        self._basetemp_dir = Path()
        #: Set when the run ends: a worker being placed (git, a pool lock) gives up.
        self._cancel_placement = threading.Event()
        self.placer = WorkerPlacer(
            mode=options.isolation,
            repo_root=worktrees.find_repo_root(config.invocation_params.dir)
            if options.isolation == "worktree"
            else None,
            invocation_dir=config.invocation_params.dir,
            args=config.invocation_params.args,
            sys_path=sys.path,
            copy_patterns=options.worktree_copy,
            cancel=self._cancel_placement,
        )
        self.replayer = Replayer(config, self.placer.repo_root)
        self.starter = WorkerStarter(self.events, self._start_one)
        self._previous_sigterm: Any = None
        #: When the run's parts happened, for the report's timeline (#17).
        self.timeline = TimelineRecorder()
        self.view.elapsed = self.timeline.elapsed
        self.run_state = RunState(options, self.timeline.with_contents)
        self.handlers: Final[dict[str, Callable[[WorkerRecord, Any], None]]] = {
            worker.READY: self._on_ready,
            worker.NEED_WORK: self._on_need_work,
            worker.COLLECTED: self._on_collected,
            worker.TESTS: self._on_tests,
            worker.WARNING: self._on_warning,
            worker.MODULE_FINISHED: self._on_module_finished,
            worker.EXIT_REQUESTED: self._on_exit_requested,
            worker.INTERNAL_ERROR: self._on_internal_error,
            worker.SESSION_FINISHED: self._on_session_finished,
            CHANNEL_CLOSED: self._on_channel_closed,
            START_FAILED: self._on_start_failed,
        }

    # -- pytest hooks: configure to collection ------------------------------------

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.session = session
        # The run's clock starts with pytest's own (#16): the report's wall time is
        # then the one pytest's last line shows, collection included.
        self.timeline.begin()  # timeline (#17)
        # SIGTERM ends the run like Ctrl-C (workers stopped, partial summary, exit 2)
        # from the moment the session starts, collection included.
        self._previous_sigterm = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)

    @pytest.hookimpl(wrapper=True)
    def pytest_collection(self, session: pytest.Session) -> Generator[None, object, object]:
        # The first workers boot (worktree, interpreter, plugins, their own collection)
        # while the controller collects, so their start-up costs little wall time.
        self._basetemp_dir = self._basetemp()
        self.last_failed = self.run_state.failed_modules(
            lambda warning: self._say(f"parallel-modules: WARNING: {warning}")
        )
        if not self._selection_may_be_tiny():
            self._start_workers(self._early_starts(), "initial")
        return (yield)

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        # trylast: -k, -m, --lf and other plugins have selected already. The share of
        # --module-shard is kept after this, by sharding.ShardFilter.
        self._select_failed_modules(config, items)

    def _select_failed_modules(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        """``--rerun-failed-modules``: keep every selected test of the modules that failed last time."""
        if not self.options.rerun_failed:
            return
        failed = self.last_failed
        present = {module_of(item.nodeid) for item in items}
        if not failed & present:
            runs = self.options.rerun_failed_none
            self.rerun_message = (
                f"parallel-modules: no module failed last time; running {'all' if runs == 'all' else 'no'} "
                f"modules (--rerun-failed-modules-none={runs})"
            )
            if runs == "all":
                return
            keep: set[str] = set()
        else:
            keep = set(failed & present)
        deselected = [item for item in items if module_of(item.nodeid) not in keep]
        if keep:
            # Tests, not modules: the same count as pytest's "(N deselected)".
            self.rerun_message = (
                f"parallel-modules: rerunning {len(keep)} module(s) that failed last time "
                f"({len(deselected)} deselected)"
            )
        if deselected:
            config.hook.pytest_deselected(items=deselected)
            items[:] = [item for item in items if module_of(item.nodeid) in keep]

    # tryfirst: the plan must exist before the terminal reporter asks for the
    # pytest_report_collectionfinish lines in its own pytest_collection_finish.
    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        groups = group_by_module(item.nodeid for item in session.items)
        loaded = self.run_state.history()
        self._measured_modules = frozenset(
            module for module, record in loaded.history.modules.items() if record.runs > 0
        )
        self.estimates = estimate_modules(
            groups, loaded.history, module_file_sizes(self.config.rootpath, groups)
        )
        first: frozenset[str] = frozenset()
        if self.options.fail_fast:
            first = self.last_failed
        if self.config.getoption("failedfirst", False):
            # --ff: pytest put the last failures first among the items; a module holding
            # one starts first too, as Jest runs the files that failed last time first.
            first = first | self._modules_failed_last_time()
        plan = build_plan(groups, self.estimates, first=first)
        # --split-modules: a module above the fair share may run as parts (after
        # sharding, which partitions whole modules, and before the plan hook).
        split = plan_splits(
            session.items,
            plan,
            self.estimates,
            loaded.history,
            mode=self.options.split_modules,
            workers=self.fleet.limit,
            keep_whole=self.options.split_keep_whole,
            rootpath=self.config.rootpath,
        )
        plan = split.plan
        changed = self.config.hook.pytest_parallel_modules_plan(config=self.config, plan=list(plan))
        if changed is not None:
            try:
                plan = check_plan(plan, changed)
            except ValueError as exc:
                raise pytest.UsageError(str(exc)) from None
        units = units_of(plan)
        self.view.splits = split.records(units)
        self.ledger = RunLedger(
            units, retries=self.options.retries, strict_retries=self.options.retries_strict
        )
        if self._runs_in_process(units):
            self.in_process = True
            self.local_run = LocalRun(self.ledger, units)
            self.config.pluginmanager.register(self.local_run, LOCAL_RUN_PLUGIN_NAME)
            self._stop()
            return
        self.view.units = units
        self.view.estimates = dict(self.estimates.seconds)
        self.view.estimates_known = self.estimates.known_modules > 0
        self._planned = True
        self.timeline.collected(self.config.rootpath, {u.module for u in units})  # timeline (#17)

    def pytest_report_collectionfinish(self) -> list[str]:
        lines: list[str] = []
        # What --rerun-failed-modules selected is said however the selection then runs.
        if self.rerun_message is not None:
            lines.append(self.rerun_message)
        if self.in_process:
            total = sum(self.estimates.seconds.values()) if self.estimates is not None else 0.0
            lines.append(
                f"parallel-modules: the selection is estimated at {total:.2f}s: running it in "
                f"this process (workers would cost more than they save; {self.options.workers_source}; "
                "--parallel-modules=N starts workers anyway)"
            )
            return lines
        warning = self.run_state.history().warning
        if warning is not None:
            lines.append(f"parallel-modules: WARNING: {warning}")
        path = self.options.history_path
        modules = len({unit.module for unit in self.view.units})
        if path is None:
            source = "no history (pytest's cache is disabled)"
        else:
            known = self.estimates.known_modules if self.estimates is not None else 0
            source = f"durations from {self._shown_path(path)} ({known}/{modules} modules known)"
        if self.config.get_verbosity() < 0:
            return lines
        workers = self.fleet.limit
        lines.append(f"parallel-modules: {self.placer.describe()}")
        lines.append(
            f"parallel-modules: {_plural(modules, 'module')} on {min(workers, max(1, len(self.view.units)))} "
            f"of {_plural(workers, 'worker')}, slowest first; {source}"
        )
        return lines

    # -- pytest hooks: the run -----------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool | None:
        if self.in_process:
            return None  # pytest's own loop runs the tests, here
        # The same guard as pytest's own loop: collection errors stop the run
        # unless --continue-on-collection-errors.
        if session.testsfailed and not session.config.option.continue_on_collection_errors:
            raise session.Interrupted(
                f"{session.testsfailed} error{'s' if session.testsfailed != 1 else ''} during collection"
            )
        try:
            self._retire_surplus()
            self._top_up()
            self._drain_events(session)
        except KeyboardInterrupt:
            self._interrupt()
            raise
        finally:
            self.timeline.ended()  # timeline (#17)
        if self.exit_request is not None:
            pytest.exit(self.exit_request["message"], self.exit_request["returncode"])
        if session.shouldfail:
            raise session.Failed(session.shouldfail)
        if session.shouldstop:
            raise session.Interrupted(session.shouldstop)
        return True

    # tryfirst: the merged report exists before any other plugin's sessionfinish and
    # before the terminal reporter's summary (printed after every sessionfinish impl).
    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self._previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self._previous_sigterm)
            self._previous_sigterm = None
        self._terminate()
        if self._finished:
            return
        self._finished = True
        if self.in_process:
            if self.local_run is not None:
                self.local_run.finish_unit()
                self.config.pluginmanager.unregister(self.local_run, LOCAL_RUN_PLUGIN_NAME)
            self.ledger.finish()
            self._finish_run_state()
            return
        self._apply(self.ledger.finish())
        if self.workers_exhausted:
            self._report_unrun()
        # A shard writes its report even when its share is empty: `merge` then knows that
        # the share ran, and what the whole selection was.
        wanted = self.ledger.module_reports or self.view.units or self.options.shard is not None
        if self._planned and wanted:
            self.view.merged = self._merged_report()
        self._finish_run_state()
        # What is left of the process is its exit: a full collection over the run's
        # objects (collected items, reports) would only slow it down.
        gc.freeze()

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        for record in self.fleet:
            if record.worktree is not None and record.worktree in self.kept_worktrees():
                terminalreporter.write_line(
                    f"parallel-modules: kept the worktree of worker {record.worker_id} "
                    f"(it ran a failed module): {record.worktree}"
                )

    # -- starting workers ---------------------------------------------------------

    def _selection_may_be_tiny(self) -> bool:
        """Under ``auto``, whether the command line narrows the run (``-k``, ``--lf``, node ids...).

        Then no worker starts before the selection is known: a run of a few tests may
        run in this process, and a worker started for it would be waste.
        """
        if not self.options.auto:
            return False
        option = self.config.option
        if any(getattr(option, name, None) for name in _NARROWING_OPTIONS):
            return True
        return any("::" in str(arg) for arg in self.config.invocation_params.args)

    def _runs_in_process(self, units: tuple[WorkUnit, ...]) -> bool:
        """Under ``auto``: a selection estimated under :data:`IN_PROCESS_BELOW_S` runs here.

        Never with an explicit worker count, nor with what only workers provide
        (``--fail-fast-modules``, ``--module-retries``, ``--module-timeout``), nor for a
        shard: ``merge`` needs every shard's report, an empty or tiny share's included.
        """
        options = self.options
        if not options.auto or self.estimates is None:
            return False
        if options.fail_fast or options.retries or options.module_timeout is not None:
            return False
        if options.shard is not None:
            return False
        return math.fsum(self.estimates.seconds.values()) < IN_PROCESS_BELOW_S or not units

    def _early_starts(self) -> int:
        """How many workers to start while collecting: as many as the history says are useful.

        Never more than the CPUs this process may use: each worker collects the whole
        selection as it starts, and more collections at once than cores only slow the
        controller's own (the rest start once the plan is known).
        """
        history = self.run_state.history().history
        known = len(history.modules)
        wanted = known if known else EARLY_STARTS_WITHOUT_HISTORY
        return max(1, min(self.fleet.limit, wanted, available_cpus()))

    def _start_workers(self, count: int, reason: Any, *, retry: bool = False) -> None:
        for _ in range(count):
            record = self.fleet.add("retry" if retry else reason)
            self._publish_states()
            self.starter.request(record.worker_id)

    def _start_one(self, worker_id: str) -> None:
        """Place one worker (its worktree, when isolated) and start it. Runs on the starter thread."""
        try:
            placement = self.placer.place()
        except worktrees.WorktreeCancelled:
            raise StartCancelled(worker_id) from None
        record = self.fleet[worker_id]
        if self.starter.cancelled(worker_id):
            if placement.worktree is not None:
                self.placer.release_one(placement.worktree)
            raise StartCancelled(worker_id)
        record.worktree = placement.worktree
        self.replayer.worker_placed(worker_id, placement.worktree)
        if placement.worktree is not None:
            self.config.hook.pytest_parallel_modules_worktree_ready(
                config=self.config, worktree=placement.worktree, worker_id=worker_id
            )
        node = self.replayer.node(worker_id)
        workerinput = compat.configure_node(self.config, node)
        setup = worker.WorkerSetup(
            worker_id=worker_id,
            worker_count=self.fleet.limit,
            args=compat.worker_args(self.config, placement.args),
            sys_path=placement.sys_path,
            basetemp=str(self._basetemp_dir / f"worker-{worker_id}"),
            path_map=placement.path_map,
            workerinput={key: value for key, value in workerinput.items() if key != "workerid"},
            stderr_path=str(self._stderr_path(worker_id)),
            compact_reports=self.replayer.compact_reports,
        )
        self.timeline.worker_spawned(worker_id)  # timeline (#17)
        self.pool.start(WorkerLaunch(cwd=placement.cwd, setup=setup))

    def _top_up(self, *, after_crash: bool = False) -> None:
        """Start the workers the work left needs: never more than N at once, nor than units left."""
        if not self._planned or self.stopping or self.ledger.stopped:
            return
        wanted = self.fleet.starts_wanted(self.ledger.pending())
        initial = min(wanted, self._initial_starts_left)
        self._initial_starts_left -= initial
        replacements = min(wanted - initial, self.fleet.restarts_left) if after_crash else 0
        self.fleet.restarts_left -= replacements
        self._start_workers(initial, "initial")
        self._start_workers(replacements, "replacement")
        self._start_workers(
            self.fleet.retry_starts_wanted(self.ledger.awaiting_retry()), "retry", retry=True
        )
        if self.fleet.may_run_work() == 0 and (
            self.ledger.pending() or self.ledger.awaiting_retry()
        ):
            self.workers_exhausted = True
            self._say(
                f"parallel-modules: no worker left (--module-worker-restarts={self.fleet.restart_budget} "
                "used up); the modules left are not run"
            )
            self._stop()

    def _retire_surplus(self) -> None:
        """Once planned: workers started while collecting beyond ``min(N, units)`` are not needed."""
        needed = min(self.fleet.limit, len(self.view.units))
        self._initial_starts_left = max(0, needed - len(self.fleet))
        surplus = self.fleet.may_run_work() - needed
        for record in reversed(list(self.fleet)):
            if surplus <= 0:
                break
            if record.state is WorkerState.STARTING:
                # Nothing of the run is lost: it never ran a test.
                record.kill_reason = "not needed"
                self.starter.cancel(record.worker_id)
                self.pool.kill(record.worker_id)
                self.fleet.move(record, WorkerState.KILLED)
                surplus -= 1
        self._publish_states()

    def _basetemp(self) -> Path:
        """The directory under which each worker gets its own ``--basetemp``."""
        # pytest's tmp_path factory has no public accessor from a hook; it is the
        # one pytest-xdist uses too, and with it --basetemp and the retention
        # policy behave as in a plain run.
        factory = getattr(self.config, "_tmp_path_factory", None)
        if factory is not None:
            base: Path = factory.getbasetemp()
            return base
        return Path(tempfile.mkdtemp(prefix="pytest-parallel-modules-"))

    # -- the loop -----------------------------------------------------------------

    def _drain_events(self, session: pytest.Session) -> None:
        while not self.fleet.all_gone():
            # The live display's clock (issue #16): the loop drives it, on this thread.
            for tick in self.view.ticks:
                tick()
            try:
                event = self.events.get(timeout=POLL_S)
            except queue.Empty:
                self._check_clocks()
                continue
            self._handle(event)
            self._check_clocks()
            self.run_state.save_when_final(self.ledger)
            if self.stopping:
                if self.stop_reason is not None and session.shouldfail:
                    # Reports of tests that were already running keep arriving;
                    # the message names the limit that was hit, as in a plain run.
                    session.shouldfail = self.stop_reason
            elif session.shouldfail or session.shouldstop or self.exit_request:
                if isinstance(session.shouldfail, str):
                    self.stop_reason = session.shouldfail
                self._stop()

    def _handle(self, event: WorkerEvent) -> None:
        record = self.fleet[event.worker_id]
        self.handlers[event.name](record, event.payload)

    def _check_clocks(self) -> None:
        """Deadlines that pass while no message arrives: fail-fast grace, timeouts, slow tests."""
        now = timing.perf()
        for record in self.fleet:
            if (
                record.stop_deadline is not None
                and now > record.stop_deadline
                and record.state is WorkerState.STOPPING
            ):
                record.stop_deadline = None
                record.kill_reason = (
                    f"worker {record.worker_id} was still busy {self.options.fail_fast_grace:g}s "
                    "after the fail-fast stop and was killed"
                )
                self._say(f"parallel-modules: {record.kill_reason}")
                self._kill(record, WorkerState.KILLED)
            elif record.state is WorkerState.TIMED_OUT and record.dump_requested is not None:
                # Killed once its stack dump is written (its stderr file grew, then stopped
                # growing between two looks), or after STACK_DUMP_WAIT_S.
                size = worker_stderr.file_size(self._stderr_path(record.worker_id))
                grown = record.dump_size is not None and size > record.dump_size
                if now - record.dump_requested >= STACK_DUMP_WAIT_S or (
                    grown and size == record.dump_last_size
                ):
                    record.dump_requested = None
                    if record.pid is not None:
                        kill_process_group(record.pid)
                record.dump_last_size = size
            elif record.state is WorkerState.BUSY:
                self._check_busy(record, now)

    def _check_busy(self, record: WorkerRecord, now: float) -> None:
        attempt = self.ledger.current(record.worker_id)
        if attempt is None or attempt.started_perf is None:
            return
        limit = self.options.module_timeout
        if limit is not None and now - attempt.started_perf > limit and record.pid is not None:
            self.fleet.move(record, WorkerState.TIMED_OUT)
            self._publish_states()
            record.timed_out_after = limit
            # Stacks first (faulthandler in the worker writes them to its stderr
            # file); the whole process group is killed once they are written.
            record.dump_requested = now
            record.dump_size = worker_stderr.file_size(self._stderr_path(record.worker_id))
            try:
                os.kill(record.pid, worker.DUMP_STACKS_SIGNAL)
            except ProcessLookupError:
                kill_process_group(record.pid)
            return
        running = attempt.running
        if running is None or running == record.slow_warned or attempt.running_since is None:
            return
        estimate = self.view.estimates.get(module_of(running), 0.0)
        elapsed = now - attempt.running_since
        if elapsed > max(SLOW_MIN_S, SLOW_FACTOR * estimate):
            record.slow_warned = running
            hint = (
                ""
                if self.options.module_timeout is not None
                else "; --module-timeout=SECONDS stops a module that runs too long"
            )
            self._say(
                f"parallel-modules: {running} has been running for {elapsed:.0f}s on worker "
                f"{record.worker_id} (its module was estimated at {estimate:.1f}s){hint}"
            )

    def _interrupt(self) -> None:
        """Ctrl-C or SIGTERM: keep what finishes within seconds, name what was running, stop.

        Running workers are told to stop after their current test and get
        :data:`INTERRUPT_GRACE_S` to do so (their reports are kept); a second Ctrl-C,
        or the end of the grace period, kills every worker's process group, after
        asking busy ones for their stacks. Every test still running is reported
        ``interrupted``, with those stacks; tests never started are ``not_run``.
        """
        self._stop()
        deadline = timing.perf() + INTERRUPT_GRACE_S
        dump_wait = STACK_DUMP_WAIT_S
        try:
            while not self.fleet.all_gone():
                remaining = deadline - timing.perf()
                if remaining <= 0:
                    break
                try:
                    event = self.events.get(timeout=min(remaining, POLL_S))
                except queue.Empty:
                    continue
                self._handle(event)
        except KeyboardInterrupt:
            dump_wait = SECOND_INTERRUPT_DUMP_WAIT_S  # a second Ctrl-C: only a glance at the stacks
        busy = [
            record
            for record in self.fleet
            if record.state is not WorkerState.GONE and self.ledger.in_flight(record.worker_id)
        ]
        sizes: dict[Path, int] = {}
        for record in busy:
            if record.pid is not None:
                path = self._stderr_path(record.worker_id)
                sizes[path] = worker_stderr.file_size(path)
                try:
                    os.kill(record.pid, worker.DUMP_STACKS_SIGNAL)
                except ProcessLookupError:
                    del sizes[path]
        if sizes:
            try:
                worker_stderr.wait_for_dumps(sizes, dump_wait)
            except KeyboardInterrupt:
                pass  # yet another Ctrl-C: kill now
        for record in self.fleet:
            if record.state is not WorkerState.GONE:
                self._kill(record, WorkerState.KILLED)
                evidence = "interrupted (Ctrl-C or SIGTERM) while this test ran"
                path = self._stderr_path(record.worker_id)
                stacks = worker_stderr.read_from(path, sizes[path]) if path in sizes else ""
                if stacks:
                    stacks = str(self.replayer.restore_paths(record.worker_id, stacks))
                    evidence += (
                        f"\nStacks of worker {record.worker_id} when it was stopped:\n{stacks}"
                    )
                self._apply(
                    self.ledger.worker_lost(
                        record.worker_id, LossKind.INTERRUPT, evidence, now=timing.now()
                    )
                )
                self.fleet.move(record, WorkerState.GONE)
        self._publish_states()

    def _stop(self, *, keep_running: frozenset[str] = frozenset()) -> None:
        """No unit starts from now on; running workers (but ``keep_running``) stop after their current test."""
        if self.stopping:
            return
        self.stopping = True
        self.ledger.stop()
        for record in self.fleet:
            if record.worker_id in keep_running:
                continue
            if record.state in (WorkerState.BUSY, WorkerState.IDLE):
                self.pool.send(record.worker_id, worker.STOP)
                self.fleet.move(record, WorkerState.STOPPING)
            elif record.state is WorkerState.STARTING:
                # Still collecting: it holds nothing; end it now rather than wait for it.
                record.kill_reason = "not needed"
                self.starter.cancel(record.worker_id)
                self._kill(record, WorkerState.KILLED)
        self._publish_states()

    def _kill(self, record: WorkerRecord, state: WorkerState) -> None:
        if record.pid is not None:
            kill_process_group(record.pid)
        self.pool.kill(record.worker_id)
        if record.state is not WorkerState.GONE:
            self.fleet.move(record, state)

    def _dispatch(self, record: WorkerRecord) -> None:
        """Answer a worker that asks for work: its next unit, or no more work."""
        unit: WorkUnit | None = None
        if not self.stopping:
            if record.reason == "retry":
                # A retry worker runs its retry and nothing else.
                unit = self.ledger.next_retry() if record.retry_unit is None else None
            else:
                unit = self.ledger.next_unit()
        if unit is None:
            self.pool.send(record.worker_id, worker.NO_MORE_WORK)
            if record.state is not WorkerState.STOPPING:
                self.fleet.move(record, WorkerState.STOPPING)
            self._publish_states()
            # Its place may now go to a unit awaiting a retry.
            self._top_up()
            return
        attempt = self.ledger.assign(unit, record.worker_id, timing.now())
        if record.reason == "retry":
            record.retry_unit = unit.id
            number = len(self.ledger.entries[unit.id].retries())
            self._say(
                f"parallel-modules: retrying {unit.id} (attempt {number} of "
                f"{self.options.retries + 1}) on worker {record.worker_id}"
            )
        self.fleet.move(record, WorkerState.BUSY)
        self._publish_states()
        self.config.hook.pytest_parallel_modules_module_started(
            config=self.config,
            module=unit.module,
            worker_id=record.worker_id,
            nodeids=list(unit.nodeids),
        )
        self.pool.send(
            record.worker_id,
            worker.RUN_MODULE,
            worker.RunModulePayload(
                unit=unit.id,
                module=unit.module,
                nodeids=list(attempt.nodeids),
                prefetch=self._is_quick(unit),
                ask_in_last_teardown=not self._decides_from_last_report,
            ),
        )

    @property
    def _decides_from_last_report(self) -> bool:
        """Whether a unit's last report may stop the run or bring a retry.

        Then a worker asks for its next unit only once it reported the unit whole:
        ``-x``/``--maxfail`` and ``--fail-fast-modules`` must count the last test's
        failure, and ``--module-retries`` decide on a retry, before the worker is handed
        anything else. Otherwise it asks as the last test's teardown starts (see
        :class:`pytest_parallel_modules.worker.RunModulePayload`).
        """
        return bool(
            self.options.fail_fast or self.options.retries or self.config.getoption("maxfail", 0)
        )

    def _is_quick(self, unit: WorkUnit) -> bool:
        """Whether a worker may ask for its next unit as it starts this one.

        Only behind a whole module expected to take under :data:`PREFETCH_BELOW_S`:
        the unit sent ahead waits at most that long, while a suite of many quick
        modules loses no round trip per module to an idle worker.
        """
        if self.estimates is None or self.options.retries or self.options.fail_fast:
            return False
        # Only a measured estimate: without history every module looks quick.
        if unit.module not in self._measured_modules or unit.part != (1, 1):
            return False
        return self.estimates.seconds.get(unit.module, 0.0) < PREFETCH_BELOW_S

    def _apply(self, decisions: Decisions) -> None:
        """Carry out what the ledger decided."""
        for event in decisions.replay:
            self.replayer.event(event)
            if event.report is not None:
                self._after_report(event.report, event.worker_id)
        for report in decisions.finished_modules:
            self.config.hook.pytest_parallel_modules_module_finished(
                config=self.config, report=report
            )
        if decisions.retries:
            self._top_up()

    def _after_report(self, report: pytest.TestReport, worker_id: str) -> None:
        """``--fail-fast-modules``: the failing module runs to its end, everything else stops."""
        if not self.options.fail_fast or not report.failed or self.stopping:
            return
        module = module_of(report.nodeid)
        self.stop_reason = f"stopping after the first failed module (--fail-fast-modules): {module}"
        # The failing module runs to its end, every part of it: all its failures at once.
        running_it = frozenset(
            record.worker_id
            for record in self.fleet
            if (attempt := self.ledger.current(record.worker_id)) is not None
            and self.ledger.entries[attempt.unit_id].unit.module == module
        )
        self._stop(keep_running=running_it | {worker_id})
        deadline = timing.perf() + self.options.fail_fast_grace
        for record in self.fleet:
            if record.worker_id == worker_id:
                continue
            if record.state is WorkerState.STOPPING and self.ledger.in_flight(record.worker_id):
                record.stop_deadline = deadline
        if self.session is not None:
            self.session.shouldfail = self.stop_reason

    def _publish_states(self) -> None:
        self.view.worker_states = {record.worker_id: record.state.value for record in self.fleet}

    # -- handlers (one per message; see worker.py for the protocol) -----------------

    def _on_ready(self, record: WorkerRecord, payload: worker.ReadyPayload) -> None:
        self.timeline.worker_ready(record.worker_id)  # timeline (#17)
        record.pid = payload["pid"]
        if record.state is not WorkerState.STARTING:
            # Killed (or told to stop) while it collected: it gets no work.
            self.pool.send(record.worker_id, worker.NO_MORE_WORK)
            return
        self.fleet.move(record, WorkerState.IDLE)
        self._dispatch(record)

    def _on_need_work(self, record: WorkerRecord, payload: object) -> None:
        if record.state in (WorkerState.STOPPING, WorkerState.KILLED, WorkerState.TIMED_OUT):
            self.pool.send(record.worker_id, worker.NO_MORE_WORK)
            return
        self._dispatch(record)

    def _on_collected(self, record: WorkerRecord, payload: worker.CollectedPayload) -> None:
        missing = payload["missing"]
        self.ledger.started(
            record.worker_id,
            payload["unit"],
            now=timing.now(),
            perf=timing.perf(),
            collect_s=payload["collect_s"],
            missing=missing,
        )
        if not missing:
            return
        # R10: the worker must run what the controller selected; say exactly what differs.
        lines = "\n".join(f"  - {nodeid}" for nodeid in missing)
        message = (
            f"worker {record.worker_id} did not collect {len(missing)} test(s) of "
            f"{payload['module']} that the controller collected:\n{lines}\n"
            "The worker runs a copy of the working tree; a file it needs may be ignored "
            "by git or generated at collection time (see the known limitations in the docs)."
        )
        error = payload.get("error")
        if error:
            message += f"\nThe worker's collection error:\n{self.replayer.restore_paths(record.worker_id, error)}"
        self.replayer.collection_error(payload["module"], message)

    def _on_tests(self, record: WorkerRecord, payload: bytes) -> None:
        """A batch of test events: starts, and ends with their reports (see worker._Outbox)."""
        records: list[tuple[Any, ...]] = marshal.loads(payload)
        worker_id = record.worker_id
        ledger = self.ledger
        replayer = self.replayer
        for event in records:
            nodeid = event[1]
            location: Any = tuple(event[2])
            tag = event[0]
            if tag == worker.TEST_STARTED:
                if ledger.test_started(worker_id, nodeid, location, at=timing.perf()):
                    replayer.logstart(nodeid, location)
                continue
            if tag == worker.TEST_PASSED:
                reports = replayer.rebuild_passed(worker_id, nodeid, location, event[3], event[4])
            else:
                reports = [replayer.rebuild(worker_id, data) for data in event[3]]
            # timeline (#17): when the test began, for the HTML report and the trace.
            self.timeline.test_ended(worker_id, ledger.current(worker_id), reports)
            if not ledger.test_finished(worker_id, nodeid, location, reports):
                continue
            for report in reports:
                replayer.logreport(report)
                if report.failed:
                    self._after_report(report, worker_id)
            replayer.logfinish(nodeid, location)

    def _on_warning(self, record: WorkerRecord, payload: worker.WarningPayload) -> None:
        self.replayer.warning(record.worker_id, payload)

    def _on_module_finished(
        self, record: WorkerRecord, payload: worker.ModuleFinishedPayload
    ) -> None:
        decisions = self.ledger.unit_finished(
            record.worker_id,
            payload["unit"],
            now=timing.now(),
            collect_s=payload["collect_s"],
            run_s=payload["run_s"],
            completed=payload["completed"],
            cpu_s=payload["cpu_s"],  # the timing analysis's CPU-bound check (#16)
        )
        if record.state is WorkerState.BUSY and not self.ledger.in_flight(record.worker_id):
            self.fleet.move(record, WorkerState.IDLE)
            self._publish_states()
        if decisions.requeued:
            self._top_up()
        self._apply(decisions)

    def _on_exit_requested(self, record: WorkerRecord, payload: worker.ExitPayload) -> None:
        self.exit_request = payload

    def _on_internal_error(
        self, record: WorkerRecord, payload: worker.InternalErrorPayload
    ) -> None:
        # Kept for the crash report, which names the test in flight.
        record.internal_error = payload["text"]

    def _on_session_finished(
        self, record: WorkerRecord, payload: worker.SessionFinishedPayload
    ) -> None:
        record.session_finished = True
        record.exitstatus = payload["exitstatus"]
        compat.node_down(
            self.config,
            self.replayer.node(record.worker_id),
            payload["workeroutput"],
            worker_id=record.worker_id,
            path_map=compat.checkout_path_map(record.worktree, self.placer.repo_root),
        )

    def _on_channel_closed(self, record: WorkerRecord, payload: None) -> None:
        self.timeline.worker_exited(record.worker_id)  # timeline (#17)
        error = self.pool.closing_error(record.worker_id)
        previous = record.state
        clean = record.session_finished and error is None
        if record.pid is not None and not clean:
            # Daemons and servers a test started live in the worker's process group.
            kill_process_group(record.pid)
        self.fleet.move(record, WorkerState.GONE)
        self._publish_states()
        if record.worktree is not None:
            # Back to the pool now; a worktree kept for inspection is reserved instead.
            self.placer.release_one(record.worktree, keep=record.worktree in self.kept_worktrees())
        if previous is WorkerState.STARTING and not self.ledger.in_flight(record.worker_id):
            reason = self._reason(record, error)
            self.last_start_failure = f"worker {record.worker_id} failed to start: {reason}"
            self._say(f"parallel-modules: {self.last_start_failure.splitlines()[0]}")
            self._top_up(after_crash=True)
            return
        if not self.ledger.in_flight(record.worker_id):
            self._top_up()
            return
        if previous is WorkerState.KILLED:
            evidence = record.kill_reason or "the worker was stopped"
            tail = self._stderr_tail(record.worker_id)
            if tail:
                evidence += f"\nLast output of the worker on stderr:\n{tail}"
            self._apply(
                self.ledger.worker_lost(
                    record.worker_id, LossKind.INTERRUPT, evidence, now=timing.now()
                )
            )
            return
        if previous is WorkerState.TIMED_OUT:
            kind, what = LossKind.TIMEOUT, f"timed out after {record.timed_out_after:g}s"
        else:
            kind, what = LossKind.CRASH, "crashed"
        attempt = self.ledger.current(record.worker_id)
        running = attempt.running if attempt is not None else None
        evidence = self._evidence(record, self._reason(record, error))
        where = f"while running {running}" if running else "between tests"
        decisions = self.ledger.worker_lost(
            record.worker_id,
            kind,
            f"worker {record.worker_id} {what} {where}\n{evidence}",
            now=timing.now(),
        )
        self._apply(decisions)
        # A lost worker is replaced (within the restart budget) while work is left.
        self._top_up(after_crash=True)

    def _on_start_failed(self, record: WorkerRecord, payload: dict[str, str] | None) -> None:
        self.fleet.move(record, WorkerState.GONE)
        self._publish_states()
        if payload is None:  # cancelled, not failed
            return
        self.last_start_failure = f"worker {record.worker_id} could not start: {payload['error']}"
        self._say(f"parallel-modules: {self.last_start_failure}")
        if self.fleet.may_run_work() == 0 and not any(
            other.state is not WorkerState.GONE for other in self.fleet
        ):
            self.replayer.collection_error("", f"no worker could start: {payload['error']}")
            self.workers_exhausted = False
            self._stop()
            return
        self._top_up(after_crash=True)

    # -- crashes ------------------------------------------------------------------

    def _reason(self, record: WorkerRecord, error: str | None) -> str:
        if error is not None:
            reason = error
        elif record.session_finished:
            reason = f"its pytest session ended early (exit code {record.exitstatus})"
        else:
            reason = "the worker process ended unexpectedly"
        if record.internal_error is not None:
            reason = f"{reason}\nINTERNALERROR in the worker:\n{record.internal_error}"
        return reason

    def _evidence(self, record: WorkerRecord, reason: str) -> str:
        """What the user needs to understand a lost worker: how it ended and its last words."""
        lines = [reason]
        ended = self.pool.exit_description(record.worker_id)
        if ended is not None:
            lines.append(f"The worker process ended with {ended}.")
        tail = self._stderr_tail(record.worker_id)
        if tail:
            lines.append(
                f"Last output of the worker on stderr (Python stacks of every thread, when it could "
                f"dump them; full file: {self._stderr_path(record.worker_id)}):\n{tail}"
            )
        return "\n".join(lines)

    def _stderr_tail(self, worker_id: str) -> str:
        tail = worker_stderr.tail(self._stderr_path(worker_id), worker_stderr.STDERR_TAIL_BYTES)
        # Stacks name files as a plain run would.
        return str(self.replayer.restore_paths(worker_id, tail)) if tail else ""

    def _stderr_path(self, worker_id: str) -> Path:
        return worker_stderr.stderr_path(self._basetemp_dir, worker_id)

    def _report_unrun(self) -> None:
        """Say loudly which selected tests no worker ran (only when every worker was lost)."""
        for report in self.ledger.module_reports:
            not_run = report["counts"]["not_run"]
            if not not_run:
                continue
            self.replayer.collection_error(
                report["module"],
                f"{not_run} test(s) of {report['module']} were not run: no worker was left to run them"
                + (f"\n{self.last_start_failure}" if self.last_start_failure else ""),
            )

    def _say(self, line: str) -> None:
        """Write one status line through pytest's terminal reporter (if there is one)."""
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_line(line, yellow=True)

    def _terminate(self) -> None:
        """End every worker and the starter; give back every worktree slot. Idempotent."""
        if self._terminated:
            return
        self._terminated = True
        self._cancel_placement.set()
        self.starter.stop()
        # Workers still waiting for work (the run ended before it began, or was
        # interrupted) end their sessions cleanly when told; one still starting holds
        # nothing and is killed; one that does not end within the timeout is killed.
        for record in self.fleet:
            if record.state is WorkerState.STARTING:
                self._kill(record, WorkerState.KILLED)
            elif record.state is not WorkerState.GONE:
                self.pool.send(record.worker_id, worker.STOP)
                self.pool.send(record.worker_id, worker.NO_MORE_WORK)
        self.pool.terminate(timeout=TERMINATE_TIMEOUT)
        # Workers that finished normally exited on their own just now (their
        # atexit handlers ran: coverage.py measuring them saved its data); what
        # their tests started in their process groups goes now.
        for record in self.fleet:
            if record.pid is not None:
                kill_process_group(record.pid)
        worktrees_by_worker = {r.worker_id: r.worktree for r in self.fleet if r.worktree}
        compat.remap_subprocess_coverage(worktrees_by_worker, self.placer.repo_root)
        self.placer.release(keep=self.kept_worktrees())

    def kept_worktrees(self) -> list[Path]:
        """Worktrees left in place for inspection: those whose worker ran a failed module."""
        if not self.options.keep_failed_worktrees:
            return []
        failed_workers = self.ledger.workers_of_failed_modules()
        return [
            record.worktree
            for record in self.fleet
            if record.worktree is not None and record.worker_id in failed_workers
        ]

    # -- the end: merged report, history, failed modules -------------------------

    def _finish_run_state(self) -> None:
        """The history and failed modules saved (or waited for); their warnings said."""
        for warning in self.run_state.finish(self.ledger):
            self._say(f"parallel-modules: WARNING: {warning}")
        self.view.saved_history = self.run_state.saved_history

    def _merged_report(self) -> MergedReport:
        snapshot = self.placer.snapshot.commit if self.placer.snapshot is not None else None
        merged = build_merged_report(
            modules=self.ledger.module_reports,
            # From pytest's start to now, as pytest's last line counts it (#16).
            wall_s=self.timeline.elapsed(),
            workers=self.fleet.limit,
            args=list(self.config.invocation_params.args),
            rootdir=self.config.rootpath,
            snapshot=snapshot,
            created=timing.now(),
            shard=self.config.stash.get(shard_info_key, None),
            splits=self.view.splits,
        )
        # timeline (#17): when each part of the run happened, from the ledger's attempts.
        merged["timeline"] = self.timeline.build_for(self.ledger, merged["modules"])
        self.config.hook.pytest_parallel_modules_report(config=self.config, report=merged)
        return merged

    def loaded_history(self) -> LoadedHistory:
        """The duration history as this run loaded it (once); also what shards split with."""
        return self.run_state.history()

    def _modules_failed_last_time(self) -> frozenset[str]:
        """Modules of the tests pytest's cache remembers as failed (what ``--lf``/``--ff`` use)."""
        cache: pytest.Cache | None = getattr(self.config, "cache", None)  # -p no:cacheprovider
        if cache is None:
            return frozenset()
        lastfailed: object = cache.get("cache/lastfailed", {})
        if not isinstance(lastfailed, dict):
            return frozenset()
        return frozenset(module_of(nodeid) for nodeid in lastfailed if isinstance(nodeid, str))

    def _shown_path(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.config.invocation_params.dir))
        except ValueError:
            return str(path)


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    # SIGTERM ends the run like Ctrl-C: workers stopped, partial summary, exit 2.
    raise KeyboardInterrupt


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
