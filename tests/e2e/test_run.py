"""End to end: ``--parallel-modules`` gives the same per-test outcomes as a plain run.

Every test here builds a suite in a real git repository and drives pytest in a
subprocess, as a user would, with real worker processes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
import re
import textwrap

import pytest

from tests.conftest import GitRepo
from tests.conftest import junit_outcomes
from tests.conftest import short_summary


pytestmark = pytest.mark.e2e

RunBoth = Callable[..., tuple[pytest.RunResult, pytest.RunResult]]


def write_mixed_suite(pytester: pytest.Pytester, counts: Path) -> None:
    """A suite with every kind of outcome, fixtures that count their setups, and output."""
    counts.mkdir()
    pytester.makeconftest(
        f"""
        import os
        import pytest

        COUNTS = {str(counts)!r}

        def _count(name):
            with open(os.path.join(COUNTS, name), "a") as f:
                f.write("x\\n")

        @pytest.fixture(scope="session")
        def session_resource():
            _count("session")
            yield "session"

        @pytest.fixture(scope="module")
        def module_resource(request):
            _count("module-" + request.module.__name__)
            yield request.module.__name__
        """
    )
    pytester.makepyfile(
        test_outcomes="""
        import sys
        import pytest

        def test_pass(module_resource, session_resource):
            print("hello from stdout")
            sys.stderr.write("hello from stderr\\n")

        def test_fail(module_resource):
            assert 1 == 2, "one is not two"

        @pytest.fixture
        def broken_setup():
            raise RuntimeError("setup exploded")

        def test_setup_error(broken_setup):
            pass

        @pytest.fixture
        def broken_teardown():
            yield
            raise RuntimeError("teardown exploded")

        def test_teardown_error(broken_teardown):
            pass

        def test_skip():
            pytest.skip("not today")

        @pytest.mark.xfail(reason="known bug")
        def test_xfail():
            assert False

        @pytest.mark.xfail(reason="fixed already")
        def test_xpass():
            pass

        @pytest.mark.xfail(reason="strict", strict=True)
        def test_xpass_strict():
            pass
        """,
        test_params="""
        import pytest

        @pytest.mark.parametrize("value", [1, 2, 3, "a/b", "x::y"])
        def test_param(value, module_resource, session_resource):
            assert value != 2

        class TestGroup:
            def test_method(self, module_resource):
                pass

            @pytest.mark.parametrize("n", range(3))
            def test_param_method(self, n):
                assert n < 2
        """,
        test_more="""
        def test_a(module_resource, session_resource):
            pass

        def test_b(module_resource):
            pass
        """,
        test_broken_import="""
        import not_a_module_that_exists

        def test_never():
            pass
        """,
    )


def test_outcomes_equal_plain_pytest(
    pytester: pytest.Pytester, git_repo: GitRepo, run_both: RunBoth
) -> None:
    counts = pytester.path / "counts"
    write_mixed_suite(pytester, counts)
    git_repo.commit_all("suite")
    plain = pytester.runpytest_subprocess(
        "-rA", "--continue-on-collection-errors", "--junitxml=plain.xml", timeout=60
    )
    plain_module_setups = sorted(p.name for p in counts.iterdir() if p.name.startswith("module-"))
    for path in counts.iterdir():
        path.unlink()
    parallel = pytester.runpytest_subprocess(
        "--parallel-modules=3",
        "-rA",
        "--continue-on-collection-errors",
        "--junitxml=parallel.xml",
        timeout=60,
    )

    assert parallel.ret == plain.ret == pytest.ExitCode.TESTS_FAILED
    assert parallel.parseoutcomes() == plain.parseoutcomes()
    assert short_summary(parallel) == short_summary(plain)
    assert junit_outcomes(pytester.path / "parallel.xml") == junit_outcomes(
        pytester.path / "plain.xml"
    )
    # Tracebacks and captured output reach the terminal as in a plain run.
    for pattern in (
        "*one is not two*",
        "*RuntimeError: setup exploded*",
        "*RuntimeError: teardown exploded*",
        "*hello from stdout*",
        "*hello from stderr*",
        "*ModuleNotFoundError: No module named 'not_a_module_that_exists'*",
    ):
        parallel.stdout.fnmatch_lines([pattern])
    assert "INTERNALERROR" not in parallel.stdout.str() + parallel.stderr.str()
    # Module fixtures: exactly once per module; session fixtures: at most once per worker.
    parallel_module_setups = sorted(
        p.name for p in counts.iterdir() if p.name.startswith("module-")
    )
    assert parallel_module_setups == plain_module_setups
    for name in parallel_module_setups:
        assert (counts / name).read_text() == "x\n", name
    session_setups = (counts / "session").read_text().count("x")
    assert 1 <= session_setups <= 3


def test_collection_error_interrupts_like_plain_pytest(
    pytester: pytest.Pytester, git_repo: GitRepo, run_both: RunBoth
) -> None:
    pytester.makepyfile(test_ok="def test_ok(): pass", test_bad="import nope\n")
    plain, parallel = run_both()
    assert parallel.ret == plain.ret == pytest.ExitCode.INTERRUPTED
    parallel.stdout.fnmatch_lines(
        ["*ERROR collecting test_bad.py*", "*Interrupted: 1 error during collection*"]
    )


@pytest.mark.parametrize(
    "selection",
    [("-k", "param and not method"), ("-m", "slow"), ("--deselect", "test_sel.py::test_two")],
    ids=["k", "m", "deselect"],
)
def test_selection_equals_plain_pytest(
    pytester: pytest.Pytester, git_repo: GitRepo, run_both: RunBoth, selection: tuple[str, str]
) -> None:
    pytester.makeini("[pytest]\nmarkers =\n    slow: slow tests\n")
    pytester.makepyfile(
        test_sel="""
        import pytest

        @pytest.mark.slow
        def test_one(): pass

        def test_two(): pass

        @pytest.mark.parametrize("x", [1, 2])
        def test_param(x): assert x == 1
        """,
        test_other="""
        import pytest

        class TestK:
            def test_param_method(self): pass

        @pytest.mark.slow
        def test_param_slow(): pass
        """,
    )
    plain, parallel = run_both("-rA", *selection)
    assert parallel.ret == plain.ret
    assert parallel.parseoutcomes() == plain.parseoutcomes()
    assert short_summary(parallel) == short_summary(plain)


def test_node_ids_on_the_command_line_run_exactly_those_tests(
    pytester: pytest.Pytester, git_repo: GitRepo, run_both: RunBoth
) -> None:
    pytester.makepyfile(
        test_ids="""
        import pytest

        @pytest.mark.parametrize("x", ["a", "b", "c"])
        def test_x(x): pass

        def test_y(): pass
        """
    )
    plain, parallel = run_both("-rA", "test_ids.py::test_x[b]", "test_ids.py::test_y")
    assert (
        short_summary(parallel)
        == short_summary(plain)
        == [
            "PASSED test_ids.py::test_x[b]",
            "PASSED test_ids.py::test_y",
        ]
    )


def test_last_failed_after_a_parallel_run_selects_the_failed_tests(
    pytester: pytest.Pytester, git_repo: GitRepo
) -> None:
    pytester.makepyfile(
        test_lf_a="def test_ok(): pass\ndef test_bad(): assert 0\n",
        test_lf_b="import pytest\n@pytest.mark.parametrize('x', [1, 2])\ndef test_p(x): assert x == 1\n",
        test_lf_c="def test_fine(): pass\n",
    )
    first = pytester.runpytest_subprocess("--parallel-modules=2", timeout=60)
    first.assert_outcomes(passed=3, failed=2)
    rerun = pytester.runpytest_subprocess("--lf", "-rA", timeout=60)
    assert short_summary(rerun) == [
        "FAILED test_lf_a.py::test_bad - assert 0",
        "FAILED test_lf_b.py::test_p[2] - assert 2 == 1",
    ]
    rerun_parallel = pytester.runpytest_subprocess(
        "--lf", "-rA", "--parallel-modules=2", timeout=60
    )
    assert short_summary(rerun_parallel) == short_summary(rerun)


def write_sleepy_modules(pytester: pytest.Pytester, count: int) -> None:
    """``count`` modules; the first fails at once, the others take a while.

    The failing module has the most tests, so the scheduler (no history yet:
    estimates by test count) starts it first.
    """
    pytester.makepyfile(
        test_00_fails="def test_fails():\n    assert 0\n"
        + "".join(f"def test_ok{i}(): pass\n" for i in range(5))
    )
    for index in range(1, count):
        pytester.makepyfile(
            **{
                f"test_{index:02d}_slow": textwrap.dedent(
                    """
                    import time

                    def test_one(): time.sleep(0.3)

                    def test_two(): time.sleep(0.3)
                    """
                )
            }
        )


def test_exitfirst_starts_no_new_module_and_exits_1(
    pytester: pytest.Pytester, git_repo: GitRepo
) -> None:
    write_sleepy_modules(pytester, 8)
    result = pytester.runpytest_subprocess(
        "--parallel-modules=2", "-x", "-p", "no:randomly", timeout=60
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*stopping after 1 failures*"])
    outcomes = result.parseoutcomes()
    assert outcomes["failed"] == 1
    # The other worker finishes only the test it was running.
    assert outcomes.get("passed", 0) <= 2


def test_maxfail_counts_failures_across_workers(
    pytester: pytest.Pytester, git_repo: GitRepo
) -> None:
    for index in range(6):
        pytester.makepyfile(
            **{f"test_m{index}": "import time\ndef test_a():\n    time.sleep(0.2)\n    assert 0\n"}
        )
    result = pytester.runpytest_subprocess("--parallel-modules=2", "--maxfail=3", timeout=60)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*stopping after 3 failures*"])
    assert 3 <= result.parseoutcomes()["failed"] <= 4


def mark_worker_starts(pytester: pytest.Pytester) -> Path:
    """A conftest that creates the returned file as soon as any worker configures."""
    marker = pytester.path / "worker-started"
    pytester.makeconftest(
        f"""
        def pytest_configure(config):
            if hasattr(config, "workerinput"):
                open({str(marker)!r}, "w").close()
        """
    )
    return marker


def test_collect_only_starts_no_worker(pytester: pytest.Pytester, git_repo: GitRepo) -> None:
    marker = mark_worker_starts(pytester)
    pytester.makepyfile(test_c="def test_a(): pass\ndef test_b(): pass\n")
    result = pytester.runpytest_subprocess(
        "--parallel-modules=2", "--collect-only", "-q", "-p", "no:randomly", timeout=60
    )
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["test_c.py::test_a", "test_c.py::test_b"])
    assert not marker.exists()
    ran = pytester.runpytest_subprocess("--parallel-modules=2", timeout=60)
    ran.assert_outcomes(passed=2)
    assert marker.exists()


def test_no_tests_exits_5(pytester: pytest.Pytester, git_repo: GitRepo) -> None:
    pytester.makepyfile(test_empty="x = 1\n")
    result = pytester.runpytest_subprocess("--parallel-modules=2", timeout=60)
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED


def test_verbose_output_names_the_worker(pytester: pytest.Pytester, git_repo: GitRepo) -> None:
    pytester.makepyfile(test_v="def test_a(): pass\n")
    result = pytester.runpytest_subprocess("--parallel-modules=1", "-v", timeout=60)
    result.stdout.fnmatch_lines(
        ["parallel-modules: 1 worker (--parallel-modules=1)", "[[]w1[]]*PASSED test_v.py::test_a*"]
    )


def _progress_lines(result: pytest.RunResult) -> list[str]:
    """The non-blank lines between the header and the first section (FAILURES, summary)."""
    lines = result.outlines
    # -q prints no header: the progress starts at the top.
    start = next((index + 1 for index, line in enumerate(lines) if "collected" in line), 0)
    end = next(index for index, line in enumerate(lines) if index >= start and line.startswith("="))
    return [
        line
        for line in lines[start:end]
        if line.strip() and not line.startswith("parallel-modules:")
    ]


@pytest.mark.slow
def test_output_is_as_quiet_or_verbose_as_a_plain_run(
    pytester: pytest.Pytester, git_repo: GitRepo
) -> None:
    # Modules of different lengths on two workers: their reports interleave.
    pytester.makepyfile(
        test_a="import time\ndef test_1(): time.sleep(0.4)\ndef test_2(): time.sleep(0.4)\n",
        test_b="import time, pytest\n"
        "def test_1(): time.sleep(0.2)\n"
        "def test_2(): assert 0\n"
        "@pytest.mark.skip\ndef test_3(): pass\n",
        test_c="import time, pytest\n"
        "def test_1(): time.sleep(0.3)\n"
        "@pytest.mark.xfail\ndef test_2(): assert 0\n",
    )
    common = ["-p", "no:randomly", "-p", "no:cacheprovider"]
    for flag in ("-q", "", "-v"):
        args = [*common, *([flag] if flag else [])]
        plain = pytester.runpytest_subprocess(*args, timeout=60)
        parallel = pytester.runpytest_subprocess("--parallel-modules=2", *args, timeout=60)
        plain_lines, parallel_lines = _progress_lines(plain), _progress_lines(parallel)
        if flag == "-q":
            # No line per module: the letters only, as a plain run prints them.
            assert len(parallel_lines) == len(plain_lines) == 1, parallel_lines
            assert sorted(parallel_lines[0].split()[0]) == sorted(plain_lines[0].split()[0])
        elif flag == "-v":
            # One line per test, as in a plain run (module lines aside).
            per_test = [line for line in parallel_lines if "::" in line]
            assert len(per_test) == len([line for line in plain_lines if "::" in line]) == 7
            assert all(line.startswith("[w") for line in per_test), per_test
        else:
            # One line per module, as in a plain run, holding that module's letters.
            assert len(parallel_lines) == len(plain_lines) == 3, parallel_lines
            letters = {
                match.group(1): match.group(2)
                for line in parallel_lines
                if (match := re.match(r"\[\d/3\] \w+ (test_\w\.py) (\S+)  ", line))
            }
            assert letters == {"test_a.py": "..", "test_b.py": ".Fs", "test_c.py": ".x"}


def test_ini_key_turns_the_plugin_on(pytester: pytest.Pytester, git_repo: GitRepo) -> None:
    pytester.makeini("[pytest]\nparallel_modules = 2\n")
    pytester.makepyfile(
        test_i="import os\ndef test_w(): assert os.environ['PYTEST_PARALLEL_MODULES_WORKER'] in ('w1', 'w2')\n"
    )
    result = pytester.runpytest_subprocess(timeout=60)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["parallel-modules: 2 workers (ini parallel_modules=2)"])


def test_tmp_path_never_clashes_between_workers(
    pytester: pytest.Pytester, git_repo: GitRepo
) -> None:
    for index in range(4):
        pytester.makepyfile(
            **{
                f"test_t{index}": f"""
                def test_tmp(tmp_path, tmp_path_factory):
                    (tmp_path / "f").write_text("{index}")
                    base = tmp_path_factory.getbasetemp()
                    assert base.name.startswith("worker-w"), base
                    assert (tmp_path / "f").read_text() == "{index}"
                """
            }
        )
    result = pytester.runpytest_subprocess("--parallel-modules=2", timeout=60)
    result.assert_outcomes(passed=4)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--parallel-modules=0"],
            "--parallel-modules: expected a positive whole number or 'auto', got '0'",
        ),
        (
            ["--parallel-modules=-1"],
            "--parallel-modules: expected a positive whole number or 'auto', got '-1'",
        ),
        (
            ["--parallel-modules=abc"],
            "--parallel-modules: expected a positive whole number or 'auto', got 'abc'",
        ),
        (
            ["--parallel-modules=1.5"],
            "--parallel-modules: expected a positive whole number or 'auto', got '1.5'",
        ),
        (
            ["-o", "parallel_modules=zero"],
            "ini parallel_modules: expected a positive whole number or 'auto', got 'zero'",
        ),
        (["--parallel-modules=2", "--pdb"], "--parallel-modules cannot be combined with --pdb*"),
        (
            ["--parallel-modules=2", "--trace"],
            "--parallel-modules cannot be combined with --trace*",
        ),
        (
            ["--parallel-modules=2", "-n", "2"],
            "--parallel-modules cannot be combined with pytest-xdist's -n*",
        ),
    ],
)
def test_invalid_input_is_a_usage_error(
    pytester: pytest.Pytester, args: list[str], message: str
) -> None:
    marker = mark_worker_starts(pytester)
    pytester.makepyfile(test_u="def test_a(): pass\n")
    # In-process is enough here: a usage error must stop pytest before any worker starts.
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
    assert not marker.exists()


@pytest.mark.parametrize("quiet", [[], ["-q"]])
def test_parallel_only_options_in_a_plain_run_say_they_have_no_effect(
    pytester: pytest.Pytester, quiet: list[str]
) -> None:
    pytester.makepyfile(test_p="def test_a(): pass\n")
    # In-process: no worker may start, and none would.
    result = pytester.runpytest(
        "--module-timeout=5", "--module-report-dir=out", "--keep-failed-worktrees", *quiet
    )
    assert result.ret == pytest.ExitCode.OK
    warnings = [line for line in result.outlines if "have no effect" in line]
    assert warnings == [
        "parallel-modules: WARNING: --keep-failed-worktrees, --module-report-dir=out, "
        "--module-timeout=5 have no effect: this run is not parallel "
        "(no --parallel-modules=N and no ini parallel_modules)"
    ]


def test_a_plain_run_still_checks_parallel_only_paths(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_p="def test_a(): pass\n")
    (pytester.path / "taken").write_text("a file\n")
    result = pytester.runpytest("--module-report-dir=taken")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: --module-report-dir: 'taken' is a file, expected a directory"]
    )


def test_ini_keys_in_a_plain_run_are_silent(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nmodule_timeout = 300\n")
    pytester.makepyfile(test_p="def test_a(): pass\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.OK
    assert "no effect" not in result.stdout.str()


@pytest.mark.slow
def test_quick_modules_with_history_run_exactly_once_each(
    pytester: pytest.Pytester, git_repo: GitRepo
) -> None:
    """Modules measured quick let a worker ask for the next one ahead; nothing runs twice or is lost."""
    log = pytester.path.parent / f"{pytester.path.name}-ran.log"
    for index in range(12):
        pytester.makepyfile(
            **{
                f"test_q{index:02d}": f"def test_q():\n    open({str(log)!r}, 'a').write('q{index:02d}\\n')\n"
            }
        )
    pytester.makepyfile(test_z_fails="def test_z():\n    assert 0\n")
    first = pytester.runpytest_subprocess("--parallel-modules=2", timeout=60)
    first.assert_outcomes(passed=12, failed=1)
    log.unlink()
    # History now says every module is quick: workers ask for work ahead.
    second = pytester.runpytest_subprocess("--parallel-modules=2", timeout=60)
    second.assert_outcomes(passed=12, failed=1)
    assert sorted(log.read_text().split()) == [f"q{index:02d}" for index in range(12)]
    # -x with modules sent ahead: those are reported back unstarted, nothing hangs.
    stopped = pytester.runpytest_subprocess("--parallel-modules=2", "-x", timeout=60)
    assert stopped.ret == pytest.ExitCode.TESTS_FAILED
    assert "INTERNALERROR" not in stopped.stdout.str()


def test_packages_nested_directories_and_doctests_equal_plain_pytest(
    pytester: pytest.Pytester, git_repo: GitRepo, run_both: RunBoth
) -> None:
    """Workers collect only their module: packages, conftests and doctests must still be found."""
    pkg = pytester.mkpydir("pkg")
    (pkg / "conftest.py").write_text("import pytest\n@pytest.fixture\ndef pkg_value(): return 7\n")
    (pkg / "test_in_pkg.py").write_text("def test_fixture(pkg_value): assert pkg_value == 7\n")
    sub = pkg / "sub"
    sub.mkdir()
    (sub / "__init__.py").write_text("")
    (sub / "test_deep.py").write_text("def test_deep(): pass\ndef test_deep_fails(): assert 0\n")
    (sub / "helpers.py").write_text(
        'def double(x):\n    """\n    >>> double(2)\n    4\n    """\n    return x * 2\n'
    )
    plain_dir = pytester.path / "plain_dir"
    plain_dir.mkdir()
    for index in range(5):
        (plain_dir / f"test_sibling{index}.py").write_text(f"def test_s{index}(): pass\n")
    plain, parallel = run_both("-rA", "--doctest-modules", "-p", "no:randomly")
    assert parallel.ret == plain.ret == pytest.ExitCode.TESTS_FAILED
    assert short_summary(parallel) == short_summary(plain)
    assert "PASSED pkg/sub/helpers.py::pkg.sub.helpers.double" in short_summary(parallel)


def test_package_fixtures_live_across_a_workers_modules_of_the_package_as_in_a_plain_run(
    pytester: pytest.Pytester, git_repo: GitRepo
) -> None:
    """A module's last test tears down only what the worker's next module does not share."""
    log = pytester.path / "fixtures.log"
    for name in ("pkg_a", "pkg_b"):
        pkg = pytester.mkpydir(name)
        failure = "raise RuntimeError('teardown broke')" if name == "pkg_b" else "pass"
        (pkg / "conftest.py").write_text(
            textwrap.dedent(
                f"""
                import pytest

                @pytest.fixture(scope="package", autouse=True)
                def package_resource():
                    open({str(log)!r}, "a").write("setup {name}\\n")
                    yield
                    open({str(log)!r}, "a").write("teardown {name}\\n")
                    {failure}
                """
            )
        )
    # pkg_a's modules are the bigger files, so without a history they run first.
    for index in range(3):
        (pytester.path / "pkg_a" / f"test_a{index}.py").write_text(
            "def test_a():\n    pass\n" + "# padding\n" * 20
        )
    (pytester.path / "pkg_b" / "test_b.py").write_text("def test_b():\n    pass\n")

    plain = pytester.runpytest_subprocess("-rA", "-p", "no:randomly", timeout=60)
    plain_log = log.read_text()
    log.unlink()
    parallel = pytester.runpytest_subprocess(
        "-rA", "-p", "no:randomly", "--parallel-modules=1", timeout=60
    )
    assert plain_log == "setup pkg_a\nteardown pkg_a\nsetup pkg_b\nteardown pkg_b\n"
    assert log.read_text() == plain_log
    assert parallel.ret == plain.ret == pytest.ExitCode.TESTS_FAILED
    assert short_summary(parallel) == short_summary(plain)
    assert "ERROR pkg_b/test_b.py::test_b - RuntimeError: teardown broke" in short_summary(plain)
