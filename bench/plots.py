"""Seaborn figures for a report: one PNG per question, one fixed colour per backend everywhere.

All plots read a bench.results.Results; only ok runs are drawn (the report lists the others). The
bar and scaling plots draw every metric of bench.metrics with plot=True, in the table's order. Error bars are +-1 standard deviation over seeds (none with one seed), except step
time, whose bars span the 10th to 90th percentile of every timed step, as in the report table.
"""
from __future__ import annotations

import io
import math
import textwrap
import zlib
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, ScalarFormatter  # noqa: E402

from bench import metrics  # noqa: E402
from bench.results import Results, point_label  # noqa: E402
from bench.storage import atomic_write_bytes  # noqa: E402

# Fixed, so a backend keeps its colour across plots, reports and machines.
FIXED_COLORS = {"cudnn": "#1f77b4", "loop": "#ff7f0e", "triton": "#2ca02c", "gru": "#9467bd"}
EXTRA_COLORS = ["#d62728", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
                "#393b79", "#ad494a", "#8ca252", "#de9ed6", "#6b6ecf", "#e7969c"]


def backend_colors(backends: list[str]) -> dict[str, str]:
    """Known backends get their fixed colour; others a colour chosen by a hash of the name (so the
    same name usually gets the same colour across reports), moving on to the next free colour on a
    clash (so two backends in one report never share one)."""
    colors = {b: FIXED_COLORS[b] for b in backends if b in FIXED_COLORS}
    for backend in sorted(b for b in backends if b not in FIXED_COLORS):
        start = zlib.crc32(backend.encode())
        free = [EXTRA_COLORS[(start + i) % len(EXTRA_COLORS)] for i in range(len(EXTRA_COLORS))]
        free = [c for c in free if c not in colors.values()]
        colors[backend] = free[0] if free else sns.color_palette("husl", 24)[start % 24]
    return colors


TITLES = {
    "bars": "Throughput, step time and memory per backend",
    "accuracy": "Test accuracy per backend",
    "curves": "Learning curves",
}


def write_plots(res: Results, plot_dir: Path) -> dict[str, tuple[str, Path]]:
    """Draws every plot the results allow; returns {name: (title, path)} in the order the report shows them."""
    ok = res.ok.copy()
    if ok.empty:
        return {}
    axes = res.axes
    order = [b for b in res.backends if b in set(ok["backend"])]
    colors = backend_colors(res.backends)
    ok["point"] = _points(ok, axes)
    files = {
        "bars": (TITLES["bars"], _save(_bars(ok, res.step_samples(axes), axes, order, colors), plot_dir / "bars.png")),
        "accuracy": (TITLES["accuracy"], _save(_accuracy(ok, axes, order, colors), plot_dir / "accuracy.png")),
    }
    curves = _curves_of_ok_runs(res.curves, ok, axes)
    if not curves.empty:
        files["curves"] = (TITLES["curves"], _save(_curves(curves, axes, order, colors), plot_dir / "curves.png"))
    if "efficiency" in ok and ok["efficiency"].notna().any():
        files["efficiency"] = ("Efficiency against the measured peak", _save(_efficiency(ok, axes, order, colors),
                                                                             plot_dir / "efficiency.png"))
    for axis in axes:
        figure = _scaling(ok, axis, [a for a in axes if a != axis], order, colors)
        files[f"scaling_{axis}"] = (f"Scaling with {axis} (log-log)", _save(figure, plot_dir / f"scaling_{axis}.png"))
    return files


def _grid(count: int):
    """Two panels a row, as many rows as the plotted metrics need; spare panels are hidden."""
    rows = max(1, math.ceil(count / 2))
    fig, grid = plt.subplots(rows, 2, figsize=(12, 4 * rows), squeeze=False)
    for ax in grid.flat[count:]:
        ax.set_visible(False)
    return fig, list(grid.flat[:count])


def _save(fig, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _points(frame: pd.DataFrame, axes: list[str]) -> pd.Series:
    """Sweep point labels for tick marks: one axis per line, so several axes still fit under a bar group."""
    if not axes:
        return pd.Series("", index=frame.index)
    return frame.apply(lambda r: "\n".join(point_label({a: r[a]}) for a in axes), axis=1)


def _point_order(frame: pd.DataFrame, axes: list[str]) -> list[str]:
    return list(dict.fromkeys(frame.sort_values(axes)["point"])) if axes else [""]


def _plain_log_ticks(axis) -> None:
    """Log axes labelled 0.3, 0.5, 1, 2 rather than 3x10^-1; call after plotting (reads the span).
    The shorter the span, the more multiples get a label, or a short span would show one or none."""
    low, high = axis.get_view_interval()
    span = high / low if low > 0 else np.inf
    subs = (1, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8, 9) if span < 4 else (1, 2, 3, 5, 7) if span < 30 else (1, 2, 5)
    axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.6g}"))
    axis.set_minor_formatter(NullFormatter())


