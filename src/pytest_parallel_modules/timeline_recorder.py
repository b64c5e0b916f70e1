"""Notes when the parts of a run happen, for the report's ``timeline``. Runs in the controller.

The controller owns one :class:`TimelineRecorder` and tells it, in a handful of
marked lines, when collection starts and ends, when each worker is spawned, ready
and gone, and when each test began; :meth:`TimelineRecorder.build_for` reads the
units of work and their attempts from the run ledger and hands everything to the
pure :func:`~pytest_parallel_modules.timeline_data.build_timeline`. Reading the
clock and the module files (for their content digests) is all this module does.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterable
import dataclasses
import hashlib
from pathlib import Path
from typing import Any
from typing import final
from typing import TYPE_CHECKING

from pytest_parallel_modules import timing
from pytest_parallel_modules.history import MeasuredRun
from pytest_parallel_modules.ledger import LossKind
from pytest_parallel_modules.options import available_cpus
from pytest_parallel_modules.timeline_data import build_timeline
from pytest_parallel_modules.timeline_data import RecordedTimes
from pytest_parallel_modules.timeline_data import TimelineRecord
from pytest_parallel_modules.timeline_data import UnitRun


if TYPE_CHECKING:
    from collections.abc import Sequence

    from pytest_parallel_modules.ledger import Attempt
    from pytest_parallel_modules.ledger import RunLedger
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
    """Notes when the run, its workers and its tests start and end. Owned by the controller.

    ``worker_spawned`` is called from the thread that starts workers, and
    :meth:`content_of` from the one that saves the history: each call sets or reads
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
        #: ``(worker, unit id)`` (one attempt) -> ``(node id, start)`` of each of its tests.
        self.starts: dict[tuple[str, str], list[tuple[str, float | None]]] = {}

    def epoch(self, perf_seconds: float) -> float:
        """The epoch time of a :func:`~pytest_parallel_modules.timing.perf` reading."""
        return perf_seconds + self._epoch_of_perf

    def _at(self) -> float:
        return self.epoch(self._perf())

    def begin(self) -> None:
        """The run starts: pytest's session starts, where pytest's own clock starts (#16)."""
        self._epoch_of_perf = self._now() - self._perf()
        self.start = self._at()

    def elapsed(self) -> float:
        """Seconds since :meth:`begin`: the run's wall time so far, as pytest's last line counts it."""
        return 0.0 if self.start is None else max(0.0, self._at() - self.start)

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

    def test_ended(self, worker_id: str, attempt: Attempt | None, reports: Sequence[Any]) -> None:
        """A test of ``attempt`` ended with ``reports``: note when it began (its first report's start)."""
        if attempt is None or not reports:
            return
        ((nodeid, start),) = report_starts(reports[:1])
        self.starts.setdefault((worker_id, attempt.unit_id), []).append((nodeid, start))

    def with_contents(self, measured: MeasuredRun) -> MeasuredRun:
        """``measured`` with each module's content digest, for the history's flake rates."""
        modules = {
            module: dataclasses.replace(measurement, content_hash=self.contents.get(module))
            for module, measurement in measured.modules.items()
        }
        return MeasuredRun(tests=measured.tests, modules=modules)

    def ended(self) -> None:
        """Every worker has stopped."""
        if self.end is None:
            self.end = self._at()

    def content_of(self, module: str) -> str | None:
        """The module file's content digest noted at :meth:`collected`, if any."""
        return self.contents.get(module)

    def build_for(self, ledger: RunLedger, modules: Sequence[ModuleReport]) -> TimelineRecord:
        """The ``timeline`` object of the run ``ledger`` kept, for the merged report of ``modules``.

        One unit of the timeline per attempt the ledger knows that a worker started.
        """
        outcomes = {
            unit["id"]: unit["outcome"] for module in modules for unit in module.get("units", [])
        }
        units: list[UnitRun] = []
        for entry in ledger.entries.values():
            for number, group in enumerate(entry.retries(), start=1):
                for attempt in group:
                    if attempt.started is None:
                        continue  # handed out ahead, never begun
                    starts = list(self.starts.get((attempt.worker_id, attempt.unit_id), ()))
                    # Tests the attempt got to without reporting them itself (the one its
                    # worker died in, those it did not collect) are its own too.
                    noted = {nodeid for nodeid, _ in starts}
                    starts.extend((nodeid, None) for nodeid in attempt.done - noted)
                    units.append(
                        UnitRun(
                            module=entry.unit.module,
                            worker=attempt.worker_id,
                            began=attempt.started,
                            finished=attempt.finished,
                            crashed=attempt.end is LossKind.CRASH,
                            attempt=number,
                            test_starts=starts,
                            unit_id=attempt.unit_id,
                            unit_outcome=outcomes.get(attempt.unit_id),
                            cpu_s=attempt.cpu_s,
                        )
                    )
        times = RecordedTimes(
            start=self.start if self.start is not None else self._at(),
            collected=self.collected_at,
            end=self.end,
            spawned=dict(self.spawned),
            ready=dict(self.ready),
            exited=dict(self.exited),
            contents=dict(self.contents),
            cpus=available_cpus(),
        )
        return build_timeline(times, units, modules)
