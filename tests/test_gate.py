"""The CI gate (`bench bench-gate`): ratios to cudnn against a committed baseline; a planted regression fails it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench import gate

ROOT = Path(__file__).resolve().parent.parent
GROUP = "mnist-b50-h64 ratio-to-cudnn"


def saved_run(directory: Path, number: int, ratios: dict[str, list[float]], device: str = "cpu",
              gpu: str | None = None, when: str = "2024-01-01T00:00:00") -> Path:
    """A pytest-benchmark JSON as `make bench-ci` saves it, holding test_ratio_to_cudnn results (and one
    ordinary benchmark, which the gate ignores)."""
    benchmarks = [{"group": GROUP, "name": f"test_ratio_to_cudnn[{b}]",
                   "extra_info": {"backend": b, "device": device, "ratio_samples": samples, "pass": "ratio-to-cudnn"},
                   "stats": {"median": 1.0}} for b, samples in ratios.items()]
    benchmarks.append({"group": "mnist-b50-h64 train-step", "name": "test_train_step[mnist-b50-h64-loop]",
                       "extra_info": {"backend": "loop", "device": device}, "stats": {"median": 0.02}})
    data = {"machine_info": {"gpu": gpu, "cpu_model": "Test CPU", "torch_version": "2.3"},
            "commit_info": {"id": f"{number:040d}", "dirty": False}, "benchmarks": benchmarks, "datetime": when}
    path = directory / "Linux-CPython-3.11-64bit" / f"{number:04d}_run.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def noisy(center: float, n: int = 30, seed: int = 0, spread: float = 0.1) -> list[float]:
    return list(center * np.exp(spread * np.random.default_rng(seed).standard_normal(n)))


def run_gate(storage: Path, *args: str) -> int:
    return gate.cli(["--storage", str(storage), "--baseline", str(storage / "baseline.json"), *args])


def test_an_unchanged_run_passes_and_a_grown_ratio_fails_naming_backend_and_ratios(tmp_path, capsys):
    saved_run(tmp_path, 1, {"loop": noisy(2.0, seed=1), "gru": noisy(1.5, seed=2)}, when="2024-01-01T00:00:00")
    assert run_gate(tmp_path, "--update") == 0
    baseline = json.loads((tmp_path / "baseline.json").read_text())
    assert set(baseline["machines"]) == {"cpu"}
    assert baseline["machines"]["cpu"]["benchmarks"][GROUP]["loop"]["ratio"] == pytest.approx(2.0, rel=0.05)
    saved_run(tmp_path, 2, {"loop": noisy(2.1, seed=3), "gru": noisy(1.45, seed=4)}, when="2024-01-02T00:00:00")
    capsys.readouterr()
    assert run_gate(tmp_path) == 0
    assert "bench-gate: passed" in capsys.readouterr().out
    saved_run(tmp_path, 3, {"loop": noisy(4.2, seed=5), "gru": noisy(1.5, seed=6)}, when="2024-01-03T00:00:00")
    assert run_gate(tmp_path) == 1
    out = capsys.readouterr().out
    failures = [line for line in out.splitlines() if line.startswith("REGRESSION")]
    assert len(failures) == 1 and failures[0].startswith("REGRESSION: loop (mnist-b50-h64 ratio-to-cudnn): "
                                                         "ratio to cudnn 2.0")
    assert "-> 4.0" in failures[0] and "(2.04x, threshold 1.5x" in failures[0]
    assert "bench-gate: FAILED, 1 regression(s)" in out


def test_growth_alone_does_not_fail_when_the_samples_do_not_agree():
    before, after = gate.Ratio(2.0, (1.0, 3.0)), gate.Ratio(4.0, (2.0, 6.0))  # 2 vs 2 rounds: p >= 0.33
    verdict = gate.judge(GROUP, "loop", before, after)
    assert verdict.growth == pytest.approx(2.0) and verdict.p > gate.ALPHA and verdict.verdict == "unchanged"
    # and a significant change inside the threshold does not fail either
    tight_before = gate.Ratio(2.0, tuple(noisy(2.0, spread=0.01, seed=1)))
    tight_after = gate.Ratio(2.4, tuple(noisy(2.4, spread=0.01, seed=2)))
    inside = gate.judge(GROUP, "loop", tight_before, tight_after)
    assert inside.p < 1e-6 and inside.verdict == "unchanged"
    assert gate.judge(GROUP, "loop", tight_before, tight_after, threshold=1.1).verdict == "regression"


def test_a_faster_backend_passes_and_suggests_updating(tmp_path, capsys):
    saved_run(tmp_path, 1, {"loop": noisy(2.0, seed=1)}, when="2024-01-01T00:00:00")
    assert run_gate(tmp_path, "--update") == 0
    saved_run(tmp_path, 2, {"loop": noisy(1.0, seed=2), "newcomer": noisy(3.0, seed=3)}, when="2024-01-02T00:00:00")
    assert run_gate(tmp_path) == 0
    out = capsys.readouterr().out
    assert "faster: loop" in out and gate.UPDATE in out and "newcomer" in out and " new" in out


def test_a_backend_missing_from_this_run_is_reported_not_failed(tmp_path, capsys):
    saved_run(tmp_path, 1, {"loop": noisy(2.0, seed=1), "gru": noisy(1.5)}, when="2024-01-01T00:00:00")
    assert run_gate(tmp_path, "--update") == 0
    saved_run(tmp_path, 2, {"loop": noisy(2.0, seed=2)}, when="2024-01-02T00:00:00")
    assert run_gate(tmp_path) == 0
    assert "not measured" in capsys.readouterr().out


def test_machine_kinds_have_their_own_sections_and_are_never_compared(tmp_path, capsys):
    saved_run(tmp_path, 1, {"loop": noisy(2.0, seed=1)}, when="2024-01-01T00:00:00")
    assert run_gate(tmp_path, "--update") == 0
    gpu = saved_run(tmp_path, 2, {"loop": noisy(9.0, seed=2)}, device="cuda:0", gpu="NVIDIA H100",
                    when="2024-01-02T00:00:00")
    assert run_gate(tmp_path) == 2  # no GPU baseline: a CPU's ratios say nothing about it
    assert "no baseline for 'cuda: NVIDIA H100'" in capsys.readouterr().err
    assert run_gate(tmp_path, "--update", "--run", str(gpu)) == 0
    machines = json.loads((tmp_path / "baseline.json").read_text())["machines"]
    assert set(machines) == {"cpu", "cuda: NVIDIA H100"}  # the update kept the CPU section
    assert machines["cpu"]["benchmarks"][GROUP]["loop"]["ratio"] == pytest.approx(2.0, rel=0.05)


@pytest.mark.parametrize(("setup", "args", "message"), [
    ("nothing", [], "does not exist; run `make bench-ci` first"),
    ("no-ratios", [], "no ratio-to-cudnn benchmarks"),
    ("run", [], "has no baseline for 'cpu' (it has: none)"),
    ("bad-baseline", [], "not a gate baseline"),
    ("run", ["--threshold", "1"], "expected --threshold above 1"),
    ("run", ["--run", "{tmp}/missing.json"], "not a readable pytest-benchmark run"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, setup, args, message):
    storage = tmp_path / "ci"
    if setup != "nothing":
        saved_run(storage, 1, {} if setup == "no-ratios" else {"loop": noisy(2.0)})
    if setup == "bad-baseline":
        (storage / "baseline.json").write_text(json.dumps({"loop": 2.0}))
    assert run_gate(storage, *(a.format(tmp=tmp_path) for a in args)) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_the_committed_baseline_is_readable_and_has_the_cpu_ratios():
    baseline = gate.load_baseline(ROOT / "results" / "ci" / "baseline.json")
    ratios = gate.baseline_ratios(baseline["machines"]["cpu"])
    assert {"loop", "gru"} <= set(ratios[GROUP])
    assert all(len(r.samples) >= 10 and r.median > 0 for r in ratios[GROUP].values())
    ignored = subprocess.run(["git", "check-ignore", "-q", "results/ci/baseline.json"], cwd=ROOT)
    assert ignored.returncode == 1, "results/ci/baseline.json is git-ignored"


def bench_session(storage: Path, sleep_ms: int) -> None:
    """One `make bench-ci`-like session, narrowed to the planted backend's ratio benchmark."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests" / "fixtures")]),
           "LSTM_BENCH_PLANTED_SLEEP_MS": str(sleep_ms), "LSTM_BENCH_RATIO_ROUNDS": "20", "LSTM_BENCH_DEVICE": "cpu"}
    done = subprocess.run([sys.executable, "-m", "pytest", "tests/benchmarks", "-q", "-p", "no:cacheprovider",
                           "-p", "planted_regression", "-k", "test_ratio_to_cudnn and planted", "--benchmark-only",
                           f"--benchmark-storage=file://{storage}", "--benchmark-autosave"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "1 passed" in done.stdout, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.mark.slow
def test_a_planted_regression_fails_the_gate_and_an_unchanged_rerun_passes(tmp_path, capsys):
    storage = tmp_path / "ci"
    bench_session(storage, sleep_ms=0)   # `planted` is cudnn: a ratio near 1
    assert run_gate(storage, "--update") == 0
    bench_session(storage, sleep_ms=0)
    assert run_gate(storage) == 0, capsys.readouterr().out
    bench_session(storage, sleep_ms=250)  # a quarter second in every backward: several steps even on a loaded machine
    capsys.readouterr()
    assert run_gate(storage) == 1
    out = capsys.readouterr().out
    assert "REGRESSION: planted (mnist-b50-h64 ratio-to-cudnn): ratio to cudnn" in out, out
