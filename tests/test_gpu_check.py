"""`bench gpu-check`'s session mechanics, on CPU with the measurements faked: a lent GPU comes with a fixed time
budget, so the most important figures come first, every row is on disk as soon as it is measured, and a
deadline turns the remaining checks into rows that say they did not run (never into passes)."""
from __future__ import annotations

import re

import pandas as pd
import pytest
import torch

from bench import gpu_check


@pytest.fixture
def fake_gpu(monkeypatch):
    """CUDA 'available', one parity shape and dtype, measurements that take no time."""
    import impls.parity
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(gpu_check, "environment", lambda: {"gpu": "Fake GPU"})
    monkeypatch.setattr(gpu_check, "PARITY_SHAPES", [(5, 7, 7, 11, 1, True, False)])
    monkeypatch.setattr(gpu_check, "PARITY_DTYPES", (torch.float32,))
    monkeypatch.setattr(gpu_check, "TIMING_SHAPES", [("tiny", 2, 3, 4, 5, 1)])
    monkeypatch.setattr(gpu_check, "TIMING_DTYPES", (torch.float32,))
    order = []
    monkeypatch.setattr(impls.parity, "compare_with_torch",
                        lambda name, **kw: order.append(("parity", name)) or {"output": 1e-7})

    def time_backend(name, *args):
        order.append(("timing", name))
        figures = {"median_ms": 2.0 if name == "cudnn" else 1.0, "p20_ms": 1.0, "p80_ms": 2.0, "events_ms": 2.0}
        return {"forward": dict(figures), "forward+backward": dict(figures, kernels=3, ran="fake", top_kernels="k")}
    monkeypatch.setattr(gpu_check, "time_backend", time_backend)
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32  # main switches both off
    yield order
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32


def test_core_backends_are_checked_and_timed_before_the_compiled_ones(fake_gpu, tmp_path):
    assert gpu_check.cli(["--out", str(tmp_path), "--backends", "cudnn,compiled,triton"]) == 0
    assert fake_gpu == [("parity", "cudnn"), ("parity", "triton"), ("timing", "cudnn"), ("timing", "triton"),
                        ("parity", "compiled"), ("timing", "compiled")]
    (timing_csv,) = tmp_path.glob("gpu_check_*.csv")
    table = pd.read_csv(timing_csv)
    assert set(table["backend"]) == {"cudnn", "compiled", "triton"}
    assert table.loc[table["backend"] == "triton", "vs_cudnn"].tolist() == [0.5, 0.5]


def test_every_row_is_on_disk_as_soon_as_it_is_measured(fake_gpu, tmp_path):
    seen = []
    real_write = gpu_check.write_table

    def spy(table, env, out_dir, name, note, stamp):
        seen.append((name, len(table)))
        return real_write(table, env, out_dir, name, note, stamp)
    gpu_check.write_table = spy
    try:
        assert gpu_check.cli(["--out", str(tmp_path), "--backends", "cudnn,loop"]) == 0
    finally:
        gpu_check.write_table = real_write
    assert ("gpu_parity", 1) in seen and ("gpu_parity", 2) in seen       # after each parity row
    assert ("gpu_check", 2) in seen and ("gpu_check", 4) in seen         # after each backend's two passes
    assert len(list(tmp_path.glob("gpu_check_*.csv"))) == 1              # one stamp: each save replaces the file


def test_past_the_deadline_checks_are_recorded_as_not_run_never_as_passed(fake_gpu, tmp_path, capsys):
    assert gpu_check.cli(["--out", str(tmp_path), "--backends", "cudnn,loop", "--deadline", "1e-9"]) == 0
    assert fake_gpu == []  # nothing was measured
    parity = pd.read_csv(next(tmp_path.glob("gpu_parity_*.csv")))
    assert parity["ok"].isna().all() and (parity["worst"] == gpu_check.NOT_RUN).all()
    timing = pd.read_csv(next(tmp_path.glob("gpu_check_*.csv")))
    assert timing["median_ms"].isna().all()
    assert set(timing.loc[timing["pass"] == "forward+backward", "ran"]) == {gpu_check.NOT_RUN}
    assert "2 parity check(s) not run" in capsys.readouterr().err


def test_a_failed_parity_check_still_fails_the_session(fake_gpu, tmp_path, monkeypatch):
    import impls.parity
    monkeypatch.setattr(impls.parity, "compare_with_torch",
                        lambda name, **kw: {"output": float("nan")} if name == "loop" else {"output": 1e-7})
    assert gpu_check.cli(["--out", str(tmp_path), "--backends", "cudnn,loop"]) == 1


def test_unknown_backend_is_one_line_and_exit_2(capsys):
    assert gpu_check.cli(["--backends", "cudnn,nope"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: bench gpu-check: unknown backend 'nope'; expected some of: " + ", ".join(gpu_check.backends())]


def test_it_is_a_bench_command_writing_under_the_current_directory(fake_gpu, tmp_path, monkeypatch):
    from bench.__main__ import main
    monkeypatch.chdir(tmp_path)
    assert main(["gpu-check", "--backends", "cudnn,loop"]) == 0
    written = sorted(re.sub(r"_\d{8}T\d{6}Z", "", p.name) for p in (tmp_path / "results" / "gpu-check").iterdir())
    assert written == ["gpu_check.csv", "gpu_check.md", "gpu_parity.csv", "gpu_parity.md"]


def test_the_groups_and_accepted_names_come_from_the_registry():
    """Parity is against torch.nn.LSTM: every registered backend of that family, those that compile last."""
    import impls
    lstm = [n for n in impls.names() if impls.spec(n).family == "lstm"]
    assert gpu_check.backends() == lstm and "gru" not in lstm
    first, *rest = gpu_check.groups(lstm)
    assert first == [n for n in lstm if not impls.spec(n).compiles]
    assert rest == [[n for n in lstm if impls.spec(n).compiles]]
