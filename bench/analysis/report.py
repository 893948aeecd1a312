"""`python -m bench report DIR [--baseline BACKEND]`: tables, Markdown, HTML and plots for one results directory.

Reads results through bench.analysis.results (never the backends or torch). Opens with the answer (the headline),
then one table per metric (rows by backend and sweep point, a ratio to --baseline) and the plots; skipped and failed
runs keep their reasons.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import pandas as pd

from bench import config, metrics
from bench.analysis import headline, machine, not_measured, render, results, varlen
from bench.analysis.results import Results, ResultsError
from bench.atomic import atomic_write_text
from bench.brief import one_line
from bench.cliargs import OneLineParser, parse
from bench.constants import BASELINE, NUMERICS_IMAGES, PROFILED_STEPS, TEST_IMAGES

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
    where = f"`{render.fmt_point(point.values)}`: " if point.values else ""
    noisy = lambda b: f" (noisy: p90/p10 = {point.noisy[b]:.1f})" if b in point.noisy else ""  # noqa: E731
    text = (f"{where}**{point.fastest}** is fastest, {metric.format(point.fastest_ms)} {metric.unit} a step"
            f"{noisy(point.fastest)}")
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
    if point.slower:
        text += "; step time against it: " + ", ".join(f"{b} {ratio:.2f}×" for b, ratio in point.slower.items())
    others = [b for b in point.noisy if b != point.fastest and b not in point.tied]
    if others:
        text += "; noisy measurement: " + ", ".join(f"{b} (p90/p10 = {point.noisy[b]:.1f})" for b in others)
    text += "."
    if point.accuracy:
        low, high = min(point.accuracy.values()), max(point.accuracy.values())
        judged = "within" if point.accuracy_spread <= 2 * point.accuracy_interval else "beyond"
        text += (f" Accuracy {100 * low:.2f}–{100 * high:.2f} % (spread {100 * point.accuracy_spread:.2f} points, "
                 f"{judged} twice the ±{100 * point.accuracy_interval:.2f}-point 95 % interval of one run on "
                 f"{TEST_IMAGES:,} test images).")
    if point.off:
        text += " **Numerically off:** " + "; ".join(f"{b} ({why})" for b, why in point.off.items()) + "."
    else:
        text += " No backend looks numerically off."
    return text


def headline_blocks(res: Results, baseline: str = BASELINE) -> list[tuple]:
    points = headline.points(res, baseline)
    blocks: list[tuple] = [("h2", "Headline")]
    if not points:
        return blocks + [("p", "No backend finished a run, so there is no answer yet: "
                                "see the runs not measured below.")]
    metric = metrics.by_name("step_ms_median")
    blocks.append(("ul", [point_sentence(p, metric) for p in points]))
    if busy := machine.contention_sentence(res):
        blocks.append(("p", busy))
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
    rows += [[k, render.fmt_setting(v)] for k, v in env.items() if k not in (*ENV_KEYS, "config", "plugins")]
    return rows


def backend_summary(runs: pd.DataFrame, order: list[str]) -> tuple[list[str], list[list[str]]]:
    """What actually ran per backend: the runner records it per row, and it may differ from the config."""
    rows = []
    for backend in order:
        group = runs[runs["backend"] == backend]
        counts = group["status"].value_counts()
        ok = group[group["status"] == "ok"]
        distinct = lambda col, ok=ok: ", ".join(sorted(set(ok[col].dropna().astype(str)))) or "—"  # noqa: E731
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
    where = [str(r["backend"]) + (f" ({render.fmt_point({a: r[a] for a in axes})})" if axes else "")
             for _, r in table[table["value"].isna()].iterrows()]
    return (f"— for {', '.join(where)}: no ok run there recorded a finite value for this metric (the run was "
            "too short to measure it, e.g. no timed step after warm-up).")


# ---------------------------------------------------------------- the document

def scope_blocks(env: dict) -> list[tuple]:
    """A run on part of the training set measures speed: say so before anyone reads its accuracy as a result."""
    limit = env.get("config", {}).get("train_limit")
    if not limit:
        return []
    return [("p", f"**A speed measurement, not a converged accuracy:** training used only the first {limit:,} "
                  "images (`train_limit`), so accuracies here say that training ran, not what the model can reach.")]


def build_blocks(res: Results, plot_files: dict[str, tuple[str, Path]], baseline: str = BASELINE) -> list[tuple]:
    """plot_files: name -> (title, path), as plots.write_plots returns them."""
    axes, counts = res.axes, res.status_counts()
    blocks: list[tuple] = [("h1", f"LSTM Bench report: {res.dir.resolve().name}")]
    missing = f", {counts['missing']} not run (interrupted or still running)" if counts["missing"] else ""
    blocks.append(("p", f"{len(res.runs) + counts['missing']} runs: {counts['ok']} ok, {counts['skipped']} skipped, "
                        f"{counts['failed']} failed{missing}. "
                        + (f"Sweep over {', '.join(axes)}; rows are grouped by backend and sweep point."
                           if axes else "No sweep axis varies; rows are grouped by backend.")))

    for warning in res.warnings:  # rows outside env.json's plan: the reader must know what follows which
        blocks.append(("p", f"**Warning:** {warning}."))
    if len(machines := res.machines) > 1:
        blocks.append(("p", f"**Runs from {len(machines)} machines** ({'; '.join(machines)}): step times and "
                            "throughput below compare machines as well as backends."))
    blocks += scope_blocks(res.env) + headline_blocks(res, baseline)

    blocks += not_measured.blocks(res)

    blocks += [("h2", "Results"), ("p", baseline_note(res.runs, baseline))]
    for metric in metrics.reported():
        table = res.summary(metric, axes, baseline)
        blocks += [("h3", f"{metric.title} ({metric.direction})"), ("p", metric.note)]
        blocks.append(("table", *rendered_metric_table(table, metric, axes, baseline)) if len(table)
                      else ("p", "No ok runs."))
        if len(table) and table["value"].isna().any():
            blocks.append(("p", unmeasured_note(table, axes)))

    blocks += varlen.blocks(res) + efficiency_blocks(res, baseline) + numerics_blocks(res, baseline)
    blocks += what_ran_blocks(res) + machine.blocks(res)

    if plot_files:
        blocks.append(("h2", "Plots"))
        for name, (title, path) in plot_files.items():
            blocks += [("h3", title), ("img", path.relative_to(res.dir).as_posix(), name)]

    blocks += [("h2", "Configuration and environment"), ("table", ["setting", "value"], config_rows(res.env))]
    blocks += [("h3", "Backends"), ("table", *backend_summary(res.runs, res.backends))]
    if plugins := res.env.get("plugins"):  # backends from outside the repository: where from, which version
        blocks += [("h3", "Plugin backends"), ("table", ["backend", "from", "version", "summary"], [
            [name, f"{p.get('kind', '?')} {p.get('source', '?')}", p.get("version", "—"), p.get("summary", "")]
            for name, p in plugins.items()])]
    return blocks


# ---------------------------------------------------------------- efficiency, numerics, what ran (issue 13)

def _merged(res: Results, names: list[str], baseline: str = BASELINE) -> pd.DataFrame:
    """One row per backend (x sweep point): each metric's value (mean over seeds, or pooled median for
    step time) as a column of its name, its ratio to the baseline as NAME_ratio, and the run count."""
    axes = res.axes
    merged: pd.DataFrame | None = None
    for name in names:
        table = res.summary(name, axes, baseline)
        if table.empty:
            return table
        table = table[["backend", *axes, "n", "value", "ratio"]].rename(
            columns={"value": name, "ratio": f"{name}_ratio"})
        merged = table if merged is None else merged.merge(table.drop(columns="n"), on=["backend", *axes])
    return pd.DataFrame() if merged is None else merged  # no names: nothing to merge


def _has(res: Results, *columns: str) -> bool:
    return all(c in res.runs.columns for c in columns) and not res.ok.empty


def _group(res: Results, row) -> pd.DataFrame:
    """The ok runs behind a table row: its backend at its sweep point."""
    return results.at_point(res.ok, {"backend": row["backend"], **{axis: row[axis] for axis in res.axes}})


def _distinct(res: Results, row, column: str) -> str:
    group = _group(res, row)
    values = sorted(set(group[column].dropna().astype(str))) if column in group else []
    return "; ".join(v for v in values if v) or "—"


def _first_seed(res: Results, row, column: str) -> str:
    """The value of the group's lowest seed, labelled: a profile's top three differ a little from seed to seed,
    and all seeds' lists run together would read as one list of nine."""
    group = _group(res, row)
    group = group[group[column].notna() & (group[column].astype(str) != "")] if column in group else group.iloc[:0]
    if group.empty:
        return "—"
    first = group.sort_values("seed").iloc[0]
    return f"{first[column]} (seed {first['seed']})" if len(group) > 1 else str(first[column])


