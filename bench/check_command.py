"""`bench check NAME`: is backend NAME correct against torch.nn.LSTM? A kernel author's first command.

    python -m bench check NAME [--plugin FILE.py|MODULE ...] [--device auto|cpu|cuda[:N]]

Builds the backend, copies weights from torch.nn.LSTM (nn.GRU for the GRU family) and runs every check of
impls.checks (the same checks the project's parity tests run): outputs, final states and every gradient
over a fixed set of odd shapes with every option the backend supports, in float64, float32 and bfloat16
(float16 on CUDA), a float64 gradcheck, state_dict round trips both ways, and determinism. Prints one
table row per check: the worst relative error against its tolerance, and where it was worst.
Exit 0 when every check passes, 1 when any fails (each named on stderr), 2 on bad input.
"""
from __future__ import annotations

import math
import sys
import time
import warnings

import torch

import impls
from bench import plugin_flags
from bench.analysis import render
from bench.cliargs import OneLineParser, parse
from bench.planning import PlanError, resolve_device
from impls import checks, plugins
from impls.registry import describe

HEADER = ["check", "cases", "worst error", "tolerance", "result", "worst at"]


def fmt_error(value: float) -> str:
    if value != value:
        return "nan"
    if math.isinf(value):
        return "inf"
    return "0" if value == 0 else f"{value:.2e}"


def table(outcomes) -> str:
    rows = [[o.check, str(o.cases), fmt_error(o.error), fmt_error(o.tolerance), "ok" if o.ok else "FAIL", o.where]
            for o in outcomes]
    return render.text_table(HEADER, rows)


def failure_line(outcome) -> str:
    return (f"FAILED {outcome.check}: error {fmt_error(outcome.error)} > tolerance {fmt_error(outcome.tolerance)} "
            f"({outcome.where})")


def cli(argv: list[str]) -> int:
    parser = OneLineParser(prog="bench check", description=__doc__.splitlines()[0])
    parser.add_argument("name", metavar="NAME", help="the backend to check (`bench list` names them)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] (default: auto)")
    plugin_flags.add_argument(parser)
    args = plugin_flags.loaded(parse(parser, argv), parser.prog)
    if isinstance(args, int):
        return args
    problem = None if args.name in impls.names() else plugins.unknown(args.name)
    try:
        device = resolve_device(args.device)
    except PlanError as error:
        problem = problem or f"--device: {error}"
    if not problem and not (available := impls.availability(args.name, device, purpose="test")).ok:
        problem = f"{args.name} cannot run on {device}: {available.reason}"
    if problem:
        print(f"error: {parser.prog}: {problem}", file=sys.stderr)
        return 2
    return run(args.name, str(device))


def run(name: str, device: str) -> int:
    backend = impls.spec(name)
    reference = "torch.nn.LSTM" if backend.family == "lstm" else "torch.nn.GRU"
    print(f"bench check {name} on {device}: {backend.family} family, against {reference} ({plugins.origin(name)}; "
          f"supports: {describe(backend.supports)})", flush=True)
    threads = torch.get_num_threads()
    if torch.device(device).type == "cpu":
        torch.set_num_threads(1)  # tiny shapes: more threads only spin against each other (10x slower measured)
    started = time.perf_counter()
    try:
        with warnings.catch_warnings():  # nn.LSTM's note that oneDNN lacks proj_size: about the reference, not NAME
            warnings.filterwarnings("ignore", message="LSTM with projections is not supported with oneDNN")
            outcomes = checks.run_all(name, device, progress=lambda line: print(f"  {line} ...", flush=True))
    finally:
        torch.set_num_threads(threads)
    print(table(outcomes))
    failed = [o for o in outcomes if not o.ok]
    took = f"{time.perf_counter() - started:.1f} s"
    if not failed:
        print(f"all {len(outcomes)} checks passed ({took})")
        return 0
    for outcome in failed:
        print(failure_line(outcome), file=sys.stderr)
    print(f"error: bench check {name}: {len(failed)} of {len(outcomes)} checks failed: "
          f"{', '.join(o.check for o in failed)} ({took})", file=sys.stderr)
    return 1
