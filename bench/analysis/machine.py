"""The machine under the numbers: whether other work ran beside the runs (contention), where the memory
goes, where the wall time goes. Read by report.py (headline sentence and sections) and compare.py (a
warning per side); no torch. The columns come from bench.contention, bench.memory and bench.walltime;
results written before they existed have them empty, and these sections say nothing about such rows.
"""
from __future__ import annotations

import math

import pandas as pd

from bench import metrics
from bench.analysis import render
from bench.analysis.results import Results, ok_runs


def point_label(values: dict) -> str:
    return ", ".join(f"{axis}={render.fmt_axis(value)}" for axis, value in values.items())


def contended_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The ok rows marked contended (an older row, with no mark, is not counted either way)."""
    ok = ok_runs(runs)
    if "contended" not in ok.columns:
        return ok.iloc[:0]
    return ok[ok["contended"].map(lambda v: v is True or v == "True")]


def _where(row, axes: list[str]) -> str:
    point = point_label({a: row[a] for a in axes}) if axes else ""
    return f"{row['backend']} seed {row['seed']}" + (f" ({point})" if point else "")


def _share(row) -> str:
    parts = []
    if pd.notna(row.get("cpu_share")):
        parts.append(f"cpu share {100 * row['cpu_share']:.0f} %")
    if pd.notna(row.get("others_cores")):
        parts.append(f"other work {row['others_cores']:.2f} cores")
    if row.get("gpu_shared") is True:
        parts.append("another process on the GPU")
    return ", ".join(parts)


def contention_sentence(res: Results) -> str | None:
    """The headline's warning when any ok run shared the machine, naming them; None when none did."""
    busy = contended_runs(res.runs)
    if busy.empty:
        return None
    named = "; ".join(f"{_where(r, res.axes)}: {_share(r)}" for _, r in busy.head(6).iterrows())
    more = f"; and {len(busy) - 6} more" if len(busy) > 6 else ""
    return (f"**These times were taken while other work ran:** {len(busy)} of {len(ok_runs(res.runs))} runs shared "
            f"the machine ({named}{more}). Their step times, throughputs and efficiencies are slower and noisier "
            "than this machine can do, and comparisons between them carry the neighbours' noise; "
            "`bench run --quiet-machine` waits for a quiet machine before each run.")


def compare_warnings(a: Results, b: Results) -> list[str]:
    """One line per side of a comparison that holds contended runs."""
    lines = []
    for side, res in (("A", a), ("B", b)):
        busy = contended_runs(res.runs)
        if len(busy):
            names = ", ".join(sorted({_where(r, res.axes) for _, r in busy.iterrows()}))
            lines.append(f"{side}: {len(busy)} of {len(ok_runs(res.runs))} run(s) were contended (other work ran: "
                         f"{names}); time and throughput changes involving them may be the neighbours, not the code")
    return lines


def _fmt(name: str, value) -> str:
    return metrics.by_name(name).format(value) if value is not None and pd.notna(value) else "—"


def contention_blocks(res: Results) -> list[tuple]:
    ok = ok_runs(res.runs)
    if "cpu_share" not in ok.columns or ok["cpu_share"].isna().all():
        return []
    columns = ["cpu_share", "others_cores", "load_start", "load_end", "quiet_wait_s"]
    rows = [[_where(r, res.axes), *(_fmt(c, r.get(c)) for c in columns),
             "yes" if r.get("gpu_shared") is True else "no" if r.get("gpu_shared") is False else "—",
             "**yes**" if r.get("contended") is True else "no"] for _, r in ok.iterrows()]
    header = ["run", "cpu share", "other work (cores)", "load before", "load after", "waited for quiet (s)",
              "GPU shared", "contended"]
    return [("h2", "The machine during the runs"),
            ("p", "Measured around each run's training loop (bench.contention): cpu share = of the CPU time the run's "
                  "threads were ready to use, the share they got (schedstat run ÷ (run + run-queue wait)); other "
                  "work = cores' worth of CPU used by other processes meanwhile; load = the 1-minute load average. "
                  "Contended = cpu share below 80 %, other work above 0.5 cores, or another process on the GPU."),
            ("table", header, rows)]


def memory_blocks(res: Results) -> list[tuple]:
    names = ["peak_tensor_bytes", "saved_for_backward_bytes", "param_bytes", "optimizer_bytes", "rss_growth_bytes"]
    ok = ok_runs(res.runs)
    if any(n not in ok.columns for n in names) or ok["peak_tensor_bytes"].isna().all():
        return []
    group = ["backend", *res.axes]
    means = ok.groupby(group, sort=False)[names].mean().reset_index()
    rows = [[str(r["backend"]), *(render.fmt_axis(r[a]) for a in res.axes), *(_fmt(n, r[n]) for n in names)]
            for _, r in means.iterrows()]
    header = ["backend", *res.axes, "peak tensor (MiB)", "saved for backward (MiB)", "parameters (MiB)",
              "optimizer state (MiB)", "RSS growth (MiB, secondary)"]
    return [("h2", "Where the memory goes"),
            ("p", "Peak tensor memory = parameters + optimizer state + the most bytes allocated at once during "
                  "steady-state training steps (activations, gradients, temporaries), counted by PyTorch's "
                  "allocator, so the C library's page reuse does not enter it (bench.memory). Saved for backward "
                  "is the part of the activations autograd keeps for the backward pass. RSS growth is the "
                  "process's resident-set growth, shown for reference only. Means over seeds."),
            ("table", header, rows)]


def time_blocks(res: Results) -> list[tuple]:
    names = ["startup_s", "numerics_s", "train_time_s", "eval_time_s", "memory_s", "profile_s", "wall_time_s"]
    ok = ok_runs(res.runs)
    if any(n not in ok.columns for n in names) or ok["numerics_s"].isna().all():
        return []
    rows = [[_where(r, res.axes), *(_fmt(n, r[n]) for n in names)] for _, r in ok.iterrows()]
    header = ["run", "startup (s)", "numerics (s)", "training (s)", "evaluation (s)", "memory probe (s)",
              "profiling (s)", "in the worker (s)"]
    blocks = [("h2", "Where the wall time goes"), ("table", header, rows)]
    for wall in res.env.get("wall_time", []):
        blocks.append(("p", invocation_sentence(wall)))
    return blocks


def invocation_sentence(wall: dict) -> str:
    first = wall.get("to_first_run_s")
    return (f"`bench run` started {wall.get('process_start', '?')}: {wall.get('total_s', math.nan):.1f} s in all, of "
            f"which training and evaluation {wall.get('training_and_evaluation_s', math.nan):.1f} s and the harness "
            f"{wall.get('harness_s', math.nan):.1f} s (to the first run "
            + (f"{first:.1f} s" if first is not None else "—")
            + f"; the GEMM peak probe {wall.get('peak_probe_s', math.nan):.1f} s).")


def blocks(res: Results) -> list[tuple]:
    """The report's sections on the machine: memory, contention, where the time went."""
    return memory_blocks(res) + contention_blocks(res) + time_blocks(res)
