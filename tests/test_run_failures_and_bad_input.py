"""`bench run` when things go wrong: exit codes, retries, resume of some backends, a time limit, a full disk,
and every bad input refused up front in one line. Runs are tiny (synthetic MNIST, a few steps, no worker
process unless the case is about the worker)."""
from __future__ import annotations

import errno
from pathlib import Path

import pytest

import impls
from bench import run_command, storage
from bench.analysis import results
from tests.fixtures import sleepy

# 6 steps of batch 20: one warm-up + the 5 timed steps a run needs
SMALL = ["--train-limit", "120", "--batch-size", "20", "--warmup-steps", "1", "--hidden", "4", "--device", "cpu",
         "--no-isolate"]


@pytest.fixture
def boom(monkeypatch):
    """A backend that raises, registered for this test only."""
    monkeypatch.setitem(impls.REGISTRY, "boom", impls.Backend("tests.fixtures.synthetic:ExplodingLSTM", "lstm", "torch",
                                                             "raises"))


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_failed_run_exits_1_and_says_how_many(tmp_path, capsys, fake_mnist, boom):
    out = tmp_path / "run"
    assert run_command.cli(["--backends", "boom,gru", *SMALL, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"error: 1 of 2 run(s) failed (reasons in {out / 'runs.csv'}" in err
    argv = ["--backends", "boom,gru", *SMALL, "--out", str(tmp_path / "allowed"), "--allow-failures"]
    assert run_command.cli(argv) == 0
    assert "1 of 2 run(s) failed" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_retry_failed_replaces_the_failed_row(tmp_path, capsys, fake_mnist, boom, monkeypatch):
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


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_resume_with_backends_runs_only_their_missing_cells(tmp_path, capsys, fake_mnist, monkeypatch):
    out = tmp_path / "run"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("bench.train.train_and_measure", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_command.cli(["--backends", "cudnn,gru", "--seeds", "0,1", *SMALL, "--out", str(out)])
    monkeypatch.undo()
    monkeypatch.setattr("bench.data.for_cells", lambda root=None, **options: fake_mnist)
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
    monkeypatch.setattr("bench.data.for_cells", never)
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


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_full_disk_is_one_line_and_finished_rows_stay(tmp_path, capsys, fake_mnist, monkeypatch):
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



@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_hanging_backend_times_out_and_the_next_one_runs(tmp_path, capsys, fake_mnist, monkeypatch):
    """Through the CLI and the local executor. The limit counts the worker's start too (torch's import), and
    that alone took over 20 s at load 8 on 2 cores, failing the backend that should pass: hence 90 s."""
    from bench import executors
    monkeypatch.setitem(impls.REGISTRY, "sleepy", sleepy.SLEEPY)
    real_create = executors.create

    def create_with_the_sleepy_backend(*args, **kwargs):
        executor = real_create(*args, **kwargs)
        executor.train = sleepy.train_with_the_sleepy_backend  # a worker registers the test backend itself
        return executor

    monkeypatch.setattr(executors, "create", create_with_the_sleepy_backend)
    out = tmp_path / "run"
    argv = ["--backends", "sleepy,gru", *[a for a in SMALL if a != "--no-isolate"], "--timeout", "90"]
    assert run_command.cli([*argv, "--out", str(out)]) == 1
    runs = storage.load_runs(out).set_index("backend")
    assert runs.loc["sleepy", "status"] == "failed" and runs.loc["sleepy", "error"] == "timed out after 90 s"
    assert runs.loc["gru", "status"] == "ok"
    assert "1 of 2 run(s) failed" in capsys.readouterr().err
