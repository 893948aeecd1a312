"""The device's peak matmul throughput for a dtype: the best of several timed repetitions of one large GEMM.

Efficiency (bench.flops) divides a run's achieved GFLOP/s by this figure, so it has to be what this
machine can do, with this dtype and thread count, not a datasheet number: a square N x N x N matmul
is the best case every BLAS is tuned for. N is fixed per device and dtype (it used to grow until one
call took 50 ms, so a busy machine probed a smaller matrix than a quiet one and the figure moved with
the load).

CPU: after two untimed calls, REPETITIONS blocks of back-to-back calls, each about BLOCK_S long (the
calls per block are set from one timed call); a block's GFLOP/s is its work over its time. The peak
is the best block: other load only slows blocks. `spread` = 1 - worst / best block says how steady the
probe was, and `cpu_share` (bench.contention) how much of the CPU it had meanwhile; a probe that shared
the machine is marked `contended` and bench.peakcache does not reuse it.
CUDA: triton.testing.do_bench (which flushes L2 and synchronizes) on N = 8192; the peak is its fastest
call, the median and the slowest beside it. For float32 the result depends on TF32, recorded beside it.
"""
from __future__ import annotations

import math
import time

import torch

from bench import contention

CPU_N = {torch.float32: 1024, torch.float64: 1024, torch.bfloat16: 512, torch.float16: 512}  # bfloat16
# without AVX512-BF16 hardware is emulated, about 30x slower: a smaller matrix keeps its probe short
CUDA_N = 8192
REPETITIONS = 7
BLOCK_S = 0.15


def _cpu_blocks(n: int, dtype: torch.dtype, repetitions: int, block_s: float) -> list[float]:
    """Seconds per call in each of `repetitions` timed blocks."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b  # packing buffers and the thread pool start here
    started = time.perf_counter()
    a @ b
    calls = max(1, round(block_s / max(time.perf_counter() - started, 1e-6)))
    per_call = []
    for _ in range(repetitions):
        started = time.perf_counter()
        for _ in range(calls):
            a @ b
        per_call.append((time.perf_counter() - started) / calls)
    return per_call


def _cuda_calls(n: int, dtype: torch.dtype, device: torch.device) -> list[float]:
    import triton.testing
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    return [ms / 1e3 for ms in triton.testing.do_bench(lambda: a @ b, return_mode="all")]


def measure_peak(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, *,
                 repetitions: int = REPETITIONS, block_s: float = BLOCK_S) -> dict:
    """{"gflops": best, "gflops_median", "gflops_worst", "spread", "repetitions", "cpu_share", "contended",
    "shape", "dtype", "device", "threads", "tf32", "method"}."""
    device = torch.device(device)
    if not dtype.is_floating_point:
        raise ValueError(f"measure_peak: dtype must be a floating type, got {dtype}")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"measure_peak: device must be cpu or cuda, got {device}")
    threads = torch.get_num_threads()
    with contention.Watch(device.type, device.index, threads) as watch:
        if device.type == "cuda":
            n = CUDA_N
            seconds = _cuda_calls(n, dtype, device)
            method = "triton.testing.do_bench, a @ b: fastest call"
        else:
            n = CPU_N.get(dtype, 1024)
            seconds = _cpu_blocks(n, dtype, repetitions, block_s)
            method = f"best of {repetitions} blocks of a @ b, each about {block_s:g} s"
    rates = sorted(2 * n ** 3 / s / 1e9 for s in seconds)
    best, worst, median = rates[-1], rates[0], rates[len(rates) // 2]
    if not math.isfinite(best) or best <= 0:
        raise RuntimeError(f"measure_peak: the probe gave {best} GFLOP/s on {device} {dtype}")
    tf32 = bool(torch.backends.cuda.matmul.allow_tf32) if device.type == "cuda" and dtype == torch.float32 else None
    contended = contention.is_contended(watch.cpu_share, watch.others_cores, watch.gpu_shared)
    return {"gflops": best, "gflops_median": median, "gflops_worst": worst, "spread": 1 - worst / best,
            "repetitions": len(rates), "cpu_share": watch.cpu_share, "others_cores": watch.others_cores,
            "contended": contended, "shape": f"{n}x{n}x{n}", "dtype": str(dtype).removeprefix("torch."),
            "device": str(device), "threads": threads, "tf32": tf32, "method": method}

