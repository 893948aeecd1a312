"""How the Triton wrappers fit their launches to a GPU's shared memory, TF32 in the persistent kernel, and
`bench kernels`, which compiles every launch ahead of time for sm_80/86/89/90 without a GPU.

In this process the kernels run under the interpreter (tests/conftest.py). Compiling needs Triton out of
interpreter mode, so `bench kernels` runs in subprocesses without TRITON_INTERPRET; they share one compile
cache per test session and ask for small configurations, except where the issue's case is a large one.
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")

import torch

import impls.triton_common as common
import impls.triton_lstm as triton_lstm
from bench import kernels
from impls.parity import compare_with_torch

ROOT = Path(__file__).resolve().parent.parent
CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"


class TableTarget:
    """A GPU whose compiled shared memory per launch comes from a table: {(path, num_stages): bytes}, or
    {(kernel name, path, num_stages): bytes} where the kernels differ."""

    def __init__(self, name: str, limit: int, table: dict) -> None:
        self.name, self.smem_limit, self.table = name, limit, table
        self.local = common._Local(torch.device(DEVICE))
        self.asked: list[tuple[str, int]] = []

    def shared_bytes(self, launch) -> int:
        self.asked.append((launch.name, launch.path, launch.num_stages))
        key = launch.path, launch.num_stages
        return self.table.get((launch.name, *key)) or self.table[key]

    def launch(self, fitted) -> None:  # run it here, as the local target would (interpreted on CPU)
        self.local.launch(fitted)


@pytest.fixture
def tf32():
    """Sets torch's TF32 flags for one test (properties, so monkeypatch cannot restore them), then restores them."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32

    def set_(matmul: bool, cudnn: bool = False) -> None:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn
    yield set_
    set_(*saved)


# ------------------------------------------------------------------------------------ fitting, in process

def test_candidates_fall_back_on_fewer_stages_then_the_streaming_path():
    best = triton_lstm.plan(50, 64, torch.float32)
    assert best.resident and best.num_stages == 3
    order = [(p.resident, p.num_stages) for p in triton_lstm.candidates(best)]
    assert order == [(True, 3), (True, 2), (True, 1), (False, 3), (False, 2), (False, 1)]
    with triton_lstm.force_path("resident"):
        assert [p.resident for p in triton_lstm.candidates(triton_lstm.plan(50, 128, torch.float32))] == [True] * 3
    streaming = triton_lstm.plan(50, 128, torch.float32)
    assert [p.resident for p in triton_lstm.candidates(streaming)] == [False] * 3


def test_fit_takes_the_first_configuration_that_fits_and_says_what_it_gave_up(monkeypatch):
    """As on an RTX 4090 (101,376 B a block): the resident backward at H=64 needs 139,264 B with Triton's
    3 stages, 110,592 B with 2, 81,920 B with 1 (the figures `bench kernels` measured): 1 stage is chosen."""
    monkeypatch.setattr(common, "NOTES", {})
    bwd = "lstm_seq_bwd_kernel"
    table = {("resident", 3): 69_632, (bwd, "resident", 3): 139_264, (bwd, "resident", 2): 110_592,
             (bwd, "resident", 1): 81_920}
    target = TableTarget("test-sm_89", 101_376, table)
    model = triton_lstm.TritonLSTM(5, 11, 1).to(DEVICE)
    with common.use_target(target):
        model(torch.randn(3, 4, 5, device=DEVICE))[0].sum().backward()
    assert target.asked == [("lstm_seq_fwd_kernel", "resident", 3),
                            (bwd, "resident", 3), (bwd, "resident", 2), (bwd, "resident", 1)]
    assert model.launch_notes() == [
        "lstm_seq_bwd_kernel runs resident path, num_stages 1: resident path, num_stages 3 needs 139,264 B; "
        "resident path, num_stages 2 needs 110,592 B of shared memory per block, test-sm_89 offers 101,376 B"]


def test_fallback_configuration_computes_what_nn_lstm_does(monkeypatch):
    """Whatever `fit` settles on still matches torch.nn.LSTM: here a GPU too small for any resident launch."""
    monkeypatch.setattr(common, "NOTES", {})
    table = {(p, n): (200_000 if p == "resident" else 30_000) for p in ("resident", "streaming") for n in (1, 2, 3)}
    with common.use_target(TableTarget("test-small", 100_000, table)):
        errors = compare_with_torch("triton", batch=3, steps=3, input_size=5, hidden=11, layers=1,
                                    with_state=True, dtype=torch.float64, device=DEVICE)
    assert max(errors.values()) < 1e-10
    notes = common.launch_notes((triton_lstm.lstm_seq_fwd_kernel, triton_lstm.lstm_seq_bwd_kernel))
    assert len(notes) == 2 and all("runs streaming path, num_stages 3" in n for n in notes)


