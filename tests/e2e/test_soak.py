"""Soak: 2,000 tiny modules on 4 workers, against a plain run, with resource checks.

The controller runs in a small wrapper script that calls ``pytest.main`` and then
reports the process's peak RSS and its open file descriptors before and after the
session. Every process the run starts inherits a token in its environment, so
``ps`` finds any that outlive the session. Left out of the default run;
``-m soak`` (or ``-m "slow or soak"``, as CI does) runs it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

from tests.conftest import GitRepo
from tests.conftest import junit_outcomes


pytestmark = [pytest.mark.e2e, pytest.mark.soak]

MODULES = 2_000
#: Modules per directory: a test directory of typical size.
MODULES_PER_DIRECTORY = 50
#: Every PARAMETRIZED_EVERY-th module holds one test with three parameters.
PARAMETRIZED_EVERY = 50
WORKERS = 4
#: The controller's peak resident set size must stay below this.
MAX_CONTROLLER_RSS_MB = 200
#: Name of the environment variable that marks every process of the run.
TOKEN_VARIABLE = "PYTEST_PARALLEL_MODULES_SOAK_TOKEN"

WRAPPER = """
import json
import os
import resource
import subprocess
import sys
import time

import pytest


def open_fds():
    # /dev/fd lists this process's descriptors on Linux and macOS; listing it opens
    # one more, the same one before and after.
    return sorted(int(fd) for fd in os.listdir("/dev/fd"))


def processes_with_token():
    token = "{variable}=" + os.environ["{variable}"]
    # BSD-style "e" appends each process's environment to its command line.
    listing = subprocess.run(
        ["ps", "-A", "-ww", "-o", "pid=,command=", "e"],
        capture_output=True, text=True, check=True,
        env={{key: value for key, value in os.environ.items() if key != "{variable}"}},
    ).stdout
    return [
        line.strip() for line in listing.splitlines()
        if token in line and int(line.split()[0]) != os.getpid()
    ]


stats_path = sys.argv[1]
before = open_fds()
started = time.perf_counter()
exit_code = pytest.main(sys.argv[2:])
wall_s = time.perf_counter() - started
after = open_fds()
# VmHWM is this address space's peak. ru_maxrss is not usable here: Linux folds
# the old address space's peak into it at execve, and a child forked from a big
# parent (this test session) would report the parent's size.
try:
    with open("/proc/self/status") as status:
        maxrss = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
except (OSError, StopIteration):
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with open(stats_path, "w") as stats:
    json.dump(
        {{
            "exit_code": int(exit_code),
            "wall_s": wall_s,
            # kilobytes on Linux, bytes on macOS
            "peak_rss_mb": maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024),
            "fds_before": before,
            "fds_after": after,
            "leftover_processes": processes_with_token(),
        }},
        stats,
    )
"""


def write_suite(root: Path) -> int:
    """Write the modules; return how many tests they hold."""
    tests = 0
    for index in range(MODULES):
        directory = root / f"tests_{index // MODULES_PER_DIRECTORY:02d}"
        directory.mkdir(exist_ok=True)
        if index % PARAMETRIZED_EVERY == 0:
            body = textwrap.dedent(
                """\
                import pytest


                @pytest.mark.parametrize("n", [1, 2, 3])
                def test_param(n):
                    assert n > 0
                """
            )
            tests += 3
        else:
            body = f"def test_trivial_{index}():\n    assert {index} >= 0\n"
            tests += 1
        (directory / f"test_m{index:04d}.py").write_text(body, encoding="utf-8")
    return tests


def processes_with_token(token: str) -> list[str]:
    listing = subprocess.run(
        ["ps", "-A", "-ww", "-o", "pid=,command=", "e"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line.strip() for line in listing.splitlines() if f"{TOKEN_VARIABLE}={token}" in line]


@pytest.mark.timeout(600)
def test_two_thousand_modules(pytester: pytest.Pytester, git_repo: GitRepo) -> None:
    tests = write_suite(pytester.path)
    git_repo.commit_all("soak suite")
    outside = pytester.path.parent / f"{pytester.path.name}-soak"
    outside.mkdir()
    wrapper = outside / "controller.py"
    wrapper.write_text(WRAPPER.format(variable=TOKEN_VARIABLE), encoding="utf-8")
    token = uuid.uuid4().hex
    env = {**os.environ, TOKEN_VARIABLE: token}
    # pytest-rerunfailures opens a socket at configure and never closes it (plain runs
    # too), which would hide or fake a descriptor leak of ours.
    common = ["-q", "-p", "no:randomly", "-p", "no:rerunfailures"]

    started = time.perf_counter()
    plain = subprocess.run(
        [sys.executable, "-m", "pytest", *common, f"--junitxml={outside / 'plain.xml'}"],
        cwd=pytester.path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    plain_s = time.perf_counter() - started
    assert plain.returncode == 0, plain.stdout[-3000:] + plain.stderr[-3000:]

    started = time.perf_counter()
    parallel = subprocess.run(
        [
            sys.executable,
            str(wrapper),
            str(outside / "stats.json"),
            *common,
            f"--parallel-modules={WORKERS}",
            f"--junitxml={outside / 'parallel.xml'}",
        ],
        cwd=pytester.path,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
        env=env,
    )
    parallel_s = time.perf_counter() - started
    output = parallel.stdout[-5000:] + parallel.stderr[-5000:]
    stats = json.loads((outside / "stats.json").read_text(encoding="utf-8"))
    print(
        f"{MODULES} modules, {tests} tests: plain run {plain_s:.1f}s; "
        f"--parallel-modules={WORKERS} {parallel_s:.1f}s (session {stats['wall_s']:.1f}s), "
        f"controller peak RSS {stats['peak_rss_mb']:.0f} MB, "
        f"fds {len(stats['fds_before'])} -> {len(stats['fds_after'])}"
    )

    assert parallel.returncode == stats["exit_code"] == 0, output
    assert f"{tests} passed" in parallel.stdout, output
    plain_outcomes = junit_outcomes(outside / "plain.xml")
    assert len(plain_outcomes) == tests
    assert junit_outcomes(outside / "parallel.xml") == plain_outcomes
    assert stats["peak_rss_mb"] < MAX_CONTROLLER_RSS_MB, stats
    assert stats["fds_after"] == stats["fds_before"], stats
    assert stats["leftover_processes"] == [], stats
    assert processes_with_token(token) == []
    assert "INTERNALERROR" not in output
