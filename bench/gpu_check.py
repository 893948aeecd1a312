"""`make gpu-check`: on a CUDA machine, parity of the compiled kernels, what really ran, then timings.

    python -m bench.gpu_check            (from the repo root; needs only torch, triton, pandas, numpy)

One call, no install and no download. Backends: `cudnn`, `loop`, `triton` (persistent), `triton-step`,
plus `aten`, `compiled` and `compiled-graphs` when `impls.names()` has them (OPTIONAL below); a backend
that is not registered is skipped, one that fails becomes a FAIL row (parity) or a row of NaN (timing).

1. Parity: each backend against torch.nn.LSTM on CUDA (impls.parity.compare_with_torch) on a few shapes,
   float32 strictly, float16 and bfloat16 looser. Every error is compared to its bound and anything not
   finite fails: a NaN can never pass. Shapes include H=100 and H=128, where `triton` streams W_hh.
2. What ran: one forward+backward of each backend under torch.profiler; the device kernels it launched
   (`kernels`) and a verdict (`ran`). For `cudnn` the verdict says whether cuDNN's persistent kernel,
   another cuDNN path, or a non-cuDNN fallback (as bfloat16 can be on some versions) really ran.
3. Timing: forward (no_grad) and forward+backward, each measured two ways: triton.testing.do_bench
   (median, p20, p80; it flushes the L2 between calls, which hides host launch overhead) and N
   back-to-back calls between two CUDA events (`events_ms`, the figure a training loop sees).

TF32 is switched off for the whole run: cuDNN's RNN would otherwise use it for float32 while our
cuBLAS calls would not, which makes neither parity nor timing a like-for-like comparison.
Tables (CSV and Markdown) go under results/gpu/.
Exit codes: 0 all parity checks passed, 1 some failed (timings still written), 2 no CUDA / no Triton.
Legend: B batch, T time steps, D input features, H hidden size, L layers.
"""
from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import torch

OUT_DIR = Path(__file__).resolve().parent.parent / "results" / "gpu"
CORE = ("cudnn", "loop", "triton", "triton-step")
OPTIONAL = ("aten", "compiled", "compiled-graphs")  # other sessions' backends, included once registered
COMPILED = ("compiled", "compiled-graphs")          # torch.compile unrolls the time loop: short T only
MAX_COMPILED_STEPS = 28
TOLERANCE = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 6e-2}
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


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def backends() -> list[str]:
    import impls

    registered = impls.names()
    return [n for n in CORE + OPTIONAL if n in registered]


def skip_reason(name: str, steps: int) -> str | None:
    if name in COMPILED and steps > MAX_COMPILED_STEPS:
        return f"torch.compile of {steps} unrolled steps takes too long for gpu-check"
    return None


def parity_ok(errors: dict[str, float], tolerance: float) -> bool:
    """Every error within its bound; NaN, inf and an empty comparison all fail."""
    return bool(errors) and all(math.isfinite(e) and e <= tolerance for e in errors.values())


# ------------------------------------------------------------------------------------------ parity

def never() -> bool:
    return False


def run_parity(names: list[str], device: str = "cuda", expired=never, saved=lambda rows: None) -> list[dict]:
    """One row per (shape, dtype, backend); `saved(rows)` after each, so a killed run keeps what it measured.
    Once `expired()`, the remaining rows are recorded as not run (ok None: neither passed nor failed)."""
    from impls.parity import compare_with_torch

    rows = []
    for batch, steps, inputs, hidden, layers, batch_first, with_state in PARITY_SHAPES:
        for dtype in PARITY_DTYPES:
            for name in names:
                shape = (f"B{batch} T{steps} D{inputs} H{hidden} L{layers}"
                         f"{' bf' if batch_first else ''}{' state' if with_state else ''}")
                if skip_reason(name, steps):
                    continue
                try:
                    if expired():  # no result either way: ok is None, neither passed nor failed
                        errors = {NOT_RUN: float("nan")}
                    else:
                        errors = compare_with_torch(name, batch=batch, steps=steps, input_size=inputs,
                                                    hidden=hidden, layers=layers, batch_first=batch_first,
                                                    with_state=with_state, dtype=dtype, device=device)
                except Exception as error:  # one broken combination must not hide the others' results
                    errors = {f"error: {type(error).__name__}: {str(error).splitlines()[0][:120]}": float("nan")}
                ok = None if NOT_RUN in errors else parity_ok(errors, TOLERANCE[dtype])
                # The worst error, with NaN ranked worst of all so the row names it.
                worst = max(errors, key=lambda k: math.inf if not math.isfinite(errors[k]) else errors[k]) \
                    if errors else "nothing compared"
                value = errors.get(worst, float("nan"))
                rows.append({"backend": name, "dtype": dtype_name(dtype), "shape": shape, "max_rel_error": value,
                             "worst": worst, "tolerance": TOLERANCE[dtype], "ok": ok})
                verdict = {True: "PASS", False: "FAIL", None: "----"}[ok]
                print(f"{verdict}  {name:<15} {dtype_name(dtype):<9} {shape:<32} "
                      f"max rel err {value:.2e} ({worst}) tol {TOLERANCE[dtype]:.0e}", flush=True)
                saved(rows)
    return rows


