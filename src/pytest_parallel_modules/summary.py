"""PURE rendering of a merged report: terminal, Markdown, line per module. Runs in the controller.

:func:`render_summary` turns a :class:`~pytest_parallel_modules.reports.MergedReport`
into a rich renderable and :func:`print_summary` prints it once, after a
``write_sep`` of pytest's terminal reporter, on the file the reporter writes to.
:func:`render_markdown` gives the same information for ``--module-report-md`` and
``$GITHUB_STEP_SUMMARY``; :func:`format_module_line` is the line printed when a
module finishes on a terminal without live progress (CI logs).

Every string from a report goes through :class:`rich.text.Text`, never through
rich's markup parser: node ids such as ``test_x[a]`` and subtest descriptions
such as ``[loop]`` would otherwise be eaten as markup tags.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
import html
import math
import re
import shlex
from typing import Final
from typing import final
from typing import TextIO
from typing import TYPE_CHECKING

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.console import Group
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from pytest_parallel_modules.outcomes import CountKey
from pytest_parallel_modules.outcomes import is_problem
from pytest_parallel_modules.outcomes import ModuleOutcome
from pytest_parallel_modules.reports import Counts
from pytest_parallel_modules.reports import failed_modules
from pytest_parallel_modules.reports import MergedReport
from pytest_parallel_modules.reports import ModuleReport
from pytest_parallel_modules.reports import modules_not_finished
from pytest_parallel_modules.reports import modules_that_failed
from pytest_parallel_modules.reports import ResultRecord
from pytest_parallel_modules.timing_analysis import analyze_timing
from pytest_parallel_modules.timing_analysis import TimingAnalysis


if TYPE_CHECKING:
    from collections.abc import Iterator

    from rich.console import ConsoleOptions
    from rich.console import RenderableType


#: Title of the separator line above the terminal summary and of the Markdown summary.
SUMMARY_TITLE: Final = "parallel-modules summary"
#: At default verbosity, the table lists every failing module and this many others, slowest first.
DEFAULT_MODULE_ROWS: Final = 10
#: A module is the bottleneck when it takes more than this share of the wall time.
BOTTLENECK_SHARE: Final = 0.5
#: The Markdown summary shows at most this many failures, each cut to this many lines.
MARKDOWN_MAX_FAILURES: Final = 50
MARKDOWN_MAX_LINES: Final = 60
#: The line of modules with tests that have no result names at most this many of them.
MAX_UNFINISHED_LISTED: Final = 5
#: A module name is never shortened below this many columns (or its own length).
MIN_NAME_WIDTH: Final = 12
#: Stands for what :func:`shorten_middle` leaves out.
ELLIPSIS: Final = "…"

_LABELS: Final[dict[ModuleOutcome, str]] = {
    "passed": "PASSED",
    "failed": "FAILED",
    "error": "ERROR",
    "crashed": "CRASHED",
    "timeout": "TIMEOUT",
    "interrupted": "INTERRUPTED",
    "not_run": "NOT RUN",
}
_STYLES: Final[dict[ModuleOutcome, str]] = {
    "passed": "green",
    "failed": "bold red",
    "error": "bold red",
    "crashed": "bold red",
    "timeout": "bold red",
    "interrupted": "yellow",
    "not_run": "yellow",
}
_ICONS: Final[dict[ModuleOutcome, str]] = {
    "passed": "✅",
    "failed": "❌",
    "error": "❌",
    "crashed": "💥",
    "timeout": "⏱️",
    "interrupted": "⚠️",
    "not_run": "⚪",
}
#: The module table's count columns, in the order of pytest's summary words: (key, header).
#: Passed and failed are always shown; the others only when a shown row has one.
#: Headers are short so that module names keep most of an 80-column terminal.
_COUNT_COLUMNS: Final[tuple[tuple[CountKey, str], ...]] = (
    ("passed", "Pass"),
    ("failed", "Fail"),
    ("errors", "Error"),
    ("skipped", "Skip"),
    ("xfailed", "XFail"),
    ("xpassed", "XPass"),
    ("interrupted", "Interrupted"),
    ("not_run", "Not run"),
)
_ALWAYS_SHOWN: Final[frozenset[CountKey]] = frozenset({"passed", "failed"})
#: Counts in the order and colours pytest's final line uses; (key, singular, plural, style).
_COUNT_WORDS: Final[tuple[tuple[CountKey, str, str, str], ...]] = (
    ("failed", "failed", "failed", "red"),
    ("passed", "passed", "passed", "green"),
    ("skipped", "skipped", "skipped", "yellow"),
    ("xfailed", "xfailed", "xfailed", "yellow"),
    ("xpassed", "xpassed", "xpassed", "yellow"),
    ("errors", "error", "errors", "red"),
    ("interrupted", "interrupted", "interrupted", "yellow"),
    ("not_run", "not run", "not run", "yellow"),
)


# --------------------------------------------------------------------------- shared pieces


def format_duration(seconds: float) -> str:
    """Return ``seconds`` as ``0.42s``, ``1m 05s`` or ``1h 02m``. PURE."""
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def _count_parts(counts: Counts) -> list[tuple[str, str]]:
    """Return ``[("2 failed", "red"), ("25 passed", "green"), ...]`` for the non-zero counts."""
    parts = []
    for key, singular, plural, style in _COUNT_WORDS:
        number = counts[key]
        if number:
            parts.append((f"{number} {singular if number == 1 else plural}", style))
    return parts


def format_counts(counts: Counts) -> str:
    """Return counts the way pytest's last line does: ``2 failed, 25 passed, 1 error``. PURE."""
    return ", ".join(text for text, _ in _count_parts(counts)) or "no tests"


