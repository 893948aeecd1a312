"""Issue 21, cases 1, 2, 9, 10 and 11: what `bench run` refuses before it loads, trains or writes anything.

Case 1 runs two real `bench run` processes into one directory, the second one's data load held on purpose
until the first has finished; the rest call the CLI in this process with synthetic MNIST.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import impls
from bench import doctor, estimate, preflight, run_command, storage
from bench.analysis import compare, report
from bench.model import RowClassifier
from tests.fixtures.results_factory import make_no_baseline_fixture
from tests.fixtures.synthetic import synthetic_mnist

TESTS = str(Path(__file__).resolve().parent)
SMALL = ["--train-limit", "300", "--warmup-steps", "1", "--no-isolate", "--device", "cpu"]


def one_error_line(err: str, fragment: str) -> None:
    assert err.startswith("error: ") and err.count("\n") == 1 and fragment in err, err
    assert "Traceback" not in err and len(err) <= 802


@pytest.fixture
def no_data(monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("the data was loaded: the refusal came too late")
    monkeypatch.setattr("bench.data.load_mnist", never)
    monkeypatch.setattr("bench.data.for_cells", never)


# ---------------------------------------------------------------- case 1: two runs, one directory

DRIVER = r"""
import os, sys, time
from pathlib import Path
sys.path[:0] = [sys.argv[1], str(Path(sys.argv[1]).parent)]
import bench.data
from tests.fixtures.synthetic import synthetic_mnist

def held_load(root=None, **options):
    # the data load of the second run, held until the test lets it go: the race made certain
    hold = os.environ.get("HOLD_DATA")
    if hold:
        Path(hold, "waiting").touch()
        while not Path(hold, "go").exists():
            time.sleep(0.05)
    return synthetic_mnist()

