"""Many runs: backends x seeds x sweep points. Failures become rows; finished rows survive a kill.

    python -m bench run [--experiment NAME] [--config FILE] [--backends cudnn,loop] [--epochs N] ...
                        [--sweep AXIS=V1,V2 ...] [--out DIR | --resume DIR] [--report]

This is the only module that joins backends to the harness (the plan: bench.planning; results
directories: bench.rundir). Every input is checked before
anything is written, so bad input leaves no directory behind (exit 2, one line).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

import impls
from bench import config as config_mod
from bench import atomic, envinfo, executors, metrics, storage
from bench.brief import one_line
from bench.cliargs import OneLineParser, UsageError, parse
from bench.config import Config
from bench.executors import Cell, Failed
from bench import preflight
from bench.planning import check_config, dtype_unsupported, plan, plan_text, resolve_device, run_id
from bench.preflight import check_baseline
from bench.rundir import check_writable, lock, new_results_dir, point_latest
from bench.schema import ENV_FILE, RUNS_FILE

# glibc's malloc returns large freed blocks to the OS and faults them back in on the next step; a fresh
# worker pays that on every step (cudnn on CPU measured 8.7 ms a step with glibc's defaults, 4.7 ms
# with these). Fixed thresholds keep the allocator out of the figures, the same for every backend.
# Variables the user has set win; the values in force are saved in env.json.
WORKER_ENV = {"MALLOC_MMAP_THRESHOLD_": str(32 * 2**20), "MALLOC_TRIM_THRESHOLD_": str(256 * 2**20)}


def worker_env() -> dict[str, str]:
    return {key: os.environ.get(key, value) for key, value in WORKER_ENV.items()}


def base_row(backend: str, seed: int, config: Config, device: torch.device) -> dict:
    """The columns known before the run: its key, the config columns (from the config table), what runs it."""
    return {"run_id": run_id(backend, seed, config), **config_mod.row_values(config, backend=backend, seed=seed),
            "device": str(device), "threads": torch.get_num_threads(), "error": ""}


def say(line: str) -> None:
    """Prints a line above the progress bars instead of through them."""
    tqdm.write(line)


def execute(config: Config, out_dir: Path, device: torch.device, data, log=say, executor=None) -> list[dict]:
    """Runs what runs.csv in out_dir does not hold yet, on `executor` (default: local); returns the
    rows written now, in the order the cells finished."""
    from bench.executors import LocalExecutor
    done = set(storage.load_runs(out_dir)["run_id"]) if (out_dir / RUNS_FILE).exists() else set()
    storage.drop_unfinished(out_dir, done)
    from bench import predictions
    peaks = storage.load_env(out_dir).get("peak", {})
    executor = executor or LocalExecutor(env=worker_env(), timeout_s=config.timeout or None)
    planned = plan(config)
    total = sum(run_id(backend, seed, point) not in done for backend, seed, point in planned)
    # The outer bar: all runs of this call, with an ETA; each run draws its own bar of steps below it.
    bar = tqdm(total=total, desc="runs", unit="run", disable=not sys.stderr.isatty())
    written, rows, cells = [], {}, []

    def write(row: dict, result) -> None:
        key = {k: row[k] for k in ("run_id", "backend", "seed")}
        storage.append_run(out_dir, row, [key | r for r in result.curve] if result else [],
                           [key | r for r in result.steps] if result else [])
        written.append(row)
        log(summary_line(row, len(written), total))
        bar.update()

    for backend, seed, point in planned:
        row = base_row(backend, seed, point, device)
        if row["run_id"] in done:
            continue
        available = impls.availability(backend, device)
        row["impl_detail"] = available.reason if available.ok else ""
        no_dtype = dtype_unsupported(point.dtype, device)
        if available.ok and not no_dtype:
            rows[row["run_id"]] = row
            cells.append(Cell(row["run_id"], backend, seed, point))
        else:
            write(row | {"status": "skipped", "error": no_dtype or available.reason}, None)
    for cell, outcome in executor.run(cells, data, device):  # in the order they finish
        row = rows[cell.run_id]
        if isinstance(outcome, Failed):  # one backend's failure must not end the others' runs
            write(row | {"status": "failed", "error": outcome.reason}, None)
            continue
        if outcome.correct is not None:  # before the row: a run is done only once runs.csv holds it
            predictions.save_correctness(out_dir, cell.run_id, outcome.correct)
        write(row | {"status": "ok"} | finish_metrics(outcome.metrics, cell.backend, cell.config, peaks), outcome)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    bar.close()
    return written


def finish_metrics(metrics: dict, backend: str, config: Config, peaks: dict) -> dict:
    """The worker's metrics as row columns: efficiency against the directory's peak for the run's dtype
    (env.json: peak, measured by ensure_peak), and the profiler's rnn_engine as impl_detail where it says
    something: always for cudnn (including "not cuDNN"), for other backends only when an RNN op showed up."""
    from bench import flops
    metrics = dict(metrics)
    engine = metrics.pop("rnn_engine", None)
    if engine and (backend == "cudnn" or not engine.startswith("not cuDNN")):
        metrics["impl_detail"] = engine
    peak = peaks.get(config.dtype, {}).get("gflops", float("nan"))
    metrics["efficiency"] = flops.efficiency(metrics.get("achieved_gflops", float("nan")), peak)
    return metrics


def ensure_peak(out_dir: Path, config: Config, device: torch.device, measure=None) -> dict:
    """env.json's "peak": {dtype: bench.peak.measure_peak(...)} for every dtype the plan runs, measured once per
    results directory on its device (a resume keeps the saved figures), with the config's threads and tf32."""
    from bench.peak import measure_peak
    from bench.train import DTYPES, apply_tf32
    measure = measure or measure_peak
    env = storage.load_env(out_dir)
    peaks = env.setdefault("peak", {})
    missing = sorted({point.dtype for _, _, point in plan(config)} - set(peaks))
    if not missing:
        return peaks
    threads = torch.get_num_threads()
    try:
        if config.threads:
            torch.set_num_threads(config.threads)
        apply_tf32(config.tf32)
        for dtype in missing:
            try:
                peaks[dtype] = measure(device, DTYPES[dtype])
            except Exception as error:  # no peak: efficiency stays empty, the runs still run
                peaks[dtype] = {"gflops": float("nan"), "error": executors.one_line(error)}
    finally:
        torch.set_num_threads(threads)
    env["float32_matmul_precision"] = torch.get_float32_matmul_precision()
    atomic.write_json(out_dir / ENV_FILE, env)
    return peaks


