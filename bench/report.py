"""`python -m bench report DIR`: tables, Markdown, HTML and plots for one results directory.

Reads only the results files (runs.csv, curves.csv, steps.csv, env.json); never imports the
backends or torch, so a report can be written anywhere the CSVs can be copied to.

Rows are grouped by backend and, when the results hold a sweep, by the sweep axis values. Every
metric table has a ratio column against the baseline backend (cudnn) at the same sweep point.
Skipped and failed runs are listed with their reasons instead of being dropped.

The report is built once as a list of blocks (headings, paragraphs, tables, images) and then
rendered twice, to Markdown and to HTML, so both always say the same thing without needing a
Markdown converter.
"""
from __future__ import annotations

import html
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from bench.cliargs import OneLineParser, parse
from bench.config import SWEEP_AXES
from bench.schema import METRICS, RUNS_FILE
from bench.storage import atomic_write_text, load_curves, load_env, load_runs, load_steps

BASELINE = "cudnn"

TITLES = {
    "test_accuracy": "Test accuracy",
    "train_samples_per_s": "Training throughput",
    "step_ms_median": "Training step time",
    "infer_samples_per_s": "Inference throughput",
    "peak_memory_bytes": "Peak memory",
    "first_step_s": "First step time",
}


class ResultsError(ValueError):
    """The directory is not something a report can be written for (exit 2 in the CLIs)."""


# ---------------------------------------------------------------- loading and grouping

def load_results(directory: str | Path) -> dict:
    """runs, curves, steps (ok and not) and env of a results directory; ResultsError if it isn't one."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ResultsError(f"{directory}: no such directory")
    if not (directory / RUNS_FILE).is_file():
        raise ResultsError(f"{directory}: not a results directory (no {RUNS_FILE}; write one with `python -m bench run`)")
    try:
        runs = load_runs(directory)
        curves, steps, env = load_curves(directory), load_steps(directory), load_env(directory)
    except (ValueError, OSError, pd.errors.ParserError) as error:
        raise ResultsError(f"{directory}: unreadable results: {error}") from None
    # run_id joins runs to curves and steps; read as text everywhere so "7" and 7 are the same run.
    for frame in (runs, curves, steps):
        frame["run_id"] = frame["run_id"].astype(str)
    return {"dir": directory, "runs": runs, "curves": curves, "steps": steps, "env": env}


def ok_runs(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["status"] == "ok"]


def sweep_axes(runs: pd.DataFrame) -> list[str]:
    """Axes whose values vary across ok rows: those are the sweep, whatever the config claims."""
    ok = ok_runs(runs)
    return [axis for axis in SWEEP_AXES if ok[axis].nunique(dropna=True) > 1]


def backend_order(runs: pd.DataFrame, env: dict | None = None) -> list[str]:
    """Backends in the config's run order, then any others by name, so tables and plots agree."""
    configured = list((env or {}).get("config", {}).get("backends", []))
    present = list(dict.fromkeys(runs["backend"].astype(str)))
    return [b for b in configured if b in present] + sorted(b for b in present if b not in configured)


def point_label(values: dict) -> str:
    return ", ".join(f"{axis}={int(value) if float(value).is_integer() else value}" for axis, value in values.items())


def step_samples(runs: pd.DataFrame, steps: pd.DataFrame, axes: list[str]) -> pd.DataFrame:
    """Per-step times of ok runs with the group columns attached (steps.csv only knows run_id)."""
    keys = ["run_id", "backend", *axes]
    if steps.empty:
        return pd.DataFrame(columns=[*keys, "step_ms"])
    return steps[["run_id", "step_ms"]].merge(ok_runs(runs)[keys], on="run_id")


# ---------------------------------------------------------------- metric tables (numbers only)

def metric_table(runs: pd.DataFrame, steps: pd.DataFrame, metric: str, axes: list[str] | None = None,
                 baseline: str = BASELINE) -> pd.DataFrame:
    """One row per backend (x sweep point) over ok runs; `value` is what the ratio and compare use.

    Step time pools every timed step of the group from steps.csv (median, p10, p90), because the
    per-run medians in runs.csv cannot be combined into percentiles. Where a group has no rows in
    steps.csv it falls back to the median of the per-run summaries and says so in `source`.
    Everything else is the mean and sample std over seeds (std is NaN for a single seed).
    """
    axes = sweep_axes(runs) if axes is None else axes
    keys = ["backend", *axes]
    ok = ok_runs(runs)
    if ok.empty:
        return pd.DataFrame(columns=[*keys, "n", "value", "ratio"])
    grouped = ok.groupby(keys, sort=True)[metric]
    table = grouped.agg(n="count", mean="mean", std="std").reset_index()
    table["value"] = table["mean"]
    if metric == "step_ms_median":
        table = _step_percentiles(ok, step_samples(runs, steps, axes), keys)
    if metric == "peak_memory_bytes":
        methods = ok.groupby(keys)["memory_method"].agg(lambda s: "; ".join(sorted(set(s.dropna().astype(str)))))
        table = table.merge(methods.rename("method").reset_index(), on=keys)
    table["ratio"] = _ratios(table, axes, baseline)
    return table


