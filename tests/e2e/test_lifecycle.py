"""End to end: nothing of a run is lost, whatever the user, the machine or a plugin does.

Interrupts (once, twice, while a test hangs), reports that cannot be written,
plan hooks that split a module, retries, far more workers than modules, a test
that forks, a corrupt state file: every selected test ends in the report
exactly once, the terminal and the report agree, and the run's exit code is
the tests' exit code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tests.conftest import GitRepo


pytestmark = pytest.mark.e2e

REPORT = Path(".pytest_cache", "d", "parallel-modules-report", "report.json")


def start_run(path: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:randomly", *args],
        cwd=path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def wait_for(path: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.05)


def pytest_counts(text: str) -> dict[str, int]:
    """The counts of pytest's own last line ("3 passed, 1 failed in 2.0s")."""
    last = [line for line in text.splitlines() if re.search(r" in [\d.]+s", line)][-1]
    return {word: int(number) for number, word in re.findall(r"(\d+) (\w+)", last)}


@pytest.mark.parametrize("signals", [1, 2], ids=["once", "twice"])
def test_an_interrupt_names_the_hanging_test_and_every_test_is_accounted_for(
    pytester: pytest.Pytester, git_repo: GitRepo, signals: int
) -> None:
    started = pytester.path / "hang-started"
    pytester.makepyfile(
        test_hangs=textwrap.dedent(
            f"""
            import time
            from pathlib import Path

            def test_before():
                pass

            def test_hangs():
                Path({str(started)!r}).touch()
                while True:
                    time.sleep(0.05)

            def test_after():
                pass
            """
        ),
        test_quick="\n".join(f"def test_{i}():\n    pass\n" for i in range(5)),
        test_later="\n".join(f"def test_{i}():\n    pass\n" for i in range(4)),
    )
    git_repo.commit_all("suite")
    process = start_run(pytester.path, "--parallel-modules=2", "-rA")
    wait_for(started)
    time.sleep(1.0)  # the quick modules finish meanwhile
    interrupted = time.monotonic()
    for _ in range(signals):
        process.send_signal(signal.SIGINT)
        time.sleep(0.2)
    output, _ = process.communicate(timeout=30)
    took = time.monotonic() - interrupted
    text = output.decode()
    assert process.returncode == pytest.ExitCode.INTERRUPTED, text
    assert took < (5 if signals == 1 else 3), text
    report = json.loads((pytester.path / REPORT).read_text())
    totals = report["totals"]
    assert totals["tests"] == 12, totals
    assert totals["interrupted"] == 1, totals
    hanging = next(
        test
        for module in report["modules"]
        for test in module["tests"]
        if test["nodeid"] == "test_hangs.py::test_hangs"
    )
    assert hanging["outcome"] == "interrupted"
    # Its worker's stacks name the line it hung on.
    assert "test_hangs.py" in hanging["longrepr"], hanging["longrepr"]
    assert "most recent call first" in hanging["longrepr"], hanging["longrepr"]
    # pytest's line and the plugin's agree on what finished.
    assert pytest_counts(text).get("passed", 0) == totals["passed"], text
    assert totals["passed"] + totals["interrupted"] + totals["not_run"] == 12
    assert "1 interrupted" in text


def test_report_files_that_cannot_be_written_are_a_warning_not_a_lost_run(
    pytester: pytest.Pytester, git_repo: GitRepo
) -> None:
    # A file where the report directory should be: nothing can be written under it.
    blocker = pytester.path / "reports"
    blocker.write_text("not a directory\n")
    for index in range(3):
        pytester.makepyfile(**{f"test_m{index}": "def test_a():\n    pass\n"})
    git_repo.commit_all("suite")
    result = pytester.runpytest_subprocess(
        "--parallel-modules=2", "--module-report-dir=reports/run", timeout=60
    )
    # A report directory named on the command line that cannot be made is a usage error...
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--module-report-dir*reports/run*"])
    # ... while one that breaks during the run costs a warning line, never the run.
    pytester.makeconftest(
        """
        import os, pytest

        @pytest.hookimpl(trylast=True)
        def pytest_parallel_modules_module_started(config, module, worker_id, nodeids):
            target = os.path.join(str(config.rootpath), "out", "report.json")
            if not os.path.isdir(target):
                os.makedirs(target)  # report.json becomes a directory
        """
    )
    result = pytester.runpytest_subprocess(
        "--parallel-modules=2", "--module-report-dir=out", timeout=60
    )
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    result.stdout.fnmatch_lines(["*WARNING: could not write *report.json*", "*3 passed*"])
    assert "INTERNALERROR" not in result.stdout.str()


