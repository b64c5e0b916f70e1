"""Unit tests for summary.py: the terminal summary, the Markdown summary and module lines."""

from __future__ import annotations

from collections.abc import Sequence
import io
import re

import pytest
from rich.console import Console

from pytest_parallel_modules.outcomes import ModuleOutcome
from pytest_parallel_modules.outcomes import ResultOutcome
from pytest_parallel_modules.reports import build_merged_report
from pytest_parallel_modules.reports import build_module_report
from pytest_parallel_modules.reports import MergedReport
from pytest_parallel_modules.reports import ModuleReport
from pytest_parallel_modules.reports import ResultRecord
from pytest_parallel_modules.summary import advice
from pytest_parallel_modules.summary import bottleneck
from pytest_parallel_modules.summary import format_counts
from pytest_parallel_modules.summary import format_duration
from pytest_parallel_modules.summary import format_module_line
from pytest_parallel_modules.summary import pass_rate
from pytest_parallel_modules.summary import print_summary
from pytest_parallel_modules.summary import ran_before_lines
from pytest_parallel_modules.summary import render_markdown
from pytest_parallel_modules.summary import render_summary
from pytest_parallel_modules.summary import rerun_command
from pytest_parallel_modules.summary import shorten_middle


T0 = 1_735_689_600.0
RERUN = "pytest --rerun-failed-modules"


def result(
    nodeid: str, outcome: ResultOutcome = "passed", message: str | None = None
) -> ResultRecord:
    failing = outcome in ("failed", "error")
    return ResultRecord(
        nodeid=nodeid,
        subtest=None,
        outcome=outcome,
        duration_s=0.1,
        when="call" if outcome != "error" else "setup",
        longrepr=f"E   {message}" if failing and message else None,
        message=message,
        stdout="",
        stderr="",
    )


def passes(count: int) -> list[ResultOutcome]:
    return ["passed"] * count


def module(
    name: str,
    duration: float,
    *outcomes: ResultOutcome,
    worker: str | None = "w1",
    outcome: ModuleOutcome | None = None,
) -> ModuleReport:
    return build_module_report(
        module=name,
        worker=worker,
        started=T0,
        finished=T0 + duration,
        results=[
            result(f"{name}::test_{i}", o, "AssertionError: boom" if o == "failed" else None)
            for i, o in enumerate(outcomes)
        ],
        outcome=outcome,
    )


def run_report(modules: Sequence[ModuleReport], *, wall_s: float, workers: int) -> MergedReport:
    return build_merged_report(
        modules=modules,
        wall_s=wall_s,
        workers=workers,
        args=[],
        rootdir="/repo",
        snapshot=None,
        created=T0,
    )


@pytest.fixture
def failing_run() -> MergedReport:
    """Four modules on two workers: one failure, one slow module that is the bottleneck."""
    return run_report(
        [
            module("tests/test_api.py", 25.0, *passes(25), worker="w2"),
            module("tests/test_db.py", 3.2, "failed", "passed", "skipped"),
            module("tests/test_io.py", 4.0, "passed"),
            module("tests/test_util.py", 1.0, "passed", "xfailed"),
        ],
        wall_s=26.0,
        workers=2,
    )


@pytest.fixture
def green_run() -> MergedReport:
    """Three balanced modules on two workers: no failure, no bottleneck."""
    return run_report(
        [
            module("tests/test_a.py", 2.0, "passed", "passed"),
            module("tests/test_b.py", 2.0, "passed"),
            module("tests/test_c.py", 2.0, "passed", "skipped"),
        ],
        wall_s=3.5,
        workers=2,
    )


def plain(renderable: object, width: int = 100) -> list[str]:
    """Render to plain text, as the terminal would show it without colour."""
    file = io.StringIO()
    console = Console(file=file, width=width, color_system=None, force_terminal=False)
    console.print(renderable)
    return [line.rstrip() for line in file.getvalue().splitlines()]


