"""bench.peakcache: the GEMM peak is measured once per machine fingerprint and reused, re-measured on request
or when the fingerprint changes, never reused from a busy probe; rows written before it get their efficiency."""
import csv
import json

import pytest

from bench import peakcache
from bench.config import from_dict
from bench.planning import Device
from bench.schema import RUN_COLUMNS
from bench.storage import append_run, load_env, load_runs

PRINT = peakcache.fingerprint("cpu", "Test CPU", "2.14.1", 2, "float32", False)
PEAK = {"gflops": 100.0, "spread": 0.02, "cpu_share": 0.99, "contended": False, "shape": "1024x1024x1024"}


def test_stored_peak_is_reused_for_the_same_fingerprint_only(tmp_path):
    stored = peakcache.store(PRINT, PEAK, tmp_path)
    assert stored["source"] == peakcache.MEASURED and "measured_at" in stored
    again = peakcache.lookup(PRINT, tmp_path)
    assert again["gflops"] == 100.0 and again["source"] == peakcache.REUSED
    assert again["measured_at"] == stored["measured_at"] and again["fingerprint"] == PRINT
    for change in ({"threads": 1}, {"torch": "2.15.0"}, {"dtype": "bfloat16"}, {"device_name": "Other CPU"},
                   {"tf32": True}):
        assert peakcache.lookup(PRINT | change, tmp_path) is None, change


def test_a_probe_that_shared_the_machine_is_not_reused(tmp_path):
    peakcache.store(PRINT, PEAK | {"contended": True}, tmp_path)
    assert peakcache.lookup(PRINT, tmp_path) is None


def test_a_broken_cache_file_is_a_miss_and_is_rewritten(tmp_path):
    (tmp_path / peakcache.CACHE_NAME).write_text("{not json")
    assert peakcache.lookup(PRINT, tmp_path) is None
    peakcache.store(PRINT, PEAK, tmp_path)
    assert peakcache.lookup(PRINT, tmp_path)["gflops"] == 100.0


def test_cache_dir_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert peakcache.cache_dir() == tmp_path / "lstm-bench"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert peakcache.cache_dir() == tmp_path / "home" / ".cache" / "lstm-bench"


def row(run_id: str, dtype: str, achieved: float, status: str = "ok") -> dict:
    values = {c: None for c in RUN_COLUMNS}
    values.update(run_id=run_id, backend=run_id, seed=0, status=status, error="", dtype=dtype,
                  achieved_gflops=achieved, efficiency=float("nan"))
    return values


def test_rows_written_before_the_peak_get_their_efficiency(tmp_path):
    for values in (row("a", "float32", 20.0), row("b", "bfloat16", 5.0), row("c", "float32", None, "failed")):
        append_run(tmp_path, values, [], [])
    assert peakcache.fill_efficiency(tmp_path, {"float32": {"gflops": 80.0}}) == 1
    runs = load_runs(tmp_path).set_index("run_id")
    assert runs.loc["a", "efficiency"] == pytest.approx(0.25)
    assert runs[["efficiency"]].loc[["b", "c"]].isna().all().all()  # no bfloat16 peak; a failed row has none
    with open(tmp_path / "runs.csv") as handle:
        assert next(csv.reader(handle)) == RUN_COLUMNS  # the header is kept as it was


@pytest.fixture
def plan():
    return from_dict(dict(backends=("cudnn",), threads=1, device="cpu", train_limit=750))


def test_first_run_measures_after_the_cells_and_the_next_reuses(tmp_path, monkeypatch, plan):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    calls = []

    def measure(device, dtype):
        calls.append((str(device), str(dtype)))
        return dict(PEAK)

    said = []
    first, second = tmp_path / "first", tmp_path / "second"
    for directory in (first, second):
        directory.mkdir()
        (directory / "env.json").write_text("{}")
    assert peakcache.before_cells(first, plan, Device("cpu"), log=said.append) == {}
    assert "measured after the runs" in said[-1]
    peaks = peakcache.after_cells(first, plan, Device("cpu"), log=said.append, measure=measure)
    assert calls == [("cpu", "torch.float32")] and peaks["float32"]["source"] == peakcache.MEASURED
    assert load_env(first)["peak"]["float32"]["gflops"] == 100.0
    reused = peakcache.before_cells(second, plan, Device("cpu"), log=said.append)
    assert reused["float32"]["source"] == peakcache.REUSED and "reused from cache" in said[-1]
    peakcache.after_cells(second, plan, Device("cpu"), log=said.append, measure=measure)
    assert len(calls) == 1  # nothing left to measure
    # --remeasure-peak: the cached figure is not used, and the new one replaces it
    assert peakcache.before_cells(second, plan, Device("cpu"), remeasure=True, log=said.append) == {}
    peakcache.after_cells(second, plan, Device("cpu"), log=said.append, measure=measure)
    assert len(calls) == 2
    cache = json.loads((tmp_path / "cache" / "lstm-bench" / "peak.json").read_text())
    assert len(cache) == 1  # one fingerprint, measured twice


