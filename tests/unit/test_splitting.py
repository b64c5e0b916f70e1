"""The pure splitting rules and part sizing, with hand-made facts: no process, no pytest session."""

from __future__ import annotations

import ast
from collections.abc import Sequence
from itertools import pairwise
import math
from pathlib import Path
from random import Random

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
import pytest

from pytest_parallel_modules import splitting
from pytest_parallel_modules.grouping import ModuleGroup
from pytest_parallel_modules.grouping import units_of
from pytest_parallel_modules.splitting import apply_splits
from pytest_parallel_modules.splitting import block_keys
from pytest_parallel_modules.splitting import ClassFact
from pytest_parallel_modules.splitting import cut_into_parts
from pytest_parallel_modules.splitting import decide_split
from pytest_parallel_modules.splitting import dominant_modules
from pytest_parallel_modules.splitting import FixtureFact
from pytest_parallel_modules.splitting import ItemFact
from pytest_parallel_modules.splitting import kept_whole_by_pattern
from pytest_parallel_modules.splitting import module_blocker
from pytest_parallel_modules.splitting import ModuleFacts
from pytest_parallel_modules.splitting import part_count
from pytest_parallel_modules.splitting import SplitContext
from pytest_parallel_modules.splitting import weights_of
from pytest_parallel_modules.splitting import whole_classes


PROPERTY = settings(max_examples=200, derandomize=True, deadline=None)
MODULE = "tests/test_x.py"


def fixture(
    name: str, scope: str, location: str = "tests/conftest.py:3", *, in_module: bool = False
) -> FixtureFact:
    return FixtureFact(name=name, scope=scope, location=location, in_module=in_module)


def facts(
    *items: ItemFact,
    classes: Sequence[ClassFact] = (),
    module_setup: tuple[str, ...] = (),
    marked_whole: bool = False,
) -> ModuleFacts:
    return ModuleFacts(
        module=MODULE,
        items=items,
        classes={fact.nodeid: fact for fact in classes},
        module_setup=module_setup,
        marked_whole=marked_whole,
    )


def plain_items(count: int, prefix: str = "") -> tuple[ItemFact, ...]:
    return tuple(ItemFact(f"{MODULE}::{prefix}test_{i}") for i in range(count))


# --------------------------------------------------------------------------- safety rules


def test_a_module_of_function_scoped_tests_may_be_cut() -> None:
    assert module_blocker(facts(*plain_items(3))) is None


@pytest.mark.parametrize("scope", ["module", "package"])
@pytest.mark.parametrize("in_module", [True, False], ids=["in-module", "conftest"])
def test_a_module_or_package_fixture_from_anywhere_keeps_the_module_whole(
    scope: str, in_module: bool
) -> None:
    location = "tests/test_x.py:12" if in_module else "tests/conftest.py:4"
    module = facts(
        ItemFact(f"{MODULE}::test_a"),
        ItemFact(
            f"{MODULE}::test_b", fixtures=(fixture("db", scope, location, in_module=in_module),)
        ),
    )
    assert module_blocker(module) == f"{scope}-scoped fixture `db` in {location}"


def test_a_session_fixture_from_a_conftest_or_plugin_is_safe() -> None:
    module = facts(
        ItemFact(f"{MODULE}::test_a", fixtures=(fixture("server", "session"),)),
        ItemFact(f"{MODULE}::test_b", fixtures=(fixture("tmp_path_factory", "session", ""),)),
    )
    assert module_blocker(module) is None


def test_a_session_fixture_the_module_defines_keeps_it_whole() -> None:
    module = facts(
        ItemFact(
            f"{MODULE}::test_a",
            fixtures=(fixture("cache", "session", "tests/test_x.py:5", in_module=True),),
        )
    )
    assert module_blocker(module) == (
        "session-scoped fixture `cache` defined by the module in tests/test_x.py:5"
    )


@pytest.mark.parametrize(
    "name", ["setup_module", "teardown_module", "setUpModule", "tearDownModule"]
)
def test_module_level_setup_keeps_the_module_whole(name: str) -> None:
    module = facts(*plain_items(2), module_setup=(f"{name} in tests/test_x.py:3",))
    assert module_blocker(module) == f"{name} in tests/test_x.py:3"


