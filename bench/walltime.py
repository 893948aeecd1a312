"""Where a `bench run` invocation's wall time goes: env.json's "wall_time" (one entry per invocation) and
one printed line.

    to_first_run_s   from the process's start (its creation time) to the first run's first line of work:
                     imports, the data check (or load), the worker server, any wait for a quiet machine
    training_and_evaluation_s   the runs' own training loops and evaluations (train_time_s + eval_time_s)
    harness_s        total_s minus that: everything the harness adds around the work
    in_runs          the runs' startup_s (a local isolated worker's read of MNIST included), numerics_s, memory_s,
                     profile_s and quiet_wait_s, summed
    between_runs_s   the cells' time outside every run's wall_time_s, startup_s and quiet wait: a worker's exit,
                     results coming back, rows written
    peak_probe_s     the GEMM peak measured after the cells (0 when this machine's figure was cached)
The report (--report) is written after this summary and is not in it.
"""
from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bench import atomic
from bench.schema import ENV_FILE

IN_RUNS = ("startup_s", "numerics_s", "memory_s", "profile_s", "quiet_wait_s")


def invocation_started() -> float:
    """When this `bench run` began: the process's creation when it is the command-line program (its interpreter
    start and imports count), else now (called from another program, a test: that process is older)."""
    main = sys.modules.get("__main__")
    program = getattr(getattr(main, "__spec__", None), "name", None) == "bench.__main__" or \
        Path(sys.argv[0]).name == "lstm-bench"
    if program:
        try:
            import psutil
            return psutil.Process().create_time()
        except Exception:  # no psutil or no /proc: from now instead
            pass
    return time.time()


class Clock:
    """Named instants of one invocation, as Unix times, from `process_start` (invocation_started)."""

    def __init__(self, start: float | None = None) -> None:
        self.marks = {"process_start": invocation_started() if start is None else start}

    def mark(self, name: str) -> None:
        self.marks[name] = time.time()


def _sum(rows: list[dict], column: str) -> float:
    return sum(float(r[column]) for r in rows if r.get(column) not in (None, "") and r[column] == r[column])


def summary(marks: dict[str, float], handed: dict[str, dict], rows: list[dict]) -> dict:
    start, end = marks["process_start"], marks.get("end", time.time())
    ok = [r for r in rows if r.get("status") == "ok"]
    work = _sum(ok, "train_time_s") + _sum(ok, "eval_time_s")
    started = [h["started"] for h in handed.values() if h.get("started") is not None]
    cells_s = marks.get("cells_end", end) - marks.get("cells_start", start)
    inside = sum(_sum(ok, column) for column in ("wall_time_s", "startup_s", "quiet_wait_s"))
    return {"process_start": datetime.fromtimestamp(start, UTC).isoformat(timespec="seconds"),
            "to_first_run_s": round(min(started) - start, 3) if started else None, "cells_s": round(cells_s, 3),
            "peak_probe_s": round(end - marks.get("cells_end", end), 3), "total_s": round(end - start, 3),
            "training_and_evaluation_s": round(work, 3), "harness_s": round(end - start - work, 3),
            "in_runs": {column: round(_sum(ok, column), 3) for column in IN_RUNS}, "runs": len(rows),
            "between_runs_s": round(cells_s - inside, 3)}


def line(wall: dict) -> str:
    runs = wall["in_runs"]
    first = f"{wall['to_first_run_s']:.1f} s" if wall["to_first_run_s"] is not None else "—"
    return (f"wall time {wall['total_s']:.1f} s: training and evaluation {wall['training_and_evaluation_s']:.1f} s, "
            f"harness {wall['harness_s']:.1f} s (to the first run {first}; in the runs: numerics "
            f"{runs['numerics_s']:.1f} s, memory probe {runs['memory_s']:.1f} s, profiling {runs['profile_s']:.1f} s, "
            f"worker starts {runs['startup_s']:.1f} s; between runs {wall['between_runs_s']:.1f} s; peak probe "
            f"{wall['peak_probe_s']:.1f} s)")


def record(out_dir: Path, wall: dict, quiet_limit_s: float | None = None, handed: dict | None = None) -> None:
    """Appends this invocation's summary (and any --quiet-machine waits that ended busy) to env.json."""
    from bench import storage
    env = storage.load_env(out_dir)
    if quiet_limit_s is not None:
        wall["quiet_machine"] = {"limit_s": quiet_limit_s, "not_quiet": sorted(
            run for run, entry in (handed or {}).items() if entry.get("quiet") is False)}
    env.setdefault("wall_time", []).append(wall)
    atomic.write_json(Path(out_dir) / ENV_FILE, env)
