"""PURE: module estimates, slowest-first plan, shard partition, lower bound. Runs in the controller.

Everything here is a function of plain data -- module groups, recorded durations,
file sizes -- and returns plain data or decisions. Nothing here reads files,
starts processes or talks to workers: :mod:`pytest_parallel_modules.controller`
carries the decisions out. That keeps every scheduling rule testable with
hand-made numbers (see ``tests/unit/test_scheduling.py``).

The policy is longest-processing-time-first (LPT) list scheduling: modules are
ordered by estimated cost, slowest first, and each idle worker takes the next
one. Graham's bound guarantees a makespan of at most ``total/N + (1 - 1/N) * max``
for any order; slowest first also keeps the one long module from starting last.
"""

from __future__ import annotations

from collections.abc import Collection
from collections.abc import Iterable
from collections.abc import Mapping
from dataclasses import dataclass
import heapq
import math
from statistics import median
from typing import Final
from typing import final
from typing import Protocol

from pytest_parallel_modules.grouping import module_of
from pytest_parallel_modules.grouping import ModuleGroup


#: Seconds assumed for a test when the history knows no test at all (a first run).
DEFAULT_TEST_ESTIMATE_S: Final = 0.01


class RecordedDuration(Protocol):
    """What the estimates need from one test's history record."""

    @property
    def duration_s(self) -> float:
        """Smoothed seconds of setup + call + teardown."""
        ...


class RecordedFixedCost(Protocol):
    """What the estimates need from one module's history record."""

    @property
    def fixed_s(self) -> float:
        """Seconds the module costs beyond its tests: collection, module fixtures."""
        ...


class DurationHistory(Protocol):
    """What the estimates need from a history.

    :class:`pytest_parallel_modules.history.History` satisfies it; a protocol keeps
    this module free of the history module's file locking and I/O.
    """

    @property
    def tests(self) -> Mapping[str, RecordedDuration]:
        """Node id -> record."""
        ...

    @property
    def modules(self) -> Mapping[str, RecordedFixedCost]:
        """Module path -> record."""
        ...


@final
@dataclass(frozen=True, slots=True)
class ModuleEstimates:
    """Estimated cost of each module of a run. Built by :func:`estimate_modules`."""

    #: Module path -> estimated seconds on a worker (collection + tests + module fixtures).
    seconds: Mapping[str, float]
    #: Module path -> file size in bytes: the tie-breaker between equal estimates.
    file_sizes: Mapping[str, int]
    #: How many of the modules had any history (a module record or a known test).
    known_modules: int
    #: Seconds assumed for a test of a module the history knows nothing about.
    unknown_test_s: float

    def __len__(self) -> int:
        return len(self.seconds)


def estimate_modules(
    groups: Iterable[ModuleGroup],
    history: DurationHistory,
    file_sizes: Mapping[str, int],
) -> ModuleEstimates:
    """Estimate what each module of this run will cost on a worker. Called by the controller.

    A module costs its fixed cost (collection, module fixtures: what the history
    measured beyond its tests) plus the recorded duration of each *selected*
    test, so ``-k`` or ``--lf`` selections are estimated by what actually runs.
    A test without a record costs the median recorded test of its module, else
    the median of the whole history, else :data:`DEFAULT_TEST_ESTIMATE_S`; a
    module never seen costs its test count times that figure. File sizes do not
    change the estimates: they only break ties in :func:`plan_slowest_first` (as
    Jest does), since a bigger file often holds slower tests.

    :param groups: the modules of this run, as
        :func:`~pytest_parallel_modules.grouping.group_by_module` returns them.
    :param history: recorded durations (a :class:`~pytest_parallel_modules.history.History`).
    :param file_sizes: module path -> size in bytes; missing modules count as 0.
    :returns: the estimates, keyed by module path.
    """
    groups = tuple(groups)
    wanted = {group.module for group in groups}
    known_by_module: dict[str, list[float]] = {}
    all_known: list[float] = []
    for nodeid, record in history.tests.items():
        all_known.append(record.duration_s)
        module = module_of(nodeid)
        if module in wanted:
            known_by_module.setdefault(module, []).append(record.duration_s)
    unknown_test_s = median(all_known) if all_known else DEFAULT_TEST_ESTIMATE_S

    tests = history.tests
    seconds: dict[str, float] = {}
    known_modules = 0
    for group in groups:
        module_record = history.modules.get(group.module)
        known = known_by_module.get(group.module)
        if module_record is not None or known:
            known_modules += 1
        fallback = median(known) if known else unknown_test_s
        fixed = module_record.fixed_s if module_record is not None else 0.0
        # fsum: the same estimate whatever the order of the node ids.
        seconds[group.module] = fixed + math.fsum(
            tests[nodeid].duration_s if nodeid in tests else fallback for nodeid in group.nodeids
        )
    return ModuleEstimates(
        seconds=seconds,
        file_sizes={group.module: file_sizes.get(group.module, 0) for group in groups},
        known_modules=known_modules,
        unknown_test_s=unknown_test_s,
    )


def _slowest_first_key(estimates: ModuleEstimates, group: ModuleGroup) -> tuple[float, int, str]:
    return (
        -estimates.seconds[group.module],
        -estimates.file_sizes.get(group.module, 0),
        group.module,
    )


