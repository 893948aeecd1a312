"""bench.timing: the CPU memory meter's exact high-water mark, its fallback, and the split step timer."""
import gc
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from bench import timing
from bench.timing import MemoryMeter, SplitTimer

MIB = 2 ** 20


def allocate_and_free(mib=200):
    block = torch.ones(mib * MIB // 4)  # float32, every page written
    total = float(block[::4096].sum())
    del block
    return total


@pytest.fixture(autouse=True)
def no_collection_inside():
    """Garbage from earlier tests freed mid-region would lower RSS and hide a few pages of the peak."""
    gc.collect()
    gc.disable()
    yield
    gc.enable()


PEAK_SCRIPT = """
import torch
from bench.timing import MemoryMeter
meter = MemoryMeter(torch.device("cpu"))
with meter:
    block = torch.ones(200 * 2 ** 20 // 4)  # 200 MiB of float32, every page written
    del block                               # gone again before the meter reads anything
print(meter.peak_bytes, meter.method, sep="|")
"""


@pytest.mark.slow
@pytest.mark.timeout(400)
@pytest.mark.skipif(not timing.reset_high_water_mark(), reason="no /proc/self/clear_refs peak reset here")
def test_a_freed_200_mib_peak_is_seen_by_vmhwm():
    # In a fresh process, as the runner's workers are: a long-lived test process's own heap churn
    # (frees, malloc trims of earlier tests' garbage) moves RSS by a few hundred kB either way.
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run([sys.executable, "-c", PEAK_SCRIPT], capture_output=True, text=True, env=env,
                          cwd=root, timeout=300, check=True)
    peak, method = done.stdout.strip().splitlines()[-1].split("|")
    assert "vmhwm" in method.lower()
    assert int(peak) >= 200 * MIB, int(peak) / MIB
    assert MemoryMeter(torch.device("cpu")).peak_reserved_bytes is None


@pytest.mark.skipif(not timing.reset_high_water_mark(), reason="no /proc/self/clear_refs peak reset here")
def test_a_second_meter_starts_from_its_own_baseline():
    with MemoryMeter(torch.device("cpu")):
        allocate_and_free(200)
    quiet = MemoryMeter(torch.device("cpu"))
    with quiet:
        allocate_and_free(8)
    assert quiet.peak_bytes < 100 * MIB  # the earlier 200 MiB peak was reset, not carried over


def test_without_clear_refs_the_sampler_runs(monkeypatch, tmp_path):
    monkeypatch.setattr(timing, "CLEAR_REFS", str(tmp_path / "missing" / "clear_refs"))
    meter = MemoryMeter(torch.device("cpu"))
    with meter:
        held = torch.ones(64 * MIB // 4)
        assert meter._thread is not None and meter._thread.is_alive()
    assert "sampled" in meter.method and meter.peak_bytes >= 64 * MIB  # still held at exit: the sampler sees it
    del held


def test_split_timer_marks_add_up_to_the_step():
    model = nn.Linear(64, 64)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    timer = SplitTimer(torch.device("cpu"))
    for _ in range(5):
        timer.start()
        loss = model(torch.randn(32, 64)).square().mean()
        timer.forward_done()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        timer.stop()
    steps, (forward, backward) = timer.durations_ms(), timer.split_ms()
    assert len(steps) == len(forward) == len(backward) == 5
    for whole, f, b in zip(steps, forward, backward):
        assert f > 0 and b > 0 and math.isclose(f + b, whole, rel_tol=1e-9, abs_tol=1e-9)


def test_split_timer_refuses_a_step_without_its_forward_mark():
    timer = SplitTimer(torch.device("cpu"))
    timer.start()
    with pytest.raises(RuntimeError, match="forward_done"):
        timer.stop()
    with pytest.raises(RuntimeError, match="after start"):
        SplitTimer(torch.device("cpu")).forward_done()
