"""What every plot shares: one fixed colour per backend, panels, sweep-point labels, log ticks, legends,
notes in empty slots, and saving a figure atomically. The figures themselves are in bench.analysis.plots.
"""
from __future__ import annotations

import io
import math
import textwrap
import zlib
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from bench.analysis.render import fmt_point
from bench.atomic import atomic_write_bytes
from impls.registry import REGISTRY

# For backends the registry gives no colour (a plugin, or a name from an older results directory).
EXTRA_COLORS = ["#d62728", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
                "#393b79", "#ad494a", "#8ca252", "#de9ed6", "#6b6ecf", "#e7969c"]


def registered_color(backend: str, env: dict | None = None) -> str:
    """The backend's colour in the registry (impls.registry), else the colour a plugin declared in the results'
    env.json ("plugins"); "" when neither gives one."""
    entry = REGISTRY.get(backend)
    declared = ((env or {}).get("plugins") or {}).get(backend) or {}
    return (entry.color if entry else "") or declared.get("color", "")


def backend_colors(backends: list[str], env: dict | None = None) -> dict[str, str]:
    """A registered or declared colour where there is one (registered_color), so a backend keeps its colour across
    plots, reports and machines; others a colour chosen by a hash of the name (so the same name usually gets the
    same colour across reports), moving on to the next free colour on a clash (so two backends in one report never
    share one). `env`: the results' env.json, whose "plugins" may give a plugin backend's colour."""
    colors = {b: registered_color(b, env) for b in backends if registered_color(b, env)}
    for backend in sorted(b for b in backends if b not in colors):
        start = zlib.crc32(backend.encode())
        free = [EXTRA_COLORS[(start + i) % len(EXTRA_COLORS)] for i in range(len(EXTRA_COLORS))]
        free = [c for c in free if c not in colors.values()]
        colors[backend] = free[0] if free else sns.color_palette("husl", 24)[start % 24]
    return colors


def slot_x(x_index: int, hue_index: int, hues: int, dodge: bool) -> float:
    """Where seaborn puts a hue level's bar inside a category (dodged over 0.8 of the slot)."""
    return x_index - 0.4 + 0.8 * (hue_index + 0.5) / hues if dodge else x_index


def label_missing(ax, missing: dict, x_order: list[str], slots: list[str], dodge: bool) -> None:
    """Writes the reason, vertically, into every empty slot, so a skipped backend is not simply absent."""
    for (point, backend), reason in missing.items():
        x_index = x_order.index(point) if dodge else x_order.index(backend)
        x = slot_x(x_index, slots.index(backend), len(slots), dodge)
        slot_note(ax, x, f"{backend} {reason}")


def slot_note(ax, x: float, text: str) -> None:
    """Why a slot is empty, written up it from the bottom; short and clipped: a long reason ran out of the
    axes across the panel titles (the report has it whole)."""
    ax.text(x, 0.03, textwrap.shorten(text, 38, placeholder=" …"), rotation=90, ha="center", va="bottom",
            fontsize=7, color="#555", transform=ax.get_xaxis_transform(), clip_on=True)


def seed_note(ok: pd.DataFrame) -> str:
    return "one seed per backend: no spread over seeds to draw" if ok["seed"].nunique() < 2 and \
        ok.groupby(["backend", "point"])["seed"].nunique().max() < 2 else "whiskers: ±1 sd over seeds"


def panel_grid(count: int):
    """Two panels a row, as many rows as the plotted metrics need; spare panels are hidden."""
    rows = max(1, math.ceil(count / 2))
    fig, grid = plt.subplots(rows, 2, figsize=(12, 4 * rows), squeeze=False)
    for ax in grid.flat[count:]:
        ax.set_visible(False)
    return fig, list(grid.flat[:count])


def save(fig, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def point_labels(frame: pd.DataFrame, axes: list[str]) -> pd.Series:
    """Sweep point labels for tick marks: one axis per line, so several axes still fit under a bar group."""
    if not axes:
        return pd.Series("", index=frame.index)
    return frame.apply(lambda r: "\n".join(fmt_point({a: r[a]}) for a in axes), axis=1)


def point_order(frame: pd.DataFrame, axes: list[str]) -> list[str]:
    return list(dict.fromkeys(frame.sort_values(axes)["point"])) if axes else [""]


def plain_log_ticks(axis) -> None:
    """Log axes labelled 0.3, 0.5, 1, 2 rather than 3x10^-1; call after plotting (reads the span).
    The shorter the span, the more multiples get a label, or a short span would show one or none."""
    low, high = axis.get_view_interval()
    span = high / low if low > 0 else np.inf
    subs = (1, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8, 9) if span < 4 else (1, 2, 3, 5, 7) if span < 30 else (1, 2, 5)
    axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.6g}"))
    axis.set_minor_formatter(NullFormatter())


def legend(fig, order: list[str], colors: dict[str, str], marker: str = "s") -> None:
    handles = [Line2D([], [], color=colors[b], marker=marker, linestyle="-" if marker == "o" else "",
                      markersize=9, label=b) for b in order]
    fig.legend(handles=handles, title="backend", loc="upper left", bbox_to_anchor=(1.0, 0.95), frameon=False)


def bar_label(value: float) -> str:
    """A bar's label: three significant figures, thousands separated."""
    if not np.isfinite(value):
        return ""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
