"""``--module-shard=K/N``: keep one share of the selected modules. Runs in the controller.

A plugin of its own (registered as ``pytest_parallel_modules-shard``), so the
share is the same whether the run goes on to workers or stops after collection
(``--collect-only --module-shard=K/N`` lists exactly the share's tests). After
every other plugin selected (``-k``, ``-m``, ``--lf``, ``--rerun-failed-modules``),
it estimates each module from the duration history, splits the modules into
``N`` shares (:func:`~pytest_parallel_modules.scheduling.partition_shards`),
deselects the tests of the other shares and records :class:`ShardInfo` for the
run's report, so ``merge`` can check that the shards add up to one run.

A shard never writes the duration history: if it did, the shards of one CI run
that start one after another on the same machine (or share a cache) would split
with different histories, and some modules would run twice while others never
ran. ``python -m pytest_parallel_modules merge --durations PATH`` folds every
shard's measurements into the history at once, after the run.
"""

from __future__ import annotations

import hashlib
import json
from typing import Final
from typing import final
from typing import TYPE_CHECKING

import pytest

from pytest_parallel_modules.grouping import group_by_module
from pytest_parallel_modules.grouping import module_of
from pytest_parallel_modules.reports import ShardInfo
from pytest_parallel_modules.scheduling import estimate_modules
from pytest_parallel_modules.scheduling import ModuleEstimates
from pytest_parallel_modules.scheduling import partition_shards


if TYPE_CHECKING:
    from collections.abc import Callable
    from collections.abc import Generator
    from collections.abc import Iterable
    from pathlib import Path

    from pytest_parallel_modules.grouping import ModuleGroup
    from pytest_parallel_modules.scheduling import DurationHistory


#: The split this run kept, once collection selected it (read by the controller's report).
shard_info_key: Final = pytest.StashKey[ShardInfo]()

#: Name under which the plugin object is registered.
SHARD_PLUGIN_NAME: Final = "pytest_parallel_modules-shard"


def module_file_sizes(rootpath: Path, groups: Iterable[ModuleGroup]) -> dict[str, int]:
    """Each module file's size in bytes (the estimates' tie-breaker); 0 when unreadable.

    The shard split and the controller's plan both estimate with it, so a shard's
    fingerprint and the plan agree on what the files were.
    """
    sizes: dict[str, int] = {}
    for group in groups:
        try:
            sizes[group.module] = (rootpath / group.module).stat().st_size
        except OSError:
            sizes[group.module] = 0
    return sizes


def estimates_fingerprint(estimates: ModuleEstimates) -> str:
    """Return a short hash of everything the split depends on besides the selection. PURE.

    Each module's estimate (the duration history as it applies to the module's
    selected tests) and its file size (the tie-breaker): two shards with equal
    fingerprints and equal selections computed the same split. Estimates are
    rounded to the microsecond, as the history stores them.
    """
    rows = sorted(
        (module, round(seconds, 6), estimates.file_sizes.get(module, 0))
        for module, seconds in estimates.seconds.items()
    )
    text = json.dumps(rows, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def select_shard(
    groups: Iterable[ModuleGroup], estimates: ModuleEstimates, index: int, count: int
) -> tuple[frozenset[str], ShardInfo]:
    """Return the modules of share ``index`` of ``count`` and the record of the split. PURE.

    :param groups: every selected module (all shares).
    :param estimates: from :func:`~pytest_parallel_modules.scheduling.estimate_modules`.
    :param index: K, counted from 1.
    :param count: N.
    """
    groups = tuple(groups)
    mine = frozenset(
        group.module for group in partition_shards(groups, estimates, count)[index - 1]
    )
    info = ShardInfo(
        index=index,
        count=count,
        history_fingerprint=estimates_fingerprint(estimates),
        selected_modules={group.module: len(group.nodeids) for group in groups},
    )
    return mine, info


@final
class ShardFilter:
    """Deselects every test outside this run's share. Registered when ``--module-shard`` is given."""

    def __init__(
        self,
        config: pytest.Config,
        share: tuple[int, int],
        load_history: Callable[[], DurationHistory],
    ) -> None:
        self.config = config
        #: ``(K, N)``.
        self.share = share
        #: Reads the duration history (the controller's, which it reuses for its plan).
        self.load_history = load_history

    # A wrapper, and its work after the yield: every other plugin's selection (trylast
    # ones included) is done by then, so the split is computed from the final selection.
    @pytest.hookimpl(wrapper=True)
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> Generator[None, object, object]:
        result = yield
        index, count = self.share
        groups = group_by_module(item.nodeid for item in items)
        estimates = estimate_modules(
            groups, self.load_history(), module_file_sizes(config.rootpath, groups)
        )
        mine, info = select_shard(groups, estimates, index, count)
        config.stash[shard_info_key] = info
        deselected = [item for item in items if module_of(item.nodeid) not in mine]
        if deselected:
            config.hook.pytest_deselected(items=deselected)
            items[:] = [item for item in items if module_of(item.nodeid) in mine]
        return result
