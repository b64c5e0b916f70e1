"""Every option and ini key, registered, parsed and validated once. Runs in the controller.

:func:`Options.from_config` is the only place that reads ``config.option`` or
``config.getini`` for this plugin; everything else receives the frozen
:class:`Options`. Every invalid value raises :class:`pytest.UsageError` naming the
option and the value, so pytest exits with code 4 before any worker starts.
"""

from __future__ import annotations

from dataclasses import dataclass
import math
import os
from pathlib import Path
from typing import Final
from typing import final
from typing import Literal
from typing import TYPE_CHECKING

import pytest

from pytest_parallel_modules.isolation import ISOLATION_MODES
from pytest_parallel_modules.isolation import IsolationMode
from pytest_parallel_modules.splitting import SPLIT_MODES
from pytest_parallel_modules.splitting import SplitMode


if TYPE_CHECKING:
    from collections.abc import Callable
    from collections.abc import Mapping


#: The option group's name in ``pytest --help``.
GROUP_NAME: Final = "parallel-modules"

PARALLEL_MODULES_OPTION: Final = "--parallel-modules"
PARALLEL_MODULES_INI: Final = "parallel_modules"
MODULE_ISOLATION_OPTION: Final = "--module-isolation"
MODULE_ISOLATION_INI: Final = "module_isolation"
WORKTREE_COPY_INI: Final = "worktree_copy"
KEEP_FAILED_WORKTREES_OPTION: Final = "--keep-failed-worktrees"
MODULE_REPORT_DIR_OPTION: Final = "--module-report-dir"
MODULE_REPORT_DIR_INI: Final = "module_report_dir"
MODULE_REPORT_MD_OPTION: Final = "--module-report-md"
MODULE_REPORT_HTML_OPTION: Final = "--module-report-html"
MODULE_REPORT_HTML_INI: Final = "module_report_html"
MODULE_TRACE_OPTION: Final = "--module-trace"
MODULE_TRACE_INI: Final = "module_trace"
#: The HTML report's name in the report directory (always written there).
HTML_REPORT_FILE_NAME: Final = "report.html"
MODULE_SHARD_OPTION: Final = "--module-shard"
#: Where reports go by default, inside pytest's cache directory (always the last run).
REPORT_CACHE_DIR: Final = "parallel-modules-report"
MODULE_TIMEOUT_OPTION: Final = "--module-timeout"
MODULE_TIMEOUT_INI: Final = "module_timeout"
WORKER_RESTARTS_OPTION: Final = "--module-worker-restarts"
WORKER_RESTARTS_INI: Final = "module_worker_restarts"
FAIL_FAST_OPTION: Final = "--fail-fast-modules"
FAIL_FAST_INI: Final = "fail_fast_modules"
FAIL_FAST_GRACE_OPTION: Final = "--fail-fast-grace"
FAIL_FAST_GRACE_INI: Final = "fail_fast_grace"
DEFAULT_FAIL_FAST_GRACE_S: Final = 10.0
RERUN_FAILED_OPTION: Final = "--rerun-failed-modules"
RERUN_FAILED_NONE_OPTION: Final = "--rerun-failed-modules-none"
RETRIES_OPTION: Final = "--module-retries"
RETRIES_INI: Final = "module_retries"
RETRIES_STRICT_OPTION: Final = "--module-retries-strict"
RETRIES_STRICT_INI: Final = "module_retries_strict"
MODULE_DURATIONS_OPTION: Final = "--module-durations"
MODULE_DURATIONS_INI: Final = "module_durations"
#: Where the history lives by default, inside pytest's cache directory.
HISTORY_CACHE_DIR: Final = "parallel-modules"
HISTORY_FILE_NAME: Final = "durations.json"
SPLIT_MODULES_OPTION: Final = "--split-modules"
SPLIT_MODULES_INI: Final = "split_modules"
SPLIT_KEEP_WHOLE_INI: Final = "split_modules_keep_whole"
FAILED_MODULES_FILE_NAME: Final = "failed-modules.json"


