"""A backward pass must cost O(T), not O(T^2): pixel MNIST is 784 steps.

Measured, not timed: the elements that a training step's ATen kernels write, at T and at 4T. Linear
cost writes about 4x as much at 4T; the bug this guards against (indexing x_proj[t] in a Python loop,
whose backward zero-fills a whole (T, B, G) tensor per step) wrote 10x as much here and made a 784-step
`loop` backward take 164 s where cudnn took 1.4 s on the CPU machine.
"""
from __future__ import annotations

import pytest
import torch

import impls
from impls.launches import count_launches

SHORT, LONG = 16, 64


def _elements_written(name: str, steps: int) -> int:
    torch.manual_seed(0)
    module = impls.build(name, 3, 8, 1)
    return count_launches(module, torch.randn(2, steps, 3))["train_step_elements_written"]


def _growth(name: str) -> float:
    return _elements_written(name, LONG) / _elements_written(name, SHORT)


INTERPRETED = pytest.mark.slow  # on CPU the Triton backends run under the interpreter, at T and 4T steps


@pytest.mark.parametrize("name", ["loop", "cudnn", "gru", "aten", pytest.param("triton", marks=INTERPRETED),
                                  pytest.param("triton-step", marks=INTERPRETED)])
def test_training_step_memory_traffic_grows_linearly_with_sequence_length(name):
    if not impls.availability(name, "cpu", purpose="test").ok:
        pytest.skip(impls.availability(name, "cpu", purpose="test").reason)
    growth = _growth(name)
    assert growth < 1.5 * LONG / SHORT, f"{name}: {LONG} steps write {growth:.1f}x what {SHORT} steps write"


def test_the_check_catches_a_quadratic_backward():
    """The same measurement on the indexing pattern itself: it must fail there, or the test above proves nothing."""
    def written(steps):
        x = torch.randn(steps, 2, 8, requires_grad=True)
        from impls.launches import _Counter
        counter = _Counter()
        with counter:
            torch.stack([x[t] * 2 for t in range(steps)]).sum().backward()
        return counter.elements_written
    assert written(LONG) / written(SHORT) > 1.5 * LONG / SHORT


@pytest.mark.timeout(600)
@pytest.mark.slow
def test_stepwise_compiled_backward_grows_linearly(monkeypatch):
    from impls.compiled import CompiledLSTM
    if not impls.availability("compiled", "cpu", purpose="test").ok:
        pytest.skip(impls.availability("compiled", "cpu", purpose="test").reason)
    monkeypatch.setattr(CompiledLSTM, "unroll_limit", 2)  # both lengths take the stepwise path
    _elements_written("compiled", 4)  # compile outside the measured calls
    assert _growth("compiled") < 1.5 * LONG / SHORT