def precision_note(res: Results) -> str:
    """Which float32 applied: config.tf32 and the matmul precision the workers reported."""
    tf32 = res.env.get("config", {}).get("tf32")
    applied = ", ".join(sorted(set(res.ok["matmul_precision"].dropna().astype(str)))) \
        if "matmul_precision" in res.ok else ""
    return (f"float32: config.tf32 = {render.fmt_setting(tf32) if tf32 is not None else '— (not recorded)'} "
            "(applied in every worker to torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32; "
            "no effect on CPU); torch.get_float32_matmul_precision() in the workers: "
            f"{applied or '— (not recorded)'}.")


def efficiency_blocks(res: Results, baseline: str = BASELINE) -> list[tuple]:
    names = ["step_gflop", "step_ms_median", "achieved_gflops", "efficiency"]
    if not _has(res, *names):
        return []
    table = _merged(res, names, baseline)
    peaks = res.env.get("peak", {})
    peak_text = "; ".join(f"{dtype}: {p.get('gflops', float('nan')):,.1f} GFLOP/s"
                          + (f" ({p['shape']} on {p.get('device', '?')}, {p.get('threads', '?')} threads, "
                             f"{p['method']}" + (f"; {p['source']} {p.get('measured_at', '')}" if "source" in p else "")
                             + ")"
                             if "shape" in p else f" (not measured: {p.get('error', 'unknown')})")
                          for dtype, p in peaks.items()) or "not measured (no peak in env.json)"
    blocks: list[tuple] = [
        ("h2", "Efficiency"),
        ("p", "efficiency = achieved GFLOP/s ÷ peak GFLOP/s, where achieved = step GFLOP ÷ the median "
              "steady-state step time, and step GFLOP counts the matmul FLOPs of one full-batch training "
              "step (2·M·N·K per matmul; forward = every layer's input projection and recurrent products "
              "plus the head, backward = 2 × forward; bench.flops). Gate nonlinearities, the loss and the "
              "optimizer are not counted. Peak = the best of several timed repetitions of a large square "
              f"GEMM on this device and dtype, cached per machine (bench.peakcache): {peak_text}."),
        ("p", precision_note(res))]
    rows = [[str(r["backend"]), *(render.fmt_axis(r[a]) for a in res.axes), str(int(r["n"])),
             metrics.by_name("step_gflop").format(r["step_gflop"]),
             metrics.by_name("step_ms_median").format(r["step_ms_median"]),
             metrics.by_name("achieved_gflops").format(r["achieved_gflops"]),
             metrics.by_name("efficiency").format(r["efficiency"])] for _, r in table.iterrows()]
    header = ["backend", *res.axes, "runs", "step GFLOP", "median step (ms)", "achieved GFLOP/s", "efficiency"]
    blocks.append(("table", header, rows))
    if (table["efficiency"] > 1).any():  # the probe is the yardstick: above 1 says the yardstick is wrong
        blocks.append(("p", "**Efficiency above 100 %:** a backend beat the GEMM probe, so the probe underestimates "
                            "this device's peak for that dtype (for example bfloat16 emulated on a CPU without "
                            "bfloat16 units, where a large GEMM is slower than the small ones an RNN step runs); "
                            "read these efficiencies as relative to each other only."))
    return blocks


