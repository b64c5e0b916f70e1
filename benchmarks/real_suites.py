"""Run real open-source test suites with plain pytest and --parallel-modules: parity and timing.

Usage::

    python benchmarks/real_suites.py setup  [SUITE...]
    python benchmarks/real_suites.py list
    python benchmarks/real_suites.py parity [SUITE...] [--timeout S] [--with-history] [--args ARGS]
    python benchmarks/real_suites.py bench  [SUITE...] [--rounds R] [--timeout S] [--json PATH]

Every command takes ``--cache DIR`` (default ``$REAL_SUITES_CACHE``, else
``$XDG_CACHE_HOME`` or ``~/.cache``, plus ``pytest-parallel-modules-real-suites``).
Nothing is written inside this repository.

setup
    For each pinned suite (the SUITES list below): download its sdist with
    ``pip download --no-deps --no-binary :all:``, check its sha256, unpack it, and
    commit it into a fresh git repository of its own (one commit, fixed author and
    date, tagged with the version). Then make one venv in the cache holding every
    suite (editable, ``pip install -e`` of its repository), their pinned test
    dependencies, pytest, pytest-xdist, and this plugin installed editable from the
    checkout this script lives in. Steps already done are skipped; the plugin is
    re-pointed every time, so running setup from another checkout tests that code.

list
    The pinned suites, their pytest arguments, pytest-xdist mode, test dependencies,
    expected differences, and whether they are set up.

parity
    Per suite, one plain ``pytest`` run (the plugin installed but not active) and one
    ``pytest --parallel-modules=2`` run, from the suite's repository, both cold (no
    ``.pytest_cache``, so no duration history; the checkout reset to its commit).
    Every test's outcome (by node id; subtests by their description; failed or
    skipped collectors too) and the exit codes are compared. Prints one table per
    suite and a summary; exits 1 on any difference that is not listed as expected
    for the suite, on a hang (a run killed at ``--timeout``) or a run that wrote no
    outcomes. ``--args '-n 2 --dist loadfile'`` compares another command line
    (here pytest-xdist's) instead of ``--parallel-modules=2``; ``--with-history``
    runs ours once first so the compared run has a duration history.

bench
    Per suite, one untimed warm-up of ``--parallel-modules=2`` (it writes the
    duration history the timed runs of ours use), then R interleaved rounds of plain
    pytest, the suite's best pytest-xdist mode, ``--parallel-modules=2`` and
    ``--parallel-modules=4``. Prints the median wall time (a stopwatch around the
    subprocess), the ratio to plain pytest, ours / xdist, and wall / LB(N), where
    LB(N) = max(longest module, total / N) over the per-module seconds of the plain
    runs. Load averages before and after each suite and the CPU count are printed;
    ``--json PATH`` saves every figure.

Each run is ``<venv>/bin/pytest -p real_suites_recorder <suite args> <tool args>``
with cwd = the suite's repository, stdout and stderr in a log under
``<cache>/runs/``. The environment loses every ``PYTEST_*`` and ``PYTHON*``
variable (``PYTEST_ADDOPTS``, ``PYTHONDONTWRITEBYTECODE``, ``PYTEST_PARALLEL_MODULES_*``
...) and gets ``PYTHONPATH`` = the recorder's directory, the venv first on ``PATH``,
and ``PYTEST_PARALLEL_MODULES_POOL_DIR`` = ``<cache>/worktree-pool`` so the
plugin's worktrees live in the cache too. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
import datetime
import fnmatch
import hashlib
import json
import os
from pathlib import Path
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from typing import Any
from typing import Final

# benchmarks/ is not a package: running this file puts its directory on sys.path.
import run as bench_run


# --- the pinned suites -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExpectedDifference:
    """Outcome differences that are known, explained, and not counted as failures."""

    #: fnmatch pattern over node ids.
    pattern: str
    #: Why the outcome differs, printed next to the matching node ids.
    reason: str


@dataclass(frozen=True, slots=True)
class Suite:
    """One pinned open-source test suite."""

    name: str
    version: str
    #: sha256 of the sdist as published on PyPI.
    sdist_sha256: str
    #: The module ``setup`` imports to check the editable install points at the repository.
    import_name: str
    #: Pinned requirements the tests need beyond the package itself.
    test_requirements: tuple[str, ...]
    #: Arguments for every run, before the tool's (e.g. the test directory).
    pytest_args: tuple[str, ...]
    #: The fastest pytest-xdist mode measured on 2 cores: ``-n`` and ``--dist``.
    xdist_workers: int
    xdist_dist: str
    expected_differences: tuple[ExpectedDifference, ...] = ()
    #: Install the repository with ``pip install -e`` (as its developers work); else a wheel.
    editable: bool = True

    @property
    def key(self) -> str:
        """``name-version``: the name of its sdist folder and repository in the cache."""
        return f"{self.name}-{self.version}"

    @property
    def xdist_args(self) -> tuple[str, ...]:
        return ("-n", str(self.xdist_workers), "--dist", self.xdist_dist)


#: Installed next to every suite. pytest is pinned so a new pytest release does not move
#: the figures; pytest 9 is needed for built-in subtests (docutils uses unittest's subTest).
HARNESS_REQUIREMENTS: Final = ("pytest==9.2.0", "pytest-xdist==3.8.0")

SUITES: Final = (
    Suite(
        name="attrs",
        version="26.1.0",
        sdist_sha256="d03ceb89cb322a8fd706d4fb91940737b6642aa36998fe130a9bc96c985eff32",
        import_name="attr",
        # The "tests" dependency group of its pyproject.toml; psutil for pytest-xdist[psutil].
        test_requirements=(
            "cloudpickle==3.1.3",
            "hypothesis==6.170.27",
            "psutil==7.2.2",
            "pympler==1.1",
        ),
        pytest_args=(),  # testpaths = tests
        xdist_workers=2,
        xdist_dist="loadfile",
    ),
    Suite(
        name="docutils",
        version="0.23",
        sdist_sha256="746f5060322511280a1e50eb76846ed6bf2342984b2ac04dc42caa1a8d78799e",
        import_name="docutils",
        # Optional imports (Pygments, Pillow) are there anyway: pygments is a suite here
        # and matplotlib (for pyparsing) brings Pillow.
        test_requirements=(),
        # No testpaths; from the root pytest would also collect tools/test/.
        pytest_args=("test",),
        # Fastest of -n 2/4 x load/loadfile/worksteal in a loaded sitting (load 10-15).
        xdist_workers=2,
        xdist_dist="loadfile",
        expected_differences=(
            ExpectedDifference(
                "test/test_parsers/test_rst/test_directives/test_admonitions_dummy_lang.py::*",
                "run-order dependence inside the suite: its first case expects docutils' "
                "directive cache as test_admonitions_de.py leaves it; plain pytest passes it "
                "alone and fails it right after test_admonitions.py (`pytest "
                "test/.../test_admonitions.py test/.../test_admonitions_dummy_lang.py`), so "
                "any order that runs those two on one worker without the _de module between "
                "them fails it; the summary names the modules that ran before it",
            ),
        ),
    ),
    Suite(
        name="packaging",
        version="26.3",
        sdist_sha256="94edc256424af38762eb31306eed28beb9f0efc50a8837492c9d6fd6004aed79",
        import_name="packaging",
        # Its "test" dependency group without coverage; pip comes with the venv.
        test_requirements=("hypothesis==6.170.27", "pretend==1.0.9", "tomli-w==1.2.0"),
        pytest_args=(),  # testpaths = tests; addopts deselect -m property
        xdist_workers=4,
        xdist_dist="load",
    ),
    Suite(
        name="pygments",
        version="2.21.0",
        sdist_sha256="610ca751c9bc2492b38eb9a38a7fbc93edbbb2d7182edaf34e66ae493dee5c8c",
        import_name="pygments",
        # tox.ini's test deps without pytest-cov and pytest-randomly (random order would
        # make two runs incomparable).
        test_requirements=("wcag-contrast-ratio==0.9",),
        pytest_args=("tests",),
        # Fastest of -n 2/4 x load/loadfile/worksteal in a loaded sitting (load 10-12).
        xdist_workers=2,
        xdist_dist="load",
    ),
    Suite(
        name="pyparsing",
        version="3.3.3",
        sdist_sha256="928ae7e20211f3b6f3915a72f06a0cfd29ab9d24279dd6346b6b1a7146397d36",
        import_name="pyparsing",
        # tox.ini's "unit" environment: the "diagrams" extra and matplotlib.
        test_requirements=("jinja2==3.1.6", "matplotlib==3.11.2", "railroad-diagrams==3.0.1"),
        # From the root, as a new user types it: tests/, examples/test_bibparse.py and
        # examples/tiny/tests/ (tox names tests and examples/tiny/tests).
        pytest_args=(),
        xdist_workers=4,
        xdist_dist="load",
        expected_differences=(
            ExpectedDifference(
                "examples/tiny/tests/*",
                "run-order dependence inside the suite: these tests pass only after other "
                "modules ran in the same process; pytest-xdist --dist loadfile fails them too",
            ),
        ),
    ),
)

SUITES_BY_NAME: Final = {suite.name: suite for suite in SUITES}


# --- where things live ---------------------------------------------------------------------

#: This checkout: the plugin installed (editable) into the venv.
REPO_ROOT: Final = Path(__file__).resolve().parents[1]
RECORDER_SOURCE: Final = Path(__file__).resolve().with_name("real_suites_recorder.py")
RECORDER_MODULE: Final = "real_suites_recorder"
RECORD_ENV: Final = "REAL_SUITES_RECORD"
RECORD_VERSION: Final = 2
CACHE_ENV: Final = "REAL_SUITES_CACHE"
CACHE_NAME: Final = "pytest-parallel-modules-real-suites"
#: The plugin's variable for where its worktree pools live (see its worktrees module).
POOL_DIR_ENV: Final = "PYTEST_PARALLEL_MODULES_POOL_DIR"

#: A fixed identity and date make the suite repositories' commits reproducible.
COMMIT_ENV: Final = {
    "GIT_AUTHOR_NAME": "real-suites harness",
    "GIT_AUTHOR_EMAIL": "real-suites@localhost",
    "GIT_AUTHOR_DATE": "2026-01-01T00:00:00+0000",
    "GIT_COMMITTER_NAME": "real-suites harness",
    "GIT_COMMITTER_EMAIL": "real-suites@localhost",
    "GIT_COMMITTER_DATE": "2026-01-01T00:00:00+0000",
}
#: Appended to the suite's own .gitignore: what runs leave behind, so that the plugin's
#: snapshot of the working tree and ``git clean`` between runs leave these alone.
GITIGNORE_BLOCK: Final = """
# added by pytest-parallel-modules' real-suite harness
.pytest_cache/
__pycache__/
*.py[cod]
*.egg-info/
.hypothesis/
"""

DEFAULT_TIMEOUT: Final = 600.0
#: What parity compares with plain pytest unless ``--args`` says otherwise.
OURS_ARGS: Final = ("--parallel-modules=2",)
EXIT_DIFFERENT: Final = 1
EXIT_BROKEN: Final = 2
#: How many differing node ids a table lists before "... and N more".
SHOW_DIFFERENCES: Final = 20


@dataclass(frozen=True, slots=True)
class Layout:
    """The cache folder: sdists, suite repositories, the venv, run logs, worktree pools."""

    root: Path

    @property
    def sdists(self) -> Path:
        return self.root / "sdists"

    @property
    def suites(self) -> Path:
        return self.root / "suites"

    @property
    def venv(self) -> Path:
        return self.root / "venv"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def pytest(self) -> Path:
        return self.venv / "bin" / "pytest"

    @property
    def pythonpath(self) -> Path:
        """Holds only a copy of the recorder, so ``PYTHONPATH`` exposes nothing else."""
        return self.root / "pythonpath"

    @property
    def pool(self) -> Path:
        return self.root / "worktree-pool"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def installed_marker(self) -> Path:
        return self.venv / "real-suites-installed.json"

    def repo(self, suite: Suite) -> Path:
        return self.suites / suite.key


def default_cache() -> Path:
    """``$REAL_SUITES_CACHE``, else the user cache directory plus CACHE_NAME."""
    setting = os.environ.get(CACHE_ENV)
    if setting:
        return Path(setting).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return base / CACHE_NAME


# --- small helpers ---------------------------------------------------------------------------


def log(message: str) -> None:
    print(message, flush=True)


def run_checked(command: Sequence[str | Path], cwd: Path | None = None, **kwargs: Any) -> str:
    """Run a command, return its stdout; on failure raise SystemExit with its output."""
    completed = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
        **kwargs,
    )
    if completed.returncode != 0:
        tail = "\n".join(completed.stdout.splitlines()[-30:])
        raise SystemExit(
            f"command failed ({completed.returncode}): {' '.join(map(str, command))}\n{tail}"
        )
    return completed.stdout


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, **COMMIT_ENV}
    return run_checked(
        ["git", "-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false", *args], cwd=repo, env=env
    )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def select_suites(names: Sequence[str]) -> list[Suite]:
    """The named suites in the pinned order; all of them for no names."""
    unknown = [name for name in names if name not in SUITES_BY_NAME]
    if unknown:
        raise SystemExit(
            f"unknown suite(s) {', '.join(unknown)}; known: {', '.join(SUITES_BY_NAME)}"
        )
    return [suite for suite in SUITES if not names or suite.name in names]


# --- setup -----------------------------------------------------------------------------------


def ensure_sdist(layout: Layout, suite: Suite) -> Path:
    """Download the suite's sdist once and check its sha256; return its path."""
    folder = layout.sdists / suite.key
    existing = sorted(folder.glob("*.tar.gz")) if folder.is_dir() else []
    if len(existing) == 1 and sha256_of(existing[0]) == suite.sdist_sha256:
        log(f"  {suite.key}: sdist present, sha256 ok")
        return existing[0]
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    log(f"  {suite.key}: pip download --no-deps --no-binary :all: {suite.name}=={suite.version}")
    download = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
    run_checked([*download, "--dest", str(folder), f"{suite.name}=={suite.version}"])
    downloaded = sorted(folder.glob("*.tar.gz"))
    if len(downloaded) != 1:
        raise SystemExit(f"{suite.key}: expected one .tar.gz in {folder}, found {downloaded}")
    actual = sha256_of(downloaded[0])
    if actual != suite.sdist_sha256:
        shutil.rmtree(folder)
        raise SystemExit(
            f"{suite.key}: sha256 of {downloaded[0].name} is {actual}, pinned {suite.sdist_sha256}"
        )
    log(f"  {suite.key}: sha256 ok ({actual})")
    return downloaded[0]


