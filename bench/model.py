"""The model every backend is trained in: recurrent backend -> last time step -> Linear(H, classes)."""
from __future__ import annotations

import torch
from torch import nn


class RowClassifier(nn.Module):
    def __init__(self, rnn: nn.Module, hidden_size: int, num_classes: int = 10) -> None:
        super().__init__()
        self.rnn = rnn
        self.head = nn.Linear(hidden_size, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, T, D), batch-first -> logits (B, classes)."""
        output, _ = self.rnn(images)   # LSTM returns (out, (h, c)), GRU (out, h): both start with out
        return self.head(output[:, -1])
