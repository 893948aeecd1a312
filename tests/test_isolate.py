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
