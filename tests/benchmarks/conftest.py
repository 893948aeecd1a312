"""Micro-benchmark settings: smoke mode unless timings are asked for, and provenance in machine_info.

Plain `pytest` (the `make test` run) calls each benchmarked function once: a quick smoke test of
every backend available here. The benchmarks time only with --benchmark-only, --benchmark-enable or
a request to save/export results (`make bench-ci`); see bench.microbench.timing_requested.
"""
from __future__ import annotations

import pytest
import torch

from bench import envinfo
from bench.microbench import timing_requested
from impls import plugins

# Plugin backends join the micro-benchmarks: every installed `lstm_bench.backends` entry point, and the files
# or modules in $LSTM_BENCH_PLUGINS (`make bench-ci PLUGINS=path/to/mine.py`). Loaded here, before
# test_backends.py makes its cases from the registry.
plugins.load(plugins.from_environment())

# Provenance that changes from run to run; pytest-benchmark records the commit in commit_info.
_PER_RUN_KEYS = ("timestamp", "git_commit", "git_commit_time")


@pytest.fixture
def benchmark(benchmark, request):
    """pytest-benchmark's fixture, switched to one untimed call unless timings were requested."""
    if not timing_requested(request.config.getoption):
        benchmark.disabled = True
    return benchmark


def pytest_benchmark_update_machine_info(config, machine_info):
    info = {key: value for key, value in envinfo.collect().items() if key not in _PER_RUN_KEYS}
    machine_info["lstm_bench"] = info | ({"plugins": plugins.provenance()} if plugins.LOADED else {})
    machine_info["gpu"] = ", ".join(info["gpu_names"]) or None
    machine_info["cpu_model"] = info["cpu_model"]
    for key in ("torch", "cuda", "cudnn", "triton"):   # cudnn: None unless cuDNN runs on this machine
        machine_info[f"{key}_version"] = info[key]
    try:   # the cuDNN this torch build ships, recorded even where no GPU uses it
        machine_info["cudnn_build_version"] = torch.backends.cudnn.version()
    except (RuntimeError, OSError):
        machine_info["cudnn_build_version"] = None
