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
    with proj_size P:  h'_t = h_t W_hr^T (B, P), a library matmul per step; h'_t is the output and the next
    step's recurrent input (W_hh is then (G, P)); c_t keeps width H

Backward, per step from dh_t (= dout_t + dgates_{t+1} W_hh) and dc_t:

    do = dh_t * tanh(c_t);   dc = dc_t + dh_t * o * (1 - tanh(c_t)^2)
    di = dc * g;  df = dc * c_{t-1};  dg = dc * i;  dc_{t-1} = dc * f
    dgates = (di i(1-i), df f(1-f), dg (1-g^2), do o(1-o))

dW_hh, dW_ih, the biases and dx are then a few large matmuls over all T at once, as cuDNN does
(impls.triton_common.recurrence_function).

Variable length is masked by step index in the kernels: each row carries its length L (a lengths (B,) int32
argument, the step index s a runtime int); at s >= L a row keeps h and c (so hs[T] is its final state), its gate
gradients are zero and dh, dc pass through. The recurrence runs in step order; the reverse direction is a forward
run over x_proj put in each row's own reverse order (t = L - 1 - s, one gather per layer, and one back for out),
and out is zeroed past each row's length (impls.triton_common.TritonLSTMBase). With a projection the kernels see
the raw h_t (a row past its end keeps it, so its projection repeats too) and the backward gives them
dh_t = (dout_t + dgates_{t+1} W_hh) W_hr; dW_hr is one matmul over all steps, as dW_hh.

Runs compiled on CUDA, or on CPU under the Triton interpreter (TRITON_INTERPRET=1 set before this
module is imported), which has no libdevice and no bfloat16: there sigmoid is the exp formula and tanh
goes through sigmoid; compiled, a constexpr branch uses libdevice tanh and tl.sigmoid, so float32 matches
torch to about 1e-6. Arithmetic is float32 inside the kernels (float64 for float64 tensors, so gradcheck
works); h and the gate activations are stored in the tensor's dtype, c always in float32 (float64), since
rounding the cell state to half precision every step drifts. The kernels have no loop and use no shared memory
(results/reference/kernels/); the recurrent matmul is cuBLAS's, so config.tf32 reaches it through torch.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from impls.triton_common import (
    INTERPRETING,
    Fitted,
    Launch,
    TritonLSTMBase,
    cell,
    cell_grad,
    check,
    compute_dtype,
    device_scope,
    fit,
    load4,
    pow2,
    recurrence_function,
    store4,
    target_for,
    wide_dtype,
)

NUM_WARPS = 4   # Triton's default: about 1024 elements per program (see _blocks) over 128 threads
NUM_STAGES = 3  # Triton's default; the kernels have no loop, so nothing is pipelined


# ----------------------------------------------------------------------------------------- kernels

