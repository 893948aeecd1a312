"""The CLI as a newcomer explores it: --help everywhere, `bench list`, `bench run --dry-run`, progress lines."""
import json
import os

import pytest
import torch

import impls
from bench import runner
from bench.__main__ import COMMANDS, main
from bench.config import from_dict


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_returns_zero_instead_of_raising(command, capsys):
    assert main([command, "--help"]) == 0
    assert "usage:" in capsys.readouterr().out


def test_top_level_help_and_unknown_command(capsys):
    assert main(["--help"]) == 0 and "lstm-bench" in capsys.readouterr().out
    assert main(["frobnicate"]) == 2


@pytest.fixture
def extra_backend(monkeypatch):
    """A backend registered only in this test: `list` must not need to be told about it."""
    monkeypatch.setitem(impls.REGISTRY, "zz-test",
                        impls.Backend("impls.cudnn:CudnnLSTM", "lstm", "torch", "a test entry"))
    return "zz-test"


def test_list_names_every_registered_backend(capsys, extra_backend):
    assert main(["list", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    for name in impls.names():
        assert f"  {name} " in out
    assert extra_backend in impls.names()
    triton = next(line for line in out.splitlines() if line.startswith("  triton "))
    assert " NO " in triton  # and the line below it says why
    assert "why not: Triton kernels need a CUDA GPU" in out


def test_list_json_matches_availability(capsys, extra_backend):
    assert main(["list", "--device", "cpu", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["device"] == "cpu"
    assert [row["name"] for row in listed["backends"]] == impls.names()
    for row in listed["backends"]:
        available = impls.availability(row["name"], "cpu")
        assert (row["runs_here"], row["reason"]) == (available.ok, available.reason)


def test_list_bad_device_is_one_line(capsys):
    assert main(["list", "--device", "nonsense"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: bench list: --device") and err.count("\n") == 1


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path, monkeypatch, capsys):
    def no_data(*args, **kwargs):
        raise AssertionError("--dry-run must not load or download data")

    monkeypatch.setattr("bench.data.load_mnist", no_data)
    monkeypatch.setattr("bench.data.for_cells", no_data)
    monkeypatch.setattr("bench.data.ensure_mnist", no_data)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LSTM_BENCH_DATA", raising=False)
    argv = ["run", "--dry-run", "--backends", "cudnn,gru", "--seeds", "0,1", "--sweep", "batch_size=16,32",
            "--device", "cpu"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "plan: 8 run(s)" in out
    for backend in ("cudnn", "gru"):
        for seed in (0, 1):
            for batch in (16, 32):
                assert f"{backend}-s{seed}-b{batch}-h64-l2-t28" in out
    assert os.listdir(tmp_path) == []
    assert main(argv + ["--out", str(tmp_path / "somewhere")]) == 0
    assert os.listdir(tmp_path) == []


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_summary_lines_count_runs(tmp_path, synthetic_data):
    config = from_dict(dict(backends=("cudnn", "triton"), train_limit=100, batch_size=50, hidden_size=4,
                            warmup_steps=1, eval_batch_size=100, curve_every=1, device="cpu", isolate=False))
    lines = []
    runner.execute(config, tmp_path, torch.device("cpu"), synthetic_data, log=lines.append)
    assert [line.split(":")[0] for line in lines] == ["run 1 of 2", "run 2 of 2"]
    # Skipped cells are written before the executor runs the others: the numbering follows the writes.
    assert "triton" in lines[0] and "SKIPPED" in lines[0] and "cudnn" in lines[1] and "acc " in lines[1]
