"""Time the snapshot and the worktree pool on a generated 20,000-file repository.

Usage::

    python benchmarks/bench_worktrees.py                  # 20,000 files, 4 slots, 5 repeats
    python benchmarks/bench_worktrees.py --files 5000 --slots 2 --repeat 3

Prints the median of each step next to doing nothing (the same timer around a
no-op), which is what a run without worktrees pays:

- snapshot: ``take_snapshot`` after a few edits and a new untracked file;
- cold acquire: ``--slots`` worktrees from an empty pool (``git init`` + checkout);
- warm acquire: the same after a previous run left its slots (checkout + clean).

Target: warm acquire (the overhead every run pays once the pool exists) <= 1 s.
Everything lives in a temporary directory that is deleted at the end.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
import os
from pathlib import Path
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Final


try:
    from pytest_parallel_modules import worktrees
except ImportError:  # a source checkout that was never installed
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    from pytest_parallel_modules import worktrees


TARGET_WARM_SECONDS: Final = 1.0
FILES_PER_DIRECTORY: Final = 100


def git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def generate_repository(root: Path, files: int) -> None:
    """Create a committed repository of ``files`` small Python files."""
    root.mkdir()
    git("init", "--quiet", cwd=root)
    git("config", "user.name", "bench", cwd=root)
    git("config", "user.email", "bench@example.com", cwd=root)
    (root / ".gitignore").write_text("*.log\nbuild/\n")
    for number in range(files):
        directory = root / "pkg" / f"d{number // FILES_PER_DIRECTORY:04d}"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"m{number:05d}.py").write_text(f"VALUE = {number}\n" + "# padding\n" * 20)
    git("add", "--all", cwd=root)
    git("commit", "--quiet", "-m", "generated", cwd=root)


def edit(root: Path, round_number: int) -> None:
    """Change a few tracked files and add an untracked one, as a user between two runs."""
    for number in range(0, 10 * FILES_PER_DIRECTORY, FILES_PER_DIRECTORY):
        path = root / "pkg" / f"d{number // FILES_PER_DIRECTORY:04d}" / f"m{number:05d}.py"
        path.write_text(f"VALUE = {number}  # round {round_number}\n")
    (root / f"untracked_{round_number}.py").write_text("U = 1\n")


def snapshot_of(root: Path, scratch: Path) -> worktrees.Snapshot:
    """Take a snapshot of ``root``; its private objects go to a new directory in ``scratch``."""
    return worktrees.take_snapshot(root, Path(tempfile.mkdtemp(prefix="snapshot-", dir=scratch)))


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def acquire_all(pool: worktrees.WorktreePool, snapshot: worktrees.Snapshot, slots: int) -> None:
    """Acquire ``slots`` worktrees in parallel, as the controller does."""
    with ThreadPoolExecutor(max_workers=slots) as executor:
        list(executor.map(lambda _: pool.acquire(snapshot), range(slots)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)

    nothing: list[float] = []
    snapshot_times: list[float] = []
    cold: list[float] = []
    warm: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-worktrees-") as temporary:
        root = Path(temporary) / "repo"
        pool_dir = Path(temporary) / "pool"
        scratch = Path(temporary) / "snapshots"
        scratch.mkdir()
        started = time.perf_counter()
        generate_repository(root, args.files)
        print(f"generated {args.files} files in {time.perf_counter() - started:.1f} s", flush=True)
        # The snapshot reads the real index; let git refresh it once, as the user's own
        # `git status` would have done.
        git("status", "--porcelain", cwd=root)

        for round_number in range(args.repeat):
            nothing.append(timed(lambda: None))
            edit(root, round_number)
            snapshot_times.append(timed(lambda: snapshot_of(root, scratch)))
            snapshot = snapshot_of(root, scratch)

            worktrees.clean_pool(root, pool_dir)
            with worktrees.WorktreePool(root, pool_dir) as pool:
                cold.append(timed(partial(acquire_all, pool, snapshot, args.slots)))

            # The warm run sees a new snapshot, as the next run of a user would.
            edit(root, round_number + 1000)
            snapshot = snapshot_of(root, scratch)
            with worktrees.WorktreePool(root, pool_dir) as pool:
                warm.append(timed(partial(acquire_all, pool, snapshot, args.slots)))
            print(
                f"round {round_number + 1}/{args.repeat}: snapshot {snapshot_times[-1]:.3f} s, "
                f"cold {cold[-1]:.3f} s, warm {warm[-1]:.3f} s",
                flush=True,
            )
        worktrees.clean_pool(root, pool_dir)

    git_version = subprocess.run(["git", "--version"], capture_output=True, text=True).stdout
    print()
    print(
        f"{git_version.strip()}, {args.files} files, {args.slots} slots, "
        f"median of {args.repeat}, {os.cpu_count()} CPUs"
    )
    rows = [
        ("nothing", nothing),
        ("snapshot", snapshot_times),
        (f"cold acquire x{args.slots}", cold),
        (f"warm acquire x{args.slots}", warm),
    ]
    for name, values in rows:
        print(f"  {name:<18} {statistics.median(values):8.3f} s")
    warm_overhead = statistics.median(warm) - statistics.median(nothing)
    verdict = "OK" if warm_overhead <= TARGET_WARM_SECONDS else "OVER TARGET"
    print(
        f"  warm overhead {warm_overhead:.3f} s (target <= {TARGET_WARM_SECONDS:.1f} s): {verdict}"
    )
    return 0 if warm_overhead <= TARGET_WARM_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