def test_a_class_that_reruns_another_class_s_tests_keeps_the_module_whole() -> None:
    """Under auto only: the state that tells the two runs apart may come from earlier tests."""
    cls = f"{MODULE}::TestWith"
    items = [ItemFact(f"{cls}::test_{index}", classes=(cls,)) for index in range(4)]
    module = facts(*items, classes=[ClassFact(cls, reruns="TestWithout")])
    assert module_blocker(module) == (
        "class `TestWith` inherits the tests of class `TestWithout`, "
        "so the order of the module's tests may matter"
    )


def test_an_item_without_fixture_information_keeps_the_module_whole() -> None:
    module = facts(ItemFact(f"{MODULE}::a", uninspectable="YamlItem"), *plain_items(2))
    assert module_blocker(module) == (f"{MODULE}::a is a YamlItem, whose setup cannot be inspected")


def test_the_marker_on_the_module_or_a_test_keeps_it_whole_before_any_other_rule() -> None:
    on_module = facts(*plain_items(2), module_setup=("setup_module in x:1",), marked_whole=True)
    assert module_blocker(on_module) == "the module is marked parallel_modules_whole"
    on_test = facts(ItemFact(f"{MODULE}::test_a"), ItemFact(f"{MODULE}::test_b", marked_whole=True))
    assert module_blocker(on_test) == f"{MODULE}::test_b is marked parallel_modules_whole"


def test_class_level_setup_keeps_only_the_class_together() -> None:
    cls = f"{MODULE}::TestA"
    other = f"{MODULE}::TestB"
    module = facts(
        ItemFact(f"{cls}::test_1", classes=(cls,)),
        ItemFact(f"{other}::test_2", classes=(other,)),
        classes=[ClassFact(cls, setup="setup_class (tests/test_x.py:7)"), ClassFact(other)],
    )
    assert module_blocker(module) is None
    assert whole_classes(module) == {cls: "class `TestA` has setup_class (tests/test_x.py:7)"}


def test_a_class_scoped_fixture_keeps_its_innermost_class_together() -> None:
    outer, inner = f"{MODULE}::TestOuter", f"{MODULE}::TestOuter::TestInner"
    module = facts(
        ItemFact(
            f"{inner}::test_1",
            classes=(outer, inner),
            fixtures=(fixture("conn", "class", "tests/test_x.py:9", in_module=True),),
        ),
        ItemFact(f"{outer}::test_2", classes=(outer,)),
        # Outside a class, pytest gives a class-scoped fixture the test's lifetime.
        ItemFact(f"{MODULE}::test_3", fixtures=(fixture("conn", "class"),)),
        classes=[ClassFact(outer), ClassFact(inner)],
    )
    assert module_blocker(module) is None
    assert whole_classes(module) == {
        inner: "class `TestInner` uses class-scoped fixture `conn` in tests/test_x.py:9"
    }


def test_a_nested_class_stays_with_its_outermost_class_that_must_stay_whole() -> None:
    outer, inner = f"{MODULE}::TestOuter", f"{MODULE}::TestOuter::TestInner"
    module = facts(
        ItemFact(f"{inner}::test_1", classes=(outer, inner)),
        ItemFact(f"{outer}::test_2", classes=(outer,)),
        ItemFact(f"{MODULE}::test_3"),
        classes=[
            ClassFact(outer, setup="setUpClass (x:1)"),
            ClassFact(inner, setup="setup_class (x:2)"),
        ],
    )
    assert block_keys(module, whole_classes(module)) == (outer, outer, None)


def test_under_always_only_the_marker_keeps_a_class_together() -> None:
    marked, setup = f"{MODULE}::TestMarked", f"{MODULE}::TestSetup"
    module = facts(
        ItemFact(f"{marked}::test_1", classes=(marked,)),
        ItemFact(f"{setup}::test_2", classes=(setup,), fixtures=(fixture("c", "class"),)),
        classes=[ClassFact(marked, marked_whole=True), ClassFact(setup, setup="setup_class (x:1)")],
    )
    assert whole_classes(module, structure=False) == {
        marked: "class `TestMarked` is marked parallel_modules_whole"
    }


