"""Test-session setup that must happen before any test module imports Triton kernels."""
import os

import torch

# Without a GPU, Triton kernels run only under the interpreter, and Triton reads this variable when
# a kernel is defined: set it before impls.triton_lstm can be imported by any test module.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
