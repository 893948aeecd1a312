"""nn.LSTM's surface in the Triton backends: bidirectional, PackedSequence, `lengths=` and proj_size.

Parity with torch.nn.LSTM through impls.parity (copied weights; outputs, final states, every gradient) over the
same pairwise cover of options as the torch backends, the full product for the persistent kernel and the edge
cases (one row, one step, every row full length) in the slow lane; the launch counts that show the persistent
kernel runs both directions in one launch per layer and pass; and the meaning of a row's length against an oracle
that runs each row alone. Without CUDA the kernels run under the Triton interpreter (tests/conftest.py switches it
on before any kernel module is imported), so the fast lane keeps one tiny case per backend.
"""
from __future__ import annotations

import dataclasses

import pytest

pytest.importorskip("triton")

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import impls
import impls.triton_lstm as triton_lstm
from impls.launches import count_launches
from impls.parity import Case, cases, check
from tests.fixtures.alone import assert_each_row_is_itself_alone

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TRITON = ["triton", "triton-step"]


@pytest.fixture(autouse=True)
def strict_fp32_and_one_thread():
    """True float32 in the reference (cuDNN would use TF32), and one intra-op thread for these tiny shapes."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.get_num_threads()
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    torch.set_num_threads(1)
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[:2]
    torch.set_num_threads(saved[2])


def _assert_matches(name: str, case: Case) -> None:
    result = check(name, dataclasses.replace(case, device=DEVICE))
    names = set(result.errors)
    assert {"output", "h_n", "c_n", "grad_input", "layout", "grad_weight_hh_l0"} <= names
    assert ("grad_weight_hh_l0_reverse" in names) == case.bidirectional
    assert ("grad_weight_hr_l0" in names) == bool(case.proj_size)
    assert ("grad_weight_hr_l0_reverse" in names) == (case.bidirectional and bool(case.proj_size))
    assert ("grad_h_0" in names) == case.with_state
    assert result.ok, f"{name} {case.label()}: beyond {result.tolerance}: {result.failures}"


def _ids(value) -> str:
    return value if isinstance(value, str) else value.label()


# ------------------------------------------------------------------------------------------------ parity

# The fast lane: per backend one tiny case with both directions, unsorted packed rows of lengths 1 to T, two
# layers (the second reads both directions' projected outputs), a projection, an initial state, in float64 (the
# slow lane covers both backends without a projection; the fast lane's length oracle below runs without one).
TINY = Case(batch=3, steps=4, input_size=3, hidden=3, layers=2, bidirectional=True, packing="packed",
            with_state=True, proj_size=2, dtype=torch.float64)


@pytest.mark.parametrize("name", TRITON)
def test_tiny_bidirectional_packed_projected_case_matches_torch(name):
    assert TINY.row_lengths() == [2, 4, 1]
    _assert_matches(name, TINY)


def _pairwise(name: str) -> list:
    return cases("lstm", supports=impls.spec(name).supports)


PAIRWISE = [(name, case) for name in TRITON for case in _pairwise(name)]
FULL = [("triton", case) for case in cases("lstm", exhaustive=True, supports=impls.spec("triton").supports)
        if case not in _pairwise("triton")]
# Corners the pairwise cover's default shape does not reach: one row, one step, every row full length, no bias,
# a batch tile past the row count.
EDGES = [
    Case(batch=1, steps=4, packing="packed", bidirectional=True, with_state=True, dtype=torch.float64),
    Case(batch=4, steps=1, packing="packed", bidirectional=True, layers=2, dtype=torch.float64),
    Case(batch=3, steps=4, packing="packed", lengths=(4, 4, 4), bidirectional=True, dtype=torch.float64),
    Case(batch=3, steps=4, packing="lengths", lengths=(4, 4, 4), layers=2, dtype=torch.float64),
    Case(batch=2, steps=6, packing="lengths", bias=False, bidirectional=True, batch_first=False, dtype=torch.float64),
    Case(batch=5, steps=7, input_size=3, hidden=9, layers=3, packing="packed", lengths=(2, 7, 7, 1, 5),
         bidirectional=True, with_state=True, dtype=torch.float32),
]


@pytest.mark.slow
@pytest.mark.parametrize("name,case", PAIRWISE, ids=_ids)
def test_surface_matches_torch_pairwise(name, case):
    _assert_matches(name, case)


@pytest.mark.slow
@pytest.mark.parametrize("name,case", [(name, case) for name in TRITON for case in EDGES], ids=_ids)
def test_surface_matches_torch_at_the_edges(name, case):
    _assert_matches(name, case)


# The projection beyond the pairwise cover: with every other option, in both dtypes, P = 1 and P = H - 1, one step,
# one row, every row full length, no bias.
PROJ_EDGES = [
    Case(batch=3, steps=4, input_size=3, hidden=4, proj_size=3, bidirectional=True, packing="lengths",
         with_state=True, dtype=torch.float64),
    Case(batch=3, steps=4, input_size=3, hidden=4, proj_size=1, layers=2, bidirectional=True, packing="packed",
         batch_first=False, dtype=torch.float32),
    Case(batch=4, steps=5, input_size=2, hidden=5, proj_size=2, layers=2, packing="packed", lengths=(5, 1, 3, 5),
         with_state=True, dtype=torch.float32),
    Case(batch=1, steps=4, hidden=4, proj_size=2, bidirectional=True, packing="packed", dtype=torch.float64),
    Case(batch=3, steps=1, hidden=4, proj_size=2, bidirectional=True, packing="lengths", dtype=torch.float64),
    Case(batch=3, steps=4, hidden=4, proj_size=2, packing="lengths", lengths=(4, 4, 4), bias=False,
         bidirectional=True, dtype=torch.float64),
    Case(batch=2, steps=3, hidden=4, proj_size=2, layers=2, bidirectional=True, dtype=torch.float32),
]


@pytest.mark.slow
@pytest.mark.parametrize("name,case", [(name, case) for name in TRITON for case in PROJ_EDGES], ids=_ids)
def test_projection_matches_torch_at_the_edges(name, case):
    _assert_matches(name, case)


@pytest.mark.slow
@pytest.mark.parametrize("name,case", FULL, ids=_ids)
def test_persistent_surface_matches_torch_every_combination(name, case):
    _assert_matches(name, case)


@pytest.mark.slow
@pytest.mark.parametrize("path", ["resident", "streaming"])
@pytest.mark.parametrize("proj_size", [0, 3])
def test_persistent_paths_with_many_batch_tiles_and_both_directions(monkeypatch, path, proj_size):
    """The compiled tiling on the CPU: 16-row tiles, so B=33 is three programs per direction, the last one masked
    past row 32; both kernel paths, with every row's own length, with and without a projection."""
    original = triton_lstm.plan
    monkeypatch.setattr(triton_lstm, "plan", lambda *args: dataclasses.replace(original(*args), block_b=16))
    lengths = tuple(1 + (7 * b) % 5 for b in range(33))
    case = Case(batch=33, steps=5, input_size=3, hidden=5, bidirectional=True, packing="lengths", lengths=lengths,
                with_state=True, proj_size=proj_size, dtype=torch.float64)
    with triton_lstm.force_path(path):
        _assert_matches("triton", case)


