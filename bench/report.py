"""`python -m bench report DIR [--baseline BACKEND]`: tables, Markdown, HTML and plots for one results directory.

Reads the results through bench.results (never the backends or torch), so a report can be written
anywhere the CSVs can be copied to.

Rows are grouped by backend and, when the results hold a sweep, by the sweep axis values. Every
metric table (one per reported metric of bench.metrics) has a ratio column against the baseline
backend (--baseline, default cudnn) at the same sweep point. Skipped and failed runs are listed with
their reasons instead of being dropped. The document is a list of blocks, rendered by bench.render.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from bench import config, metrics, render, results
from bench.cliargs import OneLineParser, parse
from bench.results import BASELINE, Results, ResultsError
from bench.storage import atomic_write_text

ENV_KEYS = ["timestamp", "git_commit", "python", "platform", "torch", "cuda", "cudnn", "triton", "triton_interpret",
            "gpu_names", "cpu_model", "cpu_count", "torch_threads"]


# ---------------------------------------------------------------- tables

def rendered_metric_table(table: pd.DataFrame, metric: metrics.Metric, axes: list[str],
                          baseline: str = BASELINE) -> tuple[list[str], list[list[str]]]:
    unit = metric.unit
    pooled = metric.samples == "steps"
    header = ["backend", *axes, "runs"]
    if pooled:
        header += ["timed steps", f"median ({unit})", f"p10 ({unit})", f"p90 ({unit})"]
    else:
        header += [f"mean ({unit})" if unit else "mean", "std over seeds"]
    if metric.method_column:
        header.append("measured as")
    header.append(f"ratio vs {baseline}")
    rows = []
    for _, r in table.iterrows():
        row = [str(r["backend"]), *[render.fmt_axis(r[a]) for a in axes], str(int(r["n"]))]
        if pooled:
            steps = f"{int(r['steps'])}" if r["source"] == "steps.csv" else "— (per-run summaries)"
            row += [steps, *(metric.format(r[c]) for c in ("median", "p10", "p90"))]
        else:
            row += [metric.format(r["mean"]), metric.format(r["std"])]
        if metric.method_column:
            row.append(r["method"] or "—")
        row.append(render.fmt_ratio(r["ratio"]))
        rows.append(row)
    return header, rows


def config_rows(env: dict) -> list[list[str]]:
    """Settings in the config table's order (then keys an older version saved), then the environment."""
    if not env:
        return [["(env.json missing)", "config and environment unknown"]]
    saved = env.get("config", {})
    known = config.setting_keys()
    rows = [[f"config.{k}", render.fmt_setting(saved[k])] for k in known if k in saved]
    rows += [[f"config.{k}", render.fmt_setting(v)] for k, v in saved.items() if k not in known]
    rows += [[k, render.fmt_setting(env[k])] for k in ENV_KEYS if k in env]
    rows += [[k, render.fmt_setting(v)] for k, v in env.items() if k not in ENV_KEYS and k != "config"]
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


def baseline_note(runs: pd.DataFrame, baseline: str = BASELINE) -> str:
    base = runs[runs["backend"] == baseline]
    if (base["status"] == "ok").any():
        return (f"Ratio = value / value of the baseline `{baseline}` at the same sweep point (— where {baseline} "
                "has no ok run there). For throughput and accuracy above 1 is better; for time and memory below 1.")
    if base.empty:
        why = f"no `{baseline}` runs are in these results"
    else:
        reasons = "; ".join(sorted(set(f"{s}: {e}" if e else s for s, e in zip(base["status"], base["error"]))))
        why = f"every `{baseline}` run was skipped or failed ({reasons})"
    return f"**No ratios against the baseline:** {why}, so the ratio columns are empty (—)."


