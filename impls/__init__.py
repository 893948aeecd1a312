"""The backends, as data: one literal registry table maps a name to a factory and what it needs.

    impls.build("loop", input_size=28, hidden_size=64, num_layers=2)  -> nn.Module like torch.nn.LSTM
    impls.names()                                                    -> ["cudnn", "loop", "triton", "gru", ...]
    impls.availability("triton", "cpu")                              -> Availability(ok=False, reason=...)

Factories are "module:attribute" strings imported on first use, so asking for `cudnn` never
imports Triton. This package never imports the harness (`bench`).
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
from dataclasses import dataclass

import torch
from torch import nn

from impls.base import check_sizes


@dataclass(frozen=True)
class Backend:
    factory: str   # "module:attribute" of the nn.Module class
    family: str    # "lstm": drop-in for torch.nn.LSTM (state_dicts interchange); "gru": its own parameters
    needs: str     # "torch" runs anywhere torch does; "triton" needs Triton, and CUDA to be benchmarked;
                   # "inductor" is torch.compile: a C++ compiler on CPU, Triton on CUDA
    summary: str
    cuda_only: str = ""  # why it is skipped on CPU, for backends that only mean something on CUDA


REGISTRY: dict[str, Backend] = {
    "cudnn":  Backend("impls.cudnn:CudnnLSTM", "lstm", "torch", "torch.nn.LSTM: cuDNN on CUDA, ATen's kernel on CPU"),
    "loop":   Backend("impls.loop:LoopLSTM", "lstm", "torch", "PyTorch cell loop, one step at a time, gate by gate"),
    "triton": Backend("impls.triton_lstm:TritonLSTM", "lstm", "triton",
                      "one persistent Triton kernel per layer and pass: all T steps in one launch, W_hh resident"),
    "triton-step": Backend("impls.triton_step:TritonStepLSTM", "lstm", "triton",
                           "per step: cuBLAS h@W_hh + one fused Triton gate kernel (two launches a step)"),
    "gru":    Backend("impls.gru:TorchGRU", "gru", "torch", "torch.nn.GRU, the baseline"),
    "compiled": Backend("impls.compiled:CompiledLSTM", "lstm", "inductor",
                        "the loop backend under torch.compile (Inductor, default mode)"),
    "compiled-graphs": Backend("impls.compiled:CompiledGraphsLSTM", "lstm", "inductor",
                               "the loop backend under torch.compile(mode='reduce-overhead'): CUDA graphs",
                               cuda_only="CUDA graphs exist only on CUDA; on CPU mode='reduce-overhead' "
                                         "compiles the same code as `compiled`"),
    "aten":   Backend("impls.aten:AtenLSTM", "lstm", "torch", "torch.nn.LSTM with cuDNN disabled: ATen's own kernels",
                      cuda_only="on CPU torch.nn.LSTM never uses cuDNN, so `aten` is the same code path as `cudnn`; "
                                "skipped so the report does not show the same number twice"),
}


@dataclass(frozen=True)
class Availability:
    ok: bool
    reason: str  # why not, when not ok; what will run, when ok


def names() -> list[str]:
    return list(REGISTRY)


def spec(name: str) -> Backend:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; expected one of: {', '.join(REGISTRY)}") from None


def availability(name: str, device: torch.device | str = "cpu", *, purpose: str = "bench") -> Availability:
    """Whether backend `name` can run on `device` for `purpose` ("bench" or "test"), and why (not)."""
    backend, device = spec(name), torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        return Availability(False, "CUDA was asked for but torch.cuda.is_available() is False")
    if backend.cuda_only and device.type != "cuda":
        return Availability(False, backend.cuda_only)
    if backend.needs == "inductor":
        return _inductor_availability(device)
    if backend.needs == "torch":
        if name == "cudnn":
            from impls.cudnn import cudnn_used
            detail = (f"cuDNN {torch.backends.cudnn.version()}" if cudnn_used(device)
                      else f"ATen native kernel on {device.type}")
            return Availability(True, detail)
        if name == "aten":
            return Availability(True, f"ATen's native LSTM kernels on {device.type}, cuDNN disabled")
        return Availability(True, f"PyTorch on {device.type}")
    if importlib.util.find_spec("triton") is None:
        return Availability(False, "Triton is not installed (pip install triton; Linux only)")
    if device.type == "cuda":
        return Availability(True, "Triton kernels compiled for CUDA")
    interpreted = os.environ.get("TRITON_INTERPRET") == "1"
    if purpose == "test" and interpreted:
        return Availability(True, "Triton interpreter on CPU (TRITON_INTERPRET=1), for tests only")
    return Availability(False, "Triton kernels need a CUDA GPU; on CPU they run only under the interpreter "
                               "(TRITON_INTERPRET=1), which is for tests and far too slow to benchmark")


def _inductor_availability(device: torch.device) -> Availability:
    if device.type == "cuda":
        if importlib.util.find_spec("triton") is None:
            return Availability(False, "torch.compile on CUDA needs Triton, which is not installed")
        return Availability(True, "torch.compile: Inductor's Triton kernels for CUDA")
    if device.type == "cpu":
        if not any(shutil.which(cc) for cc in ("g++", "c++", "clang++")):
            return Availability(False, "torch.compile on CPU needs a C++ compiler (g++ or clang++) on the PATH")
        return Availability(True, "torch.compile: Inductor's C++ kernels for CPU")
    return Availability(False, f"torch.compile is not set up for {device.type} here")


def build(name: str, input_size: int, hidden_size: int, num_layers: int = 1, *,
          batch_first: bool = True, **options) -> nn.Module:
    """A backend module with torch.nn.LSTM's (or, for `gru`, nn.GRU's) constructor and forward."""
    backend = spec(name)
    check_sizes(input_size, hidden_size, num_layers)
    module_name, attribute = backend.factory.split(":")
    cls = getattr(importlib.import_module(module_name), attribute)
    return cls(input_size, hidden_size, num_layers, batch_first=batch_first, **options)
