"""`triton` (persistent) and `triton-step` backends: parity with torch.nn.LSTM, gradcheck, both kernel paths,
launch counts, the step kernels against impls.cells, and gpu_check's table.

Without CUDA everything runs under the Triton interpreter, which must be switched on before the
kernels' module is imported (tests/conftest.py does); shapes are small and odd (masks) so the module
stays fast on 2 CPUs.
"""
from __future__ import annotations

import dataclasses

import pytest

pytest.importorskip("triton")

import torch

import impls
import impls.triton_lstm as triton_lstm
import impls.triton_step as triton_step
from impls.cells import lstm_pointwise
from impls.launches import count_launches
from impls.parity import compare_with_torch, max_rel_error

CUDA = torch.cuda.is_available()
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


BACKENDS = ["triton", "triton-step"]


@pytest.mark.parametrize("name,cls", [("triton", "TritonLSTM"), ("triton-step", "TritonStepLSTM")])
def test_registry_builds(name, cls):
    model = impls.build(name, 7, 11, 2)
    assert type(model).__name__ == cls
    assert impls.availability(name, DEVICE, purpose="test").ok


# (batch, hidden, steps, layers, batch_first, with_state, dtype): every listed value of each parameter
# appears at least once (batch 1/5/17/33, hidden 3/11/16/64, T 1/4, 1 and 3 layers, both layouts, with and
# without a state, float32 and float64), without the full product, which the interpreter could not afford.
# Under the interpreter, hidden 64 is past a toy shape: those cases are in the slow lane (make test runs them).
BEYOND_TOY = pytest.mark.slow
PARITY_CASES = [
    (1, 3, 4, 3, True, False, torch.float32),
    (5, 11, 1, 1, False, True, torch.float32),
    (17, 16, 4, 1, True, True, torch.float64),
    pytest.param((33, 64, 4, 3, False, False, torch.float32), marks=BEYOND_TOY),
    (33, 11, 1, 3, True, True, torch.float64),
    pytest.param((5, 64, 4, 1, False, True, torch.float64), marks=BEYOND_TOY),
]
TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-10}


def _case_id(case) -> str:
    batch, hidden, steps, layers, batch_first, with_state, dtype = case
    return (f"b{batch}h{hidden}t{steps}l{layers}-{'bf' if batch_first else 'tm'}-{'state' if with_state else 'zero'}-"
            f"{str(dtype).removeprefix('torch.')}")


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("case", PARITY_CASES, ids=_case_id)
def test_parity(name, case):
    batch, hidden, steps, layers, batch_first, with_state, dtype = case
    errors = compare_with_torch(name, batch=batch, steps=steps, input_size=7, hidden=hidden, layers=layers,
                                batch_first=batch_first, with_state=with_state, dtype=dtype, device=DEVICE)
    # output, h_n, c_n, dx, (dh0, dc0), and 4 parameter gradients per layer
    assert len(errors) == 4 + (2 if with_state else 0) + 4 * layers
    assert_parity(errors, TOLERANCE[dtype])


@pytest.mark.parametrize("name", BACKENDS)
def test_parity_without_bias(name):
    errors = compare_with_torch(name, batch=3, steps=3, input_size=7, hidden=11, layers=2, bias=False,
                                device=DEVICE)
    assert_parity(errors, 1e-5)


@HALF_SKIP
@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("dtype,tolerance", [(torch.float16, 1e-2), (torch.bfloat16, 6e-2)])
@pytest.mark.parametrize("batch,hidden", [(5, 11), (50, 64), (33, 100)])
def test_parity_half(name, dtype, tolerance, batch, hidden):
    errors = compare_with_torch(name, batch=batch, steps=28, input_size=28, hidden=hidden, layers=2,
                                with_state=True, dtype=dtype, device=DEVICE)
    assert_parity(errors, tolerance)


