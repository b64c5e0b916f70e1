from __future__ import annotations

from pathlib import Path

from pytest_parallel_modules.grouping import ModuleGroup
from pytest_parallel_modules.last_failed import load_failed_modules
from pytest_parallel_modules.last_failed import save_failed_modules
from pytest_parallel_modules.last_failed import update_failed_modules
from pytest_parallel_modules.last_failed import verdict
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


def test_save_and_load_round_trip_and_tolerate_bad_files(tmp_path: Path) -> None:
    path = tmp_path / "state" / "failed-modules.json"
    assert load_failed_modules(path) == frozenset()
    assert save_failed_modules(path, {"x.py": "failed"}) == {"x.py"}
    assert save_failed_modules(path, {"y.py": "failed"}) == {"x.py", "y.py"}
    assert load_failed_modules(path) == {"x.py", "y.py"}
    for bad in (
        "",
        "{",
        "[]",
        '{"version": 2, "failed_modules": []}',
        '{"version": 1, "failed_modules": [1]}',
    ):
        path.write_text(bad)
        assert load_failed_modules(path) == frozenset()


def test_failed_first_keeps_the_plan_order_within_each_part() -> None:
    plan = [ModuleGroup(name, ()) for name in ("slow.py", "mid.py", "fast.py", "tiny.py")]
    assert [g.module for g in failed_first(plan, {"fast.py", "slow.py"})] == [
        "slow.py",
        "fast.py",
        "mid.py",
        "tiny.py",
    ]
    assert failed_first(plan, set()) == tuple(plan)