def test_a_resume_fills_the_efficiency_a_killed_run_left_empty(tmp_path, monkeypatch, plan):
    """The first invocation wrote a row and was killed before its probe; the resume finds the peak in the cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    peakcache.store(peakcache._fingerprints(plan, Device("cpu"), ["float32"])["float32"], dict(PEAK))
    out = tmp_path / "run"
    append_run(out, row("a", "float32", 20.0), [], [])
    (out / "env.json").write_text("{}")
    peakcache.before_cells(out, plan, Device("cpu"), log=lambda _: None)
    peakcache.after_cells(out, plan, Device("cpu"), log=lambda _: None, measure=None)
    assert load_runs(out).set_index("run_id").loc["a", "efficiency"] == pytest.approx(0.2)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_bench_run_probes_after_its_cells_then_reuses_and_remeasures_on_request(tmp_path, monkeypatch, capsys,
                                                                                fake_mnist):
    """End to end: the first `bench run` measures the peak after its run (runs.csv already holds the row) and fills
    its efficiency; the second reuses the cached figure; --remeasure-peak measures again. env.json says which,
    and holds each invocation's wall time."""
    from bench import run_command
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    probes = []

    def probe(device, dtype):
        probes.append(sorted(p.parent.name for p in tmp_path.glob("*/runs.csv")))  # which runs had rows by then
        return dict(PEAK)

    monkeypatch.setattr("bench.peak.measure_peak", probe)
    small = ["--backends", "cudnn", "--train-limit", "120", "--batch-size", "20", "--warmup-steps", "1", "--hidden",
             "4", "--device", "cpu", "--no-isolate"]
    for name, extra in (("first", []), ("second", []), ("third", ["--remeasure-peak"])):
        assert run_command.cli([*small, "--out", str(tmp_path / name), *extra]) == 0
    assert probes == [["first"], ["first", "second", "third"]]  # after the cells; none for the cached second
    sources = [load_env(tmp_path / name)["peak"]["float32"]["source"] for name in ("first", "second", "third")]
    assert sources == [peakcache.MEASURED, peakcache.REUSED, peakcache.MEASURED]
    first = load_runs(tmp_path / "first").iloc[0]
    assert first["efficiency"] == pytest.approx(first["achieved_gflops"] / 100.0)  # filled in after the probe
    wall = load_env(tmp_path / "first")["wall_time"]
    assert len(wall) == 1 and wall[0]["runs"] == 1 and wall[0]["total_s"] >= wall[0]["cells_s"] > 0
    assert wall[0]["training_and_evaluation_s"] > 0 and wall[0]["in_runs"]["numerics_s"] > 0
    out = capsys.readouterr().out
    assert "measured after the runs" in out and "reused from cache" in out and "wall time" in out


def test_a_failed_probe_is_retried_and_a_remeasured_peak_recomputes_every_row(tmp_path, monkeypatch, plan):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    out = tmp_path / "run"
    append_run(out, row("a", "float32", 20.0) | {"efficiency": 0.5}, [], [])  # divided by an older peak of 40
    (out / "env.json").write_text(json.dumps({"peak": {"float32": {"gflops": float("nan"), "error": "boom"}}}))

    def measure(device, dtype):
        return dict(PEAK)

    said = []
    assert peakcache.before_cells(out, plan, Device("cpu"), log=said.append)["float32"]["error"] == "boom"
    assert said == ["peak float32 GEMM on cpu: not cached here; measured after the runs"]
    peaks = peakcache.after_cells(out, plan, Device("cpu"), log=said.append, measure=measure)
    assert peaks["float32"]["gflops"] == 100.0 and load_env(out)["peak"]["float32"]["source"] == peakcache.MEASURED
    assert load_runs(out).set_index("run_id").loc["a", "efficiency"] == pytest.approx(0.2)  # against today's peak
    assert peakcache.fill_efficiency(out, {"float32": {"gflops": 50.0}}) == 0  # a row with a figure is left alone
