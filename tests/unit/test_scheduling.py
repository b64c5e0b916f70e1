"""The pure scheduler: estimates, slowest-first plan, shards, lower bound, dispatch queue."""

from __future__ import annotations

import ast
from collections import Counter
from collections.abc import Mapping
from collections.abc import Sequence
import heapq
import math
from pathlib import Path
from random import Random
import subprocess
import sys

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
import pytest

from pytest_parallel_modules import scheduling
from pytest_parallel_modules.grouping import group_by_module
from pytest_parallel_modules.grouping import ModuleGroup
from pytest_parallel_modules.grouping import units_of
from pytest_parallel_modules.history import History
from pytest_parallel_modules.history import RecordedModule
from pytest_parallel_modules.history import RecordedTest
from pytest_parallel_modules.ledger import RunLedger
from pytest_parallel_modules.scheduling import DEFAULT_TEST_ESTIMATE_S
from pytest_parallel_modules.scheduling import estimate_modules
from pytest_parallel_modules.scheduling import lower_bound
from pytest_parallel_modules.scheduling import ModuleEstimates
from pytest_parallel_modules.scheduling import partition_shards
from pytest_parallel_modules.scheduling import plan_slowest_first


PROPERTY = settings(max_examples=150, derandomize=True, deadline=None)


def recorded(duration: float) -> RecordedTest:
    return RecordedTest(duration, "passed", 0, 1, 1)


def module_record(fixed: float) -> RecordedModule:
    return RecordedModule(0.0, 0.0, fixed, "passed", 0, 1, 1)


def group(module: str, *names: str) -> ModuleGroup:
    return ModuleGroup(module, tuple(f"{module}::{name}" for name in names))


def estimates_of(
    seconds: Mapping[str, float], sizes: Mapping[str, int] | None = None
) -> ModuleEstimates:
    return ModuleEstimates(
        seconds=dict(seconds),
        file_sizes=dict(sizes or {}),
        known_modules=len(seconds),
        unknown_test_s=DEFAULT_TEST_ESTIMATE_S,
    )


# -- estimates ---------------------------------------------------------------------------------

HISTORY = History(
    run_count=1,
    tests={
        "a.py::x": recorded(1.0),
        "a.py::y": recorded(3.0),
        "c.py::w": recorded(10.0),
        "gone.py::v": recorded(2.5),
    },
    modules={"a.py": module_record(0.5), "c.py": module_record(1.0)},
)


def test_a_known_module_costs_its_fixed_cost_plus_its_selected_tests() -> None:
    estimates = estimate_modules([group("a.py", "x", "y")], HISTORY, {})
    assert estimates.seconds == {"a.py": 0.5 + 1.0 + 3.0}
    # A partial selection (-k, --lf) costs only what runs, plus the fixed cost.
    assert estimate_modules([group("a.py", "x")], HISTORY, {}).seconds == {"a.py": 1.5}


def test_an_unknown_test_costs_the_median_known_test_of_its_module() -> None:
    estimates = estimate_modules([group("a.py", "x", "y", "new")], HISTORY, {})
    assert estimates.seconds["a.py"] == 0.5 + 1.0 + 3.0 + 2.0


def test_a_module_never_seen_costs_its_test_count_times_the_history_median() -> None:
    estimates = estimate_modules([group("b.py", "p", "q", "r")], HISTORY, {})
    # Median of 1.0, 2.5, 3.0, 10.0 is 2.75.
    assert estimates.seconds == {"b.py": 3 * 2.75}
    assert estimates.unknown_test_s == 2.75
    assert estimates.known_modules == 0


def test_without_any_history_a_test_costs_the_default() -> None:
    estimates = estimate_modules([group("b.py", "p", "q")], History(), {"b.py": 10})
    assert estimates.seconds == {"b.py": 2 * DEFAULT_TEST_ESTIMATE_S}
    assert estimates.file_sizes == {"b.py": 10}
    assert estimates.known_modules == 0


def test_known_modules_counts_modules_with_any_history_and_sizes_default_to_zero() -> None:
    groups = [group("a.py", "x"), group("b.py", "p"), group("c.py", "new")]
    estimates = estimate_modules(groups, HISTORY, {"a.py": 100})
    assert estimates.known_modules == 2
    assert estimates.file_sizes == {"a.py": 100, "b.py": 0, "c.py": 0}
    assert len(estimates) == 3
    # c.py has a record but none of the selected tests: its fixed cost + its median test.
    assert estimates.seconds["c.py"] == 1.0 + 10.0


