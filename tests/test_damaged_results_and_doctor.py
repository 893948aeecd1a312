"""Issue 21, cases 3, 6, 7 and 8: a damaged or foreign results file is refused in one line naming the file and
the line, by report, compare and --resume, before any row is read as data or any run trains; `bench doctor`
lists the problems and repairs what loses nothing, keeping the original.

The directory under test is a real one: written by runner.start_env and runner.execute (synthetic MNIST, a
tiny model, in-process), then damaged the way a kill, a disk or a hand edit damages files.
"""
from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import pytest
import torch

from bench import doctor, run_command, runner, storage, validate
from bench.analysis import compare, report
from bench.config import from_dict
from bench.executors import LocalExecutor
from tests.fixtures.synthetic import synthetic_mnist

pytestmark = pytest.mark.usefixtures("unrendered_plots")  # reads the text, not the pixels (tests/fixtures/plots.py)

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """cudnn and gru, seeds 0 and 1: four ok rows with their curves and steps, and env.json's plan."""
    out = tmp_path_factory.mktemp("finished") / "run"
    config = from_dict(dict(backends=("cudnn", "gru"), seeds=(0, 1), train_limit=200, batch_size=50, hidden_size=8,
                            warmup_steps=1, eval_batch_size=100, curve_every=2, device="cpu", isolate=False))
    runner.start_env(out, {}, config, CPU, LocalExecutor())
    runner.execute(config, out, CPU, synthetic_mnist(), log=lambda _: None)
    assert (storage.load_runs(out).status == "ok").all()
    return out


