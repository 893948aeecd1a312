"""bench.microbench: finding saved pytest-benchmark runs, the compare command, and the timing rule."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bench import microbench
from bench.microbench import MicrobenchError

MACHINE = "Linux-CPython-3.11-64bit"


def save_run(storage, name, when, machine=MACHINE, benchmarks=None):
    """A minimal pytest-benchmark JSON file, as --benchmark-autosave writes it."""
    path = storage / machine / name
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"machine_info": {}, "commit_info": {}, "benchmarks": benchmarks or [], "version": "5.3.1"}
    if when is not None:
        data["datetime"] = when
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def storage(tmp_path):
    root = tmp_path / "ci"
    save_run(root, "0001_aaa_20250101_000000.json", "2025-01-01T00:00:00+00:00")
    save_run(root, "0002_bbb_20250102_000000.json", "2025-01-02T00:00:00+00:00")
    save_run(root, "0003_ccc_20250103_000000.json", "2025-01-03T00:00:00+00:00")
    return root


def test_saved_runs_are_sorted_oldest_first_and_skip_other_files(storage):
    (storage / MACHINE / "notes.json").write_text("{}")                       # not NNNN_*.json
    (storage / MACHINE / "0009_broken.json").write_text("{not json")          # unreadable
    (storage / MACHINE / "0010_other.json").write_text(json.dumps({"x": 1}))  # no "benchmarks" list
    runs = microbench.saved_runs(storage)
    assert [run.path.name[:4] for run in runs] == ["0001", "0002", "0003"]
    assert [run.number for run in runs] == [1, 2, 3]


def test_newest_is_by_the_runs_datetime_across_machine_folders(storage):
    newer = save_run(storage, "0001_gpu_20250104_000000.json", "2025-01-04T00:00:00+00:00", machine="gpu-box")
    assert microbench.newest_run(storage).path == newer
    assert microbench.newest_run(f"file://{storage}").path == newer   # pytest-benchmark's storage URL form


def test_newest_falls_back_to_mtime_without_datetime(tmp_path):
    old = save_run(tmp_path, "0001_a.json", None)
    new = save_run(tmp_path, "0002_b.json", None)
    os.utime(old, (1_000_000, 1_000_000))
    os.utime(new, (2_000_000, 2_000_000))
    assert microbench.newest_run(tmp_path).path == new


def test_find_run_by_number_prefix_and_path(storage):
    assert microbench.find_run(storage, "0001").path.name.startswith("0001_aaa")
    assert microbench.find_run(storage, "2").path.name.startswith("0002_bbb")      # bare run number
    assert microbench.find_run(storage, "0003_ccc").number == 3                    # file-name prefix
    path = storage / MACHINE / "0002_bbb_20250102_000000.json"
    assert microbench.find_run(storage, str(path)).path == path


def test_ambiguous_id_prefers_the_newest_runs_folder(storage):
    save_run(storage, "0001_gpu_20250104_000000.json", "2025-01-04T00:00:00+00:00", machine="gpu-box")
    with pytest.raises(MicrobenchError, match="ambiguous"):
        microbench.find_run(storage, "0001")
    picked = microbench.find_run(storage, "0001", prefer_dir=storage / MACHINE)
    assert picked.path.parent.name == MACHINE


@pytest.mark.parametrize(("baseline", "message"), [
    ("0042", "matches no saved run"),
    ("missing.json", "does not exist"),
    ("", "empty --baseline"),
])
def test_find_run_rejects_bad_baselines(storage, baseline, message):
    with pytest.raises(MicrobenchError, match=message):
        microbench.find_run(storage, baseline)


def test_baseline_file_that_is_not_a_run(tmp_path, storage):
    bogus = tmp_path / "bogus.json"
    bogus.write_text(json.dumps({"hello": "world"}))
    with pytest.raises(MicrobenchError, match="not a saved pytest-benchmark run"):
        microbench.find_run(storage, str(bogus))


def test_pick_runs_and_the_compare_command(storage):
    base, newest = microbench.pick_runs(storage, "0001")
    assert (base.number, newest.number) == (1, 3)
    command = microbench.compare_command(storage, [base, newest], group_by="group")
    assert command[:3] == [sys.executable, "-m", "pytest_benchmark"]
    assert command[command.index("--storage") + 1] == f"file://{storage}"
    assert command[command.index("--columns") + 1] == microbench.DEFAULT_COLUMNS
    assert command[command.index("--group-by") + 1] == "group"
    assert command[-2:] == [str(base.path), str(newest.path)]
    assert command.index("compare") < command.index("--columns")


def test_pick_runs_refuses_to_compare_the_newest_with_itself(storage):
    with pytest.raises(MicrobenchError, match="is the newest saved run"):
        microbench.pick_runs(storage, "0003")


@pytest.mark.parametrize("make_storage", ["missing", "empty"])
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys, make_storage):
    root = tmp_path / "ci"
    if make_storage == "empty":
        root.mkdir()
    assert microbench.cli(["--storage", str(root), "--baseline", "0001"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "make bench-ci" in err


def test_cli_unknown_baseline_exits_2(storage, capsys):
    assert microbench.cli(["--storage", str(storage), "--baseline", "0099"]) == 2
    assert "0099" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_runs_pytest_benchmark_compare_on_the_two_files(tmp_path):
    stats = {"min": 0.001, "max": 0.002, "mean": 0.0015, "stddev": 0.0001, "rounds": 5, "median": 0.0015,
             "iqr": 0.0001, "q1": 0.0014, "q3": 0.0016, "iqr_outliers": 0, "stddev_outliers": 0,
             "outliers": "0;0", "ld15iqr": 0.001, "hd15iqr": 0.002, "ops": 666.6, "total": 0.0075,
             "iterations": 1}
    bench = {"group": "g", "name": "test_x[a]", "fullname": "t.py::test_x[a]", "params": None,
             "param": None, "extra_info": {}, "options": {}, "stats": stats}
    root = tmp_path / "ci"
    save_run(root, "0001_a.json", "2025-01-01T00:00:00+00:00", benchmarks=[bench])
    save_run(root, "0002_b.json", "2025-01-02T00:00:00+00:00", benchmarks=[bench])
    base, newest = microbench.pick_runs(root, "0001")
    result = subprocess.run(microbench.compare_command(root, [base, newest]), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "test_x[a] (0001_a)" in result.stdout and "test_x[a] (0002_b)" in result.stdout
    assert "benchmark 'g'" in result.stdout


class Options(dict):
    def getoption(self, name):
        return self.get(name, False)


@pytest.mark.parametrize(("options", "expected"), [
    ({}, False),                                                   # plain pytest: smoke mode
    ({"benchmark_only": True}, True),
    ({"benchmark_enable": True}, True),
    ({"benchmark_autosave": True}, True),
    ({"benchmark_json": "out.json"}, True),
    ({"benchmark_disable": True}, False),
    ({"benchmark_disable": True, "benchmark_autosave": True}, False),
    ({"benchmark_disable": True, "benchmark_enable": True}, True),
])
def test_timing_requested(options, expected):
    assert microbench.timing_requested(Options(options).getoption) is expected