def test_file_size_does_not_change_an_estimate() -> None:
    groups = [group("b.py", "p")]
    assert (
        estimate_modules(groups, HISTORY, {"b.py": 10**6}).seconds
        == estimate_modules(groups, HISTORY, {}).seconds
    )


# -- plan --------------------------------------------------------------------------------------


def test_plan_puts_the_slowest_module_first() -> None:
    groups = [group("fast.py", "t"), group("slow.py", "t"), group("mid.py", "t")]
    estimates = estimates_of({"fast.py": 1.0, "slow.py": 9.0, "mid.py": 4.0})
    assert [g.module for g in plan_slowest_first(groups, estimates)] == [
        "slow.py",
        "mid.py",
        "fast.py",
    ]


def test_plan_breaks_ties_by_file_size_then_path() -> None:
    groups = [group(name, "t") for name in ("d.py", "c.py", "b.py", "a.py")]
    estimates = estimates_of(
        dict.fromkeys(("a.py", "b.py", "c.py", "d.py"), 1.0), {"c.py": 500, "d.py": 500}
    )
    assert [g.module for g in plan_slowest_first(groups, estimates)] == [
        "c.py",
        "d.py",
        "a.py",
        "b.py",
    ]


def test_plan_of_a_module_without_an_estimate_is_an_error() -> None:
    with pytest.raises(KeyError):
        plan_slowest_first([group("a.py", "t")], estimates_of({}))


# Module durations for the property tests: a few distinct values so ties happen.
_durations = st.lists(
    st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.0]) | st.floats(min_value=0, max_value=100),
    min_size=0,
    max_size=12,
)
_workers = st.integers(min_value=1, max_value=6)


def _groups(count: int) -> list[ModuleGroup]:
    return [group(f"m{index:02d}.py", "t") for index in range(count)]


def run_plan(plan: Sequence[ModuleGroup], actual: Mapping[str, float], workers: int) -> float:
    """Simulate the controller: each idle worker takes the queue's next module. Return the makespan."""
    ledger = RunLedger(units_of(plan))
    # (time the worker becomes idle, worker index): events in time order.
    idle = [(0.0, worker) for worker in range(workers)]
    makespan = 0.0
    while idle:
        now, worker = heapq.heappop(idle)
        makespan = max(makespan, now)
        unit = ledger.next_unit()
        if unit is not None:
            heapq.heappush(idle, (now + actual[unit.module], worker))
    return makespan


def independent_lpt(durations: Sequence[float], workers: int) -> float:
    """Textbook LPT: longest job first, each onto the least loaded machine."""
    loads = [0.0] * workers
    for duration in sorted(durations, reverse=True):
        loads[loads.index(min(loads))] += duration
    return max(loads)


def graham_bound(durations: Sequence[float], workers: int) -> float:
    if not durations:
        return 0.0
    return sum(durations) / workers + (1 - 1 / workers) * max(durations)


@PROPERTY
@given(_durations, _durations, _workers)
def test_any_plan_meets_grahams_bound_even_with_wrong_estimates(
    estimated: list[float], actual: list[float], workers: int
) -> None:
    count = min(len(estimated), len(actual))
    groups = _groups(count)
    estimates = estimates_of({g.module: estimated[i] for i, g in enumerate(groups)})
    real = {g.module: actual[i] for i, g in enumerate(groups)}
    makespan = run_plan(plan_slowest_first(groups, estimates), real, workers)
    assert makespan <= graham_bound(list(real.values()), workers) + 1e-9
    assert makespan >= lower_bound(real.values(), workers) - 1e-9


@PROPERTY
@given(_durations, _workers)
def test_with_exact_estimates_the_plan_achieves_the_lpt_makespan(
    durations: list[float], workers: int
) -> None:
    groups = _groups(len(durations))
    exact = {g.module: durations[i] for i, g in enumerate(groups)}
    makespan = run_plan(plan_slowest_first(groups, estimates_of(exact)), exact, workers)
    assert makespan == pytest.approx(independent_lpt(durations, workers), abs=1e-9)


@PROPERTY
@given(_durations, st.randoms(use_true_random=False))
def test_plan_does_not_depend_on_the_input_order(durations: list[float], random: Random) -> None:
    groups = _groups(len(durations))
    estimates = estimates_of({g.module: durations[i] for i, g in enumerate(groups)})
    shuffled = list(groups)
    random.shuffle(shuffled)
    assert plan_slowest_first(shuffled, estimates) == plan_slowest_first(groups, estimates)


