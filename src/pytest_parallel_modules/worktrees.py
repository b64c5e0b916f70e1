"""Snapshot commits and the worktree pool. Runs in the controller (and in ``clean``).

This is the only module that runs git. A run proceeds in three steps:

1. :func:`take_snapshot` turns the user's working tree (tracked changes, staged
   or not, plus untracked files that are not ignored) into one commit. It
   works on a copy of the index and writes every object it creates into a
   private directory of the pool (mode 0700), borrowing the repository's own
   objects as alternates: the content of a file the user never committed
   (an untracked ``.env``) never lands in the user's ``.git/objects``. HEAD,
   the index, the stash, branches, refs, config, working files and everything
   else under ``.git`` are never changed, and ``.git/index.lock`` is neither
   needed nor taken.
2. :class:`WorktreePool` hands out one slot per worker, detached at that
   commit. A slot is a checkout with a small repository of its own
   (``slot-N/.git`` is a directory), never a ``git worktree`` registered in the
   user's repository: it borrows the user's objects (``objects/info/alternates``),
   holds hard links to the snapshot's private objects, a read-only copy of the
   user's branches and tags, and no reflog. Slots live outside the checkout
   (:func:`default_pool_dir`), are locked with a :class:`filelock.FileLock`
   while a run uses them, and are reused across runs: moving a checkout to a
   new commit is much faster than writing every file again. A slot is checked
   before every use and rebuilt unless its git directory is its own (see
   :func:`pytest_parallel_modules.slots.classify_slot`). A slot released with ``keep``
   (``--keep-failed-worktrees``) is marked ``<slot>.kept`` and no run takes it
   until ``clean`` removes it.
3. :func:`clean_pool` removes the slots no running run holds, kept ones
   included, and the snapshot objects of runs that are over.

Every wait can be cancelled: give :class:`WorktreePool` (or :func:`take_snapshot`)
a :class:`threading.Event`; once it is set, the git command running is
terminated and the call raises :class:`WorktreeCancelled`. No call waits for a
lock another run holds: slots are taken with non-blocking locks only.

Every git command gets its arguments as a list (no shell ever sees a path or a
pattern), ``GIT_TERMINAL_PROMPT=0``, ``LC_ALL=C`` and no stdin; commands on a
slot name its git directory and work tree explicitly.
"""

from __future__ import annotations

from collections.abc import Collection
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
import hashlib
import json
import os
from pathlib import Path
import re
import shlex
import shutil
import stat
import subprocess
import tempfile
import threading
from typing import Final
from typing import final
from typing import Literal
from typing import TYPE_CHECKING

import filelock

from pytest_parallel_modules.errors import ParallelModulesError
from pytest_parallel_modules.slots import classify_slot
from pytest_parallel_modules.slots import is_within
from pytest_parallel_modules.slots import packed_refs_text
from pytest_parallel_modules.slots import slot_config_text
from pytest_parallel_modules.slots import SlotObservation
from pytest_parallel_modules.slots import SlotState


if TYPE_CHECKING:
    from types import TracebackType


__all__ = [
    "POOL_DIR_ENV",
    "Snapshot",
    "WorktreeCancelled",
    "WorktreeError",
    "WorktreePool",
    "clean_pool",
    "default_pool_dir",
    "find_repo_root",
    "git_available",
    "kept_slots",
    "map_into_worktree",
    "take_snapshot",
]

#: Environment variable naming the directory under which pools are kept.
POOL_DIR_ENV: Final = "PYTEST_PARALLEL_MODULES_POOL_DIR"

#: Identity of snapshot commits, so a snapshot works without ``user.name`` configured.
_SNAPSHOT_IDENTITY: Final = "pytest-parallel-modules"
_SNAPSHOT_EMAIL: Final = "pytest-parallel-modules@localhost"
_SNAPSHOT_MESSAGE: Final = "pytest-parallel-modules snapshot of the working tree"

#: Slot directories are ``<pool>/slot-<n>``, locked through ``<pool>/slot-<n>.lock``.
_SLOT_PATTERN: Final = re.compile(r"slot-(\d+)")
#: ``<pool>/slot-<n>.kept`` marks a slot kept for inspection: no run takes it until ``clean``.
KEPT_SUFFIX: Final = ".kept"
#: ``<pool>/snapshots/run-<random>/`` holds one run's snapshot objects while the run lasts.
SNAPSHOTS_DIR_NAME: Final = "snapshots"
#: Serialised ``git worktree add`` in the pools of earlier versions; ``clean`` deletes it.
LEGACY_ADD_LOCK_NAME: Final = "worktree-add.lock"
_SNAPSHOT_PREFIX: Final = "run-"
#: Held (inside the snapshot directory) by the run that took the snapshot.
_SNAPSHOT_LOCK_NAME: Final = "lock"
#: What a slot's git directory records about itself, next to git's own files.
_SLOT_RECORD_NAME: Final = "pytest-parallel-modules.json"
_SLOT_RECORD_VERSION: Final = 1
#: How often a cancellable git command looks at its cancellation event.
_CANCEL_POLL_S: Final = 0.05
#: How long a terminated git command gets to exit before it is killed.
_TERMINATE_WAIT_S: Final = 2.0

#: Git reads these to find the repository, index and objects instead of looking at ``-C``.
#: A git hook (pre-commit, post-checkout) that runs pytest exports some of them; left in
#: place, ``git -C <slot> checkout`` would write the *user's* index. This is the list of
#: ``git rev-parse --local-env-vars`` minus the config ones, which the user means globally,
#: plus the two that would make ``git init`` build a slot in another format than ours.
_REPOSITORY_ENV_VARS: Final = frozenset(
    {
        "GIT_ALTERNATE_OBJECT_DIRECTORIES",
        "GIT_COMMON_DIR",
        "GIT_DEFAULT_HASH",
        "GIT_DEFAULT_REF_FORMAT",
        "GIT_DIR",
        "GIT_GRAFT_FILE",
        "GIT_IMPLICIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_NO_REPLACE_OBJECTS",
        "GIT_OBJECT_DIRECTORY",
        "GIT_PREFIX",
        "GIT_REPLACE_REF_BASE",
        "GIT_SHALLOW_FILE",
        "GIT_WORK_TREE",
    }
)

#: Settings for commands that change a slot. A post-checkout hook is the user's reaction to
#: *their* checkouts, not ours; an fsmonitor daemon per slot would outlive the run;
#: ``submodule.recurse=true`` would make checkout handle submodules its own way, which needs
#: the network -- :func:`_checkout_gitlinks` does it from local objects instead. A slot is
#: never sparse: the snapshot already holds exactly the files the user sees. No reflog: it
#: would keep every snapshot a slot ever held alive.
_SLOT_CONFIG: Final = (
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "core.fsmonitor=false",
    "-c",
    "submodule.recurse=false",
    "-c",
    "advice.detachedHead=false",
    "-c",
    "core.sparseCheckout=false",
    "-c",
    "core.logAllRefUpdates=false",
)

