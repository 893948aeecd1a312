"""`compiled` and `compiled-graphs`: the `loop` backend's recurrence under torch.compile (Inductor).

Legend: B batch, T time steps, D input features, H hidden size, L layers, G = 4H.

The module is `LoopLSTM` itself (same constructor, parameters, state_dict, options); only its
recurrence, all L layers and T steps (`_forward_padded`), runs through one `torch.compile`d
function built from the loop's own `lstm_layer` and the base's layer stacking. The checks, the
layout handling and PackedSequence conversion stay eager in LSTMBase.forward, so a bad input is
still one clear error rather than a compiler trace. Variable length (`lengths`) is a tensor input of
the graph, and the unrolled graph runs a padded T (`padded_steps`: the longest batch seen): a graph
with lengths serves every lengths and every shorter batch, and compiles again only when a batch is
longer than all before it (the padded steps are masked: the same results, more work); bidirectional
and proj_size are part of the module, so each such shape is its own graph.

Compilations per run: the batch dimension is marked dynamic before each compiled call, so the
training graph is compiled once for every batch size (a last partial batch included), and the
evaluation graph (no_grad, eval mode) once more; with lengths, once more for each batch longer than
all before it (a run's first batches are near the longest, so one or two). One guard on B remains: on
CPU, Inductor sums the bias gradient (float32, T*B terms) in 4096-term chunks when T*B > 4096, and
guards on that, so batches on either side of 4096/T rows (146 at T=28) are two training graphs; the
harness's numerics check therefore runs its images in chunks of the training batch (bench.numerics).
A batch of 1 is its own graph too (Dynamo specialises it). Inductor keeps its cache where it always does
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


_LONGEST: dict[tuple, int] = {}


def padded_steps(key: tuple, steps: int) -> int:
    """How many steps a variable-length batch of `steps` runs in the unrolled graph: the longest batch seen
    for `key` (a module configuration), this one included. T is a Python int in the unrolled loop, so
    each distinct batch length was a graph of its own; now only a batch longer than all before it compiles.
    Process-wide, like Dynamo's cache: the numerics check's model (the longest of 256 images), the run's
    model and its evaluation share one T, so one graph each for training and evaluation."""
    _LONGEST[key] = max(_LONGEST.get(key, 0), steps)
    return _LONGEST[key]


class CompiledLSTM(LoopLSTM):
    mode = "default"
    # Longer sequences compile one step, not the unrolled sequence: compile time grows with the
    # unrolled length (minutes at 56 cell copies on 2 CPU cores), while one step's graph is T-free.
    unroll_limit = 64

    def _forward_padded(self, x, lengths, h0, c0):
        steps = x.shape[0]
        if lengths is not None and steps <= self.unroll_limit:
            # Steps past every row's length leave h and c as they are and output zeros (the mask), so the
            # padding changes no result, only the work.
            key = (self.mode, self.extra_repr(), x.dtype, x.device)
            x = torch.nn.functional.pad(x, (0, 0, 0, 0, 0, padded_steps(key, steps) - steps))
        # maybe_: a batch of 1 is specialised by Dynamo anyway, and must not be an error.
        for tensor in (x, h0, c0):
            torch._dynamo.maybe_mark_dynamic(tensor, 1)
        if lengths is not None:
            torch._dynamo.maybe_mark_dynamic(lengths, 0)
        args = (x, h0, c0, self.stacked_weights(), lengths, self.dropout, self.training)
        if x.shape[0] > self.unroll_limit:
            return stepwise_recurrence(*args, self.mode)
        out, h_n, c_n = compiled_recurrence(self.mode)(*args)
        return (out if out.shape[0] == steps else out[:steps]), h_n, c_n


class CompiledGraphsLSTM(CompiledLSTM):
    """mode="reduce-overhead": the compiled graphs replayed as CUDA graphs (CUDA only)."""
    mode = "reduce-overhead"
