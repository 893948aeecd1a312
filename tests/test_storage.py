"""storage: appends stay correct over many rows and after a torn write; whole files appear atomically."""
import os

import pandas as pd
import pytest

from bench import atomic, storage
from bench.schema import RUN_COLUMNS, STEP_COLUMNS

COLUMNS = ["run_id", "step", "value"]


def rows(start, count):
    return [{"run_id": f"r{i % 7}", "step": i, "value": i * 0.5} for i in range(start, start + count)]


def test_many_appends_keep_every_row_in_order_and_append_in_place(tmp_path):
    path = tmp_path / "t.csv"
    storage.append_rows(path, rows(0, 1), COLUMNS)
    inode = os.stat(path).st_ino
    for start in range(1, 600, 3):
        storage.append_rows(path, rows(start, 3), COLUMNS)
    frame = storage.load_table(tmp_path, "t.csv", COLUMNS)
    assert list(frame.columns) == COLUMNS and frame.step.tolist() == list(range(601))
    assert frame.value.tolist() == [i * 0.5 for i in range(601)]
    assert path.read_text().count("run_id") == 1   # one header
    assert os.stat(path).st_ino == inode           # appended to, never rewritten


def test_empty_append_creates_a_header_only_file(tmp_path):
    storage.append_rows(tmp_path / "t.csv", [], COLUMNS)
    assert (tmp_path / "t.csv").read_text() == "run_id,step,value\n"
    assert storage.load_table(tmp_path, "t.csv", COLUMNS).empty


@pytest.mark.parametrize("torn", ["r3,9", "r3,9,4.", "r", ",,"])
def test_a_torn_last_line_is_never_read_and_is_cut_before_the_next_append(tmp_path, torn):
    path = tmp_path / "t.csv"
    storage.append_rows(path, rows(0, 5), COLUMNS)
    with open(path, "a") as handle:   # what a kill in the middle of write() leaves
        handle.write(torn)
    assert storage.load_table(tmp_path, "t.csv", COLUMNS).step.tolist() == [0, 1, 2, 3, 4]
    storage.append_rows(path, rows(5, 2), COLUMNS)
    assert path.read_text().endswith("r6,6,3.0\n") and torn + "r" not in path.read_text()
    assert storage.load_table(tmp_path, "t.csv", COLUMNS).step.tolist() == list(range(7))


def test_a_torn_runs_row_means_the_run_is_not_done(tmp_path):
    row = {column: "" for column in RUN_COLUMNS} | {"run_id": "a", "backend": "cudnn", "seed": 0, "status": "ok"}
    storage.append_run(tmp_path, row, [], [{"run_id": "a", "backend": "cudnn", "seed": 0, "step": 1, "step_ms": 2.0}])
    storage.append_rows(tmp_path / "steps.csv", [{"run_id": "b", "backend": "cudnn", "seed": 1, "step": 1,
                                                  "step_ms": 3.0}], STEP_COLUMNS)
    with open(tmp_path / "runs.csv", "a") as handle:
        handle.write("b,cudnn,1,50,64")   # run b was killed while its row was being written
    assert storage.load_runs(tmp_path).run_id.tolist() == ["a"]
    storage.drop_unfinished(tmp_path, {"a"})
    assert storage.load_steps(tmp_path).run_id.tolist() == ["a"]
    storage.append_run(tmp_path, row | {"run_id": "b", "seed": 1}, [], [])
    assert storage.load_runs(tmp_path).run_id.tolist() == ["a", "b"]


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    atomic.write_json(tmp_path / "env.json", {"a": 1})
    atomic.write_json(tmp_path / "env.json", {"a": 2})
    assert [p.name for p in tmp_path.iterdir()] == ["env.json"] and storage.load_env(tmp_path) == {"a": 2}
    assert isinstance(storage.load_table(tmp_path, "missing.csv", COLUMNS), pd.DataFrame)