def _step_percentiles(ok: pd.DataFrame, samples: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    rows = []
    for key, group in ok.groupby(keys, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        pooled = samples
        for column, value in zip(keys, key):
            pooled = pooled[pooled[column] == value]
        row = dict(zip(keys, key), n=len(group))
        if len(pooled):
            ms = pooled["step_ms"].to_numpy(dtype=float)
            row.update(steps=len(ms), median=np.median(ms), p10=np.percentile(ms, 10), p90=np.percentile(ms, 90),
                       source="steps.csv")
        else:
            row.update(steps=0, median=group["step_ms_median"].median(), p10=group["step_ms_p10"].median(),
                       p90=group["step_ms_p90"].median(), source="runs.csv")
        rows.append(row)
    table = pd.DataFrame(rows)
    table["value"] = table["median"]
    return table


def _ratios(table: pd.DataFrame, axes: list[str], baseline: str) -> pd.Series:
    """value / baseline's value at the same sweep point; NaN where the baseline has no ok run there."""
    base = table[table["backend"] == baseline]
    if base.empty:
        return pd.Series(np.nan, index=table.index)
    if not axes:
        return table["value"] / base["value"].iloc[0]
    merged = table[axes].merge(base[[*axes, "value"]], on=axes, how="left")
    return pd.Series(table["value"].to_numpy() / merged["value"].to_numpy(), index=table.index)


def not_ok_table(runs: pd.DataFrame) -> pd.DataFrame:
    bad = runs[runs["status"] != "ok"]
    return bad[["backend", "seed", *SWEEP_AXES, "status", "error"]].reset_index(drop=True)


# ---------------------------------------------------------------- formatting

def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def fmt_value(metric: str, value) -> str:
    if _is_missing(value):
        return "—"
    if metric == "test_accuracy":
        return f"{100 * value:.2f} %"
    if metric.endswith("samples_per_s"):
        return f"{value:,.0f}"
    if metric.startswith("step_ms"):
        return f"{value:.3f}"
    if metric == "peak_memory_bytes":
        return f"{value / 2**20:,.1f}"
    return f"{value:.4f}"


def fmt_ratio(value) -> str:
    return "—" if _is_missing(value) else f"{value:.2f}×"


def unit_label(metric: str) -> str:
    return {"test_accuracy": "%", "peak_memory_bytes": "MiB"}.get(metric, METRICS[metric][1])


def rendered_metric_table(table: pd.DataFrame, metric: str, axes: list[str]) -> tuple[list[str], list[list[str]]]:
    unit = unit_label(metric)
    header = ["backend", *axes, "runs"]
    if metric == "step_ms_median":
        header += ["timed steps", f"median ({unit})", f"p10 ({unit})", f"p90 ({unit})"]
    else:
        header += [f"mean ({unit})" if unit else "mean", "std over seeds"]
    if metric == "peak_memory_bytes":
        header.append("measured as")
    header.append(f"ratio vs {BASELINE}")
    rows = []
    for _, r in table.iterrows():
        row = [str(r["backend"]), *[_fmt_axis(r[a]) for a in axes], str(int(r["n"]))]
        if metric == "step_ms_median":
            steps = f"{int(r['steps'])}" if r["source"] == "steps.csv" else "— (per-run summaries)"
            row += [steps, *(fmt_value(metric, r[c]) for c in ("median", "p10", "p90"))]
        else:
            row += [fmt_value(metric, r["mean"]), fmt_value(metric, r["std"])]
        if metric == "peak_memory_bytes":
            row.append(r["method"] or "—")
        row.append(fmt_ratio(r["ratio"]))
        rows.append(row)
    return header, rows


def _fmt_axis(value) -> str:
    return "—" if _is_missing(value) else (str(int(value)) if float(value).is_integer() else str(value))


# ---------------------------------------------------------------- the document

def build_blocks(results: dict, plot_files: dict[str, Path]) -> list[tuple]:
    runs, steps, env = results["runs"], results["steps"], results["env"]
    axes = sweep_axes(runs)
    order = backend_order(runs, env)
    blocks: list[tuple] = [("h1", f"LSTM Bench report: {results['dir'].resolve().name}")]
    counts = runs["status"].value_counts()
    blocks.append(("p", f"{len(runs)} runs: {counts.get('ok', 0)} ok, {counts.get('skipped', 0)} skipped, "
                        f"{counts.get('failed', 0)} failed. "
                        + (f"Sweep over {', '.join(axes)}; rows are grouped by backend and sweep point."
                           if axes else "No sweep axis varies; rows are grouped by backend.")))

    blocks += [("h2", "Configuration and environment"), ("table", ["setting", "value"], config_rows(env))]
    blocks += [("h3", "Backends"), ("table", *backend_summary(runs, order))]

    blocks.append(("h2", "Runs not measured (skipped and failed)"))
    bad = not_ok_table(runs)
    if bad.empty:
        blocks.append(("p", "None: every run finished."))
    else:
        blocks.append(("table", ["backend", "seed", *SWEEP_AXES, "status", "reason"],
                       [[str(r["backend"]), _fmt_axis(r["seed"]), *(_fmt_axis(r[a]) for a in SWEEP_AXES),
                         str(r["status"]), str(r["error"]) or "(no reason recorded)"] for _, r in bad.iterrows()]))

    blocks += [("h2", "Results"), ("p", baseline_note(runs))]
    for metric in METRICS:
        higher, _ = METRICS[metric]
        table = _ordered(metric_table(runs, steps, metric, axes), order, axes)
        blocks.append(("h3", f"{TITLES[metric]} ({'higher' if higher else 'lower'} is better)"))
        blocks.append(("p", METRIC_NOTES[metric]))
        if table.empty:
            blocks.append(("p", "No ok runs."))
        else:
            blocks.append(("table", *rendered_metric_table(table, metric, axes)))

    if plot_files:
        blocks.append(("h2", "Plots"))
        for name, path in plot_files.items():
            title = PLOT_TITLES.get(name) or f"Scaling with {name.removeprefix('scaling_')} (log-log)"
            blocks += [("h3", title), ("img", path.relative_to(results["dir"]).as_posix(), name)]
    return blocks


METRIC_NOTES = {
    "test_accuracy": "On all 10,000 test images; mean and sample standard deviation over seeds (— with one seed).",
    "train_samples_per_s": "Steady state: warm-up steps excluded. Mean and std over seeds.",
    "step_ms_median": "Every timed steady-state step of all seeds pooled (steps.csv): median, 10th and 90th "
                      "percentile. Ratio is of the medians.",
    "infer_samples_per_s": "Forward only, no gradients, on the test set in batches of `eval_batch_size` (see the config;"
                           " it does not follow a batch_size sweep), first batch left out as warm-up. Mean and std over seeds.",
    "peak_memory_bytes": "Mean over seeds in MiB (2^20 bytes). 'measured as' is the runner's memory_method: "
                         "numbers measured differently (e.g. CUDA allocator vs process RSS) are not comparable.",
    "first_step_s": "The first training step timed alone: compilation and autotuning show up here. Mean over seeds.",
}

PLOT_TITLES = {
    "bars": "Throughput, step time and memory per backend",
    "accuracy": "Test accuracy per backend",
    "curves": "Learning curves",
}


def _ordered(table: pd.DataFrame, order: list[str], axes: list[str]) -> pd.DataFrame:
    if table.empty:
        return table
    rank = {b: i for i, b in enumerate(order)}
    return table.assign(_rank=table["backend"].map(rank)).sort_values(["_rank", *axes]).drop(columns="_rank")


def baseline_note(runs: pd.DataFrame) -> str:
    base = runs[runs["backend"] == BASELINE]
    if (base["status"] == "ok").any():
        return (f"Ratio = value / value of the baseline `{BASELINE}` at the same sweep point (— where {BASELINE} "
                "has no ok run there). For throughput and accuracy above 1 is better; for time and memory below 1.")
    if base.empty:
        why = f"no `{BASELINE}` runs are in these results"
    else:
        reasons = "; ".join(sorted(set(f"{s}: {e}" if e else s for s, e in zip(base["status"], base["error"]))))
        why = f"every `{BASELINE}` run was skipped or failed ({reasons})"
    return f"**No ratios against the baseline:** {why}, so the ratio columns are empty (—)."


CONFIG_KEYS = ["backends", "seeds", "epochs", "batch_size", "hidden_size", "num_layers", "seq_len", "input_size",
               "lr", "device", "dtype", "train_limit", "warmup_steps", "eval_batch_size", "threads", "sweep"]
ENV_KEYS = ["timestamp", "git_commit", "python", "platform", "torch", "cuda", "cudnn", "triton", "triton_interpret",
            "gpu_names", "cpu_model", "cpu_count", "torch_threads"]


def _fmt_setting(value) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value)) or "—"
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_fmt_setting(v)}" for k, v in value.items()) or "—"
    return "—" if value is None or value == "" else str(value)


