"""Snapshot commits and the worktree pool. Runs in the controller (and in ``clean``).

This is the only module that runs git. A run proceeds in three steps:

1. :func:`take_snapshot` turns the user's working tree (tracked changes, staged
   or not, plus untracked files that are not ignored) into one commit. It
   works on a copy of the index, so HEAD, the index, the stash, branches, refs,
   config and working files are never changed, and ``.git/index.lock`` is
   neither needed nor taken.
2. :class:`WorktreePool` hands out one worktree per worker, detached at that
   commit. Slots live outside the checkout (:func:`default_pool_dir`), are
   locked with a :class:`filelock.FileLock` while a run uses them, and are
   reused across runs: moving a worktree to a new commit is much faster than
   ``git worktree add`` on a large repository. A slot released with ``keep``
   (``--keep-failed-worktrees``) is marked ``<slot>.kept`` and no run takes it
   until ``clean`` removes it.
3. :func:`clean_pool` removes the slots no running run holds, kept ones included.

The snapshot commit is reachable only through the detached HEAD of the
worktrees that use it, never through a ref, so ``git for-each-ref`` is unchanged
and ``git gc`` collects old snapshots once the slots have moved on.

Every git command gets its arguments as a list (no shell ever sees a path or a
pattern), ``GIT_TERMINAL_PROMPT=0``, ``LC_ALL=C`` and no stdin.
"""

from __future__ import annotations

from collections.abc import Collection
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
import hashlib
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


if TYPE_CHECKING:
    from types import TracebackType


