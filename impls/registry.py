"""The backends, as data: one literal table maps a name to a factory and every fact the harness needs.

Torch-free on purpose: the harness's analysis side (reports, plots, compare) reads the table (a plot
colour, the default plan) on machines that have only pandas and matplotlib. Building a backend and
asking whether it can run here are in `impls` (build, availability), which import torch when called.
A new backend is one file plus one line here; everything else (`bench list`, `bench run`'s default plan,
`bench gpu-check`'s groups, plot colours) is derived from this table. Backends from outside the repository
(plugins: an entry point, a file or a module) are added to the same table by impls.plugins, never under a
BUILTIN name.
"""
from __future__ import annotations

from dataclasses import dataclass

BASELINE = "cudnn"  # every ratio divides by it: torch.nn.LSTM as shipped (cuDNN on CUDA)

# Beyond nn.LSTM's six basic options, what a backend may declare it does: bidirectional, proj_size,
# PackedSequence input ("packed"), padded input with `lengths=` ("lengths").
SURFACE = frozenset({"bidirectional", "proj_size", "packed", "lengths"})
PACKINGS = ("none", "packed", "lengths")  # padded full-length input; PackedSequence; padded input with lengths=


@dataclass(frozen=True)
class Backend:
    factory: str | type  # "module:attribute" of the nn.Module class, or (plugins) the class itself
    family: str    # "lstm": drop-in for torch.nn.LSTM (state_dicts interchange); "gru": its own parameters
    needs: str     # "torch" runs anywhere torch does; "triton" needs Triton, and CUDA to be benchmarked;
                   # "inductor" is torch.compile: a C++ compiler on CPU, Triton on CUDA
    summary: str
    cuda_only: str = ""  # why it is skipped on CPU, for backends that only mean something on CUDA
    supports: frozenset = frozenset()  # which of SURFACE it does; LSTMBase subclasses say the same in theirs
    color: str = ""      # its colour in every plot; "" = one picked from its name (bench.analysis.figures)
    in_default_plan: bool = True  # run by a plain `bench run` (config.backends' default)

    @property
    def compiles(self) -> bool:
        """torch.compile unrolls the time loop: minutes per shape, so gpu-check runs these last and short."""
        return self.needs == "inductor"


REGISTRY: dict[str, Backend] = {
    "cudnn":  Backend("impls.cudnn:CudnnLSTM", "lstm", "torch", "torch.nn.LSTM: cuDNN on CUDA, ATen's kernel on CPU",
                      supports=SURFACE, color="#1f77b4"),
    "loop":   Backend("impls.loop:LoopLSTM", "lstm", "torch", "PyTorch cell loop, one step at a time, gate by gate",
                      supports=SURFACE, color="#ff7f0e"),
    "triton": Backend("impls.triton_lstm:TritonLSTM", "lstm", "triton",
                      "one persistent Triton kernel per layer and pass: all T steps in one launch, W_hh read once",
                      supports=SURFACE, color="#2ca02c"),
    "triton-step": Backend("impls.triton_step:TritonStepLSTM", "lstm", "triton",
                           "per step: cuBLAS h@W_hh + one fused Triton gate kernel (two launches a step)",
                           supports=SURFACE, color="#6b6ecf"),
    "gru":    Backend("impls.gru:TorchGRU", "gru", "torch", "torch.nn.GRU, the baseline",
                      supports=frozenset({"bidirectional", "packed", "lengths"}), color="#9467bd"),  # no proj_size
    "compiled": Backend("impls.compiled:CompiledLSTM", "lstm", "inductor",
                        "the loop backend under torch.compile (Inductor, default mode)", supports=SURFACE,
                        color="#8ca252"),
    "compiled-graphs": Backend("impls.compiled:CompiledGraphsLSTM", "lstm", "inductor",
                               "the loop backend under torch.compile(mode='reduce-overhead'): CUDA graphs",
                               cuda_only="CUDA graphs exist only on CUDA; on CPU mode='reduce-overhead' "
                                         "compiles the same code as `compiled`", supports=SURFACE, color="#8c564b"),
    "aten":   Backend("impls.aten:AtenLSTM", "lstm", "torch", "torch.nn.LSTM with cuDNN disabled: ATen's own kernels",
                      cuda_only="on CPU torch.nn.LSTM never uses cuDNN, so `aten` is the same code path as `cudnn`; "
                                "skipped so the report does not show the same number twice",
                      supports=SURFACE, color="#ad494a"),
}


BUILTIN = frozenset(REGISTRY)  # the names above: a plugin may not take one (impls.plugins)
FAMILIES = ("lstm", "gru")
NEEDS = ("torch", "triton", "inductor")


def names() -> list[str]:
    return list(REGISTRY)


def spec(name: str) -> Backend:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; expected one of: {', '.join(REGISTRY)}") from None


def default_plan() -> tuple[str, ...]:
    """The backends a plain `bench run` trains, in registry order."""
    return tuple(name for name, backend in REGISTRY.items() if backend.in_default_plan)


def describe(supports) -> str:
    return ", ".join(sorted(supports)) or "none of " + ", ".join(sorted(SURFACE))


def missing_options(name: str, *, bidirectional: bool = False, proj_size: int = 0, packing: str = "none") -> str:
    """Why backend `name` cannot run with these options ("" when it can): one line naming what it lacks."""
    backend = spec(name)
    if packing not in PACKINGS:
        raise ValueError(f"packing must be one of {', '.join(PACKINGS)}, got {packing!r}")
    wanted = {"bidirectional": bidirectional, "proj_size": proj_size, packing: packing != "none"}
    lacking = [option for option, used in wanted.items() if used and option not in backend.supports]
    if not lacking:
        return ""
    asked = {"bidirectional": "bidirectional=True", "proj_size": f"proj_size={proj_size}",
             "packed": "PackedSequence input (packing=packed)",
             "lengths": "padded input with lengths= (packing=lengths)"}
    if backend.family == "gru" and "proj_size" in lacking:
        return "nn.GRU has no proj_size (a projection is an LSTM option)"
    return (f"{name} does not support {' or '.join(asked[o] for o in lacking)} yet "
            f"(it supports: {describe(backend.supports)})")
