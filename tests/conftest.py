"""Test-session setup and the fixtures several test modules share.

Markers (pyproject.toml, --strict-markers): `slow` on every test that compiles (torch.compile, Triton
ahead of time), starts Ray, starts worker processes (bench run through its executor, subprocesses), runs the
Triton interpreter beyond a toy shape or waits on a time limit, and on the parity grid beyond its pairwise
cover (`make test-fast` leaves them out); `network` on the tests that fetch real data.
"""
import os

import pytest
import torch

# Without a GPU, Triton kernels run only under the interpreter, and Triton reads this variable when
# a kernel is defined: set it before impls.triton_lstm can be imported by any test module.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture
def synthetic_data():
    """400 training and 200 test images of synthetic MNIST (tests.fixtures.synthetic)."""
    from tests.fixtures.synthetic import synthetic_mnist  # here, not above: after TRITON_INTERPRET is set
    return synthetic_mnist()


@pytest.fixture
def fake_mnist(monkeypatch, synthetic_data):
    """`bench run` loads synthetic_data instead of MNIST: the CLI end to end, offline and in seconds."""
    monkeypatch.setattr("bench.data.load_mnist", lambda *args, **kwargs: synthetic_data)
    return synthetic_data


@pytest.fixture(autouse=True, scope="session")
def _peak_cache_of_the_session(tmp_path_factory):
    """`bench run` caches the GEMM peak under $XDG_CACHE_HOME (bench.peakcache): tests use a cache of their own,
    never the user's, shared by the session so the probe runs once (unless the machine was busy meanwhile)."""
    saved = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    yield
    if saved is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = saved
