"""The pytest11 entry point: hooks that only wire the plugin together. Runs in the controller.

In a worker process (recognised by ``config.workerinput``, the pytest-xdist
convention) the plugin only adapts the worker for other plugins
(:func:`pytest_parallel_modules.compat.prepare_worker`): the worker is driven by
:mod:`pytest_parallel_modules.worker`.
"""

from __future__ import annotations

import os
from typing import Any
from typing import Final
from typing import TYPE_CHECKING

import pytest

from pytest_parallel_modules import compat
from pytest_parallel_modules import hookspecs
from pytest_parallel_modules import output
from pytest_parallel_modules import worktrees
from pytest_parallel_modules.controller import ParallelSession
from pytest_parallel_modules.history import History
from pytest_parallel_modules.history import load_history
from pytest_parallel_modules.options import check_isolation
from pytest_parallel_modules.options import inert_options_warning
from pytest_parallel_modules.options import Options
from pytest_parallel_modules.options import register_options
from pytest_parallel_modules.progress import LiveProgress
from pytest_parallel_modules.report_directory import ReportDirectory
from pytest_parallel_modules.reporting import RunReporter
from pytest_parallel_modules.sharding import SHARD_PLUGIN_NAME
from pytest_parallel_modules.sharding import ShardFilter
from pytest_parallel_modules.splitting import WHOLE_MARKER


if TYPE_CHECKING:
    from collections.abc import Generator

#: The run's parsed options (set in every controller, active or not).
options_key: Final = pytest.StashKey[Options]()
#: The registered controller plugin, when the run is parallel.
parallel_session_key: Final = pytest.StashKey[ParallelSession]()

#: The registered reporting plugin, when the run is parallel.
run_reporter_key: Final = pytest.StashKey[RunReporter]()
#: The registered live progress plugin, when the run is parallel and ``-p no:`` did not block it.
live_progress_key: Final = pytest.StashKey[LiveProgress]()
#: The registered module output relay, when the run is parallel.
module_output_key: Final = pytest.StashKey[output.ModuleOutputRelay]()
#: The report directory this run claimed (when reports are written at all).
report_directory_key: Final = pytest.StashKey[ReportDirectory]()
#: The registered shard filter, with --module-shard (also under --collect-only).
shard_filter_key: Final = pytest.StashKey[ShardFilter]()

#: Names under which the plugin objects are registered.
CONTROLLER_PLUGIN_NAME: Final = "pytest_parallel_modules-controller"
REPORTING_PLUGIN_NAME: Final = "pytest_parallel_modules-reporting"
#: ``-p no:pytest_parallel_modules-live`` blocks this name, so the live display never registers.
LIVE_PLUGIN_NAME: Final = "pytest_parallel_modules-live"


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_addoption(parser: pytest.Parser) -> None:
    register_options(parser)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


# trylast: the terminal reporter must be registered before we adjust it.
@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    # A pytest run in-process inside a worker shares the worker's environment: it must
    # leave it as it found it (see compat.inside_worker_process).
    nested = compat.inside_worker_process(os.environ, os.getpid())
    if not nested:
        compat.forget_inherited_worker_settings(os.environ)
    # Registered in workers too: they run with the user's --strict-markers.
    config.addinivalue_line(
        "markers",
        f"{WHOLE_MARKER}: never split this module (or, on a class, this class) across "
        "workers (--split-modules)",
    )
    if _is_worker(config):
        compat.prepare_worker(config)
        return
    options = Options.from_config(config)
    config.stash[options_key] = options
    if options.active and options.isolation_source is not None:
        invocation_dir = config.invocation_params.dir
        check_isolation(options, worktrees.find_repo_root(invocation_dir), invocation_dir)
    if options.active and not nested:
        compat.forget_outer_worker_identity(os.environ)
    if options.shard is not None:
        shard_filter = ShardFilter(config, options.shard, lambda: _shard_history(config))
        config.stash[shard_filter_key] = shard_filter
        config.pluginmanager.register(shard_filter, SHARD_PLUGIN_NAME)
    if not options.active or config.option.collectonly:
        return
    session = ParallelSession(config, options)
    config.stash[parallel_session_key] = session
    config.pluginmanager.register(session, CONTROLLER_PLUGIN_NAME)
    report_directory = None if options.report_dir is None else ReportDirectory(options.report_dir)
    if report_directory is not None:
        config.stash[report_directory_key] = report_directory
    reporter_plugin = RunReporter(config, options, session.view, report_directory)
    config.stash[run_reporter_key] = reporter_plugin
    config.pluginmanager.register(reporter_plugin, REPORTING_PLUGIN_NAME)
    relay = output.ModuleOutputRelay(config, options, report_directory)
    config.stash[module_output_key] = relay
    config.pluginmanager.register(relay, output.RELAY_PLUGIN_NAME)
    live = LiveProgress(config, session.view, reporter_plugin)
    # register() returns None for a name that -p no: blocked.
    if config.pluginmanager.register(live, LIVE_PLUGIN_NAME) is not None:
        config.stash[live_progress_key] = live
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        # Modules finish interleaved across workers: a file name before each run
        # of dots would be repeated and misleading (pytest-xdist does the same).
        reporter.showfspath = False


