"""Unit tests for progress.py: the state, the pure renderer, the ETA, the throttle and when it runs."""

from __future__ import annotations

import ast
import io
from pathlib import Path
import signal

import pytest
from rich.console import Console

from pytest_parallel_modules import progress
from pytest_parallel_modules.progress import clear_frame
from pytest_parallel_modules.progress import draw_frame
from pytest_parallel_modules.progress import estimate_remaining
from pytest_parallel_modules.progress import format_elapsed
from pytest_parallel_modules.progress import format_eta
from pytest_parallel_modules.progress import format_failure_line
from pytest_parallel_modules.progress import format_final_line
from pytest_parallel_modules.progress import live_display_blocker
from pytest_parallel_modules.progress import name_widths
from pytest_parallel_modules.progress import ProgressState
from pytest_parallel_modules.progress import render_bar
from pytest_parallel_modules.progress import render_progress
from pytest_parallel_modules.progress import report_category
from pytest_parallel_modules.progress import Throttle
from tests.e2e.test_live import Screen


T0 = 1000.0
PLAN = ("tests/test_slow.py", "tests/test_b.py", "tests/test_c.py")
ESTIMATES = {"tests/test_slow.py": 10.0, "tests/test_b.py": 4.0, "tests/test_c.py": 2.0}