def pass_rate_parts(counts: Counts) -> tuple[int, int]:
    """Return ``(passing, selected)``: the two numbers of :func:`pass_rate`. PURE.

    ``selected`` is every selected test but the skipped ones (a skip is a decision,
    not an outcome), tests that never ran included: a run stopped after 1 of 1,000
    tests passed 0.1% of them, not 100%. ``passing`` counts passed, xfailed and
    xpassed tests, which do not fail a run either.
    """
    passing = counts["passed"] + counts["xfailed"] + counts["xpassed"]
    return passing, counts["tests"] - counts["skipped"]


def pass_rate(counts: Counts) -> float | None:
    """Return the share of the selected tests that passed; ``None`` when none was to run. PURE.

    See :func:`pass_rate_parts`: tests that never ran (a stopped or crashed run)
    count as not passed, skipped tests do not count.
    """
    passing, selected = pass_rate_parts(counts)
    if selected <= 0:
        return None
    return passing / selected


def format_pass_rate(counts: Counts) -> str | None:
    """Return ``pass rate 96.6% (29 of 30)``; ``None`` when no test was to run. PURE."""
    rate = pass_rate(counts)
    if rate is None:
        return None
    passing, selected = pass_rate_parts(counts)
    return f"pass rate {_percent(rate)} ({passing} of {selected})"


def _finished(module: ModuleReport) -> bool:
    """Whether ``module`` ran to its end (whatever its tests' outcomes)."""
    counts = module["counts"]
    return (
        module["outcome"] in ("passed", "failed", "error")
        and not counts["not_run"]
        and not counts["interrupted"]
    )


def was_stopped(merged: MergedReport) -> bool:
    """Whether the run ended before every selected test ran (fail-fast, Ctrl-C, no worker). PURE."""
    return bool(modules_not_finished(merged))


def _is_problem(module: ModuleReport) -> bool:
    counts = module["counts"]
    return is_problem(module["outcome"], counts["failed"], counts["errors"])


def order_modules(modules: Sequence[ModuleReport]) -> list[ModuleReport]:
    """Return ``modules`` with failing ones first, then slowest first, then by path. PURE."""
    return sorted(
        modules,
        key=lambda module: (not _is_problem(module), -module["duration_s"], module["module"]),
    )


def bottleneck(merged: MergedReport) -> ModuleReport | None:
    """Return the module that alone decides the wall time, if one does. PURE.

    That is the longest module when it takes more than half the wall time and no
    less than ``sum / N`` (so it *is* the lower bound): with more than one worker,
    adding workers cannot help, splitting that module can.
    """
    # Only modules that ran to their end: one cut short says nothing of its length.
    modules = [module for module in merged["modules"] if _finished(module)]
    wall = merged["wall_s"]
    if merged["workers"] < 2 or not modules or wall <= 0:
        return None
    longest = max(modules, key=lambda module: (_longest_piece_s(module), module["module"]))
    duration = _longest_piece_s(longest)
    fair_share = merged["timing"]["sum_module_s"] / merged["workers"]
    if duration > BOTTLENECK_SHARE * wall and duration >= fair_share:
        return longest
    return None


def _longest_piece_s(module: ModuleReport) -> float:
    """A module's duration, or its longest part's when it ran as parts side by side."""
    units = module.get("units")
    return max(unit["duration_s"] for unit in units) if units else module["duration_s"]


