"""Reference LSTM math as pure functions, one named line per gate.

Legend: B batch, H hidden size, H_out = proj_size or H, G = 4H gate pre-activations in nn.LSTM's order (i, f, g, o).
Kernels are checked against these; the `loop` backend runs them directly.
"""
from __future__ import annotations

import torch


def lstm_pointwise(gates: torch.Tensor, c_prev: torch.Tensor):
    """gates (B, G) = x W_ih^T + h W_hh^T + b_ih + b_hh; c_prev (B, H) -> (h (B, H), c (B, H))."""
    i_pre, f_pre, g_pre, o_pre = gates.chunk(4, dim=-1)
    input_gate = torch.sigmoid(i_pre)
    forget_gate = torch.sigmoid(f_pre)
    candidate = torch.tanh(g_pre)
    output_gate = torch.sigmoid(o_pre)
    c = forget_gate * c_prev + input_gate * candidate
    h = output_gate * torch.tanh(c)
    return h, c


def lstm_cell(x_proj: torch.Tensor, h_prev: torch.Tensor, c_prev: torch.Tensor, w_hh: torch.Tensor,
              w_hr: torch.Tensor | None = None):
    """One step. x_proj (B, G) is the input projection with both biases already added; h_prev (B, H_out),
    c_prev (B, H), w_hh (G, H_out); w_hr (H_out, H) projects h down to proj_size (None: H_out = H)."""
    h, c = lstm_pointwise(x_proj + h_prev @ w_hh.t(), c_prev)
    return (h, c) if w_hr is None else (h @ w_hr.t(), c)


def input_projection(x: torch.Tensor, w_ih: torch.Tensor, b_ih, b_hh) -> torch.Tensor:
    """x (T, B, D) -> (T, B, G): one matmul for all steps, since it does not depend on h."""
    bias = None if b_ih is None else b_ih + b_hh
    return torch.nn.functional.linear(x, w_ih, bias)
