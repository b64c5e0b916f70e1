"""``python -m pytest_parallel_modules clean``. Runs in a plain Python process.

Removes every worktree slot of the current repository's pool that no running
test run holds, slots kept by ``--keep-failed-worktrees`` included, with the
snapshot objects of runs that died (and the git registration of slots made by
earlier versions), with their lock files; then the pool directory itself once
nothing is left in it. Says what it removed.
"""

from __future__ import annotations

import argparse
from pathlib import Path
import sys

from pytest_parallel_modules.worktrees import clean_pool
from pytest_parallel_modules.worktrees import default_pool_dir
from pytest_parallel_modules.worktrees import find_repo_root
from pytest_parallel_modules.worktrees import kept_slots
from pytest_parallel_modules.worktrees import WorktreeError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``clean`` to ``parser``. Called by ``__main__``."""
    parser.add_argument(
        "--repo",
        type=Path,
        default=None,
        metavar="PATH",
        help="a path inside the repository whose pool to clean (default: the current directory)",
    )
    parser.add_argument(
        "--pool-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="the pool directory, if the run used a non-default one",
    )


def run(args: argparse.Namespace) -> int:
    """Remove the free slots of the pool; return 0, or 1 outside a repository or on a git error."""
    start: Path = args.repo if args.repo is not None else Path.cwd()
    repo_root = find_repo_root(start)
    if repo_root is None:
        print(f"error: {start} is not inside a git work tree", file=sys.stderr)
        return 1
    pool_dir: Path = args.pool_dir if args.pool_dir is not None else default_pool_dir(repo_root)
    kept = set(kept_slots(pool_dir))
    try:
        removed = clean_pool(repo_root, pool_dir)
    except WorktreeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for slot in removed:
        if slot in kept:
            print(f"removed {slot} (kept by --keep-failed-worktrees)")
        else:
            print(f"removed {slot}")
    in_use = sorted(path for path in pool_dir.glob("slot-*") if path.is_dir())
    print(f"removed {len(removed)} worktree(s) from {pool_dir}")
    if in_use:
        print(f"left {len(in_use)} worktree(s) in use by a running test run")
    elif not pool_dir.exists():
        print(f"removed the pool directory {pool_dir}")
    return 0