def table_rows(lines: list[str]) -> list[list[str]]:
    """Return the cells of the module table's body rows (status first)."""
    status = re.compile(r"^(PASSED|FAILED|ERROR|CRASHED|TIMEOUT|INTERRUPTED|NOT RUN) ")
    return [re.split(r"\s{2,}", line) for line in lines if status.match(line)]


# --------------------------------------------------------------------------- terminal


def test_summary_lists_failures_first_then_slowest(failing_run: MergedReport) -> None:
    lines = plain(render_summary(failing_run, verbosity=0, rerun_command=RERUN), width=120)
    assert lines[0].split() == [
        "Status",
        "Module",
        "Tests",
        "Pass",
        "Fail",
        "Skip",
        "XFail",
        "Time",
        "Worker",
    ]
    assert table_rows(lines) == [
        ["FAILED", "tests/test_db.py", "3", "1", "1", "1", "0", "3.20s", "w1"],
        ["PASSED", "tests/test_api.py", "25", "25", "0", "0", "0", "25.00s", "w2"],
        ["PASSED", "tests/test_io.py", "1", "1", "0", "0", "0", "4.00s", "w1"],
        ["PASSED", "tests/test_util.py", "2", "1", "0", "0", "1", "1.00s", "w1"],
    ]
    assert (
        "Totals: 1 failed, 28 passed, 1 skipped, 1 xfailed (31 tests in 4 modules), "
        "pass rate 96.6% (29 of 30)" in lines
    )


def test_summary_timing_bottleneck_and_rerun(failing_run: MergedReport) -> None:
    text = "\n".join(plain(render_summary(failing_run, verbosity=0, rerun_command=RERUN)))
    # No timeline: the wall is not split, and the module durations give the bound.
    assert "Wall 26.00s with 2 workers" in text
    assert "Tests' own time 3.10s (measured under contention) in 26.00s wall, 2 workers" in text
    assert "Lower bound LB(2) = 25.00s = max(longest module, sum / 2); wall / LB = 1.04" in text
    assert "Most of the wall: the longest module, tests/test_api.py, 25.00s (96%)" in text
    assert "speedup" not in text and "sequential" not in text
    bottleneck_advice = " ".join(text[text.index("Bottleneck:") :].split())
    assert bottleneck_advice.startswith(
        "Bottleneck: tests/test_api.py took 25.00s, 96% of the wall time, and no number of "
        "workers can finish sooner. Split it into smaller modules"
    )
    assert text.splitlines()[-1] == f"Rerun only the failed modules: {RERUN}"


def test_a_bottleneck_of_one_test_is_named_without_advice_to_split_its_module() -> None:
    merged = run_report(
        [
            module("tests/test_long.py", 20.0, "passed", worker="w2"),
            module("tests/test_db.py", 3.0, "failed", "passed"),
        ],
        wall_s=21.0,
        workers=2,
    )
    summary = render_summary(merged, verbosity=0, rerun_command=None)
    text = " ".join("\n".join(plain(summary)).split())
    assert (
        "Bottleneck: tests/test_long.py::test_0 took 20.00s, 95% of the wall time, and no "
        "number of workers can finish sooner: it is its module's only test, so only a "
        "faster test ends the run sooner."
    ) in text
    assert "Split it into smaller modules" not in text


def test_quiet_summary_shows_only_failed_modules_and_totals(failing_run: MergedReport) -> None:
    lines = plain(render_summary(failing_run, verbosity=-1, rerun_command=RERUN), width=120)
    assert table_rows(lines) == [["FAILED", "tests/test_db.py", "3", "1", "1", "1", "3.20s", "w1"]]
    assert lines[-1].startswith("Totals: 1 failed, 28 passed")
    assert not [line for line in lines if line.startswith(("Wall", "Lower", "Bottleneck", "Rerun"))]


def test_quiet_green_summary_is_one_line(green_run: MergedReport) -> None:
    assert plain(render_summary(green_run, verbosity=-1, rerun_command=RERUN)) == [
        "Totals: 4 passed, 1 skipped (5 tests in 3 modules), pass rate 100.0% (4 of 4)"
    ]