def test_no_configuration_that_fits_raises_a_one_line_launch_error():
    table = {(p, n): 500_000 for p in ("resident", "streaming") for n in (1, 2, 3)}
    x = torch.zeros(2, 3, 8, device=DEVICE)
    state = torch.zeros(1, 3, 2, device=DEVICE)
    with common.use_target(TableTarget("test-tiny", 1024, table)), \
            pytest.raises(common.LaunchError, match=r"lstm_seq_fwd_kernel cannot launch on test-tiny: even "
                                                    r"streaming path, num_stages 1 needs 500,000 B"):
        triton_lstm.lstm_seq_fwd(x, state, state, torch.zeros(1, 8, 2, device=DEVICE), save_acts=False)


def test_dot_precision_follows_the_runs_tf32_setting(tf32):
    tf32(False)
    assert common.dot_precision(torch.float32) == "ieee" and common.dot_precision(torch.float64) == "ieee"
    tf32(True)
    assert common.dot_precision(torch.float32) == "tf32" and common.dot_precision(torch.float64) == "ieee"


@pytest.mark.slow
def test_tf32_parity_at_tf32_tolerance(tf32):
    """With the run's tf32 on, the persistent kernel's float32 dot takes TF32 operands (emulated under the
    interpreter): still within TF32's tolerance of torch.nn.LSTM, and visibly not IEEE float32 any more."""
    tf32(True, cudnn=False)  # the reference nn.LSTM stays true float32
    errors = compare_with_torch("triton", batch=5, steps=6, input_size=7, hidden=20, layers=2, with_state=True,
                                dtype=torch.float32, device=DEVICE)
    assert max(errors.values()) <= 5e-3, errors
    assert max(errors.values()) > 1e-5, "TF32 asked for, but the error is IEEE float32's"


# ------------------------------------------------------------------------------- bench kernels: the matrix

def test_preset_shapes_cover_the_default_and_every_preset():
    shapes = kernels.preset_shapes()
    assert shapes[0] == kernels.Shape(64, 50, 28, "float32")  # the tutorial's, the default configuration
    assert kernels.Shape(128, 128, 784, "float32") in shapes  # pixel and permuted
    assert {s.hidden for s in shapes if s.batch == 50 and s.steps == 28} >= {32, 64, 128, 256, 512}
    assert {s.batch for s in shapes if s.hidden == 64} >= {16, 32, 64, 128, 256}
    assert len(shapes) == len(set(shapes))


def test_tensor_core_instructions_are_read_from_the_ptx():
    from bench.aot import tensor_core_use

    ptx = ("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%f1}, {%r1}, {%r2}, {%f2};\n" * 3
           + "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%f1}, {%r1}, {%r2}, {%f2};\n"
           + "fma.rn.f32 %f3, %f4, %f5, %f6;\n")
    assert tensor_core_use(ptx) == "mma m16n8k16 bf16 x1, mma m16n8k8 tf32 x3"
    assert tensor_core_use("fma.rn.f32 %f3, %f4, %f5, %f6;\nld.shared.f32 %f1, [%r1];") == "none"


def test_launchable_names_the_limit_a_compiled_launch_breaks():
    from bench.aot import Compiled, launchable

    fits = Compiled(smem_bytes=81_920, regs=76)
    assert launchable(fits, 8, 101_376, "sm_86") == ""
    assert launchable(Compiled(smem_bytes=139_264, regs=64), 8, 101_376, "sm_86") == \
        "needs 139,264 B of shared memory per block; sm_86 offers 101,376 B"
    assert "registers" in launchable(Compiled(smem_bytes=0, regs=255), 16, 232_448, "sm_90")
    assert launchable(Compiled(error="PTXASError: boom"), 4, 232_448, "sm_90") == "PTXASError: boom"


