"""What common plugins expect of a pytest-xdist controller, done for ours. Runs in the controller.

Plugins that support pytest-xdist recognise a worker by ``config.workerinput``
and talk to their controller side through two xdist hooks:
``pytest_configure_node(node)`` fills ``node.workerinput`` before a worker
starts, and ``pytest_testnodedown(node, error)`` receives what the worker left
in ``config.workeroutput``. The controller calls :func:`configure_node` and
:func:`node_down` at those two moments, and this module plays pytest-xdist's
part:

- both xdist hooks are called when pytest-xdist defines them (it is installed),
  for every plugin but pytest-cov, whose controller side in our process is its
  non-distributed one; pytest-cov is served here instead (see below);
- ``testrunuid`` (pytest-xdist's ``testrun_uid`` fixture) is the same in every
  worker of a run;
- pytest-randomly reads its seed from ``workerinput["randomly_seed"]`` in a
  worker whether or not pytest-xdist is installed, so the seed is always sent:
  every worker shuffles and reseeds as the controller's collection did;
- pytest-cov: its worker side (``DistWorker``) needs ``cov_master_*`` keys and,
  in a worktree (a directory other than the controller's), sends its data back
  in ``workeroutput``. :func:`node_down` writes that data next to the
  controller's own coverage data file, with worktree paths mapped to the main
  checkout, so pytest-cov's final combine in the controller reports one result
  with the checkout's paths. A worker running in place saves its data file
  there itself, as under pytest-xdist;
- coverage.py measuring subprocesses (``coverage run`` with ``patch =
  subprocess``, or ``COVERAGE_PROCESS_START``) leaves one data file per worker,
  written when the worker exits; :func:`remap_subprocess_coverage` rewrites
  those of this run's worktrees to the checkout's paths, so ``coverage
  combine`` needs no ``[paths]`` section;
- Hypothesis keeps its example database where a plain run keeps it (the
  invocation directory's ``.hypothesis``) rather than in each worktree: a
  failing example found by a parallel run is replayed by the next run, plain or
  parallel, as under pytest-xdist, whose workers share one directory.
  :func:`prepare_worker` sets that up inside each worker.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import MutableMapping
import os
from pathlib import Path
import socket
import sys
from typing import Any
from typing import Final
from typing import final
from typing import Protocol
from typing import TYPE_CHECKING
import uuid

from _pytest._io import TerminalWriter
import pytest

from pytest_parallel_modules import output
from pytest_parallel_modules.worker import WORKER_COMPAT_PLUGIN_NAME
from pytest_parallel_modules.worker import WORKER_COUNT_ENV
from pytest_parallel_modules.worker import WORKER_ID_ENV
from pytest_parallel_modules.worker import WORKER_PID_ENV


if TYPE_CHECKING:
    from collections.abc import Generator
    from collections.abc import Sequence

#: pytest-cov registers its plugin object under this name.
COV_PLUGIN_NAME: Final = "_cov"
#: pytest-randomly's plugin name (its entry point).
RANDOMLY_PLUGIN_NAME: Final = "randomly"
#: The ``workerinput`` key holding the directory Hypothesis keeps its database in.
HYPOTHESIS_STORAGE_KEY: Final = "parallel_modules_hypothesis_storage"
#: Hypothesis reads its storage directory (``.hypothesis``) from this variable.
HYPOTHESIS_STORAGE_ENV: Final = "HYPOTHESIS_STORAGE_DIRECTORY"
#: Set by a worker next to :data:`HYPOTHESIS_STORAGE_ENV`, to the same value: says that
#: the worker, not the user, set it (see :func:`forget_inherited_worker_settings`).
HYPOTHESIS_STORAGE_SET_BY_WORKER_ENV: Final = "PYTEST_PARALLEL_MODULES_HYPOTHESIS_STORAGE"

testrunuid_key: Final = pytest.StashKey[str]()


class XdistNode(Protocol):
    """The part of a pytest-xdist ``WorkerController`` that plugins read in the two hooks."""

    workerinput: dict[str, Any]
    config: pytest.Config | None


def configure_node(config: pytest.Config, node: XdistNode) -> dict[str, Any]:
    """Fill ``node.workerinput`` as pytest-xdist and its plugins would; return it.

    Called by the controller before each worker starts (on the starter thread).

    :param config: the controller's config.
    :param node: the worker's node; ``node.workerinput`` holds ``workerid`` already.
    :returns: the entries for the worker's ``config.workerinput``.
    """
    node.config = config
    if testrunuid_key not in config.stash:
        config.stash[testrunuid_key] = os.environ.get("PYTEST_XDIST_TESTRUNUID") or uuid.uuid4().hex
    workerinput = node.workerinput
    workerinput.setdefault("testrunuid", config.stash[testrunuid_key])
    if config.pluginmanager.has_plugin(RANDOMLY_PLUGIN_NAME):
        workerinput["randomly_seed"] = config.getoption("randomly_seed")
    cov = _active_cov_plugin(config)
    if cov is not None:
        # pytest-cov's DistWorker compares these with its own host and cwd: equal
        # (a worker in place) -> it saves its data file beside ours; different
        # (a worktree) -> it sends the data back in workeroutput.
        workerinput["cov_master_host"] = socket.gethostname()
        workerinput["cov_master_topdir"] = _cov_topdir(config, cov)
        workerinput["cov_master_rsync_roots"] = []
    if os.environ.get(HYPOTHESIS_STORAGE_ENV) is None:
        workerinput[HYPOTHESIS_STORAGE_KEY] = str(config.invocation_params.dir / ".hypothesis")
    relay = config.pluginmanager.get_plugin(output.RELAY_PLUGIN_NAME)
    if isinstance(relay, output.ModuleOutputRelay):
        workerinput.update(relay.worker_input())
    hook = _xdist_hook(config, "pytest_configure_node")
    if hook is not None:
        hook(node=node)
    return workerinput


def worker_args(config: pytest.Config, args: Sequence[str]) -> list[str]:
    """The command-line arguments a worker's pytest session parses: the user's, plus what plugins need.

    Called by the controller before each worker starts.

    - ``--cov-append`` when pytest-cov measures: pytest-cov starts measuring
      (and erases every ``.coverage.*`` file of its data directory) as soon as
      it loads, before it learns that it runs in a worker. A worker starting
      late, in place, would erase what the workers that already finished saved
      there. The controller erased old data at its own start.
    """
    extra = ["--cov-append"] if _active_cov_plugin(config) is not None else []
    return [*args, *extra]


def node_down(
    config: pytest.Config,
    node: XdistNode,
    workeroutput: Mapping[str, Any],
    *,
    worker_id: str,
    path_map: Callable[[str], str],
) -> None:
    """Hand a worker's ``config.workeroutput`` to the plugins that wait for it.

    Called by the controller when a worker's session ended normally (a crashed
    worker leaves nothing to hand over, as under pytest-xdist).

    :param path_map: maps a path inside the worker's worktree to the checkout.
    """
    node.workeroutput = dict(workeroutput)  # type: ignore[attr-defined]  # the pytest-xdist convention
    _store_cov_worker_data(config, workeroutput, worker_id=worker_id, path_map=path_map)
    hook = _xdist_hook(config, "pytest_testnodedown")
    if hook is not None:
        hook(node=node, error=None)


def inside_worker_process(environ: Mapping[str, str], pid: int) -> bool:
    """Whether this process is a worker itself (a pytest run in-process inside one).

    Such a nested run shares the worker's ``os.environ``: what it changed there would
    stay changed for the worker's later tests, so it changes nothing.
    """
    return environ.get(WORKER_PID_ENV) == str(pid)


def forget_inherited_worker_settings(environ: MutableMapping[str, str]) -> None:
    """Drop what a worker set for itself from the environment a process inherited from it.

    Called as every pytest process with this plugin configures. A test that starts
    pytest in a subprocess (pytester does) inherits the worker's environment; the
    Hypothesis storage the worker set would send that pytest's examples to the outer
    run's ``.hypothesis`` rather than its own directory's, as in a plain run. A value
    the user set is kept: only one equal to the worker's marker is dropped.
    """
    marker = environ.pop(HYPOTHESIS_STORAGE_SET_BY_WORKER_ENV, None)
    if marker is not None and environ.get(HYPOTHESIS_STORAGE_ENV) == marker:
        del environ[HYPOTHESIS_STORAGE_ENV]


def forget_outer_worker_identity(environ: MutableMapping[str, str]) -> None:
    """A parallel run's controller is no worker, even when a worker of an outer run started it.

    Called as a parallel run's controller configures. Its own workers get their names
    when they start; without this, the modules it imports to collect them would see
    the outer worker's name in ``PYTEST_PARALLEL_MODULES_WORKER``.
    """
    for name in (WORKER_ID_ENV, WORKER_COUNT_ENV, WORKER_PID_ENV):
        environ.pop(name, None)


def prepare_worker(config: pytest.Config) -> None:
    """Inside a worker, at configure time: apply what the controller asked in ``workerinput``."""
    workerinput: Mapping[str, Any] = getattr(config, "workerinput", {})
    storage = workerinput.get(HYPOTHESIS_STORAGE_KEY)
    if isinstance(storage, str) and os.environ.get(HYPOTHESIS_STORAGE_ENV) is None:
        # Hypothesis reads this when it first opens its database, after configure.
        os.environ[HYPOTHESIS_STORAGE_ENV] = storage
        os.environ[HYPOTHESIS_STORAGE_SET_BY_WORKER_ENV] = storage
    config.pluginmanager.register(WorkerCompat(config), WORKER_COMPAT_PLUGIN_NAME)
    output.register_worker_capture(config, workerinput)


@final
class WorkerCompat:
    """Worker-side fixes for plugins that expect a plain session. Runs inside a worker process."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    @pytest.hookimpl(wrapper=True)
    def pytest_report_to_serializable(
        self, report: pytest.CollectReport | pytest.TestReport
    ) -> Generator[None, dict[str, Any] | None, dict[str, Any] | None]:
        data = yield
        longrepr = report.longrepr
        if (
            data is not None
            and isinstance(data.get("longrepr"), str)
            and hasattr(longrepr, "toterminal")
            and not hasattr(longrepr, "reprcrash")
        ):
            # A repr without a crash line (a missing fixture) travels as a string;
            # see restore_terminal_repr for why the controller must know.
            data[TERMINAL_REPR_KEY] = True
        return data

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        # The worker unregistered pytest's terminal reporter at configure time
        # (its output has nowhere to go, and it would run every plugin's terminal
        # summary). Plugins that write to the terminal while a test runs
        # (pytest-timeout's stack dump) or decide what to put in a report by its
        # presence (Hypothesis' statistics and failing examples) find this one.
        if self.config.pluginmanager.get_plugin("terminalreporter") is None:
            self.config.pluginmanager.register(WorkerTerminal(self.config), "terminalreporter")