def test_green_summary_has_no_advice_and_no_rerun(green_run: MergedReport) -> None:
    lines = plain(render_summary(green_run, verbosity=0, rerun_command=RERUN))
    assert len(table_rows(lines)) == 3
    assert lines[-4:] == [
        "Wall 3.50s with 2 workers",
        "Tests' own time 0.50s (measured under contention) in 3.50s wall, 2 workers",
        "Lower bound LB(2) = 3.00s = max(longest module, sum / 2); wall / LB = 1.17",
        "Most of the wall: the tests themselves (their sum / 2), 3.00s (86%)",
    ]


def test_default_verbosity_caps_passing_rows_and_verbose_lists_all() -> None:
    modules = [module(f"tests/test_{i:02d}.py", float(i), "passed") for i in range(1, 16)]
    modules.append(module("tests/test_zz.py", 0.5, "failed"))
    report = run_report(modules, wall_s=40.0, workers=4)
    lines = plain(render_summary(report, verbosity=0, rerun_command=None))
    rows = table_rows(lines)
    assert [row[1] for row in rows[:3]] == [
        "tests/test_zz.py",
        "tests/test_15.py",
        "tests/test_14.py",
    ]
    assert len(rows) == 11
    assert "... and 5 more modules (-v lists all)" in lines
    assert len(table_rows(plain(render_summary(report, verbosity=1, rerun_command=None)))) == 16
    assert not any(line.startswith("Rerun") for line in lines)


def test_problem_modules_sort_before_slower_passing_ones() -> None:
    report = run_report(
        [
            module("tests/test_slow.py", 9.0, "passed"),
            module("tests/test_boom.py", 1.0, outcome="crashed"),
            module("tests/test_stop.py", 0.0, worker=None, outcome="not_run"),
            module("tests/test_err.py", 2.0, "error"),
        ],
        wall_s=9.0,
        workers=4,
    )
    rows = table_rows(plain(render_summary(report, verbosity=0, rerun_command=None)))
    assert [(row[0], row[1]) for row in rows] == [
        ("ERROR", "tests/test_err.py"),
        ("CRASHED", "tests/test_boom.py"),
        ("PASSED", "tests/test_slow.py"),
        ("NOT RUN", "tests/test_stop.py"),
    ]
    assert rows[-1][-1] == "-"


def test_report_text_is_never_taken_for_markup() -> None:
    report = run_report(
        [module("tests/[bold]x[/bold]/:smile:.py", 1.0, "failed")], wall_s=1.0, workers=1
    )
    lines = plain(render_summary(report, verbosity=-1, rerun_command="pytest '[red]x'"))
    assert table_rows(lines)[0][1] == "tests/[bold]x[/bold]/:smile:.py"


def test_print_summary_writes_one_section_through_the_reporter(failing_run: MergedReport) -> None:
    separators: list[tuple[str, str]] = []
    file = io.StringIO()
    print_summary(
        failing_run,
        write_sep=lambda sep, title: separators.append((sep, title)),
        file=file,
        width=120,
        verbosity=-1,
        rerun_command=None,
        color=False,
    )
    assert separators == [("=", "parallel-modules summary")]
    output = file.getvalue()
    assert "\x1b[" not in output
    assert output.splitlines()[-1].startswith("Totals: 1 failed")
    assert max(len(line) for line in output.splitlines()) <= 120


def test_print_summary_colours_when_asked(failing_run: MergedReport) -> None:
    file = io.StringIO()
    print_summary(
        failing_run,
        write_sep=lambda sep, title: None,
        file=file,
        width=100,
        verbosity=0,
        rerun_command=RERUN,
        color=True,
    )
    assert "\x1b[" in file.getvalue()


# --------------------------------------------------------------------------- analysis


