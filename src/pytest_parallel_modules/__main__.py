"""``python -m pytest_parallel_modules merge | durations | clean``. Runs in a plain Python process."""

from __future__ import annotations

import argparse
import importlib
import sys

from pytest_parallel_modules import __version__
from pytest_parallel_modules.commands import COMMAND_HELP
from pytest_parallel_modules.commands import COMMANDS


def build_parser() -> argparse.ArgumentParser:
    """The command line: one sub-parser per command of :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="python -m pytest_parallel_modules",
        description="Tools around pytest-parallel-modules' history, reports and worktrees.",
    )
    parser.add_argument(
        "--version", action="version", version=f"pytest-parallel-modules {__version__}"
    )
    # Not required: without a command, main() prints the help (exit 0), as git does.
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        subparser = subparsers.add_parser(name, help=COMMAND_HELP[name])
        module.add_arguments(subparser)
        subparser.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen sub-command; return its exit code.

    Without a command it prints the help and returns 0: asking what the tool does
    is not an error.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    exit_code: int = args.run(args)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
