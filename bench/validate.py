"""Checks of a results directory's files before anything reads or extends them.

    problems = check(DIR)       # every problem in runs.csv, curves.csv, steps.csv and env.json
    ensure_sound(DIR)           # DamagedResults (one line: file, line, what) on the first damage

`report`, `compare` and `bench run --resume` call these before they read a row or train a run, so a
damaged file is refused in one line naming the file and the line, never read as data (a garbage line as a
run of backend "line", a duplicated row as an extra seed) and never met half-way through a resume.
`bench doctor DIR` (bench.doctor) lists the same problems and repairs those it can without losing data.

A problem's severity says who must stop for it:
    damage   the file cannot be read as results: everyone refuses
    plan     the rows do not fit the plan saved in env.json: --resume refuses (it would run the saved plan
             into a directory holding another), report and compare say so and go on
    note     normal after a kill (a torn last line, rows of a run that never finished): readers skip it
Torch-free: the analysis side imports this.
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

from bench import config, metrics
from bench.brief import brief, cut
from bench.schema import (
    CURVE_COLUMNS,
    CURVES_FILE,
    ENV_FILE,
    REQUIRED_RUN_COLUMNS,
    RETIRED_RUN_COLUMNS,
    RUNS_FILE,
    STEP_COLUMNS,
    STEPS_FILE,
    run_columns,
)

DAMAGE, PLAN, NOTE = "damage", "plan", "note"
# What doctor may do about a problem without losing anything: cut the torn last line, keep the first of
# identical rows, drop a blank line, write the header into an empty curves/steps file.
TORN, DUPLICATE, BLANK, HEADER = "drop torn line", "drop duplicate", "drop blank line", "write header"
STATUSES = ("ok", "skipped", "failed")
MANY = 10_000  # problems listed per file at most: a file of garbage needs one line, not a million


@dataclass(frozen=True)
class Problem:
    path: Path
    line: int | None      # 1-based line in the file; None: the file as a whole
    what: str
    severity: str = DAMAGE
    fix: str | None = None  # what doctor does about it without losing data; None: a person must decide

    def __str__(self) -> str:
        return f"{self.path}{f' line {self.line}' if self.line else ''}: {self.what}"


class DamagedResults(ValueError):
    """A results file that cannot be read as results; the message is one line naming file and line."""


@dataclass(frozen=True)
class Table:
    name: str
    columns: list[str]         # every column this version writes
    required: list[str]        # an older file may lack the others, never these
    key: tuple[str, ...]       # what identifies a row: two rows with one key are one run counted twice
    kinds: dict[str, str]      # column -> int | number | status | nonempty (others: any text)
    retired: tuple[str, ...] = ()  # what older versions wrote and reading still understands


def _run_kinds(columns: list[str]) -> dict[str, str]:
    kinds = {m.name: "number" for m in metrics.METRICS}
    kinds |= {"run_id": "nonempty", "backend": "nonempty", "seed": "int", "status": "status", "threads": "int"}
    for name, field in config.fields().items():
        column = config.column_name(name)
        if column in columns and isinstance(field.default, (int, float)) and not isinstance(field.default, bool):
            kinds[column] = "int" if isinstance(field.default, int) else "number"
    return kinds | {"train_limit": "int", "grad_clip": "number", "input_size": "int"}


def tables() -> list[Table]:
    """Read from the config and metric tables at call time: a metric added to bench.metrics is a known column."""
    columns = run_columns()
    per_step = {"run_id": "nonempty", "backend": "nonempty", "seed": "int", "step": "int"}
    # a knob added after a file was written is filled with its default when the file is read (storage.load_runs)
    filled = {name for name, f in config.fields().items()
              if f.metadata["column"] is True and not callable(f.default_factory)}
    required = [c for c in REQUIRED_RUN_COLUMNS if c not in filled]
    return [Table(RUNS_FILE, columns, required, ("run_id",), _run_kinds(columns), RETIRED_RUN_COLUMNS),
            Table(CURVES_FILE, CURVE_COLUMNS, CURVE_COLUMNS, ("run_id", "step"),
                  per_step | {"epoch": "int", "loss": "number", "elapsed_s": "number"}),
            Table(STEPS_FILE, STEP_COLUMNS, STEP_COLUMNS, ("run_id", "step"), per_step | {"step_ms": "number"})]


def check(directory: str | Path) -> list[Problem]:
    """Every problem of the directory's files, in file order (env.json, runs.csv, curves.csv, steps.csv)."""
    directory = Path(directory)
    env, problems = _check_env(directory / ENV_FILE)
    finished = None
    for table in tables():
        path = directory / table.name
        if not path.exists():
            continue
        header, rows, found = check_table(path, table)
        problems += found
        if table.name == RUNS_FILE and header is not None:
            finished = {row[header.index("run_id")] for _, row in rows}
            if isinstance(env.get("config"), dict):
                problems += plan_problems(path, header, rows, env["config"])
        elif header is not None and finished is not None and "run_id" in header:
            orphans = {row[header.index("run_id")] for _, row in rows} - finished
            if orphans:
                problems.append(Problem(path, None, f"rows of {len(orphans)} run(s) without a {RUNS_FILE} row (a run "
                                        f"killed before it finished, e.g. {brief(min(orphans))}); skipped, and "
                                        "dropped by the next --resume", NOTE))
    return problems