def ensure_repo(layout: Layout, suite: Suite, sdist: Path) -> Path:
    """Unpack the sdist into a fresh git repository with one reproducible commit."""
    repo = layout.repo(suite)
    if (repo / ".git").is_dir() and git(repo, "tag", "--list", suite.version).strip():
        log(
            f"  {suite.key}: repository present at {git(repo, 'rev-parse', '--short', 'HEAD').strip()}"
        )
        return repo
    shutil.rmtree(repo, ignore_errors=True)
    layout.suites.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=layout.suites) as scratch:
        with tarfile.open(sdist) as archive:
            # The "data" filter refuses absolute paths, links out of the tree and devices.
            if hasattr(tarfile, "data_filter"):
                archive.extractall(scratch, filter="data")
            else:  # Python < 3.11.4; the archive's sha256 was checked above.
                archive.extractall(scratch)
        tops = list(Path(scratch).iterdir())
        if len(tops) != 1 or not tops[0].is_dir():
            raise SystemExit(f"{sdist.name}: expected one top-level folder, found {tops}")
        tops[0].rename(repo)
    gitignore = repo / ".gitignore"
    existing = gitignore.read_text() if gitignore.exists() else ""
    gitignore.write_text(existing + GITIGNORE_BLOCK)
    git(repo, "init", "--quiet", "--initial-branch=main")
    # --force: an sdist may ship files its own .gitignore (or ours) names; commit them all.
    git(repo, "add", "--all", "--force")
    git(repo, "commit", "--quiet", "--no-verify", "-m", f"{suite.key} from its sdist")
    # The tag gives VCS-versioned builds (attrs uses hatch-vcs) the real version number.
    git(repo, "tag", suite.version)
    commit = git(repo, "rev-parse", "--short", "HEAD").strip()
    log(f"  {suite.key}: committed {commit} in {repo}")
    return repo


