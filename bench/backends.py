"""`bench list`: every registered backend (built in or a plugin, and where it came from), whether it can
run here, and why not.

    python -m bench list [--device auto|cpu|cuda[:N]] [--plugin FILE.py|MODULE ...] [--json]
    python -m bench list --experiments [--json]     the named experiment presets, one line each
"""
from __future__ import annotations

import json
import sys

import impls
from bench import plugin_flags
from bench.cliargs import OneLineParser, parse
from bench.planning import PlanError, resolve_device
from impls import plugins


def table(device) -> list[dict]:
    """One dict per registered backend, in registry order."""
    rows = []
    for name in impls.names():
        backend, available = impls.spec(name), impls.availability(name, device)
        rows.append({"name": name, "family": backend.family, "needs": backend.needs, "runs_here": available.ok,
                     "reason": available.reason, "summary": backend.summary, "origin": plugins.origin(name)})
    for name, reason in plugins.BROKEN.items():  # an installed plugin that failed to load: listed, with why
        rows.append({"name": name, "family": "?", "needs": "?", "runs_here": False, "reason": reason,
                     "summary": "plugin that failed to load", "origin": "plugin: entry point (failed to load)"})
    return rows


def to_text(rows: list[dict], device) -> str:
    width = max(len(row["name"]) for row in rows)
    lines = [f"backends on {device} ({sum(r['runs_here'] for r in rows)} of {len(rows)} can run here):"]
    for row in rows:
        state = "yes" if row["runs_here"] else "NO "
        lines.append(f"  {row['name']:<{width}}  {state}  {row['summary']}")
        lines.append(f"  {'':<{width}}       {'runs as' if row['runs_here'] else 'why not'}: {row['reason']}")
        if row["origin"] != "built-in":
            lines.append(f"  {'':<{width}}       from: {row['origin'].removeprefix('plugin: ')}")
    return "\n".join(lines)


def list_experiments(as_json: bool) -> int:
    from bench import experiments
    try:
        rows = experiments.listing()
    except experiments.ExperimentError as error:
        print(f"error: bench list: {error}", file=sys.stderr)
        return 2
    if as_json:
        print(json.dumps([{"name": n, "description": d} for n, d in rows], indent=2))
    else:
        width = max(len(n) for n, _ in rows)
        print("\n".join(["experiments (bench run --experiment NAME):", *(f"  {n:<{width}}  {d}" for n, d in rows)]))
    return 0


def cli(argv: list[str]) -> int:
    parser = OneLineParser(prog="bench list", description="List every backend and whether it can run here.")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] (default: auto)")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of text")
    parser.add_argument("--experiments", action="store_true",
                        help="list the named experiments (`bench run --experiment NAME`) instead of the backends")
    plugin_flags.add_argument(parser)
    args = plugin_flags.loaded(parse(parser, argv), parser.prog)
    if isinstance(args, int):
        return args
    if args.experiments:
        return list_experiments(args.json)
    try:  # a device this machine lacks is still a fair question: every backend then says why not
        device = resolve_device(args.device, must_exist=False)
    except PlanError as error:
        print(f"error: bench list: --device: {error}", file=sys.stderr)
        return 2
    rows = table(device)
    print(json.dumps({"device": str(device), "backends": rows}, indent=2) if args.json else to_text(rows, device))
    return 0
