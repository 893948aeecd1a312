"""`bench run`: the command line in front of the runner.

    python -m bench run [--experiment NAME] [--config FILE] [--backends cudnn,loop] [--epochs N] ...
                        [--sweep AXIS=V1,V2 ...] [--out DIR | --resume DIR] [--report]

Every input is checked before anything is written, so bad input leaves no directory behind (exit 2, one
line): the layers below (config, planning, rundir, data, executors) raise their own ValueErrors, and this
module turns each into that line. Exit 1 when runs failed (unless --allow-failures) or nothing could be
written or loaded.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import impls
from bench import config as config_mod
from bench import contention, executors, isolate, peakcache, plugin_flags, preflight, runner, walltime
from bench.brief import one_line
from bench.cliargs import OneLineParser, UsageError, parse
from bench.config import Config
from bench.constants import BASELINE
from bench.planning import Device, check_config, plan_text, resolve_device
from bench.rundir import ResultsDirError, check_writable, lock, new_results_dir, point_latest
from bench.schema import ENV_FILE, RUNS_FILE

# Knobs `--resume` accepts: which of the saved plan's backends to run now, and the time limit.
RESUME_KEYS = ("backends", "timeout")


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
    where.add_argument("--out", help="results directory (default: ./results/runs/<time>-<host>/ under the current "
                                     "directory)")
    where.add_argument("--resume", help="finish an interrupted results directory, with its saved config")
    parser.add_argument("--retry-failed", action="store_true",
                        help="with --resume: run the failed runs again (their rows are replaced)")
    parser.add_argument("--allow-failures", action="store_true",
                        help="exit 0 even when runs failed (default: exit 1 and say how many)")
    parser.add_argument("--report", action="store_true", help="write report.md/html and plots when done")
    parser.add_argument("--baseline", help=f"the report's ratio column: value / BACKEND's (default {BASELINE})")
    parser.add_argument("--force", action="store_true",
                        help="run a plan whose largest run is estimated not to fit the device's memory")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the plan (backend x seed x sweep point) and exit; writes and downloads nothing")
    parser.add_argument("--executor", default="local", help="where cells run: local (default) | ray")
    parser.add_argument("--ray-address", dest="ray_address", help="Ray cluster to join (default: $RAY_ADDRESS, "
                        "else a private local cluster started for the run)")
    parser.add_argument("--ray-connect-timeout", type=float, default=60.0, metavar="SECONDS",
                        help="ray: give up joining or starting a cluster after this long (default 60)")
    parser.add_argument("--cell-cpus", type=int, dest="cell_cpus",
                        help="ray, CPU device: CPUs per cell (default: all of a node's, so cells never share one)")
    parser.add_argument("--retries", type=int, default=0,
                        help="re-run a cell whose worker or node died, up to N times (default 0; recorded)")
    parser.add_argument("--quiet-machine", nargs="?", type=float, const=contention.QUIET_LIMIT_S, metavar="SECONDS",
                        dest="quiet_machine", help="before each run, wait until other processes use under "
                        f"{contention.QUIET_OTHERS:g} cores (and none holds the GPU), up to SECONDS "
                        f"(default {contention.QUIET_LIMIT_S:g}); each row records the wait")
    parser.add_argument("--remeasure-peak", action="store_true", dest="remeasure_peak",
                        help="measure the GEMM peak again instead of reusing this machine's cached figure")
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
    overrides: dict[str, Any] = {}
    if args.experiment:
        from bench import experiments
        overrides |= experiments.load(args.experiment)
    overrides |= config_mod.load_file(args.config) if args.config else {}
    overrides |= {key: getattr(args, key) for key in config_mod.cli_keys() if getattr(args, key) is not None}
    overrides["plugins"] = plugin_flags.load(overrides.get("plugins", ()))  # before the default plan is made
    if args.sweep:
        overrides["sweep"] = parse_sweep(args.sweep)
    return config_mod.from_dict(overrides)


def resumed_config(args: argparse.Namespace, saved: dict, out_dir: Path) -> Config:
    """The config saved in env.json, with the few knobs a resume may change (RESUME_KEYS)."""
    flags = {key: config_mod.fields()[key].metadata["flag"] for key in config_mod.cli_keys()
             if key not in RESUME_KEYS} | {"config": "--config", "experiment": "--experiment"}
    given = ([flag for key, flag in flags.items() if getattr(args, key) is not None]
             + (["--sweep"] if args.sweep else []))
    if given:
        raise UsageError(f"--resume uses the saved config; drop {given[0]}")
    if "config" not in saved:
        raise UsageError(f"--resume {out_dir}: no {ENV_FILE} with a config; "
                         "expected a directory written by `bench run`")
    kept = {k: v for k, v in saved["config"].items() if k not in config_mod.DERIVED}
    plugin_flags.load(kept.get("plugins", ()))  # the plan may name plugin backends
    config = config_mod.from_dict(kept)
    config = config.replace(**{key: getattr(args, key) for key in RESUME_KEYS if getattr(args, key) is not None})
    stray = [b for b in config.backends if b not in kept["backends"]]
    if stray:
        raise UsageError(f"--resume --backends: {stray[0]!r} is not in the saved plan ({', '.join(kept['backends'])})")
    return config


def prepare(args: argparse.Namespace) -> tuple[Config, Path, Device, dict]:
    """Checks every input; writes nothing. Returns the config, the directory, the device and what the
    directory's env.json holds ({} when none): the one read of env.json before the run starts."""
    if args.retry_failed and not args.resume:
        raise UsageError("--retry-failed needs --resume DIR (the directory whose failed runs to run again)")
    quiet = args.quiet_machine
    if quiet is not None and (not 0 < quiet < float("inf") or args.executor != "local"):
        raise UsageError("--quiet-machine expects a positive number of seconds and the local executor (it waits "
                         f"on this machine before each run), got {quiet:g} with --executor {args.executor}")
    if args.resume:
        out_dir = Path(args.resume)
    else:
        out_dir = Path(args.out).resolve() if args.out else new_results_dir()
    if args.resume:
        saved = preflight.saved_env(out_dir)
        config = resumed_config(args, saved, out_dir)
        planned = config_mod.from_dict({k: v for k, v in saved["config"].items() if k not in config_mod.DERIVED})
        preflight.check_resume(out_dir, planned)  # sound files, rows of this plan: before any run
        preflight.check_baseline(args.baseline, planned.backends)
    else:
        config = build_config(args)
        preflight.check_fresh(out_dir)  # no env.json there, so nothing saved to read
        saved = {}
        preflight.check_baseline(args.baseline, config.backends)
    check_writable(out_dir)
    device = resolve_device(config.device)
    check_config(config, device)
    from bench.data import root_problem
    if problem := root_problem(config.data_root):
        raise UsageError(problem)
    return config, out_dir, device, saved


