"""`triton`: one persistent Triton kernel per layer for the forward, one for the backward.

Legend: B batch, T time steps, D input features, H hidden size, G = 4H gate pre-activations in
nn.LSTM's order (i, f, g, o); BLOCK_B rows of the batch per program, BLOCK_H = H padded to a power of two >= 16.

Reference math (impls.cells; the tests compare against torch.nn.LSTM):

    x_proj = x W_ih^T + b_ih + b_hh                      (T, B, G)  one library matmul for all steps
    for t in 0..T-1, inside ONE launch:                             the grid is over batch tiles only
        gates = x_proj[t] + h_{t-1} W_hh^T               four (BLOCK_B x H) @ (H x H) tl.dot per step
        i, f, o = sigmoid(.);  g = tanh(.);  c_t = f c_{t-1} + i g;  h_t = o tanh(c_t)

Backward, in ONE reverse-time launch on the same grid, from dh_t = dout_t + dgates_{t+1} W_hh and dc_t:

    do = dh_t tanh(c_t);  dc = dc_t + dh_t o (1 - tanh(c_t)^2);  dc_{t-1} = dc f
    dgates = (dc g i(1-i), dc c_{t-1} f(1-f), dc i (1-g^2), do o(1-o))

then dW_hh = dgates^T [h_{-1} .. h_{T-2}] is one matmul over all T*B rows, and dx, dW_ih and the biases
come from autograd through the input projection's matmul. No launch per step anywhere.

Why it can win: a row's recurrence needs only that row's h, so a program owning BLOCK_B rows and all
4H gate columns never talks to another program; the per-step cost is then the GPU's, not the host's.

Two paths, chosen once per sequence by `plan` (see docs/gpu.md, "The Triton backends"):
- resident (4 * BLOCK_H^2 weight elements <= 64 KiB: H <= 64 in float32/float16/bfloat16, H <= 32 in
  float64): W_hh is loaded once as four BLOCK_H x BLOCK_H tiles and stays in registers; h and c stay in
  registers across steps (c, dc and dh in float32, float64 for float64).
- streaming (larger H): the same single launch, but every step streams W_hh in BLOCK_K x BLOCK_K tiles
  from global memory (L2-resident after the first step) and takes h_{t-1}, c_{t-1} from the buffers the
  previous step stored, after a barrier; correct at every H, bounded registers.

Under the Triton interpreter (TRITON_INTERPRET=1, CPU tests) there is no libdevice: sigmoid is the exp
formula and tanh goes through it; compiled, libdevice tanh and tl.sigmoid. The interpreter also ignores
tl.dot's input_precision, so only `make gpu-check` can catch TF32 sneaking into float32.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from impls.base import LSTMBase
from impls.cells import input_projection

# The gate nonlinearities are shared with the step kernels (libdevice when compiled, formulas when interpreted).
from impls.triton_step import INTERPRETING, _device_scope, _sigmoid, _tanh, wide_dtype

RESIDENT_BYTES = 64 * 1024  # the four padded W_hh tiles of one program, beyond which it streams


# ----------------------------------------------------------------------------------------- kernels

@triton.jit
def _dot(a, b, IEEE: tl.constexpr):
    # a and b share the tensor dtype; the product accumulates in float32 (float64 for float64).
    # IEEE keeps float32 off TF32 when compiled; the interpreter ignores input_precision altogether.
    if IEEE:
        return tl.dot(a, b, input_precision="ieee")
    else:
        return tl.dot(a, b)


@triton.jit
def _cell(x_i, x_f, x_g, x_o, c_prev):
    i = _sigmoid(x_i)
    f = _sigmoid(x_f)
    g = _tanh(x_g)
    o = _sigmoid(x_o)
    c = f * c_prev + i * g
    return i, f, g, o, c, o * _tanh(c)


@triton.jit
def _cell_grad(dh, dc, i, f, g, o, c, c_prev):
    tanh_c = _tanh(c)  # recomputed: cheaper than storing and reloading it
    dc = dc + dh * o * (1.0 - tanh_c * tanh_c)
    return dc * g * i * (1.0 - i), dc * c_prev * f * (1.0 - f), dc * i * (1.0 - g * g), \
        dh * tanh_c * o * (1.0 - o), dc * f


@triton.jit
def lstm_seq_fwd_kernel(
    x_proj_ptr,  # (T, B, G) input projection, both biases included
    w_hh_ptr,    # (G, H)
    hs_ptr,      # (T+1, B, H) index 0: h0 (in); index t+1: h_t (out)
    cs_ptr,      # (T+1, B, H) float32 (float64): index 0: c0 (in); index t+1: c_t (out)
    acts_ptr,    # (T, B, G) out, when SAVE_ACTS: i, f, g, o after their nonlinearities
    T, B, H,
    COMPUTE: tl.constexpr, IEEE: tl.constexpr, RESIDENT: tl.constexpr, SAVE_ACTS: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    row_ok = rows < B
    w_ty = w_hh_ptr.dtype.element_ty
    if RESIDENT:
        cols = tl.arange(0, BLOCK_H)
        mask = row_ok[:, None] & (cols[None, :] < H)
        state = rows[:, None] * H + cols[None, :]
        gate = rows[:, None] * (4 * H) + cols[None, :]
        # W_k^T as a (K = BLOCK_H) x (N = BLOCK_H) tile, zero past H, so padded h columns add nothing.
        k = tl.arange(0, BLOCK_H)
        w_offs = cols[None, :] * H + k[:, None]
        w_mask = (k[:, None] < H) & (cols[None, :] < H)
        w_i = tl.load(w_hh_ptr + w_offs, mask=w_mask, other=0.0)
        w_f = tl.load(w_hh_ptr + H * H + w_offs, mask=w_mask, other=0.0)
        w_g = tl.load(w_hh_ptr + 2 * H * H + w_offs, mask=w_mask, other=0.0)
        w_o = tl.load(w_hh_ptr + 3 * H * H + w_offs, mask=w_mask, other=0.0)
        # h and c live in registers for the whole sequence; the step's h is the next step's tl.dot
        # operand directly, so no step ever reads back what another thread stored.
        h = tl.load(hs_ptr + state, mask=mask, other=0.0).to(COMPUTE)
        c = tl.load(cs_ptr + state, mask=mask, other=0.0).to(COMPUTE)
        for t in range(T):
            xp = x_proj_ptr + t * B * 4 * H + gate
            hw = h.to(w_ty)
            x_i = tl.load(xp, mask=mask, other=0.0).to(COMPUTE) + _dot(hw, w_i, IEEE).to(COMPUTE)
            x_f = tl.load(xp + H, mask=mask, other=0.0).to(COMPUTE) + _dot(hw, w_f, IEEE).to(COMPUTE)
            x_g = tl.load(xp + 2 * H, mask=mask, other=0.0).to(COMPUTE) + _dot(hw, w_g, IEEE).to(COMPUTE)
            x_o = tl.load(xp + 3 * H, mask=mask, other=0.0).to(COMPUTE) + _dot(hw, w_o, IEEE).to(COMPUTE)
            i, f, g, o, c, h = _cell(x_i, x_f, x_g, x_o, c)
            tl.store(hs_ptr + (t + 1) * B * H + state, h.to(hs_ptr.dtype.element_ty), mask=mask)
            tl.store(cs_ptr + (t + 1) * B * H + state, c.to(cs_ptr.dtype.element_ty), mask=mask)
            if SAVE_ACTS:
                ap = acts_ptr + t * B * 4 * H + gate
                a_ty = acts_ptr.dtype.element_ty
                tl.store(ap, i.to(a_ty), mask=mask)
                tl.store(ap + H, f.to(a_ty), mask=mask)
                tl.store(ap + 2 * H, g.to(a_ty), mask=mask)
                tl.store(ap + 3 * H, o.to(a_ty), mask=mask)
    else:
        k = tl.arange(0, BLOCK_K)
        for t in range(T):
            # h_{t-1} and c_{t-1} were stored by other threads of this program in the previous step.
            tl.debug_barrier()
            for n0 in range(0, H, BLOCK_K):
                cols = n0 + k
                mask = row_ok[:, None] & (cols[None, :] < H)
                state = rows[:, None] * H + cols[None, :]
                xp = x_proj_ptr + t * B * 4 * H + rows[:, None] * (4 * H) + cols[None, :]
                x_i = tl.load(xp, mask=mask, other=0.0).to(COMPUTE)
                x_f = tl.load(xp + H, mask=mask, other=0.0).to(COMPUTE)
                x_g = tl.load(xp + 2 * H, mask=mask, other=0.0).to(COMPUTE)
                x_o = tl.load(xp + 3 * H, mask=mask, other=0.0).to(COMPUTE)
                for k0 in range(0, H, BLOCK_K):
                    kk = k0 + k
                    h_mask = row_ok[:, None] & (kk[None, :] < H)
                    hw = tl.load(hs_ptr + t * B * H + rows[:, None] * H + kk[None, :], mask=h_mask, other=0.0)
                    hw = hw.to(w_ty)
                    w_offs = cols[None, :] * H + kk[:, None]
                    w_mask = (kk[:, None] < H) & (cols[None, :] < H)
                    x_i += _dot(hw, tl.load(w_hh_ptr + w_offs, mask=w_mask, other=0.0), IEEE).to(COMPUTE)
                    x_f += _dot(hw, tl.load(w_hh_ptr + H * H + w_offs, mask=w_mask, other=0.0), IEEE).to(COMPUTE)
                    x_g += _dot(hw, tl.load(w_hh_ptr + 2 * H * H + w_offs, mask=w_mask, other=0.0), IEEE).to(COMPUTE)
                    x_o += _dot(hw, tl.load(w_hh_ptr + 3 * H * H + w_offs, mask=w_mask, other=0.0), IEEE).to(COMPUTE)
                c_prev = tl.load(cs_ptr + t * B * H + state, mask=mask, other=0.0).to(COMPUTE)
                i, f, g, o, c, h = _cell(x_i, x_f, x_g, x_o, c_prev)
                tl.store(hs_ptr + (t + 1) * B * H + state, h.to(hs_ptr.dtype.element_ty), mask=mask)
                tl.store(cs_ptr + (t + 1) * B * H + state, c.to(cs_ptr.dtype.element_ty), mask=mask)
                if SAVE_ACTS:
                    ap = acts_ptr + t * B * 4 * H + rows[:, None] * (4 * H) + cols[None, :]
                    a_ty = acts_ptr.dtype.element_ty
                    tl.store(ap, i.to(a_ty), mask=mask)
                    tl.store(ap + H, f.to(a_ty), mask=mask)
                    tl.store(ap + 2 * H, g.to(a_ty), mask=mask)
                    tl.store(ap + 3 * H, o.to(a_ty), mask=mask)


@triton.jit
def lstm_seq_bwd_kernel(
    dout_ptr,    # (T, B, H) dL/dh_t from above (the layer's output gradient)
    acts_ptr,    # (T, B, G) i, f, g, o saved by the forward
    cs_ptr,      # (T+1, B, H) float32 (float64): c0, c_0 .. c_{T-1}
    w_hh_ptr,    # (G, H)
    dgates_ptr,  # (T, B, G) out: gradient of the gate pre-activations of every step
    dh_ptr,      # (B, H) float32 (float64): in zeros; out dL/dh0 (streaming: the per-step dh_rec too)
    dc_ptr,      # (B, H) float32 (float64): in dL/dc_n; out dL/dc0
    T, B, H,
    COMPUTE: tl.constexpr, IEEE: tl.constexpr, RESIDENT: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    row_ok = rows < B
    w_ty = w_hh_ptr.dtype.element_ty
    g_ty = dgates_ptr.dtype.element_ty
    if RESIDENT:
        cols = tl.arange(0, BLOCK_H)
        mask = row_ok[:, None] & (cols[None, :] < H)
        state = rows[:, None] * H + cols[None, :]
        gate = rows[:, None] * (4 * H) + cols[None, :]
        # W_k as a (K = gate unit j) x (N = hidden unit n) tile: dh_rec = sum_k dgates_k W_k.
        j = tl.arange(0, BLOCK_H)
        w_offs = j[:, None] * H + cols[None, :]
        w_mask = (j[:, None] < H) & (cols[None, :] < H)
        w_i = tl.load(w_hh_ptr + w_offs, mask=w_mask, other=0.0)
        w_f = tl.load(w_hh_ptr + H * H + w_offs, mask=w_mask, other=0.0)
        w_g = tl.load(w_hh_ptr + 2 * H * H + w_offs, mask=w_mask, other=0.0)
        w_o = tl.load(w_hh_ptr + 3 * H * H + w_offs, mask=w_mask, other=0.0)
        dh_rec = tl.load(dh_ptr + state, mask=mask, other=0.0).to(COMPUTE)
        dc = tl.load(dc_ptr + state, mask=mask, other=0.0).to(COMPUTE)
        for s in range(T):
            t = T - 1 - s
            ap = acts_ptr + t * B * 4 * H + gate
            i = tl.load(ap, mask=mask, other=0.0).to(COMPUTE)
            f = tl.load(ap + H, mask=mask, other=0.0).to(COMPUTE)
            g = tl.load(ap + 2 * H, mask=mask, other=0.0).to(COMPUTE)
            o = tl.load(ap + 3 * H, mask=mask, other=0.0).to(COMPUTE)
            c = tl.load(cs_ptr + (t + 1) * B * H + state, mask=mask, other=0.0).to(COMPUTE)
            c_prev = tl.load(cs_ptr + t * B * H + state, mask=mask, other=0.0).to(COMPUTE)
            dh = tl.load(dout_ptr + t * B * H + state, mask=mask, other=0.0).to(COMPUTE) + dh_rec
            d_i, d_f, d_g, d_o, dc = _cell_grad(dh, dc, i, f, g, o, c, c_prev)
            d_i, d_f, d_g, d_o = d_i.to(g_ty), d_f.to(g_ty), d_g.to(g_ty), d_o.to(g_ty)
            gp = dgates_ptr + t * B * 4 * H + gate
            tl.store(gp, d_i, mask=mask)
            tl.store(gp + H, d_f, mask=mask)
            tl.store(gp + 2 * H, d_g, mask=mask)
            tl.store(gp + 3 * H, d_o, mask=mask)
            # The rounded gate gradients, as stored: dW_hh and dx are computed from the same values.
            dh_rec = (_dot(d_i.to(w_ty), w_i, IEEE).to(COMPUTE) + _dot(d_f.to(w_ty), w_f, IEEE).to(COMPUTE)
                      + _dot(d_g.to(w_ty), w_g, IEEE).to(COMPUTE) + _dot(d_o.to(w_ty), w_o, IEEE).to(COMPUTE))
        tl.store(dh_ptr + state, dh_rec.to(dh_ptr.dtype.element_ty), mask=mask)
        tl.store(dc_ptr + state, dc.to(dc_ptr.dtype.element_ty), mask=mask)
    else:
        k = tl.arange(0, BLOCK_K)
        for s in range(T):
            t = T - 1 - s
            # dh_rec of this step was stored by other threads in the previous iteration.
            tl.debug_barrier()
            for n0 in range(0, H, BLOCK_K):
                cols = n0 + k
                mask = row_ok[:, None] & (cols[None, :] < H)
                state = rows[:, None] * H + cols[None, :]
                ap = acts_ptr + t * B * 4 * H + rows[:, None] * (4 * H) + cols[None, :]
                i = tl.load(ap, mask=mask, other=0.0).to(COMPUTE)
                f = tl.load(ap + H, mask=mask, other=0.0).to(COMPUTE)
                g = tl.load(ap + 2 * H, mask=mask, other=0.0).to(COMPUTE)
                o = tl.load(ap + 3 * H, mask=mask, other=0.0).to(COMPUTE)
                c = tl.load(cs_ptr + (t + 1) * B * H + state, mask=mask, other=0.0).to(COMPUTE)
                c_prev = tl.load(cs_ptr + t * B * H + state, mask=mask, other=0.0).to(COMPUTE)
                dh = (tl.load(dout_ptr + t * B * H + state, mask=mask, other=0.0).to(COMPUTE)
                      + tl.load(dh_ptr + state, mask=mask, other=0.0).to(COMPUTE))
                dc = tl.load(dc_ptr + state, mask=mask, other=0.0).to(COMPUTE)
                d_i, d_f, d_g, d_o, dc = _cell_grad(dh, dc, i, f, g, o, c, c_prev)
                gp = dgates_ptr + t * B * 4 * H + rows[:, None] * (4 * H) + cols[None, :]
                tl.store(gp, d_i.to(g_ty), mask=mask)
                tl.store(gp + H, d_f.to(g_ty), mask=mask)
                tl.store(gp + 2 * H, d_g.to(g_ty), mask=mask)
                tl.store(gp + 3 * H, d_o.to(g_ty), mask=mask)
                tl.store(dc_ptr + state, dc.to(dc_ptr.dtype.element_ty), mask=mask)
            # Every column of this step's dgates is stored, and every read of dh_ptr above is done.
            tl.debug_barrier()
            for n0 in range(0, H, BLOCK_K):
                cols = n0 + k
                mask = row_ok[:, None] & (cols[None, :] < H)
                acc = tl.zeros((BLOCK_B, BLOCK_K), dtype=COMPUTE)
                for k0 in range(0, H, BLOCK_K):
                    kk = k0 + k
                    d_mask = row_ok[:, None] & (kk[None, :] < H)
                    gp = dgates_ptr + t * B * 4 * H + rows[:, None] * (4 * H) + kk[None, :]
                    w_offs = kk[:, None] * H + cols[None, :]
                    w_mask = (kk[:, None] < H) & (cols[None, :] < H)
                    for q in tl.static_range(4):
                        dg = tl.load(gp + q * H, mask=d_mask, other=0.0).to(w_ty)
                        w = tl.load(w_hh_ptr + q * H * H + w_offs, mask=w_mask, other=0.0)
                        acc += _dot(dg, w, IEEE).to(COMPUTE)
                tl.store(dh_ptr + rows[:, None] * H + cols[None, :], acc.to(dh_ptr.dtype.element_ty), mask=mask)


# --------------------------------------------------------------------------------------- launchers

@dataclass(frozen=True)
class Plan:
    """Tiles, grid and path of one sequence, from plain integer math (no per-step host work)."""
    block_b: int
    block_h: int
    block_k: int
    resident: bool
    num_warps: int

    def grid(self, batch: int) -> tuple[int]:
        return (-(-batch // self.block_b),)


def _pow2(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


def plan(batch: int, hidden: int, dtype: torch.dtype) -> Plan:
    block_h = max(16, _pow2(hidden))
    resident = 4 * block_h * block_h * torch.empty((), dtype=dtype).element_size() <= RESIDENT_BYTES
    # Interpreted, each program is a slow Python pass: one tile covers the batch. Compiled, 16 rows
    # (tl.dot's minimum M) give the most programs, so the most SMs, at small batch.
    block_b = max(16, _pow2(batch)) if INTERPRETING else 16
    return Plan(block_b, block_h, 32, resident, 8 if block_h >= 64 else 4)


def _constexprs(dtype: torch.dtype, p: Plan) -> dict:
    return dict(COMPUTE=tl.float64 if dtype == torch.float64 else tl.float32,
                IEEE=dtype in (torch.float32, torch.float64), RESIDENT=p.resident,
                BLOCK_B=p.block_b, BLOCK_H=p.block_h, BLOCK_K=p.block_k, num_warps=p.num_warps)


def _check(name: str, t: torch.Tensor, shape: tuple, dtype: torch.dtype, device: torch.device) -> None:
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(t.shape)}")
    if not t.is_contiguous():
        raise ValueError(f"{name} must be contiguous")
    if t.dtype != dtype or t.device != device:
        raise ValueError(f"{name} must be {dtype} on {device}, got {t.dtype} on {t.device}")


def lstm_seq_fwd(x_proj, h0, c0, w_hh, save_acts: bool):
    """x_proj (T, B, G), h0 (B, H), c0 (B, H), w_hh (G, H) ->
    hs (T+1, B, H), cs (T+1, B, H; float32 or float64), acts (T, B, G) or None; index 0 holds h0 and c0."""
    steps, batch, gates = x_proj.shape
    hidden = gates // 4
    dtype, device = x_proj.dtype, x_proj.device
    _check("x_proj", x_proj, (steps, batch, 4 * hidden), dtype, device)
    _check("w_hh", w_hh, (gates, hidden), dtype, device)
    for name, t in (("h0", h0), ("c0", c0)):
        _check(name, t, (batch, hidden), dtype, device)
    hs = x_proj.new_empty(steps + 1, batch, hidden)
    cs = x_proj.new_empty(steps + 1, batch, hidden, dtype=wide_dtype(dtype))
    hs[0], cs[0] = h0, c0
    acts = x_proj.new_empty(steps, batch, gates) if save_acts else None
    p = plan(batch, hidden, dtype)
    with _device_scope(x_proj):
        lstm_seq_fwd_kernel[p.grid(batch)](
            x_proj, w_hh, hs, cs, acts if save_acts else x_proj, steps, batch, hidden,
            SAVE_ACTS=save_acts, **_constexprs(dtype, p))
    return hs, cs, acts


def lstm_seq_bwd(dout, dc_n, acts, cs, w_hh):
    """dout (T, B, H), dc_n (B, H) or None, acts (T, B, G), cs (T+1, B, H; wide), w_hh (G, H) ->
    dgates (T, B, G), dh0 (B, H; wide), dc0 (B, H; wide)."""
    steps, batch, gates = acts.shape
    hidden = gates // 4
    dtype, device = acts.dtype, acts.device
    _check("dout", dout, (steps, batch, hidden), dtype, device)
    _check("cs", cs, (steps + 1, batch, hidden), wide_dtype(dtype), device)
    _check("w_hh", w_hh, (gates, hidden), dtype, device)
    dh = torch.zeros(batch, hidden, dtype=cs.dtype, device=device)
    dc = torch.zeros_like(dh) if dc_n is None else dc_n.to(cs.dtype, copy=True).contiguous()
    dgates = torch.empty_like(acts)
    p = plan(batch, hidden, dtype)
    with _device_scope(acts):
        lstm_seq_bwd_kernel[p.grid(batch)](
            dout, acts, cs, w_hh, dgates, dh, dc, steps, batch, hidden, **_constexprs(dtype, p))
    return dgates, dh, dc


# ------------------------------------------------------------------- autograd.Function and module

class LSTMSequence(torch.autograd.Function):
    """(x_proj (T, B, G), h0 (B, H), c0 (B, H), w_hh (G, H)) -> (out (T, B, H), c_n (B, H)); h_n = out[-1]."""

    @staticmethod
    def forward(ctx, x_proj, h0, c0, w_hh):
        hs, cs, acts = lstm_seq_fwd(x_proj.contiguous(), h0.contiguous(), c0.contiguous(), w_hh.contiguous(),
                                    save_acts=True)
        ctx.save_for_backward(hs, cs, acts, w_hh)
        return hs[1:], cs[-1].to(x_proj.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dout, dc_n):
        hs, cs, acts, w_hh = ctx.saved_tensors
        steps, batch, gates = acts.shape
        hidden = gates // 4
        dout = torch.zeros_like(hs[1:]) if dout is None else dout.contiguous()
        dgates, dh0, dc0 = lstm_seq_bwd(dout, dc_n, acts, cs, w_hh.contiguous())
        d_w_hh = None
        if ctx.needs_input_grad[3]:  # every step's outer product at once: one (G, T*B) @ (T*B, H) matmul
            d_w_hh = dgates.view(steps * batch, gates).t() @ hs[:-1].reshape(steps * batch, hidden)
        return (dgates if ctx.needs_input_grad[0] else None,
                dh0.to(acts.dtype) if ctx.needs_input_grad[1] else None,
                dc0.to(acts.dtype) if ctx.needs_input_grad[2] else None,
                d_w_hh)


class TritonLSTM(LSTMBase):
    """Drop-in torch.nn.LSTM (same parameters and state_dict): per layer one input-projection matmul
    and one persistent Triton launch, forward and backward."""

    def _layer(self, x, h0, c0, w_ih, w_hh, b_ih, b_hh):
        x_proj = input_projection(x, w_ih, b_ih, b_hh)
        if torch.is_grad_enabled() and any(t.requires_grad for t in (x_proj, h0, c0, w_hh)):
            out, c_n = LSTMSequence.apply(x_proj, h0, c0, w_hh)
        else:  # inference: no graph, and no gate activations kept for a backward that never comes
            hs, cs, _ = lstm_seq_fwd(x_proj.contiguous(), h0.contiguous(), c0.contiguous(), w_hh.contiguous(),
                                     save_acts=False)
            out, c_n = hs[1:], cs[-1].to(x_proj.dtype)
        return out, out[-1], c_n
