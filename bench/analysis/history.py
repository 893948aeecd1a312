"""`python -m bench history DIR... [--out DIR] [--ratio 1.1] [--alpha 0.002]`: results across commits and machines.

Loads every results directory given (directories or globs, e.g. `results/runs/*`; a glob's matches that are
not results directories are listed, not fatal), and follows each *series*: one machine, one backend, one
configuration point. Within a series, directories of the same commit are pooled, and commits are ordered
by commit time (env.json's git_commit_time, else asked of git, else the run's own timestamp), then by
run time. Each change from one commit to the next is classified by airspeed velocity's rule, on the
steps' samples (steps.csv; older directories without it: the per-run medians):

    regression   median step time grew by more than --ratio (default 1.1x) AND Mann-Whitney U p < --alpha
    improvement  it shrank by more than that factor AND p < --alpha
    inconclusive beyond the ratio, but the test does not agree (or there are too few samples to test)
    unchanged    otherwise

history.md / history.html open with the regressions and improvements found, naming the commits; then per
machine, per backend, the table over commits and a plot (median step time with its p10-p90 band, accuracy
and peak memory beside it; bench.analysis.history_plots).

A machine is what ran the steps: the GPU's name for CUDA runs, the CPU model and core count for CPU runs
(runs.csv's device_name per row, env.json where an older version did not record it). Series never cross
machines. A configuration point is every column that changes a step's cost (the run key's shape columns,
dtype, task, device, threads, tf32); columns an older version did not record are empty and match only
empty. Exit status 0 (findings are reported, not judged; `make bench-gate` judges), 2 on bad input.
"""
from __future__ import annotations

import functools
import glob
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench import config
from bench.analysis import history_report, render
from bench.analysis.history_report import ACCURACY, FINDINGS, MEMORY, STEP, finding_text
from bench.analysis.results import Results, ResultsError, load, ok_runs
from bench.analysis.stats import mann_whitney
from bench.atomic import atomic_write_text
from bench.cliargs import OneLineParser, parse

RATIO, ALPHA = 1.1, 0.002  # airspeed velocity's defaults: a factor of 1.1 and p < 0.002
DEFAULT_OUT = "results/history"
SUBJECT_CHARS = 72  # a commit's subject as the history quotes it; some run to a paragraph
POINT_EXTRA = ("device", "threads", "tf32")  # not in the run key, but they change what a step costs


class HistoryError(ValueError):
    """Bad input (exit 2)."""


@dataclass
class Source:
    """One results directory and where it sits in time."""
    results: Results
    commit: str                   # env.json's git_commit ("unknown" when not recorded)
    commit_time: datetime | None  # committer date; None when neither env.json nor git knows it
    subject: str                  # the commit's first line (shortened), when git knows the commit
    run_time: datetime | None     # env.json's timestamp


# ---------------------------------------------------------------- loading

