from __future__ import annotations

from pathlib import Path

import pytest

from pytest_parallel_modules.grouping import ModuleGroup
from pytest_parallel_modules.last_failed import load_failed_modules
from pytest_parallel_modules.last_failed import save_failed_modules
from pytest_parallel_modules.last_failed import update_failed_modules
from pytest_parallel_modules.outcomes import module_verdict as verdict
from pytest_parallel_modules.scheduling import failed_first


def test_verdicts_follow_module_outcomes_and_counts() -> None:
    assert verdict("failed", 1, 0) == "failed"
    assert verdict("crashed", 0, 0) == "failed"
    assert verdict("timeout", 0, 0) == "failed"
    assert verdict("interrupted", 1, 0) == "failed"
    assert verdict("passed", 0, 0) == "passed"
    assert verdict("interrupted", 0, 0) == "unfinished"
    assert verdict("not_run", 0, 0) == "unfinished"


def test_update_adds_failures_removes_passes_and_keeps_the_rest() -> None:
    previous = {"a.py", "b.py", "c.py"}
    after = update_failed_modules(
        previous, {"a.py": "passed", "b.py": "unfinished", "d.py": "failed"}
    )
    assert after == {"b.py", "c.py", "d.py"}


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "state" / "failed-modules.json"
    missing = load_failed_modules(path)
    assert (missing.modules, missing.warning) == (frozenset(), None)
    assert save_failed_modules(path, {"x.py": "failed"}) == {"x.py"}
    assert save_failed_modules(path, {"y.py": "failed"}) == {"x.py", "y.py"}
    loaded = load_failed_modules(path)
    assert (loaded.modules, loaded.warning) == ({"x.py", "y.py"}, None)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "{",
        "[]",
        '{"version": 2, "failed_modules": []}',
        '{"version": 1, "failed_modules": [1]}',
    ],
)
def test_a_bad_file_is_moved_aside_with_one_warning(tmp_path: Path, bad: str) -> None:
    path = tmp_path / "failed-modules.json"
    path.write_text(bad)
    loaded = load_failed_modules(path, now=0.0)
    assert loaded.modules == frozenset()
    assert loaded.warning is not None
    assert loaded.warning.startswith(f"ignored the failed modules {path}: ")
    assert "moved to failed-modules.json.corrupt-19700101T000000Z" in loaded.warning
    assert not path.exists()
    assert (tmp_path / "failed-modules.json.corrupt-19700101T000000Z").read_text() == bad


def test_failed_first_keeps_the_plan_order_within_each_part() -> None:
    plan = [ModuleGroup(name, ()) for name in ("slow.py", "mid.py", "fast.py", "tiny.py")]
    assert [g.module for g in failed_first(plan, {"fast.py", "slow.py"})] == [
        "slow.py",
        "fast.py",
        "mid.py",
        "tiny.py",
    ]
    assert failed_first(plan, set()) == tuple(plan)
