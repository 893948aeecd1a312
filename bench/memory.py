"""What a training step needs in memory: live tensor bytes, the bytes autograd saves for backward,
parameters and optimizer state. Measured the same way for every backend, after the timed run.

The probe (`training_memory`) runs on the trained model with a fresh optimizer of the run's kind:

    1 step          creates the optimizer state (Adam: two moments per parameter) and the gradients;
                    then the gradients are dropped, so the window below starts from parameters and
                    optimizer state only, both counted exactly from their storages
    MEMORY_STEPS    steady-state steps under the meter
    1 step          with autograd's saved tensors counted (torch.autograd.graph.saved_tensors_hooks)

    peak_tensor_bytes = param_bytes + optimizer_bytes + the meter's peak of bytes allocated in the window
                        and still live (activations, gradients, temporaries of the forward, the backward
                        and the optimizer step; gradients of one step are live in the next one's forward)

The datasets, which the harness keeps on the device, are inputs, not the model's cost: they exist
before the window and are never counted. The meter:

  CUDA  torch.cuda.max_memory_allocated after torch.cuda.reset_peak_memory_stats, minus what was
        allocated when the window began: the caching allocator's exact count of live tensor bytes.
  CPU   every allocation and free of PyTorch's CPU allocator (c10) in the window, from
        torch.profiler(profile_memory=True): each event carries its exact size, so the running sum is
        the live bytes allocated in the window, whatever glibc does with freed pages (RSS growth, the
        old figure, measures the C allocator's reuse of pages instead). It sees what the autograd
        engine allocates in backward and what Inductor's compiled code allocates (it calls the same
        allocator). A TorchDispatchMode would see only operator outputs, and torch.compile falls back
        to eager execution under one, so it would measure the `loop` backend in place of `compiled`.
        A block allocated before the window and freed inside it is not reported; the probe drops
        the gradients before the window for that reason, so nothing is freed that was not counted.

saved_for_backward_bytes: the distinct storages autograd saves during one training step's forward
(pack hook: the storage of every tensor saved, counted once however many views of it are saved),
leaving out the parameters and the batch, which are live anyway. A view keeps its whole storage
alive, so the whole storage is what is counted.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

MEMORY_STEPS = 2  # steps in the window: the first has no gradients from a step before, the second is steady
# memory_method, short enough for a plot title: how peak_tensor_bytes was counted, over how many steps
CUDA_METHOD = "cuda: torch.cuda.max_memory_allocated over {steps} training steps"
CPU_METHOD = "cpu: CPU allocator's live bytes (profiler) over {steps} training steps"


def storage_key(tensor: torch.Tensor) -> tuple:
    """Identifies a tensor's storage: views and in-place results share it. (device, data pointer)."""
    return tensor.device, tensor.untyped_storage().data_ptr()


def unique_storage_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of the distinct storages behind `tensors` (a storage shared by several views counts once)."""
    seen: dict[tuple, int] = {}
    for tensor in tensors:
        storage = tensor.untyped_storage()
        if storage.nbytes():
            seen[storage_key(tensor)] = storage.nbytes()
    return sum(seen.values())


def param_bytes(model: nn.Module) -> int:
    """Parameters and buffers: the model's own state."""
    return unique_storage_bytes([*model.parameters(), *model.buffers()])


def optimizer_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Every tensor in the optimizer's state (Adam: exp_avg, exp_avg_sq and the step counters)."""
    return unique_storage_bytes(value for state in optimizer.state.values() for value in state.values()
                                if isinstance(value, torch.Tensor))


class SavedTensors:
    """`with SavedTensors(exclude) as saved: forward...`: saved.bytes is what autograd kept for backward,
    by distinct storage, leaving out the storages of `exclude` (parameters, the batch)."""

    def __init__(self, exclude: Iterable[torch.Tensor] = ()) -> None:
        self._excluded = {storage_key(t) for t in exclude}
        self._storages: dict[tuple, int] = {}
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)

    def _pack(self, tensor: torch.Tensor):
        key = storage_key(tensor)
        if key not in self._excluded:
            self._storages[key] = tensor.untyped_storage().nbytes()
        return tensor.detach()  # the same storage without its autograd history: no reference cycle

    @staticmethod
    def _unpack(tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    @property
    def bytes(self) -> int:
        return sum(self._storages.values())

    def __enter__(self) -> SavedTensors:
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)


class CpuAllocations:
    """`with CpuAllocations() as trace: ...`: trace.peak_bytes is the highest running total of bytes the CPU
    allocator handed out inside the block and had not taken back; trace.end_bytes the total at the end."""

    def __init__(self) -> None:
        self.peak_bytes = self.end_bytes = 0
        self.events = 0

    def __enter__(self) -> CpuAllocations:
        from torch.profiler import ProfilerActivity, profile
        self._profile = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
        self._profile.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._profile.__exit__(*exc)
        if exc[0] is not None:
            return
        cpu = torch.autograd.DeviceType.CPU
        profiler = self._profile.profiler
        results = profiler.kineto_results if profiler is not None else None
        assert results is not None, "the profiler recorded nothing"
        events = sorted((e for e in results.events()
                         if e.name() == "[memory]" and e.device_type() == cpu), key=lambda e: e.start_ns())
        running = peak = 0
        for event in events:
            running += event.nbytes()  # type: ignore[attr-defined]  # in the C++ event, not in torch's stubs
            peak = max(peak, running)
        self.peak_bytes, self.end_bytes, self.events = peak, running, len(events)


def window_peak(device: torch.device, steps: Callable[[], None]) -> int:
    """Peak bytes allocated by `steps()` and live at once, beyond what was live when it began."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        steps()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    from bench.profiling import _without_kineto_noise
    with _without_kineto_noise(), CpuAllocations() as trace:
        steps()
    if trace.events == 0:
        raise RuntimeError("memory: torch.profiler reported no CPU allocation in a training step; "
                           "this PyTorch build does not report memory events")
    return trace.peak_bytes


def training_memory(model: nn.Module, optimizer: torch.optim.Optimizer, step: Callable[[], None],
                    device: torch.device, batch: Iterable[torch.Tensor] = (), steps: int = MEMORY_STEPS) -> dict:
    """The memory columns of a run (module docstring). `optimizer` is fresh (no state yet) and `step()` runs
    one whole training step with it, on `batch`, exactly as the timed steps do."""
    if steps < 2:
        raise ValueError(f"training_memory: steps must be 2 or more (the first has no gradients yet), got {steps}")
    step()  # creates the optimizer state
    optimizer.zero_grad(set_to_none=True)
    params, state = param_bytes(model), optimizer_bytes(optimizer)

    def window() -> None:
        for _ in range(steps):
            step()

    peak = window_peak(device, window)
    # Outside the window: should the hooks make torch.compile recompile, its work is in no figure.
    with SavedTensors(exclude=[*model.parameters(), *model.buffers(), *batch]) as saved:
        step()
    optimizer.zero_grad(set_to_none=True)
    method = CUDA_METHOD if device.type == "cuda" else CPU_METHOD
    return {"peak_tensor_bytes": params + state + peak, "saved_for_backward_bytes": saved.bytes,
            "param_bytes": params, "optimizer_bytes": state, "memory_method": method.format(steps=steps)}