# --------------------------------------------------------------------------------- what really ran

def _device_kernels(fn) -> list[tuple[str, float]]:
    """(kernel name, device µs) of every device kernel `fn` launched, in launch order."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    kernels = []
    for event in prof.events():
        if event.device_type != DeviceType.CUDA or event.name.startswith(("Memcpy", "Memset")):
            continue
        duration = getattr(event, "device_time", None) or getattr(event, "cuda_time", 0.0) or 0.0
        kernels.append((event.name, float(duration)))
    return kernels


def describe_kernels(names: list[str]) -> str:
    """A one-line verdict on which LSTM implementation the kernel names show."""
    low = [n.lower() for n in names]
    if any("persist" in n and ("rnn" in n or "lstm" in n) for n in low):
        return "cuDNN persistent RNN kernel"
    if any("cudnn" in n or ("rnn" in n and "elem" in n) or "lstm_elementwise" in n for n in low):
        return "cuDNN, not its persistent kernel"
    if any("lstm_cell_forward" in n or "lstm_cell_backward" in n for n in low):
        return "NOT cuDNN: ATen fused LSTM cell kernels"
    if any("lstm_seq_" in n for n in low):
        return "persistent Triton kernels"
    if any("lstm_step_" in n for n in low):
        return "per-step Triton kernels + cuBLAS"
    return "other kernels"


def top_kernels(kernels: list[tuple[str, float]], n: int = 3) -> str:
    totals: dict[str, float] = {}
    for name, us in kernels:
        totals[name[:60]] = totals.get(name[:60], 0.0) + us
    return "; ".join(name for name, _ in sorted(totals.items(), key=lambda kv: -kv[1])[:n])


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
    and for forward+backward the profiler's kernel count and verdict."""
    import triton.testing

    import impls

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
    kernels = _device_kernels(forward_backward)
    result = {}
    for label, fn in (("forward", forward), ("forward+backward", forward_backward)):
        median, p20, p80 = triton.testing.do_bench(fn, quantiles=QUANTILES)
        result[label] = {"median_ms": median, "p20_ms": p20, "p80_ms": p80, "events_ms": _time_events(fn)}
    result["forward+backward"].update(kernels=len(kernels), ran=describe_kernels([k for k, _ in kernels]),
                                      top_kernels=top_kernels(kernels))
    return result


COLUMNS = ["shape", "dtype", "pass", "backend", "median_ms", "p20_ms", "p80_ms", "events_ms", "kernels", "ran",
           "top_kernels"]


def build_table(records: list[dict]) -> pd.DataFrame:
    """records: {shape, dtype, pass, backend, median_ms, p20_ms, p80_ms, [events_ms, kernels, ran, top_kernels]}
    -> table with vs_cudnn (median / cudnn's median of the same shape, dtype and pass; >1 means slower than
    cuDNN) and events_vs_cudnn (the same for events_ms)."""
    table = pd.DataFrame.from_records(records)
    for column in COLUMNS:
        if column not in table:
            table[column] = float("nan") if column.endswith(("_ms", "kernels")) else ""
    table = table[COLUMNS]
    keys = ["shape", "dtype", "pass"]
    cudnn = table[table["backend"] == "cudnn"].set_index(keys)[["median_ms", "events_ms"]]
    table = table.join(cudnn.rename(columns=lambda c: "cudnn_" + c), on=keys)
    table["vs_cudnn"] = table["median_ms"] / table["cudnn_median_ms"]
    table["events_vs_cudnn"] = table["events_ms"] / table["cudnn_events_ms"]
    table = table.drop(columns=["cudnn_median_ms", "cudnn_events_ms"])
    order = COLUMNS[:8] + ["vs_cudnn", "events_vs_cudnn"] + COLUMNS[8:]
    return table[order].reset_index(drop=True)


