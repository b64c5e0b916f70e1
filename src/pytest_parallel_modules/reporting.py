"""Writes the run's reports and prints its summary. Runs in the controller.

A plugin of its own (registered as ``pytest_parallel_modules-reporting``) that
listens to the controller's hooks: each finished module is written to
``<report dir>/modules/<module>.json`` and, when no live display runs, announced
in one line; at the end the merged report is written to ``report.json`` (and as
Markdown where asked), drawn as ``report.html`` (and as a Chrome trace where
asked), and summarised after pytest's own failures section.

What it prints follows pytest's verbosity, so a parallel run is as quiet or as
verbose as a plain one:

- ``-q``: no line per module; progress letters as pytest prints them.
- default: one line per module, ``[3/7] PASSED tests/test_x.py ..s  ...``. Modules
  run side by side, so a progress letter printed as its report arrives would stand
  before another module's line; the letters are held back instead (a
  ``pytest_report_teststatus`` wrapper keeps pytest's category and word and drops
  the letter) and printed in their own module's line.
- ``-v``: pytest's own line per test (``[w1] [ 14%] PASSED tests/test_x.py::test_a``);
  the controller replays ``pytest_runtest_logstart`` to every plugin but the
  terminal reporter (:func:`pytest_parallel_modules.replay.logstart_hook_for_replay`),
  which would otherwise print each test's location a second time, on a line of its own.
"""

from __future__ import annotations

from functools import partial
import io
import json
import os
from pathlib import Path
from typing import Final
from typing import final
from typing import TYPE_CHECKING

import pytest

from pytest_parallel_modules.atomic_files import write_atomic
from pytest_parallel_modules.grouping import module_of
from pytest_parallel_modules.html_report import render_html
from pytest_parallel_modules.junit_retries import rewrite_junit_xml
from pytest_parallel_modules.options import HTML_REPORT_FILE_NAME
from pytest_parallel_modules.reports import MergedReport
from pytest_parallel_modules.reports import module_report_filename
from pytest_parallel_modules.reports import modules_that_failed
from pytest_parallel_modules.reports import write_json_atomic
from pytest_parallel_modules.summary import format_module_line
from pytest_parallel_modules.summary import print_summary
from pytest_parallel_modules.summary import render_markdown
from pytest_parallel_modules.summary import rerun_command
from pytest_parallel_modules.trace import render_trace


if TYPE_CHECKING:
    from collections.abc import Callable
    from collections.abc import Generator

    from pytest_parallel_modules.controller import RunView
    from pytest_parallel_modules.options import Options
    from pytest_parallel_modules.report_directory import ReportDirectory
    from pytest_parallel_modules.reports import ModuleReport


#: GitHub Actions sets this to a file whose Markdown is shown on the run's page.
GITHUB_STEP_SUMMARY_ENV = "GITHUB_STEP_SUMMARY"
#: What the summary offers when naming every failed module would make too long a line.
SHORT_RERUN_COMMAND: Final = "pytest --rerun-failed-modules"
#: A piped summary (a CI log) is this wide at least: such logs do not wrap.
PIPED_WIDTH: Final = 120


