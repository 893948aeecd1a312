"""One run: build the model around a backend, train, evaluate, measure.

Returns plain rows (see bench.schema); writing them is the runner's job. The backend is opaque
here: this module never asks which one it is training.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass

import torch
from torch import nn
from tqdm import tqdm

import impls
from bench import contention, flops, memory, numerics, profiling
from bench.config import Config
from bench.constants import NUMERICS_IMAGES, PROFILED_STEPS
from bench.data import BatchLoader, Mnist, pixel_order, trimmed
from bench.metrics import percentile
from bench.model import RowClassifier, Rows, head_width, input_tensors
from bench.result import RunResult
from bench.timing import MemoryMeter, SplitTimer, sync

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class NonFiniteLoss(RuntimeError):
    pass


def build_model(config: Config, backend: str, device: torch.device) -> RowClassifier:
    # Only the options in use are passed: a plugin backend may not know them.
    options = {key: value for key, value in (("bidirectional", config.bidirectional),
                                             ("proj_size", config.proj_size)) if value}
    rnn = impls.build(backend, config.input_size, config.hidden_size, config.num_layers, batch_first=True, **options)
    width = head_width(config.hidden_size, config.bidirectional, config.proj_size)
    model = RowClassifier(rnn, width, config.num_classes, config.packing)
    return model.to(device=device, dtype=DTYPES[config.dtype])


@dataclass
class StepLog:
    """What the step loop saw, read back from the device once, after the loop."""
    losses: list[float]      # every step's loss
    batch_sizes: list[int]   # every step's sample count
    step_ms: list[float]     # every step's duration (forward, backward, optimizer; the data fetch excluded)
    fwd_ms: list[float]      # every step's forward and loss
    bwd_ms: list[float]      # every step's zeroing, backward and optimizer step
    warmup: int              # steps [0, warmup) are left out of the steady-state figures
    first_step_s: float      # the first step alone, its data fetch excluded
    data_time_s: float       # producing batches, over all steps
    train_time_s: float      # the whole loop, wall clock
    compiled: list[bool]     # per step: torch.compile compiled a graph during it

    @property
    def steady(self) -> list[int]:
        """The steady-state steps: after warm-up, and not one that compiled. Inductor can recompile in mid-run
        (a guard on the batch size failed: on CPU one measured 34.8 s in a 96 ms/step run); its time belongs in
        compile_s, not in the step times and throughput."""
        return [i for i in range(self.warmup, len(self.step_ms)) if not self.compiled[i]]


def train_and_measure(config: Config, backend: str, seed: int, data: Mnist, device: torch.device) -> RunResult:
    run_started, started_unix = time.perf_counter(), time.time()
    device = torch.device(str(device))  # the driver plans with bench.planning.Device, not torch
    dtype = DTYPES[config.dtype]
    if config.threads:
        torch.set_num_threads(config.threads)
    warm_up_process(device)  # before seeding: it draws random numbers, and only in a process's first run
    apply_tf32(config.tf32)
    compiled_before = compile_stats()
    torch.manual_seed(seed)
    order = pixel_order(config.task, config.permutation_seed)  # one order for training and test images
    trim = trimmed(config.task)  # rows-trimmed: each image's own length, fed as config.packing says
    loader = BatchLoader(data.train_images, data.train_labels, batch_size=config.batch_size,
                         seq_len=config.seq_len, device=device, dtype=dtype, shuffle=True, seed=seed,
                         limit=config.train_limit, pixel_order=order, trim=trim, packing=config.packing)
    test_loader = BatchLoader(data.test_images, data.test_labels, batch_size=config.eval_batch_size,
                              seq_len=config.seq_len, device=device, dtype=dtype, shuffle=False, pixel_order=order,
                              trim=trim, packing=config.packing)
    errors = timed("numerics_s", check_numerics, config, backend, seed, test_loader, device)  # keeps the RNG as seeded
    meter = MemoryMeter(device)  # RSS growth (CPU) and the allocator pool (CUDA); the datasets stay outside
    with meter:
        model = build_model(config, backend, device)
        with contention.Watch(device.type, device.index, torch.get_num_threads()) as watch:
            log = train_steps(model, loader, config, device, desc=f"{backend} seed {seed}")
        eval_started = time.perf_counter()
        accuracy, infer_samples_per_s, correct = evaluate(model, test_loader, device)
        eval_time = time.perf_counter() - eval_started
    compiled = {k: v - compiled_before[k] for k, v in compile_stats().items()}
    pools = {"rss_growth_bytes": None if device.type == "cuda" else meter.peak_bytes,  # read before the memory
             "peak_reserved_bytes": meter.peak_reserved_bytes}                         # probe resets CUDA's peaks
    used = timed("memory_s", measure_memory, model, loader, config, device)  # untimed, as profiling, and
    what_ran = timed("profile_s", profile_training, model, loader, config, device)  # their steps change the weights

    metrics = pools | {
        "params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "test_accuracy": accuracy,
        "infer_samples_per_s": infer_samples_per_s,
        "eval_time_s": eval_time,
        "matmul_precision": torch.get_float32_matmul_precision(),
        "started_unix": started_unix,  # not a column: the runner's startup_s ends here
    } | step_metrics(log, config.curve_every) | errors | compiled | used | what_ran | watch.columns()
    metrics |= work_metrics(config, backend, metrics["step_ms_median"], float(loader.fed_lengths.double().mean()))
    metrics["length_counts"] = loader.length_counts()  # the training images' own lengths (task rows-trimmed)
    metrics["wall_time_s"] = time.perf_counter() - run_started
    curve = loss_curve(log, config.curve_every, len(loader))
    steps = [{"step": i, "step_ms": log.step_ms[i]} for i in log.steady]
    return RunResult(metrics, curve, steps, correct)


def timed(column: str, measure, *args) -> dict:
    """measure(*args), a dict of row columns, with the seconds it took as `column` (where a run's time goes)."""
    started = time.perf_counter()
    return measure(*args) | {column: time.perf_counter() - started}


def apply_tf32(enabled: bool) -> None:
    """config.tf32 for both libraries: cuDNN allows TF32 by default and cuBLAS does not, so float32 meant
    different things for different backends until both are set the same way. No effect on CPU."""
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def compile_stats() -> dict:
    """impls.compiled's process-wide compile counters, zeros while no compiled backend was imported:
    asked only from sys.modules, so other backends do not pay for importing torch._dynamo."""
    compiled = sys.modules.get("impls.compiled")
    return compiled.compile_stats() if compiled else {"compilations": 0, "compile_s": 0.0}


def check_numerics(config: Config, backend: str, seed: int, test_loader: BatchLoader, device: torch.device) -> dict:
    """out_rel_err and grad_rel_err (bench.numerics) of the run's freshly initialised model on the first
    NUMERICS_IMAGES test images, fed in batches of the training batch size (a compiled backend runs its training
    graph, not one compiled for the check). The model is built and dropped here, then the seed is set again, so
    training starts from the same weights and random stream as without this check; it runs outside the memory
    meter."""
    model = build_model(config, backend, device)
    images, labels = test_loader.head(NUMERICS_IMAGES)
    errors = numerics.backend_error(backend, model, images, labels, config.batch_size)  # the training graph
    del model
    torch.manual_seed(seed)
    return {"out_rel_err": errors["out_rel_err"], "grad_rel_err": errors["grad_rel_err"]}


def profile_training(model: nn.Module, loader: BatchLoader, config: Config, device: torch.device) -> dict:
    """kernels_per_step, top_kernels and rnn_engine (which RNN implementation the names show), from PROFILED_STEPS
    training steps on the first training batch under torch.profiler (bench.profiling), after one unprofiled step.
    Each is the timed step (training_step, gradient clipping included), with a fresh Adam of the same settings
    standing in for the run's (same ops per step after its first step, which is the unprofiled one). It runs
    after evaluation, so its extra steps change no measured figure."""
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    loss_fn = nn.CrossEntropyLoss()
    images, labels = next(iter(loader))
    found = profiling.profile_steps(lambda: training_step(model, optimizer, loss_fn, images, labels, config.grad_clip),
                                    PROFILED_STEPS, device)
    # a slower kernel configuration the GPU forced on a Triton backend (impls.triton_common.launch_notes)
    notes: list[str] = getattr(getattr(model, "rnn", None), "launch_notes", lambda: [])()
    return {"kernels_per_step": found["kernels_per_step"], "top_kernels": found["top_kernels"],
            "rnn_engine": found["rnn_engine"],  # not columns: the runner folds both into impl_detail
            "launch_notes": "; ".join(notes)}


def measure_memory(model: nn.Module, loader: BatchLoader, config: Config, device: torch.device) -> dict:
    """peak_tensor_bytes, saved_for_backward_bytes, param_bytes, optimizer_bytes and memory_method (bench.memory),
    from steady-state steps of the timed step's kind on the first training batch, with a fresh Adam. After
    evaluation, like profiling: its steps change the weights, but no measured figure."""
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    loss_fn = nn.CrossEntropyLoss()
    images, labels = next(iter(loader))

    def step():
        loss = loss_fn(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()

    return memory.training_memory(model, optimizer, step, device, batch=(*input_tensors(images), labels))


def work_metrics(config: Config, backend: str, step_ms: float, mean_length: float | None = None) -> dict:
    """step_gflop (bench.flops: matmul FLOPs of one full-batch step, of mean_length steps per image: the mean
    of what the loader feeds) and achieved_gflops at the median step time; efficiency needs the device's peak,
    which the runner holds (env.json). mean_length is also a column."""
    mean_length = config.seq_len if mean_length is None else mean_length
    work = flops.step_flops(impls.spec(backend).family, config.batch_size, config.seq_len, config.input_size,
                            config.hidden_size, config.num_layers, config.num_classes,
                            bidirectional=config.bidirectional, proj_size=config.proj_size,
                            steps=config.batch_size * mean_length)["total"]
    return {"step_gflop": work / 1e9, "achieved_gflops": flops.achieved_gflops(work, step_ms),
            "mean_length": mean_length}


class _Untimed:
    """SplitTimer's marks as no-ops: the same step, outside the clock (profile_training)."""

    def start(self) -> None:
        pass

    def forward_done(self) -> None:
        pass

    def stop(self) -> None:
        pass


_UNTIMED = _Untimed()  # stateless, so one shared instance serves every untimed step


def training_step(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: nn.Module,
                  images: torch.Tensor | Rows, labels: torch.Tensor, grad_clip: float | None,
                  timer: SplitTimer | _Untimed = _UNTIMED) -> torch.Tensor:
    """One optimizer step, the one every figure is of: forward and loss, then zeroing, backward, clipping
    (config.grad_clip; part of the step for every backend alike, no host sync) and the update. `timer`
    (a SplitTimer) marks its start, the end of the forward and its end. Returns the loss, on the device."""
    timer.start()
    loss = loss_fn(model(images), labels)
    timer.forward_done()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip is not None:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    timer.stop()
    return loss


def train_steps(model: nn.Module, loader: BatchLoader, config: Config, device: torch.device, desc: str) -> StepLog:
    """config.epochs passes over loader with Adam; raises NonFiniteLoss if the loss stops being finite."""
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    loss_fn = nn.CrossEntropyLoss()
    timer = SplitTimer(device)
    total_steps = config.epochs * len(loader)
    warmup = min(config.warmup_steps, max(total_steps - 1, 1))
    losses = torch.empty(total_steps, device=device)  # filled on device: no per-step sync
    batch_sizes: list[int] = []
    compiled_steps: list[bool] = []
    data_time = first_step_s = 0.0
    bar = tqdm(total=total_steps, desc=desc, disable=not sys.stderr.isatty(), leave=False)

    sync(device)
    train_started = time.perf_counter()
    step = 0
    for _ in range(config.epochs):
        batches = iter(loader)
        while True:
            fetch_started = time.perf_counter()
            try:
                images, labels = next(batches)
            except StopIteration:
                break
            data_time += time.perf_counter() - fetch_started
            if step == 0:
                sync(device)  # the batch is ready: the first step's clock starts with its own work
                first_started = time.perf_counter()
            compilations = compile_stats()["compilations"]
            loss = training_step(model, optimizer, loss_fn, images, labels, config.grad_clip, timer)
            if step == 0:
                sync(device)  # the first step alone: lazy init, compilation and autotuning land here
                first_step_s = time.perf_counter() - first_started
            losses[step] = loss.detach()
            batch_sizes.append(labels.shape[0])
            compiled_steps.append(compile_stats()["compilations"] > compilations)
            step += 1
            bar.update()
    sync(device)
    train_time = time.perf_counter() - train_started
    bar.close()

    step_losses = losses.float().cpu().tolist()
    if not all(math.isfinite(v) for v in step_losses):
        first_bad = next(i for i, v in enumerate(step_losses) if not math.isfinite(v))
        raise NonFiniteLoss(f"training loss became {step_losses[first_bad]} at step {first_bad}")
    fwd_ms, bwd_ms = timer.split_ms()
    return StepLog(step_losses, batch_sizes, timer.durations_ms(), fwd_ms, bwd_ms, warmup, first_step_s, data_time,
                   train_time, compiled_steps)


def step_metrics(log: StepLog, curve_every: int) -> dict:
    """The training columns of a row. Throughput is steady-state samples over the summed steady-state
    step times: the same clock as step_ms, so neither counts the data fetch (that is data_time_s)."""
    steady = log.steady
    steady_ms = [log.step_ms[i] for i in steady]
    steady_samples = sum(log.batch_sizes[i] for i in steady)
    steady_s = sum(steady_ms) / 1e3
    last_window = log.losses[-curve_every:]
    return {
        "final_train_loss": sum(last_window) / len(last_window),
        "train_steps": len(log.losses),
        "train_time_s": log.train_time_s,
        "train_samples_per_s": steady_samples / steady_s if steady_samples and steady_s > 0 else float("nan"),
        "step_ms_median": percentile(steady_ms, 50),
        "step_ms_p10": percentile(steady_ms, 10),
        "step_ms_p90": percentile(steady_ms, 90),
        "fwd_ms_median": percentile([log.fwd_ms[i] for i in steady], 50),
        "bwd_ms_median": percentile([log.bwd_ms[i] for i in steady], 50),
        "compiled_steps": len(log.step_ms) - log.warmup - len(steady),
        "first_step_s": log.first_step_s,
        "data_time_s": log.data_time_s,
    }


def loss_curve(log: StepLog, every: int, steps_per_epoch: int) -> list[dict]:
    """Mean loss over each window of `every` steps, with the summed step time up to its end."""
    elapsed = torch.tensor(log.step_ms, dtype=torch.float64).cumsum(0).div(1e3).tolist()
    curve = []
    for end in range(every, len(log.losses) + 1, every):
        window = log.losses[end - every:end]
        curve.append({"step": end, "epoch": (end - 1) // steps_per_epoch, "loss": sum(window) / len(window),
                      "elapsed_s": elapsed[end - 1]})
    return curve


_process_warm: set[str] = set()


def warm_up_process(device: torch.device) -> None:
    """One throwaway Adam step per device and process: the first optimizer step imports and
    initialises a lot of PyTorch (over a second and ~100 MB here), which belongs to no backend."""
    if str(device) in _process_warm:
        return
    layer = nn.Linear(4, 4).to(device)
    optimizer = torch.optim.Adam(layer.parameters())
    layer(torch.randn(2, 4, device=device)).sum().backward()
    optimizer.step()
    sync(device)
    _process_warm.add(str(device))


@torch.no_grad()
def evaluate(model: nn.Module, loader: BatchLoader, device: torch.device):
    """(accuracy on all test images, forward throughput over all batches but the first (warm-up), each test
    image's correctness as numpy bools in test-set order)."""
    model.eval()
    correct = timed_samples = 0
    hits = []
    timed_from = None
    for index, (images, labels) in enumerate(loader):
        if index == 1:
            sync(device)
            timed_from = time.perf_counter()
        hit = model(images).argmax(dim=1) == labels
        correct += hit.sum()
        hits.append(hit)  # stays on the device: read back once, after the clock
        if index >= 1:
            timed_samples += labels.shape[0]
    sync(device)
    throughput = timed_samples / (time.perf_counter() - timed_from) if timed_from else float("nan")
    model.train()
    return int(correct) / len(loader.labels), throughput, torch.cat(hits).cpu().numpy()
