"""The slow twin, the one definition of "correct": a backend against torch.nn.LSTM (or nn.GRU) with
copied weights, on outputs, final states and every gradient, for one `Case`.

    check("loop", Case(bidirectional=True, proj_size=3, packing="packed"))
        -> Parity(errors={"output": 3e-17, "h_n": ..., "grad_weight_hr_l0_reverse": ...}, tolerance=1e-10)
    cases("lstm")                 pairwise-covering set over AXES (every pair of option values at least once)
    cases("lstm", exhaustive=True)  the full product

Used by the tests, by `make gpu-check` and `bench check`; kernel authors can call it on their own shapes.
Legend: B batch, T time steps, D input features, H hidden size, L layers.

Packing: "none" feeds the padded tensor (every row T steps); "packed" a PackedSequence (packed with
enforce_sorted=True when the lengths are already in descending order, else enforce_sorted=False);
"lengths" the padded tensor with `lengths=`, compared with nn.LSTM on the packed input padded back to
T. Gradients are taken through the padded input in every case, so grad_input past a row's length
must be zero, as the reference's is. A wrong layout (shape, packed batch_sizes or order) is an
infinite error, never a broadcast.
"""
from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass, field, replace

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

import impls

TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}  # max_rel_error bound for each dtype


@dataclass(frozen=True)
class Case:
    batch: int = 3
    steps: int = 5
    input_size: int = 4
    hidden: int = 6
    layers: int = 1
    batch_first: bool = True
    with_state: bool = False
    bias: bool = True
    bidirectional: bool = False
    proj_size: int = 0
    packing: str = "none"          # "none" | "packed" | "lengths" (impls.PACKINGS)
    lengths: tuple | None = None   # per row; None with packing: `default_lengths` (unsorted, 1 and T included)
    dtype: torch.dtype = torch.float32
    device: str = "cpu"
    seed: int = 0

    def row_lengths(self) -> list[int] | None:
        if self.packing == "none":
            return None
        return list(self.lengths) if self.lengths is not None else default_lengths(self.batch, self.steps)

    def label(self) -> str:
        parts = [f"B{self.batch} T{self.steps} D{self.input_size} H{self.hidden} L{self.layers}",
                 "bf" if self.batch_first else "tm", str(self.dtype).removeprefix("torch.")]
        parts += ["bidir"] * self.bidirectional + [f"proj{self.proj_size}"] * bool(self.proj_size)
        parts += ["state"] * self.with_state + ["nobias"] * (not self.bias)
        if self.packing != "none":
            parts.append(f"{self.packing}{tuple(self.row_lengths() or ())}")  # packed: never None
        return " ".join(parts)


def default_lengths(batch: int, steps: int) -> list[int]:
    """Spread over 1..T, with both ends, and not in descending order when B > 2 (B = 2: [1, T])."""
    if batch == 1:
        return [steps]
    spread = [1 + (steps - 1) * b // (batch - 1) for b in range(batch)]  # ascending from 1 to T
    return spread if batch == 2 else spread[1:] + spread[:1]


@dataclass
class Parity:
    case: Case
    errors: dict[str, float]      # quantity -> max_rel_error against the reference
    tolerance: float
    failures: dict[str, float] = field(init=False)

    def __post_init__(self) -> None:
        self.failures = {k: v for k, v in self.errors.items() if not v <= self.tolerance}  # NaN fails

    @property
    def ok(self) -> bool:
        return not self.failures

    def worst(self) -> tuple[str, float]:
        return max(self.errors.items(), key=lambda kv: float("inf") if kv[1] != kv[1] else kv[1])


def max_rel_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max |a - e| / max(1, max |e|): relative where values are large, absolute near zero;
    infinite when the shapes differ."""
    if tuple(actual.shape) != tuple(expected.shape):
        return float("inf")
    scale = max(1.0, expected.detach().abs().max().item()) if expected.numel() else 1.0
    if not expected.numel():
        return 0.0
    return (actual.detach().double() - expected.detach().double()).abs().max().item() / scale


def check(backend, case: Case, *, family: str | None = None, tolerance: float | None = None) -> Parity:
    """`backend`: a registry name, or a constructor taking nn.LSTM's arguments (then `family`
    "lstm" or "gru", default "lstm"). Returns every quantity's error against the reference."""
    if isinstance(backend, str):
        family = impls.spec(backend).family
        build = functools.partial(impls.build, backend)
    else:
        family, build = family or "lstm", backend
    if tolerance is None:
        if case.dtype not in TOLERANCE:
            raise ValueError(f"no default tolerance for {case.dtype}; pass tolerance= (known: {list(TOLERANCE)})")
        tolerance = TOLERANCE[case.dtype]
    reference, candidate, inputs = setup_pair(build, family, case)
    expected, upstream = run_module(reference, case, inputs, None, reference=True)
    actual, _ = run_module(candidate, case, inputs, upstream, reference=False)
    errors = {key: max_rel_error(actual[key], value) if key in actual else float("inf")
              for key, value in expected.items() if key != "layout"}
    errors["layout"] = 0.0 if actual.get("layout") == expected.get("layout") else float("inf")
    return Parity(case, errors, tolerance)


