"""The ``durations`` command: print the duration history. Runs in a plain Python process.

Usage: ``python -m pytest_parallel_modules durations [--top K] [--path PATH] [--flaky]``.

With ``--flaky`` it lists the flakiest tests instead: those whose outcome changed
between runs while their module file stayed the same
(:func:`pytest_parallel_modules.trends.flakiest_tests`).

Without ``--path`` it reads the history a run started in the current directory
would use (:func:`find_history_path`): the ini key ``module_durations``, else
``durations.json`` inside pytest's cache directory (ini ``cache_dir``, relative
to the rootdir). The rootdir and ini file are found as pytest finds them for a
run without path arguments -- with a walk of our own, because pytest's
``determine_setup`` is private and changed its signature and return shape in
recent releases.

Reads the history read-only: unlike a test run, which moves a bad file aside,
this command leaves a bad file where it is and says what is wrong with it.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
import importlib
import os
from pathlib import Path
import sys
from typing import Any
from typing import Final
from typing import final

import iniconfig
from rich.console import Console
from rich.table import Table
from rich.text import Text

from pytest_parallel_modules.grouping import module_of
from pytest_parallel_modules.history import DEFAULT_HISTORY_PATH
from pytest_parallel_modules.history import History
from pytest_parallel_modules.history import HistoryFormatError
from pytest_parallel_modules.history import parse_history
from pytest_parallel_modules.recent import RECENT_RUNS
from pytest_parallel_modules.trends import FlakeRate
from pytest_parallel_modules.trends import flakiest_tests


#: Files pytest reads its configuration from, in the order it looks for them in a directory.
CONFIG_NAMES: Final = (
    "pytest.toml",
    ".pytest.toml",
    "pytest.ini",
    ".pytest.ini",
    "pyproject.toml",
    "tox.ini",
    "setup.cfg",
)
#: Where pytest keeps its cache, relative to the rootdir, when ini ``cache_dir`` is not set.
DEFAULT_CACHE_DIR: Final = DEFAULT_HISTORY_PATH.parts[0]
#: The history's place inside pytest's cache directory (``Cache.mkdir`` puts data under ``d/``).
HISTORY_IN_CACHE: Final = DEFAULT_HISTORY_PATH.relative_to(DEFAULT_CACHE_DIR)

#: Console width when the output is not a terminal: rich's tables take only what they need.
_UNLIMITED_WIDTH: Final = 10_000


@final
class ConfigError(Exception):
    """A pytest configuration file on the way to the rootdir cannot be read."""


@final
@dataclass(frozen=True, slots=True)
class PytestSetup:
    """The part of pytest's configuration that says where the history lives."""

    rootdir: Path
    #: The configuration file, ``None`` when there is none.
    inifile: Path | None
    #: Its pytest settings (``[pytest]``, ``[tool:pytest]``, ``[tool.pytest...]``).
    settings: dict[str, Any]


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
        help="show only the K slowest modules (or, with --flaky, the K flakiest tests; default: all)",
    )
    parser.add_argument(
        "--flaky",
        action="store_true",
        help="list the flakiest tests instead: those whose outcome changed between runs while "
        f"their module file did not (over the last {RECENT_RUNS} runs of each)",
    )
    parser.add_argument(
        "--path",
        type=Path,
        default=None,
        metavar="PATH",
        help="history file to read (default: the one a pytest run from the current directory "
        "uses: ini module_durations, else durations.json in pytest's cache_dir)",
    )


def _load_toml(path: Path) -> dict[str, Any]:
    # tomllib from Python 3.11; pytest depends on tomli before that.
    toml = importlib.import_module("tomllib" if sys.version_info >= (3, 11) else "tomli")
    with open(path, "rb") as file:
        document: dict[str, Any] = toml.load(file)
    return document


def _ini_section(path: Path, name: str) -> dict[str, Any] | None:
    config = iniconfig.IniConfig(str(path))
    return dict(config[name].items()) if name in config else None


def _pytest_settings(path: Path) -> dict[str, Any] | None:
    """Return the pytest settings in ``path``; ``None`` when it holds none (pytest skips it).

    :raises ConfigError: the file cannot be read or parsed.
    """
    try:
        if path.name in ("pytest.toml", ".pytest.toml"):
            table = _load_toml(path).get("pytest")
            return dict(table) if isinstance(table, dict) else {}
        if path.name in ("pytest.ini", ".pytest.ini"):
            return _ini_section(path, "pytest") or {}
        if path.name == "pyproject.toml":
            tool = _load_toml(path).get("tool", {})
            pytest_table = tool.get("pytest") if isinstance(tool, dict) else None
            if not isinstance(pytest_table, dict):
                return None
            ini_options = pytest_table.get("ini_options")
            native = {key: value for key, value in pytest_table.items() if key != "ini_options"}
            if native:
                return native
            return dict(ini_options) if isinstance(ini_options, dict) else None
        if path.name == "tox.ini":
            return _ini_section(path, "pytest")
        return _ini_section(path, "tool:pytest")  # setup.cfg
    except (OSError, UnicodeDecodeError, ValueError, iniconfig.ParseError) as error:
        raise ConfigError(f"cannot read pytest's configuration {path}: {error}") from error