def install_fingerprint(layout: Layout, suites: Sequence[Suite]) -> dict[str, Any]:
    """What the one big ``pip install`` installs: redone only when this changes."""
    return {
        "suites": [[str(layout.repo(suite)), suite.version, suite.editable] for suite in suites],
        "requirements": sorted(
            {*HARNESS_REQUIREMENTS, *(r for suite in suites for r in suite.test_requirements)}
        ),
    }


def ensure_venv(layout: Layout, suites: Sequence[Suite]) -> None:
    """Create the venv and install every suite, its test requirements, pytest and xdist.

    One ``pip install`` resolves everything together, so the suite repositories satisfy
    other packages' requirements (pytest needs packaging, rich needs pygments,
    matplotlib needs pyparsing) and no second copy is installed from PyPI.
    """
    if not layout.python.exists():
        log(f"  venv: creating {layout.venv} with {sys.executable}")
        run_checked([sys.executable, "-m", "venv", str(layout.venv)])
    wanted = install_fingerprint(layout, suites)
    try:
        installed = json.loads(layout.installed_marker.read_text())
    except (OSError, ValueError):
        installed = None
    if installed == wanted:
        log("  venv: suites and test requirements already installed")
        return
    command: list[str] = [str(layout.python), "-m", "pip", "install", "--quiet"]
    for suite in suites:
        command += ["-e", str(layout.repo(suite))] if suite.editable else [str(layout.repo(suite))]
    # The plugin takes part in the resolution too (its rich needs pygments).
    command += ["-e", str(REPO_ROOT), *wanted["requirements"]]
    log(f"  venv: pip install {len(suites)} suites and {len(wanted['requirements'])} requirements")
    run_checked(command)
    layout.installed_marker.write_text(json.dumps(wanted, indent=2) + "\n")


def repoint_plugin(layout: Layout) -> None:
    """Install this checkout's plugin editable, whatever checkout was installed before."""
    log(f"  plugin: pip install -e {REPO_ROOT}")
    run_checked([str(layout.python), "-m", "pip", "install", "--quiet", "-e", str(REPO_ROOT)])


def install_recorder(layout: Layout) -> None:
    """Copy the recorder into its own folder: that folder alone goes on ``PYTHONPATH``."""
    layout.pythonpath.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(RECORDER_SOURCE, layout.pythonpath / RECORDER_SOURCE.name)


VENV_PROBE: Final = """
import importlib, importlib.metadata, json, sys
names = sys.argv[1:]
found = {}
for name in names:
    module = importlib.import_module(name)
    found[name] = getattr(module, "__file__", None)
versions = {}
for dist in ("pytest", "pytest-xdist", "pytest-parallel-modules", "execnet", "rich"):
    try:
        versions[dist] = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        versions[dist] = None
print(json.dumps({"files": found, "versions": versions, "python": sys.version.split()[0]}))
"""


def probe_venv(layout: Layout, import_names: Sequence[str]) -> dict[str, Any]:
    """Import modules in the venv; return their files and the tool versions."""
    output = run_checked(
        [str(layout.python), "-c", VENV_PROBE, "pytest_parallel_modules", *import_names],
        cwd=layout.root,
        env=run_env(layout),
    )
    probe: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return probe


def plugin_checkout_problem(probe: dict[str, Any]) -> str | None:
    """Why the venv's plugin is not this checkout's, or None if it is."""
    plugin_file = probe["files"].get("pytest_parallel_modules")
    if plugin_file and Path(plugin_file).resolve().is_relative_to(REPO_ROOT / "src"):
        return None
    return (
        f"the venv's pytest_parallel_modules is {plugin_file}, not this checkout's "
        f"({REPO_ROOT}); run `python {Path(__file__).name} setup` from this checkout"
    )


