"""bench.peak: the GEMM probe gives a real figure, and a real training step sits below it."""
import math
import time

import pytest
import torch
from torch import nn

import impls
from bench.flops import achieved_gflops, efficiency, step_flops
from bench.model import RowClassifier
from bench.peak import measure_peak

# The probe times GEMMs for a fixed time (min_run_time): the tests that run it are in the slow lane.
PROBE = pytest.mark.slow


@pytest.fixture(scope="module")
def peak_float32():
    return measure_peak("cpu", torch.float32, min_run_time=0.5)


@PROBE
def test_probe_reports_what_it_measured(peak_float32):
    assert math.isfinite(peak_float32["gflops"]) and peak_float32["gflops"] > 0
    assert peak_float32["gflops"] >= peak_float32["gflops_median"]  # the fastest block, by definition
    n = int(peak_float32["shape"].split("x")[0])
    assert peak_float32["shape"] == f"{n}x{n}x{n}" and 256 <= n <= 2048
    assert peak_float32["dtype"] == "float32" and peak_float32["threads"] == torch.get_num_threads()
    assert "torch.utils.benchmark" in peak_float32["method"]


@PROBE
def test_bfloat16_probe_runs_on_cpu():
    result = measure_peak("cpu", torch.bfloat16, min_run_time=0.2)
    assert result["dtype"] == "bfloat16" and math.isfinite(result["gflops"]) and result["gflops"] > 0


@PROBE
def test_seed_shape_training_step_is_below_the_peak(peak_float32):
    batch, steps, width, hidden, layers, classes = 50, 28, 28, 64, 2, 10
    torch.manual_seed(0)
    model = RowClassifier(impls.build("cudnn", width, hidden, layers), hidden, classes)
    optimizer = torch.optim.Adam(model.parameters())
    images, labels = torch.rand(batch, steps, width), torch.randint(0, classes, (batch,))
    times = []
    for _ in range(6):
        started = time.perf_counter()
        loss = nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append((time.perf_counter() - started) * 1e3)
    step_ms = sorted(times[1:])[2]
    flop = step_flops("lstm", batch, steps, width, hidden, layers, classes)["total"]
    share = efficiency(achieved_gflops(flop, step_ms), peak_float32["gflops"])
    assert 0 < share < 1, (flop, step_ms, peak_float32)


def test_bad_dtype_and_device():
    with pytest.raises(ValueError, match="floating type"):
        measure_peak("cpu", torch.int32)
    with pytest.raises(ValueError, match="cpu or cuda"):
        measure_peak("meta", torch.float32)