def summary_line(row: dict, number: int, total: int) -> str:
    head = (f"run {number} of {total}: {row['backend']:<7} seed {row['seed']} b{row['batch_size']} "
            f"h{row['hidden_size']} t{row['seq_len']}"
            + (f" {row['dtype']}" if row["dtype"] != "float32" else "")
            + (f" {row['task']}" if row["task"] != "rows" else ""))
    if row["status"] != "ok":
        return f"{head}  {row['status'].upper()}: {row['error']}"
    return (f"{head}  acc {row['test_accuracy']:.4f}  train {row['train_samples_per_s']:,.0f} samples/s  "
            f"step {metrics.by_name('step_ms_median').format(row['step_ms_median'])} ms  infer {row['infer_samples_per_s']:,.0f} samples/s  "
            f"mem {row['peak_memory_bytes'] / 2**20:.1f} MiB  first step {row['first_step_s']:.2f} s")


def parse_args(argv: list[str]) -> argparse.Namespace | int:
    parser = OneLineParser(prog="bench run", description="Train backends on row-by-row MNIST and record results.")
    config_mod.add_arguments(parser, help_suffix={"backends": f"; from: {','.join(impls.names())}"})
    parser.add_argument("--sweep", action="append", default=[], metavar="AXIS=V1,V2",
                        help=f"sweep an axis ({', '.join(config_mod.sweep_axes())}); repeatable")
    parser.add_argument("--experiment", metavar="NAME",
                        help="start from a named preset (`bench list --experiments`); a --config file overrides it, "
                             "and flags override both")
    parser.add_argument("--config", help="TOML or YAML file with config keys")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--out", help="results directory (default: ./results/runs/<time>-<host>/ under the current directory)")
    where.add_argument("--resume", help="finish an interrupted results directory, with its saved config")
    parser.add_argument("--retry-failed", action="store_true",
                        help="with --resume: run the failed runs again (their rows are replaced)")
    parser.add_argument("--allow-failures", action="store_true",
                        help="exit 0 even when runs failed (default: exit 1 and say how many)")
    parser.add_argument("--report", action="store_true", help="write report.md/html and plots when done")
    parser.add_argument("--baseline", help="the report's ratio column: value / BACKEND's (default cudnn)")
    parser.add_argument("--force", action="store_true",
                        help="run a plan whose largest run is estimated not to fit the device's memory")
    parser.add_argument("--dry-run", action="store_true", help="print the plan (backend x seed x sweep point) and exit; writes and downloads nothing")
    parser.add_argument("--executor", default="local", help="where cells run: local (default) | ray")
    parser.add_argument("--ray-address", dest="ray_address", help="Ray cluster to join (default: $RAY_ADDRESS, "
                        "else a private local cluster started for the run)")
    parser.add_argument("--ray-connect-timeout", type=float, default=60.0, metavar="SECONDS",
                        help="ray: give up joining or starting a cluster after this long (default 60)")
    parser.add_argument("--cell-cpus", type=int, dest="cell_cpus",
                        help="ray, CPU device: CPUs per cell (default: all of a node's, so cells never share one)")
    parser.add_argument("--retries", type=int, default=0,
                        help="re-run a cell whose worker or node died, up to N times (default 0; recorded)")
    return parse(parser, argv)  # --help returns 0, bad input returns 2 after one line


