"""Seaborn figures for a report: one PNG per question, one fixed colour per backend everywhere.

All plots read a bench.analysis.results.Results; only ok runs are drawn, but a skipped or failed backend keeps
its slot in the bar and accuracy plots, labelled with the reason. The bar and scaling plots draw every
metric of bench.metrics with plot=True, in the table's order. Error bars are ±1 standard deviation over
seeds (none with one seed, and the subtitles say so), except step time, whose bars span the 10th to
90th percentile of every timed step on a log axis, and accuracy, whose whiskers are the binomial
interval over the test images. step_times.png shows every step's time as an ECDF.
"""
from __future__ import annotations

import math
import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D
from matplotlib.ticker import NullFormatter, ScalarFormatter

from bench import metrics
from bench.analysis.figures import (
    backend_colors,
    bar_label,
    label_missing,
    legend,
    panel_grid,
    plain_log_ticks,
    point_labels,
    point_order,
    save,
    seed_note,
    slot_note,
    slot_x,
)
from bench.analysis.results import Results
from bench.constants import TEST_IMAGES

TITLES = {
    "bars": "Throughput, step time and memory per backend",
    "accuracy": "Test accuracy per backend",
    "curves": "Learning curves",
    "step_times": "Distribution of training step times",
}


def write_plots(res: Results, plot_dir: Path) -> dict[str, tuple[str, Path]]:
    """Draws every plot the results allow; returns {name: (title, path)} in the order the report shows them."""
    ok = res.ok.copy()
    if ok.empty:
        return {}
    axes = res.axes
    order = [b for b in res.backends if b in set(ok["backend"])]
    colors = backend_colors(res.backends, res.env)
    ok["point"] = point_labels(ok, axes)
    slots = list(res.backends)  # skipped and failed backends keep their slot, labelled with the reason
    missing = _missing(res.runs, ok, axes, slots)
    samples = res.step_samples(axes)
    files = {
        "bars": (TITLES["bars"], save(_bars(ok, samples, axes, slots, colors, missing), plot_dir / "bars.png")),
        "accuracy": (TITLES["accuracy"], save(_accuracy(ok, axes, slots, colors, missing), plot_dir / "accuracy.png")),
    }
    if len(samples):
        files["step_times"] = (TITLES["step_times"], save(_step_times(samples, axes, order, colors),
                                                           plot_dir / "step_times.png"))
    curves = _curves_of_ok_runs(res.curves, ok, axes)
    if not curves.empty:
        files["curves"] = (TITLES["curves"], save(_curves(curves, axes, order, colors), plot_dir / "curves.png"))
    if "efficiency" in ok and ok["efficiency"].notna().any():
        files["efficiency"] = ("Efficiency against the measured peak", save(_efficiency(ok, axes, order, colors),
                                                                             plot_dir / "efficiency.png"))
    for axis in axes:
        numeric = _numeric(ok[axis])
        absent = {} if numeric else _absent_values(res.runs, ok, axis)
        figure = _scaling(ok, axis, [a for a in axes if a != axis], order, colors, numeric, absent)
        title = f"Scaling with {axis}" + (" (log-log)" if numeric else " (categories; log y)")
        files[f"scaling_{axis}"] = (title, save(figure, plot_dir / f"scaling_{axis}.png"))
    return files


def _numeric(column: pd.Series) -> bool:
    return bool(pd.to_numeric(column, errors="coerce").notna().all())


def _missing(runs: pd.DataFrame, ok: pd.DataFrame, axes: list[str], slots: list[str]) -> dict:
    """(point label, backend) -> why that slot has no ok run, for every slot of the plots' grid."""
    points = point_order(ok, axes)
    bad = runs[runs["status"] != "ok"].copy()
    bad["point"] = point_labels(bad, axes) if len(bad) else ""
    have = set(zip(ok["point"], ok["backend"]))
    out = {}
    for point in points:
        for backend in slots:
            if (point, backend) in have:
                continue
            rows = bad[(bad["backend"] == backend) & ((bad["point"] == point) if axes else True)]
            reason = f"{rows['status'].iloc[0]}: {rows['error'].iloc[0]}" if len(rows) else "no run"
            out[(point, backend)] = reason
    return out


