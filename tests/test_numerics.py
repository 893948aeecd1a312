"""bench.numerics: backends against float64 nn.LSTM / nn.GRU, a planted error, and no side effects."""
import math

import pytest
import torch

import impls
from bench.data import BatchLoader
from bench.model import RowClassifier
from bench.numerics import backend_error, numerical_error
from impls.cells import lstm_pointwise
from impls.loop import LoopLSTM

HIDDEN, LAYERS, CLASSES = 16, 2, 10


def mnist_like_batch(n=64, seq_len=28):
    """Noise with one bright row per digit, scaled like the real loader ([0, 1], float32)."""
    g = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 10, (n,), generator=g)
    images = torch.randint(0, 60, (n, 28, 28), generator=g, dtype=torch.uint8)
    images[torch.arange(n), 18 + labels] = 255
    loader = BatchLoader(images, labels, batch_size=n, seq_len=seq_len, shuffle=False)
    return next(iter(loader))


def model_for(backend, dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    rnn = impls.build(backend, 28, HIDDEN, LAYERS, batch_first=True)
    return RowClassifier(rnn, HIDDEN, CLASSES).to(dtype=dtype)


@pytest.mark.parametrize("backend", ["cudnn", "loop", "gru"])
def test_float32_backends_match_float64(backend):
    images, labels = mnist_like_batch()
    errors = backend_error(backend, model_for(backend), images, labels)
    assert errors["out_rel_err"] < 1e-5 and errors["grad_rel_err"] < 1e-5, errors
    assert errors["grad_rel_err"] > 0  # float32 is not float64: a zero would mean we compared a thing with itself


@pytest.mark.parametrize("backend", ["cudnn", "loop", "gru"])
def test_bfloat16_is_worse_but_finite(backend):
    images, labels = mnist_like_batch()
    low = backend_error(backend, model_for(backend, torch.bfloat16), images, labels)
    high = backend_error(backend, model_for(backend), images, labels)
    for key in ("out_rel_err", "grad_rel_err"):
        assert math.isfinite(low[key]) and 1e-5 < low[key] < 0.5 and low[key] > 10 * high[key], (low, high)


class ForgetfulLSTM(LoopLSTM):
    """A planted bug: the forget gate's pre-activation is off by 0.1 (a wrong bias-like term)."""

    def _layer(self, x, h, c, w_ih, w_hh, b_ih, b_hh):
        x_proj = torch.nn.functional.linear(x, w_ih, b_ih + b_hh)
        shift = torch.zeros(4 * self.hidden_size, dtype=x.dtype)
        shift[self.hidden_size:2 * self.hidden_size] = 0.1
        outputs = []
        for t in range(x.shape[0]):
            h, c = lstm_pointwise(x_proj[t] + h @ w_hh.t() + shift, c)
            outputs.append(h)
        return torch.stack(outputs), h, c


def test_a_planted_gate_error_is_caught():
    torch.manual_seed(0)
    model = RowClassifier(ForgetfulLSTM(28, HIDDEN, LAYERS, batch_first=True), HIDDEN, CLASSES)
    images, labels = mnist_like_batch()
    errors = numerical_error(model, images, labels, "lstm")
    assert errors["grad_rel_err"] > 1e-2 and errors["out_rel_err"] > 1e-4, errors
    assert errors["grad_worst"].startswith(("rnn.", "head."))


def test_the_model_and_random_stream_are_untouched():
    model = model_for("loop")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images, labels = mnist_like_batch()
    torch.manual_seed(123)
    numerical_error(model, images, labels, "lstm")
    after_check = torch.rand(3)
    torch.manual_seed(123)
    assert torch.equal(after_check, torch.rand(3))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_mismatched_inputs_and_families_are_one_line_errors():
    images, labels = mnist_like_batch()
    with pytest.raises(ValueError, match=r"expected images \(B, T, D\) and labels \(B,\)"):
        numerical_error(model_for("loop"), images, labels[:3], "lstm")
    with pytest.raises(ValueError, match="family must be one of lstm, gru"):
        numerical_error(model_for("loop"), images, labels, "rnn")
    with pytest.raises(RuntimeError, match="state_dict"):
        numerical_error(model_for("gru"), images, labels, "lstm")  # GRU weights into an LSTM twin


def test_batches_cut_the_images_as_training_would_without_a_one_row_batch():
    from bench.model import Rows
    from bench.numerics import batches
    images = torch.randn(11, 3, 2)
    assert [len(b) for b in batches(images, 4)] == [4, 4, 3]
    assert [len(b) for b in batches(images, 5)] == [5, 4, 2]  # not 5, 5, 1: B=1 would be a graph of its own
    assert [len(b) for b in batches(images, None)] == [11]
    assert torch.equal(torch.cat(batches(images, 5)), images)
    lengths = torch.arange(1, 12).clamp(max=3)
    rows = batches(Rows(images, lengths, lengths), 8)
    assert [tuple(r.padded.shape) for r in rows] == [(8, 3, 2), (3, 3, 2)]
    assert torch.equal(rows[1].lengths, lengths[8:]) and torch.equal(rows[1].lengths_on_device, lengths[8:])


def test_numerics_in_training_batches_measures_the_same_error():
    images, labels = mnist_like_batch()
    batched = backend_error("loop", model_for("loop"), images, labels, batch_size=24)
    assert batched["out_rel_err"] < 1e-5 and batched["grad_rel_err"] < 1e-5, batched
    assert batched["grad_rel_err"] > 0
    with pytest.raises(ValueError, match="batch_size must be a positive int or None, got 0"):
        backend_error("loop", model_for("loop"), images, labels, batch_size=0)
