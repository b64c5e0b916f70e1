"""The run loop that replaces pytest's own when ``--parallel-modules`` is active. Runs in the controller.

The controller collects as pytest always does (so ``-k``, ``-m``, ``--lf``,
``--deselect`` and node ids select exactly as in a plain run), groups the
selected items by module, and hands one module at a time to whichever worker
asks for work. Workers stream every report back; the controller replays them
into its own hooks, so the terminal, junitxml, the ``--lf`` cache and other
reporting plugins see a normal run.

All worker messages arrive on one queue and are handled on the main thread
through :attr:`ParallelSession.handlers`, an explicit table checked against
:data:`pytest_parallel_modules.worker.WORKER_MESSAGES` by a unit test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
import enum
import importlib
import os
from pathlib import Path
import queue
import signal
import sys
import tempfile
import threading
import time
from typing import Any
from typing import Final
from typing import final
from typing import TYPE_CHECKING
import warnings

import pytest

from pytest_parallel_modules import compat
from pytest_parallel_modules import timing
from pytest_parallel_modules import worker
from pytest_parallel_modules import worktrees
from pytest_parallel_modules.grouping import group_by_module
from pytest_parallel_modules.grouping import module_of
from pytest_parallel_modules.grouping import ModuleGroup
from pytest_parallel_modules.history import History
from pytest_parallel_modules.history import load_history
from pytest_parallel_modules.history import LoadedHistory
from pytest_parallel_modules.history import MeasuredModule
from pytest_parallel_modules.history import MeasuredRun
from pytest_parallel_modules.history import MeasuredTest
from pytest_parallel_modules.history import save_history
from pytest_parallel_modules.isolation import restore_checkout_paths
from pytest_parallel_modules.isolation import WorkerPlacer
from pytest_parallel_modules.last_failed import load_failed_modules
from pytest_parallel_modules.last_failed import save_failed_modules
from pytest_parallel_modules.last_failed import verdict
from pytest_parallel_modules.reports import AttemptRecord
from pytest_parallel_modules.reports import build_merged_report
from pytest_parallel_modules.reports import build_module_report
from pytest_parallel_modules.reports import FailureRecord
from pytest_parallel_modules.reports import fold_test_reports
from pytest_parallel_modules.reports import MergedReport
from pytest_parallel_modules.reports import ModuleOutcome
from pytest_parallel_modules.reports import ModuleReport
from pytest_parallel_modules.scheduling import DispatchQueue
from pytest_parallel_modules.scheduling import estimate_modules
from pytest_parallel_modules.scheduling import failed_first
from pytest_parallel_modules.scheduling import ModuleEstimates
from pytest_parallel_modules.scheduling import partition_shards
from pytest_parallel_modules.scheduling import plan_slowest_first
from pytest_parallel_modules.worker_pool import CHANNEL_CLOSED
from pytest_parallel_modules.worker_pool import kill_process_group
from pytest_parallel_modules.worker_pool import START_FAILED
from pytest_parallel_modules.worker_pool import WorkerEvent
from pytest_parallel_modules.worker_pool import WorkerLaunch
from pytest_parallel_modules.worker_pool import WorkerPool


if TYPE_CHECKING:
    from collections.abc import Generator
    from collections.abc import Iterable

    from pytest_parallel_modules.options import Options

#: Seconds a stopping worker gets to exit on its own before it is killed.
TERMINATE_TIMEOUT: Final = 10.0


class WorkerState(enum.Enum):
    """Where a worker is in its life. Transitions happen only in :meth:`ParallelSession._set_state`."""

    STARTING = "starting"  # process spawned, pytest session not ready yet
    RUNNING = "running"  # has (or is about to get) a module
    DRAINING = "draining"  # told there is no more work; finishing its session
    DONE = "done"  # channel closed after a normal session end
    CRASHED = "crashed"  # channel closed without a normal end, or never started


_FINAL_STATES: Final = frozenset({WorkerState.DONE, WorkerState.CRASHED})


@final
@dataclass(frozen=True, slots=True)
class GatewayName:
    """The part of ``report.node`` pytest's terminal reads: ``report.node.gateway.id``."""

    id: str


@final
class WorkerNode:
    """What a replayed report carries as ``report.node``.

    pytest's terminal and junitxml recognise reports from parallel workers by this
    attribute (the pytest-xdist convention): ``-v`` lines say which worker ran the
    test, a failure's section starts with a line naming the worker, and junitxml
    keeps interleaved reports of different tests apart. pytest reads
    ``node.gateway.id`` and ``node.workerinfo``, and caches on the object.
    """

    def __init__(self, worker_id: str) -> None:
        self.gateway = GatewayName(worker_id)
        self.workerinput: dict[str, Any] = {"workerid": worker_id}
        #: The controller's config, for plugins' ``pytest_configure_node``.
        self.config: pytest.Config | None = None
        self.workerinfo = {
            "id": worker_id,
            "sysplatform": sys.platform,
            "version_info": tuple(sys.version_info),
            "executable": sys.executable,
        }

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WorkerNode) and other.gateway == self.gateway

    def __hash__(self) -> int:
        return hash(self.gateway)


@dataclass(slots=True)
class ModuleRun:
    """The controller's record of one module handed to a worker."""

    group: ModuleGroup
    worker_id: str
    started: float
    finished: float | None = None
    collect_s: float = 0.0
    run_s: float = 0.0
    completed: bool = False
    crashed: bool = False
    #: Node ids whose logfinish arrived: they ran to the end of their teardown.
    done: set[str] = field(default_factory=set)
    reports: list[pytest.TestReport] = field(default_factory=list)
    #: The attempt this one continues (its worker crashed), if any.
    previous: ModuleRun | None = None
    #: perf() when the worker began it (for --module-timeout).
    began: float | None = None
    #: With --module-retries: the failed attempt this run retries.
    retry_of: ModuleRun | None = None
    #: With --module-retries: events held back until the module's fate is known
    #: (("logstart"|"logfinish", (nodeid, location)) or ("report", report)).
    held: list[tuple[str, Any]] = field(default_factory=list)
    #: Set once the held events were replayed (or the module is final).
    settled: bool = False

    def retries(self) -> list[ModuleRun]:
        """Every attempt of this module under --module-retries, oldest first."""
        chain = [self]
        while chain[0].retry_of is not None:
            chain.insert(0, chain[0].retry_of)
        return chain

    def has_failures(self) -> bool:
        return any(report.failed and not hasattr(report, "wasxfail") for report in self.reports)

    #: The module's report, once the module is finished.
    report: ModuleReport | None = None

    def attempts(self) -> list[ModuleRun]:
        """Every attempt at this module, oldest first."""
        chain = [self]
        while chain[0].previous is not None:
            chain.insert(0, chain[0].previous)
        return chain

    def remainder(self, *, exclude: Iterable[str] = ()) -> ModuleGroup | None:
        """The tests of this module that did not run, as a group of their own (None if none)."""
        skip = self.done | set(exclude)
        left = tuple(nodeid for nodeid in self.group.nodeids if nodeid not in skip)
        return ModuleGroup(self.group.module, left) if left else None


