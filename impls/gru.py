"""`gru`: torch.nn.GRU, the baseline. Its own parameters (3H gates); returns (output, h_n).

What nn.GRU has, it takes: bidirectional and PackedSequence input, plus `lengths=` on padded input
(packed here, as `cudnn` does). nn.GRU has no proj_size.
"""
from __future__ import annotations

from torch import nn

from impls.base import check_sizes, check_surface, checked_torch_forward


class TorchGRU(nn.GRU):
    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, **kwargs) -> None:
        check_sizes(input_size, hidden_size, num_layers)
        check_surface(type(self).__name__, hidden_size, kwargs.get("bidirectional", False),
                      kwargs.pop("proj_size", 0), supports={"bidirectional"})
        super().__init__(input_size, hidden_size, num_layers, **kwargs)

    def forward(self, input, hx=None, lengths=None):
        """nn.GRU's forward; `lengths` (B ints, best on the CPU) marks padded input's true lengths."""
        return checked_torch_forward(self, super().forward, input, hx, lengths, {"h_0": self.hidden_size})
