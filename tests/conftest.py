"""Test-session setup and the fixtures several test modules share.

Markers (pyproject.toml, --strict-markers): `slow` on every test that compiles (torch.compile, Triton
ahead of time), starts Ray, starts worker processes (bench run through its executor, subprocesses), runs the
Triton interpreter beyond a toy shape or waits on a time limit, and on the parity grid beyond its pairwise
cover (`make test-fast` leaves them out); `network` on the tests that fetch real data. `make test-fast` runs
over the cores (pytest-xdist, one test file per worker): a test writes only under its tmp_path.
"""
import os

import pytest
import torch

# Without a GPU, Triton kernels run only under the interpreter, and Triton reads this variable when
# a kernel is defined: set it before impls.triton_lstm can be imported by any test module.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# Every tensor in the suite is tiny: a second intra-op thread adds nothing, and on a shared machine its spin-waits
# against other processes made each op 5 to 10 times slower (a GRU step on 50x28x8: 0.02 s with one thread,
# 0.2-0.5 s with two under load). One thread for the whole session; a test of --threads sets and restores its own.
torch.set_num_threads(1)


@pytest.fixture
def synthetic_data():
    """400 training and 200 test images of synthetic MNIST (tests.fixtures.synthetic)."""
    from tests.fixtures.synthetic import synthetic_mnist  # here, not above: after TRITON_INTERPRET is set
    return synthetic_mnist()


@pytest.fixture
def fake_mnist(monkeypatch, synthetic_data):
    """`bench run` loads synthetic_data instead of MNIST: the CLI end to end, offline and in seconds. Its workers get
    the tensors, as Ray's and in-process runs do, instead of the files' place (bench.data.for_cells)."""
    monkeypatch.setattr("bench.data.load_mnist", lambda *args, **kwargs: synthetic_data)
    monkeypatch.setattr("bench.data.for_cells", lambda *args, **kwargs: synthetic_data)
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


@pytest.fixture
def unrendered_plots():
    """Plots laid out but not rasterised for this test (tests.fixtures.plots.unrendered): for the tests that read
    a report's or a history's text, not its pixels."""
    from tests.fixtures.plots import unrendered
    with unrendered():
        yield


@pytest.fixture
def interrupted_run(monkeypatch):
    """interrupted_run(n, config, out, data, at_kill=None): runner.execute into `out`, stopped as by Ctrl-C
    (KeyboardInterrupt) when its n-th run starts, after at_kill() (e.g. rows a kill left half-written); then
    training is real again, for the resume that follows. Returns the run ids started, the n-th included."""
    import bench.train
    from bench import planning, runner

    def run(n: int, config, out, data, at_kill=None) -> list[str]:
        real, started = bench.train.train_and_measure, []

        def killed_at_the_nth(point, backend, seed, *args, **kwargs):
            started.append(planning.run_id(backend, seed, point))
            if len(started) == n:
                if at_kill:
                    at_kill()
                raise KeyboardInterrupt
            return real(point, backend, seed, *args, **kwargs)

        monkeypatch.setattr("bench.train.train_and_measure", killed_at_the_nth)
        with pytest.raises(KeyboardInterrupt):
            runner.execute(config, out, torch.device("cpu"), data, log=lambda _: None)
        monkeypatch.setattr("bench.train.train_and_measure", real)
        return started
    return run
