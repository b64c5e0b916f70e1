"""Unit tests for the pure parts of compat.py and output.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_parallel_modules.compat import checkout_path_map
from pytest_parallel_modules.compat import forget_inherited_worker_settings
from pytest_parallel_modules.compat import forget_outer_worker_identity
from pytest_parallel_modules.compat import restore_terminal_repr
from pytest_parallel_modules.compat import TERMINAL_REPR_KEY
from pytest_parallel_modules.compat import TextRepr
from pytest_parallel_modules.output import module_log_filename
from pytest_parallel_modules.worker import _portable


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/pool/slot-1/pkg/a.py", "/repo/pkg/a.py"),
        ("/pool/slot-1", "/repo"),
        # A sibling slot whose name starts with this one's is not inside it.
        ("/pool/slot-10/pkg/a.py", "/pool/slot-10/pkg/a.py"),
        ("/elsewhere/pkg/a.py", "/elsewhere/pkg/a.py"),
    ],
)
def test_checkout_path_map_moves_only_paths_inside_the_worktree(path: str, expected: str) -> None:
    to_checkout = checkout_path_map(Path("/pool/slot-1"), Path("/repo"))
    assert to_checkout(path.replace("/", os.sep)) == expected.replace("/", os.sep)


def test_checkout_path_map_maps_the_real_path_too(tmp_path: Path) -> None:
    real = tmp_path / "real-slot"
    real.mkdir()
    link = tmp_path / "slot"
    link.symlink_to(real)
    to_checkout = checkout_path_map(link, Path("/repo"))
    assert to_checkout(str(real / "a.py")) == os.path.join("/repo", "a.py")
    assert to_checkout(str(link / "a.py")) == os.path.join("/repo", "a.py")


@pytest.mark.parametrize(("worktree", "checkout"), [(None, Path("/repo")), (Path("/wt"), None)])
def test_checkout_path_map_without_a_worktree_is_the_identity(
    worktree: Path | None, checkout: Path | None
) -> None:
    assert checkout_path_map(worktree, checkout)("/wt/a.py") == "/wt/a.py"


def test_module_log_is_named_like_the_module_report() -> None:
    assert module_log_filename("tests/unit/test_x.py") == "tests__unit__test_x.py.log"


def report(longrepr: object) -> pytest.TestReport:
    return pytest.TestReport(
        nodeid="t.py::a",
        location=("t.py", 0, "a"),
        keywords={},
        outcome="failed",
        longrepr=longrepr,  # type: ignore[arg-type]  # a string, as deserialized
        when="setup",
    )


def test_a_marked_string_longrepr_becomes_a_repr_without_a_crash_line() -> None:
    text = "file /repo/t.py, line 3\n  def test_a(missing):\nE  fixture 'missing' not found\n"
    marked = report(text)
    marked.__dict__[TERMINAL_REPR_KEY] = True
    restored = restore_terminal_repr({TERMINAL_REPR_KEY: True}, marked)
    longrepr: object = marked.longrepr
    assert isinstance(longrepr, TextRepr)
    assert not hasattr(longrepr, "reprcrash")
    assert restored is marked and TERMINAL_REPR_KEY not in marked.__dict__
    assert marked.longreprtext == text.rstrip("\n")


def test_an_unmarked_string_longrepr_stays_a_string() -> None:
    plain = report("worker w1 crashed while running t.py::a")
    restore_terminal_repr({}, plain)
    assert plain.longrepr == "worker w1 crashed while running t.py::a"


def test_workeroutput_keeps_only_what_execnet_can_send() -> None:
    output = {
        "data": b"\x00coverage",
        "text": "x",
        "nested": {"a": [1, 2.5, None]},
        "bad": object(),
    }
    assert _portable(output) == {k: v for k, v in output.items() if k != "bad"}


def test_a_pytest_started_inside_a_worker_forgets_the_workers_hypothesis_storage() -> None:
    inherited = {
        "HYPOTHESIS_STORAGE_DIRECTORY": "/checkout/.hypothesis",
        "PYTEST_PARALLEL_MODULES_HYPOTHESIS_STORAGE": "/checkout/.hypothesis",
        "PATH": "/bin",
    }
    forget_inherited_worker_settings(inherited)
    assert inherited == {"PATH": "/bin"}


def test_a_hypothesis_storage_the_user_set_is_kept() -> None:
    users = {"HYPOTHESIS_STORAGE_DIRECTORY": "/mine"}
    forget_inherited_worker_settings(users)
    assert users == {"HYPOTHESIS_STORAGE_DIRECTORY": "/mine"}
    # The user changed it after the worker set it: theirs wins.
    changed = {
        "HYPOTHESIS_STORAGE_DIRECTORY": "/mine",
        "PYTEST_PARALLEL_MODULES_HYPOTHESIS_STORAGE": "/checkout/.hypothesis",
    }
    forget_inherited_worker_settings(changed)
    assert changed == {"HYPOTHESIS_STORAGE_DIRECTORY": "/mine"}


def test_a_parallel_controller_started_inside_a_worker_is_no_worker() -> None:
    inherited = {
        "PYTEST_PARALLEL_MODULES_WORKER": "w2",
        "PYTEST_PARALLEL_MODULES_WORKER_COUNT": "4",
        "PATH": "/bin",
    }
    forget_outer_worker_identity(inherited)
    assert inherited == {"PATH": "/bin"}
    forget_outer_worker_identity(inherited)  # nothing to forget: no error
