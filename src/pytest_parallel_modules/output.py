"""Each module's raw output in a file of its own, shown per module under ``-s``. Runs in the controller and in workers.

A worker has no terminal: execnet owns its real stdout (fd 1 is ``/dev/null``)
and pytest's terminal reporter is unregistered there. What a plain run would
print straight to the terminal -- the tests' output under ``-s`` (or
``--capture=sys`` for what bypasses ``sys.stdout``: subprocesses, C code) and
live logs (``log_cli``) -- is written instead to
``<report dir>/modules/<module>.log``, next to the module's JSON report:

- :class:`ModuleOutput` (inside each worker) points fds 1 and 2 at the log of
  the module being collected or run (only when pytest does not capture at the
  fd level itself), and adds a logging handler in the format of ``log_cli``
  when live logging is on;
- :class:`ModuleOutputRelay` (in the controller) owns the directory, hands it
  to the workers through ``workerinput``, removes the logs of the previous run,
  and, under ``-s`` or ``log_cli``, prints each module's log when the module
  finishes, every line prefixed by the module (``[tests/test_x.py] ...``), so
  the output of modules running at the same time never interleaves.
"""

from __future__ import annotations

from collections.abc import Mapping
import logging
import os
from pathlib import Path
import shutil
import sys
import tempfile
from typing import Any
from typing import Final
from typing import final
from typing import TextIO
from typing import TYPE_CHECKING

import pytest

from pytest_parallel_modules.grouping import module_of
from pytest_parallel_modules.reports import module_report_filename


if TYPE_CHECKING:
    from pytest_parallel_modules.options import Options
    from pytest_parallel_modules.report_directory import ReportDirectory
    from pytest_parallel_modules.reports import ModuleReport

#: The relay's name in the controller's plugin manager.
RELAY_PLUGIN_NAME: Final = "pytest_parallel_modules-output"
#: The capturing plugin's name in a worker's plugin manager.
CAPTURE_PLUGIN_NAME: Final = "pytest_parallel_modules-module-output"
#: ``workerinput`` key: the directory of the module logs.
OUTPUT_DIR_KEY: Final = "parallel_modules_output_dir"


def module_log_filename(module: str) -> str:
    """PURE: ``tests/test_x.py`` -> ``tests__test_x.py.log`` (the JSON report's name, ``.log``)."""
    return module_report_filename(module).removesuffix(".json") + ".log"


def live_logging(config: pytest.Config) -> bool:
    """True when the user asked for live logs (``log_cli`` or ``--log-cli-level``)."""
    return config.getoption("log_cli_level", None) is not None or bool(config.getini("log_cli"))


def _option_or_ini(config: pytest.Config, *names: str) -> Any:
    """The first of ``names`` set on the command line or in the ini file (as pytest's logging reads them)."""
    for name in names:
        value = config.getoption(name, None)
        if value is None:
            value = config.getini(name)
        if value is not None and value != "":
            return value
    return None


def _log_level(value: Any) -> int:
    if isinstance(value, int):
        return value
    level = logging.getLevelName(str(value).upper())
    return level if isinstance(level, int) else logging.NOTSET


@final
class ModuleOutputRelay:
    """Owns the module logs of a run and prints them under ``-s``/``log_cli``. Runs in the controller.

    Registered by :func:`pytest_parallel_modules.plugin.pytest_configure` under
    :data:`RELAY_PLUGIN_NAME` when the run is parallel.
    """

    def __init__(
        self,
        config: pytest.Config,
        options: Options,
        report_directory: ReportDirectory | None = None,
    ) -> None:
        self.config = config
        self.options = options
        #: Where this run's reports go; the logs go to its ``modules/``.
        self.report_directory = report_directory
        #: The directory of the module logs, once the session started.
        self.directory: Path | None = None
        self._temporary = False

    @property
    def streaming(self) -> bool:
        """True when module output belongs on the terminal (``-s`` or live logging)."""
        return self.config.getoption("capture") == "no" or live_logging(self.config)

    def pytest_sessionstart(self) -> None:
        report_dir = None if self.report_directory is None else self.report_directory.path
        if report_dir is not None:
            directory = report_dir / "modules"
            directory.mkdir(parents=True, exist_ok=True)
            # The directory holds the last run only.
            for stale in directory.glob("*.log"):
                stale.unlink(missing_ok=True)
        else:  # no cache and no --module-report-dir: nowhere to keep them
            directory = Path(tempfile.mkdtemp(prefix="pytest-parallel-modules-output-"))
            self._temporary = True
        self.directory = directory

    def worker_input(self) -> dict[str, Any]:
        """What a worker needs to write module logs (called before each worker starts)."""
        return {} if self.directory is None else {OUTPUT_DIR_KEY: str(self.directory)}

    # trylast: after the module's own line, which ends the line of progress dots.
    @pytest.hookimpl(trylast=True)
    def pytest_parallel_modules_module_finished(self, report: ModuleReport) -> None:
        if self.directory is None:
            return
        path = self.directory / module_log_filename(report["module"])
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return
        if not text:
            path.unlink(missing_ok=True)  # only modules that printed something keep a log
            return
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if not self.streaming or reporter is None:
            return
        reporter.ensure_newline()
        prefix = f"[{report['module']}] "
        for line in text.splitlines():
            reporter.write_line(prefix + line)

    def close(self) -> None:
        """Remove the logs' directory if it was a temporary one (at unconfigure)."""
        if self._temporary and self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)


