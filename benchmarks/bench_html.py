"""Size and render time of the HTML report of a 2,000-module run. Runs as a plain script.

    python benchmarks/bench_html.py [--modules 2000] [--workers 4] [--runs 3] [--repeat 5]
    python benchmarks/bench_html.py --html PATH [--repeat 5]

Generates a suite of tiny modules like the soak test's (``generate_suite.py
--trivial``, under ``benchmarks/.work/``), runs it ``--runs`` times with
``--parallel-modules`` so the duration history has trends to draw, and measures
the ``report.html`` of the last run: its size, and how long headless Chromium
takes to render it. ``--html`` measures an existing page instead.

Render time is measured inside the page: a script put in front of the page's
own waits for the load event, forces style and layout (reading
``document.body.offsetHeight``) and records ``performance.now()``, the
milliseconds since navigation started: parsing, the page's script, style and
layout, without the browser's own start-up. The wall time of the whole browser
process is printed too, with that of an empty page for comparison. Targets:
under 2 MB, and under 2 s to render.
"""

from __future__ import annotations

import argparse
from pathlib import Path
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


HERE = Path(__file__).resolve().parent
TARGET_BYTES = 2_000_000
TARGET_RENDER_S = 2.0
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
HEADLESS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
PROBE = (
    "<script>window.addEventListener('load',function(){"
    "document.body.offsetHeight;"
    "document.body.setAttribute('data-rendered-ms',String(performance.now()));});</script>"
)


def browser() -> str:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    sys.exit("headless Chromium is needed: apt-get install chromium")


def build_report(modules: int, workers: int, runs: int) -> Path:
    """Generate the suite, run it ``runs`` times; return the last run's report.html."""
    suite = HERE / ".work" / "suites" / f"html-{modules}"
    subprocess.run(
        [
            sys.executable,
            str(HERE / "generate_suite.py"),
            str(suite),
            "--modules",
            str(modules),
            "--tests-per-module",
            "1",
            "--seed",
            "1",
            "--trivial",
            "--force",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    for run in range(1, runs + 1):
        started = time.perf_counter()
        completed = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:randomly",
                f"--parallel-modules={workers}",
            ],
            cwd=suite,
            capture_output=True,
            text=True,
            check=False,
        )
        print(
            f"run {run}/{runs}: exit {completed.returncode} in {time.perf_counter() - started:.1f} s"
        )
        if completed.returncode != 0:
            sys.exit(completed.stdout[-3000:] + completed.stderr[-3000:])
    return suite / ".pytest_cache" / "d" / "parallel-modules-report" / "report.html"


def render(chromium: str, page: Path) -> tuple[float, float]:
    """Open ``page``; return (milliseconds the page took to render, browser wall seconds)."""
    with tempfile.TemporaryDirectory() as profile:
        started = time.perf_counter()
        completed = subprocess.run(
            [chromium, *HEADLESS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        wall = time.perf_counter() - started
    match = re.search(r'data-rendered-ms="([0-9.]+)"', completed.stdout)
    if completed.returncode != 0 or match is None:
        sys.exit(f"the browser did not render {page}:\n{completed.stderr[-3000:]}")
    return float(match.group(1)), wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--html", type=Path, help="measure this page instead of a fresh run's")
    parser.add_argument("--modules", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3, help="runs before measuring (trends)")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    chromium = browser()
    page = (
        args.html if args.html is not None else build_report(args.modules, args.workers, args.runs)
    )
    text = page.read_text(encoding="utf-8")
    size = len(text.encode("utf-8"))
    with tempfile.TemporaryDirectory() as directory:
        probed = Path(directory, "probed.html")
        probed.write_text(text.replace("<head>", "<head>" + PROBE, 1), encoding="utf-8")
        empty = Path(directory, "empty.html")
        empty.write_text("<!DOCTYPE html><html><head>" + PROBE + "</head><body></body></html>")
        renders = [render(chromium, probed) for _ in range(args.repeat)]
        blanks = [render(chromium, empty) for _ in range(args.repeat)]
    bars = text.count('<i class="bar ')
    render_s = statistics.median(ms for ms, _ in renders) / 1000
    print(f"page: {page} ({bars} bars)")
    print(
        f"size {size / 1e6:.2f} MB"
        + ("  ok" if size < TARGET_BYTES else f"  OVER {TARGET_BYTES / 1e6:g} MB")
    )
    print(
        f"render (load + layout, in the page) median {render_s:.3f} s "
        f"(min {min(ms for ms, _ in renders) / 1000:.3f})"
        + ("  ok" if render_s < TARGET_RENDER_S else f"  OVER {TARGET_RENDER_S} s")
    )
    print(
        f"browser process wall median {statistics.median(wall for _, wall in renders):.2f} s; "
        f"an empty page {statistics.median(wall for _, wall in blanks):.2f} s"
    )
    return 0 if size < TARGET_BYTES and render_s < TARGET_RENDER_S else 1


if __name__ == "__main__":
    sys.exit(main())
