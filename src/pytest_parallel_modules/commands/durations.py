"""The ``durations`` command: print the duration history. Runs in a plain Python process.

Usage: ``python -m pytest_parallel_modules durations [--top K] [--path PATH]``.

Reads the history read-only: unlike a test run, which moves a bad file aside,
this command leaves a bad file where it is and says what is wrong with it.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
import sys
from typing import final

from rich.console import Console
from rich.table import Table
from rich.text import Text

from pytest_parallel_modules.grouping import module_of
from pytest_parallel_modules.history import DEFAULT_HISTORY_PATH
from pytest_parallel_modules.history import History
from pytest_parallel_modules.history import HistoryFormatError
from pytest_parallel_modules.history import parse_history


@final
@dataclass(frozen=True, slots=True)
class ModuleRow:
    """One line of the table."""

    module: str
    tests: int
    duration_s: float
    runs: int
    last_outcome: str


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this command's options to its sub-parser. Called by ``__main__``."""
    parser.add_argument(
        "--top",
        type=_positive_int,
        default=None,
        metavar="K",
        help="show only the K slowest modules (default: all)",
    )
    parser.add_argument(
        "--path",
        type=Path,
        default=None,
        metavar="PATH",
        help=f"history file to read (default: {DEFAULT_HISTORY_PATH.as_posix()} "
        "under the current directory)",
    )


def module_rows(history: History, top: int | None = None) -> tuple[ModuleRow, ...]:
    """PURE: one row per module of ``history``, slowest first (ties by path).

    :param history: the history to show.
    :param top: keep only this many rows; ``None`` keeps all.
    :returns: the rows.
    """
    tests_per_module: dict[str, int] = {}
    for nodeid in history.tests:
        module = module_of(nodeid)
        tests_per_module[module] = tests_per_module.get(module, 0) + 1
    rows = sorted(
        (
            ModuleRow(
                module,
                tests_per_module.get(module, 0),
                record.duration_s,
                record.runs,
                record.last_outcome,
            )
            for module, record in history.modules.items()
        ),
        key=lambda row: (-row.duration_s, row.module),
    )
    return tuple(rows if top is None else rows[:top])


def render_table(history: History, rows: Sequence[ModuleRow]) -> Table:
    """PURE: the rich table of ``rows``, with a caption summing up ``history``."""
    table = Table(
        title="Duration history, slowest modules first",
        caption=(
            f"{len(rows)} of {_plural(len(history.modules), 'module')}, "
            f"{_plural(len(history.tests), 'test')}, {_plural(history.run_count, 'run')} recorded"
        ),
    )
    table.add_column("module", overflow="fold")
    table.add_column("tests", justify="right")
    table.add_column("duration", justify="right")
    table.add_column("runs", justify="right")
    table.add_column("last outcome")
    for row in rows:
        table.add_row(
            # Text, not str: a path like tests/test_[x].py is not rich markup.
            Text(row.module),
            str(row.tests),
            f"{row.duration_s:.2f}s",
            str(row.runs),
            row.last_outcome,
        )
    return table


def _error(message: str) -> None:
    # Plain print, not rich: rich would wrap the line in the middle of the path.
    print(message, file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    """Print the history as a table. Called by ``__main__`` with the parsed arguments.

    :returns: 0 on success; 1 if there is no history file or it cannot be read.
    """
    path: Path = args.path if args.path is not None else Path.cwd() / DEFAULT_HISTORY_PATH
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        _error(
            f"No duration history at {path}: run pytest with --parallel-modules first, "
            "or point --path at a history file."
        )
        return 1
    except (OSError, UnicodeDecodeError) as error:
        _error(f"Cannot read the duration history {path}: {error}")
        return 1
    try:
        history = parse_history(text)
    except HistoryFormatError as error:
        _error(f"The duration history {path} is not valid: {error}")
        return 1
    if not history.modules:
        print(f"The duration history {path} records no modules yet.")
        return 0
    Console(highlight=False).print(render_table(history, module_rows(history, args.top)))
    return 0