@BEYOND_TOY
@pytest.mark.parametrize("dtype,hidden", [(torch.float32, 80), (torch.float64, 40)], ids=str)
def test_persistent_streaming_path(monkeypatch, dtype, hidden):
    """Above 64 KiB of padded W_hh the persistent kernels stream it in 32 x 32 tiles every step (H=80 in
    float32: three K chunks, the last masked). Forced to 16-row batch tiles, B=17 is two programs."""
    p = triton_lstm.plan(17, hidden, dtype)
    assert not p.resident and p.block_k < hidden
    monkeypatch.setattr(triton_lstm, "plan", lambda *args: triton_lstm.Plan(16, p.block_h, 32, False, 4))
    errors = compare_with_torch("triton", batch=17, steps=2, input_size=7, hidden=hidden, layers=1,
                                with_state=True, dtype=dtype, device=DEVICE)
    assert_parity(errors, TOLERANCE[dtype])


def test_persistent_resident_path_limits():
    """Where each path applies, as docs/gpu.md says: resident up to 64 KiB of padded W_hh tiles."""
    assert triton_lstm.plan(50, 64, torch.float32).resident
    assert triton_lstm.plan(50, 64, torch.bfloat16).resident
    assert not triton_lstm.plan(50, 65, torch.float32).resident
    assert not triton_lstm.plan(50, 128, torch.bfloat16).resident
    assert triton_lstm.plan(50, 32, torch.float64).resident and not triton_lstm.plan(50, 33, torch.float64).resident
    assert triton_lstm.plan(1, 3, torch.float32).block_h == 16  # tl.dot needs K, N >= 16


@BEYOND_TOY
@pytest.mark.parametrize("dtype,tolerance", [(torch.float32, 1e-5), (torch.float64, 1e-10)], ids=str)
def test_persistent_many_batch_tiles(monkeypatch, dtype, tolerance):
    """The compiled tiling on the CPU: 16-row tiles, so B=33 is three programs (per direction), the last one
    masked past row 32; each program runs the whole sequence on its own rows."""
    original = triton_lstm.plan
    monkeypatch.setattr(triton_lstm, "plan", lambda *args: dataclasses.replace(original(*args), block_b=16))
    assert triton_lstm.plan(33, 11, dtype).grid(33) == (3, 1)  # (batch tiles, directions)
    assert triton_lstm.plan(33, 11, dtype).grid(33, 2) == (3, 2)
    errors = compare_with_torch("triton", batch=33, steps=4, input_size=7, hidden=11, layers=2, with_state=True,
                                dtype=dtype, device=DEVICE)
    assert_parity(errors, tolerance)


@BEYOND_TOY
@pytest.mark.parametrize("dtype,tolerance", [(torch.float32, 1e-5), (torch.float64, 1e-10)], ids=str)
def test_step_many_programs(monkeypatch, dtype, tolerance):
    """Tiles smaller than the problem, as on CUDA: programs meet at block edges and the masks cut
    the last row and column blocks (B=5 in blocks of 2, H=11 in blocks of 4: a 3 x 3 grid)."""
    monkeypatch.setattr(triton_step, "_blocks", lambda batch, hidden: (2, 4))
    assert triton_step._Plan(5, 11, dtype).grid == (3, 3)
    errors = compare_with_torch("triton-step", batch=5, steps=3, input_size=7, hidden=11, layers=1, with_state=True,
                                dtype=dtype, device=DEVICE)
    assert_parity(errors, tolerance)


# (function, directions): the persistent Function takes both directions stacked; the per-step one is one direction.
# Interpreted, the bidirectional gradcheck takes some 10 s: slow lane.
FUNCTIONS = [(triton_lstm.LSTMSequence, 1), pytest.param(triton_lstm.LSTMSequence, 2, marks=pytest.mark.slow),
             (triton_step.LSTMRecurrence, 1)]
FUNCTION_IDS = ["triton", "triton-bidirectional", "step"]


