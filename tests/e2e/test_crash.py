"""End to end: a crashed, hung or interrupted worker costs at most the test it was running."""

from __future__ import annotations

import json
import os
from pathlib import Path
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tests.conftest import GitRepo


pytestmark = pytest.mark.e2e

REPORT = Path(".pytest_cache", "d", "parallel-modules-report", "report.json")

CRASHES = {
    "segfault": ("import faulthandler", "faulthandler._sigsegv()", "killed by signal SIGSEGV"),
    "os-exit": ("import os", "os._exit(3)", "exit code 3"),
    "sigkill": (
        "import os, signal",
        "os.kill(os.getpid(), signal.SIGKILL)",
        "killed by signal SIGKILL",
    ),
    "abort": ("import os", "os.abort()", "killed by signal SIGABRT"),
    "keyboard-interrupt": (
        "",
        "raise KeyboardInterrupt",
        "its pytest session ended early (exit code 2)",
    ),
}


def write_crashing_suite(
    pytester: pytest.Pytester, imports: str, crash: str, phase: str = "call"
) -> Path:
    """test_crash.py: a test before, the crashing one (in ``phase``), two after; plus another module."""
    runs = pytester.path.parent / f"{pytester.path.name}-runs.log"
    body = {
        "call": f"def test_crashes():\n    _ran()\n    {crash}\n",
        "setup": f"@pytest.fixture\ndef boom():\n    {crash}\n\ndef test_crashes(boom):\n    _ran()\n",
        "teardown": f"@pytest.fixture\ndef boom():\n    yield\n    {crash}\n\ndef test_crashes(boom):\n    _ran()\n",
    }[phase]
    pytester.makepyfile(
        test_crash=f"""
{imports}
import pytest

def _ran():
    with open({str(runs)!r}, "a") as f:
        f.write("ran\\n")

def test_before():
    pass

{body}

def test_after_one():
    pass

def test_after_two():
    pass
""",
        test_other="import time\ndef test_o1(): time.sleep(0.2)\ndef test_o2(): pass\n",
    )
    return runs


@pytest.mark.parametrize("kind", list(CRASHES))
def test_a_crashing_worker_costs_only_the_test_it_was_running(
    pytester: pytest.Pytester, git_repo: GitRepo, kind: str
) -> None:
    imports, crash, evidence = CRASHES[kind]
    runs = write_crashing_suite(pytester, imports, crash)
    result = pytester.runpytest_subprocess("--parallel-modules=2", "-rA", timeout=60)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["worker w? crashed while running test_crash.py::test_crashes"])
    for line in (
        "PASSED test_crash.py::test_before",
        "PASSED test_crash.py::test_after_one",
        "PASSED test_crash.py::test_after_two",
        "PASSED test_other.py::test_o1",
        "PASSED test_other.py::test_o2",
    ):
        assert line in result.outlines
    result.assert_outcomes(passed=5, failed=1)
    assert evidence in result.stdout.str()
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    # Never run twice (pytest-xdist's grouped modes re-queue it).
    assert runs.read_text() == "ran\n"
    report = json.loads((pytester.path / REPORT).read_text())
    crashed = next(m for m in report["modules"] if m["module"] == "test_crash.py")
    assert crashed["outcome"] == "crashed"
    assert crashed["counts"]["passed"] == 3 and crashed["counts"]["failed"] == 1


@pytest.mark.parametrize("phase", ["setup", "teardown"])
def test_a_crash_in_setup_or_teardown(
    pytester: pytest.Pytester, git_repo: GitRepo, phase: str
) -> None:
    write_crashing_suite(pytester, "import os", "os._exit(4)", phase)
    result = pytester.runpytest_subprocess("--parallel-modules=2", "-rA", timeout=60)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        ["*worker w? crashed while running test_crash.py::test_crashes*", "*exit code 4*"]
    )
    assert "PASSED test_crash.py::test_after_two" in result.outlines
    assert "INTERNALERROR" not in result.stdout.str()


def test_system_exit_in_a_test_is_a_failure_as_in_plain_pytest(
    pytester: pytest.Pytester, git_repo: GitRepo, run_both
) -> None:
    pytester.makepyfile(
        test_exit="import sys\ndef test_exits(): sys.exit(3)\ndef test_next(): pass\n"
    )
    plain, parallel = run_both("-rA", workers=1)
    assert parallel.ret == plain.ret == pytest.ExitCode.TESTS_FAILED
    parallel.assert_outcomes(passed=1, failed=1)


def test_restart_budget_then_modules_left_are_not_run(
    pytester: pytest.Pytester, git_repo: GitRepo
) -> None:
    for index in range(3):
        pytester.makepyfile(
            **{f"test_die{index}": "import os\ndef test_dies(): os._exit(1)\ndef test_z(): pass\n"}
        )
    result = pytester.runpytest_subprocess(
        "--parallel-modules=1", "--module-worker-restarts=1", timeout=60
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        ["*no worker left (--module-worker-restarts=1 used up); the modules left are not run*"]
    )
    assert "were not run: no worker was left to run them" in result.stdout.str()
    assert "INTERNALERROR" not in result.stdout.str()
    report = json.loads((pytester.path / REPORT).read_text())
    assert report["totals"]["failed"] == 2
    assert report["totals"]["not_run"] >= 2


