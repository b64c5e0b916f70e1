"""Writes the run's reports and prints its summary. Runs in the controller.

A plugin of its own (registered as ``pytest_parallel_modules-reporting``) that
listens to the controller's hooks: each finished module is written to
``<report dir>/modules/<module>.json`` and, when no live display runs, announced
in one line; at the end the merged report is written to ``report.json`` (and as
Markdown where asked) and summarised after pytest's own failures section.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
import shlex
from typing import final
from typing import TYPE_CHECKING

import pytest

from pytest_parallel_modules.atomic_files import write_atomic
from pytest_parallel_modules.junit_retries import rewrite_junit_xml
from pytest_parallel_modules.reports import failed_modules
from pytest_parallel_modules.reports import module_report_filename
from pytest_parallel_modules.reports import write_json_atomic
from pytest_parallel_modules.summary import format_module_line
from pytest_parallel_modules.summary import print_summary
from pytest_parallel_modules.summary import render_markdown


if TYPE_CHECKING:
    from collections.abc import Callable

    from pytest_parallel_modules.controller import RunView
    from pytest_parallel_modules.options import Options
    from pytest_parallel_modules.report_directory import ReportDirectory
    from pytest_parallel_modules.reports import MergedReport
    from pytest_parallel_modules.reports import ModuleReport


#: GitHub Actions sets this to a file whose Markdown is shown on the run's page.
GITHUB_STEP_SUMMARY_ENV = "GITHUB_STEP_SUMMARY"


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
        if self.print_module_lines:
            reporter = self.config.pluginmanager.get_plugin("terminalreporter")
            if reporter is not None:
                modules = len({unit.module for unit in self.view.units})
                total = max(modules, self.finished_count)
                # The reporter breaks a line only when it knows one is open; a run
                # of dots (fspath hidden) is not, so say it is (as pytest-xdist does).
                reporter.currentfspath = -2
                reporter.write_line(format_module_line(self.finished_count, total, report))

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        merged = self.view.merged
        if merged is None:
            return
        writer = self.config.get_terminal_writer()
        # Rendered into a string and written through the reporter, so the
        # summary goes wherever pytest's output goes (a file, a pipe, capture).
        buffer = io.StringIO()
        print_summary(
            merged,
            write_sep=terminalreporter.write_sep,
            file=buffer,
            # A log file or pipe does not wrap: give the table room rather than
            # folding module paths at pytest's default 80 columns.
            width=writer.fullwidth if terminalreporter.isatty else max(writer.fullwidth, 120),
            verbosity=self.config.get_verbosity(),
            rerun_command=self.rerun_command(merged),
            color=writer.hasmarkup,
        )
        terminalreporter.write(buffer.getvalue())
        for path in self.written:
            terminalreporter.write_line(f"parallel-modules: report written to {path}")

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

    def rerun_command(self, merged: MergedReport) -> str | None:
        failed = failed_modules(merged)
        if not failed:
            return None
        return "pytest " + " ".join(shlex.quote(module) for module in failed)

    def _shown(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.config.invocation_params.dir))
        except ValueError:
            return str(path)


def _append(path: Path, text: str) -> None:
    with open(path, "a", encoding="utf-8") as file:
        file.write(text)
