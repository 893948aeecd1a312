"""Everything `bench check NAME` checks, and the project's own parity tests with it: one definition of correct.

    run_all("loop", device="cpu") -> [Outcome("float64 outputs", error=2e-16, tolerance=1e-10, ...), ...]

1. Parity (impls.parity.check: weights copied from torch.nn.LSTM, or nn.GRU for the GRU family) over a
   pairwise cover of the odd shapes (parity.ODD_SHAPES: batch 1 and primes, T 1 and 64, D != H, 1 to 3
   layers) with batch_first both ways, with and without initial state and bias, and every option of
   SURFACE the backend supports, in float64 and float32, and bfloat16/float16 where the device has them.
   One outcome per dtype for outputs, final states and gradients: the worst error over every case.
2. gradcheck: in float64 on a tiny shape, through input, initial state and every parameter, the whole
   analytic Jacobian against central differences (the error reported), and torch.autograd.gradcheck's verdict.
3. state_dict round trips: nn.LSTM's state_dict loaded into the backend, and the backend's own into
   nn.LSTM (strict), then the same outputs and states from both.
4. Determinism: the same forward and backward twice, bit for bit.

Every error is max_rel_error (impls.parity); a NaN, an exception or a wrong shape is an infinite error.
Legend: B batch, T time steps, D input features, H hidden size, L layers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

import impls
from impls.parity import ODD_SHAPES, TOLERANCE, Case, cases, check, max_rel_error, run_module, setup_pair

# Parity bounds per (device type, dtype). On CUDA float32 GEMMs may reassociate (split-K); the low
# precisions compare two roundings of the same math, each about 2^-8 (bfloat16) or 2^-11 (float16) per op.
TOLERANCES = {("cpu", dtype): bound for dtype, bound in TOLERANCE.items()} | {
    ("cuda", torch.float64): 1e-10, ("cuda", torch.float32): 1e-4, ("cuda", torch.float16): 1e-2,
    ("cuda", torch.bfloat16): 6e-2, ("cpu", torch.bfloat16): 6e-2}
GRADCHECK_TOLERANCE = 1e-6  # float64 central differences at eps 1e-6: about 1e-9 on a correct backward
ODD_AXES = {"shape": tuple(ODD_SHAPES), "batch_first": (True, False), "with_state": (False, True),
            "bias": (True, False), "bidirectional": (False, True), "proj_size": (0, "half"),
            "packing": ("none", "packed", "packed-sorted", "lengths")}
GROUPS = {"outputs": ("output", "layout"), "final states": ("h_n", "c_n"), "gradients": ("grad_",)}


@dataclass(frozen=True)
class Outcome:
    check: str        # e.g. "float32 gradients", "gradcheck float64"
    error: float      # the worst error (inf: an exception, a wrong shape or layout)
    tolerance: float
    where: str        # the quantity and case of the worst error, or what went wrong
    cases: int = 1

    @property
    def ok(self) -> bool:
        return self.error <= self.tolerance  # NaN fails


def dtypes(device: str) -> list[torch.dtype]:
    """float64 and float32 everywhere; bfloat16 on a CPU or a GPU with compute capability 8.0; float16 on CUDA."""
    found = [torch.float64, torch.float32]
    if torch.device(device).type == "cuda":
        found += [torch.float16] + [torch.bfloat16] * torch.cuda.is_bf16_supported(including_emulation=False)
    else:
        found.append(torch.bfloat16)
    return found


def odd_cases(name: str, dtype: torch.dtype, device: str = "cpu") -> list[Case]:
    backend = impls.spec(name)
    return cases(backend.family, base=Case(dtype=dtype, device=device), supports=backend.supports, axes=ODD_AXES)


def run_all(name: str, device: str = "cpu", progress=lambda line: None) -> list[Outcome]:
    """Every check of the module docstring, in order; `progress(line)` hears each group start."""
    outcomes = []
    for dtype in dtypes(device):
        chosen = odd_cases(name, dtype, device)
        progress(f"parity {str(dtype).removeprefix('torch.')}: {len(chosen)} cases")
        outcomes += parity_outcomes(name, chosen, TOLERANCES[torch.device(device).type, dtype])
    progress("gradcheck, state_dict round trips, determinism")
    return outcomes + [gradcheck_outcome(name, device), *state_dict_outcomes(name, device),
                       determinism_outcome(name, device)]


def parity_outcomes(name: str, chosen: list[Case], tolerance: float) -> list[Outcome]:
    """Outputs, final states and gradients over `chosen` (cases of one dtype): each the worst of every case."""
    worst = {group: (-math.inf, "no case ran") for group in GROUPS}
    for case in chosen:
        try:
            errors, failure = check(name, case, tolerance=tolerance).errors, "nothing to compare"
        except Exception as raised:  # a backend that raises fails every group of the case, saying why
            errors, failure = {}, f"raised {_one_line(raised)}"
        for group, prefixes in GROUPS.items():
            found = {k: v for k, v in errors.items() if k.startswith(prefixes)}
            if found:
                quantity = max(found, key=lambda k: _order(found[k]))
                error, where = found[quantity], f"{quantity}, {case.label()}"
            else:
                error, where = math.inf, f"{case.label()}: {failure}"
            if _order(error) > _order(worst[group][0]):
                worst[group] = (error, where)
    label = str(chosen[0].dtype).removeprefix("torch.")
    return [Outcome(f"{label} {group}", error=error if error != -math.inf else math.inf, tolerance=tolerance,
                    where=where, cases=len(chosen)) for group, (error, where) in worst.items()]


def _order(value: float) -> float:
    return math.inf if value != value else value  # NaN is the worst error there is


def _options(name: str, hidden: int) -> dict:
    """Every constructor option of SURFACE the backend supports, at a value that fits `hidden`."""
    backend = impls.spec(name)
    options: dict[str, bool | int] = {"bidirectional": "bidirectional" in backend.supports}
    if "proj_size" in backend.supports and backend.family == "lstm":
        options["proj_size"] = max(1, hidden // 2)
    return options


def gradcheck_outcome(name: str, device: str = "cpu") -> Outcome:
    """torch.autograd.gradcheck through input, initial state and every parameter, float64, B2 T3 D2 H3 L2."""
    case = Case(batch=2, steps=3, input_size=2, hidden=3, layers=2, with_state=True, dtype=torch.float64,
                device=device, **_options(name, 3))
    label = case.label()
    try:
        _, module, inputs = setup_pair(lambda *a, **k: impls.build(name, *a, **k), impls.spec(name).family, case)
        function, arguments = _as_function(module, inputs)
        analytic, numeric = _jacobians(function, arguments)
        error = max_rel_error(analytic, numeric)
        # torch's verdict in fast mode (random projections): the full Jacobian is compared above already
        passed = torch.autograd.gradcheck(function, arguments, eps=1e-6, atol=1e-5, rtol=1e-3, fast_mode=True,
                                          raise_exception=False)
    except Exception as raised:
        return Outcome("gradcheck float64", math.inf, GRADCHECK_TOLERANCE, f"raised {_one_line(raised)}")
    if not passed:
        return Outcome("gradcheck float64", error if error > GRADCHECK_TOLERANCE else math.inf, GRADCHECK_TOLERANCE,
                       f"torch.autograd.gradcheck failed ({label}); analytic vs numeric Jacobian off by {error:.2e}")
    return Outcome("gradcheck float64", error, GRADCHECK_TOLERANCE, f"Jacobian of output and states, {label}")


def _as_function(module: nn.Module, inputs: dict):
    """(function of (x, *states, *parameters) -> (output, *final states), those tensors as float64 leaves)."""
    names = [n for n, _ in module.named_parameters()]
    states = inputs["states"]
    lstm = inputs["family"] == "lstm"

    def function(x, *rest):
        hx = tuple(rest[:len(states)]) if lstm else rest[0]
        weights = dict(zip(names, rest[len(states):]))
        out, state = torch.func.functional_call(module, weights, (x, hx))
        return (out, *state) if lstm else (out, state)

    leaves = [inputs["x"], *states, *(p for _, p in module.named_parameters())]
    return function, tuple(t.detach().clone().requires_grad_(True) for t in leaves)


def _jacobians(function, arguments: tuple, eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """(analytic, central-difference) Jacobians of every output element by every input element."""
    with torch.no_grad():
        def flat(args):
            return torch.cat([t.reshape(-1) for t in function(*args)])
        columns = []
        for i, argument in enumerate(arguments):
            for j in range(argument.numel()):
                shifted = []
                for sign in (1, -1):
                    moved = argument.detach().clone()
                    moved.view(-1)[j] += sign * eps
                    shifted.append(flat(arguments[:i] + (moved,) + arguments[i + 1:]))
                columns.append((shifted[0] - shifted[1]) / (2 * eps))
    numeric = torch.stack(columns, dim=1)
    outputs = torch.cat([t.reshape(-1) for t in function(*arguments)])
    rows = []
    for k in range(outputs.numel()):
        grads = torch.autograd.grad(outputs[k], arguments, retain_graph=True, allow_unused=True)
        rows.append(torch.cat([(torch.zeros_like(a) if g is None else g).reshape(-1)
                               for g, a in zip(grads, arguments)]))
    return torch.stack(rows), numeric


def state_dict_outcomes(name: str, device: str = "cpu") -> list[Outcome]:
    """nn.LSTM's (nn.GRU's) state_dict into the backend and back, and the backend's into nn.LSTM and back;
    float64, L2, every option of SURFACE the backend supports. Each hop must keep the outputs and states
    (the weights mean the same on both sides), and each round trip every tensor, bit for bit."""
    family = impls.spec(name).family
    options = dict(batch_first=True, **_options(name, 5))
    reference_class = nn.LSTM if family == "lstm" else nn.GRU
    make = {"reference": lambda: reference_class(3, 5, 2, **options),
            "backend": lambda: impls.build(name, 3, 5, 2, **options)}
    torch_name = f"nn.{reference_class.__name__}"
    outcomes = []
    for source, target, label in (("reference", "backend", f"state_dict {torch_name} -> {name} -> {torch_name}"),
                                  ("backend", "reference", f"state_dict {name} -> {torch_name} -> {name}")):
        try:
            torch.manual_seed(1)
            first, second, back = (make[k]().to(device, torch.float64) for k in (source, target, source))
            error, where = _round_trip(first, second, back, family)
        except Exception as raised:
            error, where = math.inf, f"raised {_one_line(raised)}"
        outcomes.append(Outcome(label, error, TOLERANCE[torch.float64], where))
    return outcomes


def _round_trip(source: nn.Module, target: nn.Module, back: nn.Module, family: str) -> tuple[float, str]:
    """source's state_dict into target (strict), target's into back: (worst error, where)."""
    state = source.state_dict()
    if problem := _layout_difference(state, target.state_dict()):
        return math.inf, problem
    target.load_state_dict(state, strict=True)
    back.load_state_dict(target.state_dict(), strict=True)
    returned = back.state_dict()
    errors = {f"{k} after the round trip": max_rel_error(returned[k], v) for k, v in state.items()}
    x = torch.randn(3, 4, 3, generator=torch.Generator().manual_seed(2)).to(next(iter(state.values())))
    with torch.no_grad():
        (out_a, state_a), (out_b, state_b) = source(x), target(x)
    finals = zip(state_a, state_b) if family == "lstm" else [(state_a, state_b)]
    errors |= {"output after loading": max_rel_error(out_b, out_a)}
    errors |= {f"{k} after loading": max_rel_error(b, a) for k, (a, b) in zip(("h_n", "c_n"), finals)}
    worst = max(errors, key=lambda k: _order(errors[k]))
    return errors[worst], f"{worst}, B3 T4 D3 H5 L2 float64"


def _layout_difference(ours: dict, theirs: dict) -> str:
    """Why two state_dicts cannot interchange (names or shapes), "" when they can."""
    shapes = {k: tuple(v.shape) for k, v in ours.items()}, {k: tuple(v.shape) for k, v in theirs.items()}
    missing, extra = sorted(set(shapes[1]) - set(shapes[0])), sorted(set(shapes[0]) - set(shapes[1]))
    if missing or extra:
        return f"keys differ: missing {missing}, unexpected {extra}"
    differ = [k for k in shapes[0] if shapes[0][k] != shapes[1][k]]
    return f"shape of {differ[0]}: {shapes[0][differ[0]]} vs {shapes[1][differ[0]]}" if differ else ""


def determinism_outcome(name: str, device: str = "cpu") -> Outcome:
    """The same forward and backward twice on one module: every output, state and gradient bit for bit."""
    case = Case(batch=5, steps=7, input_size=3, hidden=6, layers=2, with_state=True, dtype=torch.float32, device=device,
                **_options(name, 6))
    try:
        _, module, inputs = setup_pair(lambda *a, **k: impls.build(name, *a, **k), impls.spec(name).family, case)
        first, upstream = run_module(module, case, inputs, None, reference=False)
        second, _ = run_module(module, case, inputs, upstream, reference=False)
    except Exception as raised:
        return Outcome("determinism (two calls)", math.inf, 0.0, f"raised {_one_line(raised)}")
    errors = {k: (0.0 if torch.equal(v, second[k]) else max_rel_error(second[k], v))
              for k, v in first.items() if isinstance(v, torch.Tensor)}
    worst = max(errors, key=lambda k: _order(errors[k]))
    return Outcome("determinism (two calls)", errors[worst], 0.0, f"{worst}, {case.label()}")


def _one_line(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}".strip()
    return text.splitlines()[0][:300]