def _bars(ok, samples, axes, slots, colors, missing):
    """Grouped bars: x is the backend, or the sweep point with one bar per backend in it. Step time is on
    a log axis (one slow backend must not flatten the others); every bar carries its value."""
    plotted = metrics.plotted()
    fig, panels = panel_grid(len(plotted))
    x = "point" if axes else "backend"
    x_order = point_order(ok, axes) if axes else slots
    samples = samples.assign(point=point_labels(samples, axes)) if len(samples) else samples
    seeds_text = seed_note(ok)
    for ax, metric in zip(panels, plotted):
        title = f"{metric.title} ({metric.direction})"
        log = metric.samples == "steps"
        err: str | tuple[str, int]  # seaborn's errorbar: a name, or (method, level)
        if metric.samples == "steps" and len(samples):
            data, y, est, err = samples.assign(y=samples["step_ms"] * metric.scale), "y", "median", ("pi", 80)
            title += "\nbar: median of all timed steps; whiskers: p10 to p90; log scale"
        else:
            data, y, est, err = ok.assign(y=ok[metric.name] * metric.scale), "y", "mean", "sd"
            title += f"\nbar: mean over seeds; {seeds_text}"
        if metric.method_column:
            methods = sorted(set(ok[metric.method_column].dropna().astype(str)))
            title += "\n" + textwrap.shorten("measured as: " + "; ".join(methods), 70)
        sns.barplot(data=data, x=x, y=y, hue="backend", order=x_order, hue_order=slots, palette=colors,
                    estimator=est, errorbar=err, capsize=0.15, err_kws={"linewidth": 1.2}, legend=False, ax=ax)
        for bars in ax.containers:  # inside the bar, where no whisker or title can cover it
            ax.bar_label(bars, fmt=bar_label, fontsize=7, label_type="center", rotation=90 if axes else 0,
                         bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.8})
        drawn = np.array([*(v for line in ax.lines for v in np.asarray(line.get_ydata(), dtype=float)),
                          *(bar.get_height() for bars in ax.containers for bar in bars)], dtype=float)
        drawn = drawn[np.isfinite(drawn) & (drawn > 0)]
        top = drawn.max() if len(drawn) else 1.0
        if log:  # from well below the shortest bar, so every bar keeps a visible length
            ax.set_yscale("log")
            ax.set_ylim((drawn.min() if len(drawn) else 0.5) / 2, top * 1.3)
            plain_log_ticks(ax.yaxis)
        else:
            ax.set_ylim(0, top * 1.08)  # every metric drawn is non-negative
        ax.set(title=title, ylabel=metric.unit + (" (log scale)" if log else ""),
               xlabel=" / ".join(axes) if axes else "")
        ax.title.set_fontsize(10)
        ax.tick_params(axis="x", labelrotation=25)  # eight backend names side by side would run into each other
        label_missing(ax, missing, x_order, slots, dodge=bool(axes))
    fig.suptitle("Per backend" + (" and sweep point" if axes else ""), fontsize=13)
    legend(fig, slots, colors)
    fig.tight_layout()
    return fig


MIN_ACCURACY_SPAN = 5.0  # percentage points: the accuracy axis never zooms in further than this