def parse_sweep(items: list[str]) -> dict:
    sweep = {}
    for item in items:
        axis, sep, values = item.partition("=")
        if not sep or not values:
            raise UsageError(f"--sweep expects AXIS=V1,V2 (e.g. batch_size=32,128), got {item!r}")
        axis = axis.strip()
        if axis not in config_mod.sweep_axes():
            raise UsageError(f"unknown sweep axis {axis!r}; expected one of: {', '.join(config_mod.sweep_axes())}")
        if axis in sweep:  # the second would silently replace the first
            raise UsageError(f"--sweep {axis} is given twice; list every value once: --sweep {axis}=V1,V2,...")
        read = config_mod.axis_type(axis)
        try:
            sweep[axis] = [read(v.strip()) for v in values.split(",")]
        except ValueError:
            raise UsageError(f"--sweep {axis}: values must be {read.__name__} values, got {values!r}") from None
    return sweep


def build_config(args: argparse.Namespace) -> Config:
    """Layers, each overriding the one before: the preset (--experiment), the --config file, the flags."""
    overrides = {}
    if args.experiment:
        from bench import experiments
        overrides |= experiments.load(args.experiment)
    overrides |= config_mod.load_file(args.config) if args.config else {}
    overrides |= {key: getattr(args, key) for key in config_mod.cli_keys() if getattr(args, key) is not None}
    if args.sweep:
        overrides["sweep"] = parse_sweep(args.sweep)
    return config_mod.from_dict(overrides)


def prepare(args: argparse.Namespace) -> tuple[Config, Path, torch.device]:
    """Checks every input; writes nothing."""
    if args.retry_failed and not args.resume:
        raise UsageError("--retry-failed needs --resume DIR (the directory whose failed runs to run again)")
    if args.resume:
        flags = {key: config_mod.fields()[key].metadata["flag"] for key in config_mod.cli_keys()
                 if key not in RESUME_KEYS} | {"config": "--config", "experiment": "--experiment"}
        given = [flag for key, flag in flags.items() if getattr(args, key) is not None] + (["--sweep"] if args.sweep else [])
        if given:
            raise UsageError(f"--resume uses the saved config; drop {given[0]}")
        out_dir = Path(args.resume)
        env = preflight.saved_env(out_dir)
        if "config" not in env:
            raise UsageError(f"--resume {out_dir}: no {ENV_FILE} with a config; expected a directory written by `bench run`")
        saved = {k: v for k, v in env["config"].items() if k != "input_size"}
        config = config_mod.from_dict(saved)
        config = config.replace(**{key: getattr(args, key) for key in RESUME_KEYS if getattr(args, key) is not None})
        stray = [b for b in config.backends if b not in saved["backends"]]
        if stray:
            raise UsageError(f"--resume --backends: {stray[0]!r} is not in the saved plan ({', '.join(saved['backends'])})")
        preflight.check_resume(out_dir, config_mod.from_dict(saved))  # sound files, rows of this plan: before any run
        check_baseline(args.baseline, saved["backends"])
    else:
        config = build_config(args)
        out_dir = Path(args.out).resolve() if args.out else new_results_dir()
        preflight.check_fresh(out_dir)
        check_baseline(args.baseline, config.backends)
    check_writable(out_dir)
    device = resolve_device(config.device)
    check_config(config, device)
    from bench.data import root_problem
    if problem := root_problem(config.data_root):
        raise UsageError(problem)
    return config, out_dir, device


# Knobs `--resume` accepts: which of the saved plan's backends to run now, and the time limit.
RESUME_KEYS = ("backends", "timeout")


def write_env(out_dir: Path, config: Config, device: torch.device, experiment: str | None = None,
              warnings=()) -> None:
    """env.json: versions, hardware, the config in force, and the preset it started from (if any)."""
    env = storage.load_env(out_dir)
    allocator = worker_env() if config.isolate else {k: os.environ.get(k, "glibc default") for k in WORKER_ENV}
    now = envinfo.collect() | {"device": str(device), "config": config.to_dict(), "allocator_env": allocator}
    if experiment:
        now["experiment"] = experiment
    if warnings:  # e.g. more threads than cores: the figures carry the reason
        now["warnings"] = list(warnings)
    if env:  # a resume: keep the original provenance, and say what finished the run
        env.setdefault("resumed", []).append({k: now[k] for k in ("timestamp", "git_commit", "torch", "torch_threads",
                                                                  "warnings") if k in now})
    atomic.write_json(out_dir / ENV_FILE, env or now)


