"""bench.analysis.stats: McNemar on fixture prediction files, bootstrap intervals, the correctness file format."""
import math

import numpy as np
import pytest

from bench.analysis.stats import bootstrap_ci, mann_whitney, mcnemar, welch
from bench.predictions import load_correctness, predictions_path, save_correctness

IMAGES = 10_000


def correctness(accuracy, seed):
    return np.random.default_rng(seed).random(IMAGES) < accuracy


@pytest.fixture
def results(tmp_path):
    """Two results directories of three seeds: B fixes 60 of A's errors per seed and breaks none."""
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    for seed in range(3):
        a = correctness(0.97, seed)
        b = a.copy()
        b[np.flatnonzero(~a)[:60]] = True
        save_correctness(a_dir, f"cudnn-seed{seed}", a)
        save_correctness(b_dir, f"cudnn-seed{seed}", b)
    return a_dir, b_dir


def paired(a_dir, b_dir, seeds=range(3)):
    return [(load_correctness(a_dir, f"cudnn-seed{s}"), load_correctness(b_dir, f"cudnn-seed{s}")) for s in seeds]


def test_one_sided_disagreement_is_flagged(results):
    outcome = mcnemar(paired(*results))
    assert outcome == {**outcome, "a_only": 0, "b_only": 180, "seeds": 3}
    assert outcome["p_value"] < 1e-40 and "McNemar" in outcome["test"]


def test_identical_predictions_are_not(results):
    a_dir, _ = results
    outcome = mcnemar(paired(a_dir, a_dir))
    assert outcome["p_value"] == 1.0 and outcome["a_only"] == outcome["b_only"] == 0


def test_balanced_disagreement_is_not_flagged():
    a = correctness(0.9, 7)
    b = a.copy()
    flip_up, flip_down = np.flatnonzero(~a)[:200], np.flatnonzero(a)[:200]
    b[flip_up], b[flip_down] = True, False   # same accuracy, 400 images disagree
    outcome = mcnemar([(a, b)])
    assert outcome["a_only"] == outcome["b_only"] == 200 and outcome["p_value"] == 1.0


def test_small_one_sided_difference_matches_the_binomial():
    a = np.zeros(100, bool)
    b = a.copy()
    b[:5] = True                      # 5 discordant, all for B: two-sided p = 2 / 2**5
    assert mcnemar([(a, b)])["p_value"] == pytest.approx(2 / 32)


def test_the_file_format(tmp_path):
    correct = correctness(0.5, 1)
    path = save_correctness(tmp_path, "loop-h64-seed0", correct)
    assert path == tmp_path / "predictions" / "loop-h64-seed0.npy" and path.stat().st_size < 11_000
    assert np.array_equal(np.load(path), correct)
    assert load_correctness(tmp_path, "never-ran") is None
    assert not list(path.parent.glob(".*.tmp"))  # the atomic write left no temporary behind


@pytest.mark.parametrize("bad, message", [(np.ones(5, np.int64), "1-D array of bools"),
                                          (np.ones((2, 2), bool), "1-D array of bools")])
def test_bad_correctness_is_one_line(tmp_path, bad, message):
    with pytest.raises(ValueError, match=message):
        save_correctness(tmp_path, "x", bad)
    with pytest.raises(ValueError, match="run_id must be"):
        predictions_path(tmp_path, "../escape")
    with pytest.raises(ValueError, match="different image counts"):
        mcnemar([(np.ones(3, bool), np.ones(4, bool))])


def test_bootstrap_interval_of_a_clear_speedup():
    a = [10.1, 10.3, 9.9, 10.0, 10.2]   # per-seed median step ms
    b = [5.0, 5.2, 4.9, 5.1, 5.05]
    ratio = bootstrap_ci(a, b)
    assert ratio["estimate"] == pytest.approx(5.05 / 10.1)
    assert ratio["low"] <= ratio["estimate"] <= ratio["high"] < 1   # B is faster, and the interval says so
    diff = bootstrap_ci(a, b, kind="difference")
    assert diff["high"] < 0 and "difference" in diff["test"]
    assert welch(a, b) < 1e-3 and mann_whitney(a, b) < 0.05


def test_bootstrap_with_too_few_runs_gives_no_interval():
    few = bootstrap_ci([10.0, 11.0], [5.0, 6.0])
    assert few["estimate"] == pytest.approx(5.5 / 10.5) and math.isnan(few["low"]) and math.isnan(few["high"])
    overlapping = bootstrap_ci([10, 11, 12, 9], [10.5, 11.5, 9.5, 10])
    assert overlapping["low"] < 1 < overlapping["high"]