@pytest.hookimpl(wrapper=True)
def pytest_report_from_serializable(
    data: dict[str, Any],
) -> Generator[None, object, object]:
    return compat.restore_terminal_repr(data, (yield))


def _shard_history(config: pytest.Config) -> History:
    """The history a shard splits with: the controller's, read once, else read here."""
    session = config.stash.get(parallel_session_key, None)
    if session is not None:
        return session.loaded_history().history
    path = config.stash[options_key].history_path
    # --collect-only: no controller, and nothing else of the run needs the history.
    return History() if path is None else load_history(path).history


def pytest_unconfigure(config: pytest.Config) -> None:
    shard_filter = config.stash.get(shard_filter_key, None)
    if shard_filter is not None:
        config.pluginmanager.unregister(shard_filter, SHARD_PLUGIN_NAME)
        del config.stash[shard_filter_key]
    live = config.stash.get(live_progress_key, None)
    if live is not None:
        config.pluginmanager.unregister(live, LIVE_PLUGIN_NAME)
        del config.stash[live_progress_key]
    relay = config.stash.get(module_output_key, None)
    if relay is not None:
        relay.close()
        config.pluginmanager.unregister(relay, output.RELAY_PLUGIN_NAME)
        del config.stash[module_output_key]
    reporter_plugin = config.stash.get(run_reporter_key, None)
    if reporter_plugin is not None:
        config.pluginmanager.unregister(reporter_plugin, REPORTING_PLUGIN_NAME)
        del config.stash[run_reporter_key]
    session = config.stash.get(parallel_session_key, None)
    if session is not None:
        config.pluginmanager.unregister(session, CONTROLLER_PLUGIN_NAME)
        del config.stash[parallel_session_key]
    report_directory = config.stash.get(report_directory_key, None)
    if report_directory is not None:
        report_directory.release()
        del config.stash[report_directory_key]


# A wrapper: the report directory is claimed before the terminal reporter prints the
# header (which says where reports go when another run has it), and the warning about
# ignored options is written after the header, where pytest's own lines are.
@pytest.hookimpl(wrapper=True)
def pytest_sessionstart(session: pytest.Session) -> Generator[None, object, object]:
    config = session.config
    report_directory = config.stash.get(report_directory_key, None)
    if report_directory is not None:
        report_directory.claim()
    result = yield
    options = config.stash.get(options_key, None)
    warning = None if options is None else inert_options_warning(options)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if warning is not None and reporter is not None:
        reporter.write_line(warning, yellow=True)
    return result


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    options = config.stash.get(options_key, None)
    if options is None or not options.active:
        return None
    lines = []
    if options.shard is not None:
        index, count = options.shard
        lines.append(
            f"parallel-modules: shard {index}/{count} ({options.shard_source}); the duration "
            "history is read, not saved (merge --durations saves it)"
        )
    if config.option.collectonly:
        return lines
    noun = "worker" if options.workers == 1 else "workers"
    lines.insert(0, f"parallel-modules: {options.workers} {noun} ({options.workers_source})")
    report_directory = config.stash.get(report_directory_key, None)
    if report_directory is not None and report_directory.notice is not None:
        lines.append(f"parallel-modules: {report_directory.notice}")
    return lines
