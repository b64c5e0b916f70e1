"""Time plain pytest, pytest-xdist and --parallel-modules on one suite, in one sitting.

Usage::

    python benchmarks/run.py --suite skewed --workers 4 --repeat 3
    python benchmarks/run.py --suite skewed --total-seconds 60 --workers 4
    python benchmarks/run.py --suite trivial --workers 2 --repeat 5
    python benchmarks/run.py --suite path/to/suite --workers 2 --skip-ours

For each tool the runner does ``--warmup`` untimed runs, then ``--repeat``
timed runs, interleaved round-robin so drift in machine load hits every tool
alike. Every run is a subprocess with cwd = the suite. It checks that every run
reports the same per-test outcomes (from ``--junitxml``) and exits 1 if not.

The table gives the median wall time, the speedup over plain pytest, and
wall / LB, where LB(N) = max(longest module, total / N) is the best any
module-level scheduler can do with N workers. Module durations come from the
plain runs (junit test times summed per file) and, for generated suites, from
``expected_durations.json`` too.
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Iterable
from collections.abc import Sequence
import dataclasses
from dataclasses import dataclass
from dataclasses import field
import datetime
import json
import os
from pathlib import Path
import shutil
import statistics
import subprocess
import sys
import time
from typing import Any
from typing import Final
import xml.etree.ElementTree as ET

# benchmarks/ is not a package: running this file puts its directory on sys.path.
import generate_suite


BENCHMARKS_DIR: Final = Path(__file__).resolve().parent
WORK_DIR: Final = BENCHMARKS_DIR / ".work"
GENERATOR: Final = BENCHMARKS_DIR / "generate_suite.py"
EXPECTED_FILE: Final = "expected_durations.json"

#: Exit codes: outcomes differ between tools / a run could not be measured at all.
EXIT_MISMATCH: Final = 1
EXIT_BROKEN: Final = 2

#: Passed to every run. Collection order is part of what is measured (the slowest
#: modules come last), so pytest-randomly, if installed, must not shuffle it;
#: ``-p no:NAME`` is accepted whether or not NAME is installed.
COMMON_ARGS: Final = ("-q", "-p", "no:randomly")

#: (classname, name, outcome) of one junit testcase.
Outcome = tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class Tool:
    """One way of running the suite."""

    name: str
    #: pytest arguments that select this tool, given the worker count.
    args: tuple[str, ...]


def make_tools(workers: int, skip_xdist: bool, skip_ours: bool) -> list[Tool]:
    tools = [Tool("pytest", ())]
    if not skip_xdist:
        tools.append(Tool("xdist", ("-n", str(workers), "--dist", "loadfile")))
    if not skip_ours:
        tools.append(Tool("parallel-modules", (f"--parallel-modules={workers}",)))
    return tools


@dataclass(frozen=True, slots=True)
class RunResult:
    """What one pytest subprocess did."""

    tool: str
    label: str
    wall: float
    returncode: int
    outcomes: Counter[Outcome]
    #: Seconds per module file: junit testcase times (setup + call + teardown) summed.
    module_seconds: dict[str, float]
    #: --parallel-modules only, from its JSON report: seconds from spawning pytest to the
    #: first module's start (interpreter, collection, worker start-up), and from the first
    #: module's start to the last one's end (what the schedule decides).
    startup: float | None = None
    span: float | None = None


@dataclass(slots=True)
class Sitting:
    """All runs of one invocation, warm-ups kept apart from timed runs."""

    warmups: dict[str, list[RunResult]] = field(default_factory=dict)
    timed: dict[str, list[RunResult]] = field(default_factory=dict)


# --- suites -----------------------------------------------------------------------------


def preset_generator_args(args: argparse.Namespace) -> list[str] | None:
    """Return generator arguments for a preset name, or None if ``--suite`` is a directory."""
    if args.suite == "skewed":
        return [
            "--modules", "20", "--tests-per-module", "5", "--seed", str(args.seed),
            "--total-seconds", str(args.total_seconds), "--cpu-fraction", str(args.cpu_fraction),
            "--failing", str(args.failing),
        ]  # fmt: skip
    if args.suite == "trivial":
        return [
            "--modules", "200", "--tests-per-module", "20", "--seed", str(args.seed),
            "--failing", str(args.failing), "--trivial",
        ]  # fmt: skip
    return None


def preset_dir(args: argparse.Namespace) -> Path:
    """A directory per distinct preset configuration, so suites are reused, not regenerated."""
    name = f"{args.suite}-seed{args.seed}"
    if args.suite == "skewed":
        name += f"-{args.total_seconds:g}s"
        if args.cpu_fraction:
            name += f"-cpu{args.cpu_fraction:g}"
    if args.failing:
        name += f"-fail{args.failing}"
    return WORK_DIR / "suites" / name


def generate(outdir: Path, generator_args: list[str]) -> None:
    command = [sys.executable, str(GENERATOR), str(outdir), *generator_args, "--force"]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)


def release_worktrees(suite: Path) -> None:
    """Remove the worktree slots our plugin keeps for ``suite`` before it is regenerated.

    The pool lives outside the suite (in the user's cache directory), so deleting
    the suite alone would leave its slots behind. Best effort: without the plugin
    installed there is nothing to remove.
    """
    subprocess.run(
        [sys.executable, "-m", "pytest_parallel_modules", "clean"],
        cwd=suite,
        capture_output=True,
        check=False,
    )


def read_expected(suite: Path) -> dict[str, Any]:
    """The generator's description of ``suite`` (params, per-module seconds), or {}."""
    try:
        document = json.loads((suite / EXPECTED_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return document if isinstance(document, dict) else {}


def expected_module_seconds(suite: Path) -> dict[str, float] | None:
    modules = read_expected(suite).get("modules")
    if not isinstance(modules, dict):
        return None
    return {str(module): float(seconds) for module, seconds in modules.items()}


def prepare_preset(args: argparse.Namespace, generator_args: list[str]) -> Path:
    """Generate the preset suite unless an identical one exists; start with no pytest cache.

    Reusing an identical suite keeps its git repository (and so any worktrees a
    plugin keeps for it) stable across sittings. Its cache is deleted so each
    sitting starts without duration history: the warm-up shows the cold run.
    """
    suite = preset_dir(args)
    # The generator's own parser says what these arguments mean, defaults included.
    _, params, _ = generate_suite.parse_args([str(suite), *generator_args])
    if read_expected(suite).get("params") != dataclasses.asdict(params):
        if (suite / ".git").is_dir():
            release_worktrees(suite)
        generate(suite, generator_args)
    shutil.rmtree(suite / ".pytest_cache", ignore_errors=True)
    return suite


# --- running and parsing ----------------------------------------------------------------


def pytest_env() -> dict[str, str]:
    """The caller's environment without variables that would change what pytest runs.

    PYTHONDONTWRITEBYTECODE goes too: with it, every run (and every worker) compiles
    and assertion-rewrites every test module again, which a developer's machine,
    where the warm-up leaves ``__pycache__`` behind, does not do.
    """
    env = dict(os.environ)
    for name in (
        "PYTEST_ADDOPTS",
        "PYTEST_PLUGINS",
        "PYTEST_XDIST_AUTO_NUM_WORKERS",
        "PYTHONDONTWRITEBYTECODE",
    ):
        env.pop(name, None)
    return env


def run_once(suite: Path, tool: Tool, label: str, results: Path, timeout: float) -> RunResult:
    """Run pytest once as a subprocess and time it from spawn to exit.

    :raises RuntimeError: if pytest did not finish normally (exit code other than
        0 "all passed" or 1 "some failed") or wrote no junit file.
    """
    junit = results / f"{tool.name}-{label}.xml"
    log = results / f"{tool.name}-{label}.log"
    report_dir = results / f"{tool.name}-{label}-report"
    ours = tool.name == "parallel-modules"
    command = [
        sys.executable, "-m", "pytest", *COMMON_ARGS,
        # xunit1 keeps the testcase "file" attribute: per-module times without guessing.
        "-o", "junit_family=xunit1", f"--junitxml={junit}",
        *tool.args,
        *((f"--module-report-dir={report_dir}",) if ours else ()),
    ]  # fmt: skip
    spawned = time.time()
    start = time.perf_counter()
    completed = subprocess.run(
        command,
        cwd=suite,
        env=pytest_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )
    wall = time.perf_counter() - start
    log.write_text(completed.stdout)
    if completed.returncode not in (0, 1) or not junit.is_file():
        tail = "\n".join(completed.stdout.splitlines()[-25:])
        raise RuntimeError(
            f"{' '.join(command)}\nexited {completed.returncode} in {suite}; log: {log}\n{tail}"
        )
    outcomes, module_seconds = parse_junit(junit)
    startup, span = schedule_times(report_dir / "report.json", spawned) if ours else (None, None)
    return RunResult(
        tool.name, label, wall, completed.returncode, outcomes, module_seconds, startup, span
    )


def schedule_times(report: Path, spawned: float) -> tuple[float | None, float | None]:
    """Start-up and span of a --parallel-modules run, from its merged JSON report."""
    try:
        modules = json.loads(report.read_text())["modules"]
    except (OSError, ValueError, KeyError):
        return None, None
    starts = [
        datetime.datetime.fromisoformat(module["started"]).timestamp()
        for module in modules
        if module.get("started")
    ]
    ends = [
        datetime.datetime.fromisoformat(module["finished"]).timestamp()
        for module in modules
        if module.get("finished")
    ]
    if not starts or not ends:
        return None, None
    return min(starts) - spawned, max(ends) - min(starts)


def testcase_outcome(testcase: ET.Element) -> str:
    """Map a junit testcase to passed / failed / error / skipped / xfailed (joined if several)."""
    kinds = []
    for child in testcase:
        if child.tag == "skipped":
            kinds.append("xfailed" if child.get("type") == "pytest.xfail" else "skipped")
        elif child.tag in ("failure", "error"):
            kinds.append("failed" if child.tag == "failure" else "error")
    return "+".join(sorted(kinds)) or "passed"


def module_key(testcase: ET.Element) -> str:
    """The module a testcase belongs to: its file, else its dotted classname without classes."""
    file = testcase.get("file")
    if file:
        return file
    parts = testcase.get("classname", "").split(".")
    while len(parts) > 1 and parts[-1][:1].isupper():
        parts.pop()
    return "/".join(parts) + ".py"


def parse_junit(path: Path) -> tuple[Counter[Outcome], dict[str, float]]:
    """Return the outcome multiset and per-module seconds of a junit file."""
    outcomes: Counter[Outcome] = Counter()
    module_seconds: dict[str, float] = {}
    for testcase in ET.parse(path).iter("testcase"):
        classname, name = testcase.get("classname", ""), testcase.get("name", "")
        outcomes[classname, name, testcase_outcome(testcase)] += 1
        module = module_key(testcase)
        module_seconds[module] = module_seconds.get(module, 0.0) + float(testcase.get("time", 0))
    return outcomes, module_seconds


def run_sitting(
    suite: Path, tools: Sequence[Tool], repeat: int, warmup: int, results: Path, timeout: float
) -> Sitting:
    """Warm up every tool, then time ``repeat`` rounds, one run per tool per round."""
    sitting = Sitting()
    # Ours warms up first so its first run sees no history written by another tool's run.
    for tool in sorted(tools, key=lambda tool: tool.name != "parallel-modules"):
        for index in range(warmup):
            result = run_once(suite, tool, f"warmup{index}", results, timeout)
            sitting.warmups.setdefault(tool.name, []).append(result)
            print(f"  warm-up {tool.name:<17} {result.wall:7.2f} s", flush=True)
    for round_index in range(repeat):
        for tool in tools:
            result = run_once(suite, tool, f"run{round_index}", results, timeout)
            sitting.timed.setdefault(tool.name, []).append(result)
            print(
                f"  run {round_index + 1}/{repeat} {tool.name:<17} {result.wall:7.2f} s", flush=True
            )
    return sitting


# --- comparing and reporting ------------------------------------------------------------


def outcome_problems(runs: Iterable[RunResult]) -> list[str]:
    """Describe every run whose outcomes or exit code differ from the first run's."""
    runs = list(runs)
    reference = runs[0]
    problems = []
    for run in runs[1:]:
        if run.outcomes != reference.outcomes:
            missing = reference.outcomes - run.outcomes
            extra = run.outcomes - reference.outcomes
            problems.append(
                f"{run.tool} {run.label}: outcomes differ from {reference.tool} {reference.label}"
                f"\n    only in {reference.tool}: {sorted(missing.elements())[:10]}"
                f"\n    only in {run.tool}: {sorted(extra.elements())[:10]}"
            )
        elif run.returncode != reference.returncode:
            problems.append(
                f"{run.tool} {run.label}: exit code {run.returncode},"
                f" {reference.tool} {reference.label} exited {reference.returncode}"
            )
    return problems


def lower_bound(durations: Iterable[float], workers: int) -> float:
    """LB(N) = max(longest module, total / N): no module-level schedule can finish sooner."""
    values = list(durations)
    return max(max(values, default=0.0), sum(values) / workers)


def median_module_seconds(runs: Sequence[RunResult]) -> dict[str, float]:
    """Per-module median over runs, so one noisy run does not move the lower bound."""
    modules = {module for run in runs for module in run.module_seconds}
    return {
        module: statistics.median(run.module_seconds.get(module, 0.0) for run in runs)
        for module in sorted(modules)
    }


def ratio(numerator: float, denominator: float | None) -> str:
    if not denominator:
        return "n/a"
    return f"{numerator / denominator:.2f}"


def render_report(
    suite: Path,
    tools: Sequence[Tool],
    workers: int,
    sitting: Sitting,
    expected: dict[str, float] | None,
) -> str:
    """The Markdown block pasted into benchmarks/README.md: context lines and one table."""
    measured = median_module_seconds(sitting.timed["pytest"])
    lb_measured = lower_bound(measured.values(), workers)
    lb_expected = lower_bound(expected.values(), workers) if expected else None
    counts = Counter(outcome for (_, _, outcome) in sitting.timed["pytest"][0].outcomes.elements())
    plain_median = statistics.median(run.wall for run in sitting.timed["pytest"])
    lines = [
        f"suite `{display_path(suite)}`: {len(measured)} modules,"
        f" {', '.join(f'{n} {kind}' for kind, n in sorted(counts.items()))}",
        f"workers N = {workers}; medians of {len(sitting.timed['pytest'])} timed runs per tool",
        f"measured (plain pytest, junit times): total {sum(measured.values()):.2f} s,"
        f" longest module {max(measured.values(), default=0.0):.2f} s,"
        f" LB({workers}) = {lb_measured:.2f} s",
    ]
    if expected:
        lines.append(
            f"expected (generator): total {sum(expected.values()):.2f} s,"
            f" longest module {max(expected.values()):.2f} s, LB({workers}) = {lb_expected:.2f} s"
        )
    lines += [
        "",
        "| tool | extra args | median wall | min - max | first run | speedup"
        " | wall / LB | wall / LB exp |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for tool in tools:
        walls = [run.wall for run in sitting.timed[tool.name]]
        median = statistics.median(walls)
        first = sitting.warmups.get(tool.name)
        lines.append(
            f"| {tool.name} | `{' '.join(tool.args) or '-'}` | {median:.2f} s"
            f" | {min(walls):.2f} - {max(walls):.2f} s"
            f" | {f'{first[0].wall:.2f} s' if first else '-'}"
            f" | {ratio(plain_median, median)}x | {ratio(median, lb_measured)}"
            f" | {ratio(median, lb_expected)} |"
        )
    ours = sitting.timed.get("parallel-modules", [])
    startups = [run.startup for run in ours if run.startup is not None]
    spans = [run.span for run in ours if run.span is not None]
    if startups and spans:
        span = statistics.median(spans)
        lines += [
            "",
            f"parallel-modules, from its JSON report: start-up (spawn to first module start)"
            f" median {statistics.median(startups):.2f} s; span (first module start to last"
            f" module end) median {span:.2f} s, span / LB {ratio(span, lb_measured)}"
            f" (exp {ratio(span, lb_expected)})",
        ]
    return "\n".join(lines)


def display_path(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def check_tools_available(suite: Path, tools: Sequence[Tool]) -> str | None:
    """Return why a requested tool cannot run in ``suite``, or None if all can."""
    help_text = subprocess.run(
        [sys.executable, "-m", "pytest", "--help"],
        cwd=suite,
        env=pytest_env(),
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    # tool -> (option it adds to pytest --help, what to install, flag that skips it)
    needs = {
        "xdist": ("--dist", "pytest-xdist", "--skip-xdist"),
        "parallel-modules": ("--parallel-modules", "pytest-parallel-modules", "--skip-ours"),
    }
    for tool in tools:
        if tool.name in needs:
            option, package, skip = needs[tool.name]
            if option not in help_text:
                return f"{tool.name}: {package} is not installed here; install it or pass {skip}"
    return None


# --- command line -----------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--suite", required=True, help="skewed, trivial, or a suite directory")
    parser.add_argument("--workers", "-N", type=int, default=2, help="default: %(default)s")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per tool")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs per tool first")
    parser.add_argument("--skip-xdist", action="store_true")
    parser.add_argument("--skip-ours", action="store_true")
    preset = parser.add_argument_group("presets (ignored for a suite directory)")
    preset.add_argument("--total-seconds", type=float, default=20.0, help="skewed only")
    preset.add_argument("--cpu-fraction", type=float, default=0.0, help="skewed only")
    preset.add_argument("--failing", type=int, default=0, help="failing tests to generate")
    preset.add_argument("--seed", type=int, default=2, help="default: %(default)s")
    parser.add_argument("--timeout", type=float, default=900.0, help="per run, in seconds")
    args = parser.parse_args(argv)
    if args.workers < 1 or args.repeat < 1 or args.warmup < 0:
        parser.error("--workers and --repeat must be at least 1, --warmup at least 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    generator_args = preset_generator_args(args)
    if generator_args is not None:
        suite = prepare_preset(args, generator_args)
    else:
        suite = Path(args.suite).resolve()
        if not suite.is_dir():
            sys.exit(f"--suite: expected skewed, trivial or a directory, got {args.suite!r}")
    expected = expected_module_seconds(suite)

    tools = make_tools(args.workers, args.skip_xdist, args.skip_ours)
    problem = check_tools_available(suite, tools)
    if problem:
        print(problem, file=sys.stderr)
        return EXIT_BROKEN

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    results = WORK_DIR / "results" / f"{stamp}-{suite.name}-n{args.workers}"
    results.mkdir(parents=True)
    print(f"suite {display_path(suite)}; logs and junit files in {display_path(results)}")
    try:
        sitting = run_sitting(suite, tools, args.repeat, args.warmup, results, args.timeout)
    except (RuntimeError, subprocess.TimeoutExpired) as error:
        print(f"\nrun failed: {error}", file=sys.stderr)
        return EXIT_BROKEN

    report = render_report(suite, tools, args.workers, sitting, expected)
    print("\n" + report)
    (results / "report.md").write_text(report + "\n")
    all_runs = [
        run
        for by_tool in (sitting.warmups, sitting.timed)
        for runs in by_tool.values()
        for run in runs
    ]
    problems = outcome_problems(all_runs)
    if problems:
        print("\nOUTCOMES DIFFER:\n" + "\n".join(problems), file=sys.stderr)
        return EXIT_MISMATCH
    print(f"\noutcomes identical across all {len(all_runs)} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
