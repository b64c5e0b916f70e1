"""``python -m pytest_parallel_modules durations``: the history as a table, slowest first."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
import subprocess
import sys

import pytest

from pytest_parallel_modules.commands import durations
from pytest_parallel_modules.history import DEFAULT_HISTORY_PATH
from pytest_parallel_modules.history import History
from pytest_parallel_modules.history import MeasuredModule
from pytest_parallel_modules.history import MeasuredRun
from pytest_parallel_modules.history import MeasuredTest
from pytest_parallel_modules.history import merge_history
from pytest_parallel_modules.history import save_history
from pytest_parallel_modules.plugin import options_key


NOW = 1_700_000_000.0

RUN = MeasuredRun(
    tests={
        "tests/test_fast.py::t": MeasuredTest(0.1, "passed", True),
        "tests/test_slow.py::a": MeasuredTest(2.0, "passed", True),
        "tests/test_slow.py::b": MeasuredTest(3.0, "failed", True),
        "tests/test_[x].py::t": MeasuredTest(1.0, "skipped", True),
    },
    modules={
        "tests/test_fast.py": MeasuredModule(0.25, 0.1, True),
        "tests/test_slow.py": MeasuredModule(5.5, 0.3, True),
        "tests/test_[x].py": MeasuredModule(1.5, 0.2, True),
    },
)


@pytest.fixture(autouse=True)
def plain_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """A wide, colourless console whatever the environment of the test run says."""
    monkeypatch.setenv("COLUMNS", "120")
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_COLOR", "1")


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="durations")
    durations.add_arguments(parser)
    return parser.parse_args(argv)


@pytest.fixture
def history_file(tmp_path: Path) -> Path:
    path = tmp_path / "durations.json"
    save_history(path, RUN, now=NOW)
    save_history(path, RUN, now=NOW + 60)
    return path


def table_modules(output: str) -> list[str]:
    """Module column of the table, top to bottom."""
    return [line.split("│")[1].strip() for line in output.splitlines() if line.startswith("│")]


def test_prints_every_module_slowest_first(
    history_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert durations.run(parse("--path", str(history_file))) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert table_modules(out) == ["tests/test_slow.py", "tests/test_[x].py", "tests/test_fast.py"]
    for header in ("module", "tests", "duration", "runs", "last outcome"):
        assert header in out
    slow_row = next(line for line in out.splitlines() if "tests/test_slow.py" in line)
    cells = [cell.strip() for cell in slow_row.split("│")[1:-1]]
    assert cells == ["tests/test_slow.py", "2", "5.50s", "2", "failed"]
    assert "3 of 3 modules, 4 tests, 2 runs recorded" in out


def test_piped_output_keeps_long_module_paths_on_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("COLUMNS")
    module = "tests/integration/payments/providers/test_a_rather_long_module_name_indeed.py"
    path = tmp_path / "durations.json"
    run = MeasuredRun({f"{module}::t": MeasuredTest(1.0, "passed", True)})
    save_history(path, MeasuredRun(run.tests, {module: MeasuredModule(1.5, 0.1, True)}), now=NOW)
    assert durations.run(parse("--path", str(path))) == 0
    assert table_modules(capsys.readouterr().out) == [module]


def test_top_keeps_only_the_slowest_modules(
    history_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert durations.run(parse("--top", "2", "--path", str(history_file))) == 0
    out = capsys.readouterr().out
    assert table_modules(out) == ["tests/test_slow.py", "tests/test_[x].py"]
    assert "2 of 3 modules" in out


def test_without_path_reads_the_default_history_under_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    save_history(tmp_path / DEFAULT_HISTORY_PATH, RUN, now=NOW, create_parents=True)
    monkeypatch.chdir(tmp_path)
    assert durations.run(parse()) == 0
    assert table_modules(capsys.readouterr().out)[0] == "tests/test_slow.py"


def test_a_missing_history_is_a_clear_message_and_exit_code_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert durations.run(parse()) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert "No duration history at" in err
    assert "durations.json" in err
    assert "--path" in err


def test_a_bad_history_is_reported_and_left_in_place(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "durations.json"
    path.write_text('{"version": 99}')
    assert durations.run(parse("--path", str(path))) == 1
    err = capsys.readouterr().err
    assert "is not valid" in err
    assert "version 99" in err
    assert path.read_text() == '{"version": 99}'  # a read-only command moves nothing aside
    assert [p.name for p in tmp_path.iterdir()] == ["durations.json"]


def test_a_history_without_modules_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "durations.json"
    save_history(path, MeasuredRun(), now=NOW)
    assert durations.run(parse("--path", str(path))) == 0
    assert "records no modules yet" in capsys.readouterr().out


@pytest.mark.parametrize("top", ["0", "-3", "many"])
def test_top_must_be_a_positive_whole_number(top: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("--top", top)
    assert "argument --top" in capsys.readouterr().err


def test_module_rows_break_ties_by_path() -> None:
    run = MeasuredRun(
        modules={name: MeasuredModule(1.0, 0.1, True) for name in ("b.py", "a.py", "c.py")}
    )
    history = merge_history(History(), run, now=NOW)
    assert [row.module for row in durations.module_rows(history)] == ["a.py", "b.py", "c.py"]
    assert [row.module for row in durations.module_rows(history, top=1)] == ["a.py"]


def test_runs_as_a_sub_command_of_the_package(history_file: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest_parallel_modules",
            "durations",
            "--top",
            "1",
            "--path",
            str(history_file),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "120", "NO_COLOR": "1"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert table_modules(result.stdout) == ["tests/test_slow.py"]

    missing = subprocess.run(
        [sys.executable, "-m", "pytest_parallel_modules", "durations", "--path", "nowhere.json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert missing.returncode == 1
    assert "No duration history at nowhere.json" in missing.stderr


# -- finding the history as a run does -------------------------------------------------

PYTEST_9 = int(pytest.__version__.split(".")[0]) >= 9

LAYOUTS = {
    "pytest.ini at the top": ({"pytest.ini": "[pytest]\n"}, "."),
    "from a subdirectory, cache_dir relative": (
        {"pytest.ini": "[pytest]\ncache_dir = build/cache\n", "tests/unit/x.txt": ""},
        "tests/unit",
    ),
    "setup.cfg, tox.ini without pytest": (
        {"tox.ini": "[tox]\n", "setup.cfg": "[tool:pytest]\ncache_dir = .cache-setup\n"},
        ".",
    ),
    "pyproject ini_options, cache_dir from $VAR": (
        {"pyproject.toml": "[tool.pytest.ini_options]\ncache_dir = '$PPM_CACHE/c'\n"},
        ".",
    ),
    "a pyproject without pytest settings below the ini file": (
        {"pytest.ini": "[pytest]\ncache_dir = top\n", "sub/pyproject.toml": "[project]\n"},
        "sub",
    ),
    "only a pyproject without pytest settings": ({"sub/pyproject.toml": "[project]\n"}, "sub"),
    "module_durations beside the ini file": (
        {"cfg/pytest.ini": "[pytest]\nmodule_durations = ../ci/d.json\n", "ci/x": ""},
        "cfg",
    ),
    "setup.py without configuration": ({"setup.py": "", "pkg/x.txt": ""}, "pkg"),
    "tox.ini [pytest] above a bare setup.cfg": (
        {"tox.ini": "[pytest]\ncache_dir = from-tox\n", "a/setup.cfg": "[metadata]\n"},
        "a",
    ),
    "pytest.toml": pytest.param(
        ({"pytest.toml": "[pytest]\ncache_dir = 'tomlcache'\n"}, "."),
        marks=pytest.mark.skipif(not PYTEST_9, reason="pytest.toml is read from pytest 9"),
    ),
}


@pytest.mark.parametrize("layout", list(LAYOUTS.values()), ids=list(LAYOUTS))
def test_without_path_finds_the_history_a_run_uses(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    layout: tuple[dict[str, str], str],
) -> None:
    files, start = layout
    monkeypatch.setenv("PPM_CACHE", str(tmp_path / "elsewhere"))
    project = pytester.path / "project"
    for name, content in files.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(content, encoding="utf-8")
    monkeypatch.chdir(project / start)

    # What a run started here reads and updates (pytest itself finds rootdir and ini file).
    config = pytester.parseconfigure("--parallel-modules=1", "-p", "no:asyncio")
    expected = config.stash[options_key].history_path
    assert expected is not None

    assert durations.find_history_path(Path.cwd()) == expected


def test_without_path_reads_the_history_under_a_custom_cache_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "tox.ini").write_text("[pytest]\ncache_dir = .cache/pytest\n")
    (tmp_path / "tests").mkdir()
    history = tmp_path / ".cache/pytest/d/parallel-modules/durations.json"
    save_history(history, RUN, now=NOW, create_parents=True)
    monkeypatch.chdir(tmp_path / "tests")

    assert durations.run(parse()) == 0

    assert table_modules(capsys.readouterr().out)[0] == "tests/test_slow.py"


def test_an_unreadable_configuration_file_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.pytest.ini_options\n")
    monkeypatch.chdir(tmp_path)

    assert durations.run(parse()) == 1

    err = capsys.readouterr().err
    assert f"cannot read pytest's configuration {tmp_path / 'pyproject.toml'}" in err
    assert "pass --path" in err
