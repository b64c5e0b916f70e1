"""``python -m pytest_parallel_modules`` itself: help, version, dispatch."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pytest_parallel_modules import __version__
from pytest_parallel_modules.__main__ import main
from pytest_parallel_modules.commands import COMMANDS


def test_without_a_command_prints_the_help_and_succeeds(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m pytest_parallel_modules")
    for command in COMMANDS:
        assert command in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        main(["--version"])
    assert excinfo.value.code == 0
    assert capsys.readouterr().out == f"pytest-parallel-modules {__version__}\n"


def test_an_unknown_command_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        main(["frobnicate"])
    assert excinfo.value.code == 2
    assert "invalid choice: 'frobnicate'" in capsys.readouterr().err


def test_runs_as_a_module() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "pytest_parallel_modules"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "usage: python -m pytest_parallel_modules" in completed.stdout
