"""bench.flops: the matmul count against hand counts, and the efficiency arithmetic."""
import math

import pytest

from bench.flops import achieved_gflops, efficiency, step_flops


def test_seed_shape_lstm_by_hand():
    # B=50 T=28 D=28 H=64 L=2 C=10, G = 256
    layer0 = 2 * 1400 * 256 * 28 + 2 * 50 * 256 * 64 * 28    # 20_070_400 + 45_875_200
    layer1 = 2 * 1400 * 256 * 64 + 2 * 50 * 256 * 64 * 28    # 45_875_200 + 45_875_200
    head = 2 * 50 * 10 * 64                                  # 64_000
    assert layer0 + layer1 + head == 157_760_000
    counts = step_flops("lstm", 50, 28, 28, 64, 2, 10)
    assert counts == {"forward": 157_760_000, "backward": 315_520_000, "total": 473_280_000}


def test_odd_shape_gru_by_hand():
    # B=3 T=5 D=7 H=11 L=3 C=4, G = 33: one input layer, two stacked on H
    first = 2 * 15 * 33 * 7 + 2 * 3 * 33 * 11 * 5     # 6_930 + 10_890
    upper = 2 * 15 * 33 * 11 + 2 * 3 * 33 * 11 * 5    # 10_890 + 10_890
    head = 2 * 3 * 4 * 11
    forward = first + 2 * upper + head
    assert forward == 61_644
    assert step_flops("gru", 3, 5, 7, 11, 3, 4) == {"forward": forward, "backward": 2 * forward, "total": 3 * forward}


def test_odd_shape_lstm_and_seed_shape_gru():
    assert step_flops("lstm", 3, 5, 7, 11, 3, 4)["forward"] == (2 * 15 * 44 * 7 + 2 * 3 * 44 * 11 * 5
                                                              + 2 * (2 * 15 * 44 * 11 + 2 * 3 * 44 * 11 * 5)
                                                              + 2 * 3 * 4 * 11)
    # GRU has 3/4 of the LSTM's gate work; the head is the same
    lstm, gru = step_flops("lstm", 50, 28, 28, 64, 2, 10), step_flops("gru", 50, 28, 28, 64, 2, 10)
    assert gru["forward"] - 64_000 == (lstm["forward"] - 64_000) * 3 // 4


def test_achieved_and_efficiency():
    assert achieved_gflops(473_280_000, 10.0) == pytest.approx(47.328)
    assert efficiency(47.328, 100.0) == pytest.approx(0.47328)
    assert math.isnan(achieved_gflops(1e9, 0.0)) and math.isnan(efficiency(1.0, float("nan")))


@pytest.mark.parametrize("kwargs, message", [
    (dict(family="rnn"), "family must be one of lstm, gru"),
    (dict(hidden=0), "hidden must be a positive int"),
    (dict(batch=2.5), "batch must be a positive int"),
])
def test_bad_input_is_one_clear_line(kwargs, message):
    args = dict(family="lstm", batch=2, seq_len=3, input_size=4, hidden=5, layers=1, classes=10) | kwargs
    with pytest.raises(ValueError, match=message):
        step_flops(**args)


def test_bidirectional_projection_and_packed_lengths_by_hand():
    # B=2 T=4 D=3 H=5 P=2 L=2 C=4, bidirectional, lengths 3 and 1: S = 4 row-steps, not B*T = 8.
    # G = 20, H_out = 2, layer 1 reads both directions' outputs: D_1 = 2 * 2 = 4.
    layer0 = 2 * (2 * 4 * 20 * 3 + 2 * 4 * 20 * 2 + 2 * 4 * 5 * 2)   # two directions: 480 + 320 + 80 each
    layer1 = 2 * (2 * 4 * 20 * 4 + 2 * 4 * 20 * 2 + 2 * 4 * 5 * 2)   # 640 + 320 + 80 each
    head = 2 * 2 * 4 * (2 * 2)                                       # 2 * B * C * dirs * P
    assert layer0 + layer1 + head == 3904
    counts = step_flops("lstm", 2, 4, 3, 5, 2, 4, bidirectional=True, proj_size=2, steps=3 + 1)
    assert counts == {"forward": 3904, "backward": 7808, "total": 11712}
    # padded, the same model computes every one of the B*T = 8 row-steps: the recurrent layers' work doubles
    assert step_flops("lstm", 2, 4, 3, 5, 2, 4, bidirectional=True, proj_size=2)["forward"] == 2 * (3904 - 64) + 64


def test_gru_bidirectional_by_hand_and_no_projection():
    # B=3 T=5 D=7 H=11 L=1 C=4, G = 33, both directions
    forward = 2 * (2 * 15 * 33 * 7 + 2 * 15 * 33 * 11) + 2 * 3 * 4 * 22
    assert step_flops("gru", 3, 5, 7, 11, 1, 4, bidirectional=True)["forward"] == forward
    with pytest.raises(ValueError, match="proj_size is an LSTM option"):
        step_flops("gru", 3, 5, 7, 11, 1, 4, proj_size=2)


def test_the_count_matches_what_torch_counts_for_padded_input():
    """torch's own FLOP counter on the loop backend (every matmul it runs) agrees with the formula: padded input,
    where every row-step is computed, with both new options on."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    import impls
    from bench.model import RowClassifier, head_width
    rnn = impls.build("loop", 3, 5, 2, batch_first=True, bidirectional=True, proj_size=2)
    model = RowClassifier(rnn, head_width(5, True, 2), 4)
    with FlopCounterMode(display=False) as counter:
        model(torch.randn(2, 4, 3))
    assert counter.get_total_flops() == step_flops("lstm", 2, 4, 3, 5, 2, 4, bidirectional=True, proj_size=2)["forward"]


@pytest.mark.parametrize("kwargs, message", [
    (dict(proj_size=5), r"proj_size must be an int in \[0, hidden=5\)"),
    (dict(steps=0), r"steps must be in \(0, batch\*seq_len = 6\]"),
    (dict(steps=7), r"steps must be in \(0, batch\*seq_len = 6\]"),
])
def test_bad_options_are_one_clear_line(kwargs, message):
    args = dict(family="lstm", batch=2, seq_len=3, input_size=4, hidden=5, layers=1, classes=10) | kwargs
    with pytest.raises(ValueError, match=message):
        step_flops(**args)
