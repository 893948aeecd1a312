"""Tasks: the order in which an image's 784 pixels are fed, before they are cut into seq_len steps.

    rows      reading order (row by row, left to right): seq_len 28 is the tutorial's row-by-row MNIST,
              seq_len 784 is pixel MNIST (one pixel a step)
    permuted  one fixed random order of the 784 pixels, drawn from permutation_seed: the same for the
              training and test images, every backend, every process and every machine

The order comes from numpy's legacy RandomState, whose stream numpy promises never to change, seeded
explicitly: the global RNGs (which the runs seed per training seed) are never touched.
"""
from __future__ import annotations

import numpy as np
import torch

from bench.config import TASKS  # the config checks the name; this module gives it its meaning
from bench.constants import IMAGE_PIXELS as PIXELS


def pixel_order(task: str, permutation_seed: int = 0) -> torch.Tensor | None:
    """Indices (784,) int64 into a flattened image, or None for reading order (nothing to gather)."""
    if task == "rows":
        return None
    if task == "permuted":
        return torch.from_numpy(np.random.RandomState(permutation_seed).permutation(PIXELS)).long()
    raise ValueError(f"task must be one of {', '.join(TASKS)}; got {task!r}")
