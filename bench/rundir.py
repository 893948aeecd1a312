"""Results directories: where a run's files go, the `latest` pointer, the check that --out is writable
before anything loads, and the lock that keeps two runs out of one directory. Problems raise
ResultsDirError (a ValueError with one line); the command line turns it into exit 2.
"""
from __future__ import annotations

import fcntl
import os
import re
import socket
from datetime import datetime
from pathlib import Path

from bench import atomic

# Relative: results land under the directory `bench run` is started from, wherever the package lives.
RESULTS_ROOT = Path("results") / "runs"


LATEST = "latest"


class ResultsDirError(ValueError):
    """A results directory that cannot be used as asked: one line for the user."""


def short_host() -> str:
    """The machine's name up to the first dot, reduced to what is safe in a directory name."""
    name = re.sub(r"[^A-Za-z0-9-]+", "-", socket.gethostname().split(".")[0]).strip("-")
    return name or "host"


def new_results_dir() -> Path:
    """RESULTS_ROOT/<local time>-<host>: runs copied together from two machines never collide, and
    the name says where each came from. Only a name is picked here; nothing is created."""
    root = RESULTS_ROOT.resolve()
    stamp = f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{short_host()}"
    for suffix in [""] + [f"-{i}" for i in range(1, 100)]:
        candidate = root / f"{stamp}{suffix}"
        if not candidate.exists():
            return candidate
    raise ResultsDirError(f"could not pick a new results directory under {root}")


def point_latest(out_dir: Path) -> None:
    """out_dir.parent/latest names out_dir: a relative symlink swapped in with one rename (readers see the
    old target or the new one), or, where symlinks are refused, a text file holding the name."""
    link, name = out_dir.parent / LATEST, out_dir.name
    scratch = out_dir.parent / f".{LATEST}.{os.getpid()}"
    try:
        scratch.unlink(missing_ok=True)
        scratch.symlink_to(name, target_is_directory=True)
        if link.is_dir() and not link.is_symlink():
            raise OSError(f"{link} is a real directory; not replacing it")
        os.replace(scratch, link)
    except OSError:
        scratch.unlink(missing_ok=True)
        if not (link.is_dir() and not link.is_symlink()):
            atomic.atomic_write_text(link, name + "\n")


def check_writable(out_dir: Path) -> None:
    """The results directory, or the nearest existing folder above it, must be a writable directory:
    found now, not after MNIST has loaded."""
    existing = out_dir
    while not existing.exists() and existing != existing.parent:
        if existing.is_symlink():  # a dangling link: mkdir would fail on it
            raise ResultsDirError(f"--out {out_dir}: {existing} is a broken symbolic link")
        existing = existing.parent
    if not existing.is_dir():
        raise ResultsDirError(f"--out {out_dir}: {existing} is a file, expected a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ResultsDirError(f"--out {out_dir}: {existing} is not writable")


def lock(out_dir: Path):
    """DIR/.lock, locked until the returned file is closed: two runs appending to one directory would
    duplicate rows. The kernel drops the lock if the process dies, however it dies."""
    out_dir.mkdir(parents=True, exist_ok=True)
    handle = open(out_dir / ".lock", "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise ResultsDirError(f"{out_dir} is in use by another `bench run`; wait for it or stop it first") from None
    return handle
