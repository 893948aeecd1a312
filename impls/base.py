"""The backend contract: torch.nn.LSTM's constructor, parameter layout and forward, with shape checks.

Legend: B batch, T time steps, D input features, H hidden size, H_out = proj_size or H (what h
carries), L layers, dirs = 2 if bidirectional else 1, G = 4H gate pre-activations in nn.LSTM's
order (i, f, g, o).

Everything a user can see lives here once: constructor, parameter names and state_dict (nn.LSTM's,
`_reverse` and `weight_hr` included), batch_first, initial state, unbatched input, dropout between
layers, PackedSequence in and out, and the `lengths=` extension for padded input. A backend
subclasses `LSTMBase` and supplies the recurrence at one of three depths, all time-major:

    _forward_padded(x (T, B, D), lengths (B,) or None, h0 (dirs*L, B, H_out), c0 (dirs*L, B, H))
        -> (out (T, B, dirs*H_out), h_n, c_n)           every layer: e.g. one compiled graph
    _run_layer(x, h0 (dirs, B, H_out), c0 (dirs, B, H), directions, lengths)
        -> (out (T, B, dirs*H_out), h (dirs, B, H_out), c (dirs, B, H))  one layer, both directions
    _layer(x, h0 (B, H_out), c0 (B, H), w_ih, w_hh, b_ih, b_hh[, w_hr=, lengths=, reverse=])
        -> (out (T, B, H_out), h_n, c_n)                 one layer, one direction

Variable length has one meaning everywhere (`lengths` is None when every row has T steps): row b
updates h and c only at steps t < lengths[b], so its final state is the state at its own last step;
its outputs past that step are zero (what pad_packed_sequence gives); the reverse direction starts at
each row's own last step. A PackedSequence is unpacked here to (padded, lengths), in the caller's
batch order (the order of hx and h_n, as nn.LSTM), and the output is packed back with the input's
own batch_sizes and indices. What a subclass can do is its class attribute `supports` (a subset of
SURFACE); anything else is refused here, in the constructor or the forward, with one clear line.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

# SURFACE: the options beyond the six every backend has: bidirectional=True, proj_size > 0, PackedSequence
# input, and padded input with `lengths=` (forward's extension, for variable length without packing).
from impls.registry import SURFACE, describe


def check_sizes(input_size: int, hidden_size: int, num_layers: int) -> None:
    for name, value in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive int, got {value!r}")


def check_surface(who: str, hidden_size: int, bidirectional, proj_size, supports=SURFACE) -> None:
    """Validates bidirectional and proj_size as nn.LSTM means them, and that `supports` covers them."""
    if not isinstance(bidirectional, bool):
        raise ValueError(f"{who}: bidirectional must be True or False, got {bidirectional!r}")
    if isinstance(proj_size, bool) or not isinstance(proj_size, int) or not 0 <= proj_size < hidden_size:
        raise ValueError(f"{who}: proj_size must be an int in [0, hidden_size={hidden_size}) (0: no projection), "
                         f"got {proj_size!r}")
    for option, used, off in (("bidirectional", bidirectional, False), ("proj_size", proj_size, 0)):
        if used and option not in supports:
            raise ValueError(f"{who}: {option}={used!r} is not supported by this backend "
                             f"(it supports: {describe(supports)}); expected {option}={off}")



def _shape(t: torch.Size | tuple) -> str:
    return "(" + ", ".join(str(int(s)) for s in t) + ")"


def check_input(x, input_size: int, batch_first: bool, who: str) -> bool:
    """Validates a padded input tensor; returns whether it is batched."""
    if isinstance(x, PackedSequence):
        raise TypeError(f"{who}: a PackedSequence is not accepted here; expected a padded tensor")
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{who}: input must be a torch.Tensor or a PackedSequence, got {type(x).__name__}")
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


def check_packed(packed: PackedSequence, input_size: int, who: str) -> int:
    """Validates a PackedSequence's data (N, D); returns its batch size."""
    data = packed.data
    if data.dim() != 2 or data.shape[-1] != input_size:
        raise ValueError(f"{who}: PackedSequence data must be 2-D (N, D) with D={input_size}, got {_shape(data.shape)}")
    if not data.is_floating_point():
        raise TypeError(f"{who}: PackedSequence data must be floating-point, got {data.dtype}")
    return int(packed.batch_sizes[0])


