"""Every LSTM backend against torch.nn.LSTM with copied weights: outputs, states, every gradient."""
import pytest
import torch

import impls
from impls import checks
from impls.parity import Case, cases, check

# The triton backend has its own parity module (it needs the interpreter on CPU); compiled's cases
# are in test_compiled.py (each new shape compiles).
TORCH_BACKENDS = [n for n in impls.names() if impls.spec(n).needs == "torch"]
LSTM_BACKENDS = [n for n in TORCH_BACKENDS if impls.spec(n).family == "lstm"]


def _matrix(exhaustive: bool) -> list:
    return [(name, case) for name in TORCH_BACKENDS
            for case in cases(impls.spec(name).family, exhaustive=exhaustive, supports=impls.spec(name).supports)]


# Odd corners the matrix's default shape does not reach: one row, one step, every row full length.
EDGES = [
    Case(batch=1, steps=4, packing="packed", bidirectional=True, with_state=True, dtype=torch.float64),
    Case(batch=4, steps=1, packing="packed", bidirectional=True, layers=2, dtype=torch.float64),
    Case(batch=3, steps=4, packing="packed", lengths=(4, 4, 4), bidirectional=True, dtype=torch.float64),
    Case(batch=3, steps=4, packing="lengths", lengths=(4, 4, 4), layers=2, dtype=torch.float64),
    Case(batch=2, steps=6, packing="lengths", bias=False, bidirectional=True, proj_size=2, batch_first=False,
         dtype=torch.float64),
    Case(batch=5, steps=7, input_size=3, hidden=9, proj_size=4, layers=3, packing="packed", lengths=(2, 7, 7, 1, 5),
         bidirectional=True, with_state=True, dtype=torch.float32),
]
FAST = _matrix(exhaustive=False)
FULL = [pair for pair in _matrix(exhaustive=True) if pair not in FAST]


def _assert_matches(name: str, case: Case) -> None:
    result = check(name, case)
    names = set(result.errors)
    assert {"output", "h_n", "grad_input", "layout", "grad_weight_hh_l0"} <= names
    assert ("grad_weight_ih_l0_reverse" in names) == case.bidirectional
    assert ("grad_weight_hr_l0" in names) == bool(case.proj_size)
    assert ("grad_h_0" in names) == case.with_state
    assert result.ok, f"{name} {case.label()}: beyond {result.tolerance}: {result.failures}"


@pytest.mark.parametrize("name,case", FAST, ids=lambda v: v if isinstance(v, str) else v.label())
def test_surface_matches_torch_pairwise(name, case):
    _assert_matches(name, case)


@pytest.mark.parametrize("name,case", [(name, case) for name in TORCH_BACKENDS for case in EDGES
                                       if not case.proj_size or "proj_size" in impls.spec(name).supports],
                         ids=lambda v: v if isinstance(v, str) else v.label())
def test_surface_matches_torch_at_the_edges(name, case):
    _assert_matches(name, case)


@pytest.mark.slow
@pytest.mark.parametrize("name,case", FULL, ids=lambda v: v if isinstance(v, str) else v.label())
def test_surface_matches_torch_every_combination(name, case):
    _assert_matches(name, case)

# `bench check`'s own checks (impls.checks), the one definition of correct: odd shapes in each dtype,
# gradcheck, state_dict round trips, determinism. Each backend passes all of them; tests/test_checks.py
# shows each check failing on a planted bug.
@pytest.mark.parametrize("name", TORCH_BACKENDS)
@pytest.mark.parametrize("dtype", checks.dtypes("cpu"), ids=str)
def test_odd_shapes_match_torch(name, dtype):
    chosen = checks.odd_cases(name, dtype)
    assert {c.batch for c in chosen} >= {1, 2, 3, 5, 11} and {c.steps for c in chosen} >= {1, 64}
    assert {c.layers for c in chosen} >= {1, 3} and all(c.input_size != c.hidden for c in chosen)
    for option in ("batch_first", "with_state", "bias"):
        assert {getattr(c, option) for c in chosen} == {True, False}
    supports = impls.spec(name).supports
    assert any(c.bidirectional for c in chosen) == ("bidirectional" in supports)
    assert {c.packing for c in chosen} == {"none"} | (set(supports) & {"packed", "lengths"})
    outcomes = checks.parity_outcomes(name, chosen, checks.TOLERANCES["cpu", dtype])
    assert [o.check.split(" ", 1)[1] for o in outcomes] == ["outputs", "final states", "gradients"]
    assert all(o.ok for o in outcomes), [o for o in outcomes if not o.ok]


@pytest.mark.parametrize("name", TORCH_BACKENDS)
def test_gradcheck_state_dict_round_trips_and_determinism(name):
    outcomes = [checks.gradcheck_outcome(name), *checks.state_dict_outcomes(name), checks.determinism_outcome(name)]
    assert all(o.ok for o in outcomes), [o for o in outcomes if not o.ok]
    assert outcomes[-1].error == 0.0  # bit for bit


@pytest.mark.parametrize("pair", [("cudnn", "loop"), ("loop", "cudnn")])
def test_state_dict_round_trip_between_backends(pair):
    source, target = (impls.build(n, 6, 7, 2) for n in pair)
    target.load_state_dict(source.state_dict())
    for (name_a, a), (name_b, b) in zip(source.state_dict().items(), target.state_dict().items()):
        assert name_a == name_b and torch.equal(a, b)
    x = torch.randn(2, 5, 6)
    assert torch.allclose(source(x)[0], target(x)[0], atol=1e-6)


def test_unbatched_input_matches_torch():
    reference = torch.nn.LSTM(4, 6, 2)
    loop = impls.build("loop", 4, 6, 2, batch_first=False)
    loop.load_state_dict(reference.state_dict())
    x, h0, c0 = torch.randn(5, 4), torch.randn(2, 6), torch.randn(2, 6)
    (out_r, (h_r, c_r)), (out_l, (h_l, c_l)) = reference(x, (h0, c0)), loop(x, (h0, c0))
    assert out_l.shape == (5, 6) and h_l.shape == (2, 6)
    for a, b in ((out_r, out_l), (h_r, h_l), (c_r, c_l)):
        assert torch.allclose(a, b, atol=1e-6)


def test_dropout_between_layers_is_active_only_in_training():
    loop = impls.build("loop", 3, 8, 2, dropout=0.5)
    x = torch.randn(4, 5, 3)
    torch.manual_seed(0)
    train_a = loop(x)[0]
    torch.manual_seed(1)
    train_b = loop(x)[0]
    loop.eval()
    assert not torch.equal(train_a, train_b)
    assert torch.equal(loop(x)[0], loop(x)[0])
