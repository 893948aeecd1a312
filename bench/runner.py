"""Many runs: backends x seeds x sweep points handed to an executor. Failures become rows; finished rows
survive a kill.

    start_env(out_dir, saved, config, device, executor)        # env.json, written once at the start
    peaks = peakcache.before_cells(out_dir, config, device)    # this machine's cached GEMM peaks, if any
    execute(config, out_dir, device, data, peaks=peaks, executor=executor)
    peakcache.after_cells(out_dir, config, device)             # the peaks not cached, and the rows' efficiency

This is the only module that joins backends to the harness (the plan: bench.planning; one row:
bench.rows; results directories: bench.rundir; the command line: bench.run_command). Importing it imports
neither torch nor pandas: `bench run` starts the worker server first, which imports torch meanwhile.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

import impls
from bench import atomic, contention, envinfo, executors, isolate, metrics
from bench.config import Config
from bench.executors import Cell, Failed, LocalExecutor
from bench.planning import Device, dtype_unsupported, plan, run_id
from bench.rows import run_row
from bench.schema import ENV_FILE, RUNS_FILE
from impls import plugins

# glibc's malloc returns large freed blocks to the OS and faults them back in on the next step; a fresh
# worker pays that on every step (cudnn on CPU measured 8.7 ms a step with glibc's defaults, 4.7 ms
# with these). Fixed thresholds keep the allocator out of the figures, the same for every backend.
# Variables the user has set win; the values in force are saved in env.json.
WORKER_ENV = {"MALLOC_MMAP_THRESHOLD_": str(32 * 2**20), "MALLOC_TRIM_THRESHOLD_": str(256 * 2**20)}


def worker_env() -> dict[str, str]:
    return {key: os.environ.get(key, value) for key, value in WORKER_ENV.items()}


def worker_preload(config: Config) -> tuple[str, ...]:
    """What the worker server imports: Inductor's compiler only when a planned backend compiles."""
    compiles = any(impls.spec(name).compiles for name in config.backends if name in impls.names())
    return isolate.PRELOAD + (isolate.COMPILE_PRELOAD if compiles else ())


def say(line: str) -> None:
    """Prints a line above the progress bars instead of through them."""
    tqdm.write(line)


def planned_cells(config: Config, done: set[str]) -> list[Cell]:
    """The plan's cells that runs.csv does not hold yet, in plan order."""
    cells = [Cell(run_id(backend, seed, point), backend, seed, point) for backend, seed, point in plan(config)]
    return [cell for cell in cells if cell.run_id not in done]


def execute(config: Config, out_dir: Path, device: Device, data, *, peaks: dict | None = None, log=say,
            executor=None, quiet_limit_s: float | None = None, handed: dict | None = None) -> list[dict]:
    """Runs what runs.csv in out_dir does not hold yet, on `executor` (default: local); returns the rows
    written now, in the order the cells finished. `peaks` (env.json's "peak") gives the efficiency column (a
    dtype without one is filled in later: bench.peakcache). quiet_limit_s: before each cell, wait up to that
    long for a quiet machine (bench.contention), recorded as the row's quiet_wait_s. `handed` (filled when
    given): run id -> when its cell went to the executor ("at") and when the worker began it ("started")."""
    from bench import predictions, storage  # pandas: imported when needed, not before the worker server starts
    done = set(storage.load_runs(out_dir)["run_id"]) if (out_dir / RUNS_FILE).exists() else set()
    storage.drop_unfinished(out_dir, done)
    executor = executor or LocalExecutor(env=worker_env(), timeout_s=config.timeout or None)
    cells = planned_cells(config, done)
    # The outer bar: all runs of this call, with an ETA; each run draws its own bar of steps below it.
    bar = tqdm(total=len(cells), desc="runs", unit="run", disable=not sys.stderr.isatty())
    written, details, runnable = [], {}, []

    def write(row: dict, result=None) -> None:
        key = {k: row[k] for k in ("run_id", "backend", "seed")}
        storage.append_run(out_dir, row, [key | r for r in result.curve] if result else [],
                           [key | r for r in result.steps] if result else [])
        written.append(row)
        log(summary_line(row, len(written), len(cells)))
        bar.update()

    for cell in cells:
        point = cell.config  # an option the backend lacks (bidirectional, proj_size, packing) is a skipped row
        available = impls.availability(cell.backend, device, bidirectional=point.bidirectional,
                                       proj_size=point.proj_size, packing=point.packing)
        details[cell.run_id] = available.reason if available.ok else ""
        no_dtype = dtype_unsupported(cell.config.dtype, device)
        if available.ok and not no_dtype:
            runnable.append(cell)
        else:
            write(run_row(cell, device, status="skipped", error=no_dtype or available.reason,
                          detail=details[cell.run_id]))
    handed = {} if handed is None else handed
    gpu_index = (device.index or 0) if device.type == "cuda" else None
    paced = contention.paced(runnable, handed, quiet_limit_s, log, gpu_index)  # waits for quiet if asked
    for cell, outcome in executor.run(paced, data, device):  # in the order they finish
        entry = handed.setdefault(cell.run_id, {})
        if isinstance(outcome, Failed):  # one backend's failure must not end the others' runs
            write(run_row(cell, device, status="failed", error=outcome.reason, detail=details[cell.run_id],
                          handed=entry))
            continue
        if outcome.correct is not None:  # before the row: a run is done only once runs.csv holds it
            predictions.save_correctness(out_dir, cell.run_id, outcome.correct)
        entry["started"] = outcome.metrics.get("started_unix")
        write(run_row(cell, device, status="ok", detail=details[cell.run_id], result=outcome, peaks=peaks,
                      handed=entry), outcome)
        if device.type == "cuda" and "torch" in sys.modules:  # an in-process run may have left a pool
            sys.modules["torch"].cuda.empty_cache()
    bar.close()
    return written