def setup_pair(build, family: str, case: Case):
    generator = torch.Generator().manual_seed(case.seed)
    options: dict[str, bool | int] = {"bias": case.bias, "batch_first": case.batch_first,
                                      "bidirectional": case.bidirectional}
    if case.proj_size:
        options["proj_size"] = case.proj_size
    reference = (nn.LSTM if family == "lstm" else nn.GRU)(case.input_size, case.hidden, case.layers, **options)
    with torch.no_grad():
        for p in reference.parameters():
            p.copy_(torch.rand(p.shape, generator=generator) * 0.6 - 0.3)
    reference = reference.to(device=case.device, dtype=case.dtype)
    candidate = build(case.input_size, case.hidden, case.layers, **options).to(device=case.device, dtype=case.dtype)
    candidate.load_state_dict(reference.state_dict())

    def make(*shape):
        return torch.randn(shape, generator=generator).to(device=case.device, dtype=case.dtype)

    batch_and_steps = (case.batch, case.steps) if case.batch_first else (case.steps, case.batch)
    x = make(*batch_and_steps, case.input_size)
    rows = case.layers * (2 if case.bidirectional else 1)
    widths = [case.proj_size or case.hidden, case.hidden] if family == "lstm" else [case.hidden]
    states = [make(rows, case.batch, width) for width in widths] if case.with_state else []
    return reference, candidate, {"x": x, "states": states, "family": family, "generator": generator}


def _feed(module, case: Case, x, hx, reference: bool):
    """The module's output as a tensor to compare, the state, and the packed layout (or None)."""
    lengths = case.row_lengths()
    if lengths is None:
        out, state = module(x, hx)
        return out, state, None
    if case.packing == "lengths" and not reference:
        out, state = module(x, hx, lengths=torch.tensor(lengths))
        return out, state, None
    ordered = all(a >= b for a, b in itertools.pairwise(lengths))
    packed = pack_padded_sequence(x, torch.tensor(lengths), batch_first=case.batch_first, enforce_sorted=ordered)
    out, state = module(packed, hx)
    if not isinstance(out, PackedSequence):
        return out, state, "not a PackedSequence"
    if case.packing == "lengths":
        padded, _ = pad_packed_sequence(out, batch_first=case.batch_first, total_length=case.steps)
        return padded, state, None
    layout = tuple(None if t is None else t.tolist()
                   for t in (out.batch_sizes, out.sorted_indices, out.unsorted_indices))
    return out.data, state, layout


def run_module(module, case: Case, inputs: dict, upstream, reference: bool):
    """{quantity: tensor} for one module, and the upstream gradients (made on the reference's run)."""
    family = inputs["family"]
    x = inputs["x"].clone().requires_grad_(True)
    states = [s.clone().requires_grad_(True) for s in inputs["states"]]
    hx = None if not states else (tuple(states) if family == "lstm" else states[0])
    out, state, layout = _feed(module, case, x, hx, reference)
    finals = list(state) if family == "lstm" else [state]
    produced = [out] + finals
    if upstream is None:
        upstream = [torch.randn(t.shape, generator=inputs["generator"]).to(device=t.device, dtype=t.dtype)
                    for t in produced]
    if any(tuple(t.shape) != tuple(u.shape) for t, u in zip(produced, upstream)):
        return {"layout": "wrong shape"}, upstream
    loss = sum((t * u).sum() for t, u in zip(produced, upstream))
    parameters = dict(module.named_parameters())
    grads = torch.autograd.grad(loss, [x] + states + list(parameters.values()))
    state_names = ["h_n", "c_n"] if family == "lstm" else ["h_n"]
    names = ["output"] + state_names + ["grad_input"] + [f"grad_{n[:2]}0" for n in state_names][:len(states)]
    names += [f"grad_{name}" for name in parameters]
    return dict(zip(names, produced + list(grads))) | {"layout": layout}, upstream