bench.data.for_cells = held_load
from bench import run_command
sys.exit(run_command.cli(sys.argv[2:]))
"""


@pytest.mark.slow
def test_a_run_that_passed_the_check_while_another_ran_there_does_not_merge_into_it(tmp_path):
    out, hold = tmp_path / "run", tmp_path / "hold"
    hold.mkdir()
    where = ["--out", str(out), *SMALL]
    second = subprocess.Popen([sys.executable, "-c", DRIVER, TESTS, "--backends", "gru", "--seeds", "7", "--hidden",
                               "32", *where], env=os.environ | {"HOLD_DATA": str(hold)}, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300
        while not (hold / "waiting").exists():  # it has checked the directory (empty) and is loading data
            assert second.poll() is None and time.monotonic() < deadline, second.communicate()
            time.sleep(0.05)
        first = subprocess.run([sys.executable, "-c", DRIVER, TESTS, "--backends", "gru", "--hidden", "8", *where],
                               capture_output=True, text=True, timeout=600)
        assert first.returncode == 0, first.stderr
        files = {name: (out / name).read_bytes() for name in ("runs.csv", "env.json", "curves.csv", "steps.csv")}
        (hold / "go").touch()  # now the second run takes the lock the first has released
        _, err = second.communicate(timeout=300)
    finally:
        if second.poll() is None:
            second.kill()
            second.wait()
    assert second.returncode == 2
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: {out} already holds results (runs.csv); use --resume {out} or another --out"], err
    assert "Traceback" not in err
    assert {name: (out / name).read_bytes() for name in files} == files
    runs = storage.load_runs(out)
    assert runs[["backend", "seed", "hidden_size"]].values.tolist() == [["gru", 0, 8]]


def test_a_directory_with_env_json_only_is_a_started_run_not_a_new_one(tmp_path, capsys, no_data):
    (tmp_path / "env.json").write_text("{}")  # a run killed before its first row
    assert run_command.cli(["--backends", "gru", "--out", str(tmp_path), *SMALL]) == 2
    one_error_line(capsys.readouterr().err, f"{tmp_path} already holds results (env.json); use --resume")


# ---------------------------------------------------------------- case 2: empty strings

@pytest.mark.parametrize("cli,argv,flag", [
    (run_command.cli, ["--resume", ""], "--resume"),
    (run_command.cli, ["--out", ""], "--out"),
    (run_command.cli, ["--resume", "  "], "--resume"),
    (run_command.cli, ["--config", ""], "--config"),
    (run_command.cli, ["--experiment", ""], "--experiment"),
    (run_command.cli, ["--data-root", ""], "--data-root"),
    (run_command.cli, ["--backends", ""], "--backends"),
    (run_command.cli, ["--executor", "ray", "--ray-address", ""], "--ray-address"),
    (run_command.cli, ["--baseline", ""], "--baseline"),
    (report.cli, [""], "directory"),
    (compare.cli, ["", "b"], "dir_a"),
    (doctor.cli, [""], "directory"),
])
def test_an_empty_string_is_refused_not_taken_for_a_default(tmp_path, capsys, monkeypatch, no_data, cli, argv, flag):
    monkeypatch.chdir(tmp_path)  # `--out ""` used to mean ./results/runs/<time>-<host>/ under here
    assert cli(argv) == 2
    one_error_line(capsys.readouterr().err, f"argument {flag}: expected a value, got an empty string")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- case 9: sizes no machine holds, threads

def test_a_model_no_machine_holds_is_refused_at_once_with_its_estimate(tmp_path, capsys, no_data):
    out = tmp_path / "out"
    assert run_command.cli(["--layers", "100000", "--out", str(out), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    one_error_line(err, "the largest run (lstm, batch 50, hidden 64, 100000 layer(s), 28 steps, float32) needs "
                        "3,327,991,434 parameters; at least ")
    assert "parameters 12.4 GiB, gradients 12.4 GiB, optimizer 24.8 GiB" in err and "--force" in err
    assert not out.exists()
    assert run_command.cli(["--layers", "100000", "--out", str(out), "--device", "cpu", "--dry-run"]) == 2
    capsys.readouterr()
    assert run_command.cli(["--layers", "100000", "--out", str(out), "--device", "cpu", "--dry-run", "--force"]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith("warning: --force: the largest run") and captured.out.startswith("plan: 8 run(s)")


@pytest.mark.parametrize("backend,input_size,hidden,layers", [("cudnn", 28, 64, 2), ("gru", 28, 64, 2),
                                                              ("loop", 7, 5, 3), ("gru", 112, 17, 1)])
def test_the_estimate_counts_exactly_the_parameters_the_model_has(backend, input_size, hidden, layers):
    model = RowClassifier(impls.build(backend, input_size, hidden, layers, batch_first=True), hidden, 10)
    family = impls.REGISTRY[backend].family
    expected = sum(p.numel() for p in model.parameters())
    assert estimate.parameter_count(family, input_size, hidden, layers, 10) == expected
    need = estimate.run_memory(family, batch=50, seq_len=784 // input_size, input_size=input_size, hidden=hidden,
                               layers=layers, classes=10, dtype="float32", train_images=60_000)
    assert need.bytes["parameters"] == 4 * need.parameters == need.bytes["gradients"] == need.bytes["optimizer"] // 2
    assert need.bytes["data"] == 70_000 * 784 * 4


@pytest.mark.slow
def test_more_threads_than_cores_is_a_warning_recorded_with_the_results(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("bench.data.for_cells", lambda root=None, **options: synthetic_mnist())
    monkeypatch.setattr(preflight, "cores", lambda: 1)
    threads = torch.get_num_threads()
    out = tmp_path / "out"
    try:
        assert run_command.cli(["--backends", "gru", "--hidden", "8", "--threads", "2", "--out", str(out), *SMALL]) == 0
    finally:
        torch.set_num_threads(threads)
    line = ("--threads 2 is more than the 1 CPU core(s) this process may use: the threads will take turns on the "
            "cores and the times measure that contention")
    assert f"warning: {line}\n" in capsys.readouterr().err
    assert json.loads((out / "env.json").read_text())["warnings"] == [line]
    assert storage.load_runs(out).threads.tolist() == [2]


# ---------------------------------------------------------------- case 10: config values

ALIAS_BOMB = "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n" \
             "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e]\n"


@pytest.mark.parametrize("argv,file,fragment", [
    (["--device", "cuda:abc"], None, "config: device must be auto, cpu or cuda[:N] (N a GPU index); got 'cuda:abc'"),
    (["--device", "cuda:-1"], None, "device must be auto, cpu or cuda[:N]"),
    (["--seeds", str(2**64)], None, "seeds must be 64-bit integers (from -2**63 to 2**63-1), got 18446744073709551616"),
    ([], ("c.toml", f"seeds = [0, {2**63}]\n"), "seeds must be 64-bit integers"),
    ([], ("c.yaml", "1: 2\nhiden: 3\n"), "config: every key must be a name such as hidden_size; got 1 (int)"),
    ([], ("c.yaml", "true: 1\n"), "must be a name such as hidden_size; got True (bool)"),
    ([], ("c.yaml", "[1, 2]: x\n"), "not valid YAML at line 1, column 1: found unhashable key"),
    ([], ("c.yaml", ALIAS_BOMB), "not valid YAML at line 2, column 8: aliases (*name) are not allowed"),
    ([], ("c.yaml", "[" * 3000), "not valid YAML"),
    ([], ("c.yaml", f"device: {'x' * 50_000}\n"), "config: device must be auto, cpu or cuda[:N] (N a GPU index); "
                                                   "got 'xxxxxxxxxxxx"),
    ([], ("c.yaml", "x" * 70_000), "a config file is a few lines (at most 65,536 bytes)"),
    ([], ("c.json", '{"seeds": [' + "9" * 5000 + "]}"), "not valid JSON: Exceeds the limit"),
    ([], ("c.yaml", "seeds: [" + ", ".join(map(str, range(2_000))) + ", 3]\n"),
     "seeds must differ: 3 is listed twice"),
])
def test_every_bad_config_value_is_one_bounded_line(tmp_path, capsys, no_data, argv, file, fragment):
    if file:
        (tmp_path / file[0]).write_text(file[1])
        argv = argv + ["--config", str(tmp_path / file[0])]
    assert run_command.cli(argv + ["--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    one_error_line(err, fragment)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- case 11: smaller untruths

def test_a_repeated_sweep_axis_is_refused_not_silently_replaced(tmp_path, capsys, no_data):
    argv = ["--sweep", "hidden_size=8,16", "--sweep", "hidden_size=32", "--out", str(tmp_path / "out")]
    assert run_command.cli(argv) == 2
    one_error_line(capsys.readouterr().err, "--sweep hidden_size is given twice; list every value once")


def test_a_baseline_outside_the_plan_is_refused(tmp_path, capsys, no_data, finished_fixture_dir):
    assert run_command.cli(["--backends", "gru,loop", "--baseline", "nosuch", "--out", str(tmp_path / "out")]) == 2
    one_error_line(capsys.readouterr().err, "--baseline 'nosuch' is not a backend of this plan (gru, loop)")
    assert report.cli([str(finished_fixture_dir), "--baseline", "nosuch"]) == 2
    one_error_line(capsys.readouterr().err, "--baseline 'nosuch': no run of that backend in")
    assert not (finished_fixture_dir / "report.md").exists()


@pytest.fixture
def finished_fixture_dir(tmp_path):
    return make_no_baseline_fixture(tmp_path / "fixture")
