"""What a run keeps between runs: the duration history and the failed-modules state. Runs in the controller.

Both are read once, when the run needs them, and written once (R5: only the
controller writes them): on a thread of their own as soon as every unit of work
is final, while the workers still tear down their sessions and exit -- seconds
on a big suite -- or at session finish when the run never got that far. Reading
is tolerant (a bad file is moved aside, with one warning); a file that cannot
be written is one warning line, never a failed run.
"""

from __future__ import annotations

import threading
from typing import final
from typing import TYPE_CHECKING

from pytest_parallel_modules import timing
from pytest_parallel_modules.history import History
from pytest_parallel_modules.history import load_history
from pytest_parallel_modules.history import LoadedHistory
from pytest_parallel_modules.history import save_history
from pytest_parallel_modules.last_failed import load_failed_modules
from pytest_parallel_modules.last_failed import save_failed_modules


if TYPE_CHECKING:
    from collections.abc import Callable

    from pytest_parallel_modules.history import MeasuredRun
    from pytest_parallel_modules.ledger import RunLedger
    from pytest_parallel_modules.options import Options
    from pytest_parallel_modules.outcomes import ModuleVerdict


@final
class RunState:
    """The history and the failed-modules state of one run: loaded once, saved once.

    :param with_contents: adds what the history keeps of each module's file (its
        digest, for the flake rate) to a measured run before it is saved.
    """

    def __init__(
        self, options: Options, with_contents: Callable[[MeasuredRun], MeasuredRun]
    ) -> None:
        self.options = options
        self._with_contents = with_contents
        self._loaded: LoadedHistory | None = None
        #: The history as this run saved it (the HTML report's trends read it).
        self.saved_history: History | None = None
        self._saver: threading.Thread | None = None
        self._warnings: list[str] = []

    def history(self) -> LoadedHistory:
        """The duration history as this run loaded it (read once, on first use)."""
        if self._loaded is None:
            path = self.options.history_path
            self._loaded = LoadedHistory(history=History()) if path is None else load_history(path)
        return self._loaded

    def failed_modules(self, warn: Callable[[str], None]) -> frozenset[str]:
        """The modules that failed in the last recorded run; ``warn`` hears about a bad file."""
        path = self.options.failed_modules_path
        if path is None:
            return frozenset()
        loaded = load_failed_modules(path)
        if loaded.warning is not None:
            warn(loaded.warning)
        return loaded.modules

    def save_when_final(self, ledger: RunLedger) -> None:
        """Once every unit is final, start saving on a thread (called after each event)."""
        if self._saver is not None or not ledger.all_final() or not ledger.module_reports:
            return
        self._saver = threading.Thread(
            target=self._save,
            args=(ledger.measurements(), ledger.module_verdicts()),
            name="parallel-modules-run-state",
            daemon=True,
        )
        self._saver.start()

    def finish(self, ledger: RunLedger) -> list[str]:
        """Save what is left to save (or wait for the thread that does); return the warnings."""
        if self._saver is not None:
            self._saver.join()
        elif ledger.module_reports:
            self._save(ledger.measurements(), ledger.module_verdicts())
        warnings, self._warnings = self._warnings, []
        return warnings

    def _save(self, measured: MeasuredRun, verdicts: dict[str, ModuleVerdict]) -> None:
        """Merge this run into the history and the failed-modules state. May run on a thread."""
        measured = self._with_contents(measured)
        history_path = self.options.history_path
        # A shard only reads the history: the shards of one run must all split with the
        # same one (see sharding.py); `merge --durations` saves theirs together.
        if history_path is not None and self.options.shard is None:
            try:
                # loaded=: when no other run saved meanwhile, the file is not parsed again.
                self.saved_history = save_history(
                    history_path,
                    measured,
                    now=timing.now(),
                    create_parents=True,
                    loaded=self._loaded,
                ).history
            except Exception as exc:  # a history that cannot be saved must not fail the run
                self._warnings.append(
                    f"could not save the duration history to {history_path}: {exc}"
                )
        failed_path = self.options.failed_modules_path
        if failed_path is not None:
            try:
                save_failed_modules(failed_path, verdicts)
            except Exception as exc:  # the state cannot be saved: say so, keep the result
                self._warnings.append(f"could not save the failed modules to {failed_path}: {exc}")
