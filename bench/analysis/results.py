"""A results directory as DataFrames: the runs and their status, the sweep, per-metric summaries.

    results = load(DIR)          # Results: runs, curves, steps (DataFrames), env (dict)
    results.ok / results.not_ok  # ok rows; skipped and failed rows with their reasons
    results.axes                 # the sweep axes: config axes whose values vary across ok rows
    results.backends             # backends in the config's run order, then any others by name
    results.summary(metric)      # one row per backend (x sweep point): n, mean/std or pooled percentiles, ratio

report, plots and compare read results through this module only; it never imports torch or the
backends. The plan saved in env.json (backends x seeds x sweep points) is compared with the rows on
disk: a planned cell without a row is `missing` (the run was interrupted or is still running), counted
beside ok, skipped and failed and listed with the runs that were not measured.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bench import config, metrics, validate
from bench.constants import BASELINE
from bench.schema import RUN_COLUMNS, RUNS_FILE
from bench.storage import load_curves, load_env, load_runs, load_steps

STATUSES = ("ok", "skipped", "failed", "missing")
NOT_RUN = "not run (interrupted or still running)"


class ResultsError(ValueError):
    """The directory is not something a report can be written for (exit 2 in the CLIs)."""


@dataclass
class Results:
    dir: Path
    runs: pd.DataFrame     # runs.csv, every status
    curves: pd.DataFrame   # curves.csv
    steps: pd.DataFrame    # steps.csv
    env: dict              # env.json ({} when missing)
    warnings: list[str] = field(default_factory=list)  # what a reader should be told: rows outside env.json's plan


    @property
    def ok(self) -> pd.DataFrame:
        return ok_runs(self.runs)

    @property
    def missing(self) -> pd.DataFrame:
        """Planned cells with no row: backend, seed, every sweep axis, status "missing", error NOT_RUN."""
        return missing_cells(self.runs, self.env)

    @property
    def not_ok(self) -> pd.DataFrame:
        """Skipped and failed rows, then the planned cells that have no row."""
        return pd.concat([not_ok_table(self.runs), self.missing], ignore_index=True)

    def status_counts(self) -> dict[str, int]:
        counts = self.runs["status"].value_counts()
        return {status: int(counts.get(status, 0)) for status in STATUSES[:-1]} | {"missing": len(self.missing)}

    @property
    def machines(self) -> list[str]:
        """The machines the ok runs ran on ("host: device name"), as runs.csv records them per row: more
        than one (Ray across nodes, or results copied together) means speed compares machines too."""
        ok = self.ok
        if ok.empty or not {"host", "device_name"} & set(ok.columns):
            return []
        labels = [": ".join(str(v) for v in (row.get("host"), row.get("device_name")) if isinstance(v, str) and v)
                  for _, row in ok.iterrows()]
        return sorted({label for label in labels if label})

    @property
    def axes(self) -> list[str]:
        return sweep_axes(self.runs)

    @property
    def backends(self) -> list[str]:
        return backend_order(self.runs, self.env)

    def step_samples(self, axes: list[str] | None = None) -> pd.DataFrame:
        return step_samples(self.runs, self.steps, self.axes if axes is None else axes)

    def summary(self, metric: str | metrics.Metric, axes: list[str] | None = None,
                baseline: str = BASELINE) -> pd.DataFrame:
        """metric_table in the backends' order."""
        axes = self.axes if axes is None else axes
        table = metric_table(self.runs, self.steps, metric, axes, baseline)
        if table.empty:
            return table
        rank = {b: i for i, b in enumerate(self.backends)}
        return (table.assign(_rank=table["backend"].map(rank)).sort_values(["_rank", *axes])
                .drop(columns="_rank").reset_index(drop=True))


