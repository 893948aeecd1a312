"""bench.profiling: what-ran columns for real CPU training steps, and the one kernel-name classifier
(`bench run`'s impl_detail and `bench gpu-check`'s ran column)."""
import re

import pytest
import torch
from torch import nn

import impls
from bench.model import RowClassifier
from bench.profiling import profile_steps, rnn_engine, short_name

TOP = re.compile(r"^[\w:.]+ \(\d+%\)(; [\w:.]+ \(\d+%\)){2}$")  # three "name (x%)" entries


def train_step(backend, steps=7, width=112, hidden=16):
    torch.manual_seed(0)
    model = RowClassifier(impls.build(backend, width, hidden, 2), hidden, 10)
    optimizer = torch.optim.Adam(model.parameters())
    images, labels = torch.rand(20, steps, width), torch.randint(0, 10, (20,))

    def step():
        loss = nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step


@pytest.fixture(scope="module")
def profiles():
    return {backend: profile_steps(train_step(backend), n_steps=2, device="cpu")
            for backend in ("cudnn", "loop", "gru")}


@pytest.mark.parametrize("backend", ["cudnn", "loop", "gru"])
def test_columns_are_filled(profiles, backend):
    result = profiles[backend]
    assert result["kernels_per_step"] > 10
    assert TOP.match(result["top_kernels"]), result["top_kernels"]
    shares = [int(s) for s in re.findall(r"\((\d+)%\)", result["top_kernels"])]
    assert shares == sorted(shares, reverse=True) and sum(shares) <= 100


def test_loop_launches_more_ops_than_the_fused_lstm(profiles):
    # loop: a matmul and the gate ops at every step, forward and backward; cudnn: one op per layer
    assert profiles["loop"]["kernels_per_step"] > 3 * profiles["cudnn"]["kernels_per_step"]


def test_engine_on_cpu(profiles):
    assert profiles["cudnn"]["rnn_engine"].startswith(("oneDNN", "ATen native"))
    assert profiles["loop"]["rnn_engine"] is None  # nothing RNN-shaped: the cells are plain ops


def test_counts_are_per_step_and_stable():
    step = train_step("cudnn")
    one, three = profile_steps(step, n_steps=1), profile_steps(step, n_steps=3)
    assert one["kernels_per_step"] == three["kernels_per_step"]


# Kernel names as the CUDA profiler reports them (cuDNN 8/9, fp32 and fp16).
PERSISTENT = ["void RNN_blockPersist_fp_LSTM<float, float, float, 128>(RNNPersistFwdParams<float, float, float>)",
              "void RNN_blockPersist_bp_LSTM<float, float, float, 128>(RNNPersistBwdParams<float, float, float>)",
              "void cutlass::Kernel2<cutlass_80_simt_sgemm_256x128_8x4_nn_align1>(Params)", "aten::_cudnn_rnn"]
PERSISTENT_HMMA = ["void RNN_blockPersist_fp_LSTM_HMMA<__half, __half, float, 64>(Params)", "aten::_cudnn_rnn"]
STANDARD = ["void elemWiseRNNcell<float, float, float, (cudnnRNNMode_t)2, (cudnnRNNBiasMode_t)2>(int, int)",
            "void RNN_elementWise_bp1<float, float, float>(int, int, int)", "sm90_xmma_gemm_f32f32_tf32f32_f32_nn_n",
            "aten::_cudnn_rnn"]
FALLBACK = ["void at::native::vectorized_elementwise_kernel<4, at::native::sigmoid_kernel_cuda>(int)",
            "ampere_sgemm_32x32_sliced1x4_nn", "aten::mm", "aten::sigmoid"]


@pytest.mark.parametrize("names, expected", [
    (PERSISTENT, "cuDNN persistent RNN kernel (RNN_blockPersist)"),
    (PERSISTENT_HMMA, "cuDNN persistent RNN kernel (RNN_blockPersist) with tensor cores (HMMA)"),
    (STANDARD, "cuDNN standard algorithm (a GEMM and elemWiseRNNcell per step)"),
    (["aten::_cudnn_rnn", "cudnn::something_new<float>(int)"],
     "cuDNN (aten::_cudnn_rnn), algorithm not recognised from the kernel names"),
    (FALLBACK, "not cuDNN: no cuDNN RNN kernel ran"),
    (["void at::native::(anonymous namespace)::lstm_cell_forward<c10::BFloat16>(int)"],
     "not cuDNN: ATen fused LSTM cell kernels"),
    (["lstm_seq_fwd_kernel", "lstm_seq_bwd_kernel", "ampere_sgemm_32x32_sliced1x4_nn"], "persistent Triton kernels"),
    (["lstm_step_fwd_kernel", "ampere_sgemm_32x32_sliced1x4_nn"], "per-step Triton kernels + cuBLAS"),
])
def test_cuda_engine_from_kernel_names(names, expected):
    assert rnn_engine(names, "cuda") == expected


def test_short_names():
    assert short_name(PERSISTENT[0]) == "RNN_blockPersist_fp_LSTM"
    assert short_name("aten::addmm") == "aten::addmm"
    assert short_name(FALLBACK[0]) == "at::native::vectorized_elementwise_kernel"


def test_bad_step_count():
    with pytest.raises(ValueError, match="n_steps must be a positive int"):
        profile_steps(lambda: None, n_steps=0)


def test_kineto_chatter_is_dropped_and_everything_else_on_stderr_passes(capfd):
    import os

    from bench.profiling import _without_kineto_noise
    with _without_kineto_noise():
        os.write(2, b"USDT:2026-11-29 01:46:32 8611:8611 SyncActivityProfilerHandler.cpp:39] profiler_start\n"
                    b"ERROR:2026-11-29 01:46:32 8611:8611 DeviceProperties.cpp:56] "
                    b"gpuGetDeviceCount failed with code 35\n"
                    b"a real warning from a kernel\n")
    err = capfd.readouterr().err
    assert "a real warning from a kernel" in err
    assert "USDT" not in err and "gpuGetDeviceCount" not in err


@pytest.mark.parametrize("grad_clip, clipped", [(None, 0), (1.0, 4)])
def test_the_profiled_step_is_the_timed_step(monkeypatch, grad_clip, clipped):
    """bench.train profiles training_step itself, so gradient clipping (permuted, pixel) is in what it lists:
    one unprofiled step, then PROFILED_STEPS (3) profiled ones."""
    import bench.train as train
    from bench.config import Config
    from bench.constants import PROFILED_STEPS

    calls = []
    real_clip = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda *a, **k: calls.append(1) or real_clip(*a, **k))
    torch.manual_seed(0)
    model = RowClassifier(impls.build("loop", 4, 8, 1), 8, 10)
    batch = [(torch.rand(6, 3, 4), torch.randint(0, 10, (6,)))]
    found = train.profile_training(model, batch, Config(grad_clip=grad_clip), torch.device("cpu"))
    assert len(calls) == clipped == (1 + PROFILED_STEPS if grad_clip else 0)
    assert found["kernels_per_step"] > 0
