"""The snapshot and the worktree pool, against real git repositories in ``tmp_path``."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
import hashlib
import os
from pathlib import Path
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import filelock
import pytest

from pytest_parallel_modules import worktrees
from pytest_parallel_modules.commands import clean
from pytest_parallel_modules.worktrees import clean_pool
from pytest_parallel_modules.worktrees import default_pool_dir
from pytest_parallel_modules.worktrees import find_repo_root
from pytest_parallel_modules.worktrees import kept_slots
from pytest_parallel_modules.worktrees import map_into_worktree
from pytest_parallel_modules.worktrees import Snapshot
from pytest_parallel_modules.worktrees import take_snapshot
from pytest_parallel_modules.worktrees import WorktreeCancelled
from pytest_parallel_modules.worktrees import WorktreeError
from pytest_parallel_modules.worktrees import WorktreePool
from tests.conftest import GitRepo
from tests.e2e.git_state import all_objects
from tests.e2e.git_state import git_dir_digest
from tests.e2e.git_state import readable_by_others
from tests.e2e.git_state import secret_holders


pytestmark = pytest.mark.e2e

INITIAL_FILES = {
    "README.md": "# demo\n",
    ".gitignore": "*.log\nbuild/\n",
    "src/pkg/__init__.py": "",
    "src/pkg/mod.py": "VALUE = 1\n",
    "tests/test_a.py": "def test_a():\n    pass\n",
    "dir with space/naïve file.txt": "unicode\n",
}


def git(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run git in ``cwd`` and return its stdout; fail the test on a non-zero exit."""
    result = subprocess.run(
        ["git", *args],
        cwd=cwd,
        check=False,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert result.returncode == 0, f"git {args} failed: {result.stderr}"
    return result.stdout


def write(root: Path, files: dict[str, str]) -> None:
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")


def make_repo(root: Path, files: dict[str, str] = INITIAL_FILES) -> Path:
    root.mkdir(parents=True)
    git("init", "--quiet", "--initial-branch=main", cwd=root)
    git("config", "user.name", "Test User", cwd=root)
    git("config", "user.email", "test@example.com", cwd=root)
    write(root, files)
    git("add", "--all", cwd=root)
    git("commit", "--quiet", "-m", "initial", cwd=root)
    return root


@pytest.fixture(autouse=True)
def isolated_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the user's git config and cache directory out of every test."""
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("PYTEST_PARALLEL_MODULES_POOL_DIR", str(tmp_path / "pools"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo")


@pytest.fixture
def pool_dir(tmp_path: Path) -> Path:
    return tmp_path / "pool"


@pytest.fixture
def pool(repo: Path, pool_dir: Path) -> Iterator[WorktreePool]:
    with WorktreePool(repo, pool_dir) as pool:
        yield pool


def snap(repo: Path) -> Snapshot:
    """Take a snapshot of ``repo`` into a new directory next to it (outside the checkout)."""
    return take_snapshot(repo, Path(tempfile.mkdtemp(prefix="snapshot-", dir=repo.parent)))


def snapshot_env(snapshot: Snapshot, repo: Path) -> dict[str, str]:
    """The environment in which git in ``repo`` sees the snapshot's private objects too."""
    common = Path(git("rev-parse", "--git-common-dir", cwd=repo).strip())
    return {
        "GIT_OBJECT_DIRECTORY": str(snapshot.directory / "objects"),
        "GIT_ALTERNATE_OBJECT_DIRECTORIES": str((repo / common).resolve() / "objects"),
    }


def tree_files(snapshot: Snapshot, repo: Path) -> dict[str, bytes]:
    """Return every file of the snapshot's commit, path -> content."""
    env = {**os.environ, **snapshot_env(snapshot, repo)}
    names = git("ls-tree", "-r", "-z", "--name-only", snapshot.commit, cwd=repo, env=env)
    return {
        name: subprocess.run(
            ["git", "cat-file", "blob", f"{snapshot.commit}:{name}"],
            cwd=repo,
            capture_output=True,
            env=env,
        ).stdout
        for name in names.split("\0")
        if name
    }


def checkout_files(root: Path) -> dict[str, bytes]:
    """Return every file under ``root`` except git's own, path -> content."""
    files = {}
    for directory, subdirectories, names in os.walk(root):
        subdirectories[:] = [name for name in subdirectories if name != ".git"]
        for name in names:
            if name == ".git":
                continue
            path = Path(directory, name)
            files[path.relative_to(root).as_posix()] = path.read_bytes()
    return files


def visible_files(repo: Path) -> dict[str, bytes]:
    """Return the files of the working tree that a snapshot must hold (tracked + untracked)."""
    names = git("ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=repo)
    return {
        name: (repo / name).read_bytes()
        for name in names.split("\0")
        if name and (repo / name).is_file()
    }


# -- find_repo_root ---------------------------------------------------------------------


def test_find_repo_root(repo: Path, tmp_path: Path) -> None:
    assert find_repo_root(repo / "src" / "pkg") == repo
    assert find_repo_root(repo / "src" / "pkg" / "mod.py") == repo
    outside = tmp_path / "outside"
    outside.mkdir()
    assert find_repo_root(outside) is None


def test_find_repo_root_bare_repository(tmp_path: Path) -> None:
    bare = tmp_path / "bare.git"
    git("init", "--quiet", "--bare", str(bare), cwd=tmp_path)
    assert find_repo_root(bare) is None


def test_find_repo_root_without_git(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert find_repo_root(repo) is None


# -- take_snapshot ------------------------------------------------------------------------


def test_snapshot_holds_the_working_tree(repo: Path) -> None:
    (repo / "src/pkg/mod.py").write_text("VALUE = 2  # unstaged\n")
    (repo / "README.md").write_text("# staged\n")
    git("add", "README.md", cwd=repo)
    (repo / "tests/test_a.py").unlink()
    write(repo, {"new dir/ünïcode new.py": "untracked\n", "debug.log": "ignored\n"})
    write(repo, {"build/ext.so": "ignored too\n"})

    snapshot = snap(repo)

    files = tree_files(snapshot, repo)
    assert files["src/pkg/mod.py"] == b"VALUE = 2  # unstaged\n"
    assert files["README.md"] == b"# staged\n"
    assert files["new dir/ünïcode new.py"] == b"untracked\n"
    assert files["dir with space/naïve file.txt"] == b"unicode\n"
    assert "tests/test_a.py" not in files
    assert "debug.log" not in files
    assert "build/ext.so" not in files
    assert files == visible_files(repo)
    parent = git(
        "rev-parse", f"{snapshot.commit}^", cwd=repo, env=snapshot_env(snapshot, repo)
    ).strip()
    assert parent == git("rev-parse", "HEAD", cwd=repo).strip()
    assert snapshot == Snapshot(
        repo_root=repo, commit=snapshot.commit, directory=snapshot.directory
    )


def test_snapshot_leaves_out_bytecode_caches(repo: Path) -> None:
    """The controller's collection writes them while the snapshot is taken (through
    temporary files that vanish, which once made the snapshot fail)."""
    write(
        repo,
        {
            "__pycache__/conftest.cpython-311.pyc": "bytecode\n",
            "tests/__pycache__/test_a.cpython-311-pytest-9.2.0.pyc.4242": "half written\n",
            "tests/test_new.py": "def test_new():\n    pass\n",
        },
    )
    files = tree_files(snap(repo), repo)
    assert "tests/test_new.py" in files
    assert not [name for name in files if "__pycache__" in name]


def test_a_file_that_vanishes_while_staging_is_staged_again(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_git = worktrees._git
    failures = []

    def flaky_git(args: list[str], **kwargs: object) -> str:
        if "add" in args and not failures:
            failures.append(args)
            raise WorktreeError("fatal: unable to stat 'tmp.123': No such file or directory")
        return real_git(args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(worktrees, "_git", flaky_git)
    write(repo, {"tests/test_new.py": "def test_new():\n    pass\n"})
    files = tree_files(snap(repo), repo)
    assert failures and "tests/test_new.py" in files


def test_snapshot_before_the_first_commit(tmp_path: Path) -> None:
    root = tmp_path / "fresh"
    root.mkdir()
    git("init", "--quiet", cwd=root)
    write(root, {"a.py": "A = 1\n"})

    snapshot = snap(root)

    assert tree_files(snapshot, root) == {"a.py": b"A = 1\n"}
    parents = git(
        "rev-list",
        "--parents",
        "-n",
        "1",
        snapshot.commit,
        cwd=root,
        env=snapshot_env(snapshot, root),
    ).split()
    assert parents == [snapshot.commit]


def test_snapshot_on_a_detached_head_without_identity(repo: Path) -> None:
    git("commit", "--quiet", "--allow-empty", "-m", "second", cwd=repo)
    git("checkout", "--quiet", "--detach", "HEAD~1", cwd=repo)
    git("config", "--unset", "user.name", cwd=repo)
    git("config", "--unset", "user.email", cwd=repo)
    write(repo, {"extra.py": "X = 1\n"})

    snapshot = snap(repo)

    assert tree_files(snapshot, repo)["extra.py"] == b"X = 1\n"
    parent = git(
        "rev-parse", f"{snapshot.commit}^", cwd=repo, env=snapshot_env(snapshot, repo)
    ).strip()
    assert parent == git("rev-parse", "HEAD", cwd=repo).strip()


def test_snapshot_in_a_shallow_clone(repo: Path, tmp_path: Path, pool_dir: Path) -> None:
    git("commit", "--quiet", "--allow-empty", "-m", "second", cwd=repo)
    clone = tmp_path / "shallow"
    git("clone", "--quiet", "--depth", "1", repo.as_uri(), str(clone), cwd=tmp_path)
    assert git("rev-parse", "--is-shallow-repository", cwd=clone).strip() == "true"
    write(clone, {"src/pkg/mod.py": "VALUE = 3\n"})

    snapshot = snap(clone)

    with WorktreePool(clone, pool_dir) as pool:
        worktree = pool.acquire(snapshot)
        assert (worktree / "src/pkg/mod.py").read_text() == "VALUE = 3\n"


def test_snapshot_while_the_index_is_locked(repo: Path) -> None:
    lock = repo / ".git" / "index.lock"
    lock.write_bytes(b"someone else's half-written index")
    write(repo, {"new.py": "N = 1\n"})

    snapshot = snap(repo)

    assert "new.py" in tree_files(snapshot, repo)
    assert lock.read_bytes() == b"someone else's half-written index"


def test_snapshot_of_a_linked_worktree(repo: Path, tmp_path: Path, pool_dir: Path) -> None:
    linked = tmp_path / "linked"
    git("worktree", "add", "--quiet", "--detach", str(linked), cwd=repo)
    write(linked, {"src/pkg/mod.py": "VALUE = 'linked'\n"})
    index = linked / git("rev-parse", "--git-path", "index", cwd=linked).strip()
    index_before = index.read_bytes()

    snapshot = snap(linked)

    assert index.read_bytes() == index_before
    with WorktreePool(linked, pool_dir) as pool:
        worktree = pool.acquire(snapshot)
        assert (worktree / "src/pkg/mod.py").read_text() == "VALUE = 'linked'\n"


def present_files(root: Path) -> dict[str, bytes]:
    """Return the files the user sees under ``root`` (not git's own, not ignored ones)."""
    return {name: content for name, content in checkout_files(root).items() if name != "debug.log"}


@pytest.mark.parametrize(
    "sparse_args",
    [["--cone", "src"], ["--sparse-index", "src"], ["--no-cone", "/src/", "/*.md"]],
    ids=["cone", "sparse-index", "no-cone"],
)
def test_a_sparse_checkout_is_snapshotted_as_the_user_sees_it(
    repo: Path, pool_dir: Path, sparse_args: list[str]
) -> None:
    git("sparse-checkout", "set", *sparse_args, cwd=repo)
    assert not (repo / "tests").exists()
    # Files the user made outside the cone are there for them, so they are in the snapshot.
    write(repo, {"tests/test_new.py": "new\n", "src/pkg/mod.py": "VALUE = 'sparse'\n"})
    before = user_state(repo)

    snapshot = snap(repo)

    files = tree_files(snapshot, repo)
    assert files == present_files(repo)
    assert "tests/test_a.py" not in files
    assert files["tests/test_new.py"] == b"new\n"
    assert user_state(repo) == before
    with WorktreePool(repo, pool_dir) as pool:
        worktree = pool.acquire(snapshot)
        assert checkout_files(worktree) == files
        # Nothing in the slot says it is sparse: git commands tests run there see all files.
        assert git("ls-files", "-v", cwd=worktree).count("S ") == 0
        listed = git("config", "--list", cwd=worktree)
        assert "core.sparsecheckout=true" not in listed

    # The same slot, once the user turns the sparse checkout off: every file again.
    git("sparse-checkout", "disable", cwd=repo)
    snapshot = snap(repo)
    with WorktreePool(repo, pool_dir) as pool:
        assert pool.acquire(snapshot) == worktree
        assert checkout_files(worktree) == present_files(repo)
        assert (worktree / "tests/test_a.py").is_file()


def test_skip_worktree_and_assume_unchanged_files_are_snapshotted_as_seen(repo: Path) -> None:
    git("update-index", "--skip-worktree", "README.md", cwd=repo)
    git("update-index", "--assume-unchanged", "src/pkg/mod.py", cwd=repo)
    write(repo, {"README.md": "# local edit\n", "src/pkg/mod.py": "VALUE = 'hidden edit'\n"})
    (repo / "tests/test_a.py").unlink()
    git("update-index", "--skip-worktree", "tests/test_a.py", cwd=repo)
    before = user_state(repo)

    snapshot = snap(repo)

    files = tree_files(snapshot, repo)
    assert files["README.md"] == b"# local edit\n"
    assert files["src/pkg/mod.py"] == b"VALUE = 'hidden edit'\n"
    assert "tests/test_a.py" not in files
    assert user_state(repo) == before


def test_a_slot_where_a_test_hid_its_changes_from_git_is_reset(repo: Path, pool_dir: Path) -> None:
    snapshot = snap(repo)
    with WorktreePool(repo, pool_dir) as pool:
        worktree = pool.acquire(snapshot)
        write(worktree, {"src/pkg/mod.py": "edited by a test\n"})
        git("update-index", "--assume-unchanged", "src/pkg/mod.py", cwd=worktree)
        (worktree / "README.md").unlink()
        git("update-index", "--skip-worktree", "README.md", cwd=worktree)
        git("sparse-checkout", "set", "tests", cwd=worktree)
        assert not (worktree / "dir with space").exists()

    with WorktreePool(repo, pool_dir) as pool:
        assert pool.acquire(snapshot) == worktree
        assert checkout_files(worktree) == visible_files(repo)
        tags = {line[:1] for line in git("ls-files", "-v", cwd=worktree).splitlines()}
        assert tags == {"H"}


def test_snapshot_outside_a_repository(tmp_path: Path) -> None:
    with pytest.raises(WorktreeError, match="not a git repository"):
        take_snapshot(tmp_path, tmp_path.parent / f"{tmp_path.name}-snapshot")


# -- nothing lost -------------------------------------------------------------------------


def user_state(repo: Path) -> dict[str, object]:
    """Everything of the user's that a run must leave exactly as it was."""
    index = repo / ".git" / "index"
    index_stat = index.stat()
    # Read the index before `git status`, and stop status from refreshing it.
    state: dict[str, object] = {
        "index": index.read_bytes(),
        "index_stat": (index_stat.st_ino, index_stat.st_mtime_ns),
        "files": {
            name: hashlib.sha256(content).hexdigest()
            for name, content in checkout_files(repo).items()
        },
    }
    no_locks = {"GIT_OPTIONAL_LOCKS": "0"}
    for name, args in {
        "status": ["status", "--porcelain=v2", "--branch", "--untracked-files=all"],
        "ignored": ["status", "--porcelain=v2", "--ignored"],
        "stash": ["stash", "list"],
        "refs": ["for-each-ref"],
        "head": ["rev-parse", "HEAD"],
        "symbolic_head": ["symbolic-ref", "HEAD"],
        "config": ["config", "--list", "--local"],
        "lock_files": ["rev-parse", "--git-path", "index.lock"],
    }.items():
        state[name] = git(*args, cwd=repo, env=no_locks)
    return state


def test_nothing_is_lost(repo: Path, pool_dir: Path) -> None:
    git("branch", "feature", cwd=repo)
    git("tag", "v1", cwd=repo)
    write(repo, {"src/pkg/mod.py": "VALUE = 'stashed'\n"})
    git("stash", "--quiet", cwd=repo)
    write(repo, {"README.md": "# staged\n"})
    git("add", "README.md", cwd=repo)
    write(repo, {"src/pkg/mod.py": "VALUE = 'unstaged'\n", "untracked.py": "U = 1\n"})
    write(repo, {"debug.log": "ignored\n"})
    (repo / "tests/test_a.py").unlink()
    before = user_state(repo)

    snapshot = snap(repo)
    with WorktreePool(repo, pool_dir) as pool:
        for worktree in (pool.acquire(snapshot), pool.acquire(snapshot)):
            write(worktree, {"src/pkg/mod.py": "changed by a test\n", "out.log": "x\n"})
        pool.release(keep=pool.held[:1])

    assert user_state(repo) == before


def test_a_git_hook_environment_cannot_redirect_git(
    repo: Path, pool_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What git exports to a hook (pre-commit running pytest): without scrubbing, the
    # checkout that moves a slot would move the user's HEAD and rewrite their index.
    write(repo, {"staged.py": "S = 1\n"})
    git("add", "staged.py", cwd=repo)
    before = user_state(repo)

    with monkeypatch.context() as patch:
        patch.setenv("GIT_DIR", str(repo / ".git"))
        patch.setenv("GIT_WORK_TREE", str(repo))
        patch.setenv("GIT_INDEX_FILE", str(repo / ".git" / "index"))
        snapshot = snap(repo)
        for _ in range(2):  # create, then move
            with WorktreePool(repo, pool_dir) as pool:
                pool.acquire(snapshot)

    assert user_state(repo) == before


# -- the pool -----------------------------------------------------------------------------


def test_acquire_checks_out_the_snapshot_outside_the_repository(
    repo: Path, pool: WorktreePool, pool_dir: Path
) -> None:
    write(repo, {"src/pkg/mod.py": "VALUE = 2\n", "new.py": "N = 1\n", "debug.log": "x\n"})
    snapshot = snap(repo)

    worktree = pool.acquire(snapshot)

    assert worktree.parent == pool_dir
    assert repo not in worktree.parents
    assert checkout_files(worktree) == visible_files(repo)
    assert git("rev-parse", "HEAD", cwd=worktree).strip() == snapshot.commit
    assert git("status", "--porcelain", cwd=worktree) == ""
    assert git("symbolic-ref", "-q", "HEAD", cwd=repo).strip() == "refs/heads/main"
    assert pool_dir.stat().st_mode & 0o777 == 0o700
    assert pool.held == (worktree,)


def test_slots_are_exclusive_and_reused_clean(repo: Path, pool_dir: Path) -> None:
    snapshot = snap(repo)
    with WorktreePool(repo, pool_dir) as first_run:
        first = first_run.acquire(snapshot)
        second = first_run.acquire(snapshot)
        with WorktreePool(repo, pool_dir) as concurrent_run:
            third = concurrent_run.acquire(snapshot)
        assert len({first, second, third}) == 3
        # What a test run leaves behind: edits, deletions, staged and ignored files, a commit.
        write(first, {"src/pkg/mod.py": "edited\n", "scratch.py": "", "build/x.o": "", "a.log": ""})
        (first / "README.md").unlink()
        git("add", "scratch.py", cwd=first)

    write(repo, {"src/pkg/mod.py": "VALUE = 'next run'\n"})
    next_snapshot = snap(repo)
    with WorktreePool(repo, pool_dir) as next_run:
        reused = next_run.acquire(next_snapshot)

        assert reused == first
        assert checkout_files(reused) == visible_files(repo)
        assert git("status", "--porcelain", "--ignored", cwd=reused) == ""
    # Three slots were needed once; the pool never grew further.
    assert sorted(path.name for path in pool_dir.iterdir() if path.is_dir()) == [
        "slot-0",
        "slot-1",
        "slot-2",
    ]


def test_acquire_from_several_threads(repo: Path, pool: WorktreePool) -> None:
    snapshot = snap(repo)

    with ThreadPoolExecutor(max_workers=4) as executor:
        worktrees = list(executor.map(lambda _: pool.acquire(snapshot), range(4)))

    assert len(set(worktrees)) == 4
    for worktree in worktrees:
        assert git("rev-parse", "HEAD", cwd=worktree).strip() == snapshot.commit


def test_two_runs_creating_slots_at_once(repo: Path, pool_dir: Path) -> None:
    # Slots used to be `git worktree add`s, which read each other's registrations and had
    # to be serialised per pool; each slot is its own repository now, made in parallel,
    # and nothing is registered in the user's repository.
    snapshot = snap(repo)
    with WorktreePool(repo, pool_dir) as first, WorktreePool(repo, pool_dir) as second:
        pools = [first, second] * 4
        with ThreadPoolExecutor(max_workers=len(pools)) as executor:
            worktrees = list(executor.map(lambda pool: pool.acquire(snapshot), pools))

    assert len(set(worktrees)) == len(pools)
    for worktree in worktrees:
        assert (worktree / ".git").is_dir()
        assert git("rev-parse", "HEAD", cwd=worktree).strip() == snapshot.commit
    listed = git("worktree", "list", "--porcelain", cwd=repo)
    assert listed.count("worktree ") == 1
    assert not (repo / ".git" / "worktrees").exists()


def test_copy_patterns_bring_ignored_files(repo: Path, pool: WorktreePool) -> None:
    write(
        repo,
        {
            "build/lib/ext.so": "binary\n",
            "build/lib/sub/gen.py": "GENERATED = 1\n",
            "cache.log": "log\n",
            "other.log": "not wanted\n",
        },
    )
    (repo / "build/lib/link.so").symlink_to("ext.so")
    snapshot = snap(repo)

    worktree = pool.acquire(snapshot, copy_patterns=["build/lib", "cache.log", "src/*.py"])

    assert (worktree / "build/lib/ext.so").read_text() == "binary\n"
    assert (worktree / "build/lib/sub/gen.py").read_text() == "GENERATED = 1\n"
    assert os.readlink(worktree / "build/lib/link.so") == "ext.so"
    assert (worktree / "cache.log").read_text() == "log\n"
    assert not (worktree / "other.log").exists()
    # A copy, not a hard link: writing it in the worktree leaves the user's file alone.
    assert not os.path.samefile(worktree / "cache.log", repo / "cache.log")
    (worktree / "cache.log").write_text("changed by a test\n")
    assert (repo / "cache.log").read_text() == "log\n"


def test_copy_patterns_never_overwrite_the_snapshot(repo: Path, pool: WorktreePool) -> None:
    snapshot = snap(repo)
    write(repo, {"src/pkg/mod.py": "edited after the snapshot\n"})

    worktree = pool.acquire(snapshot, copy_patterns=["src/pkg/*.py"])

    assert (worktree / "src/pkg/mod.py").read_text() == "VALUE = 1\n"


@pytest.mark.parametrize("pattern", ["", "/etc/passwd", "../outside"])
def test_copy_patterns_stay_inside_the_repository(
    repo: Path, pool: WorktreePool, pattern: str
) -> None:
    with pytest.raises(WorktreeError, match="relative to the repository root"):
        pool.acquire(snap(repo), copy_patterns=[pattern])
    assert pool.held == ()


def test_submodules_are_checked_out_from_local_objects(
    repo: Path, tmp_path: Path, pool_dir: Path
) -> None:
    deep = make_repo(tmp_path / "deep", {"deep.py": "DEEP = 1\n"})
    library = make_repo(tmp_path / "library", {"lib.py": "LIB = 1\n"})
    allow_file = ("-c", "protocol.file.allow=always")
    git(*allow_file, "submodule", "add", "--quiet", str(deep), "deep", cwd=library)
    git("commit", "--quiet", "-m", "nested submodule", cwd=library)
    git(*allow_file, "submodule", "add", "--quiet", str(library), "vendor/lib", cwd=repo)
    git(*allow_file, "submodule", "update", "--quiet", "--init", "--recursive", cwd=repo)
    # Point the URL nowhere: the worktree must not need it.
    git(
        "config",
        "-f",
        ".gitmodules",
        "submodule.vendor/lib.url",
        "https://invalid.invalid",
        cwd=repo,
    )
    git("commit", "--quiet", "-am", "add submodule", cwd=repo)
    # A commit that exists only in the main checkout's submodule, recorded by the snapshot.
    write(repo / "vendor/lib", {"lib.py": "LIB = 2\n"})
    identity = ("-c", "user.name=Test", "-c", "user.email=test@example.com")
    git(*identity, "commit", "--quiet", "-am", "local commit", cwd=repo / "vendor/lib")
    before = user_state(repo)
    snapshot = snap(repo)

    for _ in range(2):  # create, then reuse
        with WorktreePool(repo, pool_dir) as pool:
            worktree = pool.acquire(snapshot)
            assert (worktree / "vendor/lib/lib.py").read_text() == "LIB = 2\n"
            assert (worktree / "vendor/lib/deep/deep.py").read_text() == "DEEP = 1\n"
            assert git("status", "--porcelain", cwd=worktree) == ""
            write(worktree / "vendor/lib", {"lib.py": "dirtied by a test\n", "junk": ""})
            write(worktree / "vendor/lib/deep", {"junk": ""})

    assert user_state(repo) == before


def test_clean_pool_removes_every_free_slot(repo: Path, pool_dir: Path) -> None:
    snapshot = snap(repo)
    with WorktreePool(repo, pool_dir) as pool:
        kept = [pool.acquire(snapshot), pool.acquire(snapshot)]
    with WorktreePool(repo, pool_dir) as busy:
        in_use = busy.acquire(snapshot)
        assert clean_pool(repo, pool_dir) == [path for path in kept if path != in_use]
        assert in_use.is_dir()
    (pool_dir / "worktree-add.lock").touch()  # left by an earlier version
    assert clean_pool(repo, pool_dir) == [in_use]

    listed = git("worktree", "list", "--porcelain", cwd=repo)
    assert [line for line in listed.splitlines() if line.startswith("worktree ")] == [
        f"worktree {repo}"
    ]
    # Lock files and the pool directory go too, once no run holds anything there.
    assert not pool_dir.exists()
    with WorktreePool(repo, pool_dir) as pool:
        assert pool.acquire(snapshot) == pool_dir / "slot-0"


def test_clean_pool_keeps_the_lock_of_a_slot_in_use(repo: Path, pool_dir: Path) -> None:
    snapshot = snap(repo)
    with WorktreePool(repo, pool_dir) as pool:
        pool.acquire(snapshot)
        pool.acquire(snapshot)
    with WorktreePool(repo, pool_dir) as busy:
        in_use = busy.acquire(snapshot)
        clean_pool(repo, pool_dir)
        slots = sorted(path.name for path in pool_dir.iterdir() if path.name.startswith("slot-"))
        assert slots == [in_use.name, f"{in_use.name}.lock"]


def test_a_lock_file_replaced_while_locking_is_not_a_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that opened a slot's lock file just as ``clean`` deleted it holds nothing."""
    path = tmp_path / "slot-0.lock"
    lock = filelock.FileLock(str(path), thread_local=False)
    real_acquire = lock.acquire

    def acquire_after_clean(*args: object, **kwargs: object) -> object:
        # `clean` deletes the file, another run creates a new one at the same path. The
        # old file stays open meanwhile, as in the race, so its inode cannot be reused.
        with open(path, "rb"):
            path.unlink()
            path.touch()
            return real_acquire(*args, **kwargs)

    monkeypatch.setattr(lock, "acquire", acquire_after_clean)
    assert not worktrees._try_slot_lock(lock)
    assert not lock.is_locked


def test_kept_slots_are_reserved_until_clean(repo: Path, pool_dir: Path) -> None:
    snapshot = snap(repo)
    with WorktreePool(repo, pool_dir) as pool:
        failed, passed = pool.acquire(snapshot), pool.acquire(snapshot)
        write(failed, {"evidence.txt": "left by a failed test\n", "build/out.o": "x"})
        pool.release(keep=[failed])
    assert kept_slots(pool_dir) == [failed]

    write(repo, {"src/pkg/mod.py": "VALUE = 'next run'\n"})
    for _ in range(2):  # later runs never take the kept slot
        with WorktreePool(repo, pool_dir) as pool:
            taken = [pool.acquire(snap(repo)) for _ in range(2)]
            assert failed not in taken
            assert passed in taken
    assert (failed / "evidence.txt").read_text() == "left by a failed test\n"
    assert (failed / "build/out.o").exists()
    assert (failed / "src/pkg/mod.py").read_text() == "VALUE = 1\n"

    removed = clean_pool(repo, pool_dir)

    assert failed in removed
    assert not failed.exists()
    assert kept_slots(pool_dir) == []
    with WorktreePool(repo, pool_dir) as pool:
        assert pool.acquire(snap(repo)) == failed


def test_a_kept_slot_deleted_by_hand_is_free_again(repo: Path, pool_dir: Path) -> None:
    snapshot = snap(repo)
    with WorktreePool(repo, pool_dir) as pool:
        kept = pool.acquire(snapshot)
        pool.release(keep=[kept])
    shutil.rmtree(kept)

    with WorktreePool(repo, pool_dir) as pool:
        assert pool.acquire(snapshot) == kept
        assert checkout_files(kept) == visible_files(repo)
    assert kept_slots(pool_dir) == []


def test_keep_failed_worktrees_survives_the_next_run(
    pytester: pytest.Pytester, git_repo: GitRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(
        test_evidence="""
        import os
        from pathlib import Path

        def test_fails():
            Path("evidence.txt").write_text("left for inspection")
            assert os.environ.get("FIXED") == "1"
        """
    )
    first = pytester.runpytest_subprocess(
        "--parallel-modules=1", "--keep-failed-worktrees", timeout=60
    )
    first.assert_outcomes(failed=1)
    line = next(line for line in first.outlines if "kept the worktree of worker w1" in line)
    kept = Path(line.rsplit(": ", 1)[1])

    monkeypatch.setenv("FIXED", "1")
    second = pytester.runpytest_subprocess("--parallel-modules=1", timeout=60)

    second.assert_outcomes(passed=1)
    assert (kept / "evidence.txt").read_text() == "left for inspection"

    cleaned = subprocess.run(
        [sys.executable, "-m", "pytest_parallel_modules", "clean"],
        cwd=pytester.path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert cleaned.returncode == 0, cleaned.stderr
    assert f"removed {kept} (kept by --keep-failed-worktrees)" in cleaned.stdout.splitlines()
    assert not kept.exists()


def test_a_deleted_slot_is_repaired(repo: Path, pool_dir: Path) -> None:
    snapshot = snap(repo)
    with WorktreePool(repo, pool_dir) as pool:
        worktree = pool.acquire(snapshot)
    shutil.rmtree(worktree)

    with WorktreePool(repo, pool_dir) as pool:
        assert pool.acquire(snapshot) == worktree
        assert checkout_files(worktree) == visible_files(repo)

    assert git("worktree", "list", "--porcelain", cwd=repo).count("worktree ") == 1


def test_clean_pool_unregisters_slots_of_earlier_versions(repo: Path, pool_dir: Path) -> None:
    # Earlier versions made slots with `git worktree add`; the user may have deleted one.
    pool_dir.mkdir()
    for name in ("slot-0", "slot-1"):
        git("worktree", "add", "--quiet", "--detach", str(pool_dir / name), cwd=repo)
    shutil.rmtree(pool_dir / "slot-1")

    assert clean_pool(repo, pool_dir) == [pool_dir / "slot-0", pool_dir / "slot-1"]
    assert git("worktree", "list", "--porcelain", cwd=repo).count("worktree ") == 1
    assert not (repo / ".git" / "worktrees").exists()


def test_a_corrupt_slot_is_recreated(repo: Path, pool_dir: Path) -> None:
    snapshot = snap(repo)
    with WorktreePool(repo, pool_dir) as pool:
        worktree = pool.acquire(snapshot)
    index = Path(git("rev-parse", "--git-path", "index", cwd=worktree).strip())
    (worktree / index).write_bytes(b"garbage")

    with WorktreePool(repo, pool_dir) as pool:
        assert pool.acquire(snapshot) == worktree
        assert git("status", "--porcelain", cwd=worktree) == ""


def test_a_slot_of_another_repository_is_left_alone(
    repo: Path, tmp_path: Path, pool_dir: Path
) -> None:
    other = make_repo(tmp_path / "other", {"o.py": ""})
    with WorktreePool(other, pool_dir) as pool:
        foreign = pool.acquire(snap(other))

    with WorktreePool(repo, pool_dir) as pool:
        ours = pool.acquire(snap(repo))

    assert ours != foreign
    assert (foreign / "o.py").exists()


def test_the_pool_refuses_to_live_inside_the_checkout(repo: Path) -> None:
    with WorktreePool(repo, repo / ".pool") as pool, pytest.raises(WorktreeError, match="inside"):
        pool.acquire(snap(repo))
    assert not (repo / ".pool").exists()


def test_default_pool_dir(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from_env = default_pool_dir(repo)
    assert from_env.parent == tmp_path / "pools"
    assert from_env.name.startswith("repo-")
    assert default_pool_dir(tmp_path / "elsewhere" / "repo") != from_env

    monkeypatch.delenv("PYTEST_PARALLEL_MODULES_POOL_DIR")
    assert default_pool_dir(repo).parent == tmp_path / "cache" / "pytest-parallel-modules"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/is/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_pool_dir(repo).parent == tmp_path / "home/.cache/pytest-parallel-modules"


# -- map_into_worktree (pure) -------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/repo", "/pool/slot-0"),
        ("/repo/", "/pool/slot-0"),
        ("/repo/src", "/pool/slot-0/src"),
        ("/repo/packages/app/../lib", "/pool/slot-0/packages/lib"),
        ("/repository/src", "/repository/src"),
        ("/usr/lib/python3.11", "/usr/lib/python3.11"),
        ("relative/dir", "relative/dir"),
        ("", ""),
    ],
)
def test_map_into_worktree(path: str, expected: str) -> None:
    assert map_into_worktree(path, Path("/repo"), Path("/pool/slot-0")) == expected


# -- python -m pytest_parallel_modules clean ----------------------------------------------


def test_clean_command(
    repo: Path, pool_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with WorktreePool(repo, pool_dir) as pool:
        worktree = pool.acquire(snap(repo))
    parser = argparse.ArgumentParser()
    clean.add_arguments(parser)
    monkeypatch.chdir(repo / "src")

    assert clean.run(parser.parse_args(["--pool-dir", str(pool_dir)])) == 0

    out = capsys.readouterr().out
    assert f"removed {worktree}" in out
    assert f"removed the pool directory {pool_dir}" in out
    assert not worktree.exists()
    assert not pool_dir.exists()


def test_clean_command_outside_a_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser()
    clean.add_arguments(parser)
    monkeypatch.chdir(tmp_path)

    assert clean.run(parser.parse_args([])) == 1
    assert "not inside a git work tree" in capsys.readouterr().err


# -- the user's .git stays the user's ------------------------------------------------------


def test_untracked_content_never_enters_the_users_object_store(repo: Path, pool_dir: Path) -> None:
    secret = f"secret-{uuid.uuid4()}".encode()
    env_file = repo / ".env"
    env_file.write_bytes(b"TOKEN=" + secret + b"\n")
    env_file.chmod(0o600)
    before = user_state(repo)
    git_before = git_dir_digest(repo)

    with WorktreePool(repo, pool_dir) as pool:
        snapshot = pool.take_snapshot()
        worktree = pool.acquire(snapshot)
        assert (worktree / ".env").read_bytes() == env_file.read_bytes()
        # The pool holds the content (the snapshot's objects, the slot's objects and
        # checkout), where nobody but the owner can read it.
        holders = secret_holders(pool_dir, secret)
        assert any(snapshot.directory in path.parents for path in holders)
        assert worktree / ".env" in holders
        assert [path for path in holders if readable_by_others(path, pool_dir)] == []
        assert snapshot.directory.stat().st_mode & 0o777 == 0o700
        assert pool_dir.stat().st_mode & 0o777 == 0o700
        assert secret not in all_objects(repo)

    assert secret not in all_objects(repo)
    assert secret_holders(repo / ".git", secret) == []
    assert git_dir_digest(repo) == git_before
    assert user_state(repo) == before

    clean_pool(repo, pool_dir)

    assert secret_holders(pool_dir, secret) == []


@pytest.mark.parametrize(
    "hijack",
    [
        "gitfile-to-main",
        "symlink-to-main",
        "commondir-to-main",
        "config-symlink",
        "objects-symlink",
        "no-record",
    ],
)
def test_a_slot_whose_git_dir_is_not_its_own_is_rebuilt(
    repo: Path, pool_dir: Path, hijack: str
) -> None:
    write(repo, {"staged.py": "S = 1\n"})
    git("add", "staged.py", cwd=repo)
    with WorktreePool(repo, pool_dir) as pool:
        worktree = pool.acquire(snap(repo))
    main_git_dir = repo / ".git"
    slot_git_dir = worktree / ".git"
    # What a test (or a tool it ran) may do to the slot's repository between two runs.
    if hijack == "gitfile-to-main":
        shutil.rmtree(slot_git_dir)
        slot_git_dir.write_text(f"gitdir: {main_git_dir}\n")
    elif hijack == "symlink-to-main":
        shutil.rmtree(slot_git_dir)
        slot_git_dir.symlink_to(main_git_dir)
    elif hijack == "commondir-to-main":
        (slot_git_dir / "commondir").write_text(f"{main_git_dir}\n")
    elif hijack == "config-symlink":
        (slot_git_dir / "config").unlink()
        (slot_git_dir / "config").symlink_to(main_git_dir / "config")
    elif hijack == "objects-symlink":
        shutil.rmtree(slot_git_dir / "objects")
        (slot_git_dir / "objects").symlink_to(main_git_dir / "objects")
    else:
        (slot_git_dir / "pytest-parallel-modules.json").unlink()
    write(repo, {"src/pkg/mod.py": "VALUE = 'next run'\n"})
    before = user_state(repo)
    git_before = git_dir_digest(repo)

    snapshot = snap(repo)
    with WorktreePool(repo, pool_dir) as pool:
        assert pool.acquire(snapshot) == worktree

        assert user_state(repo) == before
        assert git_dir_digest(repo) == git_before
        assert slot_git_dir.is_dir() and not slot_git_dir.is_symlink()
        assert not (slot_git_dir / "commondir").exists()
        assert git("rev-parse", "--absolute-git-dir", cwd=worktree).strip() == str(slot_git_dir)
        assert git("rev-parse", "HEAD", cwd=worktree).strip() == snapshot.commit
        assert checkout_files(worktree) == visible_files(repo)


def test_a_slot_made_by_an_earlier_version_is_unregistered_and_rebuilt(
    repo: Path, pool_dir: Path
) -> None:
    pool_dir.mkdir()
    git("worktree", "add", "--quiet", "--detach", str(pool_dir / "slot-0"), cwd=repo)
    snapshot = snap(repo)

    with WorktreePool(repo, pool_dir) as pool:
        worktree = pool.acquire(snapshot)

    assert worktree == pool_dir / "slot-0"
    assert (worktree / ".git").is_dir()
    assert git("rev-parse", "HEAD", cwd=worktree).strip() == snapshot.commit
    assert git("worktree", "list", "--porcelain", cwd=repo).count("worktree ") == 1
    assert not (repo / ".git" / "worktrees" / "slot-0").exists()


def test_a_slot_keeps_no_reflog_and_forgets_what_tests_did_to_its_repository(
    repo: Path, pool_dir: Path
) -> None:
    git("tag", "v1.0", cwd=repo)
    write(repo, {"new.py": "N = 1\n"})
    with WorktreePool(repo, pool_dir) as pool:
        worktree = pool.acquire(snap(repo))
        # The user's branches and tags are visible, their settings apply.
        assert git("describe", "--tags", cwd=worktree).startswith("v1.0-1-g")
        assert git("rev-parse", "main", cwd=worktree) == git("rev-parse", "main", cwd=repo)
        assert git("config", "user.name", cwd=worktree).strip() == "Test User"
        # What a test may leave in the slot's repository.
        git("checkout", "--quiet", "-b", "made-by-a-test", cwd=worktree)
        git("commit", "--quiet", "--allow-empty", "-m", "by a test", cwd=worktree)
        git("config", "user.name", "Changed By A Test", cwd=worktree)
        git("sparse-checkout", "set", "src", cwd=worktree)

    write(repo, {"src/pkg/mod.py": "VALUE = 'next run'\n"})
    snapshot = snap(repo)
    with WorktreePool(repo, pool_dir) as pool:
        assert pool.acquire(snapshot) == worktree

        assert git("rev-parse", "HEAD", cwd=worktree).strip() == snapshot.commit
        assert git("branch", "--list", "made-by-a-test", cwd=worktree) == ""
        assert git("reflog", cwd=worktree) == ""
        assert not (worktree / ".git" / "logs").exists()
        assert git("config", "user.name", cwd=worktree).strip() == "Test User"
        assert checkout_files(worktree) == visible_files(repo)

        def object_files(directory: Path) -> set[str]:
            return {
                path.relative_to(directory).as_posix()
                for path in directory.rglob("*")
                if path.is_file() and "info" not in path.relative_to(directory).parts
            }

        # The slot's own objects are the snapshot's, nothing older.
        assert object_files(worktree / ".git" / "objects") == object_files(
            snapshot.directory / "objects"
        )


def test_the_snapshot_directory_lives_as_long_as_its_run(repo: Path, pool_dir: Path) -> None:
    snapshots = pool_dir / "snapshots"
    crashed = snapshots / "run-crashed"  # a run that died without cleaning up
    (crashed / "objects").mkdir(parents=True)
    (crashed / "lock").touch()

    with WorktreePool(repo, pool_dir) as pool:
        snapshot = pool.take_snapshot()
        assert not crashed.exists()
        assert snapshot.directory.parent == snapshots
        kept = pool.acquire(snapshot)
        with WorktreePool(repo, pool_dir) as other_run:
            other_run.take_snapshot()
        assert snapshot.directory.is_dir(), "another run swept a snapshot still in use"
        pool.release(keep=[kept])
        with pytest.raises(WorktreeCancelled):
            pool.acquire(snapshot)

    assert list(snapshots.iterdir()) == []
    # A kept slot has its own copy of the snapshot's objects: git works there.
    assert git("status", "--porcelain", cwd=kept) == ""
    assert git("cat-file", "-t", snapshot.commit, cwd=kept).strip() == "commit"

    orphan = snapshots / "run-orphan"  # died before it could create its lock
    orphan.mkdir()
    clean_pool(repo, pool_dir)
    # clean also removes the directories it empties (the pool's, when nothing is left).
    assert not any(snapshots.glob("*"))


def test_a_sha256_repository(tmp_path: Path, pool_dir: Path) -> None:
    root = tmp_path / "sha256"
    root.mkdir()
    git("init", "--quiet", "--object-format=sha256", cwd=root)
    git("config", "user.name", "Test User", cwd=root)
    git("config", "user.email", "test@example.com", cwd=root)
    write(root, {"a.py": "A = 1\n"})
    git("add", "--all", cwd=root)
    git("commit", "--quiet", "-m", "initial", cwd=root)
    write(root, {"a.py": "A = 2\n"})

    for _ in range(2):  # create, then move
        snapshot = snap(root)
        with WorktreePool(root, pool_dir) as pool:
            worktree = pool.acquire(snapshot)
            assert (worktree / "a.py").read_text() == "A = 2\n"
            assert git("rev-parse", "HEAD", cwd=worktree).strip() == snapshot.commit
            assert len(snapshot.commit) == 64


# -- per-worker release and cancellation ------------------------------------------------------


def test_release_slot_gives_a_slot_back_at_once(repo: Path, pool_dir: Path) -> None:
    snapshot = snap(repo)
    with WorktreePool(repo, pool_dir) as run:
        first, second = run.acquire(snapshot), run.acquire(snapshot)

        assert run.release_slot(first)

        assert run.held == (second,)
        with WorktreePool(repo, pool_dir) as other_run:
            assert other_run.acquire(snapshot) == first
        assert run.release_slot(second, keep=True)
        assert kept_slots(pool_dir) == [second]
        assert run.release_slot(pool_dir / "slot-9")  # not held: nothing to do
        assert run.acquire(snapshot) == first


def hanging_git(directory: Path, command: str) -> tuple[str, Path]:
    """Return a PATH whose git hangs in ``git <command>``, and the file it writes its pid to."""
    real_git = shutil.which("git")
    assert real_git is not None
    pids = directory / "hanging-git.pids"
    bin_dir = directory / "hanging-bin"
    bin_dir.mkdir()
    script = bin_dir / "git"
    script.write_text(
        "#!/bin/sh\n"
        'for arg in "$@"; do\n'
        f'  if [ "$arg" = {command} ]; then echo $$ >> "{pids}"; exec sleep 60; fi\n'
        "done\n"
        f'exec "{real_git}" "$@"\n'
    )
    script.chmod(0o755)
    return f"{bin_dir}{os.pathsep}{os.environ['PATH']}", pids


@pytest.mark.parametrize("existing_slot", [False, True], ids=["create", "move"])
def test_cancel_terminates_git_and_holds_no_slot(
    repo: Path,
    pool_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    existing_slot: bool,
) -> None:
    snapshot = snap(repo)
    if existing_slot:
        with WorktreePool(repo, pool_dir) as pool:
            pool.acquire(snapshot)
    path, pids = hanging_git(tmp_path, "checkout")
    cancel = threading.Event()
    errors: list[BaseException] = []

    with monkeypatch.context() as patch, WorktreePool(repo, pool_dir, cancel=cancel) as pool:
        patch.setenv("PATH", path)

        def acquire() -> None:
            try:
                pool.acquire(snapshot)
            except BaseException as error:
                errors.append(error)

        thread = threading.Thread(target=acquire)
        thread.start()
        deadline = time.monotonic() + 30
        while not pids.exists():
            assert time.monotonic() < deadline, "git checkout never started"
            time.sleep(0.05)
        cancelled_at = time.monotonic()
        cancel.set()
        thread.join(timeout=10)

        assert not thread.is_alive()
        assert time.monotonic() - cancelled_at < 5
        assert [type(error) for error in errors] == [WorktreeCancelled]
        assert pool.held == ()
        pid = int(pids.read_text().split()[0])
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)

    # The next run repairs whatever the terminated checkout left half done.
    with WorktreePool(repo, pool_dir) as pool:
        worktree = pool.acquire(snapshot)
        assert checkout_files(worktree) == visible_files(repo)
        assert git("status", "--porcelain", cwd=worktree) == ""


def test_a_cancelled_pool_starts_no_git(
    repo: Path, pool_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    snapshot = snap(repo)
    cancel = threading.Event()
    cancel.set()
    empty = tmp_path / "no-git"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # any git command would fail, not raise Cancelled

    with WorktreePool(repo, pool_dir, cancel=cancel) as pool:
        with pytest.raises(WorktreeCancelled):
            pool.take_snapshot()
        with pytest.raises(WorktreeCancelled):
            pool.acquire(snapshot)
        assert pool.held == ()
    with pytest.raises(WorktreeCancelled):
        take_snapshot(repo, tmp_path / "never", cancel=cancel)
