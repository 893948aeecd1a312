"""What the two Triton backends share: the gate math as @triton.jit helpers, how a launch is planned and fitted
to the GPU it runs on, the module skeleton both are built on (`triton` overrides its per-layer step to run both
directions in one launch), the per-direction autograd.Function of `triton-step`, and the reverse-step index
(a row's s-th reverse step reads time L - 1 - s) both use.

Legend: B batch, T time steps, D input features, H hidden size, G = 4H gate pre-activations in nn.LSTM's order
(i, f, g, o); "wide" is the dtype c and dc are kept in: float32, or float64 for float64 tensors.

Reference math (impls.cells; the tests compare against torch.nn.LSTM):

    i, f, o = sigmoid(gates_i, gates_f, gates_o);  g = tanh(gates_g)
    c_t = f c_{t-1} + i g;   h_t = o tanh(c_t)
    backward: dc = dc_t + dh_t o (1 - tanh(c_t)^2);  dc_{t-1} = dc f
              dgates = (dc g i(1-i), dc c_{t-1} f(1-f), dc i (1-g^2), dh_t tanh(c_t) o(1-o))

A wrapper never launches a kernel directly: it builds `Launch` records (kernel, grid, arguments, constexprs,
num_warps, num_stages) for the configurations it would accept, best first; `fit` keeps the first whose compiled
shared memory fits the device's per-block limit, and the device's `Target` runs it. On CUDA the target compiles
for the current GPU and reads the limit from its properties; under the interpreter there is no limit; `bench
kernels` installs a target that compiles ahead of time for a listed architecture and records instead of running
(`use_target`), so the table shows exactly what the wrappers launch, from this code and no copy of it.
"""
from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import torch
import triton
import triton.language as tl
from triton.language.extra import libdevice

from impls.base import LSTMBase, step_mask
from impls.cells import input_projection

INTERPRETING = os.environ.get("TRITON_INTERPRET") == "1"
# Read by the kernels as a compile-time constant: the interpreter has no libdevice.
LIBDEVICE = tl.constexpr(not INTERPRETING)

# Opt-in shared memory per block, bytes, by compute capability: where torch reports none, and for `bench kernels`.
SMEM_PER_BLOCK = {80: 166_912, 86: 101_376, 87: 166_912, 89: 101_376, 90: 232_448}


# ------------------------------------------------------------------------------------- @triton.jit helpers

@triton.jit
def sigmoid(x):
    if LIBDEVICE:
        return tl.sigmoid(x)
    else:
        return 1.0 / (1.0 + tl.exp(-x))


@triton.jit
def tanh(x):
    if LIBDEVICE:
        return libdevice.tanh(x)
    else:
        # Exact in real arithmetic; the interpreter's stand-in for libdevice tanh.
        return 2.0 * (1.0 / (1.0 + tl.exp(-2.0 * x))) - 1.0


@triton.jit
def cell(x_i, x_f, x_g, x_o, c_prev):
    """Gate pre-activations and c_{t-1} -> (i, f, g, o, c_t, h_t)."""
    i = sigmoid(x_i)
    f = sigmoid(x_f)
    g = tanh(x_g)
    o = sigmoid(x_o)
    c = f * c_prev + i * g
    return i, f, g, o, c, o * tanh(c)


@triton.jit
def cell_grad(dh, dc, i, f, g, o, c, c_prev):
    """dh_t, dc_t and the step's saved values -> (d_i, d_f, d_g, d_o, dc_{t-1}), pre-activation gradients."""
    tanh_c = tanh(c)  # recomputed: cheaper than storing and reloading it
    dc = dc + dh * o * (1.0 - tanh_c * tanh_c)
    return dc * g * i * (1.0 - i), dc * c_prev * f * (1.0 - f), dc * i * (1.0 - g * g), \
        dh * tanh_c * o * (1.0 - o), dc * f


@triton.jit
def load4(ptr, offs, stride, mask, TYPE: tl.constexpr):
    """The four gates' blocks at offs, offs + stride, offs + 2 stride, offs + 3 stride, as TYPE."""
    return (tl.load(ptr + offs, mask=mask, other=0.0).to(TYPE),
            tl.load(ptr + offs + stride, mask=mask, other=0.0).to(TYPE),
            tl.load(ptr + offs + 2 * stride, mask=mask, other=0.0).to(TYPE),
            tl.load(ptr + offs + 3 * stride, mask=mask, other=0.0).to(TYPE))


