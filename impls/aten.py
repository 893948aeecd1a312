"""`aten`: torch.nn.LSTM with cuDNN switched off, so CUDA runs PyTorch's own LSTM kernels.

This is the `aten` runner of PyTorch's benchmarks/fastrnns: the same module as `cudnn`, and on
CUDA the same per-step recurrence ATen uses whenever cuDNN cannot (one fused pointwise cell kernel,
`_thnn_fused_lstm_cell`, after a cuBLAS matmul per step). On CPU nn.LSTM never uses cuDNN, so
there it is exactly `cudnn`, and the registry skips it for benchmarks.

Why switching cuDNN off around the forward alone also keeps it out of the backward: ATen's `lstm`
chooses its implementation once, in the forward (`cudnn_is_acceptable` reads the global flag), and
autograd records the backward of the ops that really ran. With the flag off those are the fused
cell's and the matmuls' own backward nodes, none of which consults the flag or calls cuDNN; the
backward never re-dispatches `lstm`. fastrnns turns cuDNN off around the whole benchmark (forward
and backward), which for an LSTM selects the same kernels. tests/test_compiled.py checks on CUDA
that no cuDNN node is recorded.
"""
from __future__ import annotations

import contextlib

import torch

from impls.cudnn import CudnnLSTM


@contextlib.contextmanager
def cudnn_disabled():
    """Only `enabled` is touched: cudnn.flags() would also reset benchmark, deterministic and TF32."""
    saved = torch.backends.cudnn.enabled
    torch.backends.cudnn.enabled = False
    try:
        yield
    finally:
        torch.backends.cudnn.enabled = saved


class AtenLSTM(CudnnLSTM):
    def forward(self, input, hx=None, lengths=None):
        with cudnn_disabled():
            return super().forward(input, hx, lengths)
