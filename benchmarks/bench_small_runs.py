"""Small runs with ``parallel_modules = auto``: never slower than plain pytest.

Usage::

    python benchmarks/real_suites.py setup attrs      # once: the pinned attrs suite
    python benchmarks/bench_small_runs.py [--rounds R]

The overhead issue's last two figures, in one sitting, rounds interleaved:

- ``--lf`` on attrs: after a plain run, pytest's last-failed state holds the one
  test attrs 26.1.0 fails on this Python, so ``--lf`` selects one test. Plain
  ``pytest --lf`` against ``pytest --lf -o parallel_modules=auto`` (the ini
  setting, given on the command line so the suite's files stay untouched);
- ``-k TestPipe`` on attrs, the same two ways;
- the example suite shipped in this repository (``examples/``): plain against
  ``-o parallel_modules=auto``, with the duration history of one earlier run.

Every run is a subprocess of the real-suite venv (``real_suites.py setup``), timed
from spawn to exit, with the environment ``real_suites.py`` uses. Prints each run,
then per case the median wall of each way and their ratio (auto over plain; at or
below 1.00 the setting costs nothing), with the load average.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from dataclasses import field
import os
from pathlib import Path
import statistics
import subprocess
import sys
import time
from typing import Final


sys.path.insert(0, str(Path(__file__).resolve().parent))

import real_suites


EXAMPLES: Final = Path(__file__).resolve().parent.parent / "examples"
AUTO: Final = ("-o", "parallel_modules=auto")


@dataclass(slots=True)
class Case:
    """One selection, run plainly and with ``auto``."""

    name: str
    cwd: Path
    args: tuple[str, ...]
    walls: dict[str, list[float]] = field(default_factory=lambda: {"plain": [], "auto": []})


def timed_run(python: Path, case: Case, extra: tuple[str, ...], env: dict[str, str]) -> float:
    command = [str(python), "-m", "pytest", "-q", "-p", "no:randomly", *case.args, *extra]
    started = time.perf_counter()
    completed = subprocess.run(
        command,
        cwd=case.cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        check=False,
    )
    wall = time.perf_counter() - started
    if completed.returncode not in (0, 1):
        tail = completed.stdout.decode(errors="replace")[-2000:]
        raise SystemExit(f"{case.name}: exit {completed.returncode}\n{tail}")
    return wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (default: 5)")
    parser.add_argument("--cache", type=Path, default=real_suites.default_cache())
    args = parser.parse_args(argv)
    layout = real_suites.Layout(args.cache)
    attrs = next(suite for suite in real_suites.SUITES if suite.name == "attrs")
    repo = layout.repo(attrs)
    if not layout.python.exists() or not repo.exists():
        print("run `python benchmarks/real_suites.py setup attrs` first", file=sys.stderr)
        return 2
    env = real_suites.run_env(layout)
    real_suites.reset_checkout(repo, cold=True)
    # A plain run leaves the last-failed state --lf reads: attrs' one failing test.
    subprocess.run(
        [str(layout.python), "-m", "pytest", "-q", "-p", "no:randomly", *attrs.pytest_args],
        cwd=repo,
        env=env,
        stdout=subprocess.DEVNULL,
        check=False,
    )
    cases = [
        Case("attrs --lf (one test)", repo, (*attrs.pytest_args, "--lf")),
        Case("attrs -k TestPipe", repo, (*attrs.pytest_args, "-k", "TestPipe")),
        Case("examples/ (the shipped suite)", EXAMPLES, ()),
    ]
    print(f"CPUs {os.cpu_count()}, load {real_suites.format_load()}", flush=True)
    # Untimed: one run each way (caches warm, the examples' history recorded).
    for case in cases:
        for extra in ((), AUTO):
            timed_run(layout.python, case, extra, env)
    for round_number in range(1, args.rounds + 1):
        for case in cases:
            for way, extra in (("plain", ()), ("auto", AUTO)):
                wall = timed_run(layout.python, case, extra, env)
                case.walls[way].append(wall)
                print(f"round {round_number}  {case.name:32} {way:5} {wall:6.2f} s", flush=True)
    print(f"\nload {real_suites.format_load()}\n")
    print("| case | plain median s | auto median s | auto / plain |")
    print("| --- | ---: | ---: | ---: |")
    for case in cases:
        plain = statistics.median(case.walls["plain"])
        auto = statistics.median(case.walls["auto"])
        print(f"| {case.name} | {plain:.2f} | {auto:.2f} | {auto / plain:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