def config_rows(env: dict) -> list[list[str]]:
    if not env:
        return [["(env.json missing)", "config and environment unknown"]]
    config = env.get("config", {})
    rows = [[f"config.{k}", _fmt_setting(config[k])] for k in CONFIG_KEYS if k in config]
    rows += [[f"config.{k}", _fmt_setting(v)] for k, v in config.items() if k not in CONFIG_KEYS]
    rows += [[k, _fmt_setting(env[k])] for k in ENV_KEYS if k in env]
    rows += [[k, _fmt_setting(v)] for k, v in env.items() if k not in ENV_KEYS and k != "config"]
    return rows


def backend_summary(runs: pd.DataFrame, order: list[str]) -> tuple[list[str], list[list[str]]]:
    """What actually ran per backend: the runner records it per row, and it may differ from the config."""
    rows = []
    for backend in order:
        group = runs[runs["backend"] == backend]
        counts = group["status"].value_counts()
        ok = group[group["status"] == "ok"]
        distinct = lambda col: ", ".join(sorted(set(ok[col].dropna().astype(str)))) or "—"  # noqa: E731
        rows.append([backend, *(str(counts.get(s, 0)) for s in ("ok", "skipped", "failed")),
                     distinct("device"), distinct("dtype"), distinct("impl_detail"),
                     ", ".join(f"{int(p):,}" for p in sorted(set(ok["params"].dropna()))) or "—"])
    return ["backend", "ok", "skipped", "failed", "device", "dtype", "what ran", "parameters"], rows