def cli(argv: list[str]) -> int:
    started = walltime.invocation_started()
    args = parse_args(argv)
    if isinstance(args, int):  # --help (0) or a bad flag (2, its line already printed)
        return args
    try:  # UsageError, and the ValueErrors of config, planning, rundir and executors: all bad input
        config, out_dir, device, saved = prepare(args)
        warnings = preflight.check_resources(config, device, force=args.force)
        executor = executors.create(args.executor, env=runner.worker_env(), ray_address=args.ray_address,
                                    timeout_s=config.timeout or None, connect_timeout_s=args.ray_connect_timeout,
                                    cell_cpus=args.cell_cpus, retries=args.retries)
    except ValueError as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 2
    for line in warnings:
        print(f"warning: {line}", file=sys.stderr)
    if args.dry_run:
        print(plan_text(config, out_dir, device))
        return 0
    isolate.set_preload(runner.worker_preload(config))
    try:
        with executor:  # local: the worker server imports torch while the data loads; ray: join or start a cluster
            return run_with(executor, args, config, out_dir, device, saved, warnings, walltime.Clock(started))
    except executors.ExecutorError as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 1


def run_with(executor, args: argparse.Namespace, config: Config, out_dir: Path, device: Device,
             saved: dict, warnings: list[str], clock: walltime.Clock | None = None) -> int:
    from bench.data import DataError, for_cells
    # Local isolated runs: the files checked here without torch (the worker server is importing it meanwhile),
    # read by each worker. Ray and in-process runs: the tensors, loaded here.
    workers_read = isinstance(executor, executors.LocalExecutor) and executor.workers_read(config)
    try:
        data = for_cells(config.data_root, quiet=False, workers_read=workers_read)
    except DataError as error:  # nothing to train on: no directory is written
        print(f"error: data: {error}", file=sys.stderr)
        return 1
    try:
        held = lock(out_dir)
    except ResultsDirError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    with held:  # closing the file releases the lock
        try:  # again, now that no other run can write here: one may have finished while the data loaded
            preflight.recheck_locked(out_dir, resume=bool(args.resume))
        except preflight.PreflightError as error:
            print(f"error: {one_line(error)}", file=sys.stderr)
            return 2
        try:
            runner.start_env(out_dir, saved, config, device, executor, experiment=args.experiment, warnings=warnings)
            if not (args.out or args.resume):  # a directory we named: RESULTS_ROOT/latest follows it
                point_latest(out_dir)
            if args.retry_failed:
                from bench import storage  # pandas: not before the worker server starts
                print(f"retrying {storage.drop_failed(out_dir, config.backends)} failed run(s)")
            print(f"results: {out_dir}  device: {device}  data: {data.source}  executor: {executor.name}"
                  + (f" on {executor.cluster}" if getattr(executor, "cluster", "") else ""))
            run_cells(executor, args, config, out_dir, device, data, clock or walltime.Clock())
        except OSError as error:  # a full disk, a vanished mount: rows already written stay as they are
            from bench import storage
            finished = len(storage.load_runs(out_dir)) if (out_dir / RUNS_FILE).exists() else 0
            print(f"error: cannot write to {out_dir}: {error.strerror or error}; its {finished} finished run(s) are "
                  f"intact: free the space and finish with --resume {out_dir}", file=sys.stderr)
            return 1
        if args.report and not report_after_run(out_dir, args.baseline):
            return 1
    return exit_status(out_dir, args.allow_failures)


