"""`triton-step`: cuBLAS for h_{t-1} W_hh^T, then one fused Triton kernel per step for everything after it.

The per-step design, kept beside the persistent `triton` (impls/triton_lstm.py) so a report shows what
launching twice per step and layer costs against once per sequence.

Legend: B batch, T time steps, D input features, H hidden size, G = 4H gate pre-activations in
nn.LSTM's order (i, f, g, o): i input gate, f forget gate, g candidate, o output gate.

Reference math (impls.cells.lstm_pointwise; the tests compare against torch.nn.LSTM):

    x_proj = x W_ih^T + b_ih + b_hh                      (T, B, G)  one matmul for all steps
    gates  = x_proj[t] + h_{t-1} W_hh^T                  (B, G)     a library matmul per step
    i, f, o = sigmoid(gates_i, gates_f, gates_o);  g = tanh(gates_g)
    c_t = f * c_{t-1} + i * g;   h_t = o * tanh(c_t)

Backward, per step from dh_t (= dout_t + dgates_{t+1} W_hh) and dc_t:

    do = dh_t * tanh(c_t);   dc = dc_t + dh_t * o * (1 - tanh(c_t)^2)
    di = dc * g;  df = dc * c_{t-1};  dg = dc * i;  dc_{t-1} = dc * f
    dgates = (di i(1-i), df f(1-f), dg (1-g^2), do o(1-o))

dW_hh, dW_ih, the biases and dx are then a few large matmuls over all T at once, as cuDNN does.

Runs compiled on CUDA, or on CPU under the Triton interpreter (TRITON_INTERPRET=1 set before this
module is imported), which has no libdevice and no bfloat16: there sigmoid is the exp formula and tanh
goes through sigmoid; compiled, a constexpr branch uses libdevice tanh and tl.sigmoid, so float32 matches
torch to about 1e-6. Arithmetic is float32 inside the kernels (float64 for float64 tensors, so gradcheck
works); h and the gate activations are stored in the tensor's dtype, c always in float32 (float64), since
rounding the cell state to half precision every step drifts.
"""
from __future__ import annotations

import contextlib
import os

import torch
import triton
import triton.language as tl
from triton.language.extra import libdevice

from impls.base import LSTMBase
from impls.cells import input_projection

INTERPRETING = os.environ.get("TRITON_INTERPRET") == "1"
# Read by the kernels as a compile-time constant: the interpreter has no libdevice.
LIBDEVICE = tl.constexpr(not INTERPRETING)


# ----------------------------------------------------------------------------------------- kernels

@triton.jit
def _sigmoid(x):
    if LIBDEVICE:
        return tl.sigmoid(x)
    else:
        return 1.0 / (1.0 + tl.exp(-x))


@triton.jit
def _tanh(x):
    if LIBDEVICE:
        return libdevice.tanh(x)
    else:
        # Exact in real arithmetic; the interpreter's stand-in for libdevice tanh.
        return 2.0 * (1.0 / (1.0 + tl.exp(-2.0 * x))) - 1.0


@triton.jit
def _preactivation(x_proj_ptr, rec_ptr, offs, mask, COMPUTE: tl.constexpr):
    # Both halves are rounded to the tensor dtype already; the sum is not, in float32.
    return tl.load(x_proj_ptr + offs, mask=mask).to(COMPUTE) + tl.load(rec_ptr + offs, mask=mask).to(COMPUTE)


