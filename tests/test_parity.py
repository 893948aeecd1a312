"""Every LSTM backend against torch.nn.LSTM with copied weights: outputs, states, every gradient."""
import pytest
import torch

import impls
from impls.parity import Case, cases, check, compare_with_torch

# The triton backend has its own parity module (it needs the interpreter on CPU); compiled's cases
# are in test_compiled.py (each new shape compiles).
TORCH_BACKENDS = [n for n in impls.names() if impls.spec(n).needs == "torch"]
LSTM_BACKENDS = [n for n in TORCH_BACKENDS if impls.spec(n).family == "lstm"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These shapes are tiny: on the shared 2-core machine two intra-op threads spin against other
    processes (40 parity cases took 10.5 s with two threads, 0.45 s with one)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


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

SHAPES = [  # batch, steps, input, hidden, layers
    dict(batch=1, steps=7, input_size=5, hidden=13, layers=3),
    dict(batch=3, steps=7, input_size=5, hidden=13, layers=3),
    dict(batch=3, steps=1, input_size=28, hidden=64, layers=2),
    dict(batch=4, steps=9, input_size=2, hidden=1, layers=1),
]
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}


@pytest.mark.parametrize("name", TORCH_BACKENDS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "b{batch}t{steps}d{input_size}h{hidden}l{layers}".format(**s))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("batch_first", [True, False], ids=["batch_first", "time_major"])
@pytest.mark.parametrize("with_state", [False, True], ids=["zero_state", "given_state"])
def test_matches_torch(name, shape, dtype, batch_first, with_state):
    errors = compare_with_torch(name, **shape, dtype=dtype, batch_first=batch_first, with_state=with_state)
    family = impls.spec(name).family
    assert {"output", "h_n", "grad_input"} <= set(errors)
    assert ("c_n" in errors) == (family == "lstm")
    assert any(key.startswith("grad_weight_hh_l") for key in errors)
    if with_state:
        assert "grad_h_0" in errors
    worst = {k: v for k, v in errors.items() if not v <= TOLERANCE[dtype]}
    assert not worst, f"{name} {dtype}: beyond {TOLERANCE[dtype]}: {worst}"


@pytest.mark.parametrize("name", LSTM_BACKENDS)
def test_without_bias(name):
    errors = compare_with_torch(name, batch=2, steps=4, input_size=3, hidden=5, layers=2, bias=False,
                                dtype=torch.float64)
    assert not any(k.startswith("grad_bias") for k in errors)
    assert max(errors.values()) < 1e-10


def test_parity_detects_a_wrong_gate():
    """The slow twin must be able to fail: swap two gates of the loop cell and parity breaks."""
    from impls import cells
    original = cells.lstm_pointwise

    def forget_and_input_swapped(gates, c_prev):
        i, f, g, o = gates.chunk(4, dim=-1)
        return original(torch.cat([f, i, g, o], dim=-1), c_prev)

    try:
        cells.lstm_pointwise = forget_and_input_swapped
        import impls.cells as module
        assert module.lstm_pointwise is forget_and_input_swapped
        errors = compare_with_torch("loop", batch=2, steps=3, input_size=3, hidden=4, layers=1, dtype=torch.float64)
    finally:
        cells.lstm_pointwise = original
    assert errors["output"] > 1e-3


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
