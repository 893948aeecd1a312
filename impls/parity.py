"""The slow twin: run a backend and torch.nn.LSTM (or nn.GRU) on the same weights and inputs.

Used by the tests and by `make gpu-check`; kernel authors can call it on their own shapes.
Legend: B batch, T time steps, D input features, H hidden size, L layers.
"""
from __future__ import annotations

import torch
from torch import nn

import impls


def max_rel_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max |a - e| / max(1, max |e|): relative where values are large, absolute near zero."""
    scale = max(1.0, expected.detach().abs().max().item()) if expected.numel() else 1.0
    return (actual.detach().double() - expected.detach().double()).abs().max().item() / scale


def compare_with_torch(name: str, *, batch: int, steps: int, input_size: int, hidden: int, layers: int,
                       batch_first: bool = True, with_state: bool = False, bias: bool = True,
                       dtype: torch.dtype = torch.float32, device: str = "cpu", seed: int = 0) -> dict[str, float]:
    """Max relative error of outputs, final states and every gradient: {quantity: error}."""
    family = impls.spec(name).family
    generator = torch.Generator().manual_seed(seed)
    reference_cls = nn.LSTM if family == "lstm" else nn.GRU
    reference = reference_cls(input_size, hidden, layers, bias=bias, batch_first=batch_first)
    with torch.no_grad():
        for p in reference.parameters():
            p.copy_(torch.rand(p.shape, generator=generator) * 0.6 - 0.3)
    reference = reference.to(device=device, dtype=dtype)
    candidate = impls.build(name, input_size, hidden, layers, batch_first=batch_first, bias=bias)
    candidate = candidate.to(device=device, dtype=dtype)
    candidate.load_state_dict(reference.state_dict())

    shape = (batch, steps, input_size) if batch_first else (steps, batch, input_size)
    x = torch.randn(shape, generator=generator).to(device=device, dtype=dtype)
    states = [torch.randn(layers, batch, hidden, generator=generator).to(device=device, dtype=dtype)
              for _ in range(2 if family == "lstm" else 1)] if with_state else []
    upstream = None
    results = []
    for module in (reference, candidate):
        x_in = x.clone().requires_grad_(True)
        s_in = [s.clone().requires_grad_(True) for s in states]
        hx = None if not with_state else (tuple(s_in) if family == "lstm" else s_in[0])
        out, state = module(x_in, hx)
        finals = list(state) if family == "lstm" else [state]
        if upstream is None:
            upstream = [torch.randn(t.shape, generator=generator).to(device=device, dtype=dtype)
                        for t in [out] + finals]
        loss = sum((t * u).sum() for t, u in zip([out] + finals, upstream))
        leaves = [x_in] + s_in + list(module.parameters())
        grads = torch.autograd.grad(loss, leaves)
        names = ["output"] + (["h_n", "c_n"] if family == "lstm" else ["h_n"])
        names += ["grad_input"] + [f"grad_{n}" for n in (["h_0", "c_0"] if family == "lstm" else ["h_0"])[:len(s_in)]]
        names += [f"grad_{n}" for n, _ in module.named_parameters()]
        results.append(dict(zip(names, [out] + finals + list(grads))))
    expected, actual = results
    return {key: max_rel_error(actual[key], expected[key]) for key in expected}
