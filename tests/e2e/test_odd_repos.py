"""End to end: repositories in unusual states run in parallel with a plain run's outcomes.

Each test builds a real repository in an odd state (detached HEAD, no commit yet,
shallow clone, sparse checkout, unicode paths, a held index lock, a submodule, no
git at all), runs the same small suite once plainly and once with
``--parallel-modules=2``, and compares the ``-rA`` short summaries.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
import os
from pathlib import Path
import subprocess
import sys

import pytest

from tests.conftest import run_git
from tests.conftest import short_summary


pytestmark = pytest.mark.e2e

WORKTREE_LINE = "parallel-modules: each worker in its own git worktree of a snapshot*"

#: A suite with passes, a parametrized test, a skip and an xfail, over three modules.
SUITE = {
    "test_alpha.py": "def test_one():\n    pass\n\ndef test_two():\n    assert 1 + 1 == 2\n",
    "test_beta.py": (
        "import pytest\n\n"
        "@pytest.mark.parametrize('n', [1, 2, 3])\n"
        "def test_param(n):\n    assert n > 0\n"
    ),
    "pkg/test_gamma.py": (
        "import pytest\n\n"
        "def test_skip():\n    pytest.skip('not today')\n\n"
        "@pytest.mark.xfail(reason='known')\n"
        "def test_xfail():\n    assert 0\n"
    ),
}


@dataclass
class Runs:
    """Runs pytest in a directory as a user would: a fresh process, plain or parallel."""

    pytester: pytest.Pytester
    count: int = 0

    def run(self, cwd: Path, *args: str, env: dict[str, str] | None = None) -> pytest.RunResult:
        self.count += 1
        # Outside the repository, so that no snapshot ever holds it.
        basetemp = self.pytester.path.parent / f"{self.pytester.path.name}-basetemp-{self.count}"
        command = [
            sys.executable,
            "-m",
            "pytest",
            "-rA",
            "-p",
            "no:randomly",
            "-p",
            "no:cacheprovider",
            f"--basetemp={basetemp}",
            *args,
        ]
        completed = subprocess.run(
            command,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env=env,
        )
        return pytest.RunResult(
            completed.returncode,
            completed.stdout.splitlines(),
            completed.stderr.splitlines(),
            duration=0.0,
        )

    def both(
        self, cwd: Path, *args: str, env: dict[str, str] | None = None
    ) -> tuple[pytest.RunResult, pytest.RunResult]:
        """Run plainly, then with ``--parallel-modules=2``; check the outcomes are equal."""
        plain = self.run(cwd, *args, env=env)
        parallel = self.run(cwd, "--parallel-modules=2", *args, env=env)
        output = "\n".join(parallel.outlines + parallel.errlines)
        assert parallel.ret == plain.ret, output
        assert short_summary(parallel) == short_summary(plain), output
        assert short_summary(plain), "\n".join(plain.outlines)
        assert "INTERNALERROR" not in output
        return plain, parallel


@pytest.fixture
def runs(
    pytester: pytest.Pytester,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Runs]:
    """A :class:`Runs`, with git's identity and the worktree pool kept out of the user's home."""
    monkeypatch.setenv("PYTEST_PARALLEL_MODULES_POOL_DIR", str(tmp_path_factory.mktemp("pool")))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    for variable in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{variable}_NAME", "Test User")
        monkeypatch.setenv(f"GIT_{variable}_EMAIL", "test@example.com")
    yield Runs(pytester)


def write_files(root: Path, files: dict[str, str]) -> None:
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")


def make_repo(root: Path, files: dict[str, str] = SUITE, *, commit: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    run_git(root, "init", "-q", "-b", "main")
    write_files(root, files)
    if commit:
        run_git(root, "add", "-A")
        run_git(root, "commit", "-q", "-m", "suite")
    return root


def test_detached_head(pytester: pytest.Pytester, runs: Runs) -> None:
    repo = make_repo(pytester.path / "repo")
    write_files(repo, {"test_delta.py": "def test_delta():\n    pass\n"})
    run_git(repo, "add", "-A")
    run_git(repo, "commit", "-q", "-m", "second")
    run_git(repo, "checkout", "-q", "--detach", "HEAD~1")
    write_files(repo, {"test_epsilon.py": "def test_untracked():\n    pass\n"})

    _, parallel = runs.both(repo)

    parallel.stdout.fnmatch_lines([WORKTREE_LINE])
    assert "PASSED test_epsilon.py::test_untracked" in parallel.outlines
    assert not (repo / "test_delta.py").exists()
    assert run_git(repo, "status", "--porcelain", "--branch").startswith("## HEAD (no branch)")


def test_no_commit_yet(pytester: pytest.Pytester, runs: Runs) -> None:
    repo = make_repo(pytester.path / "repo", commit=False)
    run_git(repo, "add", "test_alpha.py")  # one staged file, the others untracked

    _, parallel = runs.both(repo)

    parallel.stdout.fnmatch_lines([WORKTREE_LINE])
    assert "PASSED test_beta.py::test_param[3]" in parallel.outlines  # untracked
    head = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", "HEAD"], cwd=repo, check=False
    )
    assert head.returncode != 0, "the run made a commit on the user's branch"
    assert run_git(repo, "diff", "--cached", "--name-only") == "test_alpha.py\n"


def test_shallow_clone(pytester: pytest.Pytester, runs: Runs) -> None:
    origin = make_repo(pytester.path / "origin")
    write_files(origin, {"test_delta.py": "def test_delta():\n    pass\n"})
    run_git(origin, "add", "-A")
    run_git(origin, "commit", "-q", "-m", "second")
    clone = pytester.path / "clone"
    run_git(pytester.path, "clone", "-q", "--depth", "1", origin.as_uri(), str(clone))
    assert run_git(clone, "rev-parse", "--is-shallow-repository") == "true\n"
    write_files(
        clone, {"test_alpha.py": "def test_one():\n    pass\n\ndef test_edited():\n    pass\n"}
    )

    _, parallel = runs.both(clone)

    parallel.stdout.fnmatch_lines([WORKTREE_LINE])
    assert "PASSED test_alpha.py::test_edited" in parallel.outlines
    assert "PASSED test_delta.py::test_delta" in parallel.outlines


@pytest.mark.slow
def test_sparse_checkout_workers_see_what_the_user_sees(
    pytester: pytest.Pytester, runs: Runs
) -> None:
    # The snapshot holds the files of the working tree, so a sparse checkout's
    # worktrees hold the cone and nothing else -- what a plain run sees -- and a later
    # run after `sparse-checkout disable` sees every file again, in the same slots.
    files = {
        **SUITE,
        "outside/test_outside.py": "def test_outside():\n    pass\n",
        "pkg/test_probe.py": (
            "from pathlib import Path\n\n"
            "def test_outside_is_not_there():\n"
            "    assert Path('outside').exists() == Path('disabled.flag').exists()\n"
        ),
    }
    repo = make_repo(pytester.path / "repo", files)
    run_git(repo, "sparse-checkout", "set", "pkg")
    assert not (repo / "outside").exists()
    # A file the user made outside the cone is there for them, so it is there for the workers.
    write_files(repo, {"extra/test_extra.py": "def test_extra():\n    pass\n"})

    _, parallel = runs.both(repo)

    parallel.stdout.fnmatch_lines([WORKTREE_LINE])
    assert "PASSED extra/test_extra.py::test_extra" in parallel.outlines
    assert "outside/test_outside.py" not in parallel.stdout.str()
    assert "PASSED pkg/test_probe.py::test_outside_is_not_there" in parallel.outlines

    run_git(repo, "sparse-checkout", "disable")
    write_files(repo, {"disabled.flag": ""})

    _, parallel = runs.both(repo)

    assert "PASSED outside/test_outside.py::test_outside" in parallel.outlines
    assert "PASSED pkg/test_probe.py::test_outside_is_not_there" in parallel.outlines


def test_unicode_module_paths(pytester: pytest.Pytester, runs: Runs) -> None:
    repo = make_repo(
        pytester.path / "repo",
        {
            **SUITE,
            "tésts/test_ünïcode.py": "def test_ünï():\n    pass\n",
            "données/test_日本.py": "import pytest\n\n@pytest.mark.parametrize('x', ['é', 'ß'])\n"
            "def test_param(x):\n    assert x\n",
        },
    )
    write_files(repo, {"tésts/test_ünträcked.py": "def test_new():\n    pass\n"})

    _, parallel = runs.both(repo)

    parallel.stdout.fnmatch_lines([WORKTREE_LINE])
    assert "PASSED tésts/test_ünïcode.py::test_ünï" in parallel.outlines
    assert "PASSED tésts/test_ünträcked.py::test_new" in parallel.outlines
    # pytest escapes non-ASCII parameter ids the same way in both runs.
    assert "PASSED données/test_日本.py::test_param[\\xdf]" in parallel.outlines


def test_git_missing_from_path_runs_in_place_and_says_so(
    pytester: pytest.Pytester, runs: Runs
) -> None:
    repo = make_repo(pytester.path / "repo")
    bin_dir = pytester.path / "bin-without-git"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    env = {**os.environ, "PATH": str(bin_dir)}

    _, parallel = runs.both(repo, env=env)

    notices = [line for line in parallel.outlines if line.startswith("parallel-modules: workers")]
    assert notices == ["parallel-modules: workers run in place (git was not found on PATH)"]


def test_a_held_index_lock_is_neither_needed_nor_touched(
    pytester: pytest.Pytester, runs: Runs
) -> None:
    repo = make_repo(pytester.path / "repo")
    write_files(repo, {"test_alpha.py": "def test_edited():\n    pass\n"})
    lock = repo / ".git" / "index.lock"
    lock.write_bytes(b"another git command is writing the index")
    before = lock.stat()

    _, parallel = runs.both(repo)

    parallel.stdout.fnmatch_lines([WORKTREE_LINE])
    assert "PASSED test_alpha.py::test_edited" in parallel.outlines
    after = lock.stat()
    assert lock.read_bytes() == b"another git command is writing the index"
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_submodule_files_are_in_the_worktree(pytester: pytest.Pytester, runs: Runs) -> None:
    library = make_repo(pytester.path / "library", {"vendored.py": "ANSWER = 42\n"})
    repo = make_repo(
        pytester.path / "repo",
        {
            **SUITE,
            "test_uses_submodule.py": (
                "import sys\nfrom pathlib import Path\n\n"
                "def test_reads_it():\n"
                "    sys.path.insert(0, str(Path('lib').resolve()))\n"
                "    import vendored\n"
                "    assert vendored.ANSWER == 42\n"
                "    assert Path(vendored.__file__).resolve().parent == Path('lib').resolve()\n"
            ),
        },
    )
    run_git(repo, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(library), "lib")
    run_git(repo, "commit", "-q", "-m", "submodule")
    # Tests inside the submodule are collected by both runs too.
    write_files(repo / "lib", {"test_in_lib.py": "def test_in_lib():\n    pass\n"})
    run_git(repo / "lib", "add", "-A")
    run_git(repo / "lib", "commit", "-q", "-m", "a test in the library")

    _, parallel = runs.both(repo)

    parallel.stdout.fnmatch_lines([WORKTREE_LINE])
    assert "PASSED test_uses_submodule.py::test_reads_it" in parallel.outlines
    assert "PASSED lib/test_in_lib.py::test_in_lib" in parallel.outlines