def _accuracy(ok, axes, slots, colors, missing):
    """Each backend's mean accuracy with the 95 % binomial interval of its test images (seeds x TEST_IMAGES),
    and each seed as a dot; the axis spans at least MIN_ACCURACY_SPAN points, so noise looks like noise."""
    has_sweep = bool(axes)
    x_order = point_order(ok, axes) if has_sweep else slots
    fig, ax = plt.subplots(figsize=(min(14, max(7, 1.1 * len(slots) * len(x_order))), 5))
    group = ok.groupby(["point", "backend"])["test_accuracy"]
    lows, highs = [], []
    for (point, backend), values in group:
        n_images = TEST_IMAGES * len(values)
        p = float(values.mean())
        half = 1.96 * math.sqrt(max(p * (1 - p), 0.25 / n_images) / n_images)  # never a zero-width interval
        x = slot_x(x_order.index(point if has_sweep else backend), slots.index(backend), len(slots), has_sweep)
        ax.errorbar([x], [100 * p], yerr=[[100 * half]], fmt="D", color=colors[backend], markersize=7, capsize=5,
                    linewidth=1.5)
        ax.scatter([x + 0.06] * len(values), 100 * values, color=colors[backend], alpha=0.45, s=18)
        ax.annotate(f"{100 * p:.2f}", (x, 100 * (p + half)), textcoords="offset points", xytext=(0, 4),
                    ha="center", fontsize=8)
        lows.append(100 * min(p - half, values.min()))
        highs.append(100 * max(p + half, values.max()))
    low, high = min(lows), max(highs)
    pad = max(0.0, MIN_ACCURACY_SPAN - (high - low)) / 2 + 0.1 * (high - low)
    low, high = max(0.0, low - pad), min(100.0, high + pad)
    if high - low < MIN_ACCURACY_SPAN:  # pressed against 0 or 100: widen on the open side
        low, high = ((max(0.0, high - MIN_ACCURACY_SPAN), high) if high >= 100
                     else (low, min(100.0, low + MIN_ACCURACY_SPAN)))
    ax.set_ylim(low, high)
    ax.set_xticks(range(len(x_order)), [label or "" for label in x_order])
    ax.set_xlim(-0.6, len(x_order) - 0.4)
    label_missing(ax, missing, x_order, slots, dodge=has_sweep)
    ax.set(title=f"Test accuracy on {TEST_IMAGES:,} images (higher is better)\n"
                 "diamond: mean over seeds; whiskers: 95 % binomial interval over the test images "
                 f"(seeds × {TEST_IMAGES:,}); dots: single seeds\n"
                 f"the axis spans at least {MIN_ACCURACY_SPAN:g} points, so differences inside the whiskers look small",
           ylabel="test accuracy (%)", xlabel=" / ".join(axes) if axes else "")
    ax.title.set_fontsize(10)
    legend(fig, slots, colors)
    fig.tight_layout()
    return fig


def _curves_of_ok_runs(curves: pd.DataFrame, ok: pd.DataFrame, axes: list[str]) -> pd.DataFrame:
    if curves.empty:
        return curves
    return curves[["run_id", "step", "loss", "elapsed_s"]].merge(ok[["run_id", "backend", "seed", "point", *axes]],
                                                                   on="run_id")


SPARSE_CURVE = 20  # curve points per run below which each point is marked
DASHES = ["", (5, 2), (1.5, 1.5), (6, 2, 1.5, 2), (3, 1), (8, 3)]