# ---------------------------------------------------------------- rendering

def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: list[tuple]) -> str:
    out = []
    for kind, *args in blocks:
        if kind in ("h1", "h2", "h3"):
            out.append("#" * int(kind[1]) + " " + args[0])
        elif kind == "p":
            out.append(args[0])
        elif kind == "table":
            header, rows = args
            lines = ["| " + " | ".join(map(_md_cell, header)) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in rows]
            out.append("\n".join(lines))
        elif kind == "img":
            out.append(f"![{args[1]}]({args[0]})")
    return "\n\n".join(out) + "\n"


CSS = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
       "table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{border:1px solid #ccc;padding:.25em .6em}"
       "th{background:#f3f3f3}td{font-variant-numeric:tabular-nums}img{max-width:100%}")


def _inline_html(text: str) -> str:
    """Escapes, then renders the two bits of Markdown the paragraphs use: **bold** and `code`."""
    parts = html.escape(text).split("**")
    text = "".join(f"<strong>{p}</strong>" if i % 2 else p for i, p in enumerate(parts))
    parts = text.split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def to_html(blocks: list[tuple], title: str) -> str:
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
           f"<style>{CSS}</style></head><body>"]
    for kind, *args in blocks:
        if kind in ("h1", "h2", "h3"):
            out.append(f"<{kind}>{html.escape(args[0])}</{kind}>")
        elif kind == "p":
            out.append(f"<p>{_inline_html(args[0])}</p>")
        elif kind == "table":
            header, rows = args
            head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
            body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif kind == "img":
            out.append(f"<p><img src='{html.escape(args[0])}' alt='{html.escape(args[1])}'></p>")
    return "\n".join(out) + "\n</body></html>\n"


# ---------------------------------------------------------------- entry points

def write_report(directory: str | Path) -> Path:
    """Writes DIR/report.md, DIR/report.html and DIR/plots/*.png; returns the report.md path."""
    from bench import plots  # matplotlib is slow to import; keep it out of `import bench.report`

    results = load_results(directory)
    plot_files = plots.write_plots(results, Path(directory) / "plots")
    blocks = build_blocks(results, plot_files)
    markdown_path = Path(directory) / "report.md"
    atomic_write_text(markdown_path, to_markdown(blocks))
    atomic_write_text(Path(directory) / "report.html", to_html(blocks, blocks[0][1]))
    return markdown_path


def cli(argv: list[str]) -> int:
    parser = OneLineParser(prog="bench report", description="Write report.md, report.html and plots/ into DIR.")
    parser.add_argument("directory", help="a results directory written by `python -m bench run`")
    args = parse(parser, argv)
    if isinstance(args, int):
        return args
    try:
        path = write_report(args.directory)
    except ResultsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {path} and {path.with_suffix('.html')} (plots in {path.parent / 'plots'})")
    return 0
