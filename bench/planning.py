"""What `bench run` will do: the device, the checks on a config, the plan of cells and their run ids.

Pure functions of the config (and the device); nothing here writes. The runner executes the plan;
`--dry-run` prints it (plan_text). Bad input raises PlanError (a ValueError with one line); the command
line (bench.run_command) turns it into exit 2.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import impls
from bench import config as config_mod
from bench.config import Config
from bench.constants import TRAIN_IMAGES
from bench.schema import RUNS_FILE

# A run is measured after warm-up: fewer timed steps than this give no steady-state figure worth a row.
MIN_TIMED_STEPS = 5


class PlanError(ValueError):
    """A config or device this machine cannot run as asked; the message is one line for the user."""


@dataclass(frozen=True)
class Device:
    """What torch.device says (type, index, str "cuda:1"), for the driver, which plans and checks a run without
    importing torch (seconds); a worker makes it a torch.device (torch.device(str(device)))."""
    type: str
    index: int | None = None

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"


# Files a GPU driver creates (NVIDIA's, AMD ROCm's): without any of them "auto" is the CPU, and torch need not be
# imported to ask.
GPU_DEVICE_FILES = ("/dev/nvidiactl", "/dev/nvidia0", "/proc/driver/nvidia", "/dev/kfd")
DEVICE_TYPES = ("cpu", "cuda")


def parse_device(text: str) -> Device:
    kind, colon, index = text.strip().partition(":")
    if kind not in DEVICE_TYPES or (colon and not index.isdigit()):
        raise PlanError(f"device {text!r}: expected auto, cpu, cuda or cuda:N")
    return Device(kind, int(index) if colon else None)


def resolve_device(requested: str, *, must_exist: bool = True) -> Device:
    """"auto" (CUDA when there is a GPU, else the CPU) or the device named. must_exist=False allows a device
    this machine lacks (`bench list --device cuda` asks what would run there); a malformed name is a PlanError.
    torch is imported only when a GPU may be there."""
    if requested == "auto":
        if not any(Path(path).exists() for path in GPU_DEVICE_FILES):
            return Device("cpu")
        import torch
        return Device("cuda" if torch.cuda.is_available() else "cpu")
    device = parse_device(requested)
    if not must_exist or device.type == "cpu":
        return device
    import torch
    if device.type == "cuda" and not torch.cuda.is_available():
        raise PlanError(f"device {requested!r} is not available (torch.cuda.is_available() is False); use cpu or auto")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise PlanError(f"device {requested!r} does not exist; this machine has {torch.cuda.device_count()} GPU(s)")
    return device


def too_short(point: Config) -> str | None:
    """Why a cell would have too few steady-state steps to measure (warm-up + MIN_TIMED_STEPS), or None."""
    images = min(point.train_limit or TRAIN_IMAGES, TRAIN_IMAGES)
    steps = point.epochs * -(-images // point.batch_size)
    needed = point.warmup_steps + MIN_TIMED_STEPS
    if steps >= needed:
        return None
    given = f"--train-limit {point.train_limit}" if point.train_limit else f"the {TRAIN_IMAGES:,} training images"
    head = (f"{given} gives {steps} training step(s) at batch size {point.batch_size}; a run needs at least {needed} "
            f"({point.warmup_steps} warm-up + {MIN_TIMED_STEPS} timed)")
    least = -(-needed // point.epochs) * point.batch_size
    if least <= TRAIN_IMAGES:
        return f"{head}: use --train-limit {least} or more (or fewer --warmup-steps)"
    return f"{head}: use a smaller --batch-size or fewer --warmup-steps"


def check_config(config: Config, device: Device) -> None:
    for point in config_mod.sweep_points(config.sweep):
        if problem := too_short(config.replace(sweep={}, **point)):
            raise PlanError(problem)
    for name in config.backends:
        if name not in impls.names():
            from impls.plugins import unknown
            raise PlanError(unknown(name))
    if len(set(config.backends)) != len(config.backends):
        raise PlanError(f"backends listed twice: {', '.join(config.backends)}")
    swept = config.sweep.get("dtype")
    for dtype in swept or [config.dtype]:
        reason = dtype_unsupported(dtype, device)
        if reason and not swept:  # asked for outright: bad input. A sweep point: a skipped row (execute).
            raise PlanError(reason)


def dtype_unsupported(dtype: str, device: Device) -> str:
    """Why `device` cannot train in `dtype` ("" when it can). bfloat16 runs on any CPU (natively with
    AVX512-BF16/AMX, else emulated, slowly) and on CUDA from compute capability 8.0; float16 only on CUDA
    (PyTorch's CPU float16 paths are reference code, not something worth timing)."""
    if dtype == "float16" and device.type != "cuda":
        return f"dtype float16 needs a CUDA device; on {device.type} use float32 or bfloat16"
    if dtype == "bfloat16" and device.type == "cuda":
        import torch
        if not torch.cuda.is_bf16_supported(including_emulation=False):
            return (f"dtype bfloat16 needs CUDA compute capability 8.0 or newer; "
                    f"{torch.cuda.get_device_name(device.index or 0)} has not")
    return ""


def plan(config: Config) -> list[tuple[str, int, Config]]:
    """Every (backend, seed, config of that sweep point), in a fixed order."""
    return [(backend, seed, config.replace(sweep={}, **point))
            for point in config_mod.sweep_points(config.sweep) for backend in config.backends for seed in config.seeds]


def run_id(backend: str, seed: int, config: Config) -> str:
    """The run's name in every file. Keys added later (dtype, task) are appended only when they differ
    from the default, so a directory written before they existed resumes under the same names."""
    name = f"{backend}-s{seed}-b{config.batch_size}-h{config.hidden_size}-l{config.num_layers}-t{config.seq_len}"
    if config.dtype != "float32":
        name += f"-{config.dtype}"
    if config.task == "permuted":
        name += f"-{config.task}{config.permutation_seed}"
    elif config.task != "rows":  # no pixel order to seed
        name += f"-{config.task}"
    if config.bidirectional:
        name += "-bi"
    if config.proj_size:
        name += f"-p{config.proj_size}"
    if config.packing != "none":
        name += f"-{config.packing}"
    return name


def plan_text(config: Config, out_dir: Path, device: Device) -> str:
    """What `bench run` would do, one line per run, in the order it would do them."""
    cells = plan(config)
    done = set()
    if (out_dir / RUNS_FILE).exists():  # a resume: pandas, only when there is a runs.csv to read
        from bench import storage
        done = set(storage.load_runs(out_dir)["run_id"])
    lines = [f"plan: {len(cells)} run(s) on {device} into {out_dir} (dry run: nothing written, no data fetched)"]
    for number, (backend, seed, point) in enumerate(cells, 1):
        available = impls.availability(backend, device, bidirectional=point.bidirectional,
                                       proj_size=point.proj_size, packing=point.packing)
        why_not = available.reason if not available.ok else dtype_unsupported(point.dtype, device)
        note = "  (done)" if run_id(backend, seed, point) in done else \
            f"  (would be skipped: {why_not})" if why_not else ""
        lines.append(f"  {number:>3}. {run_id(backend, seed, point)}{note}")
    return "\n".join(lines)
