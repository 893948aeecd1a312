"""Startup: `bench run`'s driver plans, checks, dry-runs and runs a CPU run without importing torch (the workers
read MNIST themselves); the worker server preloads Inductor's compiler only for a plan that compiles, and
torch._dynamo always (torch.optim needs it); an invocation's wall time is split into the work and what the harness
adds (bench.walltime)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bench import executors, isolate, planning, runner, storage, walltime
from bench.config import from_dict
from bench.data import MnistFiles, idx
from bench.result import RunResult

ROOT = Path(__file__).resolve().parent.parent
# The driver takes the files written by synthetic_files as verified: they are not the official ones.
UNVERIFIED = "import bench.data.fetch\nbench.data.fetch.ensure_mnist = lambda root, log=None: (root, 'synthetic')\n"


def driver(argv: list[str], tmp_path: Path, prelude: str = "", timeout: float = 120) -> subprocess.CompletedProcess:
    """`bench run ARGV` in a fresh interpreter (after `prelude`); prints whether torch (and pandas) were imported
    on its last line."""
    code = (f"import sys\n{prelude}from bench.__main__ import main\nrc = main(sys.argv[1:])\n"
            "print('torch imported:', 'torch' in sys.modules, 'pandas:', 'pandas' in sys.modules)\nsys.exit(rc)")
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"} | (
        {"XDG_CACHE_HOME": os.environ["XDG_CACHE_HOME"]} if "XDG_CACHE_HOME" in os.environ else {})
    return subprocess.run([sys.executable, "-c", code, "run", *argv], capture_output=True, text=True, cwd=tmp_path,
                          env=env, timeout=timeout)


def synthetic_files(root: Path, train: int = 400, test: int = 200) -> Path:
    """The four MNIST files under ROOT, synthetic (digit d lights up row 18 + d) and in the official IDX format."""
    raw = idx.raw_dir(root)
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, count in (("train", train), ("t10k", test)):
        labels = rng.integers(0, 10, count).astype(np.uint8)
        images = rng.integers(0, 40, (count, 28, 28)).astype(np.uint8)
        images[np.arange(count), 18 + labels] = 255
        (raw / f"{split}-images-idx3-ubyte").write_bytes(idx.idx_bytes(images))
        (raw / f"{split}-labels-idx1-ubyte").write_bytes(idx.idx_bytes(labels))
    return root


@pytest.mark.slow
def test_dry_run_and_bad_input_do_not_import_torch(tmp_path):
    done = driver(["--dry-run", "--device", "cpu", "--backends", "cudnn,compiled", "--out", str(tmp_path / "r")],
                  tmp_path)
    assert done.returncode == 0, done.stderr
    assert "plan: 2 run(s) on cpu" in done.stdout and "torch imported: False" in done.stdout.splitlines()[-1]
    bad = driver(["--device", "cpu", "--batch-size", "0"], tmp_path)
    assert bad.returncode == 2 and "torch imported: False" in bad.stdout.splitlines()[-1]


@pytest.mark.slow
def test_the_driver_modules_import_neither_torch_nor_pandas():
    """What `bench run` imports before it starts the worker server delays the first run by as much."""
    code = "import sys, bench.run_command, bench.runner\nprint(sorted({'torch', 'pandas'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


@pytest.mark.slow
@pytest.mark.skipif(any(Path(p).exists() for p in planning.GPU_DEVICE_FILES), reason="a GPU driver is installed here")
def test_auto_device_is_the_cpu_without_asking_torch(tmp_path):
    done = driver(["--dry-run", "--backends", "cudnn", "--out", str(tmp_path / "r")], tmp_path)
    assert done.returncode == 0 and "on cpu" in done.stdout and "torch imported: False" in done.stdout.splitlines()[-1]


@pytest.mark.slow
def test_a_cpu_run_on_the_local_executor_never_imports_torch_or_pandas_in_the_driver(tmp_path):
    """The driver checks the files and hands each worker their place; the worker reads them, torch's provenance
    comes from a worker, and so does the GEMM peak."""
    data, out = synthetic_files(tmp_path / "data"), tmp_path / "out"
    done = driver(["--device", "cpu", "--backends", "cudnn", "--train-limit", "300", "--warmup-steps", "1",
                   "--hidden", "8", "--threads", "1", "--data-root", str(data), "--out", str(out)], tmp_path,
                  prelude=UNVERIFIED, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "torch imported: False pandas: False", done.stdout
    assert "data: synthetic" in done.stdout and "wall time" in done.stdout
    runs = storage.load_runs(out)
    assert list(runs.status) == ["ok"] and 0 <= runs.test_accuracy[0] <= 1 and runs.train_samples_per_s[0] > 0
    assert runs.startup_s[0] > 0  # the worker's read of the files is in it
    env = json.loads((out / "env.json").read_text())
    assert env["torch"] == str(torch.__version__) and env["torch_threads"] > 0 and "float32" in env["peak"]


def test_a_worker_reads_the_files_it_is_handed(tmp_path):
    root = synthetic_files(tmp_path / "data", train=30, test=20)
    seen = []

    def train(config, backend, seed, data, device):
        seen.append(data)
        return RunResult({}, [], [])

    handle = MnistFiles(str(root), "synthetic")
    executors.run_cell(train, from_dict(dict(backends=("cudnn",))), "cudnn", 0, handle, torch.device("cpu"))
    mnist = seen[0]
    assert mnist.source == "synthetic" and mnist.train_images.shape == (30, 28, 28) and mnist.test_labels.shape == (20,)
    assert mnist.train_images.dtype == torch.uint8 and mnist.train_labels.dtype == torch.int64
    written = idx.read_idx(idx.raw_dir(root) / "train-images-idx3-ubyte")
    assert torch.equal(mnist.train_images, torch.from_numpy(written))


def test_the_worker_server_preloads_the_compiler_only_for_a_plan_that_compiles():
    plain = runner.worker_preload(from_dict(dict(backends=("cudnn", "loop", "gru"))))
    compiles = runner.worker_preload(from_dict(dict(backends=("cudnn", "compiled"))))
    assert "torch._dynamo" in plain and not set(isolate.COMPILE_PRELOAD) & set(plain)
    assert set(isolate.COMPILE_PRELOAD) <= set(compiles)


@pytest.mark.slow
def test_torch_optim_imports_dynamo_which_is_why_every_server_preloads_it():
    code = ("import sys, torch\nassert 'torch._dynamo' not in sys.modules\n"
            "torch.optim.Adam(torch.nn.Linear(2, 2).parameters())\nprint('torch._dynamo' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.stdout.strip() == "True", done.stderr


def test_wall_time_is_split_into_work_and_harness():
    marks = {"process_start": 100.0, "cells_start": 103.0, "cells_end": 113.0, "end": 116.0}
    rows = [{"status": "ok", "train_time_s": 3.0, "eval_time_s": 1.0, "wall_time_s": 4.5, "startup_s": 0.5,
             "numerics_s": 0.2, "memory_s": 0.1, "profile_s": 0.3, "quiet_wait_s": None},
            {"status": "ok", "train_time_s": 2.0, "eval_time_s": 0.5, "wall_time_s": 3.0, "startup_s": 0.25,
             "numerics_s": 0.2, "memory_s": 0.1, "profile_s": 0.2, "quiet_wait_s": None},
            {"status": "skipped"}]
    handed = {"a": {"at": 103.0, "started": 104.5}, "b": {"at": 108.0, "started": 108.25}, "c": {}}
    wall = walltime.summary(marks, handed, rows)
    assert wall["total_s"] == 16.0 and wall["training_and_evaluation_s"] == 6.5 and wall["harness_s"] == 9.5
    assert wall["to_first_run_s"] == 4.5 and wall["cells_s"] == 10.0 and wall["peak_probe_s"] == 3.0
    assert wall["between_runs_s"] == 10.0 - (4.5 + 0.5 + 3.0 + 0.25)
    assert wall["in_runs"] == {"startup_s": 0.75, "numerics_s": 0.4, "memory_s": 0.2, "profile_s": 0.5,
                               "quiet_wait_s": 0}
    assert "harness 9.5 s (to the first run 4.5 s" in walltime.line(wall)