def _only_test(module: ModuleReport) -> str | None:
    """The node id of the module's one test (subtests aside), if it has exactly one."""
    if module["counts"]["tests"] != 1:
        return None
    passed = module.get("passed") or {}
    if len(passed) == 1:
        return f"{module['module']}::{next(iter(passed))}"
    nodeids = {result["nodeid"] for result in module["tests"]}
    return nodeids.pop() if len(nodeids) == 1 else None


def split_notes(merged: MergedReport) -> list[str]:
    """PURE: one line per module above the run's fair share: how it was split, or why not.

    ``tests/test_x.py ran as 3 parts on w1, w2, w3`` or ``tests/test_x.py holds
    80% of the work; not split: module-scoped fixture `db` in tests/test_x.py:12``
    (``--split-modules``; from the merged report's ``splits``).
    """
    reports = {module["module"]: module for module in merged["modules"]}
    notes = []
    for split in merged.get("splits", []):
        module = split["module"]
        if split["parts"] > 1:
            report = reports.get(module)
            units = report.get("units", []) if report is not None else []
            workers = list(dict.fromkeys(unit["worker"] for unit in units if unit["worker"]))
            note = f"{module} ran as {split['parts']} parts"
            if workers:
                note += f" on {', '.join(workers)}"
            if split["reason"]:
                note += f" (--split-modules=always, although: {split['reason']})"
        else:
            note = f"{module} holds {split['share']:.0%} of the work; not split: {split['reason']}"
        notes.append(note)
    return notes


def advice(merged: MergedReport) -> list[str]:
    """Return recommendations on how to make the run faster, most useful first. PURE.

    None for a run that was stopped (``--fail-fast-modules``, Ctrl-C, no worker
    left): its wall time and module durations say nothing about how fast the
    whole suite could run.
    """
    if was_stopped(merged):
        return []
    tips = []
    slow = bottleneck(merged)
    if slow is not None:
        # A module split into parts is a bottleneck by its longest part, not their sum.
        took = _longest_piece_s(slow)
        share = took / merged["wall_s"]
        only_test = _only_test(slow)
        if only_test is not None:
            # Splitting a module of one test helps nothing: the test itself is the bound.
            tips.append(
                f"Bottleneck: {only_test} took {format_duration(took)}, {share:.0%} of the "
                "wall time, and no number of workers can finish sooner: it is its module's "
                "only test, so only a faster test ends the run sooner."
            )
        else:
            tips.append(
                f"Bottleneck: {slow['module']} took {format_duration(took)}, "
                f"{share:.0%} of the wall time, and no number of workers can finish sooner. "
                "Split it into smaller modules so that several workers can share its tests."
            )
    # Where the rest of the wall went is said by the timing lines (timing_lines).
    return tips


def timing_lines(analysis: TimingAnalysis, *, stopped: bool = False) -> list[str]:
    """PURE: the summary's lines about time, from :func:`~pytest_parallel_modules.timing_analysis.analyze_timing`.

    ``Wall 6.84s: collection 0.06s, start-up 1.60s, schedule 4.99s, tail 0.19s``, the
    tests' own time against it (never called a sequential run's), the lower bound and
    ``wall / LB`` (never below 1.00), and what took most of the wall. The warning
    about more workers than CPUs is :func:`oversubscription_warning`.

    :param stopped: the run ended before every test ran: what took most of its wall
        says nothing about the suite, and is left out.
    """
    workers = analysis.workers
    wall = format_duration(analysis.wall_s)
    split = analysis.split
    if split is not None:
        lines = [
            f"Wall {wall}: collection {format_duration(split.collection_s)}, "
            f"start-up {format_duration(split.startup_s)}, "
            f"schedule {format_duration(split.schedule_s)}, tail {format_duration(split.tail_s)}"
        ]
    else:
        lines = [f"Wall {wall} with {_plural(workers, 'worker')}"]
    label = " (measured under contention)" if analysis.contended else ""
    lines.append(
        f"Tests' own time {format_duration(analysis.tests_s)}{label} in {wall} wall, "
        f"{_plural(workers, 'worker')}"
    )
    ratio = analysis.shown_wall_over_lower
    if ratio is not None:
        unit = "unit" if analysis.measured else "module"
        line = (
            f"Lower bound LB({workers}) = {format_duration(analysis.lower_bound_s)} = "
            f"max(longest {unit}, sum / {workers}); wall / LB = {ratio:.2f}"
        )
        if analysis.clamped:
            line += (
                " (clamped: the module durations, measured while they ran side by side, "
                "add up to more than the wall)"
            )
        lines.append(line)
    dominant = None if stopped else _dominant_line(analysis)
    if dominant is not None:
        lines.append(dominant)
    return lines