#: Settings for the commands that build the snapshot in a temporary index. A split index
#: would write a new sharedindex file into the user's git dir; a sparse index or sparse
#: checkout would make ``git add --all`` skip (and fail on) paths outside the cone; the
#: builtin fsmonitor would start a daemon with its socket in the user's git dir. Objects
#: are created readable by their owner only, whatever the repository's sharedRepository.
_SNAPSHOT_CONFIG: Final = (
    "-c",
    "core.fsmonitor=false",
    "-c",
    "core.splitIndex=false",
    "-c",
    "index.sparse=false",
    "-c",
    "core.sparseCheckout=false",
    "-c",
    "advice.addEmbeddedRepo=false",
    "-c",
    "advice.updateSparsePath=false",
    "-c",
    "core.sharedRepository=0600",
)

#: The refs a slot gets a read-only copy of, so that ``git describe``, ``git log main`` or
#: setuptools-scm behave in a slot as in the checkout. Not the stash: it is the user's
#: work in progress, not history.
_MIRRORED_REFS: Final = ("refs/heads/", "refs/tags/", "refs/remotes/")

#: Entries of a slot's git directory that :func:`_install_snapshot` deletes, writes or
#: follows; each must be a real file or directory, never a symlink out of the slot.
_SLOT_GIT_ENTRIES: Final = ("HEAD", "config", "index", "info", "logs", "objects", "refs")


@final
class WorktreeError(ParallelModulesError):
    """A git command for the snapshot or the worktree pool failed; the message has git's stderr."""


@final
class WorktreeCancelled(ParallelModulesError):
    """A snapshot or a slot was given up because its cancellation event was set.

    Not a :class:`WorktreeError`: the pool rebuilds a slot when moving it fails with a
    :class:`WorktreeError`, and a cancelled move must stop instead.
    """


@final
@dataclass(frozen=True, slots=True)
class Snapshot:
    """The user's working tree at the start of a run, as one commit."""

    #: Top of the work tree the snapshot was taken in.
    repo_root: Path
    #: Full hash of the snapshot commit (not referenced by any ref of the repository).
    commit: str
    #: Private directory (mode 0700) holding ``objects/`` -- the objects the snapshot added
    #: to the repository's, the commit included -- and a copy of the repository's
    #: ``packed-refs`` (branches, tags, remotes) and ``shallow`` file.
    directory: Path


@final
@dataclass(frozen=True, slots=True)
class _Source:
    """Where the repository a pool checks out keeps what slots borrow."""

    #: Its git directory shared by all its worktrees, resolved.
    common_dir: Path
    #: Its object directory, listed in every slot's ``objects/info/alternates``.
    objects: Path
    #: Its config file, included by every slot's config.
    config: Path


# -- running git ------------------------------------------------------------------------


def _git_environment(extra: Mapping[str, str]) -> dict[str, str]:
    """Return the environment for one git command: the user's, minus repository overrides."""
    environment = {
        name: value for name, value in os.environ.items() if name not in _REPOSITORY_ENV_VARS
    }
    # LC_ALL=C: we parse git's output. GIT_OPTIONAL_LOCKS=0: no command of ours may refresh
    # the user's index behind their back (git status does that opportunistically).
    environment.update(GIT_TERMINAL_PROMPT="0", LC_ALL="C", GIT_OPTIONAL_LOCKS="0")
    environment.update(extra)
    return environment


def _raise_if_cancelled(cancel: threading.Event | None) -> None:
    """Raise :class:`WorktreeCancelled` once ``cancel`` is set."""
    if cancel is not None and cancel.is_set():
        raise WorktreeCancelled("cancelled: the run no longer needs this worktree")


