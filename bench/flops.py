"""Analytic work of one training step, counted as matmul FLOPs, and efficiency against a peak.

Legend: B batch, T time steps, D input features, H hidden size, L layers, C classes,
G = 4H (LSTM: gates i, f, g, o) or 3H (GRU: gates r, z, n).

A matmul of (M, K) by (K, N) is 2*M*N*K FLOPs (one multiply and one add per term). Only matmuls
count: the gate nonlinearities, biases, loss and optimizer are O(B*T*G) or O(params), a few
percent at most, and they differ between backends, while the matmul work is the same for all,
which makes it the fair yardstick.

  forward, per layer l (input width D_0 = D, D_l = H above):
      input projection   x (B*T, D_l) @ W_ih^T (D_l, G)      2 * B*T * G * D_l
      recurrence         h (B, H) @ W_hh^T (H, G), T times   2 * B * G * H * T
  head (bench.model.RowClassifier: last step only)           2 * B * C * H
  backward = 2 * forward (each matmul's gradient is two matmuls of the same size: dX and dW)
  total    = forward + backward = 3 * forward

All T recurrent products are counted, including the first one against h_0 = 0, since every
backend computes it.
"""
from __future__ import annotations

import math

GATES = {"lstm": 4, "gru": 3}


def step_flops(family: str, batch: int, seq_len: int, input_size: int, hidden: int, layers: int,
               classes: int) -> dict[str, int]:
    """Matmul FLOPs of one training step: {"forward", "backward", "total"} (see the module docstring)."""
    if family not in GATES:
        raise ValueError(f"step_flops: family must be one of {', '.join(GATES)}; got {family!r}")
    for name, value in (("batch", batch), ("seq_len", seq_len), ("input_size", input_size),
                        ("hidden", hidden), ("layers", layers), ("classes", classes)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"step_flops: {name} must be a positive int, got {value!r}")
    gates = GATES[family] * hidden
    forward = 0
    for layer in range(layers):
        width = input_size if layer == 0 else hidden
        forward += 2 * batch * seq_len * gates * width   # input projection, all steps at once
        forward += 2 * batch * gates * hidden * seq_len  # recurrence, one product per step
    forward += 2 * batch * classes * hidden              # head on the last step's output
    return {"forward": forward, "backward": 2 * forward, "total": 3 * forward}


def achieved_gflops(step_flop: float, step_ms: float) -> float:
    """GFLOP/s of a step of `step_flop` FLOPs taking `step_ms` milliseconds (NaN if unknown)."""
    if not (step_ms > 0 and math.isfinite(step_ms)):
        return float("nan")
    return step_flop / (step_ms * 1e-3) / 1e9


def efficiency(achieved: float, peak: float) -> float:
    """Achieved GFLOP/s as a fraction of the device's measured peak GFLOP/s (NaN if unknown)."""
    if not (peak > 0 and math.isfinite(peak)):
        return float("nan")
    return achieved / peak
