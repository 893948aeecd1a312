"""Results written before the memory and contention columns still load: each old memory figure lands in the
column that means the same (CUDA's allocator peak is peak_tensor_bytes, CPU RSS growth is rss_growth_bytes),
and the columns they never had are empty."""
import csv
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from bench.analysis import report, results
from bench.storage import load_runs

pytestmark = pytest.mark.usefixtures("unrendered_plots")  # reads the text, not the pixels (tests/fixtures/plots.py)

# A real results directory written before the memory, contention and LSTM-surface columns existed: the data files of
# the scaling-hidden reference as it was first committed (the references themselves are regenerated with each format)
REFERENCE = Path(__file__).resolve().parent / "fixtures" / "older-results"


def test_old_memory_column_is_split_by_what_it_measured(tmp_path):
    header = ["run_id", "backend", "seed", "batch_size", "hidden_size", "num_layers", "seq_len", "status", "error",
              "device", "memory_method", "peak_memory_bytes"]
    rows = [["a", "cudnn", 0, 50, 64, 2, 28, "ok", "", "cuda:0", "cuda: torch.cuda.max_memory_allocated", 1000],
            ["b", "cudnn", 0, 50, 64, 2, 28, "ok", "", "cpu", "cpu: peak RSS growth, kernel high-water mark", 2000],
            ["c", "loop", 0, 50, 64, 2, 28, "failed", "boom", "cpu", "", ""]]
    with open(tmp_path / "runs.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([header, *rows])
    runs = load_runs(tmp_path).set_index("run_id")
    assert runs.loc["a", "peak_tensor_bytes"] == 1000 and pd.isna(runs.loc["a", "rss_growth_bytes"])
    assert runs.loc["b", "rss_growth_bytes"] == 2000 and pd.isna(runs.loc["b", "peak_tensor_bytes"])
    assert runs.loc["b", "memory_method"].startswith("older results: RSS growth only")
    assert runs.loc["a", "memory_method"].startswith("cuda:") and runs.loc["c", "memory_method"] == ""
    assert runs["contended"].isna().all() and runs["cpu_share"].isna().all() and "peak_memory_bytes" not in runs


def test_a_directory_of_the_older_format_still_loads_and_reports(tmp_path):
    copy = tmp_path / "ref"
    shutil.copytree(REFERENCE, copy)
    res = results.load(copy)
    ok = res.ok
    assert len(ok) and ok["rss_growth_bytes"].notna().all() and ok["peak_tensor_bytes"].isna().all()
    blocks = report.build_blocks(res, {})
    text = "\n".join(str(b) for b in blocks)
    assert "Peak tensor memory in training" in text and "other work ran" not in text


def test_older_results_read_the_new_knobs_as_their_defaults_and_resume_by_the_same_names(tmp_path):
    """Written before bidirectional, proj_size and packing existed: those runs had one direction, no projection and
    padded input, and their run ids are what today's plan names them, so --resume counts them as done."""
    from bench import config, preflight
    from bench.analysis import varlen
    copy = tmp_path / "ref"
    shutil.copytree(REFERENCE, copy)
    runs = load_runs(copy)
    assert (runs["packing"] == "none").all() and (~runs["bidirectional"].astype(bool)).all()
    assert (runs["proj_size"] == 0).all()
    assert runs["mean_length"].isna().all() and (runs["length_counts"] == "").all()  # never measured there
    res = results.load(copy)
    assert not {"packing", "bidirectional", "proj_size"} & set(res.axes) and not varlen.applies(res)
    saved = config.from_dict({k: v for k, v in res.env["config"].items() if k not in config.DERIVED})
    assert preflight.run_id_problems(copy, saved) == []


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_resume_of_a_directory_written_before_the_new_columns(tmp_path, fake_mnist):
    from bench import run_command
    out = tmp_path / "old"
    argv = ["--backends", "cudnn,gru", "--train-limit", "300", "--hidden", "8", "--no-isolate", "--device", "cpu",
            "--warmup-steps", "1", "--out", str(out)]
    assert run_command.cli(argv) == 0
    new = ["bidirectional", "proj_size", "packing", "mean_length", "length_counts"]
    with open(out / "runs.csv", newline="") as handle:  # as an older version wrote it: no new columns, and
        rows = list(csv.DictReader(handle))            # killed before its second run's row
    header = [c for c in rows[0] if c not in new]
    with open(out / "runs.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, header, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerow(rows[0])
    env = json.loads((out / "env.json").read_text())
    env["config"] = {k: v for k, v in env["config"].items() if k not in new}
    (out / "env.json").write_text(json.dumps(env))
    assert run_command.cli(["--resume", str(out)]) == 0
    runs = load_runs(out).set_index("backend")
    assert list(runs.index) == ["cudnn", "gru"] and (runs["status"] == "ok").all()
    assert (runs["packing"] == "none").all() and (runs["proj_size"] == 0).all()  # the widened old row too
    assert pd.isna(runs.loc["cudnn", "mean_length"]) and runs.loc["gru", "mean_length"] == 28
    assert run_command.cli(["--resume", str(out)]) == 0 and len(load_runs(out)) == 2  # nothing left to run
    assert "What packing costs" not in (report.write_report(out).read_text())
