"""An LSTM with torch.nn.LSTM's constructor, forward and parameter layout, decomposed differently.

Legend: B batch, T time steps, D input features, H hidden size, L layers, dirs = 2 if bidirectional
else 1, G = 4H gate pre-activations in nn.LSTM's order (i, f, g, o).

Per layer and direction: the input projection of all T steps is one GEMM (T*B, D) @ (D, G) with both
biases folded in; each step is then one fused addmm, gates = xw[t] + h @ W_hh^T, for the four gates at
once, and the cell update. nn.LSTM's parameter names and shapes, so a state_dict moves either way.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class FusedAddmmLSTM(nn.Module):
    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, proj_size: int = 0,
                 device=None, dtype=None) -> None:
        super().__init__()
        if proj_size:
            raise ValueError(f"FusedAddmmLSTM: proj_size={proj_size} is not supported; expected proj_size=0")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout, self.bidirectional = bias, batch_first, float(dropout), bidirectional
        self.proj_size = 0
        factory = {"device": device, "dtype": dtype}
        directions = 2 if bidirectional else 1
        for k in range(num_layers):
            layer_in = input_size if k == 0 else hidden_size * directions
            for suffix in ("", "_reverse")[:directions]:
                shapes = {"weight_ih": (4 * hidden_size, layer_in), "weight_hh": (4 * hidden_size, hidden_size)}
                if bias:
                    shapes |= {"bias_ih": (4 * hidden_size,), "bias_hh": (4 * hidden_size,)}
                for name, shape in shapes.items():
                    self.register_parameter(f"{name}_l{k}{suffix}", nn.Parameter(torch.empty(shape, **factory)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)  # nn.LSTM's initialisation
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def forward(self, input, hx=None):
        """input (B, T, D) if batch_first else (T, B, D), or unbatched (T, D); hx = (h_0, c_0), each
        (dirs*L, B, H). Returns (output (.., T, dirs*H), (h_n, c_n)), as torch.nn.LSTM."""
        if not isinstance(input, torch.Tensor):
            raise TypeError(f"FusedAddmmLSTM: expected a tensor input (PackedSequence is not supported), "
                            f"got {type(input).__name__}")
        batched = input.dim() == 3
        x = input if batched else input.unsqueeze(1)
        if self.batch_first and batched:
            x = x.transpose(0, 1)
        directions = 2 if self.bidirectional else 1
        rows = directions * self.num_layers
        if hx is None:
            h0 = c0 = x.new_zeros(rows, x.shape[1], self.hidden_size)
        else:
            h0, c0 = (s if batched else s.unsqueeze(1) for s in hx)
            if h0.shape != (rows, x.shape[1], self.hidden_size) or c0.shape != h0.shape:
                raise ValueError(f"FusedAddmmLSTM: h_0 and c_0 must have shape (dirs*L, B, H) = "
                                 f"{(rows, x.shape[1], self.hidden_size)}, got {tuple(h0.shape)}, {tuple(c0.shape)}")
        h_n, c_n = [], []
        for k in range(self.num_layers):
            if k and self.dropout and self.training:
                x = F.dropout(x, self.dropout, training=True)
            outs = []
            for d, suffix in enumerate(("", "_reverse")[:directions]):
                weights = [getattr(self, f"{n}_l{k}{suffix}", None)
                           for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
                out, h, c = _direction(x, h0[k * directions + d], c0[k * directions + d], *weights, reverse=d == 1)
                outs.append(out)
                h_n.append(h)
                c_n.append(c)
            x = outs[0] if directions == 1 else torch.cat(outs, dim=-1)
        h_n, c_n = torch.stack(h_n), torch.stack(c_n)
        if not batched:
            return x.squeeze(1), (h_n.squeeze(1), c_n.squeeze(1))
        return (x.transpose(0, 1) if self.batch_first else x), (h_n, c_n)


def _direction(x, h, c, w_ih, w_hh, b_ih, b_hh, reverse: bool):
    """x (T, B, D), h and c (B, H) -> (out (T, B, H), h_n, c_n), one layer in one direction."""
    bias = None if b_ih is None else b_ih + b_hh
    xw = F.linear(x, w_ih, bias)  # (T, B, G): every step's input projection in one GEMM
    # unbind, not xw[t]: indexing in a loop makes a backward that zero-fills all of xw once per step
    steps = xw.unbind(0)
    outs = [None] * len(steps)
    w_hh_t = w_hh.t()
    for t in (reversed(range(len(steps))) if reverse else range(len(steps))):
        gates = torch.addmm(steps[t], h, w_hh_t)  # (B, G): the four gates in one call
        i, f, g, o = gates.chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        outs[t] = h
    return torch.stack(outs), h, c
