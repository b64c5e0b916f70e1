"""The live progress display of a parallel run on a terminal. Runs in the controller.

While ``pytest --parallel-modules=N`` runs on a terminal, the display shows (in
the manner of cargo, Jest and pytest-sugar):

* one line per worker: the module (or part of one, ``tests/test_x.py[2/3]``) it
  runs, its tests done out of the ones it was sent, its failures, the time spent
  in it, and the test running now with the time it has been running;
* a bar filled by the estimated work done: each finished test counts its share of
  its module's estimate (the duration history's), a running test the time it has
  run up to that share, against the estimate of the
  whole plan -- not modules counted, since one module may hold most of the time;
  green while nothing failed, red once something did;
* the tests passed, failed, skipped (and errors, xfailed, xpassed when there are
  any) so far, in pytest's colours, the tests and modules done, the time since
  pytest started (the clock of pytest's own last line) and an ETA;
* a line above the display for each module as it fails, naming its first failing
  test: it is written once, stays on the screen (and in the scrollback) and is not
  redrawn.

How it stays out of pytest's way (STYLE R9):

* rich is only the renderer: :func:`render_progress` builds the frame and a
  console captures it as text. The display is transient, redirects neither
  stdout nor stderr, and has no refresh thread: it is redrawn from the
  controller's event hooks and from the controller's event loop, which calls
  :attr:`RunView.ticks <pytest_parallel_modules.controller.RunView.ticks>` on
  every wake-up (at least every
  :data:`~pytest_parallel_modules.controller.POLL_S`), all on the main thread,
  at most every :data:`REFRESH_INTERVAL_S`. The clocks therefore move while a
  long test runs and no event arrives.
* Frames go through the terminal reporter's ``write_raw`` (pytest 9), so they
  reach pytest's own file in order with pytest's writes, and pytest's record of
  the current line (which decides where ``[100%]`` goes) never sees them.
* Between frames the cursor waits on a blank line above the display
  (:func:`draw_frame`). A line written in between by pytest, the controller or
  another plugin lands there, whole; the next frame is drawn below it. Where
  plugins are told that a module started or finished (this plugin's own hooks),
  the display is erased before they run and redrawn after, so any number of
  lines they write stays whole. The failed-module lines are written the same way.
* What would write at every test is silenced while the display is up: pytest's
  per-test progress letters (a ``pytest_report_teststatus`` wrapper keeps the
  category and the word, drops the letter) and the reporting plugin's
  one-line-per-module output
  (:attr:`~pytest_parallel_modules.reporting.RunReporter.print_module_lines`).
* The display is cleared when the run loop ends, before the terminal reporter's
  own wrapper writes its final ``[100%]``: that marker then closes a one-line
  record of the run written in place of the dots. Failures, warnings and
  summaries follow as usual. Ctrl-C is held back for the moment of a write, so
  a frame is never cut in half.

It runs only when pytest's terminal reporter writes to a TTY with colour, at
verbosity 0, outside CI (``CI`` or ``BUILD_NUMBER`` set, as pytest decides),
without ``NO_COLOR``, ``--color=no`` or ``TERM=dumb``, on a UTF-8 terminal and
pytest 9 or later; otherwise modules are announced one line each. Switch it off with
``-p no:pytest_parallel_modules-live`` (on the command line, in ``addopts`` or
``PYTEST_ADDOPTS``): the plugin object is registered under that name, and pytest
refuses to register a name that ``-p no:`` blocked.

The renderer is PURE: :class:`ProgressState` is updated by plain method calls
and :func:`render_progress` turns it and a time into a rich renderable, so unit
tests drive it with a fake clock and no terminal.
"""

from __future__ import annotations

from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import field
import io
import math
import os
import re
import shutil
import signal
import sys
import threading
from typing import Final
from typing import final
from typing import TYPE_CHECKING

import pytest
from rich.cells import cell_len
from rich.console import Console
from rich.console import Group
from rich.table import Table
from rich.text import Text

from pytest_parallel_modules import timing
from pytest_parallel_modules.grouping import module_of
from pytest_parallel_modules.summary import MIN_NAME_WIDTH
from pytest_parallel_modules.summary import ModuleName
from pytest_parallel_modules.summary import shorten_middle


if TYPE_CHECKING:
    from collections.abc import Generator
    from collections.abc import Iterable
    from types import FrameType

    from rich.console import ConsoleOptions
    from rich.console import RenderableType
    from rich.console import RenderResult

    from pytest_parallel_modules.controller import RunView
    from pytest_parallel_modules.grouping import WorkUnit
    from pytest_parallel_modules.reporting import RunReporter
    from pytest_parallel_modules.reports import ModuleReport


#: The display is redrawn at most this often (seconds). Under the event loop's
#: POLL_S, so every wake-up of an idle loop draws a frame: four or five a second.
REFRESH_INTERVAL_S: Final = 0.2
#: Environment variables that mean "running on CI" (pytest's own ``running_on_ci``).
CI_ENV_VARS: Final = ("CI", "BUILD_NUMBER")
#: The ETA scales estimates by how long finished modules really took, within these bounds.
ETA_SCALE_BOUNDS: Final = (0.25, 4.0)
#: Lines of the terminal the display leaves free (its blank line and one more), so a
#: frame never scrolls its own top off the screen.
SPARE_LINES: Final = 2
#: Lines at the bottom of a frame kept for the bar and the counts.
OVERALL_LINES: Final = 2
#: The bar shares its line with the counts only when it keeps at least this many columns.
MIN_BAR_WIDTH: Final = 20
#: ECMA-48 control sequences the display writes.
ERASE_LINE: Final = "\x1b[K"
ERASE_BELOW: Final = "\x1b[J"
HIDE_CURSOR: Final = "\x1b[?25l"
SHOW_CURSOR: Final = "\x1b[?25h"