@pytest.mark.parametrize(
    ("pattern", "matches"),
    [
        ("tests/test_x.py", True),
        ("tests/*", True),
        ("*/test_x.py", True),
        ("*_x.py", True),
        ("test_x.py", False),
        ("tests/test_y.py", False),
    ],
)
def test_keep_whole_patterns_match_the_path_from_the_rootdir(pattern: str, matches: bool) -> None:
    assert (kept_whole_by_pattern(MODULE, [pattern]) is not None) is matches


# --------------------------------------------------------------------------- sizing


def spans(ranges: Sequence[tuple[int, int]], weights: Sequence[float]) -> list[float]:
    return [math.fsum(weights[start:end]) for start, end in ranges]


def check_partition(ranges: Sequence[tuple[int, int]], size: int) -> None:
    assert ranges[0][0] == 0 and ranges[-1][1] == size
    for (_, end), (start, _) in pairwise(ranges):
        assert end == start
    assert all(start < end for start, end in ranges)


@PROPERTY
@given(seed=st.integers(0, 2**32), parts=st.integers(2, 8), per_part=st.integers(40, 120))
def test_parts_finish_within_ten_percent_of_each_other_when_durations_are_known(
    seed: int, parts: int, per_part: int
) -> None:
    # Durations within a factor of 2 of each other and at least 40 tests per part: no
    # test is longer than 5% of a part, so parts may differ by about one test. (Drawn
    # from a seeded generator: hypothesis is slow to build lists of thousands of floats.)
    rng = Random(seed)
    weights = [rng.uniform(0.5, 1.0) for _ in range(parts * per_part)]
    ranges = cut_into_parts(weights, [None] * len(weights), parts)
    check_partition(ranges, len(weights))
    sums = spans(ranges, weights)
    assert len(ranges) == parts
    assert max(sums) - min(sums) <= 0.10 * max(sums)


@PROPERTY
@given(
    weights=st.lists(st.floats(0.0, 5.0), min_size=1, max_size=200),
    parts=st.integers(1, 8),
)
def test_any_durations_give_contiguous_parts_no_longer_than_a_fair_part_plus_one_test(
    weights: list[float], parts: int
) -> None:
    ranges = cut_into_parts(weights, [None] * len(weights), parts)
    check_partition(ranges, len(weights))
    assert len(ranges) <= parts
    count = min(parts, len(weights))
    assert max(spans(ranges, weights)) <= sum(weights) / count + max(weights) + 1e-9


@PROPERTY
@given(
    blocks=st.lists(
        st.tuples(st.integers(1, 6), st.booleans(), st.floats(0.01, 2.0)), min_size=1, max_size=60
    ),
    parts=st.integers(2, 6),
)
def test_parts_keep_classes_whole_and_are_never_longer_than_a_fair_part_plus_one_block(
    blocks: list[tuple[int, bool, float]], parts: int
) -> None:
    weights: list[float] = []
    keys: list[str | None] = []
    block_weights: list[float] = []
    for index, (count, whole, weight) in enumerate(blocks):
        for _ in range(count if whole else 1):
            weights.append(weight)
            keys.append(f"C{index}" if whole else None)
        block_weights.append(weight * (count if whole else 1))
    ranges = cut_into_parts(weights, keys, parts)
    check_partition(ranges, len(weights))
    assert len(ranges) <= min(parts, len(blocks))
    part_of = [next(n for n, (a, b) in enumerate(ranges) if a <= i < b) for i in range(len(keys))]
    for key in set(keys) - {None}:
        assert len({part_of[i] for i, k in enumerate(keys) if k == key}) == 1
    fair = sum(weights) / min(parts, len(blocks))
    assert max(spans(ranges, weights)) <= fair + max(block_weights) + 1e-9


