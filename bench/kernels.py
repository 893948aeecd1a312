"""`bench kernels`: every Triton kernel the `triton` and `triton-step` backends launch, compiled ahead of time for
GPU architectures, with each one's registers, spills, shared memory and tensor-core instructions. No GPU needed.

    python -m bench kernels [--archs 80,86,89,90] [--dtypes float32,...] [--hidden 64,...] [--batch 50,...]
                            [--steps 28,...] [--proj-size 0,...] [--presets] [--tf32 [on|off|both]]
                            [--path auto|resident|streaming] [--backends triton,triton-step]
                            [--passes forward,backward,inference]
                            [--smem-limit ARCH=BYTES] [--out DIR] [--jobs N] [--cache DIR | --no-cache]

The matrix: without --dtypes/--hidden/--batch/--steps/--proj-size, the shapes of the default configuration and of
every preset (bench/experiments); with any of them, the product of the lists given, the rest from the default
configuration (--presets adds the presets' shapes to it).
Each configuration runs one training step (forward, backward) and one inference forward of the backend's module
on meta tensors, with the architecture's compiler (bench.aot.ArchTarget) installed as the launch target: the
wrappers plan, fit to the architecture's shared memory and "launch" exactly as they do on a GPU, and every
distinct launch is compiled. One row per kernel x pass x configuration x architecture in kernels.csv and
kernels.md, beside env.json, in --out (default ./results/kernels/).

Exit 0 when every launch fits every listed architecture; 1 when some cannot launch (each named on stderr, one
line); 2 on bad input. The input size and the number of layers change nothing in the kernels (only the library
matmul before them), so the matrix fixes them (28 inputs, one layer).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

from bench.cliargs import OneLineParser, UsageError, parse
from impls.registry import REGISTRY

# The built-in Triton backends (the registry's, before any plugin loads): their wrappers plan their own launches.
BACKENDS = tuple(name for name, backend in REGISTRY.items() if backend.needs == "triton")
DTYPES = ("float32", "bfloat16", "float16", "float64")
PASSES = ("forward", "backward", "inference")
DEFAULT_ARCHS = (80, 86, 89, 90)


@dataclass(frozen=True)
class Shape:
    """What the kernels' launches depend on. Not the layers: every layer launches the same kernels (its input
    size changes only the projection matmul before them), so one layer is compiled."""
    hidden: int
    batch: int
    steps: int
    dtype: str
    proj: int = 0  # proj_size: the width of h (0: H, no projection)


@dataclass(frozen=True)
class Job:
    """One worker's share: every shape of one backend and dtype on one architecture."""
    backend: str
    arch: int
    smem_limit: int
    shapes: tuple[Shape, ...]
    tf32: tuple[bool, ...]
    path: str | None
    passes: tuple[str, ...]
    cache_dir: str | None


# ----------------------------------------------------------------------------------------- the matrix

def preset_shapes() -> list[Shape]:
    """The default configuration's shape and every preset's (each sweep point), without repeats, in order."""
    from bench import config as config_mod
    from bench import experiments

    configs = [config_mod.Config()] + [config_mod.from_dict(experiments.load(name)) for name in experiments.names()]
    shapes: list[Shape] = []
    for config in configs:
        for point in config_mod.sweep_points(config.sweep):
            c = config.replace(sweep={}, **point)
            shape = Shape(c.hidden_size, c.batch_size, c.seq_len, c.dtype, c.proj_size)
            if shape not in shapes:
                shapes.append(shape)
    return shapes


def matrix(args) -> list[Shape]:
    if not any((args.dtypes, args.hidden, args.batch, args.steps, args.proj_size)):
        return preset_shapes()
    from bench.config import Config

    default = Config()
    shapes = [Shape(h, b, t, d, p)
              for d in args.dtypes or (default.dtype,) for h in args.hidden or (default.hidden_size,)
              for b in args.batch or (default.batch_size,) for t in args.steps or (default.seq_len,)
              for p in args.proj_size or (default.proj_size,) if p < h]  # nn.LSTM's rule: pairs past it are left out
    return shapes + [s for s in preset_shapes() if s not in shapes] if args.presets else shapes