def load(directory: str | Path) -> Results:
    """The files of a results directory; ResultsError if it isn't one."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ResultsError(f"{directory}: no such directory")
    try:
        env = load_env(directory)
        if not (directory / RUNS_FILE).is_file() and "config" not in env:
            raise ResultsError(f"{directory}: not a results directory (no {RUNS_FILE}; "
                               "write one with `python -m bench run`)")
        found = validate.ensure_sound(directory)  # a damaged file: one line naming file and line, no row read
        # a run killed (or still busy) before its first row: every planned cell is missing
        runs = load_runs(directory) if (directory / RUNS_FILE).is_file() else pd.DataFrame(columns=RUN_COLUMNS)
        curves, steps = load_curves(directory), load_steps(directory)
    except ResultsError:
        raise  # already says what is wrong; not "unreadable"
    except validate.DamagedResults as error:
        raise ResultsError(str(error)) from None
    except (ValueError, OSError, pd.errors.ParserError) as error:
        raise ResultsError(f"{directory}: unreadable results: {error}") from None
    # run_id joins runs to curves and steps; read as text everywhere so "7" and 7 are the same run.
    for frame in (runs, curves, steps):
        frame["run_id"] = frame["run_id"].astype(str)
    return Results(directory, runs, curves, steps, env, plan_warnings(found))


def plan_warnings(problems: list) -> list[str]:
    """One line about rows that do not fit the plan in env.json (its settings and its "not run" list then
    describe another run than the rows do); nothing when they all fit."""
    outside = [p for p in problems if p.severity == validate.PLAN]
    if not outside:
        return []
    return [f"{len(outside)} row(s) do not fit the plan saved in env.json, first {outside[0]}: the settings and "
            "the runs listed as not run follow env.json, the tables follow the rows"]


# ---------------------------------------------------------------- on frames (compare mixes two directories)

def ok_runs(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["status"] == "ok"]


def not_ok_table(runs: pd.DataFrame) -> pd.DataFrame:
    bad = runs[runs["status"] != "ok"]
    return bad[["backend", "seed", *config.sweep_axes(), "status", "error"]].reset_index(drop=True)


def _cell_value(value):
    """A key value as the plan and runs.csv both spell it: 32, 32.0 and "32" are the same cell."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return int(number) if number.is_integer() else number


def missing_cells(runs: pd.DataFrame, env: dict) -> pd.DataFrame:
    """The plan saved in env.json (backends x seeds x sweep points) less the cells runs.csv holds."""
    every_axis = list(config.sweep_axes())
    columns = ["backend", "seed", *every_axis, "status", "error"]
    saved = (env or {}).get("config") or {}
    if not saved.get("backends") or not saved.get("seeds"):
        return pd.DataFrame(columns=columns)
    sweep = saved.get("sweep") or {}
    swept = [axis for axis in sweep if axis in runs]
    present = {tuple(_cell_value(v) for v in key)
               for key in runs[["backend", "seed", *swept]].itertuples(index=False, name=None)}
    rows = []
    for point in config.sweep_points(sweep):
        for backend in saved["backends"]:
            for seed in saved["seeds"]:
                key = (backend, seed, *(point[axis] for axis in swept))
                if tuple(_cell_value(v) for v in key) not in present:
                    values = {axis: point.get(axis, saved.get(axis)) for axis in every_axis}
                    rows.append({"backend": backend, "seed": seed, **values, "status": "missing", "error": NOT_RUN})
    return pd.DataFrame(rows, columns=columns)


def sweep_axes(runs: pd.DataFrame) -> list[str]:
    """Axes whose values vary across ok rows: those are the sweep, whatever the config claims."""
    ok = ok_runs(runs)
    return [axis for axis in config.sweep_axes() if axis in ok and ok[axis].nunique(dropna=True) > 1]


def backend_order(runs: pd.DataFrame, env: dict | None = None) -> list[str]:
    """Backends in the config's run order, then any others by name, so tables and plots agree."""
    configured = list((env or {}).get("config", {}).get("backends", []))
    present = list(dict.fromkeys(runs["backend"].astype(str)))
    return [b for b in configured if b in present] + sorted(b for b in present if b not in configured)


