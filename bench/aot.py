"""Ahead-of-time compilation of the Triton backends' launches for one GPU architecture: no GPU, no driver.

`ArchTarget` is an impls.triton_common.Target. Installed with `use_target`, it receives every launch the
backends' wrappers make (they run on meta tensors, so nothing is allocated or computed), answers their `fit`
with the compiled kernel's shared memory, and records the launch instead of running it. A launch is compiled
exactly as Triton's JIT would at that call: the same binder turns its arguments into the signature,
divisibility attributes and constexprs (`_source`, mirroring JITFunction.run), then `triton.compile` for
GPUTarget("cuda", arch, 32). From the result:

    smem_bytes    the compiled kernel's metadata.shared (what the driver checks against the per-block limit)
    regs, spill   the bundled ptxas, run with Triton's flags plus -v on the kernel's PTX
    tensor_cores  the mma / wgmma instructions in the PTX ("none": float32 FFMA on CUDA cores)

Results are cached on disk under Triton's own cache key (kernel source and its callees, signature,
constexprs, options, target, Triton and ptxas versions), so an unchanged kernel is never compiled twice.
"""
from __future__ import annotations

import json
import re
import subprocess
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass
from hashlib import sha256
from pathlib import Path

from bench.atomic import atomic_write_text
from bench.constants import user_cache_dir

MAX_REGS_PER_THREAD = 255
REGS_PER_BLOCK = 65_536  # every compute capability from 5.0 to 10.x
CACHE_VERSION = 1        # bump when what is cached changes


@dataclass(frozen=True)
class Compiled:
    """What one compiled launch needs; `error` is set (and the rest zero) when it did not compile."""
    smem_bytes: int = 0
    regs: int = 0
    spill_bytes: int = 0        # spill stores: bytes of registers written to local memory
    spill_load_bytes: int = 0
    tensor_cores: str = ""      # e.g. "mma m16n8k8 tf32 x64"; "none"
    ptx_kb: float = 0.0
    error: str = ""


class CompileError(RuntimeError):
    def __init__(self, message: str, launch) -> None:
        super().__init__(message)
        self.launch = launch


def default_cache_dir() -> Path:
    return user_cache_dir() / "kernels"


def _source(launch, backend):
    """(ASTSource, options) exactly as JITFunction.run builds them for these arguments."""
    from triton import knobs
    from triton.compiler import ASTSource
    from triton.runtime.jit import create_function_from_signature

    kernel = launch.kernel
    kwargs = dict(launch.options(), debug=kernel.debug or knobs.runtime.debug,
                  instrumentation_mode=knobs.compilation.instrumentation_mode)
    binder = create_function_from_signature(kernel.signature, kernel.params, backend)
    bound, specialization, options = binder(*launch.args, **kwargs)
    options, signature, constexprs, attrs = kernel._pack_args(backend, kwargs, bound, specialization, options)
    return ASTSource(kernel, signature, constexprs, attrs), options


def ptxas_resources(ptx: str, arch: int, options) -> tuple[int, int, int]:
    """(registers, spill store bytes, spill load bytes) from the bundled ptxas -v, with Triton's flags."""
    from triton.backends.nvidia.compiler import get_ptxas, sm_arch_from_capability

    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "kernel.ptx"
        source.write_text(ptx)
        command = [get_ptxas(arch).path, "-lineinfo", *([] if options.enable_fp_fusion else ["--fmad=false"]), "-v",
                   "--regAllocOptLevel=2", f"--gpu-name={sm_arch_from_capability(arch)}", str(source),
                   "-o", str(Path(tmp) / "kernel.cubin")]
        log = subprocess.run(command, check=True, capture_output=True, text=True).stderr
    regs = re.search(r"Used (\d+) registers", log)
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", log)
    if not regs or not spills:
        raise RuntimeError(f"unexpected ptxas -v output: {log.strip()[:200]}")
    return int(regs.group(1)), int(spills.group(1)), int(spills.group(2))


