"""PURE: split node ids into one group per module (test file). Runs in the controller.

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