@triton.jit(do_not_specialize=["step"])
def lstm_step_fwd_kernel(
    x_proj_ptr,   # (B, G) input projection of this step, both biases included
    rec_ptr,      # (B, G) h_{s-1} W_hh^T from the library matmul
    h_prev_ptr,   # (B, H) h_{s-1}: what a row past its length keeps
    c_prev_ptr,   # (B, H) float32 (float64)
    lengths_ptr,  # (B,) int32: each row's length, 1..T
    h_ptr,        # (B, H) out: h_s
    c_ptr,        # (B, H) out: c_s, float32 (float64)
    acts_ptr,     # (B, G) out: i, f, g, o after their nonlinearities, for the backward
    step, B, H,   # step: s, this step's index in the direction's own order (one compile for every step)
    COMPUTE: tl.constexpr, SAVE_ACTS: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    cols = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    mask = (rows[:, None] < B) & (cols[None, :] < H)
    # Past its length (step >= L) a row keeps h and c: the final state is the one at its own last step.
    inside = (step < tl.load(lengths_ptr + rows, mask=rows < B, other=0))[:, None]
    # One program owns the same hidden units of all four gates, so the cell update needs no exchange.
    gate_offs = rows[:, None] * (4 * H) + cols[None, :]
    state_offs = rows[:, None] * H + cols[None, :]
    # Both halves are rounded to the tensor dtype already; their sum is not, in float32.
    x_i, x_f, x_g, x_o = load4(x_proj_ptr, gate_offs, H, mask, COMPUTE)
    r_i, r_f, r_g, r_o = load4(rec_ptr, gate_offs, H, mask, COMPUTE)
    c_prev = tl.load(c_prev_ptr + state_offs, mask=mask).to(COMPUTE)
    i, f, g, o, c, h = cell(x_i + r_i, x_f + r_f, x_g + r_g, x_o + r_o, c_prev)
    h_prev = tl.load(h_prev_ptr + state_offs, mask=mask & ~inside, other=0.0)  # read only for rows past their end
    tl.store(c_ptr + state_offs, tl.where(inside, c, c_prev).to(c_ptr.dtype.element_ty), mask=mask)
    tl.store(h_ptr + state_offs, tl.where(inside, h.to(h_ptr.dtype.element_ty), h_prev), mask=mask)
    if SAVE_ACTS:  # inference never runs the backward, so it skips these 4H writes per row
        store4(acts_ptr, gate_offs, H, i, f, g, o, mask)


@triton.jit(do_not_specialize=["step"])
def lstm_step_bwd_kernel(
    dout_ptr,     # (B, H) dL/dh_s from the layer's output
    dh_ptr,       # (B, H) in: dL/dh_s through the later steps; out: the part that is not dgates W_hh (below)
    dc_ptr,       # (B, H) float32 (float64): dL/dc_s in, dL/dc_{s-1} out; one program reads then writes each element
    acts_ptr,     # (B, G) i, f, g, o saved by the forward
    c_ptr,        # (B, H) c_s, float32 (float64)
    c_prev_ptr,   # (B, H) c_{s-1}, float32 (float64)
    lengths_ptr,  # (B,) int32: each row's length, 1..T
    dgates_ptr,   # (B, G) out: gradient of the gate pre-activations, zero past a row's length
    step, B, H,   # step: s, as in the forward
    COMPUTE: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    cols = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    mask = (rows[:, None] < B) & (cols[None, :] < H)
    inside = (step < tl.load(lengths_ptr + rows, mask=rows < B, other=0))[:, None]
    gate_offs = rows[:, None] * (4 * H) + cols[None, :]
    state_offs = rows[:, None] * H + cols[None, :]
    i, f, g, o = load4(acts_ptr, gate_offs, H, mask, COMPUTE)
    c = tl.load(c_ptr + state_offs, mask=mask).to(COMPUTE)
    c_prev = tl.load(c_prev_ptr + state_offs, mask=mask).to(COMPUTE)
    dh = tl.load(dout_ptr + state_offs, mask=mask).to(COMPUTE) + tl.load(dh_ptr + state_offs, mask=mask).to(COMPUTE)
    dc = tl.load(dc_ptr + state_offs, mask=mask).to(COMPUTE)
    d_i, d_f, d_g, d_o, dc_prev = cell_grad(dh, dc, i, f, g, o, c, c_prev)
    # Past its length a step is the identity on h and c: no gate gradient, dh and dc pass through. The host
    # adds dgates W_hh to dh_ptr, so a row inside leaves 0 there and a row past its end leaves dh.
    store4(dgates_ptr, gate_offs, H, tl.where(inside, d_i, 0.0), tl.where(inside, d_f, 0.0),
           tl.where(inside, d_g, 0.0), tl.where(inside, d_o, 0.0), mask)
    tl.store(dc_ptr + state_offs, tl.where(inside, dc_prev, dc).to(dc_ptr.dtype.element_ty), mask=mask)
    tl.store(dh_ptr + state_offs, tl.where(inside, 0.0, dh).to(dh_ptr.dtype.element_ty), mask=mask)


# --------------------------------------------------------------------------------------- launchers

def _blocks(batch: int, hidden: int) -> tuple[int, int]:
    """(BLOCK_B, BLOCK_H). Interpreted, every program is a slow Python pass, so one covers it all;
    compiled, about 1024 elements per program keeps 4 warps busy and still gives many programs."""
    block_b, block_h = pow2(batch), pow2(hidden)
    if INTERPRETING:
        return block_b, block_h
    block_h = min(block_h, 128)
    return min(block_b, max(1, 1024 // block_h)), block_h


def _grid(batch: int, hidden: int, block_b: int, block_h: int) -> tuple[int, int]:
    return -(-batch // block_b), -(-hidden // block_h)


class _Plan:
    """Block sizes, grid and constexprs of one sequence, computed once rather than at every step; each kernel
    is fitted to the device at its first step, and later steps launch the same configuration."""

    def __init__(self, batch: int, hidden: int, dtype: torch.dtype) -> None:
        self.batch, self.hidden = batch, hidden
        self.block_b, self.block_h = _blocks(batch, hidden)
        self.grid = _grid(batch, hidden, self.block_b, self.block_h)
        self.compute = compute_dtype(dtype)
        self.fitted: dict[str, Fitted] = {}  # kernel name -> fit's verdict at its first step

    def _launch(self, kernel, args: tuple, step: int, like: torch.Tensor, **constexprs) -> None:
        launch = Launch(kernel, self.grid, args + (step, self.batch, self.hidden),
                        dict(COMPUTE=self.compute, **constexprs, BLOCK_B=self.block_b, BLOCK_H=self.block_h),
                        NUM_WARPS, NUM_STAGES, "step")
        target = target_for(like.device)
        if launch.name not in self.fitted:
            self.fitted[launch.name] = fit([launch], target)
        target.launch(self.fitted[launch.name].again(launch))

    def fwd(self, x_proj, rec, h_prev, c_prev, lengths, h, c, acts, step: int) -> None:
        args = (x_proj, rec, h_prev, c_prev, lengths, h, c, acts if acts is not None else h)
        self._launch(lstm_step_fwd_kernel, args, step, x_proj, SAVE_ACTS=acts is not None)

    def bwd(self, dout, dh, dc, acts, c, c_prev, lengths, dgates, step: int) -> None:
        self._launch(lstm_step_bwd_kernel, (dout, dh, dc, acts, c, c_prev, lengths, dgates), step, acts)


def _full(lengths, batch: int, steps: int, device) -> torch.Tensor:
    return torch.full((batch,), steps, dtype=torch.int32, device=device) if lengths is None else lengths


def lstm_step_fwd(x_proj, rec, h_prev, c_prev, h, c, acts=None, lengths=None, step: int = 0) -> None:
    """One checked step s: writes h_s (B, H) and c_s (B, H, float32 or float64) and, when acts (B, G) is given,
    the gate activations; rows with lengths (B,) int32 <= step keep h_prev and c_prev. The recurrence below checks
    its buffers once per sequence instead."""
    batch, gates = x_proj.shape
    hidden = gates // 4
    dtype, device, wide = x_proj.dtype, x_proj.device, wide_dtype(x_proj.dtype)
    lengths = _full(lengths, batch, step + 1, device)
    check("x_proj", x_proj, (batch, 4 * hidden), dtype, device)
    check("rec", rec, (batch, gates), dtype, device)
    for name, t in (("h_prev", h_prev), ("h", h)):
        check(name, t, (batch, hidden), dtype, device)
    for name, t in (("c_prev", c_prev), ("c", c)):
        check(name, t, (batch, hidden), wide, device)
    check("lengths", lengths, (batch,), torch.int32, device)
    if acts is not None:
        check("acts", acts, (batch, gates), dtype, device)
    with device_scope(x_proj):
        _Plan(batch, hidden, dtype).fwd(x_proj, rec, h_prev, c_prev, lengths, h, c, acts, step)


def lstm_step_bwd(dout, dh, dc, acts, c, c_prev, dgates, lengths=None, step: int = 0) -> None:
    """One checked step s: writes dgates (B, G), overwrites dc (B, H, float32 or float64) with dL/dc_{s-1} and dh
    (B, H) with what of dout + dh is not dgates W_hh: zero for rows inside their length, all of it past it."""
    batch, gates = acts.shape
    hidden = gates // 4
    dtype, device, wide = acts.dtype, acts.device, wide_dtype(acts.dtype)
    lengths = _full(lengths, batch, step + 1, device)
    check("acts", acts, (batch, 4 * hidden), dtype, device)
    check("dgates", dgates, (batch, gates), dtype, device)
    for name, t in (("dout", dout), ("dh", dh)):
        check(name, t, (batch, hidden), dtype, device)
    for name, t in (("dc", dc), ("c", c), ("c_prev", c_prev)):
        check(name, t, (batch, hidden), wide, device)
    check("lengths", lengths, (batch,), torch.int32, device)
    with device_scope(acts):
        _Plan(batch, hidden, dtype).bwd(dout, dh, dc, acts, c, c_prev, lengths, dgates, step)


# ------------------------------------------------------------------- the recurrence and its autograd.Function

def run_recurrence(x_proj, h0, c0, w_hh, save_acts: bool, lengths=None, w_hr=None):
    """x_proj (T, B, G) in step order, h0 (B, H_out), w_hh (G, H_out), lengths (B,) int32 or None (every row T
    steps), w_hr (P, H) or None -> hs (T+1, B, H_out), cs (T+1, B, H; float32 or float64), acts (T, B, G) or None,
    raw (T+1, B, H): h before the projection, or None without one. Index 0 holds h0 and c0, and a row past its
    length repeats its last state, so index T is every row's final state."""
    steps, batch, gates = x_proj.shape
    hidden = gates // 4
    x_proj = x_proj.contiguous()
    lengths = _full(lengths, batch, steps, x_proj.device)
    # Step s reads index s and writes s + 1, so hs[:-1] is the stacked h_{s-1} that the weight
    # gradient needs, without a copy.
    hs = x_proj.new_empty(steps + 1, batch, h0.shape[-1])
    # The kernel keeps raw h for a row past its end, so its projection repeats too. raw[0] is never read: every
    # row has at least one step, so no row is past its end at step 0.
    raw = hs if w_hr is None else x_proj.new_zeros(steps + 1, batch, hidden)
    cs = x_proj.new_empty(steps + 1, batch, hidden, dtype=wide_dtype(x_proj.dtype))
    hs[0], cs[0] = h0, c0
    acts = x_proj.new_empty(steps, batch, gates) if save_acts else None
    rec = x_proj.new_empty(batch, gates)
    w_hh_t = w_hh.t()
    plan = _Plan(batch, hidden, x_proj.dtype)
    with device_scope(x_proj):
        for s in range(steps):
            torch.mm(hs[s], w_hh_t, out=rec)
            plan.fwd(x_proj[s], rec, raw[s], cs[s], lengths, raw[s + 1], cs[s + 1],
                     acts[s] if acts is not None else None, s)
            if w_hr is not None:
                torch.mm(raw[s + 1], w_hr.t(), out=hs[s + 1])
    return hs, cs, acts, None if w_hr is None else raw


def run_recurrence_backward(dout, dc_n, hs, cs, acts, w_hh, lengths=None, raw=None, w_hr=None):
    """dout (T, B, H_out), dc_n (B, H) or None, the forward's hs, cs, acts and raw, w_hh (G, H_out), lengths (B,)
    int32 or None, w_hr (P, H) or None -> dgates (T, B, G), dh0 (B, H_out), dc0 (B, H; wide), dproj (T, B, P) the
    gradient of each projected h_s (for dW_hr), or None without a projection."""
    steps, batch, gates = acts.shape
    lengths = _full(lengths, batch, steps, acts.device)
    # dc stays in float32 (float64) across steps, not the tensor dtype: rounding it each step drifts.
    # Fresh buffers, because the kernel overwrites them and dc_n belongs to autograd's caller.
    dc = acts.new_zeros(batch, gates // 4, dtype=cs.dtype)
    if dc_n is not None:
        dc.copy_(dc_n)
    # dL/dh_s through the steps after s; with a projection only what passes rows past their end (raw h, width H),
    # since the recurrent part reaches h_s through W_hr (dproj below).
    dh = acts.new_zeros(batch, gates // 4)
    dgates = torch.empty_like(acts)
    dproj = None if w_hr is None else torch.empty_like(dout)
    dout_raw = None if w_hr is None else acts.new_empty(batch, gates // 4)
    plan = _Plan(batch, gates // 4, acts.dtype)
    with device_scope(acts):
        for s in reversed(range(steps)):
            if dproj is None:
                plan.bwd(dout[s], dh, dc, acts[s], cs[s + 1], cs[s], lengths, dgates[s], s)
                dh.addmm_(dgates[s], w_hh)  # now dL/dh_{s-1}
                continue
            # The projected h_s feeds the output and step s + 1's recurrent matmul; back through W_hr to raw h_s.
            if s + 1 < steps:
                torch.addmm(dout[s], dgates[s + 1], w_hh, out=dproj[s])
            else:
                dproj[s].copy_(dout[s])
            torch.mm(dproj[s], w_hr, out=dout_raw)
            plan.bwd(dout_raw, dh, dc, acts[s], cs[s + 1], cs[s], lengths, dgates[s], s)
    # With a projection, dh is now zero (every row is inside at step 0): h0 reaches only step 0's matmul.
    dh0 = dh if dproj is None else dgates[0] @ w_hh
    return dgates, dh0, dc, dproj


LSTMRecurrence = recurrence_function(
    "LSTMRecurrence", run_recurrence, run_recurrence_backward,
    "(x_proj (T, B, G), h0 (B, H_out), c0 (B, H), w_hh (G, H_out), lengths (B,) int32[, w_hr (P, H)]) -> "
    "(out (T, B, H_out), c_n (B, H)) in step order; h_n = out[-1]; H_out = P with w_hr, else H. "
    "Two launches a step: cuBLAS for h W_hh^T, then the gate kernel.")


# ------------------------------------------------------------------------------------------ module

class TritonStepLSTM(TritonLSTMBase):
    """Drop-in torch.nn.LSTM (same parameters and state_dict) whose per-step pointwise work is Triton; each
    direction of a layer is its own sequence of steps, and variable lengths are masked in the kernels."""
    supports = frozenset({"bidirectional", "proj_size", "packed", "lengths"})
    function = LSTMRecurrence
    forward_only = staticmethod(run_recurrence)
    kernels = (lstm_step_fwd_kernel, lstm_step_bwd_kernel)
