from __future__ import annotations

from pytest_parallel_modules.grouping import group_by_module
from pytest_parallel_modules.grouping import module_of
from pytest_parallel_modules.grouping import ModuleGroup


def test_module_of_strips_everything_after_the_file() -> None:
    assert module_of("tests/test_x.py") == "tests/test_x.py"
    assert module_of("tests/test_x.py::test_a") == "tests/test_x.py"
    assert module_of("tests/test_x.py::TestC::test_m[a::b]") == "tests/test_x.py"
    assert module_of("README.txt::README.txt") == "README.txt"


def test_groups_keep_first_seen_module_order_and_nodeid_order() -> None:
    nodeids = ["b.py::t1", "a.py::t1", "b.py::t2", "c.py::t", "a.py::t2"]
    assert group_by_module(nodeids) == (
        ModuleGroup("b.py", ("b.py::t1", "b.py::t2")),
        ModuleGroup("a.py", ("a.py::t1", "a.py::t2")),
        ModuleGroup("c.py", ("c.py::t",)),
    )


def test_duplicates_are_kept_and_empty_input_gives_no_groups() -> None:
    assert group_by_module(["a.py::t", "a.py::t"]) == (ModuleGroup("a.py", ("a.py::t", "a.py::t")),)
    assert group_by_module([]) == ()
    assert len(ModuleGroup("a.py", ("a.py::t", "a.py::u"))) == 2


def test_parametrized_ids_with_separators_stay_in_their_module() -> None:
    nodeids = ["t.py::test[a/b.py::c]", "t.py::test[x]"]
    assert group_by_module(nodeids) == (ModuleGroup("t.py", tuple(nodeids)),)