@dataclass(slots=True)
class WorkerRecord:
    """The controller's view of one worker."""

    worker_id: str
    state: WorkerState = WorkerState.STARTING
    #: Modules sent to the worker and not finished yet, oldest first (at most the
    #: current one and the next one, asked for before the current one's last test).
    assigned: list[ModuleRun] = field(default_factory=list)
    running_nodeid: str | None = None
    session_finished: bool = False
    internal_error: str | None = None
    exitstatus: int | None = None
    pid: int | None = None
    #: Set when the controller killed the worker for running past --module-timeout.
    timed_out_after: float | None = None
    #: perf() after which a worker told to stop (fail-fast) is killed.
    stop_deadline: float | None = None
    #: Set when the worker was killed because it did not stop in time.
    killed_after_stop: bool = False


@final
class ParallelSession:
    """The plugin object that runs a session on parallel workers. Runs in the controller.

    Registered by :func:`pytest_parallel_modules.plugin.pytest_configure` under
    ``"pytest_parallel_modules-controller"`` when the plugin is active.
    """

    def __init__(self, config: pytest.Config, options: Options) -> None:
        self.config = config
        self.options = options
        self.events: queue.Queue[WorkerEvent] = queue.Queue()
        self.pool = WorkerPool(self.events)
        self.workers: dict[str, WorkerRecord] = {}
        self.modules: list[ModuleRun] = []
        self.queue = DispatchQueue(())
        self.plan: tuple[ModuleGroup, ...] = ()
        self.estimates: ModuleEstimates | None = None
        self.history_warning: str | None = None
        #: The history as loaded at the start of the run; read once, merged into at its end.
        self._loaded_history: LoadedHistory | None = None
        self.crashed_nodeids: set[str] = set()
        #: Why the last worker that could not start failed, for the final report.
        self.last_start_failure: str | None = None
        self.workers_exhausted = False
        self.session: pytest.Session | None = None
        #: Modules whose duration the history measured in a complete run.
        self._measured_modules: frozenset[str] = frozenset()
        #: Worker id -> the failed attempt it was started to retry.
        self._retry_assignments: dict[str, ModuleRun] = {}
        self.rerun_message: str | None = None
        #: Modules that failed in the last recorded run.
        self.last_failed: frozenset[str] = (
            frozenset()
            if options.failed_modules_path is None
            else load_failed_modules(options.failed_modules_path)
        )
        self._restart_budget = 0
        #: Module -> its crashed attempt, until the rest of the module runs.
        self._crashed_attempts: dict[str, ModuleRun] = {}
        #: Reports of every finished module, in the order they finished.
        self.module_reports: list[ModuleReport] = []
        self.stopping = False
        self.stop_reason: str | bool = False
        self.exit_request: worker.ExitPayload | None = None
        self.restarts_left = 0
        self.started_at = 0.0
        self.wall_s = 0.0
        self._worker_count = 0
        self._locations: dict[str, tuple[str, int | None, str]] = {}
        self._starter: threading.Thread | None = None
        self._cancel_start = threading.Event()
        self._terminated = False
        self._nodes: dict[str, WorkerNode] = {}
        self._basetemp_dir = Path()
        #: Worker id -> its worktree root (isolated runs only).
        self.worktrees: dict[str, Path] = {}
        self.placer = WorkerPlacer(
            mode=options.isolation,
            repo_root=worktrees.find_repo_root(config.invocation_params.dir)
            if options.isolation == "worktree"
            else None,
            invocation_dir=config.invocation_params.dir,
            args=config.invocation_params.args,
            sys_path=sys.path,
            copy_patterns=options.worktree_copy,
        )
        self.handlers: Final[dict[str, Callable[[WorkerRecord, Any], None]]] = {
            worker.READY: self._on_ready,
            worker.NEED_WORK: self._on_need_work,
            worker.COLLECTED: self._on_collected,
            worker.LOGSTART: self._on_logstart,
            worker.LOGFINISH: self._on_logfinish,
            worker.WARNING: self._on_warning,
            worker.MODULE_FINISHED: self._on_module_finished,
            worker.EXIT_REQUESTED: self._on_exit_requested,
            worker.INTERNAL_ERROR: self._on_internal_error,
            worker.SESSION_FINISHED: self._on_session_finished,
            CHANNEL_CLOSED: self._on_channel_closed,
            START_FAILED: self._on_start_failed,
        }

    # -- pytest hooks ---------------------------------------------------------

    @pytest.hookimpl(wrapper=True)
    def pytest_collection(self, session: pytest.Session) -> Generator[None, object, object]:
        # Workers boot (interpreter, plugins, conftest files) while the
        # controller collects, so their start-up costs no wall time.
        self._start_workers()
        return (yield)

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        # trylast: -k, -m, --lf and other plugins have selected already; the share
        # is computed from what is left, identically on every machine.
        self._select_failed_modules(config, items)
        if self.options.shard is None:
            return
        index, count = self.options.shard
        groups = group_by_module(item.nodeid for item in items)
        estimates = estimate_modules(groups, self._load_history().history, self._file_sizes(groups))
        mine = {group.module for group in partition_shards(groups, estimates, count)[index - 1]}
        kept = [item for item in items if module_of(item.nodeid) in mine]
        deselected = [item for item in items if module_of(item.nodeid) not in mine]
        if deselected:
            config.hook.pytest_deselected(items=deselected)
            items[:] = kept

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
            self.rerun_message = (
                f"parallel-modules: rerunning {len(keep)} module(s) that failed last time "
                f"({len(present) - len(keep)} deselected)"
            )
        deselected = [item for item in items if module_of(item.nodeid) not in keep]
        if deselected:
            config.hook.pytest_deselected(items=deselected)
            items[:] = [item for item in items if module_of(item.nodeid) in keep]

    # tryfirst: the plan must exist before the terminal reporter asks for the
    # pytest_report_collectionfinish lines in its own pytest_collection_finish.
    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        groups = group_by_module(item.nodeid for item in session.items)
        loaded = self._load_history()
        self.history_warning = loaded.warning
        self._measured_modules = frozenset(
            module for module, record in loaded.history.modules.items() if record.runs > 0
        )
        self.estimates = estimate_modules(groups, loaded.history, self._file_sizes(groups))
        self.plan = plan_slowest_first(groups, self.estimates)
        if self.options.fail_fast:
            self.plan = failed_first(self.plan, self.last_failed)
        if self.config.getoption("failedfirst", False):
            # --ff: pytest put the last failures first among the items; a module holding
            # one starts first too, as Jest runs the files that failed last time first.
            self.plan = failed_first(self.plan, self._modules_failed_last_time())
        changed = self.config.hook.pytest_parallel_modules_plan(
            config=self.config, plan=list(self.plan)
        )
        if changed is not None:
            self.plan = _checked_plan(self.plan, changed)

    def pytest_report_collectionfinish(self) -> list[str]:
        lines: list[str] = []
        if self.rerun_message is not None:
            lines.append(self.rerun_message)
        if self.history_warning is not None:
            lines.append(f"parallel-modules: WARNING: {self.history_warning}")
        path = self.options.history_path
        if path is None:
            source = "no history (pytest's cache is disabled)"
        else:
            known = self.estimates.known_modules if self.estimates is not None else 0
            source = (
                f"durations from {self._shown_path(path)} ({known}/{len(self.plan)} modules known)"
            )
        if self.config.get_verbosity() < 0:
            return lines
        workers = self.options.workers or 1
        lines.append(f"parallel-modules: {self.placer.describe()}")
        lines.append(
            f"parallel-modules: {_plural(len(self.plan), 'module')} on {min(workers, max(1, len(self.plan)))} "
            f"of {_plural(workers, 'worker')}, slowest first; {source}"
        )
        return lines

    def _shown_path(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.config.invocation_params.dir))
        except ValueError:
            return str(path)

    def _modules_failed_last_time(self) -> frozenset[str]:
        """Modules of the tests pytest's cache remembers as failed (what ``--lf``/``--ff`` use)."""
        cache: pytest.Cache | None = getattr(self.config, "cache", None)  # -p no:cacheprovider
        if cache is None:
            return frozenset()
        lastfailed: object = cache.get("cache/lastfailed", {})
        if not isinstance(lastfailed, dict):
            return frozenset()
        return frozenset(module_of(nodeid) for nodeid in lastfailed if isinstance(nodeid, str))

    def _load_history(self) -> LoadedHistory:
        if self._loaded_history is None:
            path = self.options.history_path
            self._loaded_history = (
                LoadedHistory(history=History()) if path is None else load_history(path)
            )
        return self._loaded_history

    def _file_sizes(self, groups: Iterable[ModuleGroup]) -> dict[str, int]:
        sizes: dict[str, int] = {}
        for group in groups:
            try:
                sizes[group.module] = (self.config.rootpath / group.module).stat().st_size
            except OSError:
                sizes[group.module] = 0
        return sizes

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool:
        # The same guard as pytest's own loop: collection errors stop the run
        # unless --continue-on-collection-errors.
        if session.testsfailed and not session.config.option.continue_on_collection_errors:
            raise session.Interrupted(
                f"{session.testsfailed} error{'s' if session.testsfailed != 1 else ''} during collection"
            )
        self.session = session
        self.started_at = timing.perf()
        self._locations = {item.nodeid: item.location for item in session.items}
        self.queue = DispatchQueue(self.plan)
        previous_sigterm = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        try:
            self._drain_events(session)
        except KeyboardInterrupt:
            self._interrupt()
            raise
        finally:
            signal.signal(signal.SIGTERM, previous_sigterm)
            self._terminate()
            self.wall_s = timing.perf() - self.started_at
        if self.exit_request is not None:
            pytest.exit(self.exit_request["message"], self.exit_request["returncode"])
        if session.shouldfail:
            raise session.Failed(session.shouldfail)
        if session.shouldstop:
            raise session.Interrupted(session.shouldstop)
        return True

    def pytest_sessionfinish(self) -> None:
        # Collection may have failed before the run loop started its workers' work.
        self._terminate()
        self._save_history()
        self._save_failed_modules()

    def _save_failed_modules(self) -> None:
        """Update which modules failed, the way --lf updates its state (controller only)."""
        path = self.options.failed_modules_path
        if path is None or not self.module_reports:
            return
        verdicts = {
            report["module"]: verdict(
                report["outcome"], report["counts"]["failed"], report["counts"]["errors"]
            )
            for report in self.module_reports
        }
        try:
            save_failed_modules(path, verdicts)
        except Exception as exc:  # the state cannot be saved: say so, keep the run's result
            self._say(
                f"parallel-modules: WARNING: could not save the failed modules to {path}: {exc}"
            )

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        for worker_id, path in sorted(self.worktrees.items()):
            if path in self.kept_worktrees():
                terminalreporter.write_line(
                    f"parallel-modules: kept the worktree of worker {worker_id} (it ran a failed module): {path}"
                )

    def _save_history(self) -> None:
        """Merge what this run measured into the history (controller only, R5)."""
        path = self.options.history_path
        if path is None or not self.modules:
            return
        try:
            # loaded=: when no other run saved meanwhile, the file is not parsed a second time.
            save_history(
                path,
                self._measurements(),
                now=timing.now(),
                create_parents=True,
                loaded=self._loaded_history,
            )
        except Exception as exc:  # a history that cannot be saved must not fail the run
            self._say(
                f"parallel-modules: WARNING: could not save the duration history to {path}: {exc}"
            )

    def _measurements(self) -> MeasuredRun:
        """What this run measured; only what ran to its end counts as complete."""
        tests: dict[str, MeasuredTest] = {}
        modules: dict[str, MeasuredModule] = {}
        for run in self.modules:
            for record in fold_test_reports(run.reports):
                outcome = record["outcome"]
                if record["subtest"] is not None or outcome == "not_run":
                    continue
                nodeid = record["nodeid"]
                tests[nodeid] = MeasuredTest(
                    duration_s=record["duration_s"],
                    outcome=outcome,
                    complete=nodeid in run.done and nodeid not in self.crashed_nodeids,
                )
            if run.done:
                modules[run.group.module] = MeasuredModule(
                    total_s=run.collect_s + run.run_s,
                    collect_s=run.collect_s,
                    complete=run.completed and not run.crashed,
                )
        return MeasuredRun(tests=tests, modules=modules)

    # -- starting workers -----------------------------------------------------

    def _start_workers(self) -> None:
        count = self.options.workers or 1
        self._worker_count = count
        # By default a crashed worker is replaced at most once per worker of the run.
        self._restart_budget = (
            count if self.options.worker_restarts is None else self.options.worker_restarts
        )
        self.restarts_left = self._restart_budget
        self._basetemp_dir = self._basetemp()
        worker_ids = [f"w{index}" for index in range(1, count + 1)]
        for worker_id in worker_ids:
            self.workers[worker_id] = WorkerRecord(worker_id)
        self._starter = threading.Thread(
            target=self._start_all, args=(worker_ids,), name="parallel-modules-starter", daemon=True
        )
        self._starter.start()

    def _start_all(self, worker_ids: list[str]) -> None:
        """Runs on the starter thread while the main thread collects."""
        for worker_id in worker_ids:
            if self._cancel_start.is_set():
                # The run ended before it began (collection error, Ctrl-C):
                # a worker not started yet is one less to stop.
                self.events.put(WorkerEvent(worker_id, START_FAILED, None))
                continue
            self._start_one(worker_id)

    def _start_one(self, worker_id: str) -> None:
        """Place one worker (its worktree, when isolated) and start it; failures become events."""
        try:
            placement = self.placer.place()
            if placement.worktree is not None:
                self.worktrees[worker_id] = placement.worktree
                self.config.hook.pytest_parallel_modules_worktree_ready(
                    config=self.config, worktree=placement.worktree, worker_id=worker_id
                )
        except Exception as exc:  # git, the pool, or a hook implementation: the run reports it
            self.events.put(
                WorkerEvent(worker_id, START_FAILED, {"error": f"{type(exc).__name__}: {exc}"})
            )
            return
        try:
            workerinput = self._configure_node(worker_id)
        except Exception as exc:  # a plugin's pytest_configure_node failed
            self.events.put(
                WorkerEvent(worker_id, START_FAILED, {"error": f"{type(exc).__name__}: {exc}"})
            )
            return
        setup = worker.WorkerSetup(
            worker_id=worker_id,
            worker_count=self._worker_count,
            args=compat.worker_args(self.config, placement.args),
            sys_path=placement.sys_path,
            basetemp=str(self._basetemp_dir / f"worker-{worker_id}"),
            path_map=placement.path_map,
            workerinput=workerinput,
            stderr_path=str(self._stderr_path(worker_id)),
        )
        self.pool.start(WorkerLaunch(cwd=placement.cwd, setup=setup))

    def _configure_node(self, worker_id: str) -> dict[str, Any]:
        """Let plugins add to the worker's ``config.workerinput``, as pytest-xdist lets them.

        pytest-rerunfailures, pytest-cov and others implement pytest-xdist's
        ``pytest_configure_node(node)`` to pass values to their worker side through
        ``node.workerinput``; they then expect those keys in every worker.
        """
        node = self._nodes.setdefault(worker_id, WorkerNode(worker_id))
        workerinput = compat.configure_node(self.config, node)
        return {key: value for key, value in workerinput.items() if key != "workerid"}

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

    def _replace(self, crashed: WorkerRecord) -> None:
        """Start a fresh worker, in a clean worktree, to take over the crashed one's remaining work."""
        self.restarts_left -= 1
        worker_id = f"w{len(self.workers) + 1}"
        self.workers[worker_id] = WorkerRecord(worker_id)
        self._start_one(worker_id)

    # -- the loop -------------------------------------------------------------

    def _drain_events(self, session: pytest.Session) -> None:
        limits = [self.options.module_timeout] if self.options.module_timeout is not None else []
        if self.options.fail_fast:
            limits.append(self.options.fail_fast_grace)
        poll = min([1.0, *(limit / 4 for limit in limits)]) if limits else None
        while any(record.state not in _FINAL_STATES for record in self.workers.values()):
            try:
                event = self.events.get(timeout=poll)
            except queue.Empty:
                self._check_timeouts()
                continue
            if poll is not None:
                self._check_timeouts()
            record = self.workers[event.worker_id]
            self.handlers[event.name](record, event.payload)
            if self.stopping:
                if self.stop_reason and session.shouldfail:
                    # Reports of tests that were already running keep arriving;
                    # the message names the limit that was hit, as in a plain run.
                    session.shouldfail = self.stop_reason
            elif session.shouldfail or session.shouldstop or self.exit_request:
                self.stop_reason = session.shouldfail
                self._stop()
        for worker_id in list(self._retry_assignments):
            self._abandon_retry(worker_id)
        if self.queue.remaining() and (self.workers_exhausted or not self.stopping):
            self._report_unrun(self.queue.remaining())

    def _check_timeouts(self) -> None:
        """Kill workers past their fail-fast grace; stop modules past ``--module-timeout``."""
        now = timing.perf()
        for record in self.workers.values():
            deadline = record.stop_deadline
            if (
                deadline is not None
                and now > deadline
                and record.state not in _FINAL_STATES
                and record.pid
            ):
                record.killed_after_stop = True
                record.stop_deadline = None
                kill_process_group(record.pid)
        limit = self.options.module_timeout
        if limit is None:
            return
        for record in self.workers.values():
            if record.state is not WorkerState.RUNNING or not record.assigned or record.pid is None:
                continue
            began = record.assigned[0].began
            if began is None or now - began <= limit or record.timed_out_after is not None:
                continue
            record.timed_out_after = limit
            # Stacks first (faulthandler in the worker writes them to its stderr
            # file), then the whole process group, children included.
            try:
                os.kill(record.pid, worker.DUMP_STACKS_SIGNAL)
            except ProcessLookupError:
                continue
            _wait_for_growth(self._stderr_path(record.worker_id), STACK_DUMP_WAIT_S)
            kill_process_group(record.pid)

    def _interrupt(self) -> None:
        """Ctrl-C or SIGTERM: keep what finished, stop everything within seconds.

        Running workers are told to stop after their current test and get
        :data:`INTERRUPT_GRACE_S` to do so (their reports are kept); a second Ctrl-C,
        or the end of the grace period, kills every worker's process group.
        """
        self._stop()
        deadline = timing.perf() + INTERRUPT_GRACE_S
        try:
            while any(record.state not in _FINAL_STATES for record in self.workers.values()):
                remaining = deadline - timing.perf()
                if remaining <= 0:
                    break
                try:
                    event = self.events.get(timeout=remaining)
                except queue.Empty:
                    break
                record = self.workers[event.worker_id]
                if event.name in (CHANNEL_CLOSED, START_FAILED):
                    self._set_state(record, WorkerState.DONE)
                elif event.name in (
                    worker.LOGSTART,
                    worker.LOGFINISH,
                    worker.MODULE_FINISHED,
                ):
                    self.handlers[event.name](record, event.payload)
        except KeyboardInterrupt:
            pass  # a second Ctrl-C: kill at once
        self._kill_all()

    def _kill_all(self) -> None:
        for record in self.workers.values():
            if record.pid is not None:
                kill_process_group(record.pid)

    def _stop(self, keep_running: str | None = None) -> None:
        """No module starts from now on; running workers (but ``keep_running``) stop after their current test."""
        self.stopping = True
        self.queue.stop()
        for record in self.workers.values():
            if record.state is WorkerState.RUNNING and record.worker_id != keep_running:
                self.pool.send(record.worker_id, worker.STOP)

    def _assign(self, record: WorkerRecord) -> None:
        """Answer a worker's request for work: its next module, or no more work."""
        retried = self._retry_assignments.pop(record.worker_id, None)
        group = retried.group if retried is not None else self.queue.next_module()
        if group is None:
            self.pool.send(record.worker_id, worker.NO_MORE_WORK)
            self._set_state(record, WorkerState.DRAINING)
            return
        run = ModuleRun(
            group=group,
            worker_id=record.worker_id,
            started=timing.now(),
            previous=self._crashed_attempts.pop(group.module, None),
            retry_of=retried,
        )
        if not record.assigned:
            run.began = timing.perf()
        self.modules.append(run)
        record.assigned.append(run)
        self.config.hook.pytest_parallel_modules_module_started(
            config=self.config,
            module=group.module,
            worker_id=record.worker_id,
            nodeids=list(group.nodeids),
        )
        self.pool.send(
            record.worker_id,
            worker.RUN_MODULE,
            worker.RunModulePayload(
                module=group.module,
                nodeids=list(group.nodeids),
                prefetch=self._is_quick(group),
                ask_in_last_teardown=not self._decides_from_last_report,
            ),
        )

    @property
    def _decides_from_last_report(self) -> bool:
        """Whether a module's last report may stop the run or bring a retry.

        Then a worker asks for its next module only once it reported the module whole:
        ``-x``/``--maxfail`` and ``--fail-fast-modules`` must count the last test's
        failure, and ``--module-retries`` decide on a retry, before the worker is handed
        anything else. Otherwise it asks as the last test's teardown starts (see
        :class:`pytest_parallel_modules.worker.RunModulePayload`).
        """
        return bool(
            self.options.fail_fast or self.options.retries or self.config.getoption("maxfail", 0)
        )

    def _is_quick(self, group: ModuleGroup) -> bool:
        """Whether a worker may ask for its next module as it starts this one.

        Only behind a module expected to take under :data:`PREFETCH_BELOW_S`: the
        module sent ahead waits at most that long, while a suite of many quick
        modules loses no round trip per module to an idle worker.
        """
        if self.estimates is None or self.options.retries or self.options.fail_fast:
            return False
        # Only a measured estimate: without history every module looks quick.
        if group.module not in self._measured_modules:
            return False
        return self.estimates.seconds.get(group.module, 0.0) < PREFETCH_BELOW_S

    def _set_state(self, record: WorkerRecord, state: WorkerState) -> None:
        record.state = state

    def _run_for(self, record: WorkerRecord, module: str) -> ModuleRun:
        for run in record.assigned:
            if run.group.module == module:
                return run
        raise LookupError(f"worker {record.worker_id} reported on {module}, which it was not sent")

    # -- handlers (one per message; see worker.py for the protocol) -----------

    def _on_ready(self, record: WorkerRecord, payload: worker.ReadyPayload) -> None:
        record.pid = payload["pid"]
        self._set_state(record, WorkerState.RUNNING)
        self._assign(record)

    def _on_need_work(self, record: WorkerRecord, payload: object) -> None:
        self._assign(record)

    def _on_collected(self, record: WorkerRecord, payload: worker.CollectedPayload) -> None:
        run = self._run_for(record, payload["module"])
        run.collect_s = payload["collect_s"]
        missing = payload["missing"]
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
            message += f"\nThe worker's collection error:\n{error}"
        run.done.update(missing)
        self.config.hook.pytest_collectreport(
            report=pytest.CollectReport(
                nodeid=payload["module"], outcome="failed", longrepr=message, result=[]
            )
        )

    def _on_logstart(self, record: WorkerRecord, payload: worker.LogPayload) -> None:
        record.running_nodeid = payload["nodeid"]
        self._emit(record, "logstart", (payload["nodeid"], tuple(payload["location"])))

    def _emit(self, record: WorkerRecord, kind: str, value: Any) -> None:
        """Replay one event into pytest's hooks, or hold it while a retry may follow."""
        if self.options.retries and record.assigned:
            record.assigned[0].held.append((kind, value))
            return
        self._replay(record.worker_id, kind, value)

    def _replay(self, worker_id: str, kind: str, value: Any) -> None:
        if kind == "logstart":
            self.config.hook.pytest_runtest_logstart(nodeid=value[0], location=value[1])
        elif kind == "logfinish":
            self.config.hook.pytest_runtest_logfinish(nodeid=value[0], location=value[1])
        else:
            self.config.hook.pytest_runtest_logreport(report=value)
            if self.options.fail_fast and value.failed and not self.stopping:
                record = self.workers[worker_id]
                module = module_of(value.nodeid)
                self._fail_fast(record, module)

    def _deserialize(self, record: WorkerRecord, data: dict[str, Any]) -> Any:
        worktree = self.worktrees.get(record.worker_id)
        if worktree is not None and self.placer.repo_root is not None and "longrepr" in data:
            data = dict(data)
            data["longrepr"] = restore_checkout_paths(
                data["longrepr"], str(worktree), str(self.placer.repo_root)
            )
        return self.config.hook.pytest_report_from_serializable(config=self.config, data=data)

    def _on_report(self, record: WorkerRecord, data: dict[str, Any]) -> None:
        """One test report, from a test's LOGFINISH payload."""
        self._replay_report(record, self._deserialize(record, data))

    def _replay_report(self, record: WorkerRecord, report: pytest.TestReport) -> None:
        report.node = self._nodes.setdefault(record.worker_id, WorkerNode(record.worker_id))  # type: ignore[attr-defined]  # the pytest-xdist convention
        if record.assigned:
            record.assigned[0].reports.append(report)
        self._emit(record, "report", report)

    def _fail_fast(self, record: WorkerRecord, module: str) -> None:
        """``--fail-fast-modules``: the failing module runs to its end, everything else stops."""
        self._stop(keep_running=record.worker_id)
        deadline = timing.perf() + self.options.fail_fast_grace
        for other in self.workers.values():
            if other is not record and other.state is WorkerState.RUNNING:
                other.stop_deadline = deadline
        self.stop_reason = f"stopping after the first failed module (--fail-fast-modules): {module}"
        if self.session is not None:
            self.session.shouldfail = self.stop_reason

    def _on_logfinish(self, record: WorkerRecord, payload: worker.LogFinishPayload) -> None:
        for data in payload["reports"]:
            self._on_report(record, data)
        record.running_nodeid = None
        if record.assigned:
            record.assigned[0].done.add(payload["nodeid"])
        self._emit(record, "logfinish", (payload["nodeid"], tuple(payload["location"])))

    def _on_warning(self, record: WorkerRecord, payload: worker.WarningPayload) -> None:
        if payload["when"] == "config":
            # Every worker configures from the same files and options as the
            # controller, which recorded these warnings once already.
            return
        worktree = self.worktrees.get(record.worker_id)
        if worktree is not None and self.placer.repo_root is not None:
            # The warnings summary names files as a plain run does (see _deserialize).
            mapped: Any = restore_checkout_paths(payload, str(worktree), str(self.placer.repo_root))
            payload = mapped
        category = _warning_category(payload["category_module"], payload["category_name"])
        try:
            message: Warning | str = category(payload["message"])
        except Exception:  # a category whose constructor takes other arguments
            message = payload["message"]
        warning_message = warnings.WarningMessage(
            message=message,
            category=category,
            filename=payload["filename"],
            lineno=payload["lineno"],
        )
        location = payload["location"]
        self.config.hook.pytest_warning_recorded.call_historic(
            kwargs={
                "warning_message": warning_message,
                "when": payload["when"],
                "nodeid": payload["nodeid"],
                "location": tuple(location) if location is not None else None,
            }
        )

    def _on_module_finished(
        self, record: WorkerRecord, payload: worker.ModuleFinishedPayload
    ) -> None:
        run = self._run_for(record, payload["module"])
        run.finished = timing.now()
        run.collect_s = payload["collect_s"]
        run.run_s = payload["run_s"]
        run.completed = payload["completed"]
        record.assigned.remove(run)
        if record.assigned and record.assigned[0].began is None:
            record.assigned[0].began = timing.perf()
        self._finish_module(run)

    def _finish_module(self, run: ModuleRun, outcome: ModuleOutcome | None = None) -> None:
        """Build the module's report (all its attempts) and announce it.

        With ``--module-retries``, a module with failures is first run again (in
        full, on a fresh worker) while retries are left; only the last attempt is
        replayed into pytest's hooks, so no test is counted twice.
        """
        if self.options.retries and not run.settled:
            if self._wants_retry(run, outcome):
                self._schedule_retry(run)
                return
            flaky = self._settle(run)
        else:
            flaky = []
        attempts = run.attempts()
        if outcome is None and any(attempt.crashed for attempt in attempts):
            outcome = "crashed"
        reports = [report for attempt in attempts for report in attempt.reports]
        first = attempts[0]
        run.report = build_module_report(
            module=run.group.module,
            worker=first.worker_id,
            started=first.started,
            finished=run.finished,
            results=fold_test_reports(reports),
            outcome=outcome,
            expected_nodeids=first.group.nodeids,
        )
        if run.retry_of is not None:
            run.report["attempts"] = [self._attempt_record(attempt) for attempt in run.retries()]
            run.report["flaky"] = flaky
        self.module_reports.append(run.report)
        self.config.hook.pytest_parallel_modules_module_finished(
            config=self.config, report=run.report
        )

    def _wants_retry(self, run: ModuleRun, outcome: ModuleOutcome | None) -> bool:
        return (
            run.has_failures()
            and len(run.retries()) <= self.options.retries
            and outcome is None
            and run.previous is None
            and not self.stopping
        )

    def _schedule_retry(self, run: ModuleRun) -> None:
        """Run the module again, in full, on a fresh worker in a clean worktree."""
        worker_id = f"w{len(self.workers) + 1}"
        self.workers[worker_id] = WorkerRecord(worker_id)
        self._retry_assignments[worker_id] = run
        self._say(
            f"parallel-modules: retrying {run.group.module} "
            f"(attempt {len(run.retries()) + 1} of {self.options.retries + 1}) on worker {worker_id}"
        )
        self._start_one(worker_id)

    def _abandon_retry(self, worker_id: str) -> None:
        """The worker meant for a retry never ran it: the failed attempt is final."""
        run = self._retry_assignments.pop(worker_id, None)
        if run is not None:
            run.settled = True
            self._settle(run, final=True)
            self._finish_module(run)

    def _settle(self, run: ModuleRun, *, final: bool = False) -> list[str]:
        """Replay the held events of the module's last attempt; return its flaky node ids."""
        run.settled = True
        earlier = run.retries()[:-1]
        failed_before = {
            report.nodeid
            for attempt in earlier
            for report in attempt.reports
            if report.failed and not hasattr(report, "wasxfail")
        }
        failed_now = {report.nodeid for report in run.reports if report.failed}
        flaky = sorted(
            nodeid for nodeid in failed_before if nodeid not in failed_now and nodeid in run.done
        )
        for crashed in run.attempts()[:-1]:
            # A crashed attempt whose remainder ran elsewhere: its events come first.
            for kind, value in crashed.held:
                self._replay(crashed.worker_id, kind, value)
            crashed.held.clear()
            crashed.settled = True
        for kind, value in run.held:
            if (
                kind == "report"
                and self.options.retries_strict
                and value.nodeid in flaky
                and value.when == "call"
            ):
                value = _strict_flaky_report(value, earlier)
            self._replay(run.worker_id, kind, value)
        run.held.clear()
        return flaky

    def _attempt_record(self, attempt: ModuleRun) -> AttemptRecord:
        results = fold_test_reports(attempt.reports)
        report = build_module_report(
            module=attempt.group.module,
            worker=attempt.worker_id,
            started=attempt.started,
            finished=attempt.finished,
            results=results,
            outcome="crashed" if attempt.crashed else None,
            expected_nodeids=attempt.group.nodeids,
        )
        return AttemptRecord(
            attempt=len(attempt.retries()),
            worker=attempt.worker_id,
            outcome=report["outcome"],
            duration_s=report["duration_s"],
            failures=[
                FailureRecord(
                    nodeid=result["nodeid"], when=result["when"], longrepr=result["longrepr"]
                )
                for result in results
                if result["outcome"] in ("failed", "error")
            ],
        )

    def merged_report(self) -> MergedReport:
        """The run's merged report: every module that finished, and those never started."""
        for group in self.queue.remaining():
            attempt = self._crashed_attempts.pop(group.module, None)
            if attempt is not None:  # its worker crashed and the rest never ran
                self._finish_module(attempt, outcome="crashed")
        modules = list(self.module_reports)
        finished = {report["module"] for report in modules}
        for group in self.queue.remaining():
            if group.module in finished:
                continue
            modules.append(
                build_module_report(
                    module=group.module,
                    worker=None,
                    started=None,
                    finished=None,
                    results=[],
                    outcome="not_run",
                    expected_nodeids=group.nodeids,
                )
            )
        snapshot = self.placer.snapshot.commit if self.placer.snapshot is not None else None
        merged = build_merged_report(
            modules=modules,
            wall_s=self.wall_s,
            workers=self._worker_count,
            args=list(self.config.invocation_params.args),
            rootdir=self.config.rootpath,
            snapshot=snapshot,
            created=timing.now(),
        )
        self.config.hook.pytest_parallel_modules_report(config=self.config, report=merged)
        return merged

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
            self._nodes.setdefault(record.worker_id, WorkerNode(record.worker_id)),
            payload["workeroutput"],
            worker_id=record.worker_id,
            path_map=compat.checkout_path_map(
                self.worktrees.get(record.worker_id), self.placer.repo_root
            ),
        )

    def _on_channel_closed(self, record: WorkerRecord, payload: None) -> None:
        error = self.pool.closing_error(record.worker_id)
        started = record.state is not WorkerState.STARTING
        finished = started and record.session_finished and error is None
        if record.pid is not None and not finished:
            # Daemons and servers a test started live in the worker's process group.
            kill_process_group(record.pid)
        if finished and not record.assigned:
            self._set_state(record, WorkerState.DONE)
            return
        self._set_state(record, WorkerState.CRASHED)
        if error is not None:
            reason = error
        elif record.session_finished:
            reason = f"its pytest session ended early (exit code {record.exitstatus})"
        else:
            reason = "the worker process ended unexpectedly"
        if record.internal_error is not None:
            reason = f"{reason}\nINTERNALERROR in the worker:\n{record.internal_error}"
        if not started:
            self._abandon_retry(record.worker_id)
            # Died before its session was ready: nothing of the run was lost, but
            # the reason must reach the user (a plugin failing in the worker, ...).
            self.last_start_failure = f"worker {record.worker_id} failed to start: {reason}"
            self._say(f"parallel-modules: {self.last_start_failure.splitlines()[0]}")
        self._report_crash(record, reason)

    def _on_start_failed(self, record: WorkerRecord, payload: dict[str, str] | None) -> None:
        self._set_state(record, WorkerState.CRASHED)
        self._abandon_retry(record.worker_id)
        if payload is not None:
            self.last_start_failure = (
                f"worker {record.worker_id} could not start: {payload['error']}"
            )
        if payload is None:  # cancelled, not failed
            return
        self._say(
            f"parallel-modules: worker {record.worker_id} could not start: {payload['error']}"
        )
        if all(other.state is WorkerState.CRASHED for other in self.workers.values()):
            self.config.hook.pytest_collectreport(
                report=pytest.CollectReport(
                    nodeid="",
                    outcome="failed",
                    longrepr=f"no worker could start: {payload['error']}",
                    result=[],
                )
            )
            self._stop()

    # -- crashes --------------------------------------------------------------

    def _report_crash(self, record: WorkerRecord, reason: str) -> None:
        """Fail the test in flight, keep every other result, and requeue what did not run.

        A crash (the worker died) requeues the rest of its module on a fresh
        worker; a timeout (the controller killed it) does not: the module's other
        tests are reported not run, and only a module the worker had collected
        ahead goes back to the queue.
        """
        if record.killed_after_stop:
            # Killed at the end of the --fail-fast-modules grace period: the test it
            # was running is not a failure of its own; its module was interrupted.
            for run in record.assigned:
                run.finished = timing.now()
                self._finish_module(run, outcome="interrupted")
            record.assigned.clear()
            self._say(
                f"parallel-modules: worker {record.worker_id} was still busy "
                f"{self.options.fail_fast_grace:g}s after the fail-fast stop and was killed"
            )
            return
        timed_out = record.timed_out_after is not None
        what = f"timed out after {record.timed_out_after:g}s" if timed_out else "crashed"
        evidence = self._evidence(record, reason)
        lost_nodeid = record.running_nodeid
        if lost_nodeid is not None:
            self.crashed_nodeids.add(lost_nodeid)
            location = self._locations.get(lost_nodeid, (lost_nodeid, None, lost_nodeid))
            report = pytest.TestReport(
                nodeid=lost_nodeid,
                location=location,
                keywords={},
                outcome="failed",
                longrepr=f"worker {record.worker_id} {what} while running {lost_nodeid}\n{evidence}",
                when="call",
                sections=[],
                duration=0.0,
                user_properties=[],
            )
            self._replay_report(record, report)
            self._on_logfinish(
                record, worker.LogFinishPayload(nodeid=lost_nodeid, location=location, reports=[])
            )
        elif record.assigned:
            module = record.assigned[0].group.module
            self.config.hook.pytest_collectreport(
                report=pytest.CollectReport(
                    nodeid=module,
                    outcome="failed",
                    longrepr=f"worker {record.worker_id} {what} while collecting {module}\n{evidence}",
                    result=[],
                )
            )
            record.assigned[0].done.update(record.assigned[0].group.nodeids)
        remainders: list[ModuleGroup] = []
        for position, run in enumerate(record.assigned):
            run.crashed = not timed_out
            run.finished = timing.now()
            if timed_out and position == 0:
                self._finish_module(run, outcome="timeout")
                continue
            remainder = run.remainder(exclude=[lost_nodeid] if lost_nodeid else [])
            if remainder is not None and not self.stopping:
                remainders.append(remainder)
                if run.reports or (run.crashed and run.done):
                    self._crashed_attempts[run.group.module] = run
            else:
                self._finish_module(run, outcome="crashed" if run.crashed else "interrupted")
        record.assigned.clear()
        # The lost test is never run again; what is left of its module runs first.
        for remainder in reversed(remainders):
            self.queue.put_front(remainder)
        if self.stopping or not len(self.queue):
            return
        if self.restarts_left > 0:
            self._replace(record)
        elif not any(other.state not in _FINAL_STATES for other in self.workers.values()):
            self.workers_exhausted = True
            self._say(
                f"parallel-modules: no worker left (--module-worker-restarts={self._restart_budget} "
                "used up); the modules left are not run"
            )
            self._stop()

    def _evidence(self, record: WorkerRecord, reason: str) -> str:
        """What the user needs to understand a lost worker: how it ended and its last words."""
        lines = [reason]
        ended = self.pool.exit_description(record.worker_id)
        if ended is not None:
            lines.append(f"The worker process ended with {ended}.")
        tail = _tail(self._stderr_path(record.worker_id), STDERR_TAIL_BYTES)
        worktree = self.worktrees.get(record.worker_id)
        if tail and worktree is not None and self.placer.repo_root is not None:
            # Stacks name files as a plain run would (see _deserialize).
            tail = str(restore_checkout_paths(tail, str(worktree), str(self.placer.repo_root)))
        if tail:
            lines.append(
                f"Last output of the worker on stderr (Python stacks of every thread, when it could "
                f"dump them; full file: {self._stderr_path(record.worker_id)}):\n{tail}"
            )
        return "\n".join(lines)

    def _stderr_path(self, worker_id: str) -> Path:
        return self._basetemp_dir / f"worker-{worker_id}.stderr"

    def _report_unrun(self, groups: Iterable[ModuleGroup]) -> None:
        """Say loudly which selected tests no worker ran (only when every worker was lost)."""
        for group in groups:
            self.config.hook.pytest_collectreport(
                report=pytest.CollectReport(
                    nodeid=group.module,
                    outcome="failed",
                    longrepr=(
                        f"{len(group)} test(s) of {group.module} were not run: no worker was left to run them"
                        + (f"\n{self.last_start_failure}" if self.last_start_failure else "")
                    ),
                    result=[],
                )
            )

    def _say(self, line: str) -> None:
        """Write one status line through pytest's terminal reporter (if there is one)."""
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_line(line, yellow=True)

    def _terminate(self) -> None:
        if self._terminated:
            return
        self._terminated = True
        self._cancel_start.set()
        if self._starter is not None:
            self._starter.join()
        # Workers still waiting for work (the run ended before it began, or was
        # interrupted) end their sessions cleanly when told; a worker that does
        # not end within the timeout is killed.
        for record in self.workers.values():
            if record.state not in _FINAL_STATES:
                self.pool.send(record.worker_id, worker.STOP)
                self.pool.send(record.worker_id, worker.NO_MORE_WORK)
        self.pool.terminate(timeout=TERMINATE_TIMEOUT)
        # Workers that finished normally exited on their own just now (their
        # atexit handlers ran: coverage.py measuring them saved its data); what
        # their tests started in their process groups goes now.
        self._kill_all()
        compat.remap_subprocess_coverage(self.worktrees, self.placer.repo_root)
        self.placer.release(keep=self.kept_worktrees())

    def kept_worktrees(self) -> list[Path]:
        """Worktrees left in place for inspection: those whose worker ran a failed module."""
        if not self.options.keep_failed_worktrees:
            return []
        failed_workers = {
            run.worker_id
            for run in self.modules
            if run.crashed or any(report.failed for report in run.reports)
        }
        return [path for worker_id, path in self.worktrees.items() if worker_id in failed_workers]