def register_options(parser: pytest.Parser) -> None:
    """Add this plugin's command-line options and ini keys to pytest's parser."""
    group = parser.getgroup(
        GROUP_NAME, "run test modules on parallel workers (pytest-parallel-modules)"
    )
    group.addoption(
        PARALLEL_MODULES_OPTION,
        action="store",
        dest="parallel_modules",
        default=None,
        metavar="N|auto",
        help="Run test modules on N parallel workers ('auto': one per CPU this process may use). "
        f"Default: the ini key {PARALLEL_MODULES_INI}, else off.",
    )
    group.addoption(
        MODULE_DURATIONS_OPTION,
        action="store",
        dest="module_durations",
        default=None,
        metavar="PATH",
        help="Read and update the duration history at PATH (e.g. a file you commit). "
        "Default: the ini key module_durations, else inside pytest's cache directory.",
    )
    parser.addini(
        MODULE_DURATIONS_INI,
        help="Default for --module-durations, relative to the ini file's directory.",
        default="",
    )
    group.addoption(
        MODULE_ISOLATION_OPTION,
        action="store",
        dest="module_isolation",
        default=None,
        metavar="worktree|none",
        help="Where workers run: 'worktree' (default inside a git work tree: each worker in its "
        "own worktree of a snapshot of the working tree) or 'none' (in place).",
    )
    group.addoption(
        KEEP_FAILED_WORKTREES_OPTION,
        action="store_true",
        dest="keep_failed_worktrees",
        default=False,
        help="Leave the worktree of a worker that ran a failed module as it is, and print its path.",
    )
    group.addoption(
        MODULE_REPORT_DIR_OPTION,
        action="store",
        dest="module_report_dir",
        default=None,
        metavar="DIR",
        help="Write one JSON report per module to DIR/modules/ and the merged report to "
        "DIR/report.json. Default: the ini key module_report_dir, else inside pytest's cache directory.",
    )
    group.addoption(
        MODULE_REPORT_MD_OPTION,
        action="store",
        dest="module_report_md",
        default=None,
        metavar="PATH",
        help="Also write the run's summary as Markdown to PATH (and append it to "
        "$GITHUB_STEP_SUMMARY when that is set).",
    )
    group.addoption(
        MODULE_REPORT_HTML_OPTION,
        action="store",
        dest="module_report_html",
        default=None,
        metavar="PATH",
        help=f"Also write the self-contained HTML report (timeline, summary, failures, trends) to "
        f"PATH; the report directory always holds {HTML_REPORT_FILE_NAME}. "
        f"Default: the ini key {MODULE_REPORT_HTML_INI}.",
    )
    group.addoption(
        MODULE_TRACE_OPTION,
        action="store",
        dest="module_trace",
        default=None,
        metavar="PATH",
        help="Write the run's timeline to PATH in the Chrome trace event format (open it in "
        f"Perfetto or chrome://tracing). Default: the ini key {MODULE_TRACE_INI}.",
    )
    parser.addini(
        MODULE_REPORT_HTML_INI,
        help=f"Default for {MODULE_REPORT_HTML_OPTION}, relative to the ini file's directory.",
        default="",
    )
    parser.addini(
        MODULE_TRACE_INI,
        help=f"Default for {MODULE_TRACE_OPTION}, relative to the ini file's directory.",
        default="",
    )
    group.addoption(
        MODULE_SHARD_OPTION,
        action="store",
        dest="module_shard",
        default=None,
        metavar="K/N|auto",
        help="Run only share K of N of the modules, balanced by the duration history "
        "(every machine computes the same partition; the history is read, not saved). "
        "'auto': K and N from the CI's parallel-job variables (GitLab, CircleCI, Buildkite).",
    )
    group.addoption(
        MODULE_TIMEOUT_OPTION,
        action="store",
        dest="module_timeout",
        default=None,
        metavar="SECONDS",
        help="Stop a module that runs longer than SECONDS: its worker's stacks are dumped, the worker "
        "is killed, the running test fails and the run goes on. Default: ini module_timeout, else none.",
    )
    group.addoption(
        WORKER_RESTARTS_OPTION,
        action="store",
        dest="module_worker_restarts",
        default=None,
        metavar="N",
        help="Replace at most N crashed or timed-out workers; past that, modules left are not run. "
        "Default: ini module_worker_restarts, else the number of workers.",
    )
    group.addoption(
        FAIL_FAST_OPTION,
        action="store_true",
        dest="fail_fast_modules",
        default=None,
        help="Stop the run as soon as a module fails: that module runs to its end, other running "
        "modules stop after their current test, no other module starts. Modules that failed last "
        "time run first.",
    )
    group.addoption(
        FAIL_FAST_GRACE_OPTION,
        action="store",
        dest="fail_fast_grace",
        default=None,
        metavar="SECONDS",
        help=f"With {FAIL_FAST_OPTION}: kill a worker still busy SECONDS after the stop "
        f"(default {DEFAULT_FAIL_FAST_GRACE_S:g}).",
    )
    group.addoption(
        RERUN_FAILED_OPTION,
        action="store_true",
        dest="rerun_failed_modules",
        default=False,
        help="Run only the modules that had a failing or erroring test in the last recorded run, in full.",
    )
    group.addoption(
        RERUN_FAILED_NONE_OPTION,
        action="store",
        dest="rerun_failed_modules_none",
        default="all",
        choices=("all", "none"),
        help=f"With {RERUN_FAILED_OPTION} and no module that failed last time: run all modules "
        "(default) or none.",
    )
    group.addoption(
        RETRIES_OPTION,
        action="store",
        dest="module_retries",
        default=None,
        metavar="N",
        help="Run a module with failures again, in full, on a fresh worker, up to N times; a test "
        "that failed and then passed is reported flaky (and passes). Default: ini module_retries, else 0.",
    )
    group.addoption(
        RETRIES_STRICT_OPTION,
        action="store_true",
        dest="module_retries_strict",
        default=None,
        help="Flaky tests (failed, then passed on a retry) fail the run.",
    )
    group.addoption(
        SPLIT_MODULES_OPTION,
        action="store",
        dest="split_modules",
        default=None,
        metavar="auto|off|always",
        help="Run a module that holds more than its fair share of the work (total / N, from the "
        "duration history) as several parts on several workers: 'auto' (default) when its "
        "structure shows that is safe, 'always' even when not, 'off' never. "
        f"Default: the ini key {SPLIT_MODULES_INI}, else auto.",
    )
    parser.addini(
        SPLIT_MODULES_INI,
        help=f"Default for {SPLIT_MODULES_OPTION}: 'auto', 'off' or 'always'.",
        default="",
    )
    parser.addini(
        SPLIT_KEEP_WHOLE_INI,
        type="linelist",
        help=f"Glob patterns of module paths (relative to the rootdir) that {SPLIT_MODULES_OPTION} "
        "never splits.",
        default=[],
    )
    parser.addini(
        FAIL_FAST_INI, type="bool", help=f"Default for {FAIL_FAST_OPTION}.", default=False
    )
    parser.addini(
        FAIL_FAST_GRACE_INI, help=f"Default for {FAIL_FAST_GRACE_OPTION} (seconds).", default=""
    )
    parser.addini(RETRIES_INI, help=f"Default for {RETRIES_OPTION}.", default="")
    parser.addini(
        RETRIES_STRICT_INI, type="bool", help=f"Default for {RETRIES_STRICT_OPTION}.", default=False
    )
    parser.addini(MODULE_TIMEOUT_INI, help="Default for --module-timeout (seconds).", default="")
    parser.addini(WORKER_RESTARTS_INI, help="Default for --module-worker-restarts.", default="")
    parser.addini(
        MODULE_REPORT_DIR_INI,
        help="Default for --module-report-dir, relative to the ini file's directory.",
        default="",
    )
    parser.addini(
        MODULE_ISOLATION_INI,
        help="Default for --module-isolation: 'worktree' or 'none'.",
        default="",
    )
    parser.addini(
        WORKTREE_COPY_INI,
        type="linelist",
        help="Glob patterns (relative to the repository root) of git-ignored files each worktree needs "
        "(built extensions, generated code, local data); copied into each worktree.",
        default=[],
    )
    parser.addini(
        PARALLEL_MODULES_INI,
        help="Default for --parallel-modules: a positive whole number or 'auto'.",
        default="",
    )