def cli(argv: list[str]) -> int:
    args = parse_args(argv)
    if isinstance(args, int):  # --help (0) or a bad flag (2, its line already printed)
        return args
    try:
        config, out_dir, device = prepare(args)
        warnings = preflight.check_resources(config, device, force=args.force)
        executor = executors.create(args.executor, env=worker_env(), ray_address=args.ray_address,
                                    timeout_s=config.timeout or None, connect_timeout_s=args.ray_connect_timeout,
                                    cell_cpus=args.cell_cpus, retries=args.retries)
    except (UsageError, ValueError) as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 2
    for line in warnings:
        print(f"warning: {line}", file=sys.stderr)
    if args.dry_run:
        print(plan_text(config, out_dir, device))
        return 0
    try:
        with executor:  # local: the worker server imports torch while the data loads; ray: join or start a cluster
            return run_with(executor, args, config, out_dir, device, warnings)
    except executors.ExecutorError as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 1


def run_with(executor, args: argparse.Namespace, config: Config, out_dir: Path, device: torch.device,
             warnings=()) -> int:
    from bench.data import DataError, load_mnist
    try:
        data = load_mnist(config.data_root, quiet=False)
    except DataError as error:  # nothing to train on: no directory is written
        print(f"error: data: {error}", file=sys.stderr)
        return 1
    try:
        held = lock(out_dir)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    with held:  # closing the file releases the lock
        try:  # again, now that no other run can write here: one may have finished while the data loaded
            preflight.recheck_locked(out_dir, resume=bool(args.resume))
        except UsageError as error:
            print(f"error: {one_line(error)}", file=sys.stderr)
            return 2
        try:
            write_env(out_dir, config, device, args.experiment, warnings)
            if not (args.out or args.resume):  # a directory we named: RESULTS_ROOT/latest follows it
                point_latest(out_dir)
            executors.record(out_dir, executor, device)
            if args.retry_failed:
                print(f"retrying {storage.drop_failed(out_dir, config.backends)} failed run(s)")
            print(f"results: {out_dir}  device: {device}  data: {data.source}  executor: {executor.name}"
                  + (f" on {executor.cluster}" if getattr(executor, "cluster", "") else ""))
            started = time.perf_counter()
            for dtype, peak in ensure_peak(out_dir, config, device).items():
                print(f"peak {dtype} GEMM on {device}: {peak['gflops']:,.1f} GFLOP/s"
                      + (f" ({peak['error']})" if "error" in peak else f" ({peak['shape']})"))
            execute(config, out_dir, device, data, executor=executor)
            print(f"done in {time.perf_counter() - started:.1f} s: {out_dir / RUNS_FILE}")
        except OSError as error:  # a full disk, a vanished mount: rows already written stay as they are
            finished = len(storage.load_runs(out_dir)) if (out_dir / RUNS_FILE).exists() else 0
            print(f"error: cannot write to {out_dir}: {error.strerror or error}; its {finished} finished run(s) are "
                  f"intact: free the space and finish with --resume {out_dir}", file=sys.stderr)
            return 1
        if args.report and not report_after_run(out_dir, args.baseline):
            return 1
    return exit_status(out_dir, args.allow_failures)


def report_after_run(out_dir: Path, baseline: str | None) -> bool:
    """--report: the runs are all written; a report that cannot be written says how to write it later."""
    from bench.analysis.report import write_report
    from bench.analysis.results import ResultsError
    try:
        print(f"report: {write_report(out_dir, baseline=baseline)}")
        return True
    except (OSError, ResultsError) as error:
        why = error.strerror or error if isinstance(error, OSError) else error
        print(f"error: cannot write the report into {out_dir}: {one_line(why)}; every run is written: "
              f"write it with `bench report {out_dir}`", file=sys.stderr)
        return False


def exit_status(out_dir: Path, allow_failures: bool) -> int:
    """0 when every run in the directory is ok or skipped; 1 when any failed (unless allowed), saying how many."""
    runs = storage.load_runs(out_dir) if (out_dir / RUNS_FILE).exists() else None
    failed = 0 if runs is None else int((runs["status"] == "failed").sum())
    if not failed:
        return 0
    line = f"{failed} of {len(runs)} run(s) failed (reasons in {out_dir / RUNS_FILE}"
    if allow_failures:
        print(f"{line}); exit 0 as --allow-failures asks", file=sys.stderr)
        return 0
    print(f"error: {line}; --resume {out_dir} --retry-failed runs them again, --allow-failures exits 0)",
          file=sys.stderr)
    return 1
