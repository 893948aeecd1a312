"""`gru`: torch.nn.GRU, the baseline. Its own parameters (3H gates); returns (output, h_n)."""
from __future__ import annotations

from torch import nn

from impls.base import check_input, check_sizes, check_state


class TorchGRU(nn.GRU):
    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, **kwargs) -> None:
        check_sizes(input_size, hidden_size, num_layers)
        super().__init__(input_size, hidden_size, num_layers, **kwargs)

    def forward(self, input, hx=None):
        who = type(self).__name__
        batched = check_input(input, self.input_size, self.batch_first, who)
        if hx is not None:
            batch = input.shape[0 if self.batch_first else 1]
            expected = (self.num_layers, batch, self.hidden_size) if batched else (self.num_layers, self.hidden_size)
            check_state(hx, "h_0", expected, input, who)
        return super().forward(input, hx)
