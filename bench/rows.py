"""One row of runs.csv, assembled in one place.

A row joins what the driver knows of a cell (its key, its config columns from the config table, the
device, what the registry says will run, why it did not run) with, for a cell that ran, what the worker
measured (RunResult.metrics), where it ran (RunResult.where: host, device, threads) and what needs the
directory's figures (efficiency against env.json's peak). Columns: bench.schema.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

from bench import config as config_mod
from bench import flops
from bench.constants import BASELINE

if TYPE_CHECKING:
    from bench.executors import Cell
    from bench.planning import Device
    from bench.result import RunResult


def run_row(cell: Cell, device: Device, *, status: str, error: str = "", detail: str = "",
            result: RunResult | None = None, peaks: dict | None = None, handed: dict | None = None) -> dict:
    """The row of `cell`: status ok (with `result`), skipped or failed (with `error`, one line). `detail` is the
    registry's word on what runs (impls.availability); the profiler's verdict replaces it where it says more.
    `handed`: the runner's note of the cell's hand-off (bench.contention.paced): its "columns" (quiet_wait_s)
    and "at", when it went to the executor, from which startup_s is counted. `threads` is the worker's; a row
    that never ran holds the config's (empty: torch's default)."""
    handed = handed or {}
    row = {"run_id": cell.run_id, **config_mod.row_values(cell.config, backend=cell.backend, seed=cell.seed),
           "device": str(device), "threads": cell.config.threads, "status": status, "error": error,
           "impl_detail": detail} | handed.get("columns", {})
    if result is not None:
        row |= measured_columns(result, cell, peaks or {}, detail, handed.get("at"))
    return row


def measured_columns(result: RunResult, cell: Cell, peaks: dict, detail: str = "",
                     handed_at: float | None = None) -> dict:
    """The worker's metrics and whereabouts as row columns: startup_s from the hand-off (`handed_at`, Unix time)
    to the worker's first line of work; efficiency against the directory's peak for the cell's dtype (NaN
    until bench.peakcache measures a missing one); the profiler's rnn_engine as impl_detail where it says
    something: always for the baseline (including "not cuDNN"), for other backends only when an RNN op or
    kernel showed up; and any slower launch configuration the device forced on a Triton kernel
    (impls.triton_common.launch_notes)."""
    columns = dict(result.metrics) | dict(result.where)
    started = columns.pop("started_unix", None)  # when the worker began: not a column
    if started is not None and handed_at is not None:
        columns["startup_s"] = max(0.0, started - handed_at)
    engine = columns.pop("rnn_engine", None)
    if engine and (cell.backend == BASELINE or not engine.startswith("not cuDNN")):
        detail = engine
    # a slower kernel configuration the device forced is part of what ran, so it is said beside it
    columns["impl_detail"] = "; ".join(filter(None, [detail, columns.pop("launch_notes", "")]))
    peak = peaks.get(cell.config.dtype, {}).get("gflops", math.nan)
    columns["efficiency"] = flops.efficiency(columns.get("achieved_gflops", math.nan), peak)
    return columns