@triton.jit
def store4(ptr, offs, stride, a, b, c, d, mask):
    """Stores four gates' blocks (rounded to ptr's dtype) at offs, offs + stride, offs + 2 stride, offs + 3 stride."""
    ty = ptr.dtype.element_ty
    tl.store(ptr + offs, a.to(ty), mask=mask)
    tl.store(ptr + offs + stride, b.to(ty), mask=mask)
    tl.store(ptr + offs + 2 * stride, c.to(ty), mask=mask)
    tl.store(ptr + offs + 3 * stride, d.to(ty), mask=mask)


@triton.jit
def _tf32(x):
    # TF32 keeps 10 of float32's 23 mantissa bits. The compiled dot hands float32 registers to mma .tf32 with no
    # cvt.rna before (none in the PTX), so the low 13 bits go unused: emulated as truncation, the larger error.
    return (x.to(tl.uint32, bitcast=True) & 0xFFFFE000).to(tl.float32, bitcast=True)


@triton.jit
def dot(a, b, PRECISION: tl.constexpr):
    """a @ b, accumulated in float32 (float64 for float64). PRECISION "ieee" keeps float32 on CUDA cores (FFMA);
    "tf32" puts it on tensor cores (mma). For bfloat16/float16 operands it changes nothing."""
    if PRECISION == "tf32" and not LIBDEVICE and a.dtype == tl.float32:
        # The interpreter ignores input_precision: cut the operands to TF32 here, so tests see its error.
        return tl.dot(_tf32(a), _tf32(b), input_precision="ieee")
    else:
        return tl.dot(a, b, input_precision=PRECISION)


# ----------------------------------------------------------------------------------------- host helpers

def pow2(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


def wide_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype c and dc are kept in: float64 for float64, float32 for everything else."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def compute_dtype(dtype: torch.dtype):
    return tl.float64 if dtype == torch.float64 else tl.float32


def dot_precision(dtype: torch.dtype) -> str:
    """The recurrent tl.dot's input_precision: TF32 for float32 only where the run allows it for matmuls
    (config.tf32 sets torch.backends.cuda.matmul.allow_tf32); IEEE float32 otherwise; moot for half types."""
    if dtype == torch.float32:
        return "tf32" if torch.backends.cuda.matmul.allow_tf32 else "ieee"
    return "ieee" if dtype == torch.float64 else "tf32"


def check(name: str, t: torch.Tensor, shape: tuple, dtype: torch.dtype, device: torch.device) -> None:
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(t.shape)}")
    if not t.is_contiguous():
        raise ValueError(f"{name} must be contiguous")
    if t.dtype != dtype or t.device != device:
        raise ValueError(f"{name} must be {dtype} on {device}, got {t.dtype} on {t.device}")


def device_scope(t: torch.Tensor):
    # Triton launches on the current CUDA device; the tensor's may be another one.
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


# ------------------------------------------------------------------------------- launches and targets

@dataclass(frozen=True)
class Launch:
    """One kernel launch exactly as a wrapper makes it."""
    kernel: Any            # the @triton.jit kernel
    grid: tuple[int, ...]
    args: tuple            # the runtime arguments in the kernel's order: tensors and ints
    constexprs: dict       # the CAPS compile-time arguments
    num_warps: int
    num_stages: int        # how many iterations ahead loop loads are buffered in shared memory
    path: str              # "resident", "streaming" or "step": the code the constexprs select

    @property
    def name(self) -> str:
        return self.kernel.fn.__name__

    def options(self) -> dict:
        return dict(self.constexprs, num_warps=self.num_warps, num_stages=self.num_stages)

    def describe(self) -> str:
        return f"{self.path} path, num_stages {self.num_stages}"


@dataclass(frozen=True)
class Fitted:
    """The launch `fit` chose for a device, and what the choice cost."""
    launch: Launch
    note: str = ""     # the faster configurations the device's shared memory ruled out ("" when none was)
    problem: str = ""  # why even this launch cannot run on the device ("" when it can)

    def again(self, launch: Launch) -> Fitted:
        """The same verdict for another launch of the same configuration (the next step's)."""
        return Fitted(launch, self.note, self.problem)


class Target(Protocol):
    """Where launches go: the current GPU, the interpreter, or `bench kernels`' compiler for one architecture."""
    name: str
    smem_limit: int | None  # opt-in shared memory per block, bytes; None: no limit (the interpreter)

    def shared_bytes(self, launch: Launch) -> int: ...
    def launch(self, fitted: Fitted) -> None: ...


class LaunchError(RuntimeError):
    """No configuration a wrapper accepts fits the device."""


# Notes on slower configurations a device forced, by kernel name, for the runs' impl_detail (see `launch_notes`).
NOTES: dict[str, str] = {}


