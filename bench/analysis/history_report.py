"""The document `bench history` writes: findings first, then per backend its plot and a table over commits
per machine, then the results directories read. Built as render blocks (bench.analysis.render), so
history.md and history.html say the same thing. Reads the table bench.analysis.history builds."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench import metrics
from bench.analysis import render

STEP = metrics.by_name("step_ms_median")
ACCURACY, MEMORY = metrics.by_name("test_accuracy"), metrics.by_name("peak_tensor_bytes")
FINDINGS = ("regression", "improvement")


def short(commit: str) -> str:
    sha = commit.removesuffix("-dirty")
    label = sha[:8] if len(sha) >= 8 and all(c in "0123456789abcdef" for c in sha) else sha
    return label + ("+dirty" if commit.endswith("-dirty") else "")



def when(entry) -> str:
    moment = entry["commit_time"] or entry["run_time"]
    return moment.strftime("%Y-%m-%d %H:%M") if moment else "—"


def finding_text(entry) -> str:
    where = f" at `{entry['point']}`" if entry["point"] else ""
    subject = f" ({entry['subject']})" if entry["subject"] else ""
    word = "slower" if entry["verdict"] == "regression" else "faster"
    factor = entry["ratio"] if entry["ratio"] >= 1 else 1 / entry["ratio"]
    return (f"**{entry['verdict'].capitalize()}: {entry['backend']}** {factor:.2f}× {word} at commit "
            f"`{short(entry['commit'])}`{subject}, {when(entry)}, against `{short(entry['previous'])}`, on "
            f"{entry['machine']}{where}: median step {STEP.format(entry['median'] / entry['ratio'])} → "
            f"{STEP.format(entry['median'])} ms, Mann-Whitney p = {entry['p']:.2g}.")


def findings_blocks(table: pd.DataFrame, ratio_limit: float, alpha: float) -> list[tuple]:
    blocks: list[tuple] = [("h2", "Findings")]
    found = table[table["verdict"].isin(FINDINGS)]
    compared = int((table["verdict"] != "first").sum())
    if len(found):
        ordered = pd.concat([found[found["verdict"] == v] for v in FINDINGS])
        blocks.append(("ul", [finding_text(e) for _, e in ordered.iterrows()]))
    else:
        blocks.append(("p", f"**No regression or improvement** in {compared} change(s) from one commit to the next."
                            if compared else "**Nothing to compare:** every series has results from one commit only."))
    blocks += machine_wide_note(found)
    unsure = table[table["verdict"] == "inconclusive"]
    if len(unsure):
        blocks.append(("p", "Inconclusive (beyond the ratio, but the test does not agree): " + "; ".join(
            f"{e['backend']} at `{short(e['commit'])}` on {e['machine']} ({e['ratio']:.2f}×, {e['note']})"
            for _, e in unsure.iterrows()) + "."))
    blocks.append(("p", f"Rule (airspeed velocity's): a change from one commit to the next in a series (one machine, "
                        f"backend and configuration) is a regression or improvement when the median step time "
                        f"moves by more than {ratio_limit:g}× AND a two-sided Mann-Whitney U test on the two commits' "
                        f"step times gives p < {alpha:g} (`--ratio`, `--alpha`). Results of one commit are pooled; "
                        "machines are never compared with each other."))
    return blocks


def machine_wide_note(found: pd.DataFrame) -> list[tuple]:
    """Several backends moving the same way at one commit on one machine: more often the machine (load, another
    tenant, a changed setting) or the harness than each kernel; said, so the reader checks that first."""
    notes = []
    for (machine, commit, verdict), group in found.groupby(["machine", "commit", "verdict"], sort=False):
        backends = list(dict.fromkeys(group["backend"]))
        if len(backends) > 1:
            notes.append(f"{', '.join(backends)} all {'slower' if verdict == 'regression' else 'faster'} at "
                         f"`{short(str(commit))}` on {machine}")
    if not notes:
        return []
    return [("p", "**Several backends at once:** " + "; ".join(notes) + ". A change that moves every backend alike "
                  "is more often the machine (its load, another tenant, a setting) or the harness than the backends: "
                  "compare the two directories' env.json (`bench compare A B` lists the differences) before "
                  "bisecting a kernel.")]


def change_text(entry) -> str:
    """The change from the series' previous commit, in one cell: the verdict, the factor, the test."""
    if entry["verdict"] == "first":
        return "first"
    if np.isnan(entry["ratio"]):
        return entry["note"]
    p = "" if np.isnan(entry["p"]) else f", p\u00a0=\u00a0{entry['p']:.2g}"  # no break inside "p = 1e-9"
    return f"{entry['verdict']}: {render.fmt_ratio(entry['ratio'])}{p}"


