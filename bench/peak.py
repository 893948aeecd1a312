"""The device's peak matmul throughput for a dtype, measured once by a short large-GEMM probe.

Efficiency (bench.flops) divides a run's achieved GFLOP/s by this figure, so it has to be what
this machine can do now, with this dtype and thread count, not a datasheet number: a square
N x N x N matmul is the best case every BLAS is tuned for.

CPU: torch.utils.benchmark.Timer over blocks of calls for about `min_run_time` seconds, with the
process's thread count (the Timer would otherwise use one thread). N grows from 256 until one
call takes about 50 ms (at most 2048), so slow dtypes (bfloat16 without AVX512-BF16 hardware)
stay short. The peak is the fastest block: other load on a shared machine only slows blocks.
CUDA: triton.testing.do_bench (which flushes L2 and synchronizes) on N = 8192; the peak is its
fastest call, the median beside it. For float32 the result depends on TF32, recorded beside it.
"""
from __future__ import annotations

import math
import time

import torch

CPU_MAX_N = 2048
CUDA_N = 8192
TARGET_CALL_S = 0.05


def _cpu_size(dtype: torch.dtype) -> int:
    n = 256
    while n < CPU_MAX_N:
        a = torch.randn(n, n).to(dtype)
        a @ a  # first call: packing buffers and thread pool start-up
        started = time.perf_counter()
        a @ a
        if time.perf_counter() - started >= TARGET_CALL_S:
            break
        n *= 2
    return n


def measure_peak(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, *,
                 min_run_time: float = 1.0) -> dict:
    """{"gflops": peak GFLOP/s, "gflops_median", "shape", "dtype", "device", "threads", "tf32", "method"}."""
    device = torch.device(device)
    if not dtype.is_floating_point:
        raise ValueError(f"measure_peak: dtype must be a floating type, got {dtype}")
    threads = torch.get_num_threads()
    tf32 = None
    if device.type == "cuda":
        import triton.testing
        n = CUDA_N
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        median_ms, best_ms = triton.testing.do_bench(lambda: a @ b, quantiles=[0.5, 0.0])
        median_s, best_s = median_ms / 1e3, best_ms / 1e3
        tf32 = bool(torch.backends.cuda.matmul.allow_tf32) if dtype == torch.float32 else None
        method = "triton.testing.do_bench, a @ b"
    elif device.type == "cpu":
        from torch.utils.benchmark import Timer
        n = _cpu_size(dtype)
        a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        timer = Timer("a @ b", globals={"a": a, "b": b}, num_threads=threads)
        measurement = timer.blocked_autorange(min_run_time=min_run_time)
        best_s, median_s = min(measurement.times), measurement.median
        method = f"torch.utils.benchmark.Timer.blocked_autorange({min_run_time:g} s), a @ b, fastest block"
    else:
        raise ValueError(f"measure_peak: device must be cpu or cuda, got {device}")
    flop = 2 * n ** 3
    gflops = flop / best_s / 1e9
    if not math.isfinite(gflops) or gflops <= 0:
        raise RuntimeError(f"measure_peak: the probe gave {gflops} GFLOP/s on {device} {dtype}")
    return {"gflops": gflops, "gflops_median": flop / median_s / 1e9, "shape": f"{n}x{n}x{n}",
            "dtype": str(dtype).removeprefix("torch."), "device": str(device), "threads": threads,
            "tf32": tf32, "method": method}
