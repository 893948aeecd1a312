"""nn.LSTM's whole surface in every backend: bidirectional, proj_size, PackedSequence and `lengths=`.

What parity against nn.LSTM (test_parity.py) cannot show by itself is shown here: the meaning of a
row's length against an oracle that never saw padding (each row run alone on its own steps), the
layout and order of packed output, the state_dict interchange with the options on, and that a
backend without an option refuses it in one line instead of answering wrongly.
"""
import importlib.util

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pack_sequence

import impls
from impls.base import LSTMBase, run_directions
from impls.loop import LoopLSTM
from impls.parity import AXES, Case, cases, check, default_lengths, max_rel_error
from tests.fixtures.alone import assert_each_row_is_itself_alone

LSTMS = [n for n in impls.names() if impls.spec(n).family == "lstm"]
EAGER_LSTMS = ["cudnn", "loop", "aten"]  # compiled is LoopLSTM's module: built here, run in test_compiled.py
TRITON = [n for n in impls.names() if impls.spec(n).needs == "triton"]
PARTIAL = "no-projection"  # every built-in LSTM takes every option: the refusals are shown on this one


class NoProjection(LoopLSTM):
    """A backend that declares no proj_size, as a plugin might: LoopLSTM without it."""
    supports = frozenset({"bidirectional", "packed", "lengths"})


@pytest.fixture
def partial(monkeypatch):
    monkeypatch.setitem(impls.REGISTRY, PARTIAL, impls.Backend("tests.test_lstm_surface:NoProjection", "lstm",
                                                               "torch", "a backend without proj_size, for tests",
                                                               supports=NoProjection.supports))
    return PARTIAL


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny shapes: two intra-op threads only spin against the other processes on this machine."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def _pair(name, *args, **kwargs):
    """A backend and an nn.LSTM holding the same (float64) weights."""
    torch.manual_seed(0)
    reference = nn.LSTM(*args, **kwargs).double()
    module = impls.build(name, *args, **kwargs).double()
    module.load_state_dict(reference.state_dict())
    return module, reference


@pytest.mark.parametrize("name", EAGER_LSTMS)
@pytest.mark.parametrize("feed", ["packed", "lengths"])
def test_each_row_is_what_it_would_be_alone(name, feed):
    """The oracle runs every row by itself on its own steps, with its own initial state: no padding,
    no packing. Outputs past a row's length are zero; its final state is the one at its last step;
    the reverse direction started at that last step (else the reverse outputs would differ)."""
    module, reference = _pair(name, 3, 5, 2, bidirectional=True, proj_size=2, batch_first=True)
    lengths = [4, 1, 6, 3]
    x = torch.randn(4, 6, 3, dtype=torch.float64)
    h0, c0 = torch.randn(4, 4, 2, dtype=torch.float64), torch.randn(4, 4, 5, dtype=torch.float64)
    if feed == "packed":
        out, (h_n, c_n) = module(pack_padded_sequence(x, torch.tensor(lengths), True, enforce_sorted=False), (h0, c0))
        out = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=6)[0]
    else:
        out, (h_n, c_n) = module(x, (h0, c0), lengths=torch.tensor(lengths))
    assert out.shape == (4, 6, 4)
    assert_each_row_is_itself_alone(out, h_n, c_n, x, h0, c0, lengths, reference)


@pytest.mark.parametrize("name", EAGER_LSTMS + ["gru"] + [pytest.param(n, marks=pytest.mark.slow) for n in TRITON])
def test_padding_never_reaches_the_results(name):
    """Garbage (NaN) past each row's length changes nothing: not the outputs, not one gradient."""
    torch.manual_seed(1)
    module = impls.build(name, 3, 4, 2, bidirectional=True).double()
    lengths = torch.tensor([2, 5, 3])
    clean = torch.randn(3, 5, 3, dtype=torch.float64) * (torch.arange(5)[None, :, None] < lengths[:, None, None])
    dirty = clean.masked_fill(torch.arange(5)[None, :, None] >= lengths[:, None, None], float("nan"))
    results = []
    for x in (clean, dirty):
        x = x.clone().requires_grad_(True)
        out, _ = module(x, lengths=lengths)
        out.square().sum().backward()
        grads = [x.grad.nan_to_num(0.0)] + [p.grad.clone() for p in module.parameters()]
        module.zero_grad()
        results.append((out, grads))
    (out_clean, grads_clean), (out_dirty, grads_dirty) = results
    assert torch.equal(out_clean, out_dirty)
    assert all(torch.equal(a, b) for a, b in zip(grads_clean, grads_dirty))


