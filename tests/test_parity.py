"""Every LSTM backend against torch.nn.LSTM with copied weights: outputs, states, every gradient."""
import pytest
import torch

import impls
from impls.parity import compare_with_torch

# The triton backend has its own parity module (it needs the interpreter on CPU).
TORCH_BACKENDS = [n for n in impls.names() if impls.spec(n).needs == "torch"]
LSTM_BACKENDS = [n for n in TORCH_BACKENDS if impls.spec(n).family == "lstm"]

SHAPES = [  # batch, steps, input, hidden, layers
    dict(batch=1, steps=7, input_size=5, hidden=13, layers=3),
    dict(batch=3, steps=7, input_size=5, hidden=13, layers=3),
    dict(batch=3, steps=1, input_size=28, hidden=64, layers=2),
    dict(batch=4, steps=9, input_size=2, hidden=1, layers=1),
]
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}


# (dtype, batch_first, with_state): every pair of values of these three appears in these four, and each shape
# gets one of them. That pairwise cover is the fast lane; the rest of the full grid (backend x shape x dtype x
# layout x state) is marked slow, and `make test` runs all of it.
PAIRWISE = [(torch.float64, True, False), (torch.float32, True, True), (torch.float64, False, True),
            (torch.float32, False, False)]


def _grid() -> list:
    cases = []
    for name in TORCH_BACKENDS:
        for k, shape in enumerate(SHAPES):
            for dtype in (torch.float64, torch.float32):
                for batch_first in (True, False):
                    for with_state in (False, True):
                        case_id = "-".join([("given_state" if with_state else "zero_state"),
                                            ("batch_first" if batch_first else "time_major"), str(dtype),
                                            "b{batch}t{steps}d{input_size}h{hidden}l{layers}".format(**shape), name])
                        fast = PAIRWISE[k % len(PAIRWISE)] == (dtype, batch_first, with_state)
                        cases.append(pytest.param(name, shape, dtype, batch_first, with_state, id=case_id,
                                                  marks=() if fast else pytest.mark.slow))
    return cases


@pytest.mark.parametrize("name, shape, dtype, batch_first, with_state", _grid())
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
