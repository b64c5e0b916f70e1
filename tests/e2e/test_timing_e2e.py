"""End to end: the summary's timing analysis holds up against pytest's own clock (#16)."""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import GitRepo


pytestmark = pytest.mark.e2e

_WALL = re.compile(
    r"^Wall (?P<wall>[\d.]+)s: collection (?P<collection>[\d.]+)s, "
    r"start-up (?P<startup>[\d.]+)s, schedule (?P<schedule>[\d.]+)s, tail (?P<tail>[\d.]+)s$"
)
_PYTEST_WALL = re.compile(r"^=+ .* in (?P<wall>[\d.]+)s(?: \([^)]*\))? =+$")
_RATIO = re.compile(r"wall / LB = (?P<ratio>[\d.]+)")


def _match(pattern: re.Pattern[str], result: pytest.RunResult) -> re.Match[str]:
    for line in result.outlines:
        found = pattern.search(line)
        if found is not None:
            return found
    pytest.fail(f"no line matches {pattern.pattern!r} in:\n{result.stdout.str()}")


def test_the_wall_is_pytests_own_and_counts_a_slow_collection(
    pytester: pytest.Pytester, git_repo: GitRepo
) -> None:
    # The controller's collection takes 2 s more; the workers' does not (they would
    # only make the test slower).
    pytester.makeconftest(
        """
        import os
        import time

        def pytest_collection_modifyitems(items):
            if not os.environ.get("PYTEST_PARALLEL_MODULES_WORKER"):
                time.sleep(2.0)
        """
    )
    pytester.makepyfile(
        test_one="import time\ndef test_a(): time.sleep(0.3)\n",
        test_two="import time\ndef test_b(): time.sleep(0.3)\n",
    )
    git_repo.commit_all()
    result = pytester.runpytest_subprocess(
        "--parallel-modules=2",
        "-p",
        "no:randomly",
        "--module-report-dir=reports",
        timeout=60,
    )
    result.assert_outcomes(passed=2)
    wall = _match(_WALL, result)
    parts = {name: float(value) for name, value in wall.groupdict().items()}
    pytest_wall = float(_match(_PYTEST_WALL, result)["wall"])
    assert abs(parts["wall"] - pytest_wall) <= 0.3, (parts, pytest_wall)
    assert parts["collection"] >= 2.0
    # The parts add up to the wall (each is rounded to 10 ms).
    total = parts["collection"] + parts["startup"] + parts["schedule"] + parts["tail"]
    assert abs(total - parts["wall"]) <= 0.03
    assert parts["schedule"] >= 0.3
    assert float(_match(_RATIO, result)["ratio"]) >= 1.0
    result.stdout.fnmatch_lines(["Most of the wall: collection and planning, *"])
    result.stdout.no_fnmatch_line("*speedup*")
    report = json.loads((pytester.path / "reports" / "report.json").read_text())
    assert report["timeline"]["collected_s"] >= 2.0
    # The JSON's wall ends when the report was built; the summary reads the clock again
    # when it prints, just before pytest's line.
    assert report["wall_s"] - 0.01 <= parts["wall"] <= report["wall_s"] + 0.3


def test_wall_over_lb_is_at_least_one_with_contended_cpu_bound_modules(
    pytester: pytest.Pytester, git_repo: GitRepo
) -> None:
    # Three CPU-bound modules on three workers, whatever the machine's CPUs: on fewer
    # CPUs their durations stretch, and the bound must still not beat the wall.
    busy = (
        "import time\n"
        "def test_busy():\n"
        "    end = time.process_time() + 0.4\n"
        "    while time.process_time() < end:\n"
        "        pass\n"
    )
    pytester.makepyfile(test_one=busy, test_two=busy, test_three=busy)
    git_repo.commit_all()
    result = pytester.runpytest_subprocess(
        "--parallel-modules=3", "-p", "no:randomly", "--module-report-dir=reports", timeout=60
    )
    result.assert_outcomes(passed=3)
    assert float(_match(_RATIO, result)["ratio"]) >= 1.0
    result.stdout.fnmatch_lines(
        ["Tests' own time *s (measured under contention) in *s wall, 3 workers"]
    )
    timeline = json.loads((pytester.path / "reports" / "report.json").read_text())["timeline"]
    assert timeline["cpus"] >= 1
    # Each worker measured the CPU time its module's test spent: 0.4 s of busy loop.
    assert [unit["cpu_s"] >= 0.35 for unit in timeline["units"]] == [True] * 3
