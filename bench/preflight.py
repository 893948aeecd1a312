"""What `bench run` checks after the config is read and before anything loads, trains or is written.

    check_resume(DIR, saved)        the directory's files are sound and its rows belong to its plan
    check_fresh(DIR)                a directory that holds results (or a started run) is not a new --out
    check_baseline(name, backends)  --baseline names a backend the plan runs
    check_resources(config, device) the largest run fits the device's memory; more threads than cores

Each refusal is one line (PreflightError: `bench run` prints it and exits 2);
warnings come back as lines for the terminal and env.json.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import impls
from bench import config as config_mod
from bench import estimate, flops, validate
from bench.config import Config
from bench.planning import plan, run_id
from bench.schema import ENV_FILE, RUNS_FILE

if TYPE_CHECKING:
    from bench.planning import Device


class PreflightError(ValueError):
    """Why `bench run` refuses before anything loads, trains or is written: one line for the user."""

def check_resume(out_dir: Path, saved: Config) -> None:
    """Refuses a directory whose files are damaged, or whose rows are not runs of the plan in its env.json:
    resuming would train the saved plan into a directory that holds another's rows."""
    try:
        validate.ensure_sound(out_dir, plan=True)
    except validate.DamagedResults as error:
        raise PreflightError(f"--resume: {error}") from None
    if problems := run_id_problems(out_dir, saved):
        raise PreflightError(f"--resume: {validate.refusal(out_dir, problems)}")


def run_id_problems(out_dir: Path, saved: Config) -> list[validate.Problem]:
    """Rows whose run_id is no run of the saved plan: --resume would not count them as done (and run their
    cells again), and each would stay a run nobody planned."""
    path = out_dir / RUNS_FILE
    if not path.exists():
        return []
    header, rows, _ = validate.check_table(path, next(t for t in validate.tables() if t.name == RUNS_FILE))
    if header is None:
        return []
    planned = {run_id(backend, seed, point) for backend, seed, point in plan(saved)}
    at = header.index("run_id")
    return [validate.Problem(path, line, f"run {fields[at]!r} is not a run of the plan saved in {ENV_FILE} (its "
                             "name does not match its config columns)", validate.PLAN)
            for line, fields in rows if fields[at] not in planned]


def saved_env(out_dir: Path) -> dict:
    """env.json of a directory to resume, or one line naming it when it cannot be read."""
    from bench import storage
    try:
        return storage.load_env(out_dir)
    except (OSError, ValueError) as error:
        raise PreflightError(f"--resume {out_dir}: {out_dir / ENV_FILE} cannot be read: {error}; "
                         f"`bench doctor {out_dir}` lists every problem") from None


def check_fresh(out_dir: Path) -> None:
    """A new run's --out must not hold a run already: env.json alone is a run killed before its first row."""
    for name in (RUNS_FILE, ENV_FILE):
        if (out_dir / name).exists():
            raise PreflightError(f"{out_dir} already holds results ({name}); use --resume {out_dir} or another --out")


def recheck_locked(out_dir: Path, resume: bool) -> None:
    """The checks that depend on the directory, repeated under its lock: a run that passed check_fresh while
    another run was still busy there (and locked it only once that run ended) must not append to it."""
    if not resume:
        return check_fresh(out_dir)
    saved = {k: v for k, v in saved_env(out_dir).get("config", {}).items() if k not in config_mod.DERIVED}
    check_resume(out_dir, config_mod.from_dict(saved))


def check_baseline(baseline: str | None, backends) -> None:
    if baseline is not None and baseline not in backends:
        raise PreflightError(f"--baseline {baseline!r} is not a backend of this plan ({', '.join(backends)}); "
                         "the report's ratio columns would be empty")


def cores() -> int:
    """CPU cores this process may run on (its affinity: a container or taskset may allow fewer than exist)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def device_memory(device: Device) -> tuple[int, str]:
    """(bytes a run may use, what they are) on `device`."""
    if device.type == "cuda":
        import torch
        index = device.index if device.index is not None else torch.cuda.current_device()
        properties = torch.cuda.get_device_properties(index)
        return properties.total_memory, f"{device} ({properties.name}) has {estimate.gib(properties.total_memory)}"
    import psutil
    available = psutil.virtual_memory().available
    return available, f"this machine has {estimate.gib(available)} available"


def largest_run(config: Config) -> tuple[estimate.Estimate, str]:
    """The plan's run needing the most memory, and a few words on which one it is."""
    best: tuple[estimate.Estimate, str] | None = None
    families = {impls.REGISTRY[name].family if name in impls.REGISTRY else "lstm" for name in config.backends}
    for point in config_mod.sweep_points(config.sweep):
        cell = config.replace(sweep={}, **point)
        for family in families:
            need = estimate.run_memory(family if family in flops.GATES else "lstm", batch=cell.batch_size,
                                       seq_len=cell.seq_len, input_size=cell.input_size, hidden=cell.hidden_size,
                                       layers=cell.num_layers, classes=cell.num_classes, dtype=cell.dtype,
                                       train_images=cell.train_limit or estimate.TRAIN_IMAGES,
                                       bidirectional=cell.bidirectional,
                                       proj_size=cell.proj_size if family == "lstm" else 0)
            if best is None or need.total > best[0].total:
                best = need, (f"{family}, batch {cell.batch_size}, hidden {cell.hidden_size}, {cell.num_layers} "
                              f"layer(s), {cell.seq_len} steps, {cell.dtype}")
    assert best is not None, "a config plans at least one backend at one sweep point"
    return best


def check_resources(config: Config, device: Device, *, force: bool = False) -> list[str]:
    """Refuses a plan whose largest run cannot fit the device's memory (unless `force`); returns warning lines."""
    warnings = []
    if config.threads and config.threads > cores():
        warnings.append(f"--threads {config.threads} is more than the {cores()} CPU core(s) this process may use: "
                        "the threads will take turns on the cores and the times measure that contention")
    need, which = largest_run(config)
    have, where = device_memory(device)
    if need.total > have:
        line = f"the largest run ({which}) needs {need.describe()}; {where}"
        if not force:
            raise PreflightError(f"{line}: use a smaller model or batch, or --force to run it anyway")
        warnings.append(f"--force: {line}")
    return warnings
