"""Analytic work of one training step, counted as matmul FLOPs, and efficiency against a peak.

Legend: B batch, T time steps, D input features, H hidden size, L layers, C classes,
G = 4H (LSTM: gates i, f, g, o) or 3H (GRU: gates r, z, n), P proj_size (LSTM; 0 = none),
H_out = P or H (the width of h), dirs = 2 if bidirectional else 1, S = the row-steps of one batch:
B*T for padded input, the sum of the images' lengths for packed input or lengths= (only the steps
inside each image's length are asked for; a backend that masks padding computes more, and that
extra is its own cost, not work).

A matmul of (M, K) by (K, N) is 2*M*N*K FLOPs (one multiply and one add per term). Only matmuls
count: the gate nonlinearities, biases, loss and optimizer are O(B*T*G) or O(params), a few
percent at most, and they differ between backends, while the matmul work is the same for all,
which makes it the fair yardstick.

  forward, per layer l and direction (input width D_0 = D, D_l = dirs * H_out above):
      input projection   x (S, D_l) @ W_ih^T (D_l, G)              2 * S * G * D_l
      recurrence         h (rows, H_out) @ W_hh^T (H_out, G)       2 * S * G * H_out over all steps
      projection (P > 0) h (rows, H) @ W_hr^T (H, P)               2 * S * H * P over all steps
  head (bench.model.RowClassifier: each image's last step)        2 * B * C * dirs * H_out
  backward = 2 * forward (each matmul's gradient is two matmuls of the same size: dX and dW)
  total    = forward + backward = 3 * forward

Every recurrent product inside an image's length is counted, including the first one against
h_0 = 0, since every backend computes it.
"""
from __future__ import annotations

import math

GATES = {"lstm": 4, "gru": 3}


def widths(family: str, hidden: int, bidirectional: bool = False, proj_size: int = 0) -> tuple[int, int, int]:
    """(G, H_out, dirs): the gate rows of one direction's weights (GATES x H), the width of h (P or H) and the
    number of directions; the FLOP count, the memory estimate and the model's head read the layers through these."""
    return GATES[family] * hidden, proj_size or hidden, 2 if bidirectional else 1


def step_flops(family: str, batch: int, seq_len: int, input_size: int, hidden: int, layers: int,
               classes: int, *, bidirectional: bool = False, proj_size: int = 0,
               steps: float | None = None) -> dict[str, float]:
    """Matmul FLOPs of one training step: {"forward", "backward", "total"} (see the module docstring).
    steps: the batch's row-steps S (default batch * seq_len, padded input); a mean (batch * mean length) is fine."""
    if family not in GATES:
        raise ValueError(f"step_flops: family must be one of {', '.join(GATES)}; got {family!r}")
    for name, value in (("batch", batch), ("seq_len", seq_len), ("input_size", input_size),
                        ("hidden", hidden), ("layers", layers), ("classes", classes)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"step_flops: {name} must be a positive int, got {value!r}")
    if isinstance(proj_size, bool) or not isinstance(proj_size, int) or not 0 <= proj_size < hidden:
        raise ValueError(f"step_flops: proj_size must be an int in [0, hidden={hidden}), got {proj_size!r}")
    if proj_size and family != "lstm":
        raise ValueError(f"step_flops: proj_size is an LSTM option; family {family!r} has none")
    row_steps = batch * seq_len if steps is None else steps
    if isinstance(row_steps, bool) or not isinstance(row_steps, (int, float)) or not 0 < row_steps <= batch * seq_len:
        raise ValueError(f"step_flops: steps must be in (0, batch*seq_len = {batch * seq_len}], got {steps!r}")
    gates, out, directions = widths(family, hidden, bidirectional, proj_size)
    forward: float = 0
    for layer in range(layers):
        width = input_size if layer == 0 else directions * out
        per_direction = 2 * row_steps * gates * width        # input projection, all steps at once
        per_direction += 2 * row_steps * gates * out         # recurrence, one product per step
        per_direction += 2 * row_steps * hidden * proj_size  # projection of h (none when proj_size is 0)
        forward += directions * per_direction
    forward += 2 * batch * classes * directions * out        # head on each image's last output
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
