"""`python -m bench doctor DIR [--dry-run] [--drop-bad-lines]`: what is wrong with a results directory, and
the repairs that lose nothing.

Lists every problem bench.validate finds (the file, the line, what), then repairs what can be repaired
without losing a row, each file after its original is saved beside it as NAME.orig-<time>:

    a torn last line      cut (a run killed mid-write: the row was never complete, readers skip it anyway)
    an identical row      the repeat dropped (the same run counted twice moves means and seed counts)
    a blank line          dropped
    an empty curves.csv or steps.csv    its header written (there is nothing in it to lose)

The rest needs a person: a short, long or garbled row, a row with another row's key and other values, an
unknown column, an empty runs.csv, rows outside env.json's plan. --drop-bad-lines also drops damaged rows
(the original still kept beside it). Exit 0: the directory is sound; 1: problems remain; 2: bad input.
"""
from __future__ import annotations

import csv
import shutil
import sys
from datetime import datetime
from pathlib import Path

from bench import validate
from bench.atomic import atomic_write_text
from bench.brief import one_line
from bench.cliargs import OneLineParser, UsageError, parse
from bench.rundir import ResultsDirError
from bench.schema import ENV_FILE

SHOWN = 40  # problems printed one per line; the rest are counted


def cli(argv: list[str]) -> int:
    parser = OneLineParser(prog="bench doctor", description="Check a results directory; repair what loses nothing.")
    parser.add_argument("directory", help="a results directory written by `bench run`")
    parser.add_argument("--dry-run", action="store_true", help="list the problems; change nothing")
    parser.add_argument("--drop-bad-lines", action="store_true",
                        help="also drop damaged rows (short, long, garbled, a second row of one run)")
    args = parse(parser, argv)
    if isinstance(args, int):
        return args
    directory = Path(args.directory)
    if not directory.is_dir():
        print(f"error: bench doctor: {directory}: no such directory", file=sys.stderr)
        return 2
    try:
        return examine(directory, repair=not args.dry_run, drop_bad=args.drop_bad_lines)
    except (UsageError, ResultsDirError) as error:  # a run holds the directory's lock
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 2


def examine(directory: Path, repair: bool = True, drop_bad: bool = False) -> int:
    problems = find(directory)
    if not problems:
        print(f"{directory}: no problems found")
        return 0
    show(problems)
    if repair:
        from bench.rundir import lock
        with lock(directory):  # not while a run appends: its torn last line is a row being written
            problems = find(directory)
            done = list(repairs(problems, drop_bad))
            for path, dropped, backup in done:
                print(f"repaired {path}: {dropped}; the original is kept as {backup.name}")
            problems = find(directory)
        if done and problems:
            print("after the repairs:")
            show(problems)
    remaining = [p for p in problems if p.severity != validate.NOTE]
    if not remaining:
        print(f"{directory}: sound" + (" (notes above need nothing)" if problems else ""))
        return 0
    fixable = sum(p.fix is not None for p in remaining)
    print(f"{len(remaining)} problem(s) remain" + (f", {fixable} of them repaired by `bench doctor {directory}`"
                                                     if fixable and not repair else "; they need a person"))
    return 1


def find(directory: Path) -> list[validate.Problem]:
    """validate's problems, and rows whose run_id the saved plan would not give (torch side: imported only
    when env.json holds a plan, and its failure to import is no reason to hide the rest)."""
    problems = validate.check(directory)
    if any(p.severity == validate.DAMAGE for p in problems):
        return problems
    try:
        from bench import config, preflight, storage
        saved = storage.load_env(directory).get("config")
        if isinstance(saved, dict):
            plan = config.from_dict({k: v for k, v in saved.items() if k not in config.DERIVED})
            problems += preflight.run_id_problems(directory, plan)
    except (ImportError, ValueError):
        pass
    return problems


def show(problems: list[validate.Problem]) -> None:
    for problem in problems[:SHOWN]:
        action = f" [repair: {problem.fix}]" if problem.fix else ""
        print(f"{problem.severity}: {one_line(problem)}{action}")
    if len(problems) > SHOWN:
        print(f"... and {len(problems) - SHOWN} more")


def repairs(problems: list[validate.Problem], drop_bad: bool):
    """Rewrites each file that has something to repair; yields (path, what was done, backup path)."""
    by_file: dict[Path, list[validate.Problem]] = {}
    for problem in problems:
        if problem.path.name == ENV_FILE:
            continue
        if problem.fix or (drop_bad and problem.severity == validate.DAMAGE and (problem.line or 0) > 1):
            by_file.setdefault(problem.path, []).append(problem)
    for path, chosen in by_file.items():
        text = repaired_text(path, chosen)
        backup = path.with_name(f"{path.name}.orig-{datetime.now().strftime('%Y%m%d-%H%M%S-%f')}")
        shutil.copy2(path, backup)
        atomic_write_text(path, text)
        yield path, describe(chosen), backup


def repaired_text(path: Path, chosen: list[validate.Problem]) -> str:
    text = path.read_bytes().decode("utf-8")
    if any(p.fix == validate.HEADER for p in chosen):
        table = next(t for t in validate.tables() if t.name == path.name)
        return ",".join(table.columns) + "\n"
    complete = text[:text.rfind("\n") + 1]  # a torn last line goes whether chosen or not: it is no row
    drop = {p.line for p in chosen if p.line}
    kept = []
    lines = validate.lines_of(complete)
    spans = []
    try:
        for start, end, _ in validate.records(complete):
            spans.append((start, end))
    except csv.Error:  # an unparseable record: it and everything after it stay as they are
        pass
    covered = 0
    for start, end in spans:
        if start not in drop:
            kept += lines[start - 1:end]
        covered = end
    kept += lines[covered:]
    return "".join(kept)


def describe(chosen: list[validate.Problem]) -> str:
    counts: dict[str, int] = {}
    for problem in chosen:
        counts[problem.fix or "drop damaged row"] = counts.get(problem.fix or "drop damaged row", 0) + 1
    return ", ".join(f"{what} x{count}" if count > 1 else what for what, count in counts.items())