@pytest.fixture
def run_dir(finished, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(finished, copy)
    return copy


@pytest.fixture
def no_data(monkeypatch):
    """Loading MNIST (the step before any training) fails the test: refusals must come before it."""
    def never(*args, **kwargs):
        raise AssertionError("the data was loaded: the refusal came too late")
    monkeypatch.setattr("bench.data.load_mnist", never)
    monkeypatch.setattr("bench.data.for_cells", never)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def add_unknown_column(d):
    text = lines(d / "runs.csv")
    rows = [text[0].rstrip("\n") + ",mystery\n"] + [t.rstrip("\n") + ",7\n" for t in text[1:]]
    (d / "runs.csv").write_text("".join(rows))


def empty(name):
    return lambda d: (d / name).write_bytes(b"")


def extra_field(d):
    text = lines(d / "runs.csv")
    text[2] = text[2].rstrip("\n") + ",surplus\n"
    (d / "runs.csv").write_text("".join(text))


def short_row(d):
    text = lines(d / "runs.csv")
    text[3] = ",".join(text[3].split(",")[:5]) + "\n"
    (d / "runs.csv").write_text("".join(text))


def garbage_line(d):
    text = lines(d / "runs.csv")
    (d / "runs.csv").write_text("".join(text[:2] + ["line\n"] + text[2:]))


def duplicated_row(d):
    text = lines(d / "runs.csv")
    (d / "runs.csv").write_text("".join(text + [text[1]]))


def bad_status(d):
    text = lines(d / "runs.csv")
    (d / "runs.csv").write_text("".join(text[:2] + [text[2].replace(",ok,", ",nan,", 1)] + text[3:]))


def not_utf8(d):
    (d / "steps.csv").write_bytes((d / "steps.csv").read_bytes() + b"gru-s0\xff,gru,0,9,1.0\n")


# (case, damage, what the one line must say)
DAMAGES = [
    ("3", add_unknown_column, "runs.csv line 1: unknown column 'mystery'"),
    ("6", empty("runs.csv"), "runs.csv line 1: empty (0 bytes)"),
    ("6", empty("steps.csv"), "steps.csv line 1: empty (0 bytes)"),
    ("6", empty("curves.csv"), "curves.csv line 1: empty (0 bytes)"),
    ("6", extra_field, "runs.csv line 3: "),
    ("6", short_row, "runs.csv line 4: 5 field(s) where the header has"),
    ("7", garbage_line, "runs.csv line 3: 1 field(s) where the header has"),
    ("7", duplicated_row, "runs.csv line 6: repeats line 2"),
    ("7", bad_status, "runs.csv line 3: status 'nan': expected one of ok, skipped, failed"),
    ("-", not_utf8, "steps.csv line "),
]
IDS = [f"case{case}-{damage.__name__}" if not damage.__name__ == "<lambda>" else f"case{case}-empty-{i}"
       for i, (case, damage, _) in enumerate(DAMAGES)]


def one_error_line(err: str, fragment: str) -> None:
    assert err.startswith("error: ") and err.count("\n") == 1 and fragment in err, err
    assert "Traceback" not in err and len(err) <= 802


@pytest.mark.parametrize("case,damage,fragment", DAMAGES, ids=IDS)
def test_resume_refuses_a_damaged_directory_before_anything_is_written(run_dir, capsys, no_data, case, damage,
                                                                        fragment):
    damage(run_dir)
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    assert run_command.cli(["--resume", str(run_dir)]) == 2
    one_error_line(capsys.readouterr().err, fragment)
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before  # env.json included


def test_retry_failed_on_a_short_row_is_refused_not_an_index_error(run_dir, capsys, no_data):
    short_row(run_dir)
    assert run_command.cli(["--resume", str(run_dir), "--retry-failed"]) == 2
    one_error_line(capsys.readouterr().err, "runs.csv line 4: 5 field(s)")


@pytest.mark.parametrize("case,damage,fragment", DAMAGES, ids=IDS)
def test_report_and_compare_refuse_a_damaged_directory_in_one_line(run_dir, finished, tmp_path, capsys, case, damage,
                                                                    fragment):
    damage(run_dir)
    assert report.cli([str(run_dir)]) == 2
    one_error_line(capsys.readouterr().err, fragment)
    assert not (run_dir / "report.md").exists()
    assert compare.cli([str(finished), str(run_dir), "--out", str(tmp_path / "cmp")]) == 2
    one_error_line(capsys.readouterr().err, fragment)
    assert not (tmp_path / "cmp").exists()


def test_a_torn_last_line_is_normal_and_read_by_no_one(run_dir, capsys):
    with open(run_dir / "runs.csv", "a") as handle:  # a kill in the middle of an append
        handle.write("gru-s1-b50,gru,1,50")
    problems = validate.ensure_sound(run_dir, plan=True)
    assert [(p.severity, p.fix, p.line) for p in problems] == [(validate.NOTE, validate.TORN, 6)]
    assert report.cli([str(run_dir)]) == 0 and len(storage.load_runs(run_dir)) == 4


def test_doctor_repairs_what_loses_nothing_and_keeps_the_original(run_dir, finished, capsys):
    duplicated_row(run_dir)
    with open(run_dir / "runs.csv", "a") as handle:
        handle.write("\ngru-s1-b50,gru,1,50")  # a blank line, then a torn one
    (run_dir / "curves.csv").write_bytes(b"")
    damaged = (run_dir / "runs.csv").read_bytes()
    assert doctor.cli([str(run_dir), "--dry-run"]) == 1
    listed = capsys.readouterr().out
    assert "runs.csv line 6: repeats line 2" in listed and "[repair: drop duplicate]" in listed
    assert "runs.csv line 7: a blank line" in listed and "curves.csv line 1: empty" in listed
    assert (run_dir / "runs.csv").read_bytes() == damaged  # a dry run changes nothing

    assert doctor.cli([str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "repaired" in out and out.rstrip().endswith("sound")
    assert (run_dir / "runs.csv").read_bytes() == (finished / "runs.csv").read_bytes()  # every row, once
    assert (run_dir / "curves.csv").read_text() == "run_id,backend,seed,step,epoch,loss,elapsed_s\n"
    backups = sorted(p.name for p in run_dir.glob("*.orig-*"))
    assert [b.split(".orig-")[0] for b in backups] == ["curves.csv", "runs.csv"]
    assert (run_dir / next(b for b in backups if b.startswith("runs"))).read_bytes() == damaged
    assert report.cli([str(run_dir)]) == 0  # the report reads it again


def test_doctor_leaves_what_needs_a_person_unless_asked_to_drop_bad_lines(run_dir, finished, capsys):
    garbage_line(run_dir)
    damaged = (run_dir / "runs.csv").read_bytes()
    assert doctor.cli([str(run_dir)]) == 1
    assert "runs.csv line 3: 1 field(s)" in capsys.readouterr().out
    assert (run_dir / "runs.csv").read_bytes() == damaged and not list(run_dir.glob("*.orig-*"))
    assert doctor.cli([str(run_dir), "--drop-bad-lines"]) == 0
    assert (run_dir / "runs.csv").read_bytes() == (finished / "runs.csv").read_bytes()
    assert [p.read_bytes() for p in run_dir.glob("runs.csv.orig-*")] == [damaged]


def test_doctor_waits_for_no_run_and_refuses_bad_input(run_dir, tmp_path, capsys):
    from bench.rundir import lock
    duplicated_row(run_dir)
    with lock(run_dir):  # a run is appending here
        assert doctor.cli([str(run_dir)]) == 2
    one_error_line(capsys.readouterr().err, "is in use by another `bench run`")
    assert doctor.cli([str(tmp_path / "nowhere")]) == 2
    one_error_line(capsys.readouterr().err, "no such directory")


# ---------------------------------------------------------------- case 8: env.json and runs.csv disagree

def edit_plan(directory: Path, **changes) -> None:
    env = json.loads((directory / "env.json").read_text())
    env["config"].update(changes)
    (directory / "env.json").write_text(json.dumps(env))


def test_resume_refuses_rows_that_are_not_runs_of_the_saved_plan(run_dir, capsys, no_data):
    edit_plan(run_dir, hidden_size=32)
    before = (run_dir / "env.json").read_bytes()
    assert run_command.cli(["--resume", str(run_dir)]) == 2
    one_error_line(capsys.readouterr().err, "runs.csv line 2: run 'cudnn-s0-b50-h8-l2-t28' has hidden_size 8, not in "
                                            "the plan saved in env.json (hidden_size: 32)")
    assert (run_dir / "env.json").read_bytes() == before


def test_resume_refuses_a_row_whose_name_is_not_its_plan_cell(run_dir, capsys, no_data):
    text = (run_dir / "runs.csv").read_text().replace("gru-s1-b50-h8-l2-t28,", "gru-s1-renamed,", 1)
    (run_dir / "runs.csv").write_text(text)
    assert run_command.cli(["--resume", str(run_dir)]) == 2
    one_error_line(capsys.readouterr().err, "run 'gru-s1-renamed' is not a run of the plan saved in env.json")


def test_report_says_when_rows_and_env_json_disagree(run_dir, capsys):
    edit_plan(run_dir, backends=["cudnn", "gru", "loop"], hidden_size=32)
    assert report.cli([str(run_dir)]) == 0
    err = capsys.readouterr().err
    assert err.startswith("warning: 4 row(s) do not fit the plan saved in env.json") and err.count("\n") == 1
    assert "**Warning:** 4 row(s) do not fit the plan saved in env.json" in (run_dir / "report.md").read_text()


def test_the_reference_results_are_sound():
    """The committed references (written by older versions too) must not be refused: no false alarms."""
    root = Path(__file__).resolve().parent.parent / "results" / "reference"
    directories = [d for d in root.iterdir() if (d / "runs.csv").exists()]
    assert directories
    for directory in directories:
        assert [p for p in validate.check(directory) if p.severity != validate.NOTE] == [], directory


# ---------------------------------------------------------------- case 6, 11: a full disk under the report

def test_report_on_a_full_disk_is_one_line_naming_the_command_to_rerun(run_dir, capsys, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(report, "atomic_write_text", full)
    assert report.cli([str(run_dir)]) == 2
    one_error_line(capsys.readouterr().err, f"No space left on device; the results are untouched: free the space "
                                            f"and run `bench report {run_dir}` again")
    assert run_command.report_after_run(run_dir, None) is False  # bench run --report: the runs are done, not resumable
    err = capsys.readouterr().err
    one_error_line(err, f"write it with `bench report {run_dir}`")
    assert "--resume" not in err
