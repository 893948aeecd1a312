"""The report's "Runs not measured" section: skipped, failed and never-run cells, read at a glance.

One row per backend and sweep point with its seeds listed, only the axes that vary, and a reason shared by
several rows written once, as a numbered note under the table.
"""
from __future__ import annotations

from typing import Any

import pandas as pd

from bench import config
from bench.analysis import render
from bench.analysis.results import Results

NO_REASON = "(no reason recorded)"


def blocks(res: Results) -> list[tuple]:
    """The section's blocks: eight backends skipped over three seeds are eight rows, not twenty-four."""
    out: list[tuple] = [("h2", "Runs not measured (skipped, failed, not run)")]
    bad = res.not_ok
    if bad.empty:
        return out + [("p", "None: every run finished.")]
    bad = bad.assign(error=bad["error"].fillna("").astype(str).replace("", NO_REASON))
    # only the axes that vary over every planned cell: one value everywhere is config, in the settings table
    cells = pd.concat([res.runs, bad], ignore_index=True)
    axes = [a for a in config.sweep_axes() if a in cells and cells[a].dropna().astype(str).nunique() > 1]
    rank = {b: i for i, b in enumerate(dict.fromkeys([*res.backends, *bad["backend"].astype(str)]))}
    rows = []
    for _, group in bad.groupby(["backend", *axes, "status", "error"], sort=False, dropna=False):
        seeds = sorted(group["seed"].dropna().unique(), key=float)
        rows.append({**group.iloc[0].to_dict(), "seeds": ", ".join(map(render.fmt_axis, seeds)) or "—"})
    rows.sort(key=lambda r: (rank[str(r["backend"])], *(_sort_value(r[a]) for a in axes)))
    reasons = [(r["status"], r["error"]) for r in rows]
    notes: dict[tuple[Any, Any], str] = {}  # (status, reason) -> its note's label
    for reason in reasons:
        if reasons.count(reason) > 1 and reason not in notes:
            notes[reason] = f"note {len(notes) + 1}"
    table = [[str(r["backend"]), *(render.fmt_axis(r[a]) for a in axes), r["seeds"], str(r["status"]),
              f"see {notes[reason]}" if reason in notes else r["error"]] for r, reason in zip(rows, reasons)]
    out.append(("table", ["backend", *axes, "seeds", "status", "reason"], table))
    if notes:
        out.append(("ul", [f"**{label}** ({status}, {reasons.count((status, error))} rows): {error}"
                           for (status, error), label in notes.items()]))
    return out


def _sort_value(value) -> tuple:
    """Numbers in numeric order, then text: a sort key for one axis value of the table above."""
    try:
        return (0, float(value), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(value))
