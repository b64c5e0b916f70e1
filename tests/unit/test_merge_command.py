"""Unit tests for ``python -m pytest_parallel_modules merge`` (commands/merge.py), run in-process."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
import json
from pathlib import Path

import jsonschema  # type: ignore[import-untyped]  # the test environment has no stubs for it
import pytest

from pytest_parallel_modules.commands import merge
from pytest_parallel_modules.outcomes import ResultOutcome
from pytest_parallel_modules.reports import build_merged_report
from pytest_parallel_modules.reports import build_module_report
from pytest_parallel_modules.reports import MergedReport
from pytest_parallel_modules.reports import ModuleReport
from pytest_parallel_modules.reports import ResultRecord
from pytest_parallel_modules.reports import write_json_atomic


SCHEMA_PATH = Path(__file__).parents[2] / "docs" / "report.schema.json"
T0 = 1_735_689_600.0


def module(name: str, *outcomes: ResultOutcome, duration: float = 1.0) -> ModuleReport:
    return build_module_report(
        module=name,
        worker="w1",
        started=T0,
        finished=T0 + duration,
        results=[
            ResultRecord(
                nodeid=f"{name}::test_{i}",
                subtest=None,
                outcome=outcome,
                duration_s=0.1,
                when="call",
                longrepr="E   boom" if outcome == "failed" else None,
                message="boom" if outcome == "failed" else None,
                stdout="",
                stderr="",
            )
            for i, outcome in enumerate(outcomes)
        ],
    )


def shard(path: Path, modules: Sequence[ModuleReport], *, wall_s: float = 2.0) -> Path:
    report = build_merged_report(
        modules=modules,
        wall_s=wall_s,
        workers=2,
        args=["--parallel-modules=2"],
        rootdir="/repo",
        snapshot="abc123",
        created=T0,
    )
    write_json_atomic(path, report)
    return path


def run_merge(*argv: str | Path) -> int:
    parser = argparse.ArgumentParser(prog="merge")
    merge.add_arguments(parser)
    return merge.run(parser.parse_args([str(arg) for arg in argv]))


@pytest.fixture(autouse=True)
def fixed_width(monkeypatch: pytest.MonkeyPatch) -> None:
    # rich sizes a non-terminal console from COLUMNS; keep wrapping the same everywhere.
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.delenv("FORCE_COLOR", raising=False)


def test_merges_shards_writes_and_prints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = shard(tmp_path / "a.json", [module("tests/test_a.py", "passed", "passed")])
    second = shard(
        tmp_path / "b.json", [module("tests/test_b.py", "passed", "skipped")], wall_s=3.0
    )
    output = tmp_path / "out" / "merged.json"
    assert run_merge(first, second, "-o", output) == 0

    merged: MergedReport = json.loads(output.read_text(encoding="utf-8"))
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(schema).validate(merged)
    assert [m["module"] for m in merged["modules"]] == ["tests/test_a.py", "tests/test_b.py"]
    assert (merged["workers"], merged["wall_s"], merged["totals"]["tests"]) == (4, 3.0, 4)

    out, err = capsys.readouterr()
    assert err == ""
    assert "Totals: 3 passed, 1 skipped (4 tests in 2 modules), pass rate 100.0%" in out
    assert "Wall 3.00s" in out
    assert "wall / LB = " in out
    assert "Rerun" not in out


def test_failures_exit_1_and_name_the_modules_to_rerun(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = shard(tmp_path / "a.json", [module("tests/test_a.py", "passed")])
    second = shard(tmp_path / "b.json", [module("tests/test b.py", "failed")])
    assert run_merge(first, second) == 1
    out = capsys.readouterr().out
    assert "FAILED  tests/test b.py" in out
    assert "Rerun only the failed modules: pytest 'tests/test b.py'" in out


def test_tests_that_never_ran_exit_1_and_are_named_apart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    never_started = build_module_report(
        module="tests/test_late.py",
        worker=None,
        started=None,
        finished=None,
        results=[],
        outcome="not_run",
        expected_nodeids=["tests/test_late.py::test_a"],
    )
    run = shard(tmp_path / "run.json", [module("tests/test_a.py", "passed"), never_started])
    markdown = tmp_path / "summary.md"

    assert run_merge(run, "--md", markdown) == 1

    capsys.readouterr()
    text = markdown.read_text(encoding="utf-8")
    assert text.startswith("## parallel-modules summary\n\n❌")
    # Nothing failed: a module the run never got to is named, not offered as a rerun.
    assert "Rerun only the failed modules" not in text
    assert "- Tests without a result: 1 never ran, in 1 module (tests/test\\_late.py)" in text
    # Rerunning the module completes the run: merged with the rerun, it is green.
    rerun = shard(tmp_path / "rerun.json", [module("tests/test_late.py", "passed")])
    assert run_merge(run, rerun) == 0


def test_a_later_report_replaces_a_module(tmp_path: Path) -> None:
    run = shard(tmp_path / "run.json", [module("tests/test_a.py", "failed")])
    rerun = shard(tmp_path / "rerun.json", [module("tests/test_a.py", "passed")])
    assert run_merge(run, rerun) == 0
    assert run_merge(rerun, run) == 1


def test_the_same_file_twice_counts_once(tmp_path: Path) -> None:
    report = shard(tmp_path / "a.json", [module("tests/test_a.py", "passed")])
    output = tmp_path / "merged.json"
    assert run_merge(report, tmp_path / "." / "a.json", "-o", output) == 0
    assert json.loads(output.read_text(encoding="utf-8"))["workers"] == 2


def test_writes_markdown(tmp_path: Path) -> None:
    report = shard(tmp_path / "a.json", [module("tests/test_a.py", "failed")])
    markdown = tmp_path / "summary.md"
    markdown.write_text("old content", encoding="utf-8")
    assert run_merge(report, "--md", markdown) == 1
    text = markdown.read_text(encoding="utf-8")
    assert text.startswith("## parallel-modules summary\n")
    assert "| Status | Module | Tests | Pass | Fail | Time | Worker |" in text
    assert "| ❌ FAILED | `tests/test_a.py` | 1 | 0 | 1 | 1.00s | w1 |" in text
    assert "- Rerun only the failed modules: `pytest tests/test_a.py`" in text


def test_quiet_prints_only_the_totals_of_a_green_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = shard(tmp_path / "a.json", [module("tests/test_a.py", "passed")])
    assert run_merge(report, "-q") == 0
    assert capsys.readouterr().out == (
        "Totals: 1 passed (1 test in 1 module), pass rate 100.0% (1 of 1)\n"
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(None, "cannot read the report", id="missing"),
        pytest.param("{not json", "not valid JSON", id="not-json"),
        pytest.param('{"schema_version": 9}', "schema_version 9 is not supported", id="newer"),
    ],
)
def test_unreadable_input_exits_2_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, message: str
) -> None:
    good = shard(tmp_path / "good.json", [module("tests/test_a.py", "passed")])
    bad = tmp_path / "bad.json"
    if content is not None:
        bad.write_text(content, encoding="utf-8")
    output = tmp_path / "merged.json"
    assert run_merge(good, bad, "-o", output) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"error: {bad}: ")
    assert message in err
    assert not output.exists()


def test_unwritable_output_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = shard(tmp_path / "a.json", [module("tests/test_a.py", "passed")])
    directory = tmp_path / "taken"
    directory.mkdir()
    assert run_merge(report, "-o", directory) == 2
    assert capsys.readouterr().err.startswith(f"error: cannot write {directory}: ")
    assert sorted(path.name for path in directory.iterdir()) == []


def test_needs_at_least_one_report() -> None:
    with pytest.raises(SystemExit) as excinfo:
        run_merge()
    assert excinfo.value.code == 2


def test_piped_output_keeps_long_paths_on_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COLUMNS")
    long_name = "tests/" + "/".join(f"package_{index}" for index in range(8)) + "/test_x.py"
    report = shard(tmp_path / "a.json", [module(long_name, "failed")])
    assert run_merge(report) == 1
    lines = capsys.readouterr().out.splitlines()
    assert any(long_name in line for line in lines if line.startswith("FAILED"))
    assert f"Rerun only the failed modules: pytest {long_name}" in lines
