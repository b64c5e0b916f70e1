"""Reading splitting facts from items pytest really collected (in-process collection, no workers).

Collecting in-process costs seconds on a busy machine, so one suite holds every
case and is collected once per test that needs it.
"""

from __future__ import annotations

from collections.abc import Mapping
import textwrap

import pytest

from pytest_parallel_modules.grouping import group_by_module
from pytest_parallel_modules.grouping import module_of
from pytest_parallel_modules.grouping import units_of
from pytest_parallel_modules.history import History
from pytest_parallel_modules.history import RecordedTest
from pytest_parallel_modules.module_facts import plan_splits
from pytest_parallel_modules.module_facts import read_module_facts
from pytest_parallel_modules.module_facts import SplitPlan
from pytest_parallel_modules.scheduling import build_plan
from pytest_parallel_modules.scheduling import estimate_modules
from pytest_parallel_modules.splitting import module_blocker
from pytest_parallel_modules.splitting import ModuleFacts
from pytest_parallel_modules.splitting import SplitMode
from pytest_parallel_modules.splitting import whole_classes


#: Keeps pytest-asyncio quiet in the in-process sessions (its default is deprecated).
INI = "[pytest]\nasyncio_default_fixture_loop_scope = function\n"

CONFTEST = """
import pytest

@pytest.fixture(scope="package")
def server():
    return "up"

@pytest.fixture(scope="session")
def shared():
    return 1

@pytest.fixture(scope="module")
def db():
    return "shared"
"""

MODULES = {
    "test_plain": """
        import pytest

        @pytest.fixture
        def value():
            return 1

        def test_a(value, tmp_path, shared):  # tmp_path_factory and shared: session, not ours
            pass

        @pytest.mark.parametrize("n", [1, 2], scope="module")  # only hands out values
        def test_b(n):
            pass
        """,
    "test_module_fixture": """
        import pytest

        @pytest.fixture(scope="module")
        def conn():
            return {}

        def test_a():
            pass

        def test_b(conn):
            pass
        """,
    "test_through": """
        import pytest

        @pytest.fixture
        def client(server):
            return server

        def test_a(client):
            pass
        """,
    "test_own_session": """
        import pytest

        @pytest.fixture(scope="session")
        def mine():
            return 1

        def test_a(mine, shared):
            pass
        """,
    "test_replaced": """
        import pytest

        @pytest.fixture
        def db():
            return "mine"

        def test_a(db):
            pass
        """,
    "test_extended": """
        import pytest

        @pytest.fixture
        def db(db):
            return db + "!"

        def test_a(db):
            pass
        """,
    "test_module_marked": """
        import pytest
        pytestmark = pytest.mark.parallel_modules_whole

        def test_a():
            pass
        """,
    "test_test_marked": """
        import pytest

        def test_a():
            pass

        @pytest.mark.parallel_modules_whole
        def test_b():
            pass
        """,
    "test_classes": """
        import unittest
        import pytest

        class TestXunit:
            @classmethod
            def setup_class(cls):
                pass

            def test_a(self):
                pass

        class TestPlain:
            def test_b(self):
                pass

        class Base(unittest.TestCase):
            @classmethod
            def setUpClass(cls):
                pass

        class TestInherits(Base):
            def test_c(self):
                pass

        class TestUnittestPlain(unittest.TestCase):
            def test_d(self):
                pass

        class TestClassFixture:
            @pytest.fixture(scope="class")
            def conn(self):
                return 1

            def test_e(self, conn):
                pass

        @pytest.mark.parallel_modules_whole
        class TestMarked:
            def test_f(self):
                pass
        """,
    # pyparsing's test_unit.py in small: one class enables something for the next,
    # which runs the first one's tests again.
    "test_reruns": """
        import unittest

        class TestWithout(unittest.TestCase):
            def test_parse(self):
                pass

        class TestEnable(unittest.TestCase):
            def runTest(self):
                pass

        class TestWith(TestWithout):
            def test_status(self):
                pass
        """,
    # A subclass that overrides every test it inherits runs only its own.
    "test_overrides": """
        class TestBase:
            def test_a(self):
                pass

        class TestChild(TestBase):
            def test_a(self):
                pass
        """,
    **{
        f"test_{name}": f"def {name}(module=None):\n    pass\n\ndef test_a():\n    pass\n"
        for name in ("setup_module", "teardown_module", "setUpModule", "tearDownModule")
    },
}


@pytest.fixture
def suite(pytester: pytest.Pytester) -> Mapping[str, ModuleFacts]:
    """Every module of the suite above, collected once, as facts by module path."""
    pytester.makeini(INI)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(**{name: textwrap.dedent(source) for name, source in MODULES.items()})
    items, _ = pytester.inline_genitems("-p", "no:randomly")
    by_module: dict[str, list[pytest.Item]] = {}
    for item in items:
        by_module.setdefault(module_of(item.nodeid), []).append(item)
    return {
        module: read_module_facts(module, module_items, pytester.path)
        for module, module_items in by_module.items()
    }


def line_of(pytester: pytest.Pytester, module: str, text: str) -> int:
    lines = (pytester.path / module).read_text().splitlines()
    return next(number for number, line in enumerate(lines, start=1) if text in line)


