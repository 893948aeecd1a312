"""Worker processes: results come back, exceptions become messages, a dead worker becomes an error."""
import os
import signal

import pytest
import torch

from bench.isolate import WorkerDied, WorkerError, call_in_subprocess


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
    result, pid = call_in_subprocess(add_and_report_pid, torch.arange(4), 10)
    assert result == [10, 11, 12, 13] and pid != os.getpid()


def test_an_exception_becomes_a_one_line_message():
    with pytest.raises(WorkerError, match=r"^ValueError: expected 3 layers$"):
        call_in_subprocess(raise_value_error)


def test_a_crash_becomes_an_error_naming_the_signal():
    with pytest.raises(WorkerDied, match=r"died without a result \(killed by SIGSEGV\)"):
        call_in_subprocess(die_by_signal)


def test_an_early_exit_becomes_an_error_naming_the_code():
    with pytest.raises(WorkerDied, match=r"exit code 3"):
        call_in_subprocess(exit_quietly)


def read_variable(name):
    return os.environ.get(name)


def test_the_worker_starts_with_the_given_environment_and_ours_is_restored(monkeypatch):
    monkeypatch.delenv("LSTM_BENCH_PROBE", raising=False)
    assert call_in_subprocess(read_variable, "LSTM_BENCH_PROBE", env={"LSTM_BENCH_PROBE": "42"}) == "42"
    assert "LSTM_BENCH_PROBE" not in os.environ


ORPHAN = """
import os, sys, threading, time
from bench.isolate import _exit_with_parent
threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
open(sys.argv[1], "w").write(str(os.getpid()))
time.sleep(60)
"""

RUNNER_THAT_DIES = """
import os, subprocess, sys, time
subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]])
while not os.path.exists(sys.argv[2]):
    time.sleep(0.05)
os._exit(0)
"""


def test_a_worker_exits_when_its_runner_dies(tmp_path):
    """A runner killed mid-run must not leave its worker training: the result has nowhere to go."""
    import subprocess
    import sys
    import time
    marker = tmp_path / "worker.pid"
    subprocess.run([sys.executable, "-c", RUNNER_THAT_DIES, ORPHAN, str(marker)], check=True, timeout=60)
    worker = int(marker.read_text())
    for _ in range(40):
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            return
        time.sleep(0.25)
    os.kill(worker, signal.SIGKILL)
    pytest.fail("the orphaned worker kept running after its runner died")