@pytest.mark.slow
def test_a_hanging_test_times_out_and_the_run_goes_on(
    pytester: pytest.Pytester, git_repo: GitRepo
) -> None:
    child_pid = pytester.path / "child.pid"
    pytester.makepyfile(
        test_hang=f"""
        import subprocess, sys, time

        def test_fast():
            pass

        def test_hangs():
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
            open({str(child_pid)!r}, "w").write(str(child.pid))
            time.sleep(120)

        def test_never_reached():
            pass
        """,
        test_fine="def test_fine(): pass\n",
    )
    started = time.monotonic()
    result = pytester.runpytest_subprocess(
        "--parallel-modules=1", "--module-timeout=2", "-rA", "-p", "no:randomly", timeout=60
    )
    assert time.monotonic() - started < 30
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        ["worker w1 timed out after 2s while running test_hang.py::test_hangs"]
    )
    # The stacks at the moment of the timeout point at the hanging line.
    result.stdout.fnmatch_lines(["*test_hang.py*line 9 in test_hangs*"])
    assert "PASSED test_fine.py::test_fine" in result.outlines
    assert "PASSED test_hang.py::test_never_reached" not in result.outlines
    report = json.loads((pytester.path / REPORT).read_text())
    hung = next(m for m in report["modules"] if m["module"] == "test_hang.py")
    assert hung["outcome"] == "timeout"
    assert hung["counts"]["not_run"] == 1
    # The child the test started died with its worker's process group.
    pid = int(child_pid.read_text())
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead but not yet reaped by its parent.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] != "Z"
    except OSError:
        return False


def _run_processes(marker: str) -> list[str]:
    output = subprocess.run(
        ["ps", "-eo", "pid,args"], capture_output=True, text=True, check=False
    ).stdout
    return [line for line in output.splitlines() if marker in line]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("how", "signals"),
    [
        ("sigint", [signal.SIGINT]),
        ("sigterm", [signal.SIGTERM]),
        ("double-sigint", [signal.SIGINT, signal.SIGINT]),
    ],
)
def test_interrupting_the_run_stops_everything_quickly(
    pytester: pytest.Pytester, git_repo: GitRepo, how: str, signals: list[signal.Signals]
) -> None:
    marker = f"sleep-marker-{how}-{os.getpid()}"
    started = pytester.path / "started"
    quick_done = pytester.path / "quick-done"
    pytester.makepyfile(
        test_quick=f"from pathlib import Path\ndef test_quick(): Path({str(quick_done)!r}).touch()\n",
        test_long=textwrap.dedent(
            f"""
            import subprocess, sys, time
            from pathlib import Path

            def test_long():
                subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", {marker!r}])
                Path({str(started)!r}).touch()
                time.sleep(60)
            """
        ),
    )
    git_repo.commit_all("suite")
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest", "--parallel-modules=2", "-p", "no:randomly"],
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while not (started.exists() and quick_done.exists()):
        assert time.monotonic() < deadline, "the tests never started"
        time.sleep(0.05)
    time.sleep(0.3)  # let the quick test's report reach the controller
    interrupted = time.monotonic()
    for sig in signals:
        process.send_signal(sig)
        time.sleep(0.2)
    output, _ = process.communicate(timeout=30)
    assert time.monotonic() - interrupted < 5
    text = output.decode()
    assert process.returncode == pytest.ExitCode.INTERRUPTED, text
    assert "KeyboardInterrupt" in text
    assert "parallel-modules summary" in text  # a partial summary
    assert "1 passed" in text
    # The test that never finished counts: half the selected tests passed, not all.
    assert "pass rate 50.0% (1 of 2)" in text
    assert "Tests without a result: 1 interrupted, in 1 module (test_long.py)" in text
    assert "Rerun only the failed modules" not in text  # none failed
    time.sleep(0.5)
    assert _run_processes(marker) == []
    # Slots were unlocked: the next run starts normally and passes.
    started.unlink()
    (pytester.path / "test_long.py").unlink()
    rerun = subprocess.run(
        [sys.executable, "-m", "pytest", "--parallel-modules=2"],
        cwd=pytester.path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert rerun.returncode == 0, rerun.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--module-timeout=-3"], "--module-timeout: expected a number of seconds > 0, got '-3'"),
        (["--module-timeout=0"], "--module-timeout: expected a number of seconds > 0, got '0'"),
        (["--module-timeout=abc"], "--module-timeout: expected a number of seconds > 0, got 'abc'"),
        (["--module-timeout=nan"], "--module-timeout: expected a number of seconds > 0, got 'nan'"),
        (
            ["--module-worker-restarts=-1"],
            "--module-worker-restarts: expected a whole number >= 0, got '-1'",
        ),
        (
            ["--module-worker-restarts=many"],
            "--module-worker-restarts: expected a whole number >= 0, got 'many'",
        ),
        (
            ["-o", "module_timeout=soon"],
            "ini module_timeout: expected a number of seconds > 0, got 'soon'",
        ),
    ],
)
def test_bad_reliability_options_are_usage_errors(
    pytester: pytest.Pytester, args: list[str], message: str
) -> None:
    result = pytester.runpytest("--parallel-modules=1", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
