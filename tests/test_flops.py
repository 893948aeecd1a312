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
