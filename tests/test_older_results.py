"""Results written before the memory and contention columns still load: each old memory figure lands in the
column that means the same (CUDA's allocator peak is peak_tensor_bytes, CPU RSS growth is rss_growth_bytes),
and the columns they never had are empty."""
import csv
import shutil
from pathlib import Path

import pandas as pd
import pytest

from bench.analysis import report, results
from bench.storage import load_runs

pytestmark = pytest.mark.usefixtures("unrendered_plots")  # reads the text, not the pixels (tests/fixtures/plots.py)

REFERENCE = Path(__file__).resolve().parent.parent / "results" / "reference" / "cpu-scaling-batch"


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


def test_a_committed_reference_still_loads_and_reports(tmp_path):
    copy = tmp_path / "ref"
    shutil.copytree(REFERENCE, copy)
    res = results.load(copy)
    ok = res.ok
    assert len(ok) and ok["rss_growth_bytes"].notna().all() and ok["peak_tensor_bytes"].isna().all()
    blocks = report.build_blocks(res, {})
    text = "\n".join(str(b) for b in blocks)
    assert "Peak tensor memory in training" in text and "other work ran" not in text