def tensor_core_use(ptx: str) -> str:
    """The tensor-core instructions in the PTX by shape and input type, e.g. "mma m16n8k8 tf32 x64"."""
    found: Counter[str] = Counter()
    for op, shape, types in re.findall(r"\b(wgmma|mma)\.[\w.]*?\b(m\d+n\d+k\d+)\b\.?([\w.]*)", ptx):
        kinds = [t for t in types.split(".") if t in ("tf32", "bf16", "f16", "f64", "e4m3", "e5m2", "s8", "u8")]
        found[f"{op} {shape} {kinds[0] if kinds else '?'}"] += 1
    return ", ".join(f"{name} x{count}" for name, count in sorted(found.items())) or "none"


class ArchTarget:
    """A Target that compiles for one architecture instead of running (see the module docstring)."""

    def __init__(self, arch: int, smem_limit: int, cache_dir: Path | None) -> None:
        from triton.backends.compiler import GPUTarget
        from triton.compiler import make_backend

        self.arch, self.name, self.smem_limit = arch, f"sm_{arch}", smem_limit
        self.gpu_target = GPUTarget("cuda", arch, 32)
        self.backend = make_backend(self.gpu_target)
        self.cache_dir = cache_dir
        self.launched: list = []  # impls.triton_common.Fitted, in launch order
        self._memory: dict[str, Compiled] = {}

    def launch(self, fitted) -> None:
        self.launched.append(fitted)

    def shared_bytes(self, launch) -> int:
        compiled = self.compile(launch)
        if compiled.error:
            raise CompileError(f"{launch.name} did not compile for {self.name}: {compiled.error}", launch)
        return compiled.smem_bytes

    def key(self, launch) -> str:
        """Triton's own cache key for this compile, plus what this module adds (ptxas flags, format)."""
        from triton._C.libtriton import get_cache_invalidating_env_vars
        from triton.runtime.cache import get_cache_key

        source, options = _source(launch, self.backend)
        key = get_cache_key(source, self.backend, options, get_cache_invalidating_env_vars())
        return sha256(f"{key}-aot{CACHE_VERSION}".encode()).hexdigest()

    def compile(self, launch) -> Compiled:
        key = self.key(launch)
        if key not in self._memory:
            self._memory[key] = self._cached(key) or self._compile(launch, key)
        return self._memory[key]

    def _cached(self, key: str) -> Compiled | None:
        path = self.cache_dir / f"{key}.json" if self.cache_dir else None
        if path is None or not path.exists():
            return None
        try:
            return Compiled(**json.loads(path.read_text()))
        except (ValueError, TypeError):  # a torn or older entry: compile again
            return None

    def _compile(self, launch, key: str) -> Compiled:
        import triton

        source, options = _source(launch, self.backend)
        try:
            kernel = triton.compile(source, target=self.gpu_target, options=options.__dict__)
            ptx = kernel.asm["ptx"]
            regs, spill_stores, spill_loads = ptxas_resources(ptx, self.arch, options)
            compiled = Compiled(kernel.metadata.shared, regs, spill_stores, spill_loads, tensor_core_use(ptx),
                                round(len(ptx.encode()) / 1024, 1))
        except Exception as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else ""
            return Compiled(error=f"{type(error).__name__}: {first}"[:300])
        if self.cache_dir:
            atomic_write_text(self.cache_dir / f"{key}.json", json.dumps(asdict(compiled)))
        return compiled


def launchable(compiled: Compiled, num_warps: int, smem_limit: int, arch_name: str) -> str:
    """Why this compiled launch cannot launch on the architecture ("" when it can)."""
    if compiled.error:
        return compiled.error
    if compiled.smem_bytes > smem_limit:
        return f"needs {compiled.smem_bytes:,} B of shared memory per block; {arch_name} offers {smem_limit:,} B"
    if compiled.regs > MAX_REGS_PER_THREAD:
        return f"{compiled.regs} registers a thread; at most {MAX_REGS_PER_THREAD}"
    if compiled.regs * 32 * num_warps > REGS_PER_BLOCK:
        return f"{compiled.regs} registers x {32 * num_warps} threads is over {REGS_PER_BLOCK:,} a block"
    return ""