#: What a worker line says when no module runs there, by controller worker state.
_IDLE_WORDS: Final[Mapping[str, str]] = {
    "starting": "starting",
    "idle": "waiting for a module",
    "busy": "waiting for a module",
    "stopping": "finishing",
    "killed": "stopped",
    "timed_out": "timed out",
    "gone": "done",
}

#: A test's outcome, pytest's categories; the worst of its phases wins (see
#: :func:`report_category`): higher ranks win.
_CATEGORY_RANK: Final[Mapping[str, int]] = {
    "": 0,
    "passed": 1,
    "skipped": 2,
    "xfailed": 3,
    "xpassed": 4,
    "error": 5,
    "failed": 6,
}
#: The counts the display shows, in pytest's order and colours; passed always, the
#: others once there is one: (category, word, style).
_COUNT_STYLES: Final[tuple[tuple[str, str, str], ...]] = (
    ("passed", "passed", "green"),
    ("failed", "failed", "bold red"),
    ("error", "errors", "bold red"),
    ("skipped", "skipped", "yellow"),
    ("xfailed", "xfailed", "yellow"),
    ("xpassed", "xpassed", "yellow"),
)
_FAILING: Final = frozenset({"failed", "error"})


def report_category(when: str, outcome: str, *, wasxfail: bool) -> str:
    """Return what one report (one phase) says of its test, in pytest's words. PURE.

    ``failed``, ``error`` (a failing setup or teardown), ``skipped``, ``xfailed``,
    ``xpassed``, ``passed`` (a passing call), or ``""`` for a passing setup or
    teardown, which says nothing -- as pytest's own ``pytest_report_teststatus``
    sorts reports.
    """
    if outcome == "failed":
        return "failed" if when == "call" else "error"
    if outcome == "skipped":
        return "xfailed" if wasxfail else "skipped"
    if when == "call":
        return "xpassed" if wasxfail else "passed"
    return ""


# --------------------------------------------------------------------------- PURE state


@final
@dataclass(slots=True)
class ModuleProgress:
    """One module handed to a worker, as the display tracks it."""

    module: str
    #: Tests the worker was sent (fewer than the module's when it continues a crashed attempt).
    total: int
    #: When the worker began it (:func:`pytest_parallel_modules.timing.perf` seconds);
    #: ``None`` while it waits behind the worker's current module.
    started: float | None = None
    done: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)
    #: ``(k, n)`` for the k-th of n parts of a split module; ``(1, 1)`` for a whole module.
    part: tuple[int, int] = (1, 1)
    #: The node ids of a part (its tests, and no other part's); None for a whole module.
    nodeids: frozenset[str] | None = None
    #: The test running now, and since when (perf seconds); None between two tests.
    current: str | None = None
    current_since: float | None = None

    @property
    def label(self) -> str:
        """What the worker line shows: the module, and which part of it (its unit id)."""
        index, count = self.part
        return self.module if count == 1 else f"{self.module}[{index}/{count}]"

    def holds(self, nodeid: str) -> bool:
        return self.nodeids is None or nodeid in self.nodeids


@final
@dataclass(slots=True)
class WorkerProgress:
    """One worker as the display tracks it."""

    worker_id: str
    #: Modules sent and not finished, oldest first: the one running, and the next one
    #: (the module-finished event of the current one may arrive after the next was sent).
    modules: list[ModuleProgress] = field(default_factory=list)
    #: The controller's state of the worker (a :class:`~pytest_parallel_modules.controller.WorkerState` value).
    status: str = "starting"


