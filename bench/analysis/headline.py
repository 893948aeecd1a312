"""The answer first: per sweep point, which backend is fastest, by how much, what is tied with it, and
whether any backend's numbers look wrong. Read by report.py (which renders it); no torch, no plotting.

Rules (stated in the report under the headline, so a reader can check them):
- fastest: the lowest median step time, every timed step of all seeds pooled (steps.csv);
- speed-up: the baseline's median step time / the fastest's;
- within noise of the fastest: a backend whose median step time is no more than the fastest's 90th
  percentile, i.e. the difference is smaller than the fastest backend's own step-to-step spread.
  (A significance test on thousands of correlated steps from one process would call every 1 %
  difference real; this rule asks whether the difference stands out from the jitter instead.);
- slower: every other backend's median step time / the fastest's, fastest first;
- noisy: a backend whose p90/p10 of step time is above NOISY_SPREAD;
- accuracy: mean over seeds per backend; the spread is max - min, set against the 95 % binomial
  interval of one run's accuracy on the test images (all of MNIST's test set);
- numerically off: a run failed with a non-finite loss; or the mean accuracy is more than
  OFF_ACCURACY below the median backend's at that point; or, where runs.csv has a `grad_rel_err`
  column, an error more than OFF_ERROR_FACTOR times the baseline's.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from bench.analysis.results import Results, at_point
from bench.constants import BASELINE, TEST_IMAGES

NOISY_SPREAD = 2.0       # p90 / p10 of step time above this: the measurement is noisy
OFF_ACCURACY = 0.05      # accuracy this far (a fraction) below the median backend's is flagged
OFF_ERROR_FACTOR = 100   # grad_rel_err this many times the baseline's is flagged
NON_FINITE = re.compile(r"training loss became|non-finite|\bnan\b|\binf\b", re.IGNORECASE)


@dataclass
class Point:
    """The headline of one sweep point (values: axis -> value; empty without a sweep)."""
    values: dict
    fastest: str
    fastest_ms: float
    baseline: str
    speedup: float                                     # baseline median / fastest median; NaN without a baseline
    tied: list[str] = field(default_factory=list)      # within noise of the fastest
    noisy: dict[str, float] = field(default_factory=dict)     # backend -> p90/p10 above NOISY_SPREAD
    accuracy: dict[str, float] = field(default_factory=dict)  # backend -> mean test accuracy
    off: dict[str, str] = field(default_factory=dict)         # backend -> why its numbers look wrong
    slower: dict[str, float] = field(default_factory=dict)    # every other backend -> its median / the fastest's

    @property
    def accuracy_spread(self) -> float:
        values = list(self.accuracy.values())
        return max(values) - min(values) if values else math.nan

    @property
    def accuracy_interval(self) -> float:
        """Half-width of the 95 % binomial interval of one run's accuracy, at the mean accuracy."""
        if not self.accuracy:
            return math.nan
        p = float(np.mean(list(self.accuracy.values())))
        return 1.96 * math.sqrt(p * (1 - p) / TEST_IMAGES)


def spread(p10: float, p90: float) -> float:
    return p90 / p10 if p10 and p10 > 0 else math.inf


def points(res: Results, baseline: str = BASELINE) -> list[Point]:
    """One Point per sweep point with ok step times, in sweep order."""
    axes = res.axes
    steps = res.summary("step_ms_median", axes, baseline)
    if steps.empty:
        return []
    accuracy = res.summary("test_accuracy", axes, baseline)
    out = []
    keys = steps[axes].drop_duplicates().sort_values(axes).to_dict("records") if axes else [{}]
    for values in keys:
        here = at_point(steps, values).dropna(subset=["value"])
        if here.empty:
            continue
        best = here.iloc[int(here["value"].to_numpy().argmin())]  # the first of equal minima, as idxmin
        base = here[here["backend"] == baseline]
        point = Point(values, str(best["backend"]), float(best["value"]), baseline,
                      float(base["value"].iloc[0] / best["value"]) if len(base) else math.nan)
        point.tied = [str(r["backend"]) for _, r in here.iterrows()
                      if r["backend"] != best["backend"] and r["value"] <= best["p90"]]
        point.slower = {str(r["backend"]): float(r["value"] / best["value"])
                        for _, r in here.sort_values("value").iterrows() if r["backend"] != best["backend"]}
        point.noisy = {str(r["backend"]): spread(r["p10"], r["p90"]) for _, r in here.iterrows()
                       if spread(r["p10"], r["p90"]) > NOISY_SPREAD}
        point.accuracy = {str(r["backend"]): float(r["mean"]) for _, r in at_point(accuracy, values).iterrows()
                          if not math.isnan(r["mean"])}
        point.off = numerically_off(res, values, point.accuracy, baseline)
        out.append(point)
    return out


def numerically_off(res: Results, values: dict, accuracy: dict[str, float], baseline: str) -> dict[str, str]:
    off: dict[str, str] = {}
    failed = at_point(res.runs[res.runs["status"] == "failed"], values)
    for _, row in failed.iterrows():
        if NON_FINITE.search(str(row["error"])):
            off.setdefault(str(row["backend"]), f"failed: {row['error']}")
    # With two backends, which one is off cannot be told; on part of the training set (train_limit) accuracy is
    # still climbing and differs by model (gru) and seed, so a gap there says nothing about the numerics.
    partial = bool(res.env.get("config", {}).get("train_limit"))
    if len(accuracy) >= 3 and not partial:
        middle = float(np.median(list(accuracy.values())))
        for backend, value in accuracy.items():
            if value < middle - OFF_ACCURACY:
                off.setdefault(backend, f"accuracy {100 * value:.1f} %, {100 * (middle - value):.1f} points "
                                        f"below the median backend's {100 * middle:.1f} %")
    if "grad_rel_err" in res.runs.columns:
        ok = at_point(res.ok, values)
        errors = ok.groupby("backend")["grad_rel_err"].max().dropna()
        if baseline in errors and errors[baseline] > 0:
            for name, value in errors.items():
                if name != baseline and value > OFF_ERROR_FACTOR * errors[baseline]:
                    off.setdefault(str(name), f"gradient error {value:.2g}, over {OFF_ERROR_FACTOR}x "
                                                 f"{baseline}'s {errors[baseline]:.2g}")
    return off
