"""The report's headline on fixture results: the fastest backend, ties within noise, numbers that look wrong."""
from __future__ import annotations

import pytest

from bench.analysis import headline, report, results
from tests.fixtures.results_factory import make_compare_fixture, make_report_fixture, run_row, write_env, write_run

pytestmark = pytest.mark.usefixtures("unrendered_plots")  # reads the text, not the pixels (tests/fixtures/plots.py)


def test_fastest_and_speedup_per_sweep_point(tmp_path):
    res = results.load(make_report_fixture(tmp_path))
    points = headline.points(res)
    assert [p.values for p in points] == [{"batch_size": 32}, {"batch_size": 64}]
    small, large = points
    # gru: 10 ms every step; cudnn's 12 pooled steps at batch 32 are 10..15 with median 12.5
    assert small.fastest == "gru" and small.fastest_ms == pytest.approx(10)
    assert small.speedup == pytest.approx(12.5 / 10)
    assert large.fastest == "gru" and large.speedup == pytest.approx(23 / 20)
    assert small.tied == [] and small.off == {}
    assert small.accuracy == pytest.approx({"cudnn": 0.98, "loop": 0.97, "gru": 0.99})
    assert small.accuracy_spread == pytest.approx(0.02)


def test_a_clear_winner_is_not_tied(tmp_path):
    res = results.load(make_compare_fixture(tmp_path, rng_seed=1))  # cudnn 10 ms, loop 20 ms, 3 % noise
    (point,) = headline.points(res)
    assert point.fastest == "cudnn" and point.tied == [] and point.speedup == pytest.approx(1.0)
    assert point.noisy == {}
    assert list(point.slower) == ["loop"] and point.slower["loop"] == pytest.approx(2.0, rel=0.05)
    assert "step time against it: loop 2.0" in report.point_sentence(point, report.metrics.by_name("step_ms_median"))


def test_two_backends_within_noise_are_reported_as_tied(tmp_path):
    # loop at half its 20 ms: both draw from the same 10 ms +-3 % distribution
    res = results.load(make_compare_fixture(tmp_path, rng_seed=2, step_factor={"loop": 0.5}))
    (point,) = headline.points(res)
    assert {point.fastest, *point.tied} == {"cudnn", "loop"}
    blocks = report.headline_blocks(res)
    sentence = blocks[1][1][0]
    other = "loop" if point.fastest == "cudnn" else "cudnn"
    assert f"**{point.fastest}** is fastest" in sentence and f"within noise of it: **{other}**" in sentence


def test_report_opens_with_the_headline_and_ends_with_the_settings(tmp_path):
    directory = make_compare_fixture(tmp_path, rng_seed=3)
    text = report.write_report(directory).read_text()
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings[0] == "## Headline" and headings[-1] == "## Configuration and environment"
    assert "**cudnn** is fastest" in text and "(it is the baseline)" in text


def noisy_fixture(directory, loop_accuracy=0.98, grad_rel_err=None):
    """cudnn, loop and gru; loop's steps alternate between 10 and 29 ms (p90/p10 = 2.9)."""
    write_env(directory, backends=("cudnn", "loop", "gru"))
    steps = {"cudnn": [20.0] * 10, "loop": [10.0, 29.0] * 5, "gru": [25.0] * 10}
    accuracy = {"cudnn": 0.98, "loop": loop_accuracy, "gru": 0.975}
    for backend, ms in steps.items():
        extra = {} if grad_rel_err is None else {"grad_rel_err": grad_rel_err[backend]}
        write_run(directory, run_row(backend, 0, test_accuracy=accuracy[backend], train_samples_per_s=1000,
                                     infer_samples_per_s=1000, peak_tensor_bytes=2**20, first_step_s=0.1,
                                     **extra), step_ms=ms)
    return directory


def test_noisy_steps_are_said_next_to_the_number(tmp_path):
    res = results.load(noisy_fixture(tmp_path))
    (point,) = headline.points(res)
    assert point.noisy == {"loop": pytest.approx(2.9)}
    assert point.fastest == "loop" and "cudnn" in point.tied   # 20 ms is within loop's own 10..29 jitter
    sentence = report.headline_blocks(res)[1][1][0]
    assert "**loop** is fastest, 19.50 ms a step (noisy: p90/p10 = 2.9)" in sentence
    table = report.rendered_metric_table(res.summary("step_ms_median"), report.metrics.by_name("step_ms_median"), [])
    loop_row = next(r for r in table[1] if r[0] == "loop")
    assert "(noisy: p90/p10 = 2.9)" in loop_row[3]


def test_accuracy_far_below_the_others_is_numerically_off(tmp_path):
    res = results.load(noisy_fixture(tmp_path, loop_accuracy=0.11))
    (point,) = headline.points(res)
    assert list(point.off) == ["loop"] and "below the median" in point.off["loop"]
    assert "**Numerically off:** loop" in report.headline_blocks(res)[1][1][0]


def test_on_part_of_the_training_set_an_accuracy_gap_is_not_called_numerics(tmp_path):
    directory = noisy_fixture(tmp_path, loop_accuracy=0.11)
    write_env(directory, backends=("cudnn", "loop", "gru"), train_limit=6000)  # still learning: gaps are expected
    (point,) = headline.points(results.load(directory))
    assert point.off == {}


def test_a_non_finite_failure_is_numerically_off(tmp_path):
    directory = noisy_fixture(tmp_path)
    write_run(directory, run_row("triton", 0, "failed", "NonFiniteLoss: training loss became nan at step 3"))
    write_run(directory, run_row("extra", 0, "failed", "RuntimeError: finance department says no"))
    (point,) = headline.points(results.load(directory))
    assert set(point.off) == {"triton"}


def test_gradient_error_far_above_the_baseline_when_the_column_exists(tmp_path, monkeypatch):
    import bench.schema
    assert "grad_rel_err" in bench.schema.RUN_COLUMNS  # once added here by the test; a second one is a damaged header
    directory = noisy_fixture(tmp_path, grad_rel_err={"cudnn": 1e-7, "loop": 2e-7, "gru": 1e-3})
    (point,) = headline.points(results.load(directory))
    assert list(point.off) == ["gru"] and "gradient error" in point.off["gru"]