def check_lengths(lengths, batch: int, steps: int, who: str) -> torch.Tensor:
    """`lengths=` for padded (B, T, D) input: B ints in [1, T], any device; returned as int64 on the CPU."""
    expected = f"a 1-D integer tensor or list of B={batch} lengths in [1, T={steps}]"
    try:
        values = torch.as_tensor(lengths.detach() if isinstance(lengths, torch.Tensor) else lengths).cpu()
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"{who}: lengths must be {expected}, got {type(lengths).__name__}") from None
    if values.dim() != 1 or values.numel() != batch or values.is_floating_point() or values.is_complex() \
            or values.dtype == torch.bool:
        raise ValueError(f"{who}: lengths must be {expected}, got {values.dtype} of shape {_shape(values.shape)}")
    values = values.long()
    if values.numel() and not (values.min() >= 1 and values.max() <= steps):
        raise ValueError(f"{who}: lengths must be {expected}, "
                         f"got values from {int(values.min())} to {int(values.max())}")
    return values


def check_state(state, name: str, expected: tuple, dims: str, like: torch.Tensor, who: str) -> None:
    if not isinstance(state, torch.Tensor):
        raise TypeError(f"{who}: {name} must be a torch.Tensor of shape {_shape(expected)}, got {type(state).__name__}")
    if tuple(state.shape) != tuple(expected):
        raise ValueError(f"{who}: {name} must have shape {dims} = {_shape(expected)}, got {_shape(state.shape)}")
    if state.dtype != like.dtype or state.device != like.device:
        raise ValueError(f"{who}: {name} must match the input's dtype and device ({like.dtype}, {like.device}), "
                         f"got ({state.dtype}, {state.device})")


def initial_state(hx, rows: int, widths: dict[str, int], batch: int, batched: bool, like: torch.Tensor, who: str):
    """Validates hx against {"h_0": H_out, "c_0": H} (LSTM) or {"h_0": H} (GRU), `rows` = dirs*L.
    Returns a tuple of batched (rows, B, width) states, zeros when hx is None."""
    names = list(widths)
    if hx is None:
        # States of one width share one zero tensor (a kernel fewer). Not views of one wider tensor:
        # Dynamo guards a view's base, whose batch dimension it does not know to be dynamic.
        zeros = {width: like.new_zeros(rows, batch, width) for width in set(widths.values())}
        return tuple(zeros[widths[n]] for n in names)
    states = (hx,) if len(names) == 1 else hx
    if len(names) > 1 and (not isinstance(hx, (tuple, list)) or len(hx) != len(names)):
        raise ValueError(f"{who}: initial state must be a tuple ({', '.join(names)}), of shapes "
                         + " and ".join(_shape((rows, batch, widths[n])) for n in names))
    for name, state in zip(names, states):
        width = "H_out" if name == "h_0" and len(names) > 1 else "H"
        expected, dims = ((rows, batch, widths[name]), f"(dirs*L, B, {width})") if batched else \
                         ((rows, widths[name]), f"(dirs*L, {width})")
        check_state(state, name, expected, dims, like, who)
    return tuple(s if batched else s.unsqueeze(1) for s in states)


def step_mask(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """lengths (B,) -> (T, B, 1) bool: whether row b is still inside its sequence at step t."""
    return (torch.arange(steps, device=lengths.device)[:, None] < lengths[None, :]).unsqueeze(-1)


def unpack(packed: PackedSequence) -> tuple[torch.Tensor, torch.Tensor]:
    """PackedSequence -> (padded (T, B, D) time-major in the caller's batch order, lengths (B,) int64 CPU)."""
    return pad_packed_sequence(packed, batch_first=False)


def pack_like(out: torch.Tensor, like: PackedSequence) -> PackedSequence:
    """out (T, B, F) in the caller's batch order -> PackedSequence with `like`'s batch_sizes and indices.
    Gathered here rather than by pack_padded_sequence, which would sort again and could order ties differently."""
    if like.sorted_indices is not None:
        out = out.index_select(1, like.sorted_indices)
    steps, batch = out.shape[:2]
    # Packed data is the (t, b) pairs with b < batch_sizes[t], time-major; indices found on the CPU
    # (batch_sizes live there), so a CUDA output is gathered without a device sync.
    present = torch.arange(batch)[None, :] < like.batch_sizes[:steps, None]
    rows = present.flatten().nonzero().squeeze(1).to(out.device)
    data = out.reshape(steps * batch, -1).index_select(0, rows)
    return PackedSequence(data, like.batch_sizes, like.sorted_indices, like.unsorted_indices)


def forward_by_packing(forward, x: torch.Tensor, lengths: torch.Tensor, hx, batch_first: bool):
    """`lengths=` for modules that know only PackedSequence (nn.LSTM, nn.GRU): pack, run, pad back to
    the input's T. The packing is the cost those modules pay for variable length."""
    packed = pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=False)
    out, state = forward(packed, hx)
    padded, _ = pad_packed_sequence(out, batch_first=batch_first, total_length=x.shape[1 if batch_first else 0])
    return padded, state


