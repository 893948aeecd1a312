"""The report on small fixture results: files written, numbers and ratios as worked out by hand."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.analysis import report, results
from bench.analysis.plots import backend_colors
from tests.fixtures.plots import unrendered
from tests.fixtures.results_factory import MEMORY_METHOD, make_no_baseline_fixture, make_report_fixture


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    directory = make_report_fixture(tmp_path_factory.mktemp("sweep"))
    with unrendered():  # the tests read numbers and files; test_history.py's fixture renders real pixels
        report.write_report(directory)
    return directory


def rows_of(table, **key) -> dict:
    for column, value in key.items():
        table = table[table[column] == value]
    assert len(table) == 1, key
    return table.iloc[0].to_dict()


def test_files_written(sweep_dir):
    for name in ("report.md", "report.html", "plots/bars.png", "plots/accuracy.png", "plots/curves.png",
                 "plots/scaling_batch_size.png", "plots/step_times.png"):
        path = sweep_dir / name
        assert path.is_file() and path.stat().st_size > 0, name
    assert (sweep_dir / "plots/bars.png").read_bytes().startswith(b"\x89PNG")
    assert not list(sweep_dir.rglob("*.tmp")), "temporary files left behind"
    html = (sweep_dir / "report.html").read_text()
    assert "<table>" in html and "plots/bars.png" in html


def test_sweep_axis_detected_from_ok_rows(sweep_dir):
    # The failed loop run at batch 128 is not a sweep point with results; 32 and 64 are.
    assert results.load(sweep_dir).axes == ["batch_size"]


def test_accuracy_table_mean_std_and_ratio(sweep_dir):
    res = results.load(sweep_dir)
    table = res.summary("test_accuracy")
    cudnn = rows_of(table, backend="cudnn", batch_size=32)
    assert cudnn["n"] == 3 and cudnn["mean"] == pytest.approx(0.98) and cudnn["std"] == pytest.approx(0.01)
    loop = rows_of(table, backend="loop", batch_size=32)
    assert loop["mean"] == pytest.approx(0.97) and loop["ratio"] == pytest.approx(0.97 / 0.98)
    gru = rows_of(table, backend="gru", batch_size=64)
    assert gru["n"] == 1 and np.isnan(gru["std"]) and gru["ratio"] == pytest.approx(0.99 / 0.98)
    assert "triton" not in set(table["backend"])


def test_throughput_ratios_per_sweep_point(sweep_dir):
    res = results.load(sweep_dir)
    table = res.summary("train_samples_per_s")
    assert rows_of(table, backend="cudnn", batch_size=64)["mean"] == pytest.approx(2200)
    assert rows_of(table, backend="cudnn", batch_size=64)["std"] == pytest.approx(200)
    assert rows_of(table, backend="loop", batch_size=32)["ratio"] == pytest.approx(550 / 1100)
    assert rows_of(table, backend="gru", batch_size=64)["ratio"] == pytest.approx(3300 / 2200)
    infer = res.summary("infer_samples_per_s")
    assert rows_of(infer, backend="loop", batch_size=64)["ratio"] == pytest.approx(8000 / 20000)


def test_step_time_pools_every_step(sweep_dir):
    # cudnn at batch 32: seeds add 0, 1, 2 ms to steps 10..13, so the 12 pooled steps sort to
    # 10 11 11 12 12 12 13 13 13 14 14 15: median 12.5; linear p10 at rank 1.1 = 11; p90 at 9.9 = 14.
    res = results.load(sweep_dir)
    table = res.summary("step_ms_median")
    cudnn = rows_of(table, backend="cudnn", batch_size=32)
    assert (cudnn["steps"], cudnn["median"], cudnn["p10"], cudnn["p90"]) == (12, 12.5, 11.0, 14.0)
    # batch 64: 20 22 24 26 per seed -> median 23, p10 20, p90 26; loop is 50 ms flat: ratio 50/23.
    assert rows_of(table, backend="cudnn", batch_size=64)["median"] == 23.0
    assert rows_of(table, backend="loop", batch_size=64)["ratio"] == pytest.approx(50 / 23)
    assert rows_of(table, backend="gru", batch_size=32)["ratio"] == pytest.approx(10 / 12.5)


def test_memory_table_says_how_it_was_measured(sweep_dir):
    res = results.load(sweep_dir)
    table = res.summary("peak_tensor_bytes")
    loop = rows_of(table, backend="loop", batch_size=32)
    assert loop["mean"] == 150 * 2**20 and loop["ratio"] == pytest.approx(1.5)
    assert loop["method"] == MEMORY_METHOD
    text = (sweep_dir / "report.md").read_text()
    assert f"| loop | 32 | 3 | 150.00 | 0.00 | {MEMORY_METHOD} | 1.50× |" in text


def test_markdown_tables_hold_formatted_numbers(sweep_dir):
    text = (sweep_dir / "report.md").read_text()
    assert "| cudnn | 32 | 3 | 98.00 % | 1.00 % | 1.00× |" in text
    assert "| gru | 64 | 1 | 99.00 % | — | 1.01× |" in text  # one seed: no std
    assert "| cudnn | 32 | 3 | 12 | 12.50 | 11.00 | 14.00 | 1.00× |" in text
    assert "| loop | 32 | 3 | 550 | 50 | 0.50× |" in text
    assert "| loop | 64 | 3 | 0.2000 | 0.0000 | 0.40× |" in text  # first step
    assert "config.sweep | batch_size: 32, 64, 128" in text
    assert "torch | 2.3.0" in text


def test_skipped_and_failed_rows_listed_with_reasons(sweep_dir):
    text = (sweep_dir / "report.md").read_text()
    assert "| loop | 128 | 0 | failed | RuntimeError: simulated out of memory |" in text
    # the plan in env.json holds batch 128 for every backend and seed; only loop seed 0 has a row there
    assert "36 runs: 14 ok, 6 skipped, 1 failed, 15 not run (interrupted or still running)" in text
    # one row per backend and sweep point, seeds listed; a reason shared by rows is written once, as a note
    assert "| cudnn | 128 | 0, 1, 2 | missing | see note 1 |" in text
    assert "| loop | 128 | 1, 2 | missing | see note 1 |" in text
    assert "| triton | 32 | 0, 1, 2 | skipped | see note 2 |" in text
    assert "| triton | 64 | 0, 1, 2 | skipped | see note 2 |" in text
    assert "- **note 1** (missing, 6 rows): not run (interrupted or still running)" in text
    assert "- **note 2** (skipped, 2 rows): triton needs a CUDA device; running on cpu" in text
    assert text.count("triton needs a CUDA device; running on cpu") == 1
    section = text.split("## Runs not measured")[1].split("\n## ")[0]
    assert section.count("\n| ") == 1 + 9  # header + (cudnn, loop x2, triton x3, gru x3) rows, not 21
    assert "| triton | 0 | 6 | 0 |" in text  # backends summary keeps the backend that never ran
    assert "simulated out of memory" in (sweep_dir / "report.html").read_text()


@pytest.mark.usefixtures("unrendered_plots")
def test_no_baseline_is_stated_and_ratios_empty(tmp_path):
    directory = make_no_baseline_fixture(tmp_path)
    path = report.write_report(directory)
    text = path.read_text()
    assert "No ratios against the baseline" in text and "cudnn needs CUDA; device is cpu" in text
    res = results.load(directory)
    table = res.summary("train_samples_per_s")
    assert table["ratio"].isna().all()
    # No steps.csv rows: step time falls back to the per-run summary and says so.
    step = res.summary("step_ms_median").iloc[0]
    assert (step["source"], step["median"], step["p10"], step["p90"]) == ("runs.csv", 62.5, 60, 70)
    assert "— (per-run summaries)" in text
    assert not (directory / "plots/scaling_batch_size.png").exists()
    assert (directory / "plots/bars.png").is_file()


def test_backend_colours_fixed_and_distinct():
    colors = backend_colors(["gru", "mine", "cudnn", "theirs", "loop"])
    import impls
    assert colors["cudnn"] == impls.spec("cudnn").color and colors["gru"] == impls.spec("gru").color
    assert len(set(colors.values())) == 5
    assert backend_colors(["mine", "theirs"]) == {k: colors[k] for k in ("mine", "theirs")}


def test_cli_bad_directory_exits_2(tmp_path, capsys):
    assert report.cli([str(tmp_path / "missing")]) == 2
    assert "no such directory" in capsys.readouterr().err
    assert report.cli([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "not a results directory" in err and "\n" not in err


@pytest.mark.slow
def test_report_never_imports_torch(sweep_dir):
    code = ("import sys; from bench.analysis import report, plots, compare; "
            f"report.write_report({str(sweep_dir)!r}); "
            "bad = [m for m in sys.modules if m == 'torch' or m.startswith(('torch.', 'impls.')) "
            "and m != 'impls.registry']; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent.parent)


def test_a_run_on_part_of_the_training_set_says_it_measures_speed(sweep_dir):
    text = (sweep_dir / "report.md").read_text()
    assert "not a converged accuracy" not in text  # the fixture trained on every image
    limited = report.scope_blocks({"config": {"train_limit": 2000}})
    assert len(limited) == 1 and "first 2,000 images" in limited[0][1] and "not a converged accuracy" in limited[0][1]


@pytest.mark.usefixtures("unrendered_plots")
def test_an_efficiency_above_one_is_called_out(tmp_path):
    directory = make_report_fixture(tmp_path)
    runs = (directory / "runs.csv").read_text().splitlines()
    header = runs[0].split(",")
    assert "efficiency" in header
    at = header.index("efficiency")
    rows = [line.split(",") for line in runs[1:]]
    for row in rows:
        if row[header.index("status")] == "ok":
            row[at], row[header.index("step_gflop")] = "3.5", "0.5"
            row[header.index("achieved_gflops")] = "3.2"
    (directory / "runs.csv").write_text("\n".join([runs[0], *(",".join(r) for r in rows)]) + "\n")
    text = "\n".join(str(b) for b in report.efficiency_blocks(results.load(directory)))
    assert "Efficiency above 100 %" in text


def test_a_category_value_without_an_ok_run_keeps_its_place_with_the_reason():
    """float16 on a CPU is skipped for every backend: the dtype scaling plot still shows it, labelled."""
    import pandas as pd

    from bench.analysis.plots import _absent_values
    runs = pd.DataFrame({"dtype": ["float32", "float16", "bfloat16", "float16"],
                         "status": ["ok", "skipped", "ok", "skipped"],
                         "error": ["", "dtype float16 needs a CUDA device", "", "dtype float16 needs a CUDA device"]})
    ok = runs[runs["status"] == "ok"]
    assert _absent_values(runs, ok, "dtype") == {"float16": "skipped: dtype float16 needs a CUDA device"}
    assert _absent_values(runs, runs, "dtype") == {}


@pytest.mark.usefixtures("unrendered_plots")
def test_runs_from_two_machines_are_said_at_the_top(tmp_path):
    """Ray across nodes (or results copied together): the report must not rank machines as if they were backends."""
    import pandas as pd

    from tests.fixtures.results_factory import make_compare_fixture
    directory = make_compare_fixture(tmp_path, rng_seed=1)
    runs = pd.read_csv(directory / "runs.csv")
    runs["host"] = ["node-a" if backend == "cudnn" else "node-b" for backend in runs["backend"]]
    runs["device_name"] = "Test CPU"
    runs.to_csv(directory / "runs.csv", index=False)
    assert results.load(directory).machines == ["node-a: Test CPU", "node-b: Test CPU"]
    text = report.write_report(directory).read_text()
    assert "**Runs from 2 machines** (node-a: Test CPU; node-b: Test CPU)" in text.split("## Headline")[0]


def test_a_curve_of_one_point_is_drawn_with_a_marker():
    """16 steps at curve_every 10 leave one point per run: a bare line through it draws nothing at all."""
    import pandas as pd

    from bench.analysis.plots import _curves, backend_colors
    curves = pd.DataFrame({"run_id": ["cudnn-0", "loop-0"], "step": [10, 10], "loss": [2.30, 2.31],
                           "elapsed_s": [11.9, 14.3], "backend": ["cudnn", "loop"], "seed": [0, 0], "point": ["", ""]})
    fig = _curves(curves, [], ["cudnn", "loop"], backend_colors(["cudnn", "loop"]))
    drawn = [line for ax in fig.axes for line in ax.get_lines() if len(line.get_xdata())]
    assert drawn and all(line.get_marker() == "o" for line in drawn)
