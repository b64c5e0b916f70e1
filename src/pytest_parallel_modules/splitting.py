"""PURE: whether a dominant module may run as several parts, and where to cut it. Runs in the controller.

A module that holds more than its fair share of a run's work (``total / N``)
sets the wall time on its own: no module-level schedule beats it. Splitting it
into contiguous parts that several workers run at once removes that floor, but
only when the parts cannot see that they were separated. This module decides
from plain facts -- which fixtures the module's tests use, at which scope and
where they are defined, which classes and module functions set things up --
that :mod:`pytest_parallel_modules.module_facts` reads from the collected items.
Nothing here touches pytest's objects, reads files or looks at a clock, so
every rule is unit-tested with hand-made facts (``tests/unit/test_splitting.py``).

The rules (``docs/how-it-works.md``, "Splitting a dominant module"):

- A module stays whole (under ``--split-modules=auto``) when its tests use a
  module- or package-scoped fixture (from anywhere: the module, a conftest, a
  plugin), a session-scoped fixture defined by the module itself, or when the
  module has ``setup_module``/``teardown_module``/``setUpModule``/``tearDownModule``,
  or holds an item with no fixture information (a custom non-Python item).
- A class with class-level setup -- ``setup_class``/``teardown_class``, a
  ``setUpClass``/``tearDownClass`` that a unittest class overrides, a
  class-scoped fixture used by its tests -- stays in one part; other classes may
  be cut anywhere.
- ``@pytest.mark.parallel_modules_whole`` on a module (``pytestmark``) or on a
  test, and the ini list ``split_modules_keep_whole``, keep a module whole in
  every mode; on a class, the marker keeps the class in one part.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Collection
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from fnmatch import fnmatchcase
from itertools import accumulate
from itertools import pairwise
import math
from statistics import median
from typing import Final
from typing import final
from typing import get_args
from typing import Literal

from pytest_parallel_modules.grouping import ModuleGroup


#: ``--split-modules``: split a dominant module when it is safe, always, or never.
SplitMode = Literal["auto", "off", "always"]
SPLIT_MODES: Final[tuple[SplitMode, ...]] = get_args(SplitMode)
#: The marker that keeps a module (or, on a class, a class) in one unit of work.
WHOLE_MARKER: Final = "parallel_modules_whole"
#: A module estimated under this many seconds is never split: parts would save less
#: than a second, and each costs a round trip to the controller.
MIN_SPLIT_S: Final = 1.0
#: A split is not worth it when its largest part keeps this share of the module's time.
MIN_GAIN_SHARE: Final = 0.9
#: Scopes above ``function`` that keep a whole module together (any origin).
_MODULE_WIDE_SCOPES: Final = frozenset({"module", "package"})


@final
@dataclass(frozen=True, slots=True)
class FixtureFact:
    """One fixture definition a test uses, scoped above ``function``."""

    #: The fixture's name.
    name: str
    #: ``class``, ``module``, ``package`` or ``session``.
    scope: str
    #: Where it is defined, ``path:line`` relative to the rootdir ("" when unknown).
    location: str
    #: Defined by the test module itself (its own code, a class of it, or imported into it).
    in_module: bool


@final
@dataclass(frozen=True, slots=True)
class ClassFact:
    """A test class of the module, and what sets it up."""

    #: The class's node id (``tests/test_x.py::TestX``).
    nodeid: str
    #: Its class-level setup, with where it is (``"setup_class (tests/test_x.py:7)"``); None: none.
    setup: str | None = None
    #: It carries ``@pytest.mark.parallel_modules_whole`` itself.
    marked_whole: bool = False
    #: The name of another class of the module whose tests it inherits and runs
    #: again; None when it runs only tests of its own.
    reruns: str | None = None


@final
@dataclass(frozen=True, slots=True)
class ItemFact:
    """One selected test of the module, as splitting sees it."""

    nodeid: str
    #: Node ids of the classes the test is in, outermost first (empty for a module-level test).
    classes: tuple[str, ...] = ()
    #: The fixtures it uses (its whole closure) scoped above ``function``.
    fixtures: tuple[FixtureFact, ...] = ()
    #: The test itself carries ``@pytest.mark.parallel_modules_whole``.
    marked_whole: bool = False
    #: The item's type name when pytest exposes no fixture information for it (a
    #: custom non-Python item); None for an item that could be inspected.
    uninspectable: str | None = None


@final
@dataclass(frozen=True, slots=True)
class ModuleFacts:
    """What the collected items of one module show about its setup. Built by ``module_facts``."""

    #: The module's path relative to the rootdir.
    module: str
    #: Its selected tests, in collection order.
    items: tuple[ItemFact, ...]
    #: Its classes, by node id.
    classes: Mapping[str, ClassFact] = field(default_factory=dict)
    #: Module-level setup and teardown functions, with where they are
    #: (``"setup_module in tests/test_x.py:3"``).
    module_setup: tuple[str, ...] = ()
    #: The module carries ``@pytest.mark.parallel_modules_whole`` (``pytestmark``).
    marked_whole: bool = False


@final
@dataclass(frozen=True, slots=True)
class SplitDecision:
    """What becomes of one module that holds more than its fair share of the work."""

    module: str
    #: Estimated seconds of the whole module.
    estimate_s: float
    #: Its share of the run's estimated work, in ``(0, 1]``.
    share: float
    #: Node ids of each part, in order; one part: the module runs whole.
    parts: tuple[tuple[str, ...], ...]
    #: Not split: why. Split: the safety rule ``--split-modules=always`` overrode, if any.
    reason: str | None

    @property
    def split(self) -> bool:
        return len(self.parts) > 1


# --------------------------------------------------------------------------- safety


def kept_whole_by_pattern(module: str, patterns: Iterable[str]) -> str | None:
    """PURE: the ``split_modules_keep_whole`` pattern that matches ``module``, if one does.

    Patterns are shell globs matched against the module's path relative to the
    rootdir, ``/``-separated; ``*`` also matches ``/`` (``tests/*/test_db.py``).
    """
    for pattern in patterns:
        if fnmatchcase(module, pattern.strip()):
            return pattern.strip()
    return None


def user_blocker(facts: ModuleFacts) -> str | None:
    """PURE: why the user keeps the module whole with the marker (any mode), None if they do not."""
    if facts.marked_whole:
        return f"the module is marked {WHOLE_MARKER}"
    marked = next((item.nodeid for item in facts.items if item.marked_whole), None)
    if marked is not None:
        return f"{marked} is marked {WHOLE_MARKER}"
    return None


def module_blocker(facts: ModuleFacts) -> str | None:
    """PURE: the first thing that keeps the module whole under ``auto``; None when it may be cut.

    In this order: the user's marker (on the module or a test); module-level
    setup functions; a module- or package-scoped fixture, wherever it is
    defined; a session-scoped fixture the module defines itself; a class that
    inherits and reruns the tests of another class of the module; an item pytest
    exposes no fixture information for. Session-scoped fixtures from conftest
    files and plugins are not on the list: each worker sets them up at most once
    whatever it runs, so a module's parts see what its whole would.
    """
    marked = user_blocker(facts)
    if marked is not None:
        return marked
    if facts.module_setup:
        return facts.module_setup[0]
    for item in facts.items:
        for fixture in item.fixtures:
            if fixture.scope in _MODULE_WIDE_SCOPES:
                return f"{fixture.scope}-scoped fixture `{fixture.name}`{_at(fixture.location)}"
            if fixture.scope == "session" and fixture.in_module:
                return (
                    f"session-scoped fixture `{fixture.name}` defined by the module"
                    f"{_at(fixture.location)}"
                )
    for fact in facts.classes.values():
        if fact.reruns is not None:
            # The same tests again in another class: what tells the two runs apart is
            # often state an earlier test of the module set (pyparsing's test_unit.py
            # enables packrat in one class for the classes after it), which a part
            # starting later would not see.
            return (
                f"class `{_class_name(fact.nodeid)}` inherits the tests of class "
                f"`{fact.reruns}`, so the order of the module's tests may matter"
            )
    for item in facts.items:
        if item.uninspectable is not None:
            return f"{item.nodeid} is a {item.uninspectable}, whose setup cannot be inspected"
    return None


def whole_classes(facts: ModuleFacts, *, structure: bool = True) -> dict[str, str]:
    """PURE: class node id -> why its tests must stay in one part.

    :param structure: apply the structural rules (class-level setup, class-scoped
        fixtures); False under ``always``, where only the marker on a class counts.
    """
    whole: dict[str, str] = {}
    for nodeid, fact in facts.classes.items():
        if fact.marked_whole:
            whole[nodeid] = f"class `{_class_name(nodeid)}` is marked {WHOLE_MARKER}"
        elif fact.setup is not None and structure:
            whole[nodeid] = f"class `{_class_name(nodeid)}` has {fact.setup}"
    if structure:
        for item in facts.items:
            if not item.classes:
                # Outside a class, pytest gives a class-scoped fixture the test's lifetime.
                continue
            for fixture in item.fixtures:
                if fixture.scope == "class":
                    # Its instance lives as long as the innermost class (pytest's scope node).
                    innermost = item.classes[-1]
                    whole.setdefault(
                        innermost,
                        f"class `{_class_name(innermost)}` uses class-scoped fixture "
                        f"`{fixture.name}`{_at(fixture.location)}",
                    )
    return whole


def block_keys(facts: ModuleFacts, whole: Mapping[str, str]) -> tuple[str | None, ...]:
    """PURE: per test, the class it must stay with (its outermost class that must stay whole)."""
    return tuple(
        next((nodeid for nodeid in item.classes if nodeid in whole), None) for item in facts.items
    )


def _class_name(nodeid: str) -> str:
    return nodeid.rsplit("::", 1)[-1]


def _at(location: str) -> str:
    return f" in {location}" if location else ""


# --------------------------------------------------------------------------- sizing


def weights_of(nodeids: Sequence[str], durations: Mapping[str, float]) -> tuple[float, ...]:
    """PURE: each test's expected seconds; a test without a record costs the module's median.

    With no test of the module recorded, every test weighs the same.
    """
    known = [durations[nodeid] for nodeid in nodeids if nodeid in durations]
    fallback = median(known) if known else 1.0
    return tuple(max(0.0, durations.get(nodeid, fallback)) for nodeid in nodeids)


def _blocks(keys: Sequence[str | None]) -> list[tuple[int, int]]:
    """Index ranges that may not be cut: each class kept whole, every other test alone.

    A class whose tests are not contiguous (a plugin reordered them) takes
    everything between its first and last test with it.
    """
    last: dict[str, int] = {}
    for index, key in enumerate(keys):
        if key is not None:
            last[key] = index
    blocks: list[tuple[int, int]] = []
    start = 0
    while start < len(keys):
        end = start  # the block's last index so far
        cursor = start
        while cursor <= end:
            key = keys[cursor]
            if key is not None:
                end = max(end, last[key])
            cursor += 1
        blocks.append((start, end + 1))
        start = end + 1
    return blocks


def _pair_max(prefix: Sequence[float], low: int, cut: int, high: int) -> float:
    return max(prefix[cut] - prefix[low], prefix[high] - prefix[cut])


def _balance_pair(prefix: Sequence[float], low: int, high: int) -> int:
    """The cut in ``(low, high)`` that makes the two parts around it most even."""
    half = (prefix[low] + prefix[high]) / 2
    index = bisect_left(prefix, half, low + 1, high)
    candidates = {min(max(index + delta, low + 1), high - 1) for delta in (-1, 0)}
    return min(candidates, key=lambda cut: (_pair_max(prefix, low, cut, high), cut))


def cut_into_parts(
    weights: Sequence[float], keys: Sequence[str | None], parts: int
) -> tuple[tuple[int, int], ...]:
    """PURE: cut tests (in collection order) into at most ``parts`` contiguous parts that finish together.

    Tests with the same non-None key stay in one part. Cuts start at the block
    boundaries nearest to ``k * total / parts``; then each cut moves to where
    the two parts around it are most even (which never raises the longest part
    nor lowers the shortest), until no cut moves; finally neighbouring parts are
    merged while that does not lengthen the longest part (a class that cannot
    be cut may hold most of the time). With tests much shorter than a part,
    parts differ by at most about one test.

    :param weights: seconds per test.
    :param keys: per test, what it must stay with (see :func:`block_keys`).
    :param parts: the most parts wanted, >= 1.
    :returns: ``(start, end)`` index ranges covering every test once, in order.
    """
    if len(weights) != len(keys):
        raise ValueError("weights and keys must have one entry per test")
    if not weights:
        return ()
    blocks = _blocks(keys)
    block_weights = [math.fsum(weights[start:end]) for start, end in blocks]
    count = min(parts, len(blocks))
    if count < 2:
        return ((0, len(weights)),)
    prefix = list(accumulate(block_weights, initial=0.0))
    total = prefix[-1]
    size = len(blocks)
    cuts = [0]
    for number in range(1, count):
        target = total * number / count
        index = bisect_left(prefix, target)
        if index > 0 and (index > size or target - prefix[index - 1] <= prefix[index] - target):
            index -= 1
        cuts.append(max(cuts[-1] + 1, min(index, size - (count - number))))
    cuts.append(size)
    for _ in range(4 * size):  # a bound; it settles in a few sweeps
        moved = False
        for number in range(1, count):
            low, high = cuts[number - 1], cuts[number + 1]
            best = _balance_pair(prefix, low, high)
            if _pair_max(prefix, low, best, high) < _pair_max(prefix, low, cuts[number], high):
                cuts[number] = best
                moved = True
        if not moved:
            break
    cuts = _merge_small_neighbours(prefix, cuts)
    return tuple((blocks[start][0], blocks[end - 1][1]) for start, end in pairwise(cuts))


def _merge_small_neighbours(prefix: Sequence[float], cuts: list[int]) -> list[int]:
    """Join neighbouring parts while the joined part is no longer than the longest."""
    cuts = list(cuts)
    while len(cuts) > 2:
        sums = [prefix[b] - prefix[a] for a, b in pairwise(cuts)]
        longest = max(sums)
        pair = min(range(len(sums) - 1), key=lambda index: sums[index] + sums[index + 1])
        if sums[pair] + sums[pair + 1] > longest:
            break
        del cuts[pair + 1]
    return cuts


def part_count(estimate_s: float, fair_share_s: float, workers: int) -> int:
    """PURE: ``ceil(estimate / fair share)``, at most ``workers``."""
    if fair_share_s <= 0:
        return 1
    return max(1, min(workers, math.ceil(estimate_s / fair_share_s - 1e-9)))


# --------------------------------------------------------------------------- deciding


@final
@dataclass(frozen=True, slots=True)
class SplitContext:
    """What every decision of one run shares."""

    mode: SplitMode
    #: The run's workers (N).
    workers: int
    #: Sum of every module's estimate.
    total_s: float
    #: ``split_modules_keep_whole`` globs.
    keep_whole: tuple[str, ...] = ()

    @property
    def fair_share_s(self) -> float:
        return self.total_s / max(1, self.workers)


def dominant_modules(
    estimates: Mapping[str, float], known: Collection[str], workers: int
) -> tuple[str, ...]:
    """PURE: the modules worth considering for a split, largest first.

    Those the history knows (a guess from test counts cannot tell a dominant
    module), estimated above the fair share ``total / N`` and at least
    :data:`MIN_SPLIT_S`.
    """
    if workers < 2:
        return ()
    fair = math.fsum(estimates.values()) / workers
    chosen = [
        module
        for module, seconds in estimates.items()
        if module in known and seconds > fair and seconds >= MIN_SPLIT_S
    ]
    return tuple(sorted(chosen, key=lambda module: (-estimates[module], module)))


def decide_split(
    group: ModuleGroup,
    facts: ModuleFacts | None,
    *,
    context: SplitContext,
    estimate_s: float,
    durations: Mapping[str, float],
) -> SplitDecision:
    """PURE: whether (and where) to cut one dominant module. Called for each of :func:`dominant_modules`.

    :param group: the module's selected tests, in collection order.
    :param facts: what its items show; None when the mode alone decides (``off``)
        or the ini list keeps it whole (the facts are then never read).
    :param durations: recorded seconds per node id (any subset).
    """
    share = estimate_s / context.total_s if context.total_s > 0 else 1.0

    def whole(reason: str) -> SplitDecision:
        return SplitDecision(group.module, estimate_s, share, (group.nodeids,), reason)

    if context.mode == "off":
        return whole("--split-modules=off")
    pattern = kept_whole_by_pattern(group.module, context.keep_whole)
    if pattern is not None:
        return whole(f"ini split_modules_keep_whole matches `{pattern}`")
    if facts is None:
        raise ValueError(f"facts are needed to split {group.module}")
    marked = user_blocker(facts)
    if marked is not None:
        return whole(marked)
    blocker = module_blocker(facts)
    if blocker is not None and context.mode == "auto":
        return whole(blocker)
    classes = whole_classes(facts, structure=context.mode == "auto")
    keys = block_keys(facts, classes)
    weights = weights_of(group.nodeids, durations)
    wanted = part_count(estimate_s, context.fair_share_s, context.workers)
    ranges = cut_into_parts(weights, keys, wanted)
    total = math.fsum(weights)
    longest = max((math.fsum(weights[start:end]) for start, end in ranges), default=0.0)
    if len(ranges) < 2 or (total > 0 and longest >= MIN_GAIN_SHARE * total):
        return whole(_why_uncuttable(group, keys, weights, classes))
    parts = tuple(group.nodeids[start:end] for start, end in ranges)
    return SplitDecision(group.module, estimate_s, share, parts, blocker)


def _why_uncuttable(
    group: ModuleGroup,
    keys: Sequence[str | None],
    weights: Sequence[float],
    classes: Mapping[str, str],
) -> str:
    if len(group.nodeids) == 1:
        return "it holds a single test"
    by_class: dict[str, float] = {}
    for key, weight in zip(keys, weights, strict=True):
        if key is not None:
            by_class[key] = by_class.get(key, 0.0) + weight
    if by_class:
        heaviest = max(by_class, key=lambda key: (by_class[key], key))
        total = math.fsum(weights)
        share = by_class[heaviest] / total if total > 0 else 1.0
        return f"{classes[heaviest]}, and its tests stay together ({share:.0%} of the module)"
    slowest = max(range(len(weights)), key=lambda index: weights[index])
    return f"one test holds most of its time: {group.nodeids[slowest]}"


def apply_splits(
    plan: Iterable[ModuleGroup], decisions: Iterable[SplitDecision]
) -> tuple[ModuleGroup, ...]:
    """PURE: the plan with each split module's group replaced by its parts, in its place.

    The parts keep the module's place in the slowest-first order, so they start
    together on several workers and, being sized alike, finish together.
    """
    parts = {decision.module: decision.parts for decision in decisions if decision.split}
    result: list[ModuleGroup] = []
    for group in plan:
        cut = parts.get(group.module)
        if cut is None:
            result.append(group)
        else:
            result.extend(ModuleGroup(group.module, nodeids) for nodeids in cut)
    return tuple(result)
