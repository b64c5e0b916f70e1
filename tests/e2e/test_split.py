"""End to end: --split-modules runs a dominant module as parts when it is safe, and says why not.

The duration history is seeded (``--module-durations``) with what the modules
would cost, so one parallel run per scenario is enough and the tests
themselves take no time: splitting decides from the history, never from the
clock. Workers run in place (``--module-isolation=none``): where they run
changes nothing of what is split, and it spares the worktrees' cost.
"""

from __future__ import annotations

import json
from pathlib import Path
import time

import pytest

from pytest_parallel_modules.history import MeasuredModule
from pytest_parallel_modules.history import MeasuredRun
from pytest_parallel_modules.history import MeasuredTest
from pytest_parallel_modules.history import save_history
from tests.conftest import junit_outcomes
from tests.conftest import short_summary


pytestmark = pytest.mark.e2e

REPORT = Path(".pytest_cache", "d", "parallel-modules-report", "report.json")
DURATIONS = "durations.json"
INI = "[pytest]\nasyncio_default_fixture_loop_scope = function\n"


def seed_history(path: Path, seconds_by_nodeid: dict[str, float]) -> None:
    """Write a history in which each node id took the given seconds (module fixed cost 0)."""
    modules: dict[str, float] = {}
    for nodeid, seconds in seconds_by_nodeid.items():
        module = nodeid.split("::", 1)[0]
        modules[module] = modules.get(module, 0.0) + seconds
    save_history(
        path,
        MeasuredRun(
            tests={
                nodeid: MeasuredTest(duration_s=seconds, outcome="passed", complete=True)
                for nodeid, seconds in seconds_by_nodeid.items()
            },
            modules={
                module: MeasuredModule(total_s=total, collect_s=0.0, complete=True)
                for module, total in modules.items()
            },
        ),
        now=time.time(),
    )


def load(pytester: pytest.Pytester) -> dict[str, object]:
    report: dict[str, object] = json.loads((pytester.path / REPORT).read_text())
    return report


def modules_of(report: dict[str, object]) -> dict[str, dict[str, object]]:
    return {module["module"]: module for module in report["modules"]}  # type: ignore[attr-defined,index]


AUTO_SUITE = {
    # Function-scoped only: split. One test fails, in one of its parts.
    "test_big": """
        import pytest

        @pytest.fixture
        def value():
            return 1

        @pytest.mark.parametrize("n", range(8))
        def test_n(n, value):
            assert n != 5
        """,
    "test_fixture": """
        import pytest

        @pytest.fixture(scope="module")
        def db():
            return {}

        @pytest.mark.parametrize("n", range(4))
        def test_n(n, db):
            pass
        """,
    "test_setup": """
        def setup_module(module):
            pass

        def test_0():
            pass

        def test_1():
            pass

        def test_2():
            pass

        def test_3():
            pass
        """,
    "test_unit": """
        import unittest

        class TestDB(unittest.TestCase):
            @classmethod
            def setUpClass(cls):
                cls.conn = object()

            def test_0(self):
                pass

            def test_1(self):
                pass

            def test_2(self):
                pass

            def test_3(self):
                pass
        """,
    "test_small": "def test_a():\n    pass\n",
}


def auto_history() -> dict[str, float]:
    # 4 modules of 10 s and one of 0.5 s on 5 workers: a fair share of 8.1 s.
    seconds = {f"test_big.py::test_n[{n}]": 1.25 for n in range(8)}
    seconds |= {f"test_fixture.py::test_n[{n}]": 2.5 for n in range(4)}
    seconds |= {f"test_setup.py::test_{n}": 2.5 for n in range(4)}
    seconds |= {f"test_unit.py::TestDB::test_{n}": 2.5 for n in range(4)}
    seconds["test_small.py::test_a"] = 0.5
    return seconds


