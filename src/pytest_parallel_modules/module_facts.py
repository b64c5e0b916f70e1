"""What a module's collected items show about its setup, as plain facts; and the split plan. Runs in the controller.

:func:`plan_splits` is what the controller calls once collection is done: it
finds the modules above the run's fair share (pure,
:func:`~pytest_parallel_modules.splitting.dominant_modules`), reads the facts of
those modules only from pytest's collected items (:func:`read_module_facts`:
the one place that looks at fixture definitions, classes and module objects),
and lets :mod:`pytest_parallel_modules.splitting` decide. Reading only the
dominant modules keeps the cost independent of the suite's size.

What it reads, all of it exposed by pytest on a collected item:

- ``item._fixtureinfo`` (``names_closure``, ``name2fixturedefs``): every fixture
  a test uses, directly or through other fixtures, ``usefixtures`` and autouse;
  of each name the definition that applies (the last one; an override that
  requests its own name also uses the one before it). The same information
  ``--setup-plan`` and pytest-xdist rely on.
- each ``FixtureDef``'s ``scope``, where it was found (``node``/``baseid``: the
  test module, one of its classes, a conftest directory or a plugin) and its
  function's file and line;
- the module object's ``setup_module``/``teardown_module``/``setUpModule``/
  ``tearDownModule``, and each class's ``setup_class``/``teardown_class`` or, for
  a unittest class, a ``setUpClass``/``tearDownClass`` defined below
  ``unittest.TestCase`` in its MRO;
- each class's bases defined in the same module that hold test methods it
  inherits (it runs another class's tests again);
- the ``parallel_modules_whole`` marker on the module, a class or a test.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
import inspect
from pathlib import Path
from typing import Any
from typing import Final
from typing import final
from typing import TYPE_CHECKING
import unittest

import pytest

from pytest_parallel_modules.grouping import module_of
from pytest_parallel_modules.grouping import ModuleGroup
from pytest_parallel_modules.grouping import WorkUnit
from pytest_parallel_modules.reports import SplitRecord
from pytest_parallel_modules.splitting import apply_splits
from pytest_parallel_modules.splitting import ClassFact
from pytest_parallel_modules.splitting import decide_split
from pytest_parallel_modules.splitting import dominant_modules
from pytest_parallel_modules.splitting import FixtureFact
from pytest_parallel_modules.splitting import ItemFact
from pytest_parallel_modules.splitting import ModuleFacts
from pytest_parallel_modules.splitting import SplitContext
from pytest_parallel_modules.splitting import SplitDecision
from pytest_parallel_modules.splitting import SplitMode
from pytest_parallel_modules.splitting import WHOLE_MARKER


if TYPE_CHECKING:
    from pytest_parallel_modules.scheduling import DurationHistory
    from pytest_parallel_modules.scheduling import ModuleEstimates


#: Module-level setup and teardown names pytest calls (python.py's Module collector).
MODULE_SETUP_NAMES: Final = ("setup_module", "setUpModule", "teardown_module", "tearDownModule")
#: xunit-style class setup and teardown names pytest calls (python.py's Class collector).
CLASS_SETUP_NAMES: Final = ("setup_class", "teardown_class")
#: unittest's class-level hooks; a class has class-level setup when it (or a base
#: below unittest.TestCase) defines one.
UNITTEST_CLASS_NAMES: Final = ("setUpClass", "tearDownClass")
#: Names of the fixtures pytest generates for xunit setup functions and unittest
#: classes (``_xunit_setup_class_fixture_TestX``, ``_unittest_setUpClass_fixture_TestX``).
PYTEST_GENERATED_PREFIXES: Final = ("_xunit_", "_unittest_")


@final
@dataclass(frozen=True, slots=True)
class SplitPlan:
    """The plan after splitting, and every decision for the merged report."""

    plan: tuple[ModuleGroup, ...]
    decisions: tuple[SplitDecision, ...] = ()

    def records(self, units: Sequence[WorkUnit]) -> list[SplitRecord]:
        """The decisions as the merged report keeps them, largest module first.

        :param units: what will really run, after the ``pytest_parallel_modules_plan``
            hook, which may join parts again or cut a module kept whole.
        """
        parts = Counter(unit.module for unit in units)
        records = []
        for decision in self.decisions:
            count = parts.get(decision.module, 1)
            reason = decision.reason
            if decision.split and count == 1:
                reason = "a pytest_parallel_modules_plan hook kept it whole"
            elif not decision.split and count > 1:
                reason = None  # a hook cut it: its choice, not a rule overridden here
            records.append(
                SplitRecord(
                    module=decision.module,
                    estimate_s=round(decision.estimate_s, 6),
                    share=round(decision.share, 4),
                    parts=count,
                    reason=reason,
                )
            )
        return records


def plan_splits(
    items: Sequence[pytest.Item],
    plan: tuple[ModuleGroup, ...],
    estimates: ModuleEstimates,
    history: DurationHistory,
    *,
    mode: SplitMode,
    workers: int,
    keep_whole: tuple[str, ...],
    rootpath: Path,
) -> SplitPlan:
    """Split the dominant modules of ``plan`` that may be split. Called by the controller once.

    :param items: the session's selected items (the same tests as ``plan``).
    :param plan: the slowest-first plan of whole modules.
    :param estimates: the estimates that ordered it.
    :param history: the duration history (per-test durations size the parts).
    """
    groups = {group.module: group for group in plan}
    # Known to the history: looked up only for the modules above the fair share.
    above = dominant_modules(estimates.seconds, estimates.seconds.keys(), workers)
    known = {
        module
        for module in above
        if module in history.modules
        or any(nodeid in history.tests for nodeid in groups[module].nodeids)
    }
    dominant = dominant_modules(estimates.seconds, known, workers)
    if not dominant:
        return SplitPlan(plan)
    context = SplitContext(
        mode=mode,
        workers=workers,
        total_s=sum(estimates.seconds.values()),
        keep_whole=keep_whole,
    )
    # Only the items of dominant modules are read, so the cost does not grow with the suite.
    wanted = set(dominant) if mode != "off" else set()
    items_of: dict[str, list[pytest.Item]] = {module: [] for module in wanted}
    if wanted:
        for item in items:
            bucket = items_of.get(module_of(item.nodeid))
            if bucket is not None:
                bucket.append(item)
    decisions: list[SplitDecision] = []
    for module in dominant:
        group = groups[module]
        facts = read_module_facts(module, items_of[module], rootpath) if module in wanted else None
        durations = {
            nodeid: history.tests[nodeid].duration_s
            for nodeid in group.nodeids
            if nodeid in history.tests
        }
        decisions.append(
            decide_split(
                group,
                facts,
                context=context,
                estimate_s=estimates.seconds[module],
                durations=durations,
            )
        )
    return SplitPlan(apply_splits(plan, decisions), tuple(decisions))


def read_module_facts(module: str, items: Iterable[pytest.Item], rootpath: Path) -> ModuleFacts:
    """Read what ``items`` (the selected tests of ``module``) show about the module's setup."""
    fixture_cache: dict[int, FixtureFact | None] = {}
    classes: dict[str, ClassFact] = {}
    item_facts: list[ItemFact] = []
    module_node: pytest.Module | None = None
    for item in items:
        chain = item.listchain()
        class_nodes = [node for node in chain if isinstance(node, pytest.Class)]
        for node in class_nodes:
            if node.nodeid not in classes:
                classes[node.nodeid] = ClassFact(
                    nodeid=node.nodeid,
                    setup=_class_setup(node.obj, rootpath),
                    marked_whole=_marked(node),
                    reruns=_rerun_class(node.obj),
                )
        if module_node is None and isinstance(item, pytest.Function):
            module_node = item.getparent(pytest.Module)
        info = getattr(item, "_fixtureinfo", None)
        if info is None:
            item_facts.append(
                ItemFact(
                    nodeid=item.nodeid,
                    classes=tuple(node.nodeid for node in class_nodes),
                    marked_whole=_marked(item),
                    uninspectable=type(item).__name__,
                )
            )
            continue
        item_facts.append(
            ItemFact(
                nodeid=item.nodeid,
                classes=tuple(node.nodeid for node in class_nodes),
                fixtures=_fixtures_used(info, module, rootpath, fixture_cache),
                marked_whole=_marked(item),
            )
        )
    return ModuleFacts(
        module=module,
        items=tuple(item_facts),
        classes=classes,
        module_setup=_module_setup(module_node.obj, rootpath) if module_node is not None else (),
        marked_whole=module_node is not None and _marked(module_node),
    )


