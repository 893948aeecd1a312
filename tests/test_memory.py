"""bench.memory: live tensor bytes counted exactly (the backward's and compiled code's allocations included),
saved-for-backward bytes that match a count on paper, and figures that grow with the batch."""
import contextlib

import pytest
import torch
from torch import nn

from bench import memory
from bench.config import Config
from bench.data import BatchLoader
from bench.train import build_model, measure_memory

CPU = torch.device("cpu")


def test_allocations_are_counted_to_the_byte():
    with memory.CpuAllocations() as trace:
        a = torch.empty(1000)          # 4,000 bytes
        b = torch.empty(2000)          # 8,000: 12,000 live
        del a                          # 8,000
        c = torch.empty(500)           # 10,000
        view = b[10:20]                # a view allocates nothing
    assert (trace.peak_bytes, trace.end_bytes) == (12_000, 10_000)
    assert b.numel() + c.numel() + view.numel()  # all still used after the window


def test_backward_allocations_are_seen():
    """The autograd engine allocates the gradient and tanh's backward output; both are counted, and the frees
    of everything dropped in the window too: what is left live is exactly the gradient."""
    x, w = torch.randn(100, 1000), torch.randn(1000, 1000, requires_grad=True)
    with memory.CpuAllocations() as trace:
        y = (x @ w).tanh()             # x @ w (400 kB) is freed once tanh has its result (400 kB, saved)
        y.sum().backward()             # tanh_backward's output (400 kB), then w.grad (4 MB)
        del y
    assert trace.end_bytes == w.grad.nbytes == 4_000_000
    # at the gradient's allocation: tanh's result, the loss and its expanded gradient (4 bytes each), the
    # gradient of the pre-activation, and the gradient itself
    assert trace.peak_bytes == 400_000 + 4 + 4 + 400_000 + 4_000_000


@pytest.mark.slow
def test_compiled_code_allocations_are_seen():
    """Inductor's generated code allocates its buffers through the same CPU allocator. (A TorchDispatchMode
    would not do: torch.compile runs eagerly under one.)"""
    compiled = torch.compile(lambda x: (x * 2).sin() + 1)
    x = torch.randn(10_000)
    compiled(x)  # compiles outside the window
    with memory.CpuAllocations() as trace:
        y = compiled(x)
    assert trace.end_bytes >= y.nbytes == 40_000 and trace.events >= 1


def test_saved_tensors_dedupe_storages_and_leave_out_what_is_live_anyway():
    w = torch.randn(8, 8, requires_grad=True)
    x = torch.randn(4, 8)
    with memory.SavedTensors(exclude=[w, x]) as saved:
        h = torch.tanh(x @ w)          # mm saves x (excluded), tanh saves its result: 4 x 8 floats
        parts = h.unbind(0)            # four views of one storage
        total = sum(p.sigmoid().sum() for p in parts)  # each sigmoid result saved: 4 storages of 8 floats
    assert saved.bytes == 4 * 8 * 4 + 4 * 8 * 4
    total.backward()
    assert w.grad is not None


def loop_paper_bytes(T, B, H, L, D, classes=10) -> int:
    """saved_for_backward_bytes of RowClassifier(loop) + cross entropy, float32, worked out by hand:

    per layer and step, with h_{t-1} and c_{t-1} from the step before:
        h_{t-1} @ W_hh^T       saves h_{t-1}                    (W_hh^T is a parameter: left out)
        sigmoid(i), sigmoid(f), tanh(g), sigmoid(o)   save their results: 4 (B, H)
        f * c_{t-1}, i * g     save f, c_{t-1}, i, g        (f, i, g already counted)
        tanh(c_t), o * tanh(c_t)   save tanh(c_t), o        (o counted)
      distinct storages per layer: 4T gates + T tanh(c_t) + (T - 1) h and (T - 1) c from earlier steps
      = (7T - 2) (B, H), since h_0 and c_0 are one zeros tensor (L, B, H), saved once for all layers;
    layer 0's input projection saves the batch reshaped to (T·B, D): a copy (the batch-first input
    transposed is not contiguous); layer 1's saves layer 0's stacked output (T, B, H); the head's linear
    saves a view of the last layer's stacked output, which keeps that whole (T, B, H) storage; log_softmax
    saves its (B, classes) result, nll_loss its total weight (one float). The labels are the batch."""
    floats = L * (7 * T - 2) * B * H + L * B * H + T * B * D + 2 * T * B * H + classes * B + 1
    return 4 * floats


def tiny_loader(B: int, T: int, images: int = 64) -> BatchLoader:
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (images, 28, 28), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (images,), generator=generator)
    return BatchLoader(pixels, labels, batch_size=B, seq_len=T, shuffle=False)


@pytest.mark.parametrize("T,B,H", [(4, 3, 5), (7, 2, 6)])
def test_loop_saves_what_the_paper_count_says(T, B, H):
    config = Config(backends=("loop",), seq_len=T, batch_size=B, hidden_size=H, num_layers=2)
    torch.manual_seed(0)
    model = build_model(config, "loop", CPU)
    measured = measure_memory(model, tiny_loader(B, T), config, CPU)
    assert measured["saved_for_backward_bytes"] == loop_paper_bytes(T, B, H, L=2, D=784 // T)


def test_the_hooks_change_no_gradient():
    config = Config(seq_len=7, batch_size=3, hidden_size=6)
    torch.manual_seed(0)
    model = build_model(config, "loop", CPU)
    images, labels = next(iter(tiny_loader(3, 7)))
    grads = []
    for hooked in (False, True):
        model.zero_grad(set_to_none=True)
        with memory.SavedTensors() if hooked else contextlib.nullcontext():
            loss = nn.functional.cross_entropy(model(images), labels)
        loss.backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*grads))


@pytest.mark.parametrize("backend", ["cudnn", "loop", "gru"])
def test_memory_grows_with_the_batch_and_parameters_do_not(backend):
    figures = {}
    for B in (8, 32):
        config = Config(seq_len=28, batch_size=B, hidden_size=16, num_layers=2)
        torch.manual_seed(0)
        model = build_model(config, backend, CPU)
        figures[B] = measure_memory(model, tiny_loader(B, 28), config, CPU)
    small, large = figures[8], figures[32]
    assert large["peak_tensor_bytes"] > small["peak_tensor_bytes"]
    assert large["saved_for_backward_bytes"] > small["saved_for_backward_bytes"] > 0
    assert small["param_bytes"] == large["param_bytes"] and small["optimizer_bytes"] == large["optimizer_bytes"]
    for f in figures.values():  # at the end of a forward: parameters, Adam's state, the previous gradients and the
        assert f["peak_tensor_bytes"] > 2 * f["param_bytes"] + f["optimizer_bytes"] + f["saved_for_backward_bytes"]
        assert f["optimizer_bytes"] >= 2 * f["param_bytes"]  # saved activations are all live at once


def test_window_needs_a_steady_step():
    with pytest.raises(ValueError, match="steps must be 2 or more"):
        memory.training_memory(nn.Linear(2, 2), torch.optim.Adam(nn.Linear(2, 2).parameters()), lambda: None, CPU,
                               steps=1)