def to_markdown(table: pd.DataFrame, header: list[str]) -> str:
    """A GitHub Markdown table, written by hand: pandas' to_markdown needs `tabulate`."""
    def cell(value) -> str:
        if isinstance(value, float):
            return "" if math.isnan(value) else f"{value:.4g}"
        return str(value).replace("|", "/")

    lines = [*header, "", "| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def environment() -> dict[str, str]:
    import triton

    return {"torch": torch.__version__, "triton": triton.__version__, "cuda": str(torch.version.cuda),
            "cudnn": str(torch.backends.cudnn.version()), "gpu": torch.cuda.get_device_name(0),
            "python": platform.python_version()}


TIMING_NOTE = ("ms per call. median/p20/p80: triton.testing.do_bench (L2 flushed between calls); events_ms: N "
               "back-to-back calls between two CUDA events, host launch work included. vs_cudnn = median / cudnn "
               "median of the same shape, dtype and pass (>1 slower). forward runs under no_grad. kernels: device "
               "kernels of one forward+backward (torch.profiler). ran: what those kernels show; a `cudnn` row whose "
               "ran column does not name cuDNN was not cuDNN. TF32 off.")


def write_table(table: pd.DataFrame, env: dict[str, str], out_dir: Path = OUT_DIR, name: str = "gpu_check",
                note: str = TIMING_NOTE, stamp: str | None = None) -> tuple[Path, Path]:
    """name_<stamp>.csv and .md, each replaced whole; one stamp per session, so saving again updates them."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = stamp or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    csv_path, md_path = out_dir / f"{name}_{stamp}.csv", out_dir / f"{name}_{stamp}.md"
    header = [f"# {name}", "", note, "", ", ".join(f"{k} {v}" for k, v in env.items())]
    for path, write in ((csv_path, lambda p: table.assign(**env).to_csv(p, index=False)),
                        (md_path, lambda p: p.write_text(to_markdown(table, header)))):
        partial = path.with_suffix(path.suffix + ".partial")  # written whole or not at all
        write(partial)
        partial.replace(path)
    return csv_path, md_path


def run_timing(names: list[str], expired=never, saved=lambda records: None) -> list[dict]:
    """Timing records of every shape, dtype and backend; a failure or the deadline becomes a row of NaN."""
    records = []
    for label, batch, steps, inputs, hidden, layers in TIMING_SHAPES:
        for dtype in TIMING_DTYPES:
            for name in names:
                reason = skip_reason(name, steps)
                reason = f"skipped: {reason}" if reason else NOT_RUN if expired() else None
                try:
                    if reason is None:
                        timings = time_backend(name, batch, steps, inputs, hidden, layers, dtype)
                except Exception as error:  # keep the table: a row of NaNs says which one broke, and why
                    reason = f"{type(error).__name__}: {str(error).splitlines()[0][:100]}" if str(error) else \
                        type(error).__name__
                if reason is not None:
                    print(f"  {label:<20} {dtype_name(dtype):<9} {name:<15} {reason}", file=sys.stderr)
                    nan = {"median_ms": float("nan"), "p20_ms": float("nan"), "p80_ms": float("nan"),
                           "events_ms": float("nan")}
                    timings = {"forward": dict(nan), "forward+backward": dict(nan, ran=reason)}
                for pass_, figures in timings.items():
                    records.append({"shape": label, "dtype": dtype_name(dtype), "pass": pass_, "backend": name,
                                    **figures})
                    print(f"  {label:<20} {dtype_name(dtype):<9} {pass_:<17} {name:<15} "
                          f"{figures['median_ms']:9.3f} ms do_bench {figures['events_ms']:9.3f} ms events"
                          f"  {figures.get('ran', '')}", flush=True)
                saved(records)
    return records


# -------------------------------------------------------------------------------------------- main

def parse_args(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT_DIR, help=f"where the tables go (default {OUT_DIR})")
    parser.add_argument("--backends", help="comma-separated subset (default: every registered one: "
                                           f"{', '.join(CORE + OPTIONAL)})")
    parser.add_argument("--deadline", type=float, default=0.0,
                        help="seconds after which no new check starts; the rest are recorded as not run "
                             "(default 0: none). For a lent GPU with a fixed time budget")
    return parser.parse_args(list(argv))


def groups(names: list[str]) -> list[list[str]]:
    """The core backends first (their parity and timings are the figures that matter most), then the
    optional ones, whose torch.compile can take minutes per shape: a deadline cuts those, not cudnn vs triton."""
    return [group for group in ([n for n in names if n not in COMPILED], [n for n in names if n in COMPILED])
            if group]


def main(argv: list[str] | tuple = ()) -> int:
    args = parse_args(argv)
    names = registered = backends()
    if args.backends:
        asked = [n.strip() for n in args.backends.split(",") if n.strip()]
        unknown = [n for n in asked if n not in names]
        if unknown:
            print(f"gpu-check: unknown backend {unknown[0]!r}; expected some of: {', '.join(names)}", file=sys.stderr)
            return 2
        names = [n for n in names if n in asked]
    if not torch.cuda.is_available():
        print("gpu-check: no CUDA device (torch.cuda.is_available() is False); run it on a GPU machine",
              file=sys.stderr)
        return 2
    try:
        import triton  # noqa: F401 (imported only to fail early, with one line, where Triton is missing)
    except ImportError:
        print("gpu-check: Triton is not installed; it ships with Linux CUDA builds of torch", file=sys.stderr)
        return 2
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    env = environment()
    print("gpu-check on " + ", ".join(f"{k} {v}" for k, v in env.items()), flush=True)
    print("backends: " + ", ".join(names) + "; not registered: "
          + (", ".join(n for n in OPTIONAL if n not in registered) or "none"), flush=True)
    started, stamp = time.monotonic(), datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    expired = (lambda: time.monotonic() - started > args.deadline) if args.deadline > 0 else never
    parity_note = ("max relative error over outputs, states and every gradient vs torch.nn.LSTM; ok = every "
                   "error finite and within tolerance; ok empty = not run.")
    parity: list[dict] = []
    records: list[dict] = []

    def save_parity(rows):
        write_table(pd.DataFrame.from_records(parity + rows), env, args.out, "gpu_parity", parity_note, stamp)

    def save_timing(new):
        write_table(build_table(records + new), env, args.out, "gpu_check", TIMING_NOTE, stamp)

    for group in groups(names):
        print(f"\n== parity vs torch.nn.LSTM of {', '.join(group)} (max relative error over outputs, states and "
              "all gradients)", flush=True)
        parity += run_parity(group, expired=expired, saved=save_parity)
        print(f"\n== timings of {', '.join(group)} (do_bench and back-to-back CUDA events) and what ran "
              "(torch.profiler)", flush=True)
        records += run_timing(group, expired=expired, saved=save_timing)
    table = build_table(records)
    with pd.option_context("display.width", 250, "display.max_columns", 20, "display.max_colwidth", 40,
                           "display.float_format", "{:.4g}".format):
        print()
        print(table.drop(columns="top_kernels").to_string(index=False))
    csv_path, md_path = write_table(table, env, args.out, "gpu_check", TIMING_NOTE, stamp)
    print(f"\nwrote {csv_path} and {md_path} (and the parity table beside them) in {time.monotonic() - started:.0f} s")
    failed = [row for row in parity if row["ok"] is False]
    not_run = sum(row["ok"] is None for row in parity)
    if not_run:
        print(f"gpu-check: {not_run} parity check(s) not run: --deadline {args.deadline:g} s reached", file=sys.stderr)
    if failed:
        print(f"gpu-check: {len(failed)} parity check(s) FAILED: "
              + "; ".join(f"{r['backend']} {r['dtype']} {r['shape']}" for r in failed), file=sys.stderr)
        return 1
    print("gpu-check: all parity checks that ran passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
