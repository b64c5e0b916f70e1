"""Unit tests for sharding: ``--module-shard=auto``, the split's record, and merge's checks."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema  # type: ignore[import-untyped]  # the test environment has no stubs for it
import pytest

from pytest_parallel_modules.grouping import ModuleGroup
from pytest_parallel_modules.options import CI_SHARD_VARIABLES
from pytest_parallel_modules.options import shard_from_environment
from pytest_parallel_modules.reports import build_merged_report
from pytest_parallel_modules.reports import build_module_report
from pytest_parallel_modules.reports import load_report
from pytest_parallel_modules.reports import merge_reports
from pytest_parallel_modules.reports import MergedReport
from pytest_parallel_modules.reports import missing_modules
from pytest_parallel_modules.reports import ModuleReport
from pytest_parallel_modules.reports import ResultRecord
from pytest_parallel_modules.reports import shard_problems
from pytest_parallel_modules.reports import ShardInfo
from pytest_parallel_modules.reports import write_json_atomic
from pytest_parallel_modules.scheduling import ModuleEstimates
from pytest_parallel_modules.sharding import estimates_fingerprint
from pytest_parallel_modules.sharding import select_shard


SCHEMA_PATH = Path(__file__).parents[2] / "docs" / "report.schema.json"
T0 = 1_735_689_600.0


# --------------------------------------------------------------------------- --module-shard=auto


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        pytest.param(
            {"CI_NODE_INDEX": "2", "CI_NODE_TOTAL": "4"},
            (2, 4, "GitLab CI: CI_NODE_INDEX=2, CI_NODE_TOTAL=4"),
            id="gitlab",
        ),
        pytest.param({"CI_NODE_TOTAL": "1"}, (1, 1, "GitLab CI: CI_NODE_TOTAL=1"), id="gitlab-1"),
        pytest.param(
            {"CIRCLE_NODE_INDEX": "0", "CIRCLE_NODE_TOTAL": "3"},
            (1, 3, "CircleCI: CIRCLE_NODE_INDEX=0, CIRCLE_NODE_TOTAL=3"),
            id="circleci-first",
        ),
        pytest.param(
            {"CIRCLE_NODE_INDEX": "2", "CIRCLE_NODE_TOTAL": "3"},
            (3, 3, "CircleCI: CIRCLE_NODE_INDEX=2, CIRCLE_NODE_TOTAL=3"),
            id="circleci-last",
        ),
        pytest.param(
            {"BUILDKITE_PARALLEL_JOB": "1", "BUILDKITE_PARALLEL_JOB_COUNT": "2"},
            (2, 2, "Buildkite: BUILDKITE_PARALLEL_JOB=1, BUILDKITE_PARALLEL_JOB_COUNT=2"),
            id="buildkite",
        ),
    ],
)
def test_shard_from_each_ci(environ: dict[str, str], expected: tuple[int, int, str]) -> None:
    assert shard_from_environment(environ) == expected


def test_no_ci_variables_is_a_usage_error_naming_the_option() -> None:
    with pytest.raises(pytest.UsageError) as excinfo:
        shard_from_environment({"GITHUB_ACTIONS": "true"})
    message = str(excinfo.value)
    assert message.startswith("--module-shard=auto: no CI parallel-job variables found")
    for _, index_name, count_name, _ in CI_SHARD_VARIABLES:
        assert f"{index_name}/{count_name}" in message
    assert "--module-shard=K/N" in message


@pytest.mark.parametrize(
    "environ",
    [
        {"CI_NODE_INDEX": "0", "CI_NODE_TOTAL": "4"},  # GitLab counts from 1
        {"CI_NODE_INDEX": "5", "CI_NODE_TOTAL": "4"},
        {"CIRCLE_NODE_INDEX": "3", "CIRCLE_NODE_TOTAL": "3"},  # CircleCI counts from 0
        {"BUILDKITE_PARALLEL_JOB": "x", "BUILDKITE_PARALLEL_JOB_COUNT": "2"},
        {"CIRCLE_NODE_INDEX": "1"},
    ],
)
def test_bad_ci_variables_are_a_usage_error(environ: dict[str, str]) -> None:
    with pytest.raises(pytest.UsageError, match=r"^--module-shard=auto: .* do not name a share"):
        shard_from_environment(environ)


# --------------------------------------------------------------------------- the split


def estimates(seconds: dict[str, float]) -> ModuleEstimates:
    return ModuleEstimates(
        seconds=seconds,
        file_sizes=dict.fromkeys(seconds, 100),
        known_modules=len(seconds),
        unknown_test_s=0.01,
    )


def test_select_shard_records_the_whole_selection() -> None:
    groups = [
        ModuleGroup("a.py", ("a.py::t1", "a.py::t2")),
        ModuleGroup("b.py", ("b.py::t",)),
        ModuleGroup("c.py", ("c.py::t",)),
    ]
    times = estimates({"a.py": 3.0, "b.py": 2.0, "c.py": 1.0})
    first, info = select_shard(groups, times, 1, 2)
    second, other = select_shard(groups, times, 2, 2)
    assert first == {"a.py"}
    assert second == {"b.py", "c.py"}
    assert (
        info["selected_modules"] == other["selected_modules"] == {"a.py": 2, "b.py": 1, "c.py": 1}
    )
    assert (info["index"], info["count"], other["index"]) == (1, 2, 2)
    assert info["history_fingerprint"] == other["history_fingerprint"]


def test_the_fingerprint_follows_what_the_split_depends_on() -> None:
    base = estimates({"a.py": 3.0, "b.py": 2.0})
    assert estimates_fingerprint(base) == estimates_fingerprint(
        estimates({"b.py": 2.0, "a.py": 3.0})
    )
    assert estimates_fingerprint(base) != estimates_fingerprint(
        estimates({"a.py": 3.0, "b.py": 2.5})
    )
    assert len(estimates_fingerprint(base)) == 16


# --------------------------------------------------------------------------- merge's checks


def module(name: str, outcome: str = "passed", worker: str | None = "w1") -> ModuleReport:
    return build_module_report(
        module=name,
        worker=worker,
        started=T0,
        finished=T0 + 1,
        results=[
            ResultRecord(
                nodeid=f"{name}::t",
                subtest=None,
                outcome=outcome,  # type: ignore[typeddict-item]
                duration_s=0.1,
                when="call",
                longrepr=None,
                message=None,
                stdout="",
                stderr="",
            )
        ],
    )


SELECTED = {"a.py": 1, "b.py": 1, "c.py": 1, "d.py": 1}


def shard(
    index: int,
    names: list[str],
    *,
    count: int = 2,
    fingerprint: str = "f1",
    selected: dict[str, int] = SELECTED,
) -> MergedReport:
    return build_merged_report(
        modules=[module(name) for name in names],
        wall_s=2.0,
        workers=2,
        args=[f"--module-shard={index}/{count}"],
        rootdir="/repo",
        snapshot="abc",
        created=T0,
        shard=ShardInfo(
            index=index, count=count, history_fingerprint=fingerprint, selected_modules=selected
        ),
    )


def test_shards_that_add_up() -> None:
    reports = [shard(1, ["a.py", "d.py"]), shard(2, ["b.py", "c.py"])]
    assert shard_problems(reports) == []
    merged = merge_reports(reports)
    assert [(m["module"], m["worker"]) for m in merged["modules"]] == [
        ("a.py", "s1/w1"),
        ("b.py", "s2/w1"),
        ("c.py", "s2/w1"),
        ("d.py", "s1/w1"),
    ]
    assert merged["totals"]["passed"] == 4
    assert "shard" not in merged


def test_a_missing_shard_leaves_its_modules_not_run() -> None:
    reports = [shard(1, ["a.py", "d.py"])]
    assert missing_modules(reports) == {"b.py": 1, "c.py": 1}
    assert shard_problems(reports) == [
        "no report of shard 2/2",
        "2 selected module(s) (2 test(s)) are in no report: b.py, c.py",
    ]
    merged = merge_reports(reports)
    assert merged["totals"]["not_run"] == 2
    assert {m["module"]: m["outcome"] for m in merged["modules"]}["b.py"] == "not_run"


def test_shards_split_with_different_histories() -> None:
    # The second shard's history changed after the first ran: a.py twice, b.py never.
    reports = [
        shard(1, ["a.py", "d.py"], fingerprint="f1"),
        shard(2, ["a.py", "c.py"], fingerprint="f2"),
    ]
    problems = shard_problems(reports)
    assert problems == [
        "the shards split with different duration histories, so modules may have run in two "
        "shards or in none; give every shard the same --module-durations file: "
        "1/2: history f1, 2/2: history f2",
        "1 selected module(s) (1 test(s)) are in no report: b.py",
        "1 module(s) ran in more than one shard: a.py (1/2, 2/2)",
    ]


def test_a_shard_given_twice() -> None:
    reports = [shard(1, ["a.py", "d.py"]), shard(1, ["a.py", "d.py"])]
    assert shard_problems(reports) == [
        "shard 1/2 given more than once",
        "no report of shard 2/2",
        "2 selected module(s) (2 test(s)) are in no report: b.py, c.py",
        "2 module(s) ran in more than one shard: a.py (1/2, 1/2), d.py (1/2, 1/2)",
    ]


def test_shards_cut_from_different_selections() -> None:
    narrower = {"b.py": 1, "c.py": 1}
    reports = [shard(1, ["a.py", "d.py"]), shard(2, ["b.py", "c.py"], selected=narrower)]
    assert shard_problems(reports) == [
        "the shards selected different tests (different arguments, -k, -m or paths?): "
        "1/2: modules 4, 2/2: modules 2"
    ]


def test_reports_without_a_shard_are_not_checked() -> None:
    plain = build_merged_report(
        modules=[module("a.py")],
        wall_s=1,
        workers=1,
        args=[],
        rootdir="/r",
        snapshot=None,
        created=T0,
    )
    assert shard_problems([plain, plain]) == []
    assert merge_reports([plain])["modules"][0]["worker"] == "w1"


def test_a_shard_report_round_trips_and_matches_the_schema(tmp_path: Path) -> None:
    report = shard(1, ["a.py", "d.py"])
    path = tmp_path / "report.json"
    write_json_atomic(path, report)
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(schema).validate(json.loads(path.read_text()))
    assert load_report(path) == report
    # A report written before shards were recorded loads as before.
    older = json.loads(path.read_text())
    del older["shard"]
    path.write_text(json.dumps(older))
    assert "shard" not in load_report(path)