def numerics_blocks(res: Results, baseline: str = BASELINE) -> list[tuple]:
    names = ["out_rel_err", "grad_rel_err"]
    if not _has(res, *names):
        return []
    table = _merged(res, names, baseline)
    rows = [[str(r["backend"]), *(render.fmt_axis(r[a]) for a in res.axes), _distinct(res, r, "dtype"),
             str(int(r["n"])), metrics.by_name("out_rel_err").format(r["out_rel_err"]),
             render.fmt_ratio(r["out_rel_err_ratio"]), metrics.by_name("grad_rel_err").format(r["grad_rel_err"]),
             render.fmt_ratio(r["grad_rel_err_ratio"])] for _, r in table.iterrows()]
    header = ["backend", *res.axes, "dtype", "runs", "output rel. error", f"÷ {baseline}'s",
              "worst gradient rel. error", f"÷ {baseline}'s"]
    return [("h2", "Numerics against float64"),
            ("p", f"Before training, on the first {NUMERICS_IMAGES} test images and the run's freshly initialised "
                  "weights, at the run's dtype: the logits and every parameter gradient of the loss against the same "
                  "model in float64 on the CPU with torch.nn.LSTM (nn.GRU for the GRU family) and copied weights. "
                  "output = "
                  "‖logits − ref‖ ÷ ‖ref‖; gradient = the largest over parameters of ‖g − g_ref‖ ÷ ‖g_ref‖. "
                  f"Mean over seeds; the ratio columns divide by {baseline}'s error at the same point "
                  "(above 1: less accurate than it). " + precision_note(res)),
            ("table", header, rows)]


