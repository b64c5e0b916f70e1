"""Which modules failed in the last recorded run (for ``--rerun-failed-modules``). Runs in the controller.

Kept as ``failed-modules.json`` in pytest's cache and updated after every
parallel run the way pytest's ``--lf`` state is: a module that failed joins the
set, a module that now passes leaves it, a module that did not run (or did not
finish without failing) keeps its state. Reading is tolerant (a bad file is
moved aside with one warning, and the state starts empty); writing happens
under a lock, through a temp file and a rename.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping
from dataclasses import dataclass
import json
from pathlib import Path
from typing import Final
from typing import final

import filelock

from pytest_parallel_modules import timing
from pytest_parallel_modules.atomic_files import is_plain_file
from pytest_parallel_modules.atomic_files import move_aside
from pytest_parallel_modules.atomic_files import write_atomic
from pytest_parallel_modules.outcomes import ModuleVerdict


STATE_VERSION: Final = 1
LOCK_TIMEOUT_S: Final = 30.0


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


@final
@dataclass(frozen=True, slots=True)
class LoadedFailedModules:
    """The failed-modules state as read, and what was wrong with the file, if anything."""

    modules: frozenset[str] = frozenset()
    #: One line for the user; ``None`` when the file was fine or missing.
    warning: str | None = None


def _parse(text: str) -> frozenset[str]:
    """PURE: the modules of a state file's text. Raises ValueError naming what is wrong."""
    data = json.loads(text)
    if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
        raise ValueError(f"not a version {STATE_VERSION} failed-modules file")
    modules = data.get("failed_modules")
    if not isinstance(modules, list) or not all(isinstance(module, str) for module in modules):
        raise ValueError("failed_modules: expected a list of module paths")
    return frozenset(modules)


def load_failed_modules(path: Path, *, now: float | None = None) -> LoadedFailedModules:
    """The modules that failed last time; a bad file is moved aside, with one warning.

    A missing file is an empty state without a word; a corrupt one is renamed to
    ``<name>.corrupt-<timestamp>`` (never deleted) so the next save starts afresh,
    and the warning says so: silently reading it as "nothing failed" would make
    ``--rerun-failed-modules`` run nothing.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return LoadedFailedModules()
    except (OSError, UnicodeDecodeError) as error:
        return LoadedFailedModules(warning=f"cannot read the failed modules {path}: {error}")
    try:
        return LoadedFailedModules(_parse(text))
    except ValueError as error:
        reason = str(error).splitlines()[0]
    try:
        with filelock.FileLock(f"{path}.lock", timeout=LOCK_TIMEOUT_S):
            if not is_plain_file(path):
                raise OSError("not a regular file")
            moved = move_aside(path, timing.now() if now is None else now)
    except (filelock.Timeout, OSError) as error:
        return LoadedFailedModules(
            warning=f"ignored the failed modules {path}: {reason}; it could not be moved aside ({error})"
        )
    return LoadedFailedModules(
        warning=f"ignored the failed modules {path}: {reason}; it was moved to {moved.name}"
    )


def save_failed_modules(path: Path, verdicts: Mapping[str, ModuleVerdict]) -> frozenset[str]:
    """Merge one run's verdicts into the file (re-read under the lock); return the new state."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(f"{path}.lock", timeout=LOCK_TIMEOUT_S):
        try:
            previous = _parse(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            previous = frozenset()  # missing, or bad and reported when the run loaded it
        state = update_failed_modules(previous, verdicts)
        text = (
            json.dumps({"version": STATE_VERSION, "failed_modules": sorted(state)}, indent=2) + "\n"
        )
        write_atomic(path, text)
    return state
