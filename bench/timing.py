"""Clocks and memory meters that are honest on both devices.

CUDA work is asynchronous: a host clock read without a synchronize measures the launch, not the
work. Per-step times therefore come from CUDA events (read after one synchronize at the end),
and host clocks are read only after `sync(device)`.
"""
from __future__ import annotations

import threading
import time

import psutil
import torch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StepTimer:
    """Per-step durations in ms. CPU: perf_counter (ops are synchronous). CUDA: event pairs."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self._pending: list = []
        self._start = None

    def start(self) -> None:
        if self.cuda:
            self._start = torch.cuda.Event(enable_timing=True)
            self._start.record()
        else:
            self._start = time.perf_counter()

    def stop(self) -> None:
        if self.cuda:
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            self._pending.append((self._start, end))
        else:
            self._pending.append((time.perf_counter() - self._start) * 1e3)

    def durations_ms(self) -> list[float]:
        """All steps so far; on CUDA this waits for the recorded work to finish."""
        if not self.cuda:
            return list(self._pending)
        torch.cuda.synchronize()
        return [start.elapsed_time(end) for start, end in self._pending]


class MemoryMeter:
    """Peak memory of one run.

    CUDA: torch.cuda.max_memory_allocated after a reset (tensors only, not the caching pool).
    CPU: peak growth of the process's resident set over the run, sampled by a thread. Freed
    memory the allocator keeps from earlier runs is reused without growth, so CPU figures are
    a lower bound; runs are ordered the same way every time, which keeps them comparable.
    """

    INTERVAL_S = 0.002

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.method = ("cuda: torch.cuda.max_memory_allocated" if device.type == "cuda"
                       else f"cpu: peak RSS growth, sampled every {self.INTERVAL_S * 1e3:.0f} ms (psutil)")
        self._process = psutil.Process()
        self._baseline = self._peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "MemoryMeter":
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self._baseline = torch.cuda.memory_allocated(self.device)
        else:
            self._baseline = self._peak = self._process.memory_info().rss
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.INTERVAL_S):
            self._peak = max(self._peak, self._process.memory_info().rss)

    def __exit__(self, *exc) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._peak = max(self._peak, self._process.memory_info().rss)

    @property
    def peak_bytes(self) -> int:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) - self._baseline
        return self._peak - self._baseline


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return float(torch.quantile(torch.tensor(values, dtype=torch.float64), q / 100).item())
