"""The persistent `triton` backend's kernels: one launch per layer and pass runs every step of both directions.

Legend: B batch, T time steps, D input features, H hidden size, G = 4H gate pre-activations in nn.LSTM's order
(i, f, g, o); P the width of h: proj_size with a projection (PROJ), else H; dirs = 2 if bidirectional else 1;
s the step index in a direction's own order (its s-th step); BLOCK_B rows of the batch per program, BLOCK_H = H
padded to a power of two >= 16, BLOCK_P = P padded to one >= 32 (BLOCK_H without a projection), BLOCK_K the
streaming path's tile edge. impls.triton_lstm launches these (launcher, autograd.Function, module).

Reference math (impls.triton_common has the cell and its gradient; the tests compare against torch.nn.LSTM):

    x_proj = x W_ih^T + b_ih + b_hh                      (T, B, dirs*G)  one library matmul, both directions
    grid (batch tiles, dirs): program (p, d) runs direction d of its rows, all T steps, in ONE launch
    row b of length L_b (1..T) at step s < L_b reads time t = s (forward) or t = L_b - 1 - s (reverse):
        gates = x_proj[t] + h_{s-1} W_hh^T               four (BLOCK_B x P) @ (P x H) tl.dot per step
        i, f, o = sigmoid(.);  g = tanh(.);  c_s = f c_{s-1} + i g;  m_s = o tanh(c_s)
        h_s = m_s W_hr^T with a projection (one more (BLOCK_B x H) @ (H x P) dot), else m_s;  out[t] = h_s
    at steps s >= L_b the row keeps h and c (its final state is its state at its own last step) and
    out[s] = 0: s runs over exactly the padded times then, as pad_packed_sequence leaves them.

hs, cs and acts are kept in each direction's step order (the recurrence reads what the step before wrote);
x_proj, out, dout and dgates are in time order, both directions side by side, as the layer sees them.

Backward, in ONE reverse-step launch on the same grid, from dh = dout[t] + dh_rec and dc (dL/dh_n and dL/dc_n
at s = T-1): at s < L_b

    dm = dh W_hr with a projection (dh is kept per step as dproj, for dW_hr), else dh
    do = dm tanh(c_s);  dc = dc + dm o (1 - tanh(c_s)^2);  dc_{s-1} = dc f
    dgates[t] = (dc g i(1-i), dc c_{s-1} f(1-f), dc i (1-g^2), do o(1-o));  dh_rec = dgates[t] W_hh

and at s >= L_b the step is the identity on h and c: dgates[s] = 0, dproj[s] = 0, dh_rec and dc pass through.
dW_hh, dW_hr, dx, dW_ih and the biases are then large matmuls outside (impls.triton_lstm).

Two paths, as two @triton.jit functions behind one kernel name (impls.triton_lstm.plan picks one):
- resident (the padded W_hh tiles, and W_hr's, within 64 KiB): the weights are read once, and h and c are
  carried in the program across steps.
- streaming (larger H): every step streams W_hh (and W_hr) in BLOCK_K x BLOCK_K tiles and takes h_{s-1},
  c_{s-1} from the buffers the previous step stored, after a barrier; correct at every H, bounded registers.
  A projection needs all of m before any column of h (and all of dh before any column of dm): one more
  barrier-separated phase a step, through a (dirs, B, H) scratch buffer forward and dproj backward.
"""
from __future__ import annotations

import triton
import triton.language as tl

from impls.triton_common import cell, cell_grad, dot, load4, store4


@triton.jit
def _time_of_step(s, length, first, sign):
    """Per row: the time step s reads (t = first + sign s: s forward, L - 1 - s reverse), or s itself past the
    row's length (an in-bounds padded slot, where out and dgates get their zeros), and whether it is inside."""
    inside = s < length
    return tl.where(inside, first + sign * s, s), inside