@pytest.mark.parametrize("name", EAGER_LSTMS + ["gru"])
@pytest.mark.parametrize("enforce_sorted", [True, False])
def test_packed_output_keeps_the_inputs_layout_and_batch_order(name, enforce_sorted):
    module = impls.build(name, 3, 4, bidirectional=True)
    sequences = [torch.randn(n, 3) for n in ((5, 3, 2) if enforce_sorted else (2, 5, 3))]
    packed = pack_sequence(sequences, enforce_sorted=enforce_sorted)
    out, state = module(packed)
    reference = (nn.LSTM if impls.spec(name).family == "lstm" else nn.GRU)(3, 4, bidirectional=True)
    reference.load_state_dict(module.state_dict())
    expected, expected_state = reference(packed)
    assert isinstance(out, PackedSequence) and out.data.shape == (10, 8)
    assert torch.equal(out.batch_sizes, expected.batch_sizes)
    for mine, theirs in ((out.sorted_indices, expected.sorted_indices),
                         (out.unsorted_indices, expected.unsorted_indices)):
        assert (mine is None and theirs is None) or torch.equal(mine, theirs)
    assert torch.allclose(out.data, expected.data, atol=1e-6)
    h_n = state[0] if isinstance(state, tuple) else state
    h_expected = expected_state[0] if isinstance(expected_state, tuple) else expected_state
    assert torch.allclose(h_n, h_expected, atol=1e-6)   # h_n in the caller's order, not the sorted one


def _options(*names: str) -> dict:
    """Both new constructor options where every backend named has them; proj_size left out otherwise."""
    both = all("proj_size" in impls.spec(n).supports for n in names)
    return dict(bidirectional=True, proj_size=2) if both else dict(bidirectional=True)


@pytest.mark.parametrize("name", LSTMS)
def test_parameters_and_state_dict_are_nn_lstms(name):
    options = _options(name)
    module = impls.build(name, 3, 5, 2, **options)
    expected = nn.LSTM(3, 5, 2, **options).state_dict()
    assert [(k, tuple(v.shape)) for k, v in module.state_dict().items()] == \
           [(k, tuple(v.shape)) for k, v in expected.items()]
    assert module.bidirectional and module.proj_size == options.get("proj_size", 0)


def test_gru_parameters_are_nn_grus():
    module = impls.build("gru", 3, 5, 2, bidirectional=True)
    assert list(module.state_dict()) == list(nn.GRU(3, 5, 2, bidirectional=True).state_dict())


SURFACE_LSTMS = [n for n in LSTMS if impls.spec(n).supports]


@pytest.mark.parametrize("source", SURFACE_LSTMS)
@pytest.mark.parametrize("target", SURFACE_LSTMS)
def test_state_dicts_interchange_with_the_options_on(source, target):
    options = dict(num_layers=2, batch_first=False, **_options(source, target))
    a, b = impls.build(source, 4, 6, **options), impls.build(target, 4, 6, **options)
    b.load_state_dict(a.state_dict())
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    if {source, target} <= set(EAGER_LSTMS):
        x = torch.randn(5, 2, 4)
        assert torch.allclose(a(x)[0], b(x)[0], atol=1e-6)


@pytest.mark.parametrize("name", TRITON)
def test_triton_state_dicts_interchange_with_the_others_both_ways(name):
    pytest.importorskip("triton")
    for other in ("cudnn", "loop"):
        for options in ({}, dict(bidirectional=True), _options(name)):
            source, target = impls.build(other, 4, 6, 2, **options), impls.build(name, 4, 6, 2, **options)
            target.load_state_dict(source.state_dict())
            source.load_state_dict(target.state_dict())
            assert all(torch.equal(p, q) for p, q in zip(source.state_dict().values(), target.state_dict().values()))


def test_a_backend_without_an_option_is_skipped_with_the_reason(partial):
    """A backend that lacks proj_size is skipped with the reason, on CPU and CUDA alike, before any device reason;
    the options it has give none."""
    for device in ("cpu", "cuda"):
        available = impls.availability(partial, device, purpose="test", proj_size=3, bidirectional=True)
        assert not available.ok and "does not support proj_size=3" in available.reason
        assert "bidirectional" not in available.reason.split("(")[0]
        for options in (dict(bidirectional=True), dict(packing="packed"), dict(packing="lengths")):
            assert "does not support" not in impls.availability(partial, device, purpose="test", **options).reason


def test_building_one_with_an_option_it_lacks_is_one_clear_line(partial):
    with pytest.raises(ValueError, match=rf"^{partial} does not support proj_size=2 yet "
                                         r"\(it supports: bidirectional, lengths, packed\)$") as error:
        impls.build(partial, 5, 4, proj_size=2)
    assert "\n" not in str(error.value)


