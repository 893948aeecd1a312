"""`triton` backend: parity with torch.nn.LSTM, gradcheck, the kernels against impls.cells, and gpu_check's table.

Without CUDA everything runs under the Triton interpreter, which must be switched on before the
kernels' module is imported; shapes are small and odd (masks) so the module stays fast on 2 CPUs.
"""
from __future__ import annotations

import os

import pytest

pytest.importorskip("triton")

import torch  # noqa: E402

CUDA = torch.cuda.is_available()
if not CUDA:
    os.environ["TRITON_INTERPRET"] = "1"

import impls  # noqa: E402
import impls.triton_lstm as triton_lstm  # noqa: E402
from impls.cells import lstm_pointwise  # noqa: E402
from impls.parity import compare_with_torch, max_rel_error  # noqa: E402

DEVICE = "cuda" if CUDA else "cpu"
HALF_SKIP = pytest.mark.skipif(
    not CUDA, reason="float16/bfloat16 are checked compiled on CUDA only: under the CPU interpreter the "
                     "kernels' half loads/stores are numpy emulation (and older interpreters have no bfloat16), "
                     "so they would not test the code that runs on a GPU")


@pytest.fixture(autouse=True)
def strict_fp32():
    """cuDNN uses TF32 for float32 RNNs by default; the reference must be true float32."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def assert_parity(errors: dict[str, float], tolerance: float) -> None:
    bad = {k: v for k, v in errors.items() if not v <= tolerance}
    assert not bad, f"above {tolerance:g}: {bad}"
    # Every quantity was compared: output, both states, dx, and 4 parameter gradients per layer.
    assert {"output", "h_n", "c_n", "grad_input"} <= set(errors)


def test_registry_builds_triton():
    model = impls.build("triton", 7, 11, 2)
    assert isinstance(model, triton_lstm.TritonLSTM)
    assert impls.availability("triton", DEVICE, purpose="test").ok


# (batch, hidden, batch_first, with_state): batch 1 and 5, hidden 11 (masked tail) and 64, both layouts.
PARITY_CASES = [
    (1, 11, True, False),
    (5, 11, False, True),
    (5, 64, True, True),
    (1, 64, False, False),
    (5, 11, True, False),
]


@pytest.mark.parametrize("batch,hidden,batch_first,with_state", PARITY_CASES)
def test_parity_float32(batch, hidden, batch_first, with_state):
    errors = compare_with_torch("triton", batch=batch, steps=4, input_size=7, hidden=hidden, layers=3,
                                batch_first=batch_first, with_state=with_state, device=DEVICE)
    assert len(errors) == 4 + (2 if with_state else 0) + 3 * 4
    assert_parity(errors, 1e-5)


def test_parity_float64():
    errors = compare_with_torch("triton", batch=5, steps=4, input_size=7, hidden=11, layers=2, with_state=True,
                                dtype=torch.float64, device=DEVICE)
    assert_parity(errors, 1e-12)


def test_parity_without_bias():
    errors = compare_with_torch("triton", batch=3, steps=3, input_size=7, hidden=11, layers=2, bias=False,
                                device=DEVICE)
    assert_parity(errors, 1e-5)


@HALF_SKIP
@pytest.mark.parametrize("dtype,tolerance", [(torch.float16, 1e-2), (torch.bfloat16, 6e-2)])
@pytest.mark.parametrize("batch,hidden", [(5, 11), (50, 64)])
def test_parity_half(dtype, tolerance, batch, hidden):
    errors = compare_with_torch("triton", batch=batch, steps=28, input_size=28, hidden=hidden, layers=2,
                                with_state=True, dtype=dtype, device=DEVICE)
    assert_parity(errors, tolerance)


@pytest.mark.parametrize("dtype,tolerance", [(torch.float32, 1e-5), (torch.float64, 1e-10)], ids=str)
def test_parity_with_many_programs(monkeypatch, dtype, tolerance):
    """Tiles smaller than the problem, as on CUDA: programs meet at block edges and the masks cut
    the last row and column blocks (B=5 in blocks of 2, H=11 in blocks of 4: a 3 x 3 grid)."""
    monkeypatch.setattr(triton_lstm, "_blocks", lambda batch, hidden: (2, 4))
    assert triton_lstm._grid(5, 11, 2, 4) == (3, 3)
    errors = compare_with_torch("triton", batch=5, steps=4, input_size=7, hidden=11, layers=2, with_state=True,
                                dtype=dtype, device=DEVICE)
    assert_parity(errors, tolerance)


def test_gradcheck_float64():
    """Finite differences through the autograd.Function itself (x_proj, h0, c0 and w_hh)."""
    generator = torch.Generator().manual_seed(0)
    steps, batch, hidden = 3, 2, 3
    make = lambda *shape, scale=1.0: (torch.randn(*shape, generator=generator, dtype=torch.float64)  # noqa: E731
                                      * scale).to(DEVICE).requires_grad_(True)
    inputs = (make(steps, batch, 4 * hidden), make(batch, hidden), make(batch, hidden),
              make(4 * hidden, hidden, scale=0.5))
    assert torch.autograd.gradcheck(triton_lstm.LSTMRecurrence.apply, inputs)


def test_backward_leaves_incoming_gradients_alone():
    """The backward kernel updates dc in place; that must be its own buffer, not autograd's dc_n."""
    x_proj = torch.randn(3, 2, 8, device=DEVICE, requires_grad=True)
    h0, c0, w_hh = torch.randn(2, 2, device=DEVICE), torch.randn(2, 2, device=DEVICE), torch.randn(8, 2, device=DEVICE)
    out, c_n = triton_lstm.LSTMRecurrence.apply(x_proj, h0, c0, w_hh)
    grad_out, grad_c = torch.randn_like(out), torch.randn_like(c_n)
    kept = grad_out.clone(), grad_c.clone()
    torch.autograd.backward([out, c_n], [grad_out, grad_c])
    assert torch.equal(grad_out, kept[0]) and torch.equal(grad_c, kept[1])


