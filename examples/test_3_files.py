"""About 0.8 s: tests that write files (each worker has its own git worktree)."""

from __future__ import annotations

from pathlib import Path
import time

import pytest


def test_write_and_read(tmp_path: Path) -> None:
    time.sleep(0.4)
    target = tmp_path / "notes.txt"
    target.write_text("written by a test\n")
    assert target.read_text() == "written by a test\n"


def test_suite_files_are_next_to_the_test(request: pytest.FixtureRequest) -> None:
    time.sleep(0.4)
    # Under --parallel-modules the rootdir is the same directory inside a
    # worker's git worktree, so files beside the tests are found the same way.
    assert (request.config.rootpath / "pytest.ini").is_file()
    assert (Path(__file__).parent / "conftest.py").is_file()
