"""`python -m bench bench-gate`: fail CI when a backend became much slower relative to cudnn.

    make bench-ci        # the micro-benchmarks; test_ratio_to_cudnn records each backend's per-round ratios to cudnn
    make bench-gate      # this: the newest saved run against results/ci/baseline.json; exit 1 on a regression
    make bench-baseline  # bench-ci, then `bench bench-gate --update`: that run becomes the baseline (commit the file)

Absolute times on a shared CI machine move with its neighbours; a ratio to cudnn measured within one session,
in alternation (tests/benchmarks/test_backends.py: test_ratio_to_cudnn), mostly does not. A backend fails the
gate only when BOTH

  * its median ratio grew past --threshold (default 1.5x) from the baseline's, and
  * the samples agree: a Mann-Whitney U test of this run's per-round ratios against the baseline's gives
    p < --alpha (default 0.01; with 30 rounds a side a real 1.5x shift gives p far below it).

A ratio that shrank the same way is reported as faster (a hint to update the baseline), never a failure. The
baseline holds one section per machine kind, "cpu" or "cuda: <GPU name>", since a ratio measured on a CPU
says nothing about a GPU; --update replaces only the section of the run's machine kind.

Exit status: 0 passed, 1 a regression (each named with its ratio before and after), 2 bad input (one line).
"""
from __future__ import annotations

import json
import math
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.analysis.render import text_table
from bench.analysis.stats import mann_whitney
from bench.atomic import write_json
from bench.cliargs import OneLineParser, parse
from bench.microbench import MicrobenchError, newest_run

THRESHOLD, ALPHA = 1.5, 0.01
DEFAULT_STORAGE, DEFAULT_BASELINE = "results/ci", "results/ci/baseline.json"
UPDATE = "make bench-baseline"
RATIO_PASS = "ratio-to-cudnn"   # the benchmark group suffix test_ratio_to_cudnn writes


class GateError(Exception):
    """Bad input: one line, exit 2."""


@dataclass(frozen=True)
class Ratio:
    median: float
    samples: tuple[float, ...]


@dataclass(frozen=True)
class Verdict:
    group: str
    backend: str
    before: float     # the baseline's median ratio (NaN: no baseline for it)
    after: float      # this run's (NaN: not measured in this run)
    growth: float     # after / before
    p: float          # two-sided Mann-Whitney U p of the per-round ratios (NaN: no test)
    verdict: str      # regression | faster | unchanged | new | not measured


# ---------------------------------------------------------------- reading a saved run

