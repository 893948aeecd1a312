"""Startup: `bench run`'s driver plans, checks and dry-runs a CPU run without importing torch; the worker server
preloads Inductor's compiler only for a plan that compiles, and torch._dynamo always (torch.optim needs it);
an invocation's wall time is split into the work and what the harness adds (bench.walltime)."""
import subprocess
import sys
from pathlib import Path

import pytest

from bench import isolate, planning, runner, walltime
from bench.config import from_dict

ROOT = Path(__file__).resolve().parent.parent


def driver(argv: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    """`bench run ARGV` in a fresh interpreter; prints whether torch was imported on its last line."""
    code = ("import sys\nfrom bench.__main__ import main\nrc = main(sys.argv[1:])\n"
            "print('torch imported:', 'torch' in sys.modules)\nsys.exit(rc)")
    return subprocess.run([sys.executable, "-c", code, "run", *argv], capture_output=True, text=True, cwd=tmp_path,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=120)


@pytest.mark.slow
def test_dry_run_and_bad_input_do_not_import_torch(tmp_path):
    done = driver(["--dry-run", "--device", "cpu", "--backends", "cudnn,compiled", "--out", str(tmp_path / "r")],
                  tmp_path)
    assert done.returncode == 0, done.stderr
    assert "plan: 2 run(s) on cpu" in done.stdout and done.stdout.rstrip().endswith("torch imported: False")
    bad = driver(["--device", "cpu", "--batch-size", "0"], tmp_path)
    assert bad.returncode == 2 and bad.stdout.rstrip().endswith("torch imported: False")


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
    assert done.returncode == 0 and "on cpu" in done.stdout and done.stdout.rstrip().endswith("torch imported: False")


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