def register_worker_capture(config: pytest.Config, workerinput: Mapping[str, Any]) -> None:
    """Inside a worker, at configure time: capture module output if the controller asked for it."""
    directory = workerinput.get(OUTPUT_DIR_KEY)
    if not isinstance(directory, str):
        return
    capture = ModuleOutput(
        Path(directory),
        # pytest capturing fds itself swaps them around every test; only without
        # it do fds 1 and 2 carry what the user would see on the terminal.
        redirect_fds=config.getoption("capture") != "fd",
        log_handler=_live_log_handler(config) if live_logging(config) else None,
    )
    config.pluginmanager.register(capture, CAPTURE_PLUGIN_NAME)


def _live_log_handler(config: pytest.Config) -> logging.StreamHandler[TextIO]:
    """A handler with ``log_cli``'s level and format (its stream is set per module)."""
    handler: logging.StreamHandler[TextIO] = logging.StreamHandler()
    handler.setLevel(_log_level(_option_or_ini(config, "log_cli_level", "log_level") or 0))
    handler.setFormatter(
        logging.Formatter(
            _option_or_ini(config, "log_cli_format", "log_format"),
            _option_or_ini(config, "log_cli_date_format", "log_date_format"),
        )
    )
    return handler


@final
class ModuleOutput:
    """Sends fds 1 and 2 (and live logs) to the log of the current module. Runs inside a worker process.

    The current module is the one being collected or whose test is starting;
    output between two modules goes to the earlier one.
    """

    def __init__(
        self,
        directory: Path,
        *,
        redirect_fds: bool,
        log_handler: logging.StreamHandler[TextIO] | None,
    ) -> None:
        self.directory = directory
        self.redirect_fds = redirect_fds
        self.log_handler = log_handler
        self.module: str | None = None
        self._saved_fds: tuple[int, int] | None = None
        self._log_stream: TextIO | None = None

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self) -> None:
        if self.log_handler is not None:
            logging.getLogger().addHandler(self.log_handler)

    def pytest_collectstart(self, collector: pytest.Collector) -> None:
        if isinstance(collector, pytest.File):
            self.switch(module_of(collector.nodeid))

    def pytest_runtest_logstart(self, nodeid: str) -> None:
        self.switch(module_of(nodeid))

    def pytest_runtest_logfinish(self) -> None:
        # The controller reads a module's log when the module finishes.
        _flush_std_streams()

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self) -> None:
        self.close()

    def switch(self, module: str) -> None:
        """Send what follows to ``module``'s log."""
        if module == self.module:
            return
        _flush_std_streams()
        path = self.directory / module_log_filename(module)
        if self.redirect_fds:
            if self._saved_fds is None:
                self._saved_fds = (os.dup(1), os.dup(2))
                _keep_stack_dumps_off_module_logs(self._saved_fds[1])
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                os.dup2(fd, 1)
                os.dup2(fd, 2)
            finally:
                os.close(fd)
        if self.log_handler is not None:
            stream = open(path, "a", encoding="utf-8", buffering=1)  # closed at the next switch
            old = self.log_handler.setStream(stream)
            if old is not None and old is self._log_stream:
                old.close()
            self._log_stream = stream
        self.module = module

    def close(self) -> None:
        """Give fds 1 and 2 back and stop writing logs (at the end of the session)."""
        _flush_std_streams()
        if self._saved_fds is not None:
            stdout, stderr = self._saved_fds
            os.dup2(stdout, 1)
            os.dup2(stderr, 2)
            os.close(stdout)
            os.close(stderr)
            self._saved_fds = None
        if self.log_handler is not None:
            logging.getLogger().removeHandler(self.log_handler)
            self.log_handler.setStream(sys.stderr)
        if self._log_stream is not None:
            self._log_stream.close()
            self._log_stream = None
        self.module = None


def _flush_std_streams() -> None:
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # closed or broken by a test
            pass


def _keep_stack_dumps_off_module_logs(stderr_copy: int) -> None:
    """Keep the worker's on-demand stack dump going where it went before fd 2 moved.

    The worker registers faulthandler on fd 2 for the controller's timeout
    handling, which reads the worker's own stderr file afterwards. pytest's
    faulthandler (fatal errors) already writes to a copy of fd 2 of its own.
    """
    import faulthandler

    from pytest_parallel_modules.worker import DUMP_STACKS_SIGNAL

    # It returns whether the signal was registered (typeshed says None).
    registered: bool = faulthandler.unregister(DUMP_STACKS_SIGNAL)  # type: ignore[func-returns-value, assignment]
    if registered:
        # Never closed: faulthandler writes to this fd whenever the signal comes.
        faulthandler.register(DUMP_STACKS_SIGNAL, file=os.dup(stderr_copy), all_threads=True)