@pytest.mark.parametrize("argv,message", [
    (["--archs", "75"], "compute capability 8.0 or newer"),
    (["--dtypes", "float8"], "expected some of float32,bfloat16,float16,float64"),
    (["--hidden", "0"], "positive integers"),
    (["--archs", "80", "--smem-limit", "86=1000"], "sm_86, which is not in --archs"),
    (["--archs", "100"], "no shared-memory limit known for sm_100"),
    (["--hidden", "32,40", "--proj-size", "8,40"], "--proj-size 40 must be below some hidden size"),
    (["--proj-size", "-1"], "integers >= 0"),
])
def test_bad_input_exits_2_with_one_line(capsys, monkeypatch, argv, message):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert kernels.cli(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_interpreter_mode_is_refused(capsys, monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert kernels.cli(["--archs", "90"]) == 2
    assert "TRITON_INTERPRET=1" in capsys.readouterr().err


# ----------------------------------------------------------------------------- bench kernels: compiling

def _bench_kernels(out: Path, cache: Path, *argv: str) -> tuple[subprocess.CompletedProcess, list[dict]]:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"} | {"PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "bench", "kernels", "--out", str(out), "--cache", str(cache),
                           "--jobs", "1", *argv], env=env, capture_output=True, text=True, timeout=900)
    rows = list(csv.DictReader((out / "kernels.csv").open())) if (out / "kernels.csv").exists() else []
    return done, rows


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("kernel-cache")


SMALL = ("--archs", "90", "--hidden", "32", "--batch", "50", "--backends", "triton", "--passes", "forward")


@pytest.fixture(scope="module")
def small_run(tmp_path_factory, cache):
    """The persistent forward at H=32 on sm_90, float32 with tf32 off and on."""
    out = tmp_path_factory.mktemp("small")
    done, rows = _bench_kernels(out, cache, *SMALL, "--tf32", "both")
    return out, done, rows


@pytest.mark.slow
def test_small_run_is_launchable_with_resources_filled(small_run):
    out, done, rows = small_run
    assert done.returncode == 0, done.stderr
    assert len(rows) == 2 and {r["tf32"] for r in rows} == {"False", "True"}
    for row in rows:
        assert row["kernel"] == "lstm_seq_fwd_kernel" and row["launchable"] == "True" and row["why"] == ""
        assert int(row["regs"]) > 0 and int(row["smem_bytes"]) > 0 and float(row["ptx_kb"]) > 0
        assert row["path"] == "resident" and row["num_stages"] == "3" and row["smem_limit"] == "232448"
    env = json.loads((out / "env.json").read_text())
    assert env["smem_limits"] == {"90": 232448} and env["triton"]
    assert "| seq fwd | triton | forward | float32 | 32 | — | 50 | 28 |" in (out / "kernels.md").read_text()


@pytest.mark.slow
def test_tf32_puts_the_float32_dot_on_tensor_cores(small_run):
    _, _, rows = small_run
    by_tf32 = {r["tf32"]: r["tensor_cores"] for r in rows}
    assert by_tf32["False"] == "none"
    assert by_tf32["True"].startswith("mma m16n8k8 tf32 x")


COMPILE_ALONE = """
import json, re, subprocess, sys, triton, triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from triton import knobs
from impls.triton_lstm import lstm_seq_fwd_kernel as k
# By hand, as the wrapper launches it at H=32, B=50, T=28 float32, one direction: pointers and H divisible by 16.
# No projection: w_hr and the scratch m are stand-ins (w_hh and cs), P = H.
types = ["*fp32", "*fp32", "*fp32", "*fp32", "*i32", "*fp32", "*fp32", "*fp32", "*fp32"] + ["i32"] * 4 + \
    ["constexpr"] * 9
signature = dict(zip(k.arg_names, types))
constexprs = {"COMPUTE": tl.float32, "PRECISION": "ieee", "RESIDENT": True, "SAVE_ACTS": True, "PROJ": False,
              "BLOCK_B": 16, "BLOCK_H": 32, "BLOCK_P": 32, "BLOCK_K": 32}
attrs = {(i,): [["tt.divisibility", 16]] for i in (0, 1, 2, 3, 4, 5, 6, 7, 8, 11, 12)}
compiled = triton.compile(ASTSource(k, signature, constexprs, attrs), target=GPUTarget("cuda", 90, 32),
                          options={"num_warps": 4, "num_stages": 3})
open(sys.argv[1], "wb").write(compiled.asm["cubin"])
usage = subprocess.run([knobs.nvidia.cuobjdump.path, "--dump-resource-usage", sys.argv[1]],
                       capture_output=True, text=True, check=True).stdout
print(json.dumps({"shared": compiled.metadata.shared, "regs": int(re.search(r"REG:(\\d+)", usage).group(1))}))
"""


