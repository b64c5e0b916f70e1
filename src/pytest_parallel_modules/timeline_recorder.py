"""Notes when the parts of a run happen, for the report's ``timeline``. Runs in the controller.

The controller owns one :class:`TimelineRecorder` and tells it, in a handful of
marked lines, when collection starts and ends and when each worker is spawned,
ready and gone; :meth:`TimelineRecorder.build` hands what it noted to the pure
:func:`~pytest_parallel_modules.timeline_data.build_timeline`. Reading the clock
and the module files (for their content digests) is all this module does.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterable
import hashlib
from pathlib import Path
from typing import Any
from typing import final
from typing import TYPE_CHECKING

from pytest_parallel_modules import timing
from pytest_parallel_modules.timeline_data import build_timeline
from pytest_parallel_modules.timeline_data import RecordedTimes
from pytest_parallel_modules.timeline_data import TimelineRecord
from pytest_parallel_modules.timeline_data import UnitRun


if TYPE_CHECKING:
    from collections.abc import Sequence

    from pytest_parallel_modules.reports import ModuleReport


def content_digest(content: bytes) -> str:
    """PURE: the short digest of a module file's content that reports and the history keep.

    Twelve hex digits of its SHA-1: enough to tell two versions of one file apart.
    """
    return hashlib.sha1(content, usedforsecurity=False).hexdigest()[:12]


def report_starts(reports: Iterable[Any]) -> list[tuple[str, float | None]]:
    """``(node id, start)`` of pytest test reports, for :attr:`UnitRun.test_starts`.

    ``TestReport.start`` is the epoch time a phase began (pytest 8.2+). Older reports,
    and the failure report the controller makes up for a test whose worker died, say
    nothing (or 0): ``None``.
    """
    starts: list[tuple[str, float | None]] = []
    for report in reports:
        start: object = getattr(report, "start", None)
        if isinstance(start, (int, float)) and not isinstance(start, bool) and start > 0:
            starts.append((report.nodeid, float(start)))
        else:
            starts.append((report.nodeid, None))
    return starts


@final
class TimelineRecorder:
    """Notes when the run and its workers start and end. Owned by the controller.

    ``worker_spawned`` is called from the thread that starts workers: each call sets
    one dictionary item, which is atomic; everything else runs on the main thread.
    """

    def __init__(
        self,
        *,
        now: Callable[[], float] = timing.now,
        perf: Callable[[], float] = timing.perf,
    ) -> None:
        self._now = now
        self._perf = perf
        #: Epoch seconds minus perf seconds, read together at :meth:`begin`: turns a
        #: monotonic reading into an epoch time on the clock of pytest's reports.
        self._epoch_of_perf = 0.0
        self.start: float | None = None
        self.collected_at: float | None = None
        self.end: float | None = None
        self.spawned: dict[str, float] = {}
        self.ready: dict[str, float] = {}
        self.exited: dict[str, float] = {}
        #: Module -> :func:`content_digest` of its file, read at :meth:`collected`.
        self.contents: dict[str, str] = {}

    def epoch(self, perf_seconds: float) -> float:
        """The epoch time of a :func:`~pytest_parallel_modules.timing.perf` reading."""
        return perf_seconds + self._epoch_of_perf

    def _at(self) -> float:
        return self.epoch(self._perf())

    def begin(self) -> None:
        """The run starts: the controller is about to collect."""
        self._epoch_of_perf = self._now() - self._perf()
        self.start = self._at()

    def collected(self, rootpath: Path, modules: Iterable[str]) -> None:
        """Collection and planning are done; note each module file's content digest.

        Taken now, from the files the controller just imported, which is what the
        snapshot the workers run holds: the user may edit files while the run goes on.
        A file that cannot be read gets none.
        """
        self.collected_at = self._at()
        for module in modules:
            try:
                self.contents[module] = content_digest((rootpath / module).read_bytes())
            except OSError:
                continue

    def worker_spawned(self, worker_id: str) -> None:
        self.spawned[worker_id] = self._at()

    def worker_ready(self, worker_id: str) -> None:
        self.ready[worker_id] = self._at()

    def worker_exited(self, worker_id: str) -> None:
        self.exited.setdefault(worker_id, self._at())

    def ended(self) -> None:
        """Every worker has stopped."""
        if self.end is None:
            self.end = self._at()

    def unit(
        self,
        *,
        module: str,
        worker: str,
        assigned: float,
        began_perf: float | None,
        finished: float | None,
        crashed: bool,
        attempt: int,
        reports: Iterable[Any],
    ) -> UnitRun | None:
        """One unit of work as :func:`build` takes it; ``None`` for one that never began.

        :param assigned: epoch seconds it was handed to the worker.
        :param began_perf: perf seconds the worker began it (``None``: it was handed out
            ahead and the worker never got to it, unless it reported tests).
        :param finished: epoch seconds it ended, ``None`` if it never did.
        :param reports: its pytest test reports, in the order they arrived.
        """
        starts = report_starts(reports)
        if began_perf is None and not starts:
            return None
        return UnitRun(
            module=module,
            worker=worker,
            began=assigned if began_perf is None else self.epoch(began_perf),
            finished=finished,
            crashed=crashed,
            attempt=attempt,
            test_starts=starts,
        )

    def content_of(self, module: str) -> str | None:
        """The module file's content digest noted at :meth:`collected`, if any."""
        return self.contents.get(module)

    def build(
        self, units: Iterable[UnitRun | None], modules: Sequence[ModuleReport]
    ) -> TimelineRecord:
        """The ``timeline`` object for the merged report holding ``modules``.

        :param units: what :meth:`unit` returned for every unit of work of the run.
        """
        times = RecordedTimes(
            start=self.start if self.start is not None else self._at(),
            collected=self.collected_at,
            end=self.end,
            spawned=dict(self.spawned),
            ready=dict(self.ready),
            exited=dict(self.exited),
            contents=dict(self.contents),
        )
        return build_timeline(times, [unit for unit in units if unit is not None], modules)