def test_a_direct_construction_with_proj_size_is_refused_in_the_base():
    """Not only the registry: the class itself (LSTMBase with its `supports`) refuses, before any recurrence."""
    with pytest.raises(ValueError, match=r"proj_size=2 is not supported by this backend \(it supports: "
                                         r"bidirectional, lengths, packed\); expected proj_size=0"):
        NoProjection(5, 4, proj_size=2)


@pytest.mark.parametrize("name", TRITON)
def test_the_triton_kernels_take_proj_size(name):
    """Both Triton designs project (triton-step in its launcher loop, triton inside its persistent kernels): the
    registry and the class both say so, and availability gives no option as a reason (on CPU only the device's)."""
    pytest.importorskip("triton")
    module_name, attribute = impls.spec(name).factory.split(":")
    cls = getattr(__import__(module_name, fromlist=[attribute]), attribute)
    assert cls.supports == impls.spec(name).supports == impls.registry.SURFACE
    for device in ("cpu", "cuda"):
        available = impls.availability(name, device, purpose="test", proj_size=3, bidirectional=True,
                                       packing="packed")
        assert "does not support" not in available.reason
    module = cls(5, 4, 2, proj_size=3, bidirectional=True)
    assert module.weight_hr_l1_reverse.shape == (3, 4) and module.weight_hh_l1.shape == (16, 3)


def test_a_backend_without_the_options_refuses_them_in_the_base():
    """LSTMBase itself refuses what a subclass's `supports` leaves out, before any recurrence runs."""
    class Bare(LoopLSTM):
        supports = frozenset()

    with pytest.raises(ValueError, match=r"bidirectional=True is not supported by this backend"):
        Bare(5, 4, bidirectional=True)
    module = Bare(5, 4, batch_first=True)
    with pytest.raises(ValueError, match=r"PackedSequence input is not supported by this backend"):
        module(pack_sequence([torch.randn(3, 5), torch.randn(2, 5)]))
    with pytest.raises(ValueError, match=r"lengths= is not supported by this backend"):
        module(torch.randn(2, 3, 5), lengths=[3, 2])


def test_the_registry_and_the_classes_declare_the_same_options():
    for name in impls.names():
        module_name, attribute = impls.spec(name).factory.split(":")
        if impls.spec(name).needs == "triton" and importlib.util.find_spec("triton") is None:
            continue
        cls = getattr(__import__(module_name, fromlist=[attribute]), attribute)
        if issubclass(cls, LSTMBase):
            assert cls.supports == impls.spec(name).supports, name
    assert impls.availability("loop", "cpu", bidirectional=True, proj_size=2, packing="packed").ok
    with pytest.raises(ValueError, match="packing must be one of none, packed, lengths, got 'zip'"):
        impls.availability("loop", "cpu", packing="zip")


@pytest.mark.parametrize("name", EAGER_LSTMS + ["gru"])
def test_bad_lengths_are_one_clear_line(name):
    module = impls.build(name, 3, 4)
    x = torch.randn(3, 5, 3)
    expected = r"lengths must be a 1-D integer tensor or list of B=3 lengths in \[1, T=5\], got "
    for lengths, got in (([5, 2], r"torch.int64 of shape \(2\)"), ([5, 0, 2], "values from 0 to 5"),
                         ([6, 1, 1], "values from 1 to 6"), (torch.tensor([2.0, 3.0, 1.0]), "torch.float32"),
                         ("abc", "str")):
        with pytest.raises(ValueError, match=expected + got):
            module(x, lengths=lengths)
    with pytest.raises(ValueError, match="lengths= needs batched 3-D input"):
        module(torch.randn(5, 3), lengths=[5])
    with pytest.raises(ValueError, match="lengths= is for padded input; a PackedSequence carries its own"):
        module(pack_sequence([torch.randn(2, 3)]), lengths=[2])
    with pytest.raises(ValueError, match=r"PackedSequence data must be 2-D \(N, D\) with D=3, got \(4, 2\)"):
        module(pack_sequence([torch.randn(4, 2)]))