@triton.jit
def _streamed_dot(a_rows, row_ok, b_ptr, b_row_stride, cols, n_cols, K, PRECISION: tl.constexpr,
                  COMPUTE: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_K: tl.constexpr):
    """(BLOCK_B x K) @ (K x the BLOCK_K columns `cols` of n_cols), both operands read in BLOCK_K tiles: row b of a
    at a_rows[b] + k, b's element (k, col) at b_ptr + k * b_row_stride + col; zero past their edges."""
    k = tl.arange(0, BLOCK_K)
    acc = tl.zeros((BLOCK_B, BLOCK_K), dtype=COMPUTE)
    for k0 in range(0, K, BLOCK_K):
        kk = k0 + k
        b = tl.load(b_ptr + kk[:, None] * b_row_stride + cols[None, :],
                    mask=(kk[:, None] < K) & (cols[None, :] < n_cols), other=0.0)
        a = tl.load(a_rows + kk[None, :], mask=row_ok[:, None] & (kk[None, :] < K), other=0.0).to(b.dtype)
        acc += dot(a, b, PRECISION).to(COMPUTE)
    return acc


# ------------------------------------------------------------------------------------------ forward

@triton.jit
def _resident_fwd(x_proj_ptr, w_hh_ptr, w_hr_ptr, lengths_ptr, hs_ptr, cs_ptr, out_ptr, acts_ptr, T, B, H, P,
                  COMPUTE: tl.constexpr, PRECISION: tl.constexpr, SAVE_ACTS: tl.constexpr, PROJ: tl.constexpr,
                  BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_P: tl.constexpr):
    # One function: the step loop carries h, c and the weight tiles from step to step in this program.
    direction = tl.program_id(1)
    dirs = tl.num_programs(1)
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    cols = tl.arange(0, BLOCK_H)   # hidden units: c and the gates
    units = tl.arange(0, BLOCK_P)  # units of h
    row_ok = rows < B
    mask = row_ok[:, None] & (cols[None, :] < H)
    h_mask = row_ok[:, None] & (units[None, :] < P)
    length = tl.load(lengths_ptr + rows, mask=row_ok, other=0)
    first, sign = direction * (length - 1), 1 - 2 * direction  # step s reads time first + sign s
    c_state = direction * (T + 1) * B * H + rows[:, None] * H + cols[None, :]
    h_state = direction * (T + 1) * B * P + rows[:, None] * P + units[None, :]
    gate = direction * T * B * 4 * H + rows[:, None] * (4 * H) + cols[None, :]
    x_row = rows[:, None] * (dirs * 4 * H) + direction * 4 * H + cols[None, :]   # in one time step of x_proj
    out_row = rows[:, None] * (dirs * P) + direction * P + units[None, :]         # in one time step of out
    w_ty = w_hh_ptr.dtype.element_ty
    # W_k^T as a (K = BLOCK_P) x (N = BLOCK_H) tile, zero past P and H, so padded h columns add nothing.
    k = tl.arange(0, BLOCK_P)
    w_mask = (k[:, None] < P) & (cols[None, :] < H)
    w_i, w_f, w_g, w_o = load4(w_hh_ptr + direction * 4 * H * P, cols[None, :] * P + k[:, None], H * P, w_mask, w_ty)
    if PROJ:  # W_hr^T as a (K = BLOCK_H) x (N = BLOCK_P) tile
        j = tl.arange(0, BLOCK_H)
        w_r = tl.load(w_hr_ptr + direction * P * H + units[None, :] * H + j[:, None],
                      mask=(j[:, None] < H) & (units[None, :] < P), other=0.0)
    # The step's h is the next step's tl.dot operand directly: no step reads back what another thread stored.
    h = tl.load(hs_ptr + h_state, mask=h_mask, other=0.0).to(COMPUTE)
    c = tl.load(cs_ptr + c_state, mask=mask, other=0.0).to(COMPUTE)
    for s in range(T):
        t, inside = _time_of_step(s, length, first, sign)
        live = mask & inside[:, None]
        x_i, x_f, x_g, x_o = load4(x_proj_ptr + t[:, None] * (B * dirs * 4 * H), x_row, H, live, COMPUTE)
        hw = h.to(w_ty)
        x_i += dot(hw, w_i, PRECISION).to(COMPUTE)
        x_f += dot(hw, w_f, PRECISION).to(COMPUTE)
        x_g += dot(hw, w_g, PRECISION).to(COMPUTE)
        x_o += dot(hw, w_o, PRECISION).to(COMPUTE)
        i, f, g, o, c_new, h_new = cell(x_i, x_f, x_g, x_o, c)
        if PROJ:
            h_new = dot(h_new.to(w_ty), w_r, PRECISION).to(COMPUTE)
        h = tl.where(inside[:, None], h_new, h)
        c = tl.where(inside[:, None], c_new, c)
        tl.store(hs_ptr + (s + 1) * B * P + h_state, h.to(hs_ptr.dtype.element_ty), mask=h_mask)
        tl.store(cs_ptr + (s + 1) * B * H + c_state, c.to(cs_ptr.dtype.element_ty), mask=mask)
        tl.store(out_ptr + t[:, None] * (B * dirs * P) + out_row,
                 tl.where(inside[:, None], h_new, 0.0).to(out_ptr.dtype.element_ty), mask=h_mask)
        if SAVE_ACTS:
            store4(acts_ptr + s * B * 4 * H, gate, H, i, f, g, o, live)


