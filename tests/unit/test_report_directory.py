"""The report directory a run claims: its own lock, or a directory of its own."""

from __future__ import annotations

import os
from pathlib import Path

import filelock

from pytest_parallel_modules.report_directory import LOCK_NAME
from pytest_parallel_modules.report_directory import ReportDirectory


def test_a_free_directory_is_claimed_created_and_locked(tmp_path: Path) -> None:
    requested = tmp_path / "cache" / "report"
    claimed = ReportDirectory(requested)
    assert claimed.claim() == requested
    assert claimed.path == requested and claimed.notice is None
    other = filelock.FileLock(str(requested / LOCK_NAME), timeout=0)
    assert not _can_take(other)
    claimed.release()
    assert _can_take(other)


def test_claiming_twice_changes_nothing(tmp_path: Path) -> None:
    claimed = ReportDirectory(tmp_path / "report")
    assert claimed.claim() == claimed.claim() == tmp_path / "report"
    claimed.release()
    claimed.release()


def test_a_directory_another_run_holds_gives_this_run_one_of_its_own(tmp_path: Path) -> None:
    requested = tmp_path / "report"
    first = ReportDirectory(requested)
    first.claim()
    second = ReportDirectory(requested)
    own = tmp_path / f"report-{os.getpid()}"
    assert second.claim() == own
    assert own.is_dir()
    assert second.notice == (
        f"another run is writing its reports to {requested}; this run writes to {own}"
    )
    first.release()
    second.release()
    # Once free, the next run gets the requested directory again.
    third = ReportDirectory(requested)
    assert third.claim() == requested
    third.release()


def _can_take(lock: filelock.FileLock) -> bool:
    try:
        lock.acquire()
    except filelock.Timeout:
        return False
    lock.release()
    return True


def test_a_directory_that_cannot_be_created_is_used_as_it_is(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    claimed = ReportDirectory(blocker / "report")
    # Writing the reports there fails later, with the real error; the claim does not.
    assert claimed.claim() == blocker / "report"
    assert claimed.notice is None
    claimed.release()
