"""`bench list`: every registered backend, whether it can run here, and why not.

    python -m bench list [--device auto|cpu|cuda[:N]] [--json]
"""
from __future__ import annotations

import json
import sys

import torch

import impls
from bench.cliargs import OneLineParser, parse


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def table(device) -> list[dict]:
    """One dict per registered backend, in registry order."""
    rows = []
    for name in impls.names():
        backend, available = impls.spec(name), impls.availability(name, device)
        rows.append({"name": name, "family": backend.family, "needs": backend.needs, "runs_here": available.ok,
                     "reason": available.reason, "summary": backend.summary})
    return rows


def to_text(rows: list[dict], device) -> str:
    width = max(len(row["name"]) for row in rows)
    lines = [f"backends on {device} ({sum(r['runs_here'] for r in rows)} of {len(rows)} can run here):"]
    for row in rows:
        state = "yes" if row["runs_here"] else "NO "
        lines.append(f"  {row['name']:<{width}}  {state}  {row['summary']}")
        lines.append(f"  {'':<{width}}       {'runs as' if row['runs_here'] else 'why not'}: {row['reason']}")
    return "\n".join(lines)


def cli(argv: list[str]) -> int:
    parser = OneLineParser(prog="bench list", description="List every backend and whether it can run here.")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] (default: auto)")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of text")
    args = parse(parser, argv)
    if isinstance(args, int):
        return args
    try:  # a device this machine lacks is still a fair question: every backend then says why not
        device = torch.device(default_device() if args.device == "auto" else args.device)
    except RuntimeError as error:
        print(f"error: bench list: --device: {error}", file=sys.stderr)
        return 2
    rows = table(device)
    print(json.dumps({"device": str(device), "backends": rows}, indent=2) if args.json else to_text(rows, device))
    return 0