def check_installs(layout: Layout, suites: Sequence[Suite]) -> None:
    """Check each suite imports from its repository, ``pip check``, and save ``pip freeze``."""
    probe = probe_venv(layout, [suite.import_name for suite in suites])
    for suite in suites:
        location = Path(probe["files"][suite.import_name]).resolve()
        inside = location.is_relative_to(layout.repo(suite).resolve())
        if suite.editable and not inside:
            raise SystemExit(
                f"{suite.key}: {suite.import_name} imports from {location}, not its repository"
            )
        log(f"  {suite.key}: import {suite.import_name} -> {location}")
    problem = plugin_checkout_problem(probe)
    if problem:
        raise SystemExit(problem)
    versions = probe["versions"]
    log(
        f"  venv: Python {probe['python']}, "
        + ", ".join(f"{name} {version}" for name, version in versions.items())
    )
    # pip check exits non-zero when an installed package's requirements are not met.
    log("  pip check: " + run_checked([str(layout.python), "-m", "pip", "check"]).strip())
    freeze = run_checked([str(layout.python), "-m", "pip", "freeze", "--all"])
    (layout.root / "venv-freeze.txt").write_text(freeze)


def command_setup(layout: Layout, suites: Sequence[Suite]) -> int:
    started = time.perf_counter()
    log(f"setup in {layout.root}")
    layout.root.mkdir(parents=True, exist_ok=True)
    for suite in suites:
        sdist = ensure_sdist(layout, suite)
        ensure_repo(layout, suite, sdist)
    # One venv for every suite set up so far, named now or before: one resolution.
    present = [suite for suite in SUITES if (layout.repo(suite) / ".git").is_dir()]
    ensure_venv(layout, present)
    repoint_plugin(layout)
    install_recorder(layout)
    check_installs(layout, present)
    log(f"setup done in {time.perf_counter() - started:.1f} s")
    return 0


# --- list ------------------------------------------------------------------------------------


def command_list(layout: Layout, suites: Sequence[Suite]) -> int:
    log(f"cache {layout.root}")
    for suite in suites:
        repo = layout.repo(suite)
        state = (
            f"set up, commit {git(repo, 'rev-parse', '--short', 'HEAD').strip()}"
            if (repo / ".git").is_dir()
            else "not set up"
        )
        log(f"\n{suite.key}  ({state})")
        log(f"  sdist sha256       {suite.sdist_sha256}")
        log(f"  pytest args        {' '.join(suite.pytest_args) or '(none)'}")
        log(f"  pytest-xdist mode  {' '.join(suite.xdist_args)}")
        log(f"  test requirements  {', '.join(suite.test_requirements) or '(none)'}")
        log(f"  install            {'editable (pip install -e)' if suite.editable else 'wheel'}")
        for expected in suite.expected_differences:
            log(f"  expected to differ {expected.pattern}: {expected.reason}")
    log(f"\nwith every suite: {', '.join(HARNESS_REQUIREMENTS)}, and this plugin from {REPO_ROOT}")
    return 0


# --- running pytest --------------------------------------------------------------------------


def run_env(layout: Layout) -> dict[str, str]:
    """The caller's environment without anything that changes what pytest does.

    Gone: every ``PYTEST_*`` (``PYTEST_ADDOPTS``, ``PYTEST_PLUGINS``,
    ``PYTEST_PARALLEL_MODULES_*`` ...) and ``PYTHON*`` variable
    (``PYTHONDONTWRITEBYTECODE`` makes every run compile every module again;
    ``PYTHONPATH``, ``PYTHONWARNINGS`` ...), coverage's subprocess hooks and an active
    venv. Set: the venv first on ``PATH``, ``PYTHONPATH`` = the recorder's folder, and
    the plugin's worktree pool inside the cache.
    """
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("PYTEST_", "PYTHON", "COV_CORE_", "REAL_SUITES_"))
        and name not in ("VIRTUAL_ENV", "COVERAGE_PROCESS_START")
    }
    env["PATH"] = f"{layout.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(layout.venv)
    env["PYTHONPATH"] = str(layout.pythonpath)
    env[POOL_DIR_ENV] = str(layout.pool)
    return env


def reset_checkout(repo: Path, cold: bool) -> None:
    """Put the suite's working tree back to its commit; ``cold`` also drops the caches.

    Tests that write into the tree (docutils writes functional test output) would
    otherwise leave files that the next run, and the plugin's snapshot, see.
    ``.pytest_cache`` holds pytest's last-failed state and the plugin's duration
    history and reports; ``.hypothesis`` holds Hypothesis' saved failing examples.
    ``__pycache__`` stays, as on a developer's machine.
    """
    git(repo, "reset", "--quiet", "--hard", "HEAD")
    git(repo, "clean", "--quiet", "-d", "--force")
    if cold:
        shutil.rmtree(repo / ".pytest_cache", ignore_errors=True)
        shutil.rmtree(repo / ".hypothesis", ignore_errors=True)


#: (node id, subtest description or None, kind) of one recorded outcome.
OutcomeKey = tuple[str, str | None, str]


@dataclass(slots=True)
class RunResult:
    """One pytest subprocess: how long it took, how it ended, what it recorded."""

    suite: str
    tool: str
    args: tuple[str, ...]
    wall: float
    #: None when the harness killed the run at its timeout.
    returncode: int | None
    log_path: Path
    outcomes: dict[OutcomeKey, str] | None = None
    #: Subtests' descriptions (with their keyword values), to show their keys.
    descriptions: dict[OutcomeKey, str] = field(default_factory=dict)
    module_seconds: dict[str, float] = field(default_factory=dict)
    #: For a killed run: the test started last and the tests started but not finished.
    last_started: str | None = None
    in_flight: list[tuple[str, float]] = field(default_factory=list)
    #: Epoch seconds the process was spawned and exited (the harness's stopwatch).
    spawned: float = 0.0
    exited: float = 0.0
    #: The recorder's moments of the run and CPU readings (see real_suites_recorder).
    times: dict[str, float] = field(default_factory=dict)
    #: Bytes in the plugin's report directory after the run (ours only).
    report_bytes: int | None = None

    def overhead(self) -> dict[str, float | None]:
        """Where the time went beyond the tests: start-up, the tail, the controller's CPU."""
        times = self.times
        tests = sum(1 for key in (self.outcomes or {}) if key[2] == "test")

        def span(start: str, end: str) -> float | None:
            if start in times and end in times:
                return times[end] - times[start]
            return None

        cpu = span("cpu_at_collection_finished", "cpu_at_session_finished")
        return {
            "collection_to_first_test_s": span("collection_finished", "first_test_started"),
            "last_test_to_exit_s": (
                self.exited - times["last_test_finished"]
                if "last_test_finished" in times and self.exited
                else None
            ),
            "cpu_per_test_ms": (1000 * cpu / tests) if cpu is not None and tests else None,
        }

    @property
    def hung(self) -> bool:
        return self.returncode is None

    def count(self, kind: str) -> str:
        """How many outcomes of ``kind`` were recorded, formatted; "-" if none were."""
        if self.outcomes is None:
            return "-"
        return f"{sum(1 for key in self.outcomes if key[2] == kind):,}"

    def describe_end(self) -> str:
        if self.hung:
            return f"hang (killed at {self.wall:.0f} s)"
        return str(self.returncode)


