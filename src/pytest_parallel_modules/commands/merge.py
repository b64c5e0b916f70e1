"""``python -m pytest_parallel_modules merge``: join merged reports. Runs in a plain Python process.

CI runs the shards of a suite (``--shard``) or reruns its failed modules on
separate machines; each leaves a merged JSON report. This command joins them
into one report (see :func:`pytest_parallel_modules.reports.merge_reports`),
writes it, prints the same summary pytest would, and exits like pytest:

- 0 when every test passed,
- 1 when a test failed or errored, a module crashed, timed out or was cut short,
  or a test never ran (a module never started, a worker collected none of its
  tests): such a report is not green,
- 2 when a report cannot be read or an output cannot be written,
- 3 when the shards' reports do not add up to one run
  (:func:`pytest_parallel_modules.reports.shard_problems`: a shard missing or given
  twice, modules in no report or in two, shards split from different selections
  or histories), whatever the tests did: the report cannot be trusted.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import sys
from typing import Final

import filelock
from rich.console import Console

from pytest_parallel_modules import summary
from pytest_parallel_modules import timing
from pytest_parallel_modules.atomic_files import write_atomic as write_text_atomic
from pytest_parallel_modules.history import History
from pytest_parallel_modules.history import measured_outcome
from pytest_parallel_modules.history import MeasuredModule
from pytest_parallel_modules.history import MeasuredRun
from pytest_parallel_modules.history import MeasuredTest
from pytest_parallel_modules.history import save_history
from pytest_parallel_modules.html_report import render_html
from pytest_parallel_modules.reports import has_failures
from pytest_parallel_modules.reports import load_report
from pytest_parallel_modules.reports import merge_reports
from pytest_parallel_modules.reports import MergedReport
from pytest_parallel_modules.reports import module_results
from pytest_parallel_modules.reports import modules_that_failed
from pytest_parallel_modules.reports import ReportError
from pytest_parallel_modules.reports import shard_problems
from pytest_parallel_modules.reports import write_json_atomic
from pytest_parallel_modules.summary import render_markdown
from pytest_parallel_modules.summary import render_summary
from pytest_parallel_modules.timeline_data import merge_timelines
from pytest_parallel_modules.trace import render_trace


#: Console width when the output is not a terminal: the table takes only what it needs.
UNLIMITED_WIDTH: Final = 10_000

EXIT_OK: Final = 0
EXIT_TESTS_FAILED: Final = 1
EXIT_BAD_INPUT: Final = 2
EXIT_SHARDS_DO_NOT_ADD_UP: Final = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``merge`` sub-command's arguments to ``parser``."""
    parser.description = (
        "Join the merged JSON reports of several shards or runs into one, print its summary "
        "and exit with 1 if a test failed or never ran, 3 if the shards do not add up to one "
        "run (a shard missing, modules run twice or never). A module found in several reports "
        "is taken from the last one, so 'merge run.json rerun.json' shows the rerun's result."
    )
    parser.add_argument(
        "reports", nargs="+", type=Path, metavar="REPORT", help="merged JSON report to join"
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="PATH",
        help="write the joined JSON report to PATH",
    )
    parser.add_argument(
        "--md",
        type=Path,
        metavar="PATH",
        help="write a Markdown summary to PATH (replacing it), e.g. $GITHUB_STEP_SUMMARY",
    )
    parser.add_argument(
        "--html",
        type=Path,
        metavar="PATH",
        help="write the self-contained HTML report of all the reports to PATH, their workers "
        "on one timeline (lanes s1/w1, s2/w1, ...); with --durations, with trends",
    )
    parser.add_argument(
        "--trace",
        type=Path,
        metavar="PATH",
        help="write the timeline of all the reports to PATH in the Chrome trace event format "
        "(one process per shard or report)",
    )
    parser.add_argument(
        "--durations",
        type=Path,
        metavar="PATH",
        help="fold the measured durations into the history file at PATH (as --module-durations "
        "reads it), so the next sharded run is balanced from every machine's data",
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="list every module in the summary"
    )
    parser.add_argument(
        "-q", "--quiet", action="count", default=0, help="show only failing modules and totals"
    )


