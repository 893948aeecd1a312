"""The files between measuring and reporting: what a results directory holds, column by column.

    DIR/runs.csv     one row per run (backend x seed x sweep point), RUN_COLUMNS
    DIR/curves.csv   one row per logged training step, CURVE_COLUMNS
    DIR/steps.csv    every timed steady-state step, STEP_COLUMNS (for significance tests in compare)
    DIR/env.json     versions, hardware, git commit, the full config
    DIR/report.md, report.html, plots/*.png    written by `python -m bench report DIR`

runs.csv's columns are derived: the run key, the columns below that are neither config nor metric,
the config columns (bench.config's table) and the measured ones (bench.metrics' table).
"""
from bench import config, metrics

RUNS_FILE, CURVES_FILE, STEPS_FILE, ENV_FILE = "runs.csv", "curves.csv", "steps.csv", "env.json"

RUN_INFO_COLUMNS = [
    "status",               # ok | skipped | failed
    "error",                # why skipped or failed; empty when ok
    "device",               # what ran it: cpu, cuda:0, ... (config.device may say auto)
    "impl_detail",          # what really ran, e.g. "cuDNN 91002" or "ATen native kernel on cpu"
    "threads",              # torch.get_num_threads() during the run (config.threads may be unset)
    "memory_method",        # how peak_tensor_bytes was measured (bench.memory)
    "contended",            # true: the run shared the machine (bench.contention); empty in older results
    "gpu_shared",           # CUDA: another process held the GPU; empty where unknown or on CPU
    "cpu_share_method",     # how cpu_share was measured
    "host",                 # the machine the cell ran on (socket.gethostname() in the worker)
    "device_name",          # the GPU's name, or the CPU model
    "device_uuid",          # the GPU's UUID (torch.cuda.get_device_properties(i).uuid); empty on CPU
    "matmul_precision",     # torch.get_float32_matmul_precision() in the worker (with config.tf32)
    "top_kernels",          # the three ops/kernels taking the most time under torch.profiler, with shares
    "length_counts",        # the training images' own lengths, "length:count ..." (all seq_len but for rows-trimmed)
]


def key_columns() -> list[str]:
    """Identify a run; sweep axes are among these, so a sweep is just several values in one column."""
    return ["run_id", *config.key_columns()]


def run_columns() -> list[str]:
    keys = key_columns()
    return [*keys, *RUN_INFO_COLUMNS, *(c for c in config.row_columns() if c not in keys),
            *(m.name for m in metrics.METRICS)]


KEY_COLUMNS = key_columns()
RUN_COLUMNS = run_columns()
REQUIRED_RUN_COLUMNS = [*KEY_COLUMNS, "status", "error"]  # older results lack later columns; never these
TEXT_RUN_COLUMNS = ("error", "impl_detail", "memory_method", "host", "device_name", "device_uuid", "cpu_share_method",
                    "length_counts")
BOOL_RUN_COLUMNS = ("contended", "gpu_shared")  # true / false; empty where not known
RETIRED_RUN_COLUMNS = ("peak_memory_bytes",)  # written by older versions; storage.load_runs maps them to today's

CURVE_COLUMNS = ["run_id", "backend", "seed", "step", "epoch", "loss", "elapsed_s"]

STEP_COLUMNS = ["run_id", "backend", "seed", "step", "step_ms"]
