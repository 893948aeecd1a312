"""The backends: the registry table (impls/registry.py) and the two things done with a name.

    impls.build("loop", input_size=28, hidden_size=64, num_layers=2)  -> nn.Module like torch.nn.LSTM
    impls.names()                                                    -> ["cudnn", "loop", "triton", "gru", ...]
    impls.availability("triton", "cpu")                              -> Availability(ok=False, reason=...)
    impls.availability("loop", "cpu", bidirectional=True, packing="packed")   -> Availability(ok=True, ...)

Beyond nn.LSTM's six basic options, each backend declares which of impls.registry.SURFACE it does
(`supports`): bidirectional, proj_size, PackedSequence input ("packed"), padded input with
`lengths=` ("lengths"). Asking for anything else is a skipped row from `availability` and a one-line
ValueError from `build`, never a wrong answer.

Factories are "module:attribute" strings imported on first use (a plugin's may be the class itself), so
asking for `cudnn` never imports Triton, and importing this package imports no torch: the table is plain
data (impls.registry), and build() and availability() import torch when called. Plugin backends join the
table through impls.plugins. This package never imports the harness (`bench`).
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
from dataclasses import dataclass
from typing import TYPE_CHECKING

from impls.registry import BASELINE, PACKINGS, REGISTRY, SURFACE, Backend, default_plan, missing_options, names, spec

if TYPE_CHECKING:
    from torch import nn

__all__ = ["BASELINE", "PACKINGS", "REGISTRY", "SURFACE", "Availability", "Backend", "availability", "build",
           "default_plan", "factory_class", "missing_options", "names", "spec"]


@dataclass(frozen=True)
class Availability:
    ok: bool
    reason: str  # why not, when not ok; what will run, when ok


def availability(name: str, device: object = "cpu", *, purpose: str = "bench",
                 bidirectional: bool = False, proj_size: int = 0, packing: str = "none") -> Availability:
    """Whether backend `name` can run on `device` for `purpose` ("bench" or "test") with these options
    (packing: one of PACKINGS), and why (not). A missing option is reported before any device reason.
    `device`: a torch.device, "cuda:1" or anything whose str() reads so; torch is imported only for CUDA, so
    `bench run`'s driver plans a CPU run without it."""
    missing = missing_options(name, bidirectional=bidirectional, proj_size=proj_size, packing=packing)
    if missing:
        return Availability(False, missing)
    backend, device_type = spec(name), str(device).split(":")[0]
    if device_type == "cuda":
        import torch
        if not torch.cuda.is_available():
            return Availability(False, "CUDA was asked for but torch.cuda.is_available() is False")
    if backend.cuda_only and device_type != "cuda":
        return Availability(False, backend.cuda_only)
    if backend.needs == "inductor":
        return _inductor_availability(device_type)
    if backend.needs == "torch":
        if name == "cudnn":
            return Availability(True, _cudnn_detail(device_type))
        if name == "aten":
            return Availability(True, f"ATen's native LSTM kernels on {device_type}, cuDNN disabled")
        return Availability(True, f"PyTorch on {device_type}")
    if importlib.util.find_spec("triton") is None:
        return Availability(False, "Triton is not installed (pip install triton; Linux only)")
    if device_type == "cuda":
        return Availability(True, "Triton kernels compiled for CUDA")
    interpreted = os.environ.get("TRITON_INTERPRET") == "1"
    if purpose == "test" and interpreted:
        return Availability(True, "Triton interpreter on CPU (TRITON_INTERPRET=1), for tests only")
    return Availability(False, "Triton kernels need a CUDA GPU; on CPU they run only under the interpreter "
                               "(TRITON_INTERPRET=1), which is for tests and far too slow to benchmark")


def _cudnn_detail(device_type: str) -> str:
    if device_type == "cuda":
        import torch

        from impls.cudnn import cudnn_used
        if cudnn_used(device_type):
            return f"cuDNN {torch.backends.cudnn.version()}"
    return f"ATen native kernel on {device_type}"


def _inductor_availability(device_type: str) -> Availability:
    if device_type == "cuda":
        if importlib.util.find_spec("triton") is None:
            return Availability(False, "torch.compile on CUDA needs Triton, which is not installed")
        return Availability(True, "torch.compile: Inductor's Triton kernels for CUDA")
    if device_type == "cpu":
        if not any(shutil.which(cc) for cc in ("g++", "c++", "clang++")):
            return Availability(False, "torch.compile on CPU needs a C++ compiler (g++ or clang++) on the PATH")
        return Availability(True, "torch.compile: Inductor's C++ kernels for CPU")
    return Availability(False, f"torch.compile is not set up for {device_type} here")


def build(name: str, input_size: int, hidden_size: int, num_layers: int = 1, *,
          batch_first: bool = True, **options) -> nn.Module:
    """A backend module with torch.nn.LSTM's (or, for `gru`, nn.GRU's) constructor and forward (plus
    `lengths=` for padded input where `supports` has it). An option the backend lacks is a ValueError."""
    from impls.base import check_sizes

    spec(name)  # an unknown name is a ValueError before anything is imported
    check_sizes(input_size, hidden_size, num_layers)
    missing = missing_options(name, bidirectional=options.get("bidirectional", False),
                              proj_size=options.get("proj_size", 0))
    if missing:
        raise ValueError(missing)
    return factory_class(name)(input_size, hidden_size, num_layers, batch_first=batch_first, **options)


def factory_class(name: str) -> type:
    """The nn.Module class of backend `name`: its factory, imported now when it is a "module:attribute" string."""
    factory = spec(name).factory
    if not isinstance(factory, str):
        return factory
    module_name, attribute = factory.split(":")
    return getattr(importlib.import_module(module_name), attribute)