def test_no_bottleneck_with_one_worker_or_a_balanced_run(green_run: MergedReport) -> None:
    assert bottleneck(green_run) is None
    single = run_report([module("tests/test_a.py", 5.0, "passed")], wall_s=5.0, workers=1)
    assert bottleneck(single) is None


def test_one_big_module_on_many_workers_is_the_bottleneck() -> None:
    report = run_report([module("tests/test_a.py", 5.0, "passed")], wall_s=5.5, workers=4)
    found = bottleneck(report)
    assert found is not None
    assert found["module"] == "tests/test_a.py"


def test_overhead_is_named_by_the_timing_lines_not_a_vague_tip() -> None:
    report = run_report(
        [module(f"tests/test_{i}.py", 1.0, "passed") for i in range(4)], wall_s=6.0, workers=4
    )
    assert advice(report) == []
    lines = plain(render_summary(report, verbosity=0, rerun_command=None))
    assert "Lower bound LB(4) = 1.00s = max(longest module, sum / 4); wall / LB = 6.00" in lines


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(0.0, "0.00s"), (3.214, "3.21s"), (59.99, "59.99s"), (65.4, "1m 05s"), (3725, "1h 02m")],
)
def test_format_duration(seconds: float, expected: str) -> None:
    assert format_duration(seconds) == expected


def test_pass_rate_ignores_skipped_and_never_rounds_up() -> None:
    report = module("t.py", 1.0, *passes(999), "failed", "skipped")
    assert pass_rate(report["counts"]) == pytest.approx(0.999)
    lines = plain(
        render_summary(
            run_report([report], wall_s=1.0, workers=1), verbosity=-1, rerun_command=None
        )
    )
    assert lines[-1].endswith("pass rate 99.9% (999 of 1000)")
    assert pass_rate(module("t.py", 1.0, "skipped")["counts"]) is None


def test_pass_rate_counts_tests_that_never_ran() -> None:
    """Ctrl-C after 1 of 14 tests: 7.1% of the selected tests passed, not 100%."""
    report = run_report(
        [
            module("tests/test_a.py", 1.0, "passed", "not_run", outcome="interrupted"),
            *(
                module(f"tests/test_{i}.py", 0.0, "not_run", "not_run", outcome="not_run")
                for i in range(6)
            ),
        ],
        wall_s=3.0,
        workers=2,
    )
    assert pass_rate(report["totals"]) == pytest.approx(1 / 14)
    assert "pass rate 7.1% (1 of 14)" in " ".join(
        plain(render_summary(report, verbosity=0, rerun_command=RERUN))
    )
    # xfailed and xpassed tests pass, as far as the run's result goes.
    assert pass_rate(module("t.py", 1.0, "passed", "xfailed", "xpassed")["counts"]) == 1.0


def test_format_counts_follows_pytest_wording() -> None:
    counts = module("t.py", 1.0, "failed", "passed", "passed", "error", "error", "xpassed")[
        "counts"
    ]
    assert format_counts(counts) == "1 failed, 2 passed, 1 xpassed, 2 errors"
    assert format_counts(module("t.py", 1.0)["counts"]) == "no tests"


# --------------------------------------------------------------------------- module lines


def test_format_module_line() -> None:
    report = module("tests/test_api.py", 3.21, *passes(25), worker="w2")
    assert format_module_line(7, 20, report) == (
        "[7/20] PASSED tests/test_api.py  25 passed in 3.21s  (worker w2)"
    )


def test_format_module_line_for_a_module_that_never_ran() -> None:
    report = module("tests/test_x.py", 0.0, worker=None, outcome="not_run")
    assert format_module_line(3, 3, report) == "[3/3] NOT RUN tests/test_x.py  no tests in 0.00s"


# --------------------------------------------------------------------------- Markdown