def checked_torch_forward(module: nn.RNNBase, forward, input, hx, lengths, widths: dict[str, int]):
    """nn.LSTM's or nn.GRU's `forward` after this project's checks (clearer than torch's own);
    widths: {"h_0": H_out, "c_0": H} for an LSTM, {"h_0": H} for a GRU."""
    who = type(module).__name__
    rows = module.num_layers * (2 if module.bidirectional else 1)
    if isinstance(input, PackedSequence):
        if lengths is not None:
            raise ValueError(f"{who}: lengths= is for padded input; a PackedSequence carries its own")
        batch = check_packed(input, module.input_size, who)
        initial_state(hx, rows, widths, batch, True, input.data, who)
        return forward(input, hx)
    batched = check_input(input, module.input_size, module.batch_first, who)
    batch = input.shape[0 if module.batch_first else 1] if batched else 1
    initial_state(hx, rows, widths, batch, batched, input, who)
    if lengths is None:
        return forward(input, hx)
    if not batched:
        raise ValueError(f"{who}: lengths= needs batched 3-D input; unbatched input is one full-length row")
    lengths = check_lengths(lengths, batch, input.shape[1 if module.batch_first else 0], who)
    return forward_by_packing(forward, input, lengths, hx, module.batch_first)


def run_layers(x, h0, c0, layers, run_layer, lengths=None, dropout: float = 0.0, training: bool = False):
    """Stacks layers as nn.LSTM does (dropout on every layer's output but the last).
    x (T, B, D), h0 (dirs*L, B, H_out), c0 (dirs*L, B, H); layers: per layer, per direction
    (w_ih, w_hh, b_ih, b_hh, w_hr). -> (out (T, B, dirs*H_out), h_n, c_n)."""
    h_n, c_n = [], []
    for k, directions in enumerate(layers):
        if k > 0 and dropout > 0 and training:
            x = F.dropout(x, dropout, training=True)
        rows = slice(k * len(directions), (k + 1) * len(directions))
        x, h, c = run_layer(x, h0[rows], c0[rows], directions, lengths)
        h_n.append(h)
        c_n.append(c)
    return x, torch.cat(h_n), torch.cat(c_n)


def run_directions(run_direction, x, h0, c0, directions, lengths):
    """One layer, each direction by `run_direction(x, h, c, *weights, lengths=, reverse=)`;
    the directions' outputs side by side (forward first), as nn.LSTM lays them out."""
    if len(directions) == 1:  # views, not copies: a one-direction layer adds no kernel here
        out, h, c = run_direction(x, h0[0], c0[0], *directions[0], lengths=lengths, reverse=False)
        return out, h.unsqueeze(0), c.unsqueeze(0)
    outs, hs, cs = [], [], []
    for d, weights in enumerate(directions):
        out, h, c = run_direction(x, h0[d], c0[d], *weights, lengths=lengths, reverse=d == 1)
        outs.append(out)
        hs.append(h)
        cs.append(c)
    return torch.cat(outs, dim=-1), torch.stack(hs), torch.stack(cs)


