"""Issue 21, cases 4, 5 and 11 on Ray: joining is bounded and fails in one line, a run without an address gets a
private local cluster whatever Ray state the machine holds, and --timeout ends a Ray cell as it ends a local one.

The clusters here are real (local, started by the test's own process); each starts in a subprocess, so a test
never inherits another's Ray state. A user's own cluster (`ray start --head`) is never touched: the stale
cluster file of case 5 lives in a temp directory of its own (RAY_TMPDIR).
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from bench import run_command, storage
from bench.ray_cluster import CellTimedOut, host_port, time_limit

TESTS = str(Path(__file__).resolve().parent)
SMALL = ["--backends", "gru", "--train-limit", "300", "--warmup-steps", "1", "--hidden", "8", "--device", "cpu"]

DRIVER = r"""
import sys
from pathlib import Path
sys.path[:0] = [sys.argv[1], str(Path(sys.argv[1]).parent)]
import bench.data
from tests.fixtures.synthetic import synthetic_mnist
bench.data.load_mnist = lambda root=None, quiet=True: synthetic_mnist()
from bench import run_command
sys.exit(run_command.cli(sys.argv[2:]))
"""


def bench_run(argv: list[str], env: dict | None = None, timeout: float = 420) -> subprocess.CompletedProcess:
    """`bench run` on synthetic MNIST in a fresh process; the timeout only guards against a hang."""
    return subprocess.run([sys.executable, "-c", DRIVER, TESTS, *argv], capture_output=True, text=True,
                          timeout=timeout, env=os.environ | (env or {}))


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error: ")]


@pytest.mark.parametrize("address,expected", [("127.0.0.1:6379", ("127.0.0.1", 6379)),
                                              ("ray://head:10001", ("head", 10001)),
                                              ("[::1]:6379", ("::1", 6379)), ("auto", None), ("head", None)])
def test_addresses_are_read_for_the_probe(address, expected):
    assert host_port(address) == expected


def test_a_refused_address_fails_at_once_in_one_line(tmp_path, capsys):
    pytest.importorskip("ray")
    out = tmp_path / "out"
    assert run_command.cli(["--executor", "ray", "--ray-address", "127.0.0.1:1", "--out", str(out), *SMALL]) == 1
    assert capsys.readouterr().err == ("error: ray: nothing answers at 127.0.0.1:1 (Connection refused); "
                                       "is the cluster up? `ray status` on its head node shows its address\n")
    assert not out.exists()


def test_a_bad_connect_timeout_is_refused(tmp_path, capsys):
    argv = ["--executor", "ray", "--ray-connect-timeout", "0", "--out", str(tmp_path / "o"), *SMALL]
    assert run_command.cli(argv) == 2
    assert capsys.readouterr().err == "error: --ray-connect-timeout must be a positive number of seconds, got 0\n"


@pytest.mark.slow
def test_an_address_that_answers_but_is_no_cluster_is_given_up_after_the_connect_timeout(tmp_path):
    pytest.importorskip("ray")
    silent = socket.socket()  # accepts connections, never speaks: Ray would keep retrying
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    address = f"127.0.0.1:{silent.getsockname()[1]}"
    try:
        done = bench_run(["--executor", "ray", "--ray-address", address, "--ray-connect-timeout", "5",
                          "--out", str(tmp_path / "out"), *SMALL])
    finally:
        silent.close()
    assert done.returncode == 1, done.stderr
    assert error_lines(done.stderr) == [f"error: ray: no connection to the Ray cluster at {address} within 5 s "
                                        "(--ray-connect-timeout)"]
    assert "Traceback" not in done.stderr and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_private_cluster_starts_beside_a_stale_cluster_file(tmp_path):
    """Ray's record of "the" cluster of this machine, left by `ray start --head` killed without `ray stop`: a plain
    ray.init(num_cpus=...) reads it and fails ("When connecting to an existing cluster, num_cpus and num_gpus must
    not be provided"). The run starts its own cluster, says so, and finishes."""
    pytest.importorskip("ray")
    ray_tmp = Path(tempfile.mkdtemp(prefix="r", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    try:
        record = ray_tmp / "ray" / "ray_current_cluster"  # where `ray start --head` writes it, under $RAY_TMPDIR
        record.parent.mkdir()
        record.write_text("127.0.0.1:1\n")
        out = tmp_path / "out"
        done = bench_run(["--executor", "ray", "--out", str(out), *SMALL], env={"RAY_TMPDIR": str(ray_tmp)})
        assert done.returncode == 0, done.stderr
        assert "executor: ray on a private local Ray cluster started for this run (" in done.stdout
        assert "any other Ray cluster on this machine is left alone)" in done.stdout
        assert storage.load_runs(out).status.tolist() == ["ok"]
        assert record.read_text() == "127.0.0.1:1\n"  # the user's record is left alone
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


@pytest.mark.slow
def test_ray_cells_obey_the_timeout_and_become_timed_out_rows(tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "out"
    done = bench_run(["--executor", "ray", "--timeout", "0.001", "--seeds", "0,1", "--out", str(out), *SMALL])
    assert done.returncode == 1, done.stderr  # failed runs: exit 1, saying how many
    runs = storage.load_runs(out)
    assert runs.status.tolist() == ["failed", "failed"]
    assert runs.error.tolist() == ["timed out after 0.001 s"] * 2  # what a local worker past its limit says
    assert error_lines(done.stderr) == [f"error: 2 of 2 run(s) failed (reasons in {out / 'runs.csv'}; --resume {out} "
                                        "--retry-failed runs them again, --allow-failures exits 0)"]
    assert storage.load_env(out)["executors"][0]["timeout_s"] == 0.001


def test_the_time_limit_interrupts_python_code_and_restores_the_handler():
    before = signal.getsignal(signal.SIGALRM)
    with pytest.raises(CellTimedOut, match=r"^timed out after 0.2 s$"):
        with time_limit(0.2):
            time.sleep(300)
    assert signal.getsignal(signal.SIGALRM) == before and signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    with time_limit(5):  # a cell within its limit: nothing happens, no alarm is left behind
        pass
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


STUCK = r"""
import signal, sys, time
sys.path.insert(0, sys.argv[1])
from bench.ray_cluster import time_limit
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGALRM])  # as native code that never returns to Python
with time_limit(0.2, grace_s=0.3):
    time.sleep(60)
print("not reached")
"""


def test_a_cell_stuck_outside_python_is_killed_after_the_grace(tmp_path):
    done = subprocess.run([sys.executable, "-c", STUCK, str(Path(TESTS).parent)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == -signal.SIGKILL and "not reached" not in done.stdout
    assert "cell still running 0.3 s past its time limit of 0.2 s, outside Python; killing its worker" in done.stderr
