"""`python -m bench compare DIR_A DIR_B [--threshold 5%] [--out DIR]`: is B better or worse than A?

For every backend (and sweep point) ok in both, and every reported metric of bench.metrics, the
comparison (compare.md and compare.html) shows A, B, B/A, p, a flag and the test that decided it.
A change is flagged only when it is BOTH

  * beyond the threshold: |B/A - 1| > threshold (default 5 %), and
  * significant at ALPHA = 0.05 by a two-sided test on the repeated samples (which test depends on
    what the metric's values are drawn from, Metric.samples):

  * step time (samples "steps"): the run is the unit: one median per seed (runs.csv's step_ms_median),
    judged by the per-seed rules below, since the steps of one run share its caches and neighbours and
    thousands of them make tiny shifts "significant". The A and B columns stay the pooled medians of
    every timed step (as in the report). Time metrics (step time, throughputs, first step) add a
    bootstrap 95 % confidence interval of the ratio of per-run medians (bench.analysis.stats.bootstrap_ci) to
    the row's note where both sides have at least 3 seeds.
  * accuracy: both runs score the same test images (all of MNIST's), so the test is paired: McNemar's exact
    test on the images where A and B disagree, seed s of A paired with seed s of B and the discordant
    counts pooled (bench.analysis.stats.mcnemar), when both sides saved per-image correctness
    (DIR/predictions/<run_id>.npy). Older directories without those files fall back to a two-proportion
    z-test on the correct counts, seeds pooled (which overstates independence), and the row says so.
  * training and inference throughput, peak memory, first-step time: one value per seed. (Training
    throughput shares step time's clock but is judged per seed: there the run is the unit.) Mann-Whitney U when
    both sides have at least MIN_SEEDS = 4 seeds (with 3 vs 3 its smallest possible p is 0.1, so
    it could never pass); Welch's t-test with 2 or 3 seeds a side. With a single seed on a side no
    test is possible: a change beyond the threshold is flagged "inconclusive", which is shown but
    is not a regression, and the row says why. The tests are bench.analysis.stats's.

Flags: Metric.words (faster / slower for time and throughput, better / worse for accuracy and memory),
inconclusive, else unchanged. Regressions are "slower", "worse", and a backend that was ok in A but failed in B
(a newly skipped backend is shown but not a regression: skipping is a property of the machine).

Rows are matched on backend plus the axes that vary in either directory; axes that hold one
value on each side are config, and config or environment differences are listed at the top.

Exit status: 1 when any regression is flagged, 0 otherwise, 2 on bad input (one line on stderr).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from bench import config, metrics
from bench.analysis import machine, render, stats
from bench.analysis.differences import differences, hardware_differences
from bench.analysis.results import (
    Results,
    ResultsError,
    at_point,
    backend_order,
    load,
    metric_table,
    ok_runs,
    sweep_axes,
)
from bench.atomic import atomic_write_text
from bench.brief import one_line
from bench.cliargs import OneLineParser, parse
from bench.constants import TEST_IMAGES

ALPHA = 0.05
MIN_SEEDS = 4
MANN_WHITNEY, WELCH, Z_TEST, CONSTANT, NO_TEST = (
    "Mann-Whitney U", "Welch's t-test", "two-proportion z-test", "no spread", "no test")
MCNEMAR = "McNemar exact"


class Verdict(NamedTuple):
    flag: str   # faster/slower, better/worse, inconclusive or unchanged
    p: float    # two-sided p, NaN when no test was possible
    note: str   # how it was decided, with the sample counts
    test: str   # which test decided it (one of the names above)


def parse_threshold(text: str) -> float:
    """'5%' or '5' (both percent) -> 0.05."""
    try:
        value = float(text.strip().removesuffix("%"))
    except ValueError:
        raise ValueError(f"bad --threshold {text!r}: expected a percentage such as 5% or 2.5") from None
    if not 0 <= value < 100:
        raise ValueError(f"bad --threshold {text!r}: must be at least 0% and below 100%")
    return value / 100


def judge(metric: str | metrics.Metric, a: float, b: float, samples_a, samples_b, threshold: float) -> Verdict:
    """The verdict on one metric of one group."""
    metric = metrics.by_name(metric) if isinstance(metric, str) else metric
    if not (np.isfinite(a) and np.isfinite(b)) or a == 0:
        return Verdict("unchanged", np.nan, "no value to compare", NO_TEST)
    beyond = abs(b / a - 1) > threshold
    samples_a, samples_b = np.asarray(samples_a, float), np.asarray(samples_b, float)
    p, test, note = significance(metric, a, b, samples_a, samples_b)
    if np.isnan(p):
        return Verdict("inconclusive" if beyond else "unchanged", p, note, test)
    return flagged(metric, a, b, beyond, p, note, test)


def flagged(metric: metrics.Metric, a: float, b: float, beyond: bool, p: float, note: str, test: str) -> Verdict:
    """A change is flagged only when it is beyond the threshold and significant; else unchanged, saying why."""
    if beyond and p >= ALPHA:
        note += ": beyond threshold but not significant"
    if not (beyond and p < ALPHA):
        return Verdict("unchanged", p, note, test)
    improved = (b > a) == metric.higher_is_better
    return Verdict(metric.words[0] if improved else metric.words[1], p, note, test)


def significance(metric: metrics.Metric, a: float, b: float, samples_a: np.ndarray,
                 samples_b: np.ndarray) -> tuple[float, str, str]:
    """(two-sided p or NaN when no test is possible, the test's name, a note with the sample counts)."""
    n_a, n_b = len(samples_a), len(samples_b)
    if metric.samples == "images":
        images_a, images_b = max(n_a, 1) * TEST_IMAGES, max(n_b, 1) * TEST_IMAGES
        p = stats.two_proportions(a, b, images_a, images_b)
        return p, Z_TEST, f"{Z_TEST} on {images_a:,} vs {images_b:,} test images"
    if min(n_a, n_b) >= MIN_SEEDS:
        return stats.mann_whitney(samples_a, samples_b), MANN_WHITNEY, f"{MANN_WHITNEY} on {n_a} vs {n_b} seeds"
    if min(n_a, n_b) >= 2:
        if np.ptp(samples_a) == 0 and np.ptp(samples_b) == 0:  # no spread: any difference is certain
            return float(samples_a[0] == samples_b[0]), CONSTANT, f"constant over {n_a} vs {n_b} seeds"
        return stats.welch(samples_a, samples_b), WELCH, f"{WELCH} on {n_a} vs {n_b} seeds"
    return np.nan, NO_TEST, f"no test possible with {n_a} vs {n_b} seeds: run more seeds"


def _samples(res: Results, metric: metrics.Metric, key: dict) -> np.ndarray:
    """One value per ok run at `key` (backend and sweep point): the run is the unit (step time: per-run medians)."""
    return at_point(ok_runs(res.runs), key)[metric.name].dropna().to_numpy(dtype=float)


def compare(a: Results, b: Results, threshold: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(metric rows, status rows) of B against A; both keyed by backend and the union of sweep axes."""
    axes = [x for x in config.sweep_axes() if x in sweep_axes(a.runs) or x in sweep_axes(b.runs)]
    keys = ["backend", *axes]
    columns = [*keys, "metric", "a", "b", "ratio", "p", "flag", "regression", "test", "note"]
    rows = []
    for metric in metrics.reported():
        ta, tb = (metric_table(r.runs, r.steps, metric, axes) for r in (a, b))
        both = ta[[*keys, "value"]].merge(tb[[*keys, "value"]], on=keys, suffixes=("_a", "_b"))
        for _, r in both.iterrows():
            key = {k: r[k] for k in keys}
            sa, sb = (_samples(x, metric, key) for x in (a, b))
            verdict = None
            if metric.samples == "images":
                verdict = paired_accuracy(metric, a, b, key, r["value_a"], r["value_b"], threshold)
            if verdict is None:
                verdict = judge(metric, r["value_a"], r["value_b"], sa, sb, threshold)
                if metric.samples == "images":
                    verdict = verdict._replace(note=verdict.note + " (no per-image predictions on both sides: "
                                                                   "unpaired fallback)")
            if metric.words == metrics.SPEED:
                verdict = verdict._replace(note=verdict.note + interval_note(sa, sb))
            rows.append({**key, "metric": metric.name, "a": r["value_a"], "b": r["value_b"],
                         "ratio": r["value_b"] / r["value_a"] if r["value_a"] else np.nan, "p": verdict.p,
                         "flag": verdict.flag, "regression": verdict.flag in ("slower", "worse"),
                         "test": verdict.test, "note": verdict.note})
    return pd.DataFrame(rows, columns=columns), _status_changes(a, b, keys)


def paired_accuracy(metric: metrics.Metric, a: Results, b: Results, key: dict, value_a: float, value_b: float,
                    threshold: float) -> Verdict | None:
    """McNemar's exact test on per-image correctness, seeds paired by number and pooled; None when no seed
    has a predictions file on both sides (the caller falls back to the z-test)."""
    from bench import predictions
    runs_a, runs_b = at_point(ok_runs(a.runs), key), at_point(ok_runs(b.runs), key)
    by_seed_b = dict(zip(runs_b["seed"], runs_b["run_id"]))
    pairs = []
    for seed, run in zip(runs_a["seed"], runs_a["run_id"]):
        if seed not in by_seed_b:
            continue
        correct_a = predictions.load_correctness(a.dir, run)
        correct_b = predictions.load_correctness(b.dir, by_seed_b[seed])
        if correct_a is not None and correct_b is not None:
            pairs.append((correct_a, correct_b))
    if not pairs:
        return None
    result = stats.mcnemar(pairs)
    note = (f"{MCNEMAR} on {result['a_only'] + result['b_only']:,} discordant images (A only right "
            f"{result['a_only']:,}, B only {result['b_only']:,}), {result['seeds']} paired seed(s)")
    p = result["p_value"]
    if not (np.isfinite(value_a) and np.isfinite(value_b)) or value_a == 0:
        return Verdict("unchanged", np.nan, "no value to compare", NO_TEST)
    return flagged(metric, value_a, value_b, abs(value_b / value_a - 1) > threshold, p, note, MCNEMAR)


def interval_note(samples_a: np.ndarray, samples_b: np.ndarray) -> str:
    """'; B/A 95% CI [low, high] (bootstrap over per-run values)', or why there is none."""
    if len(samples_a) == 0 or len(samples_b) == 0:
        return ""
    ci = stats.bootstrap_ci(samples_a, samples_b)
    if not np.isfinite(ci["low"]):
        return "; no bootstrap interval (fewer than 3 runs a side)"
    return f"; B/A 95% CI [{ci['low']:.3f}, {ci['high']:.3f}] (bootstrap over per-run medians/values)"


def _status_changes(a: Results, b: Results, keys: list[str]) -> pd.DataFrame:
    """Groups ok on one side only: a backend that now fails must not vanish from the comparison."""
    def summary(runs):
        return runs.groupby(keys, dropna=False).agg(
            ok=("status", lambda s: (s == "ok").any()),
            status=("status",
                    lambda s: "ok" if (s == "ok").any() else "failed" if (s == "failed").any() else "skipped"),
            reason=("error", lambda e: "; ".join(sorted(set(x for x in e if x)))))
    sa, sb = summary(a.runs), summary(b.runs)
    joined = sa.reset_index().merge(sb.reset_index(), on=keys, how="outer", suffixes=("_a", "_b"))
    rows = []
    for _, r in joined.iterrows():
        status_a = r["status_a"] if isinstance(r["status_a"], str) else "absent"
        status_b = r["status_b"] if isinstance(r["status_b"], str) else "absent"
        if (status_a == "ok") == (status_b == "ok"):
            continue
        reason = r["reason_b"] if status_a == "ok" else r["reason_a"]
        rows.append({**{k: r[k] for k in keys}, "a": status_a, "b": status_b,
                     "reason": reason if isinstance(reason, str) and reason else "",
                     "regression": status_a == "ok" and status_b == "failed"})
    return pd.DataFrame(rows, columns=[*keys, "a", "b", "reason", "regression"])


# ---------------------------------------------------------------- output

def _where(row, axes) -> str:
    point = render.fmt_point({x: row[x] for x in axes}) if axes else ""
    return f"{row['backend']}" + (f" ({point})" if point else "")


def _fmt_p(p) -> str:
    return "—" if not np.isfinite(p) else ("<0.001" if p < 0.001 else f"{p:.3f}")


def summary_lines(rows: pd.DataFrame, axes: list[str]) -> list[list[str]]:
    lines = []
    for _, r in rows.iterrows():
        metric = metrics.by_name(r["metric"])
        lines.append([_where(r, axes), metric.label, metric.format(r["a"]), metric.format(r["b"]),
                      render.fmt_ratio(r["ratio"], 3, ""), _fmt_p(r["p"]),
                      r["flag"].upper() if r["regression"] else r["flag"], r["test"], r["note"]])
    return lines


HEADER = ["backend", "metric", "A", "B", "B/A", "p", "flag", "test", "how decided"]


def tests_used(rows: pd.DataFrame) -> str:
    """What decided the rows, with counts: the header must not name a test that decided nothing."""
    counts = rows["test"].value_counts()
    return "; ".join(f"{test} ({n} row{'s' if n != 1 else ''})" for test, n in counts.items()) or "none"


def missing_lines(a: Results, b: Results) -> list[list[str]]:
    """Cells planned in a side's env.json with no row there: a comparison must not pass them over."""
    lines = []
    for side, res in (("A", a), ("B", b)):
        swept = list((res.env.get("config") or {}).get("sweep") or {})
        for _, r in res.missing.iterrows():
            lines.append([side, str(r["backend"]), render.fmt_axis(r["seed"]),
                          render.fmt_point({x: r[x] for x in swept}) or "—", r["error"]])
    return lines


def build_blocks(a: Results, b: Results, rows: pd.DataFrame, status: pd.DataFrame, diffs,
                 threshold: float) -> list[tuple]:
    axes = [c for c in rows.columns if c in config.sweep_axes()]
    regressions = int(rows["regression"].sum() + status["regression"].sum())
    provenance = lambda r: (  # noqa: E731
        f"`{r.dir}` ({r.env.get('timestamp', 'time unknown')}, commit {r.env.get('git_commit', '?')})")
    blocks: list[tuple] = [("h1", "LSTM Bench comparison: B against A"), ("ul", [
        f"A: {provenance(a)}", f"B: {provenance(b)}",
        f"Threshold {threshold:.1%}; a change is flagged only when it is also significant at alpha {ALPHA} "
        f"(two-sided) by the test named in its row. Tests used here: {tests_used(rows)}. The run is the unit for "
        f"time and throughput (per-seed values; step time: per-run medians): Mann-Whitney U with at least "
        f"{MIN_SEEDS} seeds a side, Welch's t-test with 2 or 3, with a bootstrap 95% CI of B/A in the row's note "
        f"from 3 seeds a side; accuracy by McNemar's exact test on per-image correctness (paired, seeds pooled), "
        f"or a two-proportion z-test where a side has no predictions files.",
        f"**{regressions} regression(s) flagged.**" if regressions else "No regression flagged.",
        *(f"**Contended:** {w}." for w in machine.compare_warnings(a, b))])]
    blocks.append(("h2", "Differences in config and environment"))
    if diffs:
        if any(d[0].startswith("config.") for d in diffs):
            blocks.append(("p", "**The configs differ**, so part of any change may come from the config, "
                                 "not the code."))
        if hardware := hardware_differences(diffs):
            blocks.append(("p", f"**Different machines** ({', '.join(hardware)} differ): time, throughput and "
                                "memory changes compare the machines as well as the code; a flag here is not by "
                                "itself a regression in the code."))
        blocks.append(("table", ["setting", "A", "B"], [list(d) for d in diffs]))
    else:
        blocks.append(("p", "None: same config and environment (timestamps aside)."))
    blocks.append(("h2", "Backends ok on one side only"))
    blocks.append(("table", ["backend", "A", "B", "reason", "regression"],
                   [[_where(r, axes), r["a"], r["b"], r["reason"] or "—", "yes" if r["regression"] else "no"]
                    for _, r in status.iterrows()]) if len(status) else ("p", "None."))
    blocks.append(("h2", "Planned runs without a row"))
    missing = missing_lines(a, b)
    blocks.append(("table", ["side", "backend", "seed", "sweep point", "status"], missing)
                  if missing else ("p", "None."))
    blocks += [("h2", "Metrics"), ("p", "B/A above 1 means B is larger: better for throughput and accuracy, worse "
                                        "for time and memory. Step time is the median of all timed steps; the rest "
                                        "are means over seeds. Regressions are in capitals.")]
    blocks.append(("table", HEADER, summary_lines(rows, axes)) if len(rows) else ("p", "No backend is ok in both."))
    return blocks


def write_compare(dir_a, dir_b, threshold: float = 0.05, out=None) -> tuple[Path, pd.DataFrame, pd.DataFrame, list]:
    """Writes OUT/compare.md and OUT/compare.html (OUT defaults to DIR_B); returns (compare.md path,
    metric rows, status rows, differences)."""
    return write_comparison(load(dir_a), load(dir_b), threshold, out)


def write_comparison(a: Results, b: Results, threshold: float,
                     out=None) -> tuple[Path, pd.DataFrame, pd.DataFrame, list]:
    """write_compare of two loaded directories."""
    rows, status = compare(a, b, threshold)
    order = {name: i for i, name in enumerate(backend_order(pd.concat([a.runs, b.runs]), a.env))}
    metric_order = [m.name for m in metrics.reported()]
    rows = rows.assign(_o=rows["backend"].map(order), _m=rows["metric"].map(metric_order.index))
    axes = [c for c in rows.columns if c in config.sweep_axes()]
    rows = rows.sort_values(["_o", *axes, "_m"]).drop(columns=["_o", "_m"]).reset_index(drop=True)
    diffs = differences(a, b)
    blocks = build_blocks(a, b, rows, status, diffs, threshold)
    path = Path(out if out is not None else b.dir) / "compare.md"
    atomic_write_text(path, render.markdown(blocks))
    atomic_write_text(path.with_suffix(".html"), render.html(blocks, blocks[0][1]))
    return path, rows, status, diffs


def cli(argv: list[str]) -> int:
    parser = OneLineParser(prog="bench compare", description="Compare results directory B against A.")
    parser.add_argument("dir_a", help="baseline results directory")
    parser.add_argument("dir_b", help="results directory to judge")
    parser.add_argument("--threshold", default="5%", help="smallest relative change to flag, e.g. 5%% (default)")
    parser.add_argument("--out", help="where to write compare.md and compare.html (default: DIR_B)")
    args = parse(parser, argv)
    if isinstance(args, int):
        return args
    try:
        threshold = parse_threshold(args.threshold)
        a, b = load(args.dir_a), load(args.dir_b)  # each directory read once
        path, rows, status, diffs = write_comparison(a, b, threshold, args.out)
    except (ResultsError, ValueError) as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"error: cannot write compare.md: {one_line(error)}", file=sys.stderr)
        return 2
    sides = [load(d) for d in (args.dir_a, args.dir_b)]
    for side, warning in ((side, w) for side, loaded in zip("AB", sides) for w in loaded.warnings):
        print(f"warning: {side}: {warning}", file=sys.stderr)
    if diffs:
        print("Config/environment differences (A -> B): " + "; ".join(f"{k}: {va} -> {vb}" for k, va, vb in diffs))
    if hardware := hardware_differences(diffs):
        print(f"warning: A and B ran on different machines ({', '.join(hardware)}): speed changes compare machines too")
    for warning in machine.compare_warnings(*(load(d) for d in (args.dir_a, args.dir_b))):
        print(f"warning: {warning}")
    for _, r in status.iterrows():
        print(f"{r['backend']}: {r['a']} in A, {r['b']} in B" + (f" ({r['reason']})" if r["reason"] else "")
              + (" REGRESSION" if r["regression"] else ""))
    for side, backend, seed, point, why in missing_lines(a, b):
        print(f"{side}: {backend} seed {seed}" + (f" ({point})" if point != "—" else "") + f": {why}")
    axes = [c for c in rows.columns if c in config.sweep_axes()]
    if len(rows):
        print(render.text_table(HEADER[:-1], [line[:-1] for line in summary_lines(rows, axes)]))
    regressions = int(rows["regression"].sum() + status["regression"].sum())
    print(f"{regressions} regression(s) beyond {threshold:.1%}; wrote {path} and {path.with_suffix('.html')}"
          if regressions else f"no regression beyond {threshold:.1%}; wrote {path} and {path.with_suffix('.html')}")
    return 1 if regressions else 0
