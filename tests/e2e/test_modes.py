"""End to end: --fail-fast-modules, --rerun-failed-modules and module retries."""

from __future__ import annotations

import json
import os
from pathlib import Path
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import pytest

from tests.conftest import GitRepo
from tests.conftest import short_summary


pytestmark = pytest.mark.e2e

REPORT = Path(".pytest_cache", "d", "parallel-modules-report", "report.json")


def outcomes_by_module(pytester: pytest.Pytester) -> dict[str, str]:
    report = json.loads((pytester.path / REPORT).read_text())
    return {module["module"]: module["outcome"] for module in report["modules"]}


def write_fail_fast_suite(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_a_fails="import time\ndef test_f1():\n    time.sleep(0.3)\n    assert 0\ndef test_f2(): assert 0\ndef test_f3(): pass\n",
        test_b_long="import time\n"
        + "".join(f"def test_l{i}(): time.sleep(0.5)\n" for i in range(8)),
        test_c_long="import time\n"
        + "".join(f"def test_l{i}(): time.sleep(0.5)\n" for i in range(8)),
        test_d_short="def test_ok(): pass\n",
    )


def test_fail_fast_stops_the_run_after_the_failing_module(
    pytester: pytest.Pytester, git_repo: GitRepo
) -> None:
    write_fail_fast_suite(pytester)
    started = time.monotonic()
    # Three workers: the failing module (scheduled last without history) runs alongside the long ones.
    result = pytester.runpytest_subprocess(
        "--fail-fast-modules", "--parallel-modules=3", "-p", "no:randomly", "-rA", timeout=60
    )
    elapsed = time.monotonic() - started
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        ["*stopping after the first failed module (--fail-fast-modules): test_a_fails.py*"]
    )
    # The failing module ran to its end: all its failures at once.
    summary = short_summary(result)
    assert "FAILED test_a_fails.py::test_f1 - assert 0" in summary
    assert "FAILED test_a_fails.py::test_f2 - assert 0" in summary
    assert "PASSED test_a_fails.py::test_f3" in summary
    outcomes = outcomes_by_module(pytester)
    assert outcomes["test_a_fails.py"] == "failed"
    assert "not_run" in outcomes.values() or "interrupted" in outcomes.values()
    assert elapsed < 8  # two 4-second modules never ran to their end
    # The rerun line names the failed module only, the others apart; no advice on speed.
    rerun_lines = [line for line in result.outlines if line.startswith("Rerun only")]
    assert rerun_lines == ["Rerun only the failed modules: pytest test_a_fails.py"]
    result.stdout.fnmatch_lines(["Tests without a result: *, in * modules (*test_b_long.py*)"])
    assert "Bottleneck" not in result.stdout.str()
    # The line pastes into a shell as it is.
    venv_bin = str(Path(sys.executable).parent)
    pasted = subprocess.run(
        ["bash", "-c", rerun_lines[0].split(": ", 1)[1] + " -p no:randomly"],
        cwd=pytester.path,
        env={**os.environ, "PATH": venv_bin + os.pathsep + os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert pasted.returncode == pytest.ExitCode.TESTS_FAILED, pasted.stdout
    assert "collected 3 items" in pasted.stdout
    assert "2 failed, 1 passed" in pasted.stdout


@pytest.mark.slow
def test_fail_fast_runs_last_runs_failures_first_and_with_x_stops_at_the_first(
    pytester: pytest.Pytester, git_repo: GitRepo
) -> None:
    write_fail_fast_suite(pytester)
    pytester.runpytest_subprocess(
        "--fail-fast-modules", "--parallel-modules=1", "-p", "no:randomly", timeout=60
    )
    state = json.loads(
        (pytester.path / ".pytest_cache/d/parallel-modules/failed-modules.json").read_text()
    )
    assert state["failed_modules"] == ["test_a_fails.py"]
    result = pytester.runpytest_subprocess(
        "--fail-fast-modules", "-x", "-p", "no:randomly", "-rA", timeout=60
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        ["parallel-modules: * workers (auto, implied by --fail-fast-modules)"]
    )
    summary = short_summary(result)
    # -x as well: the failing module stops at its first failure; the other worker
    # finishes at most the test it was running.
    assert [line for line in summary if "test_a_fails" in line] == [
        "FAILED test_a_fails.py::test_f1 - assert 0"
    ]
    assert len([line for line in summary if line.startswith("PASSED")]) <= 1


def test_fail_fast_kills_a_worker_still_busy_after_the_grace_period(
    pytester: pytest.Pytester, git_repo: GitRepo
) -> None:
    pytester.makepyfile(
        test_a_fails="import time\ndef test_f():\n    time.sleep(0.5)\n    assert 0\n",
        test_b_stuck="import time\ndef test_stuck(): time.sleep(60)\ndef test_more(): pass\n",
    )
    started = time.monotonic()
    result = pytester.runpytest_subprocess(
        "--fail-fast-modules", "--fail-fast-grace=1", "--parallel-modules=2", timeout=60
    )
    assert time.monotonic() - started < 15
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*was still busy 1s after the fail-fast stop and was killed*"])
    assert outcomes_by_module(pytester) == {
        "test_a_fails.py": "failed",
        "test_b_stuck.py": "interrupted",
    }


def test_rerun_failed_modules_runs_failed_modules_in_full(
    pytester: pytest.Pytester, git_repo: GitRepo
) -> None:
    pytester.makepyfile(
        test_one="def test_a(): pass\ndef test_b(): assert 0\n",
        test_two="def test_c(): pass\ndef test_c2(): pass\n",
        test_three="import os\ndef test_d(): assert os.environ.get('FIXED') == '1'\ndef test_e(): pass\n",
    )
    first = pytester.runpytest_subprocess("--parallel-modules=2", timeout=60)
    first.assert_outcomes(passed=4, failed=2)

    rerun = pytester.runpytest_subprocess("--rerun-failed-modules", "-rA", timeout=60)
    # Tests, as pytest's own line counts them, not modules.
    rerun.stdout.fnmatch_lines(
        [
            "collected 6 items / 2 deselected / 4 selected",
            "parallel-modules: rerunning 2 module(s) that failed last time (2 deselected)",
        ]
    )
    # In full: the passing tests of failed modules run too.
    assert short_summary(rerun) == [
        "FAILED test_one.py::test_b - assert 0",
        "FAILED test_three.py::test_d - AssertionError: assert None == '1'",
        "PASSED test_one.py::test_a",
        "PASSED test_three.py::test_e",
    ]
    # A module that now passes leaves the set; -k narrows the rerun as usual.
    pytester.makepyfile(test_one="def test_a(): pass\ndef test_b(): pass\n")
    fixed = pytester.runpytest_subprocess(
        "--rerun-failed-modules", "-k", "test_a or test_b", timeout=60
    )
    fixed.assert_outcomes(passed=2)
    again = pytester.runpytest_subprocess("--rerun-failed-modules", "-rA", timeout=60)
    assert short_summary(again) == [
        "FAILED test_three.py::test_d - AssertionError: assert None == '1'",
        "PASSED test_three.py::test_e",
    ]


@pytest.mark.parametrize(("none", "expected"), [("all", 2), ("none", 0)])
def test_rerun_failed_modules_with_nothing_failed(
    pytester: pytest.Pytester, git_repo: GitRepo, none: str, expected: int
) -> None:
    pytester.makepyfile(test_one="def test_a(): pass\n", test_two="def test_b(): pass\n")
    result = pytester.runpytest_subprocess(
        "--rerun-failed-modules", f"--rerun-failed-modules-none={none}", timeout=60
    )
    word = "all" if none == "all" else "no"
    result.stdout.fnmatch_lines(
        [
            f"parallel-modules: no module failed last time; running {word} modules (--rerun-failed-modules-none={none})"
        ]
    )
    if expected:
        result.assert_outcomes(passed=expected)
    else:
        assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED


def test_rerun_failed_modules_without_the_cache_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--rerun-failed-modules", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --rerun-failed-modules needs pytest's cache*"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--fail-fast-modules", "--fail-fast-grace=-1"],
            "--fail-fast-grace: expected a number of seconds > 0, got '-1'",
        ),
        (["--module-retries=-2"], "--module-retries: expected a whole number >= 0, got '-2'"),
        (["--module-retries=two"], "--module-retries: expected a whole number >= 0, got 'two'"),
    ],
)
def test_bad_mode_options_are_usage_errors(
    pytester: pytest.Pytester, args: list[str], message: str
) -> None:
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])