def _function_inputs(directions: int, per_direction: bool, generator, steps: int = 2, batch: int = 2,
                     hidden: int = 3) -> tuple:
    """(x_proj, h0, c0, w_hh) in float64 requiring grad, shaped for LSTMSequence (stacked directions) or
    LSTMRecurrence (per_direction: one direction, no leading dimension)."""
    def make(*shape: int, scale: float = 1.0) -> torch.Tensor:
        drawn = torch.randn(*shape, generator=generator, dtype=torch.float64) * scale
        return drawn.to(DEVICE).requires_grad_(True)

    lead = () if per_direction else (directions,)
    return (make(steps, batch, directions * 4 * hidden), make(*lead, batch, hidden), make(*lead, batch, hidden),
            make(*lead, 4 * hidden, hidden, scale=0.5))


@pytest.mark.parametrize("function,directions", FUNCTIONS, ids=FUNCTION_IDS)
def test_gradcheck_float64(function, directions):
    """Finite differences through the autograd.Function itself (x_proj, h0, c0 and w_hh), with rows of lengths
    2 and 1. fast_mode checks random directional derivatives: each interpreted launch is slow, and the full
    Jacobian needs two forwards per input element."""
    generator = torch.Generator().manual_seed(0)
    inputs = _function_inputs(directions, function is triton_step.LSTMRecurrence, generator)
    lengths = torch.tensor([2, 1], dtype=torch.int32, device=DEVICE)
    assert torch.autograd.gradcheck(function.apply, (*inputs, lengths), fast_mode=True)


@pytest.mark.slow
def test_gradcheck_float64_with_a_projection():
    """The per-step Function with w_hr (P=2 of H=3): h0 and w_hh are P wide, and finite differences reach w_hr
    through the outputs, the final state and the recurrence, with rows of lengths 3, 1 and 2 (a row past its end
    repeats its projected state)."""
    generator = torch.Generator().manual_seed(2)
    steps, batch, hidden, proj = 3, 3, 3, 2

    def make(*shape: int, scale: float = 1.0) -> torch.Tensor:
        drawn = torch.randn(*shape, generator=generator, dtype=torch.float64) * scale
        return drawn.to(DEVICE).requires_grad_(True)

    inputs = (make(steps, batch, 4 * hidden), make(batch, proj), make(batch, hidden),
              make(4 * hidden, proj, scale=0.5))
    w_hr = make(proj, hidden, scale=0.5)
    lengths = torch.tensor([3, 1, 2], dtype=torch.int32, device=DEVICE)
    assert triton_step.LSTMRecurrence.apply(*inputs, lengths, w_hr)[0].shape == (steps, batch, proj)
    assert torch.autograd.gradcheck(lambda *a: triton_step.LSTMRecurrence.apply(*a[:4], lengths, a[4]),
                                    (*inputs, w_hr), fast_mode=True)


@pytest.mark.parametrize("function,directions", FUNCTIONS, ids=FUNCTION_IDS)
def test_backward_leaves_incoming_gradients_alone(function, directions):
    """The backward kernels update dh and dc in place; those must be their own buffers, not autograd's."""
    inputs = _function_inputs(directions, function is triton_step.LSTMRecurrence, torch.Generator().manual_seed(1))
    outputs = function.apply(*inputs, torch.tensor([1, 2], dtype=torch.int32, device=DEVICE))
    grads = [torch.randn_like(t) for t in outputs]
    kept = [g.clone() for g in grads]
    torch.autograd.backward(list(outputs), grads)
    assert all(torch.equal(g, k) for g, k in zip(grads, kept))


