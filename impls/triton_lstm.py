"""`triton`: one persistent Triton kernel per layer for the forward, one for the backward, both directions at once.

Legend: B batch, T time steps, D input features, H hidden size, G = 4H gate pre-activations in nn.LSTM's order
(i, f, g, o); P the width of h (proj_size, else H); dirs = 2 if bidirectional else 1; BLOCK_B rows of the batch per
program, BLOCK_H = H padded to a power of two >= 16, BLOCK_P = P padded to one >= 32 (BLOCK_H without a
projection), BLOCK_K the streaming path's tile edge.

Reference math: impls/triton_lstm_kernels.py (the kernels, their step order and how a row's length stops it).
Here, per layer:

    x_proj = x [W_ih; W_ih_reverse]^T + biases            (T, B, dirs*G)  one library matmul, both directions
    out, h_n, c_n = lstm_seq_fwd_kernel[(batch tiles, dirs)](x_proj, W_hh (dirs, G, P), W_hr (dirs, P, H), ...)
    backward: dgates, dproj = lstm_seq_bwd_kernel[(batch tiles, dirs)](dout, dh_n, dc_n, ...), dgates = dL/dx_proj;
              dW_hh[d] = dgates_d^T h_prev_d, one matmul per direction over all T*B rows (h_prev of the reverse
              direction put back in time order by one gather); with a projection dW_hr[d] = dproj_d^T m_d, m = o
              tanh(c) recomputed from the saved gates and cells; dx, dW_ih and the biases from autograd through
              the input projection. No launch per step, none per direction.

Why it can win: a row's recurrence needs only that row's h, so a program owning BLOCK_B rows and all
4H gate columns never talks to another program; the per-step cost is then the GPU's, not the host's.

Two paths, as two @triton.jit functions behind one kernel name; `plan` picks one per sequence and `candidates`
says what the wrapper falls back to when the GPU's shared memory per block is too small (docs/triton.md, with
the compiled resources per configuration in results/reference/kernels/, from `bench kernels`):
- resident (4 BLOCK_H BLOCK_P weight elements, plus BLOCK_H BLOCK_P for W_hr, <= 64 KiB, and H no wider than
  without a projection: H <= 64 in float32/float16/bfloat16, H <= 32 in float64): W_hh is read from global memory
  once, as four BLOCK_P x BLOCK_H tiles (and W_hr as one); h and c are carried across steps by the program.
  Compiled, the tiles live in shared memory and are reloaded into registers by every step's tl.dot, and h goes
  through shared memory (a barrier either side) to become the next step's dot operand.
- streaming (larger H): the same single launch, but every step streams W_hh in BLOCK_K x BLOCK_K tiles
  from global memory (L2-resident after the first step) and takes h_{t-1}, c_{t-1} from the buffers the
  previous step stored, after a barrier; correct at every H, bounded registers.
num_stages (Triton's default 3) buffers the next loop iterations' loads in shared memory; on GPUs with 99 KiB
per block (sm_86, sm_89) the resident backward at H=64 float32 fits only with 1 stage, which `fit` chooses.

Float32's recurrent dot is IEEE float32 on CUDA cores (FFMA) unless the run allows TF32
(torch.backends.cuda.matmul.allow_tf32, config.tf32): then it runs on tensor cores (mma .tf32).
Under the Triton interpreter (TRITON_INTERPRET=1, CPU tests) there is no libdevice: sigmoid is the exp
formula and tanh goes through it; TF32 is emulated by rounding the dot's operands.

proj_size: h_s = (o tanh c_s) W_hr^T is one more dot in the step (resident) or one more barrier-separated phase
(streaming); the backward keeps each step's dL/dh_s (dproj) for dW_hr, one matmul after the launch.
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from dataclasses import dataclass

import torch

from impls.base import step_mask
from impls.cells import input_projection
from impls.triton_common import (
    INTERPRETING,
    Launch,
    TritonLSTMBase,
    by_index,
    check,
    compute_dtype,
    device_scope,
    dot_precision,
    fit,
    pow2,
    reverse_step_index,
    target_for,
    wide_dtype,
)
from impls.triton_lstm_kernels import lstm_seq_bwd_kernel, lstm_seq_fwd_kernel

RESIDENT_BYTES = 64 * 1024  # the four padded W_hh tiles of one program, beyond which it streams
# "resident" or "streaming" to overrule `plan` (and give up the fallback between paths); see `force_path`.
_FORCED_PATH: contextvars.ContextVar[str | None] = contextvars.ContextVar("triton_forced_path", default=None)

__all__ = ["LSTMSequence", "Plan", "TritonLSTM", "candidates", "force_path", "lstm_seq_bwd", "lstm_seq_bwd_kernel",
           "lstm_seq_fwd", "lstm_seq_fwd_kernel", "plan"]


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
    block_p: int = 0     # the width of h padded (BLOCK_P) with a projection; 0: block_h

    def grid(self, batch: int, directions: int = 1) -> tuple[int, int]:
        """(batch tiles, directions): each direction of a bidirectional layer is its own column of programs."""
        return -(-batch // self.block_b), directions


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


def plan(batch: int, hidden: int, dtype: torch.dtype, proj: int = 0) -> Plan:
    """The fastest configuration, whatever the GPU; proj the projection's width (0: none)."""
    block_h = max(16, pow2(hidden))
    # h narrower than 32 columns, as a dot operand, took ptxas to 255 registers and spills in bfloat16/float16
    # (bench kernels, sm_86/sm_90); padded to 32 it compiles to 80-93 without spills.
    block_p = max(32, pow2(proj)) if proj else block_h
    size = torch.empty((), dtype=dtype).element_size()
    # W_hh's four tiles and W_hr's within the budget, and no wider than without a projection: the gate and cell
    # tiles a program carries (BLOCK_B x BLOCK_H each) grow with H whatever P is, and past that width spill.
    resident = max(4 * block_h * block_h, (4 + bool(proj)) * block_h * block_p) * size <= RESIDENT_BYTES
    if _FORCED_PATH.get():
        resident = _FORCED_PATH.get() == "resident"
    # Interpreted, each program is a slow Python pass: one tile covers the batch. Compiled, 16 rows
    # (tl.dot's minimum M) give the most programs, so the most SMs, at small batch.
    block_b = max(16, pow2(batch)) if INTERPRETING else 16
    return Plan(block_b, block_h, 32, resident, 8 if block_h >= 64 else 4, block_p=block_p if proj else 0)


