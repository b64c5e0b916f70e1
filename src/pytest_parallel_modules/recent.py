"""PURE: the history's recent measurements of a test or module, and how they read. Runs in the controller and the commands.

The duration history (:mod:`pytest_parallel_modules.history`) keeps, besides the
smoothed figures that order the next run, the last :data:`RECENT_RUNS`
measurements of every test and module in one field, ``recent``: a word per
slot, newest first, :data:`EMPTY_SLOT` for a slot not filled yet::

    "p412 f398 P405 3p420 - - - - - -"

Each word is ``[gap]`` ``letter`` ``milliseconds``. The newest was taken in the
record's ``last_seen_run``; the gap is how many runs after the next older
measurement a measurement was taken, written only when it is not 1. The letter
is the outcome's (:data:`RECENT_LETTERS`), in lower case when the module file
had the same content as at the next older measurement, upper case when it
changed or is not known. The merge writes them (:func:`recent_token`,
:func:`push_recent`, and inlined in its loop over every test);
:func:`decode_recent` reads them for trends and flake rates
(:mod:`pytest_parallel_modules.trends`).
"""

from __future__ import annotations

import re
from typing import Final
from typing import final
from typing import NamedTuple


#: How many measurements of each test and module the history keeps (for trends and flake rates).
RECENT_RUNS: Final = 10

#: The word of a slot of ``recent`` that holds no measurement yet.
EMPTY_SLOT: Final = "-"

#: What follows the first measurement of a new entry: the other slots, empty. Every
#: ``recent`` the merge writes has :data:`RECENT_RUNS` words, so making room for the next
#: measurement is always dropping the last word, with no counting (which matters in the
#: merge's loop over every test).
EMPTY_TAIL: Final = f" {EMPTY_SLOT}" * (RECENT_RUNS - 1)

#: Outcome -> its letter in ``recent``: lower case when the module file had the same
#: content at the previous measurement, upper case otherwise (changed, or not known).
#: ``u`` is an unexpected pass (xpassed), ``k`` flaky (failed, then passed on a retry).
RECENT_LETTERS: Final[dict[str, str]] = {
    "passed": "p",
    "failed": "f",
    "error": "e",
    "skipped": "s",
    "xfailed": "x",
    "xpassed": "u",
    "flaky": "k",
}


@final
class RecentMeasurement(NamedTuple):
    """One of the last measurements of a test or module, as :func:`decode_recent` reads it."""

    #: Value of :attr:`~pytest_parallel_modules.history.History.run_count` in the run that measured it.
    run: int
    #: One of :data:`~pytest_parallel_modules.history.Outcome`.
    outcome: str
    #: Seconds, to the millisecond.
    duration_s: float
    #: True when the module file is known to have had the same content at the previous
    #: (older) measurement; False when it changed, is not known, or there is none.
    same_content: bool


#: Letter -> outcome, for reading ``recent``.
_OUTCOME_OF_LETTER: Final[dict[str, str]] = {
    letter: outcome for outcome, letter in RECENT_LETTERS.items()
}
_RECENT_TOKEN: Final = re.compile(r"([0-9]*)([A-Za-z])([0-9]+)")


def decode_recent(recent: str, last_seen_run: int) -> tuple[RecentMeasurement, ...]:
    """PURE: the measurements a ``recent`` field holds, newest first.

    Each space-separated token is ``[gap]letter milliseconds``. The newest was taken in
    ``last_seen_run``; the gap is how many runs after the next older measurement this
    one was taken, written only when it is not 1. The letter is the outcome's
    (:data:`RECENT_LETTERS`), in lower case when the module file had the same content
    as at the next older measurement. ``"3p41 F52"``: passed in 41 ms in
    ``last_seen_run``, with the module as it was three runs before, when the test
    failed in 52 ms with another content of the module than at its measurement before.

    Reading stops at the first empty slot (:data:`EMPTY_SLOT`) and at the first token
    it cannot read (a hand-edited file): what came before it is still good.

    :param recent: the field, as :class:`~pytest_parallel_modules.history.RecordedTest` or
        :class:`~pytest_parallel_modules.history.RecordedModule` hold it.
    :param last_seen_run: the record's ``last_seen_run``.
    """
    measurements: list[RecentMeasurement] = []
    run, gap = last_seen_run, 0
    for token in recent.split():
        if token == EMPTY_SLOT:
            break
        match = _RECENT_TOKEN.fullmatch(token)
        outcome = None if match is None else _OUTCOME_OF_LETTER.get(match[2].lower())
        if match is None or outcome is None or len(match[1]) > 6:
            break
        run -= gap
        gap = int(match[1] or 1)
        measurements.append(
            RecentMeasurement(run, outcome, int(match[3]) / 1000, match[2].islower())
        )
    return tuple(measurements)


def recent_token(gap: int, letter: str, seconds: float) -> str:
    """PURE: one measurement as ``recent`` stores it (``p412``, ``3F1203``)."""
    milliseconds = int(seconds * 1000 + 0.5)
    return f"{letter}{milliseconds}" if gap == 1 else f"{gap}{letter}{milliseconds}"


def push_recent(token: str, recent: str) -> str:
    """PURE: put ``token`` in front of ``recent`` and drop its last (oldest) word.

    A ``recent`` the merge wrote always has :data:`RECENT_RUNS` words; one with fewer
    (edited by hand) keeps as many as it has, the oldest measurement dropped.
    """
    if not recent:  # a new entry, or one from a version 1 or 2 file
        return token + EMPTY_TAIL
    return f"{token} {recent.rpartition(' ')[0]}"