def _marked(node: pytest.Item | pytest.Collector) -> bool:
    """Whether the node carries the marker itself (``pytestmark`` for a module)."""
    return any(mark.name == WHOLE_MARKER for mark in node.own_markers)


def _fixtures_used(
    info: Any, module: str, rootpath: Path, cache: dict[int, FixtureFact | None]
) -> tuple[FixtureFact, ...]:
    """The fixture definitions above function scope a test's closure uses."""
    used: list[FixtureFact] = []
    name2fixturedefs: Mapping[str, Sequence[Any]] = info.name2fixturedefs
    for name in info.names_closure:
        definitions = name2fixturedefs.get(name) or ()
        # The last definition applies; one that requests its own name (an override
        # using the fixture it overrides) uses the one before it too.
        index = len(definitions) - 1
        while index >= 0:
            definition = definitions[index]
            key = id(definition)
            if key not in cache:
                cache[key] = _fixture_fact(definition, module, rootpath)
            fact = cache[key]
            if fact is not None:
                used.append(fact)
            if name not in getattr(definition, "argnames", ()):
                break
            index -= 1
    return tuple(used)


def _fixture_fact(definition: Any, module: str, rootpath: Path) -> FixtureFact | None:
    """A definition scoped above function, as a fact; None for function scope and parametrize values."""
    scope = str(definition.scope)
    if scope == "function":
        return None
    function = definition.func
    # @pytest.mark.parametrize(..., scope="module") makes pseudo-fixtures that only
    # hand out the parameter: nothing is set up, so they change nothing when split.
    if getattr(function, "__name__", "") == "get_direct_param_fixture_func":
        return None
    # pytest wraps xunit setup functions and unittest class hooks in fixtures of its
    # own -- into every unittest class, whether it overrides setUpClass or not. What
    # they run is read from the module and class objects instead.
    if str(definition.argname).startswith(PYTEST_GENERATED_PREFIXES):
        return None
    node = getattr(definition, "node", None)
    baseid = node.nodeid if node is not None else str(getattr(definition, "baseid", "") or "")
    return FixtureFact(
        name=str(definition.argname),
        scope=scope,
        location=_location(function, rootpath),
        in_module=baseid == module or baseid.startswith(module + "::"),
    )


