"""`bench data`: fetch MNIST into ROOT/MNIST/raw, verify it, and say where it came from."""
from __future__ import annotations

import sys

from bench.cliargs import OneLineParser, parse
from bench.data import idx
from bench.data.fetch import ENV_ROOT, ensure_mnist, resolve_root
from bench.data.sources import DataError


def cli(argv: list[str]) -> int:
    parser = OneLineParser(prog="bench data", description="Fetch MNIST into ROOT/MNIST/raw and verify it.")
    parser.add_argument("--root", help=f"data root (default: ${ENV_ROOT}, else ./data)")
    args = parse(parser, argv)
    if isinstance(args, int):
        return args
    if args.root is not None and not args.root.strip():
        print("error: bench data: --root expects a directory path, got an empty string", file=sys.stderr)
        return 2
    root = resolve_root(args.root)
    if root.exists() and not root.is_dir():
        print(f"error: bench data: --root expects a directory, {root} is a file", file=sys.stderr)
        return 2
    print(f"MNIST root: {root}")
    try:
        root, source = ensure_mnist(root, log=lambda message: print(f"  {message}", flush=True))
    except (DataError, OSError) as error:
        print(f"error: bench data: {error}", file=sys.stderr)
        return 1
    print(f"source: {source}")
    raw = idx.raw_dir(root)
    for name, (size, sha) in idx.FILES.items():
        why = idx.check_file(raw / name, name)
        print(f"  {name:<24} {size:>9} bytes  sha256 {sha[:16]}...  {'ok' if why is None else why}")
    return 0