def unmeasured_note(table: pd.DataFrame, axes: list[str]) -> str:
    """Why a cell shows — : its ok runs recorded no finite value (too few timed steps, one test batch)."""
    where = [str(r["backend"]) + (f" ({results.point_label({a: r[a] for a in axes})})" if axes else "")
             for _, r in table[table["value"].isna()].iterrows()]
    return (f"— for {', '.join(where)}: no ok run there recorded a finite value for this metric (the run was "
            "too short to measure it, e.g. no timed step after warm-up).")


# ---------------------------------------------------------------- the document

def build_blocks(res: Results, plot_files: dict[str, tuple[str, Path]], baseline: str = BASELINE) -> list[tuple]:
    """plot_files: name -> (title, path), as plots.write_plots returns them."""
    axes, counts = res.axes, res.status_counts()
    blocks: list[tuple] = [("h1", f"LSTM Bench report: {res.dir.resolve().name}")]
    missing = f", {counts['missing']} not run (interrupted or still running)" if counts["missing"] else ""
    blocks.append(("p", f"{len(res.runs) + counts['missing']} runs: {counts['ok']} ok, {counts['skipped']} skipped, "
                        f"{counts['failed']} failed{missing}. "
                        + (f"Sweep over {', '.join(axes)}; rows are grouped by backend and sweep point."
                           if axes else "No sweep axis varies; rows are grouped by backend.")))

    blocks += [("h2", "Configuration and environment"), ("table", ["setting", "value"], config_rows(res.env))]
    blocks += [("h3", "Backends"), ("table", *backend_summary(res.runs, res.backends))]

    blocks.append(("h2", "Runs not measured (skipped, failed, not run)"))
    bad, every_axis = res.not_ok, list(config.sweep_axes())
    if bad.empty:
        blocks.append(("p", "None: every run finished."))
    else:
        blocks.append(("table", ["backend", "seed", *every_axis, "status", "reason"],
                       [[str(r["backend"]), render.fmt_axis(r["seed"]), *(render.fmt_axis(r[a]) for a in every_axis),
                         str(r["status"]), str(r["error"]) or "(no reason recorded)"] for _, r in bad.iterrows()]))

    blocks += [("h2", "Results"), ("p", baseline_note(res.runs, baseline))]
    for metric in metrics.reported():
        table = res.summary(metric, axes, baseline)
        blocks += [("h3", f"{metric.title} ({metric.direction})"), ("p", metric.note)]
        blocks.append(("table", *rendered_metric_table(table, metric, axes, baseline)) if len(table)
                      else ("p", "No ok runs."))
        if len(table) and table["value"].isna().any():
            blocks.append(("p", unmeasured_note(table, axes)))

    if plot_files:
        blocks.append(("h2", "Plots"))
        for name, (title, path) in plot_files.items():
            blocks += [("h3", title), ("img", path.relative_to(res.dir).as_posix(), name)]
    return blocks


# ---------------------------------------------------------------- entry points

def write_report(directory: str | Path, baseline: str = BASELINE) -> Path:
    """Writes DIR/report.md, DIR/report.html and DIR/plots/*.png; returns the report.md path."""
    from bench import plots  # matplotlib is slow to import; keep it out of `import bench.report`

    res = results.load(directory)
    plot_files = plots.write_plots(res, Path(directory) / "plots")
    blocks = build_blocks(res, plot_files, baseline)
    markdown_path = Path(directory) / "report.md"
    atomic_write_text(markdown_path, render.markdown(blocks))
    atomic_write_text(Path(directory) / "report.html", render.html(blocks, blocks[0][1]))
    return markdown_path


def cli(argv: list[str]) -> int:
    parser = OneLineParser(prog="bench report", description="Write report.md, report.html and plots/ into DIR.")
    parser.add_argument("directory", help="a results directory written by `python -m bench run`")
    parser.add_argument("--baseline", default=BASELINE,
                        help=f"backend the ratio columns divide by (default {BASELINE})")
    args = parse(parser, argv)
    if isinstance(args, int):
        return args
    try:
        path = write_report(args.directory, args.baseline)
    except ResultsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {path} and {path.with_suffix('.html')} (plots in {path.parent / 'plots'})")
    return 0