@pytest.mark.slow
def test_auto_splits_a_safe_dominant_module_like_a_plain_run_and_says_why_others_stay_whole(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(**AUTO_SUITE)
    seed_history(pytester.path / DURATIONS, auto_history())
    common = ("-p", "no:randomly", "-rA", "--junitxml=junit.xml")
    plain = pytester.runpytest_subprocess(*common, timeout=60)
    plain_junit = junit_outcomes(pytester.path / "junit.xml")
    parallel = pytester.runpytest_subprocess(
        "--parallel-modules=5",
        "--module-isolation=none",
        f"--module-durations={DURATIONS}",
        *common,
        timeout=60,
    )
    assert parallel.ret == plain.ret == pytest.ExitCode.TESTS_FAILED
    parallel.assert_outcomes(passed=20, failed=1)
    assert short_summary(parallel) == short_summary(plain)
    assert junit_outcomes(pytester.path / "junit.xml") == plain_junit

    report = load(pytester)
    big = modules_of(report)["test_big.py"]
    assert big["counts"]["tests"] == 8  # type: ignore[index]
    assert [unit["id"] for unit in big["units"]] == ["test_big.py[1/2]", "test_big.py[2/2]"]  # type: ignore[index]
    assert [unit["outcome"] for unit in big["units"]] == ["passed", "failed"]  # type: ignore[index]
    assert {
        split["module"]: (split["parts"], split["reason"])
        for split in report["splits"]  # type: ignore[attr-defined]
    } == {
        "test_big.py": (2, None),
        "test_fixture.py": (1, "module-scoped fixture `db` in test_fixture.py:3"),
        "test_setup.py": (1, "setup_module in test_setup.py:1"),
        "test_unit.py": (
            1,
            "class `TestDB` has setUpClass (test_unit.py:4), and its tests stay together "
            "(100% of the module)",
        ),
    }
    # The summary says it (long lines wrap at the terminal's width).
    for line in (
        "test_big.py ran as 2 parts on w*",
        "test_fixture.py holds 25% of the work; not split: module-scoped fixture `db`*",
        "test_setup.py holds 25% of the work; not split: setup_module in test_setup.py:1",
        "test_unit.py holds 25% of the work; not split: class `TestDB` has setUpClass*",
    ):
        parallel.stdout.fnmatch_lines([line])

    # The failure was in one part; the whole module runs again, and only it.
    rerun = pytester.runpytest_subprocess(
        "--parallel-modules=2",
        "--module-isolation=none",
        "--rerun-failed-modules",
        f"--module-durations={DURATIONS}",
        "-p",
        "no:randomly",
        timeout=60,
    )
    rerun.stdout.fnmatch_lines(
        ["parallel-modules: rerunning 1 module(s) that failed last time (13 deselected)"]
    )
    rerun.assert_outcomes(passed=7, failed=1)
    assert set(modules_of(load(pytester))) == {"test_big.py"}


def test_always_splits_unsafe_modules_and_the_marker_and_ini_list_keep_modules_whole(
    pytester: pytest.Pytester,
) -> None:
    setups = pytester.path.parent / f"{pytester.path.name}-setups"
    pytester.makeini(INI + "split_modules_keep_whole =\n    test_list*.py\n")
    pytester.makepyfile(
        # Each part sets the module fixture up; the first waits for the second, so the
        # two parts are on two workers at once (a worker that ran both would share it).
        test_fixture=f"""
        import os
        import time
        import pytest

        SETUPS = {str(setups)!r}

        @pytest.fixture(scope="module")
        def db():
            with open(SETUPS, "a") as file:
                file.write(os.environ["PYTEST_PARALLEL_MODULES_WORKER"] + "\\n")
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and len(open(SETUPS).read().split()) < 2:
                time.sleep(0.05)
            return {{}}

        @pytest.mark.parametrize("n", range(6))
        def test_n(n, db):
            pass
        """,
        test_marked="""
        import pytest

        pytestmark = pytest.mark.parallel_modules_whole

        @pytest.mark.parametrize("n", range(6))
        def test_n(n):
            pass
        """,
        test_listed="""
        import pytest

        @pytest.mark.parametrize("n", range(6))
        def test_n(n):
            pass
        """,
        test_small="def test_a():\n    pass\n",
    )
    seconds = {
        f"{module}::test_n[{n}]": 10 / 6
        for module in ("test_fixture.py", "test_marked.py", "test_listed.py")
        for n in range(6)
    }
    seconds["test_small.py::test_a"] = 0.5
    seed_history(pytester.path / DURATIONS, seconds)
    result = pytester.runpytest_subprocess(
        "--parallel-modules=4",
        "--module-isolation=none",
        "--split-modules=always",
        f"--module-durations={DURATIONS}",
        "-p",
        "no:randomly",
        timeout=60,
    )
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    result.assert_outcomes(passed=19)
    report = load(pytester)
    parts = {split["module"]: split["parts"] for split in report["splits"]}  # type: ignore[attr-defined]
    assert parts == {"test_fixture.py": 2, "test_marked.py": 1, "test_listed.py": 1}
    # Module fixtures run once per part under always.
    workers = setups.read_text().split()
    assert len(workers) == parts["test_fixture.py"] == len(set(workers))
    assert {split["module"]: split["reason"] for split in report["splits"]} == {  # type: ignore[attr-defined]
        "test_fixture.py": "module-scoped fixture `db` in test_fixture.py:7",
        "test_marked.py": "the module is marked parallel_modules_whole",
        "test_listed.py": "ini split_modules_keep_whole matches `test_list*.py`",
    }
    for line in (
        "test_fixture.py ran as 2 parts on w*, w* (--split-modules=always, although: *",
        "test_marked.py holds 33% of the work; not split: the module is marked *",
        "test_listed.py holds 33% of the work; not split: ini split_modules_keep_whole *",
    ):
        result.stdout.fnmatch_lines([line])


# pyparsing's tests/test_unit.py in small: one class turns something on for the rest of
# the process, and a later class inherits the first one's tests to run them again.
RERUN_SUITE = {
    "test_state": """
        import time

        STATE = []

        class TestWithout:
            def test_a(self):
                pass

            def test_b(self):
                pass

        class TestEnable:
            def test_enable(self):
                # Long enough for the second worker to start and take the other part.
                time.sleep(2)
                STATE.append("on")

        class TestWith(TestWithout):
            def test_enabled(self):
                assert STATE
        """,
    "test_small": "def test_a():\n    pass\n",
}


@pytest.mark.slow
def test_auto_keeps_whole_a_module_whose_class_reruns_another_class_s_tests(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(**RERUN_SUITE)
    plain = pytester.runpytest_subprocess("-p", "no:randomly", "--co", "-q", timeout=60)
    nodeids = [line for line in plain.outlines if line.startswith("test_state.py::")]
    assert len(nodeids) == 6
    seed_history(
        pytester.path / DURATIONS,
        {nodeid: 2.0 for nodeid in nodeids} | {"test_small.py::test_a": 0.5},
    )
    common = (
        "--parallel-modules=2",
        "--module-isolation=none",
        f"--module-durations={DURATIONS}",
        "-p",
        "no:randomly",
    )
    auto = pytester.runpytest_subprocess(*common, timeout=60)
    # As a plain run: TestEnable ran before TestWith in the same process.
    auto.assert_outcomes(passed=7)
    auto.stdout.fnmatch_lines(
        [
            "test_state.py holds 96% of the work; not split: class `TestWith` inherits the "
            "tests of class `TestWithout`*"
        ]
    )
    # What the rule prevents: cut in two, TestWith runs where TestEnable never did.
    always = pytester.runpytest_subprocess(*common, "--split-modules=always", timeout=60)
    units = modules_of(load(pytester))["test_state.py"]["units"]
    workers = {unit["worker"] for unit in units}  # type: ignore[attr-defined]
    assert len(units) == 2  # type: ignore[arg-type]
    if len(workers) == 2:
        always.assert_outcomes(passed=6, failed=1)
        always.stdout.fnmatch_lines(["FAILED test_state.py::TestWith::test_enabled*"])
    else:  # the second worker came too late: one worker ran both parts, in order
        always.assert_outcomes(passed=7)
