"""The workers' stderr files: their last words after a crash, their stacks when asked. Runs in the controller.

Each worker's fd 2 goes to ``worker-<id>.stderr`` in the run's base temporary
directory, and Python's ``faulthandler`` in the worker writes every thread's
stack there on a fatal signal and on :data:`~pytest_parallel_modules.worker.DUMP_STACKS_SIGNAL`.
The controller reads them here: the tail for a crash report, what a stack dump
added for a test that hung or was interrupted.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from pytest_parallel_modules import timing


#: How much of a lost worker's stderr file a report shows.
STDERR_TAIL_BYTES: Final = 12_000


def stderr_path(directory: Path, worker_id: str) -> Path:
    """Where a worker's stderr goes, under the run's base temporary directory."""
    return directory / f"worker-{worker_id}.stderr"


def tail(path: Path, size: int) -> str:
    """The last ``size`` bytes of a text file, from a line start ("" if missing)."""
    try:
        with open(path, "rb") as file:
            file.seek(0, os.SEEK_END)
            end = file.tell()
            file.seek(max(0, end - size))
            data = file.read()
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace")
    if end > size and "\n" in text:
        text = text.split("\n", 1)[1]
    return text.strip()


def read_from(path: Path, offset: int) -> str:
    """What was written to a text file after ``offset`` ("" if it cannot be read)."""
    try:
        with open(path, "rb") as file:
            file.seek(offset)
            return file.read(STDERR_TAIL_BYTES).decode("utf-8", errors="replace").strip()
    except OSError:
        return ""


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def wait_for_dumps(sizes: dict[Path, int], timeout: float) -> None:
    # Called after a kill is decided, never from the event loop's steady state: the
    # longest wait is the dump of a test being interrupted.
    """Wait until each stack dump asked for is written: its file grew, then stopped growing.

    ``sizes`` holds each stderr file's size before the dump was asked for; the wait
    lasts at most ``timeout`` seconds.
    """
    deadline = timing.perf() + timeout
    last = dict(sizes)
    while timing.perf() < deadline:
        timing.sleep(0.05)
        now = {path: file_size(path) for path in sizes}
        if all(now[path] > sizes[path] and now[path] == last[path] for path in sizes):
            return
        last = now
