"""bench.peak: the GEMM probe gives a real figure at a fixed size, with its spread and CPU share, and a real
training step sits below it."""
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
    return measure_peak("cpu", torch.float32, repetitions=4, block_s=0.1)


@PROBE
def test_probe_reports_what_it_measured(peak_float32):
    assert math.isfinite(peak_float32["gflops"]) and peak_float32["gflops"] > 0
    # the best block, by definition, then the median and the worst; spread = 1 - worst / best
    assert peak_float32["gflops"] >= peak_float32["gflops_median"] >= peak_float32["gflops_worst"] > 0
    assert peak_float32["spread"] == pytest.approx(1 - peak_float32["gflops_worst"] / peak_float32["gflops"])
    assert peak_float32["repetitions"] == 4 and peak_float32["shape"] == "1024x1024x1024"  # the same on any load
    assert peak_float32["dtype"] == "float32" and peak_float32["threads"] == torch.get_num_threads()
    assert 0 < peak_float32["cpu_share"] <= 1 and peak_float32["contended"] in (True, False)
    assert "best of 4 blocks" in peak_float32["method"]


@PROBE
def test_bfloat16_probe_runs_on_cpu():
    result = measure_peak("cpu", torch.bfloat16, repetitions=2, block_s=0.05)
    assert result["dtype"] == "bfloat16" and math.isfinite(result["gflops"]) and result["gflops"] > 0
    assert result["shape"] == "512x512x512"


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
