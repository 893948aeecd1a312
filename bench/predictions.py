"""Per-image correctness, one file per run: DIR/predictions/<run_id>.npy, a .npy of bools (one per test
image, in test-set order; ~10 kB), written atomically. `compare` pairs them for McNemar's test.
"""
from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np

from bench.atomic import atomic_write_bytes

PREDICTIONS_DIR = "predictions"
_RUN_ID = re.compile(r"^[A-Za-z0-9_.=+-]+$")


def as_bools(values, what: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1 or array.dtype != np.bool_:
        raise ValueError(f"{what}: expected a 1-D array of bools (one per test image), got {array.dtype} {array.shape}")
    return array


def predictions_path(results_dir: str | Path, run_id: str) -> Path:
    if not isinstance(run_id, str) or not _RUN_ID.match(run_id):
        raise ValueError(f"predictions: run_id must be letters, digits and _.=+- only, got {run_id!r}")
    return Path(results_dir) / PREDICTIONS_DIR / f"{run_id}.npy"


def save_correctness(results_dir: str | Path, run_id: str, correct) -> Path:
    """Write one run's per-image correctness (1-D bools, test-set order) atomically; returns the path."""
    array = as_bools(correct, "save_correctness")
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    path = predictions_path(results_dir, run_id)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def load_correctness(results_dir: str | Path, run_id: str) -> np.ndarray | None:
    """One run's per-image correctness, or None when the run has no file (an older results directory)."""
    path = predictions_path(results_dir, run_id)
    if not path.exists():
        return None
    return as_bools(np.load(path, allow_pickle=False), f"load_correctness({path})")