def measurements_from_report(report: MergedReport) -> MeasuredRun:
    """PURE: what a (merged) report measured, as the history takes it.

    Only complete data counts: a module that crashed, timed out, was
    interrupted or never ran does not update durations (its tests' outcomes are
    still recorded as incomplete measurements).
    """
    tests: dict[str, MeasuredTest] = {}
    modules: dict[str, MeasuredModule] = {}
    timeline = report.get("timeline")
    contents = {
        unit["module"]: unit["content"]
        for unit in (timeline["units"] if timeline is not None else [])
        if "content" in unit
    }
    for module in report["modules"]:
        complete = module["outcome"] in ("passed", "failed", "error")
        for result in module_results(module):
            outcome = measured_outcome(result["outcome"])
            if result["subtest"] is not None or outcome is None:
                continue
            tests[result["nodeid"]] = MeasuredTest(
                duration_s=result["duration_s"], outcome=outcome, complete=complete
            )
        if module["outcome"] != "not_run":
            modules[module["module"]] = MeasuredModule(
                total_s=module["duration_s"],
                collect_s=0.0,
                complete=complete,
                content_hash=contents.get(module["module"]),
            )
    return MeasuredRun(tests=tests, modules=modules)


def _unique(paths: list[Path]) -> list[Path]:
    """Drop repeated paths: the same shard twice would count its workers twice."""
    seen: set[Path] = set()
    unique = []
    for path in paths:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(path)
    return unique


def run(args: argparse.Namespace) -> int:
    """Run ``merge`` with the parsed ``args``; return the exit code."""
    try:
        reports = [load_report(path) for path in _unique(args.reports)]
    except ReportError as error:
        return _fail(str(error))
    merged = merge_reports(reports)
    problems = shard_problems(reports)
    # One clock for every report's workers (#17); kept in the joined JSON too.
    timeline = merge_timelines(reports)
    if timeline is not None:
        merged["timeline"] = timeline
    # The shards ran elsewhere, so --rerun-failed-modules has no local state to go by:
    # name the modules instead (paths are relative to the rootdir).
    rerun_command = summary.rerun_command(modules_that_failed(merged))
    if args.output is not None:
        try:
            # Often the last step of a CI job: make the file survive the machine going away.
            write_json_atomic(args.output, merged, durable=True)
        except OSError as error:
            return _fail(f"cannot write {args.output}: {error.strerror or error}")
    history: History | None = None
    if args.durations is not None:
        try:
            history = save_history(
                args.durations,
                measurements_from_report(merged),
                now=timing.now(),
                create_parents=True,
            ).history
        except (OSError, filelock.Timeout) as error:
            return _fail(f"cannot update the history {args.durations}: {error}")
    if args.html is not None:
        try:
            text = render_html(merged, history=history, rerun_command=rerun_command)
            write_text_atomic(args.html, text, durable=True)
        except OSError as error:
            return _fail(f"cannot write {args.html}: {error.strerror or error}")
    if args.trace is not None:
        try:
            trace = json.dumps(render_trace(merged), separators=(",", ":"), allow_nan=False)
            write_text_atomic(args.trace, trace + "\n", durable=True)
        except OSError as error:
            return _fail(f"cannot write {args.trace}: {error.strerror or error}")
    if args.md is not None:
        try:
            args.md.write_text(
                render_markdown(merged, rerun_command=rerun_command, problems=problems),
                encoding="utf-8",
            )
        except OSError as error:
            return _fail(f"cannot write {args.md}: {error.strerror or error}")
    # Colour follows rich's own detection (a TTY, NO_COLOR, FORCE_COLOR), as for any CLI.
    # A pipe or a CI log does not wrap, so rich must not either (it would cut module
    # paths in two at 80 columns); COLUMNS, when set, still says how wide to be.
    width = None if sys.stdout.isatty() or "COLUMNS" in os.environ else UNLIMITED_WIDTH
    console = Console(file=sys.stdout, width=width, markup=False, emoji=False, highlight=False)
    console.print(
        render_summary(merged, verbosity=args.verbose - args.quiet, rerun_command=rerun_command)
    )
    # Last, where a CI log is read first; plain print: a wrapped line would split a path.
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        return EXIT_SHARDS_DO_NOT_ADD_UP
    return EXIT_TESTS_FAILED if has_failures(merged) else EXIT_OK


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT
