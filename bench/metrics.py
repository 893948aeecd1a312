"""The one table of measured columns: what each number in runs.csv is, and how to show and judge it.

The report's tables, the plots and `compare` all read this table; runs.csv's measured columns are
these names (bench.schema). Adding a metric is one `Metric(...)` line here plus the code in
bench/train.py that computes it.

Only `report=True` metrics get a report table, plots and a compare verdict; the others are recorded
for the reader of runs.csv (and for the tables of the reported ones: step_ms_p10/p90 back step time).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bench.constants import TEST_IMAGES

SIGNIFICANT = "significant"  # a fmt: four significant digits, thousands separated, never an exponent


def significant(value: float, digits: int = 4) -> str:
    """1945.893 -> '1,946', 4.3431 -> '4.343', 0.012345 -> '0.01235': step times span 0.01 ms to 10 s."""
    if value == 0 or not math.isfinite(value):
        return f"{value:,.0f}" if value == 0 else str(value)
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    return f"{value:,.{decimals}f}"


def percentile(values, q: float) -> float:
    """The q-th percentile (0-100, linear interpolation) of `values`; NaN for none. The one definition behind a
    run's step_ms_median/p10/p90 (bench.train) and the report's step times pooled over runs (bench.analysis)."""
    values = np.asarray(values, dtype=np.float64)
    return float(np.percentile(values, q)) if values.size else math.nan


@dataclass(frozen=True)
class Metric:
    name: str                     # the runs.csv column
    title: str                    # table and plot heading
    unit: str = ""                # unit after scaling, as shown ("" for counts)
    scale: float = 1.0            # shown value = stored value * scale (bytes -> MiB, fraction -> %)
    fmt: str = "{:.4f}"           # format of the scaled value
    higher_is_better: bool | None = None  # None: no direction (not judged)
    note: str = ""                # what the number is, under its report table
    report: bool = False          # a report table and a compare row
    plot: bool = False            # drawn in the bar and scaling plots
    samples: str = "seeds"        # what a value is drawn from, for summaries and compare's test: "steps"
                                  # (steps.csv's per-step times, pooled), "images" (a proportion over the
                                  # test set) or "seeds" (one value per seed)
    words: tuple[str, str] = ("better", "worse")  # compare's flag when it improved / regressed
    method_column: str | None = None  # a runs.csv column saying how it was measured (shown beside it)

    def format(self, value) -> str:
        """The scaled value with its format; — for a missing value."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "—"
        if self.fmt == SIGNIFICANT:
            return significant(value * self.scale)
        return self.fmt.format(value * self.scale)

    @property
    def label(self) -> str:
        """Title with unit, e.g. 'Peak memory (MiB)'."""
        return f"{self.title} ({self.unit})" if self.unit else self.title

    @property
    def direction(self) -> str:
        return {True: "higher is better", False: "lower is better", None: "no direction"}[self.higher_is_better]


SPEED = ("faster", "slower")  # the flags of time and throughput metrics

