"""`loop`: pure PyTorch, one time step at a time, the textbook gate equations (impls.cells).

Legend: B batch, T time steps, D input features, H hidden size, H_out = proj_size or H, G = 4H.
The only trick is hoisting the input projection out of the loop: it does not depend on h.
Variable length is a mask, not a per-row loop: every row computes every step, and a row past its
length keeps its h and c and outputs zero (impls.base states the meaning).
"""
from __future__ import annotations

import torch

from impls.base import SURFACE, LSTMBase, step_mask
from impls.cells import input_projection, lstm_cell


def lstm_layer(x, h, c, w_ih, w_hh, b_ih, b_hh, w_hr=None, lengths=None, reverse=False, cell=lstm_cell):
    """One direction of one layer over all steps; `compiled` traces this same function.

    x (T, B, D_k), h (B, H_out), c (B, H), w_hr (H_out, H) or None; lengths (B,) int64 on x's device,
    or None when every row has T steps; reverse runs t = T-1 .. 0, so with lengths each row starts at
    its own last step (the steps after it leave h and c untouched). cell(x_proj_t, h, c, w_hh, w_hr)
    is one step. -> (out (T, B, H_out), h_n (B, H_out), c_n (B, H))."""
    x_proj = input_projection(x, w_ih, b_ih, b_hh)  # (T, B, G)
    # unbind, not x_proj[t]: the backward of each index op is a zero-filled (T, B, G) tensor,
    # which made a 784-step backward quadratic in T (164 s against cudnn's 1.4 s on CPU)
    steps = x_proj.unbind(0)
    inside = None if lengths is None else step_mask(lengths, len(steps)).unbind(0)  # T of (B, 1)
    outputs: list[torch.Tensor] = []  # in the order computed: reversed at the end for reverse=True
    for t in (range(len(steps) - 1, -1, -1) if reverse else range(len(steps))):
        h_next, c_next = cell(steps[t], h, c, w_hh, w_hr)
        if inside is None:
            h, c = h_next, c_next
            outputs.append(h)
        else:
            h, c = torch.where(inside[t], h_next, h), torch.where(inside[t], c_next, c)
            outputs.append(torch.where(inside[t], h_next, 0.0))
    if reverse:
        outputs.reverse()
    return torch.stack(outputs), h, c


class LoopLSTM(LSTMBase):
    supports = SURFACE
    _layer = staticmethod(lstm_layer)