@final
class RunReporter:
    """Writes per-module and merged reports; prints module lines and the summary."""

    def __init__(
        self,
        config: pytest.Config,
        options: Options,
        view: RunView,
        report_directory: ReportDirectory | None = None,
    ) -> None:
        self.config = config
        self.options = options
        #: What the controller publishes of the run.
        self.view = view
        #: Where this run's reports go (``None``: nowhere, pytest's cache is off).
        self.report_directory = report_directory
        self.finished_count = 0
        #: False while a live display shows progress; module lines are printed otherwise.
        self.print_module_lines = True
        self.written: list[str] = []
        #: Module reports are no longer written after the first write failed (one warning).
        self._module_writes_failed = False
        #: Module -> its progress letters held back until its line (default verbosity).
        self.letters: dict[str, list[str]] = {}
        #: Set while this plugin asks pytest_report_teststatus for a letter itself.
        self._asking_for_letter = False

    @property
    def holds_letters(self) -> bool:
        """Whether progress letters wait for their module's line (see the module docstring)."""
        return (
            self.print_module_lines
            and self.config.get_verbosity() == 0
            and self.config.get_verbosity(pytest.Config.VERBOSITY_TEST_CASES) == 0
        )

    @pytest.hookimpl(wrapper=True)
    def pytest_report_teststatus(
        self, report: pytest.TestReport | pytest.CollectReport
    ) -> Generator[None, object, object]:
        result = yield
        if self._asking_for_letter or not self.holds_letters:
            return result
        if not isinstance(result, tuple) or len(result) != 3:
            return result
        # Keep the category (stats, the final line) and the word (-r lines).
        category, _letter, word = result
        return pytest.TestShortLogReport(category, "", word)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if not self.holds_letters:
            return
        self._asking_for_letter = True
        try:
            status = self.config.hook.pytest_report_teststatus(report=report, config=self.config)
        finally:
            self._asking_for_letter = False
        letter = status[1] if isinstance(status, tuple) and len(status) == 3 else ""
        if isinstance(letter, str) and letter:
            self.letters.setdefault(module_of(report.nodeid), []).append(letter)

    @property
    def report_dir(self) -> Path | None:
        """The directory this run writes to, once the session started (see ReportDirectory)."""
        return None if self.report_directory is None else self.report_directory.path

    @property
    def modules_dir(self) -> Path | None:
        return None if self.report_dir is None else self.report_dir / "modules"

    def pytest_sessionstart(self) -> None:
        # The report directory always holds the last run only.
        directory = self.modules_dir
        if directory is None:
            return
        if directory.is_dir():
            for stale in directory.glob("*.json"):
                stale.unlink(missing_ok=True)
        directory.mkdir(parents=True, exist_ok=True)

    def pytest_parallel_modules_module_finished(self, report: ModuleReport) -> None:
        self.finished_count += 1
        directory = self.modules_dir
        if directory is not None and not self._module_writes_failed:
            path = directory / module_report_filename(report["module"])
            if not self._write(path, lambda: write_json_atomic(path, report)):
                self._module_writes_failed = True
        letters = "".join(self.letters.pop(report["module"], []))
        if self.print_module_lines and self.config.get_verbosity() >= 0:
            reporter = self.config.pluginmanager.get_plugin("terminalreporter")
            if reporter is not None:
                modules = len({unit.module for unit in self.view.units})
                total = max(modules, self.finished_count)
                self._close_open_line(reporter)
                line = format_module_line(self.finished_count, total, report, letters)
                if self.finished_count < total or not self.holds_letters:
                    reporter.write_line(line)
                else:
                    # The last module's line stays open for pytest's final "[100%]",
                    # which a plain run writes at the end of its last line too; a line
                    # anyone writes before it (the module's output under -s) starts anew.
                    reporter.write(line)
                    reporter.currentfspath = -2

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self) -> Generator[None, object, object]:
        try:
            return (yield)
        finally:
            self._flush_letters()

    def _flush_letters(self) -> None:
        """Print the letters of modules that never reported finished (an interrupted run)."""
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        held, self.letters = self.letters, {}
        if reporter is None:
            return
        for module, letters in held.items():
            self._close_open_line(reporter)
            reporter.write_line(f"{module} {''.join(letters)}")

    def _close_open_line(self, reporter: pytest.TerminalReporter) -> None:
        """End a line pytest left open (letters, a "[100%]"), and only such a line.

        The reporter's own ``ensure_newline`` goes by ``currentfspath``, which a run
        of letters without a file name (fspath hidden) does not set; the terminal
        writer knows whether anything stands on the current line.
        """
        if self.config.get_terminal_writer().width_of_current_line:
            reporter.write("\n")
        reporter.currentfspath = None

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        merged = self.view.merged
        if merged is None:
            return
        verbosity = self.config.get_verbosity()
        if verbosity < 0 and not modules_that_failed(merged) and not _unfinished_tests(merged):
            # -q: a green run's summary would only repeat pytest's own last line.
            return
        writer = self.config.get_terminal_writer()
        if self.view.elapsed is not None:
            # The wall as of now, the last moment before pytest's own line reads its clock
            # (#16): files written since the report (JSON, HTML, history) and the summaries
            # of plugins that printed before this one (trylast) are in its tail.
            merged = MergedReport(**merged)
            merged["wall_s"] = round(max(merged["wall_s"], self.view.elapsed()), 6)
        # Rendered into a string and written through the reporter, so the
        # summary goes wherever pytest's output goes (a file, a pipe, capture).
        buffer = io.StringIO()
        print_summary(
            merged,
            write_sep=terminalreporter.write_sep,
            file=buffer,
            # A log file or pipe does not wrap: give the table room rather than
            # shortening module paths to fit pytest's default 80 columns.
            width=self._width(terminalreporter),
            verbosity=verbosity,
            rerun_command=self.rerun_command(merged, max_length=self._width(terminalreporter)),
            color=writer.hasmarkup,
        )
        terminalreporter.write(buffer.getvalue())
        if verbosity < 0:
            return  # as pytest's junitxml says where its file went only at verbosity >= 0
        for path in self.written:
            terminalreporter.write_line(f"parallel-modules: report written to {path}")

    def _width(self, terminalreporter: pytest.TerminalReporter) -> int:
        fullwidth: int = self.config.get_terminal_writer().fullwidth
        return fullwidth if terminalreporter.isatty else max(fullwidth, PIPED_WIDTH)

    def pytest_sessionfinish(self) -> None:
        # After the controller's (tryfirst) sessionfinish built the merged report; also
        # under -p no:terminal, and after an interruption.
        merged = self.view.merged
        if merged is None:
            return
        if self.report_dir is not None:
            path = self.report_dir / "report.json"
            if self._write(path, lambda: write_json_atomic(path, merged)):
                self.written.append(self._shown(path))
        markdown = render_markdown(merged, rerun_command=self.rerun_command(merged))
        report_md = self.options.report_md
        if report_md is not None and self._write(
            report_md, lambda: write_atomic(report_md, markdown)
        ):
            self.written.append(self._shown(report_md))
        step_summary = os.environ.get(GITHUB_STEP_SUMMARY_ENV)
        if step_summary:
            self._write(Path(step_summary), lambda: _append(Path(step_summary), markdown))
        self._draw(merged)

    def _draw(self, merged: MergedReport) -> None:
        """Write ``report.html`` (and ``--module-report-html``) and the ``--module-trace``.

        After the controller saved the history (its sessionfinish joins the thread that
        saves it), so the page's trends include this run. Drawing the run must never
        fail it: a bug here costs the picture, in one warning line, not the result.
        """
        html_paths = [] if self.report_dir is None else [self.report_dir / HTML_REPORT_FILE_NAME]
        if self.options.report_html is not None:
            html_paths.append(self.options.report_html)
        trace_path = self.options.trace
        try:
            page = (
                render_html(
                    merged,
                    history=self.view.saved_history,
                    rerun_command=self.rerun_command(merged),
                )
                if html_paths
                else ""
            )
            trace = (
                ""
                if trace_path is None
                else json.dumps(render_trace(merged), separators=(",", ":"), allow_nan=False)
            )
        except Exception as error:  # a broken picture must not turn the run into an error
            self._warn(
                f"parallel-modules: WARNING: could not draw the run: {type(error).__name__}: {error}"
            )
            return
        for path in html_paths:
            if self._write(path, partial(write_atomic, path, page)):
                self.written.append(self._shown(path))
        if trace_path is not None and self._write(
            trace_path, lambda: write_atomic(trace_path, trace + "\n")
        ):
            self.written.append(self._shown(trace_path))

    def _write(self, path: Path, write: Callable[[], None]) -> bool:
        """Run ``write``; a failure is one warning line naming the path, never a lost run."""
        try:
            write()
        except (OSError, ValueError) as error:
            reason = error.strerror if isinstance(error, OSError) and error.strerror else error
            self._warn(f"parallel-modules: WARNING: could not write {path}: {reason}")
            return False
        return True

    def _warn(self, line: str) -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_line(line, yellow=True)

    # trylast: after pytest's junitxml plugin has written the file.
    @pytest.hookimpl(trylast=True)
    def pytest_unconfigure(self) -> None:
        merged = self.view.merged
        junit_xml = self.options.junit_xml
        if junit_xml is None or merged is None or not junit_xml.exists():
            return
        retried = [module for module in merged["modules"] if module.get("attempts")]
        if retried:
            self._write(
                junit_xml, lambda: rewrite_junit_xml(junit_xml, retried, self.options.junit_prefix)
            )

    def rerun_command(self, merged: MergedReport, max_length: int | None = None) -> str | None:
        """The command that runs the failed modules again, from where pytest was run.

        Module paths are relative to the rootdir; the command names them relative to
        the invocation directory, so it works pasted where the run was started. Past
        ``max_length`` it is ``pytest --rerun-failed-modules``, which reads the same
        modules from the state this run saved (when pytest's cache keeps one).
        """
        rootdir = self.config.rootpath
        invocation_dir = self.config.invocation_params.dir
        modules = [
            os.path.relpath(rootdir / module, invocation_dir)
            for module in modules_that_failed(merged)
        ]
        short = SHORT_RERUN_COMMAND if self.options.failed_modules_path is not None else None
        return rerun_command(modules, short=short, max_length=max_length)

    def _shown(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.config.invocation_params.dir))
        except ValueError:
            return str(path)


def _unfinished_tests(merged: MergedReport) -> int:
    """How many selected tests have no result: never started, or cut short by an interruption."""
    return merged["totals"]["not_run"] + merged["totals"]["interrupted"]


def _append(path: Path, text: str) -> None:
    with open(path, "a", encoding="utf-8") as file:
        file.write(text)
