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
from bench.config import Config
from bench.data import BatchLoader, Mnist
from bench.model import RowClassifier
from bench.timing import MemoryMeter, StepTimer, percentile, sync

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class NonFiniteLoss(RuntimeError):
    pass


@dataclass
class RunResult:
    metrics: dict        # the measured columns of runs.csv
    curve: list[dict]    # curves.csv rows, without the run key
    steps: list[dict]    # steps.csv rows, without the run key


def build_model(config: Config, backend: str, device: torch.device) -> nn.Module:
    rnn = impls.build(backend, config.input_size, config.hidden_size, config.num_layers, batch_first=True)
    model = RowClassifier(rnn, config.hidden_size, config.num_classes)
    return model.to(device=device, dtype=DTYPES[config.dtype])


def train_and_measure(config: Config, backend: str, seed: int, data: Mnist, device: torch.device,
                      progress: bool | None = None) -> RunResult:
    run_started = time.perf_counter()
    dtype = DTYPES[config.dtype]
    if config.threads:
        torch.set_num_threads(config.threads)
    warm_up_process(device)  # before seeding: it draws random numbers, and only in a process's first run
    torch.manual_seed(seed)
    loader = BatchLoader(data.train_images, data.train_labels, batch_size=config.batch_size,
                         seq_len=config.seq_len, device=device, dtype=dtype, shuffle=True, seed=seed,
                         limit=config.train_limit)
    test_loader = BatchLoader(data.test_images, data.test_labels, batch_size=config.eval_batch_size,
                              seq_len=config.seq_len, device=device, dtype=dtype, shuffle=False)
    meter = MemoryMeter(device)  # the datasets are inputs, not the model's cost: they stay outside
    with meter:
        model = build_model(config, backend, device)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        loss_fn = nn.CrossEntropyLoss()
        timer = StepTimer(device)
        total_steps = config.epochs * len(loader)
        warmup = min(config.warmup_steps, max(total_steps - 1, 1))
        losses = torch.empty(total_steps, device=device)  # filled on device: no per-step sync
        batch_sizes: list[int] = []
        data_time = first_step_s = steady_started = 0.0
        show = sys.stderr.isatty() if progress is None else progress
        bar = tqdm(total=total_steps, desc=f"{backend} seed {seed}", disable=not show, leave=False)

        sync(device)
        train_started = time.perf_counter()
        step = 0
        for epoch in range(config.epochs):
            batches = iter(loader)
            while True:
                fetch_started = time.perf_counter()
                try:
                    images, labels = next(batches)
                except StopIteration:
                    break
                data_time += time.perf_counter() - fetch_started
                if step == warmup:
                    sync(device)
                    steady_started = time.perf_counter()
                timer.start()
                loss = loss_fn(model(images), labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                timer.stop()
                if step == 0:
                    sync(device)  # the first step alone: lazy init, compilation and autotuning land here
                    first_step_s = time.perf_counter() - fetch_started
                losses[step] = loss.detach()
                batch_sizes.append(labels.shape[0])
                step += 1
                bar.update()
        sync(device)
        train_ended = time.perf_counter()
        bar.close()

        step_losses = losses.float().cpu().tolist()
        if not all(math.isfinite(v) for v in step_losses):
            first_bad = next(i for i, v in enumerate(step_losses) if not math.isfinite(v))
            raise NonFiniteLoss(f"training loss became {step_losses[first_bad]} at step {first_bad}")
        step_ms = timer.durations_ms()

        eval_started = time.perf_counter()
        accuracy, infer_samples_per_s = evaluate(model, test_loader, device)
        eval_time = time.perf_counter() - eval_started

    steady_samples = sum(batch_sizes[warmup:])
    steady_ms = step_ms[warmup:]
    elapsed = torch.tensor(step_ms, dtype=torch.float64).cumsum(0).div(1e3).tolist()
    per_epoch = len(loader)
    curve = []
    for end in range(config.curve_every, total_steps + 1, config.curve_every):
        window = step_losses[end - config.curve_every:end]
        curve.append({"step": end, "epoch": (end - 1) // per_epoch, "loss": sum(window) / len(window),
                      "elapsed_s": elapsed[end - 1]})
    last_window = step_losses[-config.curve_every:]
    metrics = {
        "params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "test_accuracy": accuracy,
        "final_train_loss": sum(last_window) / len(last_window),
        "train_steps": total_steps,
        "train_time_s": train_ended - train_started,
        "train_samples_per_s": steady_samples / (train_ended - steady_started) if steady_samples else float("nan"),
        "step_ms_median": percentile(steady_ms, 50),
        "step_ms_p10": percentile(steady_ms, 10),
        "step_ms_p90": percentile(steady_ms, 90),
        "infer_samples_per_s": infer_samples_per_s,
        "peak_memory_bytes": meter.peak_bytes,
        "memory_method": meter.method,
        "first_step_s": first_step_s,
        "data_time_s": data_time,
        "eval_time_s": eval_time,
        "threads": torch.get_num_threads(),
        "wall_time_s": time.perf_counter() - run_started,
    }
    steps = [{"step": i, "step_ms": ms} for i, ms in enumerate(step_ms) if i >= warmup]
    return RunResult(metrics, curve, steps)


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
    """Accuracy on all test images, and forward throughput over all batches but the first (warm-up)."""
    model.eval()
    correct = timed_samples = 0
    timed_from = None
    for index, (images, labels) in enumerate(loader):
        if index == 1:
            sync(device)
            timed_from = time.perf_counter()
        correct += (model(images).argmax(dim=1) == labels).sum()
        if index >= 1:
            timed_samples += labels.shape[0]
    sync(device)
    throughput = timed_samples / (time.perf_counter() - timed_from) if timed_from else float("nan")
    model.train()
    return int(correct) / len(loader.labels), throughput