@final
@dataclass(slots=True)
class ProgressState:
    """Everything the display shows, updated from the controller's events. PURE.

    Methods take the time as an argument and do no I/O, so a unit test can
    replay a run with a fake clock.
    """

    #: When pytest started (perf seconds): the clock of pytest's own last line.
    started: float
    #: The run's modules, in plan order.
    plan: tuple[str, ...]
    #: Module -> estimated seconds (the duration history's estimates).
    estimates: Mapping[str, float]
    #: Whether the estimates come from a history (else they are guesses from test counts).
    estimates_known: bool
    worker_count: int
    tests_total: int
    #: Module -> its number of tests in the plan (every part's); each finished test
    #: counts this share of its module's estimate as work done.
    module_tests: Mapping[str, int] = field(default_factory=dict)
    workers: dict[str, WorkerProgress] = field(default_factory=dict)
    started_modules: set[str] = field(default_factory=set)
    #: Module -> seconds it really took, for modules that finished.
    durations: dict[str, float] = field(default_factory=dict)
    tests_done: set[str] = field(default_factory=set)
    #: Node ids with a failing report (failed or error).
    failed: set[str] = field(default_factory=set)
    #: Node id -> its outcome so far (:func:`report_category`, the worst of its phases).
    outcomes: dict[str, str] = field(default_factory=dict)
    #: Module -> the node id of its first failing test, in the order modules failed.
    failed_modules: dict[str, str] = field(default_factory=dict)
    #: Estimated seconds of the finished tests (see :attr:`module_tests`).
    work_done_s: float = 0.0

    @property
    def modules_done(self) -> int:
        return len(self.durations)

    def worker(self, worker_id: str) -> WorkerProgress:
        """Return the record of ``worker_id``, creating it when it is new."""
        record = self.workers.get(worker_id)
        if record is None:
            record = self.workers[worker_id] = WorkerProgress(worker_id)
        return record

    def sync_workers(self, statuses: Iterable[tuple[str, str]]) -> None:
        """Take each worker's state from the controller: ``(worker id, state value)`` pairs."""
        for worker_id, status in statuses:
            self.worker(worker_id).status = status

    def module_started(
        self,
        module: str,
        worker_id: str,
        total: int,
        now: float,
        *,
        part: tuple[int, int] = (1, 1),
        nodeids: frozenset[str] | None = None,
    ) -> None:
        """``module`` (``total`` tests) was handed to ``worker_id``; ``part`` of it when split.

        The parts of a split module run on several workers at once, each line
        showing its part; the module counts once, as done when its last part is.
        """
        # A module (or part) continued after a crash is handed out again: it runs only here now.
        self._remove(module, part=part)
        record = self.worker(worker_id)
        record.modules.append(
            ModuleProgress(
                module,
                total,
                started=None if record.modules else now,
                part=part,
                nodeids=nodeids if part[1] > 1 else None,
            )
        )
        self.started_modules.add(module)

    def module_finished(self, module: str, duration_s: float, now: float) -> None:
        """``module`` is done, after ``duration_s`` seconds of work."""
        self.durations[module] = duration_s
        self._remove(module, now=now)

    def test_started(self, nodeid: str, now: float) -> None:
        """``nodeid`` began (its ``logstart``): its worker's line shows it, and since when."""
        running = self._running(nodeid)
        if running is None:
            return
        running.current = nodeid
        running.current_since = now
        if running.started is None:
            # The module-finished event of the one before is late: this one runs already.
            running.started = now

    def test_reported(self, nodeid: str, category: str) -> str | None:
        """A report (setup, call or teardown) of ``nodeid`` said ``category`` (:func:`report_category`).

        :returns: the module of ``nodeid`` when this is its first failure, so the
            caller can say so once; else None.
        """
        previous = self.outcomes.get(nodeid, "")
        if _CATEGORY_RANK.get(category, 0) > _CATEGORY_RANK.get(previous, 0):
            self.outcomes[nodeid] = category
        if category not in _FAILING:
            return None
        self.failed.add(nodeid)
        running = self._running(nodeid)
        if running is not None:
            running.failed.add(nodeid)
        module = module_of(nodeid)
        if module in self.failed_modules:
            return None
        self.failed_modules[module] = nodeid
        return module

    def test_finished(self, nodeid: str, now: float | None = None) -> None:
        """``nodeid`` ran to the end of its teardown (or its worker crashed in it)."""
        if nodeid not in self.tests_done:
            self.tests_done.add(nodeid)
            module = module_of(nodeid)
            count = self.module_tests.get(module)
            if count:
                self.work_done_s += self.estimates.get(module, 0.0) / count
        running = self._running(nodeid)
        if running is None:
            return
        running.done.add(nodeid)
        if running.current == nodeid:
            running.current = running.current_since = None
        if running.part[1] > 1 and len(running.done) >= running.total:
            # A part is over with its last test: the module-finished event waits for
            # every part, and the worker's line moves on to what it runs next.
            self._remove(running.module, now=now, part=running.part)

    def counts(self) -> dict[str, int]:
        """Category -> how many tests have it so far (a test counts once, by its worst phase)."""
        counts: dict[str, int] = {}
        for category in self.outcomes.values():
            if category:
                counts[category] = counts.get(category, 0) + 1
        return counts

    def work_fraction(self, now: float | None = None) -> float:
        """The share of the plan's estimated work done, in ``[0, 1]``.

        Tests done out of all tests when there is no estimate to go by. Given
        ``now`` and estimates from a history, each running test also counts the
        time it has run so far, up to its share of its module's estimate: a long
        test moves the bar while it runs, instead of the bar standing still until
        it ends.
        """
        total = math.fsum(self.estimates.get(module, 0.0) for module in self.plan)
        if total <= 0 or not self.module_tests:
            return min(1.0, len(self.tests_done) / max(1, self.tests_total))
        done = self.work_done_s
        # Only a recorded duration says how long a test should run: a guessed one (a
        # first run) would fill the bar while nothing is known.
        if now is not None and self.estimates_known:
            for record in self.workers.values():
                for progress in record.modules:
                    if progress.current_since is None:
                        continue
                    count = self.module_tests.get(progress.module)
                    if count:
                        share = self.estimates.get(progress.module, 0.0) / count
                        done += min(share, max(0.0, now - progress.current_since))
        return min(1.0, done / total)

    def _running(self, nodeid: str) -> ModuleProgress | None:
        module = module_of(nodeid)
        for record in self.workers.values():
            for progress in record.modules:
                if progress.module == module and progress.holds(nodeid):
                    return progress
        return None

    def _remove(
        self, module: str, *, now: float | None = None, part: tuple[int, int] | None = None
    ) -> None:
        """Forget ``module`` (only its ``part``, when given) wherever a worker holds it."""
        for record in self.workers.values():
            kept = [
                progress
                for progress in record.modules
                if progress.module != module or (part is not None and progress.part != part)
            ]
            if len(kept) == len(record.modules):
                continue
            record.modules = kept
            # The next module starts on this worker when the previous one ends.
            if kept and kept[0].started is None and now is not None:
                kept[0].started = now