def candidates(best: Plan) -> list[Plan]:
    """What the wrappers accept, best first, for GPUs whose shared memory per block `best` overflows: fewer
    pipeline stages (less shared memory, loads less overlapped), then the streaming path (W_hh from L2 every step)."""
    stages = [dataclasses.replace(best, num_stages=n) for n in range(best.num_stages, 0, -1)]
    if not best.resident or _FORCED_PATH.get():
        return stages
    return stages + [dataclasses.replace(p, resident=False) for p in stages]


def _launches(kernel, args: tuple, batch: int, directions: int, hidden: int, proj: int, dtype: torch.dtype,
              **extra) -> list[Launch]:
    """One Launch per accepted plan; `plan` is looked up at call time (tests replace it)."""
    best = plan(batch, hidden, dtype, proj)
    return [Launch(kernel, p.grid(batch, directions), args,
                   dict(COMPUTE=compute_dtype(dtype), PRECISION=dot_precision(dtype), RESIDENT=p.resident, **extra,
                        PROJ=bool(proj), BLOCK_B=p.block_b, BLOCK_H=p.block_h, BLOCK_P=p.block_p or p.block_h,
                        BLOCK_K=p.block_k),
                   p.num_warps, p.num_stages, "resident" if p.resident else "streaming")
            for p in candidates(best)]


