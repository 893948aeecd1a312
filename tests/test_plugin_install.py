"""The example plugin (examples/fused-addmm-lstm) as a user has it: pip-installed into a scratch target,
found through its entry point by `bench` run from a directory outside the repository, listed, checked,
benchmarked in worker processes beside a built-in backend and reported; and plugins that break, in the
driver or only in the worker, or whose forward crashes. Subprocesses and workers: all slow."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "fused-addmm-lstm"
FIXTURES = ROOT / "tests" / "fixtures" / "plugins"
VERSION = "lstm-bench-fused-addmm 0.1.0"

# MNIST replaced by a learnable synthetic set shaped like it (digit d lights up row 18 + d), so no network.
DRIVER = """
import sys, torch
import bench.data
def synthetic(root=None, **options):
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (400,), generator=g)
    images = torch.randint(0, 40, (400, 28, 28), generator=g, dtype=torch.uint8)
    images[torch.arange(400), 18 + labels] = 255
    return bench.data.Mnist(images, labels, images[:200], labels[:200], source="synthetic")
bench.data.for_cells = synthetic  # what `bench run` hands its cells: these tensors
from bench.__main__ import main
sys.exit(main(sys.argv[1:]))
"""
TINY = ["--train-limit", "300", "--warmup-steps", "1", "--hidden", "16", "--threads", "1", "--device", "cpu"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """`pip install --no-deps` of a copy of the example (pip builds in the source tree) into a scratch target."""
    source, target = tmp_path_factory.mktemp("example") / "src", tmp_path_factory.mktemp("site")
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                    "--quiet", "--disable-pip-version-check", "--target", str(target), str(source)],
                   check=True, capture_output=True, timeout=300)
    assert (target / "fused_addmm_lstm" / "model.py").is_file()
    return target


def bench(site: Path, cwd: Path, *argv: str, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LSTM_BENCH_DATA", "LSTM_BENCH_PLUGINS")}
    env |= {"PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])} | (extra_env or {})
    return subprocess.run([sys.executable, "-c", DRIVER, *argv], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


def test_the_installed_example_is_listed_with_its_origin_and_checked(site, tmp_path):
    listed = bench(site, tmp_path, "list", "--device", "cpu")
    assert listed.returncode == 0, listed.stderr
    assert "fused-addmm      yes  one x@W_ih GEMM" in listed.stdout
    assert f"from: entry point fused-addmm = fused_addmm_lstm:BACKEND ({VERSION})" in listed.stdout
    checked = bench(site, tmp_path, "check", "fused-addmm", "--device", "cpu")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    rows = [line.split() for line in checked.stdout.splitlines()]
    assert ["bfloat16", "gradients", "10"] == rows[[r[:2] for r in rows].index(["bfloat16", "gradients"])][:3]
    assert "all 13 checks passed" in checked.stdout and list(tmp_path.iterdir()) == []


def test_the_installed_example_is_benchmarked_and_reported_beside_a_built_in(site, tmp_path):
    out = tmp_path / "run"
    done = bench(site, tmp_path, "run", "--backends", "cudnn,fused-addmm", *TINY, "--out", str(out), "--report")
    assert done.returncode == 0, done.stderr
    runs = pd.read_csv(out / "runs.csv")
    assert runs.set_index("backend")["status"].to_dict() == {"cudnn": "ok", "fused-addmm": "ok"}
    assert (runs["test_accuracy"] > 0).all() and (runs["step_ms_median"] > 0).all()
    env = json.loads((out / "env.json").read_text())
    summary = "one x@W_ih GEMM for all steps, then the four gates as one fused addmm per step"
    assert env["plugins"]["fused-addmm"] == {
        "kind": "entry point", "source": "fused-addmm = fused_addmm_lstm:BACKEND", "version": VERSION, "family": "lstm",
        "color": "#e377c2", "summary": summary}
    report = (out / "report.md").read_text()
    assert f"| fused-addmm | entry point fused-addmm = fused_addmm_lstm:BACKEND | {VERSION} |" in report
    assert "| fused-addmm | 1 | 0 | 0 |" in report and "| cudnn | 1 | 0 | 0 |" in report
    assert (out / "plots" / "bars.png").stat().st_size > 10_000


def test_a_crashing_forward_and_a_plugin_broken_in_the_worker_are_failed_rows_and_the_others_finish(site, tmp_path):
    out = tmp_path / "run"
    done = bench(site, tmp_path, "run", "--plugin", str(FIXTURES / "crashing.py"), "--plugin",
                 str(FIXTURES / "broken_in_worker.py"), "--backends", "crashing,worker-broken,cudnn", *TINY,
                 "--out", str(out))
    assert done.returncode == 1 and "2 of 3 run(s) failed" in done.stderr
    runs = pd.read_csv(out / "runs.csv", keep_default_na=False).set_index("backend")
    assert runs.loc["cudnn", "status"] == "ok"
    assert runs.loc["crashing", "status"] == "failed" and runs.loc["crashing", "error"] == \
        "RuntimeError: forward crashed on purpose"
    assert runs.loc["worker-broken", "status"] == "failed"
    assert runs.loc["worker-broken", "error"].startswith(f"PluginError: plugin {FIXTURES / 'broken_in_worker.py'}: "
                                                         "import failed: ImportError: a library this plugin needs")
    assert runs.loc["worker-broken", "error"].endswith("(in the worker process)")


def test_a_plugin_that_raises_on_import_is_one_line_exit_2_and_writes_nothing(site, tmp_path):
    done = bench(site, tmp_path, "run", "--plugin", str(FIXTURES / "broken.py"), "--backends", "cudnn", *TINY)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == (f"error: plugin {FIXTURES / 'broken.py'}: import failed: RuntimeError: this plugin is "
                           "broken on purpose\n")
    assert list(tmp_path.iterdir()) == []


def test_plugins_join_the_micro_benchmarks(site, tmp_path):
    done = subprocess.run([sys.executable, "-m", "pytest", str(ROOT / "tests" / "benchmarks"), "-q", "-p",
                           "no:cacheprovider", "-k", "(fused-addmm or file-loop) and mnist", "--rootdir", str(ROOT)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {
                              "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]),
                              "LSTM_BENCH_PLUGINS": str(FIXTURES / "fine.py")})
    assert done.returncode == 0, done.stdout[-2000:]
    assert "4 passed" in done.stdout  # 2 backends x (forward, train step) at the default shape