def test_one_class_holding_most_of_the_time_leaves_fewer_useful_parts() -> None:
    weights = [8.0] * 10 + [1.0] * 20
    keys: list[str | None] = ["TestBig"] * 10 + [None] * 20
    ranges = cut_into_parts(weights, keys, 4)
    assert ranges == ((0, 10), (10, 30))


def test_a_class_spread_apart_by_a_plugin_takes_what_lies_between_along() -> None:
    keys: list[str | None] = ["A", None, "A", None, None, None]
    ranges = cut_into_parts([1.0] * 6, keys, 3)
    assert ranges[0][1] >= 3


def test_sizes_follow_recorded_durations_not_test_counts() -> None:
    weights = [3.0, 3.0] + [0.5] * 12
    ranges = cut_into_parts(weights, [None] * len(weights), 2)
    assert spans(ranges, weights) == [6.0, 6.0]


def test_an_unrecorded_test_weighs_the_median_of_the_module() -> None:
    nodeids = ["a", "b", "c", "d"]
    assert weights_of(nodeids, {"a": 1.0, "b": 3.0, "c": 2.0}) == (1.0, 3.0, 2.0, 2.0)
    assert weights_of(nodeids, {}) == (1.0, 1.0, 1.0, 1.0)


@pytest.mark.parametrize(
    ("estimate", "fair", "workers", "parts"),
    [(7.0, 2.5, 4, 3), (10.0, 2.5, 4, 4), (30.0, 2.5, 4, 4), (2.6, 2.5, 4, 2), (5.0, 2.5, 4, 2)],
)
def test_part_count_is_estimate_over_fair_share_capped_by_workers(
    estimate: float, fair: float, workers: int, parts: int
) -> None:
    assert part_count(estimate, fair, workers) == parts


# --------------------------------------------------------------------------- deciding


def test_dominant_modules_are_known_above_the_fair_share_and_worth_a_split() -> None:
    estimates = {"big.py": 7.0, "mid.py": 2.6, "unknown.py": 9.0, "a.py": 0.5, "b.py": 0.3}
    known = {"big.py", "mid.py", "a.py", "b.py"}
    # total 19.4 over 4 workers: fair share 4.85
    assert dominant_modules(estimates, known, 4) == ("big.py",)
    assert dominant_modules(estimates, known, 8) == ("big.py", "mid.py")
    assert dominant_modules(estimates, known, 1) == ()
    # Under a second, a split is not worth it.
    assert dominant_modules({"x.py": 0.9, "y.py": 0.1}, {"x.py", "y.py"}, 2) == ()


def context(mode: splitting.SplitMode = "auto", **kwargs: object) -> SplitContext:
    values: dict[str, object] = {"mode": mode, "workers": 4, "total_s": 10.0}
    values.update(kwargs)
    return SplitContext(**values)  # type: ignore[arg-type]


def group_of(count: int) -> ModuleGroup:
    return ModuleGroup(MODULE, tuple(item.nodeid for item in plain_items(count)))


def test_auto_splits_a_safe_dominant_module_into_balanced_parts() -> None:
    group = group_of(12)
    durations = dict.fromkeys(group.nodeids, 0.6)
    decision = decide_split(
        group, facts(*plain_items(12)), context=context(), estimate_s=7.2, durations=durations
    )
    assert decision.split and decision.reason is None
    assert [len(part) for part in decision.parts] == [4, 4, 4]  # ceil(7.2 / 2.5) = 3
    assert decision.share == pytest.approx(0.72)


def test_auto_keeps_an_unsafe_module_whole_and_says_why() -> None:
    group = group_of(6)
    module = facts(
        *plain_items(5),
        ItemFact(f"{MODULE}::test_5", fixtures=(fixture("db", "module", "tests/test_x.py:12"),)),
    )
    decision = decide_split(group, module, context=context(), estimate_s=8.0, durations={})
    assert not decision.split
    assert decision.parts == (group.nodeids,)
    assert decision.reason == "module-scoped fixture `db` in tests/test_x.py:12"