def _run(launches: list[Launch], like: torch.Tensor) -> None:
    target = target_for(like.device)
    with device_scope(like):
        target.launch(fit(launches, target))


def full_lengths(steps: int, batch: int, device) -> torch.Tensor:
    return torch.full((batch,), steps, dtype=torch.int32, device=device)


def lstm_seq_fwd(x_proj, h0, c0, w_hh, save_acts: bool, lengths=None, w_hr=None):
    """x_proj (T, B, dirs*G), h0 (dirs, B, P), c0 (dirs, B, H), w_hh (dirs, G, P), lengths (B,) int32 or None
    (every row T steps), w_hr (dirs, P, H) or None (no projection: P = H) -> out (T, B, dirs*P) in time order,
    zero past each row's length; hs (dirs, T+1, B, P), cs (dirs, T+1, B, H; float32 or float64) in each
    direction's step order, index 0 h0 and c0, index T the final state; acts (dirs, T, B, G) or None."""
    if h0.dim() != 3 or c0.dim() != 3 or x_proj.dim() != 3:
        raise ValueError(f"h0 and c0 must be 3-D (dirs, B, P) and (dirs, B, H), x_proj 3-D (T, B, dirs*G), got "
                         f"{h0.dim()}-D, {c0.dim()}-D and {x_proj.dim()}-D")
    directions, hidden, width = h0.shape[0], c0.shape[-1], h0.shape[-1]
    steps, batch, gates = x_proj.shape[0], x_proj.shape[1], 4 * hidden
    dtype, device = x_proj.dtype, x_proj.device
    check("x_proj", x_proj, (steps, batch, directions * gates), dtype, device)
    check("w_hh", w_hh, (directions, gates, width), dtype, device)
    check("h0", h0, (directions, batch, width), dtype, device)
    check("c0", c0, (directions, batch, hidden), dtype, device)
    if w_hr is not None:
        check("w_hr", w_hr, (directions, width, hidden), dtype, device)
    elif width != hidden:
        raise ValueError(f"h0 is {width} wide and c0 {hidden}: expected w_hr ({directions}, {width}, {hidden})")
    lengths = full_lengths(steps, batch, device) if lengths is None else lengths
    check("lengths", lengths, (batch,), torch.int32, device)
    hs = x_proj.new_empty(directions, steps + 1, batch, width)
    cs = x_proj.new_empty(directions, steps + 1, batch, hidden, dtype=wide_dtype(dtype))
    hs[:, 0], cs[:, 0] = h0, c0
    out = x_proj.new_empty(steps, batch, directions * width)
    acts = x_proj.new_empty(directions, steps, batch, gates) if save_acts else None
    # The streaming path's m before its projection; the kernel ignores the scratch (and w_hr) without one.
    scratch = cs.new_empty(directions, batch, hidden) if w_hr is not None else cs
    args = (x_proj, w_hh, w_hh if w_hr is None else w_hr, scratch, lengths, hs, cs, out,
            acts if save_acts else x_proj, steps, batch, hidden, width)
    _run(_launches(lstm_seq_fwd_kernel, args, batch, directions, hidden, _proj(w_hr), dtype, SAVE_ACTS=save_acts),
         x_proj)
    return out, hs, cs, acts


def _proj(w_hr) -> int:
    return 0 if w_hr is None else w_hr.shape[1]


