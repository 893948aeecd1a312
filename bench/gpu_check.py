"""`bench gpu-check`: on a CUDA machine, parity of the compiled kernels, what really ran, then timings.

    python -m bench gpu-check [--out DIR] [--backends a,b] [--deadline SECONDS] [--plugin FILE.py|MODULE ...]
    (needs only torch, triton, pandas and numpy: a lent GPU machine has those)

Backends: every registered backend of the LSTM family (impls.registry, plugins too; parity is against torch.nn.LSTM),
those that torch.compile (Backend.compiles) after the others; one that fails becomes a FAIL row (parity)
or a row of NaN (timing).

1. Parity: each backend against torch.nn.LSTM on CUDA (impls.parity.compare_with_torch) on a few shapes,
   float32 strictly, float16 and bfloat16 looser. Every error is compared to its bound and anything not
   finite fails: a NaN can never pass. Shapes include H=100 and H=128, where `triton` streams W_hh.
2. What ran: one forward+backward of each backend under torch.profiler (bench.profiling, the profiler and
   kernel-name classifier `bench run` uses): the device kernels it launched (`kernels`) and a verdict (`ran`).
   For the baseline it says whether cuDNN's persistent kernel, another cuDNN path, or a non-cuDNN
   fallback (as bfloat16 can be on some versions) really ran.
3. Timing: forward (no_grad) and forward+backward, each measured two ways: triton.testing.do_bench
   (median, p20, p80; it flushes the L2 between calls, which hides host launch overhead) and N
   back-to-back calls between two CUDA events (`events_ms`, the figure a training loop sees).

TF32 is switched off for the whole run: cuDNN's RNN would otherwise use it for float32 while our
cuBLAS calls would not, which makes neither parity nor timing a like-for-like comparison.
Tables (CSV and Markdown, replaced whole after every row) go under ./results/gpu-check/ of the current
directory, or --out. Exit codes: 0 all parity checks that ran passed, 1 some failed (timings still
written), 2 bad input, no CUDA or no Triton.
Legend: B batch, T time steps, D input features, H hidden size, L layers.
"""
from __future__ import annotations

import math
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import torch

import impls
from bench import envinfo, plugin_flags, profiling
from bench.analysis import render
from bench.atomic import atomic_write_text
from bench.cliargs import OneLineParser, UsageError, parse
from bench.constants import BASELINE
from bench.errors import one_line
from impls import plugins
from impls.checks import TOLERANCES

OUT_DIR = Path("results") / "gpu-check"  # relative: under the directory the command runs in
MAX_COMPILED_STEPS = 28  # torch.compile unrolls the time loop: compiling backends run short sequences only
# (B, T, D, H, L, batch_first, with_state): odd sizes exercise the kernel masks; H 100 and 128 take
# the persistent kernel's streaming path.
PARITY_SHAPES = [
    (5, 7, 7, 11, 3, True, True),
    (1, 9, 7, 64, 2, False, False),
    (50, 28, 28, 64, 2, True, False),
    (33, 9, 5, 100, 1, True, True),
    (256, 28, 28, 128, 2, False, True),
]
PARITY_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# (label, B, T, D, H, L)
TIMING_SHAPES = [
    ("mnist B50 H64", 50, 28, 28, 64, 2),
    ("B256 H128", 256, 28, 28, 128, 2),
    ("pixel B128 T784 H128", 128, 784, 1, 128, 1),
]
TIMING_DTYPES = (torch.float32, torch.bfloat16)
QUANTILES = [0.5, 0.2, 0.8]
NOT_RUN = "not run: --deadline reached"
EVENTS_TARGET_MS = 300.0  # back-to-back calls per measurement: about this long, 3 to 50 calls
VS, EVENTS_VS = f"vs_{BASELINE}", f"events_vs_{BASELINE}"


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def backends() -> list[str]:
    """Every registered backend that parity against torch.nn.LSTM applies to, in registry order."""
    return [name for name in impls.names() if impls.spec(name).family == "lstm"]


