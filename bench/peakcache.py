"""The GEMM peak, measured once per machine and reused: a cache keyed by what the figure depends on.

    $XDG_CACHE_HOME/lstm-bench/peak.json   (else ~/.cache/lstm-bench/peak.json)

holds one entry per fingerprint: the device kind and its name (the CPU model or the GPU's name), the
core count, the torch version, the threads, the dtype and TF32. A fingerprint that changes (another
machine, an upgrade, --threads) misses the cache and is measured; `bench run --remeasure-peak` measures
whatever the cache holds. A figure measured while the machine was busy (bench.peak: contended) is
written but never reused, so the next run measures again.

The probe is not on the first cell's critical path: `bench run` looks the figures up before its cells
and, for any it lacks, measures them after the cells (bench.runner), then fills the efficiency of the
rows written without it (fill_efficiency). env.json's "peak" says for each dtype whether the figure
was "measured now" or "reused from cache", and when it was measured.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from bench.atomic import atomic_write_text, write_json
from bench.constants import user_cache_dir
from bench.schema import ENV_FILE, RUNS_FILE

if TYPE_CHECKING:
    from bench.config import Config
    from bench.planning import Device

CACHE_NAME = "peak.json"
MEASURED, REUSED = "measured now", "reused from cache"


def cache_dir() -> Path:
    return user_cache_dir()


def fingerprint(device: str, device_name: str, torch_version: str, threads: int, dtype: str,
                tf32: bool) -> dict:
    """What a peak figure depends on. TF32 matters only for float32 on CUDA; recorded as given."""
    return {"device": device.split(":")[0], "device_name": device_name, "cores": os.cpu_count(),
            "torch": torch_version, "threads": threads, "dtype": dtype, "tf32": bool(tf32)}


def _key(print_: dict) -> str:
    return json.dumps(print_, sort_keys=True)


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):  # missing or unreadable: an empty cache, rebuilt by the next store
        return {}
    return data if isinstance(data, dict) else {}


def usable(peak: dict | None) -> bool:
    """A figure efficiency can divide by (not an error entry of a probe that failed)."""
    return isinstance(peak, dict) and peak.get("gflops", 0) > 0


def lookup(print_: dict, directory: Path | None = None) -> dict | None:
    """The cached peak for this fingerprint, marked reused; None when absent or measured under contention."""
    entry = _read((directory or cache_dir()) / CACHE_NAME).get(_key(print_))
    if not isinstance(entry, dict) or entry.get("contended") or not entry.get("gflops", 0) > 0:
        return None
    return entry | {"source": REUSED}


def store(print_: dict, peak: dict, directory: Path | None = None) -> dict:
    """Saves a fresh measurement under its fingerprint; returns it marked measured now, with when and where."""
    path = (directory or cache_dir()) / CACHE_NAME
    entry = peak | {"measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
                    "fingerprint": print_, "cache": str(path)}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        entries = _read(path)
        entries[_key(print_)] = entry
        write_json(path, entries)
    except OSError as error:  # a read-only home: the figure still serves this run
        entry["cache"] = f"not saved: {error.strerror or error}"
    return entry | {"source": MEASURED}


def fill_efficiency(out_dir: Path, peaks: dict, recompute: tuple[str, ...] | list[str] = ()) -> int:
    """Sets `efficiency` = achieved_gflops ÷ peak on the ok rows that have none yet (written before their dtype's
    peak was known), and on every ok row of a dtype in `recompute` (its peak measured again: rows of an earlier
    invocation divided by the figure it replaced), in one atomic rewrite of runs.csv; returns how many rows
    changed."""
    path = Path(out_dir) / RUNS_FILE
    if not path.exists():
        return 0
    text = path.read_text()
    text = text[:text.rfind("\n") + 1]  # a torn last line is no row
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows or "efficiency" not in rows[0]:
        return 0
    changed = 0
    for row in rows:
        gflops = peaks.get(row.get("dtype"), {}).get("gflops", math.nan)
        stale = row["efficiency"] in ("", "nan") or row.get("dtype") in recompute
        if row["status"] == "ok" and stale and gflops > 0:
            try:
                row["efficiency"] = repr(float(row["achieved_gflops"]) / gflops)
            except (TypeError, ValueError):
                continue
            changed += 1
    if changed:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(path, buffer.getvalue())
    return changed


# ------------------------------------------------------------------ the runner's two calls

def _plan_dtypes(config: Config) -> list[str]:
    from bench.planning import plan
    return sorted({point.dtype for _, _, point in plan(config)})


def _fingerprints(config: Config, device: Device, dtypes: list[str], facts: dict | None = None) -> dict[str, dict]:
    """The plan's fingerprints. `facts`: bench.envinfo.torch_facts as the runs' worker sees them (`bench run`
    asks a worker, so the driver need not import torch); default: this process's."""
    from bench import envinfo
    facts = envinfo.torch_facts() if facts is None else facts
    threads = config.threads or facts["torch_threads"]
    name = facts["gpu_names"][device.index or 0] if device.type == "cuda" else envinfo._cpu_model()
    return {dtype: fingerprint(str(device), name, facts["torch"], threads, dtype, config.tf32) for dtype in dtypes}


