"""`cudnn`: torch.nn.LSTM itself (cuDNN on CUDA, ATen's native kernel on CPU), with the shared checks.

nn.LSTM has the whole surface (bidirectional, proj_size, PackedSequence); `lengths=` on padded input
is packed here, since packing is the only way nn.LSTM skips padding: that cost is what it measures.
"""
from __future__ import annotations

import torch
from torch import nn

from impls.base import check_sizes, check_surface, checked_torch_forward


def cudnn_used(device: torch.device | str) -> bool:
    """Whether nn.LSTM will dispatch to cuDNN on this device (every floating dtype the harness uses goes
    there when cuDNN is enabled; which kernel it picks inside cuDNN is another matter)."""
    return torch.device(device).type == "cuda" and torch.backends.cudnn.is_available() and torch.backends.cudnn.enabled


class CudnnLSTM(nn.LSTM):
    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, **kwargs) -> None:
        check_sizes(input_size, hidden_size, num_layers)
        check_surface(type(self).__name__, hidden_size, kwargs.get("bidirectional", False), kwargs.get("proj_size", 0))
        super().__init__(input_size, hidden_size, num_layers, **kwargs)

    def forward(self, input, hx=None, lengths=None):
        """nn.LSTM's forward; `lengths` (B ints, best on the CPU) marks padded input's true lengths."""
        widths = {"h_0": self.proj_size or self.hidden_size, "c_0": self.hidden_size}
        return checked_torch_forward(self, super().forward, input, hx, lengths, widths)