def jobs(args, shapes: list[Shape]) -> list[Job]:
    from impls.triton_common import SMEM_PER_BLOCK

    limits = SMEM_PER_BLOCK | args.smem_limit
    tf32 = {"off": (False,), "on": (True,), "both": (False, True)}[args.tf32]
    cache = None if args.no_cache else str(args.cache)
    out = []
    for arch in args.archs:
        for backend in args.backends:
            for dtype in dict.fromkeys(s.dtype for s in shapes):
                mine = tuple(s for s in shapes if s.dtype == dtype)
                out.append(Job(backend, arch, limits[arch], mine, tf32 if dtype == "float32" else (False,),
                               None if args.path == "auto" else args.path, args.passes, cache))
    return out


# ---------------------------------------------------------------------------------- one job, in a worker

def _phases(backend: str, shape: Shape, target, passes: tuple[str, ...]) -> dict[str, list]:
    """{pass: [Fitted, ...]}: a training step and an inference forward of the backend on meta tensors."""
    import torch
    import torch.nn.functional as F

    import impls
    from bench.model import RowClassifier
    from impls.triton_common import use_target

    dtype = getattr(torch, shape.dtype)
    model = RowClassifier(impls.build(backend, 28, shape.hidden, 1, batch_first=True, proj_size=shape.proj),
                          shape.proj or shape.hidden)
    model = model.to(device="meta", dtype=dtype)
    x = torch.empty(shape.batch, shape.steps, 28, device="meta", dtype=dtype)
    labels = torch.empty(shape.batch, dtype=torch.long, device="meta")
    phases: dict[str, list] = {}
    with use_target(target):
        mark = len(target.launched)
        if "forward" in passes or "backward" in passes:
            loss = F.cross_entropy(model(x).float(), labels)
            phases["forward"], mark = target.launched[mark:], len(target.launched)
            if "backward" in passes:
                loss.backward()
                phases["backward"], mark = target.launched[mark:], len(target.launched)
        if "inference" in passes:
            with torch.no_grad():
                model(x)
            phases["inference"] = target.launched[mark:]
    return {name: fitted for name, fitted in phases.items() if name in passes}


def _variants(fitted: list) -> dict[str, list]:
    """{kernel name: [Fitted of each distinct specialisation]}: the steps of triton-step mostly repeat one."""
    from impls.triton_common import launch_key

    kernels: dict[str, dict] = {}
    for f in fitted:
        kernels.setdefault(f.launch.name, {}).setdefault(launch_key(f.launch), f)
    return {name: list(distinct.values()) for name, distinct in kernels.items()}


def _row(job: Job, shape: Shape, tf32: bool, pass_: str, kernel: str, variants: list, target) -> dict:
    from bench.aot import launchable

    compiled = [target.compile(f.launch) for f in variants]
    first = variants[0].launch
    worst = max(zip(compiled, variants), key=lambda cv: (bool(cv[0].error), cv[0].smem_bytes, cv[0].regs))
    why = next((f.problem for f in variants if f.problem), "") or \
        next((w for c, f in zip(compiled, variants) if (w := launchable(c, f.launch.num_warps, job.smem_limit,
                                                                          target.name))), "")
    c = worst[0]
    return dict(kernel=kernel, backend=job.backend, **{"pass": pass_}, dtype=shape.dtype, hidden=shape.hidden,
                proj_size=shape.proj, batch=shape.batch, steps=shape.steps, tf32=tf32, path=first.path,
                arch=f"sm_{job.arch}",
                num_warps=first.num_warps, num_stages=first.num_stages,
                programs="x".join(map(str, first.grid)), regs=c.regs, spill_bytes=c.spill_bytes,
                spill_load_bytes=c.spill_load_bytes, smem_bytes=c.smem_bytes, smem_limit=job.smem_limit,
                tensor_cores=c.tensor_cores, ptx_kb=c.ptx_kb, launchable=not why, why=why,
                note=next((f.note for f in variants if f.note), ""), variants=len(variants))


