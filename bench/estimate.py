"""How much memory one training run needs at least, worked out from the config alone (no torch, no model).

A plan whose model cannot fit is refused before anything loads: `--layers 100000` is 3.3 billion float32
parameters (13 GB), 53 GB with their gradients and Adam's two moments, on a 24 GiB machine; built layer by
layer it ran for many minutes while memory climbed, until a time limit or the OOM killer ended it.

Legend: B batch, T time steps, D input features, H hidden size, L layers, C classes, G = gates x H
(bench.flops.GATES: LSTM 4, GRU 3; bench.flops.widths). Counted, in the run's dtype:

    parameters   per layer and direction G * (D_l + H) + 2G (nn.LSTM's W_ih, W_hh, b_ih, b_hh; D_0 = D,
                 D_l = dirs * H above) + head dirs * H * C + C; with proj_size P, H_out = P stands for H in
                 W_hh, D_l and the head, plus W_hr (P x H)
    gradients    one per parameter
    optimizer    Adam's exp_avg and exp_avg_sq: two per parameter
    activations  what backward keeps, per layer, direction and step: the G gate values, c and tanh(c), h
                 and the layer's input: B * T * (G + 3H + D_l)
    data         the training images used and the 10,000 test images, held on the device as one tensor
                 each (bench.data.BatchLoader), 784 values an image

Each term is a lower bound (backends keep more: the cell loop saves every step's intermediates, and the
float64 numerics check holds a copy of the model for a moment), so a refusal is never a false alarm; a
run that passes may still need more.
"""
from __future__ import annotations

from dataclasses import dataclass

from bench.flops import widths

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
PIXELS, TRAIN_IMAGES, TEST_IMAGES = 784, 60_000, 10_000


@dataclass(frozen=True)
class Estimate:
    parameters: int     # count
    bytes: dict         # term -> bytes: parameters, gradients, optimizer, activations, data

    @property
    def total(self) -> int:
        return sum(self.bytes.values())

    def describe(self) -> str:
        parts = ", ".join(f"{name} {gib(size)}" for name, size in self.bytes.items())
        return f"{self.parameters:,} parameters; at least {gib(self.total)} ({parts})"


def gib(size: float) -> str:
    return f"{size / 2**30:,.1f} GiB" if size >= 2**28 else f"{size / 2**20:,.1f} MiB"


def parameter_count(family: str, input_size: int, hidden: int, layers: int, classes: int, *,
                    bidirectional: bool = False, proj_size: int = 0) -> int:
    """nn.LSTM's (nn.GRU's) parameters and the head's; per direction, with proj_size P, W_hh is G x P and
    W_hr P x H, and the layers above read dirs * P features."""
    gates, out, directions = widths(family, hidden, bidirectional, proj_size)
    first = gates * (input_size + out) + 2 * gates + proj_size * hidden
    rest = (layers - 1) * (gates * (directions * out + out) + 2 * gates + proj_size * hidden)
    return directions * (first + rest) + directions * out * classes + classes


def run_memory(family: str, *, batch: int, seq_len: int, input_size: int, hidden: int, layers: int,
               classes: int, dtype: str, train_images: int, bidirectional: bool = False,
               proj_size: int = 0) -> Estimate:
    """The least memory one training run of this shape holds at once (see the module docstring)."""
    size = DTYPE_BYTES[dtype]
    params = parameter_count(family, input_size, hidden, layers, classes, bidirectional=bidirectional,
                             proj_size=proj_size)
    gates, out, directions = widths(family, hidden, bidirectional, proj_size)
    above = directions * out  # what the layers above the first read
    saved = directions * batch * seq_len * ((gates + 3 * hidden + input_size)
                                            + (layers - 1) * (gates + 3 * hidden + above))
    images = min(train_images, TRAIN_IMAGES) + TEST_IMAGES
    return Estimate(params, {"parameters": params * size, "gradients": params * size, "optimizer": 2 * params * size,
                             "activations": saved * size, "data": images * PIXELS * size})