def test_step_kernels_match_cells():
    """One step of each triton-step kernel against impls.cells.lstm_pointwise and its autograd gradient."""
    generator = torch.Generator().manual_seed(1)
    batch, hidden = 3, 5

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator).to(DEVICE)

    x_proj, rec, h_prev, c_prev = rand(batch, 4 * hidden), rand(batch, 4 * hidden), rand(batch, hidden), \
        rand(batch, hidden)
    h, c, acts = (torch.empty(batch, n, device=DEVICE) for n in (hidden, hidden, 4 * hidden))
    triton_step.lstm_step_fwd(x_proj, rec, h_prev, c_prev, h, c, acts)

    gates = (x_proj + rec).requires_grad_(True)
    c_prev_ref = c_prev.clone().requires_grad_(True)
    h_ref, c_ref = lstm_pointwise(gates, c_prev_ref)
    assert max_rel_error(h, h_ref) < 1e-6 and max_rel_error(c, c_ref) < 1e-6
    i, f, g, o = gates.detach().chunk(4, dim=-1)
    assert max_rel_error(acts, torch.cat([i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()], -1)) < 1e-6

    dh, dc_in = rand(batch, hidden), rand(batch, hidden)
    d_gates_ref, d_c_prev_ref = torch.autograd.grad([h_ref, c_ref], [gates, c_prev_ref], [dh, dc_in])
    dc, d_gates = dc_in.clone(), torch.empty(batch, 4 * hidden, device=DEVICE)
    dout, carried = dh - 0.25, torch.full_like(dh, 0.25)  # the kernel adds the two parts of dL/dh_t
    triton_step.lstm_step_bwd(dout, carried, dc, acts, c, c_prev, d_gates)
    assert max_rel_error(d_gates, d_gates_ref) < 1e-6
    assert max_rel_error(dc, d_c_prev_ref) < 1e-6
    assert torch.equal(carried, torch.zeros_like(carried))  # every row inside: all of dh went into d_gates


def test_step_kernels_keep_the_state_of_rows_past_their_length():
    """At step s a row of length <= s keeps h and c, gets zero gate gradients, and passes dh and dc through
    untouched; the rows still inside are computed as without lengths."""
    generator = torch.Generator().manual_seed(2)
    batch, hidden, step = 4, 5, 2

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator).to(DEVICE)

    lengths = torch.tensor([3, 2, 5, 1], dtype=torch.int32, device=DEVICE)  # rows 1 and 3 are past their end
    past = (lengths <= step)[:, None]
    x_proj, rec, h_prev, c_prev = rand(batch, 4 * hidden), rand(batch, 4 * hidden), rand(batch, hidden), \
        rand(batch, hidden)
    h, c, acts = (torch.empty(batch, n, device=DEVICE) for n in (hidden, hidden, 4 * hidden))
    triton_step.lstm_step_fwd(x_proj, rec, h_prev, c_prev, h, c, acts, lengths=lengths, step=step)
    h_ref, c_ref = lstm_pointwise(x_proj + rec, c_prev)
    assert torch.equal(h[past[:, 0]], h_prev[past[:, 0]]) and torch.equal(c[past[:, 0]], c_prev[past[:, 0]])
    assert max_rel_error(h[~past[:, 0]], h_ref[~past[:, 0]]) < 1e-6
    dout, carried, dc_in = rand(batch, hidden), rand(batch, hidden), rand(batch, hidden)
    dc, d_gates, passed = dc_in.clone(), torch.empty(batch, 4 * hidden, device=DEVICE), carried.clone()
    triton_step.lstm_step_bwd(dout, passed, dc, acts, c, c_prev, d_gates, lengths=lengths, step=step)
    assert torch.equal(d_gates[past[:, 0]], torch.zeros(2, 4 * hidden, device=DEVICE))
    assert torch.equal(dc[past[:, 0]], dc_in[past[:, 0]])
    assert max_rel_error(passed, torch.where(past, dout + carried, 0.0)) < 1e-6