@pytest.mark.parametrize("name", EAGER_LSTMS)
def test_state_shapes_with_both_options_name_what_was_expected(name):
    module = impls.build(name, 3, 5, 2, bidirectional=True, proj_size=2)
    x = torch.randn(3, 4, 3)
    h0, c0 = torch.zeros(4, 3, 2), torch.zeros(4, 3, 5)
    out, (h_n, c_n) = module(x, (h0, c0))
    assert out.shape == (3, 4, 4) and h_n.shape == (4, 3, 2) and c_n.shape == (4, 3, 5)
    with pytest.raises(ValueError, match=r"h_0 must have shape \(dirs\*L, B, H_out\) = \(4, 3, 2\), got \(2, 3, 2\)"):
        module(x, (torch.zeros(2, 3, 2), c0))
    with pytest.raises(ValueError, match=r"c_0 must have shape \(dirs\*L, B, H\) = \(4, 3, 5\), got \(4, 3, 2\)"):
        module(x, (h0, torch.zeros(4, 3, 2)))
    out, (h_n, _) = module(x[0], (h0[:, 0], c0[:, 0]))  # unbatched, as nn.LSTM
    assert out.shape == (4, 4) and h_n.shape == (4, 2)


# ------------------------------------------------------------------ the check itself can fail

class IgnoresLengths(LoopLSTM):
    """Planted: runs every row to T (the padded steps update the state)."""
    def _forward_padded(self, x, lengths, h0, c0):
        return super()._forward_padded(x, None, h0, c0)


class ReverseFromTheEnd(LoopLSTM):
    """Planted: the reverse direction starts at step T-1 for every row, not at the row's own last step."""
    def _run_layer(self, x, h0, c0, directions, lengths):
        def direction(x, h, c, *weights, lengths, reverse):
            return self._direction(x, h, c, *weights, None if reverse else lengths, reverse)
        out, h, c = run_directions(direction, x, h0, c0, directions, lengths)
        return out * (torch.arange(x.shape[0])[:, None, None] < lengths[None, :, None]), h, c


class FlipsTheProjection(LoopLSTM):
    """Planted: the projection's rows in the wrong order (an indexing slip in W_hr)."""
    def _direction(self, x, h, c, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, reverse):
        return super()._direction(x, h, c, w_ih, w_hh, b_ih, b_hh, w_hr.flip(0), lengths, reverse)


@pytest.mark.parametrize("planted,case", [
    (IgnoresLengths, Case(packing="packed", dtype=torch.float64)),
    (ReverseFromTheEnd, Case(packing="lengths", bidirectional=True, dtype=torch.float64)),
    (FlipsTheProjection, Case(proj_size=3, dtype=torch.float64)),
])
def test_the_parity_check_catches_planted_bugs(planted, case):
    assert check("loop", case).ok  # the same case passes with the real backend
    result = check(planted, case)
    assert not result.ok and result.failures, result.errors


def test_a_packed_output_in_another_order_is_a_layout_failure():
    class Resorted(LoopLSTM):
        def forward(self, input, hx=None, lengths=None):
            out, state = super().forward(input, hx, lengths)
            return PackedSequence(out.data, out.batch_sizes, None, None), state
    result = check(Resorted, Case(packing="packed", dtype=torch.float64))
    assert result.errors["layout"] == float("inf") and not result.ok


def test_errors_of_the_wrong_shape_are_infinite_not_broadcast():
    assert max_rel_error(torch.zeros(3, 1), torch.zeros(3, 4)) == float("inf")
    assert max_rel_error(torch.tensor([1.0, 3.0]), torch.tensor([1.0, 2.0])) == pytest.approx(0.5)


def test_the_pairwise_cases_meet_every_pair_of_values():
    import itertools
    chosen = cases("lstm")
    assert len(chosen) < len(cases("lstm", exhaustive=True)) == 256
    as_values = [{"bidirectional": c.bidirectional, "proj_size": c.proj_size, "layers": c.layers,
                  "batch_first": c.batch_first, "with_state": c.with_state, "dtype": c.dtype,
                  "packing": "packed-sorted" if c.packing == "packed" and c.lengths else c.packing} for c in chosen]
    for a, b in itertools.combinations(AXES, 2):
        for value_a, value_b in itertools.product(AXES[a], AXES[b]):
            assert any(row[a] == value_a and row[b] == value_b for row in as_values), (a, value_a, b, value_b)
    assert all(c.proj_size == 0 for c in cases("gru", exhaustive=True))
    assert {c.packing for c in cases("lstm", supports={"bidirectional"})} == {"none"}


def test_default_lengths_hold_one_and_the_full_length_out_of_order():
    for batch, steps in ((3, 5), (4, 7), (6, 2)):
        lengths = default_lengths(batch, steps)
        assert len(lengths) == batch and min(lengths) == 1 and max(lengths) == steps
        assert lengths != sorted(lengths, reverse=True)
    assert default_lengths(1, 4) == [4] and default_lengths(2, 4) == [1, 4]
