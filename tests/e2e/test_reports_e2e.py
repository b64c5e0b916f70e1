"""End to end: per-module and merged JSON reports, the summary, Markdown and shards."""

from __future__ import annotations

import json
from pathlib import Path
import subprocess
import sys

import filelock
import jsonschema
import pytest

from pytest_parallel_modules.history import parse_history
from tests.conftest import GitRepo
from tests.unit.test_html_report import Page
from tests.unit.test_trace import slices
from tests.unit.test_trace import validate_trace


pytestmark = pytest.mark.e2e

SCHEMA = json.loads((Path(__file__).parents[2] / "docs" / "report.schema.json").read_text())


def validate_merged(report: dict[str, object]) -> None:
    jsonschema.validate(report, SCHEMA)


def validate_module(report: dict[str, object]) -> None:
    schema = dict(SCHEMA)
    schema["$ref"] = "#/$defs/module_report"
    for key in ("type", "required", "properties", "additionalProperties", "title"):
        schema.pop(key, None)
    jsonschema.validate(report, schema)


def write_suite(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_alpha="import time\ndef test_a1(): time.sleep(0.2)\ndef test_a2(): pass\n",
        test_beta="def test_b1(): pass\ndef test_b2():\n    print('out of b2')\n    assert 0, 'beta broke'\n",
        test_gamma="import pytest\n@pytest.mark.skip(reason='later')\ndef test_g1(): pass\n@pytest.mark.xfail\ndef test_g2(): assert 0\n",
        test_delta="import pytest\n@pytest.mark.parametrize('n', range(4))\ndef test_d(n): pass\n",
    )