def ensure_sound(directory: str | Path, *, plan: bool = False) -> list[Problem]:
    """Raises DamagedResults on the first damage (and, with plan=True, the first row outside the saved plan);
    returns the problems that do not stop a reader (plan mismatches without plan=True, notes)."""
    problems = check(directory)
    stopping = [p for p in problems if p.severity == DAMAGE or (plan and p.severity == PLAN)]
    if stopping:
        raise DamagedResults(refusal(directory, stopping))
    return problems


def refusal(directory: str | Path, stopping: list[Problem]) -> str:
    first = stopping[0]
    more = f" (and {len(stopping) - 1} more problem(s))" if len(stopping) > 1 else ""
    if all(p.fix for p in stopping):
        advice = f"`bench doctor {directory}` repairs it without losing a row (and keeps the original)"
    elif first.severity == PLAN:
        advice = f"these rows are not what env.json says was run; `bench doctor {directory}` lists every such row"
    else:
        advice = f"`bench doctor {directory}` lists every problem"
    return f"{first}{more}; {advice}"


def _check_env(path: Path) -> tuple[dict, list[Problem]]:
    if not path.exists():
        return {}, []
    try:
        env = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as error:
        return {}, [Problem(path, None, f"not UTF-8 text (byte {error.start})")]
    except ValueError as error:  # json.JSONDecodeError, or an integer too long to convert
        line = getattr(error, "lineno", None)
        return {}, [Problem(path, line, f"not valid JSON: {brief(getattr(error, 'msg', str(error)), 120)}")]
    if not isinstance(env, dict):
        return {}, [Problem(path, None, f"expected a JSON object, found {type(env).__name__}")]
    saved = env.get("config")
    if saved is not None and not isinstance(saved, dict):
        return env, [Problem(path, None, f"its config is {type(saved).__name__}, expected an object")]
    if saved is not None:
        try:
            config.from_dict({k: v for k, v in saved.items() if k not in config.DERIVED})
        except ValueError as error:
            return env, [Problem(path, None, f"its saved plan is not a valid config: {error}", PLAN)]
    return env, []


