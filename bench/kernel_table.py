"""`bench kernels`' outputs: kernels.csv (one row per kernel x pass x configuration x architecture), kernels.md
(the default configuration first, then what cannot launch, the slower choices a GPU forced, and every row) and
env.json (versions, arguments, the architectures' limits). Each file is written whole or not at all.
"""
from __future__ import annotations

import csv
import io
import json
import os
import platform
from pathlib import Path

from bench.analysis import render
from bench.atomic import atomic_write_text

# kernels.csv's columns, in order (bench.kernels fills them, one row per kernel x pass x configuration x arch)
COLUMNS = ("kernel", "backend", "pass", "dtype", "hidden", "proj_size", "batch", "steps", "tf32", "path", "arch",
           "num_warps", "num_stages", "programs", "regs", "spill_bytes", "spill_load_bytes", "smem_bytes", "smem_limit",
           "tensor_cores", "ptx_kb", "launchable", "why", "note", "variants")
SHORT = {"lstm_seq_fwd_kernel": "seq fwd", "lstm_seq_bwd_kernel": "seq bwd",
         "lstm_step_fwd_kernel": "step fwd", "lstm_step_bwd_kernel": "step bwd"}
TABLE = ("kernel", "backend", "pass", "dtype", "H", "P", "B", "T", "tf32", "arch", "path", "warps", "stages", "regs",
         "spills st/ld (B)", "smem (B)", "limit (B)", "tensor cores", "PTX KB", "launch")


def label(row: dict) -> str:
    """One line naming a row's configuration."""
    tf32 = " tf32" if row.get("tf32") else ""
    proj = f" P={row['proj_size']}" if row.get("proj_size") else ""
    return (f"{row['backend']} {row['kernel']} ({row['pass']}) {row['dtype']}{tf32} H={row['hidden']}{proj} "
            f"B={row['batch']} T={row['steps']} on {row['arch']}")


def _order(row: dict) -> tuple:
    passes = {"forward": 0, "backward": 1, "inference": 2}
    return (row["backend"], row["dtype"], row.get("tf32", False), row["hidden"], row.get("proj_size", 0), row["batch"],
            row["steps"],
            passes.get(row["pass"], 3), row["kernel"], row["arch"])


def csv_text(rows: list[dict], columns: tuple[str, ...]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _cells(row: dict) -> list[str]:
    what = [SHORT.get(row["kernel"], row["kernel"]), row["backend"], row["pass"], row["dtype"], str(row["hidden"]),
            str(row.get("proj_size") or "—"), str(row["batch"]), str(row["steps"]), "on" if row["tf32"] else "off",
            row["arch"]]
    if row.get("regs", "") == "":  # a configuration that did not compile
        return what + ["—"] * 9 + ["NO"]
    return what + [row["path"], str(row["num_warps"]), str(row["num_stages"]), str(row["regs"]),
            f"{row['spill_bytes']}/{row['spill_load_bytes']}", f"{row['smem_bytes']:,}", f"{row['smem_limit']:,}",
            row["tensor_cores"], f"{row['ptx_kb']:.0f}", "yes" if row["launchable"] else "NO"]


def _is_default(row: dict) -> bool:
    from bench.config import Config

    default = Config()
    return (row["hidden"], row.get("proj_size", 0), row["batch"], row["steps"], row["dtype"]) == \
        (default.hidden_size, default.proj_size, default.batch_size, default.seq_len, default.dtype)


def blocks(rows: list[dict], env: dict) -> list[tuple]:
    failed = [r for r in rows if not r["launchable"]]
    notes = sorted({f"{r['arch']}, {r['dtype']}{' tf32' if r['tf32'] else ''} H={r['hidden']}: {r['note']}"
                    for r in rows if r.get("note")})
    limits = ", ".join(f"sm_{a} {b:,} B" for a, b in env["smem_limits"].items())
    out: list[tuple] = [
        ("h1", "Triton kernels compiled ahead of time"),
        ("p", f"`bench kernels` ({env['command']}): Triton {env['triton']}, ptxas {env['ptxas']}, "
              f"torch {env['torch']}; "
              f"{len(rows)} launches, {len(rows) - len(failed)} launchable, in {env['seconds']:.0f} s. Each row is one "
              "kernel of one pass as the wrappers launch it (grid, constexprs, num_warps, num_stages and argument "
              "specialisation from impls/, on meta tensors), compiled by `triton.compile` for the architecture. "
              "regs and spills: the bundled ptxas -v on the PTX; smem: the compiled kernel's metadata.shared, "
              f"against the opt-in shared memory per block ({limits}); tensor cores: mma/wgmma instructions in the "
              "PTX (none: float32 FFMA on CUDA cores). docs/triton.md explains the paths.")]
    default = [r for r in rows if _is_default(r)]
    if default:
        out += [("h2", "The default configuration (H=64, B=50, T=28, float32)"),
                ("table", list(TABLE), [_cells(r) for r in sorted(default, key=_order)])]
    out += [("h2", "Cannot launch"), ("ul", [f"{label(r)}: {r['why']}" for r in failed]) if failed
            else ("p", "Every launch fits every listed architecture.")]
    out += [("h2", "Slower configurations forced by shared memory"),
            ("ul", notes) if notes else ("p", "None: the wrappers' first choice fits everywhere.")]
    out += [("h2", "Every launch"), ("table", list(TABLE), [_cells(r) for r in sorted(rows, key=_order)])]
    return out


def environment(args, seconds: float) -> dict:
    import torch
    import triton
    from triton.backends.nvidia.compiler import get_ptxas

    from bench.envinfo import git_state
    from impls.triton_common import SMEM_PER_BLOCK

    commit, _ = git_state()
    limits = {a: (SMEM_PER_BLOCK | args.smem_limit)[a] for a in args.archs}
    lists = (("dtypes", args.dtypes), ("hidden", args.hidden), ("batch", args.batch), ("steps", args.steps),
             ("proj-size", args.proj_size))
    command = " ".join(["bench kernels", f"--archs {','.join(map(str, args.archs))}"]
                       + [f"--{k} {','.join(map(str, v))}" for k, v in lists if v]
                       + (["--presets"] if args.presets else [])
                       + ([f"--tf32 {args.tf32}"] if args.tf32 != "off" else [])
                       + ([f"--path {args.path}"] if args.path != "auto" else [])
                       + ([f"--smem-limit {','.join(f'{a}={b}' for a, b in args.smem_limit.items())}"]
                          if args.smem_limit else []))
    return {"command": command, "triton": triton.__version__, "ptxas": get_ptxas(80).version,
            "torch": torch.__version__, "python": platform.python_version(), "git_commit": commit,
            "smem_limits": limits, "seconds": seconds, "jobs": args.jobs, "cpu_count": os.cpu_count(),
            "backends": list(args.backends), "passes": list(args.passes)}


def write(out_dir: Path, rows: list[dict], args, seconds: float) -> None:

    rows = sorted(rows, key=_order)
    env = environment(args, seconds)
    atomic_write_text(out_dir / "kernels.csv", csv_text(rows, COLUMNS))
    atomic_write_text(out_dir / "kernels.md", render.markdown(blocks(rows, env)))
    atomic_write_text(out_dir / "env.json", json.dumps(env, indent=2) + "\n")
