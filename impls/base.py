"""The backend contract: torch.nn.LSTM's constructor, parameter layout and forward, with shape checks.

Legend: B batch, T time steps, D input features, H hidden size, L layers, G = 4H gate
pre-activations in nn.LSTM's order (i, f, g, o).

A backend subclasses `LSTMBase` and implements `_layer`, one layer over all time steps in
time-major layout; everything a user can see (constructor, parameter names, state_dict,
batch_first, initial state, unbatched input, dropout between layers) lives here once.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def check_sizes(input_size: int, hidden_size: int, num_layers: int) -> None:
    for name, value in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive int, got {value!r}")


def _shape(t: torch.Size | tuple) -> str:
    return "(" + ", ".join(str(int(s)) for s in t) + ")"


def check_input(x: torch.Tensor, input_size: int, batch_first: bool, who: str) -> bool:
    """Validates the input; returns whether it is batched."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{who}: input must be a torch.Tensor, got {type(x).__name__}")
    layout = "(B, T, D)" if batch_first else "(T, B, D)"
    if x.dim() not in (2, 3):
        raise ValueError(f"{who}: input must be 3-D {layout} or unbatched 2-D (T, D) with D={input_size}, "
                         f"got {x.dim()}-D shape {_shape(x.shape)}")
    if x.shape[-1] != input_size:
        raise ValueError(f"{who}: input must have D={input_size} features in its last dimension {layout}, "
                         f"got shape {_shape(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{who}: input must be a floating-point tensor, got {x.dtype}")
    return x.dim() == 3


def check_state(state: torch.Tensor, name: str, expected: tuple, x: torch.Tensor, who: str) -> None:
    if not isinstance(state, torch.Tensor):
        raise TypeError(f"{who}: {name} must be a torch.Tensor of shape {_shape(expected)}, got {type(state).__name__}")
    if tuple(state.shape) != tuple(expected):
        dims = "(L, B, H)" if len(expected) == 3 else "(L, H)"
        raise ValueError(f"{who}: {name} must have shape {dims} = {_shape(expected)}, got {_shape(state.shape)}")
    if state.dtype != x.dtype or state.device != x.device:
        raise ValueError(f"{who}: {name} must match the input's dtype and device ({x.dtype}, {x.device}), "
                         f"got ({state.dtype}, {state.device})")


def split_state(hx, num_layers: int, hidden_size: int, x: torch.Tensor, batched: bool, batch_dim: int, who: str):
    """Returns (h_0, c_0) as (L, B, H), zeros when hx is None."""
    batch = x.shape[batch_dim] if batched else 1
    expected = (num_layers, batch, hidden_size) if batched else (num_layers, hidden_size)
    if hx is None:
        zeros = torch.zeros(num_layers, batch, hidden_size, dtype=x.dtype, device=x.device)
        return zeros, zeros
    if not isinstance(hx, (tuple, list)) or len(hx) != 2:
        raise ValueError(f"{who}: initial state must be a tuple (h_0, c_0), each of shape {_shape(expected)}")
    h0, c0 = hx
    check_state(h0, "h_0", expected, x, who)
    check_state(c0, "c_0", expected, x, who)
    if not batched:
        h0, c0 = h0.unsqueeze(1), c0.unsqueeze(1)
    return h0, c0


class LSTMBase(nn.Module):
    """torch.nn.LSTM's interface; subclasses provide the per-layer recurrence."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 proj_size: int = 0, device=None, dtype=None) -> None:
        super().__init__()
        check_sizes(input_size, hidden_size, num_layers)
        if bidirectional:
            raise ValueError(f"{type(self).__name__}: bidirectional=True is not supported; expected False")
        if proj_size:
            raise ValueError(f"{type(self).__name__}: proj_size is not supported; expected 0, got {proj_size!r}")
        if not (isinstance(dropout, (int, float)) and 0.0 <= dropout <= 1.0):
            raise ValueError(f"{type(self).__name__}: dropout must be a float in [0, 1], got {dropout!r}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        factory = {"device": device, "dtype": dtype}
        gates = 4 * hidden_size
        for k in range(num_layers):
            layer_in = input_size if k == 0 else hidden_size
            self.register_parameter(f"weight_ih_l{k}", nn.Parameter(torch.empty(gates, layer_in, **factory)))
            self.register_parameter(f"weight_hh_l{k}", nn.Parameter(torch.empty(gates, hidden_size, **factory)))
            if bias:
                self.register_parameter(f"bias_ih_l{k}", nn.Parameter(torch.empty(gates, **factory)))
                self.register_parameter(f"bias_hh_l{k}", nn.Parameter(torch.empty(gates, **factory)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Same initialisation as torch.nn.LSTM, so training curves are comparable across backends.
        bound = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def layer_weights(self, k: int):
        """(w_ih (G, D_k), w_hh (G, H), b_ih (G,) or None, b_hh (G,) or None) of layer k."""
        return tuple(getattr(self, f"{name}_l{k}", None) for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))

    def _layer(self, x, h0, c0, w_ih, w_hh, b_ih, b_hh):
        """x (T, B, D_k), h0/c0 (B, H) -> (out (T, B, H), h_n (B, H), c_n (B, H))."""
        raise NotImplementedError

    def forward(self, input: torch.Tensor, hx=None):
        who = type(self).__name__
        batched = check_input(input, self.input_size, self.batch_first, who)
        batch_dim = 0 if self.batch_first else 1
        h0, c0 = split_state(hx, self.num_layers, self.hidden_size, input, batched, batch_dim, who)
        x = input if batched else input.unsqueeze(1)
        if self.batch_first and batched:
            x = x.transpose(0, 1)
        h_list, c_list = [], []
        for k in range(self.num_layers):
            if k > 0 and self.dropout > 0 and self.training:
                x = F.dropout(x, self.dropout, training=True)
            x, h, c = self._layer(x, h0[k], c0[k], *self.layer_weights(k))
            h_list.append(h)
            c_list.append(c)
        h_n, c_n = torch.stack(h_list), torch.stack(c_list)
        if not batched:
            return x.squeeze(1), (h_n.squeeze(1), c_n.squeeze(1))
        return (x.transpose(0, 1) if self.batch_first else x), (h_n, c_n)

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, bias={self.bias}, "
                f"batch_first={self.batch_first}, dropout={self.dropout}")