def test_always_splits_an_unsafe_module_and_names_the_rule_it_overrode() -> None:
    group = group_of(6)
    module = facts(*plain_items(6), module_setup=("setup_module in tests/test_x.py:3",))
    decision = decide_split(group, module, context=context("always"), estimate_s=8.0, durations={})
    assert decision.split
    assert decision.reason == "setup_module in tests/test_x.py:3"


@pytest.mark.parametrize("mode", ["auto", "always"])
def test_the_marker_and_the_ini_list_keep_a_module_whole_in_every_mode(
    mode: splitting.SplitMode,
) -> None:
    group = group_of(6)
    marked = decide_split(
        group,
        facts(*plain_items(6), marked_whole=True),
        context=context(mode),
        estimate_s=8.0,
        durations={},
    )
    assert not marked.split and marked.reason == "the module is marked parallel_modules_whole"
    listed = decide_split(
        group,
        None,  # the ini list decides before the items are read
        context=context(mode, keep_whole=("tests/test_*.py",)),
        estimate_s=8.0,
        durations={},
    )
    assert not listed.split
    assert listed.reason == "ini split_modules_keep_whole matches `tests/test_*.py`"


def test_off_never_splits_but_still_reports_the_dominant_module() -> None:
    decision = decide_split(group_of(6), None, context=context("off"), estimate_s=8.0, durations={})
    assert not decision.split and decision.reason == "--split-modules=off"


def test_a_module_that_is_one_class_with_class_setup_cannot_be_cut() -> None:
    cls = f"{MODULE}::TestCase"
    items = tuple(ItemFact(f"{cls}::test_{i}", classes=(cls,)) for i in range(6))
    group = ModuleGroup(MODULE, tuple(item.nodeid for item in items))
    decision = decide_split(
        group,
        facts(*items, classes=[ClassFact(cls, setup="setUpClass (tests/test_x.py:7)")]),
        context=context(),
        estimate_s=8.0,
        durations={},
    )
    assert not decision.split
    assert decision.reason == (
        "class `TestCase` has setUpClass (tests/test_x.py:7), and its tests stay together "
        "(100% of the module)"
    )


def test_a_single_test_or_a_dominant_test_is_not_worth_a_split() -> None:
    one = decide_split(
        group_of(1), facts(*plain_items(1)), context=context(), estimate_s=8.0, durations={}
    )
    assert not one.split and one.reason == "it holds a single test"
    group = group_of(3)
    heavy = decide_split(
        group,
        facts(*plain_items(3)),
        context=context(),
        estimate_s=9.2,
        durations={group.nodeids[0]: 9.0, group.nodeids[1]: 0.1, group.nodeids[2]: 0.1},
    )
    assert not heavy.split
    assert heavy.reason == f"one test holds most of its time: {group.nodeids[0]}"


def test_splits_replace_a_module_by_its_parts_in_its_place() -> None:
    big = group_of(4)
    plan = (ModuleGroup("a.py", ("a.py::t",)), big, ModuleGroup("b.py", ("b.py::t",)))
    decision = decide_split(
        big, facts(*plain_items(4)), context=context(), estimate_s=8.0, durations={}
    )
    new_plan = apply_splits(plan, [decision])
    # ceil(8.0 / 2.5) = 4 parts of one test each, where the module was.
    assert [group.module for group in new_plan] == ["a.py", *[MODULE] * 4, "b.py"]
    assert [unit.id for unit in units_of(new_plan)][1:5] == [
        f"{MODULE}[{k}/4]" for k in range(1, 5)
    ]
    assert sum((group.nodeids for group in new_plan[1:-1]), ()) == big.nodeids


# --------------------------------------------------------------------------- purity


def test_splitting_imports_nothing_that_does_io_nor_pytest() -> None:
    tree = ast.parse(Path(splitting.__file__).read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            imported.add(node.module)
    allowed_ours = {"pytest_parallel_modules.grouping"}
    ours = {name for name in imported if name.startswith("pytest_parallel_modules")}
    assert ours <= allowed_ours
    roots = {name.split(".")[0] for name in imported}
    assert not roots & {"pytest", "os", "pathlib", "subprocess", "execnet", "filelock", "time"}
