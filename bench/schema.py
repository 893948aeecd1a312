"""The files between measuring and reporting: what a results directory holds, column by column.

    DIR/runs.csv     one row per run (backend x seed x sweep point), RUN_COLUMNS
    DIR/curves.csv   one row per logged training step, CURVE_COLUMNS
    DIR/steps.csv    every timed steady-state step, STEP_COLUMNS (for significance tests in compare)
    DIR/env.json     versions, hardware, git commit, the full config
    DIR/report.md, report.html, plots/*.png    written by `python -m bench report DIR`
"""
RUNS_FILE, CURVES_FILE, STEPS_FILE, ENV_FILE = "runs.csv", "curves.csv", "steps.csv", "env.json"

STATUSES = ("ok", "skipped", "failed")

# Identify a run; sweep axes are among these, so a sweep is just several values in one column.
KEY_COLUMNS = ["run_id", "backend", "seed", "batch_size", "hidden_size", "num_layers", "seq_len"]

RUN_COLUMNS = KEY_COLUMNS + [
    "status",               # ok | skipped | failed
    "error",                # why skipped or failed; empty when ok
    "device",               # cpu, cuda:0, ...
    "dtype",                # float32 | float16 | bfloat16
    "impl_detail",          # what really ran, e.g. "cuDNN 91002" or "ATen native kernel on cpu"
    "threads",              # torch.get_num_threads() during the run
    "input_size", "epochs", "lr", "train_limit",
    "params",               # trainable parameters of the whole model
    "test_accuracy",        # on all 10,000 test images
    "final_train_loss",     # mean loss over the last logged window
    "train_steps",          # optimizer steps taken
    "train_time_s",         # wall time of the training loop, evaluation excluded
    "train_samples_per_s",  # steady state: steps after warm-up only
    "step_ms_median", "step_ms_p10", "step_ms_p90",
    "infer_samples_per_s",  # forward only, no grad, on the test set
    "peak_memory_bytes",    # CUDA: max_memory_allocated; CPU: peak RSS growth (see memory_method)
    "memory_method",        # how peak_memory_bytes was measured
    "first_step_s",         # the first step alone: compile and autotune show up here
    "data_time_s",          # time spent producing batches during training
    "eval_time_s",          # test-set evaluation, excluded from training throughput
    "wall_time_s",          # the whole run: build, train, evaluate
    "host",                 # the machine the cell ran on (socket.gethostname() in the worker)
    "device_name",          # the GPU's name, or the CPU model
    "device_uuid",          # the GPU's UUID (torch.cuda.get_device_properties(i).uuid); empty on CPU
]

# Added after results were first written: a results directory without them still loads (empty cells).
OPTIONAL_RUN_COLUMNS = ("host", "device_name", "device_uuid")

CURVE_COLUMNS = ["run_id", "backend", "seed", "step", "epoch", "loss", "elapsed_s"]

STEP_COLUMNS = ["run_id", "backend", "seed", "step", "step_ms"]

# Per-run metrics the report tabulates, with their direction (higher is better?) and unit.
METRICS = {
    "test_accuracy": (True, ""),
    "train_samples_per_s": (True, "samples/s"),
    "step_ms_median": (False, "ms"),
    "infer_samples_per_s": (True, "samples/s"),
    "peak_memory_bytes": (False, "bytes"),
    "first_step_s": (False, "s"),
}