@final
@dataclass(slots=True)
class Throttle:
    """Decides whether a redraw is due: at most one per ``interval`` seconds. PURE."""

    interval: float
    last: float | None = None

    def ready(self, now: float) -> bool:
        """Return True (and remember ``now``) if the last redraw was ``interval`` ago or more."""
        if self.last is not None and now - self.last < self.interval:
            return False
        self.last = now
        return True


# --------------------------------------------------------------------------- PURE rendering


def estimate_remaining(state: ProgressState, now: float) -> float | None:
    """Return the estimated seconds until the run ends, or None when nothing is known. PURE.

    The work left is the estimate of every module not started plus what is left
    of each module sent to a worker; the ETA is the lower bound of that work on
    the run's workers, ``max(largest piece, sum / workers)``, the same yardstick
    as the summary's LB(N). Estimates are scaled by how long the finished modules
    really took against their estimates, so a stale history corrects itself as
    the run goes on.
    """
    if not state.estimates_known and not state.durations:
        return None
    scale = _estimate_scale(state)
    pieces = [
        state.estimates.get(module, 0.0) * scale
        for module in state.plan
        if module not in state.started_modules
    ]
    for record in state.workers.values():
        for progress in record.modules:
            # A part is about its share of the module (parts are sized to finish together).
            estimate = state.estimates.get(progress.module, 0.0) * scale / progress.part[1]
            elapsed = 0.0 if progress.started is None else now - progress.started
            pieces.append(max(0.0, estimate - elapsed))
    if not pieces:
        return 0.0
    return max(max(pieces), sum(pieces) / max(1, state.worker_count))


def _estimate_scale(state: ProgressState) -> float:
    estimated = sum(state.estimates.get(module, 0.0) for module in state.durations)
    if estimated <= 0:
        return 1.0
    low, high = ETA_SCALE_BOUNDS
    return min(high, max(low, sum(state.durations.values()) / estimated))


def format_eta(seconds: float) -> str:
    """Return ``seconds`` rounded up, as ``7s``, ``1m 05s`` or ``1h 02m``. PURE."""
    whole = math.ceil(max(0.0, seconds))
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def format_elapsed(seconds: float) -> str:
    """Return ``seconds`` as ``2.4s`` under a minute, else as :func:`format_eta` does. PURE."""
    seconds = max(0.0, seconds)
    if seconds >= 60:
        return format_eta(seconds)
    # Floor, so 59.97 never shows as 60.0s; the epsilon keeps 2.4 (2.3999...) at 2.4.
    return f"{math.floor(seconds * 10 + 1e-6) / 10:.1f}s"


def _worker_sort_key(worker_id: str) -> tuple[int, str]:
    # w2 before w10.
    match = re.search(r"\d+$", worker_id)
    return (int(match.group()) if match else 0, worker_id)


def _test_name(progress: ModuleProgress) -> str:
    """The running test without its module (the line shows that already): ``TestX::test_y[1]``."""
    nodeid = progress.current or ""
    prefix = progress.module + "::"
    return nodeid[len(prefix) :] if nodeid.startswith(prefix) else nodeid


@final
@dataclass(frozen=True, slots=True)
class _WorkerRow:
    """The cells of one worker line; the names are laid out by :class:`_WorkerTable`."""

    worker: Text
    #: The module (or part) it runs, or None when it runs none (then ``word`` says why).
    module: str | None
    word: Text
    tests: Text
    failed: Text
    elapsed: Text
    #: The running test without its module, or None between tests.
    test: str | None
    test_elapsed: Text


def _worker_row(record: WorkerProgress, now: float) -> _WorkerRow:
    name = Text(record.worker_id, style="bold")
    if not record.modules:
        word = _IDLE_WORDS.get(record.status, record.status)
        style = "red" if record.status == "timed_out" else "dim"
        return _WorkerRow(name, None, Text(word, style=style), Text(), Text(), Text(), None, Text())
    current = record.modules[0]
    elapsed = 0.0 if current.started is None else now - current.started
    failed = len(current.failed)
    running = current.current is not None and current.current_since is not None
    test_elapsed = now - current.current_since if current.current_since is not None else 0.0
    return _WorkerRow(
        worker=name,
        module=current.label,
        word=Text(),
        tests=Text(f"{len(current.done)}/{current.total}"),
        failed=Text(f"{failed} failed", style="red") if failed else Text(),
        elapsed=Text(format_elapsed(elapsed)),
        test=_test_name(current) if running else None,
        test_elapsed=Text(format_elapsed(test_elapsed), style="dim") if running else Text(),
    )


#: Columns between two cells of a worker line.
_GAP: Final = 2
#: The running test's name keeps at least this many columns before a module name is
#: shortened for it (or its whole length, when shorter).
_TEST_NAME_MIN: Final = 16