def lstm_seq_bwd(dout, dh_n, dc_n, acts, cs, w_hh, lengths, w_hr=None):
    """dout (T, B, dirs*P), dh_n (dirs, B, P) or None, dc_n (dirs, B, H) or None, acts (dirs, T, B, G), cs (dirs,
    T+1, B, H; wide), w_hh (dirs, G, P), lengths (B,) int32, w_hr (dirs, P, H) or None -> dgates (T, B, dirs*G) in
    time order, dh0 (dirs, B, P) and dc0 (dirs, B, H; wide), dproj (dirs, T, B, P) dL/dh_s in step order or None."""
    directions, steps, batch, gates = acts.shape
    hidden, width = gates // 4, w_hh.shape[-1]
    dtype, device, wide = acts.dtype, acts.device, wide_dtype(acts.dtype)
    check("dout", dout, (steps, batch, directions * width), dtype, device)
    check("cs", cs, (directions, steps + 1, batch, hidden), wide, device)
    check("w_hh", w_hh, (directions, gates, width), dtype, device)
    check("lengths", lengths, (batch,), torch.int32, device)
    # Fresh buffers in the wide dtype: the kernel overwrites them, and dh_n, dc_n belong to autograd's caller.
    dh, dc = (torch.zeros(directions, batch, size, dtype=wide, device=device) if g is None
              else g.to(wide, copy=True).contiguous() for g, size in ((dh_n, width), (dc_n, hidden)))
    dgates = acts.new_empty(steps, batch, directions * gates)
    dproj = acts.new_empty(directions, steps, batch, width) if w_hr is not None else None
    args = (dout, acts, cs, w_hh, w_hh if w_hr is None else w_hr, lengths, dgates, dgates if dproj is None else dproj,
            dh, dc, steps, batch, hidden, width)
    _run(_launches(lstm_seq_bwd_kernel, args, batch, directions, hidden, _proj(w_hr), dtype), acts)
    return dgates, dh, dc, dproj


def recurrent_weight_grad(dgates, hs, lengths):
    """dgates (T, B, dirs*G) in time order, hs (dirs, T+1, B, P) in step order, lengths (B,) -> dW_hh (dirs, G, P):
    the sum over every row and step of dgates^T h_prev, one matmul per direction."""
    steps, batch, _ = dgates.shape
    directions, width = hs.shape[0], hs.shape[-1]
    per_direction = dgates.view(steps * batch, directions, -1)
    h_prev = hs[:, :-1]  # the forward direction's step s is time s; past a row's length dgates is 0
    grads = [per_direction[:, 0].t() @ h_prev[0].reshape(steps * batch, width)]
    if directions == 2:
        # The reverse direction's step s read time L-1-s: its h_prev goes back to that time (past L, to s itself).
        h_prev_reverse = by_index(h_prev[1], reverse_step_index(lengths, steps))
        grads.append(per_direction[:, 1].t() @ h_prev_reverse.reshape(steps * batch, width))
    return torch.stack(grads) if directions == 2 else grads[0].unsqueeze(0)  # one direction: a view, no copy


def projection_weight_grad(dproj, acts, cs, lengths):
    """dproj (dirs, T, B, P), acts (dirs, T, B, G), cs (dirs, T+1, B, H), all in step order -> dW_hr (dirs, P, H):
    the sum over every row and step of dL/dh_s^T m_s, with m_s = o tanh(c_s) recomputed (cheaper than keeping it)."""
    directions, steps, batch, gates = acts.shape
    hidden = gates // 4
    m = acts[..., 3 * hidden:] * torch.tanh(cs[:, 1:]).to(acts.dtype)
    # Past a row's length acts were never written: masked out, not multiplied by dproj's zeros (0 * nan is nan).
    m = torch.where(step_mask(lengths, steps), m, 0)
    return torch.bmm(dproj.reshape(directions, steps * batch, -1).transpose(1, 2),
                     m.reshape(directions, steps * batch, hidden))


# ------------------------------------------------------------------- autograd.Function and module

