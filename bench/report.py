"""`python -m bench report DIR [--baseline BACKEND]`: tables, Markdown, HTML and plots for one results directory.

Reads the results through bench.results (never the backends or torch), so a report can be written
anywhere the CSVs can be copied to.

The report opens with the answer (bench.headline: per sweep point the fastest backend, its speed-up,
what is within noise of it, the accuracy spread, anything numerically off), then the tables and plots,
and ends with the configuration and environment. Rows are grouped by backend and, when the results hold a sweep, by the sweep axis values. Every
metric table (one per reported metric of bench.metrics) has a ratio column against the baseline
backend (--baseline, default cudnn) at the same sweep point. Skipped and failed runs are listed with
their reasons instead of being dropped. The document is a list of blocks, rendered by bench.render.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import pandas as pd

from bench import config, headline, metrics, render, results
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
            row += [steps, metric.format(r["median"]) + noisy_note(r["p10"], r["p90"]),
                    *(metric.format(r[c]) for c in ("p10", "p90"))]
        else:
            row += [metric.format(r["mean"]), metric.format(r["std"])]
        if metric.method_column:
            row.append(r["method"] or "—")
        row.append(render.fmt_ratio(r["ratio"]))
        rows.append(row)
    return header, rows


def noisy_note(p10: float, p90: float) -> str:
    """Said next to a step time whose steps spread widely: the number is less sure than it looks."""
    ratio = headline.spread(p10, p90)
    return f" (noisy: p90/p10 = {ratio:.1f})" if ratio > headline.NOISY_SPREAD else ""


def point_sentence(point: headline.Point, metric: metrics.Metric) -> str:
    """One sweep point's answer, in words."""
    where = f"`{results.point_label(point.values)}`: " if point.values else ""
    noisy = lambda b: f" (noisy: p90/p10 = {point.noisy[b]:.1f})" if b in point.noisy else ""  # noqa: E731
    text = f"{where}**{point.fastest}** is fastest, {metric.format(point.fastest_ms)} {metric.unit} a step{noisy(point.fastest)}"
    if point.fastest == point.baseline:
        text += " (it is the baseline)"
    elif math.isnan(point.speedup):
        text += f"; no `{point.baseline}` run here to compare with"
    else:
        text += f", {point.speedup:.2f}× the speed of `{point.baseline}`"
    if point.tied:
        text += "; within noise of it: " + ", ".join(f"**{b}**{noisy(b)}" for b in point.tied)
    else:
        text += "; no other backend is within noise of it"
    others = [b for b in point.noisy if b != point.fastest and b not in point.tied]
    if others:
        text += "; noisy measurement: " + ", ".join(f"{b} (p90/p10 = {point.noisy[b]:.1f})" for b in others)
    text += "."
    if point.accuracy:
        low, high = min(point.accuracy.values()), max(point.accuracy.values())
        judged = "within" if point.accuracy_spread <= 2 * point.accuracy_interval else "beyond"
        text += (f" Accuracy {100 * low:.2f}–{100 * high:.2f} % (spread {100 * point.accuracy_spread:.2f} points, "
                 f"{judged} twice the ±{100 * point.accuracy_interval:.2f}-point 95 % interval of one run on "
                 f"{headline.TEST_IMAGES:,} test images).")
    if point.off:
        text += " **Numerically off:** " + "; ".join(f"{b} ({why})" for b, why in point.off.items()) + "."
    else:
        text += " No backend looks numerically off."
    return text


def headline_blocks(res: Results, baseline: str = BASELINE) -> list[tuple]:
    points = headline.points(res, baseline)
    blocks: list[tuple] = [("h2", "Headline")]
    if not points:
        return blocks + [("p", "No backend finished a run, so there is no answer yet: see the runs not measured below.")]
    metric = metrics.by_name("step_ms_median")
    blocks.append(("ul", [point_sentence(p, metric) for p in points]))
    blocks.append(("p", "How this is decided: fastest = lowest median training step time (every timed step of "
                        "all seeds pooled); speed-up = the baseline's median / the fastest's; *within noise* = a "
                        "median no higher than the fastest backend's own 90th percentile (the difference is smaller "
                        f"than its step-to-step jitter); *noisy* = p90/p10 above {headline.NOISY_SPREAD:g}; "
                        f"*numerically off* = failed with a non-finite loss, accuracy more than "
                        f"{100 * headline.OFF_ACCURACY:g} points below the median backend's (with three or more "
                        f"backends), or a gradient error over {headline.OFF_ERROR_FACTOR}× the baseline's where "
                        "runs.csv records one. GRU is a different model, so its accuracy may differ by design."))
    return blocks


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


# ---------------------------------------------------------------- the document

def build_blocks(res: Results, plot_files: dict[str, tuple[str, Path]], baseline: str = BASELINE) -> list[tuple]:
    """plot_files: name -> (title, path), as plots.write_plots returns them."""
    axes, counts = res.axes, res.status_counts()
    blocks: list[tuple] = [("h1", f"LSTM Bench report: {res.dir.resolve().name}")]
    blocks.append(("p", f"{len(res.runs)} runs: {counts['ok']} ok, {counts['skipped']} skipped, "
                        f"{counts['failed']} failed. "
                        + (f"Sweep over {', '.join(axes)}; rows are grouped by backend and sweep point."
                           if axes else "No sweep axis varies; rows are grouped by backend.")))

    blocks += headline_blocks(res, baseline)

    blocks.append(("h2", "Runs not measured (skipped and failed)"))
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

    if plot_files:
        blocks.append(("h2", "Plots"))
        for name, (title, path) in plot_files.items():
            blocks += [("h3", title), ("img", path.relative_to(res.dir).as_posix(), name)]

    blocks += [("h2", "Configuration and environment"), ("table", ["setting", "value"], config_rows(res.env))]
    blocks += [("h3", "Backends"), ("table", *backend_summary(res.runs, res.backends))]
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