def read_run(path: str | Path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise GateError(f"{path}: not a readable pytest-benchmark run ({error})") from None
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise GateError(f"{path}: not a pytest-benchmark run (no benchmarks list)")
    return data


def session_ratios(data: dict, source: str = "the run") -> dict[str, dict[str, Ratio]]:
    """{group: {backend: Ratio}} of the run's test_ratio_to_cudnn benchmarks."""
    out: dict[str, dict[str, Ratio]] = {}
    for bench in data["benchmarks"]:
        info = bench.get("extra_info") or {}
        if not str(bench.get("group", "")).endswith(RATIO_PASS) or "ratio_samples" not in info:
            continue
        samples = tuple(float(x) for x in info["ratio_samples"] if math.isfinite(float(x)) and float(x) > 0)
        if samples:
            out.setdefault(bench["group"], {})[info["backend"]] = Ratio(statistics.median(samples), samples)
    if not out:
        raise GateError(f"{source} has no {RATIO_PASS} benchmarks with ratio samples (test_ratio_to_cudnn); "
                        "run `make bench-ci`")
    return out


def machine_kind(data: dict) -> str:
    """"cpu", or "cuda: <GPU names>" for a run whose ratio benchmarks ran on a GPU."""
    devices = {str((b.get("extra_info") or {}).get("device", "cpu")).split(":")[0] for b in data["benchmarks"]
               if str(b.get("group", "")).endswith(RATIO_PASS)}
    if devices == {"cuda"}:
        return f"cuda: {(data.get('machine_info') or {}).get('gpu') or 'unknown GPU'}"
    if devices <= {"cpu"}:
        return "cpu"
    raise GateError(f"the run's ratio benchmarks ran on several kinds of device ({', '.join(sorted(devices))})")


# ---------------------------------------------------------------- the baseline

def load_baseline(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        return {"machines": {}}
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise GateError(f"{path}: unreadable baseline ({error}); remake it with `{UPDATE}`") from None
    if not isinstance(data, dict) or not isinstance(data.get("machines"), dict):
        raise GateError(f"{path}: not a gate baseline (no machines section); remake it with `{UPDATE}`")
    return data


def baseline_ratios(section: dict) -> dict[str, dict[str, Ratio]]:
    return {group: {backend: Ratio(float(r["ratio"]), tuple(float(x) for x in r["samples"]))
                    for backend, r in backends.items()}
            for group, backends in section.get("benchmarks", {}).items()}


def updated_baseline(baseline: dict, data: dict, source: str) -> dict:
    """The baseline with this run's machine kind replaced by the run's ratios (other kinds kept)."""
    ratios, kind = session_ratios(data, source), machine_kind(data)
    commit = data.get("commit_info") or {}
    machine = data.get("machine_info") or {}
    section = {"source": source, "recorded": data.get("datetime"), "commit": commit.get("id"),
               "dirty": commit.get("dirty"), "cpu_model": machine.get("cpu_model"), "gpu": machine.get("gpu"),
               "torch": machine.get("torch_version"),
               "benchmarks": {group: {backend: {"ratio": round(r.median, 4),
                                                "samples": [round(x, 4) for x in r.samples]}
                                      for backend, r in sorted(backends.items())}
                              for group, backends in sorted(ratios.items())}}
    note = (f"Each backend's training-step time as a ratio to cudnn's, measured in alternation within one "
            f"session (tests/benchmarks: test_ratio_to_cudnn), per machine kind. `make bench-gate` fails when a "
            f"ratio grows past {THRESHOLD:g}x and the samples agree. Update with `{UPDATE}` and commit this file.")
    return {"note": note, "machines": {**baseline.get("machines", {}), kind: section}}


# ---------------------------------------------------------------- judging

def judge(group: str, backend: str, before: Ratio | None, after: Ratio | None, threshold: float = THRESHOLD,
          alpha: float = ALPHA) -> Verdict:
    if before is None or after is None:
        which = "new" if before is None else "not measured"
        return Verdict(group, backend, before.median if before else math.nan, after.median if after else math.nan,
                       math.nan, math.nan, which)
    growth = after.median / before.median
    p = mann_whitney(before.samples, after.samples)
    verdict = "unchanged"
    if p < alpha and growth > threshold:
        verdict = "regression"
    elif p < alpha and growth < 1 / threshold:
        verdict = "faster"
    return Verdict(group, backend, before.median, after.median, growth, p, verdict)


def compare(baseline: dict[str, dict[str, Ratio]], run: dict[str, dict[str, Ratio]], threshold: float = THRESHOLD,
            alpha: float = ALPHA) -> list[Verdict]:
    verdicts = []
    for group in sorted(set(baseline) | set(run)):
        before, after = baseline.get(group, {}), run.get(group, {})
        for backend in sorted(set(before) | set(after)):
            verdicts.append(judge(group, backend, before.get(backend), after.get(backend), threshold, alpha))
    return verdicts


def _fmt(value: float, spec: str) -> str:
    return "—" if math.isnan(value) else format(value, spec)


def report(verdicts: list[Verdict], threshold: float, alpha: float) -> str:
    rows = [[v.group, v.backend, _fmt(v.before, ".3f"), _fmt(v.after, ".3f"), _fmt(v.growth, ".2f"),
             _fmt(v.p, ".2g"), v.verdict] for v in verdicts]
    header = ["group", "backend", "ratio to cudnn: baseline", "this run", "growth (x)", "p", "verdict"]
    lines = [text_table(header, rows)]
    for v in verdicts:
        if v.verdict == "regression":
            lines.append(f"REGRESSION: {v.backend} ({v.group}): ratio to cudnn {v.before:.3f} -> {v.after:.3f} "
                         f"({v.growth:.2f}x, threshold {threshold:g}x; Mann-Whitney p = {v.p:.2g} < {alpha:g})")
        elif v.verdict == "faster":
            lines.append(f"faster: {v.backend} ({v.group}): {v.before:.3f} -> {v.after:.3f}; if that is meant, "
                         f"update the baseline with `{UPDATE}`")
    return "\n".join(lines)


# ---------------------------------------------------------------- entry point

def _run_file(storage: str, run: str | None) -> tuple[Path, str]:
    if run:
        return Path(run), Path(run).name
    try:
        newest = newest_run(storage)
    except MicrobenchError as error:
        raise GateError(str(error)) from None
    return newest.path, newest.label


def cli(argv: list[str]) -> int:
    parser = OneLineParser(prog="bench bench-gate", description="Fail when a backend's step time grew against "
                           "cudnn's (measured in the same session) past a threshold, and the samples agree.")
    parser.add_argument("--storage", default=DEFAULT_STORAGE,
                        help=f"pytest-benchmark storage (default {DEFAULT_STORAGE})")
    parser.add_argument("--run", default=None, help="a saved run's JSON (default: the newest under --storage)")
    parser.add_argument("--baseline", default=DEFAULT_BASELINE, help=f"baseline file (default {DEFAULT_BASELINE})")
    parser.add_argument("--threshold", type=float, default=THRESHOLD, help=f"growth that fails (default {THRESHOLD:g})")
    parser.add_argument("--alpha", type=float, default=ALPHA,
                        help=f"the test's p must be below this (default {ALPHA:g})")
    parser.add_argument("--update", action="store_true", help="write the run's ratios as the baseline instead")
    args = parse(parser, argv)
    if isinstance(args, int):
        return args
    try:
        if not args.threshold > 1 or not 0 < args.alpha < 1:
            raise GateError(f"expected --threshold above 1 and --alpha between 0 and 1, got {args.threshold:g} "
                            f"and {args.alpha:g}")
        path, label = _run_file(args.storage, args.run)
        data, baseline = read_run(path), load_baseline(args.baseline)
        if args.update:
            write_json(args.baseline, updated_baseline(baseline, data, label))
            print(f"wrote the {machine_kind(data)} ratios of {label} to {args.baseline}; commit it")
            return 0
        kind, ratios = machine_kind(data), session_ratios(data, label)
        if kind not in baseline["machines"]:
            known = ", ".join(baseline["machines"]) or "none"
            raise GateError(f"{args.baseline} has no baseline for {kind!r} (it has: {known}); make one with `{UPDATE}`")
    except GateError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    section = baseline["machines"][kind]
    verdicts = compare(baseline_ratios(section), ratios, args.threshold, args.alpha)
    print(f"run: {label}; baseline: {args.baseline} [{kind}] from {section.get('source', '?')} "
          f"(commit {str(section.get('commit') or '?')[:10]})")
    print(report(verdicts, args.threshold, args.alpha))
    failed = [v for v in verdicts if v.verdict == "regression"]
    print(f"bench-gate: {'FAILED, ' + str(len(failed)) + ' regression(s)' if failed else 'passed'} "
          f"(threshold {args.threshold:g}x, alpha {args.alpha:g})")
    return 1 if failed else 0