def _run_git(
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    input: str | None = None,
    cancel: threading.Event | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``git *args`` and return the finished process, whatever its exit code.

    :param input: text for git's stdin; without it, stdin is empty.
    :param cancel: once set, git is terminated (killed if it does not exit within
        ``_TERMINATE_WAIT_S``) and :class:`WorktreeCancelled` raised. Checked every
        ``_CANCEL_POLL_S`` while git runs.
    :raises WorktreeError: git could not be started (not on PATH, ...).
    :raises WorktreeCancelled: ``cancel`` was set before or while git ran.
    """
    _raise_if_cancelled(cancel)
    command = ["git", *args]
    try:
        process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            # surrogateescape: paths that are not UTF-8 survive the round trip to os.fsencode.
            encoding="utf-8",
            errors="surrogateescape",
            env=_git_environment(env or {}),
        )
    except OSError as error:
        raise WorktreeError(f"could not run git: {error}") from error
    pending: str | None = "" if input is None else input
    with process:
        while True:
            try:
                # communicate() keeps what it read when it times out; the input goes once.
                stdout, stderr = process.communicate(
                    pending, timeout=None if cancel is None else _CANCEL_POLL_S
                )
                break
            except subprocess.TimeoutExpired:
                pending = None
                if cancel is not None and cancel.is_set():
                    _stop(process)
                    raise WorktreeCancelled(
                        f"cancelled: terminated `git {shlex.join(args)}`"
                    ) from None
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def _stop(process: subprocess.Popen[str]) -> None:
    """Terminate ``process`` (git removes its lock files on SIGTERM); kill it if it lingers."""
    process.terminate()
    try:
        process.communicate(timeout=_TERMINATE_WAIT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()


def _git(
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    input: str | None = None,
    cancel: threading.Event | None = None,
) -> str:
    """Run ``git *args`` and return its stdout.

    :raises WorktreeError: git failed; the message holds the command and git's stderr.
    :raises WorktreeCancelled: ``cancel`` was set (see :func:`_run_git`).
    """
    result = _run_git(args, env=env, input=input, cancel=cancel)
    if result.returncode != 0:
        raise WorktreeError(
            f"`git {shlex.join(args)}` failed with exit code {result.returncode}:\n"
            f"{result.stderr.strip()}"
        )
    return result.stdout


def _in_checkout(checkout: Path) -> list[str]:
    """Return the git options that run a command on ``checkout`` and its own ``.git`` only.

    Naming both explicitly means no ``.git`` file, ``core.worktree`` or environment
    variable can point the command at another repository.
    """
    return [f"--git-dir={checkout / '.git'}", f"--work-tree={checkout}", "-C", str(checkout)]


def _common_dir(directory: Path, cancel: threading.Event | None = None) -> Path:
    """Return the resolved git directory shared by every worktree of ``directory``'s repo."""
    output = _git(["-C", str(directory), "rev-parse", "--git-common-dir"], cancel=cancel)
    return (directory / output.rstrip("\n")).resolve()


def _source(repo_root: Path, cancel: threading.Event | None = None) -> _Source:
    """Return what slots of ``repo_root``'s repository borrow from it."""
    common_dir = _common_dir(repo_root, cancel)
    return _Source(
        common_dir=common_dir, objects=common_dir / "objects", config=common_dir / "config"
    )


# -- finding the repository and taking the snapshot --------------------------------------


def git_available() -> bool:
    """Return whether a ``git`` executable is on ``PATH``. Runs in the controller.

    Tells why :func:`find_repo_root` found no work tree, for the header line.
    """
    return shutil.which("git") is not None


def find_repo_root(start: Path) -> Path | None:
    """Return the top of the git work tree holding ``start``. Runs in the controller.

    :param start: a file or directory.
    :returns: the top directory (symlinks resolved, as git reports it), or ``None``
        outside a work tree, inside a bare repository, or when git is not on PATH.
    """
    directory = start if start.is_dir() else start.parent
    try:
        result = _run_git(["-C", str(directory), "rev-parse", "--show-toplevel"])
    except WorktreeError:
        return None
    top = result.stdout.rstrip("\n")
    # Old git answers an empty line in a bare repository; new git fails.
    if result.returncode != 0 or not top:
        return None
    return Path(top)


def _mirrored_refs(repo_root: Path, cancel: threading.Event | None) -> list[tuple[str, str, str]]:
    """Return the user's branches, tags and remote-tracking refs (see ``_MIRRORED_REFS``)."""
    output = _git(
        [
            "-C",
            str(repo_root),
            "for-each-ref",
            "--format=%(objectname)%00%(refname)%00%(*objectname)",
            *_MIRRORED_REFS,
        ],
        cancel=cancel,
    )
    refs: list[tuple[str, str, str]] = []
    for line in output.splitlines():
        fields = line.split("\0")
        if len(fields) == 3 and fields[0] and fields[1]:
            refs.append((fields[0], fields[1], fields[2]))
    return refs


#: Python's bytecode caches stay out of snapshots: the controller's own collection
#: writes them while the snapshot is taken (each through a temporary file that is gone
#: a moment later, which made ``git add`` fail with "unable to stat"), and a worker
#: compiles its own checkout anyway: the cached files name the sources' times.
_NOT_BYTECODE: Final = ":(exclude,glob)**/__pycache__/**"
#: Attempts at ``git add`` when a file vanished between git listing it and reading it
#: (a test or a tool writing into the tree through temporary files).
_ADD_ATTEMPTS: Final = 3
_VANISHED: Final = "unable to stat"


def _add_working_tree(
    location: Sequence[str], index_env: Mapping[str, str], cancel: threading.Event | None
) -> None:
    """Stage the whole working tree (bytecode caches aside) into the snapshot's index."""
    command = [*_SNAPSHOT_CONFIG, *location, "add", "--all", "--", ".", _NOT_BYTECODE]
    for attempt in range(1, _ADD_ATTEMPTS + 1):
        try:
            _git(command, env=index_env, cancel=cancel)
            return
        except WorktreeError as error:
            # Staging again is harmless: what was added stays, the vanished file is gone.
            if _VANISHED not in str(error) or attempt == _ADD_ATTEMPTS:
                raise


def take_snapshot(
    repo_root: Path, directory: Path, *, cancel: threading.Event | None = None
) -> Snapshot:
    """Commit the working tree of ``repo_root`` without touching the user's git state.

    Runs in the controller. A copy of the index is updated with ``git add --all`` and
    written as a tree; the commit's parent is HEAD when there is one. Seeding the copy
    from the real index means only files whose stat data changed are hashed again.
    Objects git creates for it (the blobs of changed and untracked files, the trees
    above them, the commit) go to ``directory/objects``; the repository's own objects
    are only read (``GIT_ALTERNATE_OBJECT_DIRECTORIES``), never written.

    :param repo_root: the top of a work tree (see :func:`find_repo_root`).
    :param directory: where the snapshot's objects go; created with mode 0700. The caller
        owns it (:meth:`WorktreePool.take_snapshot` deletes its own at release) and must
        keep it until every slot that needs it was acquired.
    :param cancel: once set, the running git command is terminated and
        :class:`WorktreeCancelled` raised.
    :returns: the snapshot; its commit is not referenced by any ref.
    :raises WorktreeError: a git command failed (its stderr is in the message).
    :raises WorktreeCancelled: ``cancel`` was set.
    """
    output = _git(
        [
            "-C",
            str(repo_root),
            "rev-parse",
            "--git-path",
            "index",
            "--git-path",
            "shallow",
            "--git-common-dir",
        ],
        cancel=cancel,
    )
    index_path, shallow_path, common_path = output.splitlines()
    # --git-path answers for linked worktrees and submodules too (their git directory is
    # not <top>/.git), relative to repo_root unless absolute.
    index = repo_root / index_path
    shallow = repo_root / shallow_path
    common_dir = (repo_root / common_path).resolve()
    head = _run_git(
        ["-C", str(repo_root), "rev-parse", "--verify", "--quiet", "HEAD^{commit}"], cancel=cancel
    )
    parent_args = ["-p", head.stdout.strip()] if head.returncode == 0 else []

    objects = directory / "objects"
    _make_private_dir(directory)
    _make_private_dir(objects)
    object_env = {
        "GIT_OBJECT_DIRECTORY": str(objects),
        "GIT_ALTERNATE_OBJECT_DIRECTORIES": str(common_dir / "objects"),
    }
    temporary_index = directory / "index"
    try:
        try:
            # copy2 keeps the index's mtime: git compares it with file mtimes to spot files
            # changed in the same instant the index was written ("racy git"). A fresh mtime
            # would make such files look clean and leave their new content out.
            shutil.copy2(index, temporary_index)
        except FileNotFoundError:
            pass  # no index yet (fresh repository): git add starts from an empty one
        except OSError as error:
            raise WorktreeError(f"could not copy the git index {index}: {error}") from error
        index_env = {**object_env, "GIT_INDEX_FILE": str(temporary_index)}
        location = ["-C", str(repo_root)]
        # Entries git was told not to look at (outside a sparse checkout's cone,
        # --skip-worktree, --assume-unchanged) are compared with the working tree too:
        # the snapshot holds what the user sees, and a file missing there is missing here.
        _look_at_every_entry(location, _SNAPSHOT_CONFIG, index_env, cancel)
        _add_working_tree(location, index_env, cancel)
        tree = _git(
            [*_SNAPSHOT_CONFIG, *location, "write-tree"], env=index_env, cancel=cancel
        ).strip()
    finally:
        temporary_index.unlink(missing_ok=True)

    commit = _git(
        [
            *_SNAPSHOT_CONFIG,
            "-C",
            str(repo_root),
            "commit-tree",
            "--no-gpg-sign",  # commit.gpgSign would prompt or fail, and nobody reads this one
            "-m",
            _SNAPSHOT_MESSAGE,
            *parent_args,
            tree,
        ],
        env={
            **object_env,
            "GIT_AUTHOR_NAME": _SNAPSHOT_IDENTITY,
            "GIT_AUTHOR_EMAIL": _SNAPSHOT_EMAIL,
            "GIT_COMMITTER_NAME": _SNAPSHOT_IDENTITY,
            "GIT_COMMITTER_EMAIL": _SNAPSHOT_EMAIL,
        },
        cancel=cancel,
    ).strip()
    try:
        _write_file(directory / "packed-refs", packed_refs_text(_mirrored_refs(repo_root, cancel)))
        # A slot of a shallow clone must know where its history stops, as the clone does.
        if shallow.is_file():
            _write_file(directory / "shallow", shallow.read_text(encoding="utf-8"))
    except OSError as error:
        raise WorktreeError(f"could not write the snapshot into {directory}: {error}") from error
    return Snapshot(repo_root=repo_root, commit=commit, directory=directory)


# -- paths --------------------------------------------------------------------------------


def default_pool_dir(repo_root: Path) -> Path:
    """Return where the worktree pool of ``repo_root`` lives. PURE apart from reading the env.

    ``$PYTEST_PARALLEL_MODULES_POOL_DIR``, else ``$XDG_CACHE_HOME`` (or ``~/.cache``) plus
    ``pytest-parallel-modules``, then ``<repo-name>-<hash of the repo's absolute path>``.
    The per-repository part is added under the environment variable too, so one setting
    serves every repository without two of them sharing slots.
    """
    base_setting = os.environ.get(POOL_DIR_ENV)
    if base_setting:
        base = Path(base_setting).expanduser()
    else:
        cache = os.environ.get("XDG_CACHE_HOME", "")
        # The XDG spec says to ignore a relative XDG_CACHE_HOME.
        cache_dir = Path(cache) if os.path.isabs(cache) else Path.home() / ".cache"
        base = cache_dir / "pytest-parallel-modules"
    absolute = os.path.abspath(repo_root)
    digest = hashlib.sha256(os.fsencode(absolute)).hexdigest()[:12]
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", os.path.basename(absolute)) or "repo"
    return base / f"{name}-{digest}"


def map_into_worktree(path: str, repo_root: Path, worktree_root: Path) -> str:
    """PURE: return ``path``'s counterpart inside the worktree. Runs in the controller.

    A path inside the main checkout becomes the same relative path under
    ``worktree_root``; any other path (relative, elsewhere, a sibling such as
    ``/repo-other`` of ``/repo``) is returned unchanged. Nothing is resolved, so pass
    paths in the same form as ``repo_root`` (git reports it with symlinks resolved).

    :param path: a ``sys.path`` entry, the invocation directory, ...
    :param repo_root: top of the main checkout.
    :param worktree_root: top of the worktree.
    """
    if not os.path.isabs(path):
        return path
    normalized = os.path.normpath(path)
    root = os.path.normpath(os.fspath(repo_root))
    if normalized == root:
        return os.fspath(worktree_root)
    prefix = root if root.endswith(os.sep) else root + os.sep
    if not normalized.startswith(prefix):
        return path
    return os.path.join(os.fspath(worktree_root), normalized[len(prefix) :])


def _make_private_dir(directory: Path) -> None:
    """Create ``directory`` (and missing parents) and make it readable by its owner only."""
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(directory, 0o700)  # mkdir's mode is filtered by the umask
    except OSError as error:
        raise WorktreeError(
            f"could not create the private directory {directory}: {error}"
        ) from error


def _write_file(path: Path, text: str) -> None:
    """Replace ``path`` with a file holding ``text``; a symlink there is replaced, not followed.

    A test may have turned any file of a slot's git directory into a symlink to the
    user's; writing through it would change the user's file.
    """
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def _slot_lock(slot: Path) -> filelock.FileLock:
    """Return the (unacquired) lock guarding ``slot`` against other runs."""
    # thread_local=False: the controller acquires from helper threads and releases from
    # its main thread.
    return filelock.FileLock(f"{slot}.lock", thread_local=False)


def _kept_marker(slot: Path) -> Path:
    """Return the file whose presence reserves ``slot`` for inspection."""
    return slot.with_name(slot.name + KEPT_SUFFIX)


def kept_slots(pool_dir: Path) -> list[Path]:
    """Return the slots of ``pool_dir`` kept for inspection, in slot order. Runs in ``clean``."""
    if not pool_dir.is_dir():
        return []
    slots = [
        pool_dir / entry.name[: -len(KEPT_SUFFIX)]
        for entry in pool_dir.iterdir()
        if entry.name.endswith(KEPT_SUFFIX)
        and _SLOT_PATTERN.fullmatch(entry.name[: -len(KEPT_SUFFIX)])
    ]
    return sorted(slots, key=_slot_number)


def _try_lock(lock: filelock.FileLock) -> bool:
    """Take ``lock`` if nobody holds it; never wait."""
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        return False
    return True


def _file_identity(path: Path) -> tuple[int, int] | None:
    """Return ``(device, inode)`` of ``path``, ``None`` if it does not exist."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return None
    return status.st_dev, status.st_ino


def _try_slot_lock(lock: filelock.FileLock) -> bool:
    """Take a slot's lock if nobody holds it, never waiting; False if it is held.

    ``clean`` deletes the lock files of the slots it removes, holding each lock
    while it does (issue #16). A process that opened such a file just before it
    was deleted would be granted a lock on the deleted file once ``clean``
    releases it, while the next run creates and locks a new file at the same
    path: two holders of "one" lock. So the file is created first and its
    identity noted, and the lock counts only if the path still names that file
    once it is held; otherwise it is released, and the slot counts as taken.
    """
    path = Path(lock.lock_file)
    try:
        # Created here (not by filelock) so that its identity is known before it is locked.
        path.touch(exist_ok=True)
    except FileNotFoundError:
        # `clean` removed the pool directory after this run created it.
        _make_private_dir(path.parent)
        path.touch(exist_ok=True)
    expected = _file_identity(path)
    if not _try_lock(lock):
        return False
    if expected is not None and _file_identity(path) == expected:
        return True
    lock.release()
    return False


def _rmtree(path: Path) -> None:
    """Delete ``path`` (file, symlink or tree), even where a test made directories read-only."""
    if path.is_symlink() or path.is_file():
        path.unlink()
        return
    if not path.exists():
        return
    try:
        shutil.rmtree(path)
    except OSError:
        # Give every directory back to its owner, then retry once. Only real directories:
        # chmod follows symlinks, and a symlink may point into the user's checkout.
        os.chmod(path, stat.S_IRWXU)
        for directory, subdirectories, _files in os.walk(path):
            for name in subdirectories:
                child = os.path.join(directory, name)
                if not os.path.islink(child):
                    os.chmod(child, stat.S_IRWXU)
        shutil.rmtree(path)


# -- slots ---------------------------------------------------------------------------------


def _registered_worktrees(repo_root: Path) -> list[Path]:
    """Return the paths of every worktree registered in ``repo_root``'s repository."""
    output = _git(["-C", str(repo_root), "worktree", "list", "--porcelain", "-z"])
    prefix = "worktree "
    # resolve(): compared with our slot paths, which may sit below a symlink.
    return [
        Path(field[len(prefix) :]).resolve()
        for field in output.split("\0")
        if field.startswith(prefix)
    ]


def _file_kind(path: Path) -> Literal["missing", "directory", "file", "other"]:
    """Return what ``path`` is, without following a symlink."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return "missing"
    except OSError:
        return "other"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISREG(mode):
        return "file"
    return "other"


def _read_record(git_dir: Path) -> tuple[Path, str] | None:
    """Return the ``(source, config)`` a slot's git directory records; None if unreadable."""
    record_path = git_dir / _SLOT_RECORD_NAME
    if _file_kind(record_path) != "file":
        return None
    try:
        record = json.loads(record_path.read_text(encoding="utf-8", errors="surrogateescape"))
    except (OSError, ValueError):
        return None
    if (
        not isinstance(record, dict)
        or record.get("version") != _SLOT_RECORD_VERSION
        or not isinstance(record.get("source"), str)
        or not isinstance(record.get("config"), str)
    ):
        return None
    return Path(record["source"]), record["config"]


def _write_record(git_dir: Path, source: Path, config: str) -> None:
    """Record in a slot's git directory which repository it serves and its config."""
    record = {"version": _SLOT_RECORD_VERSION, "source": os.fspath(source), "config": config}
    _write_file(git_dir / _SLOT_RECORD_NAME, json.dumps(record, indent=2) + "\n")


def _observe_slot(slot: Path) -> SlotObservation:
    """Read what :func:`classify_slot` needs from ``slot``; runs no git command."""
    kind = _file_kind(slot)
    if kind == "missing":
        return SlotObservation(path_kind="missing", git_kind="missing")
    if kind != "directory":
        return SlotObservation(path_kind="other", git_kind="missing")
    git_dir = slot / ".git"
    git_kind = _file_kind(git_dir)
    if git_kind == "file":
        try:
            pointer = git_dir.read_text(encoding="utf-8", errors="surrogateescape")
        except OSError:
            pointer = ""
        target = None
        if pointer.startswith("gitdir: "):
            named = pointer[len("gitdir: ") :].strip()
            target = Path(os.path.realpath(os.path.join(slot, named)))
        return SlotObservation(path_kind="directory", git_kind="file", gitfile_target=target)
    if git_kind != "directory":
        return SlotObservation(path_kind="directory", git_kind=git_kind)
    record = _read_record(git_dir)
    return SlotObservation(
        path_kind="directory",
        git_kind="directory",
        has_commondir=os.path.lexists(git_dir / "commondir"),
        entries_are_real=all(
            _file_kind(git_dir / name) != "other" for name in (*_SLOT_GIT_ENTRIES, "objects/info")
        ),
        recorded_source=None if record is None else record[0],
    )


def _is_own_repository(checkout: Path) -> bool:
    """Return whether ``checkout/.git`` is a git directory of its own (a submodule we made)."""
    git_dir = checkout / ".git"
    return _file_kind(git_dir) == "directory" and not os.path.lexists(git_dir / "commondir")


def _look_at_every_entry(
    location: Sequence[str],
    config: Sequence[str],
    env: Mapping[str, str] | None = None,
    cancel: threading.Event | None = None,
) -> None:
    """Clear the skip-worktree and assume-unchanged bits of every entry of the index.

    With them set, git takes an entry's file as unchanged without looking at it: ``add
    --all`` would keep a file the user cannot see (outside a sparse checkout's cone) or
    miss an edit (``update-index --assume-unchanged``), and ``checkout --force`` would not
    restore a file a test deleted or edited in a slot.

    :param location: the git options that name the repository (``-C``, ``--git-dir``...).
    :param env: ``GIT_INDEX_FILE`` for a temporary index.
    """
    listing = _git([*config, *location, "ls-files", "-z", "-v"], env=env, cancel=cancel)
    skipped: list[str] = []
    assumed: list[str] = []
    for record in listing.split("\0"):
        # "<tag> <path>": S (or s) is skip-worktree, a lower-case tag is assume-unchanged.
        tag, path = record[:1], record[2:]
        if not path:
            continue
        if tag in ("S", "s"):
            skipped.append(path)
        if tag.islower():
            assumed.append(path)
    # One flag per command: update-index applies only the last of several such flags.
    for flag, paths in (("--no-skip-worktree", skipped), ("--no-assume-unchanged", assumed)):
        if paths:
            _git(
                [*config, *location, "update-index", "-z", flag, "--stdin"],
                env=env,
                input="".join(f"{path}\0" for path in paths),
                cancel=cancel,
            )


def _reset_checkout(checkout: Path, commit: str, cancel: threading.Event | None) -> None:
    """Move a checkout with its own ``.git`` to ``commit``; delete every file git does not track.

    :raises WorktreeError: ``checkout/.git`` is not a git directory of its own, or git failed.
    """
    if not _is_own_repository(checkout):
        raise WorktreeError(f"{checkout}/.git is not a repository of its own")
    location = _in_checkout(checkout)
    # A test may have marked files skip-worktree or assume-unchanged (or a sparse checkout
    # left them so): checkout would then keep what the test left in them.
    _look_at_every_entry(location, _SLOT_CONFIG, cancel=cancel)
    _git(
        [*_SLOT_CONFIG, *location, "checkout", "--quiet", "--detach", "--force", commit],
        cancel=cancel,
    )
    # -ff: also nested repositories a test created; -x: ignored files too (caches, builds).
    _git([*_SLOT_CONFIG, *location, "clean", "-ffdxq"], cancel=cancel)


def _link_tree(source: Path, target: Path, cancel: threading.Event | None) -> None:
    """Hard-link every file below ``source`` to the same place below ``target``.

    Objects never change once written, so a link is as good as a copy and costs nothing;
    across file systems (a pool directory that is a mount point) it falls back to a copy.
    """
    for directory, _subdirectories, files in os.walk(source):
        _raise_if_cancelled(cancel)
        here = Path(directory)
        destination = target / here.relative_to(source)
        destination.mkdir(mode=0o700, exist_ok=True)
        for name in files:
            if os.path.lexists(destination / name):
                continue
            try:
                os.link(here / name, destination / name)
            except OSError:
                shutil.copy2(here / name, destination / name)


def _install_snapshot(
    git_dir: Path,
    snapshot: Snapshot,
    source: _Source,
    config: str,
    cancel: threading.Event | None,
) -> None:
    """Give a slot's git directory what checking out ``snapshot`` needs, and nothing else.

    Writes its config, alternates, refs and shallow file; replaces its own objects by the
    snapshot's private ones. Everything a test may have changed in it (sparse settings,
    branches, reflogs, objects of commits it made, a stale ``index.lock`` left by a killed
    git) is gone; the index stays, as it makes the checkout that follows fast.
    """
    try:
        _write_file(git_dir / "config", config)
        for name in ("config.worktree", "info/sparse-checkout", "index.lock", "HEAD.lock"):
            (git_dir / name).unlink(missing_ok=True)
        for name in ("logs", "refs"):
            _rmtree(git_dir / name)
        # git takes a directory for a repository only if it has refs/.
        (git_dir / "refs" / "heads").mkdir(parents=True)
        (git_dir / "refs" / "tags").mkdir()
        for name in ("packed-refs", "shallow"):
            copy = snapshot.directory / name
            if copy.is_file():
                _write_file(git_dir / name, copy.read_text(encoding="utf-8"))
            else:
                (git_dir / name).unlink(missing_ok=True)
        objects = git_dir / "objects"
        objects.mkdir(exist_ok=True)
        for entry in objects.iterdir():
            if entry.name != "info":
                _rmtree(entry)
        (objects / "info").mkdir(exist_ok=True)
        _write_file(objects / "info" / "alternates", f"{source.objects}\n")
        _link_tree(snapshot.directory / "objects", objects, cancel)
    except OSError as error:
        raise WorktreeError(f"could not prepare the repository {git_dir}: {error}") from error


def _create_slot(
    slot: Path, snapshot: Snapshot, source: _Source, cancel: threading.Event | None
) -> None:
    """Make ``slot`` a fresh checkout of ``snapshot`` with a repository of its own."""
    _rmtree(slot)
    # The files ref format: _install_snapshot writes refs as files, whatever a newer git's
    # init.defaultRefFormat says. A SHA-256 repository's slots must be SHA-256 too;
    # otherwise SHA-1, whatever init.defaultObjectFormat says (older git ignores both
    # settings, and knows no --ref-format option).
    options = ["-c", "init.defaultRefFormat=files"]
    if len(snapshot.commit) == 64:
        format_option = ["--object-format=sha256"]
    else:
        options += ["-c", "init.defaultObjectFormat=sha1"]
        format_option = []
    # --template=: no sample hooks, nothing but what checkout needs.
    _git([*options, "init", "--quiet", "--template=", *format_option, str(slot)], cancel=cancel)
    git_dir = slot / ".git"
    try:
        init_config = (git_dir / "config").read_text(encoding="utf-8", errors="surrogateescape")
    except OSError as error:
        raise WorktreeError(
            f"could not read the config git init wrote in {slot}: {error}"
        ) from error
    config = slot_config_text(init_config, source.config)
    try:
        _write_record(git_dir, source.common_dir, config)
    except OSError as error:
        raise WorktreeError(f"could not write into {git_dir}: {error}") from error
    _install_snapshot(git_dir, snapshot, source, config, cancel)
    _git(
        [
            *_SLOT_CONFIG,
            *_in_checkout(slot),
            "checkout",
            "--quiet",
            "--detach",
            "--force",
            snapshot.commit,
        ],
        cancel=cancel,
    )


def _move_slot(
    slot: Path, snapshot: Snapshot, source: _Source, cancel: threading.Event | None
) -> None:
    """Move an existing slot (state ``ours``) to ``snapshot``.

    :raises WorktreeError: the slot could not be moved; the caller creates it again.
    """
    git_dir = slot / ".git"
    record = _read_record(git_dir)
    if record is None:
        raise WorktreeError(f"{git_dir} has no readable record")
    _install_snapshot(git_dir, snapshot, source, record[1], cancel)
    _reset_checkout(slot, snapshot.commit, cancel)


def _unregister_legacy_slot(repo_root: Path, slot: Path, cancel: threading.Event | None) -> None:
    """Remove ``slot`` and its registration as a ``git worktree`` of ``repo_root``.

    Slots made by older versions were registered worktrees; their HEAD reflogs in the
    user's ``.git/worktrees`` keep old snapshot commits alive. ``git worktree remove``
    only removes a registration whose path is ``slot``; if there is none, nothing of the
    user's is touched and the slot directory is deleted by the caller.
    """
    _run_git(
        ["-C", str(repo_root), "worktree", "remove", "--force", "--force", str(slot)],
        cancel=cancel,
    )


def _git_path(directory: Path, name: str, cancel: threading.Event | None = None) -> Path:
    """Return the absolute path of ``name`` inside the git directory of ``directory``.

    ``--git-path`` answers for linked worktrees and submodules too (their git directory is
    not ``<top>/.git``); its answer is relative to ``directory`` unless it is absolute.
    """
    output = _git(["-C", str(directory), "rev-parse", "--git-path", name], cancel=cancel)
    return directory / output.rstrip("\n")


def _checkout_gitlinks(source_root: Path, checkout: Path, cancel: threading.Event | None) -> None:
    """Check out the submodules of ``checkout`` from the ones checked out under ``source_root``.

    Each gitlink whose directory in the main checkout is a repository becomes a
    repository in the worktree that borrows the main one's objects (``alternates``),
    detached at the recorded commit: no network, no ``.gitmodules`` URL, no change to
    the user's config (``git submodule init`` would write to it). Gitlinks that are not
    checked out in the main checkout stay empty directories, as git leaves them.
    Recurses into nested submodules. A submodule whose ``.git`` is not its own (a test
    pointed it elsewhere) is made again, never moved.
    """
    output = _git([*_in_checkout(checkout), "ls-files", "--stage", "-z"], cancel=cancel)
    for record in output.split("\0"):
        if not record.startswith("160000 "):
            continue
        meta, path = record.split("\t", 1)
        commit = meta.split(" ")[1]
        source = source_root / path
        target = checkout / path
        if not (source / ".git").exists():
            continue
        if os.path.lexists(target / ".git"):
            try:
                _reset_checkout(target, commit, cancel)
            except WorktreeError:
                _rmtree(target)
            else:
                _checkout_gitlinks(source, target, cancel)
                continue
        objects = _git_path(source, "objects", cancel)
        target.mkdir(parents=True, exist_ok=True)
        _git(["init", "--quiet", "--template=", str(target)], cancel=cancel)
        alternates = target / ".git" / "objects" / "info" / "alternates"
        alternates.parent.mkdir(parents=True, exist_ok=True)
        alternates.write_text(f"{objects}\n", encoding="utf-8", errors="surrogateescape")
        try:
            _git(
                [*_SLOT_CONFIG, *_in_checkout(target), "checkout", "--quiet", "--detach", commit],
                cancel=cancel,
            )
        except WorktreeError as error:
            raise WorktreeError(
                f"submodule {path!r} needs commit {commit}, which its checkout in "
                f"{source} does not have:\n{error}"
            ) from error
        _checkout_gitlinks(source, target, cancel)


def _matches(repo_root: Path, pattern: str) -> Iterator[Path]:
    """Yield the paths under ``repo_root`` matching the relative glob ``pattern``."""
    if not pattern or os.path.isabs(pattern) or ".." in Path(pattern).parts:
        raise WorktreeError(
            f"worktree copy pattern {pattern!r} must be a glob relative to the repository root"
        )
    for match in sorted(repo_root.glob(pattern)):
        if ".git" not in match.relative_to(repo_root).parts:
            yield match


def _link_or_copy_file(source: Path, target: Path) -> None:
    """Copy ``source`` to ``target``; keep symlinks as symlinks.

    A copy, never a hard link: a test that rewrites such a file in place would
    otherwise rewrite the user's original, and the main checkout's files must
    never change. An existing ``target`` wins: it came from the snapshot, which
    is newer than what the main checkout may hold now.
    """
    if os.path.lexists(target):
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_symlink():
        os.symlink(os.readlink(source), target)
        return
    shutil.copy2(source, target)


def _copy_ignored(
    repo_root: Path,
    worktree_root: Path,
    patterns: Sequence[str],
    cancel: threading.Event | None,
) -> None:
    """Bring the paths matching ``patterns`` from the main checkout into the worktree."""
    for pattern in patterns:
        for source in _matches(repo_root, pattern):
            target = worktree_root / source.relative_to(repo_root)
            try:
                if source.is_dir() and not source.is_symlink():
                    for directory, subdirectories, files in os.walk(source):
                        _raise_if_cancelled(cancel)
                        # A nested repository's .git belongs to the main checkout only.
                        subdirectories[:] = [name for name in subdirectories if name != ".git"]
                        here = Path(directory)
                        destination = target / here.relative_to(source)
                        destination.mkdir(parents=True, exist_ok=True)
                        for name in files:
                            _link_or_copy_file(here / name, destination / name)
                        for name in subdirectories:
                            if (here / name).is_symlink():
                                _link_or_copy_file(here / name, destination / name)
                else:
                    _raise_if_cancelled(cancel)
                    _link_or_copy_file(source, target)
            except OSError as error:
                raise WorktreeError(
                    f"could not copy {source} into the worktree {worktree_root}: {error}"
                ) from error


# -- snapshot directories of the pool ----------------------------------------------------------


def _discard_snapshot(directory: Path, lock: filelock.FileLock) -> None:
    """Delete a snapshot directory this process holds, then let its lock go. Never raises."""
    try:
        _rmtree(directory)
    except OSError:
        pass  # clean_pool or the next run's sweep retries
    finally:
        lock.release()


def _sweep_snapshots(pool_dir: Path, *, unlocked_too: bool) -> None:
    """Delete the snapshot directories of runs that are over (their lock is free).

    :param unlocked_too: also those without a lock file: a run that died between
        creating the directory and locking it, or (for an instant) one doing so now;
        only ``clean`` asks for them.
    """
    snapshots = pool_dir / SNAPSHOTS_DIR_NAME
    try:
        entries = list(snapshots.iterdir())
    except OSError:
        return
    for entry in entries:
        if not entry.name.startswith(_SNAPSHOT_PREFIX):
            continue
        lock_path = entry / _SNAPSHOT_LOCK_NAME
        try:
            if not lock_path.exists():
                if unlocked_too:
                    _rmtree(entry)
                continue
            lock = filelock.FileLock(str(lock_path), thread_local=False)
            if _try_lock(lock):
                _discard_snapshot(entry, lock)
        except OSError:
            continue  # another process swept it first


# -- the pool ------------------------------------------------------------------------------------


@final
class WorktreePool:
    """Worktree slots of one repository, each locked by at most one run. Runs in the controller.

    Use as a context manager; leaving it releases every slot and deletes the snapshots
    the pool took::

        with WorktreePool(repo_root, cancel=stop_event) as pool:
            snapshot = pool.take_snapshot()
            roots = [pool.acquire(snapshot) for _ in range(workers)]
            ...
            pool.release_slot(roots[0])           # as soon as that worker is done
            pool.release(keep=failed_roots)       # at the end of the run

    :meth:`take_snapshot` and :meth:`acquire` may be called from several threads at once
    and never wait for a lock another run holds. Setting ``cancel`` makes a running or
    later call give up within about ``_CANCEL_POLL_S`` plus the time git takes to exit
    on SIGTERM (``_TERMINATE_WAIT_S`` at most), raising :class:`WorktreeCancelled`; a slot
    it was preparing goes back to the pool, unmarked, to be reset by the next run.

    :param repo_root: top of the main checkout.
    :param pool_dir: directory holding the slots, outside the checkout; by default
        :func:`default_pool_dir`.
    :param cancel: the event that cancels pending snapshots and acquisitions.
    """

    def __init__(
        self,
        repo_root: Path,
        pool_dir: Path | None = None,
        *,
        cancel: threading.Event | None = None,
    ) -> None:
        #: Top of the main checkout.
        self.repo_root = repo_root
        #: Directory holding the slots; outside the checkout.
        self.pool_dir = default_pool_dir(repo_root) if pool_dir is None else pool_dir
        self._cancel = cancel
        self._state_lock = threading.Lock()
        self._held: dict[Path, filelock.FileLock] = {}
        self._snapshots: list[tuple[Path, filelock.FileLock]] = []
        self._source: _Source | None = None
        # Set by release(): a placement still running on another thread gives up.
        self._released = False

    def __enter__(self) -> WorktreePool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()

    @property
    def held(self) -> tuple[Path, ...]:
        """The worktree roots this pool holds, in slot order."""
        with self._state_lock:
            return tuple(sorted(self._held, key=_slot_number))

    def take_snapshot(self) -> Snapshot:
        """Snapshot the working tree into a private directory of the pool (see :func:`take_snapshot`).

        The directory (``<pool>/snapshots/run-*``) is locked while this pool lives and
        deleted by :meth:`release`; directories of runs that died are swept here.

        :raises WorktreeError: git failed, or the pool would lie inside the checkout.
        :raises WorktreeCancelled: the cancellation event was set.
        """
        _, pool_dir = self._prepare()
        snapshots = pool_dir / SNAPSHOTS_DIR_NAME
        _make_private_dir(snapshots)
        _sweep_snapshots(pool_dir, unlocked_too=False)
        try:
            directory = Path(tempfile.mkdtemp(prefix=_SNAPSHOT_PREFIX, dir=snapshots))
        except OSError as error:
            raise WorktreeError(f"could not create a directory in {snapshots}: {error}") from error
        lock = filelock.FileLock(str(directory / _SNAPSHOT_LOCK_NAME), thread_local=False)
        if not _try_lock(lock):
            # Another run's sweep took the lock of our brand-new directory to delete it.
            raise WorktreeError(f"the snapshot directory {directory} was taken by another run")
        with self._state_lock:
            self._snapshots.append((directory, lock))
        return take_snapshot(self.repo_root, directory, cancel=self._cancel)

    def acquire(self, snapshot: Snapshot, copy_patterns: Sequence[str] = ()) -> Path:
        """Return the root of a worktree detached at ``snapshot.commit``, locked for this pool.

        Called by the controller, possibly from several threads at once. Takes the first
        slot no run holds and none kept for inspection; an existing slot there is checked
        (:func:`classify_slot`), moved to the commit and cleaned (``checkout --force`` +
        ``clean -ffdx``); a missing one, or one whose git directory is not its own, is
        (re)created. Never waits for another run.

        :param snapshot: taken in this pool's repository; its directory must still exist.
        :param copy_patterns: globs, relative to the repository root, of ignored paths to
            copy into the worktree after checkout (copies, so a test that rewrites one
            never rewrites the user's original).
        :raises WorktreeError: git failed, or the pool would lie inside the checkout.
        :raises WorktreeCancelled: the cancellation event was set, or :meth:`release` was
            called meanwhile; no slot is held for it.
        """
        source, pool_dir = self._prepare(snapshot)
        skip: set[Path] = set()
        while True:
            slot = self._lock_free_slot(pool_dir, skip)
            try:
                state = classify_slot(_observe_slot(slot), source.common_dir)
                if state == "foreign":
                    # An explicit pool_dir shared with another repository: leave its slot alone.
                    skip.add(slot)
                    self._unhold(slot)
                    continue
                self._prepare_slot(slot, state, snapshot, source, copy_patterns)
                _raise_if_cancelled(self._cancel)
                self._raise_if_released()
            except BaseException:
                self._unhold(slot)
                raise
            return slot

    def release_slot(self, slot: Path, *, keep: bool = False) -> bool:
        """Give one slot of this pool back, as soon as its worker is done with it.

        Called by the controller when a worker exits; a later :meth:`acquire` (of this
        run or another) may take the slot again. ``keep`` marks it ``<slot>.kept`` first
        (``--keep-failed-worktrees``): no run takes it until ``clean``. A slot this pool
        does not hold is ignored. Never raises.

        :returns: False if ``keep`` was asked and the slot could not be marked (the pool
            directory is not writable): it is released unmarked, a later run may reuse it.
        """
        with self._state_lock:
            lock = self._held.pop(slot, None)
        if lock is None:
            return True
        return _release_slot(slot, lock, keep=keep)

    def release(self, keep: Collection[Path] = ()) -> list[Path]:
        """Unlock every slot this pool holds and delete its snapshots. Called at the end of a run.

        Nothing in a slot is deleted or reset here -- a slot is reset when a run next
        acquires it. The slots in ``keep`` (``--keep-failed-worktrees``) are marked
        ``<slot>.kept`` first, while still locked, so no later run takes them: they stay
        exactly as this run left them (their repository holds its own copy of the
        snapshot's objects) until ``clean`` removes them. An :meth:`acquire` still running
        on another thread gives up. Never raises: it runs while the controller shuts down.

        :param keep: worktree roots the controller wants left for inspection.
        :returns: the slots of ``keep`` that could not be marked (the pool directory is
            not writable): released like the others, a later run may reuse them.
        """
        with self._state_lock:
            self._released = True
            held = dict(self._held)
            self._held.clear()
            snapshots = list(self._snapshots)
            self._snapshots.clear()
        unmarked = [
            slot for slot, lock in held.items() if not _release_slot(slot, lock, keep=slot in keep)
        ]
        for directory, lock in snapshots:
            _discard_snapshot(directory, lock)
        return unmarked

    def _raise_if_released(self) -> None:
        with self._state_lock:
            if self._released:
                raise WorktreeCancelled("cancelled: the worktree pool was released")

    def _prepare(self, snapshot: Snapshot | None = None) -> tuple[_Source, Path]:
        """Check the snapshot's repository; create the pool directory on first use."""
        _raise_if_cancelled(self._cancel)
        self._raise_if_released()
        with self._state_lock:
            if self._source is None:
                pool_dir = self.pool_dir.resolve()
                if is_within(pool_dir, self.repo_root.resolve()):
                    raise WorktreeError(
                        f"the worktree pool {self.pool_dir} lies inside the checkout "
                        f"{self.repo_root}: pytest would collect it; set {POOL_DIR_ENV} "
                        f"to a directory outside it"
                    )
                _make_private_dir(self.pool_dir)
                self._source = _source(self.repo_root, self._cancel)
            if snapshot is not None and snapshot.repo_root.resolve() != self.repo_root.resolve():
                raise WorktreeError(
                    f"a snapshot of {snapshot.repo_root} cannot be checked out by the "
                    f"worktree pool of {self.repo_root}"
                )
            return self._source, self.pool_dir

    def _lock_free_slot(self, pool_dir: Path, skip: Collection[Path]) -> Path:
        """Lock the lowest-numbered slot that nobody holds or keeps; never wait for one."""
        with self._state_lock:
            number = 0
            while True:
                slot = pool_dir / f"slot-{number}"
                number += 1
                if slot in self._held or slot in skip:
                    continue
                lock = _slot_lock(slot)
                if not _try_slot_lock(lock):
                    continue
                # Checked under the lock: a run marks a slot kept before it unlocks it.
                marker = _kept_marker(slot)
                if marker.exists():
                    if os.path.lexists(slot):
                        lock.release()
                        continue
                    # The user deleted the kept worktree: they are done with it.
                    marker.unlink()
                self._held[slot] = lock
                return slot

    def _unhold(self, slot: Path) -> None:
        """Unlock ``slot`` after a failed, skipped or cancelled acquire."""
        with self._state_lock:
            lock = self._held.pop(slot, None)
        if lock is not None:
            lock.release()

    def _prepare_slot(
        self,
        slot: Path,
        state: SlotState,
        snapshot: Snapshot,
        source: _Source,
        copy_patterns: Sequence[str],
    ) -> None:
        """Bring the locked ``slot`` to the snapshot: reuse, repair or create."""
        moved = False
        if state == "ours":
            try:
                _move_slot(slot, snapshot, source, self._cancel)
                moved = True
            except WorktreeError:
                moved = False  # corrupt index, a git directory a test broke, ...: recreate
        elif state == "legacy":
            _unregister_legacy_slot(self.repo_root, slot, self._cancel)
        if not moved:
            _create_slot(slot, snapshot, source, self._cancel)
        _checkout_gitlinks(snapshot.repo_root, slot, self._cancel)
        _copy_ignored(snapshot.repo_root, slot, copy_patterns, self._cancel)


def _release_slot(slot: Path, lock: filelock.FileLock, *, keep: bool) -> bool:
    """Unlock ``slot``, marking it kept first if asked; return False if it could not be marked."""
    marked = True
    if keep:
        try:
            _kept_marker(slot).write_text(
                f"kept for inspection by the run of process {os.getpid()}; "
                "`python -m pytest_parallel_modules clean` removes it\n",
                encoding="utf-8",
            )
        except OSError:
            marked = False
    lock.release()
    return marked


def _slot_number(slot: Path) -> int:
    """Return ``n`` for ``.../slot-<n>``, -1 for any other name."""
    match = _SLOT_PATTERN.fullmatch(slot.name)
    return int(match.group(1)) if match else -1


def clean_pool(repo_root: Path, pool_dir: Path | None = None) -> list[Path]:
    """Remove every slot of the pool that no running run holds. Runs in ``clean``.

    Each slot directory is deleted, its own repository with it. Slots kept for inspection
    (``--keep-failed-worktrees``) are removed too, with their ``.kept`` marker (see
    :func:`kept_slots` to tell them apart first). The snapshot objects of runs that are
    over go as well. Slots made by older versions were registered as git worktrees of
    the repository: those are unregistered with ``git worktree remove --force``, and
    ``git worktree prune`` runs only if a registration of ours survives that. A removed
    slot's lock file is deleted while its lock is held (:func:`_try_slot_lock` tells a
    run that opened it just before from a holder); the pool directory goes too once
    nothing is left in it.

    :returns: the removed slot directories, in slot order.
    :raises WorktreeError: a git command failed.
    """
    pool = default_pool_dir(repo_root) if pool_dir is None else pool_dir
    resolved_pool = pool.resolve()
    registered = {
        path.name
        for path in _registered_worktrees(repo_root)
        if path.parent == resolved_pool and _SLOT_PATTERN.fullmatch(path.name)
    }
    present = {
        entry.name
        for entry in (pool.iterdir() if pool.is_dir() else ())
        if _SLOT_PATTERN.fullmatch(entry.name)
    } | {slot.name for slot in kept_slots(pool)}
    removed: list[Path] = []
    for name in sorted(registered | present, key=lambda name: _slot_number(Path(name))):
        slot = pool / name
        # Without a pool directory there is no lock file, so no run can hold the slot.
        lock = _slot_lock(slot) if pool.is_dir() else None
        if lock is not None and not _try_slot_lock(lock):
            continue  # in use by a running run
        try:
            if name in registered:
                _run_git(
                    ["-C", str(repo_root), "worktree", "remove", "--force", "--force", str(slot)]
                )
            try:
                _rmtree(slot)
                # After the slot: a marker left alone still says "kept" to the next run.
                _kept_marker(slot).unlink(missing_ok=True)
                if lock is not None:
                    # While held: see _try_slot_lock for why that is safe.
                    Path(lock.lock_file).unlink(missing_ok=True)
            except OSError as error:
                raise WorktreeError(f"could not delete {slot}: {error}") from error
            removed.append(slot)
        finally:
            if lock is not None:
                lock.release()
    removed_names = {slot.name for slot in removed}
    if any(
        path.parent == resolved_pool and path.name in removed_names
        for path in _registered_worktrees(repo_root)
    ):
        # `worktree remove` failed for one of ours (its directory is gone by now).
        _git(["-C", str(repo_root), "worktree", "prune"])
    _sweep_snapshots(pool, unlocked_too=True)
    _remove_empty_pool(pool)
    return removed


def _remove_empty_pool(pool: Path) -> None:
    """Delete the pool's snapshot directory and the pool directory, each if it is empty.

    The ``worktree-add.lock`` of earlier versions goes first (no run of this version
    takes it; one of an earlier version that holds it keeps it).
    """
    legacy = filelock.FileLock(str(pool / LEGACY_ADD_LOCK_NAME), thread_local=False)
    if (pool / LEGACY_ADD_LOCK_NAME).exists() and _try_lock(legacy):
        try:
            (pool / LEGACY_ADD_LOCK_NAME).unlink(missing_ok=True)
        finally:
            legacy.release()
    for directory in (pool / SNAPSHOTS_DIR_NAME, pool):
        try:
            directory.rmdir()
        except OSError:
            pass  # missing, or still holding a slot in use, a run's snapshot or lock
