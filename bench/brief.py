"""Bounded text for error lines: a value shown to the user is cut, and an error is one line of bounded length.

A config value can be anything a file holds (a 52 MB string built from YAML aliases, a list of a million
seeds): shown whole it would drown the terminal and the one line that explains it.
"""
from __future__ import annotations

import reprlib

VALUE_CHARS = 80    # a value quoted inside an error line
LINE_CHARS = 800    # a whole error line (room for a few long paths)


def cut(text: str, limit: int) -> str:
    """`text` with at most `limit` characters, ending in an ellipsis when something was left out."""
    return text if len(text) <= limit else text[:max(limit - 1, 0)] + "…"


def brief(value, limit: int = VALUE_CHARS) -> str:
    """repr(value) on one line, at most `limit` characters, built without ever forming the whole repr
    (reprlib shortens long strings, lists, dicts and deep nesting as it goes)."""
    try:
        text = _REPR.repr(value)
    except (RecursionError, ValueError):  # deeper than the stack, or an int too long to print
        return f"<{type(value).__name__}>"
    return cut(" ".join(text.split()), limit)


def _shortener() -> reprlib.Repr:
    shortener = reprlib.Repr()
    shortener.maxlevel, shortener.maxstring, shortener.maxother, shortener.maxlong = 3, 60, 60, 40
    shortener.maxlist = shortener.maxtuple = shortener.maxdict = shortener.maxset = 8
    return shortener


_REPR = _shortener()


def one_line(message: object, limit: int = LINE_CHARS) -> str:
    """An error message as one line of at most `limit` characters."""
    return cut(" ".join(str(message).split()), limit)
