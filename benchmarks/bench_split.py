"""Time --split-modules on a suite where one function-scoped module holds most of the work.

Usage::

    python benchmarks/bench_split.py [--workers 4] [--total-seconds 80] [--share 0.7] [--repeat 2]

Two generated suites, each its own rootdir and git repository under
``benchmarks/.work/split/``:

- ``dominant``: ``test_dominant.py`` holds ``--share`` of ``--total-seconds``
  in tests that sleep (function-scoped only); the rest is spread over many
  small modules. Target: wall / LB_test(N) <= 1.15, where
  ``LB_test(N) = max(longest test, sum of test durations / N)`` -- the best any
  scheduler that may cut anywhere between tests could do.
- ``fixture``: the same, but ``test_dominant.py``'s tests use a module-scoped
  fixture that logs each set-up. Target under ``auto``: not split, the fixture
  set up exactly once.

Each suite gets one untimed run first (no history: nothing is split; it records
the durations), then ``--repeat`` timed runs with ``--parallel-modules=N``. Per
run the table gives the wall time from spawn to exit, the run loop's wall time
(``wall_s`` of the merged report: from the first hand-out to the end, so
without interpreter start-up and collection) and the span from the first
module's start to the last one's end, each divided by LB_test(N) computed from
that run's own per-test durations, plus what became of the dominant module.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
import datetime
import json
from pathlib import Path
import shutil
import statistics
import subprocess
import sys
import time
from typing import Any
from typing import Final

# benchmarks/ is not a package: running this file puts its directory on sys.path.
import generate_suite
import run as bench_run


WORK_DIR: Final = bench_run.WORK_DIR / "split"
DOMINANT: Final = "test_dominant.py"
TARGET_RATIO: Final = 1.15


@dataclass(frozen=True, slots=True)
class Shape:
    total_s: float
    share: float
    dominant_tests: int
    other_modules: int
    tests_per_other: int

    @property
    def dominant_test_s(self) -> float:
        return self.total_s * self.share / self.dominant_tests

    @property
    def other_test_s(self) -> float:
        return self.total_s * (1 - self.share) / (self.other_modules * self.tests_per_other)


@dataclass(frozen=True, slots=True)
class Measured:
    label: str
    wall: float
    loop_wall: float
    span: float | None
    lb_test: float
    lb_module: float
    parts: int
    reason: str | None
    setups: int | None


def write_suite(root: Path, shape: Shape, *, fixture: bool, setups_log: Path) -> None:
    """Write the suite (fresh), commit it, and clear any state a previous sitting left."""
    if (root / ".git").is_dir():
        bench_run.release_worktrees(root)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    (root / "pytest.ini").write_text("[pytest]\n")
    (root / ".gitignore").write_text(".pytest_cache/\n__pycache__/\n")
    head = ["import time", "", "import pytest", "", ""]
    if fixture:
        head += [
            '@pytest.fixture(scope="module")',
            "def db():",
            f"    with open({str(setups_log)!r}, 'a') as log:",
            "        log.write('setup\\n')",
            "    return {}",
            "",
            "",
        ]
    uses = "db" if fixture else ""
    dominant = [
        *head,
        f"@pytest.mark.parametrize('n', range({shape.dominant_tests}))",
        f"def test_work(n{', ' if uses else ''}{uses}):",
        f"    time.sleep({shape.dominant_test_s!r})",
        "",
    ]
    (root / DOMINANT).write_text("\n".join(dominant))
    width = len(str(shape.other_modules - 1))
    for index in range(shape.other_modules):
        (root / f"test_other_{index:0{width}d}.py").write_text(
            "import time\n\nimport pytest\n\n\n"
            f"@pytest.mark.parametrize('n', range({shape.tests_per_other}))\n"
            f"def test_work(n):\n    time.sleep({shape.other_test_s!r})\n"
        )
    generate_suite.commit_suite(root)


def run_once(root: Path, workers: int, label: str, results: Path, setups_log: Path) -> Measured:
    setups_log.unlink(missing_ok=True)
    report_dir = results / f"{root.name}-{label}-report"
    log = results / f"{root.name}-{label}.log"
    command = [
        sys.executable, "-m", "pytest", *bench_run.COMMON_ARGS,
        f"--parallel-modules={workers}", f"--module-report-dir={report_dir}",
    ]  # fmt: skip
    spawned = time.time()
    start = time.perf_counter()
    completed = subprocess.run(
        command,
        cwd=root,
        env=bench_run.pytest_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - start
    log.write_text(completed.stdout)
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {completed.returncode}; log: {log}")
    report: dict[str, Any] = json.loads((report_dir / "report.json").read_text())
    _, span = bench_run.schedule_times(report_dir / "report.json", spawned)
    # Plain passes are kept compactly, as test id -> seconds, beside the other records.
    tests = [test["duration_s"] for module in report["modules"] for test in module["tests"]]
    tests += [
        seconds for module in report["modules"] for seconds in module.get("passed", {}).values()
    ]
    modules = [module["duration_s"] for module in report["modules"]]
    split = next((s for s in report.get("splits", []) if s["module"] == DOMINANT), None)
    setups = len(setups_log.read_text().split()) if setups_log.exists() else None
    return Measured(
        label=label,
        wall=wall,
        loop_wall=report["wall_s"],
        span=span,
        lb_test=bench_run.lower_bound(tests, workers),
        lb_module=bench_run.lower_bound(modules, workers),
        parts=split["parts"] if split is not None else 1,
        reason=split["reason"] if split is not None else None,
        setups=setups,
    )


def describe(measured: Measured) -> str:
    span = f"{measured.span / measured.lb_test:.2f}" if measured.span is not None else "-"
    setups = "-" if measured.setups is None else str(measured.setups)
    what = f"{measured.parts} parts" if measured.parts > 1 else f"whole ({measured.reason})"
    return (
        f"| {measured.label} | {measured.wall:.2f} | {measured.loop_wall:.2f} | "
        f"{measured.lb_test:.2f} | {measured.lb_module:.2f} | "
        f"{measured.wall / measured.lb_test:.2f} | {measured.loop_wall / measured.lb_test:.2f} | "
        f"{span} | {what} | {setups} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--total-seconds", type=float, default=80.0)
    parser.add_argument("--share", type=float, default=0.7)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--skip-fixture", action="store_true")
    args = parser.parse_args(argv)
    shape = Shape(
        total_s=args.total_seconds,
        share=args.share,
        dominant_tests=56,
        # Many small modules: the rest of the work packs around the parts.
        other_modules=24,
        tests_per_other=4,
    )
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    results = bench_run.WORK_DIR / "results" / f"{stamp}-split-n{args.workers}"
    results.mkdir(parents=True)
    lines = [
        f"# --split-modules, N={args.workers}: {args.total_seconds:g} s of sleeping tests, "
        f"{args.share:.0%} in {DOMINANT} ({shape.dominant_tests} tests of "
        f"{shape.dominant_test_s:.3f} s), the rest in {shape.other_modules} modules",
        "",
        "LB_test = max(longest test, sum of tests / N); LB_module = max(longest module, sum / N).",
        "",
        "| run | wall (s) | loop wall (s) | LB_test (s) | LB_module (s) | wall / LB_test "
        "| loop / LB_test | span / LB_test | dominant module | fixture set-ups |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    suites = [("dominant", False)] + ([] if args.skip_fixture else [("fixture", True)])
    verdicts: list[str] = []
    for name, fixture in suites:
        root = WORK_DIR / name
        setups_log = WORK_DIR / f"{name}-setups.log"
        write_suite(root, shape, fixture=fixture, setups_log=setups_log)
        print(f"{name}: first run (records the history)...", flush=True)
        cold = run_once(root, args.workers, "first", results, setups_log)
        lines.append(describe(dataclasses.replace(cold, label=f"{name}, first (no history)")))
        timed = []
        for index in range(args.repeat if not fixture else 1):
            print(f"{name}: timed run {index + 1}...", flush=True)
            measured = run_once(root, args.workers, f"run{index + 1}", results, setups_log)
            timed.append(measured)
            lines.append(describe(dataclasses.replace(measured, label=f"{name}, run {index + 1}")))
        if fixture:
            ok = all(m.parts == 1 and m.setups == 1 for m in timed)
            verdicts.append(
                f"fixture module under auto: not split, set up once -> {'OK' if ok else 'MISSED'}"
            )
        else:
            ratio = statistics.median(m.wall / m.lb_test for m in timed)
            loop = statistics.median(m.loop_wall / m.lb_test for m in timed)
            verdicts.append(
                f"dominant module: median wall / LB_test = {ratio:.2f}, loop wall / LB_test = "
                f"{loop:.2f} (target <= {TARGET_RATIO}) -> "
                f"{'OK' if ratio <= TARGET_RATIO else 'loop only' if loop <= TARGET_RATIO else 'MISSED'}"
            )
    lines += ["", *verdicts, ""]
    text = "\n".join(lines)
    (results / "report.md").write_text(text)
    print(text)
    print(f"results: {results}")
    return 0 if all(not verdict.endswith("MISSED") for verdict in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