def test_launchers_reject_bad_shapes():
    x_proj = torch.zeros(2, 8, device=DEVICE)
    state = torch.zeros(2, 2, device=DEVICE)
    with pytest.raises(ValueError, match="rec must have shape"):
        triton_step.lstm_step_fwd(x_proj, torch.zeros(2, 4, device=DEVICE), state, state, state.clone(), state.clone())
    with pytest.raises(ValueError, match="must be contiguous"):
        triton_step.lstm_step_fwd(x_proj, x_proj.clone(), state, torch.zeros(2, 4, device=DEVICE)[:, ::2],
                                  state.clone(), state.clone())
    with pytest.raises(ValueError, match="c_prev must be torch.float32"):  # c is float32 even for half tensors
        triton_step.lstm_step_fwd(x_proj, x_proj.clone(), state, state.double(), state.clone(), state.clone())
    with pytest.raises(ValueError, match=r"lengths must be torch.int32"):
        triton_step.lstm_step_fwd(x_proj, x_proj.clone(), state, state, state.clone(), state.clone(),
                                  lengths=torch.tensor([1, 2], device=DEVICE))
    both = torch.zeros(2, 2, 2, device=DEVICE)  # (dirs, B, H)
    with pytest.raises(ValueError, match=r"w_hh must have shape \(2, 8, 2\)"):
        triton_lstm.lstm_seq_fwd(torch.zeros(3, 2, 16, device=DEVICE), both, both,
                                 torch.zeros(1, 8, 2, device=DEVICE), save_acts=False)
    with pytest.raises(ValueError, match=r"x_proj must have shape \(3, 2, 16\)"):
        triton_lstm.lstm_seq_fwd(torch.zeros(3, 2, 8, device=DEVICE), both, both,
                                 torch.zeros(2, 8, 2, device=DEVICE), save_acts=False)
    with pytest.raises(ValueError, match=r"lengths must have shape \(2,\)"):
        triton_lstm.lstm_seq_fwd(torch.zeros(3, 2, 16, device=DEVICE), both, both, torch.zeros(2, 8, 2, device=DEVICE),
                                 save_acts=False, lengths=torch.ones(3, dtype=torch.int32, device=DEVICE))


@pytest.mark.parametrize("name", BACKENDS)
def test_drop_in_for_nn_lstm(name):
    """state_dict interchange, unbatched input, and inference (no graph, no saved activations)."""
    torch.manual_seed(0)
    reference = torch.nn.LSTM(7, 11, 2).to(DEVICE)
    model = impls.build(name, 7, 11, 2, batch_first=False).to(DEVICE)
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


def _counts(name: str, steps: int, layers: int = 2) -> dict:
    torch.manual_seed(0)
    model = impls.build(name, 5, 16, layers, batch_first=True).to(DEVICE)
    return count_launches(model, torch.randn(3, steps, 5, device=DEVICE))


def test_persistent_launches_do_not_grow_with_steps():
    """One Triton launch per layer forward and one backward, and a fixed handful of ATen kernels per
    layer around them (input projection, state copies, dW_hh): the same count at T=4 and T=16."""
    layers = 2
    short, long = _counts("triton", 4, layers), _counts("triton", 16, layers)
    assert short["forward_triton_kernels"] == {"lstm_seq_fwd_kernel": layers}
    assert short["triton_kernels"] == {"lstm_seq_fwd_kernel": layers, "lstm_seq_bwd_kernel": layers}
    for key in ("forward", "backward", "train_step", "forward_aten", "backward_aten"):
        assert short[key] == long[key], key
    assert short["forward"] <= 10 * layers and short["backward"] <= 10 * layers


def test_step_launches_grow_with_steps():
    """The counter measures: the per-step design launches two Triton kernels per step and layer (forward
    and backward), plus a library matmul per step."""
    short, long = _counts("triton-step", 2, layers=1), _counts("triton-step", 5, layers=1)
    assert short["forward_triton"] == 2 and long["forward_triton"] == 5
    assert long["train_step_triton"] == 2 * 5
    assert long["forward_aten"] - short["forward_aten"] >= 3  # one h @ W_hh^T per extra step
    assert _counts("loop", 5, layers=1)["forward"] > _counts("loop", 2, layers=1)["forward"]