def run_job(job: Job) -> list[dict]:
    """The rows of one job (runs in a worker process: Triton must not be in interpreter mode there)."""
    import torch

    from bench.aot import ArchTarget, CompileError
    from impls.triton_lstm import force_path

    target = ArchTarget(job.arch, job.smem_limit, Path(job.cache_dir) if job.cache_dir else None)
    rows = []
    for shape in job.shapes:
        for tf32 in job.tf32:
            torch.backends.cuda.matmul.allow_tf32 = tf32  # what config.tf32 sets in a run's worker
            try:
                with force_path(job.path):
                    phases = _phases(job.backend, shape, target, job.passes)
            except CompileError as error:
                rows.append(dict(kernel=error.launch.name, backend=job.backend, **{"pass": "?"}, dtype=shape.dtype,
                                 hidden=shape.hidden, proj_size=shape.proj, batch=shape.batch, steps=shape.steps,
                                 tf32=tf32,
                                 arch=f"sm_{job.arch}", smem_limit=job.smem_limit, launchable=False, why=str(error)))
                continue
            for pass_, fitted in phases.items():
                for kernel, variants in _variants(fitted).items():
                    rows.append(_row(job, shape, tf32, pass_, kernel, variants, target))
    return rows


def _warm_up() -> None:
    """Imports and first meta-tensor ops once in this process, so forked workers start with them done."""
    import torch

    import impls.triton_lstm
    import impls.triton_step  # noqa: F401
    from bench.aot import ArchTarget

    ArchTarget(80, 0, None)
    torch.nn.functional.linear(torch.empty(2, 3, device="meta"), torch.empty(4, 3, device="meta"))


def run_all(job_list: list[Job], workers: int) -> list[dict]:
    """Every job's rows, in job order, from up to `workers` forked processes (compiling is single-threaded)."""
    _warm_up()
    if workers <= 1 or len(job_list) <= 1:
        return [row for job in job_list for row in run_job(job)]
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("fork")) as pool:
        return [row for rows in pool.map(run_job, job_list) for row in rows]


# ------------------------------------------------------------------------------------------ the CLI