def check_table(path: Path, table: Table) -> tuple[list[str] | None, list[tuple[int, list[str]]], list[Problem]]:
    """(header, [(line, fields)] of the rows that passed, problems) of one CSV file."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        return None, [], [Problem(path, line, f"not UTF-8 text (byte {data[error.start]:#04x}); not a file this "
                                                 "program wrote, or damaged on disk")]
    header_fix = HEADER if table.name != RUNS_FILE else None  # an empty runs.csv lost its rows: a person decides
    if "\n" not in text:
        what = "empty (0 bytes)" if not text else "holds no complete line (not even its header)"
        return None, [], [Problem(path, 1, f"{what}; expected the header {','.join(table.columns[:4])},…", DAMAGE,
                                  header_fix)]
    complete, torn = text[:text.rfind("\n") + 1], text[text.rfind("\n") + 1:]
    problems = []
    if torn:
        problems.append(Problem(path, complete.count("\n") + 1, "a torn last line (a run killed while writing its "
                                "row); readers skip it", NOTE, TORN))
    header, rows, found = _read_rows(path, complete, table)
    return header, rows, found + problems


def lines_of(text: str) -> list[str]:
    """The lines of complete text (ending in a newline), each with its newline: split on "\n" only, so that
    line numbers here, in doctor and in a text editor agree (a stray "\r" is damage inside a line)."""
    return [part + "\n" for part in text.split("\n")[:-1]]


class UnreadableRecord(csv.Error):
    """The csv.Error that ends records(), with the first line of the record it could not parse."""

    def __init__(self, message: str, line: int):
        super().__init__(message)
        self.line = line


def records(text: str):
    """(first line, last line, fields) of each CSV record of complete lines (a quoted field may span lines);
    a record csv cannot parse ends the walk with csv.Error carrying its first line as `line`."""
    lines = lines_of(text)
    reader, line = csv.reader(iter(lines)), 0
    while True:
        start = line + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as error:  # e.g. a field longer than csv's limit: the rest cannot be parsed reliably
            raise UnreadableRecord(str(error), start) from error
        line = reader.line_num
        yield start, line, fields


def _read_rows(path: Path, text: str, table: Table):
    walk = records(text)
    try:
        _, _, header = next(walk)
    except (csv.Error, StopIteration) as error:
        return None, [], [Problem(path, 1, f"unreadable header: {error}")]
    if problem := _header_problem(header, table):
        return None, [], [Problem(path, 1, problem)]
    rows: list[tuple[int, list[str]]] = []
    problems: list[Problem] = []
    seen: dict[tuple[str, ...], tuple[int, list[str]]] = {}
    key_at = [header.index(k) for k in table.key]
    while len(problems) < MANY:
        try:
            start, _, fields = next(walk)
        except StopIteration:
            break
        except UnreadableRecord as error:
            problems.append(Problem(path, error.line, f"unreadable row: {error}"))
            break
        if not fields:
            problems.append(Problem(path, start, "a blank line", DAMAGE, BLANK))
            continue
        if problem := _row_problem(fields, header, table):
            problems.append(Problem(path, start, problem))
            continue
        key = tuple(fields[i] for i in key_at)
        if key in seen:
            first_line, first_fields = seen[key]
            same = first_fields == fields
            problems.append(Problem(path, start, f"{'repeats' if same else 'has the key of'} line {first_line} "
                                    f"({', '.join(f'{k} {brief(v, 60)}' for k, v in zip(table.key, key))})"
                                    + ("" if same else " with other values: one run recorded twice"),
                                    DAMAGE, DUPLICATE if same else None))
            continue
        seen[key] = (start, fields)
        rows.append((start, fields))
    return header, rows, problems


def _header_problem(header: list[str], table: Table) -> str | None:
    unknown = [c for c in header if c not in table.columns and c not in table.retired]
    if unknown:
        return (f"unknown column {brief(unknown[0], 60)}"
                + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else "")
                + "; written by another version of this program or edited by hand: finish it with the version "
                "that wrote it, or start a new results directory")
    if len(set(header)) != len(header):
        return f"column {brief(next(c for i, c in enumerate(header) if c in header[:i]), 60)} appears twice"
    if missing := [c for c in table.required if c not in header]:
        return f"missing column(s) {', '.join(missing[:5])}"
    return None


def _row_problem(fields: list[str], header: list[str], table: Table) -> str | None:
    if len(fields) != len(header):
        return (f"{len(fields)} field(s) where the header has {len(header)} (a damaged row: "
                f"{brief(','.join(fields)[:200], 60)})")
    for column, value in zip(header, fields):
        kind = table.kinds.get(column)
        if kind and (problem := _value_problem(kind, value)):
            return f"{column} {brief(value, 60)}: {problem}"
    return None


def _value_problem(kind: str, value: str) -> str | None:
    if kind == "nonempty":
        return "must not be empty" if not value.strip() else None
    if kind == "status":
        return None if value in STATUSES else f"expected one of {', '.join(STATUSES)}"
    if value == "":
        return None  # not measured, or a column an older version did not write
    if kind == "int":
        try:
            number = float(value)
        except ValueError:
            return "expected an integer"
        return None if math.isfinite(number) and number.is_integer() and abs(number) < 2**63 else "expected an integer"
    try:
        float(value)  # nan and inf are what a run with nothing to time, or a diverged loss, writes
    except ValueError:
        return "expected a number"
    return None


# ---------------------------------------------------------------- the rows against env.json's plan

def plan_problems(path: Path, header: list[str], rows: list[tuple[int, list[str]]], saved: dict) -> list[Problem]:
    """One problem per row whose config columns are not among the values the saved plan runs."""
    expected = planned_values(saved)
    at = {column: header.index(column) for column in expected if column in header}
    problems = []
    for line, fields in rows:
        for column, index in at.items():
            allowed, nullable = expected[column]
            value = fields[index]
            if value == "" and not nullable:
                continue  # an older version did not write this column
            if _norm(value) not in allowed:
                shown = ", ".join(sorted(map(str, allowed), key=str)[:6]) or "nothing"
                problems.append(Problem(path, line, f"run {brief(fields[header.index('run_id')], 60)} has {column} "
                                        f"{cut(value, 40)}, not in the plan saved in env.json ({column}: {shown})",
                                        PLAN))
                break
    return problems


def planned_values(saved: dict) -> dict[str, tuple[set, bool]]:
    """runs.csv column -> (the normalised values the plan runs there, whether empty means unset)."""
    sweep = saved.get("sweep") or {}
    expected = {}
    for name, field in config.fields().items():
        if not field.metadata["column"] or name not in saved:
            continue
        values = saved[name] if name in ("backends", "seeds") else sweep.get(name, [saved[name]])
        if not isinstance(values, (list, tuple)):
            values = [values]
        expected[config.column_name(name)] = ({_norm(v) for v in values}, field.default is None)
    return expected


def _norm(value):
    """One spelling of a value as env.json and runs.csv write it: "64", 64 and 64.0 are one hidden size;
    "True" and true one tf32; "" and None one unset knob."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or value in ("True", "False", "true", "false"):
        return str(value).lower() == "true"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return int(number) if number.is_integer() else number
