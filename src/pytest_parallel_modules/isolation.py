"""Where each worker runs: in place, or in its own worktree of a snapshot. Runs in the controller.

With worktree isolation, the working tree is snapshotted once per run and every
worker gets its own worktree slot at that commit. Paths that point into the
main checkout (the invocation directory, ``sys.path`` entries, absolute path
arguments, editable installs) are mapped to their counterpart in the worktree,
so the worker imports and collects the snapshot, never the live checkout the
user may be editing. The mapping functions are pure; git work is delegated to
:mod:`pytest_parallel_modules.worktrees`.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Collection
from collections.abc import Sequence
from dataclasses import dataclass
import os
from pathlib import Path
import threading
from typing import Final
from typing import final
from typing import Literal

from pytest_parallel_modules import worktrees


#: What ``--module-isolation`` accepts.
IsolationMode = Literal["worktree", "none"]
ISOLATION_MODES: Final[tuple[IsolationMode, ...]] = ("worktree", "none")


@final
@dataclass(frozen=True, slots=True)
class Placement:
    """Where one worker runs and how it sees paths."""

    #: The worker's working directory.
    cwd: Path
    #: The worker's ``sys.path``.
    sys_path: list[str]
    #: The user's command-line arguments, absolute paths mapped.
    args: list[str]
    #: ``(main checkout, worktree)`` root pairs for the worker to remap editable
    #: installs with; empty when running in place.
    path_map: list[tuple[str, str]]
    #: The worker's worktree root; None when running in place.
    worktree: Path | None


def map_path(path: str, repo_root: Path, worktree_root: Path, exists: Callable[[str], bool]) -> str:
    """PURE (given ``exists``): map ``path`` into the worktree when its counterpart exists there.

    A path into an ignored directory of the checkout (a ``.venv`` inside the
    repository, a build directory) has no counterpart in the snapshot; it keeps
    pointing at the main checkout, which is what the user's environment needs.
    """
    for candidate in (path, os.path.realpath(path) if os.path.isabs(path) else path):
        mapped = worktrees.map_into_worktree(candidate, repo_root, worktree_root)
        if mapped != candidate:
            return mapped if exists(mapped) else path
    return path


def map_args(
    args: Sequence[str], repo_root: Path, worktree_root: Path, exists: Callable[[str], bool]
) -> list[str]:
    """PURE (given ``exists``): map absolute paths in command-line arguments (``PATH`` or ``--opt=PATH``)."""
    mapped: list[str] = []
    for arg in args:
        if os.path.isabs(arg.split("::", 1)[0]):
            path, sep, rest = arg.partition("::")
            mapped.append(map_path(path, repo_root, worktree_root, exists) + sep + rest)
        elif arg.startswith("-") and "=" in arg:
            option, _, value = arg.partition("=")
            if os.path.isabs(value):
                value = map_path(value, repo_root, worktree_root, exists)
            mapped.append(f"{option}={value}")
        else:
            mapped.append(arg)
    return mapped


def restore_checkout_paths(value: object, worktree_root: str, repo_root: str) -> object:
    """PURE: replace the worktree root by the main checkout's root in every string of ``value``.

    Applied to the ``longrepr`` of a worker's serialized report (tracebacks, skip
    locations, collection errors), so paths read as they would in a plain run:
    ``test_x.py:27: not today``, not ``../slot-1/test_x.py:27``. Captured output is
    left as the test printed it.
    """
    if isinstance(value, str):
        return value.replace(worktree_root, repo_root) if worktree_root in value else value
    if isinstance(value, list):
        return [restore_checkout_paths(item, worktree_root, repo_root) for item in value]
    if isinstance(value, tuple):
        return tuple(restore_checkout_paths(item, worktree_root, repo_root) for item in value)
    if isinstance(value, dict):
        return {
            key: restore_checkout_paths(item, worktree_root, repo_root)
            for key, item in value.items()
        }
    return value


@final
class WorkerPlacer:
    """Decides where each worker of one run runs; owns the run's worktree slots.

    Built by the controller. :meth:`prepare`, :meth:`place` and :meth:`release_one` may
    run on the controller's starter thread; :meth:`release` runs on the main thread at
    the end of the run.

    Cancellation: pass the event the controller sets when the run ends early (Ctrl-C,
    collection error) as ``cancel``. Once it is set, a pending :meth:`prepare` or
    :meth:`place` gives up within a fraction of a second (a git command it started is
    terminated) and raises :class:`~pytest_parallel_modules.worktrees.WorktreeCancelled`,
    holding no slot. Nothing here waits for a lock another run holds, so a second run
    in the same repository never delays it.

    :param cancel: the event that cancels pending placements; None: never cancelled.
    """

    def __init__(
        self,
        *,
        mode: IsolationMode,
        repo_root: Path | None,
        invocation_dir: Path,
        args: Sequence[str],
        sys_path: Sequence[str],
        copy_patterns: Sequence[str],
        cancel: threading.Event | None = None,
    ) -> None:
        self.requested: IsolationMode = mode
        self.mode: IsolationMode = mode if repo_root is not None else "none"
        self.repo_root = repo_root
        self.invocation_dir = invocation_dir
        self.args = list(args)
        self.sys_path = list(sys_path)
        self.copy_patterns = list(copy_patterns)
        self.cancel = cancel
        self.snapshot: worktrees.Snapshot | None = None
        self._pool: worktrees.WorktreePool | None = None
        self._lock = threading.Lock()

    @property
    def isolated(self) -> bool:
        return self.mode == "worktree"

    def prepare(self) -> None:
        """Take the snapshot (once), into a private directory of the worktree pool.

        :raises ~pytest_parallel_modules.worktrees.WorktreeError: git failed.
        :raises ~pytest_parallel_modules.worktrees.WorktreeCancelled: ``cancel`` was set.
        """
        with self._lock:
            if not self.isolated or self.snapshot is not None:
                return
            assert self.repo_root is not None
            if self._pool is None:
                self._pool = worktrees.WorktreePool(self.repo_root, cancel=self.cancel)
            self.snapshot = self._pool.take_snapshot()

    def place(self) -> Placement:
        """Return a placement for one more worker (a fresh worktree slot when isolated).

        :raises ~pytest_parallel_modules.worktrees.WorktreeError: git failed.
        :raises ~pytest_parallel_modules.worktrees.WorktreeCancelled: ``cancel`` was set
            (or :meth:`release` called) before the slot was ready; no slot is held.
        """
        if not self.isolated:
            return Placement(
                cwd=self.invocation_dir,
                sys_path=list(self.sys_path),
                args=list(self.args),
                path_map=[],
                worktree=None,
            )
        self.prepare()
        assert self._pool is not None and self.snapshot is not None and self.repo_root is not None
        worktree = self._pool.acquire(self.snapshot, self.copy_patterns)
        repo_root = self.repo_root
        return Placement(
            cwd=Path(worktrees.map_into_worktree(str(self.invocation_dir), repo_root, worktree)),
            sys_path=[
                map_path(entry, repo_root, worktree, os.path.exists) for entry in self.sys_path
            ],
            args=map_args(self.args, repo_root, worktree, os.path.exists),
            path_map=[(str(repo_root), str(worktree))],
            worktree=worktree,
        )

    def release_one(self, worktree: Path, *, keep: bool = False) -> bool:
        """Give one worker's worktree slot back to the pool as soon as that worker exits.

        A later :meth:`place` (a replacement worker, or another run) may take it again.
        With ``keep`` (``--keep-failed-worktrees`` and the worker ran a failed module) it
        is reserved until ``clean`` instead, exactly as the worker left it. A worktree this
        run does not hold is ignored. Never raises.

        :returns: False if ``keep`` was asked and the slot could not be marked kept.
        """
        if self._pool is None:
            return True
        return self._pool.release_slot(worktree, keep=keep)

    def release(self, keep: Collection[Path] = ()) -> None:
        """Unlock every worktree slot of this run and delete its snapshot's private objects.

        ``keep`` ones stay as they are, reserved until ``clean``. A :meth:`place` still
        running on another thread gives up. Never raises.
        """
        if self._pool is not None:
            self._pool.release(keep=keep)

    def describe(self) -> str:
        """One line for the header: where the workers run."""
        if self.isolated:
            return "each worker in its own git worktree of a snapshot of the working tree"
        if self.requested == "none":
            return "workers run in place (--module-isolation=none)"
        if not worktrees.git_available():
            return "workers run in place (git was not found on PATH)"
        return "workers run in place (not inside a git work tree)"