def _dominant_line(analysis: TimingAnalysis) -> str | None:
    """``Most of the wall: worker start-up, 1.60s (23%)``."""
    if analysis.dominant is None or analysis.wall_s <= 0:
        return None
    what = {
        "collection": "collection and planning",
        "start-up": "worker start-up, until the first test ran",
        "tail": "the tail, from the last module's end to the summary",
        "uneven scheduling": "uneven scheduling (workers idle while others ran)",
        "longest unit": f"the longest module, {analysis.longest_module}",
        "tests": f"the tests themselves (their sum / {analysis.workers})",
    }[analysis.dominant]
    share = min(1.0, analysis.dominant_s / analysis.wall_s)
    return f"Most of the wall: {what}, {format_duration(analysis.dominant_s)} ({share:.0%})"


def oversubscription_warning(analysis: TimingAnalysis) -> str | None:
    """PURE: ``4 workers on 2 CPUs: CPU-bound modules contended; try --parallel-modules=2``.

    Only when workers outnumber CPUs and the modules kept the CPUs they got busy
    (:attr:`~pytest_parallel_modules.timing_analysis.TimingAnalysis.oversubscribed`).
    """
    if not analysis.oversubscribed or analysis.cpus is None:
        return None
    return (
        f"{_plural(analysis.workers, 'worker')} on {_plural(analysis.cpus, 'CPU')}: "
        f"CPU-bound modules contended; try --parallel-modules={analysis.cpus}"
    )


def _totals_text(merged: MergedReport) -> Text:
    totals = merged["totals"]
    text = Text("Totals: ", style="bold")
    parts = _count_parts(totals)
    if not parts:
        text.append("no tests")
    for index, (part, style) in enumerate(parts):
        if index:
            text.append(", ")
        text.append(part, style=style)
    modules = len(merged["modules"])
    text.append(f" ({_tests_in_modules(totals['tests'], modules)})")
    rate = format_pass_rate(totals)
    if rate is not None:
        text.append(f", {rate}")
    return text


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _tests_in_modules(tests: int, modules: int) -> str:
    return f"{_plural(tests, 'test')} in {_plural(modules, 'module')}"


def _percent(rate: float) -> str:
    # Never round a failing run up to 100.0%.
    shown = math.floor(rate * 1000) / 10
    return f"{shown:.1f}%"


# --------------------------------------------------------------------------- terminal


def shorten_middle(path: str, width: int) -> str:
    """Return ``path`` in at most ``width`` columns, leaving out its middle. PURE.

    Directories go first, from the middle out, so the first directory and the file
    name stay readable (``tests/…/test_converters.py``); a file name too long on its
    own is cut in its middle (``test_conv…ers.py``). Never split over two lines.
    """
    if cell_len(path) <= width:
        return path
    parts = path.split("/")
    name = parts[-1]
    for kept in range(len(parts) - 2, 0, -1):
        candidate = "/".join(parts[:kept]) + f"/{ELLIPSIS}/" + name
        if cell_len(candidate) <= width:
            return candidate
    if len(parts) > 1 and cell_len(f"{ELLIPSIS}/{name}") <= width:
        return f"{ELLIPSIS}/{name}"
    if width <= 1:
        return ELLIPSIS[: max(0, width)]
    head = width // 2
    tail = width - 1 - head
    return name[:head] + ELLIPSIS + (name[len(name) - tail :] if tail else "")


@final
class ModuleName:
    """A module path as a table cell: as wide as it is, else shortened in the middle.

    rich measures it (its minimum lets the table give the name column less than the
    longest name needs) and renders it to the width the table settled on, through
    :func:`shorten_middle`, where a plain cell would be folded or cut at its end.
    """

    def __init__(self, path: str, style: str = "") -> None:
        self.path = path
        self.style = style

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        width = cell_len(self.path)
        return Measurement(min(width, MIN_NAME_WIDTH), width)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[Text]:
        yield Text(
            shorten_middle(self.path, options.max_width),
            style=self.style,
            no_wrap=True,
            overflow="crop",
        )