@triton.jit
def _streaming_fwd(x_proj_ptr, w_hh_ptr, w_hr_ptr, m_ptr, lengths_ptr, hs_ptr, cs_ptr, out_ptr, acts_ptr,
                   T, B, H, P, COMPUTE: tl.constexpr, PRECISION: tl.constexpr, SAVE_ACTS: tl.constexpr,
                   PROJ: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_K: tl.constexpr):
    # One function: each step's column tiles read the h that all of the previous step's tiles stored.
    direction = tl.program_id(1)
    dirs = tl.num_programs(1)
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    row_ok = rows < B
    length = tl.load(lengths_ptr + rows, mask=row_ok, other=0)
    first, sign = direction * (length - 1), 1 - 2 * direction  # step s reads time first + sign s
    hs_ptr += direction * (T + 1) * B * P
    cs_ptr += direction * (T + 1) * B * H
    w_hh_ptr += direction * 4 * H * P
    w_hr_ptr += direction * P * H
    m_ptr += direction * B * H
    w_ty = w_hh_ptr.dtype.element_ty
    k = tl.arange(0, BLOCK_K)
    for s in range(T):
        t, inside = _time_of_step(s, length, first, sign)
        out_row = out_ptr + t[:, None] * (B * dirs * P) + rows[:, None] * (dirs * P) + direction * P
        # h_{s-1} and c_{s-1} were stored by other threads of this program in the previous step.
        tl.debug_barrier()
        for n0 in range(0, H, BLOCK_K):
            cols = n0 + k
            mask = row_ok[:, None] & (cols[None, :] < H)
            live = mask & inside[:, None]
            state = rows[:, None] * H + cols[None, :]
            x_row = t[:, None] * (B * dirs * 4 * H) + rows[:, None] * (dirs * 4 * H) + direction * 4 * H + cols[None, :]
            x_i, x_f, x_g, x_o = load4(x_proj_ptr, x_row, H, live, COMPUTE)
            for k0 in range(0, P, BLOCK_K):
                kk = k0 + k
                hw = tl.load(hs_ptr + s * B * P + rows[:, None] * P + kk[None, :],
                             mask=row_ok[:, None] & (kk[None, :] < P), other=0.0).to(w_ty)
                w_mask = (kk[:, None] < P) & (cols[None, :] < H)
                w_i, w_f, w_g, w_o = load4(w_hh_ptr, cols[None, :] * P + kk[:, None], H * P, w_mask, w_ty)
                x_i += dot(hw, w_i, PRECISION).to(COMPUTE)
                x_f += dot(hw, w_f, PRECISION).to(COMPUTE)
                x_g += dot(hw, w_g, PRECISION).to(COMPUTE)
                x_o += dot(hw, w_o, PRECISION).to(COMPUTE)
            c_prev = tl.load(cs_ptr + s * B * H + state, mask=mask, other=0.0).to(COMPUTE)
            i, f, g, o, c, h = cell(x_i, x_f, x_g, x_o, c_prev)
            tl.store(cs_ptr + (s + 1) * B * H + state,
                     tl.where(inside[:, None], c, c_prev).to(cs_ptr.dtype.element_ty), mask=mask)
            if PROJ:  # m, projected below once every column of it is stored
                tl.store(m_ptr + state, h.to(m_ptr.dtype.element_ty), mask=mask)
            else:
                _store_h(hs_ptr, out_row, s, B, P, rows, row_ok, cols, inside, length, h)
            if SAVE_ACTS:
                store4(acts_ptr + (direction * T + s) * B * 4 * H, rows[:, None] * (4 * H) + cols[None, :], H,
                       i, f, g, o, live)
        if PROJ:
            tl.debug_barrier()
            for n0 in range(0, P, BLOCK_K):
                units = n0 + k
                # W_hr (P, H) read transposed: element (hidden unit j, unit p) at p * H + j.
                h = _streamed_dot(m_ptr + rows[:, None] * H, row_ok, w_hr_ptr, 1, units * H, P * H, H, PRECISION,
                                  COMPUTE, BLOCK_B, BLOCK_K)
                _store_h(hs_ptr, out_row, s, B, P, rows, row_ok, units, inside, length, h)


