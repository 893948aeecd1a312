"""`compiled` and `compiled-graphs`: the `loop` backend's recurrence under torch.compile (Inductor).

Legend: B batch, T time steps, D input features, H hidden size, L layers, G = 4H.

The module is `LoopLSTM` itself (same constructor, parameters, state_dict); only its recurrence,
all L layers and T steps, runs through one `torch.compile`d function. The checks and the layout
handling stay eager, so a bad input is still one clear error rather than a compiler trace.

Compilations per run: the batch dimension is marked dynamic before each compiled call, so the
training graph is compiled once for every batch size (a last partial batch included), and the
evaluation graph (no_grad, eval mode) once more. Inductor keeps its cache where it always does
(under /tmp, see TORCHINDUCTOR_CACHE_DIR), never in the source tree. Sequences longer than
`unroll_limit` (64) steps compile one cell step instead of the unrolled recurrence (see
`_stepwise_recurrence`): pixel MNIST's 784 steps would otherwise compile for far longer than they train.

For the harness (no `bench` import here):

    compile_stats() -> {"compilations": int, "compile_s": float}

process-wide totals: `compilations` counts the graphs Dynamo compiled since the process started
(a recompilation adds one; torch._dynamo.utils.counters["stats"]["unique_graphs"]), `compile_s` the
wall time spent compiling since this module was imported (Dynamo's compile-event callbacks): Dynamo
tracing plus Inductor's forward compile, the backward graph's compile that AOTAutograd defers to
the first backward, and CUDA graph recording. A run takes the difference of two calls, before its
first step and after its evaluation warm-up. Measured on the 2-core CPU: the default shape's
training graph took 287-469 s to compile with a cold cache (machine heavily loaded), so the first
step of a run is far from its steady state.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from impls.base import check_input, split_state
from impls.cells import input_projection, lstm_cell
from impls.loop import LoopLSTM

_lock = threading.Lock()
_seconds = 0.0
_started: float | None = None


def _on_compile_start(_args) -> None:
    global _started
    _started = time.perf_counter()


def _on_compile_end(_args) -> None:
    global _seconds, _started
    with _lock:
        if _started is not None:
            _seconds += time.perf_counter() - _started
            _started = None


# The handler calls these only for the outermost of nested compile events, so nothing counts twice.
torch._dynamo.callback_handler.register_start_callback(_on_compile_start)
torch._dynamo.callback_handler.register_end_callback(_on_compile_end)


def compile_stats() -> dict:
    """{"compilations": graphs Dynamo compiled, "compile_s": seconds spent compiling}, process-wide."""
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    with _lock:
        return {"compilations": int(graphs), "compile_s": _seconds}


def _stack(x, h0, c0, weights, dropout: float, training: bool, run_layer):
    """x (T, B, D), h0/c0 (L, B, H), weights: L tuples (w_ih, w_hh, b_ih, b_hh) -> (out (T, B, H), h_n, c_n);
    run_layer(x, h, c, *layer_weights) -> (out, h, c) runs one layer over all steps."""
    h_n, c_n = [], []
    for k, layer in enumerate(weights):
        if k > 0 and dropout > 0 and training:
            x = F.dropout(x, dropout, training=True)
        x, h, c = run_layer(x, h0[k], c0[k], *layer)
        h_n.append(h)
        c_n.append(c)
    return x, torch.stack(h_n), torch.stack(c_n)


def _unrolled_layer(x, h, c, w_ih, w_hh, b_ih, b_hh):
    return LoopLSTM._layer(None, x, h, c, w_ih, w_hh, b_ih, b_hh)  # type: ignore[arg-type]  # _layer never reads self


def _recurrence(x, h0, c0, weights, dropout: float, training: bool):
    """All layers and steps, for torch.compile to unroll into one graph."""
    return _stack(x, h0, c0, weights, dropout, training, _unrolled_layer)


_COMPILED: dict[str, Callable] = {}


def compiled_recurrence(mode: str):
    """The compiled `_recurrence` for an Inductor mode, made on first use (compiling is lazy anyway)."""
    if mode not in _COMPILED:
        _COMPILED[mode] = torch.compile(_recurrence, mode=mode)
    return _COMPILED[mode]


def _stepwise_recurrence(x, h0, c0, weights, dropout: float, training: bool, mode: str):
    """As `_recurrence`, but only one cell step is compiled and Python loops over time: the graph and
    its compile time stay the size of one step whatever T is (an unrolled 784-step graph would take
    far longer to compile than to train)."""
    step = compiled_cell(mode)

    def stepwise_layer(x, h, c, w_ih, w_hh, b_ih, b_hh):
        x_proj = input_projection(x, w_ih, b_ih, b_hh)  # (T, B, G): one matmul for all steps
        outputs = []
        # unbind, not x_proj[t]: the backward of each index op is a zero-filled (T, B, G) tensor,
        # which made a 784-step backward quadratic in T (164 s against cudnn's 1.4 s on CPU)
        for x_t in x_proj.unbind(0):
            h, c = step(x_t, h, c, w_hh)
            outputs.append(h)
        return torch.stack(outputs), h, c

    return _stack(x, h0, c0, weights, dropout, training, stepwise_layer)


_COMPILED_CELLS: dict[str, Callable] = {}


def compiled_cell(mode: str):
    """The compiled one-step `lstm_cell` (batch dimension dynamic) for an Inductor mode."""
    if mode not in _COMPILED_CELLS:
        _COMPILED_CELLS[mode] = torch.compile(lstm_cell, mode=mode, dynamic=True)
    return _COMPILED_CELLS[mode]


class CompiledLSTM(LoopLSTM):
    mode = "default"
    # Longer sequences compile one step, not the unrolled sequence: compile time grows with the
    # unrolled length (minutes at 56 cell copies on 2 CPU cores), while one step's graph is T-free.
    unroll_limit = 64

    def forward(self, input: torch.Tensor, hx=None):
        who = type(self).__name__
        batched = check_input(input, self.input_size, self.batch_first, who)
        h0, c0 = split_state(hx, self.num_layers, self.hidden_size, input, batched, 0 if self.batch_first else 1, who)
        x = input if batched else input.unsqueeze(1)
        if self.batch_first and batched:
            x = x.transpose(0, 1)
        # maybe_: a batch of 1 is specialised by Dynamo anyway, and must not be an error.
        for tensor in (x, h0, c0):
            torch._dynamo.maybe_mark_dynamic(tensor, 1)
        weights = tuple(self.layer_weights(k) for k in range(self.num_layers))
        if x.shape[0] > self.unroll_limit:
            out, h_n, c_n = _stepwise_recurrence(x, h0, c0, weights, self.dropout, self.training, self.mode)
        else:
            out, h_n, c_n = compiled_recurrence(self.mode)(x, h0, c0, weights, self.dropout, self.training)
        if not batched:
            return out.squeeze(1), (h_n.squeeze(1), c_n.squeeze(1))
        return (out.transpose(0, 1) if self.batch_first else out), (h_n, c_n)


class CompiledGraphsLSTM(CompiledLSTM):
    """mode="reduce-overhead": the compiled graphs replayed as CUDA graphs (CUDA only)."""
    mode = "reduce-overhead"