def test_markdown_table_rows_and_sections(failing_run: MergedReport) -> None:
    markdown = render_markdown(failing_run, rerun_command="pytest tests/test_db.py")
    lines = markdown.splitlines()
    assert lines[0] == "## parallel-modules summary"
    assert lines[2] == (
        "❌ **1 failed, 28 passed, 1 skipped, 1 xfailed**: 31 tests in 4 modules, "
        "pass rate 96.6% (29 of 30), 26.00s wall time with 2 workers"
    )
    assert "| Status | Module | Tests | Pass | Fail | Skip | XFail | Time | Worker |" in lines
    rows = [line for line in lines if line.startswith("| ") and "`tests/" in line]
    assert rows == [
        "| ❌ FAILED | `tests/test_db.py` | 3 | 1 | 1 | 1 | 0 | 3.20s | w1 |",
        "| ✅ PASSED | `tests/test_api.py` | 25 | 25 | 0 | 0 | 0 | 25.00s | w2 |",
        "| ✅ PASSED | `tests/test_io.py` | 1 | 1 | 0 | 0 | 0 | 4.00s | w1 |",
        "| ✅ PASSED | `tests/test_util.py` | 2 | 1 | 0 | 0 | 1 | 1.00s | w1 |",
    ]
    assert (
        "<details><summary><code>tests/test_db.py::test_0</code> (failed at call): "
        "AssertionError: boom</summary>"
    ) in lines
    assert "### The shards do not add up to one run" not in lines
    assert "| Lower bound LB(2) = max(longest module, sum / 2) | 25.00s |" in lines
    assert "| Tests' own time (measured under contention) | 3.10s |" in lines
    assert "| Wall / LB | 1.04 |" in lines
    assert not [line for line in lines if "Speedup" in line or "sequential" in line]
    recommendations = lines[lines.index("### Recommendations") :]
    assert recommendations[2].startswith("- Bottleneck: tests/test\\_api.py took 25.00s")
    assert recommendations[3] == "- Rerun only the failed modules: `pytest tests/test_db.py`"


def test_markdown_of_a_green_run_has_no_failures(green_run: MergedReport) -> None:
    markdown = render_markdown(green_run, rerun_command="pytest x")
    assert markdown.splitlines()[2].startswith("✅ **4 passed, 1 skipped**")
    assert "### Failures" not in markdown
    assert "### Recommendations" not in markdown


def test_markdown_escapes_what_would_break_it() -> None:
    crashed = module("tests/test_a|b.py", 1.0, worker="w3", outcome="crashed")
    failing = build_module_report(
        module="tests/test_c.py",
        worker="w1",
        started=T0,
        finished=T0 + 1,
        results=[
            result("tests/test_c.py::test[<b>]", "failed", "contains 1 failed subtest"),
            ResultRecord(
                nodeid="tests/test_c.py::test[<b>]",
                subtest="[loop] (i=1)",
                outcome="failed",
                duration_s=0.1,
                when="call",
                longrepr="```\nE   assert '<b>' == 1",
                message="assert '<b>' == 1",
                stdout="",
                stderr="",
            ),
        ],
    )
    markdown = render_markdown(run_report([crashed, failing], wall_s=1.0, workers=2))
    assert "| 💥 CRASHED | `tests/test_a\\|b.py` |" in markdown
    assert "- `tests/test_a|b.py`: module crashed on worker w3" in markdown
    assert (
        "<code>tests/test_c.py::test[&lt;b&gt;] [loop] (i=1)</code> (failed at call): "
        "assert &#x27;&lt;b&gt;&#x27; == 1</summary>"
    ) in markdown
    # The longrepr holds a ``` fence, so the block is fenced with four backticks.
    assert "````text\n```\nE   assert '<b>' == 1\n````" in markdown


def test_markdown_cuts_long_failures() -> None:
    failing = build_module_report(
        module="tests/test_c.py",
        worker="w1",
        started=T0,
        finished=T0 + 1,
        results=[
            ResultRecord(
                nodeid="tests/test_c.py::test_long",
                subtest=None,
                outcome="error",
                duration_s=0.1,
                when="teardown",
                longrepr="\n".join(f"line {i}" for i in range(100)),
                message="line 99",
                stdout="",
                stderr="",
            )
        ],
    )
    markdown = render_markdown(run_report([failing], wall_s=1.0, workers=1))
    assert "... (40 lines cut)\nline 40\n" in markdown
    assert "line 39\n" not in markdown
    assert "(error at teardown): line 99" in markdown


