"""`bench check` and its checks (impls.checks): each check fails on a backend with a bug planted for it, and
the command's table, exit codes and bad input. Every built-in backend passing them is tests/test_parity.py."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import impls
from bench.__main__ import main
from impls import checks, plugins
from impls.base import LSTMBase

FIXTURES = Path(__file__).parent / "fixtures" / "plugins"


@pytest.fixture(autouse=True)
def no_plugins():
    with plugins.isolated():
        yield


def cell(x_t, h, c, w_ih, w_hh, b_ih, b_hh, sigmoid=torch.sigmoid):
    gates = x_t @ w_ih.t() + h @ w_hh.t() + (0 if b_ih is None else b_ih + b_hh)
    i, f, g, o = gates.chunk(4, dim=-1)
    c = sigmoid(f) * c + sigmoid(i) * torch.tanh(g)
    return sigmoid(o) * torch.tanh(c), c


class PlainLSTM(LSTMBase):
    """A correct LSTM cell by cell; the planted bugs below change one thing each."""
    step = staticmethod(cell)

    def _layer(self, x, h, c, w_ih, w_hh, b_ih, b_hh):
        outs = []
        for x_t in x.unbind(0):
            h, c = self.step(x_t, h, c, w_ih, w_hh, b_ih, b_hh)
            outs.append(h)
        return torch.stack(outs), h, c


class HalfSlopeSigmoid(torch.autograd.Function):
    """sigmoid forward, half its true derivative backward: right outputs, wrong gradients."""
    @staticmethod
    def forward(ctx, x):
        y = torch.sigmoid(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return grad * y * (1 - y) / 2


class WrongBackwardLSTM(PlainLSTM):
    step = staticmethod(lambda *args: cell(*args, sigmoid=HalfSlopeSigmoid.apply))


class NoisyLSTM(PlainLSTM):
    """Adds noise below float32's parity tolerance: parity passes, two identical calls differ."""
    def _layer(self, x, h, c, *weights):
        out, h, c = super()._layer(x, h, c, *weights)
        return out + 1e-6 * torch.rand_like(out), h, c


class RenamedLSTM(PlainLSTM):
    def state_dict(self, *args, **kwargs):
        return {k.replace("weight_", "w_"): v for k, v in super().state_dict(*args, **kwargs).items()}


class RaisingLSTM(PlainLSTM):
    def _layer(self, *args):
        raise RuntimeError("kernel launch failed")


@pytest.fixture
def planted(monkeypatch):
    def register(cls) -> str:
        name = cls.__name__.lower()
        monkeypatch.setitem(impls.REGISTRY, name, impls.Backend(cls, "lstm", "torch", "planted"))
        return name
    return register


def test_a_correct_backend_passes_every_check(planted):
    name = planted(PlainLSTM)
    outcomes = checks.parity_outcomes(name, checks.odd_cases(name, torch.float64),
                                      checks.TOLERANCES["cpu", torch.float64])
    outcomes += [checks.gradcheck_outcome(name), *checks.state_dict_outcomes(name), checks.determinism_outcome(name)]
    assert all(o.ok for o in outcomes), [o for o in outcomes if not o.ok]
    assert [o.check for o in outcomes[3:]] == ["gradcheck float64", f"state_dict nn.LSTM -> {name} -> nn.LSTM",
                                               f"state_dict {name} -> nn.LSTM -> {name}", "determinism (two calls)"]


def test_a_wrong_backward_fails_gradcheck_and_the_gradients_not_the_outputs(planted):
    name = planted(WrongBackwardLSTM)
    outputs, states, gradients = checks.parity_outcomes(name, checks.odd_cases(name, torch.float64)[:4], 1e-10)
    assert outputs.ok and states.ok and not gradients.ok and gradients.where.startswith("grad_")
    grad = checks.gradcheck_outcome(name)
    assert not grad.ok and grad.error > 1e-3 and "Jacobian" in grad.where


def test_nondeterminism_fails_the_determinism_check_only(planted):
    name = planted(NoisyLSTM)
    assert checks.parity_outcomes(name, checks.odd_cases(name, torch.float32)[:3], 1e-5)[0].ok
    outcome = checks.determinism_outcome(name)
    assert not outcome.ok and 0 < outcome.error < 1e-5 and outcome.tolerance == 0


def test_a_renamed_state_dict_fails_both_round_trips(planted):
    name = planted(RenamedLSTM)
    into, out_of = checks.state_dict_outcomes(name)
    assert not into.ok and not out_of.ok
    assert into.where.startswith("keys differ: missing ['w_hh_l0',") and math.isinf(into.error)


def test_a_backend_that_raises_fails_every_check_saying_why(planted):
    name = planted(RaisingLSTM)
    outcomes = checks.parity_outcomes(name, checks.odd_cases(name, torch.float64)[:2], 1e-10)
    outcomes += [checks.gradcheck_outcome(name), checks.determinism_outcome(name)]
    assert all(math.isinf(o.error) and "RuntimeError: kernel launch failed" in o.where for o in outcomes)


def test_dtypes_by_device():
    assert checks.dtypes("cpu") == [torch.float64, torch.float32, torch.bfloat16]


# ---------------------------------------------------------------- the command

@pytest.mark.slow
def test_bench_check_of_a_built_in_backend_prints_its_table_and_exits_0(capsys):
    assert main(["check", "gru", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "bench check gru on cpu: gru family, against torch.nn.GRU (built-in" in out
    header = next(line for line in out.splitlines() if line.startswith("check "))
    assert header.split() == ["check", "cases", "worst", "error", "tolerance", "result", "worst", "at"]
    for check in ("float64 outputs", "float32 gradients", "bfloat16 final states", "gradcheck float64",
                  "state_dict nn.GRU -> gru -> nn.GRU", "state_dict gru -> nn.GRU -> gru", "determinism (two calls)"):
        row = next(line for line in out.splitlines() if line.startswith(check + " "))
        assert "  ok  " in row, row
    assert "all 13 checks passed" in out


@pytest.mark.slow
def test_bench_check_of_a_planted_bug_exits_1_naming_each_failing_check(capsys):
    assert main(["check", "forget-bias-bug", "--plugin", str(FIXTURES / "forget_bias_bug.py"), "--device", "cpu"]) == 1
    captured = capsys.readouterr()
    assert "plugin: file " in captured.out and "FAIL" in captured.out
    failed = [line for line in captured.err.splitlines() if line.startswith("FAILED ")]
    assert any(line.startswith("FAILED float32 outputs: error ") and "> tolerance 1.00e-05 (output, B" in line
               for line in failed), failed
    assert captured.err.splitlines()[-1].startswith("error: bench check forget-bias-bug: ")
    assert "gradcheck" not in " ".join(failed)  # the backward of the wrong forward is right: gradcheck passes


@pytest.mark.parametrize("argv,message", [
    (["check", "nope"], "error: bench check: unknown backend 'nope'; expected one of: cudnn, loop"),
    (["check", "loop", "--device", "cuda:7"], "error: bench check: --device: device 'cuda:7' is not available"),
    (["check"], "error: bench check: the following arguments are required: NAME"),
    (["check", "loop", "--plugin", str(FIXTURES / "broken.py")], "import failed: RuntimeError: this plugin is broken"),
])
def test_bench_check_bad_input_is_one_line_exit_2(argv, message, capsys, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_bench_check_of_a_backend_that_cannot_run_here_is_exit_2(capsys, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert main(["check", "triton", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: bench check: triton cannot run on cpu: Triton") and err.count("\n") == 1