def groups(names: list[str]) -> list[list[str]]:
    """The backends that do not compile first (their parity and timings are the figures that matter most),
    then those whose torch.compile can take minutes per shape: a deadline cuts those, not cudnn vs triton."""
    compiles = [n for n in names if impls.spec(n).compiles]
    return [group for group in ([n for n in names if n not in compiles], compiles) if group]


def skip_reason(name: str, steps: int) -> str | None:
    if impls.spec(name).compiles and steps > MAX_COMPILED_STEPS:
        return f"torch.compile of {steps} unrolled steps takes too long for gpu-check"
    return None


def parity_ok(errors: dict[str, float], tolerance: float) -> bool:
    """Every error within its bound; NaN, inf and an empty comparison all fail."""
    return bool(errors) and all(math.isfinite(e) and e <= tolerance for e in errors.values())


def tolerance(dtype: torch.dtype) -> float:
    """The CUDA parity bound `bench check` uses too (impls.checks): one table for both commands."""
    return TOLERANCES["cuda", dtype]


def never() -> bool:
    return False


# ------------------------------------------------------------------------------------------ parity

def parity_row(name: str, shape: tuple, dtype: torch.dtype, device: str, expired) -> dict:
    """One backend against torch.nn.LSTM at one shape and dtype. Once `expired()`, the row is recorded as
    not run (ok None: neither passed nor failed); an exception becomes the row's worst error."""
    from impls.parity import compare_with_torch

    batch, steps, inputs, hidden, layers, batch_first, with_state = shape
    label = (f"B{batch} T{steps} D{inputs} H{hidden} L{layers}"
             f"{' bf' if batch_first else ''}{' state' if with_state else ''}")
    try:
        if expired():
            errors = {NOT_RUN: float("nan")}
        else:
            errors = compare_with_torch(name, batch=batch, steps=steps, input_size=inputs, hidden=hidden,
                                        layers=layers, batch_first=batch_first, with_state=with_state, dtype=dtype,
                                        device=device)
    except Exception as error:  # one broken combination must not hide the others' results
        errors = {f"error: {one_line(error, 160)}": float("nan")}
    ok = None if NOT_RUN in errors else parity_ok(errors, tolerance(dtype))
    # The worst error, with NaN ranked worst of all so the row names it.
    worst = max(errors, key=lambda k: errors[k] if math.isfinite(errors[k]) else math.inf) \
        if errors else "nothing compared"
    return {"backend": name, "dtype": dtype_name(dtype), "shape": label, "max_rel_error": errors.get(worst, math.nan),
            "worst": worst, "tolerance": tolerance(dtype), "ok": ok}


def run_parity(names: list[str], device: str = "cuda", expired=never, saved=lambda rows: None) -> list[dict]:
    """One row per (shape, dtype, backend); `saved(rows)` after each, so a killed run keeps what it measured."""
    rows = []
    for shape in PARITY_SHAPES:
        for dtype in PARITY_DTYPES:
            for name in names:
                if skip_reason(name, shape[1]):
                    continue
                row = parity_row(name, shape, dtype, device, expired)
                rows.append(row)
                verdict = {True: "PASS", False: "FAIL", None: "----"}[row["ok"]]
                print(f"{verdict}  {name:<15} {row['dtype']:<9} {row['shape']:<32} max rel err "
                      f"{row['max_rel_error']:.2e} ({row['worst']}) tol {row['tolerance']:.0e}", flush=True)
                saved(rows)
    return rows


# ------------------------------------------------------------------------------------------ timing

def _time_events(fn) -> float:
    """ms per call of N back-to-back calls between two CUDA events (host launch overhead included)."""
    fn()
    torch.cuda.synchronize()
    probe = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    calls = max(3, min(50, int(EVENTS_TARGET_MS / max(1e-3, (time.perf_counter() - probe) * 1e3))))
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(calls):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / calls