__all__ = [
    "POOL_DIR_ENV",
    "Snapshot",
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
#: ``<pool>/worktree-add.lock`` serialises ``git worktree add`` within a pool.
WORKTREE_ADD_LOCK_NAME: Final = "worktree-add.lock"
#: Seconds to wait for another ``git worktree add`` in the same pool.
WORKTREE_ADD_WAIT_S: Final = 300.0

#: Git reads these to find the repository, index and objects instead of looking at ``-C``.
#: A git hook (pre-commit, post-checkout) that runs pytest exports some of them; left in
#: place, ``git -C <slot> checkout`` would write the *user's* index. This is the list of
#: ``git rev-parse --local-env-vars`` minus the config ones, which the user means globally.
_REPOSITORY_ENV_VARS: Final = frozenset(
    {
        "GIT_ALTERNATE_OBJECT_DIRECTORIES",
        "GIT_COMMON_DIR",
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
#: *their* checkouts, not ours; an fsmonitor daemon per slot would outlive the run; and
#: ``submodule.recurse=true`` would make checkout handle submodules its own way, which needs
#: the network -- :func:`_checkout_gitlinks` does it from local objects instead. A slot is
#: never sparse: the snapshot already holds exactly the files the user sees, and
#: ``git worktree add`` copies the main checkout's sparse settings into a new slot.
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
)

#: Settings for the commands that build the snapshot in a temporary index. A split index
#: would write a new sharedindex file into the user's git dir; a sparse index or sparse
#: checkout would make ``git add --all`` skip (and fail on) paths outside the cone.
_SNAPSHOT_CONFIG: Final = (
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
)


@final
class WorktreeError(ParallelModulesError):
    """A git command for the snapshot or the worktree pool failed; the message has git's stderr."""


@final
@dataclass(frozen=True, slots=True)
class Snapshot:
    """The user's working tree at the start of a run, as one commit."""

    #: Top of the work tree the snapshot was taken in.
    repo_root: Path
    #: Full hash of the snapshot commit (not referenced by any ref).
    commit: str


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


def _run_git(
    args: Sequence[str], *, env: Mapping[str, str] | None = None, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``git *args`` and return the finished process, whatever its exit code.

    :param input: text for git's stdin; without it, stdin is empty.
    :raises WorktreeError: git could not be started (not on PATH, ...).
    """
    try:
        return subprocess.run(
            ["git", *args],
            check=False,
            capture_output=True,
            # surrogateescape: paths that are not UTF-8 survive the round trip to os.fsencode.
            encoding="utf-8",
            errors="surrogateescape",
            input="" if input is None else input,
            env=_git_environment(env or {}),
        )
    except OSError as error:
        raise WorktreeError(f"could not run git: {error}") from error


def _git(
    args: Sequence[str], *, env: Mapping[str, str] | None = None, input: str | None = None
) -> str:
    """Run ``git *args`` and return its stdout.

    :raises WorktreeError: git failed; the message holds the command and git's stderr.
    """
    result = _run_git(args, env=env, input=input)
    if result.returncode != 0:
        raise WorktreeError(
            f"`git {shlex.join(args)}` failed with exit code {result.returncode}:\n"
            f"{result.stderr.strip()}"
        )
    return result.stdout


def _git_path(directory: Path, name: str) -> Path:
    """Return the absolute path of ``name`` inside the git directory of ``directory``.

    ``--git-path`` answers for linked worktrees and submodules too (their git directory is
    not ``<top>/.git``); its answer is relative to ``directory`` unless it is absolute.
    """
    output = _git(["-C", str(directory), "rev-parse", "--git-path", name])
    return directory / output.rstrip("\n")


def _common_dir(directory: Path) -> Path:
    """Return the resolved git directory shared by every worktree of ``directory``'s repo."""
    output = _git(["-C", str(directory), "rev-parse", "--git-common-dir"])
    return (directory / output.rstrip("\n")).resolve()


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


def take_snapshot(repo_root: Path) -> Snapshot:
    """Commit the working tree of ``repo_root`` without touching the user's git state.

    Runs in the controller. A copy of the index is updated with ``git add --all`` and
    written as a tree; the commit's parent is HEAD when there is one. Seeding the copy
    from the real index means only files whose stat data changed are hashed again.

    :param repo_root: the top of a work tree (see :func:`find_repo_root`).
    :returns: the snapshot; its commit is not referenced by any ref.
    :raises WorktreeError: a git command failed (its stderr is in the message).
    """
    index = _git_path(repo_root, "index")
    head = _run_git(["-C", str(repo_root), "rev-parse", "--verify", "--quiet", "HEAD^{commit}"])
    parent_args = ["-p", head.stdout.strip()] if head.returncode == 0 else []

    with tempfile.TemporaryDirectory(prefix="pytest-parallel-modules-") as temporary:
        temporary_index = Path(temporary) / "index"
        try:
            # copy2 keeps the index's mtime: git compares it with file mtimes to spot files
            # changed in the same instant the index was written ("racy git"). A fresh mtime
            # would make such files look clean and leave their new content out.
            shutil.copy2(index, temporary_index)
        except FileNotFoundError:
            pass  # no index yet (fresh repository): git add starts from an empty one
        except OSError as error:
            raise WorktreeError(f"could not copy the git index {index}: {error}") from error
        index_env = {"GIT_INDEX_FILE": str(temporary_index)}
        # Entries git was told not to look at (outside a sparse checkout's cone,
        # --skip-worktree, --assume-unchanged) are compared with the working tree too:
        # the snapshot holds what the user sees, and a file missing there is missing here.
        _look_at_every_entry(repo_root, _SNAPSHOT_CONFIG, index_env)
        _git([*_SNAPSHOT_CONFIG, "-C", str(repo_root), "add", "--all"], env=index_env)
        tree = _git([*_SNAPSHOT_CONFIG, "-C", str(repo_root), "write-tree"], env=index_env).strip()

    commit = _git(
        [
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
            "GIT_AUTHOR_NAME": _SNAPSHOT_IDENTITY,
            "GIT_AUTHOR_EMAIL": _SNAPSHOT_EMAIL,
            "GIT_COMMITTER_NAME": _SNAPSHOT_IDENTITY,
            "GIT_COMMITTER_EMAIL": _SNAPSHOT_EMAIL,
        },
    ).strip()
    return Snapshot(repo_root=repo_root, commit=commit)


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


def _is_within(path: Path, directory: Path) -> bool:
    """Return whether resolved ``path`` is ``directory`` or lies below it."""
    return path == directory or directory in path.parents


def _make_private_dir(directory: Path) -> None:
    """Create ``directory`` (and missing parents) and make it readable by its owner only."""
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(directory, 0o700)  # mkdir's mode is filtered by the umask
    except OSError as error:
        raise WorktreeError(f"could not create the worktree pool {directory}: {error}") from error


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


def _slot_state(slot: Path, common_dir: Path) -> Literal["missing", "ours", "foreign", "broken"]:
    """Say what ``slot`` holds: nothing, a worktree of our repository or of another, or junk."""
    if not os.path.lexists(slot):
        return "missing"
    if not (slot / ".git").is_file():
        return "broken"
    result = _run_git(["-C", str(slot), "rev-parse", "--show-toplevel", "--git-common-dir"])
    lines = result.stdout.splitlines()
    if result.returncode != 0 or len(lines) != 2 or Path(lines[0]).resolve() != slot.resolve():
        return "broken"  # e.g. its registration in <common dir>/worktrees was deleted
    if (slot / lines[1]).resolve() != common_dir:
        return "foreign"
    return "ours"


def _look_at_every_entry(
    directory: Path, config: Sequence[str], env: Mapping[str, str] | None = None
) -> None:
    """Clear the skip-worktree and assume-unchanged bits of every entry of the index.

    With them set, git takes an entry's file as unchanged without looking at it: ``add
    --all`` would keep a file the user cannot see (outside a sparse checkout's cone) or
    miss an edit (``update-index --assume-unchanged``), and ``checkout --force`` would not
    restore a file a test deleted or edited in a slot.

    :param env: ``GIT_INDEX_FILE`` for a temporary index.
    """
    listing = _git([*config, "-C", str(directory), "ls-files", "-z", "-v"], env=env)
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
                [*config, "-C", str(directory), "update-index", "-z", flag, "--stdin"],
                env=env,
                input="".join(f"{path}\0" for path in paths),
            )


def _reset_checkout(checkout: Path, commit: str) -> None:
    """Move an existing checkout to ``commit`` and delete every file git does not track."""
    # A test may have marked files skip-worktree or assume-unchanged (or a sparse checkout
    # left them so): checkout would then keep what the test left in them.
    _look_at_every_entry(checkout, _SLOT_CONFIG)
    _git([*_SLOT_CONFIG, "-C", str(checkout), "checkout", "--quiet", "--detach", "--force", commit])
    # -ff: also nested repositories a test created; -x: ignored files too (caches, builds).
    _git([*_SLOT_CONFIG, "-C", str(checkout), "clean", "-ffdxq"])


def _create_slot(repo_root: Path, slot: Path, commit: str) -> None:
    """Make ``slot`` a fresh worktree of ``repo_root`` detached at ``commit``."""
    _rmtree(slot)
    # One `git worktree add` at a time per pool, across threads and runs: it reads every
    # registration under <common dir>/worktrees, and fails on one a concurrent add is
    # still writing ("fatal: failed to read .git/worktrees/slot-2/commondir").
    add_lock = filelock.FileLock(
        str(slot.parent / WORKTREE_ADD_LOCK_NAME), thread_local=False, timeout=WORKTREE_ADD_WAIT_S
    )
    try:
        with add_lock:
            # --force twice: take over a registration whose directory is gone, even one
            # left locked ("initializing") by a `git worktree add` that was killed --
            # without a repository-wide `git worktree prune`.
            _git(
                [
                    *_SLOT_CONFIG,
                    "-C",
                    str(repo_root),
                    "worktree",
                    "add",
                    "--quiet",
                    "--detach",
                    "--force",
                    "--force",
                    str(slot),
                    commit,
                ]
            )
    except filelock.Timeout as error:
        raise WorktreeError(
            f"waited {WORKTREE_ADD_WAIT_S:g}s for another run to finish creating a worktree "
            f"in {slot.parent}"
        ) from error


def _drop_sparse_settings(slot: Path) -> None:
    """Make a slot's own git settings say it is not sparse, as its files are not.

    ``git worktree add`` copies the main checkout's per-worktree config (``config.worktree``,
    with ``core.sparseCheckout``) into a new slot, and a test may run ``git sparse-checkout``
    in one; git commands that tests run in the slot must see a full checkout.
    """
    try:
        pointer = (slot / ".git").read_text(encoding="utf-8", errors="surrogateescape")
    except OSError:
        return
    if not pointer.startswith("gitdir: "):
        return
    git_dir = slot / pointer[len("gitdir: ") :].strip()
    config = git_dir / "config.worktree"
    if config.is_file():
        for key in ("core.sparseCheckout", "core.sparseCheckoutCone"):
            # Exit code 5 when the key is not set: nothing to do.
            _run_git(["config", "--file", str(config), "--unset-all", key])
    try:
        (git_dir / "info" / "sparse-checkout").unlink(missing_ok=True)
    except OSError as error:
        raise WorktreeError(f"could not reset the sparse settings of {slot}: {error}") from error


def _checkout_gitlinks(source_root: Path, checkout: Path) -> None:
    """Check out the submodules of ``checkout`` from the ones checked out under ``source_root``.

    Each gitlink whose directory in the main checkout is a repository becomes a
    repository in the worktree that borrows the main one's objects (``alternates``),
    detached at the recorded commit: no network, no ``.gitmodules`` URL, no change to
    the user's config (``git submodule init`` would write to it). Gitlinks that are not
    checked out in the main checkout stay empty directories, as git leaves them.
    Recurses into nested submodules.
    """
    output = _git(["-C", str(checkout), "ls-files", "--stage", "-z"])
    for record in output.split("\0"):
        if not record.startswith("160000 "):
            continue
        meta, path = record.split("\t", 1)
        commit = meta.split(" ")[1]
        source = source_root / path
        target = checkout / path
        if not (source / ".git").exists():
            continue
        if (target / ".git").exists():
            try:
                _reset_checkout(target, commit)
            except WorktreeError:
                _rmtree(target)
            else:
                _checkout_gitlinks(source, target)
                continue
        objects = _git_path(source, "objects")
        target.mkdir(parents=True, exist_ok=True)
        # --template=: no sample hooks, nothing but what checkout needs.
        _git(["init", "--quiet", "--template=", str(target)])
        alternates = _git_path(target, "objects") / "info" / "alternates"
        alternates.parent.mkdir(parents=True, exist_ok=True)
        alternates.write_text(f"{objects}\n", encoding="utf-8", errors="surrogateescape")
        try:
            _git([*_SLOT_CONFIG, "-C", str(target), "checkout", "--quiet", "--detach", commit])
        except WorktreeError as error:
            raise WorktreeError(
                f"submodule {path!r} needs commit {commit}, which its checkout in "
                f"{source} does not have:\n{error}"
            ) from error
        _checkout_gitlinks(source, target)


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


def _copy_ignored(repo_root: Path, worktree_root: Path, patterns: Sequence[str]) -> None:
    """Bring the paths matching ``patterns`` from the main checkout into the worktree."""
    for pattern in patterns:
        for source in _matches(repo_root, pattern):
            target = worktree_root / source.relative_to(repo_root)
            try:
                if source.is_dir() and not source.is_symlink():
                    for directory, subdirectories, files in os.walk(source):
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
                    _link_or_copy_file(source, target)
            except OSError as error:
                raise WorktreeError(
                    f"could not copy {source} into the worktree {worktree_root}: {error}"
                ) from error


@final
class WorktreePool:
    """Worktrees of one repository, each locked by at most one run. Runs in the controller.

    Use as a context manager; leaving it releases every slot::

        with WorktreePool(repo_root) as pool:
            roots = [pool.acquire(snapshot) for _ in range(workers)]
            ...
            pool.release(keep=failed_roots)

    :meth:`acquire` may be called from several threads at once.
    """

    def __init__(self, repo_root: Path, pool_dir: Path | None = None) -> None:
        #: Top of the main checkout.
        self.repo_root = repo_root
        #: Directory holding the slots; outside the checkout.
        self.pool_dir = default_pool_dir(repo_root) if pool_dir is None else pool_dir
        self._state_lock = threading.Lock()
        self._held: dict[Path, filelock.FileLock] = {}
        self._common_dir: Path | None = None

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

    def acquire(self, snapshot: Snapshot, copy_patterns: Sequence[str] = ()) -> Path:
        """Return the root of a worktree detached at ``snapshot.commit``, locked for this pool.

        Called by the controller, possibly from several threads at once. Takes the first
        slot no run holds and none kept for inspection; an existing worktree there is moved
        to the commit and cleaned (``checkout --force`` + ``clean -ffdx``), a missing or
        broken one is (re)created.

        :param snapshot: taken in this pool's repository.
        :param copy_patterns: globs, relative to the repository root, of ignored paths to
            copy into the worktree after checkout (copies, so a test that rewrites one
            never rewrites the user's original).
        :raises WorktreeError: git failed, or the pool would lie inside the checkout.
        """
        common_dir, pool_dir = self._prepare(snapshot)
        skip: set[Path] = set()
        while True:
            slot = self._lock_free_slot(pool_dir, skip)
            try:
                state = _slot_state(slot, common_dir)
                if state == "foreign":
                    # An explicit pool_dir shared with another repository: leave its slot alone.
                    skip.add(slot)
                    self._unhold(slot)
                    continue
                self._prepare_slot(slot, state, snapshot, copy_patterns)
            except BaseException:
                self._unhold(slot)
                raise
            return slot

    def release_slot(self, slot: Path) -> None:
        """Unlock one slot as soon as its worker exits, so a later start (or run) may take it.

        Never raises: it runs while the controller handles the worker's exit.
        """
        with self._state_lock:
            lock = self._held.pop(slot, None)
        if lock is not None:
            lock.release()

    def release(self, keep: Collection[Path] = ()) -> list[Path]:
        """Unlock every slot this pool holds. Called by the controller at the end of a run.

        Nothing is deleted or reset here -- a slot is reset when a run next acquires it.
        The slots in ``keep`` (``--keep-failed-worktrees``) are marked ``<slot>.kept``
        first, while still locked, so no later run takes them: they stay exactly as this
        run left them until ``clean`` removes them (or the user deletes the worktree).
        Never raises: it runs while the controller shuts down.

        :param keep: worktree roots the controller wants left for inspection.
        :returns: the slots of ``keep`` that could not be marked (the pool directory is
            not writable): released like the others, a later run may reuse them.
        """
        with self._state_lock:
            held = dict(self._held)
            self._held.clear()
        unmarked: list[Path] = []
        for slot, lock in held.items():
            if slot in keep:
                try:
                    _kept_marker(slot).write_text(
                        f"kept for inspection by the run of process {os.getpid()}; "
                        "`python -m pytest_parallel_modules clean` removes it\n",
                        encoding="utf-8",
                    )
                except OSError:
                    unmarked.append(slot)
            lock.release()
        return unmarked

    def _prepare(self, snapshot: Snapshot) -> tuple[Path, Path]:
        """Check the snapshot's repository; create the pool directory on first use."""
        with self._state_lock:
            if self._common_dir is None:
                pool_dir = self.pool_dir.resolve()
                if _is_within(pool_dir, self.repo_root.resolve()):
                    raise WorktreeError(
                        f"the worktree pool {self.pool_dir} lies inside the checkout "
                        f"{self.repo_root}: pytest would collect it; set {POOL_DIR_ENV} "
                        f"to a directory outside it"
                    )
                _make_private_dir(self.pool_dir)
                self._common_dir = _common_dir(self.repo_root)
            if snapshot.repo_root.resolve() != self.repo_root.resolve():
                raise WorktreeError(
                    f"a snapshot of {snapshot.repo_root} cannot be checked out by the "
                    f"worktree pool of {self.repo_root}"
                )
            return self._common_dir, self.pool_dir

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
                if not _try_lock(lock):
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
        """Unlock ``slot`` after a failed or skipped acquire."""
        with self._state_lock:
            lock = self._held.pop(slot)
        lock.release()

    def _prepare_slot(
        self,
        slot: Path,
        state: Literal["missing", "ours", "broken"],
        snapshot: Snapshot,
        copy_patterns: Sequence[str],
    ) -> None:
        """Bring the locked ``slot`` to the snapshot: reuse, repair or create."""
        moved = False
        if state == "ours":
            try:
                _reset_checkout(slot, snapshot.commit)
                moved = True
            except WorktreeError:
                moved = False  # corrupt index, stale index.lock, ...: recreate below
        if not moved:
            _create_slot(self.repo_root, slot, snapshot.commit)
        _drop_sparse_settings(slot)
        _checkout_gitlinks(snapshot.repo_root, slot)
        _copy_ignored(snapshot.repo_root, slot, copy_patterns)


def _slot_number(slot: Path) -> int:
    """Return ``n`` for ``.../slot-<n>``, -1 for any other name."""
    match = _SLOT_PATTERN.fullmatch(slot.name)
    return int(match.group(1)) if match else -1


def clean_pool(repo_root: Path, pool_dir: Path | None = None) -> list[Path]:
    """Remove every slot of the pool that no running run holds. Runs in ``clean``.

    Each slot is unregistered with ``git worktree remove --force`` and its directory
    deleted; ``git worktree prune`` runs only if a registration of ours survives that.
    Slots kept for inspection (``--keep-failed-worktrees``) are removed too, with their
    ``.kept`` marker (see :func:`kept_slots` to tell them apart first). Lock files stay:
    deleting a lock file another process has open lets two processes hold "the same" lock.

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
        if lock is not None and not _try_lock(lock):
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
    return removed
