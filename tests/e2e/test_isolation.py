"""End to end: workers run in worktrees holding a snapshot of the user's working tree."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import pytest

from pytest_parallel_modules.isolation import WorkerPlacer
from pytest_parallel_modules.worktrees import default_pool_dir
from pytest_parallel_modules.worktrees import WorktreeCancelled
from tests.conftest import GitRepo
from tests.conftest import run_git
from tests.e2e.git_state import all_objects
from tests.e2e.git_state import git_dir_digest
from tests.e2e.git_state import readable_by_others
from tests.e2e.git_state import secret_holders


pytestmark = pytest.mark.e2e


def test_modules_writing_the_same_file_never_collide(
    pytester: pytest.Pytester, git_repo: GitRepo
) -> None:
    for index in range(6):
        pytester.makepyfile(
            **{
                f"test_w{index}": f"""
                import os, time
                from pathlib import Path

                def test_write_read_back():
                    out = Path("build/out.txt")
                    out.parent.mkdir(exist_ok=True)
                    for round in range(20):
                        out.write_text("{index}-%d" % round)
                        time.sleep(0.005)
                        assert out.read_text() == "{index}-%d" % round
                """
            }
        )
    result = pytester.runpytest_subprocess("--parallel-modules=3", timeout=60)
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines(["parallel-modules: each worker in its own git worktree*"])
    assert not (pytester.path / "build").exists(), "a worker wrote into the main checkout"


def test_workers_see_the_working_tree_not_head(
    pytester: pytest.Pytester, git_repo: GitRepo
) -> None:
    pytester.makepyfile(data_unstaged="VALUE = 'committed'\n", data_staged="VALUE = 'committed'\n")
    (pytester.path / ".gitignore").write_text("ignored.txt\n")
    git_repo.commit_all("data")
    (pytester.path / "data_unstaged.py").write_text("VALUE = 'unstaged edit'\n")
    (pytester.path / "data_staged.py").write_text("VALUE = 'staged edit'\n")
    git_repo.git("add", "data_staged.py")
    (pytester.path / "untracked.txt").write_text("untracked file\n")
    (pytester.path / "ignored.txt").write_text("ignored file\n")
    pytester.makepyfile(
        test_seen=f"""
        from pathlib import Path
        import data_staged, data_unstaged

        def test_edits_are_seen():
            assert data_unstaged.VALUE == "unstaged edit"
            assert data_staged.VALUE == "staged edit"
            assert Path("untracked.txt").read_text() == "untracked file\\n"

        def test_ignored_file_is_not_there():
            assert not Path("ignored.txt").exists()

        def test_runs_in_a_worktree():
            here = Path(__file__).resolve()
            assert not here.is_relative_to({str(pytester.path.resolve())!r}), here
            assert Path.cwd().resolve() != Path({str(pytester.path.resolve())!r})
        """
    )
    index_before = (pytester.path / ".git" / "index").read_bytes()
    result = pytester.runpytest_subprocess(
        "--parallel-modules=2", "-p", "no:cacheprovider", timeout=60
    )
    result.assert_outcomes(passed=3)
    assert (pytester.path / ".git" / "index").read_bytes() == index_before


def test_worktree_copy_brings_ignored_files(pytester: pytest.Pytester, git_repo: GitRepo) -> None:
    pytester.makeini("[pytest]\nworktree_copy =\n    local/*.dat\n")
    (pytester.path / ".gitignore").write_text("local/\n")
    (pytester.path / "local").mkdir()
    (pytester.path / "local" / "big.dat").write_text("local data\n")
    pytester.makepyfile(
        test_copy="""
        from pathlib import Path

        def test_data_is_copied_and_writable():
            data = Path("local/big.dat")
            assert data.read_text() == "local data\\n"
            data.write_text("changed by the test\\n")
        """
    )
    result = pytester.runpytest_subprocess("--parallel-modules=1", timeout=60)
    result.assert_outcomes(passed=1)
    assert (pytester.path / "local" / "big.dat").read_text() == "local data\n"


def test_isolation_none_runs_in_place(pytester: pytest.Pytester, git_repo: GitRepo) -> None:
    pytester.makepyfile(
        test_here=f"""
        from pathlib import Path

        def test_in_place():
            assert Path(__file__).resolve().parent == Path({str(pytester.path.resolve())!r})
        """
    )
    result = pytester.runpytest_subprocess(
        "--parallel-modules=1", "--module-isolation=none", timeout=60
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["parallel-modules: workers run in place (--module-isolation=none)"]
    )


def test_outside_a_git_work_tree_runs_in_place_and_says_so(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_nogit="def test_a(): pass\n")
    result = pytester.runpytest_subprocess("--parallel-modules=1", timeout=60)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["parallel-modules: workers run in place (not inside a git work tree)"]
    )


def test_bad_isolation_value_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--parallel-modules=1", "--module-isolation=docker")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: --module-isolation: expected 'worktree' or 'none', got 'docker'"]
    )


@pytest.mark.parametrize(
    ("args", "source"),
    [
        (["--module-isolation=worktree"], "--module-isolation"),
        (["-o", "module_isolation=worktree"], "ini module_isolation"),
    ],
)
def test_explicit_worktree_isolation_outside_git_is_a_usage_error(
    pytester: pytest.Pytester, args: list[str], source: str
) -> None:
    pytester.makepyfile(test_nogit="def test_a(): pass\n")
    # In-process: the check happens before any worker starts.
    result = pytester.runpytest("--parallel-modules=1", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"ERROR: {source}=worktree: {pytester.path} is not inside a git work tree, *"]
    )


def test_monorepo_rootdir_in_a_subdirectory(pytester: pytest.Pytester, git_repo: GitRepo) -> None:
    project = pytester.path / "services" / "api"
    project.mkdir(parents=True)
    (project / "pytest.ini").write_text("[pytest]\n")
    (project / "tests").mkdir()
    (project / "tests" / "test_api.py").write_text(
        "from pathlib import Path\n"
        "def test_cwd():\n"
        "    assert Path.cwd().name == 'api'\n"
        "    assert Path('pytest.ini').exists()\n"
    )
    (project / "tests" / "test_more.py").write_text("def test_more(): pass\n")
    git_repo.commit_all("monorepo")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--parallel-modules=2", "-rA", "-p", "no:cacheprovider"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASSED tests/test_api.py::test_cwd" in result.stdout
    assert "PASSED tests/test_more.py::test_more" in result.stdout


def test_repository_path_with_spaces_and_non_ascii(
    pytester: pytest.Pytester, git_repo: GitRepo
) -> None:
    repo = pytester.path / "my répo ünïcode"
    repo.mkdir()
    run_git(repo, "init", "-q")
    (repo / "test_ü.py").write_text("def test_unicode_path(): pass\n")
    (repo / "test_plain.py").write_text("def test_plain(): pass\n")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--parallel-modules=2", "-rA"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASSED test_ü.py::test_unicode_path" in result.stdout
    assert "each worker in its own git worktree" in result.stdout


def test_worktree_ready_hook_and_keep_failed_worktrees(
    pytester: pytest.Pytester, git_repo: GitRepo
) -> None:
    pytester.makeconftest(
        """
        def pytest_parallel_modules_worktree_ready(config, worktree, worker_id):
            (worktree / "prepared.txt").write_text(worker_id)
        """
    )
    pytester.makepyfile(
        test_prepared="""
        import os
        from pathlib import Path

        def test_prepared():
            assert Path("prepared.txt").read_text() == os.environ["PYTEST_PARALLEL_MODULES_WORKER"]

        def test_fails():
            Path("evidence.txt").write_text("left for inspection")
            assert 0
        """
    )
    result = pytester.runpytest_subprocess(
        "--parallel-modules=1", "--keep-failed-worktrees", timeout=60
    )
    result.assert_outcomes(passed=1, failed=1)
    line = next(line for line in result.outlines if "kept the worktree of worker w1" in line)
    kept = Path(line.rsplit(": ", 1)[1])
    assert (kept / "evidence.txt").read_text() == "left for inspection"
    assert not (pytester.path / "prepared.txt").exists()


def test_a_failing_hook_fails_the_run_clearly(pytester: pytest.Pytester, git_repo: GitRepo) -> None:
    pytester.makeconftest(
        """
        def pytest_parallel_modules_worktree_ready(config, worktree, worker_id):
            raise RuntimeError("cannot prepare " + worker_id)
        """
    )
    pytester.makepyfile(test_x="def test_x(): pass\n")
    result = pytester.runpytest_subprocess("--parallel-modules=1", timeout=60)
    assert result.ret != pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*no worker could start: RuntimeError: cannot prepare w1*"])


def test_two_concurrent_runs_use_their_own_worktrees(
    pytester: pytest.Pytester, git_repo: GitRepo
) -> None:
    log = pytester.path.parent / f"{pytester.path.name}-worktrees.log"
    pytester.makeconftest(
        f"""
        def pytest_parallel_modules_worktree_ready(config, worktree, worker_id):
            with open({str(log)!r}, "a") as f:
                f.write(str(worktree) + "\\n")
        """
    )
    pytester.makepyfile(
        test_slow_a="import time\ndef test_a(): time.sleep(1)\n",
        test_slow_b="import time\ndef test_b(): time.sleep(1)\n",
    )
    command = [sys.executable, "-m", "pytest", "--parallel-modules=2", "-p", "no:cacheprovider"]
    runs = [
        subprocess.Popen(
            command, cwd=pytester.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        for _ in range(2)
    ]
    for run in runs:
        output, _ = run.communicate(timeout=60)
        assert run.returncode == 0, output.decode()
    worktrees = log.read_text().split()
    assert len(worktrees) == 4
    assert len(set(worktrees)) == 4, "two runs shared a worktree slot"


def _repository_state(repo: Path) -> dict[str, object]:
    """Everything of the user's that a run must never change."""
    files = {}
    for path in sorted(repo.rglob("*")):
        relative = path.relative_to(repo)
        if relative.parts[0] in (".git", ".pytest_cache") or not path.is_file():
            continue
        files[str(relative)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return {
        "status": run_git(repo, "status", "--porcelain=v2", "--branch", "--untracked-files=all"),
        "stash": run_git(repo, "stash", "list"),
        "refs": run_git(repo, "for-each-ref"),
        "head": run_git(repo, "rev-parse", "HEAD"),
        "symbolic_head": (repo / ".git" / "HEAD").read_text(),
        "index": hashlib.sha256((repo / ".git" / "index").read_bytes()).hexdigest(),
        "config": (repo / ".git" / "config").read_text(),
        "files": files,
    }


@pytest.mark.parametrize("scenario", ["passing", "failing", "interrupted"])
def test_nothing_of_the_users_is_changed(
    pytester: pytest.Pytester, git_repo: GitRepo, monkeypatch: pytest.MonkeyPatch, scenario: str
) -> None:
    """A run leaves every file, ref and git setting of the user's as it found them.

    Bytecode caches included: the run happens with ``PYTHONDONTWRITEBYTECODE``
    unset, as on a developer's machine. The controller is the user's own pytest
    process and collects the user's modules exactly as a plain run does, so it
    writes the ``__pycache__/*.pyc`` files a plain run writes, in the same place
    and with the same bytes. Those are legitimate: suppressing them in the
    controller would only make the next plain run recompile. So the checkout is
    first warmed by a plain ``pytest --collect-only`` and then compared byte for
    byte: the parallel run may write nothing there that plain pytest would not
    (workers write their caches inside their worktrees).
    """
    pytester.makepyfile(
        test_state=f"""
        import time
        from pathlib import Path

        def test_writes_files():
            Path("generated.txt").write_text("by a test")
            Path("tracked.txt").write_text("overwritten by a test")

        def test_outcome():
            if {scenario!r} == "interrupted":
                Path({str(pytester.path / "started")!r}).touch()
                time.sleep(30)
            assert {scenario!r} == "passing"
        """
    )
    (pytester.path / "tracked.txt").write_text("committed\n")
    git_repo.commit_all("state")
    (pytester.path / "tracked.txt").write_text("edited, not staged\n")
    (pytester.path / "staged.txt").write_text("staged\n")
    git_repo.git("add", "staged.txt")
    (pytester.path / "untracked.txt").write_text("untracked\n")
    (pytester.path / "stashed.txt").write_text("to stash\n")
    git_repo.git("stash", "push", "--include-untracked", "-q", "--", "stashed.txt")
    # Our own status calls must not refresh the index either.
    monkeypatch.setenv("GIT_OPTIONAL_LOCKS", "0")
    # Whatever the environment running this suite says, bytecode is written here.
    monkeypatch.delenv("PYTHONDONTWRITEBYTECODE", raising=False)
    plain = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=pytester.path,
        capture_output=True,
        check=False,
    )
    assert plain.returncode == 0, plain.stdout.decode()
    assert list(pytester.path.glob("__pycache__/test_state.*.pyc")), "plain pytest wrote no cache"
    before = _repository_state(pytester.path)
    git_before = git_dir_digest(pytester.path)

    command = [sys.executable, "-m", "pytest", "--parallel-modules=2"]
    process = subprocess.Popen(
        command, cwd=pytester.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    if scenario == "interrupted":
        deadline = time.monotonic() + 30
        while not (pytester.path / "started").exists():
            assert time.monotonic() < deadline, "the test never started"
            time.sleep(0.05)
        (pytester.path / "started").unlink()
        process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    expected = {"passing": 0, "failing": 1, "interrupted": 2}[scenario]
    assert process.returncode == expected, output.decode()
    assert _repository_state(pytester.path) == before
    # Nothing under .git changed either: no object, no worktree registration, no reflog.
    assert git_dir_digest(pytester.path) == git_before


@pytest.mark.skipif(sys.version_info < (3, 11), reason="python -P is new in 3.11")
@pytest.mark.parametrize("layout", ["src", "flat"])
def test_editable_install_imports_the_snapshot(
    pytester: pytest.Pytester, git_repo: GitRepo, layout: str
) -> None:
    """``pip install -e .`` (``.pth`` kind for a src layout, import-hook kind for a flat one)."""
    package_dir = pytester.path / ("src/demo" if layout == "src" else "demo")
    package_dir.mkdir(parents=True)
    (package_dir / "__init__.py").write_text("VALUE = 'snapshot'\n")
    packages = (
        'package-dir = {"" = "src"}\npackages = ["demo"]'
        if layout == "src"
        else 'packages = ["demo"]'
    )
    (pytester.path / "pyproject.toml").write_text(
        textwrap.dedent(
            """
            [build-system]
            requires = ["setuptools>=64"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "demo"
            version = "0.1"

            [tool.setuptools]
            """
        )
        + packages
        + "\n"
    )
    # The test changes the package in the main checkout after the snapshot was taken:
    # the hook runs once the worktree exists, before the worker starts.
    pytester.makeconftest(
        f"""
        from pathlib import Path

        def pytest_parallel_modules_worktree_ready(config, worktree, worker_id):
            Path({str(package_dir / "__init__.py")!r}).write_text("VALUE = 'live edit'\\n")
        """
    )
    # In tests/, so only the editable install (not the rootdir on sys.path) can import demo.
    (pytester.path / "tests").mkdir()
    (pytester.path / "tests" / "test_demo.py").write_text(
        textwrap.dedent(
            f"""
            from pathlib import Path
            import demo

            def test_snapshot_version():
                assert demo.VALUE == "snapshot"
                assert not Path(demo.__file__).resolve().is_relative_to({str(pytester.path.resolve())!r})
            """
        )
    )
    (pytester.path / ".gitignore").write_text("venv/\n*.egg-info/\nbuild/\n")
    git_repo.commit_all("demo")

    venv = pytester.path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60
    )
    inner_python = venv / "bin" / "python"
    site_packages = subprocess.run(
        [str(inner_python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    # The outer environment (pytest, this plugin, setuptools) stays importable.
    outer = [p for p in sys.path if os.path.isabs(p) and os.path.isdir(p)]
    (Path(site_packages) / "outer.pth").write_text("\n".join(outer) + "\n")
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(inner_python),
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-e",
            str(pytester.path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    installed = "".join(p.read_text() for p in Path(site_packages).glob("__editable__*"))
    if layout == "flat":
        assert "_finder" in installed, installed  # setuptools' import-hook kind
    else:
        assert str(pytester.path / "src") in installed, installed  # a plain .pth path entry

    result = subprocess.run(
        # -P: no current directory on sys.path, as with the `pytest` console script.
        [
            str(inner_python),
            "-P",
            "-m",
            "pytest",
            "--parallel-modules=1",
            "-p",
            "no:cacheprovider",
            "--import-mode=importlib",
            "tests",
        ],
        cwd=pytester.path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert os.path.exists(package_dir / "__init__.py")


def _clean(repo: Path) -> str:
    """Run ``python -m pytest_parallel_modules clean`` in ``repo``; return its output."""
    cleaned = subprocess.run(
        [sys.executable, "-m", "pytest_parallel_modules", "clean"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )
    assert cleaned.returncode == 0, cleaned.stdout + cleaned.stderr
    return cleaned.stdout


def test_an_untracked_secret_never_reaches_the_users_object_store(
    pytester: pytest.Pytester, git_repo: GitRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = f"secret-{uuid.uuid4()}"
    env_file = pytester.path / ".env"
    env_file.write_text(f"TOKEN={secret}\n")
    env_file.chmod(0o600)
    # The test reads the secret from the environment: written into the test file, it
    # would be untracked content of its own.
    monkeypatch.setenv("EXPECTED_TOKEN", secret)
    pytester.makepyfile(
        test_env="""
        import os
        import stat
        import zlib
        from pathlib import Path

        def test_the_worker_sees_the_untracked_file():
            assert Path(".env").read_text() == "TOKEN=" + os.environ["EXPECTED_TOKEN"] + "\\n"

        def test_while_the_run_lasts_only_the_owner_can_read_the_pools_copies():
            secret = os.environ["EXPECTED_TOKEN"].encode()
            pool_base = Path(os.environ["PYTEST_PARALLEL_MODULES_POOL_DIR"])
            holders = []
            for directory, _, names in os.walk(pool_base):
                for name in names:
                    path = Path(directory, name)
                    if path.is_symlink() or not path.is_file():
                        continue
                    content = path.read_bytes()
                    try:
                        content += zlib.decompress(content)
                    except zlib.error:
                        pass
                    if secret in content:
                        holders.append(path)
            assert any("snapshots" in path.parts for path in holders)
            for path in holders:
                # Unreadable by others: the file itself, or a directory on the way to it.
                chain = [path, *path.parents[: len(path.relative_to(pool_base).parts)]]
                assert any(
                    not part.stat().st_mode & (stat.S_IROTH if part == path else stat.S_IXOTH)
                    for part in chain
                ), path
        """
    )
    pool_base = Path(os.environ["PYTEST_PARALLEL_MODULES_POOL_DIR"])

    result = pytester.runpytest_subprocess("--parallel-modules=2", timeout=60)

    result.assert_outcomes(passed=2)
    assert secret.encode() not in all_objects(pytester.path)
    assert secret_holders(pytester.path / ".git", secret.encode()) == []
    # The slot's copies stay until the next run or `clean`; nobody else can read them.
    holders = secret_holders(pool_base, secret.encode())
    assert holders, "the worker's worktree holds the file"
    assert [path for path in holders if readable_by_others(path, pool_base)] == []
    pool = default_pool_dir(pytester.path)
    assert list((pool / "snapshots").iterdir()) == [], "the run's snapshot outlived it"

    _clean(pytester.path)

    assert secret_holders(pool_base, secret.encode()) == []
    assert secret_holders(pytester.path / ".git", secret.encode()) == []


def _run_parallel(repo: Path) -> subprocess.CompletedProcess[str]:
    """One ``--parallel-modules=1`` run in ``repo``, writing nothing into it but pytest's cache."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "--parallel-modules=1", "-q"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_slot_pointing_at_the_users_git_dir_is_rebuilt(
    pytester: pytest.Pytester, git_repo: GitRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_one="def test_one():\n    pass\n")
    git_repo.commit_all("suite")
    first = _run_parallel(pytester.path)
    assert first.returncode == 0, first.stdout + first.stderr
    slot = default_pool_dir(pytester.path) / "slot-0"
    # What `git worktree add`, a copied .git file or a confused tool leaves behind: the
    # slot's .git names the user's git dir. Used as it is, the next run's checkout would
    # detach the user's HEAD and rewrite their index.
    if (slot / ".git").is_dir():
        shutil.rmtree(slot / ".git")
    else:
        (slot / ".git").unlink()
    (slot / ".git").write_text(f"gitdir: {pytester.path / '.git'}\n")
    (pytester.path / "staged.txt").write_text("staged\n")
    git_repo.git("add", "staged.txt")
    (pytester.path / "test_one.py").write_text(
        "def test_one():\n    pass\n\ndef test_two():\n    pass\n"
    )
    # As in test_nothing_of_the_users_is_changed: no index refresh, no __pycache__.
    monkeypatch.setenv("GIT_OPTIONAL_LOCKS", "0")
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    before = _repository_state(pytester.path)
    git_before = git_dir_digest(pytester.path)

    second = _run_parallel(pytester.path)

    assert second.returncode == 0, second.stdout + second.stderr
    assert "2 passed" in second.stdout
    assert _repository_state(pytester.path) == before
    assert git_dir_digest(pytester.path) == git_before
    assert (slot / ".git").is_dir()
    assert run_git(slot, "rev-parse", "--absolute-git-dir").strip() == str(slot / ".git")


def test_a_held_pool_lock_never_delays_cancellation(
    pytester: pytest.Pytester, git_repo: GitRepo
) -> None:
    """What the controller's starter thread meets on Ctrl-C while another run uses the pool."""
    pytester.makepyfile(test_one="def test_one():\n    pass\n")
    pool = default_pool_dir(pytester.path)
    pool.mkdir(parents=True)
    # Another run (a helper process) holds every lock file a pool has, or ever had.
    names = ["worktree-add.lock", *(f"slot-{number}.lock" for number in range(4))]
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time, filelock\n"
            "locks = [filelock.FileLock(path) for path in sys.argv[1:]]\n"
            "for lock in locks: lock.acquire()\n"
            "print('held', flush=True)\n"
            "time.sleep(120)\n",
            *(str(pool / name) for name in names),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "held\n"
        cancel = threading.Event()
        placer = WorkerPlacer(
            mode="worktree",
            repo_root=pytester.path,
            invocation_dir=pytester.path,
            args=[],
            sys_path=[],
            copy_patterns=[],
            cancel=cancel,
        )
        outcomes: list[object] = []

        def start_workers() -> None:
            try:
                for _ in range(50):  # the starter thread placing worker after worker
                    outcomes.append(placer.place())
            except BaseException as error:
                outcomes.append(error)

        starter = threading.Thread(target=start_workers)
        starter.start()
        time.sleep(0.5)
        cancelled_at = time.monotonic()
        cancel.set()
        starter.join(timeout=10)

        assert not starter.is_alive()
        assert time.monotonic() - cancelled_at < 5
        assert isinstance(outcomes[-1], WorktreeCancelled)
        placer.release()
    finally:
        holder.kill()
        holder.communicate()