def time_backend(name: str, batch: int, steps: int, inputs: int, hidden: int, layers: int,
                 dtype: torch.dtype, device: str = "cuda") -> dict[str, dict]:
    """{"forward": {...}, "forward+backward": {...}}, each with median/p20/p80 (do_bench), events_ms,
    and for forward+backward the profiler's kernel count, verdict and top kernels (bench.profiling)."""
    import triton.testing

    torch.manual_seed(0)
    model = impls.build(name, inputs, hidden, layers, batch_first=True).to(device=device, dtype=dtype)
    x = torch.randn(batch, steps, inputs, device=device, dtype=dtype)
    grad_out = torch.randn(batch, steps, hidden, device=device, dtype=dtype)
    params = list(model.parameters())

    def forward():
        with torch.no_grad():
            model(x)

    def forward_backward():
        for p in params:
            p.grad = None
        out, _ = model(x)
        torch.autograd.backward(out, grad_out)

    forward_backward()  # compile / autotune / cuDNN plan outside every measurement
    ran = profiling.profile_steps(forward_backward, n_steps=1, device=device, warmup=0)
    result = {}
    for label, fn in (("forward", forward), ("forward+backward", forward_backward)):
        median, p20, p80 = triton.testing.do_bench(fn, quantiles=QUANTILES)
        result[label] = {"median_ms": median, "p20_ms": p20, "p80_ms": p80, "events_ms": _time_events(fn)}
    result["forward+backward"].update(kernels=ran["kernels_per_step"], ran=ran["rnn_engine"],
                                      top_kernels=ran["top_kernels"])
    return result


def timing_rows(name: str, shape: tuple, dtype: torch.dtype, expired) -> list[dict]:
    """The forward and forward+backward records of one backend at one shape and dtype; a skip, a failure
    or the deadline becomes a pair of NaN rows whose `ran` says why."""
    label, batch, steps, inputs, hidden, layers = shape
    reason = skip_reason(name, steps)
    reason = f"skipped: {reason}" if reason else NOT_RUN if expired() else None
    try:
        if reason is None:
            timings = time_backend(name, batch, steps, inputs, hidden, layers, dtype)
    except Exception as error:  # keep the table: a row of NaNs says which one broke, and why
        reason = one_line(error, 160)
    if reason is not None:
        print(f"  {label:<20} {dtype_name(dtype):<9} {name:<15} {reason}", file=sys.stderr)
        nan = dict.fromkeys(("median_ms", "p20_ms", "p80_ms", "events_ms"), math.nan)
        timings = {"forward": dict(nan), "forward+backward": dict(nan, ran=reason)}
    return [{"shape": label, "dtype": dtype_name(dtype), "pass": pass_, "backend": name, **figures}
            for pass_, figures in timings.items()]


def run_timing(names: list[str], expired=never, saved=lambda records: None) -> list[dict]:
    """Timing records of every shape, dtype and backend; `saved(records)` after each backend's pair."""
    records = []
    for shape in TIMING_SHAPES:
        for dtype in TIMING_DTYPES:
            for name in names:
                for row in timing_rows(name, shape, dtype, expired):
                    records.append(row)
                    print(f"  {row['shape']:<20} {row['dtype']:<9} {row['pass']:<17} {name:<15} "
                          f"{row['median_ms']:9.3f} ms do_bench {row['events_ms']:9.3f} ms events"
                          f"  {row.get('ran', '')}", flush=True)
                saved(records)
    return records


# ------------------------------------------------------------------------------------------ tables

COLUMNS = ["shape", "dtype", "pass", "backend", "median_ms", "p20_ms", "p80_ms", "events_ms", "kernels", "ran",
           "top_kernels"]


