"""`compiled` and `compiled-graphs`: the `loop` backend's recurrence under torch.compile (Inductor).

Legend: B batch, T time steps, D input features, H hidden size, L layers, G = 4H.

The module is `LoopLSTM` itself (same constructor, parameters, state_dict, options); only its
recurrence, all L layers and T steps (`_forward_padded`), runs through one `torch.compile`d
function built from the loop's own `lstm_layer` and the base's layer stacking. The checks, the
layout handling and PackedSequence conversion stay eager in LSTMBase.forward, so a bad input is
still one clear error rather than a compiler trace. Variable length (`lengths`) is a tensor input of
the graph: a graph with lengths is compiled once, whatever the lengths are, and apart from the one
without them; bidirectional and proj_size are part of the module, so each such shape is its own graph.

Compilations per run: the batch dimension is marked dynamic before each compiled call, so the
training graph is compiled once for every batch size (a last partial batch included), and the
evaluation graph (no_grad, eval mode) once more. Inductor keeps its cache where it always does
(under /tmp, see TORCHINDUCTOR_CACHE_DIR), never in the source tree. Sequences longer than
`unroll_limit` (64) steps compile one cell step instead of the unrolled recurrence (see
`stepwise_recurrence`): pixel MNIST's 784 steps would otherwise compile for far longer than they train.

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

import functools
import threading
import time
from collections.abc import Callable
from typing import Any

import torch

from impls.base import run_directions, run_layers
from impls.cells import lstm_cell
from impls.loop import LoopLSTM, lstm_layer

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


def _recurrence(x, h0, c0, layers, lengths, dropout: float, training: bool):
    """All layers, directions and steps of the loop backend, for torch.compile to unroll into one graph."""
    return run_layers(x, h0, c0, layers, functools.partial(run_directions, lstm_layer), lengths, dropout, training)


_COMPILED: dict[str, Callable[..., Any]] = {}


def compiled_recurrence(mode: str):
    """The compiled `_recurrence` for an Inductor mode, made on first use (compiling is lazy anyway)."""
    if mode not in _COMPILED:
        _COMPILED[mode] = torch.compile(_recurrence, mode=mode)
    return _COMPILED[mode]


def stepwise_recurrence(x, h0, c0, layers, lengths, dropout: float, training: bool, mode: str):
    """As `_recurrence`, but only one cell step is compiled and Python loops over time: the graph and
    its compile time stay the size of one step whatever T is (an unrolled 784-step graph would take
    far longer to compile than to train). The lengths mask, when there is one, stays eager."""
    run_direction = functools.partial(lstm_layer, cell=compiled_cell(mode))
    return run_layers(x, h0, c0, layers, functools.partial(run_directions, run_direction), lengths, dropout, training)


_COMPILED_CELLS: dict[str, Callable[..., Any]] = {}


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

    def _forward_padded(self, x, lengths, h0, c0):
        # maybe_: a batch of 1 is specialised by Dynamo anyway, and must not be an error.
        for tensor in (x, h0, c0):
            torch._dynamo.maybe_mark_dynamic(tensor, 1)
        if lengths is not None:
            torch._dynamo.maybe_mark_dynamic(lengths, 0)
        args = (x, h0, c0, self.stacked_weights(), lengths, self.dropout, self.training)
        if x.shape[0] > self.unroll_limit:
            return stepwise_recurrence(*args, self.mode)
        return compiled_recurrence(self.mode)(*args)


class CompiledGraphsLSTM(CompiledLSTM):
    """mode="reduce-overhead": the compiled graphs replayed as CUDA graphs (CUDA only)."""
    mode = "reduce-overhead"
