"""Argument parsing shared by every subcommand: bad input is one line on stderr and exit code 2."""
from __future__ import annotations

import argparse
import sys

from bench.brief import one_line


class UsageError(ValueError):
    """Bad input from the user."""


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would print its usage block and exit; we want one line
        raise UsageError(message)


def parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace | int:
    """The parsed arguments, or the exit code to return: 2 after one error line, 0 after --help."""
    try:
        args = parser.parse_args(argv)
        refuse_empty(parser, args)
        return args
    except UsageError as error:
        print(f"error: {parser.prog}: {one_line(error)}", file=sys.stderr)
        return 2
    except SystemExit as done:  # --help
        return int(done.code or 0)


def refuse_empty(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """An empty string is never a path, a name or a number: `--resume "$DIR"` with DIR unset must not
    mean "start a new full run", nor `--out ""` the default directory."""
    for action in parser._actions:
        value = getattr(args, action.dest, None)
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, str) and not v.strip() for v in values):
            name = "/".join(action.option_strings) or action.metavar or action.dest
            raise UsageError(f"argument {name}: expected a value, got an empty string (an unset shell variable?)")
