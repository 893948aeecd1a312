"""`make gpu-check`: on a CUDA machine, parity of the compiled kernels, then do_bench timings.

    python -m bench.gpu_check            (from the repo root; needs only torch, triton, pandas, numpy)

1. Parity: `loop`, `cudnn` and `triton` against torch.nn.LSTM on CUDA (impls.parity.compare_with_torch)
   on a few shapes, float32 strictly, float16 and bfloat16 with looser tolerances; prints pass/fail.
2. Timing: forward (no_grad) and forward+backward of `cudnn`, `loop` and `triton` with
   triton.testing.do_bench (median, p20, p80 in ms) at the MNIST shape and a larger one, float32 and
   bfloat16; one table with ratios vs cudnn, written as CSV and Markdown under results/gpu/.

TF32 is switched off for the whole run: cuDNN's RNN would otherwise use it for float32 while our
cuBLAS calls would not, which makes neither parity nor timing a like-for-like comparison.
Exit codes: 0 all parity checks passed, 1 some failed (timings still written), 2 no CUDA / no Triton.
Legend: B batch, T time steps, D input features, H hidden size, L layers.
"""
from __future__ import annotations

import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import torch

OUT_DIR = Path(__file__).resolve().parent.parent / "results" / "gpu"
BACKENDS = ("cudnn", "loop", "triton")
TOLERANCE = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 6e-2}
# (B, T, D, H, L, batch_first, with_state): odd sizes exercise the kernel masks.
PARITY_SHAPES = [
    (5, 7, 7, 11, 3, True, True),
    (1, 9, 7, 64, 2, False, False),
    (50, 28, 28, 64, 2, True, False),
    (256, 28, 28, 128, 2, False, True),
]
PARITY_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# (label, B, T, D, H, L)
TIMING_SHAPES = [
    ("mnist B50 H64", 50, 28, 28, 64, 2),
    ("B256 H128", 256, 28, 28, 128, 2),
]
TIMING_DTYPES = (torch.float32, torch.bfloat16)
QUANTILES = [0.5, 0.2, 0.8]


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


# ------------------------------------------------------------------------------------------ parity

def run_parity(device: str = "cuda") -> list[dict]:
    from impls.parity import compare_with_torch

    rows = []
    for batch, steps, inputs, hidden, layers, batch_first, with_state in PARITY_SHAPES:
        for dtype in PARITY_DTYPES:
            for name in BACKENDS:
                try:
                    errors = compare_with_torch(name, batch=batch, steps=steps, input_size=inputs, hidden=hidden,
                                                layers=layers, batch_first=batch_first, with_state=with_state,
                                                dtype=dtype, device=device)
                except Exception as error:  # one broken combination must not hide the others' results
                    errors = {f"error: {type(error).__name__}: {str(error).splitlines()[0][:120]}": float("inf")}
                worst = max(errors, key=errors.get)
                ok = errors[worst] <= TOLERANCE[dtype]
                rows.append({"backend": name, "dtype": dtype_name(dtype),
                             "shape": f"B{batch} T{steps} D{inputs} H{hidden} L{layers}"
                                      f"{' bf' if batch_first else ''}{' state' if with_state else ''}",
                             "max_rel_error": errors[worst], "worst": worst, "tolerance": TOLERANCE[dtype],
                             "ok": ok})
                print(f"{'PASS' if ok else 'FAIL'}  {name:<7} {dtype_name(dtype):<9} {rows[-1]['shape']:<32} "
                      f"max rel err {errors[worst]:.2e} ({worst}) tol {TOLERANCE[dtype]:.0e}", flush=True)
    return rows


# ------------------------------------------------------------------------------------------ timing

def time_backend(name: str, batch: int, steps: int, inputs: int, hidden: int, layers: int,
                 dtype: torch.dtype, device: str = "cuda") -> dict[str, tuple[float, float, float]]:
    """{"forward": (median, p20, p80) ms, "forward+backward": ...} for one backend and shape."""
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
        out, _ = model(x)
        torch.autograd.backward(out, grad_out)

    return {
        "forward": tuple(triton.testing.do_bench(forward, quantiles=QUANTILES)),
        "forward+backward": tuple(triton.testing.do_bench(forward_backward, quantiles=QUANTILES,
                                                          grad_to_none=params)),
    }