@triton.jit
def _store_h(hs_ptr, out_row, s, B, P, rows, row_ok, units, inside, length, h):
    """h_s for columns `units`: into hs[s + 1] (a row past its length carries h_{s-1} on) and into out (zero there)."""
    mask = row_ok[:, None] & (units[None, :] < P)
    state = rows[:, None] * P + units[None, :]
    # Past its length a row carries h_{s-1} forward: read only for those rows.
    h_prev = tl.load(hs_ptr + s * B * P + state, mask=mask & (s >= length)[:, None], other=0.0).to(h.dtype)
    tl.store(hs_ptr + (s + 1) * B * P + state, tl.where(inside[:, None], h, h_prev).to(hs_ptr.dtype.element_ty),
             mask=mask)
    tl.store(out_row + units[None, :], tl.where(inside[:, None], h, 0.0).to(out_row.dtype.element_ty), mask=mask)


@triton.jit
def lstm_seq_fwd_kernel(
    x_proj_ptr,   # (T, B, dirs*G) input projection of every direction, both biases included
    w_hh_ptr,     # (dirs, G, P)
    w_hr_ptr,     # (dirs, P, H) with PROJ (else unused)
    m_ptr,        # (dirs, B, H) scratch of the streaming path with PROJ: m_s before its projection (else unused)
    lengths_ptr,  # (B,) int32: each row's length, 1..T
    hs_ptr,       # (dirs, T+1, B, P) in step order: index 0 h0 (in); index s+1 h after step s (out)
    cs_ptr,       # (dirs, T+1, B, H) float32 (float64), as hs for c
    out_ptr,      # (T, B, dirs*P) out, in time order: h_t, zero past each row's length
    acts_ptr,     # (dirs, T, B, G) out when SAVE_ACTS, in step order: i, f, g, o after their nonlinearities
    T, B, H, P,
    COMPUTE: tl.constexpr, PRECISION: tl.constexpr, RESIDENT: tl.constexpr, SAVE_ACTS: tl.constexpr,
    PROJ: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_K: tl.constexpr,
):
    # One kernel name for both paths, so profiles and launch counts read the same whichever the host chose.
    if RESIDENT:
        _resident_fwd(x_proj_ptr, w_hh_ptr, w_hr_ptr, lengths_ptr, hs_ptr, cs_ptr, out_ptr, acts_ptr, T, B, H, P,
                      COMPUTE, PRECISION, SAVE_ACTS, PROJ, BLOCK_B, BLOCK_H, BLOCK_P)
    else:
        _streaming_fwd(x_proj_ptr, w_hh_ptr, w_hr_ptr, m_ptr, lengths_ptr, hs_ptr, cs_ptr, out_ptr, acts_ptr,
                       T, B, H, P, COMPUTE, PRECISION, SAVE_ACTS, PROJ, BLOCK_B, BLOCK_K)


# ----------------------------------------------------------------------------------------- backward