class FakeClock:
    """Perf seconds that move only when told."""

    def __init__(self, start: float = T0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


MODULE_TESTS = {"tests/test_slow.py": 10, "tests/test_b.py": 3, "tests/test_c.py": 2}


def make_state(*, workers: int = 2, known: bool = True) -> ProgressState:
    return ProgressState(
        started=T0,
        plan=PLAN,
        estimates=ESTIMATES,
        estimates_known=known,
        worker_count=workers,
        tests_total=15,
        module_tests=MODULE_TESTS,
    )


def run_test(state: ProgressState, nodeid: str, category: str, start: float, end: float) -> None:
    """One test, as its reports arrive: logstart, setup, call, teardown, logfinish."""
    state.test_started(nodeid, start)
    state.test_reported(nodeid, "")
    state.test_reported(nodeid, category)
    state.test_reported(nodeid, "")
    state.test_finished(nodeid, end)


def words(line: str) -> str:
    """``line`` with runs of spaces made one (column widths aside)."""
    return " ".join(line.split())


def plain(renderable: object, width: int = 100) -> list[str]:
    console = Console(file=io.StringIO(), width=width, color_system=None, force_terminal=False)
    console.print(renderable)
    output = console.file.getvalue()  # type: ignore[attr-defined]  # the StringIO given above
    return [line.rstrip() for line in output.splitlines()]


def styled(renderable: object, width: int = 100) -> dict[str, str]:
    """Text of each styled segment of ``renderable`` -> its style, as a colour console renders it."""
    console = Console(file=io.StringIO(), width=width, color_system="standard", force_terminal=True)
    styles: dict[str, str] = {}
    for segment in console.render(renderable):  # type: ignore[arg-type]  # a renderable
        text = segment.text.strip().rstrip("╸─")
        if text and segment.style is not None:
            styles.setdefault(text[:1] if text.startswith("━") else text, str(segment.style))
    return styles


def mid_run_state(clock: FakeClock) -> ProgressState:
    """w1 runs the slow module (2 of 10 done, 1 failed), w2 runs test_b, w3 is starting."""
    state = make_state()
    state.sync_workers([("w1", "busy"), ("w2", "busy"), ("w3", "starting")])
    state.module_started("tests/test_slow.py", "w1", 10, clock.advance(0.5))
    state.module_started("tests/test_b.py", "w2", 3, clock.advance(0.1))
    run_test(state, "tests/test_slow.py::test_1", "failed", clock(), clock())
    run_test(state, "tests/test_slow.py::test_2", "passed", clock(), clock.advance(0.4))
    # test_3 runs now, for 2 s.
    state.test_started("tests/test_slow.py::test_3", clock())
    clock.advance(2.0)
    return state


# --------------------------------------------------------------------------- rendering


def test_render_shows_a_line_per_worker_then_the_bar_and_counts() -> None:
    clock = FakeClock()
    state = mid_run_state(clock)
    lines = plain(render_progress(state, clock(), max_lines=20))
    # Columns as wide as what they hold: nothing pads a name out to the width. The
    # bar shares its line with the counts when the width allows.
    assert lines == [
        "w1  tests/test_slow.py  2/10  1 failed  2.5s  test_3  2.0s",
        "w2  tests/test_b.py      0/3            2.4s",
        "w3  starting",
        # 2 s of finished tests, and test_3 has run its 1 s share: 3 s of 16 s.
        "━" * 7 + "─" * 29 + "  18%  1 passed  1 failed  2/15 tests  0/3 modules  3.0s  ETA 8s",
    ]


def test_at_80_columns_the_counts_go_below_the_bar() -> None:
    clock = FakeClock()
    state = mid_run_state(clock)
    lines = plain(render_progress(state, clock(), max_lines=20), width=80)
    assert lines[-2:] == [
        "━" * 11 + "╸" + "─" * 49 + "  18%  3.0s  ETA 8s",
        "1 passed  1 failed  2/15 tests  0/3 modules",
    ]


def test_the_clocks_move_while_no_event_arrives() -> None:
    """A frame drawn a second later (a tick of the controller's loop) is another frame."""
    clock = FakeClock()
    state = mid_run_state(clock)
    before = plain(render_progress(state, clock(), max_lines=20))
    after = plain(render_progress(state, clock.advance(1.0), max_lines=20))
    assert before != after
    assert words(after[0]) == "w1 tests/test_slow.py 2/10 1 failed 3.5s test_3 3.0s"
    assert words(after[-1]).endswith("4.0s ETA 7s")


def test_the_timer_counts_from_pytests_start() -> None:
    """The state's start is pytest's (the session's), not the first module's."""
    state = make_state()
    state.module_started("tests/test_b.py", "w1", 3, T0 + 2.5)  # after a slow collection
    overall = plain(render_progress(state, T0 + 3.0, max_lines=20))[-1]
    assert " 3.0s  ETA " in overall
    assert format_final_line(state, T0 + 3.0).endswith(" in 3.0s")


def test_the_bar_is_filled_by_estimated_work_not_by_modules() -> None:
    clock = FakeClock()
    state = make_state()
    # The 2 s module of 2 tests is done: one module of three, but 2 s of 16 s of work.
    state.module_started("tests/test_c.py", "w1", 2, clock())
    run_test(state, "tests/test_c.py::test_1", "passed", clock(), clock.advance(1.0))
    run_test(state, "tests/test_c.py::test_2", "passed", clock(), clock.advance(1.0))
    state.module_finished("tests/test_c.py", 2.0, clock())
    assert state.work_fraction() == pytest.approx(2.0 / 16.0)
    # Half of the 10 s module's tests: 5 s more.
    state.module_started("tests/test_slow.py", "w2", 10, clock())
    for index in range(5):
        run_test(state, f"tests/test_slow.py::test_{index}", "passed", clock(), clock())
    assert state.work_fraction() == pytest.approx(7.0 / 16.0)
    overall = plain(render_progress(state, clock(), max_lines=20))[-1]
    assert "  43%  7 passed  7/15 tests  1/3 modules  " in overall


def test_a_running_test_moves_the_bar_up_to_its_share_of_the_estimate() -> None:
    """A long test alone on the run (the others done) fills the bar as it runs."""
    clock = FakeClock()
    state = make_state()
    state.module_started("tests/test_c.py", "w1", 2, clock())
    state.test_started("tests/test_c.py::test_1", clock())
    # 1 s into a test whose share of the 2 s module is 1 s: 1 s of 16 s done.
    assert state.work_fraction(clock.advance(1.0)) == pytest.approx(1.0 / 16.0)
    # Past its share, it counts no more than its share.
    assert state.work_fraction(clock.advance(5.0)) == pytest.approx(1.0 / 16.0)
    # Without a time, only finished tests count.
    assert state.work_fraction() == 0.0
    # Nor does a running test count when the estimates are guesses (a first run).
    state.estimates_known = False
    assert state.work_fraction(clock()) == 0.0
    state.estimates_known = True
    state.test_reported("tests/test_c.py::test_1", "passed")
    state.test_finished("tests/test_c.py::test_1", clock())
    assert state.work_fraction(clock()) == pytest.approx(1.0 / 16.0)


def test_without_estimates_the_bar_counts_tests() -> None:
    state = make_state()
    state.estimates = {}
    state.module_started("tests/test_b.py", "w1", 3, T0)
    run_test(state, "tests/test_b.py::test_1", "passed", T0, T0)
    assert state.work_fraction() == pytest.approx(1 / 15)


def test_counts_show_each_outcome_in_its_colour() -> None:
    state = make_state()
    state.module_started("tests/test_b.py", "w1", 3, T0)
    run_test(state, "tests/test_b.py::test_1", "passed", T0, T0)
    run_test(state, "tests/test_b.py::test_2", "skipped", T0, T0)
    run_test(state, "tests/test_b.py::test_3", "failed", T0, T0)
    run_test(state, "tests/test_c.py::test_1", "xfailed", T0, T0)
    state.test_reported("tests/test_c.py::test_2", "passed")
    state.test_reported("tests/test_c.py::test_2", "error")  # its teardown
    assert state.counts() == {"passed": 1, "skipped": 1, "failed": 1, "xfailed": 1, "error": 1}
    styles = styled(render_progress(state, T0, max_lines=20))
    assert "green" in styles["1 passed"]
    assert "red" in styles["1 failed"]
    assert "red" in styles["1 errors"]
    assert "yellow" in styles["1 skipped"]
    assert "yellow" in styles["1 xfailed"]


def test_the_bar_is_green_until_a_test_fails() -> None:
    clock = FakeClock()
    state = make_state()
    state.module_started("tests/test_b.py", "w1", 3, clock())
    run_test(state, "tests/test_b.py::test_1", "passed", clock(), clock())
    assert "green" in styled(render_progress(state, clock(), max_lines=20))["━"]
    run_test(state, "tests/test_b.py::test_2", "failed", clock(), clock())
    assert "red" in styled(render_progress(state, clock(), max_lines=20))["━"]


def test_render_bar_fills_half_columns() -> None:
    assert render_bar(0.0, 4, style="green").plain == "────"
    assert render_bar(0.25, 4, style="green").plain == "━───"
    assert render_bar(0.375, 4, style="green").plain == "━╸──"
    assert render_bar(1.0, 4, style="green").plain == "━━━━"


def test_a_worker_line_shows_the_running_test_and_how_long_it_runs() -> None:
    clock = FakeClock()
    state = make_state()
    state.module_started("tests/test_b.py", "w1", 3, clock())
    state.test_started("tests/test_b.py::TestX::test_y[1]", clock.advance(0.5))
    line = plain(render_progress(state, clock.advance(2.0), max_lines=20))[0]
    assert words(line) == "w1 tests/test_b.py 0/3 2.5s TestX::test_y[1] 2.0s"
    state.test_finished("tests/test_b.py::TestX::test_y[1]", clock())
    assert words(plain(render_progress(state, clock(), max_lines=20))[0]) == (
        "w1 tests/test_b.py 1/3 2.5s"
    )


def test_no_hole_between_a_name_and_its_counts_at_160_columns() -> None:
    clock = FakeClock()
    state = mid_run_state(clock)
    lines = plain(render_progress(state, clock(), max_lines=20), width=160)
    assert lines[0] == "w1  tests/test_slow.py  2/10  1 failed  2.5s  test_3  2.0s"
    assert lines[1] == "w2  tests/test_b.py      0/3            2.4s"
    # The overall line uses the width: the bar takes what the counts leave.
    assert len(lines[-1]) == 160
    assert lines[-1].endswith("  18%  1 passed  1 failed  2/15 tests  0/3 modules  3.0s  ETA 8s")


def test_long_names_lose_their_middle_the_test_name_first() -> None:
    clock = FakeClock()
    state = make_state()
    long_module = "tests/" + "deeply/nested/" * 3 + "test_long.py"
    state.module_started(long_module, "w1", 4, clock())
    state.test_started(
        long_module + "::TestSomething::test_with_a_rather_long_name[param-1]", clock()
    )
    lines = plain(render_progress(state, clock.advance(1.0), max_lines=20), width=80)
    assert all(len(line) <= 80 for line in lines), lines
    assert (
        lines[0]
        == "w1  tests/deeply/nested/deeply/…/test_long.py  0/4  1.0s  TestSome…aram-1]  1.0s"
    )
    narrow = plain(render_progress(state, clock(), max_lines=20), width=60)
    assert narrow[0] == "w1  tests/…/test_long.py  0/4  1.0s  TestSome…param-1]  1.0s"


@pytest.mark.parametrize(
    ("available", "module", "test", "expected"),
    [
        (100, 30, 40, (30, 40)),  # both fit
        (50, 30, 40, (30, 20)),  # the test name gives way first
        (40, 30, 40, (24, 16)),  # down to its minimum, then the module name
        (20, 30, 40, (12, 8)),  # the module name down to its minimum, then the test again
        (5, 30, 40, (5, 0)),
        (50, 30, 0, (30, 0)),  # no test running
    ],
)
def test_name_widths(available: int, module: int, test: int, expected: tuple[int, int]) -> None:
    assert name_widths(available, module, test) == expected


@pytest.mark.parametrize("width", [8, 12, 20, 30, 45, 80, 200])
def test_render_never_wraps_a_line(width: int) -> None:
    """A wrapped line would take two rows of the terminal and break the redraw."""
    clock = FakeClock()
    state = mid_run_state(clock)
    lines = plain(render_progress(state, clock(), max_lines=20), width=width)
    # The counts go below the bar when they do not fit beside it.
    assert len(lines) in (len(state.workers) + 1, len(state.workers) + 2)
    assert all(len(line) <= width for line in lines), lines


def test_render_orders_workers_by_number() -> None:
    state = make_state(workers=11)
    state.sync_workers([(f"w{index}", "starting") for index in (10, 2, 1, 11)])
    lines = plain(render_progress(state, T0, max_lines=20))
    assert [line.split()[0] for line in lines[:-1]] == ["w1", "w2", "w10", "w11"]


@pytest.mark.parametrize(
    ("status", "word"),
    [
        ("starting", "starting"),
        ("idle", "waiting for a module"),
        ("stopping", "finishing"),
        ("done", "done"),
        ("crashed", "crashed"),
    ],
)
def test_a_worker_without_a_module_shows_its_state(status: str, word: str) -> None:
    state = make_state()
    state.sync_workers([("w1", status)])
    assert plain(render_progress(state, T0, max_lines=20))[0] == f"w1  {word}"


def test_workers_beyond_the_height_are_summed_up_in_one_line() -> None:
    clock = FakeClock()
    state = make_state(workers=8)
    state.sync_workers([(f"w{index}", "busy") for index in range(1, 9)])
    state.module_started("tests/test_c.py", "w8", 2, clock())
    lines = plain(render_progress(state, clock(), max_lines=6))
    # Two lines stay for the bar and the counts (one is enough at this width).
    assert len(lines) == 5
    assert [line.split()[0] for line in lines[:3]] == ["w1", "w2", "w3"]
    assert lines[3] == "...  5 more workers, 1 running a module"


def test_render_is_pure() -> None:
    clock = FakeClock()
    state = mid_run_state(clock)
    first = plain(render_progress(state, clock(), max_lines=20))
    assert plain(render_progress(state, clock(), max_lines=20)) == first


# --------------------------------------------------------------------------- state


def test_the_next_module_of_a_worker_starts_its_clock_when_the_current_one_ends() -> None:
    clock = FakeClock()
    state = make_state()
    state.module_started("tests/test_slow.py", "w1", 10, clock())
    # The next module may be sent before the current one's module-finished event arrives.
    state.module_started("tests/test_c.py", "w1", 2, clock.advance(5.0))
    assert plain(render_progress(state, clock(), max_lines=20))[0].startswith(
        "w1  tests/test_slow.py"
    )
    state.module_finished("tests/test_slow.py", 6.0, clock.advance(1.0))
    lines = plain(render_progress(state, clock.advance(0.5), max_lines=20))
    assert lines[0].startswith("w1  tests/test_c.py")
    assert words(lines[0]) == "w1 tests/test_c.py 0/2 0.5s"
    assert state.modules_done == 1


def test_a_module_continued_after_a_crash_moves_to_its_new_worker() -> None:
    clock = FakeClock()
    state = make_state()
    state.module_started("tests/test_b.py", "w1", 3, clock())
    state.test_finished("tests/test_b.py::test_1")
    state.sync_workers([("w1", "crashed")])
    state.module_started("tests/test_b.py", "w3", 1, clock.advance(1.0))
    lines = plain(render_progress(state, clock.advance(0.2), max_lines=20))
    assert lines[0] == "w1  crashed"
    assert words(lines[1]) == "w3 tests/test_b.py 0/1 0.2s"
    assert words(lines[-1]).endswith(" 0 passed 1/15 tests 0/3 modules 1.2s ETA 10s")


def test_a_test_failing_in_several_phases_counts_once() -> None:
    state = make_state()
    state.module_started("tests/test_b.py", "w1", 3, T0)
    assert state.test_reported("tests/test_b.py::test_1", "failed") == "tests/test_b.py"  # call
    assert state.test_reported("tests/test_b.py::test_1", "error") is None  # teardown
    state.test_finished("tests/test_b.py::test_1")
    assert state.failed == {"tests/test_b.py::test_1"}
    assert words(plain(render_progress(state, T0, max_lines=20))[0]) == (
        "w1 tests/test_b.py 1/3 1 failed 0.0s"
    )


def test_reports_of_a_module_no_worker_holds_only_count_overall() -> None:
    state = make_state()
    state.test_reported("tests/test_c.py::test_x", "failed")
    state.test_finished("tests/test_c.py::test_x")
    assert state.tests_done == {"tests/test_c.py::test_x"}
    assert state.failed == {"tests/test_c.py::test_x"}


@pytest.mark.parametrize(
    ("when", "outcome", "wasxfail", "category"),
    [
        ("setup", "passed", False, ""),
        ("call", "passed", False, "passed"),
        ("teardown", "passed", False, ""),
        ("call", "failed", False, "failed"),
        ("setup", "failed", False, "error"),
        ("teardown", "failed", False, "error"),
        ("setup", "skipped", False, "skipped"),
        ("call", "skipped", True, "xfailed"),
        ("call", "passed", True, "xpassed"),
    ],
)
def test_report_category_sorts_reports_as_pytest_does(
    when: str, outcome: str, wasxfail: bool, category: str
) -> None:
    assert report_category(when, outcome, wasxfail=wasxfail) == category


def test_a_module_is_announced_once_with_its_first_failing_test() -> None:
    state = make_state()
    state.module_started("tests/test_b.py", "w1", 3, T0)
    assert state.test_reported("tests/test_b.py::test_1", "passed") is None
    assert state.test_reported("tests/test_b.py::test_2", "failed") == "tests/test_b.py"
    assert state.test_reported("tests/test_b.py::test_3", "error") is None
    assert state.test_reported("tests/test_c.py::test_1", "error") == "tests/test_c.py"
    assert state.failed_modules == {
        "tests/test_b.py": "tests/test_b.py::test_2",
        "tests/test_c.py": "tests/test_c.py::test_1",
    }


def test_the_failure_line_names_the_first_failing_test() -> None:
    line = format_failure_line("tests/test_b.py", "tests/test_b.py::test_n[1]", 80)
    assert line.plain == " FAIL  tests/test_b.py::test_n[1]"
    long_id = "tests/" + "deep/" * 20 + "test_b.py::test_n[1]"
    short = format_failure_line("tests/" + "deep/" * 20 + "test_b.py", long_id, 60)
    assert len(short.plain) <= 60
    assert short.plain.startswith(" FAIL  tests/deep/")
    assert short.plain.endswith("/test_b.py::test_n[1]")


def test_a_split_module_shows_its_unit_id_on_each_worker_line() -> None:
    state = make_state()
    for index, worker in ((1, "w1"), (2, "w2")):
        state.module_started(
            "tests/test_slow.py",
            worker,
            5,
            T0,
            part=(index, 2),
            nodeids=frozenset(f"tests/test_slow.py::test_{index}_{n}" for n in range(5)),
        )
    lines = [words(line) for line in plain(render_progress(state, T0 + 1, max_lines=20))]
    assert lines[:2] == [
        "w1 tests/test_slow.py[1/2] 0/5 1.0s",
        "w2 tests/test_slow.py[2/2] 0/5 1.0s",
    ]
    assert words(lines[-1]).endswith("0/15 tests 0/3 modules 1.0s ETA 7s")


# --------------------------------------------------------------------------- ETA


def test_eta_is_the_lower_bound_of_the_work_left() -> None:
    clock = FakeClock()
    state = mid_run_state(clock)
    # Left: test_c not started (2.0), slow 10.0 - 2.5, test_b 4.0 - 2.4 on 2 workers:
    # max(7.5, (2.0 + 7.5 + 1.6) / 2) = 7.5.
    assert estimate_remaining(state, clock()) == pytest.approx(7.5)


def test_eta_spreads_the_work_over_the_workers() -> None:
    state = make_state(workers=2)
    estimates = {"tests/test_slow.py": 3.0, "tests/test_b.py": 3.0, "tests/test_c.py": 3.0}
    state.estimates = estimates
    assert estimate_remaining(state, T0) == pytest.approx(4.5)


def test_eta_scales_the_estimates_by_what_finished_modules_really_took() -> None:
    clock = FakeClock()
    state = make_state(workers=1)
    state.module_started("tests/test_c.py", "w1", 2, clock())
    state.module_finished("tests/test_c.py", 4.0, clock.advance(4.0))  # twice its estimate
    assert estimate_remaining(state, clock()) == pytest.approx((10.0 + 4.0) * 2)


def test_eta_scale_is_bounded() -> None:
    state = make_state(workers=1)
    state.module_started("tests/test_c.py", "w1", 2, T0)
    state.module_finished("tests/test_c.py", 200.0, T0 + 200.0)
    assert estimate_remaining(state, T0 + 200.0) == pytest.approx((10.0 + 4.0) * 4)


def test_eta_of_a_module_running_over_its_estimate_is_zero_not_negative() -> None:
    state = make_state(workers=1)
    state.plan = ("tests/test_c.py",)
    state.module_started("tests/test_c.py", "w1", 2, T0)
    assert estimate_remaining(state, T0 + 50.0) == 0.0


def test_eta_is_unknown_without_history_until_a_module_finishes() -> None:
    clock = FakeClock()
    state = make_state(known=False)
    state.module_started("tests/test_c.py", "w1", 2, clock())
    assert estimate_remaining(state, clock()) is None
    assert plain(render_progress(state, clock(), max_lines=20))[-1].endswith("ETA ?")
    state.module_finished("tests/test_c.py", 2.0, clock.advance(2.0))
    assert estimate_remaining(state, clock()) == pytest.approx(10.0)


def test_eta_is_zero_when_everything_finished() -> None:
    state = make_state()
    for module in PLAN:
        state.module_started(module, "w1", 1, T0)
        state.module_finished(module, ESTIMATES[module], T0)
    assert estimate_remaining(state, T0 + 1) == 0.0
    overall = plain(render_progress(state, T0 + 1, max_lines=20))[-1]
    # Done by the modules' own word, though no test was reported: nothing is left.
    assert words(overall).endswith("0 passed 0/15 tests 3/3 modules 1.0s ETA 0s")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.0, "0s"), (0.2, "1s"), (7.0, "7s"), (59.5, "1m 00s"), (65, "1m 05s"), (3725, "1h 02m")],
)
def test_format_eta(seconds: float, text: str) -> None:
    assert format_eta(seconds) == text


