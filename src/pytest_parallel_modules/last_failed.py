"""Which modules failed in the last recorded run (for ``--rerun-failed-modules``). Runs in the controller.

Kept as ``failed-modules.json`` in pytest's cache and updated after every
parallel run the way pytest's ``--lf`` state is: a module that failed joins the
set, a module that now passes leaves it, a module that did not run (or did not
finish without failing) keeps its state. Reading is tolerant (a bad file is an
empty state); writing happens under a lock, through a temp file and a rename.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping
import json
import os
from pathlib import Path
import tempfile
from typing import Final
from typing import Literal

import filelock


#: What one run says about one module, for this state.
ModuleVerdict = Literal["failed", "passed", "unfinished"]

STATE_VERSION: Final = 1
LOCK_TIMEOUT_S: Final = 30.0


def verdict(outcome: str, failed: int, errors: int) -> ModuleVerdict:
    """PURE: a module report's outcome and counts -> how it changes the failed-modules state."""
    if outcome in ("failed", "error", "crashed", "timeout") or failed or errors:
        return "failed"
    if outcome == "passed":
        return "passed"
    return "unfinished"  # interrupted or not run, without a failure: keep what we knew


def update_failed_modules(
    previous: Iterable[str], verdicts: Mapping[str, ModuleVerdict]
) -> frozenset[str]:
    """PURE: the failed-modules state after a run."""
    state = set(previous)
    for module, result in verdicts.items():
        if result == "failed":
            state.add(module)
        elif result == "passed":
            state.discard(module)
    return frozenset(state)


def load_failed_modules(path: Path) -> frozenset[str]:
    """The modules that failed last time; empty for a missing or unreadable file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return frozenset()
    if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
        return frozenset()
    modules = data.get("failed_modules")
    if not isinstance(modules, list) or not all(isinstance(module, str) for module in modules):
        return frozenset()
    return frozenset(modules)


def save_failed_modules(path: Path, verdicts: Mapping[str, ModuleVerdict]) -> frozenset[str]:
    """Merge one run's verdicts into the file (re-read under the lock); return the new state."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(f"{path}.lock", timeout=LOCK_TIMEOUT_S):
        state = update_failed_modules(load_failed_modules(path), verdicts)
        text = (
            json.dumps({"version": STATE_VERSION, "failed_modules": sorted(state)}, indent=2) + "\n"
        )
        descriptor, temporary = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
        )
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as file:
                file.write(text)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    return state
