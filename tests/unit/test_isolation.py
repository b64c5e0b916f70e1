from __future__ import annotations

from pathlib import Path
import threading

import pytest

from pytest_parallel_modules.isolation import IsolationMode
from pytest_parallel_modules.isolation import map_args
from pytest_parallel_modules.isolation import map_path
from pytest_parallel_modules.isolation import restore_checkout_paths
from pytest_parallel_modules.isolation import WorkerPlacer


REPO = Path("/home/u/repo")
WORKTREE = Path("/cache/pool/slot-0")


def exists_in_worktree(*present: str):
    return lambda path: path in {str(WORKTREE / p) for p in present} | {str(WORKTREE)}


def test_map_path_moves_paths_that_exist_in_the_snapshot() -> None:
    exists = exists_in_worktree("src")
    assert map_path("/home/u/repo/src", REPO, WORKTREE, exists) == "/cache/pool/slot-0/src"
    assert map_path("/home/u/repo", REPO, WORKTREE, exists) == "/cache/pool/slot-0"


def test_map_path_keeps_ignored_and_outside_paths() -> None:
    exists = exists_in_worktree("src")
    venv = "/home/u/repo/.venv/lib/python3.11/site-packages"
    assert map_path(venv, REPO, WORKTREE, exists) == venv
    assert map_path("/usr/lib/python3.11", REPO, WORKTREE, exists) == "/usr/lib/python3.11"
    assert map_path("/home/u/repo-other/src", REPO, WORKTREE, exists) == "/home/u/repo-other/src"
    assert map_path("", REPO, WORKTREE, exists) == ""


def test_map_args_maps_absolute_paths_node_ids_and_option_values() -> None:
    exists = exists_in_worktree("tests/test_x.py", "tests", "conf.ini")
    args = [
        "-q",
        "/home/u/repo/tests/test_x.py::test_a[x::y]",
        "--rootdir=/home/u/repo/tests",
        "-c",
        "/home/u/repo/conf.ini",
        "relative/test_y.py",
        "--basetemp=/tmp/bt",
        "-k",
        "a and not b",
    ]
    assert map_args(args, REPO, WORKTREE, exists) == [
        "-q",
        "/cache/pool/slot-0/tests/test_x.py::test_a[x::y]",
        "--rootdir=/cache/pool/slot-0/tests",
        "-c",
        "/cache/pool/slot-0/conf.ini",
        "relative/test_y.py",
        "--basetemp=/tmp/bt",
        "-k",
        "a and not b",
    ]


def test_restore_checkout_paths_rewrites_every_string_of_a_longrepr() -> None:
    longrepr = {
        "reprcrash": {"path": "/cache/pool/slot-0/test_x.py", "lineno": 3, "message": "boom"},
        "reprtraceback": {
            "reprentries": [{"data": {"lines": ["in /cache/pool/slot-0/test_x.py"]}}]
        },
    }
    restored = restore_checkout_paths(longrepr, str(WORKTREE), str(REPO))
    assert restored == {
        "reprcrash": {"path": "/home/u/repo/test_x.py", "lineno": 3, "message": "boom"},
        "reprtraceback": {"reprentries": [{"data": {"lines": ["in /home/u/repo/test_x.py"]}}]},
    }
    skip = ("/cache/pool/slot-0/test_x.py", 27, "Skipped: not today")
    assert restore_checkout_paths(skip, str(WORKTREE), str(REPO)) == (
        "/home/u/repo/test_x.py",
        27,
        "Skipped: not today",
    )
    assert restore_checkout_paths(None, str(WORKTREE), str(REPO)) is None


def _placer(mode: IsolationMode, repo_root: Path | None) -> WorkerPlacer:
    return WorkerPlacer(
        mode=mode,
        repo_root=repo_root,
        invocation_dir=REPO,
        args=[],
        sys_path=[],
        copy_patterns=[],
    )


def test_describe_says_why_workers_run_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _placer("worktree", REPO).describe().startswith("each worker in its own git worktree")
    assert _placer("none", REPO).describe() == "workers run in place (--module-isolation=none)"
    assert (
        _placer("worktree", None).describe() == "workers run in place (not inside a git work tree)"
    )
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no git
    assert (
        _placer("worktree", None).describe() == "workers run in place (git was not found on PATH)"
    )


def test_a_placer_without_worktrees_releases_nothing() -> None:
    cancel = threading.Event()
    cancel.set()
    in_place = WorkerPlacer(
        mode="none",
        repo_root=REPO,
        invocation_dir=REPO,
        args=["-q"],
        sys_path=["/x"],
        copy_patterns=[],
        cancel=cancel,
    )

    placement = in_place.place()  # nothing to cancel: no git, no slot

    assert placement.worktree is None and placement.cwd == REPO
    assert in_place.release_one(WORKTREE, keep=True)
    in_place.release(keep=[WORKTREE])
    assert _placer("worktree", REPO).release_one(WORKTREE)