#: Marks a serialized report whose string ``longrepr`` was a repr without a crash line.
TERMINAL_REPR_KEY: Final = "parallel_modules_terminal_repr"


def restore_terminal_repr(data: Mapping[str, Any], report: object) -> object:
    """Give a deserialized report back a ``longrepr`` that is not a string, where it had one.

    Called in the controller on every report read from a worker. pytest's
    serialization turns a ``longrepr`` without a crash line (e.g. "fixture 'x'
    not found") into a string; pytest's short summary then shows the string's
    first line ("file /path/test_x.py, line 9") where a plain run shows nothing.
    """
    if isinstance(report, pytest.TestReport | pytest.CollectReport):
        marked = report.__dict__.pop(TERMINAL_REPR_KEY, False)
        if marked and data.get(TERMINAL_REPR_KEY) and isinstance(report.longrepr, str):
            report.longrepr = TextRepr(report.longrepr)  # type: ignore[assignment]  # a TerminalRepr
    return report


@final
class TextRepr:
    """A ``longrepr`` that writes its text, with no crash line (like pytest's fixture errors)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def toterminal(self, tw: TerminalWriter) -> None:
        for line in self.text.rstrip("\n").split("\n"):
            tw.line(line)

    def __str__(self) -> str:
        return self.text


class _CurrentStderr:
    """A file that writes to whatever ``sys.stderr`` is at the time (pytest's capture swaps it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return False


@final
class WorkerTerminal:
    """What a worker offers as ``terminalreporter``: a writer, no hooks. Runs inside a worker process.

    What is written goes to ``sys.stderr``; during a test, pytest captures it into
    the test's report, so the controller shows it with the test's result.
    """

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.verbosity = config.get_verbosity()
        #: Read by plugins that look at results so far (pytest-rerunfailures); stays empty.
        self.stats: dict[str, list[Any]] = {}
        self._tw = TerminalWriter(file=_CurrentStderr())  # type: ignore[arg-type]  # a TextIO stand-in

    def isatty(self) -> bool:
        return False

    def write(self, content: str, **markup: bool) -> None:
        self._tw.write(content, **markup)

    def write_line(self, line: str, **markup: bool) -> None:
        self._tw.line(line, **markup)

    def line(self, msg: str, **markup: bool) -> None:
        self._tw.line(msg, **markup)

    def write_sep(self, sep: str, title: str | None = None, **markup: bool) -> None:
        self._tw.sep(sep, title, **markup)

    def section(self, title: str, sep: str = "=", **markup: bool) -> None:
        self._tw.sep(sep, title, **markup)

    def ensure_newline(self) -> None:
        pass


def checkout_path_map(worktree: Path | None, checkout: Path | None) -> Callable[[str], str]:
    """PURE: a function that moves a path from ``worktree`` to ``checkout`` (identity when either is None)."""
    if worktree is None or checkout is None:
        return _identity
    pairs = {
        (str(worktree), str(checkout)),
        (os.path.realpath(worktree), os.path.realpath(checkout)),
    }
    ordered = sorted(pairs, key=lambda pair: len(pair[0]), reverse=True)

    def to_checkout(path: str) -> str:
        for source, target in ordered:
            if path == source or path.startswith(source + os.sep):
                return target + path[len(source) :]
        return path

    return to_checkout


def _identity(path: str) -> str:
    return path


def _xdist_hook(config: pytest.Config, name: str) -> Any | None:
    """pytest-xdist's hook ``name`` without pytest-cov's implementation; None without pytest-xdist."""
    if not hasattr(config.hook, name):
        return None
    cov = config.pluginmanager.get_plugin(COV_PLUGIN_NAME)
    return config.pluginmanager.subset_hook_caller(
        name, remove_plugins=[cov] if cov is not None else []
    )


def _active_cov_plugin(config: pytest.Config) -> Any | None:
    """pytest-cov's plugin when it measures this run (``--cov`` given, no ``--no-cov``)."""
    plugin = config.pluginmanager.get_plugin(COV_PLUGIN_NAME)
    if plugin is None or getattr(plugin, "cov_controller", None) is None:
        return None
    return plugin


def _cov_topdir(config: pytest.Config, plugin: Any) -> str:
    """The directory pytest-cov's controller side works in (its cwd at start)."""
    topdir = getattr(plugin.cov_controller, "topdir", None)
    return str(topdir) if isinstance(topdir, str) else str(config.invocation_params.dir)


def _store_cov_worker_data(
    config: pytest.Config,
    workeroutput: Mapping[str, Any],
    *,
    worker_id: str,
    path_map: Callable[[str], str],
) -> None:
    """Write a worktree worker's pytest-cov data beside the controller's, paths mapped.

    pytest-cov's controller side (not the distributed one, as our process has
    no ``-n``) combines every ``<data file>.*`` file of its data directory when
    the run loop ends, which is after every worker's session ended.
    """
    data = workeroutput.get("cov_worker_data")
    plugin = _active_cov_plugin(config)
    if data is None or plugin is None:
        return
    from coverage import CoverageData

    cov = plugin.cov_controller.cov
    basename = os.path.join(_cov_topdir(config, plugin), str(cov.get_option("run:data_file")))
    incoming = CoverageData(no_disk=True)
    incoming.loads(data)
    target = CoverageData(basename=basename, suffix=_data_suffix(worker_id))
    target.update(incoming, map_path=path_map)
    target.write()


def _data_suffix(worker_id: str) -> str:
    return f"{socket.gethostname()}.pid{os.getpid()}.parallel-modules-{worker_id}.{uuid.uuid4().hex[:8]}"


def remap_subprocess_coverage(worktrees: Mapping[str, Path], checkout: Path | None) -> list[Path]:
    """Rewrite the coverage data files that worker processes left, worktree paths -> checkout.

    Called by the controller after every worker process has exited. Does
    something only when coverage.py measures this process as well as its
    subprocesses (``coverage run`` with ``patch = subprocess``, or
    ``COVERAGE_PROCESS_START``): it looks at the data files next to this
    process's own data file and, in each worktree, at the same relative place
    (a relative ``data_file`` is relative to each worker's cwd), and rewrites
    those that measured files of this run's worktrees. Files of other runs
    (other worktrees) are left alone.

    :returns: the data files written.
    """
    if not worktrees or checkout is None:
        return []
    try:
        import coverage
    except ImportError:
        return []
    current = coverage.Coverage.current()
    if current is None:
        return []
    # Workers start coverage.py before they move into their worktree, so their
    # data files land where this process's does.
    data_file = Path(os.path.abspath(str(current.get_option("run:data_file"))))
    written: list[Path] = []
    for worker_id, worktree in sorted(worktrees.items()):
        path_map = checkout_path_map(worktree, checkout)
        for candidate in sorted(data_file.parent.glob(f"{data_file.name}.*")):
            rewritten = _rewrite_data_file(candidate, data_file, worktree, path_map, worker_id)
            if rewritten is not None:
                written.append(rewritten)
    return written


def _rewrite_data_file(
    candidate: Path,
    data_file: Path,
    worktree: Path,
    path_map: Callable[[str], str],
    worker_id: str,
) -> Path | None:
    """Rewrite one data file if it measured files in ``worktree``; return the new file."""
    from coverage import CoverageData

    prefixes = (str(worktree) + os.sep, os.path.realpath(worktree) + os.sep)
    try:
        source = CoverageData(basename=str(candidate))
        source.read()
        measured = source.measured_files()
        if not any(path.startswith(prefixes) for path in measured):
            return None
        target = CoverageData(basename=str(data_file), suffix=_data_suffix(worker_id))
        target.update(source, map_path=path_map)
        target.write()
    except Exception:  # sqlite, coverage or OS errors alike
        # Not a data file (or one being written by someone else): not ours to touch.
        return None
    candidate.unlink(missing_ok=True)
    return Path(target.data_filename())