def test_a_plan_hook_that_splits_a_module_keeps_both_parts(
    pytester: pytest.Pytester, git_repo: GitRepo
) -> None:
    pytester.makeconftest(
        """
        from pytest_parallel_modules import ModuleGroup

        def pytest_parallel_modules_plan(config, plan):
            out = []
            for group in plan:
                if group.module == "test_big.py":
                    half = len(group.nodeids) // 2
                    out.append(ModuleGroup(group.module, group.nodeids[:half]))
                    out.append(ModuleGroup(group.module, group.nodeids[half:]))
                else:
                    out.append(group)
            return out
        """
    )
    pytester.makepyfile(
        test_big="""
        import pytest

        @pytest.mark.parametrize("n", range(6))
        def test_n(n):
            assert n != 4
        """,
        test_other="def test_ok():\n    pass\n",
    )
    git_repo.commit_all("suite")
    result = pytester.runpytest_subprocess("--parallel-modules=2", timeout=60)
    result.assert_outcomes(passed=6, failed=1)
    report = json.loads((pytester.path / REPORT).read_text())
    [big] = [module for module in report["modules"] if module["module"] == "test_big.py"]
    assert big["counts"]["tests"] == 6
    assert [unit["id"] for unit in big["units"]] == ["test_big.py[1/2]", "test_big.py[2/2]"]
    assert (pytester.path / REPORT.parent / "modules" / "test_big.py.json").exists()
    # The failure of the second part is remembered for --rerun-failed-modules.
    rerun = pytester.runpytest_subprocess(
        "--parallel-modules=2", "--rerun-failed-modules", timeout=60
    )
    rerun.assert_outcomes(passed=5, failed=1)


@pytest.mark.slow
def test_retries_never_run_more_modules_at_once_than_workers(
    pytester: pytest.Pytester, git_repo: GitRepo
) -> None:
    log = pytester.path.parent / f"{pytester.path.name}-spans.log"
    pytester.makeconftest(
        f"""
        import os, time, pytest

        @pytest.fixture(autouse=True, scope="module")
        def _span(request):
            start = time.time()
            yield
            with open({str(log)!r}, "a") as f:
                f.write(f"{{start}} {{time.time()}}\\n")
        """
    )
    counter = pytester.path.parent / f"{pytester.path.name}-attempts"
    pytester.makepyfile(
        # The biggest file: planned first, so its retry is due while work is left.
        test_flaky=textwrap.dedent(
            f"""
            import os, time
            def test_flaky():
                time.sleep(0.3)
                path = {str(counter)!r}
                first = not os.path.exists(path)
                open(path, "a").close()
                assert not first
            """
        )
        + "# padding\n" * 50,
        **{f"test_m{i}": "import time\ndef test_a():\n    time.sleep(1.0)\n" for i in range(5)},
    )
    git_repo.commit_all("suite")
    result = pytester.runpytest_subprocess(
        "--parallel-modules=1", "--module-retries=1", "-p", "no:randomly", timeout=60
    )
    result.assert_outcomes(passed=6)
    spans = [tuple(map(float, line.split())) for line in log.read_text().splitlines()]
    assert len(spans) == 7  # six modules, one of them twice
    for index, (start, end) in enumerate(spans):
        for other_start, other_end in spans[index + 1 :]:
            assert end <= other_start or other_end <= start, f"overlapping modules: {spans}"


def test_workers_and_worktrees_never_outnumber_the_modules(
    pytester: pytest.Pytester, git_repo: GitRepo, tmp_path: Path
) -> None:
    starts = pytester.path.parent / f"{pytester.path.name}-starts"
    starts.mkdir()
    pytester.makeconftest(
        f"""
        import os

        def pytest_configure(config):
            if hasattr(config, "workerinput"):
                open(os.path.join({str(starts)!r}, config.workerinput["workerid"]), "w").close()
        """
    )
    for index in range(3):
        pytester.makepyfile(**{f"test_m{index}": "def test_a():\n    pass\n"})
    git_repo.commit_all("suite")
    result = pytester.runpytest_subprocess("--parallel-modules=30", timeout=60)
    result.assert_outcomes(passed=3)
    assert len(list(starts.iterdir())) <= 3
    pool = Path(os.environ["PYTEST_PARALLEL_MODULES_POOL_DIR"])
    slots = [entry for entry in pool.rglob("slot-*") if entry.is_dir()]
    assert len(slots) <= 3, slots