def test_reports_summary_and_markdown(
    pytester: pytest.Pytester, git_repo: GitRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_suite(pytester)
    step_summary = pytester.path / "step-summary.md"
    step_summary.write_text("# earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step_summary))
    result = pytester.runpytest_subprocess(
        "--parallel-modules=2",
        "--module-report-dir=reports",
        "--module-report-md=summary.md",
        "--module-trace=trace.json",
        timeout=60,
    )
    result.assert_outcomes(passed=7, failed=1, skipped=1, xfailed=1)
    modules = ["test_alpha.py", "test_beta.py", "test_delta.py", "test_gamma.py"]

    merged = json.loads((pytester.path / "reports" / "report.json").read_text())
    validate_merged(merged)
    assert merged["totals"] == {
        "tests": 10,
        "passed": 7,
        "failed": 1,
        "errors": 0,
        "skipped": 1,
        "xfailed": 1,
        "xpassed": 0,
        "interrupted": 0,
        "not_run": 0,
    }
    assert [m["module"] for m in merged["modules"]] == [
        "test_alpha.py",
        "test_beta.py",
        "test_delta.py",
        "test_gamma.py",
    ]
    assert merged["workers"] == 2
    assert len(merged["snapshot"]) == 40
    beta = next(m for m in merged["modules"] if m["module"] == "test_beta.py")
    assert beta["outcome"] == "failed"
    failing = next(t for t in beta["tests"] if t["nodeid"] == "test_beta.py::test_b2")
    assert failing["outcome"] == "failed" and failing["when"] == "call"
    assert "beta broke" in failing["longrepr"]
    assert "out of b2" in failing["stdout"]

    module_files = sorted((pytester.path / "reports" / "modules").glob("*.json"))
    assert len(module_files) == 4
    for path in module_files:
        validate_module(json.loads(path.read_text()))

    # One line per finished module (no TTY), the summary after the failures, the report path.
    result.stdout.fnmatch_lines(
        ["[[]?/4[]] FAILED test_beta.py [.F][.F]  1 failed, 1 passed in *s  (worker w?)"]
    )
    result.stdout.fnmatch_lines(
        [
            "*= FAILURES =*",
            "*beta broke*",
            "*= parallel-modules summary =*",
            "FAILED*test_beta.py*",
            "*Rerun only the failed modules: pytest test_beta.py*",
        ]
    )
    result.stdout.fnmatch_lines(["parallel-modules: report written to reports/report.json"])

    markdown = (pytester.path / "summary.md").read_text()
    assert "test_beta.py" in markdown and "beta broke" in markdown
    assert step_summary.read_text() == "# earlier step\n" + markdown

    # The run drawn (#17): the timeline in the report, the HTML page and the trace.
    timeline = merged["timeline"]
    assert sorted(unit["module"] for unit in timeline["units"]) == modules
    assert set(timeline["workers"]) == {"w1", "w2"}
    assert all(times["ready_s"] is not None for times in timeline["workers"].values())
    assert 0 < timeline["collected_s"] < timeline["end_s"]
    page = Page((pytester.path / "reports" / "report.html").read_text())
    assert sorted(bar["data-m"] for bar in page.having("i", "bar")) == modules
    assert [row["data-lane"] for row in page.having("div", "row") if "data-lane" in row] == [
        "w1",
        "w2",
    ]
    assert any("beta broke" in text for text in page.text["pre"])
    events = validate_trace(json.loads((pytester.path / "trace.json").read_text()))
    assert sorted(event["name"] for event in slices(events, "unit")) == modules
    assert len(slices(events, "test")) == 10
    result.stdout.fnmatch_lines(
        [
            "parallel-modules: report written to reports/report.html",
            "parallel-modules: report written to trace.json",
        ]
    )


def test_quiet_summary_is_compact(pytester: pytest.Pytester, git_repo: GitRepo) -> None:
    write_suite(pytester)
    result = pytester.runpytest_subprocess("--parallel-modules=2", "-q", timeout=60)
    summary = result.stdout.str().split("parallel-modules summary", 1)[1]
    assert "test_beta.py" in summary
    assert "test_alpha.py" not in summary  # -q lists only the failed modules


def test_report_dir_holds_only_the_last_run(pytester: pytest.Pytester, git_repo: GitRepo) -> None:
    write_suite(pytester)
    pytester.runpytest_subprocess("--parallel-modules=2", "--module-report-dir=reports", timeout=60)
    result = pytester.runpytest_subprocess(
        "--parallel-modules=2", "--module-report-dir=reports", "test_alpha.py", timeout=60
    )
    result.assert_outcomes(passed=2)
    assert [p.name for p in (pytester.path / "reports" / "modules").glob("*.json")] == [
        "test_alpha.py.json"
    ]


def test_a_run_whose_report_dir_another_run_holds_writes_to_its_own(
    pytester: pytest.Pytester, git_repo: GitRepo
) -> None:
    pytester.makepyfile(test_one="def test_one(): pass\n")
    reports = pytester.path / "reports"
    reports.mkdir()
    (reports / "report.json").write_text("the other run's\n")
    # This test plays the other run: it holds the directory's lock.
    with filelock.FileLock(str(reports / ".lock"), timeout=0):
        result = pytester.runpytest_subprocess(
            "--parallel-modules=1", "--module-report-dir=reports", timeout=60
        )
    result.assert_outcomes(passed=1)
    (own,) = pytester.path.glob("reports-*")
    result.stdout.fnmatch_lines(
        [
            f"parallel-modules: another run is writing its reports to *reports; this run writes to *{own.name}"
        ]
    )
    assert (reports / "report.json").read_text() == "the other run's\n"
    merged = json.loads((own / "report.json").read_text())
    validate_merged(merged)
    assert [module["module"] for module in merged["modules"]] == ["test_one.py"]
    assert [path.name for path in (own / "modules").glob("*.json")] == ["test_one.py.json"]


@pytest.mark.slow
def test_shards_cover_every_module_once_and_merge_to_the_unsharded_run(
    pytester: pytest.Pytester, git_repo: GitRepo
) -> None:
    write_suite(pytester)
    whole = pytester.runpytest_subprocess(
        "--parallel-modules=2",
        "--module-report-dir=whole",
        "--module-durations=durations.json",
        timeout=60,
    )
    whole.assert_outcomes(passed=7, failed=1, skipped=1, xfailed=1)
    shards = []
    for index in (1, 2):
        shard = pytester.runpytest_subprocess(
            f"--module-shard={index}/2",
            "--module-durations=durations.json",
            f"--module-report-dir=shard{index}",
            timeout=60,
        )
        assert shard.ret in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED)
        shard.stdout.fnmatch_lines(["*deselected*"])
        shards.append(json.loads((pytester.path / f"shard{index}" / "report.json").read_text()))
    modules = [m["module"] for shard in shards for m in shard["modules"]]
    assert sorted(modules) == ["test_alpha.py", "test_beta.py", "test_delta.py", "test_gamma.py"]

    merge = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest_parallel_modules",
            "merge",
            "shard1/report.json",
            "shard2/report.json",
            "-o",
            "merged.json",
            "--durations",
            "folded.json",
            "--html",
            "merged.html",
            "--trace",
            "merged-trace.json",
        ],
        cwd=pytester.path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert merge.returncode == 1, merge.stdout + merge.stderr  # a test failed
    merged = json.loads((pytester.path / "merged.json").read_text())
    validate_merged(merged)
    # Both shards' durations land in one history, ready to balance the next sharded run.
    folded = parse_history((pytester.path / "folded.json").read_text())
    assert sorted(folded.modules) == [
        "test_alpha.py",
        "test_beta.py",
        "test_delta.py",
        "test_gamma.py",
    ]
    assert folded.tests["test_alpha.py::test_a1"].duration_s >= 0.2
    # One picture of both shards, on one clock (#17): lanes and trace processes from both.
    lanes = {worker.split("/")[0] for worker in merged["timeline"]["workers"]}
    assert lanes == {"s1", "s2"}
    page = Page((pytester.path / "merged.html").read_text())
    drawn = [row["data-lane"] for row in page.having("div", "row") if "data-lane" in row]
    assert {lane.split("/")[0] for lane in drawn} == {"s1", "s2"}
    assert sorted(bar["data-m"] for bar in page.having("i", "bar")) == sorted(modules)
    events = validate_trace(json.loads((pytester.path / "merged-trace.json").read_text()))
    assert {event["pid"] for event in slices(events, "unit")} == {1, 2}
    assert sorted(event["name"] for event in slices(events, "unit")) == sorted(modules)
    unsharded = json.loads((pytester.path / "whole" / "report.json").read_text())
    assert merged["totals"] == unsharded["totals"]
    assert [(m["module"], m["outcome"], m["counts"]) for m in merged["modules"]] == [
        (m["module"], m["outcome"], m["counts"]) for m in unsharded["modules"]
    ]