def name_widths(available: int, module: int, test: int) -> tuple[int, int]:
    """Split ``available`` columns between the module column and the test column. PURE.

    Each gets what it needs when both fit. Otherwise the test name gives way first,
    down to :data:`_TEST_NAME_MIN`; then the module name, down to its own minimum
    (:data:`~pytest_parallel_modules.summary.MIN_NAME_WIDTH`); then the test name again.

    :param module: the widest module cell; :param test: the widest test name.
    :returns: ``(module width, test width)``, never more than asked, never negative.
    """
    available = max(0, available)
    if module + test <= available:
        return module, test
    test_floor = min(test, _TEST_NAME_MIN)
    module_floor = min(module, MIN_NAME_WIDTH)
    module_width = max(module_floor, min(module, available - test_floor))
    module_width = min(module_width, available)
    return module_width, max(0, min(test, available - module_width))


@final
class _WorkerTable:
    """The worker lines, in columns as wide as what they hold, laid out to the width.

    Nothing is padded to fill the width (no hole between a name and its counts);
    when the width is short, names lose their middle (the test's first), and
    below that rich narrows the other columns too. No line ever wraps.
    """

    def __init__(self, rows: Sequence[_WorkerRow], more: Text | None) -> None:
        self.rows = rows
        self.more = more

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        def widest(cells: Iterable[Text]) -> int:
            return max((cell_len(cell.plain) for cell in cells), default=0)

        rows = self.rows
        failures = any(row.failed for row in rows)
        tests = any(row.test for row in rows)
        # Columns empty on every line are left out, with their gap.
        fixed = [
            widest(row.worker for row in rows),
            widest(row.tests for row in rows),
            widest(row.failed for row in rows) if failures else None,
            widest(row.elapsed for row in rows),
            widest(row.test_elapsed for row in rows) if tests else None,
        ]
        shown = [width for width in fixed if width is not None]
        module_natural = max(
            widest(row.word for row in rows),
            max((cell_len(row.module) for row in rows if row.module), default=0),
        )
        test_natural = max((cell_len(row.test) for row in rows if row.test), default=0)
        columns = len(shown) + 1 + (1 if tests else 0)
        available = options.max_width - sum(shown) - _GAP * (columns - 1)
        module_width, test_width = name_widths(available, module_natural, test_natural)
        # A path loses whole directories, so it may end up narrower than its column:
        # the test name gets what it leaves.
        module_width = max(
            widest(row.word for row in rows),
            max(
                (cell_len(shorten_middle(row.module, module_width)) for row in rows if row.module),
                default=0,
            ),
        )
        test_width = max(0, min(test_natural, available - module_width))
        table = Table.grid(padding=(0, _GAP))
        table.add_column("worker", no_wrap=True)
        table.add_column("module", no_wrap=True, width=max(1, module_width))
        table.add_column("tests", no_wrap=True, justify="right")
        if failures:
            table.add_column("failed", no_wrap=True)
        table.add_column("elapsed", no_wrap=True, justify="right")
        if tests:
            table.add_column("test", no_wrap=True, width=max(1, test_width))
            table.add_column("test elapsed", no_wrap=True, justify="right")
        for row in rows:
            cells: list[RenderableType] = [
                row.worker,
                row.word if row.module is None else ModuleName(row.module),
                row.tests,
            ]
            if failures:
                cells.append(row.failed)
            cells.append(row.elapsed)
            if tests:
                cells.append(Text() if row.test is None else ModuleName(row.test, "cyan"))
                cells.append(row.test_elapsed)
            table.add_row(*cells)
        for cell in (cell for row in rows for cell in (row.word, row.failed)):
            cell.no_wrap = True
            cell.overflow = "ellipsis"
        yield table
        if self.more is not None:
            more = self.more.copy()
            more.no_wrap = True
            more.overflow = "ellipsis"
            yield more


def _count_text(state: ProgressState) -> Text:
    """``12 passed  1 failed  2 skipped``: passed always, the others once there is one."""
    counts = state.counts()
    text = Text()
    for category, word, style in _COUNT_STYLES:
        number = counts.get(category, 0)
        if number or category == "passed":
            if text:
                text.append("  ")
            text.append(f"{number} {word}", style=style if number else "dim")
    return text


def render_bar(fraction: float, width: int, *, style: str) -> Text:
    """Return a bar ``width`` columns wide, filled to ``fraction`` in half-columns. PURE.

    The part to come is drawn too (a thin dim line), so the bar reads as a bar in
    plain text as well as in colour.
    """
    width = max(1, width)
    halves = round(min(1.0, max(0.0, fraction)) * width * 2)
    full, half = divmod(halves, 2)
    bar = Text("━" * full + ("╸" if half else ""), style=style)
    bar.append("─" * (width - full - half), style="dim")
    return bar


