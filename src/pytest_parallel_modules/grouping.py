"""PURE: split node ids into one group per module (test file), and groups into units of work. Runs in the controller.

A module is the part of a node id before the first ``::`` -- the file path
relative to the rootdir, exactly as pytest prints it. Groups keep the order in
which their first node id appears, and node ids keep their order inside a group,
so grouping a collection never reorders what pytest (or a plugin hooked into
``pytest_collection_modifyitems``) decided.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import final


@final
@dataclass(frozen=True, slots=True)
class ModuleGroup:
    """The selected tests of one module: the unit of work handed to a worker."""

    #: Path of the module relative to the rootdir, with ``/`` separators (``tests/test_x.py``).
    module: str
    #: Node ids of the selected tests, in collection order.
    nodeids: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.nodeids)


@final
@dataclass(frozen=True, slots=True)
class WorkUnit:
    """What one worker runs at a time: a whole module, or a part of one.

    Every record of a run (attempts, reports, the history's measurements, the
    progress display) is keyed by :attr:`id`; a module's figures are the sum of
    its units'.
    """

    #: ``tests/test_x.py`` for a whole module; ``tests/test_x.py[2/3]`` for its second of three parts.
    id: str
    #: The module the tests belong to.
    module: str
    #: Node ids to run, in order.
    nodeids: tuple[str, ...]
    #: 1-based part number and part count; ``(1, 1)`` for a whole module.
    part: tuple[int, int] = (1, 1)

    def __len__(self) -> int:
        return len(self.nodeids)

    def with_nodeids(self, nodeids: Iterable[str]) -> WorkUnit:
        """The same unit holding only ``nodeids`` (the rest of a unit whose worker crashed)."""
        return WorkUnit(self.id, self.module, tuple(nodeids), self.part)


def units_of(groups: Iterable[ModuleGroup]) -> tuple[WorkUnit, ...]:
    """One unit per group, in order; groups of the same module become its numbered parts.

    A ``pytest_parallel_modules_plan`` hook (or the splitting of a big module) may
    hand several groups of one module; each becomes a part with an id of its own.
    """
    groups = tuple(groups)
    counts: dict[str, int] = {}
    for group in groups:
        counts[group.module] = counts.get(group.module, 0) + 1
    seen: dict[str, int] = {}
    units = []
    for group in groups:
        total = counts[group.module]
        index = seen[group.module] = seen.get(group.module, 0) + 1
        unit_id = group.module if total == 1 else f"{group.module}[{index}/{total}]"
        units.append(WorkUnit(unit_id, group.module, group.nodeids, (index, total)))
    return tuple(units)


def module_of(nodeid: str) -> str:
    """Return the module part of ``nodeid`` (``"a/test_x.py::T::t[1]"`` -> ``"a/test_x.py"``)."""
    return nodeid.split("::", 1)[0]


def group_by_module(nodeids: Iterable[str]) -> tuple[ModuleGroup, ...]:
    """Group ``nodeids`` by module, keeping first-seen module order and node id order.

    Duplicate node ids (``--keep-duplicates``) are kept: each one is a test to run.
    """
    grouped: dict[str, list[str]] = {}
    for nodeid in nodeids:
        grouped.setdefault(module_of(nodeid), []).append(nodeid)
    return tuple(ModuleGroup(module, tuple(ids)) for module, ids in grouped.items())
