"""Fixtures shared by the unit and end-to-end tests."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
import re
import subprocess
import xml.etree.ElementTree as ET

import pytest


def run_git(cwd: Path, *args: str) -> str:
    """Run git in ``cwd`` and return its stdout; fail the test with git's stderr on error."""
    completed = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        pytest.fail(f"git {' '.join(args)} failed:\n{completed.stderr}")
    return completed.stdout


@dataclass
class GitRepo:
    """A real git repository at ``pytester.path``."""

    path: Path

    def git(self, *args: str) -> str:
        return run_git(self.path, *args)

    def commit_all(self, message: str = "commit") -> None:
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)


@pytest.fixture
def git_repo(
    pytester: pytest.Pytester,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[GitRepo]:
    """``pytester.path`` as a git repository with one (empty) commit.

    The worktree pool goes to a temporary directory, never under the real home.
    """
    monkeypatch.setenv("PYTEST_PARALLEL_MODULES_POOL_DIR", str(tmp_path_factory.mktemp("pool")))
    repo = GitRepo(pytester.path)
    repo.git("init", "-q", "-b", "main")
    repo.git("config", "user.name", "Test User")
    repo.git("config", "user.email", "test@example.com")
    repo.git("config", "commit.gpgsign", "false")
    repo.commit_all("initial")
    yield repo


_SUMMARY_LINE = re.compile(r"^(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS) ")


def short_summary(result: pytest.RunResult) -> list[str]:
    """The ``-rA`` short test summary lines of a run, sorted (workers finish in any order)."""
    lines = result.outlines
    starts = [index for index, line in enumerate(lines) if "short test summary info" in line]
    section = lines[starts[-1] + 1 :] if starts else []
    return sorted(line for line in section if _SUMMARY_LINE.match(line))


def junit_outcomes(path: Path) -> dict[str, str]:
    """Map ``classname::name`` of every testcase in a junit XML file to its outcome."""
    outcomes: dict[str, str] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        key = f"{case.get('classname')}::{case.get('name')}"
        children = {child.tag: child for child in case}
        if "failure" in children:
            outcome = "failure"
        elif "error" in children:
            outcome = "error"
        elif "skipped" in children:
            outcome = f"skipped:{children['skipped'].get('type')}"
        else:
            outcome = "passed"
        # A test that failed its teardown has two entries; keep the worst.
        outcomes[key] = outcomes.get(key, "") + ("," if key in outcomes else "") + outcome
    return outcomes


@pytest.fixture
def run_both(pytester: pytest.Pytester) -> Callable[..., tuple[pytest.RunResult, pytest.RunResult]]:
    """Run the suite once plainly and once with ``--parallel-modules``; return both results."""

    def run(*args: str, workers: int = 3) -> tuple[pytest.RunResult, pytest.RunResult]:
        plain = pytester.runpytest_subprocess(*args, timeout=60)
        parallel = pytester.runpytest_subprocess(f"--parallel-modules={workers}", *args, timeout=60)
        return plain, parallel

    return run
