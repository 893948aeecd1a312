"""What packing costs each backend: the step time with packed trimmed input against padded full input, and the
distribution of the images' own lengths. A report section (bench.analysis.report), torch-free.

    padded full     packing=none: every image fed all seq_len steps (task rows, or rows-trimmed, whose lengths
                    packing=none leaves unused: the same pixels, the same work)
    packed trimmed  packing=packed on task rows-trimmed: a PackedSequence of each image's own length
    lengths trimmed packing=lengths on task rows-trimmed: padded to the batch's longest, with lengths=

Rows pair the three by backend and every other axis that varies (batch size, hidden size, ...). The `varlen`
preset runs the first two for every backend; a backend without an option is a skipped row, shown with its reason.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bench import metrics
from bench.analysis import render
from bench.analysis.results import Results, at_point, metric_table, not_ok_table

TRIMMED = "rows-trimmed"
VARIANTS = {  # name -> (packing, the tasks it is read from, in order of preference)
    "padded full": ("none", (TRIMMED, "rows")),
    "packed trimmed": ("packed", (TRIMMED,)),
    "lengths trimmed": ("lengths", (TRIMMED,)),
}
HISTOGRAM_ROWS = 32  # lengths listed one by one up to this many distinct values; a summary line beyond


def parse_length_counts(text) -> dict[int, int]:
    """runs.csv's length_counts ("length:count ...") as {length: count}; {} for an empty cell (older results)."""
    if not isinstance(text, str) or not text.strip():
        return {}
    pairs = (item.split(":") for item in text.split())
    return {int(length): int(count) for length, count in pairs}


def _columns(res: Results) -> list[str]:
    return [c for c in ("packing", "task") if c in res.runs.columns]


def applies(res: Results) -> bool:
    """The section is written when an ok run used packing or the trimmed task (never for older results)."""
    ok = res.ok
    if ok.empty or len(_columns(res)) < 2:
        return False
    return bool(((ok["packing"].fillna("none") != "none") | (ok["task"] == TRIMMED)).any())


def cost_table(res: Results) -> tuple[list[str], pd.DataFrame]:
    """(the other axes, one row per backend and point of them): each variant's pooled median step time (ms)
    and mean steps per image, and packed ÷ padded; NaN where a variant has no ok run."""
    others = [axis for axis in res.axes if axis not in ("packing", "task")]
    steps = metric_table(res.runs, res.steps, "step_ms_median", [*others, "task", "packing"])
    ok = res.ok
    lengths = (ok.groupby(["backend", *others, "task", "packing"])["mean_length"].mean().rename("length").reset_index()
               if "mean_length" in ok else None)
    keys = ok[["backend", *others]].drop_duplicates()
    order = {b: i for i, b in enumerate(res.backends)}
    rows = []
    for _, key in keys.assign(_rank=keys["backend"].map(order)).sort_values(["_rank", *others]).iterrows():
        point = {column: key[column] for column in ["backend", *others]}
        row = dict(point)
        for name, (packing, tasks) in VARIANTS.items():
            row[name], row[f"{name} steps"] = math.nan, math.nan
            for task in tasks:
                here = at_point(steps, point | {"task": task, "packing": packing})
                if len(here):
                    row[name] = float(here["value"].iloc[0])
                    if lengths is not None:
                        found = at_point(lengths, point | {"task": task, "packing": packing})
                        row[f"{name} steps"] = float(found["length"].iloc[0]) if len(found) else math.nan
                    break
        rows.append(row)
    table = pd.DataFrame(rows)
    with np.errstate(invalid="ignore", divide="ignore"):
        table["packed ÷ padded"] = table["packed trimmed"] / table["padded full"]
    return others, table


def _skipped(res: Results) -> dict[str, str]:
    """backend -> why its packed or padded runs did not run (the first reason), for backends with no ok run."""
    bad = not_ok_table(res.runs)
    ran = set(res.ok["backend"])
    return {str(b): str(group["error"].iloc[0]) for b, group in bad.groupby("backend", sort=False) if b not in ran}


