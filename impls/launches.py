"""Count what one forward and one training step of a backend launch: Triton kernels and ATen ops.

    from impls.launches import count_launches
    count_launches(model, x)  -> {"forward": 9, "forward_triton": 2, "forward_aten": 7, "forward_aten_ops": 12,
                                  "backward": ..., "train_step": ..., ..., "triton_kernels": {name: n}}

Two counters, both measured rather than declared:
- Triton launches: every `kernel[grid](...)` goes through the kernel object's `run` (JITFunction when
  compiled, InterpretedFunction under TRITON_INTERPRET=1); while counting, both classes' `run` is wrapped.
- ATen: a TorchDispatchMode sees every ATen op below autograd, backward included. `*_aten_ops` counts them
  all; `*_aten` leaves out views and bare allocations (empty*), which launch no device kernel, so it is the
  closer figure to "kernels" (on CUDA one op is one kernel or a few, a library matmul may be more).
  Ops that the interpreter itself runs inside a Triton launch (copies to and from numpy) are not counted.

"train_step" is the module alone: one forward with autograd on, then backward of its output against
a fixed gradient (no loss, head or optimizer). "backward" = train_step - forward. Works on CPU (Triton
under the interpreter) and on CUDA. Never imports the harness.
"""
from __future__ import annotations

import collections
import contextlib
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

_FREE_OPS = ("empty", "empty_like", "new_empty", "new_empty_strided", "empty_strided")


class _Counter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.aten_ops = 0
        self.aten_kernels = 0
        self.triton: collections.Counter[str] = collections.Counter()
        self.in_triton = 0
        self.elements_written = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if not self.in_triton:
            self.aten_ops += 1
            if not (getattr(func, "is_view", False) or func.overloadpacket.__name__ in _FREE_OPS):
                self.aten_kernels += 1
                self.elements_written += sum(t.numel() for t in tree_leaves(out)
                                             if isinstance(t, torch.Tensor))
        return out

    def snapshot(self) -> tuple[int, ...]:
        return self.aten_ops, self.aten_kernels, sum(self.triton.values()), self.elements_written


def _kernel_classes() -> list[Any]:  # Triton's classes (untyped), whose `run` is wrapped
    try:
        from triton.runtime.interpreter import InterpretedFunction
        from triton.runtime.jit import JITFunction
    except ImportError:  # no Triton: nothing to wrap, ATen still counts
        return []
    return [JITFunction, InterpretedFunction]


@contextlib.contextmanager
def _count_triton(counter: _Counter):
    originals = {cls: cls.__dict__["run"] for cls in _kernel_classes() if "run" in cls.__dict__}

    def wrap(run):
        def counted(self, *args, **kwargs):
            if not kwargs.get("warmup", False):
                counter.triton[getattr(self, "__name__", "triton")] += 1
            counter.in_triton += 1
            try:
                return run(self, *args, **kwargs)
            finally:
                counter.in_triton -= 1
        return counted

    for cls, run in originals.items():
        cls.run = wrap(run)
    try:
        yield
    finally:
        for cls, run in originals.items():
            cls.run = run


def count_launches(module: torch.nn.Module, x: torch.Tensor, hx=None) -> dict:
    """Launch counts of one forward and one training step (forward + backward) of `module` on `x`.

    Returns ints for "forward", "backward", "train_step" (Triton launches + ATen kernels), their
    "_triton", "_aten" (ATen ops less views and allocations) and "_aten_ops" (all ATen ops) parts,
    "_elements_written" (tensor elements those ATen kernels output: how memory traffic grows with T),
    and "triton_kernels": {kernel name: launches in the training step}."""
    counter = _Counter()
    result: dict = {}
    with _count_triton(counter), counter, torch.enable_grad():
        before = counter.snapshot()
        out = module(x, hx) if hx is not None else module(x)
        out = out[0] if isinstance(out, tuple) else out
        after_forward = counter.snapshot()
        forward_kernels = collections.Counter(counter.triton)
    grad = torch.ones_like(out)  # made outside the counted region
    with _count_triton(counter), counter:
        torch.autograd.backward(out, grad)
        after_backward = counter.snapshot()
    for label, (a, b) in (("forward", (before, after_forward)), ("backward", (after_forward, after_backward)),
                          ("train_step", (before, after_backward))):
        ops, kernels, triton, written = (b[k] - a[k] for k in range(4))
        result.update({label: kernels + triton, f"{label}_triton": triton, f"{label}_aten": kernels,
                       f"{label}_aten_ops": ops, f"{label}_elements_written": written})
    result["triton_kernels"] = dict(counter.triton)
    result["forward_triton_kernels"] = dict(forward_kernels)
    return result