def _warning_category(module: str, name: str) -> type[Warning]:
    """Import a worker's warning category by name; fall back to UserWarning."""
    try:
        found: object = importlib.import_module(module)
        for part in name.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError):
        return UserWarning
    if isinstance(found, type) and issubclass(found, Warning):
        return found
    return UserWarning


#: A module estimated under this many seconds lets its worker ask for the next one ahead.
PREFETCH_BELOW_S: Final = 0.5
#: How much of a lost worker's stderr file a crash report shows.
STDERR_TAIL_BYTES: Final = 12_000
#: Seconds to wait for a worker's stack dump before the kill.
STACK_DUMP_WAIT_S: Final = 1.0
#: Seconds running workers get to finish their current test after Ctrl-C.
INTERRUPT_GRACE_S: Final = 3.0


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    # SIGTERM ends the run like Ctrl-C: workers stopped, partial summary, exit 2.
    raise KeyboardInterrupt


def _tail(path: Path, size: int) -> str:
    """The last ``size`` bytes of a text file, from a line start ("" if missing)."""
    try:
        with open(path, "rb") as file:
            file.seek(0, os.SEEK_END)
            end = file.tell()
            file.seek(max(0, end - size))
            data = file.read()
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace")
    if end > size and "\n" in text:
        text = text.split("\n", 1)[1]
    return text.strip()