@pytest.mark.parametrize(
    ("seconds", "text"), [(-1.0, "0.0s"), (2.46, "2.4s"), (59.99, "59.9s"), (61, "1m 01s")]
)
def test_format_elapsed(seconds: float, text: str) -> None:
    assert format_elapsed(seconds) == text


# --------------------------------------------------------------------------- throttle


def test_throttle_allows_one_redraw_per_interval() -> None:
    clock = FakeClock()
    throttle = Throttle(0.25)
    decisions = []
    for step in (0.0, 0.1, 0.1, 0.05, 0.3, 0.24, 0.01):
        decisions.append(throttle.ready(clock.advance(step)))
    assert decisions == [True, False, False, True, True, False, True]


def test_throttle_redraws_the_first_time() -> None:
    assert Throttle(10.0).ready(T0)


# --------------------------------------------------------------------------- frames


def test_a_frame_is_drawn_below_a_blank_line_where_the_cursor_waits() -> None:
    screen = Screen(30, 10)
    screen.feed("collected 3 items\r\n")
    screen.feed(draw_frame(["w1  test_a.py", "w2  test_b.py", "1/3 modules"]))
    assert screen.transcript() == [
        "collected 3 items",
        "",
        "w1  test_a.py",
        "w2  test_b.py",
        "1/3 modules",
    ]
    assert (screen.row, screen.col) == (1, 0)