def build_table(records: list[dict]) -> pd.DataFrame:
    """records: {shape, dtype, pass, backend, median_ms, p20_ms, p80_ms, [events_ms, kernels, ran, top_kernels]}
    -> table with vs_<baseline> (median / the baseline's median of the same shape, dtype and pass; >1 means
    slower than it) and events_vs_<baseline> (the same for events_ms)."""
    table = pd.DataFrame.from_records(records)
    for column in COLUMNS:
        if column not in table:
            table[column] = float("nan") if column.endswith(("_ms", "kernels")) else ""
    table = table[COLUMNS]
    keys = ["shape", "dtype", "pass"]
    base = table[table["backend"] == BASELINE].set_index(keys)[["median_ms", "events_ms"]]
    table = table.join(base.rename(columns=lambda c: "base_" + c), on=keys)
    table[VS] = table["median_ms"] / table["base_median_ms"]
    table[EVENTS_VS] = table["events_ms"] / table["base_events_ms"]
    table = table.drop(columns=["base_median_ms", "base_events_ms"])
    return table[COLUMNS[:8] + [VS, EVENTS_VS] + COLUMNS[8:]].reset_index(drop=True)


def cells(table: pd.DataFrame) -> list[list[str]]:
    """Every value as text: numbers to four significant digits, NaN as an empty cell."""
    def cell(value) -> str:
        if isinstance(value, float):
            return "" if math.isnan(value) else f"{value:.4g}"
        return "" if value is None else str(value)
    return [[cell(v) for v in row] for row in table.itertuples(index=False)]


def environment() -> dict[str, str]:
    """What every table records about the machine (bench.envinfo), as text columns."""
    env = envinfo.collect()
    return {"torch": env["torch"], "triton": str(env["triton"]), "cuda": str(env["cuda"]),
            "cudnn": str(env["cudnn"]), "gpu": (env["gpu_names"] or [""])[0], "python": env["python"],
            "git_commit": env["git_commit"]} | ({"plugins": used} if (used := plugins.loaded_line()) else {})


TIMING_NOTE = (f"ms per call. median/p20/p80: triton.testing.do_bench (L2 flushed between calls); events_ms: N "
               f"back-to-back calls between two CUDA events, host launch work included. {VS} = median / "
               f"{BASELINE} median of the same shape, dtype and pass (>1 slower). forward runs under no_grad. "
               "kernels: device kernels of one forward+backward (torch.profiler). ran: what those kernels show; a "
               f"`{BASELINE}` row whose ran column does not name cuDNN was not cuDNN. TF32 off.")
PARITY_NOTE = ("max relative error over outputs, states and every gradient vs torch.nn.LSTM; ok = every "
               "error finite and within tolerance; ok empty = not run.")


def write_table(table: pd.DataFrame, env: dict[str, str], out_dir: Path = OUT_DIR, name: str = "gpu_check",
                note: str = TIMING_NOTE, stamp: str | None = None) -> tuple[Path, Path]:
    """name_<stamp>.csv and .md, each replaced whole (bench.atomic); one stamp per session, so saving again
    updates them."""
    stamp = stamp or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    csv_path, md_path = Path(out_dir) / f"{name}_{stamp}.csv", Path(out_dir) / f"{name}_{stamp}.md"
    atomic_write_text(csv_path, table.assign(**env).to_csv(index=False))
    blocks = [("h1", name), ("p", note), ("p", ", ".join(f"{k} {v}" for k, v in env.items())),
              ("table", list(table.columns), cells(table))]
    atomic_write_text(md_path, render.markdown(blocks))
    return csv_path, md_path


# ------------------------------------------------------------------------------------------ session