@pytest.mark.slow
@pytest.mark.parametrize("proj_size", [0, 33])
def test_persistent_streaming_path_over_several_tiles_with_lengths_and_both_directions(proj_size):
    """H=40 in float64 streams W_hh in 32 x 32 tiles: two column and two K tiles a step, the second masked, each
    tile's rows inside or past their own length, both directions and an initial state; with P=33 the projection's
    phases (forward m -> h, backward dh -> dm) run over two tiles of each width too."""
    assert not triton_lstm.plan(5, 40, torch.float64, proj_size).resident
    case = Case(batch=5, steps=4, input_size=3, hidden=40, bidirectional=True, packing="packed",
                lengths=(2, 4, 1, 3, 4), with_state=True, proj_size=proj_size, dtype=torch.float64)
    _assert_matches("triton", case)


# ------------------------------------------------------------------------------------------------ launches

class WithLengths(nn.Module):
    """`module(x, lengths=...)` as count_launches calls a module: module(x)."""

    def __init__(self, module: nn.Module, lengths: list[int]) -> None:
        super().__init__()
        self.module, self.lengths = module, torch.tensor(lengths)

    def forward(self, x):
        return self.module(x, lengths=self.lengths)


def _counts(name: str, layers: int, lengths: list[int] | None = None, steps: int = 3, **options) -> dict:
    torch.manual_seed(0)
    model = impls.build(name, 5, 4, layers, batch_first=True, **options).to(DEVICE)
    module = WithLengths(model, lengths) if lengths else model
    return count_launches(module, torch.randn(3, steps, 5, device=DEVICE))