@triton.jit
def lstm_step_fwd_kernel(
    x_proj_ptr,  # (B, G) input projection of this step, both biases included
    rec_ptr,     # (B, G) h_{t-1} W_hh^T from the library matmul
    c_prev_ptr,  # (B, H) float32 (float64)
    h_ptr,       # (B, H) out: h_t
    c_ptr,       # (B, H) out: c_t, float32 (float64)
    acts_ptr,    # (B, G) out: i, f, g, o after their nonlinearities, for the backward
    B, H,
    COMPUTE: tl.constexpr, SAVE_ACTS: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    cols = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    mask = (rows[:, None] < B) & (cols[None, :] < H)
    # One program owns the same hidden units of all four gates, so the cell update needs no exchange.
    gate_offs = rows[:, None] * (4 * H) + cols[None, :]
    state_offs = rows[:, None] * H + cols[None, :]

    i = _sigmoid(_preactivation(x_proj_ptr, rec_ptr, gate_offs, mask, COMPUTE))
    f = _sigmoid(_preactivation(x_proj_ptr, rec_ptr, gate_offs + H, mask, COMPUTE))
    g = _tanh(_preactivation(x_proj_ptr, rec_ptr, gate_offs + 2 * H, mask, COMPUTE))
    o = _sigmoid(_preactivation(x_proj_ptr, rec_ptr, gate_offs + 3 * H, mask, COMPUTE))
    c_prev = tl.load(c_prev_ptr + state_offs, mask=mask).to(COMPUTE)

    c = f * c_prev + i * g
    h = o * _tanh(c)

    tl.store(c_ptr + state_offs, c.to(c_ptr.dtype.element_ty), mask=mask)
    tl.store(h_ptr + state_offs, h.to(h_ptr.dtype.element_ty), mask=mask)
    if SAVE_ACTS:  # inference never runs the backward, so it skips these 4H writes per row
        out_ty = acts_ptr.dtype.element_ty
        tl.store(acts_ptr + gate_offs, i.to(out_ty), mask=mask)
        tl.store(acts_ptr + gate_offs + H, f.to(out_ty), mask=mask)
        tl.store(acts_ptr + gate_offs + 2 * H, g.to(out_ty), mask=mask)
        tl.store(acts_ptr + gate_offs + 3 * H, o.to(out_ty), mask=mask)


@triton.jit
def lstm_step_bwd_kernel(
    dh_ptr,      # (B, H) dL/dh_t, the output's gradient plus the recurrent one
    dc_ptr,      # (B, H) float32 (float64): dL/dc_t in, dL/dc_{t-1} out; one program reads then writes each element
    acts_ptr,    # (B, G) i, f, g, o saved by the forward
    c_ptr,       # (B, H) c_t, float32 (float64)
    c_prev_ptr,  # (B, H) c_{t-1}, float32 (float64)
    dgates_ptr,  # (B, G) out: gradient of the gate pre-activations
    B, H,
    COMPUTE: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    cols = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    mask = (rows[:, None] < B) & (cols[None, :] < H)
    gate_offs = rows[:, None] * (4 * H) + cols[None, :]
    state_offs = rows[:, None] * H + cols[None, :]

    i = tl.load(acts_ptr + gate_offs, mask=mask).to(COMPUTE)
    f = tl.load(acts_ptr + gate_offs + H, mask=mask).to(COMPUTE)
    g = tl.load(acts_ptr + gate_offs + 2 * H, mask=mask).to(COMPUTE)
    o = tl.load(acts_ptr + gate_offs + 3 * H, mask=mask).to(COMPUTE)
    c = tl.load(c_ptr + state_offs, mask=mask).to(COMPUTE)
    c_prev = tl.load(c_prev_ptr + state_offs, mask=mask).to(COMPUTE)
    dh = tl.load(dh_ptr + state_offs, mask=mask).to(COMPUTE)
    dc = tl.load(dc_ptr + state_offs, mask=mask).to(COMPUTE)

    # Recomputing tanh(c_t) costs less than storing and reloading it.
    tanh_c = _tanh(c)
    dc = dc + dh * o * (1.0 - tanh_c * tanh_c)
    d_i = dc * g * i * (1.0 - i)
    d_f = dc * c_prev * f * (1.0 - f)
    d_g = dc * i * (1.0 - g * g)
    d_o = dh * tanh_c * o * (1.0 - o)

    out_ty = dgates_ptr.dtype.element_ty
    tl.store(dgates_ptr + gate_offs, d_i.to(out_ty), mask=mask)
    tl.store(dgates_ptr + gate_offs + H, d_f.to(out_ty), mask=mask)
    tl.store(dgates_ptr + gate_offs + 2 * H, d_g.to(out_ty), mask=mask)
    tl.store(dgates_ptr + gate_offs + 3 * H, d_o.to(out_ty), mask=mask)
    tl.store(dc_ptr + state_offs, (dc * f).to(dc_ptr.dtype.element_ty), mask=mask)


# --------------------------------------------------------------------------------------- launchers

def _compute_dtype(dtype: torch.dtype):
    return tl.float64 if dtype == torch.float64 else tl.float32


def wide_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype c and dc are kept in: float64 for float64, float32 for everything else."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _pow2(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


def _blocks(batch: int, hidden: int) -> tuple[int, int]:
    """(BLOCK_B, BLOCK_H). Interpreted, every program is a slow Python pass, so one covers it all;
    compiled, about 1024 elements per program keeps 4 warps busy and still gives many programs."""
    block_b, block_h = _pow2(batch), _pow2(hidden)
    if INTERPRETING:
        return block_b, block_h
    block_h = min(block_h, 128)
    return min(block_b, max(1, 1024 // block_h)), block_h


def _grid(batch: int, hidden: int, block_b: int, block_h: int) -> tuple[int, int]:
    return -(-batch // block_b), -(-hidden // block_h)


def _device_scope(t: torch.Tensor):
    # Triton launches on the current CUDA device; the tensor's may be another one.
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


def _check(name: str, t: torch.Tensor, shape: tuple, like: torch.Tensor, dtype: torch.dtype | None = None) -> None:
    if tuple(t.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(t.shape)}")
    if not t.is_contiguous():
        raise ValueError(f"{name} must be contiguous")
    if t.device != like.device or t.dtype != (dtype or like.dtype):
        raise ValueError(f"{name} must be {dtype or like.dtype} on {like.device}, got {t.dtype} on {t.device}")


class _Plan:
    """Block sizes, grid and constexprs of one sequence, computed once rather than at every step."""

    def __init__(self, batch: int, hidden: int, dtype: torch.dtype) -> None:
        self.batch, self.hidden = batch, hidden
        self.block_b, self.block_h = _blocks(batch, hidden)
        self.grid = _grid(batch, hidden, self.block_b, self.block_h)
        self.compute = _compute_dtype(dtype)

    def fwd(self, x_proj, rec, c_prev, h, c, acts) -> None:
        lstm_step_fwd_kernel[self.grid](
            x_proj, rec, c_prev, h, c, acts if acts is not None else h, self.batch, self.hidden,
            COMPUTE=self.compute, SAVE_ACTS=acts is not None, BLOCK_B=self.block_b, BLOCK_H=self.block_h,
        )

    def bwd(self, dh, dc, acts, c, c_prev, dgates) -> None:
        lstm_step_bwd_kernel[self.grid](
            dh, dc, acts, c, c_prev, dgates, self.batch, self.hidden,
            COMPUTE=self.compute, BLOCK_B=self.block_b, BLOCK_H=self.block_h,
        )


def lstm_step_fwd(x_proj, rec, c_prev, h, c, acts=None) -> None:
    """One checked step: writes h_t (B, H) and c_t (B, H, float32 or float64) and, when acts (B, G)
    is given, the gate activations. The recurrence below checks its buffers once per sequence instead."""
    batch, gates = x_proj.shape
    hidden = gates // 4
    wide = wide_dtype(x_proj.dtype)
    _check("x_proj", x_proj, (batch, 4 * hidden), x_proj)
    _check("rec", rec, (batch, gates), x_proj)
    _check("h", h, (batch, hidden), x_proj)
    for name, t in (("c_prev", c_prev), ("c", c)):
        _check(name, t, (batch, hidden), x_proj, dtype=wide)
    if acts is not None:
        _check("acts", acts, (batch, gates), x_proj)
    with _device_scope(x_proj):
        _Plan(batch, hidden, x_proj.dtype).fwd(x_proj, rec, c_prev, h, c, acts)


def lstm_step_bwd(dh, dc, acts, c, c_prev, dgates) -> None:
    """One checked step: writes dgates (B, G) and overwrites dc (B, H, float32 or float64) with dL/dc_{t-1}."""
    batch, gates = acts.shape
    hidden = gates // 4
    wide = wide_dtype(acts.dtype)
    _check("acts", acts, (batch, 4 * hidden), acts)
    _check("dgates", dgates, (batch, gates), acts)
    _check("dh", dh, (batch, hidden), acts)
    for name, t in (("dc", dc), ("c", c), ("c_prev", c_prev)):
        _check(name, t, (batch, hidden), acts, dtype=wide)
    with _device_scope(acts):
        _Plan(batch, hidden, acts.dtype).bwd(dh, dc, acts, c, c_prev, dgates)


# ------------------------------------------------------------------- the recurrence and its autograd.Function

def run_recurrence(x_proj, h0, c0, w_hh, save_acts: bool):
    """-> hs (T+1, B, H), cs (T+1, B, H; float32 or float64), acts (T, B, G) or None; index 0 holds h0 and c0."""
    steps, batch, gates = x_proj.shape
    hidden = gates // 4
    x_proj = x_proj.contiguous()
    # Step t reads index t and writes t + 1, so hs[:-1] is the stacked h_{t-1} that the weight
    # gradient needs, without a copy.
    hs = x_proj.new_empty(steps + 1, batch, hidden)
    cs = x_proj.new_empty(steps + 1, batch, hidden, dtype=wide_dtype(x_proj.dtype))
    hs[0], cs[0] = h0, c0
    acts = x_proj.new_empty(steps, batch, gates) if save_acts else None
    rec = x_proj.new_empty(batch, gates)
    w_hh_t = w_hh.t()
    plan = _Plan(batch, hidden, x_proj.dtype)
    with _device_scope(x_proj):
        for t in range(steps):
            torch.mm(hs[t], w_hh_t, out=rec)
            plan.fwd(x_proj[t], rec, cs[t], hs[t + 1], cs[t + 1], acts[t] if acts is not None else None)
    return hs, cs, acts


class LSTMRecurrence(torch.autograd.Function):
    """(x_proj (T, B, G), h0 (B, H), c0 (B, H), w_hh (G, H)) -> (out (T, B, H), c_n (B, H)); h_n = out[-1]."""

    @staticmethod
    def forward(ctx, x_proj, h0, c0, w_hh):
        hs, cs, acts = run_recurrence(x_proj, h0, c0, w_hh, save_acts=True)
        ctx.save_for_backward(hs, cs, acts, w_hh)
        return hs[1:], cs[-1].to(x_proj.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dout, dc_n):
        hs, cs, acts, w_hh = ctx.saved_tensors
        steps, batch, gates = acts.shape
        hidden = gates // 4
        # dc stays in float32 (float64) across steps, not the tensor dtype: rounding it each step drifts.
        # A fresh buffer, because the kernel overwrites it and dc_n belongs to autograd's caller.
        dc = acts.new_zeros(batch, hidden, dtype=cs.dtype)
        if dc_n is not None:
            dc.copy_(dc_n)
        dout = dout if dout is not None else acts.new_zeros(steps, batch, hidden)
        dgates = torch.empty_like(acts)
        plan = _Plan(batch, hidden, acts.dtype)
        with _device_scope(acts):
            for t in reversed(range(steps)):
                dh = dout[t].contiguous() if t == steps - 1 else torch.addmm(dout[t], dgates[t + 1], w_hh)
                plan.bwd(dh, dc, acts[t], cs[t + 1], cs[t], dgates[t])
        flat = dgates.view(steps * batch, gates)
        d_x_proj = dgates if ctx.needs_input_grad[0] else None
        d_h0 = dgates[0] @ w_hh if ctx.needs_input_grad[1] else None
        d_c0 = dc.to(acts.dtype) if ctx.needs_input_grad[2] else None
        d_w_hh = flat.t() @ hs[:-1].reshape(steps * batch, hidden) if ctx.needs_input_grad[3] else None
        return d_x_proj, d_h0, d_c0, d_w_hh


# ------------------------------------------------------------------------------------------ module

class TritonStepLSTM(LSTMBase):
    """Drop-in torch.nn.LSTM (same parameters and state_dict) whose per-step pointwise work is Triton."""

    def _layer(self, x, h0, c0, w_ih, w_hh, b_ih, b_hh):
        # The input projection does not depend on h: one matmul for all T; autograd turns dx_proj
        # into dx, dW_ih and the biases as large matmuls too.
        x_proj = input_projection(x, w_ih, b_ih, b_hh)
        h0, c0 = h0.contiguous(), c0.contiguous()
        if torch.is_grad_enabled() and any(t.requires_grad for t in (x_proj, h0, c0, w_hh)):
            out, c_n = LSTMRecurrence.apply(x_proj, h0, c0, w_hh)
        else:  # inference: no graph, and no gate activations kept for a backward that never comes
            hs, cs, _ = run_recurrence(x_proj, h0, c0, w_hh, save_acts=False)
            out, c_n = hs[1:], cs[-1].to(x_proj.dtype)
        return out, out[-1], c_n