def test_what_each_module_shows(
    pytester: pytest.Pytester, suite: Mapping[str, ModuleFacts]
) -> None:
    blockers = {module: module_blocker(facts) for module, facts in suite.items()}
    assert blockers == {
        # Function fixtures, session fixtures of conftest files and plugins, and
        # parametrize values at any scope: nothing to keep together.
        "test_plain.py": None,
        "test_replaced.py": None,  # the module's own db replaces the conftest's
        "test_classes.py": None,
        "test_reruns.py": "class `TestWith` inherits the tests of class `TestWithout`, "
        "so the order of the module's tests may matter",
        "test_overrides.py": None,
        "test_module_fixture.py": "module-scoped fixture `conn` in test_module_fixture.py:"
        + str(line_of(pytester, "test_module_fixture.py", "@pytest.fixture")),
        # Through another fixture; the conftest's location.
        "test_through.py": "package-scoped fixture `server` in conftest.py:3",
        # An override that requests the fixture it overrides uses it too.
        "test_extended.py": "module-scoped fixture `db` in conftest.py:11",
        "test_own_session.py": "session-scoped fixture `mine` defined by the module in "
        "test_own_session.py:" + str(line_of(pytester, "test_own_session.py", "@pytest.fixture")),
        "test_module_marked.py": "the module is marked parallel_modules_whole",
        "test_test_marked.py": "test_test_marked.py::test_b is marked parallel_modules_whole",
        "test_setup_module.py": "setup_module in test_setup_module.py:1",
        "test_teardown_module.py": "teardown_module in test_teardown_module.py:1",
        "test_setUpModule.py": "setUpModule in test_setUpModule.py:1",
        "test_tearDownModule.py": "tearDownModule in test_tearDownModule.py:1",
    }
    plain = suite["test_plain.py"]
    assert [item.nodeid for item in plain.items] == [
        "test_plain.py::test_a",
        "test_plain.py::test_b[1]",
        "test_plain.py::test_b[2]",
    ]
    assert {fixture.name for fixture in plain.items[0].fixtures} >= {"tmp_path_factory", "shared"}
    assert not any(fixture.in_module for item in plain.items for fixture in item.fixtures)


def test_class_level_setup_of_each_kind_keeps_its_class_together(
    pytester: pytest.Pytester, suite: Mapping[str, ModuleFacts]
) -> None:
    def at(text: str) -> str:
        # A decorated function's location is its first decorator's line.
        return f"test_classes.py:{line_of(pytester, 'test_classes.py', text)}"

    assert whole_classes(suite["test_classes.py"]) == {
        "test_classes.py::TestXunit": f"class `TestXunit` has setup_class ({at('@classmethod')})",
        # Inherited from a base below unittest.TestCase; a unittest class that overrides
        # nothing (TestUnittestPlain) is not kept together.
        "test_classes.py::TestInherits": "class `TestInherits` has setUpClass "
        f"(test_classes.py:{line_of(pytester, 'test_classes.py', 'def setUpClass') - 1})",
        "test_classes.py::TestClassFixture": "class `TestClassFixture` uses class-scoped "
        f"fixture `conn` in {at('scope=' + chr(34) + 'class')}",
        "test_classes.py::TestMarked": "class `TestMarked` is marked parallel_modules_whole",
    }


def history_of(durations: Mapping[str, float]) -> History:
    return History(
        run_count=1,
        tests={
            nodeid: RecordedTest(seconds, "passed", 0, 1, 1)
            for nodeid, seconds in durations.items()
        },
    )


def test_plan_splits_cuts_only_known_dominant_safe_modules(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(
        test_big="import pytest\n@pytest.mark.parametrize('n', range(8))\ndef test_n(n): pass\n",
        test_fixture=(
            "import pytest\n@pytest.fixture(scope='module')\ndef db(): return 1\n"
            + "".join(f"def test_{i}(db): pass\n" for i in range(8))
        ),
        test_small="def test_a(): pass\n",
    )
    items, _ = pytester.inline_genitems("-p", "no:randomly")
    groups = group_by_module(item.nodeid for item in items)
    durations = {item.nodeid: 1.0 for item in items}
    durations["test_small.py::test_a"] = 0.5
    history = history_of(durations)
    estimates = estimate_modules(groups, history, {})
    plan = build_plan(groups, estimates)

    def split(
        mode: SplitMode, history: History = history, keep_whole: tuple[str, ...] = ()
    ) -> SplitPlan:
        return plan_splits(
            items,
            plan,
            estimates,
            history,
            mode=mode,
            workers=4,
            keep_whole=keep_whole,
            rootpath=pytester.path,
        )

    # 16.5 s over 4 workers: a fair share of 4.1 s; each 8 s module is dominant (2 parts).
    auto = split("auto")
    assert auto.records(units_of(auto.plan)) == [
        {"module": "test_big.py", "estimate_s": 8.0, "share": 0.4848, "parts": 2, "reason": None},
        {
            "module": "test_fixture.py",
            "estimate_s": 8.0,
            "share": 0.4848,
            "parts": 1,
            "reason": "module-scoped fixture `db` in test_fixture.py:2",
        },
    ]
    assert [len(group.nodeids) for group in auto.plan] == [4, 4, 8, 1]
    assert [group.module for group in auto.plan] == [
        "test_big.py",
        "test_big.py",
        "test_fixture.py",
        "test_small.py",
    ]
    always = split("always", keep_whole=("test_big*",))
    assert [(r["parts"], r["reason"]) for r in always.records(units_of(always.plan))] == [
        (1, "ini split_modules_keep_whole matches `test_big*`"),
        (2, "module-scoped fixture `db` in test_fixture.py:2"),
    ]
    # A plan hook that joins the parts again: the record says so.
    [joined, _] = auto.records(units_of(plan))
    assert (joined["parts"], joined["reason"]) == (
        1,
        "a pytest_parallel_modules_plan hook kept it whole",
    )
    off = split("off")
    assert off.plan == plan and {r["reason"] for r in off.records(units_of(off.plan))} == {
        "--split-modules=off"
    }
    # Unknown to the history: never split, not even mentioned.
    unknown = split("always", history=History())
    assert unknown.plan == plan and unknown.records(units_of(unknown.plan)) == []