def test_kernels_match_cells():
    """One step of each kernel against impls.cells.lstm_pointwise and its autograd gradient."""
    generator = torch.Generator().manual_seed(1)
    batch, hidden = 3, 5
    rand = lambda *shape: torch.randn(*shape, generator=generator).to(DEVICE)  # noqa: E731
    x_proj, rec, c_prev = rand(batch, 4 * hidden), rand(batch, 4 * hidden), rand(batch, hidden)
    h, c, acts = (torch.empty(batch, n, device=DEVICE) for n in (hidden, hidden, 4 * hidden))
    triton_lstm.lstm_step_fwd(x_proj, rec, c_prev, h, c, acts)

    gates = (x_proj + rec).requires_grad_(True)
    c_prev_ref = c_prev.clone().requires_grad_(True)
    h_ref, c_ref = lstm_pointwise(gates, c_prev_ref)
    assert max_rel_error(h, h_ref) < 1e-6 and max_rel_error(c, c_ref) < 1e-6
    i, f, g, o = gates.detach().chunk(4, dim=-1)
    assert max_rel_error(acts, torch.cat([i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()], -1)) < 1e-6

    dh, dc_in = rand(batch, hidden), rand(batch, hidden)
    d_gates_ref, d_c_prev_ref = torch.autograd.grad([h_ref, c_ref], [gates, c_prev_ref], [dh, dc_in])
    dc, d_gates = dc_in.clone(), torch.empty(batch, 4 * hidden, device=DEVICE)
    triton_lstm.lstm_step_bwd(dh, dc, acts, c, c_prev, d_gates)
    assert max_rel_error(d_gates, d_gates_ref) < 1e-6
    assert max_rel_error(dc, d_c_prev_ref) < 1e-6


def test_launcher_rejects_bad_shapes():
    x_proj = torch.zeros(2, 8, device=DEVICE)
    state = torch.zeros(2, 2, device=DEVICE)
    with pytest.raises(ValueError, match="rec must have shape"):
        triton_lstm.lstm_step_fwd(x_proj, torch.zeros(2, 4, device=DEVICE), state, state.clone(), state.clone())
    with pytest.raises(ValueError, match="must be contiguous"):
        triton_lstm.lstm_step_fwd(x_proj, x_proj.clone(), torch.zeros(2, 4, device=DEVICE)[:, ::2],
                                  state.clone(), state.clone())


def test_drop_in_for_nn_lstm():
    """state_dict interchange, unbatched input, and inference (no graph, no saved activations)."""
    torch.manual_seed(0)
    reference = torch.nn.LSTM(7, 11, 2).to(DEVICE)
    model = impls.build("triton", 7, 11, 2, batch_first=False).to(DEVICE)
    model.load_state_dict(reference.state_dict())
    assert model.state_dict().keys() == reference.state_dict().keys()
    x = torch.randn(4, 7, device=DEVICE)  # unbatched (T, D)
    with torch.no_grad():
        out, (h_n, c_n) = model(x)
        out_ref, (h_ref, c_ref) = reference(x)
    assert out.shape == (4, 11) and h_n.shape == c_n.shape == (2, 11)
    assert not out.requires_grad
    for actual, expected in ((out, out_ref), (h_n, h_ref), (c_n, c_ref)):
        assert max_rel_error(actual, expected) < 1e-5


def test_gpu_check_table_and_files(tmp_path):
    from bench import gpu_check

    records = [{"shape": "s", "dtype": "float32", "pass": p, "backend": b, "median_ms": m, "p20_ms": m * 0.9,
                "p80_ms": m * 1.1}
               for p, scale in (("forward", 1.0), ("forward+backward", 3.0))
               for b, m in (("cudnn", 2.0 * scale), ("loop", 10.0 * scale), ("triton", 4.0 * scale))]
    table = gpu_check.build_table(records)
    assert list(table["vs_cudnn"]) == pytest.approx([1.0, 5.0, 2.0] * 2)
    env = {"torch": "t", "triton": "tr", "gpu": "G"}
    csv_path, md_path = gpu_check.write_table(table, env, tmp_path)
    import pandas as pd
    written = pd.read_csv(csv_path)
    assert list(written["gpu"]) == ["G"] * 6 and list(written["vs_cudnn"]) == pytest.approx([1.0, 5.0, 2.0] * 2)
    markdown = md_path.read_text()
    assert "torch t, triton tr, gpu G" in markdown
    assert "| s | float32 | forward | loop | 10 | 9 | 11 | 5 |" in markdown.splitlines()


@pytest.mark.skipif(CUDA, reason="checks the no-CUDA exit path")
def test_gpu_check_exits_2_without_cuda(capsys):
    from bench import gpu_check

    assert gpu_check.main() == 2
    assert "no CUDA" in capsys.readouterr().err