def _module_setup(module: object, rootpath: Path) -> tuple[str, ...]:
    found = []
    for name in MODULE_SETUP_NAMES:
        function = getattr(module, name, None)
        if callable(function):
            found.append(f"{name}{_in(function, rootpath)}")
    return tuple(found)


def _class_setup(cls: object, rootpath: Path) -> str | None:
    """The class's own class-level setup or teardown (inherited ones count), if any."""
    if not isinstance(cls, type):
        return None
    for name in CLASS_SETUP_NAMES:
        function = getattr(cls, name, None)
        if callable(function):
            return f"{name} ({_location(function, rootpath) or '?'})"
    if issubclass(cls, unittest.TestCase):
        for name in UNITTEST_CLASS_NAMES:
            owner = next((base for base in cls.__mro__ if name in vars(base)), None)
            if owner is not None and owner is not unittest.TestCase:
                return f"{name} ({_location(getattr(cls, name), rootpath) or '?'})"
    return None


def _rerun_class(cls: object) -> str | None:
    """The name of a class of the same module whose test methods ``cls`` inherits, if any.

    Test methods are the callables whose names start with ``test`` (the prefix of
    pytest's default ``python_functions`` and of unittest's loader); one that
    ``cls`` overrides is its own.
    """
    if not isinstance(cls, type):
        return None
    own = vars(cls)
    for base in cls.__mro__[1:]:
        if base.__module__ != cls.__module__:
            continue
        for name, value in vars(base).items():
            if name.startswith("test") and callable(value) and name not in own:
                return base.__qualname__
    return None


def _in(function: object, rootpath: Path) -> str:
    location = _location(function, rootpath)
    return f" in {location}" if location else ""


def _location(function: object, rootpath: Path) -> str:
    """``path:line`` of a function's definition, relative to the rootdir when under it."""
    target = getattr(function, "__func__", function)  # a bound or class method
    try:
        target = inspect.unwrap(target)  # type: ignore[arg-type]  # any callable will do
    except ValueError:  # a wrapper cycle
        pass
    code = getattr(target, "__code__", None)
    if code is None:
        return ""
    path = Path(code.co_filename)
    try:
        shown = path.resolve().relative_to(rootpath.resolve()).as_posix()
    except (ValueError, OSError):
        shown = str(path)
    return f"{shown}:{code.co_firstlineno}"
