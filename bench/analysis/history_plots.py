"""The figures of `bench history`: one PNG per backend, one row of panels per machine: median step time
over commits with its p10-p90 band (one line per configuration point, log scale), test accuracy and
peak memory beside it. Regressions and improvements found are marked on the step-time line."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from bench.analysis.figures import plain_log_ticks as _plain_log_ticks
from bench.analysis.figures import save as _save
from bench.analysis.history_report import ACCURACY, MEMORY, STEP, short
from bench.analysis.plots import MIN_ACCURACY_SPAN

MARKS = {"regression": ("^", "#d62728"), "improvement": ("v", "#2ca02c")}


def write_plots(table: pd.DataFrame, plot_dir: Path) -> dict[str, Path]:
    """{backend: path of its figure}, in the table's backend order."""
    return {backend: _save(_figure(table[table["backend"] == backend], backend),
                           plot_dir / f"history_{_file_name(backend)}.png")
            for backend in dict.fromkeys(table["backend"])}


def _file_name(backend: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in backend)


def _figure(rows: pd.DataFrame, backend: str):
    machines = sorted(set(rows["machine"]))
    points = list(dict.fromkeys(rows["point"]))
    colors = dict(zip(points, sns.color_palette("tab10" if len(points) <= 10 else "husl", len(points))))
    commits = max(len(set(rows.loc[rows["machine"] == m, "commit"])) for m in machines)
    width = min(18.0, 12.0 + 0.4 * commits)
    fig, grid = plt.subplots(len(machines), 3, figsize=(width, 3.8 * len(machines)), squeeze=False,
                             gridspec_kw={"width_ratios": [2, 1, 1]})
    for panels, machine in zip(grid, machines):
        _machine_row(panels, rows[rows["machine"] == machine], machine, points, colors)
    fig.suptitle(f"{backend} over commits (left to right: commit order)", fontsize=13)
    fig.tight_layout()
    if len(points) > 1:  # under the panels, in columns: beside them, long labels squeezed the panels thin
        handles = [plt.Line2D([], [], color=colors[p], marker="o", label=p) for p in points]
        fig.legend(handles=handles, title="configuration", loc="upper center", bbox_to_anchor=(0.5, 0.0),
                   ncol=2 if len(points) > 3 else 1, frameon=False, fontsize=8)
    return fig


def _machine_row(panels, rows: pd.DataFrame, machine: str, points: list[str], colors: dict) -> None:
    commits = _commit_order(rows)
    x_of = {commit: i for i, commit in enumerate(commits)}
    step, accuracy, memory = panels
    for point in points:
        series = rows[rows["point"] == point]
        if series.empty:
            continue
        x = [x_of[c] for c in series["commit"]]
        color = colors[point]
        step.plot(x, series["median"], marker="o", color=color, linewidth=1.6)
        step.fill_between(x, series["p10"], series["p90"], color=color, alpha=0.2, linewidth=0)
        if len(x) == 1:  # a band needs two commits; one commit shows its spread as a whisker
            step.errorbar(x, series["median"],
                          yerr=[series["median"] - series["p10"], series["p90"] - series["median"]],
                          color=color, capsize=4, linewidth=1)
        for verdict, (marker, mark_color) in MARKS.items():
            hit = series[series["verdict"] == verdict] if "verdict" in series else series.iloc[:0]
            step.scatter([x_of[c] for c in hit["commit"]], hit["median"] * 1.08, marker=marker, s=80,
                         color=mark_color, zorder=5, label=verdict)
        accuracy.plot(x, series["accuracy"] * ACCURACY.scale, marker="o", color=color, linewidth=1.4)
        memory.plot(x, series["memory"] * MEMORY.scale, marker="o", color=color, linewidth=1.4)
    step.set_yscale("log")
    _plain_log_ticks(step.yaxis)
    step.set(title=f"{machine}\n{STEP.title}: median, band p10–p90 (▲ regression, ▼ improvement)",
             ylabel=f"{STEP.unit} (log scale)")
    _accuracy_span(accuracy, rows["accuracy"] * ACCURACY.scale)
    memory.set_ylim(bottom=0)  # from zero: a flat 100 MiB must not look like a swing between 96 and 104
    accuracy.set(title=f"{ACCURACY.title} (mean over runs; axis spans ≥ {MIN_ACCURACY_SPAN:g} points)",
                 ylabel=ACCURACY.unit)
    memory.set(title=f"{MEMORY.title} (mean over runs)", ylabel=MEMORY.unit)
    labels = [short(c) for c in commits]
    for ax in panels:
        ax.set_xticks(range(len(commits)), labels, rotation=30 if len(commits) > 3 else 0, ha="right"
                      if len(commits) > 3 else "center", fontsize=8)
        ax.set_xlim(-0.5, len(commits) - 0.5)
        ax.set_xlabel("commit")
        ax.title.set_fontsize(10)


def _commit_order(rows: pd.DataFrame) -> list[str]:
    """The machine's commits in the history's order: commit time (else run time), then run time."""
    stamp = lambda moment: moment.timestamp() if moment else float("-inf")  # noqa: E731
    keys: dict[str, tuple[float, float, str]] = {}
    for _, row in rows.iterrows():
        key = (stamp(row["commit_time"] or row["run_time"]), stamp(row["run_time"]), row["commit"])
        keys[row["commit"]] = min(keys.get(row["commit"], key), key)
    return sorted(keys, key=lambda commit: keys[commit])


def _accuracy_span(ax, values: pd.Series) -> None:
    """At least MIN_ACCURACY_SPAN points around the values, as in the report: a 0.3-point wobble between two
    commits is noise of 10,000 test images, and a zoomed axis drew it as a cliff."""
    values = values.dropna()
    if values.empty:
        return
    middle = (values.min() + values.max()) / 2
    half = max(MIN_ACCURACY_SPAN, values.max() - values.min()) / 2 * 1.1
    low, high = max(0.0, middle - half), min(100.0, middle + half)
    ax.set_ylim(low, max(high, low + MIN_ACCURACY_SPAN))