def _curves(curves, axes, order, colors):
    """Loss against step (mean over seeds, ±1 sd band when there are seeds to spread) and against wall
    time. Every line has the same width; backends that trace the same curve (cudnn and loop from one
    seed) stay visible through their dash patterns, which the legend shows."""
    points = point_order(curves, axes)
    several = curves.groupby(["backend", "point"])["seed"].nunique().max() > 1
    dashes = {b: DASHES[i % len(DASHES)] for i, b in enumerate(order)}
    # A short run has one or two curve points (16 steps at curve_every 10): a line through one point draws
    # nothing, so sparse curves get markers.
    marker = "o" if curves.groupby("run_id").size().max() < SPARSE_CURVE else None
    fig, grid = plt.subplots(len(points), 2, figsize=(13, 4.8 * len(points)), squeeze=False)
    for row, point in zip(grid, points):
        data = curves[curves["point"] == point]
        hues = [b for b in order if b in set(data["backend"])]
        sns.lineplot(data=data, x="step", y="loss", hue="backend", hue_order=hues, palette=colors, style="backend",
                     style_order=hues, dashes=dashes, linewidth=1.8, errorbar="sd" if several else None,
                     marker=marker, legend=False, ax=row[0])
        by_step = data.groupby(["backend", "step"], as_index=False)[["elapsed_s", "loss"]].mean()
        sns.lineplot(data=by_step, x="elapsed_s", y="loss", hue="backend", hue_order=hues, palette=colors,
                     style="backend", style_order=hues, dashes=dashes, linewidth=1.8, estimator=None, marker=marker,
                     legend=False, ax=row[1])
        where = f" ({point.replace(chr(10), ', ')})" if point else ""
        spread = "line: mean over seeds, band: ±1 sd" if several else "one seed per backend: no band"
        row[0].set(title=f"Training loss by step{where}\n{spread}",
                   xlabel="optimizer step", ylabel="training loss (log scale)", yscale="log")
        row[1].set(title=f"Training loss by wall time{where}\n" + ("mean over seeds" if several else "one seed"),
                   xlabel="training time (s)", ylabel="training loss (log scale)", yscale="log")
        for ax in row:
            ax.title.set_fontsize(11)
            ax.tick_params(labelsize=10)
            plain_log_ticks(ax.yaxis)
    handles = [Line2D([], [], color=colors[b], linewidth=1.8, dashes=dashes[b] or (None, None), marker=marker,
                      label=b) for b in order]
    fig.legend(handles=handles, title="backend", loc="upper left", bbox_to_anchor=(1.0, 0.95), frameon=False,
               handlelength=3.5)
    fig.tight_layout()
    return fig


def _step_times(samples, axes, order, colors):
    """ECDF of every timed step per backend, log time axis: tails and two-speed runs show as steps in the curve."""
    samples = samples.assign(point=point_labels(samples, axes))
    points = point_order(samples, axes)
    columns = min(2, len(points))
    rows = math.ceil(len(points) / columns)
    fig, grid = plt.subplots(rows, columns, figsize=(6.5 * columns, 4.5 * rows), squeeze=False)
    for ax in grid.flat[len(points):]:
        ax.set_visible(False)
    for ax, point in zip(grid.flat, points):
        data = samples[samples["point"] == point]
        hues = [b for b in order if b in set(data["backend"])]
        sns.ecdfplot(data=data, x="step_ms", hue="backend", hue_order=hues, palette=colors, log_scale=True,
                     linewidth=1.8, legend=False, ax=ax)
        for level in (0.1, 0.5, 0.9):
            ax.axhline(level, color="#bbb", linewidth=0.8, linestyle=":", zorder=0)
        where = point.replace(chr(10), ", ")
        ax.set(title=(where + "\n" if where else "") + "fraction of timed steps at or below a time",
               xlabel="training step time (ms, log scale)", ylabel="fraction of steps")
        ax.title.set_fontsize(10)
        plain_log_ticks(ax.xaxis)
    fig.suptitle("Step time distribution per backend (every timed step of all seeds; dotted: p10, median, p90)",
                 fontsize=12)
    legend(fig, order, colors, marker="o")
    fig.tight_layout()
    return fig


def _absent_values(runs: pd.DataFrame, ok: pd.DataFrame, axis: str) -> dict[str, str]:
    """Planned values of a category axis (dtype, task) without one ok run -> why (the first row's reason), in
    plan order: float16 on a CPU keeps its place on the axis instead of vanishing from it."""
    absent = {}
    for value in dict.fromkeys(runs[axis].astype(str)):
        if value not in set(ok[axis].astype(str)):
            rows = runs[runs[axis].astype(str) == value]
            absent[value] = f"{rows['status'].iloc[0]}: {rows['error'].iloc[0]}" if len(rows) else "no run"
    return absent