def test_a_failing_module_names_what_ran_before_it_on_its_worker() -> None:
    first = build_module_report(
        module="a.py", worker="w1", started=1.0, finished=2.0, results=[result("a.py::t")]
    )
    other = build_module_report(
        module="b.py", worker="w2", started=1.5, finished=2.5, results=[result("b.py::t")]
    )
    failing = build_module_report(
        module="c.py",
        worker="w1",
        started=3.0,
        finished=4.0,
        results=[result("c.py::t", "failed")],
    )
    report = build_merged_report(
        modules=[first, other, failing],
        wall_s=4.0,
        workers=2,
        args=[],
        rootdir="/r",
        snapshot=None,
        created=0.0,
    )
    assert ran_before_lines(report) == [
        "c.py failed on worker w1 after a.py ran there; if it passes alone (pytest c.py), "
        "look for state those modules leave behind"
    ]


# --------------------------------------------------------------------------- honest numbers


COUNT_HEADERS = {
    "Pass": "passed",
    "Fail": "failed",
    "Error": "errors",
    "Skip": "skipped",
    "XFail": "xfailed",
    "XPass": "xpassed",
    "Not run": "not_run",
}


def test_every_row_adds_up_and_every_column_sums_to_the_totals() -> None:
    report = run_report(
        [
            module("tests/test_mix.py", 2.0, "passed", "failed", "error", "skipped", "xfailed"),
            module("tests/test_x.py", 1.0, "xpassed", "passed", "passed"),
            module("tests/test_cut.py", 1.0, "passed", "not_run", "not_run", outcome="interrupted"),
            module("tests/test_never.py", 0.0, "not_run", worker=None, outcome="not_run"),
        ],
        wall_s=2.0,
        workers=2,
    )
    lines = plain(render_summary(report, verbosity=1, rerun_command=None), width=120)
    header = re.split(r"\s{2,}", lines[0].strip())
    assert header[:3] == ["Status", "Module", "Tests"]
    counted = [name for name in header if name in COUNT_HEADERS]
    assert counted == list(COUNT_HEADERS)  # every outcome occurs, so every column is shown
    rows = table_rows(lines)
    assert len(rows) == 4
    totals = report["totals"]
    for position, name in enumerate(counted, start=3):
        assert sum(int(row[position]) for row in rows) == totals[COUNT_HEADERS[name]]
    assert sum(int(row[2]) for row in rows) == totals["tests"]
    for row in rows:
        assert int(row[2]) == sum(int(row[position]) for position in range(3, 3 + len(counted)))


def test_columns_that_are_zero_everywhere_are_left_out() -> None:
    report = run_report([module("tests/test_a.py", 1.0, "passed", "passed")], wall_s=1, workers=1)
    header = plain(render_summary(report, verbosity=1, rerun_command=None))[0]
    assert header.split() == ["Status", "Module", "Tests", "Pass", "Fail", "Time", "Worker"]


@pytest.mark.parametrize(
    ("path", "width", "expected"),
    [
        ("tests/unit/test_converters.py", 40, "tests/unit/test_converters.py"),
        ("tests/unit/formats/test_converters.py", 32, "tests/unit/…/test_converters.py"),
        ("tests/unit/formats/test_converters.py", 27, "tests/…/test_converters.py"),
        ("tests/unit/formats/test_converters.py", 20, "…/test_converters.py"),
        ("tests/unit/formats/test_converters.py", 12, "test_c…rs.py"),
        ("test_a_very_long_module_name.py", 15, "test_a_…name.py"),
    ],
)
def test_shorten_middle(path: str, width: int, expected: str) -> None:
    assert shorten_middle(path, width) == expected
    assert len(shorten_middle(path, width)) <= width


