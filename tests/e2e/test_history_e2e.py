"""End to end: the duration history is written after a run and orders the next one."""

from __future__ import annotations

from pathlib import Path
import subprocess
import sys

import pytest

from pytest_parallel_modules.history import parse_history
from tests.conftest import GitRepo


pytestmark = pytest.mark.e2e

HISTORY = Path(".pytest_cache", "d", "parallel-modules", "durations.json")


def write_order_suite(pytester: pytest.Pytester, order_file: Path) -> None:
    """Three modules; the slowest is collected last. Each module logs when it starts."""
    pytester.makeconftest(
        f"""
        import pytest

        @pytest.fixture(scope="module", autouse=True)
        def log_start(request):
            with open({str(order_file)!r}, "a") as f:
                f.write(request.module.__name__ + "\\n")
        """
    )
    pytester.makepyfile(
        test_a_fast="def test_fast(): pass\n",
        test_b_medium="import time\ndef test_medium(): time.sleep(0.1)\n",
        test_c_slow="import time\ndef test_slow(): time.sleep(0.4)\n",
    )


def test_second_run_starts_the_slowest_module_first(
    pytester: pytest.Pytester, git_repo: GitRepo
) -> None:
    order_file = pytester.path / "order.txt"
    write_order_suite(pytester, order_file)

    first = pytester.runpytest_subprocess("--parallel-modules=1", timeout=60)
    first.assert_outcomes(passed=3)
    first.stdout.fnmatch_lines(
        [
            "*3 modules on 1 of 1 worker, slowest first; durations from *durations.json (0/3 modules known)"
        ]
    )
    # No history: equal estimates, so the larger file goes first (as Jest does).
    assert order_file.read_text().split() == ["test_b_medium", "test_c_slow", "test_a_fast"]

    history = parse_history((pytester.path / HISTORY).read_text())
    assert set(history.modules) == {"test_a_fast.py", "test_b_medium.py", "test_c_slow.py"}
    assert history.modules["test_c_slow.py"].duration_s >= 0.4
    assert history.tests["test_c_slow.py::test_slow"].last_outcome == "passed"

    order_file.unlink()
    second = pytester.runpytest_subprocess("--parallel-modules=1", timeout=60)
    second.assert_outcomes(passed=3)
    second.stdout.fnmatch_lines(["*(3/3 modules known)"])
    assert order_file.read_text().split() == ["test_c_slow", "test_b_medium", "test_a_fast"]


def test_module_durations_option_points_at_a_committed_file(
    pytester: pytest.Pytester, git_repo: GitRepo
) -> None:
    pytester.makepyfile(test_x="def test_x(): pass\n")
    result = pytester.runpytest_subprocess(
        "--parallel-modules=1", "--module-durations=durations.json", timeout=60
    )
    result.assert_outcomes(passed=1)
    saved = (pytester.path / "durations.json").read_text()
    assert parse_history(saved).tests["test_x.py::test_x"].runs == 1
    assert saved.endswith("\n")
    assert not (pytester.path / HISTORY).exists()


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{",
        b"not json at all",
        b'{"version": 999}',
        b"[1, 2, 3]",
        b'{"version": 2, "run_count": 1, "tests": {"t.py::t": [NaN, "passed", 0, 1, 1]}}',
        b'{"version": 2, "run_count": 1, "tests": {"t.py::t": [-4, "passed", 0, 1, 1]}}',
        b"\xff\xfe\x00garbage",
    ],
    ids=[
        "empty",
        "truncated",
        "not-json",
        "wrong-version",
        "wrong-shape",
        "nan",
        "negative",
        "binary",
    ],
)
def test_a_corrupt_history_gives_one_warning_and_a_normal_run(
    pytester: pytest.Pytester, git_repo: GitRepo, content: bytes
) -> None:
    pytester.makepyfile(test_x="def test_x(): pass\n")
    (pytester.path / "durations.json").write_bytes(content)
    result = pytester.runpytest_subprocess(
        "--parallel-modules=1", "--module-durations=durations.json", timeout=60
    )
    result.assert_outcomes(passed=1)
    warnings = [line for line in result.outlines if "WARNING" in line]
    assert len(warnings) == 1, warnings
    assert "durations.json" in warnings[0]
    # Moved aside, not deleted, and a fresh history was written.
    assert [p.read_bytes() for p in pytester.path.glob("durations.json.corrupt-*")] == [content]
    saved = parse_history((pytester.path / "durations.json").read_text())
    assert saved.tests["test_x.py::test_x"].runs == 1


def test_two_concurrent_runs_both_land_their_durations(
    pytester: pytest.Pytester, git_repo: GitRepo
) -> None:
    pytester.makepyfile(
        test_one="import time\ndef test_one(): time.sleep(0.3)\n",
        test_two="import time\ndef test_two(): time.sleep(0.3)\n",
    )
    git_repo.commit_all("suite")
    command = [sys.executable, "-m", "pytest", "--parallel-modules=1", "-p", "no:randomly"]
    runs = [
        subprocess.Popen(
            [*command, f"test_{name}.py"],
            cwd=pytester.path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for name in ("one", "two")
    ]
    for run in runs:
        output, _ = run.communicate(timeout=60)
        assert run.returncode == 0, output.decode()
    history = parse_history((pytester.path / HISTORY).read_text())
    assert set(history.tests) == {"test_one.py::test_one", "test_two.py::test_two"}
    assert history.run_count == 2


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "missing-dir/durations.json",
            "--module-durations: the directory of 'missing-dir/durations.json' (*) does not exist",
        ),
        (".", "--module-durations: '.' is a directory, expected a file path"),
    ],
)
def test_bad_history_path_is_a_usage_error(
    pytester: pytest.Pytester, value: str, message: str
) -> None:
    pytester.makepyfile(test_x="def test_x(): pass\n")
    result = pytester.runpytest("--parallel-modules=1", f"--module-durations={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
