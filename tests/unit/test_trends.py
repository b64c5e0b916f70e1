"""Trends and flake rates from the history's recent measurements; the ``durations --flaky`` command."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_parallel_modules.history import History
from pytest_parallel_modules.history import MeasuredModule
from pytest_parallel_modules.history import MeasuredRun
from pytest_parallel_modules.history import MeasuredTest
from pytest_parallel_modules.history import merge_history
from pytest_parallel_modules.history import RecordedTest
from pytest_parallel_modules.history import save_history
from pytest_parallel_modules.recent import decode_recent
from pytest_parallel_modules.recent import RECENT_RUNS
from pytest_parallel_modules.recent import RecentMeasurement
from pytest_parallel_modules.trends import flake_rate
from pytest_parallel_modules.trends import flakiest_tests
from pytest_parallel_modules.trends import module_trend
from pytest_parallel_modules.trends import trend_of


NOW = 1_700_000_000


def run_of(outcome: str, *, content: str | None = "c1", duration: float = 0.1) -> MeasuredRun:
    return MeasuredRun(
        {"a.py::t": MeasuredTest(duration, outcome, True)},  # type: ignore[arg-type]  # any outcome
        {"a.py": MeasuredModule(duration + 0.05, 0.01, True, content_hash=content)},
    )


def history_of(*runs: MeasuredRun) -> History:
    history = History()
    for index, run in enumerate(runs):
        history = merge_history(history, run, now=NOW + index)
    return history


# --------------------------------------------------------------------------- recent


def test_the_history_keeps_the_last_measurements_newest_first() -> None:
    history = history_of(*(run_of("passed", duration=index / 10) for index in range(1, 13)))
    record = history.tests["a.py::t"]
    measurements = decode_recent(record.recent, record.last_seen_run)
    assert len(measurements) == RECENT_RUNS
    assert [m.run for m in measurements] == list(range(12, 2, -1))
    assert [m.duration_s for m in measurements] == [index / 10 for index in range(12, 2, -1)]
    # The very first measurement has nothing before it; the rest saw the same module file.
    assert all(m.same_content for m in measurements)
    assert decode_recent(history_of(run_of("passed")).tests["a.py::t"].recent, 1)[0] == (
        RecentMeasurement(1, "passed", 0.1, False)
    )


def test_gaps_between_runs_and_content_changes_are_kept() -> None:
    history = history_of(run_of("passed"), run_of("failed", content="c2"))
    # Two runs without the test.
    for _ in range(2):
        history = merge_history(history, MeasuredRun(), now=NOW)
    history = merge_history(history, run_of("failed", content="c2"), now=NOW)
    record = history.tests["a.py::t"]
    assert record.recent == "3f100 F100 P100 - - - - - - -"
    assert decode_recent(record.recent, record.last_seen_run) == (
        RecentMeasurement(5, "failed", 0.1, True),
        RecentMeasurement(2, "failed", 0.1, False),
        RecentMeasurement(1, "passed", 0.1, False),
    )


def test_a_module_without_a_known_content_never_counts_as_unchanged() -> None:
    history = history_of(run_of("passed", content=None), run_of("failed", content=None))
    assert history.tests["a.py::t"].recent == "F100 P100 - - - - - - - -"
    # A digest the file could not hold (from a hand-edited report) counts as unknown.
    history = history_of(run_of("passed", content='"x'), run_of("failed", content='"x'))
    assert history.modules["a.py"].content == ""


def test_decode_stops_at_what_it_cannot_read() -> None:
    assert decode_recent("p10 zz p20", 5) == (RecentMeasurement(5, "passed", 0.01, True),)
    assert decode_recent("q10", 5) == ()
    assert decode_recent("", 5) == ()
    assert decode_recent("p10 - - p20", 5) == (RecentMeasurement(5, "passed", 0.01, True),)


# --------------------------------------------------------------------------- trends


def measured(*durations: float, outcome: str = "passed") -> list[RecentMeasurement]:
    """Measurements given oldest first, returned newest first as the history gives them."""
    return [
        RecentMeasurement(run, outcome, duration, True)
        for run, duration in reversed(list(enumerate(durations, start=1)))
    ]


def test_a_trend_runs_oldest_first_and_marks_where_it_got_much_slower() -> None:
    trend = trend_of(measured(1.0, 1.1, 0.9, 2.0, 2.1))
    assert [point.run for point in trend.points] == [1, 2, 3, 4, 5]
    # 2.0 > 1.5 x median(1.0, 1.1, 0.9) = 1.5; 2.1 > 1.5 x median(1.0, 1.1, 0.9, 2.0) = 1.575.
    assert [point.slower for point in trend.points] == [False, False, False, True, True]


@pytest.mark.parametrize(
    ("durations", "slower"),
    [
        ((1.0, 2.0), [False, False]),  # too few runs before it to judge
        ((0.01, 0.01, 0.03), [False, False, False]),  # 3x, but only 20 ms more: noise
        ((1.0, 1.0, 1.4), [False, False, False]),  # 40% slower: not much
        ((1.0, 1.0, 1.6), [False, False, True]),
    ],
)
def test_much_slower_needs_history_ratio_and_seconds(
    durations: tuple[float, ...], slower: list[bool]
) -> None:
    assert [point.slower for point in trend_of(measured(*durations)).points] == slower


def test_module_trend_reads_the_module_record() -> None:
    history = history_of(*(run_of("passed", duration=d) for d in (0.2, 0.2, 0.2, 0.9)))
    trend = module_trend(history.modules["a.py"])
    assert [round(point.duration_s, 2) for point in trend.points] == [0.25, 0.25, 0.25, 0.95]
    assert [point.run for point in trend.slowdowns] == [4]


# --------------------------------------------------------------------------- flake rate


def test_a_test_that_changes_outcome_while_its_module_does_not_is_flaky() -> None:
    history = history_of(
        run_of("passed"), run_of("failed"), run_of("passed"), run_of("passed"), run_of("error")
    )
    rate = flake_rate("a.py::t", history.tests["a.py::t"])
    assert (rate.changes, rate.comparisons) == (3, 4)
    assert rate.rate == 0.75
    assert rate.outcomes == ("error", "passed", "passed", "failed", "passed")


def test_a_change_of_outcome_with_a_change_of_module_is_not_flakiness() -> None:
    history = history_of(
        run_of("passed", content="v1"),
        run_of("failed", content="v2"),
        run_of("failed", content="v2"),
        run_of("passed", content="v3"),
    )
    rate = flake_rate("a.py::t", history.tests["a.py::t"])
    assert (rate.changes, rate.comparisons) == (0, 1)


def test_skips_and_xfails_are_not_failures_and_flaky_runs_count_as_changes() -> None:
    history = history_of(run_of("passed"), run_of("skipped"), run_of("xfailed"), run_of("flaky"))
    rate = flake_rate("a.py::t", history.tests["a.py::t"])
    assert (rate.changes, rate.comparisons) == (1, 3)


def test_flakiest_tests_are_sorted_by_rate_then_changes() -> None:
    def record(recent: str) -> RecordedTest:
        return RecordedTest(0.1, "passed", NOW, 10, 10, recent)

    history = History(
        10,
        {
            "steady.py::t": record("p1 p1 p1 p1"),
            "half.py::t": record("p1 f1 p1 p1 p1"),  # 2 of 4
            "often.py::t": record("p1 f1 p1 f1"),  # 3 of 3
            "edited.py::t": record("P1 F1 P1"),  # module changed each time: no comparison
            "twice.py::b": record("p1 f1 p1 f1 p1 p1 p1 p1 p1"),  # 4 of 8
            "twice.py::a": record("p1 f1 p1 f1 p1 p1 p1 p1 p1"),
        },
    )
    rates = flakiest_tests(history)
    assert [(rate.nodeid, rate.changes, rate.comparisons) for rate in rates] == [
        ("often.py::t", 3, 3),
        ("twice.py::a", 4, 8),
        ("twice.py::b", 4, 8),
        ("half.py::t", 2, 4),
    ]
    assert [rate.nodeid for rate in flakiest_tests(history, top=1)] == ["often.py::t"]


# --------------------------------------------------------------------------- command


def test_durations_flaky_lists_the_flakiest_tests(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pytest_parallel_modules.__main__ import main

    path = tmp_path / "durations.json"
    for outcome in ("passed", "failed", "passed", "passed"):
        save_history(path, run_of(outcome), now=NOW)
    assert main(["durations", "--flaky", "--path", str(path)]) == 0
    output = capsys.readouterr().out
    assert "a.py::t" in output
    assert "67%" in output  # 2 changes in 3 comparisons
    assert "..F." in output  # newest first

    steady = tmp_path / "steady.json"
    save_history(steady, run_of("passed"), now=NOW)
    assert main(["durations", "--flaky", "--path", str(steady)]) == 0
    assert "No flaky tests" in capsys.readouterr().out