def test_long_names_are_shortened_in_the_middle_at_80_columns() -> None:
    names = [
        "tests/integration/storage/backends/test_converters.py",
        "tests/unit/parsing/test_tokenizer_edge_cases.py",
    ]
    report = run_report(
        [module(name, 1.0, "passed", "failed") for name in names], wall_s=1.0, workers=2
    )
    lines = plain(render_summary(report, verbosity=1, rerun_command=None), width=80)
    rows = table_rows(lines)
    for name, row in zip(sorted(names), sorted(rows, key=lambda row: row[1]), strict=True):
        # The first directory and the file name stay; directories in between give way.
        shown = row[1]
        assert shown != name
        assert shown.startswith("tests/")
        assert shown.endswith("/…/" + name.rsplit("/", 1)[1])
    # One line per module: nothing folded onto a line of its own.
    assert len(lines) == 2 + len(names) + sum(1 for line in lines[2 + len(names) :])
    assert max(len(line) for line in lines if not line.startswith(("Totals", "Wall"))) <= 80


def test_the_rerun_command_is_one_line_a_shell_accepts() -> None:
    modules = [f"tests/package_{i}/test module {i}.py" for i in range(6)]
    command = rerun_command(modules)
    assert command is not None
    assert command.startswith("pytest 'tests/package_0/test module 0.py' ")
    report = run_report([module(name, 1.0, "failed") for name in modules], wall_s=1.0, workers=2)
    file = io.StringIO()
    print_summary(
        report,
        write_sep=lambda sep, title: None,
        file=file,
        width=60,
        verbosity=0,
        rerun_command=command,
        color=False,
    )
    lines = file.getvalue().splitlines()
    assert f"Rerun only the failed modules: {command}" in lines
    # Too long: the short form stands in when there is one.
    assert rerun_command(modules, short=RERUN, max_length=100) == RERUN
    assert rerun_command(modules[:1], short=RERUN, max_length=100) == (
        "pytest 'tests/package_0/test module 0.py'"
    )
    assert rerun_command([]) is None


def test_a_stopped_run_names_failed_and_never_run_modules_apart() -> None:
    report = run_report(
        [
            module("tests/test_fails.py", 1.0, "failed", "passed"),
            module("tests/test_cut.py", 5.0, "passed", "not_run", outcome="interrupted"),
            *(
                module(f"tests/test_late_{i}.py", 0.0, "not_run", "not_run", outcome="not_run")
                for i in range(6)
            ),
        ],
        wall_s=6.0,
        workers=2,
    )
    lines = plain(render_summary(report, verbosity=0, rerun_command="pytest tests/test_fails.py"))
    assert "Rerun only the failed modules: pytest tests/test_fails.py" in lines
    assert (
        "Tests without a result: 13 never ran, in 7 modules (tests/test_cut.py, tests/test_late_0.py, "
        "tests/test_late_1.py, tests/test_late_2.py, tests/test_late_3.py and 2 more "
        "(the JSON report lists them))"
    ) in " ".join(lines)
    # The interrupted module ran 5 of 6 s: no advice from a run that did not finish.
    assert advice(report) == []
    assert bottleneck(report) is None


def test_no_bottleneck_from_a_module_that_did_not_finish() -> None:
    report = run_report(
        [
            module("tests/test_cut.py", 5.0, "passed", "not_run", outcome="interrupted"),
            module("tests/test_ok.py", 1.0, "passed"),
        ],
        wall_s=5.5,
        workers=4,
    )
    assert bottleneck(report) is None


def test_format_module_line_with_its_progress_letters() -> None:
    report = module("tests/test_api.py", 3.21, "passed", "failed", "skipped", worker="w2")
    assert format_module_line(7, 20, report, letters=".Fs") == (
        "[7/20] FAILED tests/test_api.py .Fs  1 failed, 1 passed, 1 skipped in 3.21s  (worker w2)"
    )
