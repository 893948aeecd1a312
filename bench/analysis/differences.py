"""What differs between two results directories' settings: config and environment (env.json, flattened)
and what ran as recorded per row (runs.csv); bench.analysis.compare lists these at the top and warns when
they name different machines."""
from __future__ import annotations

from bench.analysis import render
from bench.analysis.results import Results, ok_runs

IGNORED_ENV = ("timestamp", "wall_time")  # always differ; not shown as a difference


def _flatten(prefix: str, value, out: dict) -> dict:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else k, v, out)
    else:
        out[prefix] = value
    return out


# env.json keys and runs.csv columns that say which machine ran: when they differ, B/A is machines, not code.
HARDWARE_ENV = ("cpu_model", "cpu_count", "gpu_names", "gpu_count", "device")
HARDWARE_RUNS = ("host", "device_name")


def hardware_differences(diffs: list[tuple[str, str, str]]) -> list[str]:
    """The settings among `diffs` that name the machine and are recorded on both sides (older results lack
    some): one differs, and speed no longer measures code alone."""
    names = {*HARDWARE_ENV, *(f"runs.{c}" for c in HARDWARE_RUNS)}
    unknown = ("", "—", "None", "nan")
    return [name for name, va, vb in diffs if name in names and va not in unknown and vb not in unknown]


def differences(a: Results, b: Results) -> list[tuple[str, str, str]]:
    """(setting, A, B) for every config or environment key that differs, config first."""
    env_a, env_b = _flatten("", a.env, {}), _flatten("", b.env, {})
    names = sorted(set(env_a) | set(env_b), key=lambda k: (not k.startswith("config."), k))
    out = [(k, render.fmt_setting(env_a.get(k)), render.fmt_setting(env_b.get(k)))
           for k in names if k not in IGNORED_ENV]
    out = [row for row in out if row[1] != row[2]]
    for column in ("device", "dtype", "threads", *HARDWARE_RUNS):  # what ran, as recorded per row
        va, vb = (", ".join(sorted(set(ok_runs(r.runs)[column].dropna().astype(str)))) if column in r.runs else ""
                  for r in (a, b))
        if va != vb:
            out.append((f"runs.{column}", va or "—", vb or "—"))
    return out
