"""Rows on disk: durable appends, atomic JSON, loading a results directory into DataFrames.

Whole files (JSON, IDX, a new CSV with its header) go to a temporary file in the same directory, are
fsynced, renamed over the target, and the directory is fsynced: a killed run leaves the old file or the
new one. Rows are appended in place (cost: the row, not the file), flushed and fsynced. A kill in the
middle of an append can leave a torn last line, one without its newline: every reader here drops it, and
the next append cuts it off before writing, so half a row is never read and never built upon.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from bench import metrics
from bench.atomic import atomic_write_text
from bench.schema import (
    BOOL_RUN_COLUMNS,
    CURVE_COLUMNS,
    CURVES_FILE,
    ENV_FILE,
    REQUIRED_RUN_COLUMNS,
    RUN_COLUMNS,
    RUNS_FILE,
    STEP_COLUMNS,
    STEPS_FILE,
    TEXT_RUN_COLUMNS,
)

# pandas is imported where a table is read: `bench run` writes its rows without it, so its driver starts the
# runs before anything needs pandas (a second or more of imports, beside the worker server's).
if TYPE_CHECKING:
    import pandas as pd


def _csv_text(rows: list[dict], columns: list[str], header: bool) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="raise", lineterminator="\n")
    if header:
        writer.writeheader()
    for row in rows:
        writer.writerow({key: ("" if row.get(key) is None else row.get(key)) for key in columns})
    return buffer.getvalue()


def append_rows(path: str | Path, rows: list[dict], columns: list[str]) -> None:
    """Appends rows (each must use only `columns`); a new file is created whole, header included."""
    path = Path(path)
    if not path.exists():
        atomic_write_text(path, _csv_text(rows, columns, header=True))
        return
    with open(path, "r+b") as handle:
        end = _drop_torn_line(handle)
        if end == 0:   # only a torn header was there: start again from the header
            data = _csv_text([], columns, header=True).encode() + _csv_text(rows, columns, header=False).encode()
        else:          # rows follow the file's own header, which an older version may have ordered differently
            handle.seek(0)
            existing = _file_columns(path, handle.readline(), columns)
            if len(existing) < len(columns):  # an older version measured less: widen the file first
                handle.close()
                _widen(path, columns)
                return append_rows(path, rows, columns)
            data = _csv_text(rows, existing, header=False).encode()
        handle.seek(end)
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _file_columns(path: Path, header: bytes, columns: list[str]) -> list[str]:
    """The existing file's column order, when it holds the same columns; else one clear error, since rows
    written under another header would land in the wrong columns without a sound."""
    existing = next(csv.reader([header.decode()]))
    if not set(existing) <= set(columns):
        differ = sorted(set(existing) - set(columns))
        raise ValueError(f"{path}: its columns differ from this version's ({', '.join(differ[:6])}); "
                         "finish it with the version that wrote it, or start a new results directory")
    return existing


def _widen(path: Path, columns: list[str]) -> None:
    """Rewrites a file written with fewer columns under the full header (the new columns empty), atomically."""
    rows = list(csv.DictReader(io.StringIO(read_complete_csv(path, dtype=str, keep_default_na=False)
                                           .to_csv(index=False))))
    atomic_write_text(path, _csv_text(rows, columns, header=True))


def _drop_torn_line(handle, block: int = 1 << 16) -> int:
    """Truncates the file after its last newline, if it does not end in one; returns the new size.
    Reads only the tail: at most the torn line and one block."""
    size = handle.seek(0, os.SEEK_END)
    position = size
    while position > 0:
        start = max(0, position - block)
        handle.seek(start)
        chunk = handle.read(position - start)
        cut = chunk.rfind(b"\n")
        if cut >= 0:
            end = start + cut + 1
            break
        position = start
    else:
        end = 0
    if end != size:
        handle.truncate(end)
    return end


def read_complete_csv(path: Path, **options) -> pd.DataFrame:
    """pd.read_csv of the complete lines of `path`: a torn last line (a kill mid-append) is left out."""
    import pandas as pd
    text = path.read_bytes()
    text = text[:text.rfind(b"\n") + 1]
    if not text:
        return pd.DataFrame()
    return pd.read_csv(io.BytesIO(text), **options)


def append_run(directory: str | Path, run: dict, curve: list[dict], steps: list[dict]) -> None:
    """Writes one finished run. runs.csv goes last: a run counts as done only once its row exists."""
    directory = Path(directory)
    append_rows(directory / CURVES_FILE, curve, CURVE_COLUMNS)
    append_rows(directory / STEPS_FILE, steps, STEP_COLUMNS)
    append_rows(directory / RUNS_FILE, [run], RUN_COLUMNS)


def load_runs(directory: str | Path) -> pd.DataFrame:
    """runs.csv as a DataFrame. Results written by an older version lack the columns added since: they
    load with those empty (nothing was measured there), but the run key and status must be present."""
    path = Path(directory) / RUNS_FILE
    if not path.exists():
        raise FileNotFoundError(f"no {RUNS_FILE} in {directory}: expected a results directory written by `bench run`")
    # Text columns keep "nan" as text (a backend may be called that); a measured value written as
    # nan (a run with nothing to time) is a missing number, not a string that breaks arithmetic.
    measured = {m.name for m in metrics.METRICS}
    na = {column: ["", "nan", "NaN", "-nan"] if column in measured else [""] for column in RUN_COLUMNS}
    frame = read_complete_csv(path, keep_default_na=False, na_values=na,
                              dtype=dict.fromkeys(TEXT_RUN_COLUMNS + BOOL_RUN_COLUMNS, str))
    frame = _memory_columns_of_older_results(_fill_new_config_columns(frame))
    missing = [c for c in REQUIRED_RUN_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {', '.join(missing)}")
    for column in RUN_COLUMNS:
        if column not in frame.columns:
            frame[column] = "" if column in TEXT_RUN_COLUMNS else float("nan")
    for column in TEXT_RUN_COLUMNS:
        frame[column] = frame[column].fillna("")
    for column in BOOL_RUN_COLUMNS:  # True / False, None where not known
        frame[column] = frame[column].map({"True": True, "False": False, True: True, False: False}).astype(object)
        frame[column] = frame[column].where(frame[column].notna(), None)
    return frame


OLD_MEMORY_COLUMN = "peak_memory_bytes"  # before peak_tensor_bytes: CUDA's allocator peak, or RSS growth on CPU


def _memory_columns_of_older_results(frame: pd.DataFrame) -> pd.DataFrame:
    """Results written before bench.memory held one memory column, measured per device: on CUDA the allocator's
    peak (what peak_tensor_bytes is), on CPU the process's RSS growth (what rss_growth_bytes is). Each value
    goes to the column that means the same; an older CPU row has no peak_tensor_bytes."""
    if OLD_MEMORY_COLUMN not in frame.columns or "peak_tensor_bytes" in frame.columns:
        return frame
    import pandas as pd
    method = frame.get("memory_method", pd.Series("", index=frame.index)).fillna("").astype(str)
    cuda, value = method.str.startswith("cuda"), pd.to_numeric(frame[OLD_MEMORY_COLUMN], errors="coerce")
    frame["peak_tensor_bytes"] = value.where(cuda)
    frame["rss_growth_bytes"] = value.where(~cuda & method.str.contains("RSS"))
    frame.loc[~cuda & (method != ""), "memory_method"] = "older results: RSS growth only (rss_growth_bytes)"
    return frame.drop(columns=OLD_MEMORY_COLUMN)


def _fill_new_config_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """A file written before a knob existed ran with that knob's default (task=rows, no grad_clip):
    reading it fills the knob's column with the default, so older results still load and report. A file
    widened by a resume (storage._widen) holds the column, empty in the older rows: those are filled too
    (a knob whose default is a value is always written, so an empty cell is a row from before it)."""
    from bench import config
    for name, field in config.fields().items():
        column, default = field.metadata["column"], field.default
        if column is not True or default is dataclasses.MISSING:
            continue
        if name not in frame.columns:
            frame[name] = default
        elif default is not None and frame[name].isna().any():
            frame[name] = frame[name].astype(object).where(frame[name].notna(), default)
            if type(default) in (bool, int):  # "True"/"False" or 4.0 beside the empty cells: back to the knob's type
                frame[name] = frame[name].map(lambda v: v if isinstance(v, bool) else
                                              {"True": True, "False": False}.get(v, v)).astype(type(default))
    return frame


def load_table(directory: str | Path, name: str, columns: list[str]) -> pd.DataFrame:
    path = Path(directory) / name
    if not path.exists():
        import pandas as pd
        return pd.DataFrame(columns=columns)
    return read_complete_csv(path)


def load_curves(directory: str | Path) -> pd.DataFrame:
    return load_table(directory, CURVES_FILE, CURVE_COLUMNS)


def load_steps(directory: str | Path) -> pd.DataFrame:
    return load_table(directory, STEPS_FILE, STEP_COLUMNS)


def load_env(directory: str | Path) -> dict:
    path = Path(directory) / ENV_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def statuses(directory: str | Path) -> list[str]:
    """runs.csv's status column, read without pandas (`bench run`'s exit status: its driver never needs pandas)."""
    text = (Path(directory) / RUNS_FILE).read_bytes().decode()
    return [row["status"] for row in csv.DictReader(io.StringIO(text[:text.rfind("\n") + 1]))]


def drop_failed(directory: str | Path, backends=None) -> int:
    """Removes the failed rows of runs.csv in one atomic rewrite (the file keeps its header and every
    other row), so `--retry-failed` reruns them as missing cells; only those of `backends` when given
    (what `--resume --backends` will run); returns how many were dropped. A
    failed run wrote no curve or step rows, so runs.csv is the only file that holds it."""
    path = Path(directory) / RUNS_FILE
    text = path.read_bytes().decode()
    rows = list(csv.reader(io.StringIO(text[:text.rfind("\n") + 1])))  # a torn last line is no row
    if not rows:
        return 0
    status, backend = rows[0].index("status"), rows[0].index("backend")
    keep = [rows[0]] + [row for row in rows[1:]
                        if row[status] != "failed" or (backends is not None and row[backend] not in backends)]
    if len(keep) < len(rows):
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(keep)
        atomic_write_text(path, buffer.getvalue())
    return len(rows) - len(keep)


def drop_unfinished(directory: str | Path, finished: set[str]) -> None:
    """Removes curve and step rows of runs that never got their runs.csv row (a killed run)."""
    directory = Path(directory)
    for name, columns in ((CURVES_FILE, CURVE_COLUMNS), (STEPS_FILE, STEP_COLUMNS)):
        path = directory / name
        if not path.exists():
            continue
        frame = read_complete_csv(path)
        keep = frame[frame["run_id"].isin(finished)]
        if len(keep) != len(frame):
            atomic_write_text(path, keep.to_csv(index=False, columns=columns, lineterminator="\n"))