def write_flaky_suite(pytester: pytest.Pytester) -> Path:
    counter = pytester.path.parent / f"{pytester.path.name}-counter"
    pytester.makepyfile(
        test_flaky=f"""
        from pathlib import Path

        COUNTER = Path({str(counter)!r})

        def test_flaky():
            runs = int(COUNTER.read_text()) if COUNTER.exists() else 0
            COUNTER.write_text(str(runs + 1))
            assert runs >= 1, "fails the first time only"

        def test_stable():
            pass
        """,
        test_broken="def test_always(): assert 0, 'always broken'\ndef test_fine(): pass\n",
        test_ok="def test_ok(): pass\n",
    )
    return counter


def test_module_retries_report_flaky_tests_once(
    pytester: pytest.Pytester, git_repo: GitRepo
) -> None:
    counter = write_flaky_suite(pytester)
    result = pytester.runpytest_subprocess(
        "--module-retries=2",
        "--parallel-modules=2",
        "-p",
        "no:randomly",
        "-rA",
        "--junitxml=junit.xml",
        timeout=60,
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # test_broken keeps failing
    # Never counted twice: 5 tests, each once.
    result.assert_outcomes(passed=4, failed=1)
    assert counter.read_text() == "2"  # the flaky module ran twice, in full
    result.stdout.fnmatch_lines(
        ["*retrying test_flaky.py (attempt 2 of 3)*", "*retrying test_broken.py (attempt 3 of 3)*"],
        consecutive=False,
    )
    result.stdout.fnmatch_lines(
        ["Flaky (failed, then passed on a retry): test_flaky.py::test_flaky"]
    )
    report = json.loads((pytester.path / REPORT).read_text())
    modules = {module["module"]: module for module in report["modules"]}
    assert modules["test_flaky.py"]["flaky"] == ["test_flaky.py::test_flaky"]
    assert [a["outcome"] for a in modules["test_flaky.py"]["attempts"]] == ["failed", "passed"]
    assert (
        "fails the first time only"
        in modules["test_flaky.py"]["attempts"][0]["failures"][0]["longrepr"]
    )
    assert [a["outcome"] for a in modules["test_broken.py"]["attempts"]] == [
        "failed",
        "failed",
        "failed",
    ]
    assert "attempts" not in modules["test_ok.py"]
    cases = {
        case.get("name"): [child.tag for child in case]
        for case in ET.parse(pytester.path / "junit.xml").iter("testcase")
    }
    assert cases["test_flaky"] == ["flakyFailure"]
    assert cases["test_always"] == ["failure", "rerunFailure", "rerunFailure"]
    assert cases["test_stable"] == [] and cases["test_ok"] == []


@pytest.mark.slow
def test_flaky_tests_pass_unless_strict(pytester: pytest.Pytester, git_repo: GitRepo) -> None:
    counter = write_flaky_suite(pytester)
    (pytester.path / "test_broken.py").unlink()
    relaxed = pytester.runpytest_subprocess(
        "--module-retries=1", "--parallel-modules=2", timeout=60
    )
    relaxed.assert_outcomes(passed=3)
    assert relaxed.ret == pytest.ExitCode.OK
    counter.unlink()
    strict = pytester.runpytest_subprocess(
        "--module-retries=1", "--module-retries-strict", "--parallel-modules=2", "-rA", timeout=60
    )
    assert strict.ret == pytest.ExitCode.TESTS_FAILED
    strict.stdout.fnmatch_lines(
        ["FAILED test_flaky.py::test_flaky - flaky (--module-retries-strict)*"]
    )