def _legend(fig, order: list[str], colors: dict[str, str], marker: str = "s") -> None:
    handles = [Line2D([], [], color=colors[b], marker=marker, linestyle="-" if marker == "o" else "",
                      markersize=9, label=b) for b in order]
    fig.legend(handles=handles, title="backend", loc="upper left", bbox_to_anchor=(1.0, 0.95), frameon=False)


def _bars(ok, samples, axes, order, colors):
    """Grouped bars: x is the backend, or the sweep point with one bar per backend in it."""
    plotted = metrics.plotted()
    fig, panels = _grid(len(plotted))
    x = "point" if axes else "backend"
    x_order = _point_order(ok, axes) if axes else order
    samples = samples.assign(point=_points(samples, axes)) if len(samples) else samples
    for ax, metric in zip(panels, plotted):
        title = f"{metric.title} ({metric.direction})"
        if metric.samples == "steps" and len(samples):
            data, y, est, err = samples.assign(y=samples["step_ms"] * metric.scale), "y", "median", ("pi", 80)
            title += "\nbar: median of all timed steps; whiskers: p10 to p90"
        else:
            data, y, est, err = ok.assign(y=ok[metric.name] * metric.scale), "y", "mean", "sd"
            title += "\nbar: mean over seeds; whiskers: ±1 sd (none with one seed)"
        if metric.method_column:
            methods = sorted(set(ok[metric.method_column].dropna().astype(str)))
            title += "\n" + textwrap.shorten("measured as: " + "; ".join(methods), 70)
        sns.barplot(data=data, x=x, y=y, hue="backend", order=x_order, hue_order=order, palette=colors,
                    estimator=est, errorbar=err, capsize=0.15, err_kws={"linewidth": 1.2}, legend=False, ax=ax)
        ax.set(title=title, ylabel=metric.unit, xlabel=" / ".join(axes) if axes else "")
        ax.set_ylim(bottom=0)  # every metric drawn is non-negative; a noisy sd whisker must not suggest otherwise
        ax.title.set_fontsize(10)
    fig.suptitle("Per backend" + (" and sweep point" if axes else ""), fontsize=13)
    _legend(fig, order, colors)
    fig.tight_layout()
    return fig


def _accuracy(ok, axes, order, colors):
    """Points, not bars: accuracies sit near 1, where bars from 0 would hide every difference."""
    has_sweep = bool(axes)
    fig, ax = plt.subplots(figsize=(min(14, max(6, 1.2 * len(order) * ok["point"].nunique())), 4.5))
    data = ok.assign(acc=100 * ok["test_accuracy"])
    x = "point" if has_sweep else "backend"
    x_order = _point_order(ok, axes) if has_sweep else order
    sns.stripplot(data=data, x=x, y="acc", hue="backend", order=x_order, hue_order=order, palette=colors,
                  dodge=has_sweep, alpha=0.45, size=6, jitter=0.05, legend=False, ax=ax)
    # stripplot dodges hue levels across 0.8 of a slot; this spacing puts each mean on its dots.
    sns.pointplot(data=data, x=x, y="acc", hue="backend", order=x_order, hue_order=order, palette=colors,
                  dodge=0.8 - 0.8 / len(order) if has_sweep else False, errorbar="sd", capsize=0.06,
                  err_kws={"linewidth": 1.5}, linestyle="none", markers="D", legend=False, ax=ax)
    ax.set(title="Test accuracy on 10,000 images (higher is better)\n"
                 "diamond: mean over seeds, whiskers: ±1 sd (none with one seed)\ndots: single seeds",
           ylabel="test accuracy (%)", xlabel="")
    ax.title.set_fontsize(10)
    _legend(fig, order, colors)
    fig.tight_layout()
    return fig


def _curves_of_ok_runs(curves: pd.DataFrame, ok: pd.DataFrame, axes: list[str]) -> pd.DataFrame:
    if curves.empty:
        return curves
    return curves[["run_id", "step", "loss", "elapsed_s"]].merge(ok[["run_id", "backend", "seed", "point", *axes]],
                                                                   on="run_id")


