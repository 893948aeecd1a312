"""LSTM Bench plugin: the registry row of the `fused-addmm` backend.

Importing this module imports no torch: `bench list` reads the row without building anything; the
factory, a "module:attribute" string, is imported when the backend is built.
"""
from impls import Backend

BACKEND = Backend(
    factory="fused_addmm_lstm.model:FusedAddmmLSTM",
    family="lstm",            # a drop-in for torch.nn.LSTM: same constructor, forward and state_dict
    needs="torch",            # runs wherever torch does
    summary="one x@W_ih GEMM for all steps, then the four gates as one fused addmm per step",
    supports=frozenset({"bidirectional"}),  # of impls.SURFACE; proj_size and packed input are refused
    color="#e377c2",
)
