"""compare flags a planted regression and not noise, states config differences, gates CI by exit code."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.analysis import compare
from tests.fixtures.results_factory import make_compare_fixture, make_report_fixture


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return make_compare_fixture(tmp_path_factory.mktemp("a"), rng_seed=1)


def flag(rows, backend, metric):
    match = rows[(rows["backend"] == backend) & (rows["metric"] == metric)]
    assert len(match) == 1
    return match.iloc[0]


def test_noise_is_not_flagged(base, tmp_path, capsys):
    other = make_compare_fixture(tmp_path / "b", rng_seed=2)
    assert compare.cli([str(base), str(other)]) == 0
    out = capsys.readouterr().out
    assert "no regression" in out and "Config/environment differences" not in out
    text = (other / "compare.md").read_text()  # default --out is DIR_B
    assert "No regression flagged" in text and "None: same config and environment" in text


def test_planted_slowdown_is_flagged(base, tmp_path, capsys):
    slow = make_compare_fixture(tmp_path / "b", rng_seed=2, step_factor={"loop": 1.3})
    assert compare.cli([str(base), str(slow), "--out", str(tmp_path / "out")]) == 1
    _, rows, status, _ = compare.write_compare(base, slow, 0.05, tmp_path / "out")
    step = flag(rows, "loop", "step_ms_median")
    assert step["flag"] == "slower" and step["regression"] and step["p"] < 1e-6
    assert step["ratio"] == pytest.approx(1.3, rel=0.02)
    assert flag(rows, "loop", "train_samples_per_s")["flag"] == "slower"
    assert flag(rows, "cudnn", "step_ms_median")["flag"] == "unchanged"
    assert "SLOWER" in capsys.readouterr().out
    assert "| loop | Training step time (ms) |" in (tmp_path / "out" / "compare.md").read_text()


def test_speedup_is_flagged_but_not_a_regression(base, tmp_path):
    fast = make_compare_fixture(tmp_path / "b", rng_seed=2, step_factor={"cudnn": 0.7})
    assert compare.cli([str(base), str(fast)]) == 0
    _, rows, _, _ = compare.write_compare(base, fast, 0.05)
    assert flag(rows, "cudnn", "step_ms_median")["flag"] == "faster"
    assert flag(rows, "cudnn", "train_samples_per_s")["flag"] == "faster"


def test_threshold_hides_a_small_significant_change(base, tmp_path):
    slower = make_compare_fixture(tmp_path / "b", rng_seed=2, step_factor={"loop": 1.03})
    _, rows, _, _ = compare.write_compare(base, slower, 0.05)
    step = flag(rows, "loop", "step_ms_median")
    assert step["p"] < 0.05 and step["flag"] == "unchanged"  # real, but under 5 %
    assert compare.cli([str(base), str(slower), "--threshold", "2%"]) == 1


def test_accuracy_is_tested_over_the_test_images(base, tmp_path):
    worse = make_compare_fixture(tmp_path / "b", rng_seed=2, accuracy_shift={"loop": -0.10})
    assert compare.cli([str(base), str(worse)]) == 1
    _, rows, _, _ = compare.write_compare(base, worse, 0.05)
    acc = flag(rows, "loop", "test_accuracy")
    assert acc["flag"] == "worse" and acc["p"] < 1e-6 and "z-test on 30,000 vs 30,000 test images" in acc["note"]
    assert flag(rows, "cudnn", "test_accuracy")["flag"] == "unchanged"


@pytest.mark.parametrize("seeds,test", [(range(6), "Mann-Whitney U on 6 vs 6 seeds"),
                                        (range(3), "Welch's t-test on 3 vs 3 seeds")])
def test_per_seed_metrics_need_significance(tmp_path, seeds, test):
    a = make_compare_fixture(tmp_path / "a", rng_seed=1, seeds=seeds)
    worse = make_compare_fixture(tmp_path / "b", rng_seed=2, seeds=seeds, first_step_factor={"loop": 1.5})
    _, rows, _, _ = compare.write_compare(a, worse, 0.05)
    first = flag(rows, "loop", "first_step_s")
    assert first["flag"] == "slower" and first["p"] < 0.05 and test in first["note"]
    assert flag(rows, "cudnn", "first_step_s")["flag"] == "unchanged"
    assert compare.cli([str(a), str(worse)]) == 1


def test_one_seed_a_side_is_inconclusive_not_a_regression(tmp_path):
    a = make_compare_fixture(tmp_path / "a", rng_seed=1, seeds=(0,))
    b = make_compare_fixture(tmp_path / "b", rng_seed=2, seeds=(0,), first_step_factor={"loop": 1.5})
    _, rows, _, _ = compare.write_compare(a, b, 0.05)
    first = flag(rows, "loop", "first_step_s")
    assert first["flag"] == "inconclusive" and not first["regression"] and np.isnan(first["p"])
    assert "no test possible with 1 vs 1 seeds" in first["note"]
    assert compare.cli([str(a), str(b)]) == 0


def test_header_names_only_the_tests_used_and_html_is_written(tmp_path):
    a = make_compare_fixture(tmp_path / "a", rng_seed=1, seeds=(0,))
    b = make_compare_fixture(tmp_path / "b", rng_seed=2, seeds=(0,))
    path, rows, _, _ = compare.write_compare(a, b, 0.05)
    # One seed a side: the run is the unit, so nothing but accuracy (z-test, no predictions files) is testable.
    assert dict(rows["test"].value_counts()) == {"no test": 12, "two-proportion z-test": 2}
    header = path.read_text().split("## Differences")[0]
    for used in ("no test (12 rows)", "two-proportion z-test (2 rows)"):
        assert used in header
    assert "Welch's t-test (" not in header
    html = path.with_suffix(".html").read_text()
    assert html.startswith("<!doctype html>") and "<table>" in html and "two-proportion z-test (2 rows)" in html


def test_judge_needs_both_threshold_and_significance():
    rng = np.random.default_rng(0)
    a, b = rng.normal(10, 5, 6), rng.normal(11, 5, 6)  # 10 % apart on average but buried in noise
    result, p, note, test = compare.judge("first_step_s", 10.0, 11.0, a, b, 0.05)
    assert result == "unchanged" and p > 0.05 and "not significant" in note and test == "Mann-Whitney U"
    assert compare.judge("peak_tensor_bytes", 100, 120, [100] * 4, [120] * 4, 0.05)[0] == "worse"
    assert compare.judge("test_accuracy", 0.9, 0.99, [0.9], [0.99], 0.05)[0] == "better"
    assert compare.judge("peak_tensor_bytes", 100, 100, [100] * 2, [100] * 2, 0.05)[0] == "unchanged"


def test_config_differences_are_stated(base, tmp_path, capsys):
    other = make_compare_fixture(tmp_path / "b", rng_seed=2, lr=0.002)
    assert compare.cli([str(base), str(other)]) == 0
    assert "config.lr: 0.001 -> 0.002" in capsys.readouterr().out
    text = (other / "compare.md").read_text()
    assert "**The configs differ**" in text and "| config.lr | 0.001 | 0.002 |" in text
    assert text.index("config.lr") < text.index("## Metrics")


def test_backend_failing_in_b_is_a_regression(base, tmp_path, capsys):
    broken = make_compare_fixture(tmp_path / "b", rng_seed=2, statuses={"loop": ("failed", "RuntimeError: boom")})
    assert compare.cli([str(base), str(broken)]) == 1
    assert "loop: ok in A, failed in B (RuntimeError: boom) REGRESSION" in capsys.readouterr().out
    skipped = make_compare_fixture(tmp_path / "c", rng_seed=2, statuses={"loop": ("skipped", "no CUDA")})
    assert compare.cli([str(base), str(skipped)]) == 0
    assert "| loop | ok | skipped | no CUDA | no |" in (skipped / "compare.md").read_text()


def test_sweep_points_are_matched(tmp_path):
    a = make_report_fixture(tmp_path / "a")
    b = make_report_fixture(tmp_path / "b")
    _, rows, status, diffs = compare.write_compare(a, b, 0.05)
    assert set(rows["batch_size"]) == {32, 64} and (rows["flag"] == "unchanged").all()
    assert status.empty and diffs == []


@pytest.mark.parametrize("args, message", [
    (["{missing}", "{b}"], "no such directory"),
    (["{empty}", "{b}"], "not a results directory"),
    (["{b}", "{b}", "--threshold", "five"], "bad --threshold"),
    (["{b}", "{b}", "--threshold=-1%"], "bad --threshold"),
    (["{b}"], "required"),
])
def test_bad_input_exits_2_with_one_line(base, tmp_path, capsys, args, message):
    (tmp_path / "empty").mkdir()
    names = {"missing": tmp_path / "missing", "empty": tmp_path / "empty", "b": base}
    assert compare.cli([a.format(**names) for a in args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_threshold_parsing():
    assert compare.parse_threshold("5%") == pytest.approx(0.05)
    assert compare.parse_threshold("2.5") == pytest.approx(0.025)
    with pytest.raises(ValueError):
        compare.parse_threshold("150%")


def _write_predictions(directory, backend_correct: dict):
    """Per-image correctness files for every ok run of the fixture directory, per backend."""
    import pandas as pd

    from bench import predictions
    runs = pd.read_csv(Path(directory) / "runs.csv")
    for _, run in runs[runs["status"] == "ok"].iterrows():
        if run["backend"] in backend_correct:
            predictions.save_correctness(directory, str(run["run_id"]), backend_correct[run["backend"]])


def test_accuracy_is_paired_by_mcnemar_when_both_sides_saved_predictions(tmp_path):
    a = make_compare_fixture(tmp_path / "a", rng_seed=1)
    worse = make_compare_fixture(tmp_path / "b", rng_seed=2, accuracy_shift={"loop": -0.10})
    same = make_compare_fixture(tmp_path / "c", rng_seed=3)
    rng = np.random.default_rng(0)
    right = rng.random(10_000) < 0.95
    fewer = right & (rng.random(10_000) < 0.85)  # B loses images A got right, never the other way round
    _write_predictions(a, {"loop": right, "cudnn": right})
    _write_predictions(worse, {"loop": fewer, "cudnn": right})
    _write_predictions(same, {"loop": right, "cudnn": right})

    path, rows, _, _ = compare.write_compare(a, worse, 0.05)
    acc = flag(rows, "loop", "test_accuracy")
    assert acc["test"] == compare.MCNEMAR and acc["flag"] == "worse" and acc["p"] < 1e-6
    assert "B only 0" in acc["note"] and "paired seed" in acc["note"]
    assert "McNemar exact (" in path.read_text().split("## Differences")[0]

    _, rows, _, _ = compare.write_compare(a, same, 0.05)
    acc = flag(rows, "loop", "test_accuracy")
    assert acc["test"] == compare.MCNEMAR and acc["flag"] == "unchanged" and acc["p"] == 1.0
    assert "0 discordant images" in acc["note"]


def test_time_rows_carry_a_bootstrap_interval_of_per_run_medians(base, tmp_path):
    slow = make_compare_fixture(tmp_path / "b", rng_seed=2, step_factor={"loop": 1.3})
    _, rows, _, _ = compare.write_compare(base, slow, 0.05)
    note = flag(rows, "loop", "step_ms_median")["note"]
    low, high = (float(x) for x in note.split("CI [")[1].split("]")[0].split(", "))
    assert 1.2 < low <= high < 1.4  # 3 seeds a side, each slowed 1.3x
    one = make_compare_fixture(tmp_path / "c", rng_seed=3, seeds=(0,))
    _, rows, _, _ = compare.write_compare(base, one, 0.05)
    assert "no bootstrap interval (fewer than 3 runs a side)" in flag(rows, "loop", "step_ms_median")["note"]


def test_results_from_another_machine_are_called_out(tmp_path):
    """Same config, other hardware: the B/A ratios measure the machines, and compare says so."""
    import json
    a = make_compare_fixture(tmp_path / "a", rng_seed=1)
    b = make_compare_fixture(tmp_path / "b", rng_seed=2)
    same = compare.write_compare(a, b, out=tmp_path / "same")[0].read_text()
    assert "Different machines" not in same
    env = json.loads((b / "env.json").read_text())
    other_machine = {"cpu_model": "Other CPU", "gpu_count": 1, "gpu_names": ["NVIDIA H200"]}
    (b / "env.json").write_text(json.dumps(env | other_machine))
    path, _, _, diffs = compare.write_compare(a, b, out=tmp_path / "other")
    assert compare.hardware_differences(diffs) == ["cpu_model", "gpu_count"]
    assert "**Different machines** (cpu_model, gpu_count differ)" in path.read_text()


def test_older_results_without_a_host_column_are_not_called_another_machine():
    diffs = [("runs.host", "—", "vm"), ("runs.device_name", "", "cpu"), ("config.lr", "0.001", "0.002")]
    assert compare.hardware_differences(diffs) == []