def series_rows(series: pd.DataFrame, with_point: bool) -> list[list[str]]:
    rows = []
    for _, e in series.iterrows():
        samples = f"{len(e['samples']):,} {'steps' if e['kind'] == 'steps' else 'run medians'}"
        rows.append([*([e["point"]] if with_point else []), short(e["commit"]), when(e), f"{e['runs']} / {samples}",
                     f"{STEP.format(e['median'])} ({STEP.format(e['p10'])}–{STEP.format(e['p90'])})",
                     change_text(e), ACCURACY.format(e["accuracy"]), MEMORY.format(e["memory"])])
    return rows


def backend_blocks(table: pd.DataFrame, backend: str, plot: Path | None, out: Path) -> list[tuple]:
    blocks: list[tuple] = [("h2", f"Backend: {backend}")]
    if plot is not None:
        blocks.append(("img", plot.relative_to(out).as_posix(), f"{backend} over commits"))
    with_point = bool(table["point"].str.len().max())
    header = [*(["configuration"] if with_point else []), "commit", "committed", "runs / samples",
              "step (ms): median (p10–p90)", "against the previous commit", "accuracy", "peak memory (MiB)"]
    for machine, series in table[table["backend"] == backend].groupby("machine", sort=True):
        blocks += [("h3", machine), ("table", header, series_rows(series, with_point))]
    return blocks


def sources_blocks(sources: list, left_out: list[tuple[str, str]], runs: pd.DataFrame) -> list[tuple]:
    rows = []
    for index, source in enumerate(sources):
        mine = runs[runs["source"] == index]
        resumed = {r.get("git_commit") for r in source.results.env.get("resumed", [])} - {source.commit}
        note = f"resumed at {', '.join(short(str(c)) for c in resumed)}" if resumed else ""
        rows.append([str(source.results.dir), short(source.commit), source.subject or "—",
                     source.run_time.strftime("%Y-%m-%d %H:%M") if source.run_time else "—",
                     "; ".join(sorted(set(mine["machine"]))) or "—", str(len(mine)), note or "—"])
    blocks = [("h2", "Results directories"),
              ("table", ["directory", "commit", "subject", "run at", "machine", "ok runs", "note"], rows)]
    if left_out:
        blocks.append(("p", "Left out: " + "; ".join(f"`{path}` ({why})" for path, why in left_out) + "."))
    return blocks


def build_blocks(sources, left_out, table, runs, plots: dict[str, Path], out: Path,
                 ratio_limit: float, alpha: float) -> list[tuple]:
    machines, commits = sorted(set(runs["machine"])), {s.commit for s in sources}
    series = table.groupby(["machine", "point", "backend"]).ngroups if len(table) else 0
    blocks: list[tuple] = [("h1", "LSTM Bench history"),
                           ("p", f"{len(sources)} results directories, {len(commits)} commit(s), {len(machines)} "
                                 f"machine(s) ({'; '.join(machines) or 'none'}), {series} series (machine × "
                                 "backend × configuration).")]
    blocks += findings_blocks(table, ratio_limit, alpha) if len(table) else [
        ("h2", "Findings"), ("p", "No ok runs in these directories: nothing to follow.")]
    for backend in dict.fromkeys(table["backend"]) if len(table) else []:
        blocks += backend_blocks(table, backend, plots.get(backend), out)
    return blocks + sources_blocks(sources, left_out, runs)
