"""Time loading and saving a duration history of 100,000 tests. Runs as a plain script.

    python benchmarks/bench_history.py [--tests 100000] [--modules 1000] [--repeat 7]

Prints the median (and the minimum) wall-clock and CPU time of several runs of each
step, and whether the median CPU time meets the target of 0.3 s. The pure steps run with
the cyclic garbage collector on, as any caller would run them; load and save pause it
while they build a large history.

"save" is the whole :func:`save_history` as a run calls it after loading the file
at its start: take the lock, re-read the file and find it unchanged since the load,
merge a run that measured every test, serialize, write, replace. "save, file
changed" is the same after another process saved in between: the file is parsed
again under the lock.

The history is built as a long-lived one is: from more runs than it keeps measurements
of (:data:`~pytest_parallel_modules.history.RECENT_RUNS`), with durations that differ
from run to run, so every entry holds a full list of recent measurements.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
import random
import statistics
import sys
import tempfile
import time

from pytest_parallel_modules.history import History
from pytest_parallel_modules.history import load_history
from pytest_parallel_modules.history import MeasuredModule
from pytest_parallel_modules.history import MeasuredRun
from pytest_parallel_modules.history import MeasuredTest
from pytest_parallel_modules.history import merge_history
from pytest_parallel_modules.history import parse_history
from pytest_parallel_modules.history import save_history
from pytest_parallel_modules.history import serialize_history
from pytest_parallel_modules.recent import RECENT_RUNS


TARGET_S = 0.3


def make_run(tests: int, modules: int, seed: int) -> MeasuredRun:
    """A run where every test passed, with node ids as long as real ones (about 70 chars).

    A module's tests follow one another, as a run reports them.
    """
    rng = random.Random(seed)
    measured_tests: dict[str, MeasuredTest] = {}
    module_totals: dict[str, float] = {}
    per_module = max(1, tests // modules)
    for index in range(tests):
        number = index // per_module
        module = f"tests/package_{number:04d}/test_feature_{number:04d}.py"
        nodeid = f"{module}::TestBehaviour::test_case_{index % per_module}[param-{index % 7}]"
        duration = rng.expovariate(10.0)
        measured_tests[nodeid] = MeasuredTest(duration, "passed", True)
        module_totals[module] = module_totals.get(module, 0.0) + duration
    measured_modules = {
        module: MeasuredModule(total + 0.05, 0.02, True, content_hash=f"{index:012x}")
        for index, (module, total) in enumerate(module_totals.items())
    }
    return MeasuredRun(measured_tests, measured_modules)


def measure(step: Callable[[], object], repeat: int) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU seconds taken by each of ``repeat`` calls of ``step``.

    CPU time (:func:`time.process_time`) is the steadier figure on a shared machine:
    other processes competing for the cores inflate wall-clock time, not our CPU time.
    """
    wall, cpu = [], []
    for _ in range(repeat):
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        step()
        wall.append(time.perf_counter() - start_wall)
        cpu.append(time.process_time() - start_cpu)
    return wall, cpu


def report(name: str, times: tuple[list[float], list[float]], target: float | None) -> bool:
    """Print one line of figures; return whether the median CPU time meets ``target``."""
    wall, cpu = times
    median = statistics.median(cpu)
    verdict = "" if target is None else ("  ok" if median < target else f"  OVER {target} s")
    print(
        f"{name:<26} wall median {statistics.median(wall):6.3f} s (min {min(wall):6.3f})"
        f"   cpu median {median:6.3f} s (min {min(cpu):6.3f}){verdict}"
    )
    return target is None or median < target


def main() -> int:
    """Build the history in a temp directory, time each step, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=100_000)
    parser.add_argument("--modules", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    # Three runs with different durations, merged in turn one more time than the history
    # keeps measurements: the file a project has after a few weeks.
    runs = [make_run(args.tests, args.modules, seed=seed) for seed in (1, 2, 3)]
    run = runs[0]
    history = History()
    for index in range(RECENT_RUNS + 1):
        history = merge_history(history, runs[index % len(runs)], now=1.7e9 + 60 * index)
    text = serialize_history(history)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory, "durations.json")
        path.write_text(text, encoding="ascii")
        print(
            f"history: {len(history.tests):,} tests, {len(history.modules):,} modules, "
            f"{len(text) / 1e6:.1f} MB; median of {args.repeat} runs\n"
        )
        report("parse_history (pure)", measure(lambda: parse_history(text), args.repeat), None)
        report(
            "merge_history (pure)",
            measure(lambda: merge_history(history, run, now=1.7e9), args.repeat),
            None,
        )
        report(
            "serialize_history (pure)",
            measure(lambda: serialize_history(history), args.repeat),
            None,
        )
        load_ok = report("load_history", measure(lambda: load_history(path), args.repeat), TARGET_S)
        clock = iter(range(10**6))

        def save_after_load() -> None:
            # Untimed: the run loads the file at its start; only the save is timed.
            loaded = load_history(path)
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            save_history(path, run, now=1.7e9 + next(clock), loaded=loaded)
            save_times[0].append(time.perf_counter() - start_wall)
            save_times[1].append(time.process_time() - start_cpu)

        save_times: tuple[list[float], list[float]] = ([], [])
        for _ in range(args.repeat):
            save_after_load()
        save_ok = report("save_history", save_times, TARGET_S)
        report(
            "save_history, file changed",
            measure(lambda: save_history(path, run, now=1.7e9 + next(clock)), args.repeat),
            None,
        )
        assert load_history(path).warning is None
    return 0 if load_ok and save_ok else 1


if __name__ == "__main__":
    sys.exit(main())
