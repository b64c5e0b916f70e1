"""Which report directory a run writes to, held under a file lock for the whole run. Runs in the controller.

Every parallel run empties ``<report dir>/modules/`` when it starts and fills it
as its modules finish, then writes ``report.json``. Two runs at once in the same
directory (two terminals, two CI jobs on one machine) would empty each other's
files and leave a mix of both runs. So a run first takes ``<report dir>/.lock``
without waiting; when another run holds it, this run writes to
``<report dir>-<pid>/`` instead, says so in its header, and both runs' reports
stay whole. The lock is released when pytest unconfigures.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final
from typing import final

import filelock


#: Name of the lock file inside the report directory.
LOCK_NAME: Final = ".lock"


@final
class ReportDirectory:
    """The report directory of one run: claimed once, at session start, and released at the end."""

    def __init__(self, requested: Path) -> None:
        #: The directory the options name (``--module-report-dir``, ini, or the cache).
        self.requested = requested
        #: The directory this run writes to; ``None`` until :meth:`claim`.
        self.path: Path | None = None
        #: Why ``path`` is not ``requested``, for the run's header; ``None`` when it is.
        self.notice: str | None = None
        self._lock: filelock.FileLock | None = None

    def claim(self) -> Path:
        """Lock the requested directory, or a directory of this run's own if another run holds it.

        Idempotent: called as the session starts, before the header is printed. A
        directory that cannot be created or locked is used as it is, without a lock:
        writing the reports into it then fails with the real error, as without a claim.
        """
        if self.path is not None:
            return self.path
        self.path = self.requested
        try:
            self._lock = _locked(self.requested)
            if self._lock is None:
                own = self.requested.with_name(f"{self.requested.name}-{os.getpid()}")
                self._lock = _locked(own)
                self.path = own
                self.notice = (
                    f"another run is writing its reports to {self.requested}; "
                    f"this run writes to {own}"
                )
        except OSError:
            pass
        return self.path

    def release(self) -> None:
        """Let the next run have the directory; called when pytest unconfigures."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None


def _locked(directory: Path) -> filelock.FileLock | None:
    """Create ``directory`` and take its lock without waiting; ``None`` if another run holds it.

    :raises OSError: if the directory or its lock file cannot be created.
    """
    directory.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(str(directory / LOCK_NAME), timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        return None
    return lock