class LSTMSequence(torch.autograd.Function):
    """(x_proj (T, B, dirs*G), h0 (dirs, B, P), c0 (dirs, B, H), w_hh (dirs, G, P), lengths (B,) int32, w_hr (dirs,
    P, H) or None) -> (out (T, B, dirs*P), h_n (dirs, B, P), c_n (dirs, B, H)). One persistent launch forward, one
    backward, for both directions."""

    @staticmethod
    def forward(ctx, x_proj, h0, c0, w_hh, lengths, w_hr=None):
        w_hr = None if w_hr is None else w_hr.contiguous()
        out, hs, cs, acts = lstm_seq_fwd(x_proj.contiguous(), h0.contiguous(), c0.contiguous(), w_hh.contiguous(),
                                         True, lengths, w_hr)
        ctx.save_for_backward(hs, cs, acts, w_hh, lengths, w_hr)
        return out, hs[:, -1], cs[:, -1].to(x_proj.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dout, dh_n, dc_n):
        hs, cs, acts, w_hh, lengths, w_hr = ctx.saved_tensors
        wants = ctx.needs_input_grad
        dout = torch.zeros(acts.shape[1], acts.shape[2], hs.shape[0] * hs.shape[-1], dtype=acts.dtype,
                           device=acts.device) if dout is None else dout.contiguous()
        dgates, dh0, dc0, dproj = lstm_seq_bwd(dout, dh_n, dc_n, acts, cs, w_hh.contiguous(), lengths, w_hr)
        d_w_hh = recurrent_weight_grad(dgates, hs, lengths) if wants[3] else None
        d_w_hr = projection_weight_grad(dproj, acts, cs, lengths) if dproj is not None and wants[5] else None
        return (dgates if wants[0] else None, dh0.to(acts.dtype) if wants[1] else None,
                dc0.to(acts.dtype) if wants[2] else None, d_w_hh, None, d_w_hr)


def stack_directions(directions) -> tuple:
    """Per direction (w_ih, w_hh, b_ih, b_hh, w_hr) -> (w_ih (dirs*G, D), w_hh (dirs, G, P), b_ih, b_hh (dirs*G,)
    or None, w_hr (dirs, P, H) or None): what one projection matmul and one launch take. One direction: views."""
    if len(directions) == 1:
        w_ih, w_hh, b_ih, b_hh, w_hr = directions[0]
        return w_ih, w_hh.unsqueeze(0), b_ih, b_hh, None if w_hr is None else w_hr.unsqueeze(0)
    w_ih, w_hh, b_ih, b_hh, w_hr = zip(*directions)
    biases = (None, None) if b_ih[0] is None else (torch.cat(b_ih), torch.cat(b_hh))
    return torch.cat(w_ih), torch.stack(w_hh), *biases, None if w_hr[0] is None else torch.stack(w_hr)


class TritonLSTM(TritonLSTMBase):
    """Drop-in torch.nn.LSTM (same parameters and state_dict): per layer one input-projection matmul for both
    directions and one persistent Triton launch, forward and backward; variable lengths inside the kernels."""
    supports = frozenset({"bidirectional", "proj_size", "packed", "lengths"})
    kernels = (lstm_seq_fwd_kernel, lstm_seq_bwd_kernel)

    def _run_layer(self, x, h0, c0, directions, lengths):
        """x (T, B, D_k), h0 (dirs, B, P), c0 (dirs, B, H), lengths (B,) or None -> (out (T, B, dirs*P), h_n, c_n)."""
        w_ih, w_hh, b_ih, b_hh, w_hr = stack_directions(directions)
        x_proj = input_projection(x, w_ih, b_ih, b_hh)  # does not depend on h: one matmul for all T
        steps, batch = x.shape[:2]
        lengths = full_lengths(steps, batch, x.device) if lengths is None else lengths.to(torch.int32)
        if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x_proj, h0, c0, w_hh, w_hr)):
            return LSTMSequence.apply(x_proj, h0, c0, w_hh, lengths, w_hr)
        # inference: no graph, and no gate activations kept for a backward that never comes
        out, hs, cs, _ = lstm_seq_fwd(x_proj.contiguous(), h0.contiguous(), c0.contiguous(), w_hh.contiguous(),
                                      False, lengths, None if w_hr is None else w_hr.contiguous())
        return out, hs[:, -1], cs[:, -1].to(x_proj.dtype)