def find_pytest_setup(start: Path) -> PytestSetup:
    """Find the rootdir and ini file a pytest run started in ``start`` (no path arguments) uses.

    Mirrors pytest's rules: the first directory, from ``start`` upwards, holding a file of
    :data:`CONFIG_NAMES` with pytest settings (``pytest.ini`` and ``pytest.toml`` count even
    when empty); failing that the first ``pyproject.toml`` seen; failing that the first
    directory with a ``setup.py``; failing that ``start`` itself.

    :raises ConfigError: a configuration file on the way cannot be parsed.
    """
    first_pyproject: Path | None = None
    for base in (start, *start.parents):
        for name in CONFIG_NAMES:
            path = base / name
            if not path.is_file():
                continue
            if name == "pyproject.toml" and first_pyproject is None:
                first_pyproject = path
            settings = _pytest_settings(path)
            if settings is not None:
                return PytestSetup(rootdir=base, inifile=path, settings=settings)
    if first_pyproject is not None:
        return PytestSetup(rootdir=first_pyproject.parent, inifile=first_pyproject, settings={})
    for base in (start, *start.parents):
        if (base / "setup.py").is_file():
            return PytestSetup(rootdir=base, inifile=None, settings={})
    return PytestSetup(rootdir=start, inifile=None, settings={})


def history_path_for(setup: PytestSetup) -> Path:
    """PURE (apart from reading the environment): where a run with ``setup`` keeps its history.

    The ini key ``module_durations`` (relative to the ini file's directory), else
    ``d/parallel-modules/durations.json`` in pytest's cache directory: ini ``cache_dir``
    (``~`` and ``$VARS`` expanded, relative to the rootdir), else ``.pytest_cache``.
    """
    durations = setup.settings.get("module_durations")
    if isinstance(durations, str) and durations.strip():
        base = setup.inifile.parent if setup.inifile is not None else setup.rootdir
        return base / Path(durations.strip()).expanduser()
    cache_dir = setup.settings.get("cache_dir")
    if not isinstance(cache_dir, str) or not cache_dir.strip():
        cache_dir = DEFAULT_CACHE_DIR
    # As pytest's cacheprovider.resolve_from_str: an absolute cache_dir wins over the rootdir.
    cache = setup.rootdir / os.path.expandvars(os.path.expanduser(cache_dir.strip()))
    return cache / HISTORY_IN_CACHE


def find_history_path(start: Path) -> Path:
    """Return the history file a run started in ``start`` reads and updates.

    :raises ConfigError: a configuration file on the way cannot be parsed.
    """
    return history_path_for(find_pytest_setup(start))


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


#: One letter per outcome for the ``--flaky`` table's history column.
_OUTCOME_LETTERS: Final = {
    "passed": ".",
    "failed": "F",
    "error": "E",
    "skipped": "s",
    "xfailed": "x",
    "xpassed": "X",
    "flaky": "R",
}


def render_flaky_table(history: History, rates: Sequence[FlakeRate]) -> Table:
    """PURE: the rich table of the flakiest tests."""
    table = Table(
        title="Flakiest tests: outcome changed while the module file did not",
        caption=(
            f"{len(rates)} test(s); flake rate = changes / comparisons of consecutive runs with the "
            f"same module file, over the last {RECENT_RUNS} runs; history: "
            f"{_plural(history.run_count, 'run')}. Outcomes newest first: . passed, F failed, "
            "E error, s skipped, x xfailed, X xpassed, R failed then passed on a retry"
        ),
    )
    table.add_column("test", overflow="fold")
    table.add_column("flake rate", justify="right")
    table.add_column("changes", justify="right")
    table.add_column("outcomes")
    for rate in rates:
        table.add_row(
            Text(rate.nodeid),
            f"{rate.rate:.0%}",
            f"{rate.changes}/{rate.comparisons}",
            "".join(_OUTCOME_LETTERS.get(outcome, "?") for outcome in rate.outcomes),
        )
    return table


def _error(message: str) -> None:
    # Plain print, not rich: rich would wrap the line in the middle of the path.
    print(message, file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    """Print the history as a table. Called by ``__main__`` with the parsed arguments.

    :returns: 0 on success; 1 if there is no history file or it cannot be read.
    """
    if args.path is not None:
        path: Path = args.path
    else:
        try:
            path = find_history_path(Path.cwd())
        except ConfigError as error:
            _error(f"{error}; pass --path to name the history file.")
            return 1
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
    width = None if sys.stdout.isatty() or "COLUMNS" in os.environ else _UNLIMITED_WIDTH
    if args.flaky:
        rates = flakiest_tests(history, args.top)
        if not rates:
            print(
                f"No flaky tests in {path}: no test's outcome changed while its module file "
                f"stayed the same, over the last {RECENT_RUNS} runs of each."
            )
            return 0
        Console(highlight=False, width=width).print(render_flaky_table(history, rates))
        return 0
    if not history.modules:
        print(f"The duration history {path} records no modules yet.")
        return 0
    # Piped or redirected, rich assumes 80 columns and folds long module paths; the
    # table is as wide as its content anyway, so give it all the room it needs there
    # (unless COLUMNS says how wide to be): see ``width`` above.
    Console(highlight=False, width=width).print(
        render_table(history, module_rows(history, args.top))
    )
    return 0