def count_columns(modules: Sequence[ModuleReport]) -> tuple[tuple[CountKey, str], ...]:
    """The count columns the table shows for ``modules``: those not 0 in every row. PURE.

    A column left out holds only zeros, so every row's counts still add up to its
    ``Tests``: passed + failed + errors + skipped + xfailed + xpassed + not run.
    """
    return tuple(
        (key, header)
        for key, header in _COUNT_COLUMNS
        if key in _ALWAYS_SHOWN or any(module["counts"][key] for module in modules)
    )


def _module_table(modules: Sequence[ModuleReport]) -> Table:
    # collapse_padding: two columns between cells, which leaves the names room at 80.
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    table.add_column("Status", no_wrap=True)
    # Not no_wrap: the name column is the one rich narrows when the table is too wide.
    table.add_column("Module")
    columns = count_columns(modules)
    for header in ("Tests", *(header for _, header in columns), "Time"):
        table.add_column(header, justify="right", no_wrap=True)
    table.add_column("Worker", no_wrap=True)
    for module in modules:
        counts = module["counts"]
        outcome = module["outcome"]
        table.add_row(
            Text(_LABELS[outcome], style=_STYLES[outcome]),
            ModuleName(module["module"]),
            Text(str(counts["tests"])),
            *(Text(str(counts[key])) for key, _ in columns),
            Text(format_duration(module["duration_s"])),
            Text(module["worker"] or "-"),
        )
    return table


def rerun_command(
    modules: Sequence[str], *, short: str | None = None, max_length: int | None = None
) -> str | None:
    """Return the shell command that runs ``modules`` again: ``pytest a.py 'b c.py'``. PURE.

    Each path is quoted for a POSIX shell, so the line pastes as it is. When it would
    be longer than ``max_length`` and a ``short`` command does the same (the
    controller's ``pytest --rerun-failed-modules``), that one is returned instead.
    ``None`` when there is nothing to run again.
    """
    if not modules:
        return None
    command = shlex.join(["pytest", *modules])
    if short is not None and max_length is not None and len(command) > max_length:
        return short
    return command


def _one_line(text: Text) -> Text:
    """Make ``text`` one line, never wrapped or cut: it is meant to be copied or pasted."""
    text.no_wrap = True
    text.overflow = "ignore"
    return text


def _unfinished_line(merged: MergedReport) -> Text | None:
    """``Tests without a result: 12 never ran, 1 interrupted, in 6 modules (a.py, ...)``."""
    unfinished = modules_not_finished(merged)
    totals = merged["totals"]
    numbers = [
        f"{count} {words}"
        for count, words in (
            (totals["not_run"], "never ran"),
            (totals["interrupted"], "interrupted"),
        )
        if count
    ]
    if not unfinished or not numbers:
        return None
    listed = ", ".join(unfinished[:MAX_UNFINISHED_LISTED])
    more = len(unfinished) - MAX_UNFINISHED_LISTED
    if more > 0:
        listed += f" and {more} more (the JSON report lists them)"
    return Text(
        f"Tests without a result: {', '.join(numbers)}, in "
        f"{_plural(len(unfinished), 'module')} ({listed})",
        style="yellow",
    )


def render_summary(
    merged: MergedReport, *, verbosity: int, rerun_command: str | None
) -> RenderableType:
    """Render the end-of-run summary of ``merged``. PURE.

    Called by :func:`print_summary` and the ``merge`` command.

    :param verbosity: pytest's verbosity. Below 0 (``-q``) only the failing modules
        and the totals line; at 0 every failing module plus the
        :data:`DEFAULT_MODULE_ROWS` slowest others, then the timing analysis and
        advice; above 0 every module.
    :param rerun_command: shown after failures as the command that reruns only the
        failed modules (see :func:`rerun_command`), on one line that is never wrapped;
        ``None`` to leave it out. Modules with tests that never ran are named apart.
    """
    ordered = order_modules(merged["modules"])
    problems = [module for module in ordered if _is_problem(module)]
    if verbosity < 0:
        shown = problems
    elif verbosity == 0:
        shown = ordered[: len(problems) + DEFAULT_MODULE_ROWS]
    else:
        shown = ordered
    parts: list[RenderableType] = []
    if shown:
        parts.append(_module_table(shown))
    hidden = len(ordered) - len(shown)
    if hidden and verbosity >= 0:
        parts.append(
            Text(f"... and {hidden} more {'module' if hidden == 1 else 'modules'} (-v lists all)")
        )
    parts.append(_totals_text(merged))
    flaky = flaky_tests(merged)
    if flaky:
        parts.append(
            Text(f"Flaky (failed, then passed on a retry): {', '.join(flaky)}", style="yellow")
        )
    parts.extend(Text(line, style="yellow") for line in ran_before_lines(merged))
    if verbosity >= 0:
        parts.extend(Text(note) for note in split_notes(merged))
        analysis = analyze_timing(merged)
        stopped = was_stopped(merged)
        parts.extend(Text(line) for line in timing_lines(analysis, stopped=stopped))
        warning = None if stopped else oversubscription_warning(analysis)
        if warning is not None:
            parts.append(Text(warning, style="yellow"))
        parts.extend(Text(tip, style="yellow") for tip in advice(merged))
        if rerun_command and modules_that_failed(merged):
            text = Text("Rerun only the failed modules: ")
            text.append(rerun_command, style="bold")
            parts.append(_one_line(text))
        unfinished = _unfinished_line(merged)
        if unfinished is not None:
            parts.append(unfinished)
    return Group(*parts)