def _curves(curves, axes, order, colors):
    """Loss against step (mean +-1 sd band over seeds) and against wall time (mean over seeds:
    seeds log at the same steps but not the same seconds, so time is averaged per step too)."""
    points = _point_order(curves, axes)
    # Backends that compute the same thing (cudnn and loop from one seed) trace the same curve;
    # earlier backends are drawn wider so a line hidden under another still shows at its edges.
    widths = {b: max(1.2, 3.5 - 0.8 * i) for i, b in enumerate(order)}
    fig, grid = plt.subplots(len(points), 2, figsize=(12, 3.6 * len(points)), squeeze=False)
    for row, point in zip(grid, points):
        data = curves[curves["point"] == point]
        hues = [b for b in order if b in set(data["backend"])]
        sns.lineplot(data=data, x="step", y="loss", hue="backend", hue_order=hues, palette=colors,
                     size="backend", sizes=widths, errorbar="sd", legend=False, ax=row[0])
        by_step = data.groupby(["backend", "step"], as_index=False)[["elapsed_s", "loss"]].mean()
        sns.lineplot(data=by_step, x="elapsed_s", y="loss", hue="backend", hue_order=hues, palette=colors,
                     size="backend", sizes=widths, estimator=None, legend=False, ax=row[1])
        where = f" ({point.replace(chr(10), ', ')})" if point else ""
        row[0].set(title=f"Training loss by step{where}\nline: mean over seeds, band: ±1 sd",
                   xlabel="optimizer step", ylabel="training loss (log scale)", yscale="log")
        row[1].set(title=f"Training loss by wall time{where}\nmean over seeds",
                   xlabel="training time (s)", ylabel="training loss (log scale)", yscale="log")
        for ax in row:
            ax.title.set_fontsize(10)
            _plain_log_ticks(ax.yaxis)
    _legend(fig, order, colors, marker="o")
    fig.tight_layout()
    return fig


def _scaling(ok, axis, others, order, colors):
    """Metric against one sweep axis on log-log axes; other swept axes become line styles."""
    plotted = metrics.plotted()
    fig, panels = _grid(len(plotted))
    data = ok.assign(other=_points(ok, others)) if others else ok.assign(other="")
    values = sorted(set(data[axis].astype(float)))
    for ax, metric in zip(panels, plotted):
        sns.lineplot(data=data.assign(y=data[metric.name] * metric.scale), x=axis, y="y", hue="backend", hue_order=order,
                     palette=colors, style="other" if others else None, markers=bool(others), dashes=bool(others),
                     marker=None if others else "o", errorbar="sd", err_style="bars",
                     legend=bool(others) and ax is panels[-1], ax=ax)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(values)
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        _plain_log_ticks(ax.yaxis)
        ax.set(title=f"{metric.title} against {axis} (log-log)", xlabel=axis, ylabel=f"{metric.unit} (log scale)")
        ax.title.set_fontsize(10)
    if others:  # seaborn's legend repeats the backends and sits on the data; keep only the styles, outside
        handles, labels = panels[-1].get_legend_handles_labels()
        start = labels.index("other") + 1
        panels[-1].get_legend().remove()
        fig.legend(handles[start:], labels[start:], title="line style", loc="upper left",
                   bbox_to_anchor=(1.0, 0.6), frameon=False)
    fig.suptitle(f"Scaling with {axis}: mean over seeds, whiskers ±1 sd (none with one seed)", fontsize=13)
    _legend(fig, order, colors, marker="o")
    fig.tight_layout()
    return fig


def _efficiency(ok, axes, order, colors):
    """Achieved GFLOP/s as a percentage of the device's peak GEMM, per backend (mean over seeds)."""
    has_sweep = bool(axes)
    fig, ax = plt.subplots(figsize=(min(14, max(6, 1.2 * len(order) * ok["point"].nunique())), 4.5))
    data = ok.assign(pct=100 * ok["efficiency"])
    x = "point" if has_sweep else "backend"
    sns.barplot(data=data, x=x, y="pct", hue="backend", order=_point_order(ok, axes) if has_sweep else order,
                hue_order=order, palette=colors, errorbar="sd", legend=False, ax=ax)
    ax.set(title="Efficiency: achieved matmul GFLOP/s ÷ peak GEMM GFLOP/s (higher is better)\n"
                 "bars: mean over seeds, whiskers: ±1 sd (none with one seed)",
           ylabel="efficiency (% of peak)", xlabel="")
    ax.title.set_fontsize(10)
    _legend(fig, order, colors)
    fig.tight_layout()
    return fig