def expand(patterns: list[str]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Directories named or matched, in order, each once; and (path, why) for glob matches left out and globs
    that match nothing. A directory named literally that does not exist is bad input."""
    found, left_out = [], []
    for pattern in patterns:
        if glob.has_magic(pattern):
            matches = sorted(glob.glob(pattern))
            if not matches:  # `results/runs/*` before the first run: said, not fatal while others load
                left_out.append((pattern, "matches nothing"))
            left_out += [(m, "not a directory") for m in matches if not Path(m).is_dir()]
            found += [Path(m) for m in matches if Path(m).is_dir()]
        elif Path(pattern).is_file():  # the shell's expansion of results/reference/* brings the README along
            left_out.append((pattern, "not a directory"))
        elif not Path(pattern).is_dir():
            raise HistoryError(f"{pattern}: no such directory")
        else:
            found.append(Path(pattern))
    unique = list({p.resolve(): p for p in found}.values())
    return unique, left_out


def load_sources(directories: list[Path]) -> tuple[list[Source], list[tuple[str, str]]]:
    sources, left_out = [], []
    for directory in directories:
        try:
            res = load(directory)
        except ResultsError as error:
            left_out.append((str(directory), str(error).removeprefix(f"{directory}: ")))
            continue
        env = res.env
        commit = str(env.get("git_commit") or "unknown")
        known_time, subject = commit_info(commit, str(env.get("git_repo") or ""))
        recorded = _time(env.get("git_commit_time"))
        sources.append(Source(res, commit, recorded or known_time, subject, _time(env.get("timestamp"))))
    return sources, left_out


def _time(text) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@functools.cache
def commit_info(commit: str, repo: str) -> tuple[datetime | None, str]:
    """(committer date, subject) of a commit, from the repository that recorded it, else the current one."""
    sha = commit.removesuffix("-dirty")
    if not sha or sha == "unknown":
        return None, ""
    for where in dict.fromkeys([repo, "."]):
        if not where or not Path(where).is_dir():
            continue
        try:
            done = subprocess.run(["git", "show", "-s", "--format=%cI%x1f%s", sha, "--"], cwd=where,
                                  capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            continue
        if done.returncode == 0 and "\x1f" in done.stdout:
            when, subject = done.stdout.strip().split("\x1f", 1)
            return _time(when), textwrap.shorten(subject, SUBJECT_CHARS, placeholder=" …")
    return None, ""


# ---------------------------------------------------------------- machines, points, samples

def point_columns() -> list[str]:
    return [c for c in config.key_columns() if c not in ("backend", "seed")] + list(POINT_EXTRA)


def machine_labels(ok: pd.DataFrame, env: dict) -> pd.Series:
    """What ran each row's steps: 'cuda: <GPU>' or 'cpu: <CPU model> (<n> CPUs)'."""
    cuda = ok["device"].fillna("").astype(str).str.startswith("cuda") if "device" in ok else \
        pd.Series(bool(env.get("gpu_count")), index=ok.index)
    named = ok["device_name"].fillna("").astype(str) if "device_name" in ok else pd.Series("", index=ok.index)
    gpus, cpu = env.get("gpu_names") or [], env.get("cpu_model") or "unknown CPU"
    count = f" ({env['cpu_count']} CPUs)" if env.get("cpu_count") else ""
    labels = [f"cuda: {name or (gpus[0] if gpus else 'unknown GPU')}" if is_cuda else f"cpu: {name or cpu}{count}"
              for is_cuda, name in zip(cuda, named)]
    return pd.Series(labels, index=ok.index)


def _point_key(frame: pd.DataFrame) -> pd.DataFrame:
    """The point columns as text (32, 32.0 and "32" alike; an unrecorded column is "—")."""
    out = pd.DataFrame(index=frame.index)
    for column in point_columns():
        values = frame[column] if column in frame else pd.Series(None, index=frame.index, dtype=object)
        if column == "device":
            values = values.astype(str).str.split(":").str[0].where(values.notna())
        out[column] = [str(v) if isinstance(v, (bool, np.bool_)) else render.fmt_axis(v)
                       if not render.is_missing(v) and v != "" else "—" for v in values]
    return out


def run_table(sources: list[Source]) -> pd.DataFrame:
    """Every ok run of every source: source index, machine, backend, point columns, run_id and its metrics."""
    frames = []
    for index, source in enumerate(sources):
        ok = ok_runs(source.results.runs)
        if ok.empty:
            continue
        frame = pd.concat([ok[["run_id", "backend"]].astype(str), _point_key(ok)], axis=1)
        for metric in (STEP, ACCURACY, MEMORY):
            frame[metric.name] = pd.to_numeric(ok[metric.name], errors="coerce") if metric.name in ok else np.nan
        frames.append(frame.assign(source=index, machine=machine_labels(ok, source.results.env)))
    columns = ["source", "machine", "backend", *point_columns(), "run_id", STEP.name, ACCURACY.name, MEMORY.name]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def point_labels(runs: pd.DataFrame) -> pd.Series:
    """A point named by the columns that vary across the whole history ('' when one point is everything)."""
    varying = [c for c in point_columns() if runs[c].nunique() > 1]
    if not varying:
        return pd.Series("", index=runs.index)
    return runs[varying].apply(lambda r: ", ".join(f"{c}={r[c]}" for c in varying), axis=1)


def _samples(group: pd.DataFrame, sources: list[Source]) -> tuple[np.ndarray, str]:
    """Every timed step of the group's runs (steps.csv), else the runs' medians when no step was recorded."""
    pieces = []
    for index in sorted(set(group["source"])):  # "source" holds positions in `sources`
        steps = sources[index].results.steps
        if len(steps):
            run_ids = set(group.loc[group["source"] == index, "run_id"])
            pieces.append(steps.loc[steps["run_id"].isin(run_ids), "step_ms"].to_numpy(dtype=float))
    times = np.concatenate(pieces) if pieces else np.array([])
    times = times[np.isfinite(times)]
    if len(times):
        return times, "steps"
    medians = group[STEP.name].to_numpy(dtype=float)
    return medians[np.isfinite(medians)], "run medians"


# ---------------------------------------------------------------- series and changes

def entries(sources: list[Source], runs: pd.DataFrame) -> pd.DataFrame:
    """One row per series (machine, configuration point, backend) and commit, in commit order, with the
    pooled step samples, their median and p10/p90, mean accuracy and peak memory."""
    runs = runs.assign(point=point_labels(runs), commit=[sources[i].commit for i in runs["source"]])
    rows: list[dict[str, Any]] = []
    for (machine, point, backend, commit), group in runs.groupby(["machine", "point", "backend", "commit"], sort=False):
        picked = [sources[i] for i in sorted(set(group["source"]))]
        commit_times = [s.commit_time for s in picked if s.commit_time]
        run_times = [s.run_time for s in picked if s.run_time]
        samples, kind = _samples(group, sources)
        has = len(samples) > 0
        rows.append({"machine": machine, "point": point, "backend": backend, "commit": commit,
                     "point_order": tuple(_number_first(group[c].iloc[0]) for c in point_columns()),
                     "commit_time": min(commit_times) if commit_times else None,
                     "run_time": min(run_times) if run_times else None,
                     "subject": next((s.subject for s in picked if s.subject), ""),
                     "dirs": [str(s.results.dir) for s in picked], "runs": len(group), "samples": samples,
                     "kind": kind, "median": float(np.median(samples)) if has else np.nan,
                     "p10": float(np.percentile(samples, 10)) if has else np.nan,
                     "p90": float(np.percentile(samples, 90)) if has else np.nan,
                     "accuracy": group[ACCURACY.name].mean(), "memory": group[MEMORY.name].mean()})
    columns = ["machine", "point", "backend", "commit", "point_order", "commit_time", "run_time", "subject", "dirs",
               "runs", "samples", "kind", "median", "p10", "p90", "accuracy", "memory"]
    # commit time first (the run's own time where the commit's is unknown), then run time
    rows.sort(key=lambda r: (r["machine"], r["backend"], r["point_order"], _stamp(r["commit_time"] or r["run_time"]),
                             _stamp(r["run_time"]), r["commit"]))
    table = pd.DataFrame(rows, columns=columns)
    for column in ("commit_time", "run_time"):  # datetimes or None, not NaT: the document tests them for None
        table[column] = pd.Series([r[column] for r in rows], index=table.index, dtype=object)
    return table


def _number_first(text: str) -> tuple:
    """Sort key of a point column's value: numbers in numeric order (16 before 128), then text."""
    try:
        return (0, float(text), "")
    except ValueError:
        return (1, 0.0, text)


def _stamp(moment: datetime | None) -> float:
    return moment.timestamp() if moment else float("-inf")


@dataclass(frozen=True)
class Change:
    ratio: float    # median now / median at the previous commit
    p: float        # two-sided Mann-Whitney U p on the two commits' samples (NaN: no test possible)
    verdict: str    # regression | improvement | inconclusive | unchanged
    note: str


def classify(before: np.ndarray, after: np.ndarray, ratio_limit: float = RATIO, alpha: float = ALPHA) -> Change:
    """asv's rule on two sets of step times: beyond the ratio (either way) AND the test agrees."""
    before, after = np.asarray(before, float), np.asarray(after, float)
    if not (len(before) and len(after)) or np.median(before) <= 0:
        return Change(np.nan, np.nan, "unchanged", "no step times to compare")
    ratio = float(np.median(after) / np.median(before))
    p = mann_whitney(before, after)
    counts = f"{len(before):,} vs {len(after):,}"
    if max(ratio, 1 / ratio) <= ratio_limit:
        return Change(ratio, p, "unchanged", f"within {ratio_limit:g}×")
    if not p < alpha:  # NaN (no spread on either side) included
        return Change(ratio, p, "inconclusive", f"beyond {ratio_limit:g}× but Mann-Whitney p = {p:.2g} "
                                                f"is not below {alpha:g} ({counts} samples)")
    return Change(ratio, p, "regression" if ratio > 1 else "improvement", f"p = {p:.2g} on {counts} samples")


def changes(table: pd.DataFrame, ratio_limit: float = RATIO, alpha: float = ALPHA) -> pd.DataFrame:
    """The entries with each commit's change from the series' previous commit (the first has none)."""
    table = table.copy()
    table[["ratio", "p", "verdict", "note", "previous"]] = pd.DataFrame(
        [[np.nan, np.nan, "first", "first commit of this series", ""]] * len(table), index=table.index)
    samples, kinds, commits = table["samples"], table["kind"], table["commit"]  # read only below
    for _, series in table.groupby(["machine", "point", "backend"], sort=False):
        for before, after in zip(series.index[:-1], series.index[1:]):
            change = classify(samples[before], samples[after], ratio_limit, alpha)
            note = change.note
            if {kinds[before], kinds[after]} != {"steps"}:
                note += " (a side had no steps.csv: per-run medians)"
            table.at[after, "ratio"], table.at[after, "p"] = change.ratio, change.p
            table.at[after, "verdict"], table.at[after, "note"] = change.verdict, note
            table.at[after, "previous"] = commits[before]
    return table


# ---------------------------------------------------------------- entry points

def write_history(patterns: list[str], out: str | Path = DEFAULT_OUT, ratio_limit: float = RATIO,
                  alpha: float = ALPHA) -> tuple[Path, pd.DataFrame]:
    """Writes OUT/history.md, history.html and plots/; returns the .md path and the table of changes."""
    from bench.analysis import history_plots  # matplotlib is slow to import

    out = Path(out)
    directories, left_out = expand(patterns)
    sources, unloadable = load_sources(directories)
    left_out += unloadable
    if not sources:
        raise HistoryError("no results directory among " + ", ".join(patterns)
                           + "".join(f"; {path}: {why}" for path, why in left_out[:3]))
    runs = run_table(sources)
    table = changes(entries(sources, runs), ratio_limit, alpha) if len(runs) else entries(sources, runs)
    plots = history_plots.write_plots(table, out / "plots") if len(table) else {}
    blocks = history_report.build_blocks(sources, left_out, table, runs, plots, out, ratio_limit, alpha)
    atomic_write_text(out / "history.md", render.markdown(blocks))
    atomic_write_text(out / "history.html", render.html(blocks, "LSTM Bench history"))
    return out / "history.md", table


def cli(argv: list[str]) -> int:
    parser = OneLineParser(prog="bench history", description="Step time, accuracy and memory of every backend "
                           "across commits and machines, with the regressions and improvements found.")
    parser.add_argument("directories", nargs="+", help="results directories or globs (e.g. 'results/runs/*')")
    parser.add_argument("--out", default=DEFAULT_OUT,
                        help=f"where history.md/html and plots/ go (default {DEFAULT_OUT})")
    parser.add_argument("--ratio", type=float, default=RATIO,
                        help=f"a change must exceed this factor either way (default {RATIO:g})")
    parser.add_argument("--alpha", type=float, default=ALPHA,
                        help=f"and Mann-Whitney U's p must be below this (default {ALPHA:g})")
    args = parse(parser, argv)
    if isinstance(args, int):
        return args
    if not args.ratio > 1 or not 0 < args.alpha < 1:
        print(f"error: expected --ratio above 1 and --alpha between 0 and 1, got {args.ratio:g} and {args.alpha:g}",
              file=sys.stderr)
        return 2
    try:
        path, table = write_history(args.directories, args.out, args.ratio, args.alpha)
    except HistoryError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for _, entry in table[table["verdict"].isin(FINDINGS)].iterrows() if len(table) else []:
        print(finding_text(entry).replace("**", "").replace("`", ""))
    found = int(table["verdict"].isin(FINDINGS).sum()) if len(table) else 0
    print(f"{found} finding(s); wrote {path} and {path.with_suffix('.html')} (plots in {path.parent / 'plots'})")
    return 0