def _wait_for_growth(path: Path, timeout: float) -> None:
    """Wait until ``path`` stops growing (a stack dump is complete), at most ``timeout`` s."""
    deadline = timing.perf() + timeout
    last = -1
    while timing.perf() < deadline:
        try:
            size = path.stat().st_size
        except OSError:
            size = 0
        if size == last and size > 0:
            return
        last = size
        time.sleep(0.1)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _strict_flaky_report(report: pytest.TestReport, earlier: list[ModuleRun]) -> pytest.TestReport:
    """--module-retries-strict: the passing call of a flaky test, turned into a failure naming why."""
    first_failure = next(
        (
            r
            for attempt in earlier
            for r in attempt.reports
            if r.nodeid == report.nodeid and r.failed
        ),
        None,
    )
    text = "flaky (--module-retries-strict): failed in an earlier attempt, passed on a retry"
    if first_failure is not None:
        text += f"\n\nThe first failure:\n{first_failure.longreprtext}"
    return pytest.TestReport(
        nodeid=report.nodeid,
        location=report.location,
        keywords=dict(report.keywords),
        outcome="failed",
        longrepr=text,
        when="call",
        sections=list(report.sections),
        duration=report.duration,
        user_properties=list(report.user_properties),
    )


def _checked_plan(
    original: Iterable[ModuleGroup], changed: Iterable[ModuleGroup]
) -> tuple[ModuleGroup, ...]:
    """A plan returned by ``pytest_parallel_modules_plan``, if it runs every test exactly once."""
    changed = tuple(changed)
    before = sorted(nodeid for group in original for nodeid in group.nodeids)
    after = sorted(nodeid for group in changed for nodeid in group.nodeids)
    if before != after or not all(isinstance(group, ModuleGroup) for group in changed):
        raise pytest.UsageError(
            "pytest_parallel_modules_plan must return ModuleGroups holding exactly the node ids "
            f"it was given, each once ({len(before)} given, {len(after)} returned)"
        )
    return changed
