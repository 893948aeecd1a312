"""`cudnn`: torch.nn.LSTM itself (cuDNN on CUDA, ATen's native kernel on CPU), with the shared checks."""
from __future__ import annotations

import torch
from torch import nn

from impls.base import check_input, check_sizes, split_state


def cudnn_used(device: torch.device | str) -> bool:
    """Whether nn.LSTM will dispatch to cuDNN on this device (every floating dtype the harness uses goes
    there when cuDNN is enabled; which kernel it picks inside cuDNN is another matter)."""
    return torch.device(device).type == "cuda" and torch.backends.cudnn.is_available() and torch.backends.cudnn.enabled


class CudnnLSTM(nn.LSTM):
    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, **kwargs) -> None:
        check_sizes(input_size, hidden_size, num_layers)
        super().__init__(input_size, hidden_size, num_layers, **kwargs)

    def forward(self, input, hx=None):
        who = type(self).__name__
        batched = check_input(input, self.input_size, self.batch_first, who)
        split_state(hx, self.num_layers, self.hidden_size, input, batched, 0 if self.batch_first else 1, who)
        return super().forward(input, hx)