def run_cells(executor, args: argparse.Namespace, config: Config, out_dir: Path, device: Device, data,
              clock: walltime.Clock) -> None:
    """The cells, with the GEMM peaks looked up before them and, where this machine has none cached, measured
    after them (bench.peakcache: the probe is not on the first cell's path), then where the invocation's wall
    time went (bench.walltime, into env.json and one line). The report, if asked, comes after and is not counted."""
    handed: dict[str, dict] = {}
    facts = executors.torch_facts(executor, config)  # env.json's: asked of a worker once, before
    peaks = peakcache.before_cells(out_dir, config, device, args.remeasure_peak, facts=facts)
    clock.mark("cells_start")
    rows = runner.execute(config, out_dir, device, data, peaks=peaks, executor=executor,
                          quiet_limit_s=args.quiet_machine, handed=handed)
    clock.mark("cells_end")
    print(f"done in {clock.marks['cells_end'] - clock.marks['cells_start']:.1f} s: {out_dir / RUNS_FILE}")
    peakcache.after_cells(out_dir, config, device, facts=facts, call=executors.torch_side(executor, config))
    clock.mark("end")
    wall = walltime.summary(clock.marks, handed, rows)
    walltime.record(out_dir, wall, args.quiet_machine, handed)
    print(walltime.line(wall))


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
    from bench import storage
    if not (out_dir / RUNS_FILE).exists():
        return 0
    runs = storage.statuses(out_dir)
    failed = runs.count("failed")
    if not failed:
        return 0
    line = f"{failed} of {len(runs)} run(s) failed (reasons in {out_dir / RUNS_FILE}"
    if allow_failures:
        print(f"{line}); exit 0 as --allow-failures asks", file=sys.stderr)
        return 0
    print(f"error: {line}; --resume {out_dir} --retry-failed runs them again, --allow-failures exits 0)",
          file=sys.stderr)
    return 1