def at_point(frame: pd.DataFrame, values: dict) -> pd.DataFrame:
    """The rows of `frame` whose columns hold `values` (a backend, a seed, sweep axes): the rows at one point."""
    keep = pd.Series(True, index=frame.index)
    for column, value in values.items():
        keep &= frame[column] == value
    return frame[keep]


def step_samples(runs: pd.DataFrame, steps: pd.DataFrame, axes: list[str]) -> pd.DataFrame:
    """Per-step times of ok runs with the group columns attached (steps.csv only knows run_id)."""
    keys = ["run_id", "backend", *axes]
    if steps.empty:
        return pd.DataFrame(columns=[*keys, "step_ms"])
    return steps[["run_id", "step_ms"]].merge(ok_runs(runs)[keys], on="run_id")


def metric_table(runs: pd.DataFrame, steps: pd.DataFrame, metric: str | metrics.Metric,
                 axes: list[str] | None = None, baseline: str = BASELINE) -> pd.DataFrame:
    """One row per backend (x sweep point) over ok runs; `value` is what the ratio and compare use.

    A metric sampled per step (Metric.samples == "steps") pools every timed step of the group from
    steps.csv (median, p10, p90), because per-run medians cannot be combined into percentiles; where a
    group has no rows in steps.csv it falls back to the median of the per-run summaries and says so
    in `source`. Everything else is the mean and sample std over seeds (std is NaN for a single seed).
    A metric with a method_column gets `method`: how its values were measured.
    """
    metric = metrics.by_name(metric) if isinstance(metric, str) else metric
    axes = sweep_axes(runs) if axes is None else axes
    keys = ["backend", *axes]
    ok = ok_runs(runs)
    if ok.empty:
        return pd.DataFrame(columns=[*keys, "n", "value", "ratio"])
    if metric.samples == "steps":
        table = _step_percentiles(ok, step_samples(runs, steps, axes), keys, metric.name)
    else:
        table = ok.groupby(keys, sort=True)[metric.name].agg(n="count", mean="mean", std="std").reset_index()
        table["value"] = table["mean"]
    if metric.method_column:
        methods = ok.groupby(keys)[metric.method_column].agg(lambda s: "; ".join(sorted(set(s.dropna().astype(str)))))
        table = table.merge(methods.rename("method").reset_index(), on=keys)
    table["ratio"] = _ratios(table, axes, baseline)
    return table


def _step_percentiles(ok: pd.DataFrame, samples: pd.DataFrame, keys: list[str], column: str) -> pd.DataFrame:
    rows = []
    for key, group in ok.groupby(keys, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        pooled = at_point(samples, dict(zip(keys, key)))
        row = dict(zip(keys, key), n=len(group))
        if len(pooled):
            ms = pooled["step_ms"].to_numpy(dtype=float)
            row.update(steps=len(ms), median=metrics.percentile(ms, 50), p10=metrics.percentile(ms, 10),
                       p90=metrics.percentile(ms, 90), source="steps.csv")
        else:  # the runner's per-run summaries of the same steps
            row.update(steps=0, median=group[column].median(), p10=group["step_ms_p10"].median(),
                       p90=group["step_ms_p90"].median(), source="runs.csv")
        rows.append(row)
    table = pd.DataFrame(rows)
    table["value"] = table["median"]
    return table


def _ratios(table: pd.DataFrame, axes: list[str], baseline: str) -> pd.Series:
    """value / baseline's value at the same sweep point; NaN where the baseline has no ok run there."""
    base = table[table["backend"] == baseline]
    if base.empty:
        return pd.Series(np.nan, index=table.index)
    if not axes:
        return table["value"] / base["value"].iloc[0]
    merged = table[axes].merge(base[[*axes, "value"]], on=axes, how="left")
    with np.errstate(invalid="ignore", divide="ignore"):  # NaN over NaN at skipped points is the answer, not news
        return pd.Series(table["value"].to_numpy() / merged["value"].to_numpy(), index=table.index)
