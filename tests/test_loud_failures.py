"""Issue 11: nothing breaks the report, nothing hangs, nothing hides; every bad input is one line.

Report and compare on a NaN metric and on missing cells; the runner's exit codes, time limit, retries,
up-front refusals and a full disk. Runs are tiny (synthetic MNIST, a few steps, no worker process
unless the case is about the worker).
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "fixtures"))
from results_factory import run_row, write_env, write_run  # noqa: E402

from bench.analysis import compare, report, results  # noqa: E402


def nan_fixture(directory: Path) -> Path:
    """What `--train-limit 10` used to write: an ok row with one step, so no steady-state time."""
    write_env(directory, backends=("cudnn", "loop"))
    write_run(directory, run_row("cudnn", 0, test_accuracy=0.5, train_samples_per_s=math.nan, infer_samples_per_s=3000,
                                 peak_memory_bytes=2**20, first_step_s=0.3, step_ms_median=math.nan,
                                 step_ms_p10=math.nan, step_ms_p90=math.nan))
    write_run(directory, run_row("loop", 0, test_accuracy=0.5, train_samples_per_s=100, infer_samples_per_s=3000,
                                 peak_memory_bytes=2**20, first_step_s=0.3), step_ms=[5.0, 6.0, 7.0])
    return directory


def test_report_and_compare_show_a_nan_metric_as_a_dash_and_say_why(tmp_path, capsys):
    directory = nan_fixture(tmp_path / "nan")
    assert report.cli([str(directory)]) == 0
    text = (directory / "report.md").read_text()
    assert "| cudnn | 0 | — | — | — |" in text  # throughput: no finite value, no ratio
    assert "— for cudnn: no ok run there recorded a finite value" in text
    assert compare.cli([str(directory), str(directory), "--out", str(tmp_path / "c")]) == 0
    compared = (tmp_path / "c" / "compare.md").read_text()
    assert "| cudnn | Training throughput (samples/s) | — | — | — | — | unchanged | no test | no value to compare |" in compared


def interrupted(directory: Path) -> Path:
    """Three planned cells (cudnn, loop x seeds 0; gru), one row: a run killed or still running."""
    write_env(directory, backends=("cudnn", "loop", "gru"), seeds=(0,))
    write_run(directory, run_row("cudnn", 0, test_accuracy=0.9, train_samples_per_s=100, infer_samples_per_s=3000,
                                 peak_memory_bytes=2**20, first_step_s=0.3), step_ms=[5.0, 6.0, 7.0])
    return directory


def test_report_and_compare_name_the_cells_that_never_ran(tmp_path, capsys):
    directory = interrupted(tmp_path / "run")
    res = results.load(directory)
    assert res.status_counts() == {"ok": 1, "skipped": 0, "failed": 0, "missing": 2}
    assert list(res.missing["backend"]) == ["loop", "gru"]
    text = report.write_report(directory).read_text()
    assert "3 runs: 1 ok, 0 skipped, 0 failed, 2 not run (interrupted or still running)" in text
    assert "None: every run finished." not in text
    # no axis varies, so the table has none; loop and gru share the reason, written once below the table
    assert "| gru | 0 | missing | see note 1 |" in text and "| loop | 0 | missing | see note 1 |" in text
    assert "- **note 1** (missing, 2 rows): not run (interrupted or still running)" in text
    assert compare.cli([str(directory), str(directory), "--out", str(tmp_path / "c")]) == 0
    assert "B: gru seed 0: not run (interrupted or still running)" in capsys.readouterr().out
    compared = (tmp_path / "c" / "compare.md").read_text()
    assert "| A | loop | 0 | — | not run (interrupted or still running) |" in compared


def test_a_sweep_point_without_rows_is_missing(tmp_path):
    directory = tmp_path / "run"
    write_env(directory, backends=("cudnn",), sweep={"batch_size": [32, 64]})
    write_run(directory, run_row("cudnn", 0, batch_size=32, test_accuracy=0.9))
    missing = results.load(directory).missing
    assert missing[["backend", "seed", "batch_size"]].values.tolist() == [["cudnn", 0, 64]]


# ---------------------------------------------------------------- bench run: exit codes, retries, bad input

import errno  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

import impls  # noqa: E402
from bench import run_command, storage  # noqa: E402
from tests.test_runner import ExplodingLSTM, synthetic_mnist  # noqa: E402

# 6 steps of batch 20: one warm-up + the 5 timed steps a run needs
SMALL = ["--train-limit", "120", "--batch-size", "20", "--warmup-steps", "1", "--hidden", "4", "--device", "cpu",
         "--no-isolate"]


class Exploding(ExplodingLSTM):
    pass


@pytest.fixture
def fake_data(monkeypatch):
    data = synthetic_mnist()
    monkeypatch.setattr("bench.data.load_mnist", lambda root=None, quiet=True: data)
    return data


@pytest.fixture
def boom(monkeypatch):
    """A backend that raises, registered for this test only."""
    monkeypatch.setitem(impls.REGISTRY, "boom", impls.Backend(f"{__name__}:Exploding", "lstm", "torch", "raises"))


def test_a_failed_run_exits_1_and_says_how_many(tmp_path, capsys, fake_data, boom):
    out = tmp_path / "run"
    assert run_command.cli(["--backends", "boom,gru", *SMALL, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"error: 1 of 2 run(s) failed (reasons in {out / 'runs.csv'}" in err
    assert run_command.cli(["--backends", "boom,gru", *SMALL, "--out", str(tmp_path / "allowed"), "--allow-failures"]) == 0
    assert "1 of 2 run(s) failed" in capsys.readouterr().err


def test_retry_failed_replaces_the_failed_row(tmp_path, capsys, fake_data, boom, monkeypatch):
    out = tmp_path / "run"
    assert run_command.cli(["--backends", "boom,gru", *SMALL, "--out", str(out)]) == 1
    assert run_command.cli(["--resume", str(out)]) == 1  # a plain resume keeps the failed row
    assert len(storage.load_runs(out)) == 2
    monkeypatch.setitem(impls.REGISTRY, "boom", impls.REGISTRY["cudnn"])  # the backend is fixed
    assert run_command.cli(["--resume", str(out), "--retry-failed", "--backends", "gru"]) == 1  # boom's row stays
    assert storage.load_runs(out).set_index("backend").status.to_dict() == {"boom": "failed", "gru": "ok"}
    assert run_command.cli(["--resume", str(out), "--retry-failed"]) == 0
    runs = storage.load_runs(out)
    assert runs.set_index("backend").status.to_dict() == {"gru": "ok", "boom": "ok"} and runs.run_id.is_unique
    assert "retrying 1 failed run(s)" in capsys.readouterr().out


def test_resume_with_backends_runs_only_their_missing_cells(tmp_path, capsys, fake_data, monkeypatch):
    out = tmp_path / "run"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("bench.train.train_and_measure", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_command.cli(["--backends", "cudnn,gru", "--seeds", "0,1", *SMALL, "--out", str(out)])
    monkeypatch.undo()
    monkeypatch.setattr("bench.data.load_mnist", lambda root=None, quiet=True: fake_data)
    assert run_command.cli(["--resume", str(out), "--backends", "gru"]) == 0
    assert list(storage.load_runs(out).backend) == ["gru", "gru"]
    missing = results.load(out).missing
    assert missing[["backend", "seed"]].values.tolist() == [["cudnn", 0], ["cudnn", 1]]
    assert run_command.cli(["--resume", str(out), "--backends", "loop"]) == 2
    assert "'loop' is not in the saved plan (cudnn, gru)" in capsys.readouterr().err


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("name, text, message", [
    ("c.toml", "backends = 5\n", "config: backends must be a list of strings, got 5"),
    ("c.toml", "seeds = 1\n", "config: seeds must be a list of integers, got 1"),
    ("c.toml", 'sweep = "junk"\n', "config: sweep must be a table of axis -> list of values"),
    ("c.toml", "device = 5\n", "config: device must be a string, got 5"),
    ("c.toml", "lr = inf\n", "config: lr must be a finite number, got inf"),
    ("c.toml", "hidden_size = 8\nbatch_size = = 3\n", "c.toml': not valid TOML: Invalid value (at line 2, column 14)"),
    ("c.yaml", "backends: [cudnn\nseeds: 1\n", "c.yaml': not valid YAML at line 2, column 6"),
])
def test_bad_config_file_is_one_line(tmp_path, capsys, name, text, message):
    out = tmp_path / "out"
    assert run_command.cli(["--config", write(tmp_path / name, text), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not out.exists()


def test_run_too_short_to_measure_is_refused_with_the_minimum(tmp_path, capsys):
    out = tmp_path / "out"
    assert run_command.cli(["--backends", "cudnn", "--train-limit", "10", "--out", str(out)]) == 2
    assert capsys.readouterr().err == (
        "error: --train-limit 10 gives 1 training step(s) at batch size 50; a run needs at least 15 (10 warm-up + "
        "5 timed): use --train-limit 750 or more (or fewer --warmup-steps)\n")
    assert run_command.cli(["--train-limit", "200", "--sweep", "batch_size=10,50", "--out", str(out)]) == 2
    assert "200 gives 4 training step(s) at batch size 50" in capsys.readouterr().err  # every sweep point (10 is fine)
    assert not out.exists()


@pytest.mark.parametrize("argv, message", [
    (["--seeds", "0,0"], "config: seeds must differ: 0 is listed twice"),
    (["--sweep", "batch_size=32,32"], "config: sweep.batch_size lists 32 twice"),
    (["--lr", "inf"], "config: lr must be a finite number, got inf"),
    (["--timeout", "-1"], "config: timeout must be 0 (no limit) or a positive number"),
    (["--retry-failed"], "--retry-failed needs --resume DIR"),
])
def test_duplicates_and_non_finite_numbers_are_bad_input(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    assert run_command.cli([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists()


def test_bad_paths_are_one_line_before_any_data_loads(tmp_path, capsys, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("data loaded before the paths were checked")

    monkeypatch.setattr("bench.data.load_mnist", never)
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    tree = tmp_path / "tree"
    (tree / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").mkdir(parents=True)
    cases = [
        (["--out", str(a_file)], f"{a_file} is a file, expected a directory"),
        (["--out", str(a_file / "sub")], f"{a_file} is a file, expected a directory"),
        (["--data-root", str(a_file), "--out", str(tmp_path / "o")], f"data root {a_file}: {a_file} is a file"),
        (["--data-root", str(tree), "--out", str(tmp_path / "o")],
         "is a directory where the MNIST file t10k-labels-idx1-ubyte belongs"),
    ]
    for argv, message in cases:
        assert run_command.cli(["--backends", "cudnn", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "tree"]


def test_a_full_disk_is_one_line_and_finished_rows_stay(tmp_path, capsys, fake_data, monkeypatch):
    out = tmp_path / "run"
    real, appends = storage.append_run, []

    def disk_fills_up(*args, **kwargs):
        appends.append(1)
        if len(appends) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(storage, "append_run", disk_fills_up)
    assert run_command.cli(["--backends", "cudnn,gru", *SMALL, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err == (f"error: cannot write to {out}: No space left on device; its 1 finished run(s) are intact: "
                   f"free the space and finish with --resume {out}\n")
    runs = storage.load_runs(out)
    assert list(runs.backend) == ["cudnn"] and (runs.status == "ok").all()
    monkeypatch.setattr(storage, "append_run", real)
    assert run_command.cli(["--resume", str(out)]) == 0
    assert list(storage.load_runs(out).backend) == ["cudnn", "gru"]



def test_a_hanging_backend_times_out_and_the_next_one_runs(tmp_path, capsys, fake_data, monkeypatch):
    """Through the CLI and the local executor: the limit counts the worker's start too, hence 20 s."""
    import sleepy

    from bench import executors
    monkeypatch.setitem(impls.REGISTRY, "sleepy", sleepy.SLEEPY)
    real_create = executors.create

    def create_with_the_sleepy_backend(*args, **kwargs):
        executor = real_create(*args, **kwargs)
        executor.train = sleepy.train_with_the_sleepy_backend  # a worker registers the test backend itself
        return executor

    monkeypatch.setattr(executors, "create", create_with_the_sleepy_backend)
    out = tmp_path / "run"
    argv = ["--backends", "sleepy,gru", *[a for a in SMALL if a != "--no-isolate"], "--timeout", "20"]
    assert run_command.cli([*argv, "--out", str(out)]) == 1
    runs = storage.load_runs(out).set_index("backend")
    assert runs.loc["sleepy", "status"] == "failed" and runs.loc["sleepy", "error"] == "timed out after 20 s"
    assert runs.loc["gru", "status"] == "ok"
    assert "1 of 2 run(s) failed" in capsys.readouterr().err


def test_a_run_killed_before_its_first_row_reports_every_cell_missing(tmp_path):
    directory = tmp_path / "run"
    write_env(directory, backends=("cudnn", "gru"), seeds=(0,))
    text = report.write_report(directory).read_text()
    assert "2 runs: 0 ok, 0 skipped, 0 failed, 2 not run (interrupted or still running)" in text
