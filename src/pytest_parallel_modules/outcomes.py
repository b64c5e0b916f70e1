"""PURE: the one vocabulary of outcomes -- of a test, of a unit or module -- and what counts as a problem.

Runs in the controller and in ``python -m pytest_parallel_modules``. Reports,
the summary, the failed-modules state and the ledger all name outcomes with
these words and judge them with these functions, so "failed" means the same
thing on the terminal, in the JSON and for ``--rerun-failed-modules``.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping
from typing import Final
from typing import get_args
from typing import Literal


#: How one test (or subtest) ended. ``interrupted``: it was running when the run was
#: interrupted (Ctrl-C, SIGTERM, a fail-fast stop that had to kill its worker), so it has
#: no result of its own; ``not_run``: it never started.
ResultOutcome = Literal[
    "passed", "failed", "error", "skipped", "xfailed", "xpassed", "interrupted", "not_run"
]
#: How a module, or a unit of work, ended.
ModuleOutcome = Literal["passed", "failed", "error", "crashed", "timeout", "interrupted", "not_run"]

#: Every test outcome, in the order summaries list them.
RESULT_OUTCOMES: Final[tuple[ResultOutcome, ...]] = get_args(ResultOutcome)
#: Every module outcome.
MODULE_OUTCOMES: Final[tuple[ModuleOutcome, ...]] = get_args(ModuleOutcome)

#: Module outcomes that make a run unsuccessful even when no single test failed.
PROBLEM_MODULE_OUTCOMES: Final[frozenset[ModuleOutcome]] = frozenset(
    {"failed", "error", "crashed", "timeout", "interrupted"}
)
#: Module outcomes that say the module is broken (what ``--rerun-failed-modules`` reruns).
FAILING_MODULE_OUTCOMES: Final[frozenset[ModuleOutcome]] = frozenset(
    {"failed", "error", "crashed", "timeout"}
)

#: Worst first: how the outcomes of a module's units (or attempts) combine into one.
_MODULE_SEVERITY: Final[tuple[ModuleOutcome, ...]] = (
    "crashed",
    "timeout",
    "failed",
    "error",
    "interrupted",
    "passed",
    "not_run",
)

CountKey = Literal[
    "tests",
    "passed",
    "failed",
    "errors",
    "skipped",
    "xfailed",
    "xpassed",
    "interrupted",
    "not_run",
]
#: Every key of a report's ``counts``: ``tests`` is the sum of all the others.
COUNT_FIELDS: Final[tuple[CountKey, ...]] = get_args(CountKey)

#: Test outcome -> the ``counts`` key it is counted under.
COUNT_KEYS: Final[Mapping[ResultOutcome, CountKey]] = {
    "passed": "passed",
    "failed": "failed",
    "error": "errors",
    "skipped": "skipped",
    "xfailed": "xfailed",
    "xpassed": "xpassed",
    "interrupted": "interrupted",
    "not_run": "not_run",
}

#: What one run says about one module for the failed-modules state.
ModuleVerdict = Literal["failed", "passed", "unfinished"]


def worst_module_outcome(outcomes: Iterable[ModuleOutcome]) -> ModuleOutcome:
    """The outcome of a module from those of its units: the most severe one wins.

    A module some of whose units passed and others never ran was cut short: it is
    ``interrupted``, not ``passed`` nor ``not_run``.
    """
    present = set(outcomes)
    if not present:
        return "not_run"
    if present == {"passed", "not_run"}:
        return "interrupted"
    return min(present, key=_MODULE_SEVERITY.index)


def is_problem(outcome: ModuleOutcome, failed: int, errors: int) -> bool:
    """Whether a module with this outcome and these counts makes the run unsuccessful."""
    return outcome in PROBLEM_MODULE_OUTCOMES or failed > 0 or errors > 0


def module_verdict(outcome: str, failed: int, errors: int) -> ModuleVerdict:
    """A module's outcome and counts -> how it changes the failed-modules state."""
    if outcome in FAILING_MODULE_OUTCOMES or failed or errors:
        return "failed"
    if outcome == "passed":
        return "passed"
    return "unfinished"  # interrupted or not run, without a failure: keep what we knew
