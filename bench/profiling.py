"""What really ran: a few steady-state training steps under torch.profiler, after the timed run.

Columns it fills:
  kernels_per_step  CUDA: device kernels launched per step (profiler events on the CUDA device,
                    memcpy/memset excluded). CPU: top-level ATen ops per step, i.e. `aten::`
                    events with no `aten::` ancestor: the operator calls made by Python code, the
                    autograd engine and the optimizer, not the ops those call internally, which
                    depend on the kernel library (oneDNN, MKL) rather than on the backend's code.
                    Stable from step to step: the same calls happen every step.
  top_kernels       the three names taking the most time, with their share:
                    "name (41%); name (20%); name (9%)". CUDA: share of all kernel time.
                    CPU: self time of `aten::` ops, as a share of all self time profiled.
  rnn_engine        which RNN implementation the names show (cuDNN persistent or standard
                    algorithm, oneDNN on CPU, or plainly not cuDNN), for `impl_detail`.

Profiling slows every op, so none of this is a timing; it runs after the timed steps.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile


def short_name(name: str, width: int = 60) -> str:
    """A kernel's name without return type, template arguments or parameter list."""
    name = name.removeprefix("void ")
    for stop in ("<", "("):
        if stop in name[1:]:
            name = name[:name.index(stop, 1)]
    return name[:width]


def _has_aten_ancestor(event) -> bool:
    parent = event.cpu_parent
    while parent is not None:
        if parent.name.startswith("aten::"):
            return True
        parent = parent.cpu_parent
    return False


def _top(times: dict[str, float], total: float, count: int = 3) -> str:
    ranked = sorted(times.items(), key=lambda item: -item[1])[:count]
    return "; ".join(f"{short_name(name)} ({100 * t / total:.0f}%)" for name, t in ranked) if total > 0 else ""


def rnn_engine(names: Iterable[str], device_type: str) -> str | None:
    """Which RNN implementation op/kernel `names` show on `device_type` ("cuda"/"cpu"); None if unknown.

    The one kernel-name classifier: `bench run` folds it into impl_detail, `bench gpu-check` into its `ran`
    column. A verdict that starts "not cuDNN" says no cuDNN RNN kernel ran."""
    names = list(names)
    if device_type != "cuda":
        return _cpu_engine(names)
    persistent = [n for n in names if "RNN_blockPersist" in n]
    if persistent:
        cores = " with tensor cores (HMMA)" if any("HMMA" in n for n in persistent) else ""
        return f"cuDNN persistent RNN kernel (RNN_blockPersist){cores}"
    if any(key in n for n in names for key in CUDNN_STANDARD):
        return "cuDNN standard algorithm (a GEMM and elemWiseRNNcell per step)"
    if any(n == "aten::_cudnn_rnn" for n in names):
        return "cuDNN (aten::_cudnn_rnn), algorithm not recognised from the kernel names"
    if any("cudnn" in n.lower() for n in names):
        return "cuDNN, algorithm not recognised from the kernel names"
    if any("lstm_cell_forward" in n or "lstm_cell_backward" in n for n in names):
        return "not cuDNN: ATen fused LSTM cell kernels"
    if any("lstm_seq_" in n for n in names):
        return "persistent Triton kernels"
    if any("lstm_step_" in n for n in names):
        return "per-step Triton kernels + cuBLAS"
    return "not cuDNN: no cuDNN RNN kernel ran"


# cuDNN's standard (non-persistent) algorithm: a GEMM per step, then one of these pointwise kernels.
CUDNN_STANDARD = ("elemWiseRNNcell", "RNN_elementWise", "LSTM_elementWise", "GRU_elementWise")


def _cpu_engine(names: list[str]) -> str | None:
    if any(n.startswith("aten::mkldnn_rnn_layer") for n in names):
        return "oneDNN RNN (aten::mkldnn_rnn_layer)"
    if any(n in ("aten::lstm", "aten::gru") for n in names):
        return "ATen native RNN (aten::lstm/aten::gru decomposed into cells)"
    return None


# Kineto's C++ logging writes these on every profile, straight to fd 2 (KINETO_LOG_LEVEL does not silence
# the USDT lines); on a machine without a GPU it adds an ERROR about the device count. Noise, every run.
KINETO_NOISE = re.compile(r"^(USDT|STAGE):.*ActivityProfiler|gpuGetDeviceCount failed")


@contextlib.contextmanager
def _without_kineto_noise():
    """fd 2 goes to a scratch file while profiling; afterwards every line but Kineto's chatter is passed on."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as scratch:
        os.dup2(scratch.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            scratch.seek(0)
            kept = [line for line in scratch.read().decode(errors="replace").splitlines()
                    if not KINETO_NOISE.search(line)]
            if kept:
                print("\n".join(kept), file=sys.stderr)


def profile_steps(step_fn: Callable[[], object], n_steps: int = 3, device: torch.device | str = "cpu",
                  warmup: int = 1) -> dict:
    """Run `step_fn` (one whole training step) warmup + n_steps times, profiling the last n_steps.

    Returns {"kernels_per_step": float, "top_kernels": str, "rnn_engine": str | None} (module docstring).
    """
    device = torch.device(device)
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps <= 0:
        raise ValueError(f"profile_steps: n_steps must be a positive int, got {n_steps!r}")
    cuda = device.type == "cuda"
    for _ in range(warmup):
        step_fn()
    if cuda:
        torch.cuda.synchronize(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with _without_kineto_noise():
        with profile(activities=activities) as prof:
            for _ in range(n_steps):
                step_fn()
            if cuda:
                torch.cuda.synchronize(device)
        events = prof.events()
    times: dict[str, float] = defaultdict(float)
    if cuda:
        kernels = [e for e in events if e.device_type == DeviceType.CUDA
                   and not e.name.startswith(("Memcpy", "Memset"))]
        for e in kernels:
            times[e.name] += e.time_range.elapsed_us()
        count, total = len(kernels), sum(times.values())
        names = Counter(e.name for e in events)
    else:
        cpu = [e for e in events if e.device_type == DeviceType.CPU]
        count = sum(1 for e in cpu if e.name.startswith("aten::") and not _has_aten_ancestor(e))
        for e in cpu:
            if e.name.startswith("aten::"):
                times[e.name] += e.self_cpu_time_total
        total = sum(e.self_cpu_time_total for e in cpu)
        names = Counter(e.name for e in cpu)
    return {"kernels_per_step": count / n_steps, "top_kernels": _top(times, total),
            "rnn_engine": rnn_engine(names, device.type)}
