"""Report and compare on gaps in the results: a metric without a finite value shows as a dash with the reason,
and planned cells without a row (a run interrupted, killed or still running) are named, never dropped."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from bench.analysis import compare, report, results
from tests.fixtures.results_factory import run_row, write_env, write_run

pytestmark = pytest.mark.usefixtures("unrendered_plots")  # reads the text, not the pixels (tests/fixtures/plots.py)


def nan_fixture(directory: Path) -> Path:
    """What `--train-limit 10` used to write: an ok row with one step, so no steady-state time."""
    write_env(directory, backends=("cudnn", "loop"))
    write_run(directory, run_row("cudnn", 0, test_accuracy=0.5, train_samples_per_s=math.nan, infer_samples_per_s=3000,
                                 peak_tensor_bytes=2**20, first_step_s=0.3, step_ms_median=math.nan,
                                 step_ms_p10=math.nan, step_ms_p90=math.nan))
    write_run(directory, run_row("loop", 0, test_accuracy=0.5, train_samples_per_s=100, infer_samples_per_s=3000,
                                 peak_tensor_bytes=2**20, first_step_s=0.3), step_ms=[5.0, 6.0, 7.0])
    return directory


def test_report_and_compare_show_a_nan_metric_as_a_dash_and_say_why(tmp_path, capsys):
    directory = nan_fixture(tmp_path / "nan")
    assert report.cli([str(directory)]) == 0
    text = (directory / "report.md").read_text()
    assert "| cudnn | 0 | — | — | — |" in text  # throughput: no finite value, no ratio
    assert "— for cudnn: no ok run there recorded a finite value" in text
    assert compare.cli([str(directory), str(directory), "--out", str(tmp_path / "c")]) == 0
    compared = (tmp_path / "c" / "compare.md").read_text()
    assert ("| cudnn | Training throughput (samples/s) | — | — | — | — | unchanged | no test | no value to compare |"
            in compared)


def interrupted(directory: Path) -> Path:
    """Three planned cells (cudnn, loop x seeds 0; gru), one row: a run killed or still running."""
    write_env(directory, backends=("cudnn", "loop", "gru"), seeds=(0,))
    write_run(directory, run_row("cudnn", 0, test_accuracy=0.9, train_samples_per_s=100, infer_samples_per_s=3000,
                                 peak_tensor_bytes=2**20, first_step_s=0.3), step_ms=[5.0, 6.0, 7.0])
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


def test_a_run_killed_before_its_first_row_reports_every_cell_missing(tmp_path):
    directory = tmp_path / "run"
    write_env(directory, backends=("cudnn", "gru"), seeds=(0,))
    text = report.write_report(directory).read_text()
    assert "2 runs: 0 ok, 0 skipped, 0 failed, 2 not run (interrupted or still running)" in text
