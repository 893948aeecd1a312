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
    Metric("peak_memory_bytes", "Peak memory", "MiB", scale=1 / 2**20, fmt="{:,.1f}", higher_is_better=False,
           report=True, plot=True, method_column="memory_method",
           note="Mean over seeds in MiB (2^20 bytes). 'measured as' is the runner's memory_method: "
                "numbers measured differently (e.g. CUDA allocator vs process RSS) are not comparable."),
    Metric("first_step_s", "First step time", "s", higher_is_better=False, report=True, words=SPEED,
           note="The first training step timed alone: compilation and autotuning show up here. Mean over seeds."),
    Metric("fwd_ms_median", "Forward time", "ms", fmt=SIGNIFICANT, higher_is_better=False, words=SPEED,
           note="Median steady-state time of a step's forward and loss (the step's first mark to its second)."),
    Metric("bwd_ms_median", "Backward + optimizer time", "ms", fmt=SIGNIFICANT, higher_is_better=False, words=SPEED,
           note="Median steady-state time of zeroing the gradients, the backward and the optimizer step; "
                "forward + backward = the whole step (shared marks)."),
    Metric("step_gflop", "Work per step", "GFLOP", fmt="{:.4f}",
           note="Matmul FLOPs of one full-batch training step (bench.flops): 2·M·N·K per matmul, forward = input "
                "projections + recurrent products of every layer + head, backward = 2 × forward."),
    Metric("achieved_gflops", "Achieved GFLOP/s", "GFLOP/s", fmt="{:.2f}", higher_is_better=True, words=SPEED,
           note="step_gflop ÷ the median steady-state step time."),
    Metric("efficiency", "Efficiency", "%", scale=100, fmt="{:.2f} %", higher_is_better=True,
           note="achieved_gflops ÷ the device's peak GFLOP/s for the run's dtype, measured once per results "
                "directory by a large square GEMM (env.json: peak)."),
    Metric("out_rel_err", "Output error vs float64", fmt="{:.2e}", higher_is_better=False,
           note="‖logits − logits_ref‖ ÷ ‖logits_ref‖ on the first 256 test images, initial weights, against "
                "the same model in float64 on the CPU with nn.LSTM / nn.GRU (bench.numerics)."),
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
    Metric("data_time_s", "Data time", "s", higher_is_better=False),
    Metric("eval_time_s", "Evaluation time", "s", higher_is_better=False),
    Metric("wall_time_s", "Wall time", "s", higher_is_better=False),
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