def test_gpu_check_table_and_files(tmp_path):
    from bench import gpu_check

    records = [{"shape": "s", "dtype": "float32", "pass": p, "backend": b, "median_ms": m, "p20_ms": m * 0.9,
                "p80_ms": m * 1.1, "events_ms": 2 * m}
               for p, scale in (("forward", 1.0), ("forward+backward", 3.0))
               for b, m in (("cudnn", 2.0 * scale), ("loop", 10.0 * scale), ("triton", 4.0 * scale))]
    records[3].update(kernels=7, ran="NOT cuDNN: ATen fused LSTM cell kernels")
    table = gpu_check.build_table(records)
    assert list(table["vs_cudnn"]) == pytest.approx([1.0, 5.0, 2.0] * 2)
    assert list(table["events_vs_cudnn"]) == pytest.approx([1.0, 5.0, 2.0] * 2)
    env = {"torch": "t", "triton": "tr", "gpu": "G"}
    csv_path, md_path = gpu_check.write_table(table, env, tmp_path)
    import pandas as pd
    written = pd.read_csv(csv_path)
    assert list(written["gpu"]) == ["G"] * 6 and list(written["vs_cudnn"]) == pytest.approx([1.0, 5.0, 2.0] * 2)
    assert written.loc[3, "ran"] == "NOT cuDNN: ATen fused LSTM cell kernels"
    markdown = md_path.read_text()
    assert "torch t, triton tr, gpu G" in markdown
    assert "| s | float32 | forward | loop | 10 | 9 | 11 | 20 | 5 | 5 |  |  |  |" in markdown.splitlines()
    assert not list(tmp_path.glob("*.partial"))


def test_gpu_check_parity_never_passes_nan():
    from bench import gpu_check

    assert gpu_check.parity_ok({"output": 1e-6, "grad_input": 2e-6}, 1e-5)
    assert not gpu_check.parity_ok({"output": 1e-6, "grad_input": float("nan")}, 1e-5)
    assert not gpu_check.parity_ok({"output": float("inf")}, 1e-5)
    assert not gpu_check.parity_ok({"output": 1e-6, "h_n": 1e-4}, 1e-5)
    assert not gpu_check.parity_ok({}, 1e-5)


def test_gpu_check_backends_and_verdicts(monkeypatch):
    """Every registered LSTM-family backend; compiled ones skip long sequences; the profiler verdict
    (bench.profiling.rnn_engine) tells cuDNN's persistent kernel from a fallback."""
    from bench import gpu_check
    from bench.profiling import rnn_engine

    names = gpu_check.backends()
    assert names[:4] == ["cudnn", "loop", "triton", "triton-step"]
    monkeypatch.setattr(impls, "names", lambda: ["cudnn", "loop", "triton", "triton-step", "gru", "aten"])
    assert gpu_check.backends() == ["cudnn", "loop", "triton", "triton-step", "aten"]
    assert gpu_check.skip_reason("compiled", 784) and not gpu_check.skip_reason("compiled", 28)
    assert not gpu_check.skip_reason("triton", 784)
    describe = lambda names: rnn_engine(names, "cuda")  # noqa: E731
    assert describe(["void RNN_blockPersist_fp_LSTM<float, float, float, 128>(...)"]).startswith(
        "cuDNN persistent RNN kernel")
    assert describe(["void elemWiseRNNcell<float>(...)", "sm80_xmma_gemm"]).startswith("cuDNN standard algorithm")
    aten_cell = "void at::native::(anonymous namespace)::lstm_cell_forward<c10::BFloat16>(...)"
    assert describe([aten_cell]).startswith("not cuDNN")
    assert describe(["lstm_seq_fwd_kernel", "lstm_seq_bwd_kernel", "ampere_sgemm"]) == "persistent Triton kernels"


@pytest.mark.skipif(CUDA, reason="checks the no-CUDA exit path")
def test_gpu_check_exits_2_without_cuda(capsys):
    from bench import gpu_check

    assert gpu_check.cli([]) == 2
    assert "no CUDA" in capsys.readouterr().err
