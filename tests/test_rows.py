"""bench.rows: what the worker measured becomes the row's columns, and what ran is said in impl_detail."""
from __future__ import annotations

import torch

from bench.config import Config
from bench.executors import Cell
from bench.rows import run_row
from bench.train import RunResult


def _row(backend: str, **metrics) -> dict:
    cell = Cell(run_id="r1", backend=backend, seed=0, config=Config())
    result = RunResult(metrics={"achieved_gflops": 1.0, **metrics}, curve=[], steps=[])
    return run_row(cell, torch.device("cpu"), status="ok", detail="registry word", result=result)


def test_a_forced_slower_launch_is_part_of_what_ran():
    row = _row("triton", rnn_engine=None, launch_notes="lstm_seq_fwd_kernel: streaming, resident needs 300 KiB")
    assert row["impl_detail"] == "registry word; lstm_seq_fwd_kernel: streaming, resident needs 300 KiB"
    assert "launch_notes" not in row and "rnn_engine" not in row


def test_the_profilers_engine_replaces_the_registrys_word_and_notes_follow_it():
    row = _row("cudnn", rnn_engine="cuDNN persistent", launch_notes="")
    assert row["impl_detail"] == "cuDNN persistent"
    row = _row("triton", rnn_engine="not cuDNN", launch_notes="")
    assert row["impl_detail"] == "registry word"  # "not cuDNN" says nothing about a non-baseline backend