METRICS: list[Metric] = [
    Metric("params", "Trainable parameters", fmt="{:,.0f}"),
    Metric("test_accuracy", "Test accuracy", "%", scale=100, fmt="{:.2f} %", higher_is_better=True, report=True,
           samples="images",
           note=f"On all {TEST_IMAGES:,} test images; mean and sample standard deviation over seeds "
                "(— with one seed)."),
    Metric("final_train_loss", "Final training loss", higher_is_better=False),
    Metric("train_steps", "Optimizer steps", fmt="{:,.0f}"),
    Metric("train_time_s", "Training time", "s", higher_is_better=False),
    Metric("train_samples_per_s", "Training throughput", "samples/s", fmt="{:,.0f}", higher_is_better=True,
           report=True, plot=True, words=SPEED,
           note="Steady state: samples after warm-up ÷ their summed step times (forward, backward, optimizer; "
                "the same clock as step time, so producing the batches is excluded: see data_time_s). "
                "Mean and std over seeds."),
    Metric("step_ms_median", "Training step time", "ms", fmt=SIGNIFICANT, higher_is_better=False, report=True,
           plot=True, samples="steps", words=SPEED,
           note="Every timed steady-state step of all seeds pooled (steps.csv): median, 10th and 90th "
                "percentile. Ratio is of the medians."),
    Metric("step_ms_p10", "Step time, 10th percentile", "ms", fmt=SIGNIFICANT, higher_is_better=False),
    Metric("step_ms_p90", "Step time, 90th percentile", "ms", fmt=SIGNIFICANT, higher_is_better=False),
    Metric("infer_samples_per_s", "Inference throughput", "samples/s", fmt="{:,.0f}", higher_is_better=True,
           report=True, plot=True, words=SPEED,
           note="Forward only, no gradients, on the test set in batches of `eval_batch_size` (see the config;"
                " it does not follow a batch_size sweep), first batch left out as warm-up. Mean and std over seeds."),
    Metric("peak_tensor_bytes", "Peak tensor memory in training", "MiB", scale=1 / 2**20, fmt="{:,.2f}",
           higher_is_better=False, report=True, plot=True, method_column="memory_method",
           note="The most tensor bytes live at once during a steady-state training step: parameters, optimizer "
                "state, gradients, activations and temporaries (bench.memory; the datasets are inputs and left "
                "out). CUDA: the caching allocator's count; CPU: every allocation and free of PyTorch's CPU "
                "allocator, whatever the C library does with the pages. Mean over seeds in MiB (2^20 bytes)."),
    Metric("saved_for_backward_bytes", "Saved for backward", "MiB", scale=1 / 2**20, fmt="{:,.2f}",
           higher_is_better=False, report=True,
           note="What autograd keeps from one training step's forward for its backward (saved-tensor hooks; each "
                "storage once, parameters and the batch left out): a per-step loop keeps every step's gates, a "
                "fused kernel keeps what its backward needs. Mean over seeds in MiB."),
    Metric("param_bytes", "Parameter memory", "MiB", scale=1 / 2**20, fmt="{:,.2f}", higher_is_better=False,
           note="Parameters and buffers; part of peak_tensor_bytes."),
    Metric("optimizer_bytes", "Optimizer state", "MiB", scale=1 / 2**20, fmt="{:,.2f}", higher_is_better=False,
           note="Adam's moments and step counters; part of peak_tensor_bytes."),
    Metric("rss_growth_bytes", "RSS growth (secondary)", "MiB", scale=1 / 2**20, fmt="{:,.1f}",
           higher_is_better=False,
           note="CPU: growth of the process's resident set over the run (kernel high-water mark); it shows how "
                "the C allocator reuses freed pages, not what a backend needs: use peak_tensor_bytes. Empty on CUDA."),
    Metric("first_step_s", "First step time", "s", higher_is_better=False, report=True, words=SPEED,
           note="The first training step timed alone: compilation and autotuning show up here. Mean over seeds."),
    Metric("fwd_ms_median", "Forward time", "ms", fmt=SIGNIFICANT, higher_is_better=False, words=SPEED,
           note="Median steady-state time of a step's forward and loss (the step's first mark to its second)."),
    Metric("bwd_ms_median", "Backward + optimizer time", "ms", fmt=SIGNIFICANT, higher_is_better=False, words=SPEED,
           note="Median steady-state time of zeroing the gradients, the backward and the optimizer step; "
                "forward + backward = the whole step (shared marks)."),
    Metric("step_gflop", "Work per step", "GFLOP", fmt="{:.4f}",
           note="Matmul FLOPs of one full-batch training step (bench.flops): 2·M·N·K per matmul, forward = input "
                "projections + recurrent products (+ projections with proj_size) of every layer and direction + "
                "head, over the steps inside each image's length (mean_length), backward = 2 × forward."),
    Metric("mean_length", "Steps per image", fmt="{:.2f}",
           note="The mean number of time steps the backend was fed per training image: seq_len for padded input "
                "(packing none), the images' own lengths with packing packed or lengths (task rows-trimmed). "
                "step_gflop counts these steps."),
    Metric("achieved_gflops", "Achieved GFLOP/s", "GFLOP/s", fmt="{:.2f}", higher_is_better=True, words=SPEED,
           note="step_gflop ÷ the median steady-state step time."),
    Metric("efficiency", "Efficiency", "%", scale=100, fmt="{:.2f} %", higher_is_better=True,
           note="achieved_gflops ÷ the device's peak GFLOP/s for the run's dtype: the best of several timed "
                "repetitions of a large square GEMM, measured once per machine and reused (bench.peakcache; "
                "env.json: peak says whether measured now or reused, and when)."),
    Metric("out_rel_err", "Output error vs float64", fmt="{:.2e}", higher_is_better=False,
           note="‖logits − logits_ref‖ ÷ ‖logits_ref‖ on the first 256 test images (fed in batches of the training "
                "size), initial weights, against the same model in float64 on the CPU with nn.LSTM / nn.GRU "
                "(bench.numerics)."),
    Metric("grad_rel_err", "Gradient error vs float64", fmt="{:.2e}", higher_is_better=False,
           note="The largest over parameters of ‖g − g_ref‖ ÷ ‖g_ref‖ of the loss's gradient, same batch and "
                "reference as out_rel_err."),
    Metric("kernels_per_step", "Kernels per step", fmt="{:,.1f}", higher_is_better=False,
           note="Under torch.profiler after evaluation (untimed): device kernels per training step on CUDA, "
                "top-level ATen ops per step on CPU (bench.profiling)."),
    Metric("compilations", "Compilations", fmt="{:,.0f}",
           note="Graphs torch.compile compiled during the run (numerics, training, evaluation); 0 for backends "
                "that compile nothing."),
    Metric("compile_s", "Compile time", "s", fmt="{:.2f}", higher_is_better=False,
           note="Seconds spent compiling during the run, apart from the steady-state step times (the first "
                "step, the evaluation warm-up and any step counted in compiled_steps hold it)."),
    Metric("compiled_steps", "Steps that compiled", fmt="{:,.0f}", higher_is_better=False,
           note="Steps after warm-up during which torch.compile compiled a graph (a guard failed, e.g. on the batch "
                "size of a last partial batch); left out of every steady-state figure, so they show here instead."),
    Metric("peak_reserved_bytes", "Peak reserved memory", "MiB", scale=1 / 2**20, fmt="{:,.1f}",
           higher_is_better=False,
           note="CUDA: growth of the caching allocator's pool at its peak (max_memory_reserved); empty on CPU."),
    Metric("cpu_share", "CPU share", "%", scale=100, fmt="{:.0f} %", higher_is_better=True,
           note="Of the CPU time the run's threads were ready to use during training, the share they got "
                "(bench.contention; a quiet machine gives about 100 %). Below 80 % the row is contended."),
    Metric("others_cores", "Other work", "cores", fmt="{:.2f}", higher_is_better=False,
           note="Cores' worth of CPU other processes used during training (steal included); above 0.5 the row "
                "is contended."),
    Metric("load_start", "Load average before", fmt="{:.2f}", note="os.getloadavg()[0] before training."),
    Metric("load_end", "Load average after", fmt="{:.2f}", note="os.getloadavg()[0] after training."),
    Metric("quiet_wait_s", "Waited for a quiet machine", "s", fmt="{:.1f}",
           note="bench run --quiet-machine: seconds waited before this run; empty when not asked."),
    Metric("startup_s", "Startup", "s", fmt="{:.2f}", higher_is_better=False,
           note="From the runner handing the run to its executor to the run's first line of work: the worker's "
                "start, its read of MNIST from the verified files (local isolated runs), and, for the first run, the "
                "rest of the worker server's imports."),
    Metric("numerics_s", "Numerics check time", "s", fmt="{:.2f}", higher_is_better=False,
           note="The float64 comparison before training (out_rel_err, grad_rel_err)."),
    Metric("memory_s", "Memory probe time", "s", fmt="{:.2f}", higher_is_better=False,
           note="The steps after evaluation that measure peak_tensor_bytes and saved_for_backward_bytes."),
    Metric("profile_s", "Profiling time", "s", fmt="{:.2f}", higher_is_better=False,
           note="The profiled steps after evaluation (kernels_per_step, top_kernels)."),
    Metric("data_time_s", "Data time", "s", higher_is_better=False),
    Metric("eval_time_s", "Evaluation time", "s", higher_is_better=False),
    Metric("wall_time_s", "Wall time", "s", higher_is_better=False,
           note="The run in its worker, from its first line of work to its last: startup_s is before it."),
]


def by_name(name: str) -> Metric:
    for metric in METRICS:
        if metric.name == name:
            return metric
    raise KeyError(f"unknown metric {name!r}; expected one of: {', '.join(m.name for m in METRICS)}")


def reported() -> list[Metric]:
    """The metrics with a report table and a compare row, in report order (read at call time)."""
    return [m for m in METRICS if m.report]


def plotted() -> list[Metric]:
    return [m for m in METRICS if m.plot]