def _ints(text: str, least: int = 1, what: str = "positive integers") -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or any(v < least for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated {what}, got {text!r}")
    return values


def _sizes(text: str) -> tuple[int, ...]:
    return _ints(text, 0, "integers >= 0 (0: no projection)")


def _choices(allowed: tuple[str, ...]):
    def parse_list(text: str) -> tuple[str, ...]:
        values = tuple(v.strip() for v in text.split(",") if v.strip())
        bad = [v for v in values if v not in allowed]
        if bad or not values:
            raise argparse.ArgumentTypeError(f"expected some of {','.join(allowed)}, got {text!r}")
        return values
    return parse_list


def _archs(text: str) -> tuple[int, ...]:
    archs = _ints(text.replace("sm_", ""))
    if any(a < 80 for a in archs):
        raise argparse.ArgumentTypeError(f"the kernels need compute capability 8.0 or newer (bfloat16, tl.dot "
                                         f"shapes); got {text!r}")
    return archs


def _limits(text: str) -> dict[int, int]:
    try:
        return {int(a.replace("sm_", "")): int(b) for a, b in (item.split("=") for item in text.split(","))}
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected ARCH=BYTES[,ARCH=BYTES], e.g. 86=101376; got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    from bench.aot import default_cache_dir

    parser = OneLineParser(prog="bench kernels", description="Compile the Triton backends' kernels ahead of time "
                           "for GPU architectures and tabulate their resources (no GPU needed).")
    parser.add_argument("--archs", type=_archs, default=DEFAULT_ARCHS,
                        help="compute capabilities (default 80,86,89,90)")
    parser.add_argument("--dtypes", type=_choices(DTYPES), help=f"some of {','.join(DTYPES)}")
    parser.add_argument("--hidden", type=_ints, help="hidden sizes")
    parser.add_argument("--batch", type=_ints, help="batch sizes")
    parser.add_argument("--steps", type=_ints, help="sequence lengths T")
    parser.add_argument("--proj-size", type=_sizes, help="proj_size values (0: none); with each hidden size it is "
                        "below")
    parser.add_argument("--presets", action="store_true", help="with --dtypes/--hidden/--batch/--steps/--proj-size: "
                        "add the "
                        "default configuration's and the presets' shapes")
    parser.add_argument("--tf32", nargs="?", const="on", default="off", choices=("on", "off", "both"),
                        help="compile float32 as a run with tf32 on would (bare --tf32: on; default off)")
    parser.add_argument("--path", default="auto", choices=("auto", "resident", "streaming"),
                        help="force the persistent kernels' path (default: the wrappers' choice)")
    parser.add_argument("--backends", type=_choices(BACKENDS), default=BACKENDS, help="default triton,triton-step")
    parser.add_argument("--passes", type=_choices(PASSES), default=PASSES, help="default forward,backward,inference")
    parser.add_argument("--smem-limit", type=_limits, default={}, help="override an architecture's shared memory "
                        "per block, e.g. 86=65536 (what if a GPU offered less)")
    parser.add_argument("--out", type=Path, default=Path("results") / "kernels", help="default ./results/kernels/")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes (default: CPUs)")
    parser.add_argument("--cache", type=Path, default=default_cache_dir(), help=f"default {default_cache_dir()}")
    parser.add_argument("--no-cache", action="store_true", help="compile everything, read and write no cache")
    return parser


def cli(argv: list[str]) -> int:
    args = parse(build_parser(), argv)
    if isinstance(args, int):
        return args
    try:
        _check_environment(args)
    except UsageError as error:
        print(f"error: bench kernels: {error}", file=sys.stderr)
        return 2
    from bench import kernel_table

    started = time.monotonic()
    shapes = matrix(args)
    rows = run_all(jobs(args, shapes), args.jobs)
    kernel_table.write(args.out, rows, args, time.monotonic() - started)
    failed = [r for r in rows if not r["launchable"]]
    for r in failed:
        why = r["why"].removeprefix(f"{r['kernel']} cannot launch on {r['arch']}: ")
        print(f"cannot launch: {kernel_table.label(r)}: {why}", file=sys.stderr)
    print(f"{len(rows)} kernel launches on {','.join(f'sm_{a}' for a in args.archs)}, {len(rows) - len(failed)} "
          f"launchable, in {time.monotonic() - started:.0f} s: {args.out / 'kernels.md'}")
    return 1 if failed else 0


def _check_environment(args) -> None:
    if os.environ.get("TRITON_INTERPRET") == "1":
        raise UsageError("TRITON_INTERPRET=1 is set: the interpreter compiles nothing; unset it to compile kernels")
    if args.jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {args.jobs}")
    from bench.config import Config

    hidden = args.hidden or (Config().hidden_size,)
    too_wide = [p for p in args.proj_size or () if p >= max(hidden)]
    if too_wide:
        raise UsageError(f"--proj-size {too_wide[0]} must be below some hidden size (nn.LSTM's rule; hidden: "
                         f"{','.join(map(str, hidden))})")
    from impls.triton_common import SMEM_PER_BLOCK

    unknown = sorted(set(args.smem_limit) - set(args.archs))
    if unknown:
        raise UsageError(f"--smem-limit names sm_{unknown[0]}, which is not in --archs")
    no_limit = [a for a in args.archs if a not in SMEM_PER_BLOCK and a not in args.smem_limit]
    if no_limit:
        raise UsageError(f"no shared-memory limit known for sm_{no_limit[0]}: give --smem-limit "
                         f"{no_limit[0]}=BYTES, or use some of {','.join(map(str, SMEM_PER_BLOCK))}")
    try:
        import triton  # noqa: F401 - present, or nothing here can run
    except ImportError:
        raise UsageError("Triton is not installed (pip install triton; Linux only)") from None
