"""End to end: common plugins and pytest features work under ``--parallel-modules``.

Each test builds a small suite in a real git repository and runs it with
workers in worktrees, comparing with a plain run wherever outcomes, reports or
files can be compared. No output of a parallel run may name a worktree path:
everything reads as if it ran in the checkout.
"""

from __future__ import annotations

from collections.abc import Sequence
import html
import json
import os
from pathlib import Path
import re
import sys
import textwrap
import xml.etree.ElementTree as ET

import pytest

from tests.conftest import GitRepo
from tests.conftest import short_summary


pytestmark = pytest.mark.e2e

#: pytest-asyncio warns at configure time unless its loop scope is set.
INI = "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
REPORT_DIR = Path(".pytest_cache", "d", "parallel-modules-report")


def plain(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:randomly", *args, timeout=60)


def parallel(pytester: pytest.Pytester, *args: str, workers: int = 2) -> pytest.RunResult:
    result = pytester.runpytest_subprocess(
        f"--parallel-modules={workers}", "-p", "no:randomly", *args, timeout=60
    )
    assert_no_worktree_paths(result.stdout.str() + result.stderr.str())
    return result


def assert_no_worktree_paths(text: str) -> None:
    pool = os.environ["PYTEST_PARALLEL_MODULES_POOL_DIR"]
    assert pool not in text and os.path.realpath(pool) not in text


def section(result: pytest.RunResult, title: str) -> list[str]:
    """The lines of one ``=== title ===`` section of pytest's output."""
    lines = result.outlines
    start = next(i for i, line in enumerate(lines) if re.match(rf"^=+ {title} =+$", line))
    end = next(i for i in range(start + 1, len(lines)) if re.match(r"^=+ .* =+$", lines[i]))
    return lines[start + 1 : end]


# -- coverage ------------------------------------------------------------------


def write_covered_package(pytester: pytest.Pytester) -> None:
    """A package whose lines are run at import, by one test module each, or never."""
    pytester.makeini(INI)
    pkg = pytester.mkpydir("pkg")
    (pkg / "calc.py").write_text(
        textwrap.dedent(
            """
            RATE = 2

            def double(x):
                if x < 0:
                    return 0
                return x * RATE

            def half(x):
                if x == 0:
                    raise ValueError("zero")
                return x / RATE

            def never(x):
                return -x
            """
        )
    )
    pytester.makepyfile(
        test_double="from pkg.calc import double\ndef test_double(): assert double(2) == 4\n",
        test_half="""
            import pytest
            from pkg.calc import half
            def test_half(): assert half(4) == 2
            def test_zero():
                with pytest.raises(ValueError):
                    half(0)
            """,
        test_other="def test_nothing(): pass\n",
    )


def coverage_table(lines: Sequence[str]) -> list[str]:
    """coverage.py's terminal table: from its ``Name`` header to its ``TOTAL`` line."""
    start = next(i for i, line in enumerate(lines) if line.startswith("Name "))
    end = next(i for i, line in enumerate(lines) if line.startswith("TOTAL"))
    return [line for line in lines[start : end + 1] if not line.startswith("---")]


def xml_lines(path: Path) -> tuple[list[str], set[tuple[str, str, bool]]]:
    """The ``<source>`` directories and (file, line, hit) of a coverage XML report."""
    root = ET.parse(path).getroot()
    sources = [source.text or "" for source in root.iter("source")]
    lines = {
        (cls.get("filename", ""), line.get("number", ""), line.get("hits") != "0")
        for cls in root.iter("class")
        for line in cls.iter("line")
    }
    return sources, lines


@pytest.mark.slow
@pytest.mark.parametrize(
    ("isolation", "workers"),
    # In place, more workers than modules: workers that start after others
    # finished must not erase the data those saved in the shared directory.
    [("worktree", 3), ("none", 6)],
    ids=["worktree", "none"],
)
def test_pytest_cov_reports_one_result_with_the_checkouts_paths(
    pytester: pytest.Pytester, git_repo: GitRepo, isolation: str, workers: int
) -> None:
    write_covered_package(pytester)
    git_repo.commit_all("suite")
    reports = ("--cov=pkg", "--cov-report=term-missing")
    expected = plain(pytester, *reports, "--cov-report=xml:plain.xml", "--cov-report=html:plain")
    result = parallel(
        pytester,
        *reports,
        "--cov-report=xml:parallel.xml",
        "--cov-report=html:parallel",
        f"--module-isolation={isolation}",
        workers=workers,
    )
    result.assert_outcomes(passed=4)
    # Lines run only in workers (the test bodies' calls) are covered, lines
    # never run are missing, exactly as in a plain run.
    assert coverage_table(result.outlines) == coverage_table(expected.outlines)
    assert "calc.py" in "\n".join(coverage_table(result.outlines))
    assert xml_lines(pytester.path / "parallel.xml") == xml_lines(pytester.path / "plain.xml")
    # HTML file names are derived from the measured paths.
    assert sorted(p.name for p in (pytester.path / "parallel").iterdir()) == sorted(
        p.name for p in (pytester.path / "plain").iterdir()
    )
    for path in [pytester.path / "parallel.xml", *(pytester.path / "parallel").glob("*.html")]:
        assert_no_worktree_paths(path.read_text(encoding="utf-8"))
    # One combined data file, no leftovers of the workers.
    assert [p.name for p in pytester.path.glob(".coverage*")] == [".coverage"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("config", "env"),
    [
        ("[run]\nsource_pkgs = pkg\npatch = subprocess\n", {}),
        ("[run]\nsource_pkgs = pkg\nparallel = true\n", {"COVERAGE_PROCESS_START": ".coveragerc"}),
    ],
    ids=["patch-subprocess", "COVERAGE_PROCESS_START"],
)
def test_coverage_run_measures_the_workers_without_a_paths_section(
    pytester: pytest.Pytester,
    git_repo: GitRepo,
    monkeypatch: pytest.MonkeyPatch,
    config: str,
    env: dict[str, str],
) -> None:
    write_covered_package(pytester)
    (pytester.path / ".coveragerc").write_text(config)
    git_repo.commit_all("suite")
    for name, value in env.items():
        monkeypatch.setenv(name, str(pytester.path / value))

    def measure(*args: str) -> list[str]:
        coverage = (sys.executable, "-m", "coverage")
        pytester.run(*coverage, "erase")
        run = pytester.run(
            *coverage,
            "run",
            "-m",
            "pytest",
            "-p",
            "no:randomly",
            "--basetemp=bt",
            *args,
            timeout=60,
        )
        assert run.ret == 0, run.stdout.str() + run.stderr.str()
        pytester.run(*coverage, "combine")
        report = pytester.run(*coverage, "report", "-m")
        assert_no_worktree_paths(report.stdout.str())
        return coverage_table(report.outlines)

    assert measure("--parallel-modules=2") == measure()


# -- pytest's own options --------------------------------------------------------


def write_mixed_suite(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(
        test_alpha="""
            import time, warnings

            def test_pass():
                time.sleep(0.1)

            def test_fail():
                assert 1 == 2, "one is not two"

            def test_warn():
                warnings.warn(UserWarning("careful"))
            """,
        test_beta="""
            import pytest

            def test_mocker(mocker):
                mocker.patch("os.getcwd", return_value="/nowhere")

            @pytest.mark.skip(reason="not today")
            def test_skip():
                pass

            def test_error(not_a_fixture):
                pass
            """,
    )


@pytest.mark.parametrize(
    "args",
    [
        ["-rA", "--tb=short", "--durations=3", "--durations-min=0"],
        ["-rA", "--tb=line"],
        ["-rA", "--tb=no", "-vv", "-p", "no:mock"],
        ["-rA", "-W", "error::UserWarning", "--import-mode=importlib"],
    ],
    ids=["tb-short-durations", "tb-line", "tb-no-vv-no-plugin", "W-error-importlib"],
)
def test_reporting_options_match_a_plain_run(
    pytester: pytest.Pytester, git_repo: GitRepo, args: list[str]
) -> None:
    write_mixed_suite(pytester)
    if "--import-mode=importlib" in args:
        # Same basename in two directories without __init__.py: importlib mode only.
        for directory in ("one", "two"):
            pytester.mkdir(directory)
            (pytester.path / directory / "test_same.py").write_text("def test_same(): pass\n")
    git_repo.commit_all("suite")
    expected = plain(pytester, *args)
    result = parallel(pytester, *args)
    assert result.ret == expected.ret
    assert result.parseoutcomes() == expected.parseoutcomes()
    assert short_summary(result) == short_summary(expected)
    if "--tb=line" in args:
        failure_lines = [line for line in expected.outlines if re.match(r"^/.*\.py:\d+: ", line)]
        assert failure_lines
        assert sorted(failure_lines) == sorted(
            line for line in result.outlines if re.match(r"^/.*\.py:\d+: ", line)
        )
    if any(arg.startswith("--durations") for arg in args):
        # Timings come from the workers: the sleeping test is the slowest.
        for run in (expected, result):
            assert re.match(
                r"^0\.1\d+s call +test_alpha.py::test_pass$", section(run, "slowest 3 durations")[0]
            )
    if "-W" not in args:
        # Worker warnings reach the summary, with the checkout's paths.
        assert section(result, "warnings summary") == section(expected, "warnings summary")
        result.stdout.fnmatch_lines([f"*{pytester.path}*test_alpha.py:*: UserWarning: careful"])


@pytest.mark.parametrize(
    "source",
    ["pytest.ini", "tox.ini", "setup.cfg", "pyproject.toml", "-o", "PYTEST_ADDOPTS"],
)
def test_configuration_reaches_the_workers(
    pytester: pytest.Pytester, git_repo: GitRepo, monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    settings = {"python_functions": "check_*", "filterwarnings": "error::UserWarning"}
    lines = "".join(f"{key} = {value}\n" for key, value in settings.items())
    args: list[str] = []
    if source in ("pytest.ini", "tox.ini"):
        pytester.makefile(Path(source).suffix, **{Path(source).stem: f"{INI}{lines}"})
    elif source == "setup.cfg":
        pytester.makefile(
            ".cfg", setup=f"[tool:pytest]\nasyncio_default_fixture_loop_scope = function\n{lines}"
        )
    elif source == "pyproject.toml":
        pytester.makepyprojecttoml(
            '[tool.pytest.ini_options]\nasyncio_default_fixture_loop_scope = "function"\n'
            + "".join(f'{key} = "{value}"\n' for key, value in settings.items())
        )
    else:
        pytester.makeini(INI)
        overrides = [f"{key}={value}" for key, value in settings.items()]
        args = [part for override in overrides for part in ("-o", override)]
        if source == "PYTEST_ADDOPTS":
            monkeypatch.setenv("PYTEST_ADDOPTS", " ".join(args))
            args = []
    pytester.makepyfile(
        test_config="""
            import warnings

            def check_ok():
                pass

            def check_warning_is_an_error():
                warnings.warn(UserWarning("from the worker"))

            def test_not_collected():
                raise AssertionError("python_functions was not applied")
            """,
        test_more="def check_more(): pass\n",
    )
    git_repo.commit_all("suite")
    result = parallel(pytester, "-rA", *args)
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["FAILED test_config.py::check_warning_is_an_error - UserWarning*"])


@pytest.mark.parametrize("flag", ["--sw", "--sw-skip"])
def test_stepwise_is_a_usage_error(pytester: pytest.Pytester, flag: str) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(test_s="def test_a(): pass\n")
    # In-process: a usage error stops pytest at configure, before any worker.
    result = pytester.runpytest("--parallel-modules=2", flag)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: --parallel-modules cannot be combined with --sw/--stepwise*"]
    )


@pytest.mark.slow
def test_failed_first_starts_modules_with_last_failures_first_and_their_failures_first(
    pytester: pytest.Pytester, git_repo: GitRepo
) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(
        test_ff="def test_a(): pass\ndef test_b(): pass\ndef test_c(): assert 0\n",
        # The slowest module: without --ff it starts first.
        test_other="import time\ndef test_d(): time.sleep(0.3)\n",
    )
    git_repo.commit_all("suite")
    parallel(pytester, workers=1).assert_outcomes(passed=3, failed=1)
    result = parallel(pytester, "-v", workers=1)
    ran = [line.split()[-1] for line in result.outlines if re.match(r"^\[w\d\] \[", line)]
    assert ran[0] == "test_other.py::test_d"
    result = parallel(pytester, "--ff", "-v", workers=1)
    result.assert_outcomes(passed=3, failed=1)
    ran = [line.split()[-1] for line in result.outlines if re.match(r"^\[w\d\] \[", line)]
    assert ran == [
        "test_ff.py::test_c",
        "test_ff.py::test_a",
        "test_ff.py::test_b",
        "test_other.py::test_d",
    ]


def test_basetemp_and_tmp_path_factory_are_per_worker(
    pytester: pytest.Pytester, git_repo: GitRepo
) -> None:
    pytester.makeini(INI)
    base = pytester.path / "base"
    seen = pytester.path / "seen"
    seen.mkdir()
    for index in range(4):
        pytester.makepyfile(
            **{
                f"test_t{index}": f"""
                def test_tmp(tmp_path_factory):
                    data = tmp_path_factory.mktemp("data")
                    (data / "mine").write_text("{index}")
                    open({str(seen / str(index))!r}, "w").write(str(data))
                """
            }
        )
    git_repo.commit_all("suite")
    result = parallel(pytester, f"--basetemp={base}")
    result.assert_outcomes(passed=4)
    directories = [Path(path.read_text()) for path in seen.iterdir()]
    assert len(set(directories)) == 4
    for directory in directories:
        assert directory.parent.parent == base and directory.parent.name.startswith("worker-w")
        assert directory.name.startswith("data")


# -- raw output: -s and live logging ----------------------------------------------


@pytest.mark.parametrize(
    "args",
    [["-s"], ["-o", "log_cli=true", "--log-cli-level=INFO"], []],
    ids=["s", "log-cli", "captured"],
)
def test_module_output_goes_to_a_log_per_module_and_to_the_terminal(
    pytester: pytest.Pytester, git_repo: GitRepo, args: list[str]
) -> None:
    pytester.makeini(INI)
    for name in ("one", "two"):
        pytester.makepyfile(
            **{
                f"test_{name}": f"""
                import logging, subprocess, sys

                def test_talk():
                    print("{name} says hello")
                    sys.stderr.write("{name} on stderr\\n")
                    subprocess.run([sys.executable, "-c", "print('{name} child')"], check=True)
                    logging.getLogger("{name}").info("{name} logs")
                """
            }
        )
    git_repo.commit_all("suite")
    result = parallel(pytester, "--module-report-dir=out", *args)
    result.assert_outcomes(passed=2)
    logs = pytester.path / "out" / "modules"
    if not args:
        # Captured by pytest as usual: nothing on the terminal, no log files.
        assert not list(logs.glob("*.log"))
        assert not [line for line in result.outlines if line.startswith("[test_")]
        return
    expected = {
        "-s": ["{name} says hello", "{name} on stderr", "{name} child"],
        "log_cli=true": ["INFO     {name}:test_{name}.py:7 {name} logs"],
    }["-s" if "-s" in args else "log_cli=true"]
    for name in ("one", "two"):
        lines = [line.format(name=name) for line in expected]
        assert (logs / f"test_{name}.py.log").read_text().splitlines() == lines
        printed = [line for line in result.outlines if line.startswith(f"[test_{name}.py] ")]
        assert printed == [f"[test_{name}.py] {line}" for line in lines]


# -- plugins ---------------------------------------------------------------------


def test_plugins_that_run_inside_tests_behave_as_in_a_plain_run(
    pytester: pytest.Pytester, git_repo: GitRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pytest-asyncio, pytest-mock and Hypothesis (example database in the checkout)."""
    # Under CI=true Hypothesis loads its "ci" profile, which keeps no example database.
    monkeypatch.delenv("CI", raising=False)
    pytester.makeini(INI)
    pytester.makepyfile(
        test_async="""
            import asyncio
            import pytest
            import pytest_asyncio

            @pytest_asyncio.fixture
            async def value():
                await asyncio.sleep(0)
                return 3

            @pytest.mark.asyncio
            async def test_async(value):
                await asyncio.sleep(0.01)
                assert value == 3
            """,
        test_mock="""
            import os

            def test_mock(mocker):
                getcwd = mocker.patch("os.getcwd", return_value="/nowhere")
                assert os.getcwd() == "/nowhere"
                getcwd.assert_called_once()

            def test_spy(mocker):
                spy = mocker.spy(os.path, "join")
                os.path.join("a", "b")
                spy.assert_called_once_with("a", "b")
            """,
        test_hypothesis="""
            from hypothesis import given, strategies as st

            @given(st.integers())
            def test_small(n):
                assert n < 1000
            """,
    )
    git_repo.commit_all("suite")
    result = parallel(pytester, "-rA")
    expected = plain(pytester, "-rA")
    assert result.parseoutcomes() == expected.parseoutcomes() == {"passed": 3, "failed": 1}
    assert short_summary(result) == short_summary(expected)
    result.stdout.fnmatch_lines(["*n=1000*"])
    # Workers keep Hypothesis' database where a plain run does: the next run,
    # plain or parallel, replays the failing example first.
    assert list((pytester.path / ".hypothesis" / "examples").iterdir())
    pool = Path(os.environ["PYTEST_PARALLEL_MODULES_POOL_DIR"])
    assert not list(pool.glob("**/.hypothesis"))


@pytest.mark.parametrize("method", ["signal", "thread"])
def test_pytest_timeout_fails_the_hanging_test_and_the_run_goes_on(
    pytester: pytest.Pytester, git_repo: GitRepo, method: str
) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(
        test_hang=f"""
            import time
            import pytest

            @pytest.mark.timeout(0.5, method="{method}")
            def test_hangs():
                time.sleep(30)

            def test_after():
                pass
            """,
        test_fine="def test_fine(): pass\n",
    )
    git_repo.commit_all("suite")
    result = parallel(pytester, "-rA")
    result.assert_outcomes(passed=2, failed=1)
    assert "PASSED test_hang.py::test_after" in result.outlines
    if method == "signal":
        result.stdout.fnmatch_lines(["*Failed: Timeout (>0.5s) from pytest-timeout*"])
        # pytest-timeout's stack dump lands in the test's captured stderr.
        result.stdout.fnmatch_lines(["*Captured stderr call*", "*Stack of *"])
    else:
        # The thread method ends the process: the worker is lost, not the run.
        result.stdout.fnmatch_lines(["*worker w* crashed while running test_hang.py::test_hangs*"])


def test_pytest_randomly_uses_one_seed_everywhere(
    pytester: pytest.Pytester, git_repo: GitRepo
) -> None:
    pytester.makeini(INI)
    values = pytester.path / "values"
    values.mkdir()
    for name in ("a", "b", "c"):
        pytester.makepyfile(
            **{
                f"test_{name}": f"""
                import random

                def test_one(request):
                    name = request.node.nodeid.replace("/", "_").replace(":", "_")
                    open({str(values)!r} + "/" + name, "w").write(repr(random.random()))

                def test_two(request):
                    test_one(request)
                """
            }
        )
    git_repo.commit_all("suite")
    seeded = ("-p", "randomly", "-p", "no:cacheprovider", "--randomly-seed=1234")
    expected_run = pytester.runpytest_subprocess(*seeded, timeout=60)
    expected = {path.name: path.read_text() for path in values.iterdir()}
    for path in values.iterdir():
        path.unlink()
    result = pytester.runpytest_subprocess("--parallel-modules=2", *seeded, timeout=60)
    result.assert_outcomes(passed=6)
    assert expected_run.ret == 0
    # Each test reseeds from the one seed, so every worker draws what a plain run draws.
    assert {path.name: path.read_text() for path in values.iterdir()} == expected
    assert result.stdout.str().count("Using --randomly-seed=1234") == 1


def test_pytest_rerunfailures_reruns_in_the_worker(
    pytester: pytest.Pytester, git_repo: GitRepo
) -> None:
    pytester.makeini(INI)
    counts = pytester.path / "counts"
    counts.mkdir()
    pytester.makepyfile(
        test_flaky=f"""
            import pytest

            def attempt(name):
                path = {str(counts)!r} + "/" + name
                count = int(open(path).read()) if __import__("os").path.exists(path) else 0
                open(path, "w").write(str(count + 1))
                return count

            def test_flaky_twice():
                assert attempt("twice") >= 2

            @pytest.mark.flaky(reruns=1)
            def test_flaky_once():
                assert attempt("once") >= 1

            def test_always_fails():
                assert False
            """,
        test_other="def test_fine(): pass\n",
    )
    git_repo.commit_all("suite")

    expected = plain(pytester, "--reruns=2")
    for path in counts.iterdir():
        path.unlink()
    result = parallel(pytester, "--reruns=2", "--module-report-dir=out")
    assert (
        result.parseoutcomes()
        == expected.parseoutcomes()
        == {
            "passed": 3,
            "failed": 1,
            "rerun": 5,
        }
    )
    # The module report counts tests, not attempts.
    report = json.loads((pytester.path / "out" / "report.json").read_text())
    flaky = next(module for module in report["modules"] if module["module"] == "test_flaky.py")
    assert (flaky["counts"]["tests"], flaky["counts"]["passed"], flaky["counts"]["failed"]) == (
        3,
        2,
        1,
    )


def test_pytest_xdist_installed_but_unused(pytester: pytest.Pytester, git_repo: GitRepo) -> None:
    pytest.importorskip("xdist")
    pytester.makeini(INI)
    seen = pytester.path / "seen"
    seen.mkdir()
    for name in ("a", "b"):
        pytester.makepyfile(
            **{
                f"test_{name}": f"""
                import time

                def test_ids(worker_id, testrun_uid):
                    time.sleep(0.2)
                    open({str(seen / name)!r}, "w").write(worker_id + " " + testrun_uid)
                """
            }
        )
    git_repo.commit_all("suite")
    result = parallel(pytester)
    result.assert_outcomes(passed=2)
    ids = [path.read_text().split() for path in seen.iterdir()]
    # pytest-xdist's fixtures see our workers, and one run id across them.
    assert {worker for worker, _ in ids} <= {"w1", "w2"}
    assert len({uid for _, uid in ids}) == 1


def html_results(path: Path) -> dict[str, list[str]]:
    """Test id -> outcomes, from the data pytest-html embeds in its report."""
    blob = re.search(r'data-jsonblob="([^"]*)"', path.read_text(encoding="utf-8"))
    assert blob is not None
    tests = json.loads(html.unescape(blob.group(1)))["tests"]
    return {nodeid: [entry["result"] for entry in entries] for nodeid, entries in tests.items()}


def test_pytest_html_writes_one_report_with_every_test(
    pytester: pytest.Pytester, git_repo: GitRepo
) -> None:
    write_mixed_suite(pytester)
    git_repo.commit_all("suite")
    plain(pytester, "--html=plain.html", "--self-contained-html")
    parallel(pytester, "--html=parallel.html", "--self-contained-html")
    expected = html_results(pytester.path / "plain.html")
    assert len(expected) == 6
    assert html_results(pytester.path / "parallel.html") == expected


def test_a_pytest_a_test_starts_sees_what_it_would_under_a_plain_run(
    pytester: pytest.Pytester, git_repo: GitRepo
) -> None:
    """A test that runs pytest in a subprocess (as pytester does) inside a worker: the
    nested run keeps Hypothesis' database in its own directory, and a nested parallel
    controller does not collect as if it were the outer run's worker."""
    pytester.makeini(INI)
    seen = pytester.path / "seen.log"
    inner = pytester.path / "inner"
    inner.mkdir()
    (inner / "pytest.ini").write_text(INI)
    (inner / "test_inner.py").write_text(
        textwrap.dedent(
            f"""
            import os

            # Module level: runs where the module is collected, in a controller too.
            with open({str(seen)!r}, "a") as log:
                log.write(
                    f"collected by {{os.environ.get('PYTEST_PARALLEL_MODULES_WORKER', 'no worker')}}\\n"
                )

            def test_inner():
                with open({str(seen)!r}, "a") as log:
                    log.write(f"storage {{os.environ.get('HYPOTHESIS_STORAGE_DIRECTORY')}}\\n")
            """
        )
    )
    pytester.makepyfile(
        test_outer=textwrap.dedent(
            f"""
            import subprocess
            import sys

            def run(*args):
                command = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", *args]
                subprocess.run(command, cwd={str(inner)!r}, check=True)

            def test_plain_inner():
                run()

            def test_parallel_inner():
                run("--parallel-modules=1", "--module-isolation=none")
            """
        )
    )
    git_repo.commit_all("suite")
    parallel(pytester, "test_outer.py", workers=1).assert_outcomes(passed=2)
    lines = seen.read_text().splitlines()
    assert lines == [
        # The plain inner run: collected and run in a process the outer worker started.
        "collected by w1",
        "storage None",
        # The inner parallel run: its controller collects as no worker, its worker as w1,
        # and its worker keeps Hypothesis' database in the inner run's directory.
        "collected by no worker",
        "collected by w1",
        f"storage {inner / '.hypothesis'}",
    ], lines