def test_a_shorter_frame_leaves_nothing_of_the_taller_one() -> None:
    screen = Screen(30, 10)
    screen.feed(draw_frame(["w1  test_a.py  1/3", "w2  test_b.py  2/3", "overall"]))
    screen.feed(draw_frame(["w1  idle", "overall"]))
    assert screen.transcript() == ["", "w1  idle", "overall"]


def test_a_line_written_between_frames_stays_whole_above_the_display() -> None:
    screen = Screen(30, 10)
    screen.feed("collected 3 items\r\n")
    screen.feed(draw_frame(["w1  test_a.py  1/3", "w2  test_b.py  2/3", "overall 1"]))
    screen.feed("a status line\r\n")
    screen.feed(draw_frame(["w1  test_a.py  2/3", "w2  idle", "overall 2"]))
    assert screen.transcript() == [
        "collected 3 items",
        "a status line",
        "",
        "w1  test_a.py  2/3",
        "w2  idle",
        "overall 2",
    ]
    screen.feed(clear_frame() + "record")
    assert screen.transcript() == ["collected 3 items", "a status line", "record"]


def test_frames_at_the_bottom_of_the_screen_scroll_as_a_whole() -> None:
    screen = Screen(30, 4)
    screen.feed("one\r\ntwo\r\nthree\r\n")
    screen.feed(draw_frame(["frame 1a", "frame 1b"]))
    screen.feed(draw_frame(["frame 2a", "frame 2b"]))
    screen.feed(clear_frame() + "record")
    assert screen.transcript() == ["one", "two", "three", "record"]


