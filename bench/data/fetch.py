"""ROOT on disk: where it is, and making it hold the four verified files.

A file is only trusted after its SHA-256 matches (bench.data.idx.FILES): files already in ROOT are
used as they are ("cache"); otherwise each source in bench.data.sources.SOURCES is tried in turn.
A fetched file that fails verification is removed and fetched once more, then we stop with a line
naming the file and both hashes.
"""
from __future__ import annotations

import os
from pathlib import Path

from bench.data import idx, sources
from bench.data.sources import DataError, Log, SourceUnavailable

ENV_ROOT = "LSTM_BENCH_DATA"
DEFAULT_ROOT = Path("data")   # relative: ./data under the directory the command runs in


def resolve_root(root: str | Path | None = None) -> Path:
    """An explicit root wins, then $LSTM_BENCH_DATA, then ./data in the current directory."""
    if root is None or str(root) == "":
        root = os.environ.get(ENV_ROOT) or DEFAULT_ROOT
    return Path(root).expanduser().resolve()


def _fetch(raw: Path, names: list[str], log: Log) -> str:
    reasons = []
    for source, fetch in sources.SOURCES:
        try:
            fetch(raw, names, log)
            return source
        except SourceUnavailable as reason:
            log(f"{source}: unavailable: {reason}")
            reasons.append(f"{source}: {reason}")
    raise DataError("no source could supply MNIST: " + "; ".join(reasons))


def _unverified(raw: Path, names) -> dict[str, str]:
    return {name: why for name in names if (why := idx.check_file(raw / name, name))}


def root_problem(root: str | Path | None = None) -> str | None:
    """Why ROOT cannot hold MNIST, in one line, or None: checked before anything is loaded or written,
    so a file where a directory belongs (or the reverse) is not found halfway through a fetch."""
    root = resolve_root(root)
    raw = idx.raw_dir(root)
    for directory in (root, raw.parent, raw):
        if directory.exists() and not directory.is_dir():
            return f"data root {root}: {directory} is a file, expected a directory"
    for name in idx.FILES:
        if (raw / name).is_dir():
            return f"data root {root}: {raw / name} is a directory where the MNIST file {name} belongs; remove it"
    return None


def ensure_mnist(root: str | Path | None = None, log: Log | None = None) -> tuple[Path, str]:
    """Makes ROOT/MNIST/raw hold the four verified files; returns (root, source used)."""
    log = log or (lambda message: None)
    if problem := root_problem(root):
        raise DataError(problem)
    root = resolve_root(root)
    raw = idx.raw_dir(root)
    bad = _unverified(raw, idx.FILES)
    if not bad:
        return root, "cache"
    raw.mkdir(parents=True, exist_ok=True)
    for attempt in (1, 2):
        for name, why in bad.items():
            if why != "missing":
                log(f"{name}: {why}; removing it")
            (raw / name).unlink(missing_ok=True)
        source = _fetch(raw, sorted(bad), log)
        bad = _unverified(raw, bad)
        if not bad:
            return root, source
        if attempt == 1:
            log(f"{source} gave files that fail verification ({', '.join(bad)}); fetching them once more")
    name, why = next(iter(bad.items()))
    path = raw / name
    actual = idx.sha256_file(path) if path.is_file() else "nothing (file missing)"
    for failed in bad:
        (raw / failed).unlink(missing_ok=True)
    size_note = "" if why.startswith("sha256") else f" ({why})"
    raise DataError(f"{path} from {source} failed verification twice: expected sha256 {idx.FILES[name][1]}, "
                    f"got {actual}{size_note}")
