"""Micro-benchmarks (pytest-benchmark, tests/benchmarks/): when they time, and comparing saved runs.

    python -m bench bench-compare --storage results/ci --baseline 0001 [--columns min,median] [--group-by group]

finds the newest saved run under --storage and the baseline run (an id such as 0001, a file-name
prefix such as 0001_abc, or a path to a saved JSON file) and prints pytest-benchmark's comparison
table of the two (its `compare` command). Bad input exits 2 with one line on stderr.

`timing_requested` is the rule tests/benchmarks/conftest.py applies: the benchmarks time only when
asked to (--benchmark-only, --benchmark-enable, or a request to save/export results); in a plain
`pytest` run they call each benchmarked function once, as a smoke test of every backend.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.cliargs import OneLineParser, parse

DEFAULT_COLUMNS = "min,median,iqr,ops,rounds"
RUN_FILE = re.compile(r"^(\d{4})_.*\.json$")   # pytest-benchmark saves runs as NNNN_<name>.json

# pytest-benchmark options (config.getoption names) that ask for real timings.
TIMING_OPTIONS = ("benchmark_only", "benchmark_enable", "benchmark_save", "benchmark_autosave",
                  "benchmark_json", "benchmark_compare")


class MicrobenchError(Exception):
    """Bad input: reported as one line, exit code 2."""


def timing_requested(getoption: Callable[[str], Any]) -> bool:
    """Whether a pytest run asked for timings (see the module docstring); getoption is config.getoption.

    An explicit --benchmark-disable always means smoke mode, even with a request to save.
    """
    if getoption("benchmark_disable") and not getoption("benchmark_enable"):
        return False
    return any(getoption(name) for name in TIMING_OPTIONS)


@dataclass(frozen=True)
class SavedRun:
    path: Path
    number: int          # the NNNN of NNNN_*.json, numbered per machine folder by pytest-benchmark
    when: datetime       # the run's own "datetime" field; the file's mtime when that is missing

    @property
    def label(self) -> str:
        return f"{self.path.parent.name}/{self.path.name}"


def _storage_path(storage: str | Path) -> Path:
    text = str(storage)
    return Path(text[len("file://"):] if text.startswith("file://") else text)


def _read_run(path: Path) -> SavedRun | None:
    """The saved run in `path`, or None when it is not a pytest-benchmark JSON file."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        return None
    when = None
    if isinstance(data.get("datetime"), str):
        try:
            when = datetime.fromisoformat(data["datetime"])
        except ValueError:
            when = None
    if when is None:
        when = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    elif when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    match = RUN_FILE.match(path.name)
    return SavedRun(path, int(match.group(1)) if match else 0, when)


def saved_runs(storage: str | Path) -> list[SavedRun]:
    """Every saved run (NNNN_*.json with a "benchmarks" list) under `storage`, oldest first."""
    root = _storage_path(storage)
    if not root.is_dir():
        raise MicrobenchError(f"benchmark storage {root} does not exist; run `make bench-ci` first")
    runs = [run for path in root.rglob("*.json") if RUN_FILE.match(path.name)
            if (run := _read_run(path)) is not None]
    return sorted(runs, key=lambda run: (run.when, run.number, str(run.path)))


def newest_run(storage: str | Path) -> SavedRun:
    runs = saved_runs(storage)
    if not runs:
        raise MicrobenchError(f"no saved benchmark runs (NNNN_*.json) under {_storage_path(storage)}; "
                              "run `make bench-ci` first")
    return runs[-1]


def find_run(storage: str | Path, baseline: str, *, prefer_dir: Path | None = None) -> SavedRun:
    """The run `baseline` names: a path to a saved JSON file, a run number (0001, 1) or a file-name prefix.

    When an id matches runs in several machine folders, the one in `prefer_dir` (the newest run's
    folder) wins; when that still leaves more than one, the id is ambiguous.
    """
    if not baseline.strip():
        raise MicrobenchError("empty --baseline; give a saved run's id (e.g. 0001) or a path to its JSON")
    candidate = Path(baseline)
    if candidate.suffix == ".json" or candidate.is_file():
        if not candidate.is_file():
            raise MicrobenchError(f"baseline file {candidate} does not exist")
        run = _read_run(candidate)
        if run is None:
            raise MicrobenchError(f"baseline file {candidate} is not a saved pytest-benchmark run")
        return run
    runs = saved_runs(storage)
    matches = [run for run in runs
               if run.path.name.startswith(baseline) or (baseline.isdigit() and run.number == int(baseline))]
    if len(matches) > 1 and prefer_dir is not None:
        preferred = [run for run in matches if run.path.parent.resolve() == prefer_dir.resolve()]
        matches = preferred or matches
    if not matches:
        known = ", ".join(run.path.name for run in runs[-5:]) or "none"
        raise MicrobenchError(f"baseline {baseline!r} matches no saved run under {_storage_path(storage)} "
                              f"(newest saved: {known})")
    if len(matches) > 1:
        raise MicrobenchError(f"baseline {baseline!r} is ambiguous: it matches "
                              f"{', '.join(run.label for run in matches)}; pass a path instead")
    return matches[0]


def pick_runs(storage: str | Path, baseline: str) -> tuple[SavedRun, SavedRun]:
    """(baseline, newest) for `bench-compare`; the baseline must not be the newest run itself."""
    newest = newest_run(storage)
    base = find_run(storage, baseline, prefer_dir=newest.path.parent)
    if base.path.resolve() == newest.path.resolve():
        raise MicrobenchError(f"baseline {baseline!r} is the newest saved run ({newest.label}); "
                              "nothing newer to compare it with")
    return base, newest


def compare_command(storage: str | Path, runs: list[SavedRun], columns: str | None = None,
                    group_by: str | None = None) -> list[str]:
    """pytest-benchmark's `compare` on exactly these files (python -m pytest_benchmark compare ...)."""
    command = [sys.executable, "-m", "pytest_benchmark", "--storage", f"file://{_storage_path(storage)}",
               "compare", "--columns", columns or DEFAULT_COLUMNS]
    if group_by:
        command += ["--group-by", group_by]
    return command + [str(run.path) for run in runs]


def cli(argv: list[str]) -> int:
    parser = OneLineParser(prog="bench bench-compare",
                                     description="Compare the newest saved pytest-benchmark run with a baseline.")
    parser.add_argument("--storage", required=True, help="pytest-benchmark storage folder (e.g. results/ci)")
    parser.add_argument("--baseline", required=True, help="saved run id (0001), file-name prefix, or JSON path")
    parser.add_argument("--columns", default=None, help=f"table columns (default: {DEFAULT_COLUMNS})")
    parser.add_argument("--group-by", default=None,
                        help="pytest-benchmark grouping (default: group, i.e. one table per shape and pass)")
    args = parse(parser, argv)
    if isinstance(args, int):
        return args
    try:
        base, newest = pick_runs(args.storage, args.baseline)
    except MicrobenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"baseline: {base.label} ({base.when:%Y-%m-%d %H:%M:%S %Z})")
    print(f"newest:   {newest.label} ({newest.when:%Y-%m-%d %H:%M:%S %Z})", flush=True)
    return subprocess.run(compare_command(args.storage, [base, newest], args.columns, args.group_by)).returncode