@triton.jit
def _resident_bwd(dout_ptr, acts_ptr, cs_ptr, w_hh_ptr, w_hr_ptr, lengths_ptr, dgates_ptr, dproj_ptr, dh_ptr,
                  dc_ptr, T, B, H, P, COMPUTE: tl.constexpr, PRECISION: tl.constexpr, PROJ: tl.constexpr,
                  BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_P: tl.constexpr):
    # One function: the reverse step loop carries dh_rec, dc and the weight tiles from step to step in this program.
    direction = tl.program_id(1)
    dirs = tl.num_programs(1)
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    cols = tl.arange(0, BLOCK_H)
    units = tl.arange(0, BLOCK_P)
    row_ok = rows < B
    mask = row_ok[:, None] & (cols[None, :] < H)
    h_mask = row_ok[:, None] & (units[None, :] < P)
    length = tl.load(lengths_ptr + rows, mask=row_ok, other=0)
    first, sign = direction * (length - 1), 1 - 2 * direction  # step s reads time first + sign s
    grad_h = direction * B * P + rows[:, None] * P + units[None, :]
    grad_c = direction * B * H + rows[:, None] * H + cols[None, :]
    state = direction * (T + 1) * B * H + rows[:, None] * H + cols[None, :]
    gate = direction * T * B * 4 * H + rows[:, None] * (4 * H) + cols[None, :]
    dgate_row = rows[:, None] * (dirs * 4 * H) + direction * 4 * H + cols[None, :]
    dout_row = rows[:, None] * (dirs * P) + direction * P + units[None, :]
    w_ty = w_hh_ptr.dtype.element_ty
    g_ty = dgates_ptr.dtype.element_ty
    # W_k as a (K = gate unit j) x (N = unit p of h) tile: dh_rec = sum_k dgates_k W_k.
    j = tl.arange(0, BLOCK_H)
    w_mask = (j[:, None] < H) & (units[None, :] < P)
    w_i, w_f, w_g, w_o = load4(w_hh_ptr + direction * 4 * H * P, j[:, None] * P + units[None, :], H * P, w_mask, w_ty)
    if PROJ:  # W_hr as a (K = unit p) x (N = hidden unit) tile: dm = dh W_hr
        w_r = tl.load(w_hr_ptr + direction * P * H + units[:, None] * H + cols[None, :],
                      mask=(units[:, None] < P) & (cols[None, :] < H), other=0.0)
    dh_rec = tl.load(dh_ptr + grad_h, mask=h_mask, other=0.0).to(COMPUTE)
    dc = tl.load(dc_ptr + grad_c, mask=mask, other=0.0).to(COMPUTE)
    for r in range(T):
        s = T - 1 - r
        t, inside = _time_of_step(s, length, first, sign)
        live = mask & inside[:, None]
        # Past its length a row's loads are zeros, so its gate gradients are exactly zero.
        i, f, g, o = load4(acts_ptr + s * B * 4 * H, gate, H, live, COMPUTE)
        c = tl.load(cs_ptr + (s + 1) * B * H + state, mask=live, other=0.0).to(COMPUTE)
        c_prev = tl.load(cs_ptr + s * B * H + state, mask=live, other=0.0).to(COMPUTE)
        dh = tl.load(dout_ptr + t[:, None] * (B * dirs * P) + dout_row, mask=h_mask & inside[:, None],
                     other=0.0).to(COMPUTE) + dh_rec
        if PROJ:
            tl.store(dproj_ptr + (direction * T + s) * B * P + rows[:, None] * P + units[None, :],
                     tl.where(inside[:, None], dh, 0.0).to(dproj_ptr.dtype.element_ty), mask=h_mask)
            dh = dot(dh.to(w_ty), w_r, PRECISION).to(COMPUTE)
        d_i, d_f, d_g, d_o, dc_prev = cell_grad(dh, dc, i, f, g, o, c, c_prev)
        d_i, d_f, d_g, d_o = d_i.to(g_ty), d_f.to(g_ty), d_g.to(g_ty), d_o.to(g_ty)
        store4(dgates_ptr + t[:, None] * (B * dirs * 4 * H), dgate_row, H, d_i, d_f, d_g, d_o, mask)
        # The rounded gate gradients, as stored: dW_hh and dx are computed from the same values.
        dh_step = (dot(d_i.to(w_ty), w_i, PRECISION).to(COMPUTE) + dot(d_f.to(w_ty), w_f, PRECISION).to(COMPUTE)
                   + dot(d_g.to(w_ty), w_g, PRECISION).to(COMPUTE) + dot(d_o.to(w_ty), w_o, PRECISION).to(COMPUTE))
        dh_rec = tl.where(inside[:, None], dh_step, dh_rec)
        dc = tl.where(inside[:, None], dc_prev, dc)
    tl.store(dh_ptr + grad_h, dh_rec.to(dh_ptr.dtype.element_ty), mask=h_mask)
    tl.store(dc_ptr + grad_c, dc.to(dc_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _streaming_bwd(dout_ptr, acts_ptr, cs_ptr, w_hh_ptr, w_hr_ptr, lengths_ptr, dgates_ptr, dproj_ptr, dh_ptr,
                   dc_ptr, T, B, H, P, COMPUTE: tl.constexpr, PRECISION: tl.constexpr, PROJ: tl.constexpr,
                   BLOCK_B: tl.constexpr, BLOCK_K: tl.constexpr):
    # One function: each step's phases (dh whole with a projection, gate gradients, then dh_rec from all of them)
    # meet at barriers.
    direction = tl.program_id(1)
    dirs = tl.num_programs(1)
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    row_ok = rows < B
    length = tl.load(lengths_ptr + rows, mask=row_ok, other=0)
    first, sign = direction * (length - 1), 1 - 2 * direction  # step s reads time first + sign s
    acts_ptr += direction * T * B * 4 * H
    cs_ptr += direction * (T + 1) * B * H
    w_hh_ptr += direction * 4 * H * P
    w_hr_ptr += direction * P * H
    dproj_ptr += direction * T * B * P
    dh_ptr += direction * B * P
    dc_ptr += direction * B * H
    k = tl.arange(0, BLOCK_K)
    for r in range(T):
        s = T - 1 - r
        t, inside = _time_of_step(s, length, first, sign)
        dgates_row = dgates_ptr + t[:, None] * (B * dirs * 4 * H) + rows[:, None] * (dirs * 4 * H) + direction * 4 * H
        dout_row = dout_ptr + t[:, None] * (B * dirs * P) + rows[:, None] * (dirs * P) + direction * P
        # dh_rec of this step was stored by other threads in the previous iteration.
        tl.debug_barrier()
        if PROJ:  # dh = dout + dh_rec whole, into dproj, before any column of dm = dh W_hr
            _whole_dh(dout_row, dh_ptr, dproj_ptr + s * B * P, P, rows, row_ok, inside, COMPUTE, BLOCK_K)
            tl.debug_barrier()
        for n0 in range(0, H, BLOCK_K):
            cols = n0 + k
            mask = row_ok[:, None] & (cols[None, :] < H)
            live = mask & inside[:, None]
            state = rows[:, None] * H + cols[None, :]
            i, f, g, o = load4(acts_ptr + s * B * 4 * H, rows[:, None] * (4 * H) + cols[None, :], H, live, COMPUTE)
            c = tl.load(cs_ptr + (s + 1) * B * H + state, mask=live, other=0.0).to(COMPUTE)
            c_prev = tl.load(cs_ptr + s * B * H + state, mask=live, other=0.0).to(COMPUTE)
            if PROJ:
                dh = _streamed_dot(dproj_ptr + s * B * P + rows[:, None] * P, row_ok, w_hr_ptr, H, cols, H, P,
                                   PRECISION, COMPUTE, BLOCK_B, BLOCK_K)
            else:
                dh = (tl.load(dout_row + cols[None, :], mask=live, other=0.0).to(COMPUTE)
                      + tl.load(dh_ptr + state, mask=mask, other=0.0).to(COMPUTE))
            dc = tl.load(dc_ptr + state, mask=live, other=0.0).to(COMPUTE)
            d_i, d_f, d_g, d_o, dc = cell_grad(dh, dc, i, f, g, o, c, c_prev)
            # Zeros past a row's length (its loads were zeros); its dc and dh_rec pass through untouched.
            store4(dgates_row, cols[None, :], H, d_i, d_f, d_g, d_o, mask)
            tl.store(dc_ptr + state, dc.to(dc_ptr.dtype.element_ty), mask=live)
        # Every column of this step's dgates is stored, and every read of dh_ptr above is done.
        tl.debug_barrier()
        for n0 in range(0, P, BLOCK_K):
            units = n0 + k
            live = row_ok[:, None] & (units[None, :] < P) & inside[:, None]
            acc = tl.zeros((BLOCK_B, BLOCK_K), dtype=COMPUTE)
            for q in tl.static_range(4):  # W_q (H, P): element (gate unit j, unit p) at j * P + p
                acc += _streamed_dot(dgates_row + q * H, row_ok, w_hh_ptr + q * H * P, P, units, P, H, PRECISION,
                                     COMPUTE, BLOCK_B, BLOCK_K)
            tl.store(dh_ptr + rows[:, None] * P + units[None, :], acc.to(dh_ptr.dtype.element_ty), mask=live)


@triton.jit
def _whole_dh(dout_row, dh_ptr, dproj_step_ptr, P, rows, row_ok, inside, COMPUTE: tl.constexpr,
              BLOCK_K: tl.constexpr):
    """dL/dh_s = dout[t] + dh_rec over all P columns, into dproj's step (zero past each row's length)."""
    k = tl.arange(0, BLOCK_K)
    for n0 in range(0, P, BLOCK_K):
        units = n0 + k
        mask = row_ok[:, None] & (units[None, :] < P)
        dh = (tl.load(dout_row + units[None, :], mask=mask & inside[:, None], other=0.0).to(COMPUTE)
              + tl.load(dh_ptr + rows[:, None] * P + units[None, :], mask=mask, other=0.0).to(COMPUTE))
        tl.store(dproj_step_ptr + rows[:, None] * P + units[None, :],
                 tl.where(inside[:, None], dh, 0.0).to(dproj_step_ptr.dtype.element_ty), mask=mask)


@triton.jit
def lstm_seq_bwd_kernel(
    dout_ptr,     # (T, B, dirs*P) dL/dout in time order (zero past each row's length: out is constant there)
    acts_ptr,     # (dirs, T, B, G) i, f, g, o saved by the forward, in step order
    cs_ptr,       # (dirs, T+1, B, H) float32 (float64): c0, then c after each step, in step order
    w_hh_ptr,     # (dirs, G, P)
    w_hr_ptr,     # (dirs, P, H) with PROJ (else unused)
    lengths_ptr,  # (B,) int32: each row's length, 1..T
    dgates_ptr,   # (T, B, dirs*G) out, in time order: gradient of the gate pre-activations, zero past each length
    dproj_ptr,    # (dirs, T, B, P) out with PROJ, in step order: dL/dh_s whole, zero past each length (else unused)
    dh_ptr,       # (dirs, B, P) float32 (float64): in dL/dh_n; out dL/dh0 (streaming: the per-step dh_rec too)
    dc_ptr,       # (dirs, B, H) float32 (float64): in dL/dc_n; out dL/dc0
    T, B, H, P,
    COMPUTE: tl.constexpr, PRECISION: tl.constexpr, RESIDENT: tl.constexpr, PROJ: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_K: tl.constexpr,
):
    # One kernel name for both paths, so profiles and launch counts read the same whichever the host chose.
    if RESIDENT:
        _resident_bwd(dout_ptr, acts_ptr, cs_ptr, w_hh_ptr, w_hr_ptr, lengths_ptr, dgates_ptr, dproj_ptr, dh_ptr,
                      dc_ptr, T, B, H, P, COMPUTE, PRECISION, PROJ, BLOCK_B, BLOCK_H, BLOCK_P)
    else:
        _streaming_bwd(dout_ptr, acts_ptr, cs_ptr, w_hh_ptr, w_hr_ptr, lengths_ptr, dgates_ptr, dproj_ptr, dh_ptr,
                       dc_ptr, T, B, H, P, COMPUTE, PRECISION, PROJ, BLOCK_B, BLOCK_K)
