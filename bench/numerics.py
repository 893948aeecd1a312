"""Numerical error of a backend against float64, on real images and a run's initial weights.

Before training, a run's model (bench.model.RowClassifier around an impls backend, at the run's
dtype and device) computes its logits and the gradient of the cross-entropy loss for every
parameter on one fixed batch. The reference is the same model in float64 on the CPU, with
torch.nn.LSTM (or nn.GRU for the "gru" family) and the weights copied through the state_dict
(backends of a family share nn.LSTM's / nn.GRU's parameter names). Errors are norm-wise:

    out_rel_err  = ||logits - logits_ref|| / ||logits_ref||
    grad_rel_err = max over parameters p of ||g_p - g_ref_p|| / ||g_ref_p||   (grad_worst names p)

The reference sees the same input values the backend saw (the batch rounded to the run's
dtype), so the figures are the backend's arithmetic error, not the input's rounding.

With `batch_size` (the run's training batch), the backend sees the images in consecutive batches of
at most that many rows, one loss over all of them: the batches training runs, so a compiled backend
runs its training graph rather than compiling one for the check's batch (Inductor's CPU kernels
guard on T*B > 4096, which 256 images at T=28 cross and a batch of 50 does not). The reference runs
in one batch; the figures mean the same, the backend's error as trained.

The run's model is left as it was: gradients come from torch.autograd.grad (no .grad is
written), and the random number state is forked, so training sees the same weights and the
same random stream with or without this check.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

import impls
from bench.model import RowClassifier, Rows

REFERENCE = {"lstm": nn.LSTM, "gru": nn.GRU}


def _rel(actual: torch.Tensor, expected: torch.Tensor) -> float:
    expected = expected.detach().double().cpu()
    error = (actual.detach().double().cpu() - expected).norm().item()
    scale = expected.norm().item()
    return error / scale if scale > 0 else error


def reference_model(model: RowClassifier, family: str) -> RowClassifier:
    """The float64 CPU twin of `model`: nn.LSTM / nn.GRU with the same sizes and copied weights."""
    if family not in REFERENCE:
        raise ValueError(f"numerics: family must be one of {', '.join(REFERENCE)}; got {family!r}")
    rnn = model.rnn
    proj_size: Any = getattr(rnn, "proj_size", 0)  # an attribute of nn.LSTM and LSTMBase; nn.GRU has none
    options: dict[str, Any] = {"bidirectional": bool(getattr(rnn, "bidirectional", False))}
    if proj_size:  # nn.GRU refuses even proj_size=0
        options["proj_size"] = int(proj_size)
    twin = REFERENCE[family](rnn.input_size, rnn.hidden_size, rnn.num_layers, batch_first=rnn.batch_first,
                             bias=getattr(rnn, "bias", True), **options)
    # nn.LSTM has no lengths=: the reference reads the same lengths from a PackedSequence (the same meaning)
    packing = "packed" if model.packing == "lengths" else model.packing
    reference = RowClassifier(twin, model.head.in_features, model.head.out_features, packing).double()
    state = {key: value.detach().to("cpu", torch.float64) for key, value in model.state_dict().items()}
    reference.load_state_dict(state)  # strict: a backend whose names differ is an error, not a silent skip
    return reference


def batches(images: torch.Tensor | Rows, batch_size: int | None) -> list:
    """images cut into consecutive batches of at most batch_size rows (one batch when None). No batch of
    one row unless batch_size is 1: Dynamo specialises B=1, so that would be a graph of its own."""
    rows = (images.padded if isinstance(images, Rows) else images).shape[0]
    size = rows if batch_size is None else batch_size
    starts = list(range(0, rows, size))
    if len(starts) > 1 and rows - starts[-1] == 1 and size > 2:
        starts[-1] -= 1   # ..., size - 1, 2 rather than ..., size, 1
    spans = [slice(start, end) for start, end in zip(starts, [*starts[1:], rows])]
    if isinstance(images, Rows):
        return [Rows(images.padded[span], images.lengths[span], images.lengths_on_device[span]) for span in spans]
    return [images[span] for span in spans]


def _logits_and_grads(model: nn.Module, images: torch.Tensor | Rows, labels: torch.Tensor,
                      batch_size: int | None = None):
    params = dict((name, p) for name, p in model.named_parameters() if p.requires_grad)
    logits = torch.cat([model(batch) for batch in batches(images, batch_size)])
    loss = nn.functional.cross_entropy(logits, labels)  # at the model's dtype, as in training
    grads = torch.autograd.grad(loss, list(params.values()))
    return logits, dict(zip(params, grads))


def numerical_error(model: RowClassifier, images: torch.Tensor | Rows, labels: torch.Tensor, family: str,
                    batch_size: int | None = None) -> dict:
    """{"out_rel_err", "grad_rel_err", "grad_worst"} of `model` (any device and dtype) against float64.

    images (B, T, D) or Rows (with packing) and labels (B,) are moved to the model's device and dtype;
    `model` sees them in batches of at most batch_size rows (None: all at once). See the module docstring
    for the definitions.
    """
    parameter = next(model.parameters())
    device, dtype = parameter.device, parameter.dtype
    padded = images.padded if isinstance(images, Rows) else images
    if padded.dim() != 3 or labels.dim() != 1 or padded.shape[0] != labels.shape[0]:
        raise ValueError(f"numerics: expected images (B, T, D) and labels (B,), got "
                         f"{tuple(padded.shape)} and {tuple(labels.shape)}")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"numerics: batch_size must be a positive int or None, got {batch_size!r}")
    x = images.to(device=device, dtype=dtype)
    y = labels.to(device=device, dtype=torch.int64)
    x_ref = x.to("cpu", torch.float64) if isinstance(x, Rows) else x.detach().cpu().double()
    forked = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=forked):  # building the twin draws its (discarded) initial weights
        reference = reference_model(model, family)
        logits, grads = _logits_and_grads(model, x, y, batch_size)
        logits_ref, grads_ref = _logits_and_grads(reference, x_ref, y.cpu())
    errors = {name: _rel(grads[name], grads_ref[name]) for name in grads_ref}
    worst = max(errors, key=errors.__getitem__)
    return {"out_rel_err": _rel(logits, logits_ref), "grad_rel_err": errors[worst], "grad_worst": worst}


def backend_error(backend: str, model: RowClassifier, images: torch.Tensor | Rows, labels: torch.Tensor,
                  batch_size: int | None = None) -> dict:
    """numerical_error for a registered backend name (its family from impls.REGISTRY)."""
    return numerical_error(model, images, labels, impls.spec(backend).family, batch_size)