# The matrix the tests (and `bench check`) run: every option the issue names, and their combinations.
AXES = {
    "bidirectional": (False, True),
    "proj_size": (0, 3),
    "packing": ("none", "packed", "packed-sorted", "lengths"),
    "layers": (1, 2),
    "batch_first": (True, False),
    "with_state": (False, True),
    "dtype": (torch.float64, torch.float32),
}


# `bench check`'s shapes (impls.checks): batch 1 and primes, T 1 and long, D != H, 1 to 3 layers.
ODD_SHAPES = {
    "B1 T1 D3 H5 L1": dict(batch=1, steps=1, input_size=3, hidden=5, layers=1),
    "B3 T9 D7 H6 L3": dict(batch=3, steps=9, input_size=7, hidden=6, layers=3),
    "B2 T64 D5 H4 L1": dict(batch=2, steps=64, input_size=5, hidden=4, layers=1),
    "B5 T13 D2 H9 L2": dict(batch=5, steps=13, input_size=2, hidden=9, layers=2),
    "B11 T4 D4 H3 L1": dict(batch=11, steps=4, input_size=4, hidden=3, layers=1),
}


def _case(values: dict, base: Case) -> Case:
    values = dict(values)
    if "shape" in values:  # a key of ODD_SHAPES
        values |= ODD_SHAPES[values.pop("shape")]
    hidden = values.get("hidden", base.hidden)
    if values.get("proj_size") == "half":  # a projection fitting every shape's H
        values["proj_size"] = max(1, hidden // 2)
    if values.get("packing") == "packed-sorted":
        values["packing"] = "packed"
        lengths = default_lengths(values.get("batch", base.batch), values.get("steps", base.steps))
        values["lengths"] = tuple(sorted(lengths, reverse=True))
    return replace(base, **values)


def option_axes(family: str, supports=None, axes: dict = AXES) -> dict:
    """`axes` without the values the family (a GRU has no proj_size) or the backend (`supports`) lacks."""
    axes = dict(axes)
    if family == "gru" and "proj_size" in axes:
        axes["proj_size"] = (0,)
    if supports is not None:
        if "bidirectional" in axes:
            axes["bidirectional"] = axes["bidirectional"] if "bidirectional" in supports else (False,)
        if "proj_size" in axes:
            axes["proj_size"] = axes["proj_size"] if "proj_size" in supports else (0,)
        if "packing" in axes:
            axes["packing"] = tuple(p for p in axes["packing"] if p.split("-")[0] in set(supports) | {"none"})
    return axes


def cases(family: str = "lstm", *, exhaustive: bool = False, base: Case = Case(), supports=None,
          axes: dict = AXES) -> list[Case]:
    """The full product of `axes`, or (default) a greedy pairwise cover of it: each value of each axis
    meets each value of every other axis in at least one case. A GRU has no proj_size; `supports`
    (a backend's) drops the options it lacks before the combinations are made."""
    axes = option_axes(family, supports, axes)
    product = [dict(zip(axes, values)) for values in itertools.product(*axes.values())]
    chosen = product if exhaustive else _pairwise(product, list(axes))
    return [_case(values, base) for values in chosen]


def _pairwise(product: list[dict], names: list[str]) -> list[dict]:
    def pairs(row):
        return {(a, row[a], b, row[b]) for a, b in itertools.combinations(names, 2)}

    uncovered = set().union(*(pairs(row) for row in product))
    chosen = []
    while uncovered:
        best = max(product, key=lambda row: len(pairs(row) & uncovered))  # first of the best: deterministic
        chosen.append(best)
        uncovered -= pairs(best)
    return chosen


def compare_with_torch(name: str, *, batch: int, steps: int, input_size: int, hidden: int, layers: int,
                       batch_first: bool = True, with_state: bool = False, bias: bool = True,
                       dtype: torch.dtype = torch.float32, device: str = "cpu", seed: int = 0,
                       **options) -> dict[str, float]:
    """check() in the older call shape: {quantity: error}. options: bidirectional, proj_size, packing, lengths."""
    case = Case(batch=batch, steps=steps, input_size=input_size, hidden=hidden, layers=layers,
                batch_first=batch_first, with_state=with_state, bias=bias, dtype=dtype, device=device,
                seed=seed, **options)
    errors = check(name, case, tolerance=float("inf")).errors
    if errors.get("layout") == 0.0:
        del errors["layout"]  # nothing to report when the layout matched; kept (infinite) when it did not
    return errors
