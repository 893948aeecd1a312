"""Facts that more than one module states, each stated here once: the data set's shape and sizes, the
baseline backend, and the sizes of a run's side measurements that the report's prose quotes.

Torch-free: the run side (config, data, train) and the analysis side (report, headline, plots, compare)
both read it.
"""
from __future__ import annotations

import os
from pathlib import Path

from impls.registry import BASELINE

IMAGE_SIDE = 28                       # MNIST images are 28 x 28 pixels
IMAGE_PIXELS = IMAGE_SIDE * IMAGE_SIDE
TRAIN_IMAGES = 60_000                 # MNIST's training set
TEST_IMAGES = 10_000                  # MNIST's test set: every accuracy is measured on all of it

# Before training, the run's fresh model against float64 on the first NUMERICS_IMAGES test images
# (at 1000, cudnn's own CPU bias-gradient error doubles to 2e-5).
NUMERICS_IMAGES = 256
# After evaluation, PROFILED_STEPS training steps under torch.profiler (after one unprofiled step).
PROFILED_STEPS = 3

__all__ = ["BASELINE", "IMAGE_PIXELS", "IMAGE_SIDE", "NUMERICS_IMAGES", "PROFILED_STEPS", "TEST_IMAGES",
           "TRAIN_IMAGES"]


def user_cache_dir() -> Path:
    """Where the harness keeps what it reuses between runs on this machine (the GEMM peak, compiled kernels):
    $XDG_CACHE_HOME/lstm-bench, else ~/.cache/lstm-bench. Read at each call, so tests can point it elsewhere."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lstm-bench"