def summary_lines(merged: MergedReport, *, rerun_command: str | None) -> list[str]:
    """The summary's lines below its module table, as plain text. PURE.

    The same figures :func:`render_summary` prints at the default verbosity (totals,
    flaky tests, timing, advice, the rerun command), from the same helpers; for the
    HTML report.
    """
    lines = [_totals_text(merged).plain]
    flaky = flaky_tests(merged)
    if flaky:
        lines.append(f"Flaky (failed, then passed on a retry): {', '.join(flaky)}")
    analysis = analyze_timing(merged)
    stopped = was_stopped(merged)
    lines.extend(timing_lines(analysis, stopped=stopped))
    warning = None if stopped else oversubscription_warning(analysis)
    if warning is not None:
        lines.append(warning)
    lines.extend(advice(merged))
    if rerun_command and any(_is_problem(module) for module in merged["modules"]):
        lines.append(f"Rerun only the failed modules: {rerun_command}")
    return lines


def print_summary(
    merged: MergedReport,
    *,
    write_sep: Callable[[str, str], object],
    file: TextIO,
    width: int,
    verbosity: int,
    rerun_command: str | None,
    color: bool,
) -> None:
    """Print the summary once, under a separator line, on pytest's terminal.

    Called by the controller's ``pytest_terminal_summary``. The caller passes what
    it knows about the terminal reporter, so nothing here reaches into its private
    writer: ``write_sep=terminalreporter.write_sep``, the ``file`` it writes to, its
    width, and ``color`` from its markup decision (``--color``, ``NO_COLOR``).
    """
    write_sep("=", SUMMARY_TITLE)
    console = Console(
        file=file,
        width=width,
        force_terminal=color,
        no_color=not color,
        # Report text is data: no [markup], no :emoji: codes, no number highlighting.
        markup=False,
        emoji=False,
        highlight=False,
    )
    # crop=False: the rerun command is one line however wide, so it pastes into a shell.
    console.print(
        render_summary(merged, verbosity=verbosity, rerun_command=rerun_command), crop=False
    )


def format_module_line(
    index: int, total: int, module_report: ModuleReport, letters: str = ""
) -> str:
    """Return the line printed when a module finishes, for runs without live progress. PURE.

    ``[7/20] PASSED tests/test_api.py ..F.s  3 passed, 1 failed, 1 skipped in 3.21s  (worker w2)``

    :param letters: the module's progress letters (``.``, ``F``, ``s`` ...) in the order
        its reports arrived, which the reporting plugin held back until now so that
        they stand next to their own module.
    """
    path = module_report["module"] + (f" {letters}" if letters else "")
    line = (
        f"[{index}/{total}] {_LABELS[module_report['outcome']]} {path}  "
        f"{format_counts(module_report['counts'])} in "
        f"{format_duration(module_report['duration_s'])}"
    )
    if module_report["worker"]:
        line += f"  (worker {module_report['worker']})"
    return line


# --------------------------------------------------------------------------- Markdown