def kill_session(leader: int) -> None:
    """SIGKILL the process group and session started for one run (the workers too).

    The run was started in a new session, so its process group id is ``leader``;
    processes that changed their group but kept the session are found in /proc.
    """
    try:
        os.killpg(leader, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc = Path("/proc")
    if not proc.is_dir():
        return
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # Field 6 of /proc/PID/stat is the session id; the command name (field 2)
            # may contain spaces, so split after its closing parenthesis.
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == leader:
            try:
                os.kill(int(entry.name), signal.SIGKILL)
            except ProcessLookupError:
                pass


def read_progress(path: Path, now: float) -> tuple[str | None, list[tuple[str, float]]]:
    """The test started last, and every test started but not finished with its age."""
    started: dict[str, float] = {}
    last: str | None = None
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None, []
    for line in lines:
        parts = line.split("\t", 2)
        if len(parts) != 3:
            continue
        kind, stamp, nodeid = parts
        if kind == "start":
            started[nodeid] = float(stamp)
            last = nodeid
        elif kind == "finish":
            started.pop(nodeid, None)
    in_flight = sorted(
        ((nodeid, now - stamp) for nodeid, stamp in started.items()), key=lambda x: -x[1]
    )
    return last, in_flight


@dataclass(frozen=True, slots=True)
class Record:
    """What the recorder wrote for one run."""

    outcomes: dict[OutcomeKey, str]
    #: How to show a subtest's key: its description with the keyword values.
    descriptions: dict[OutcomeKey, str]
    module_seconds: dict[str, float]
    times: dict[str, float]


def read_record(path: Path) -> Record | None:
    """The recorder's JSON document for one run, or None if it is missing or unreadable."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(document, dict) or document.get("version") != RECORD_VERSION:
        return None
    outcomes: dict[OutcomeKey, str] = {}
    descriptions: dict[OutcomeKey, str] = {}
    for nodeid, subtest, kind, outcome, description in document["outcomes"]:
        outcomes[nodeid, subtest, kind] = outcome
        if description is not None:
            descriptions[nodeid, subtest, kind] = description
    seconds = {str(module): float(value) for module, value in document["module_seconds"].items()}
    times = {str(name): float(value) for name, value in document.get("times", {}).items()}
    return Record(outcomes, descriptions, seconds, times)


def run_pytest(
    layout: Layout,
    suite: Suite,
    tool: str,
    tool_args: Sequence[str],
    out_dir: Path,
    label: str,
    timeout: float,
) -> RunResult:
    """Run pytest once from the suite's repository, timed from spawn to exit."""
    stem = f"{suite.name}-{label}"
    log_path = out_dir / f"{stem}.log"
    record_path = out_dir / f"{stem}.json"
    env = run_env(layout)
    env[RECORD_ENV] = str(record_path)
    command = [str(layout.pytest), "-p", RECORDER_MODULE, *suite.pytest_args, *tool_args]
    with log_path.open("w", encoding="utf-8") as log_file:
        log_file.write(f"$ {' '.join(command)}\n")
        log_file.flush()
        start = time.perf_counter()
        spawned = time.time()
        process = subprocess.Popen(
            command,
            cwd=layout.repo(suite),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            # Its own session, so a hung run is killed with every worker it started.
            start_new_session=True,
        )
        try:
            returncode: int | None = process.wait(timeout=timeout)
            wall = time.perf_counter() - start
        except subprocess.TimeoutExpired:
            wall = time.perf_counter() - start
            kill_session(process.pid)
            process.wait()
            returncode = None
    result = RunResult(suite.name, tool, tuple(tool_args), wall, returncode, log_path)
    result.spawned, result.exited = spawned, spawned + wall
    report_dir = layout.repo(suite) / ".pytest_cache" / "d" / "parallel-modules-report"
    if any(arg.startswith("--parallel-modules") for arg in tool_args) and report_dir.is_dir():
        result.report_bytes = sum(
            entry.stat().st_size for entry in report_dir.rglob("*") if entry.is_file()
        )
    if result.hung:
        result.last_started, result.in_flight = read_progress(
            Path(f"{record_path}.progress"), time.time()
        )
        return result
    record = read_record(record_path)
    if record is not None:
        result.outcomes = record.outcomes
        result.descriptions = record.descriptions
        result.module_seconds = record.module_seconds
        result.times = record.times
    return result


# --- comparing -------------------------------------------------------------------------------

ABSENT: Final = "(absent)"


@dataclass(frozen=True, slots=True)
class Difference:
    key: OutcomeKey
    #: How the key is shown: the node id, plus a subtest's description or "(collection)".
    display: str
    plain: str
    ours: str
    #: The suite's explanation when the difference is expected; None counts as a failure.
    expected_reason: str | None


def describe_key(key: OutcomeKey, descriptions: dict[OutcomeKey, str]) -> str:
    """The node id, plus "(collection)" for a collector or the subtest's place and description."""
    nodeid, subtest, kind = key
    if kind == "collector":
        return f"{nodeid} (collection)"
    if subtest is None:
        return nodeid
    place = subtest.split(" ", 1)[0]
    description = descriptions.get(key, subtest)
    if len(description) > 160:
        description = description[:157] + "..."
    return f"{nodeid} subtest {place} {description}"


def expected_reason(suite: Suite, nodeid: str) -> str | None:
    for expected in suite.expected_differences:
        if fnmatch.fnmatchcase(nodeid, expected.pattern):
            return expected.reason
    return None


def compare_outcomes(
    suite: Suite, plain: RunResult, ours: RunResult
) -> tuple[int, list[Difference]]:
    """Count identical outcomes and list the differences, in node id order.

    :returns: (0, []) if either run recorded nothing.
    """
    if plain.outcomes is None or ours.outcomes is None:
        return 0, []
    descriptions = {**ours.descriptions, **plain.descriptions}
    same = 0
    differences = []
    keys = sorted(plain.outcomes.keys() | ours.outcomes.keys(), key=outcome_order)
    for key in keys:
        before, after = plain.outcomes.get(key, ABSENT), ours.outcomes.get(key, ABSENT)
        if before == after:
            same += 1
        else:
            display = describe_key(key, descriptions)
            reason = expected_reason(suite, key[0])
            differences.append(Difference(key, display, before, after, reason))
    return same, differences


def outcome_order(key: OutcomeKey) -> tuple[str, int, str]:
    """Node id order; a test's subtests in the order they ran (their keys start "#<n>")."""
    nodeid, subtest, kind = key
    if subtest is None:
        return nodeid, 0, kind
    place = subtest.split(" ", 1)[0].lstrip("#")
    return nodeid, int(place) if place.isdigit() else 0, kind


# --- parity ----------------------------------------------------------------------------------


@dataclass(slots=True)
class ParityResult:
    suite: Suite
    plain: RunResult
    ours: RunResult
    same: int = 0
    differences: list[Difference] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def unexpected(self) -> list[Difference]:
        return [d for d in self.differences if d.expected_reason is None]

    @property
    def expected(self) -> list[Difference]:
        return [d for d in self.differences if d.expected_reason is not None]

    @property
    def ok(self) -> bool:
        return not self.problems and not self.unexpected


def hang_lines(result: RunResult) -> list[str]:
    """What a killed run was doing: the test started last and every test still running."""
    lines = [f"  {result.tool}: hang (killed at {result.wall:.0f} s)"]
    lines.append(f"    last started: {result.last_started or '(no test had started)'}")
    for nodeid, age in result.in_flight[:4]:
        lines.append(f"    running when killed: {nodeid} (for {age:.0f} s)")
    lines.append(f"    log: {result.log_path}")
    return lines


def parity_problems(result: ParityResult) -> list[str]:
    """Why the two runs cannot be compared or disagree beyond single outcomes.

    Different exit codes are a problem unless the expected differences explain them:
    no unexpected difference, some expected ones, and both codes 0 ("all passed") or
    1 ("some failed").
    """
    plain, ours = result.plain, result.ours
    problems = []
    for run in (plain, ours):
        if run.hung:
            problems.append(f"{run.tool} hung (killed at {run.wall:.0f} s)")
        elif run.outcomes is None:
            problems.append(f"{run.tool} exited {run.returncode} without recording outcomes")
    if problems or plain.returncode == ours.returncode:
        return problems
    explained = (
        result.expected and not result.unexpected and {plain.returncode, ours.returncode} <= {0, 1}
    )
    if not explained:
        problems.append(f"exit code {plain.returncode} plainly, {ours.returncode} with {ours.tool}")
    return problems


def render_parity(result: ParityResult) -> list[str]:
    plain, ours = result.plain, result.ours
    rows = [
        ("tests", f"{plain.count('test')}", f"{ours.count('test')}"),
        ("subtests", f"{plain.count('subtest')}", f"{ours.count('subtest')}"),
        (
            "failed/skipped collectors",
            f"{plain.count('collector')}",
            f"{ours.count('collector')}",
        ),
        ("exit code", plain.describe_end(), ours.describe_end()),
        ("wall", f"{plain.wall:.2f} s", f"{ours.wall:.2f} s"),
    ]
    lines = [
        f"\n== {result.suite.key}: pytest {' '.join(result.suite.pytest_args)}".rstrip(),
        f"  {'':<26} {'plain':>14} {ours.tool:>22}",
    ]
    lines += [f"  {name:<26} {left:>14} {right:>22}" for name, left, right in rows]
    if plain.outcomes is not None and ours.outcomes is not None:
        lines.append(
            f"  outcomes: {result.same:,} same, {len(result.unexpected):,} differ"
            f", {len(result.expected):,} expected differences"
        )
    for run in (plain, ours):
        if run.hung:
            lines += hang_lines(run)
    if result.unexpected:
        lines.append(f"  differing (plain -> {ours.tool}):")
        for difference in result.unexpected[:SHOW_DIFFERENCES]:
            lines.append(f"    {difference.display}: {difference.plain} -> {difference.ours}")
        if len(result.unexpected) > SHOW_DIFFERENCES:
            lines.append(f"    ... and {len(result.unexpected) - SHOW_DIFFERENCES} more")
    if result.expected:
        reasons = sorted({d.expected_reason or "" for d in result.expected})
        lines.append(f"  expected differences, not counted ({len(result.expected)}):")
        for reason in reasons:
            lines.append(f"    why: {reason}")
        for difference in result.expected[:SHOW_DIFFERENCES]:
            lines.append(f"    {difference.display}: {difference.plain} -> {difference.ours}")
        if len(result.expected) > SHOW_DIFFERENCES:
            lines.append(f"    ... and {len(result.expected) - SHOW_DIFFERENCES} more")
    if (
        not plain.hung
        and not ours.hung
        and plain.returncode != ours.returncode
        and not any(problem.startswith("exit code") for problem in result.problems)
    ):
        lines.append("  exit codes differ, explained by the expected differences")
    for problem in result.problems:
        lines.append(f"  PROBLEM: {problem}")
    lines.append(f"  logs: {plain.log_path.parent}")
    lines.append(f"  verdict: {'same' if result.ok else 'DIFFERENT'}")
    return lines


def render_parity_summary(results: Sequence[ParityResult]) -> list[str]:
    lines = [
        "\n| suite | tests plain / ours | same | differ | expected | exit plain / ours | wall plain / ours | verdict |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in results:
        plain, ours = r.plain, r.ours
        counted = plain.outcomes is not None and ours.outcomes is not None
        lines.append(
            f"| {r.suite.key} | {plain.count('test')} / {ours.count('test')}"
            f" | {f'{r.same:,}' if counted else '-'} | {len(r.unexpected) if counted else '-'}"
            f" | {len(r.expected) if counted else '-'}"
            f" | {plain.describe_end()} / {ours.describe_end()}"
            f" | {plain.wall:.2f} / {ours.wall:.2f} s | {'same' if r.ok else 'DIFFERENT'} |"
        )
    return lines


def new_run_dir(layout: Layout, command: str) -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = layout.runs / f"{stamp}-{command}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def preflight(layout: Layout, suites: Sequence[Suite]) -> dict[str, Any] | None:
    """Check setup was run and the venv's plugin is this checkout's; print the header."""
    missing = [s.key for s in suites if not (layout.repo(s) / ".git").is_dir()]
    if missing or not layout.pytest.exists():
        log(f"not set up in {layout.root} ({', '.join(missing) or 'venv'}): run setup first")
        return None
    install_recorder(layout)
    probe = probe_venv(layout, [])
    problem = plugin_checkout_problem(probe)
    if problem:
        log(problem)
        return None
    commit = run_checked(["git", "describe", "--always", "--dirty"], cwd=REPO_ROOT).strip()
    versions = probe["versions"]
    log(
        f"plugin {versions['pytest-parallel-modules']} from {REPO_ROOT} ({commit}); "
        f"pytest {versions['pytest']}, pytest-xdist {versions['pytest-xdist']}, "
        f"Python {probe['python']}"
    )
    log(f"{os.cpu_count()} CPUs; load average {format_load()}; cache {layout.root}")
    return probe


def format_load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def command_parity(
    layout: Layout,
    suites: Sequence[Suite],
    timeout: float,
    with_history: bool,
    compared_args: Sequence[str] = OURS_ARGS,
) -> int:
    """Run plain pytest and the compared arguments once per suite; exit 1 on a difference."""
    compared = " ".join(compared_args)
    if preflight(layout, suites) is None:
        return EXIT_BROKEN
    out_dir = new_run_dir(layout, "parity")
    results = []
    for suite in suites:
        repo = layout.repo(suite)
        log(f"\n{suite.key}: plain pytest ...")
        reset_checkout(repo, cold=True)
        plain = run_pytest(layout, suite, "plain", (), out_dir, "plain", timeout)
        log(f"  {plain.describe_end()} in {plain.wall:.2f} s")
        reset_checkout(repo, cold=True)
        if with_history:
            log(f"{suite.key}: {compared} warm-up (writes the duration history) ...")
            warmup = run_pytest(
                layout, suite, "warm-up", compared_args, out_dir, "compared-warmup", timeout
            )
            log(f"  {warmup.describe_end()} in {warmup.wall:.2f} s")
            reset_checkout(repo, cold=False)
        log(f"{suite.key}: {compared} ...")
        ours = run_pytest(layout, suite, compared, compared_args, out_dir, "compared", timeout)
        log(f"  {ours.describe_end()} in {ours.wall:.2f} s")
        result = ParityResult(suite, plain, ours)
        result.same, result.differences = compare_outcomes(suite, plain, ours)
        result.problems = parity_problems(result)
        results.append(result)
        log("\n".join(render_parity(result)))
    log("\n".join(render_parity_summary(results)))
    failed = [r.suite.name for r in results if not r.ok]
    log(
        f"\n{'DIFFERENT: ' + ', '.join(failed) if failed else 'all suites: same outcomes and exit codes'}"
    )
    return EXIT_DIFFERENT if failed else 0


# --- bench -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    args: tuple[str, ...]
    #: N in LB(N): how many processes run tests.
    workers: int


def bench_tools(suite: Suite) -> list[Tool]:
    return [
        Tool("plain", (), 1),
        Tool(f"xdist {' '.join(suite.xdist_args)}", suite.xdist_args, suite.xdist_workers),
        Tool("--parallel-modules=2", ("--parallel-modules=2",), 2),
        Tool("--parallel-modules=4", ("--parallel-modules=4",), 4),
    ]


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def fmt(value: float | None, suffix: str = "") -> str:
    return "-" if value is None else f"{value:.2f}{suffix}"


def outcome_note(suite: Suite, reference: RunResult | None, run: RunResult) -> str:
    """'same' or how many outcomes differ from the first plain run (expected ones aside)."""
    if run.hung:
        return f"hang, last started {run.last_started}"
    if reference is None or reference.outcomes is None or run.outcomes is None:
        return "not recorded"
    _, differences = compare_outcomes(suite, reference, run)
    unexpected = sum(1 for d in differences if d.expected_reason is None)
    expected = len(differences) - unexpected
    note = "same" if not unexpected else f"{unexpected} differ"
    if expected:
        note += f" ({expected} expected)"
    if run.returncode != reference.returncode:
        note += f", exit {run.returncode} (plain {reference.returncode})"
    return note


def bench_suite(
    layout: Layout, suite: Suite, rounds: int, timeout: float, out_dir: Path
) -> dict[str, Any]:
    """One sitting on one suite: warm-up, interleaved rounds, then the figures."""
    repo = layout.repo(suite)
    tools = bench_tools(suite)
    load_before = os.getloadavg()
    log(f"\n== {suite.key}: pytest {' '.join(suite.pytest_args)}".rstrip())
    log(f"  load average before: {format_load()}")
    reset_checkout(repo, cold=True)
    warmup = run_pytest(
        layout, suite, "warm-up", ("--parallel-modules=2",), out_dir, "warmup-ours2", timeout
    )
    log(
        f"  warm-up --parallel-modules=2 (cold, writes the duration history): {warmup.describe_end()}, {warmup.wall:.2f} s"
    )
    runs: dict[str, list[RunResult]] = {tool.name: [] for tool in tools}
    for round_index in range(rounds):
        for tool in tools:
            reset_checkout(repo, cold=False)
            label = f"r{round_index + 1}-{tool.name.strip('-').split()[0].replace('=', '')}"
            run = run_pytest(layout, suite, tool.name, tool.args, out_dir, label, timeout)
            runs[tool.name].append(run)
            reference = runs["plain"][0] if runs["plain"] else None
            log(
                f"  round {round_index + 1}/{rounds} {tool.name:<28} {run.wall:8.2f} s"
                f"  exit {run.describe_end()}; outcomes {outcome_note(suite, reference, run)}"
            )
    load_after = os.getloadavg()
    plain_runs = [run for run in runs["plain"] if not run.hung and run.module_seconds]
    modules = bench_run.median_module_seconds(plain_runs)
    bounds = {
        n: bench_run.lower_bound(modules.values(), n) for n in sorted({t.workers for t in tools})
    }
    medians = {
        tool.name: (
            statistics.median(walls)
            if (walls := [r.wall for r in runs[tool.name] if not r.hung])
            else None
        )
        for tool in tools
    }
    plain_median = medians["plain"]
    xdist_median = medians[tools[1].name]
    figures: dict[str, Any] = {
        "suite": suite.key,
        "pytest_args": list(suite.pytest_args),
        "rounds": rounds,
        "load_before": load_before,
        "load_after": load_after,
        "warmup_wall": warmup.wall,
        "modules": len(modules),
        "module_seconds_total": sum(modules.values()),
        "longest_module": max(modules.values(), default=0.0),
        "lower_bounds": {str(n): value for n, value in bounds.items()},
        "tools": {},
    }
    lines = [
        f"  load average after: {format_load()}",
        f"  plain per-module seconds: {len(modules)} modules, total {sum(modules.values()):.2f} s,"
        f" longest {max(modules.values(), default=0.0):.2f} s; "
        + ", ".join(f"LB({n}) = {value:.2f} s" for n, value in bounds.items()),
        "",
        "  | tool | median wall | min - max | ratio to plain | ours / xdist | wall / LB(N) |",
        "  | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for tool in tools:
        walls = [r.wall for r in runs[tool.name] if not r.hung]
        hangs = sum(1 for r in runs[tool.name] if r.hung)
        median = medians[tool.name]
        versus_xdist = ratio(median, xdist_median) if tool.name.startswith("--parallel") else None
        over_lb = ratio(median, bounds[tool.workers])
        spread = f"{min(walls):.2f} - {max(walls):.2f} s" if walls else "-"
        if hangs:
            spread += f" ({hangs} hung)"
        lines.append(
            f"  | {tool.name} | {fmt(median, ' s')} | {spread} | {fmt(ratio(median, plain_median))}"
            f" | {fmt(versus_xdist)} | {fmt(over_lb)} (N={tool.workers}) |"
        )
        figures["tools"][tool.name] = {
            "args": list(tool.args),
            "workers": tool.workers,
            "walls": [r.wall for r in runs[tool.name]],
            "hung": hangs,
            "exit_codes": [r.returncode for r in runs[tool.name]],
            "median": median,
            "ratio_to_plain": ratio(median, plain_median),
            "ours_over_xdist": versus_xdist,
            "wall_over_lb": over_lb,
            "outcomes": [outcome_note(suite, runs["plain"][0], r) for r in runs[tool.name]],
        }
    lines += ["", *overhead_lines(tools, runs, figures)]
    log("\n".join(lines))
    return figures


def overhead_lines(
    tools: Sequence[Tool], runs: dict[str, list[RunResult]], figures: dict[str, Any]
) -> list[str]:
    """The medians of where the time went beyond the tests, per tool (issue #14's figures)."""
    lines = [
        "  | tool | collection -> first test | last test -> exit | controller CPU per test | report dir |",
        "  | --- | ---: | ---: | ---: | ---: |",
    ]
    for tool in tools:
        finished = [run for run in runs[tool.name] if not run.hung]
        parts = [run.overhead() for run in finished]

        def median_of(name: str, parts: list[dict[str, float | None]] = parts) -> float | None:
            values = [value for part in parts if (value := part[name]) is not None]
            return statistics.median(values) if values else None

        sizes = [run.report_bytes for run in finished if run.report_bytes is not None]
        size = statistics.median(sizes) if sizes else None
        medians = {name: median_of(name) for name in parts[0]} if parts else {}
        figures["tools"][tool.name]["overhead"] = {**medians, "report_bytes": size}
        cpu = medians.get("cpu_per_test_ms")
        lines.append(
            f"  | {tool.name} | {fmt(medians.get('collection_to_first_test_s'), ' s')}"
            f" | {fmt(medians.get('last_test_to_exit_s'), ' s')}"
            f" | {'-' if cpu is None else f'{cpu:.3f} ms'}"
            f" | {'-' if size is None else f'{size / 1e6:.1f} MB'} |"
        )
    lines.append(
        "  (controller CPU per test: CPU seconds of the process the user started, from the end"
        " of collection to session finish, per test; for plain pytest that is running the tests)"
    )
    return lines


def command_bench(
    layout: Layout, suites: Sequence[Suite], rounds: int, timeout: float, json_path: Path | None
) -> int:
    probe = preflight(layout, suites)
    if probe is None:
        return EXIT_BROKEN
    out_dir = new_run_dir(layout, "bench")
    log(f"logs in {out_dir}; {rounds} round(s); ours warms up once per suite first")
    document: dict[str, Any] = {
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "plugin_checkout": str(REPO_ROOT),
        "plugin_commit": run_checked(
            ["git", "describe", "--always", "--dirty"], cwd=REPO_ROOT
        ).strip(),
        "versions": probe["versions"],
        "python": probe["python"],
        "suites": [bench_suite(layout, suite, rounds, timeout, out_dir) for suite in suites],
    }
    if json_path is not None:
        json_path.write_text(json.dumps(document, indent=2) + "\n")
        log(f"\nfigures saved to {json_path}")
    return 0


# --- command line ----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--cache",
        type=Path,
        default=None,
        help=f"the cache folder (default: ${CACHE_ENV}, else {default_cache()})",
    )
    parser = argparse.ArgumentParser(
        prog="real_suites.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    suites_help = f"suites to use (default: all of {', '.join(SUITES_BY_NAME)})"

    setup = commands.add_parser("setup", parents=[common], help="download, commit and install")
    setup.add_argument("suites", nargs="*", metavar="SUITE", help=suites_help)

    listing = commands.add_parser("list", parents=[common], help="show the pinned suites")
    listing.add_argument("suites", nargs="*", metavar="SUITE", help=suites_help)

    timeout_help = "seconds before a run is killed and reported as a hang (default: %(default)s)"
    parity = commands.add_parser(
        "parity", parents=[common], help="compare outcomes: plain pytest vs --parallel-modules=2"
    )
    parity.add_argument("suites", nargs="*", metavar="SUITE", help=suites_help)
    parity.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help=timeout_help)
    parity.add_argument(
        "--args",
        dest="compared_args",
        type=shlex.split,
        default=" ".join(OURS_ARGS),
        metavar="ARGS",
        help="pytest arguments of the run compared with plain pytest (default: %(default)s); "
        "e.g. --args='-n 2 --dist loadfile' shows what pytest-xdist changes",
    )
    parity.add_argument(
        "--with-history",
        action="store_true",
        help="run --parallel-modules=2 once first (not compared), so the compared run hands "
        "modules out slowest-first from a duration history instead of cold",
    )

    bench = commands.add_parser(
        "bench", parents=[common], help="time plain, xdist and --parallel-modules=2/4"
    )
    bench.add_argument("suites", nargs="*", metavar="SUITE", help=suites_help)
    bench.add_argument("--rounds", type=int, default=3, help="timed rounds (default: %(default)s)")
    bench.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help=timeout_help)
    bench.add_argument("--json", type=Path, default=None, metavar="PATH", help="save the figures")
    args = parser.parse_args(argv)
    if getattr(args, "rounds", 1) < 1:
        parser.error("--rounds must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    layout = Layout((args.cache or default_cache()).expanduser().resolve())
    if layout.root.is_relative_to(REPO_ROOT):
        raise SystemExit(
            f"--cache {layout.root} is inside the repository; choose a folder outside it"
        )
    suites = select_suites(args.suites)
    if args.command == "setup":
        return command_setup(layout, suites)
    if args.command == "list":
        return command_list(layout, suites)
    if args.command == "parity":
        return command_parity(
            layout, suites, args.timeout, args.with_history, tuple(args.compared_args)
        )
    return command_bench(layout, suites, args.rounds, args.timeout, args.json)


if __name__ == "__main__":
    sys.exit(main())