def test_estimates_from_a_real_history_plan_the_long_module_first() -> None:
    groups = group_by_module(["a.py::x", "a.py::y", "b.py::p", "c.py::w"])
    plan = plan_slowest_first(groups, estimate_modules(groups, HISTORY, {}))
    assert [g.module for g in plan] == ["c.py", "a.py", "b.py"]


# -- lower bound -------------------------------------------------------------------------------


def test_lower_bound_is_the_longest_module_or_the_even_split() -> None:
    assert lower_bound([3.0, 1.0, 1.0, 1.0], 2) == 3.0
    assert lower_bound([1.0, 1.0, 1.0, 1.0], 2) == 2.0
    assert lower_bound(iter([5.0]), 8) == 5.0
    assert lower_bound([], 4) == 0.0
    with pytest.raises(ValueError, match="workers must be >= 1"):
        lower_bound([1.0], 0)


# -- shards ------------------------------------------------------------------------------------


def test_partition_gives_the_heaviest_module_to_the_lightest_shard() -> None:
    seconds = {"a.py": 5.0, "b.py": 4.0, "c.py": 3.0, "d.py": 2.0, "e.py": 1.0}
    groups = [group(name, "t") for name in sorted(seconds)]
    shards = partition_shards(groups, estimates_of(seconds), 2)
    # a->0 (5); b->1 (4); c->1 (7); d->0 (7); e: tie at 7, lowest index -> 0.
    assert [[g.module for g in shard] for shard in shards] == [
        ["a.py", "d.py", "e.py"],
        ["b.py", "c.py"],
    ]


def test_partition_with_more_shards_than_modules_leaves_the_last_shards_empty() -> None:
    groups = [group("a.py", "t"), group("b.py", "t")]
    shards = partition_shards(groups, estimates_of({"a.py": 1.0, "b.py": 2.0}), 4)
    assert [[g.module for g in shard] for shard in shards] == [["b.py"], ["a.py"], [], []]


def test_partition_needs_at_least_one_shard() -> None:
    with pytest.raises(ValueError, match="shard_count must be >= 1"):
        partition_shards([], estimates_of({}), 0)


@PROPERTY
@given(_durations, st.integers(min_value=1, max_value=6), st.randoms(use_true_random=False))
def test_partition_puts_every_module_in_exactly_one_balanced_deterministic_shard(
    durations: list[float], shard_count: int, random: Random
) -> None:
    groups = _groups(len(durations))
    estimates = estimates_of({g.module: durations[i] for i, g in enumerate(groups)})
    shards = partition_shards(groups, estimates, shard_count)
    assert len(shards) == shard_count
    assert Counter(g for shard in shards for g in shard) == Counter(groups)
    shuffled = list(groups)
    random.shuffle(shuffled)
    assert partition_shards(shuffled, estimates, shard_count) == shards
    loads = [math.fsum(estimates.seconds[g.module] for g in shard) for shard in shards]
    assert max(loads, default=0.0) <= graham_bound(durations, shard_count) + 1e-9
    for shard in shards:  # each shard runs slowest first
        assert list(shard) == list(plan_slowest_first(shard, estimates))


# -- purity ------------------------------------------------------------------------------------

#: Modules that do I/O or start processes; the scheduler must not import them.
FORBIDDEN_IMPORTS = {
    "execnet",
    "filelock",
    "io",
    "os",
    "pathlib",
    "pytest",
    "shutil",
    "socket",
    "subprocess",
    "tempfile",
    "threading",
    "time",
    "pytest_parallel_modules.controller",
    "pytest_parallel_modules.history",
    "pytest_parallel_modules.worker",
    "pytest_parallel_modules.worker_pool",
    "pytest_parallel_modules.worktrees",
}


def test_scheduling_imports_nothing_that_does_io() -> None:
    tree = ast.parse(Path(scheduling.__file__).read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            imported.add(node.module)
            imported.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in {"open", "print", "input", "exec", "eval"}
    roots = {name.split(".")[0] for name in imported}
    assert not (imported | roots) & FORBIDDEN_IMPORTS


def test_importing_scheduling_loads_no_io_library() -> None:
    code = (
        "import sys, pytest_parallel_modules.scheduling\n"
        "print(sorted(m for m in ('filelock', 'execnet', 'pytest_parallel_modules.history') "
        "if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"
