"""Rows on disk: atomic appends, atomic JSON, loading a results directory into DataFrames.

Every write goes to a temporary file in the same directory, is fsynced, then renamed over the
target, so a killed run leaves either the old file or the new one, never half a row.
"""
from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path

import pandas as pd

from bench.schema import (CURVE_COLUMNS, CURVES_FILE, ENV_FILE, OPTIONAL_RUN_COLUMNS, RUN_COLUMNS, RUNS_FILE,
                          STEP_COLUMNS, STEPS_FILE)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644 & ~_umask())  # mkstemp's 0600 would hide results and data from other users
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def write_json(path: str | Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def _csv_text(rows: list[dict], columns: list[str], header: bool) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="raise", lineterminator="\n")
    if header:
        writer.writeheader()
    for row in rows:
        writer.writerow({key: ("" if row.get(key) is None else row.get(key)) for key in columns})
    return buffer.getvalue()


def append_rows(path: str | Path, rows: list[dict], columns: list[str]) -> None:
    """Appends rows (each must use only `columns`) by rewriting the file atomically."""
    path = Path(path)
    old = path.read_text() if path.exists() else ""
    if old and old.split("\n", 1)[0] != ",".join(columns):  # written by an older version: widen it first
        old = _csv_text(list(csv.DictReader(io.StringIO(old))), columns, header=True)
    atomic_write_text(path, old + _csv_text(rows, columns, header=not old))


def append_run(directory: str | Path, run: dict, curve: list[dict], steps: list[dict]) -> None:
    """Writes one finished run. runs.csv goes last: a run counts as done only once its row exists."""
    directory = Path(directory)
    append_rows(directory / CURVES_FILE, curve, CURVE_COLUMNS)
    append_rows(directory / STEPS_FILE, steps, STEP_COLUMNS)
    append_rows(directory / RUNS_FILE, [run], RUN_COLUMNS)


def load_runs(directory: str | Path) -> pd.DataFrame:
    path = Path(directory) / RUNS_FILE
    if not path.exists():
        raise FileNotFoundError(f"no {RUNS_FILE} in {directory}: expected a results directory written by `bench run`")
    frame = pd.read_csv(path, keep_default_na=False, na_values=[""],
                        dtype={"error": str, "impl_detail": str, "memory_method": str}
                        | dict.fromkeys(OPTIONAL_RUN_COLUMNS, str))
    for column in OPTIONAL_RUN_COLUMNS:  # results written before these columns existed
        if column not in frame.columns:
            frame[column] = ""
    missing = [c for c in RUN_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {', '.join(missing)}")
    for column in ("error", "impl_detail", "memory_method") + OPTIONAL_RUN_COLUMNS:
        frame[column] = frame[column].fillna("")
    return frame


def load_table(directory: str | Path, name: str, columns: list[str]) -> pd.DataFrame:
    path = Path(directory) / name
    if not path.exists():
        return pd.DataFrame(columns=columns)
    return pd.read_csv(path)


def load_curves(directory: str | Path) -> pd.DataFrame:
    return load_table(directory, CURVES_FILE, CURVE_COLUMNS)


def load_steps(directory: str | Path) -> pd.DataFrame:
    return load_table(directory, STEPS_FILE, STEP_COLUMNS)


def load_env(directory: str | Path) -> dict:
    path = Path(directory) / ENV_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def drop_unfinished(directory: str | Path, finished: set[str]) -> None:
    """Removes curve and step rows of runs that never got their runs.csv row (a killed run)."""
    directory = Path(directory)
    for name, columns in ((CURVES_FILE, CURVE_COLUMNS), (STEPS_FILE, STEP_COLUMNS)):
        path = directory / name
        if not path.exists():
            continue
        frame = pd.read_csv(path)
        keep = frame[frame["run_id"].isin(finished)]
        if len(keep) != len(frame):
            atomic_write_text(path, keep.to_csv(index=False, columns=columns, lineterminator="\n"))