def test_persistent_kernel_runs_both_directions_in_one_launch_per_layer_and_pass():
    """The same Triton launches with bidirectional=True (and each row's own length, and a projection) as with one
    direction: a grid axis for the direction, not a second launch, and the projection inside the kernels; one
    forward and one backward per layer."""
    layers = 2
    one_way = _counts("triton", layers)
    both_ways = _counts("triton", layers, lengths=[2, 3, 1], bidirectional=True, proj_size=2)
    for counts in (one_way, both_ways):
        assert counts["triton_kernels"] == {"lstm_seq_fwd_kernel": layers, "lstm_seq_bwd_kernel": layers}
        assert counts["forward_triton"] == counts["backward_triton"] == layers


@pytest.mark.slow
def test_per_step_kernels_run_each_direction_separately():
    """The per-step design, by contrast: each direction of each layer is its own sequence of T launches."""
    one_way, both_ways = _counts("triton-step", 1, steps=4), _counts("triton-step", 1, steps=4, bidirectional=True)
    assert one_way["forward_triton"] == 4 and both_ways["forward_triton"] == 8
    assert both_ways["train_step_triton"] == 2 * one_way["train_step_triton"] == 16


# ------------------------------------------------------------------------------------- the meaning of length

ALONE = [(name, feed, 0) for name in TRITON for feed in ("packed", "lengths")] + \
    [pytest.param(name, feed, 2, marks=pytest.mark.slow) for name in TRITON for feed in ("packed", "lengths")]


@pytest.mark.parametrize("name,feed,proj_size", ALONE)
def test_each_row_is_what_it_would_be_alone(name, feed, proj_size):
    """The oracle runs every row by itself on its own steps, with its own initial state: no padding, no packing.
    Outputs past a row's length are exactly zero; its final state is the one at its last step; the reverse
    direction started at that last step (else the reverse outputs would differ). With a projection the module
    runs without autograd (the inference path: no gate activations kept)."""
    torch.manual_seed(0)
    reference = nn.LSTM(3, 4, 1, bidirectional=True, batch_first=True, proj_size=proj_size).double()
    module = impls.build(name, 3, 4, 1, bidirectional=True, batch_first=True, proj_size=proj_size)
    module = module.double().to(DEVICE).requires_grad_(not proj_size)
    module.load_state_dict(reference.state_dict())
    lengths = [3, 1, 4]
    x = torch.randn(3, 4, 3, dtype=torch.float64)
    h0, c0 = torch.randn(2, 3, proj_size or 4, dtype=torch.float64), torch.randn(2, 3, 4, dtype=torch.float64)
    on = [t.to(DEVICE) for t in (x, h0, c0)]
    if feed == "packed":
        out, (h_n, c_n) = module(pack_padded_sequence(on[0], torch.tensor(lengths), True, enforce_sorted=False),
                                 tuple(on[1:]))
        out = pad_packed_sequence(out, batch_first=True, total_length=4)[0]
    else:
        out, (h_n, c_n) = module(on[0], tuple(on[1:]), lengths=torch.tensor(lengths))
    out, h_n, c_n = out.cpu(), h_n.cpu(), c_n.cpu()
    assert_each_row_is_itself_alone(out, h_n, c_n, x, h0, c0, lengths, reference)
