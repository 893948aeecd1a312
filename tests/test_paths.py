"""Paths follow the user, not the package: a regular (non-editable) install, run from another directory,
writes results under that directory, names them by time and host, points `latest` at them, and records
the commit of the directory's git repository."""
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bench import rundir

ROOT = Path(__file__).resolve().parent.parent

# pip installs the package, then `bench run` starts its worker processes: minutes on a busy 2-core machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

# Runs in a fresh interpreter that sees only the installed copy. MNIST is replaced by a synthetic set
# so the test needs no network; everything else is the installed `bench run` as a user would call it.
DRIVER = """
import sys, torch
import bench, bench.data
assert bench.__file__.startswith(sys.argv[1]), bench.__file__   # the installed copy, not the checkout
def synthetic(root=None, **options):
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (100,), generator=g)
    images = torch.randint(0, 256, (100, 28, 28), generator=g, dtype=torch.uint8)
    return bench.data.Mnist(images, labels, images, labels, source="synthetic")
bench.data.for_cells = synthetic  # what `bench run` hands its cells: these tensors
from bench.__main__ import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """`pip install .` (not editable) of a copy of the project into a scratch --target."""
    source, target = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("site")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for package in ("bench", "impls"):
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                    "--quiet", "--disable-pip-version-check", "--target", str(target), str(source)],
                   check=True, capture_output=True, timeout=300)
    assert (target / "bench" / "__main__.py").is_file() and not (target / "bench" / "__init__.py").is_symlink()
    return target


def run_installed(site: Path, cwd: Path, *argv: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LSTM_BENCH_DATA")}
    env["PYTHONPATH"] = str(site)
    return subprocess.run([sys.executable, "-c", DRIVER, str(site), *argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def test_installed_run_writes_under_the_working_directory(installed, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=work, check=True)
    (work / "notes.txt").write_text("a user's project\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run(git + ["add", "notes.txt"], cwd=work, check=True)
    subprocess.run(git + ["commit", "-q", "-m", "x"], cwd=work, check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=work, capture_output=True, text=True).stdout.strip()

    done = run_installed(installed, work, "run", "--backends", "cudnn", "--train-limit", "300", "--warmup-steps", "1",
                         "--hidden", "4", "--device", "cpu", "--no-isolate")
    assert done.returncode == 0, done.stderr
    runs = [p for p in (work / "results" / "runs").iterdir() if p.name != "latest"]
    assert len(runs) == 1 and (runs[0] / "runs.csv").is_file()
    assert runs[0].name.endswith("-" + rundir.short_host()) and runs[0].name[:15].replace("-", "").isdigit()
    latest = work / "results" / "runs" / "latest"
    assert latest.resolve() == runs[0].resolve() or latest.read_text().strip() == runs[0].name
    env = json.loads((runs[0] / "env.json").read_text())
    assert env["git_commit"] == head and Path(env["git_repo"]).resolve() == work.resolve()
    # nothing next to the installed package: no results/, no data/
    assert sorted(p.name for p in installed.iterdir() if not p.name.endswith(".dist-info")) == ["bench", "bin", "impls"]


def test_installed_package_ships_the_experiment_presets(installed, tmp_path):
    listed = run_installed(installed, tmp_path, "list", "--experiments")
    assert listed.returncode == 0, listed.stderr
    assert {"smoke", "permuted", "scaling-hidden"} <= {line.split()[0] for line in listed.stdout.splitlines()[1:]}
    done = run_installed(installed, tmp_path, "run", "--dry-run", "--experiment", "permuted", "--backends", "gru")
    assert done.returncode == 0, done.stderr
    assert "gru-s0-b128-h128-l1-t784-permuted0" in done.stdout


def test_installed_dry_run_writes_nothing(installed, tmp_path):
    done = run_installed(installed, tmp_path, "run", "--dry-run", "--backends", "cudnn,gru")
    assert done.returncode == 0, done.stderr
    assert f"into {tmp_path.resolve() / 'results' / 'runs'}" in done.stdout
    assert "cudnn-s0-b50-h64-l2-t28" in done.stdout and "gru-s0-b50-h64-l2-t28" in done.stdout
    assert list(tmp_path.iterdir()) == []


def test_result_names_never_collide_and_latest_moves(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = rundir.new_results_dir()
    assert first.parent == tmp_path.resolve() / "results" / "runs" and not first.exists()
    assert first.name.endswith("-" + rundir.short_host())
    first.mkdir(parents=True)
    second = rundir.new_results_dir()  # same second, same host: a suffix, never the same directory
    assert second != first
    second.mkdir()
    rundir.point_latest(first)
    rundir.point_latest(second)
    latest = first.parent / "latest"
    assert latest.resolve() == second.resolve()
    assert sorted(p.name for p in first.parent.iterdir()) == sorted([first.name, second.name, "latest"])


def test_latest_falls_back_to_a_text_file(tmp_path, monkeypatch):
    def no_symlinks(self, *args, **kwargs):
        raise OSError("symlinks not supported here")

    monkeypatch.setattr(Path, "symlink_to", no_symlinks)
    run = tmp_path / "20260101-000000-host"
    run.mkdir()
    rundir.point_latest(run)
    assert (tmp_path / "latest").read_text() == run.name + "\n"


def test_short_host_is_safe_in_a_path(monkeypatch):
    monkeypatch.setattr(socket, "gethostname", lambda: "my host_1.example.org")
    assert rundir.short_host() == "my-host-1"