@final
class _Overall:
    """The bar, the counts, the clock and the ETA: one line when the width allows, else two.

    A renderable of its own because the choice depends on the width rich gives it.
    """

    def __init__(self, state: ProgressState, now: float) -> None:
        self.fraction = state.work_fraction(now)
        # Green while nothing failed: rich's default bar colour reads as a failure.
        self.bar_style = "red" if state.failed else "green"
        remaining = estimate_remaining(state, now)
        self.percent = Text(f" {math.floor(self.fraction * 100):>3d}%", style="bold")
        self.clock = Text(format_elapsed(now - state.started))
        self.clock.append(
            f"  ETA {'?' if remaining is None else format_eta(remaining)}", style="cyan"
        )
        self.counts = _count_text(state)
        self.counts.append(
            f"  {len(state.tests_done)}/{state.tests_total} tests"
            f"  {state.modules_done}/{len(state.plan)} modules",
            style="dim",
        )

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        text = Text.assemble(self.percent, "  ", self.counts, "  ", self.clock)
        room = width - cell_len(text.plain)
        if room >= MIN_BAR_WIDTH:
            yield Text.assemble(render_bar(self.fraction, room, style=self.bar_style), text)
            return
        text = Text.assemble(self.percent, "  ", self.clock)
        room = max(MIN_BAR_WIDTH // 2, width - cell_len(text.plain))
        line = Text.assemble(render_bar(self.fraction, room, style=self.bar_style), text)
        for part in (line, self.counts.copy()):
            part.no_wrap = True
            part.overflow = "ellipsis"
            yield part


def render_progress(state: ProgressState, now: float, *, max_lines: int) -> RenderableType:
    """Render the display: one line per worker, then the bar and the counts. PURE.

    Called by :class:`LiveProgress` on each redraw. Columns are as wide as what
    they hold, so the worker lines use the width without gaps; module paths and
    test names too long for it lose their middle.

    :param now: the current time (perf seconds), for elapsed times and the ETA.
    :param max_lines: the display's height limit; workers that do not fit are
        summed up in one line, so the display never scrolls the terminal.
    """
    workers = sorted(state.workers.values(), key=lambda record: _worker_sort_key(record.worker_id))
    room = max(1, max_lines - OVERALL_LINES)
    hidden: list[WorkerProgress] = []
    if len(workers) > room:
        # The last worker line becomes the "more" line.
        workers, hidden = workers[: room - 1], workers[room - 1 :]
    more = None
    if hidden:
        busy = sum(1 for record in hidden if record.modules)
        more = Text(f"...  {len(hidden)} more workers, {busy} running a module", style="dim")
    rows = [_worker_row(record, now) for record in workers]
    return Group(_WorkerTable(rows, more), _Overall(state, now))


def format_failure_line(module: str, nodeid: str, width: int) -> Text:
    """Return the line written above the display when ``module`` fails. PURE.

    `` FAIL  tests/test_x.py::test_y[1]``: the module's first failing test, its
    path shortened in the middle when the line would not fit ``width``.
    """
    badge = " FAIL "
    room = max(1, width - len(badge) - 1)
    shown = nodeid if nodeid.startswith(module) else f"{module} ({nodeid})"
    return Text.assemble((badge, "bold white on red"), " ", (shorten_middle(shown, room), "red"))


def format_final_line(state: ProgressState, now: float) -> str:
    """Return the line left on the terminal where the display was. PURE.

    ``parallel-modules: 12/12 modules, 340/340 tests, 2 failed in 3.2s``; pytest's
    ``[100%]`` follows it on the same line, as it follows the dots of a plain run.
    The time counts from pytest's start, as pytest's own last line does.
    """
    line = (
        f"parallel-modules: {state.modules_done}/{len(state.plan)} modules, "
        f"{len(state.tests_done)}/{state.tests_total} tests"
    )
    if state.failed:
        line += f", {len(state.failed)} failed"
    return f"{line} in {format_elapsed(now - state.started)}"


def draw_frame(lines: Sequence[str]) -> str:
    """Return the text that draws ``lines`` below the cursor's line and parks the cursor there. PURE.

    The cursor's line is left blank and the cursor waits at its start, above the
    display. Whatever is written between two frames (a status line of pytest or
    of a plugin) therefore starts on that blank line and pushes the cursor down
    into the old display; the next frame starts from wherever the cursor is,
    overwrites the display lines and erases what is left below, so the text
    written in between stays whole above the display.
    """
    parts = ["\r", ERASE_LINE]
    for line in lines:
        parts += ["\r\n", line, ERASE_LINE]
    parts.append(ERASE_BELOW)
    if lines:
        parts.append(f"\x1b[{len(lines)}A")
    parts.append("\r")
    return "".join(parts)


def clear_frame() -> str:
    """Return the text that erases the display, from the cursor's line down. PURE."""
    return "\r" + ERASE_BELOW


def live_display_blocker(
    *,
    raw_writes: bool,
    plain_reporter: bool,
    isatty: bool,
    markup: bool,
    unicode: bool,
    verbosity: int,
    test_case_verbosity: int,
    environ: Mapping[str, str],
) -> str | None:
    """Return why the live display must not run, or None when it may. PURE.

    :param raw_writes: the terminal reporter has ``write_raw`` (pytest 9 and later).
    :param plain_reporter: the terminal reporter is pytest's own, not a subclass
        from another plugin that draws its own progress.
    :param isatty: the reporter writes to a terminal.
    :param markup: the reporter uses colour (``--color``, ``NO_COLOR``, ``TERM=dumb``).
    :param unicode: the terminal's encoding is a UTF one (the bar and the ellipsis need it).
    :param verbosity: pytest's verbosity; ``-v`` wants per-test lines, ``-q`` quiet.
    :param test_case_verbosity: the ``verbosity_test_cases`` ini key's effect.
    :param environ: the environment.
    """
    if not raw_writes:
        return "pytest before 9.0 has no raw terminal writes"
    if not plain_reporter:
        return "another plugin replaced pytest's terminal reporter"
    if not isatty:
        return "the output is not a terminal"
    if verbosity != 0 or test_case_verbosity != 0:
        return "verbosity is not the default"
    if "NO_COLOR" in environ or environ.get("TERM") == "dumb" or not markup:
        return "the terminal has no colour"
    if any(environ.get(name) for name in CI_ENV_VARS):
        return "running on CI"
    if not unicode:
        return "the terminal's encoding is not UTF-8"
    return None


# --------------------------------------------------------------------------- terminal


@contextmanager
def _uninterrupted() -> Iterator[None]:
    """Hold Ctrl-C back until the block ends, so a frame is never cut in half.

    A KeyboardInterrupt raised inside a write leaves half a frame on the screen
    (and the cursor hidden). Only Python's own SIGINT handler on the main thread
    is replaced, for the moment of one write; the interrupt is raised as soon as
    the block ends.
    """
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    received: list[int] = []

    def remember(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    signal.signal(signal.SIGINT, remember)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if received:
            raise KeyboardInterrupt


@final
class LiveProgress:
    """The plugin object that draws the live display. Runs in the controller.

    Registered by :func:`pytest_parallel_modules.plugin.pytest_configure` under
    ``"pytest_parallel_modules-live"`` next to the controller and the reporting
    plugin; ``-p no:pytest_parallel_modules-live`` keeps it from registering.
    Whether the display runs is decided when the run loop starts; it is first
    drawn when the first module is handed out.
    """

    def __init__(self, config: pytest.Config, view: RunView, run_reporter: RunReporter) -> None:
        self.config = config
        #: What the controller publishes of the run.
        self.view = view
        self.run_reporter = run_reporter
        #: Why the display does not run (set when the run loop starts); None if it runs.
        self.blocker: str | None = None
        self.state: ProgressState | None = None
        self.throttle = Throttle(REFRESH_INTERVAL_S)
        self._reporter: pytest.TerminalReporter | None = None
        self._console: Console | None = None
        #: True from the first frame until the display is cleared for good.
        self._active = False
        #: Node id -> the part of a split module that holds it (set when the display starts).
        self._parts: dict[str, WorkUnit] = {}
        #: When pytest's session started (perf seconds), where pytest's own clock starts.
        self._session_started: float | None = None

    # -- pytest hooks ---------------------------------------------------------

    # tryfirst: as close as a plugin gets to the terminal reporter's own start
    # (a trylast implementation of this hook), so the display's clock and pytest's
    # last line agree.
    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self) -> None:
        self._session_started = timing.perf()

    # trylast: the innermost wrapper, so the display is gone before the terminal
    # reporter's own wrapper writes its final progress marker.
    @pytest.hookimpl(wrapper=True, trylast=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Generator[None, object, object]:
        self._prepare()
        try:
            return (yield)
        finally:
            self._finish()

    @pytest.hookimpl(wrapper=True)
    def pytest_report_teststatus(
        self, report: pytest.TestReport | pytest.CollectReport
    ) -> Generator[None, object, object]:
        result = yield
        if not self._active or not isinstance(result, tuple) or len(result) != 3:
            return result
        # Keep the category (stats, the summary line) and the word (-r lines);
        # drop the progress letter: the display shows progress, and a run of
        # letters would push a line of dots above it at every frame.
        category, _letter, word = result
        return pytest.TestShortLogReport(category, "", word)

    # The two hooks where plugins (and conftest files) are told a module started or
    # finished, so where they write status lines mid-run. tryfirst wrappers: the
    # display is cleared before any of them runs, so their lines -- however many --
    # land on blank lines, and a new frame is drawn below them once they are done.
    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_parallel_modules_module_started(
        self, module: str, worker_id: str, nodeids: list[str]
    ) -> Generator[None, object, object]:
        if self.state is None:
            return (yield)
        # A part of a split module: any of its node ids names it (a crashed part's rest too).
        unit = self._parts.get(nodeids[0]) if nodeids else None
        self.state.module_started(
            module,
            worker_id,
            len(nodeids),
            timing.perf(),
            part=unit.part if unit is not None else (1, 1),
            nodeids=frozenset(unit.nodeids) if unit is not None else None,
        )
        self._make_room()
        try:
            return (yield)
        finally:
            if self._active:
                self._draw()
            else:
                self._begin()

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_parallel_modules_module_finished(
        self, report: ModuleReport
    ) -> Generator[None, object, object]:
        if self.state is None:
            return (yield)
        self.state.module_finished(report["module"], report["duration_s"], timing.perf())
        self._make_room()
        try:
            return (yield)
        finally:
            self._draw()

    def pytest_runtest_logstart(self, nodeid: str) -> None:
        if self.state is None:
            return
        self.state.test_started(nodeid, timing.perf())
        self._refresh()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if self.state is None:
            return
        category = report_category(
            report.when, report.outcome, wasxfail=hasattr(report, "wasxfail")
        )
        module = self.state.test_reported(report.nodeid, category)
        if module is not None and self._active:
            self._write_failure(module, report.nodeid)
        else:
            self._refresh()

    def pytest_runtest_logfinish(self, nodeid: str) -> None:
        if self.state is None:
            return
        self.state.test_finished(nodeid, timing.perf())
        self._refresh()

    # -- the display ----------------------------------------------------------

    def _prepare(self) -> None:
        """Decide whether the display runs; if so, build its state."""
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None:
            self.blocker = "no terminal reporter"
            return
        raw_writes = callable(getattr(reporter, "write_raw", None))
        self.blocker = live_display_blocker(
            raw_writes=raw_writes,
            # A subclass (pytest-sugar and the like) draws progress its own way.
            plain_reporter=type(reporter) is pytest.TerminalReporter,
            isatty=bool(reporter.isatty),
            markup=self.config.get_terminal_writer().hasmarkup,
            # The reporter's file is the sys.stdout of configure time, and the
            # controller runs no test that could have swapped it since.
            unicode=(getattr(sys.stdout, "encoding", None) or "").lower().startswith("utf"),
            verbosity=self.config.get_verbosity(),
            # Only read where it exists (pytest 8.1+; raw writes need 9.0 anyway).
            test_case_verbosity=self.config.get_verbosity(pytest.Config.VERBOSITY_TEST_CASES)
            if raw_writes
            else 0,
            environ=os.environ,
        )
        if self.blocker is not None:
            return
        self._reporter = reporter
        view = self.view
        self._parts = {
            nodeid: unit for unit in view.units if unit.part[1] > 1 for nodeid in unit.nodeids
        }
        module_tests: dict[str, int] = {}
        for unit in view.units:
            module_tests[unit.module] = module_tests.get(unit.module, 0) + len(unit.nodeids)
        self.state = ProgressState(
            started=self._session_started if self._session_started is not None else timing.perf(),
            plan=tuple(module_tests),
            estimates=view.estimates,
            estimates_known=view.estimates_known,
            worker_count=view.workers,
            tests_total=sum(module_tests.values()),
            module_tests=module_tests,
        )
        # The controller's loop calls it on every wake-up: the clocks move while no
        # event arrives (a long test), without a thread of our own.
        view.ticks.append(self._refresh)

    def _begin(self) -> None:
        """Draw the first frame; module lines give way to the display."""
        if self._reporter is None:
            return
        self._console = Console(
            # Frames are captured as text and written by _draw, never to this file.
            file=io.StringIO(),
            force_terminal=True,
            color_system="auto",
            # Module paths are data: no [markup], no :emoji: codes, no highlighting.
            markup=False,
            emoji=False,
            highlight=False,
        )
        self.run_reporter.print_module_lines = False
        self._active = True
        self._close_pytest_line()
        self._reporter.write_raw(HIDE_CURSOR)
        self.throttle.ready(timing.perf())
        self._draw()

    def _size(self) -> tuple[int, int]:
        """Return the width and height to draw in; read for every frame, to follow resizes."""
        columns, lines = shutil.get_terminal_size()
        # One column short of the edge: a line that fills the last column leaves
        # the cursor in a pending-wrap state that terminals resolve differently.
        width = min(columns, self.config.get_terminal_writer().fullwidth) - 1
        # Lines never wrap at any width (cells are cut), so a narrow terminal is fine.
        return max(1, width), max(2, lines - SPARE_LINES)

    def _capture(self, renderable: RenderableType, width: int, height: int) -> list[str]:
        assert self._console is not None
        self._console.size = (width, height)
        with self._console.capture() as capture:
            self._console.print(renderable)
        return capture.get().splitlines()

    def _frame_lines(self) -> list[str]:
        assert self.state is not None
        width, height = self._size()
        self.state.sync_workers(self.view.worker_states.items())
        return self._capture(
            render_progress(self.state, timing.perf(), max_lines=height), width, height
        )

    def _draw(self) -> None:
        """Write one frame below the cursor's line (see :func:`draw_frame`)."""
        if not self._active or self._reporter is None:
            return
        lines = self._frame_lines()
        self._close_pytest_line()
        with _uninterrupted():
            self._reporter.write_raw(draw_frame(lines), flush=True)

    def _write_failure(self, module: str, nodeid: str) -> None:
        """Write the line that says ``module`` failed above the display, where it stays."""
        if self._reporter is None:
            return
        width, height = self._size()
        lines = self._capture(format_failure_line(module, nodeid, width), width, height)
        self._make_room()
        with _uninterrupted():
            # The cursor waits at the start of the blank line above the display: the
            # line goes there, and the next frame is drawn below it.
            self._reporter.write_raw("".join(line + ERASE_LINE + "\n" for line in lines))
        self._draw()

    def _make_room(self) -> None:
        """Erase the display before others may write: the cursor waits on the blank line above it."""
        if self._active and self._reporter is not None:
            self._close_pytest_line()
            # Not flushed: when nothing is written before the next frame, the terminal
            # gets the erase and the frame together and shows no flicker.
            with _uninterrupted():
                self._reporter.write_raw(clear_frame())

    def _refresh(self) -> None:
        """Redraw, throttled: from event hooks and from the controller loop's ticks."""
        if self._active and self.throttle.ready(timing.perf()):
            self._draw()

    def _close_pytest_line(self) -> None:
        """Move below a line pytest left open (a rewritten status line), so nothing is drawn over it."""
        if self._reporter is not None and self.config.get_terminal_writer().width_of_current_line:
            self._reporter.write("\n")

    def _finish(self) -> None:
        """The run loop ended (or was interrupted): clear the display, leave a one-line record."""
        if self._refresh in self.view.ticks:
            self.view.ticks.remove(self._refresh)
        if not self._active or self._reporter is None or self.state is None:
            return
        self._active = False
        self._close_pytest_line()
        with _uninterrupted():
            self._reporter.write_raw(clear_frame() + SHOW_CURSOR, flush=True)
        width, _ = self._size()
        line = format_final_line(self.state, timing.perf())
        # Leave room for the " [100%]" pytest writes after it.
        self._reporter.write(_cut(line, width - len(" [100%]") - 2))


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 3)] + "..."