def describe(dtype: str, device: Device, peak: dict) -> str:
    if "error" in peak:
        return f"peak {dtype} GEMM on {device}: not measured ({peak['error']})"
    share = f", cpu share {peak['cpu_share']:.0%}" if peak.get("cpu_share") is not None else ""
    busy = "; CONTENDED: other work ran, so it will be measured again next time" if peak.get("contended") else ""
    return (f"peak {dtype} GEMM on {device}: {peak['gflops']:,.1f} GFLOP/s ({peak.get('source', 'measured')}, "
            f"{peak.get('measured_at', 'time unknown')}; {peak.get('shape', '?')}, spread "
            f"{peak.get('spread', float('nan')):.1%}{share}){busy}")


def before_cells(out_dir: Path, config: Config, device: Device, remeasure: bool = False, log=print,
                 facts: dict | None = None) -> dict:
    """env.json's peaks for the plan's dtypes: those the directory already holds (a resume keeps its figures,
    unless `remeasure`), else this machine's cached ones. Writes env.json; returns the peaks (missing dtypes
    are measured by after_cells). `facts`: as _fingerprints'."""
    from bench import storage
    env = storage.load_env(out_dir)
    peaks = env.setdefault("peak", {})
    dtypes = _plan_dtypes(config)
    if remeasure:
        for dtype in dtypes:
            peaks.pop(dtype, None)
    else:  # a directory's own figure stands (a resume keeps it); one that failed is looked up or measured again
        for dtype, print_ in _fingerprints(config, device, [d for d in dtypes if not usable(peaks.get(d))],
                                            facts).items():
            if (hit := lookup(print_)) is not None:
                peaks[dtype] = hit
    why = "re-measured" if remeasure else "not cached here"
    for dtype in dtypes:
        log(describe(dtype, device, peaks[dtype]) if usable(peaks.get(dtype)) else
            f"peak {dtype} GEMM on {device}: {why}; measured after the runs")
    write_json(Path(out_dir) / ENV_FILE, env)
    return peaks


def after_cells(out_dir: Path, config: Config, device: Device, log=print, measure=None, facts: dict | None = None,
                call=None) -> dict:
    """Measures the plan's dtypes that env.json has no peak for (probe), caches them, writes env.json and fills
    the efficiency of the rows written without one; returns the peaks. `call(probe, *args)` runs the probe
    (bench.executors.torch_side: in a worker when the runs are isolated; default: here); `facts`: as
    _fingerprints'."""
    from bench import storage
    from bench.errors import one_line
    env = storage.load_env(out_dir)
    peaks = env.setdefault("peak", {})
    missing = [d for d in _plan_dtypes(config) if not usable(peaks.get(d))]
    if not missing:  # rows a killed invocation wrote before its probe get their efficiency on the resume
        fill_efficiency(out_dir, peaks)
        return peaks
    call = call or (lambda function, *args: function(*args))
    try:
        measured, precision = call(probe, config, device, missing, measure)
    except Exception as error:  # no worker to measure in: efficiency stays empty, the runs are kept
        measured, precision = {dtype: {"error": one_line(error)} for dtype in missing}, None
    for dtype, print_ in _fingerprints(config, device, missing, facts).items():
        result = measured[dtype]
        peaks[dtype] = {"gflops": float("nan")} | result if "error" in result else store(print_, result)
        log(describe(dtype, device, peaks[dtype]))
    if precision is not None:
        env["float32_matmul_precision"] = precision
    write_json(Path(out_dir) / ENV_FILE, env)
    fill_efficiency(out_dir, peaks, recompute=missing)
    return peaks


def probe(config: Config, device: Device, dtypes: list[str], measure=None) -> tuple[dict, str]:
    """Each dtype's GEMM peak (bench.peak.measure_peak, else `measure`) with the config's threads and TF32, or
    {"error": why}; and the float32 matmul precision they ran under. Imports torch."""
    import torch

    from bench.errors import one_line
    from bench.train import DTYPES, apply_tf32
    if measure is None:
        from bench.peak import measure_peak as measure
    threads, measured = torch.get_num_threads(), {}
    try:
        if config.threads:
            torch.set_num_threads(config.threads)
        apply_tf32(config.tf32)
        for dtype in dtypes:
            try:
                measured[dtype] = measure(torch.device(str(device)), DTYPES[dtype])
            except Exception as error:  # no peak: efficiency stays empty, the runs are kept
                measured[dtype] = {"error": one_line(error)}
    finally:
        torch.set_num_threads(threads)
    return measured, torch.get_float32_matmul_precision()