def _scaling(ok, axis, others, order, colors, numeric=True, absent=None):
    """Metric against one sweep axis: log-log for a numeric axis, categories (log y) for dtype or task;
    other swept axes become line styles. Categories are not joined by lines (nothing lies between float32
    and bfloat16), and `absent` ones ({value: why}) keep their place, labelled."""
    absent = absent or {}
    plotted = metrics.plotted()
    fig, panels = panel_grid(len(plotted))
    data = ok.assign(other=point_labels(ok, others)) if others else ok.assign(other="")
    seeds = ok.groupby(["backend", "point"])["seed"].nunique().max() > 1
    if numeric:
        data = data.assign(**{axis: data[axis].astype(float)})
        values = sorted(set(data[axis]))
    else:
        values = list(dict.fromkeys(data[axis].astype(str))) + list(absent)
        data = data.assign(**{axis: pd.Categorical(data[axis].astype(str), categories=values, ordered=True)})
    for ax, metric in zip(panels, plotted):
        frame = data.assign(y=data[metric.name] * metric.scale)
        if numeric:
            sns.lineplot(data=frame, x=axis, y="y", hue="backend", hue_order=order, palette=colors,
                         style="other" if others else None, markers=bool(others), dashes=bool(others),
                         marker=None if others else "o", errorbar="sd" if seeds else None, err_style="bars",
                         legend=bool(others) and ax is panels[-1], ax=ax)
            ax.set_xscale("log", base=2)
            ax.set_xticks(values)
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_formatter(NullFormatter())
        else:
            sns.pointplot(data=frame, x=axis, y="y", hue="backend", hue_order=order, palette=colors,
                          order=values, dodge=0.3, errorbar="sd" if seeds else None, markers="o",
                          linestyles="none", legend=False, ax=ax)
            for value, why in absent.items():
                slot_note(ax, values.index(value), why)
        if (frame["y"] > 0).any():  # a metric no run measured (all NaN, e.g. one test batch) cannot be log-scaled
            ax.set_yscale("log")
            plain_log_ticks(ax.yaxis)
        kind = "log-log" if numeric else "log y"
        ax.set(title=f"{metric.title} against {axis} ({kind})", xlabel=axis, ylabel=f"{metric.unit} (log scale)")
        ax.title.set_fontsize(10)
    if others and numeric:  # seaborn's legend repeats the backends and sits on the data; keep only the styles
        handles, labels = panels[-1].get_legend_handles_labels()
        start = labels.index("other") + 1
        panels[-1].get_legend().remove()
        fig.legend(handles[start:], labels[start:], title="line style", loc="upper left",
                   bbox_to_anchor=(1.0, 0.6), frameon=False)
    spread = "whiskers ±1 sd over seeds" if seeds else "one seed per point: no whiskers"
    pooled = f"; other axes ({', '.join(others)}) pooled" if others and not numeric else ""
    fig.suptitle(f"Scaling with {axis}: mean over seeds, {spread}{pooled}", fontsize=13)
    legend(fig, order, colors, marker="o")
    fig.tight_layout()
    return fig


def _efficiency(ok, axes, order, colors):
    """Achieved GFLOP/s as a percentage of the device's peak GEMM, per backend (mean over seeds)."""
    has_sweep = bool(axes)
    fig, ax = plt.subplots(figsize=(min(14, max(6, 1.2 * len(order) * ok["point"].nunique())), 4.5))
    data = ok.assign(pct=100 * ok["efficiency"])
    x = "point" if has_sweep else "backend"
    sns.barplot(data=data, x=x, y="pct", hue="backend", order=point_order(ok, axes) if has_sweep else order,
                hue_order=order, palette=colors, errorbar="sd", legend=False, ax=ax)
    ax.set(title="Efficiency: achieved matmul GFLOP/s ÷ peak GEMM GFLOP/s (higher is better)\n"
                 "bars: mean over seeds, whiskers: ±1 sd (none with one seed)",
           ylabel="efficiency (% of peak)", xlabel="")
    ax.title.set_fontsize(10)
    legend(fig, order, colors)
    fig.tight_layout()
    return fig