class _Local:
    """The interpreter (no limit) or a CUDA device (its limit; Triton's compiled metadata says what a launch needs)."""

    def __init__(self, device: torch.device) -> None:
        self.name, self.smem_limit = str(device), None
        if device.type == "cuda":
            props = torch.cuda.get_device_properties(device)
            self.name = f"{props.name} (sm_{props.major}{props.minor})"
            self.smem_limit = getattr(props, "shared_memory_per_block_optin", 0) or \
                SMEM_PER_BLOCK.get(10 * props.major + props.minor, props.shared_memory_per_block)

    def shared_bytes(self, launch: Launch) -> int:
        return launch.kernel.warmup(*launch.args, grid=launch.grid, **launch.options()).metadata.shared

    def launch(self, fitted: Fitted) -> None:
        if fitted.problem:
            raise LaunchError(fitted.problem)
        launch = fitted.launch
        if fitted.note:
            NOTES[launch.name] = fitted.note
        launch.kernel[launch.grid](*launch.args, **launch.options())


_TARGET: contextvars.ContextVar[Target | None] = contextvars.ContextVar("triton_launch_target", default=None)
_LOCAL: dict[torch.device, _Local] = {}


@contextlib.contextmanager
def use_target(target: Target):
    """Every launch inside goes to `target` (for `bench kernels`: compile for an architecture, record)."""
    token = _TARGET.set(target)
    try:
        yield target
    finally:
        _TARGET.reset(token)


def target_for(device: torch.device) -> Target:
    installed = _TARGET.get()
    if installed is not None:
        return installed
    key = torch.device("cuda", torch.cuda.current_device()) if device.type == "cuda" and device.index is None \
        else device
    if key not in _LOCAL:
        _LOCAL[key] = _Local(key)
    return _LOCAL[key]


_FITTED: dict[tuple, tuple[int, str, str]] = {}


def launch_key(launch: Launch) -> tuple:
    """What compiling `launch` depends on: kernel, constexprs, warps, stages, argument dtypes, alignments, ints."""
    def arg_key(a):
        return (a.dtype, a.data_ptr() % 16 == 0) if isinstance(a, torch.Tensor) else a
    return (launch.name, tuple(sorted(launch.constexprs.items(), key=str)), launch.num_warps, launch.num_stages,
            tuple(map(arg_key, launch.args)))


def _fit_key(candidates: list[Launch], target: Target) -> tuple:
    # The wrappers derive the rest of the list from the first candidate, so it and the length identify the list.
    return target.name, target.smem_limit, len(candidates), launch_key(candidates[0])


def _choose(candidates: list[Launch], target: Target, limit: int) -> tuple[int, str, str]:
    # limit: target.smem_limit, known here (fit() returns early where there is none)
    tried: list[str] = []
    for index, launch in enumerate(candidates):
        need = target.shared_bytes(launch)
        if need <= limit:
            note = f"{launch.name} runs {launch.describe()}: {'; '.join(tried)} of shared memory per block, " \
                   f"{target.name} offers {limit:,} B" if tried else ""
            return index, note, ""
        tried.append(f"{launch.describe()} needs {need:,} B")
    return len(candidates) - 1, "", (f"{launch.name} cannot launch on {target.name}: even {launch.describe()} needs "
                                     f"{need:,} B of shared memory per block, it offers {limit:,} B")


def fit(candidates: list[Launch], target: Target) -> Fitted:
    """The first candidate whose compiled shared memory fits `target`'s per-block limit, with a note naming the
    faster configurations that did not; when none fits, the last, with the problem. Remembered per shape."""
    if target.smem_limit is None:
        return Fitted(candidates[0])
    key = _fit_key(candidates, target)
    if key not in _FITTED:
        _FITTED[key] = _choose(candidates, target, target.smem_limit)
    index, note, problem = _FITTED[key]
    return Fitted(candidates[index], note, problem)


def launch_notes(kernels: tuple) -> list[str]:
    """The slower configurations a device forced on `kernels` in this process, one line each."""
    return [NOTES[k.fn.__name__] for k in kernels if k.fn.__name__ in NOTES]


# ----------------------------------------------------------------------- autograd.Function and module

