"""End to end: every hook pytest-parallel-modules offers, implemented in a conftest.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import GitRepo


pytestmark = pytest.mark.e2e

REPORT = Path(".pytest_cache", "d", "parallel-modules-report", "report.json")


def write_three_modules(pytester: pytest.Pytester, log: Path) -> None:
    for name in ("a", "b", "c"):
        pytester.makepyfile(
            **{
                f"test_{name}": f"def test_{name}():\n    open({str(log)!r}, 'a').write('{name}\\n')\n"
            }
        )


def test_plan_hook_reorders_and_regroups(pytester: pytest.Pytester, git_repo: GitRepo) -> None:
    log = pytester.path.parent / f"{pytester.path.name}.log"
    write_three_modules(pytester, log)
    pytester.makeconftest(
        """
        import pytest

        @pytest.hookimpl(optionalhook=True)
        def pytest_parallel_modules_plan(config, plan):
            return sorted(plan, key=lambda group: group.module, reverse=True)
        """
    )
    result = pytester.runpytest_subprocess("--parallel-modules=1", timeout=60)
    result.assert_outcomes(passed=3)
    assert log.read_text().split() == ["c", "b", "a"]


def test_plan_hook_that_loses_a_test_is_refused(
    pytester: pytest.Pytester, git_repo: GitRepo
) -> None:
    write_three_modules(pytester, pytester.path / "unused.log")
    pytester.makeconftest(
        """
        import pytest

        @pytest.hookimpl(optionalhook=True)
        def pytest_parallel_modules_plan(config, plan):
            return plan[1:]
        """
    )
    result = pytester.runpytest_subprocess("--parallel-modules=1", timeout=60)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*pytest_parallel_modules_plan must return ModuleGroups holding exactly the node ids it was given, each once (3 given, 2 returned)*"
        ]
    )


def test_module_hooks_and_report_extra(pytester: pytest.Pytester, git_repo: GitRepo) -> None:
    events = pytester.path.parent / f"{pytester.path.name}-events.log"
    write_three_modules(pytester, pytester.path.parent / f"{pytester.path.name}.log")
    pytester.makeconftest(
        f"""
        import pytest

        def _log(line):
            with open({str(events)!r}, "a") as f:
                f.write(line + "\\n")

        @pytest.hookimpl(optionalhook=True)
        def pytest_parallel_modules_module_started(config, module, worker_id, nodeids):
            _log(f"started {{module}} {{worker_id}} {{len(nodeids)}}")

        @pytest.hookimpl(optionalhook=True)
        def pytest_parallel_modules_module_finished(config, report):
            _log(f"finished {{report['module']}} {{report['outcome']}} {{report['counts']['passed']}}")

        @pytest.hookimpl(optionalhook=True)
        def pytest_parallel_modules_report(config, report):
            report["extra"]["build"] = {{"id": 42, "modules": len(report["modules"])}}
        """
    )
    result = pytester.runpytest_subprocess("--parallel-modules=2", timeout=60)
    result.assert_outcomes(passed=3)
    lines = events.read_text().splitlines()
    started_lines = sorted(line for line in lines if line.startswith("started"))
    assert [line.split()[1] for line in started_lines] == ["test_a.py", "test_b.py", "test_c.py"]
    assert all(line.split()[2] in ("w1", "w2") and line.split()[3] == "1" for line in started_lines)
    assert sorted(line for line in lines if line.startswith("finished")) == [
        "finished test_a.py passed 1",
        "finished test_b.py passed 1",
        "finished test_c.py passed 1",
    ]
    # Each module is announced as started before it is announced as finished.
    for name in ("a", "b", "c"):
        started = next(
            i for i, line in enumerate(lines) if line.startswith(f"started test_{name}.py")
        )
        finished = next(
            i for i, line in enumerate(lines) if line.startswith(f"finished test_{name}.py")
        )
        assert started < finished
    report = json.loads((pytester.path / REPORT).read_text())
    assert report["extra"] == {"build": {"id": 42, "modules": 3}}


def test_hooks_are_optional_when_the_plugin_is_off(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import pytest

        @pytest.hookimpl(optionalhook=True)
        def pytest_parallel_modules_plan(config, plan):
            raise AssertionError("never called without --parallel-modules")
        """
    )
    pytester.makepyfile(test_x="def test_x(): pass\n")
    result = pytester.runpytest_subprocess("-p", "no:pytest_parallel_modules", timeout=60)
    result.assert_outcomes(passed=1)
