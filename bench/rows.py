"""One row of runs.csv, assembled in one place.

A row joins what the driver knows of a cell (its key, its config columns from the config table, the
device, what the registry says will run, why it did not run) with, for a cell that ran, what the worker
measured (RunResult.metrics), where it ran (RunResult.where: host, device, threads) and what needs the
directory's figures (efficiency against env.json's peak). Columns: bench.schema.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from bench import config as config_mod
from bench import flops
from bench.constants import BASELINE

if TYPE_CHECKING:
    from bench.executors import Cell
    from bench.train import RunResult


def run_row(cell: Cell, device: torch.device, *, status: str, error: str = "", detail: str = "",
            result: RunResult | None = None, peaks: dict | None = None) -> dict:
    """The row of `cell`: status ok (with `result`), skipped or failed (with `error`, one line). `detail` is the
    registry's word on what runs (impls.availability); the profiler's verdict replaces it where it says more."""
    row = {"run_id": cell.run_id, **config_mod.row_values(cell.config, backend=cell.backend, seed=cell.seed),
           "device": str(device), "threads": torch.get_num_threads(), "status": status, "error": error,
           "impl_detail": detail}
    if result is not None:
        row |= measured_columns(result, cell, peaks or {}, detail)
    return row


def measured_columns(result: RunResult, cell: Cell, peaks: dict, detail: str = "") -> dict:
    """The worker's metrics and whereabouts as row columns: efficiency against the directory's peak for the
    cell's dtype, and the profiler's rnn_engine as impl_detail where it says something: always for the
    baseline (including "not cuDNN"), for other backends only when an RNN op or kernel showed up; and any slower
    launch configuration the device forced on a Triton kernel (impls.triton_common.launch_notes)."""
    columns = dict(result.metrics) | dict(result.where)
    columns.pop("started_unix", None)  # when the worker began: not a column (the driver's startup_s needs it)
    engine = columns.pop("rnn_engine", None)
    if engine and (cell.backend == BASELINE or not engine.startswith("not cuDNN")):
        detail = engine
    # a slower kernel configuration the device forced is part of what ran, so it is said beside it
    columns["impl_detail"] = "; ".join(filter(None, [detail, columns.pop("launch_notes", "")]))
    peak = peaks.get(cell.config.dtype, {}).get("gflops", math.nan)
    columns["efficiency"] = flops.efficiency(columns.get("achieved_gflops", math.nan), peak)
    return columns