def available_cpus() -> int:
    """The number of CPUs this process may run on (its affinity mask, where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)  # pragma: no cover - macOS and Windows


def parse_worker_count(raw: str, *, source: str, cpus: int) -> int:
    """Parse ``N`` or ``auto`` into a worker count.

    :param raw: the value as the user wrote it.
    :param source: how the user wrote it (``--parallel-modules`` or ``ini parallel_modules``),
        for the error message.
    :param cpus: what ``auto`` means.
    :raises pytest.UsageError: unless ``raw`` is ``auto`` or a whole number >= 1.
    """
    value = raw.strip()
    if value.lower() == "auto":
        return cpus
    if value.isascii() and value.isdecimal() and int(value) >= 1:
        return int(value)
    raise pytest.UsageError(f"{source}: expected a positive whole number or 'auto', got {raw!r}")


def _reject_incompatible(config: pytest.Config, source: str) -> None:
    """Raise a usage error for options that cannot work with module-parallel runs."""
    numprocesses = config.getoption("numprocesses", None)  # pytest-xdist's -n
    if numprocesses not in (None, 0, "0"):
        raise pytest.UsageError(
            f"{source} cannot be combined with pytest-xdist's -n/--numprocesses "
            f"(got -n {numprocesses}): choose one way to run tests in parallel"
        )
    dist = config.getoption("dist", "no")
    if dist not in (None, "no"):
        raise pytest.UsageError(f"{source} cannot be combined with pytest-xdist's --dist={dist}")
    for dest, flag in (
        ("usepdb", "--pdb"),
        ("trace", "--trace"),
        ("setuponly", "--setup-only"),
        ("setupplan", "--setup-plan"),
    ):
        if config.getoption(dest, False):
            raise pytest.UsageError(
                f"{source} cannot be combined with {flag}: workers have no terminal to "
                f"interact with; run without {source} (or with -p no:pytest_parallel_modules)"
            )
    # --sw-skip and --sw-reset turn --sw on before this runs (pytest's stepwise configure).
    if config.getoption("stepwise", False):
        raise pytest.UsageError(
            f"{source} cannot be combined with --sw/--stepwise: stepwise resumes after the "
            "tests that came before the first failure in collection order, but modules run in "
            "parallel and slowest first, so tests before it may not have run; run without "
            f"{source} (or with -p no:pytest_parallel_modules)"
        )


def _isolation(config: pytest.Config) -> tuple[IsolationMode, str | None]:
    """The isolation mode, and how it was given (``None``: the default, not given at all)."""
    raw = config.getoption("module_isolation")
    source: str | None = MODULE_ISOLATION_OPTION
    if raw is None:
        ini_value = config.getini(MODULE_ISOLATION_INI)
        if isinstance(ini_value, str) and ini_value.strip():
            raw, source = ini_value.strip(), f"ini {MODULE_ISOLATION_INI}"
        else:
            raw, source = "worktree", None
    for mode in ISOLATION_MODES:
        if raw == mode:
            return mode, source
    raise pytest.UsageError(f"{source}: expected 'worktree' or 'none', got {raw!r}")


def check_isolation(options: Options, repo_root: Path | None, invocation_dir: Path) -> None:
    """Refuse worktree isolation asked for explicitly outside a git work tree. PURE.

    Called by the plugin's ``pytest_configure`` with what
    :func:`pytest_parallel_modules.worktrees.find_repo_root` found. Only the default
    falls back to running workers in place: a user who wrote
    ``--module-isolation=worktree`` (or the ini key) relies on the isolation, and a
    run without it could let tests overwrite each other's files.

    :raises pytest.UsageError: naming the option, its value and the directory.
    """
    source = options.isolation_source
    if options.isolation == "worktree" and source is not None and repo_root is None:
        raise pytest.UsageError(
            f"{source}=worktree: {invocation_dir} is not inside a git work tree, so workers "
            f"cannot run in worktrees; run inside one, or use {MODULE_ISOLATION_OPTION}=none "
            "to run them in place"
        )


#: Options that only mean something when the run is parallel (dest, option, default).
#: Given on the command line of a run that is not, they are named in one warning line.
_PARALLEL_ONLY_OPTIONS: Final[tuple[tuple[str, str, object], ...]] = (
    ("module_durations", MODULE_DURATIONS_OPTION, None),
    ("module_isolation", MODULE_ISOLATION_OPTION, None),
    ("keep_failed_worktrees", KEEP_FAILED_WORKTREES_OPTION, False),
    ("module_report_dir", MODULE_REPORT_DIR_OPTION, None),
    ("module_report_md", MODULE_REPORT_MD_OPTION, None),
    ("module_timeout", MODULE_TIMEOUT_OPTION, None),
    ("module_worker_restarts", WORKER_RESTARTS_OPTION, None),
    ("fail_fast_grace", FAIL_FAST_GRACE_OPTION, None),
    ("rerun_failed_modules_none", RERUN_FAILED_NONE_OPTION, "all"),
    ("module_retries_strict", RETRIES_STRICT_OPTION, None),
    ("split_modules", SPLIT_MODULES_OPTION, None),
)


def _inert_options(config: pytest.Config) -> tuple[str, ...]:
    """The parallel-only options given on the command line, as written (``--module-timeout=5``).

    Ini keys are left out: a project's configuration serves runs that are parallel
    and runs that are not, and a plain run need not be told about it every time.
    """
    given = []
    for dest, option, default in _PARALLEL_ONLY_OPTIONS:
        value = config.getoption(dest)
        if value is None or value == default:
            continue
        given.append(option if isinstance(value, bool) else f"{option}={value}")
    return tuple(given)


def inert_options_warning(options: Options) -> str | None:
    """The one line that says which given options a non-parallel run ignores. PURE."""
    if options.active or not options.inert_options:
        return None
    names = ", ".join(options.inert_options)
    verb = "has" if len(options.inert_options) == 1 else "have"
    return (
        f"parallel-modules: WARNING: {names} {verb} no effect: this run is not parallel "
        f"(no {PARALLEL_MODULES_OPTION}=N and no ini {PARALLEL_MODULES_INI})"
    )


def parse_split_mode(raw: str, *, source: str) -> SplitMode:
    """Parse ``auto``, ``off`` or ``always`` (any case, surrounding blanks ignored).

    :raises pytest.UsageError: for anything else, naming ``source`` and the value.
    """
    value = raw.strip().lower()
    for mode in SPLIT_MODES:
        if value == mode:
            return mode
    raise pytest.UsageError(f"{source}: expected 'auto', 'off' or 'always', got {raw!r}")


def _option_or_ini(
    config: pytest.Config, dest: str, option: str, ini: str
) -> tuple[str | None, str]:
    """The raw value of an option, else of its ini key, with how the user wrote it."""
    raw = config.getoption(dest)
    if raw is not None:
        return str(raw), option
    ini_value = config.getini(ini)
    if isinstance(ini_value, str) and ini_value.strip():
        return ini_value.strip(), f"ini {ini}"
    return None, option


def parse_positive_seconds(raw: str, *, source: str) -> float:
    """Parse a number of seconds > 0 (``30``, ``2.5``).

    :raises pytest.UsageError: for anything else (0, negatives, ``nan``, ``inf``, text).
    """
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise pytest.UsageError(f"{source}: expected a number of seconds > 0, got {raw!r}")
    return value


def parse_count(raw: str, *, source: str) -> int:
    """Parse a whole number >= 0.

    :raises pytest.UsageError: for anything else.
    """
    value = raw.strip()
    if value.isascii() and value.isdecimal():
        return int(value)
    raise pytest.UsageError(f"{source}: expected a whole number >= 0, got {raw!r}")


def parse_shard(raw: str, *, source: str = MODULE_SHARD_OPTION) -> tuple[int, int]:
    """Parse ``K/N`` (1 <= K <= N) into ``(K, N)``.

    :raises pytest.UsageError: for anything else.
    """
    index_text, slash, count_text = raw.strip().partition("/")
    valid = (
        slash
        and index_text.isascii()
        and index_text.isdecimal()
        and count_text.isascii()
        and count_text.isdecimal()
    )
    if valid:
        index, count = int(index_text), int(count_text)
        if 1 <= index <= count:
            return index, count
    raise pytest.UsageError(f"{source}: expected K/N with 1 <= K <= N (e.g. 2/4), got {raw!r}")


#: The parallel-job variables of CI services: (service, index variable, count variable,
#: the index of the first job). GitHub Actions has none: its matrix values are passed
#: on the command line (``--module-shard=${{ matrix.shard }}/4``).
CI_SHARD_VARIABLES: Final[tuple[tuple[str, str, str, int], ...]] = (
    ("GitLab CI", "CI_NODE_INDEX", "CI_NODE_TOTAL", 1),
    ("CircleCI", "CIRCLE_NODE_INDEX", "CIRCLE_NODE_TOTAL", 0),
    ("Buildkite", "BUILDKITE_PARALLEL_JOB", "BUILDKITE_PARALLEL_JOB_COUNT", 0),
)


def shard_from_environment(
    environ: Mapping[str, str], *, source: str = f"{MODULE_SHARD_OPTION}=auto"
) -> tuple[int, int, str]:
    """Read ``--module-shard=auto``'s K and N from a CI's variables. PURE.

    The first service of :data:`CI_SHARD_VARIABLES` whose count variable is set
    decides. Indexes counted from 0 (CircleCI, Buildkite) are turned into K counted
    from 1. A job that is not split (GitLab sets ``CI_NODE_TOTAL=1`` and no index)
    is shard 1/1.

    :returns: ``(K, N, how they were found)``, e.g. ``(2, 4, "CircleCI:
        CIRCLE_NODE_INDEX=1, CIRCLE_NODE_TOTAL=4")``.
    :raises pytest.UsageError: naming the option when no service's variables are
        set, or when they are set but not valid.
    """
    for service, index_name, count_name, first in CI_SHARD_VARIABLES:
        raw_count = environ.get(count_name)
        raw_index = environ.get(index_name)
        if raw_count is None and raw_index is None:
            continue
        found = ", ".join(
            f"{name}={value}"
            for name, value in ((index_name, raw_index), (count_name, raw_count))
            if value is not None
        )
        count = _whole_number(raw_count)
        if raw_index is None and count == 1:
            return 1, 1, f"{service}: {found}"
        index = _whole_number(raw_index)
        if count is None or index is None or count < 1 or not first <= index < count + first:
            last = count_name if first == 1 else f"{count_name} - 1"
            raise pytest.UsageError(
                f"{source}: {service}'s variables do not name a share ({found}); expected "
                f"{index_name} from {first} to {last}, and {count_name} >= 1"
            )
        return index - first + 1, count, f"{service}: {found}"
    services = "; ".join(
        f"{service} {index_name}/{count_name}"
        for service, index_name, count_name, _ in CI_SHARD_VARIABLES
    )
    raise pytest.UsageError(
        f"{source}: no CI parallel-job variables found ({services}); "
        f"elsewhere, pass the share: {MODULE_SHARD_OPTION}=K/N"
    )


def _whole_number(raw: str | None) -> int | None:
    if raw is None:
        return None
    text = raw.strip()
    return int(text) if text.isascii() and text.isdecimal() else None


def _shard(config: pytest.Config, environ: Mapping[str, str]) -> tuple[tuple[int, int], str] | None:
    """``--module-shard``: the share and how it was given, for the header."""
    raw = config.getoption("module_shard")
    if raw is None:
        return None
    if str(raw).strip() == "auto":
        index, count, found = shard_from_environment(environ)
        return (index, count), f"{MODULE_SHARD_OPTION}=auto, {found}"
    index, count = parse_shard(str(raw))
    return (index, count), f"{MODULE_SHARD_OPTION}={raw}"


def _configured_path(
    config: pytest.Config, dest: str, option: str, ini: str
) -> tuple[Path, str, str] | None:
    """A path option, else its ini key: ``(path, how it was given, the raw value)``.

    Command-line paths are relative to the invocation directory, ini paths to the
    ini file's directory (the rootdir without one), as pytest's own options are.
    """
    raw = config.getoption(dest)
    if raw is not None:
        return config.invocation_params.dir / Path(str(raw)).expanduser(), option, str(raw)
    ini_value = config.getini(ini)
    if isinstance(ini_value, str) and ini_value.strip():
        base = config.inipath.parent if config.inipath is not None else config.rootpath
        return base / Path(ini_value.strip()).expanduser(), f"ini {ini}", ini_value
    return None


def _report_dir(config: pytest.Config) -> Path | None:
    configured = _configured_path(
        config, "module_report_dir", MODULE_REPORT_DIR_OPTION, MODULE_REPORT_DIR_INI
    )
    if configured is not None:
        return _writable_dir_path(*configured)
    cache = getattr(config, "cache", None)
    if cache is None:
        return None
    directory: Path = cache.mkdir(REPORT_CACHE_DIR)
    return directory


def _junit_xml_path(config: pytest.Config, raw: str) -> Path:
    """Where pytest's junitxml plugin writes ``--junitxml=raw``: variables and ``~`` expanded."""
    expanded = os.path.expanduser(os.path.expandvars(raw))
    return Path(os.path.normpath(config.invocation_params.dir / expanded))


def _writable_dir_path(path: Path, source: str, raw: str) -> Path:
    """Check that ``path`` is, or can be created as, a writable directory."""
    if path.exists() and not path.is_dir():
        raise pytest.UsageError(f"{source}: {raw!r} is a file, expected a directory")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise pytest.UsageError(
            f"{source}: {raw!r} cannot be created ({existing} is not a directory)"
        )
    if not os.access(existing, os.W_OK):
        raise pytest.UsageError(
            f"{source}: {raw!r} cannot be created or written ({existing} is not writable)"
        )
    return path


def _writable_file_path(path: Path, source: str, raw: str) -> Path:
    """Check that ``path`` can be written as a file (its directory exists and is writable)."""
    if path.is_dir():
        raise pytest.UsageError(f"{source}: {raw!r} is a directory, expected a file path")
    directory = path.parent
    if not directory.is_dir():
        raise pytest.UsageError(f"{source}: the directory of {raw!r} ({directory}) does not exist")
    if not os.access(directory, os.W_OK):
        raise pytest.UsageError(f"{source}: the directory of {raw!r} ({directory}) is not writable")
    return path


def _output_file(config: pytest.Config, dest: str, option: str, ini: str) -> Path | None:
    """A file the run writes, from its option or ini key; checked now so a bad path exits 4."""
    configured = _configured_path(config, dest, option, ini)
    return None if configured is None else _writable_file_path(*configured)


def _history_path(config: pytest.Config) -> Path | None:
    """Where to read and save the duration history; None when there is nowhere to keep it."""
    configured = _configured_path(
        config, "module_durations", MODULE_DURATIONS_OPTION, MODULE_DURATIONS_INI
    )
    if configured is not None:
        return _writable_file_path(*configured)
    cache = getattr(config, "cache", None)  # None under -p no:cacheprovider
    if cache is None:
        return None
    directory: Path = cache.mkdir(HISTORY_CACHE_DIR)
    return directory / HISTORY_FILE_NAME


@final
@dataclass(frozen=True, slots=True)
class Options:
    """The plugin's settings for one run, parsed once from the command line and ini file."""

    #: How many worker processes to start; ``None`` when the plugin is off for this run.
    workers: int | None
    #: How the worker count was given, for the header (``"--parallel-modules=auto"``).
    workers_source: str
    #: The count is ``auto`` (given, or implied by an option that needs the controller):
    #: a selection too small to gain from workers may run in this process.
    auto: bool = False
    #: The duration history file; None when the run keeps no history (no cache directory).
    history_path: Path | None = None
    #: Where workers run (``worktree`` falls back to in place outside a git work tree,
    #: unless it was given explicitly: see :func:`check_isolation`).
    isolation: IsolationMode = "worktree"
    #: How ``isolation`` was given (``"--module-isolation"``, ``"ini module_isolation"``);
    #: ``None`` for the default.
    isolation_source: str | None = None
    #: Globs of ignored paths copied into each worktree (ini ``worktree_copy``).
    worktree_copy: tuple[str, ...] = ()
    #: Leave the worktrees of failed modules in place (``--keep-failed-worktrees``).
    keep_failed_worktrees: bool = False
    #: Directory for per-module and merged JSON reports; None when there is nowhere to write.
    report_dir: Path | None = None
    #: Where to write the Markdown summary, if anywhere.
    report_md: Path | None = None
    #: Where else to write the HTML report (the report directory always holds one).
    report_html: Path | None = None
    #: Where to write the Chrome trace of the run, if anywhere.
    trace: Path | None = None
    #: ``(K, N)``: run only share K of N of the modules.
    shard: tuple[int, int] | None = None
    #: How the share was given, for the header (``"--module-shard=auto, GitLab CI: ..."``).
    shard_source: str = ""
    #: Seconds a module may run before its worker is stopped; None for no limit.
    module_timeout: float | None = None
    #: How many crashed or timed-out workers may be replaced; None: one per worker.
    worker_restarts: int | None = None
    #: Stop the run as soon as a module fails (``--fail-fast-modules``).
    fail_fast: bool = False
    #: Seconds a worker may stay busy after a fail-fast stop before it is killed.
    fail_fast_grace: float = DEFAULT_FAIL_FAST_GRACE_S
    #: Run only the modules that failed last time (``--rerun-failed-modules``).
    rerun_failed: bool = False
    #: What ``--rerun-failed-modules`` runs when nothing failed last time.
    rerun_failed_none: Literal["all", "none"] = "all"
    #: How many times a module with failures is run again.
    retries: int = 0
    #: Flaky tests fail the run.
    retries_strict: bool = False
    #: The file holding which modules failed in the last recorded run.
    failed_modules_path: Path | None = None
    #: pytest's ``--junitxml`` file (retried tests' attempts are added to it).
    junit_xml: Path | None = None
    #: pytest's ``--junit-prefix``.
    junit_prefix: str | None = None
    #: Parallel-only options given on the command line of a run that is not parallel.
    inert_options: tuple[str, ...] = ()
    #: When a module that holds more than its fair share of the work runs as parts.
    split_modules: SplitMode = "auto"
    #: Globs of module paths that are never split (ini ``split_modules_keep_whole``).
    split_keep_whole: tuple[str, ...] = ()

    @property
    def active(self) -> bool:
        """True when this run is handed to parallel workers."""
        return self.workers is not None

    @classmethod
    def from_config(
        cls,
        config: pytest.Config,
        *,
        cpus: Callable[[], int] = available_cpus,
        environ: Mapping[str, str] = os.environ,
    ) -> Options:
        """Read and validate every option of this plugin.

        :param environ: the environment ``--module-shard=auto`` reads.
        :raises pytest.UsageError: for any invalid value or incompatible option.
        """
        shard_given = _shard(config, environ)
        shard, shard_source = (None, "") if shard_given is None else shard_given
        isolation, isolation_source = _isolation(config)
        raw_timeout, timeout_source = _option_or_ini(
            config, "module_timeout", MODULE_TIMEOUT_OPTION, MODULE_TIMEOUT_INI
        )
        module_timeout = (
            None
            if raw_timeout is None
            else parse_positive_seconds(raw_timeout, source=timeout_source)
        )
        raw_restarts, restarts_source = _option_or_ini(
            config, "module_worker_restarts", WORKER_RESTARTS_OPTION, WORKER_RESTARTS_INI
        )
        worker_restarts = (
            None if raw_restarts is None else parse_count(raw_restarts, source=restarts_source)
        )
        raw = config.getoption("parallel_modules")
        source = PARALLEL_MODULES_OPTION
        if raw is None:
            ini_value = config.getini(PARALLEL_MODULES_INI)
            if isinstance(ini_value, str) and ini_value.strip():
                raw = ini_value
                source = f"ini {PARALLEL_MODULES_INI}"
        fail_fast = bool(config.getoption("fail_fast_modules") or config.getini(FAIL_FAST_INI))
        raw_grace, grace_source = _option_or_ini(
            config, "fail_fast_grace", FAIL_FAST_GRACE_OPTION, FAIL_FAST_GRACE_INI
        )
        fail_fast_grace = (
            DEFAULT_FAIL_FAST_GRACE_S
            if raw_grace is None
            else parse_positive_seconds(raw_grace, source=grace_source)
        )
        raw_split, split_source = _option_or_ini(
            config, "split_modules", SPLIT_MODULES_OPTION, SPLIT_MODULES_INI
        )
        split_modules = (
            "auto" if raw_split is None else parse_split_mode(raw_split, source=split_source)
        )
        split_keep_whole = tuple(
            str(pattern).strip()
            for pattern in config.getini(SPLIT_KEEP_WHOLE_INI)
            if str(pattern).strip()
        )
        rerun_failed = bool(config.getoption("rerun_failed_modules"))
        rerun_failed_none: Literal["all", "none"] = (
            "none" if config.getoption("rerun_failed_modules_none") == "none" else "all"
        )
        raw_retries, retries_source = _option_or_ini(
            config, "module_retries", RETRIES_OPTION, RETRIES_INI
        )
        retries = 0 if raw_retries is None else parse_count(raw_retries, source=retries_source)
        retries_strict = bool(
            config.getoption("module_retries_strict") or config.getini(RETRIES_STRICT_INI)
        )
        implied_by = [
            flag
            for flag, given in (
                (MODULE_SHARD_OPTION, shard is not None),
                (FAIL_FAST_OPTION, fail_fast),
                (RERUN_FAILED_OPTION, rerun_failed),
                (RETRIES_OPTION, retries > 0),
            )
            if given
        ]
        if raw is None and implied_by:
            # Options that need the controller turn it on with one worker per CPU.
            raw = "auto"
            source = f"implied by {implied_by[0]}"
        workers = None if raw is None else parse_worker_count(str(raw), source=source, cpus=cpus())
        raw_md = config.getoption("module_report_md")
        report_md = (
            None
            if raw_md is None
            else _writable_file_path(
                config.invocation_params.dir / Path(str(raw_md)).expanduser(),
                MODULE_REPORT_MD_OPTION,
                str(raw_md),
            )
        )
        report_html = _output_file(
            config, "module_report_html", MODULE_REPORT_HTML_OPTION, MODULE_REPORT_HTML_INI
        )
        trace = _output_file(config, "module_trace", MODULE_TRACE_OPTION, MODULE_TRACE_INI)
        if workers is None:
            # Checked as a parallel run would check them, though this run ignores them.
            for dest, option, ini in (
                ("module_report_dir", MODULE_REPORT_DIR_OPTION, MODULE_REPORT_DIR_INI),
                ("module_durations", MODULE_DURATIONS_OPTION, MODULE_DURATIONS_INI),
            ):
                configured = _configured_path(config, dest, option, ini)
                if configured is not None and dest == "module_report_dir":
                    _writable_dir_path(*configured)
                elif configured is not None:
                    _writable_file_path(*configured)
            return cls(workers=None, workers_source="", inert_options=_inert_options(config))
        _reject_incompatible(config, source)
        # Paths inside pytest's cache are created only for a run that uses them.
        history_path = _history_path(config)
        report_dir = _report_dir(config)
        cache = getattr(config, "cache", None)
        failed_modules_path = (
            None if cache is None else cache.mkdir(HISTORY_CACHE_DIR) / FAILED_MODULES_FILE_NAME
        )
        if rerun_failed and failed_modules_path is None:
            raise pytest.UsageError(
                f"{RERUN_FAILED_OPTION} needs pytest's cache to remember failed modules "
                "(it is disabled, e.g. by -p no:cacheprovider)"
            )
        xmlpath = config.getoption("xmlpath", None)  # pytest's --junitxml
        worktree_copy = tuple(str(pattern) for pattern in config.getini(WORKTREE_COPY_INI))
        if source == PARALLEL_MODULES_OPTION:
            shown = f"{PARALLEL_MODULES_OPTION}={raw}"
        elif source.startswith("implied"):
            shown = f"auto, {source}"
        else:
            shown = f"{source}={raw}"
        return cls(
            workers=workers,
            workers_source=shown,
            auto=str(raw).strip().lower() == "auto",
            history_path=history_path,
            isolation=isolation,
            isolation_source=isolation_source,
            worktree_copy=worktree_copy,
            keep_failed_worktrees=bool(config.getoption("keep_failed_worktrees")),
            report_dir=report_dir,
            report_md=report_md,
            report_html=report_html,
            trace=trace,
            shard=shard,
            shard_source=shard_source,
            module_timeout=module_timeout,
            worker_restarts=worker_restarts,
            fail_fast=fail_fast,
            fail_fast_grace=fail_fast_grace,
            rerun_failed=rerun_failed,
            rerun_failed_none=rerun_failed_none,
            retries=retries,
            retries_strict=retries_strict,
            failed_modules_path=failed_modules_path,
            junit_xml=None if xmlpath is None else _junit_xml_path(config, str(xmlpath)),
            junit_prefix=config.getoption("junitprefix", None),
            split_modules=split_modules,
            split_keep_whole=split_keep_whole,
        )
