"""Tasks: the order in which an image's 784 pixels are fed, before they are cut into seq_len steps.

    rows      reading order (row by row, left to right): seq_len 28 is the tutorial's row-by-row MNIST,
              seq_len 784 is pixel MNIST (one pixel a step)
    permuted  one fixed random order of the 784 pixels, drawn from permutation_seed: the same for the
              training and test images, every backend, every process and every machine
    rows-trimmed  reading order, each image ending at its last step that has ink (a nonzero pixel): its
              natural length, seq_len or fewer, at least 1 (an all-blank image is one step). Every other
              task gives every image all seq_len steps. How the lengths reach the backend is config.packing
              (bench.data.loader): packing=none feeds every image whole, as the rows task does.

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
    if task in ("rows", "rows-trimmed"):
        return None
    if task == "permuted":
        return torch.from_numpy(np.random.RandomState(permutation_seed).permutation(PIXELS)).long()
    raise ValueError(f"task must be one of {', '.join(TASKS)}; got {task!r}")


def trimmed(task: str) -> bool:
    """Whether the task gives each image its own length (else every image has all seq_len steps)."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}; got {task!r}")
    return task == "rows-trimmed"


def inked_lengths(steps: torch.Tensor) -> torch.Tensor:
    """steps (N, T, D) of any dtype, 0 = blank -> (N,) int64: the steps up to and including each image's last one
    with a nonzero value, at least 1 (a blank image is read for one step, since a sequence cannot be empty)."""
    inked = steps.ne(0).any(dim=2)                                     # (N, T)
    positions = torch.arange(1, steps.shape[1] + 1, device=steps.device)
    return (inked * positions).amax(dim=1).clamp(min=1).long()


def length_counts(lengths: torch.Tensor) -> str:
    """A length distribution as text, "length:count" by length, e.g. "19:3 20:17 28:980" (runs.csv)."""
    values, counts = torch.unique(lengths.cpu(), return_counts=True)
    return " ".join(f"{int(v)}:{int(c)}" for v, c in zip(values, counts))

