"""Argument parsing shared by every subcommand: bad input is one line on stderr and exit code 2."""
from __future__ import annotations

import argparse
import sys


class UsageError(ValueError):
    """Bad input from the user."""


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would print its usage block and exit; we want one line
        raise UsageError(message)


def parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace | int:
    """The parsed arguments, or the exit code to return: 2 after one error line, 0 after --help."""
    try:
        return parser.parse_args(argv)
    except UsageError as error:
        print(f"error: {parser.prog}: {error}", file=sys.stderr)
        return 2
    except SystemExit as done:  # --help
        return int(done.code or 0)
