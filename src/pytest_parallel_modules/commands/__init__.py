"""Sub-commands of ``python -m pytest_parallel_modules``. Run in a plain Python process.

Each sub-command is a module exposing ``add_arguments(parser)`` and ``run(args) -> int``,
so :mod:`pytest_parallel_modules.__main__` only dispatches.
"""

from __future__ import annotations

from typing import Final


#: Sub-command name -> module (imported lazily, so ``--help`` stays fast).
COMMANDS: Final[dict[str, str]] = {
    "clean": "pytest_parallel_modules.commands.clean",
    "durations": "pytest_parallel_modules.commands.durations",
    "merge": "pytest_parallel_modules.commands.merge",
}

#: One-line help for each sub-command.
COMMAND_HELP: Final[dict[str, str]] = {
    "clean": "remove this repository's worktree pool (the slots no run holds, their locks)",
    "durations": "print the saved duration history, slowest modules first (--flaky: flakiest tests)",
    "merge": "join the merged JSON reports of several shards or runs into one",
}