@pytest.mark.slow
def test_table_matches_tritons_own_compile(small_run, tmp_path):
    """smem_bytes is what Triton's compiled metadata says, for a compile written out by hand here, and regs
    (from ptxas -v on the PTX) is what cuobjdump reads from Triton's own cubin."""
    _, _, rows = small_run
    (row,) = [r for r in rows if r["tf32"] == "False"]
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"} | {"PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", COMPILE_ALONE, str(tmp_path / "k.cubin")], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    alone = json.loads(done.stdout.strip().splitlines()[-1])
    assert int(row["smem_bytes"]) == alone["shared"]
    assert int(row["regs"]) == alone["regs"]


@pytest.mark.slow
def test_lowering_an_arch_limit_turns_a_launchable_row_into_a_failure(small_run, tmp_path, cache):
    _, _, before = small_run
    assert all(r["launchable"] == "True" for r in before)
    done, rows = _bench_kernels(tmp_path, cache, *SMALL, "--smem-limit", "90=4096")
    assert done.returncode == 1
    (row,) = rows
    assert row["launchable"] == "False" and row["smem_limit"] == "4096"
    assert "of shared memory per block, it offers 4,096 B" in row["why"]
    assert "cannot launch: triton lstm_seq_fwd_kernel (forward) float32 H=32 B=50 T=28 on sm_90: even streaming " \
           "path, num_stages 1 needs" in done.stderr


@pytest.mark.slow
def test_projection_compiles_both_paths_with_its_width_in_the_table(tmp_path, cache):
    """proj_size in the persistent kernels, ahead of time: P=16 keeps the weights resident, P=33 at H=40 (64-wide
    padded tiles) streams them (and is left out at H=32, where nn.LSTM refuses it); all launch on sm_90, in both
    passes, and each row names its P."""
    done, rows = _bench_kernels(tmp_path, cache, "--archs", "90", "--hidden", "32,40", "--proj-size", "16,33",
                                "--batch", "50", "--backends", "triton", "--passes", "forward,backward")
    assert done.returncode == 0, done.stderr
    paths = {(r["hidden"], r["proj_size"], r["pass"]): r["path"] for r in rows if r["launchable"] == "True"}
    assert paths == {(h, "16", p): "resident" for h in ("32", "40") for p in ("forward", "backward")} | \
        {("40", "33", p): "streaming" for p in ("forward", "backward")}
    assert len(rows) == len(paths)
    assert "| seq fwd | triton | forward | float32 | 40 | 33 | 50 | 28 |" in (tmp_path / "kernels.md").read_text()


@pytest.mark.slow
def test_forced_resident_path_at_h128_cannot_launch(tmp_path, cache):
    """Why the wrappers stream W_hh above 64 KiB of tiles: resident at H=128 float32 needs 270,336 B of shared
    memory a block even with one stage, more than any GPU here offers (and it spills)."""
    done, rows = _bench_kernels(tmp_path, cache, "--archs", "90", "--hidden", "128", "--batch", "50",
                                "--backends", "triton", "--passes", "forward", "--path", "resident")
    assert done.returncode == 1
    (row,) = rows
    assert row["path"] == "resident" and row["num_stages"] == "1" and row["launchable"] == "False"
    assert row["why"] == ("lstm_seq_fwd_kernel cannot launch on sm_90: even resident path, num_stages 1 needs "
                          f"{int(row['smem_bytes']):,} B of shared memory per block, it offers 232,448 B")
    assert int(row["smem_bytes"]) > 232_448


def test_reference_table_has_the_default_configuration_launchable_everywhere():
    """results/reference/kernels/ (make kernels): the default configuration's triton forward and backward fit
    sm_80, sm_86, sm_89 and sm_90, with registers, spills and shared memory filled in."""
    rows = list(csv.DictReader((ROOT / "results" / "reference" / "kernels" / "kernels.csv").open()))
    default = [r for r in rows if (r["backend"], r["dtype"], r["hidden"], r["batch"], r["steps"], r["tf32"])
               == ("triton", "float32", "64", "50", "28", "False")]
    assert {(r["pass"], r["arch"]) for r in default} >= {(p, f"sm_{a}") for p in ("forward", "backward")
                                                          for a in (80, 86, 89, 90)}
    for row in default:
        assert row["launchable"] == "True", row
        assert int(row["regs"]) > 0 and row["spill_bytes"] != "" and int(row["smem_bytes"]) > 0
