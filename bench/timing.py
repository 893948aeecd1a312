"""Clocks and memory meters that are honest on both devices.

CUDA work is asynchronous: a host clock read without a synchronize measures the launch, not the
work. Per-step times therefore come from CUDA events (read after one synchronize at the end),
and host clocks are read only after `sync(device)`. SplitTimer times whole steps with a mark after the
forward, for forward and backward apart. MemoryMeter reads CUDA's allocator peaks,
or on CPU the kernel's exact peak-RSS counter (VmHWM), with a sampling thread only as a fallback.
"""
from __future__ import annotations

import threading
import time

import psutil
import torch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class SplitTimer:
    """Per-step durations in ms, with a mark after the forward: a step's forward and backward apart.

        timer.start(); loss = loss_fn(model(x), y); timer.forward_done()
        optimizer.zero_grad(); loss.backward(); optimizer.step(); timer.stop()

    forward = start -> forward_done (the model and the loss); backward = forward_done -> stop (zeroing,
    backward, optimizer step). The three marks are shared, so forward + backward = the whole step.
    CPU: perf_counter. CUDA: one event per mark, read after a single synchronize.
    """

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self._marks: list[tuple] = []
        self._open: list = []

    def _mark(self):
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def start(self) -> None:
        self._open = [self._mark()]

    def forward_done(self) -> None:
        if len(self._open) != 1:
            raise RuntimeError("SplitTimer: forward_done() must come once per step, after start()")
        self._open.append(self._mark())

    def stop(self) -> None:
        if len(self._open) != 2:
            raise RuntimeError("SplitTimer: stop() needs start() and forward_done() first in this step")
        self._marks.append((*self._open, self._mark()))
        self._open = []

    def _spans_ms(self) -> list[tuple[float, float]]:
        if not self.cuda:
            return [((mid - start) * 1e3, (end - mid) * 1e3) for start, mid, end in self._marks]
        torch.cuda.synchronize()
        return [(start.elapsed_time(mid), mid.elapsed_time(end)) for start, mid, end in self._marks]

    def durations_ms(self) -> list[float]:
        """Whole steps (on CUDA this waits for the recorded work to finish)."""
        if not self.cuda:
            return [(end - start) * 1e3 for start, _, end in self._marks]
        torch.cuda.synchronize()
        return [start.elapsed_time(end) for start, _, end in self._marks]

    def split_ms(self) -> tuple[list[float], list[float]]:
        """(forward ms per step, backward+optimizer ms per step)."""
        spans = self._spans_ms()
        return [f for f, _ in spans], [b for _, b in spans]


CLEAR_REFS = "/proc/self/clear_refs"
STATUS = "/proc/self/status"


def _status_bytes(field: str) -> int | None:
    """A "Vm..." line of /proc/self/status in bytes, or None where there is no such file or line."""
    try:
        with open(STATUS) as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024  # the kernel reports kB
    except OSError:
        return None
    return None


def reset_high_water_mark() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) to the current RSS; False where that is not possible.

    Writing "5" to /proc/PID/clear_refs does it (Linux 4.0+). A kernel or sandbox may accept the write
    and ignore it, so success means VmHWM came down to RSS (within 4 MiB, for concurrent frees).
    """
    try:
        with open(CLEAR_REFS, "w") as handle:
            handle.write("5")
    except OSError:
        return False
    hwm, rss = _status_bytes("VmHWM"), _status_bytes("VmRSS")
    return hwm is not None and rss is not None and hwm <= rss + 4 * 2 ** 20


class MemoryMeter:
    """The process's memory growth over a run, a secondary figure: `with meter: ...`, then `meter.peak_bytes`
    (runs.csv's rss_growth_bytes on CPU) and `meter.peak_reserved_bytes` (CUDA's pool). The primary memory
    column, peak_tensor_bytes, counts live tensors instead (bench.memory).

    CUDA: torch.cuda.max_memory_allocated after a reset (tensors only); `peak_reserved_bytes` beside
    it is max_memory_reserved, the caching allocator's pool, which is what the device must have.
    CPU: peak growth of the process's resident set over the run, from the kernel's exact high-water
    mark: VmHWM is reset at entry (reset_high_water_mark) and read at exit; growth = VmHWM - RSS at
    entry. Where the reset is not available a thread samples RSS every 2 ms instead (psutil), which
    competes for a core and can miss short peaks; `method` says which ran. Freed memory the
    allocator keeps from earlier runs is reused without growth, so CPU figures are a lower bound;
    runs are ordered the same way every time, which keeps them comparable.
    """

    INTERVAL_S = 0.002
    CUDA_METHOD = "cuda: torch.cuda.max_memory_allocated (max_memory_reserved in peak_reserved_bytes)"
    VMHWM_METHOD = "cpu: peak RSS growth, kernel high-water mark (VmHWM, reset by /proc/self/clear_refs)"
    SAMPLED_METHOD = f"cpu: peak RSS growth, sampled every {INTERVAL_S * 1e3:.0f} ms (psutil)"

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.method = self.CUDA_METHOD if device.type == "cuda" else "cpu: not measured yet"
        self._process = psutil.Process()
        self._baseline = self._peak = self._reserved_baseline = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> MemoryMeter:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self._baseline = torch.cuda.memory_allocated(self.device)
            self._reserved_baseline = torch.cuda.memory_reserved(self.device)
        elif reset_high_water_mark():
            self.method = self.VMHWM_METHOD
            self._baseline = self._peak = _status_bytes("VmRSS") or 0  # present: the reset above read the file
        else:
            self.method = self.SAMPLED_METHOD
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
        elif self.method == self.VMHWM_METHOD:
            self._peak = max(self._peak, _status_bytes("VmHWM") or 0)

    @property
    def peak_bytes(self) -> int:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) - self._baseline
        return self._peak - self._baseline

    @property
    def peak_reserved_bytes(self) -> int | None:
        """CUDA: growth of the caching allocator's pool at its peak; None on CPU (no pool to speak of)."""
        if self.device.type != "cuda":
            return None
        return torch.cuda.max_memory_reserved(self.device) - self._reserved_baseline