def _why_not(res: Results, backend: str, packing: str) -> str:
    """Why `backend` has no ok run with this packing: its first skipped or failed row's reason, or "not run"."""
    bad = not_ok_table(res.runs)
    if "packing" in bad:
        bad = bad[(bad["backend"] == backend) & (bad["packing"] == packing)]
    return f"{bad['status'].iloc[0]}: {bad['error'].iloc[0]}" if len(bad) else "not run"


def sentence(backend: str, row: pd.Series, res: Results) -> str:
    ms = metrics.by_name("step_ms_median")
    padded, packed = row["padded full"], row["packed trimmed"]
    if math.isnan(padded) or math.isnan(packed):
        ran, missing, packing = (("padded full", "packed trimmed", "packed") if math.isnan(packed)
                                 else ("packed trimmed", "padded full", "none"))
        return (f"**{backend}**: only {ran} input ran, so there is no ratio; {missing}: "
                f"{_why_not(res, backend, packing)}")
    verdict = "slower" if packed > padded else "faster"
    return (f"**{backend}**: {ms.format(packed)} ms a step with packed trimmed input against {ms.format(padded)} ms "
            f"with padded full input: {packed / padded:.2f}× ({verdict} packed)")


def length_blocks(res: Results) -> list[tuple]:
    """The training images' own lengths, from the first ok rows-trimmed run (every run of a directory reads the
    same images: one train_limit)."""
    trimmed = res.ok[res.ok["task"] == TRIMMED] if "length_counts" in res.ok else res.ok.iloc[:0]
    counts = next((c for c in map(parse_length_counts, trimmed.get("length_counts", [])) if c), {})
    if not counts:
        return []
    values = np.repeat(np.array(list(counts)), np.array(list(counts.values())))
    total = int(values.size)
    summary = (f"Lengths of the {total:,} training images (task {TRIMMED}, each image up to its last step with ink): "
               f"min {values.min()}, median {np.median(values):g}, mean {values.mean():.2f}, max {values.max()} "
               f"steps; padded full input feeds every image all its steps.")
    blocks: list[tuple] = [("h3", "Lengths of the trimmed images"), ("p", summary)]
    if len(counts) <= HISTOGRAM_ROWS:
        blocks.append(("table", ["length (steps)", "images", "share"],
                       [[str(length), f"{count:,}", f"{100 * count / total:.1f} %"]
                        for length, count in sorted(counts.items())]))
    return blocks


def blocks(res: Results) -> list[tuple]:
    """The report's section: per backend, packed trimmed against padded full, then the lengths."""
    if not applies(res):
        return []
    others, table = cost_table(res)
    ms = metrics.by_name("step_ms_median")
    with_lengths = bool(table["lengths trimmed"].notna().any())  # packing=lengths: a column only where it ran
    header = ["backend", *others, "padded full (ms)", "packed trimmed (ms)", "packed ÷ padded",
              *(["lengths trimmed (ms)"] if with_lengths else []), "steps per image: padded / packed"]
    rows = [[str(r["backend"]), *(render.fmt_axis(r[a]) for a in others), ms.format(r["padded full"]),
             ms.format(r["packed trimmed"]), render.fmt_ratio(r["packed ÷ padded"]),
             *([ms.format(r["lengths trimmed"])] if with_lengths else []),
             f"{_steps(r['padded full steps'])} / {_steps(r['packed trimmed steps'])}"]
            for _, r in table.iterrows()]
    rows += [[backend, *("—" for _ in others), f"skipped: {why}", *("—" for _ in header[len(others) + 2:])]
             for backend, why in _skipped(res).items()]
    said = [sentence(str(r["backend"]), r, res) for _, r in table.iterrows()]
    out: list[tuple] = [("h2", "What packing costs"),
                        ("p", "Median training step time (every timed step of all seeds pooled) with padded full input "
                              "(packing none: all seq_len steps) and with packed trimmed input (task rows-trimmed, "
                              "packing packed: a PackedSequence of each image's own length, packed inside the timed "
                              "step). Below 1× packing pays for itself; above, its overhead costs more than the "
                              "skipped steps save.")]
    if said:
        out.append(("ul", said))
    out.append(("table", header, rows))
    return out + length_blocks(res)


def _steps(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.2f}"
