"""The model every backend is trained in: recurrent backend -> each image's last step -> Linear(width, classes).

Legend: B batch, T time steps, D input features, H hidden size, P proj_size (0: none), dirs = 2 if
bidirectional else 1; the head reads dirs * (P or H) features.

Input is either a padded tensor (B, T, D) in which every image has all T steps (packing=none), or `Rows`:
the padded batch with each image's length, fed as a PackedSequence (packing=packed; packed inside the
forward, so the timed step pays for it as a user does) or as padded input with `lengths=` (packing=lengths).
Either way the head reads the output at each image's own last step (the last step for padded input), so the
model means the same thing in every packing and only the cost differs.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from bench.flops import widths


class Rows(NamedTuple):
    """A variable-length batch: padded (B, T, D) with T the batch's longest length, lengths (B,) int64 on the CPU
    (what pack_padded_sequence and `lengths=` read without a device sync), the same lengths on padded's device
    (to pick each image's last output without copying them there inside the step)."""
    padded: torch.Tensor
    lengths: torch.Tensor
    lengths_on_device: torch.Tensor

    def to(self, device: torch.device | str, dtype: torch.dtype) -> Rows:
        return Rows(self.padded.to(device=device, dtype=dtype), self.lengths, self.lengths_on_device.to(device))


def head_width(hidden_size: int, bidirectional: bool = False, proj_size: int = 0) -> int:
    """What the head reads: the last layer's output at one step, (proj_size or H) per direction."""
    _, out, directions = widths("lstm", hidden_size, bidirectional, proj_size)  # GRU: proj_size is always 0
    return directions * out


def input_tensors(inputs: torch.Tensor | Rows) -> tuple[torch.Tensor, ...]:
    """The tensors a model input holds (the memory probe leaves the batch out of what a step keeps)."""
    return tuple(inputs) if isinstance(inputs, Rows) else (inputs,)


class RowClassifier(nn.Module):
    def __init__(self, rnn: nn.Module, features: int, num_classes: int = 10, packing: str = "none") -> None:
        super().__init__()
        if packing not in ("none", "packed", "lengths"):
            raise ValueError(f"RowClassifier: packing must be none, packed or lengths; got {packing!r}")
        self.rnn = rnn
        self.head = nn.Linear(features, num_classes)
        self.packing = packing

    def forward(self, images: torch.Tensor | Rows) -> torch.Tensor:
        """images (B, T, D) batch-first, or Rows -> logits (B, classes)."""
        if not isinstance(images, Rows):
            if self.packing != "none":
                raise TypeError(f"RowClassifier: packing={self.packing} needs Rows (padded images with lengths), "
                                "got a tensor")
            output, _ = self.rnn(images)   # LSTM returns (out, (h, c)), GRU (out, h): both start with out
            return self.head(output[:, -1])
        if self.packing == "packed":
            packed = pack_padded_sequence(images.padded, images.lengths, batch_first=True, enforce_sorted=False)
            output, _ = pad_packed_sequence(self.rnn(packed)[0], batch_first=True)  # in the batch's own order
        elif self.packing == "lengths":
            output, _ = self.rnn(images.padded, lengths=images.lengths)
        else:
            raise TypeError("RowClassifier: packing=none takes a padded tensor, got Rows")
        last = (images.lengths_on_device - 1).view(-1, 1, 1).expand(-1, 1, output.shape[-1])
        return self.head(output.gather(1, last).squeeze(1))
