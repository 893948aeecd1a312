"""Worker processes: results come back, exceptions become messages, a dead worker becomes an error."""
import os
import signal
import time
from pathlib import Path

import psutil
import pytest
import torch

from bench.isolate import WorkerDied, WorkerError, WorkerTimedOut, call_in_subprocess
from bench.runner import worker_env

pytestmark = pytest.mark.slow  # every test here starts worker processes

ENV = worker_env()  # every test but one uses the runner's: the server then starts once for them all


def add_and_report_pid(tensor, offset):
    # Results travel back as plain data: a tensor would live in the worker's shared memory, gone with it.
    return (tensor + offset).tolist(), os.getpid()


def raise_value_error():
    raise ValueError("expected 3 layers\nand a second line")


def die_by_signal():
    os.kill(os.getpid(), signal.SIGSEGV)


def exit_quietly():
    os._exit(3)


def test_result_comes_back_from_another_process():
    result, pid = call_in_subprocess(add_and_report_pid, torch.arange(4), 10, env=ENV)
    assert result == [10, 11, 12, 13] and pid != os.getpid()


def test_an_exception_becomes_a_one_line_message():
    with pytest.raises(WorkerError, match=r"^ValueError: expected 3 layers$"):
        call_in_subprocess(raise_value_error, env=ENV)


def test_a_crash_becomes_an_error_naming_the_signal():
    with pytest.raises(WorkerDied, match=r"died without a result \(killed by SIGSEGV\)"):
        call_in_subprocess(die_by_signal, env=ENV)


def test_an_early_exit_becomes_an_error_naming_the_code():
    with pytest.raises(WorkerDied, match=r"exit code 3"):
        call_in_subprocess(exit_quietly, env=ENV)


def test_a_worker_past_its_time_is_killed():
    with pytest.raises(WorkerTimedOut, match=r"^timed out after 1 s$"):
        call_in_subprocess(time.sleep, 60, timeout_s=1, env=ENV)
    # the next one is unaffected
    assert call_in_subprocess(add_and_report_pid, torch.arange(2), 1, env=ENV)[0] == [1, 2]


def rss_and_growth(megabytes):
    """RSS at the start, and its growth while `megabytes` 1 MiB blocks are held. The blocks are below the
    worker's mmap threshold, so once freed they stay in the heap: a process that ran this before
    would show almost no growth the second time."""
    process = psutil.Process()
    start = process.memory_info().rss
    blocks = [torch.ones(2**18) for _ in range(megabytes)]
    grown = process.memory_info().rss - start
    del blocks
    return start, grown


def test_every_worker_starts_from_a_clean_baseline_not_from_the_runner():
    ballast = torch.ones(512 * 2**18)  # 512 MiB held by the runner: a fork of the runner would carry it
    runner_rss = psutil.Process().memory_info().rss
    (start_a, grown_a), (start_b, grown_b) = (call_in_subprocess(rss_and_growth, 100, env=ENV)
                                              for _ in range(2))
    assert grown_a > 80 * 2**20 and grown_b > 80 * 2**20  # the second worker did not inherit the first's heap
    assert max(start_a, start_b) < runner_rss - 400 * 2**20
    del ballast


def write_pid_and_sleep(path):
    with open(path + ".tmp", "w") as handle:
        handle.write(str(os.getpid()))
    os.replace(path + ".tmp", path)
    time.sleep(120)


# Run from the repository root, whose directory `python -c` puts on sys.path: bench and tests import from there.
RUNNER_THAT_DIES = """
import os, sys, threading, time
from bench.isolate import call_in_subprocess
from tests.test_isolate import write_pid_and_sleep
threading.Thread(target=call_in_subprocess, args=(write_pid_and_sleep, sys.argv[1]), daemon=True).start()
while not os.path.exists(sys.argv[1]):
    time.sleep(0.05)
os._exit(0)
"""


@pytest.mark.timeout(400)
def test_a_worker_exits_when_its_runner_dies(tmp_path):
    """A runner killed mid-run must not leave its worker training: the result has nowhere to go."""
    import subprocess
    import sys
    marker = tmp_path / "worker.pid"
    subprocess.run([sys.executable, "-c", RUNNER_THAT_DIES, str(marker)], cwd=Path(__file__).resolve().parent.parent,
                   check=True, timeout=300)
    worker = int(marker.read_text())
    for _ in range(40):
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            return
        time.sleep(0.25)
    os.kill(worker, signal.SIGKILL)
    pytest.fail("the orphaned worker kept running after its runner died")


def read_initial_variable(name):
    # /proc/self/environ is the environment the process image started with: a forked worker shows its
    # server's, which is what the C allocator read at start-up.
    initial = dict(item.split("=", 1) for item in open("/proc/self/environ").read().split("\0") if "=" in item)
    return initial.get(name), os.environ.get(name)


def test_the_worker_starts_with_the_given_environment_and_ours_is_restored(monkeypatch):
    """Last in this file: another environment restarts the server (glibc reads MALLOC_* once, at start)."""
    monkeypatch.delenv("LSTM_BENCH_PROBE", raising=False)
    env = ENV | {"LSTM_BENCH_PROBE": "42"}
    assert call_in_subprocess(read_initial_variable, "LSTM_BENCH_PROBE", env=env) == ("42", "42")
    threshold = ENV["MALLOC_MMAP_THRESHOLD_"]
    assert call_in_subprocess(read_initial_variable, "MALLOC_MMAP_THRESHOLD_", env=env)[0] == threshold
    assert "LSTM_BENCH_PROBE" not in os.environ