def reverse_step_index(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """lengths (B,) -> (T, B) int64: the time that a reverse direction's step s reads for each row, L - 1 - s,
    and s itself past the row's length L. A permutation of each row's times, and its own inverse."""
    time = torch.arange(steps, device=lengths.device)[:, None]
    length = lengths.to(torch.long)[None, :]
    return torch.where(time < length, length - 1 - time, time)


def by_index(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x (T, B, F) with its rows of every b reordered in time by index (T, B): x[index[t, b], b]."""
    return x.gather(0, index[..., None].expand_as(x))


def recurrence_function(name: str, forward: Callable, backward: Callable, doc: str) -> type:
    """The autograd.Function of a one-direction recurrence in step order (`triton-step`); H_out = P or H.

    forward(x_proj (T, B, G), h0 (B, H_out), c0 (B, H), w_hh (G, H_out), save_acts, lengths (B,) int32, w_hr (P, H)
        or None) -> hs (T+1, B, H_out), cs (T+1, B, H; wide), acts (T, B, G) or None, raw (T+1, B, H) the h before
        the projection, or None without one; index 0 holds h0 and c0, and a row past its length repeats its state.
    backward(dout (T, B, H_out), dc_n or None, hs, cs, acts, w_hh, lengths, raw, w_hr) -> dgates (T, B, G), dh0,
        dc0, dproj (T, B, P) the gradient of each projected h_s, or None.
    dW_hh (and dW_hr) are one matmul over every step at once (dgates is zero where a row was past its length);
    dx, dW_ih and the biases come from autograd through the input projection."""

    def forward_(ctx, x_proj, h0, c0, w_hh, lengths, w_hr=None):
        w_hr = None if w_hr is None else w_hr.contiguous()
        hs, cs, acts, raw = forward(x_proj.contiguous(), h0.contiguous(), c0.contiguous(), w_hh.contiguous(), True,
                                    lengths, w_hr)
        ctx.save_for_backward(hs, cs, acts, w_hh, lengths, raw, w_hr)
        return hs[1:], cs[-1].to(x_proj.dtype)

    @torch.autograd.function.once_differentiable
    def backward_(ctx, dout, dc_n):
        hs, cs, acts, w_hh, lengths, raw, w_hr = ctx.saved_tensors
        rows, wants = acts.shape[0] * acts.shape[1], ctx.needs_input_grad
        dout = torch.zeros_like(hs[1:]) if dout is None else dout.contiguous()
        dgates, dh0, dc0, dproj = backward(dout, dc_n, hs, cs, acts, w_hh.contiguous(), lengths, raw, w_hr)
        d_w_hh = dgates.reshape(rows, -1).t() @ hs[:-1].reshape(rows, -1) if wants[3] else None
        d_w_hr = dproj.reshape(rows, -1).t() @ raw[1:].reshape(rows, -1) if w_hr is not None and wants[5] else None
        return (dgates if wants[0] else None, dh0.to(acts.dtype) if wants[1] else None,
                dc0.to(acts.dtype) if wants[2] else None, d_w_hh, None, d_w_hr)[:len(wants)]

    return type(name, (torch.autograd.Function,),
                {"forward": staticmethod(forward_), "backward": staticmethod(backward_), "__doc__": doc})


class TritonLSTMBase(LSTMBase):
    """Drop-in torch.nn.LSTM (same parameters and state_dict): per layer and direction, one input-projection
    matmul for all T, then the backend's recurrence in step order. Subclasses name their autograd.Function, its
    forward and their kernels (or override `_run_layer` to run both directions at once, as `triton` does)."""
    function: ClassVar[type[torch.autograd.Function]]
    forward_only: ClassVar[Callable]   # the recurrence's forward, as staticmethod
    kernels: ClassVar[tuple] = ()

    def _layer(self, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr=None, lengths=None, reverse=False):
        # x_proj does not depend on h: one matmul for all T; autograd turns dx_proj into dx, dW_ih and the
        # biases as large matmuls too.
        x_proj = input_projection(x, w_ih, b_ih, b_hh)
        steps, batch = x_proj.shape[:2]
        lengths32 = torch.full((batch,), steps, dtype=torch.int32, device=x.device) if lengths is None \
            else lengths.to(torch.int32)
        # The reverse direction as a forward run over each row's own steps reversed (one gather either side).
        order = reverse_step_index(lengths32, steps) if reverse else None
        if order is not None:
            x_proj = by_index(x_proj, order)
        if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x_proj, h0, c0, w_hh, w_hr)):
            out, c_n = self.function.apply(x_proj, h0, c0, w_hh, lengths32, w_hr)
        else:  # inference: no graph, and no gate activations kept for a backward that never comes
            hs, cs, _, _ = self.forward_only(x_proj.contiguous(), h0.contiguous(), c0.contiguous(),
                                             w_hh.contiguous(), False, lengths32, w_hr)
            out, c_n = hs[1:], cs[-1].to(x_proj.dtype)
        h_n = out[-1]  # rows past their length carried their final state to the last step
        if order is not None:
            out = by_index(out, order)
        if lengths is not None:  # past a row's length its output is zero, as pad_packed_sequence leaves it
            out = out.masked_fill(~step_mask(lengths, steps), 0)
        return out, h_n, c_n

    def launch_notes(self) -> list[str]:
        """Slower configurations the GPU's shared memory forced on this backend's kernels, for impl_detail."""
        return launch_notes(self.kernels)