def _merge(pytester: pytest.Pytester, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest_parallel_modules", "merge", *args],
        cwd=pytester.path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.slow
def test_shards_run_one_after_another_in_one_checkout_add_up(
    pytester: pytest.Pytester, git_repo: GitRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first shard's measurements must not change the split the second one computes.

    The history says a > b > c > d, which splits {a, d} | {b, c}. During the shards a
    and d turn out quick; had shard 1 saved that, shard 2 would split {b, d} | {a, c}
    and run a a second time and b never.
    """
    for name, default in (("a", 0.5), ("b", 0.4), ("c", 0.3), ("d", 0.2)):
        pytester.makepyfile(
            **{
                f"test_{name}": "import os, time\n"
                f"def test_{name}(): time.sleep(float(os.environ.get('SLEEP_{name.upper()}', {default})))\n"
            }
        )
    pytester.runpytest_subprocess("--parallel-modules=2", "-p", "no:randomly", timeout=60)
    monkeypatch.setenv("SLEEP_A", "0")
    monkeypatch.setenv("SLEEP_D", "0")
    shards = [
        pytester.runpytest_subprocess(
            f"--module-shard={index}/2",
            "--parallel-modules=1",
            f"--module-report-dir=shard{index}",
            "-p",
            "no:randomly",
            timeout=60,
        )
        for index in (1, 2)
    ]

    merge = _merge(pytester, "shard1/report.json", "shard2/report.json", "-o", "merged.json")
    assert merge.returncode == 0, merge.stdout + merge.stderr
    merged = json.loads((pytester.path / "merged.json").read_text())
    validate_merged(merged)
    assert sorted((m["module"], m["outcome"]) for m in merged["modules"]) == [
        (f"test_{name}.py", "passed") for name in "abcd"
    ]
    assert sorted({m["worker"] for m in merged["modules"]}) == ["s1/w1", "s2/w1"]
    for index, shard in enumerate(shards, start=1):
        shard.assert_outcomes(passed=2)
        shard.stdout.fnmatch_lines(
            [
                f"parallel-modules: shard {index}/2 (--module-shard={index}/2); "
                "the duration history is read, not saved*"
            ]
        )

    # A shard whose report is missing: merge says which modules no report holds.
    alone = _merge(pytester, "shard1/report.json")
    assert alone.returncode == 3, alone.stdout + alone.stderr
    assert "error: no report of shard 2/2" in alone.stderr.splitlines()
    assert "error: 2 selected module(s) (2 test(s)) are in no report: test_b.py, test_c.py" in (
        alone.stderr.splitlines()
    )


def test_a_tiny_or_empty_share_still_writes_its_report(
    pytester: pytest.Pytester, git_repo: GitRepo
) -> None:
    """Under auto a tiny selection would run in this process, without reports: not a shard's."""
    pytester.makepyfile(test_only="def test_a(): pass\n")
    for index in (1, 2):  # one share holds the module, the other is empty
        pytester.runpytest_subprocess(
            f"--module-shard={index}/2", f"--module-report-dir=shard{index}", timeout=60
        )
        report = json.loads((pytester.path / f"shard{index}" / "report.json").read_text())
        assert report["shard"]["index"] == index
        assert report["shard"]["selected_modules"] == {"test_only.py": 1}
    assert _merge(pytester, "shard1/report.json", "shard2/report.json").returncode == 0


def test_collect_only_lists_only_the_shards_tests(pytester: pytest.Pytester) -> None:
    for name in "abcdef":
        pytester.makepyfile(
            **{f"test_{name}": f"def test_{name}1(): pass\ndef test_{name}2(): pass\n"}
        )
    shown: list[set[str]] = []
    for index in (1, 2, 3):
        # In-process: --collect-only starts no worker.
        result = pytester.runpytest("--collect-only", "-q", f"--module-shard={index}/3")
        assert result.ret == pytest.ExitCode.OK
        nodeids = {line for line in result.outlines if "::" in line}
        assert len(nodeids) == 4
        result.stdout.fnmatch_lines(["4/12 tests collected (8 deselected) in *"])
        shown.append(nodeids)
    assert set().union(*shown) == {f"test_{n}.py::test_{n}{i}" for n in "abcdef" for i in (1, 2)}
    assert not (shown[0] & shown[1] or shown[0] & shown[2] or shown[1] & shown[2])


@pytest.mark.parametrize(
    ("environ", "same_as"),
    [
        pytest.param({"CI_NODE_INDEX": "2", "CI_NODE_TOTAL": "3"}, "2/3", id="gitlab"),
        pytest.param({"CIRCLE_NODE_INDEX": "1", "CIRCLE_NODE_TOTAL": "3"}, "2/3", id="circleci"),
        pytest.param(
            {"BUILDKITE_PARALLEL_JOB": "2", "BUILDKITE_PARALLEL_JOB_COUNT": "3"},
            "3/3",
            id="buildkite",
        ),
        pytest.param({}, None, id="none"),
    ],
)
def test_module_shard_auto_takes_the_share_from_the_ci(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    environ: dict[str, str],
    same_as: str | None,
) -> None:
    from pytest_parallel_modules.options import CI_SHARD_VARIABLES

    for _, index_name, count_name, _ in CI_SHARD_VARIABLES:
        monkeypatch.delenv(index_name, raising=False)
        monkeypatch.delenv(count_name, raising=False)
    for name in "abcdef":
        pytester.makepyfile(**{f"test_{name}": f"def test_{name}(): pass\n"})
    expected = None
    if same_as is not None:
        explicit = pytester.runpytest("--collect-only", "-q", f"--module-shard={same_as}")
        expected = sorted(line for line in explicit.outlines if "::" in line)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    result = pytester.runpytest("--collect-only", "--module-shard=auto")
    if same_as is None:
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines(
            ["ERROR: --module-shard=auto: no CI parallel-job variables found*"]
        )
        return
    assert result.ret == pytest.ExitCode.OK
    found = ", ".join(f"{name}={value}" for name, value in environ.items())
    result.stdout.fnmatch_lines(
        [f"parallel-modules: shard {same_as} (--module-shard=auto, *: {found}); *"]
    )
    shown = sorted(
        line.strip().replace("<Function ", "").rstrip(">")
        for line in result.outlines
        if "<Function" in line
    )
    assert [nodeid.split("::")[1] for nodeid in expected or []] == shown


@pytest.mark.parametrize("value", ["0/4", "5/4", "a/b", "2", "1/0", "-1/2"])
def test_bad_shard_is_a_usage_error(pytester: pytest.Pytester, value: str) -> None:
    result = pytester.runpytest(f"--module-shard={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"ERROR: --module-shard: expected K/N with 1 <= K <= N (e.g. 2/4), got '{value}'"]
    )


@pytest.mark.parametrize("option", ["--module-report-html", "--module-trace"])
def test_an_html_or_trace_path_that_cannot_be_written_is_a_usage_error(
    pytester: pytest.Pytester, option: str
) -> None:
    pytester.mkdir("adir")
    result = pytester.runpytest(f"{option}=adir")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {option}: 'adir' is a directory, expected a file path"])
    result = pytester.runpytest("--parallel-modules=1", f"{option}=missing/out")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"ERROR: {option}: the directory of 'missing/out' (*) does not exist"]
    )
    ini = option.lstrip("-").replace("-", "_")
    pytester.makeini(f"[pytest]\n{ini} = adir\n")
    result = pytester.runpytest("--parallel-modules=1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: ini {ini}: 'adir' is a directory, expected a file path"])


def test_report_dir_that_is_a_file_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makefile(".txt", afile="x")
    result = pytester.runpytest("--parallel-modules=1", "--module-report-dir=afile.txt")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: --module-report-dir: 'afile.txt' is a file, expected a directory"]
    )