# --------------------------------------------------------------------------- final line


def test_final_line_records_the_run() -> None:
    clock = FakeClock()
    state = mid_run_state(clock)
    assert (
        format_final_line(state, clock())
        == "parallel-modules: 0/3 modules, 2/15 tests, 1 failed in 3.0s"
    )
    state.failed.clear()
    assert format_final_line(state, clock()).endswith("2/15 tests in 3.0s")


# --------------------------------------------------------------------------- when it runs

WANTED = {
    "raw_writes": True,
    "plain_reporter": True,
    "isatty": True,
    "markup": True,
    "unicode": True,
    "verbosity": 0,
    "test_case_verbosity": 0,
    "environ": {"TERM": "xterm-256color"},
}


def test_live_display_runs_on_a_colour_terminal_at_default_verbosity() -> None:
    assert live_display_blocker(**WANTED) is None  # type: ignore[arg-type]  # keys match


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"isatty": False}, "not a terminal"),
        ({"verbosity": -1}, "verbosity"),
        ({"verbosity": 1}, "verbosity"),
        ({"test_case_verbosity": 1}, "verbosity"),
        ({"markup": False}, "colour"),
        ({"environ": {"NO_COLOR": ""}}, "colour"),
        ({"environ": {"TERM": "dumb"}}, "colour"),
        ({"environ": {"CI": "true"}}, "CI"),
        ({"environ": {"BUILD_NUMBER": "7"}}, "CI"),
        ({"raw_writes": False}, "pytest before 9.0"),
        ({"unicode": False}, "UTF-8"),
        ({"plain_reporter": False}, "terminal reporter"),
    ],
)
def test_live_display_is_blocked(change: dict[str, object], reason: str) -> None:
    blocker = live_display_blocker(**{**WANTED, **change})  # type: ignore[arg-type]  # keys match
    assert blocker is not None
    assert reason in blocker


def test_an_empty_ci_variable_is_not_ci() -> None:
    # As pytest's own running_on_ci decides.
    assert live_display_blocker(**{**WANTED, "environ": {"CI": ""}}) is None  # type: ignore[arg-type]  # keys match


def test_time_comes_only_through_the_clock_seam() -> None:
    """No ``time`` import (R8), no processes, no locks."""
    tree = ast.parse(Path(progress.__file__).read_text(encoding="utf-8"))
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        (node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
    }
    assert not imported & {"subprocess", "execnet", "filelock", "time"}


def test_ctrl_c_during_a_redraw_is_raised_after_it() -> None:
    finished = []
    with pytest.raises(KeyboardInterrupt):
        with progress._uninterrupted():
            signal.raise_signal(signal.SIGINT)
            finished.append("the redraw")
    assert finished == ["the redraw"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