def build_table(records: list[dict]) -> pd.DataFrame:
    """records: {shape, dtype, pass, backend, median_ms, p20_ms, p80_ms} -> table with vs_cudnn
    (median / cudnn's median of the same shape, dtype and pass; >1 means slower than cuDNN)."""
    table = pd.DataFrame.from_records(records, columns=["shape", "dtype", "pass", "backend",
                                                        "median_ms", "p20_ms", "p80_ms"])
    keys = ["shape", "dtype", "pass"]
    cudnn = table[table["backend"] == "cudnn"].set_index(keys)["median_ms"].rename("cudnn_ms")
    table = table.join(cudnn, on=keys)
    table["vs_cudnn"] = table["median_ms"] / table["cudnn_ms"]
    return table.drop(columns="cudnn_ms").reset_index(drop=True)


def to_markdown(table: pd.DataFrame, header: list[str]) -> str:
    """A GitHub Markdown table, written by hand: pandas' to_markdown needs `tabulate`."""
    def cell(value) -> str:
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    lines = [*header, "", "| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def environment() -> dict[str, str]:
    import triton

    return {"torch": torch.__version__, "triton": triton.__version__, "cuda": str(torch.version.cuda),
            "gpu": torch.cuda.get_device_name(0), "python": platform.python_version()}


def write_table(table: pd.DataFrame, env: dict[str, str], out_dir: Path = OUT_DIR) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    csv_path, md_path = out_dir / f"gpu_check_{stamp}.csv", out_dir / f"gpu_check_{stamp}.md"
    table.assign(**env).to_csv(csv_path, index=False)
    header = ["# gpu-check timings", "",
              "do_bench, ms: median with p20/p80; vs_cudnn = median / cudnn median; forward runs under no_grad; "
              "TF32 off.", "",
              ", ".join(f"{k} {v}" for k, v in env.items())]
    md_path.write_text(to_markdown(table, header))
    return csv_path, md_path


# -------------------------------------------------------------------------------------------- main

def main() -> int:
    if not torch.cuda.is_available():
        print("gpu-check: no CUDA device (torch.cuda.is_available() is False); run it on a GPU machine",
              file=sys.stderr)
        return 2
    try:
        import triton  # noqa: F401
    except ImportError:
        print("gpu-check: Triton is not installed; it ships with Linux CUDA builds of torch", file=sys.stderr)
        return 2
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    env = environment()
    print("gpu-check on " + ", ".join(f"{k} {v}" for k, v in env.items()), flush=True)

    print("\n== parity vs torch.nn.LSTM (max relative error over outputs, states and all gradients)")
    parity = run_parity()
    failed = [row for row in parity if not row["ok"]]

    print("\n== timings (triton.testing.do_bench)", flush=True)
    records = []
    for label, batch, steps, inputs, hidden, layers in TIMING_SHAPES:
        for dtype in TIMING_DTYPES:
            for name in BACKENDS:
                try:
                    timings = time_backend(name, batch, steps, inputs, hidden, layers, dtype)
                except Exception as error:  # keep the table: a row of NaNs says which one broke
                    print(f"  {label:<14} {dtype_name(dtype):<9} {name:<7} ERROR {type(error).__name__}: {error}",
                          file=sys.stderr)
                    timings = {p: (float("nan"),) * 3 for p in ("forward", "forward+backward")}
                for pass_, (median, p20, p80) in timings.items():
                    records.append({"shape": label, "dtype": dtype_name(dtype), "pass": pass_, "backend": name,
                                    "median_ms": median, "p20_ms": p20, "p80_ms": p80})
                    print(f"  {label:<14} {dtype_name(dtype):<9} {pass_:<17} {name:<7} {median:8.3f} ms",
                          flush=True)
    table = build_table(records)
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.4g}".format):
        print()
        print(table.to_string(index=False))
    csv_path, md_path = write_table(table, env)
    print(f"\nwrote {csv_path} and {md_path}")
    if failed:
        print(f"gpu-check: {len(failed)} parity check(s) FAILED: "
              + "; ".join(f"{r['backend']} {r['dtype']} {r['shape']}" for r in failed), file=sys.stderr)
        return 1
    print("gpu-check: all parity checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