def _code(text: str) -> str:
    """Return ``text`` as a Markdown code span, whatever backticks it holds."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    padding = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    return f"{fence}{padding}{text}{padding}{fence}"


def _cell(text: str) -> str:
    """Make ``text`` safe inside a GitHub table cell (``|`` splits cells even in code spans)."""
    return " ".join(text.split()).replace("|", "\\|")


def _code_block(text: str) -> str:
    longest = max((len(run) for run in re.findall(r"`{3,}", text)), default=0)
    fence = "`" * max(3, longest + 1)
    lines = text.splitlines()
    if len(lines) > MARKDOWN_MAX_LINES:
        cut = len(lines) - MARKDOWN_MAX_LINES
        lines = [f"... ({cut} lines cut)", *lines[-MARKDOWN_MAX_LINES:]]
    return "\n".join([f"{fence}text", *lines, fence])


def _failure_label(result: ResultRecord) -> str:
    label = result["nodeid"] + (f" {result['subtest']}" if result["subtest"] else "")
    return label


def _markdown_failures(ordered: Sequence[ModuleReport]) -> list[str]:
    lines: list[str] = []
    shown = 0
    total = 0
    for module in ordered:
        if not _is_problem(module):
            continue
        failing = [r for r in module["tests"] if r["outcome"] in ("failed", "error")]
        if module["outcome"] in ("crashed", "timeout", "interrupted", "not_run") or not failing:
            worker = f" on worker {module['worker']}" if module["worker"] else ""
            lines.append(
                f"- {_code(module['module'])}: module {_LABELS[module['outcome']].lower()}{worker}"
            )
            lines.append("")
        for result in failing:
            total += 1
            if shown >= MARKDOWN_MAX_FAILURES:
                continue
            shown += 1
            summary = f"<code>{html.escape(_failure_label(result))}</code>"
            summary += f" ({result['outcome']} at {result['when']})" if result["when"] else ""
            if result["message"]:
                summary += f": {html.escape(result['message'])}"
            lines.append(f"<details><summary>{summary}</summary>")
            lines.append("")
            lines.append(_code_block(result["longrepr"] or result["message"] or "(no details)"))
            lines.append("")
            lines.append("</details>")
            lines.append("")
    if total > shown:
        lines.append(f"... and {total - shown} more failures; see the JSON report.")
        lines.append("")
    return lines


def flaky_tests(merged: MergedReport) -> list[str]:
    """PURE: node ids of every flaky test of the run (``--module-retries``), sorted."""
    return sorted(nodeid for module in merged["modules"] for nodeid in module.get("flaky", []))


def render_markdown(
    merged: MergedReport, *, rerun_command: str | None = None, problems: Sequence[str] = ()
) -> str:
    """Render ``merged`` as GitHub-flavoured Markdown. PURE.

    For ``--module-report-md`` and ``$GITHUB_STEP_SUMMARY``: the totals, a table of
    every module (failing first, then slowest first), the failures with their
    messages, the timing analysis and the recommendations.

    :param problems: why the merged shards are not one complete run
        (:func:`~pytest_parallel_modules.reports.shard_problems`), shown first.
    """
    totals = merged["totals"]
    ordered = order_modules(merged["modules"])
    # Not ``problems``: that parameter is about shards (a failing run listed its failed
    # modules under "The shards do not add up to one run").
    failing = failed_modules(merged)
    rate = format_pass_rate(totals)
    modules = len(ordered)
    headline = (
        f"{'❌' if failing else '✅'} **{format_counts(totals)}**: "
        f"{_tests_in_modules(totals['tests'], modules)}"
        + (f", {rate}" if rate is not None else "")
        + f", {format_duration(merged['wall_s'])} wall time with {_plural(merged['workers'], 'worker')}"
    )
    lines = [f"## {SUMMARY_TITLE}", "", headline, ""]
    if problems:
        lines += [
            "### The shards do not add up to one run",
            "",
            *(f"- {_markdown_tip(problem)}" for problem in problems),
            "",
        ]
    if ordered:
        columns = count_columns(ordered)
        headers = ["Status", "Module", "Tests", *(header for _, header in columns)]
        lines += [
            "| " + " | ".join([*headers, "Time", "Worker"]) + " |",
            "| --- | --- | " + "---: | " * (len(headers) - 1) + "--- |",
        ]
        for module in ordered:
            counts = module["counts"]
            outcome = module["outcome"]
            cells = [
                f"{_ICONS[outcome]} {_LABELS[outcome]}",
                _code(module["module"]),
                str(counts["tests"]),
                *(str(counts[key]) for key, _ in columns),
                format_duration(module["duration_s"]),
                module["worker"] or "-",
            ]
            lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
        lines.append("")
    flaky = flaky_tests(merged)
    if flaky:
        lines += [
            "### Flaky",
            "",
            "Failed, then passed on a retry:",
            "",
            *(f"- {_code(nodeid)}" for nodeid in flaky),
            "",
        ]
    notes = split_notes(merged)
    if notes:
        lines += ["### Split modules", "", *(f"- {_markdown_tip(note)}" for note in notes), ""]
    if failing:
        lines += ["### Failures", "", *_markdown_failures(ordered)]
    lines += ["### Timing", "", *_markdown_timing(merged), ""]
    tips = [f"- {_markdown_tip(tip)}" for tip in advice(merged)]
    if modules_that_failed(merged) and rerun_command:
        tips.append(f"- Rerun only the failed modules: {_code(rerun_command)}")
    unfinished = _unfinished_line(merged)
    if unfinished is not None:
        tips.append(f"- {_markdown_tip(unfinished.plain)}")
    if tips:
        lines += ["### Recommendations", "", *tips, ""]
    return "\n".join(lines)


def _markdown_timing(merged: MergedReport) -> list[str]:
    """The Markdown summary's timing table: the figures of :func:`timing_lines`."""
    analysis = analyze_timing(merged)
    workers = analysis.workers
    rows = [("Wall time (pytest's clock, from its start)", format_duration(analysis.wall_s))]
    split = analysis.split
    if split is not None:
        rows += [
            ("Collection and planning", format_duration(split.collection_s)),
            ("Start-up (until the first test ran)", format_duration(split.startup_s)),
            ("Schedule (first test to last module's end)", format_duration(split.schedule_s)),
            ("Tail (to the report)", format_duration(split.tail_s)),
        ]
    rows.append(("Workers", str(workers)))
    label = " (measured under contention)" if analysis.contended else ""
    rows.append((f"Tests' own time{label}", format_duration(analysis.tests_s)))
    ratio = analysis.shown_wall_over_lower
    unit = "unit" if analysis.measured else "module"
    rows += [
        (
            f"Lower bound LB({workers}) = max(longest {unit}, sum / {workers})",
            format_duration(analysis.lower_bound_s),
        ),
        (
            "Wall / LB" + (" (clamped)" if analysis.clamped else ""),
            "-" if ratio is None else f"{ratio:.2f}",
        ),
    ]
    lines = ["| Measure | Value |", "| --- | ---: |"]
    lines += [f"| {_cell(name)} | {_cell(value)} |" for name, value in rows]
    stopped = was_stopped(merged)
    notes = [] if stopped else [line for line in (_dominant_line(analysis),) if line]
    warning = None if stopped else oversubscription_warning(analysis)
    if warning is not None:
        notes.append(warning)
    for note in notes:
        lines += ["", _markdown_tip(note)]
    return lines