def session(names: list[str], out: Path, deadline: float, env: dict[str, str]) -> tuple[list[dict], pd.DataFrame]:
    """Parity then timings of each group, every table rewritten after every row; (parity rows, timing table)."""
    started, stamp = time.monotonic(), datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    expired = (lambda: time.monotonic() - started > deadline) if deadline > 0 else never
    parity: list[dict] = []
    records: list[dict] = []

    def save_parity(rows):
        write_table(pd.DataFrame.from_records(parity + rows), env, out, "gpu_parity", PARITY_NOTE, stamp)

    def save_timing(new):
        write_table(build_table(records + new), env, out, "gpu_check", TIMING_NOTE, stamp)

    for group in groups(names):
        print(f"\n== parity vs torch.nn.LSTM of {', '.join(group)} (max relative error over outputs, states and "
              "all gradients)", flush=True)
        parity += run_parity(group, expired=expired, saved=save_parity)
        print(f"\n== timings of {', '.join(group)} (do_bench and back-to-back CUDA events) and what ran "
              "(torch.profiler)", flush=True)
        records += run_timing(group, expired=expired, saved=save_timing)
    table = build_table(records)
    csv_path, md_path = write_table(table, env, out, "gpu_check", TIMING_NOTE, stamp)
    shown = table.drop(columns="top_kernels")
    print("\n" + render.text_table(list(shown.columns), cells(shown)))
    print(f"\nwrote {csv_path} and {md_path} (and the parity table beside them) in "
          f"{time.monotonic() - started:.0f} s")
    return parity, table


def exit_status(parity: list[dict], deadline: float) -> int:
    """1 when a parity check failed (naming each), else 0; checks cut by the deadline are counted, not failed."""
    failed = [row for row in parity if row["ok"] is False]
    not_run = sum(row["ok"] is None for row in parity)
    if not_run:
        print(f"gpu-check: {not_run} parity check(s) not run: --deadline {deadline:g} s reached", file=sys.stderr)
    if failed:
        print(f"gpu-check: {len(failed)} parity check(s) FAILED: "
              + "; ".join(f"{r['backend']} {r['dtype']} {r['shape']}" for r in failed), file=sys.stderr)
        return 1
    print("gpu-check: all parity checks that ran passed")
    return 0


def chosen(asked: str | None) -> list[str]:
    """The --backends subset in registry order (default: all that apply); UsageError for a name not among them."""
    names = backends()
    if not asked:
        return names
    wanted = [n.strip() for n in asked.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in names]
    if unknown:
        raise UsageError(f"unknown backend {unknown[0]!r}; expected some of: {', '.join(names)}")
    return [n for n in names if n in wanted]


def missing_device() -> str | None:
    """Why this machine cannot run gpu-check, or None."""
    if not torch.cuda.is_available():
        return "no CUDA device (torch.cuda.is_available() is False); run it on a GPU machine"
    try:
        import triton  # noqa: F401  (only whether it imports)
    except ImportError:
        return "Triton is not installed; it ships with Linux CUDA builds of torch"
    return None


def cli(argv: list[str]) -> int:
    parser = OneLineParser(prog="bench gpu-check", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT_DIR, help=f"where the tables go (default ./{OUT_DIR})")
    parser.add_argument("--backends", help="comma-separated subset (default: every registered one of the LSTM "
                                           "family)")
    parser.add_argument("--deadline", type=float, default=0.0,
                        help="seconds after which no new check starts; the rest are recorded as not run "
                             "(default 0: none). For a lent GPU with a fixed time budget")
    plugin_flags.add_argument(parser)
    args = plugin_flags.loaded(parse(parser, argv), parser.prog)
    if isinstance(args, int):
        return args
    try:
        names = chosen(args.backends)
    except UsageError as error:
        print(f"error: {parser.prog}: {error}", file=sys.stderr)
        return 2
    if problem := missing_device():
        print(f"error: {parser.prog}: {problem}", file=sys.stderr)
        return 2
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    env = environment()
    print("gpu-check on " + ", ".join(f"{k} {v}" for k, v in env.items()), flush=True)
    print("backends: " + ", ".join(names), flush=True)
    parity, _ = session(names, args.out, args.deadline, env)
    return exit_status(parity, args.deadline)