def plan_slowest_first(
    groups: Iterable[ModuleGroup], estimates: ModuleEstimates
) -> tuple[ModuleGroup, ...]:
    """Order modules slowest first: the LPT order for a dynamic queue. Called by the controller.

    Idle workers take modules from the front of this plan (see
    :class:`DispatchQueue`), which is LPT list scheduling. Ties are broken
    deterministically: bigger file first, then module path.

    :param groups: the modules of this run.
    :param estimates: from :func:`estimate_modules`, covering every module in ``groups``.
    :returns: the same groups, slowest first.
    :raises KeyError: if a module has no estimate.
    """
    return tuple(sorted(groups, key=lambda group: _slowest_first_key(estimates, group)))


def partition_shards(
    groups: Iterable[ModuleGroup], estimates: ModuleEstimates, shard_count: int
) -> tuple[tuple[ModuleGroup, ...], ...]:
    """Split modules into ``shard_count`` shards of about equal time. Called by the controller.

    Greedy LPT partition: modules in :func:`plan_slowest_first` order, each to the
    shard with the least estimated time so far (the lowest index on a tie). Every
    module lands in exactly one shard, the result depends only on the inputs (so
    every CI job computes the same split), and each shard lists its modules
    slowest first, ready to run. With more shards than modules, some shards are empty.

    :param groups: the modules of the whole run.
    :param estimates: from :func:`estimate_modules`, covering every module in ``groups``.
    :param shard_count: how many shards, >= 1.
    :returns: one tuple of groups per shard, in shard order.
    :raises ValueError: if ``shard_count`` < 1.
    :raises KeyError: if a module has no estimate.
    """
    if shard_count < 1:
        raise ValueError(f"shard_count must be >= 1, got {shard_count}")
    shards: list[list[ModuleGroup]] = [[] for _ in range(shard_count)]
    # (load, index): heapq pops the least loaded shard, the lowest index among equals.
    loads = [(0.0, index) for index in range(shard_count)]
    for group in plan_slowest_first(groups, estimates):
        load, index = heapq.heappop(loads)
        shards[index].append(group)
        heapq.heappush(loads, (load + estimates.seconds[group.module], index))
    return tuple(tuple(shard) for shard in shards)


def lower_bound(durations: Iterable[float], workers: int) -> float:
    """The least wall time any module-level scheduler could reach. Used for the run summary.

    ``max(max(d), sum(d) / N)``: no schedule beats its longest module, nor a
    perfect split of the total work over ``N`` workers. Wall time divided by
    this says how close a run came to the best possible.

    :param durations: seconds per module.
    :param workers: how many workers, >= 1.
    :returns: the bound in seconds; 0 for no durations.
    :raises ValueError: if ``workers`` < 1.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    values = list(durations)
    if not values:
        return 0.0
    return max(max(values), math.fsum(values) / workers)


def failed_first(plan: Iterable[ModuleGroup], failed: Collection[str]) -> tuple[ModuleGroup, ...]:
    """PURE: modules that failed last time first, each part keeping the plan's order.

    Called by the controller for ``--fail-fast-modules``, so a known failure is
    found in seconds, and for ``--ff``.
    """
    plan = tuple(plan)
    return tuple(group for group in plan if group.module in failed) + tuple(
        group for group in plan if group.module not in failed
    )


def build_plan(
    groups: Iterable[ModuleGroup],
    estimates: ModuleEstimates,
    *,
    first: Collection[str] = (),
) -> tuple[ModuleGroup, ...]:
    """PURE: the run's plan -- slowest first, the modules in ``first`` ahead of the rest.

    Called by the controller once collection is done. ``first`` holds the modules
    that failed last time, for ``--fail-fast-modules`` (a known failure is found in
    seconds) and ``--ff``; each part keeps the slowest-first order.
    """
    plan = plan_slowest_first(groups, estimates)
    return failed_first(plan, first) if first else plan


def check_plan(
    original: Iterable[ModuleGroup], changed: Iterable[object]
) -> tuple[ModuleGroup, ...]:
    """PURE: a plan returned by ``pytest_parallel_modules_plan``, if it runs every test exactly once.

    :raises ValueError: naming what is wrong, when it drops, adds or repeats a node id
        or holds something that is not a :class:`ModuleGroup`.
    """
    changed = tuple(changed)
    if not all(isinstance(group, ModuleGroup) for group in changed):
        raise ValueError("pytest_parallel_modules_plan must return a list of ModuleGroup")
    groups = tuple(group for group in changed if isinstance(group, ModuleGroup))
    before = sorted(nodeid for group in original for nodeid in group.nodeids)
    after = sorted(nodeid for group in groups for nodeid in group.nodeids)
    if before != after or any(not group.nodeids for group in groups):
        raise ValueError(
            "pytest_parallel_modules_plan must return ModuleGroups holding exactly the node ids "
            f"it was given, each once ({len(before)} given, {len(after)} returned)"
        )
    if any(module_of(nodeid) != group.module for group in groups for nodeid in group.nodeids):
        raise ValueError(
            "pytest_parallel_modules_plan must keep each node id in a group of its own module"
        )
    return groups
