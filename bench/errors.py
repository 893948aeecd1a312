"""An exception as one line: what a failed row's `error` column, a worker's message and gpu-check's cells say."""
from __future__ import annotations


def one_line(error: BaseException, limit: int = 500) -> str:
    """'TypeName: first line of the message', cut to `limit` characters; the bare type name when there is no message."""
    text = f"{type(error).__name__}: {error}".strip()
    return text.splitlines()[0][:limit] if text else type(error).__name__