def what_ran_blocks(res: Results) -> list[tuple]:
    names = ["kernels_per_step", "compilations", "compile_s", "step_ms_median"]
    if not _has(res, *names, "top_kernels"):
        return []
    table = _merged(res, names + ["compiled_steps"])
    rows = [[str(r["backend"]), *(render.fmt_axis(r[a]) for a in res.axes),
             metrics.by_name("kernels_per_step").format(r["kernels_per_step"]), _first_seed(res, r, "top_kernels"),
             _distinct(res, r, "impl_detail"), metrics.by_name("compilations").format(r["compilations"]),
             metrics.by_name("compile_s").format(r["compile_s"]),
             metrics.by_name("compiled_steps").format(r["compiled_steps"]),
             metrics.by_name("step_ms_median").format(r["step_ms_median"])] for _, r in table.iterrows()]
    header = ["backend", *res.axes, "kernels / step", "top 3 (share of time)", "what ran", "compilations",
              "compile (s)", "steps that compiled", "median step (ms)"]
    return [("h2", "What ran"),
            ("p", f"After evaluation, {PROFILED_STEPS} training steps under torch.profiler (after one unprofiled "
                  "step, each the same step the run timed, gradient clipping included; outside every "
                  "timed figure, and they change the weights only after accuracy was measured): device kernels per "
                  "step on CUDA, top-level ATen ops per step on CPU, and the three names taking the most time "
                  "(self time on CPU). Compile time is the run's total time spent in torch.compile (numerics, "
                  "first training steps and the evaluation warm-up), reported apart from the steady-state step "
                  "time, which excludes it: a step after warm-up that compiled (a failed guard, e.g. a last "
                  "partial batch) is counted under steps that compiled and left out of every timed figure. "
                  "Means over seeds."),
            ("table", header, rows)]


# ---------------------------------------------------------------- entry points

def write_report(directory: str | Path, baseline: str | None = None) -> Path:
    """Writes DIR/report.md, DIR/report.html and DIR/plots/*.png; returns the report.md path. A baseline
    named by the caller must be among the directory's backends (ResultsError); None is BASELINE, if present."""
    from bench.analysis import plots  # matplotlib is slow to import; keep it out of `import bench.analysis.report`

    res = results.load(directory)
    if baseline is not None and baseline not in res.backends:
        raise ResultsError(f"--baseline {baseline!r}: no run of that backend in {directory} (its backends: "
                           f"{', '.join(res.backends) or 'none'}); the ratio columns would be empty")
    baseline = baseline or BASELINE
    plot_files = plots.write_plots(res, Path(directory) / "plots")
    blocks = build_blocks(res, plot_files, baseline)
    markdown_path = Path(directory) / "report.md"
    atomic_write_text(markdown_path, render.markdown(blocks))
    atomic_write_text(Path(directory) / "report.html", render.html(blocks, blocks[0][1]))
    return markdown_path


def cli(argv: list[str]) -> int:
    parser = OneLineParser(prog="bench report", description="Write report.md, report.html and plots/ into DIR.")
    parser.add_argument("directory", help="a results directory written by `python -m bench run`")
    parser.add_argument("--baseline", help=f"backend the ratio columns divide by (default {BASELINE})")
    args = parse(parser, argv)
    if isinstance(args, int):
        return args
    try:
        path = write_report(args.directory, args.baseline)
    except ResultsError as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 2
    except OSError as error:  # a full disk: report.md and report.html are written whole or not at all
        print(f"error: cannot write the report into {args.directory}: {one_line(error.strerror or error)}; the results "
              f"are untouched: free the space and run `bench report {args.directory}` again", file=sys.stderr)
        return 2
    for warning in results.load(args.directory).warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"wrote {path} and {path.with_suffix('.html')} (plots in {path.parent / 'plots'})")
    return 0
