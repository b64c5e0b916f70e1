"""About 0.8 s: an HTTP client whose calls wait for the network."""

from __future__ import annotations

from pathlib import Path
import time

import pytest


def test_get_returns_json() -> None:
    time.sleep(0.38)  # one HTTP round trip
    assert {"status": "ok"}["status"] == "ok"


def test_config_file_is_found_next_to_the_tests(request: pytest.FixtureRequest) -> None:
    time.sleep(0.38)
    # Under --parallel-modules the rootdir is the same directory inside a
    # worker's git worktree, so files beside the tests are found the same way.
    assert (request.config.rootpath / "pytest.ini").is_file()
    assert (Path(__file__).parent / "conftest.py").is_file()