def _markdown_tip(tip: str) -> str:
    # Tips are plain text; the only Markdown-active characters they can hold come from paths.
    return re.sub(r"([\\`*_\[\]<>|])", r"\\\1", tip)


#: At most this many failing modules get a line naming what ran before them.
RAN_BEFORE_MAX_MODULES: Final = 5
#: At most this many earlier modules are named per line.
RAN_BEFORE_MAX_NAMES: Final = 4


def ran_before(merged: MergedReport, module: ModuleReport) -> list[str]:
    """The modules that started on ``module``'s worker before it did, oldest first. PURE.

    A worker runs modules one after another in one process: what one of them leaves
    behind (a global changed, a monkeypatch not undone, a cache filled) is what the
    next one finds. A plain run has the same kind of order, but another one.
    """
    worker, started = module["worker"], module["started"]
    if worker is None or started is None:
        return []
    earlier = [
        (other["started"], other["module"])
        for other in merged["modules"]
        if other["worker"] == worker
        and other["started"] is not None
        and other["started"] < started
        and other["module"] != module["module"]
    ]
    return [name for _, name in sorted(earlier)]


def ran_before_lines(merged: MergedReport) -> list[str]:
    """For each failing module, the modules that ran before it in the same worker. PURE.

    So a user can tell a real failure from state leaking between modules: if the
    module passes alone (``pytest <module>``), look at those.
    """
    lines = []
    failing = [
        module
        for module in order_modules(merged["modules"])
        if module["outcome"] in ("failed", "error")
    ]
    for module in failing[:RAN_BEFORE_MAX_MODULES]:
        names = ran_before(merged, module)
        if not names:
            continue
        shown = ", ".join(names[-RAN_BEFORE_MAX_NAMES:])
        more = len(names) - RAN_BEFORE_MAX_NAMES
        prefix = f"{more} more, then " if more > 0 else ""
        lines.append(
            f"{module['module']} failed on worker {module['worker']} after {prefix}{shown} "
            f"ran there; if it passes alone (pytest {module['module']}), look for state "
            "those modules leave behind"
        )
    return lines
