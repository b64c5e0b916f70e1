"""End to end: what the parallel run costs beyond plain pytest, and where it must cost nothing.

The figures themselves are measured in benchmarks/ (never timed here); these
tests pin the mechanisms: ``auto`` keeps a tiny selection in the pytest process,
an explicit count always starts workers, and the compact paths lose nothing a
plugin would see.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import GitRepo
from tests.conftest import junit_outcomes


pytestmark = pytest.mark.e2e

REPORT = Path(".pytest_cache", "d", "parallel-modules-report", "report.json")


def worker_marker(pytester: pytest.Pytester) -> Path:
    """A conftest that creates the returned directory's entries as workers configure."""
    starts = pytester.path.parent / f"{pytester.path.name}-workers"
    starts.mkdir()
    pytester.makeconftest(
        f"""
        import os

        def pytest_configure(config):
            if hasattr(config, "workerinput"):
                open(os.path.join({str(starts)!r}, config.workerinput["workerid"]), "w").close()
        """
    )
    return starts


@pytest.mark.parametrize(
    "narrowing", [(), ("-k", "test_one"), ("test_a.py::test_one",)], ids=["all", "k", "nodeid"]
)
def test_auto_runs_a_tiny_selection_in_the_pytest_process(
    pytester: pytest.Pytester, git_repo: GitRepo, narrowing: tuple[str, ...]
) -> None:
    starts = worker_marker(pytester)
    pytester.makeini("[pytest]\nparallel_modules = auto\n")
    pytester.makepyfile(
        test_a="def test_one():\n    pass\ndef test_two():\n    pass\n",
        test_b="def test_three():\n    pass\n",
    )
    git_repo.commit_all("suite")
    result = pytester.runpytest_subprocess(*narrowing, timeout=60)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        ["*parallel-modules: the selection is estimated at *running it in this process*"]
    )
    assert list(starts.iterdir()) == []


def test_an_explicit_count_always_starts_workers(
    pytester: pytest.Pytester, git_repo: GitRepo
) -> None:
    starts = worker_marker(pytester)
    pytester.makepyfile(test_a="def test_one():\n    pass\n")
    git_repo.commit_all("suite")
    result = pytester.runpytest_subprocess("--parallel-modules=2", timeout=60)
    result.assert_outcomes(passed=1)
    assert "running it in this process" not in result.stdout.str()
    assert [path.name for path in starts.iterdir()] == ["w1"]


def test_compact_passes_reach_junitxml_and_reports_as_full_results(
    pytester: pytest.Pytester, git_repo: GitRepo
) -> None:
    pytester.makepyfile(
        test_many="""
        import pytest

        @pytest.mark.parametrize("n", range(40))
        def test_n(n):
            if n == 7:
                print("some output")
            assert n != 13

        @pytest.mark.xfail
        def test_xpass():
            pass
        """
    )
    git_repo.commit_all("suite")
    plain = pytester.runpytest_subprocess("-p", "no:randomly", "--junitxml=plain.xml", timeout=60)
    parallel = pytester.runpytest_subprocess(
        "-p", "no:randomly", "--parallel-modules=2", "--junitxml=parallel.xml", timeout=60
    )
    assert parallel.parseoutcomes() == plain.parseoutcomes()
    assert junit_outcomes(pytester.path / "parallel.xml") == junit_outcomes(
        pytester.path / "plain.xml"
    )
    report = json.loads((pytester.path / REPORT).read_text())
    [module] = report["modules"]
    assert module["counts"]["tests"] == 41
    assert len(module["passed"]) == 38  # every plain pass, a few bytes each
    full = {test["nodeid"].split("::")[1]: test["outcome"] for test in module["tests"]}
    assert full == {"test_n[7]": "passed", "test_n[13]": "failed", "test_xpass": "xpassed"}
