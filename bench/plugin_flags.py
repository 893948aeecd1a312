"""`--plugin` on the commands that name backends (list, run, check, gpu-check): load plugins, one line on failure.

`bench run` takes its `--plugin` from the config table (the `plugins` knob, so a config file and a resume
carry them); the other commands add the same flag with add_argument. Loading is impls.plugins.load:
the given files and modules, then every installed `lstm_bench.backends` entry point.
"""
from __future__ import annotations

import argparse
import sys

from impls import plugins

HELP = ("load plugin backends from a .py file or an importable module defining BACKENDS (repeatable); installed "
        "`lstm_bench.backends` entry points load without it")


def add_argument(parser) -> None:
    parser.add_argument("--plugin", action="append", default=[], metavar="FILE.py|MODULE", help=HELP)


def load(specs) -> tuple[str, ...]:
    """Loads `specs` (a list, or a comma-separated string from a config file) and the installed entry points;
    returns the specs normalised (files as absolute paths: what config.plugins saves). Bad input is a
    PluginError (a ValueError, one line); an installed entry point that fails is a warning line on stderr."""
    if isinstance(specs, str):
        specs = [s for s in specs.split(",") if s.strip()]
    if not isinstance(specs, (list, tuple)):
        raise plugins.PluginError(f"config: plugins must be a list of .py files or module names, got {specs!r}")
    normalised = tuple(plugins.normalise(spec) for spec in specs)
    plugins.load(normalised)
    for line in plugins.warnings():
        print(line, file=sys.stderr)
    return normalised


def loaded(args: argparse.Namespace | int, prog: str) -> argparse.Namespace | int:
    """A command's parse result (bench.cliargs.parse) with its --plugin specs loaded: an exit code passes through,
    a plugin that cannot load is 2 after one error line, else the namespace."""
    if isinstance(args, int):
        return args
    try:
        load(args.plugin)
    except plugins.PluginError as error:
        print(f"error: {prog}: {error}", file=sys.stderr)
        return 2
    return args
