"""Tests that match the data, for `compare` (the per-image correctness files are bench.predictions).

Accuracy: both runs score the same test images, so the comparison is paired. McNemar's exact
test looks only at the images where A and B disagree: under "no difference" an image that only
A gets right is as likely as one that only B gets right, so the count of A-only images among the
discordant ones is Binomial(n_discordant, 1/2); the p-value is the two-sided binomial test.
Seeds are pooled by adding their discordant counts (seed s of A is paired with seed s of B).

Time metrics: the run is the unit (one median per seed, since the steps of one run share its
warm caches and neighbours). bootstrap_ci resamples the per-run medians of each side and gives a
percentile interval for median(B) / median(A) (or the difference); Welch's t and Mann-Whitney U
give compare its p-values on per-run values, and the two-proportion z-test its fallback for accuracy.
"""
from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
from scipy import stats

from bench.predictions import as_bools as _bools

MCNEMAR = "McNemar exact (two-sided binomial on discordant images, pooled over seeds)"


def mcnemar(pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> dict:
    """Paired accuracy test over (correct_A, correct_B) per seed: {"a_only", "b_only", "p_value", "seeds", "test"}."""
    a_only = b_only = seeds = 0
    for correct_a, correct_b in pairs:
        a, b = _bools(correct_a, "mcnemar"), _bools(correct_b, "mcnemar")
        if a.shape != b.shape:
            raise ValueError(f"mcnemar: the two runs scored different image counts ({a.size} and {b.size})")
        a_only += int(np.count_nonzero(a & ~b))
        b_only += int(np.count_nonzero(b & ~a))
        seeds += 1
    discordant = a_only + b_only
    p = 1.0 if discordant == 0 else float(stats.binomtest(a_only, discordant, 0.5).pvalue)
    return {"a_only": a_only, "b_only": b_only, "p_value": p, "seeds": seeds, "test": MCNEMAR}


def bootstrap_ci(a: Iterable[float], b: Iterable[float], *, kind: str = "ratio", confidence: float = 0.95,
                 n_resamples: int = 9999, seed: int = 0, min_runs: int = 3) -> dict:
    """median(B) / median(A) (kind="ratio") or median(B) - median(A) ("difference") over per-run values,
    with a percentile bootstrap interval: {"estimate", "low", "high", "test"}. With fewer than `min_runs`
    runs on a side the interval is NaN (too few to resample) and the estimate is still given."""
    a, b = np.asarray(list(a), dtype=float), np.asarray(list(b), dtype=float)
    if kind not in ("ratio", "difference"):
        raise ValueError(f"bootstrap_ci: kind must be 'ratio' or 'difference', got {kind!r}")
    if a.size == 0 or b.size == 0:
        raise ValueError("bootstrap_ci: each side needs at least one run")

    def statistic(x, y, axis=-1):
        mx, my = np.median(x, axis=axis), np.median(y, axis=axis)
        return my / mx if kind == "ratio" else my - mx

    estimate = float(statistic(a, b))
    test = f"bootstrap {confidence:.0%} CI of the {kind} of per-run medians (percentile, {n_resamples} resamples)"
    if min(a.size, b.size) < min_runs:
        return {"estimate": estimate, "low": math.nan, "high": math.nan,
                "test": f"{kind} of per-run medians (fewer than {min_runs} runs a side: no interval)"}
    result = stats.bootstrap((a, b), statistic, n_resamples=n_resamples, vectorized=True, paired=False,
                             confidence_level=confidence, method="percentile", rng=np.random.default_rng(seed))
    interval = result.confidence_interval
    return {"estimate": estimate, "low": float(interval.low), "high": float(interval.high), "test": test}


def two_proportions(p_a: float, p_b: float, n_a: int, n_b: int) -> float:
    """Two-sided p-value of the two-proportion z-test: proportions p_a of n_a and p_b of n_b trials (pooled
    variance); 1.0 when neither side varies."""
    pooled = (p_a * n_a + p_b * n_b) / (n_a + n_b)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    return 1.0 if spread == 0 else float(2 * stats.norm.sf(abs(p_a - p_b) / spread))


def welch(a: Iterable[float], b: Iterable[float]) -> float:
    """Two-sided p-value of Welch's t-test (unequal variances) on per-run values."""
    return float(stats.ttest_ind(list(a), list(b), equal_var=False).pvalue)


def mann_whitney(a: Iterable[float], b: Iterable[float]) -> float:
    """Two-sided p-value of the Mann-Whitney U test on per-run values (exact for small samples)."""
    return float(stats.mannwhitneyu(list(a), list(b), alternative="two-sided").pvalue)