def test_a_test_that_forks_a_child_which_raises_behaves_as_in_a_plain_run(
    pytester: pytest.Pytester, git_repo: GitRepo
) -> None:
    pytester.makepyfile(
        test_fork="""
        import os

        def test_forks():
            pid = os.fork()
            if pid == 0:
                raise RuntimeError("the child raises instead of os._exit")
            _, status = os.waitpid(pid, 0)
            assert os.WIFEXITED(status)

        def test_after():
            pass
        """,
        test_other="def test_ok():\n    pass\n",
    )
    git_repo.commit_all("suite")
    started = time.monotonic()
    result = pytester.runpytest_subprocess("--parallel-modules=2", "-p", "no:randomly", timeout=60)
    assert time.monotonic() - started < 30
    assert "INTERNALERROR" not in result.stdout.str()
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed") == 3, result.stdout.str()


def test_a_corrupt_failed_modules_state_is_moved_aside_with_a_warning(
    pytester: pytest.Pytester, git_repo: GitRepo
) -> None:
    pytester.makepyfile(test_a="def test_a():\n    pass\n")
    git_repo.commit_all("suite")
    state = pytester.path / ".pytest_cache" / "d" / "parallel-modules" / "failed-modules.json"
    state.parent.mkdir(parents=True)
    state.write_text("{ not json")
    result = pytester.runpytest_subprocess(
        "--parallel-modules=2", "--rerun-failed-modules", timeout=60
    )
    result.stdout.fnmatch_lines(
        [
            "*WARNING: ignored the failed modules *failed-modules.json*moved to failed-modules.json.corrupt-*"
        ]
    )
    assert list(state.parent.glob("failed-modules.json.corrupt-*"))


def test_an_import_error_ends_the_run_without_waiting_for_workers(
    pytester: pytest.Pytester, git_repo: GitRepo
) -> None:
    pytester.makepyfile(
        test_broken="import no_such_module_anywhere\n",
        **{f"test_m{i}": "def test_a():\n    pass\n" for i in range(4)},
    )
    git_repo.commit_all("suite")
    started = time.monotonic()
    plain = pytester.runpytest_subprocess(timeout=60)
    plain_s = time.monotonic() - started
    started = time.monotonic()
    result = pytester.runpytest_subprocess("--parallel-modules=2", timeout=60)
    parallel_s = time.monotonic() - started
    assert result.ret == plain.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*1 error during collection*"])
    # Workers still starting are killed, not waited for.
    assert parallel_s < plain_s + 3.0, (plain_s, parallel_s)


def test_a_pytest_run_in_process_inside_a_worker_leaves_its_environment_alone(
    pytester: pytest.Pytester, git_repo: GitRepo
) -> None:
    seen = pytester.path.parent / f"{pytester.path.name}-environ.log"
    inner = pytester.path / "inner"
    inner.mkdir()
    (inner / "test_inner.py").write_text("def test_inner():\n    pass\n")
    names = ["PYTEST_PARALLEL_MODULES_WORKER", "HYPOTHESIS_STORAGE_DIRECTORY"]
    pytester.makepyfile(
        test_outer=textwrap.dedent(
            f"""
            import os
            import pytest

            NAMES = {names!r}

            def test_nested_in_process():
                before = {{name: os.environ.get(name) for name in NAMES}}
                assert pytest.main(["-q", "-p", "no:randomly", "-p", "no:cacheprovider", {str(inner)!r}]) == 0
                after = {{name: os.environ.get(name) for name in NAMES}}
                with open({str(seen)!r}, "w") as log:
                    log.write(repr((before, after)))
            """
        )
    )
    pytester.makeini("[pytest]\ntestpaths = test_outer.py\n")
    git_repo.commit_all("suite")
    result = pytester.runpytest_subprocess("--parallel-modules=1", "-p", "no:randomly", timeout=60)
    result.assert_outcomes(passed=1)
    before, after = eval(seen.read_text())
    assert before["PYTEST_PARALLEL_MODULES_WORKER"] == "w1"
    assert after == before