def start_env(out_dir: Path, saved: dict, config: Config, device: Device, executor, *,
              experiment: str | None = None, warnings: Sequence[str] = ()) -> dict:
    """env.json at the start of `bench run`, written once. `saved` is what the directory held ({} for a new one;
    read once, by the caller). Versions, hardware, the config in force and the preset it started from (a
    resume keeps the first start's and adds what finished the run); this start's executor. The GEMM peaks
    ("peak") are bench.peakcache's: looked up before the cells, measured after them when not cached."""
    allocator = worker_env() if config.isolate else {k: os.environ.get(k, "glibc default") for k in WORKER_ENV}
    now = envinfo.collect(executors.torch_facts(executor, config)) | {
        "device": str(device), "config": config.to_dict(), "allocator_env": allocator}
    if experiment:
        now["experiment"] = experiment
    if warnings:  # e.g. more threads than cores: the figures carry the reason
        now["warnings"] = list(warnings)
    if used := plugins.provenance(config.backends):  # where each plugin backend came from, and its version
        now["plugins"] = used
    env = dict(saved) or now
    if saved:  # a resume: keep the original provenance, and say what finished the run
        finished_by = {k: now[k] for k in ("timestamp", "git_commit", "torch", "torch_threads", "warnings", "plugins")
                       if k in now}
        env["resumed"] = [*env.get("resumed", []), finished_by]
    env["executors"] = [*env.get("executors", []), executor.describe(device)]  # a resume may use another
    atomic.write_json(out_dir / ENV_FILE, env)
    return env


def summary_line(row: dict, number: int, total: int) -> str:
    head = (f"run {number} of {total}: {row['backend']:<7} seed {row['seed']} b{row['batch_size']} "
            f"h{row['hidden_size']} t{row['seq_len']}"
            + (f" {row['dtype']}" if row["dtype"] != "float32" else "")
            + (f" {row['task']}" if row["task"] != "rows" else "")
            + (" bi" if row.get("bidirectional") else "") + (f" p{row['proj_size']}" if row.get("proj_size") else "")
            + (f" {row['packing']}" if row.get("packing", "none") != "none" else ""))
    if row["status"] != "ok":
        return f"{head}  {row['status'].upper()}: {row['error']}"
    step_ms = metrics.by_name("step_ms_median").format(row["step_ms_median"])
    return (f"{head}  acc {row['test_accuracy']:.4f}  train {row['train_samples_per_s']:,.0f} samples/s  "
            f"step {step_ms} ms  infer {row['infer_samples_per_s']:,.0f} samples/s  "
            f"mem {metrics.by_name('peak_tensor_bytes').format(row.get('peak_tensor_bytes'))} MiB  "
            f"first step {row['first_step_s']:.2f} s" + contention.summary_note(row))
