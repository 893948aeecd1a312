"""`triton`: one persistent Triton kernel per layer for the forward, one for the backward.

Legend: B batch, T time steps, D input features, H hidden size, G = 4H gate pre-activations in
nn.LSTM's order (i, f, g, o); BLOCK_B rows of the batch per program, BLOCK_H = H padded to a power of two >= 16,
BLOCK_K the streaming path's tile edge.

Reference math (impls.triton_common has the cell and its gradient; the tests compare against torch.nn.LSTM):

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

Two paths, as two @triton.jit functions behind one kernel name; `plan` picks one per sequence and `candidates`
says what the wrapper falls back to when the GPU's shared memory per block is too small (docs/triton.md, with
the compiled resources per configuration in results/reference/kernels/, from `bench kernels`):
- resident (4 * BLOCK_H^2 weight elements <= 64 KiB: H <= 64 in float32/float16/bfloat16, H <= 32 in float64):
  W_hh is read from global memory once, as four BLOCK_H x BLOCK_H tiles; h and c are carried across steps by
  the program. Compiled, the tiles live in shared memory and are reloaded into registers by every step's
  tl.dot, and h goes through shared memory (a barrier either side) to become the next step's dot operand.
- streaming (larger H): the same single launch, but every step streams W_hh in BLOCK_K x BLOCK_K tiles
  from global memory (L2-resident after the first step) and takes h_{t-1}, c_{t-1} from the buffers the
  previous step stored, after a barrier; correct at every H, bounded registers.
num_stages (Triton's default 3) buffers the next loop iterations' loads in shared memory; on GPUs with 99 KiB
per block (sm_86, sm_89) the resident backward at H=64 float32 fits only with 1 stage, which `fit` chooses.

Float32's recurrent dot is IEEE float32 on CUDA cores (FFMA) unless the run allows TF32
(torch.backends.cuda.matmul.allow_tf32, config.tf32): then it runs on tensor cores (mma .tf32).
Under the Triton interpreter (TRITON_INTERPRET=1, CPU tests) there is no libdevice: sigmoid is the exp
formula and tanh goes through it; TF32 is emulated by rounding the dot's operands.
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from impls.triton_common import (
    INTERPRETING,
    Launch,
    TritonLSTMBase,
    cell,
    cell_grad,
    check,
    compute_dtype,
    device_scope,
    dot,
    dot_precision,
    fit,
    load4,
    pow2,
    recurrence_function,
    store4,
    target_for,
    wide_dtype,
)

RESIDENT_BYTES = 64 * 1024  # the four padded W_hh tiles of one program, beyond which it streams
# "resident" or "streaming" to overrule `plan` (and give up the fallback between paths); see `force_path`.
_FORCED_PATH: contextvars.ContextVar[str | None] = contextvars.ContextVar("triton_forced_path", default=None)


# ----------------------------------------------------------------------------------------- kernels

@triton.jit
def _resident_fwd(x_proj_ptr, w_hh_ptr, hs_ptr, cs_ptr, acts_ptr, T, B, H, COMPUTE: tl.constexpr,
                  PRECISION: tl.constexpr, SAVE_ACTS: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr):
    # One function: the time loop carries h, c and the W_hh tiles from step to step in this program.
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    cols = tl.arange(0, BLOCK_H)
    mask = (rows < B)[:, None] & (cols[None, :] < H)
    state = rows[:, None] * H + cols[None, :]
    gate = rows[:, None] * (4 * H) + cols[None, :]
    w_ty = w_hh_ptr.dtype.element_ty
    # W_k^T as a (K = BLOCK_H) x (N = BLOCK_H) tile, zero past H, so padded h columns add nothing.
    k = tl.arange(0, BLOCK_H)
    w_mask = (k[:, None] < H) & (cols[None, :] < H)
    w_i, w_f, w_g, w_o = load4(w_hh_ptr, cols[None, :] * H + k[:, None], H * H, w_mask, w_ty)
    # The step's h is the next step's tl.dot operand directly: no step reads back what another thread stored.
    h = tl.load(hs_ptr + state, mask=mask, other=0.0).to(COMPUTE)
    c = tl.load(cs_ptr + state, mask=mask, other=0.0).to(COMPUTE)
    for t in range(T):
        x_i, x_f, x_g, x_o = load4(x_proj_ptr + t * B * 4 * H, gate, H, mask, COMPUTE)
        hw = h.to(w_ty)
        x_i += dot(hw, w_i, PRECISION).to(COMPUTE)
        x_f += dot(hw, w_f, PRECISION).to(COMPUTE)
        x_g += dot(hw, w_g, PRECISION).to(COMPUTE)
        x_o += dot(hw, w_o, PRECISION).to(COMPUTE)
        i, f, g, o, c, h = cell(x_i, x_f, x_g, x_o, c)
        tl.store(hs_ptr + (t + 1) * B * H + state, h.to(hs_ptr.dtype.element_ty), mask=mask)
        tl.store(cs_ptr + (t + 1) * B * H + state, c.to(cs_ptr.dtype.element_ty), mask=mask)
        if SAVE_ACTS:
            store4(acts_ptr + t * B * 4 * H, gate, H, i, f, g, o, mask)


@triton.jit
def _streaming_fwd(x_proj_ptr, w_hh_ptr, hs_ptr, cs_ptr, acts_ptr, T, B, H, COMPUTE: tl.constexpr,
                   PRECISION: tl.constexpr, SAVE_ACTS: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_K: tl.constexpr):
    # One function: each step's column tiles read the h that all of the previous step's tiles stored.
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    row_ok = rows < B
    w_ty = w_hh_ptr.dtype.element_ty
    k = tl.arange(0, BLOCK_K)
    for t in range(T):
        # h_{t-1} and c_{t-1} were stored by other threads of this program in the previous step.
        tl.debug_barrier()
        for n0 in range(0, H, BLOCK_K):
            cols = n0 + k
            mask = row_ok[:, None] & (cols[None, :] < H)
            state = rows[:, None] * H + cols[None, :]
            gate = rows[:, None] * (4 * H) + cols[None, :]
            x_i, x_f, x_g, x_o = load4(x_proj_ptr + t * B * 4 * H, gate, H, mask, COMPUTE)
            for k0 in range(0, H, BLOCK_K):
                kk = k0 + k
                h_mask = row_ok[:, None] & (kk[None, :] < H)
                hw = tl.load(hs_ptr + t * B * H + rows[:, None] * H + kk[None, :], mask=h_mask, other=0.0).to(w_ty)
                w_mask = (kk[:, None] < H) & (cols[None, :] < H)
                w_i, w_f, w_g, w_o = load4(w_hh_ptr, cols[None, :] * H + kk[:, None], H * H, w_mask, w_ty)
                x_i += dot(hw, w_i, PRECISION).to(COMPUTE)
                x_f += dot(hw, w_f, PRECISION).to(COMPUTE)
                x_g += dot(hw, w_g, PRECISION).to(COMPUTE)
                x_o += dot(hw, w_o, PRECISION).to(COMPUTE)
            c_prev = tl.load(cs_ptr + t * B * H + state, mask=mask, other=0.0).to(COMPUTE)
            i, f, g, o, c, h = cell(x_i, x_f, x_g, x_o, c_prev)
            tl.store(hs_ptr + (t + 1) * B * H + state, h.to(hs_ptr.dtype.element_ty), mask=mask)
            tl.store(cs_ptr + (t + 1) * B * H + state, c.to(cs_ptr.dtype.element_ty), mask=mask)
            if SAVE_ACTS:
                store4(acts_ptr + t * B * 4 * H, gate, H, i, f, g, o, mask)


@triton.jit
def lstm_seq_fwd_kernel(
    x_proj_ptr,  # (T, B, G) input projection, both biases included
    w_hh_ptr,    # (G, H)
    hs_ptr,      # (T+1, B, H) index 0: h0 (in); index t+1: h_t (out)
    cs_ptr,      # (T+1, B, H) float32 (float64): index 0: c0 (in); index t+1: c_t (out)
    acts_ptr,    # (T, B, G) out, when SAVE_ACTS: i, f, g, o after their nonlinearities
    T, B, H,
    COMPUTE: tl.constexpr, PRECISION: tl.constexpr, RESIDENT: tl.constexpr, SAVE_ACTS: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
):
    # One kernel name for both paths, so profiles and launch counts read the same whichever the host chose.
    if RESIDENT:
        _resident_fwd(x_proj_ptr, w_hh_ptr, hs_ptr, cs_ptr, acts_ptr, T, B, H, COMPUTE, PRECISION, SAVE_ACTS,
                      BLOCK_B, BLOCK_H)
    else:
        _streaming_fwd(x_proj_ptr, w_hh_ptr, hs_ptr, cs_ptr, acts_ptr, T, B, H, COMPUTE, PRECISION, SAVE_ACTS,
                       BLOCK_B, BLOCK_K)


@triton.jit
def _resident_bwd(dout_ptr, acts_ptr, cs_ptr, w_hh_ptr, dgates_ptr, dh_ptr, dc_ptr, T, B, H, COMPUTE: tl.constexpr,
                  PRECISION: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr):
    # One function: the reverse time loop carries dh_rec, dc and the W_hh tiles from step to step in this program.
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    cols = tl.arange(0, BLOCK_H)
    mask = (rows < B)[:, None] & (cols[None, :] < H)
    state = rows[:, None] * H + cols[None, :]
    gate = rows[:, None] * (4 * H) + cols[None, :]
    w_ty = w_hh_ptr.dtype.element_ty
    g_ty = dgates_ptr.dtype.element_ty
    # W_k as a (K = gate unit j) x (N = hidden unit n) tile: dh_rec = sum_k dgates_k W_k.
    j = tl.arange(0, BLOCK_H)
    w_mask = (j[:, None] < H) & (cols[None, :] < H)
    w_i, w_f, w_g, w_o = load4(w_hh_ptr, j[:, None] * H + cols[None, :], H * H, w_mask, w_ty)
    dh_rec = tl.load(dh_ptr + state, mask=mask, other=0.0).to(COMPUTE)
    dc = tl.load(dc_ptr + state, mask=mask, other=0.0).to(COMPUTE)
    for s in range(T):
        t = T - 1 - s
        i, f, g, o = load4(acts_ptr + t * B * 4 * H, gate, H, mask, COMPUTE)
        c = tl.load(cs_ptr + (t + 1) * B * H + state, mask=mask, other=0.0).to(COMPUTE)
        c_prev = tl.load(cs_ptr + t * B * H + state, mask=mask, other=0.0).to(COMPUTE)
        dh = tl.load(dout_ptr + t * B * H + state, mask=mask, other=0.0).to(COMPUTE) + dh_rec
        d_i, d_f, d_g, d_o, dc = cell_grad(dh, dc, i, f, g, o, c, c_prev)
        d_i, d_f, d_g, d_o = d_i.to(g_ty), d_f.to(g_ty), d_g.to(g_ty), d_o.to(g_ty)
        store4(dgates_ptr + t * B * 4 * H, gate, H, d_i, d_f, d_g, d_o, mask)
        # The rounded gate gradients, as stored: dW_hh and dx are computed from the same values.
        dh_rec = (dot(d_i.to(w_ty), w_i, PRECISION).to(COMPUTE) + dot(d_f.to(w_ty), w_f, PRECISION).to(COMPUTE)
                  + dot(d_g.to(w_ty), w_g, PRECISION).to(COMPUTE) + dot(d_o.to(w_ty), w_o, PRECISION).to(COMPUTE))
    tl.store(dh_ptr + state, dh_rec.to(dh_ptr.dtype.element_ty), mask=mask)
    tl.store(dc_ptr + state, dc.to(dc_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _streaming_bwd(dout_ptr, acts_ptr, cs_ptr, w_hh_ptr, dgates_ptr, dh_ptr, dc_ptr, T, B, H, COMPUTE: tl.constexpr,
                   PRECISION: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_K: tl.constexpr):
    # One function: each step's two phases (gate gradients, then dh_rec from all of them) meet at barriers.
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    row_ok = rows < B
    w_ty = w_hh_ptr.dtype.element_ty
    k = tl.arange(0, BLOCK_K)
    for s in range(T):
        t = T - 1 - s
        # dh_rec of this step was stored by other threads in the previous iteration.
        tl.debug_barrier()
        for n0 in range(0, H, BLOCK_K):
            cols = n0 + k
            mask = row_ok[:, None] & (cols[None, :] < H)
            state = rows[:, None] * H + cols[None, :]
            gate = rows[:, None] * (4 * H) + cols[None, :]
            i, f, g, o = load4(acts_ptr + t * B * 4 * H, gate, H, mask, COMPUTE)
            c = tl.load(cs_ptr + (t + 1) * B * H + state, mask=mask, other=0.0).to(COMPUTE)
            c_prev = tl.load(cs_ptr + t * B * H + state, mask=mask, other=0.0).to(COMPUTE)
            dh = (tl.load(dout_ptr + t * B * H + state, mask=mask, other=0.0).to(COMPUTE)
                  + tl.load(dh_ptr + state, mask=mask, other=0.0).to(COMPUTE))
            dc = tl.load(dc_ptr + state, mask=mask, other=0.0).to(COMPUTE)
            d_i, d_f, d_g, d_o, dc = cell_grad(dh, dc, i, f, g, o, c, c_prev)
            store4(dgates_ptr + t * B * 4 * H, gate, H, d_i, d_f, d_g, d_o, mask)
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
                    acc += dot(dg, w, PRECISION).to(COMPUTE)
            tl.store(dh_ptr + rows[:, None] * H + cols[None, :], acc.to(dh_ptr.dtype.element_ty), mask=mask)


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
    COMPUTE: tl.constexpr, PRECISION: tl.constexpr, RESIDENT: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
):
    # One kernel name for both paths, so profiles and launch counts read the same whichever the host chose.
    if RESIDENT:
        _resident_bwd(dout_ptr, acts_ptr, cs_ptr, w_hh_ptr, dgates_ptr, dh_ptr, dc_ptr, T, B, H, COMPUTE, PRECISION,
                      BLOCK_B, BLOCK_H)
    else:
        _streaming_bwd(dout_ptr, acts_ptr, cs_ptr, w_hh_ptr, dgates_ptr, dh_ptr, dc_ptr, T, B, H, COMPUTE, PRECISION,
                       BLOCK_B, BLOCK_K)


# --------------------------------------------------------------------------------------- launchers

@dataclass(frozen=True)
class Plan:
    """Tiles, grid and path of one sequence, from plain integer math (no per-step host work)."""
    block_b: int
    block_h: int
    block_k: int
    resident: bool
    num_warps: int
    num_stages: int = 3  # Triton's default: loop loads buffered up to 2 iterations ahead, in shared memory

    def grid(self, batch: int) -> tuple[int]:
        return (-(-batch // self.block_b),)


@contextlib.contextmanager
def force_path(path: str | None):
    """Launch only `path` ("resident" or "streaming"; None: choose) inside: what `bench kernels --path` compiles."""
    if path not in (None, "resident", "streaming"):
        raise ValueError(f"path must be resident, streaming or None, got {path!r}")
    token = _FORCED_PATH.set(path)
    try:
        yield
    finally:
        _FORCED_PATH.reset(token)


def plan(batch: int, hidden: int, dtype: torch.dtype) -> Plan:
    """The fastest configuration, whatever the GPU."""
    block_h = max(16, pow2(hidden))
    resident = 4 * block_h * block_h * torch.empty((), dtype=dtype).element_size() <= RESIDENT_BYTES
    if _FORCED_PATH.get():
        resident = _FORCED_PATH.get() == "resident"
    # Interpreted, each program is a slow Python pass: one tile covers the batch. Compiled, 16 rows
    # (tl.dot's minimum M) give the most programs, so the most SMs, at small batch.
    block_b = max(16, pow2(batch)) if INTERPRETING else 16
    return Plan(block_b, block_h, 32, resident, 8 if block_h >= 64 else 4)


def candidates(best: Plan) -> list[Plan]:
    """What the wrappers accept, best first, for GPUs whose shared memory per block `best` overflows: fewer
    pipeline stages (less shared memory, loads less overlapped), then the streaming path (W_hh from L2 every step)."""
    stages = [dataclasses.replace(best, num_stages=n) for n in range(best.num_stages, 0, -1)]
    if not best.resident or _FORCED_PATH.get():
        return stages
    return stages + [dataclasses.replace(p, resident=False) for p in stages]


def _launches(kernel, args: tuple, batch: int, hidden: int, dtype: torch.dtype, **extra) -> list[Launch]:
    """One Launch per accepted plan; `plan` is looked up at call time (tests replace it)."""
    return [Launch(kernel, p.grid(batch), args,
                   dict(COMPUTE=compute_dtype(dtype), PRECISION=dot_precision(dtype), RESIDENT=p.resident, **extra,
                        BLOCK_B=p.block_b, BLOCK_H=p.block_h, BLOCK_K=p.block_k),
                   p.num_warps, p.num_stages, "resident" if p.resident else "streaming")
            for p in candidates(plan(batch, hidden, dtype))]


def _run(launches: list[Launch], like: torch.Tensor) -> None:
    target = target_for(like.device)
    with device_scope(like):
        target.launch(fit(launches, target))


def lstm_seq_fwd(x_proj, h0, c0, w_hh, save_acts: bool):
    """x_proj (T, B, G), h0 (B, H), c0 (B, H), w_hh (G, H) ->
    hs (T+1, B, H), cs (T+1, B, H; float32 or float64), acts (T, B, G) or None; index 0 holds h0 and c0."""
    steps, batch, gates = x_proj.shape
    hidden = gates // 4
    dtype, device = x_proj.dtype, x_proj.device
    check("x_proj", x_proj, (steps, batch, 4 * hidden), dtype, device)
    check("w_hh", w_hh, (gates, hidden), dtype, device)
    for name, t in (("h0", h0), ("c0", c0)):
        check(name, t, (batch, hidden), dtype, device)
    hs = x_proj.new_empty(steps + 1, batch, hidden)
    cs = x_proj.new_empty(steps + 1, batch, hidden, dtype=wide_dtype(dtype))
    hs[0], cs[0] = h0, c0
    acts = x_proj.new_empty(steps, batch, gates) if save_acts else None
    args = (x_proj, w_hh, hs, cs, acts if save_acts else x_proj, steps, batch, hidden)
    _run(_launches(lstm_seq_fwd_kernel, args, batch, hidden, dtype, SAVE_ACTS=save_acts), x_proj)
    return hs, cs, acts


def lstm_seq_bwd(dout, dc_n, acts, cs, w_hh):
    """dout (T, B, H), dc_n (B, H) or None, acts (T, B, G), cs (T+1, B, H; wide), w_hh (G, H) ->
    dgates (T, B, G), dh0 (B, H; wide), dc0 (B, H; wide)."""
    steps, batch, gates = acts.shape
    hidden = gates // 4
    dtype, device = acts.dtype, acts.device
    check("dout", dout, (steps, batch, hidden), dtype, device)
    check("cs", cs, (steps + 1, batch, hidden), wide_dtype(dtype), device)
    check("w_hh", w_hh, (gates, hidden), dtype, device)
    dh = torch.zeros(batch, hidden, dtype=cs.dtype, device=device)
    dc = torch.zeros_like(dh) if dc_n is None else dc_n.to(cs.dtype, copy=True).contiguous()
    dgates = torch.empty_like(acts)
    args = (dout, acts, cs, w_hh, dgates, dh, dc, steps, batch, hidden)
    _run(_launches(lstm_seq_bwd_kernel, args, batch, hidden, dtype), acts)
    return dgates, dh, dc


# ------------------------------------------------------------------- autograd.Function and module

LSTMSequence = recurrence_function(
    "LSTMSequence", lstm_seq_fwd, lambda dout, dc_n, hs, cs, acts, w_hh: lstm_seq_bwd(dout, dc_n, acts, cs, w_hh),
    "(x_proj (T, B, G), h0 (B, H), c0 (B, H), w_hh (G, H)) -> (out (T, B, H), c_n (B, H)); h_n = out[-1]. "
    "One persistent launch forward, one backward.")


class TritonLSTM(TritonLSTMBase):
    """Drop-in torch.nn.LSTM (same parameters and state_dict): per layer one input-projection matmul
    and one persistent Triton launch, forward and backward."""
    function = LSTMSequence
    forward_only = staticmethod(lstm_seq_fwd)
    kernels = (lstm_seq_fwd_kernel, lstm_seq_bwd_kernel)
