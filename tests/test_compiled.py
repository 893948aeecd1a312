"""`compiled` (torch.compile of the loop backend), `compiled-graphs` and `aten`.

Compiling is the cost here (tens of seconds per graph on a 2-core CPU, seconds once Inductor's
cache under /tmp is warm), so every compiled test shares one small odd shape and, where it can,
the graphs an earlier test compiled: Dynamo's cache is per process and shared by all instances.
"""
import pytest
import torch

import impls
from impls.base import LSTMBase
from impls.compiled import CompiledLSTM, compile_stats
from impls.parity import Case, check, compare_with_torch

SHAPE = dict(batch=3, steps=4, input_size=5, hidden=12, layers=2)


def test_names_lists_the_three_backends():
    assert {"compiled", "compiled-graphs", "aten"} <= set(impls.names())
    for name in ("compiled", "compiled-graphs", "aten"):
        assert impls.spec(name).family == "lstm"


def test_cuda_only_backends_are_skipped_on_cpu_with_their_reason():
    aten = impls.availability("aten", "cpu")
    assert not aten.ok and "same code path as `cudnn`" in aten.reason
    graphs = impls.availability("compiled-graphs", "cpu")
    assert not graphs.ok and "CUDA graphs exist only on CUDA" in graphs.reason
    assert not impls.availability("aten", "cpu", purpose="test").ok