class LSTMBase(nn.Module):
    """torch.nn.LSTM's interface; subclasses provide the recurrence (see the module docstring)."""

    supports: frozenset = frozenset()  # which of SURFACE the subclass's recurrence handles

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 proj_size: int = 0, device=None, dtype=None) -> None:
        super().__init__()
        who = type(self).__name__
        check_sizes(input_size, hidden_size, num_layers)
        check_surface(who, hidden_size, bidirectional, proj_size, self.supports)
        if not (isinstance(dropout, (int, float)) and 0.0 <= dropout <= 1.0):
            raise ValueError(f"{who}: dropout must be a float in [0, 1], got {dropout!r}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional, self.proj_size = bidirectional, proj_size
        self._register_parameters({"device": device, "dtype": dtype})
        self.reset_parameters()

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    def _register_parameters(self, factory: dict) -> None:
        # nn.LSTM's names, shapes and order (layer, then direction), so state_dicts interchange.
        gates, out_size = 4 * self.hidden_size, self.proj_size or self.hidden_size
        for k in range(self.num_layers):
            layer_in = self.input_size if k == 0 else out_size * self.directions
            for suffix in ("", "_reverse")[:self.directions]:
                shapes: dict[str, tuple[int, ...]] = {"weight_ih": (gates, layer_in), "weight_hh": (gates, out_size)}
                if self.bias:
                    shapes |= {"bias_ih": (gates,), "bias_hh": (gates,)}
                if self.proj_size:
                    shapes["weight_hr"] = (self.proj_size, self.hidden_size)
                for name, shape in shapes.items():
                    self.register_parameter(f"{name}_l{k}{suffix}", nn.Parameter(torch.empty(shape, **factory)))

    def reset_parameters(self) -> None:
        # Same initialisation as torch.nn.LSTM, so training curves are comparable across backends.
        bound = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def layer_weights(self, k: int, direction: int = 0):
        """(w_ih (G, D_k), w_hh (G, H_out), b_ih (G,) or None, b_hh (G,) or None, w_hr (H_out, H) or None)."""
        suffix = "_reverse" if direction else ""
        return tuple(getattr(self, f"{name}_l{k}{suffix}", None)
                     for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr"))

    def stacked_weights(self) -> tuple:
        """Per layer, per direction, `layer_weights`: what run_layers takes."""
        return tuple(tuple(self.layer_weights(k, d) for d in range(self.directions)) for k in range(self.num_layers))

    def forward(self, input, hx=None, lengths=None):
        """nn.LSTM's forward; `lengths` (B ints, best on the CPU) marks padded input's true lengths."""
        who = type(self).__name__
        if isinstance(input, PackedSequence):
            self._require("packed", "PackedSequence input", who)
            if lengths is not None:
                raise ValueError(f"{who}: lengths= is for padded input; a PackedSequence carries its own")
            check_packed(input, self.input_size, who)
            x, lengths = unpack(input)
            out, state = self._time_major(x, lengths, hx, True, who)
            return pack_like(out, input), state
        batched = check_input(input, self.input_size, self.batch_first, who)
        x = input if batched else input.unsqueeze(1)
        if self.batch_first and batched:
            x = x.transpose(0, 1)
        if lengths is not None:
            self._require("lengths", "lengths=", who)
            if not batched:
                raise ValueError(f"{who}: lengths= needs batched 3-D input; unbatched input is one full-length row")
            lengths = check_lengths(lengths, x.shape[1], x.shape[0], who)
        out, (h_n, c_n) = self._time_major(x, lengths, hx, batched, who)
        if not batched:
            return out.squeeze(1), (h_n.squeeze(1), c_n.squeeze(1))
        return (out.transpose(0, 1) if self.batch_first else out), (h_n, c_n)

    def _require(self, option: str, what: str, who: str) -> None:
        if option not in self.supports:
            raise ValueError(f"{who}: {what} is not supported by this backend "
                             f"(it supports: {describe(self.supports)}); "
                             "expected a padded tensor without lengths")

    def _time_major(self, x, lengths, hx, batched: bool, who: str):
        """x (T, B, D), lengths CPU (B,) or None -> (out (T, B, dirs*H_out), (h_n, c_n))."""
        widths = {"h_0": self.proj_size or self.hidden_size, "c_0": self.hidden_size}
        h0, c0 = initial_state(hx, self.directions * self.num_layers, widths, x.shape[1], batched, x, who)
        if lengths is not None:
            lengths = lengths.to(x.device)
            # padding never reaches the recurrence: garbage there (NaN included) would reach the gradients
            x = x.masked_fill(~step_mask(lengths, x.shape[0]), 0)
        out, h_n, c_n = self._forward_padded(x, lengths, h0, c0)
        return out, (h_n, c_n)

    def _forward_padded(self, x, lengths, h0, c0):
        """All layers: x (T, B, D), lengths (B,) int64 on x's device or None, h0 (dirs*L, B, H_out),
        c0 (dirs*L, B, H) -> (out (T, B, dirs*H_out), h_n, c_n)."""
        return run_layers(x, h0, c0, self.stacked_weights(), self._run_layer, lengths, self.dropout, self.training)

    def _run_layer(self, x, h0, c0, directions, lengths):
        """One layer, both directions; override to run them in one launch."""
        return run_directions(self._direction, x, h0, c0, directions, lengths)

    def _direction(self, x, h, c, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, reverse):
        # `_layer` sees the new keywords only when they are in use, so a backend whose `supports` is
        # empty keeps the seven-argument signature.
        options = {key: value for key, value in (("w_hr", w_hr), ("lengths", lengths), ("reverse", reverse))
                   if value is not None and value is not False}
        return self._layer(x, h, c, w_ih, w_hh, b_ih, b_hh, **options)

    def _layer(self, *args: Any, **options: Any) -> Any:
        """(x, h0, c0, w_ih, w_hh, b_ih, b_hh, **options) with x (T, B, D_k), h0 (B, H_out), c0 (B, H)
        -> (out (T, B, H_out), h_n (B, H_out), c_n (B, H)). Typed loosely on purpose: a backend takes only the
        keywords it supports (see _direction), so each override narrows the signature."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        text = (f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, bias={self.bias}, "
                f"batch_first={self.batch_first}, dropout={self.dropout}")
        return text + (", bidirectional=True" if self.bidirectional else "") + \
            (f", proj_size={self.proj_size}" if self.proj_size else "")
