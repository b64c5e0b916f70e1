"""``python -m pytest_parallel_modules merge | durations | clean``. Runs in a plain Python process."""

from __future__ import annotations

import argparse
import importlib
import sys

from pytest_parallel_modules.commands import COMMAND_HELP
from pytest_parallel_modules.commands import COMMANDS


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen sub-command; return its exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m pytest_parallel_modules",
        description="Tools around pytest-parallel-modules' history, reports and worktrees.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        subparser = subparsers.add_parser(name, help=COMMAND_HELP[name])
        module.add_arguments(subparser)
        subparser.set_defaults(run=module.run)
    args = parser.parse_args(argv)
    exit_code: int = args.run(args)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