def test_compiled_is_available_on_cpu_with_a_cxx_compiler(monkeypatch):
    assert impls.availability("compiled", "cpu").ok   # this machine has g++; tests/CI need it
    monkeypatch.setattr(impls.shutil, "which", lambda _: None)
    missing = impls.availability("compiled", "cpu")
    assert not missing.ok and "C++ compiler" in missing.reason


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("with_state", [False, True], ids=["zero_state", "given_state"])
def test_compiled_matches_torch(with_state):
    errors = compare_with_torch("compiled", **SHAPE, with_state=with_state, dtype=torch.float32)
    expected = {"output", "h_n", "c_n", "grad_input"} | {f"grad_{kind}_l{k}" for k in range(2)
                                                          for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
    if with_state:
        expected |= {"grad_h_0", "grad_c_0"}
    assert set(errors) == expected
    worst = {key: error for key, error in errors.items() if not error <= 1e-5}
    assert not worst, f"compiled float32 beyond 1e-5: {worst}"


def _train_call(module, batch):
    # Input needing its gradient, as in compare_with_torch: this reuses the zero-state parity graph.
    x = torch.randn(batch, SHAPE["steps"], SHAPE["input_size"], requires_grad=True)
    out, (h, c) = module(x)
    (out.sum() + h.sum() + c.sum()).backward()
    return out


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_partial_batch_does_not_compile_a_new_graph():
    module = impls.build("compiled", SHAPE["input_size"], SHAPE["hidden"], SHAPE["layers"])
    _train_call(module, SHAPE["batch"])
    first = compile_stats()
    assert first["compilations"] >= 1 and first["compile_s"] > 0
    for batch in (2, 5):   # a last partial batch, and a larger one
        assert _train_call(module, batch).shape == (batch, SHAPE["steps"], SHAPE["hidden"])
    assert compile_stats()["compilations"] == first["compilations"]

    # Evaluation is its own graph (no autograd; no other test compiles it), so the counters must move
    # once, and then stay put for every batch size.
    module.eval()
    with torch.no_grad():
        module(torch.randn(SHAPE["batch"], SHAPE["steps"], SHAPE["input_size"]))
        after_eval = compile_stats()
        assert after_eval["compilations"] == first["compilations"] + 1
        assert after_eval["compile_s"] > first["compile_s"]
        for batch in (2, 7):
            module(torch.randn(batch, SHAPE["steps"], SHAPE["input_size"]))
    assert compile_stats()["compilations"] == after_eval["compilations"]


def test_compiled_state_dict_is_nn_lstms():
    module = impls.build("compiled", 5, 12, 2)
    assert list(module.state_dict()) == list(torch.nn.LSTM(5, 12, 2).state_dict())


def test_compiled_rejects_bad_input_before_compiling():
    module = impls.build("compiled", 5, 4)
    with pytest.raises(ValueError, match=r"input must have D=5 features .* got shape \(2, 3, 6\)"):
        module(torch.randn(2, 3, 6))


def test_aten_matches_torch_and_disables_cudnn_only_inside_its_forward(monkeypatch):
    from impls.cudnn import CudnnLSTM
    seen = []
    original = CudnnLSTM.forward

    def spy(self, input, hx=None, lengths=None):
        seen.append(torch.backends.cudnn.enabled)
        return original(self, input, hx, lengths)

    monkeypatch.setattr(CudnnLSTM, "forward", spy)
    assert torch.backends.cudnn.enabled
    errors = compare_with_torch("aten", **SHAPE, with_state=True, dtype=torch.float64)
    assert max(errors.values()) < 1e-10
    assert seen == [False] and torch.backends.cudnn.enabled


def _autograd_nodes(tensor):
    names, stack, seen = set(), [tensor.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.add(type(node).__name__)
        stack.extend(next_node for next_node, _ in node.next_functions)
    return names


@pytest.mark.skipif(not torch.cuda.is_available(), reason="cuDNN is used only on CUDA")
def test_aten_records_no_cudnn_backward_on_cuda():
    x = torch.randn(3, 4, 5, device="cuda", requires_grad=True)
    nodes = {}
    for name in ("cudnn", "aten"):
        module = impls.build(name, 5, 12, 2).cuda()
        nodes[name] = _autograd_nodes(module(x)[0])
    assert any("Cudnn" in node for node in nodes["cudnn"]), nodes["cudnn"]   # the check can fail
    assert not any("Cudnn" in node for node in nodes["aten"]), nodes["aten"]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_long_sequences_compile_one_step_and_still_match_torch(monkeypatch):
    """Past unroll_limit only the cell step is compiled (T-free compile time); parity must hold there too,
    and a longer sequence must not compile anything new."""
    from impls.compiled import CompiledLSTM
    monkeypatch.setattr(CompiledLSTM, "unroll_limit", 2)  # SHAPE's 4 steps now take the stepwise path
    errors = compare_with_torch("compiled", **SHAPE, with_state=True, dtype=torch.float32)
    worst = {key: error for key, error in errors.items() if not error <= 1e-5}
    assert not worst, f"stepwise compiled float32 beyond 1e-5: {worst}"
    module = impls.build("compiled", SHAPE["input_size"], SHAPE["hidden"], SHAPE["layers"])
    x = torch.randn(SHAPE["batch"], 9, SHAPE["input_size"], requires_grad=True)
    module(x)[0].sum().backward()  # warm: whatever this shape still needs is compiled here
    before = compile_stats()["compilations"]
    x = torch.randn(SHAPE["batch"] + 2, 13, SHAPE["input_size"], requires_grad=True)
    module(x)[0].sum().backward()
    assert compile_stats()["compilations"] == before


def test_compiled_is_the_loop_recurrence_under_the_base_forward():
    """compiled repeats neither LSTMBase.forward nor the loop's layer: it overrides only where the
    recurrence runs, and traces impls.loop.lstm_layer itself."""
    import impls.compiled
    import impls.loop
    assert CompiledLSTM.forward is LSTMBase.forward
    assert [name for name in vars(CompiledLSTM) if not name.startswith("__")] == ["mode", "unroll_limit",
                                                                                  "_forward_padded"]
    assert impls.compiled.lstm_layer is impls.loop.lstm_layer
    assert CompiledLSTM.supports == impls.spec("compiled").supports == impls.spec("loop").supports


# Each of these is its own graph (forward and backward), about a minute to compile on this machine.
SURFACE_CASES = [
    Case(batch=3, steps=3, input_size=5, hidden=6, layers=2, bidirectional=True, proj_size=3, packing="packed",
         with_state=True, batch_first=False, dtype=torch.float32),
    Case(batch=3, steps=4, input_size=5, hidden=6, bidirectional=True, packing="lengths", dtype=torch.float64),
]


@pytest.mark.slow
@pytest.mark.parametrize("case", SURFACE_CASES, ids=Case.label)
def test_compiled_surface_matches_torch(case):
    result = check("compiled", case)
    assert "grad_weight_hh_l0_reverse" in result.errors
    assert result.ok, f"compiled {case.label()}: beyond {result.tolerance}: {result.failures}"


@pytest.mark.slow
def test_a_lengths_graph_serves_every_lengths_and_batch():
    """lengths are a tensor input of the graph: new lengths, or a new batch size, compile nothing new."""
    case = SURFACE_CASES[1]
    check("compiled", case)  # compiles (or reuses) this case's graphs
    module = impls.build("compiled", case.input_size, case.hidden, bidirectional=True).double()
    before = compile_stats()["compilations"]
    for lengths in ([1, 4, 2], [4, 4, 3, 1, 2]):
        x = torch.randn(len(lengths), case.steps, case.input_size, dtype=torch.float64, requires_grad=True)
        out, (h, c) = module(x, lengths=torch.tensor(lengths))
        (out.sum() + h.sum() + c.sum()).backward()
        assert torch.equal(out[0, lengths[0]:], torch.zeros_like(out[0, lengths[0]:]))
    assert compile_stats()["compilations"] == before

    # A shorter batch runs padded to the 4 steps above, in both directions, and still means what nn.LSTM means.
    reference = torch.nn.LSTM(case.input_size, case.hidden, bidirectional=True, batch_first=True).double()
    reference.load_state_dict(module.state_dict())
    lengths = torch.tensor([2, 1, 2, 2])
    x = torch.randn(len(lengths), 2, case.input_size, dtype=torch.float64, requires_grad=True)  # as above
    out, (h, c) = module(x, lengths=lengths)
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out_ref, (h_ref, c_ref) = reference(packed)
    out_ref = torch.nn.utils.rnn.pad_packed_sequence(out_ref, batch_first=True, total_length=2)[0]
    assert out.shape == out_ref.shape == (4, 2, 2 * case.hidden)
    for actual, expected in ((out, out_ref), (h, h_ref), (c, c_ref)):
        assert torch.allclose(actual, expected, atol=1e-12), (actual - expected).abs().max()
    assert compile_stats()["compilations"] == before


@pytest.mark.slow
def test_long_packed_sequences_take_the_stepwise_path_and_match_torch(monkeypatch):
    monkeypatch.setattr(CompiledLSTM, "unroll_limit", 2)  # 4 steps now take the stepwise path
    case = Case(batch=3, steps=4, input_size=5, hidden=6, bidirectional=True, proj_size=2, packing="packed",
                with_state=True, dtype=torch.float32)
    result = check("compiled", case)
    assert result.ok, f"stepwise compiled {case.label()}: {result.failures}"


def _classifier_step(model, images, batch):
    labels = torch.randint(0, 10, (batch,))
    torch.nn.functional.cross_entropy(model(images), labels).backward()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_numerics_check_after_training_compiles_nothing():
    """Inductor's C++ kernels guard the bias gradient's float32 sum on T*B > 4096, so the numerics check's
    256 images at T=28 in one batch compiled a training graph of their own beside a run's batch of 50. In
    batches of the training size the check runs the training graph; at 4 steps the line is at 1024 rows."""
    from bench.model import RowClassifier
    from bench.numerics import numerical_error
    model = RowClassifier(impls.build("compiled", SHAPE["input_size"], SHAPE["hidden"], SHAPE["layers"],
                                      batch_first=True), SHAPE["hidden"], 10)
    _classifier_step(model, torch.randn(8, SHAPE["steps"], SHAPE["input_size"]), 8)
    before = compile_stats()["compilations"]
    images, labels = torch.randn(1100, SHAPE["steps"], SHAPE["input_size"]), torch.randint(0, 10, (1100,))
    errors = numerical_error(model, images, labels, "lstm", batch_size=8)
    assert compile_stats()["compilations"] == before
    assert errors["out_rel_err"] < 1e-5 and errors["grad_rel_err"] < 1e-4, errors


def _rows(lengths):
    from bench.model import Rows
    lengths = torch.tensor(lengths)
    return Rows(torch.randn(len(lengths), int(lengths.max()), SHAPE["input_size"]), lengths, lengths)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_batches_of_many_lengths_compile_once_per_new_longest_and_numerics_reuses_them():
    """Packed input's padded T is each batch's longest length, a Python int in the unrolled loop: each
    distinct T was a graph (T from 26 to 28 in a rows-trimmed run). Now a batch runs padded to the longest batch
    seen so far (impls.compiled.padded_steps), so only a batch longer than all before it compiles."""
    from bench.model import RowClassifier
    from bench.numerics import numerical_error
    hidden = 6  # a configuration no other test compiles, so the count is this test's own
    model = RowClassifier(impls.build("compiled", SHAPE["input_size"], hidden, batch_first=True), hidden, 10, "packed")
    before = compile_stats()["compilations"]
    batches = ([3, 1, 2], [2, 2], [4, 1, 3, 2], [1, 1], [4, 4], [2, 3, 1])  # longest 3, 2, 4, 1, 4, 3
    for lengths in batches:
        _classifier_step(model, _rows(lengths), len(lengths))
    trained = compile_stats()["compilations"]
    assert 1 <= trained - before <= 2, f"{trained - before} compilations for 4 distinct lengths"  # at 3, at 4
    errors = numerical_error(model, _rows([2, 1, 3, 3, 1]), torch.randint(0, 10, (5,)), "lstm", batch_size=4)
    assert compile_stats()["compilations"] == trained
    assert errors["out_rel_err"] < 1e-5 and errors["grad_rel_err"] < 1e-4, errors
