"""Executors: the same cells give the same rows locally and on a real (local) Ray cluster; a worker that
dies becomes a failed row; a driver killed mid-run loses and duplicates nothing on resume."""
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import bench.train
from bench import envinfo, executors, run_command, runner, storage
from bench.schema import RUN_COLUMNS
from tests.fixtures.synthetic import synthetic_mnist, two_backend_config

CPU = torch.device("cpu")


def die_on_gru(config, backend, seed, data, device):
    """A training function whose gru cell takes its own process down, as a segfault in a kernel would."""
    if backend == "gru":
        os.kill(os.getpid(), signal.SIGKILL)
    return bench.train.train_and_measure(config, backend, seed, data, device)


@pytest.fixture(scope="module")
def data():
    return synthetic_mnist()


@pytest.fixture(scope="module")
def ray_executor():
    ray = pytest.importorskip("ray")
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray's workers cannot import tests/
    with executors.RayExecutor(num_cpus=2, env=runner.worker_env()) as executor:
        yield executor


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_ray_cells_give_the_rows_local_cells_give(tmp_path, data, ray_executor):
    config = two_backend_config()
    runner.execute(config, tmp_path / "local", CPU, data, log=lambda _: None)
    rows = runner.execute(config, tmp_path / "ray", CPU, data, log=lambda _: None, executor=ray_executor)
    assert sorted(r["backend"] for r in rows) == ["cudnn", "gru"]
    local, remote = storage.load_runs(tmp_path / "local"), storage.load_runs(tmp_path / "ray")
    assert list(remote.columns) == list(local.columns) == RUN_COLUMNS
    assert (remote.status == "ok").all() and remote.test_accuracy.between(0, 1).all()
    assert (remote.train_samples_per_s > 0).all() and (remote.peak_tensor_bytes > 0).all()
    assert (remote.host == socket.gethostname()).all() and (remote.device_name == envinfo._cpu_model()).all()
    assert (local.host == socket.gethostname()).all() and (remote.device_uuid == "").all()
    # same seed, same model, same thread count: the same training, wherever it ran

    def by_run(directory: Path) -> list[float]:
        return storage.load_curves(directory).sort_values(["run_id", "step"]).loss.tolist()

    assert by_run(tmp_path / "ray") == by_run(tmp_path / "local")
    assert ray_executor.describe(CPU)["cell_cpus"] == 2 and not ray_executor.describe(CPU)["cells_may_share_node"]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_ray_task_that_kills_its_process_becomes_a_failed_row(tmp_path, data, ray_executor, monkeypatch):
    monkeypatch.setattr(ray_executor, "train", die_on_gru)
    runner.execute(two_backend_config(), tmp_path, CPU, data, log=lambda _: None, executor=ray_executor)
    runs = storage.load_runs(tmp_path).set_index("backend")
    assert runs.loc["gru", "status"] == "failed" and runs.loc["gru", "error"].startswith("ray worker died: ")
    assert runs.loc["cudnn", "status"] == "ok" and runs.loc["cudnn", "host"] == socket.gethostname()
    assert set(storage.load_curves(tmp_path).backend) == {"cudnn"}


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_local_worker_that_kills_its_process_becomes_a_failed_row(tmp_path, data):
    executor = executors.LocalExecutor(env=runner.worker_env(), train=die_on_gru)
    runner.execute(two_backend_config(isolate=True), tmp_path, CPU, data, log=lambda _: None, executor=executor)
    runs = storage.load_runs(tmp_path).set_index("backend")
    assert runs.loc["gru", "status"] == "failed" and "killed by SIGKILL" in runs.loc["gru", "error"]
    assert runs.loc["cudnn", "status"] == "ok"


# Run from the repository root, whose directory `python -c` puts on sys.path: bench and tests import from there.
DRIVER = """
import sys
from pathlib import Path
import torch
from bench import runner
from tests.fixtures.synthetic import synthetic_mnist, two_backend_config
runner.execute(two_backend_config(isolate=True, seeds=(0, 1, 2)), Path(sys.argv[1]), torch.device("cpu"),
               synthetic_mnist(), log=lambda _: None)
"""
ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_driver_killed_mid_run_resumes_without_loss_or_duplicates(tmp_path, data):
    out = tmp_path / "run"
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(out)], cwd=ROOT)
    try:
        deadline = time.monotonic() + 300
        while not ((out / "runs.csv").exists() and len((out / "runs.csv").read_text().splitlines()) >= 3):
            assert driver.poll() is None and time.monotonic() < deadline, "the driver ended before it was killed"
            time.sleep(0.05)
    finally:
        driver.kill()  # SIGKILL: no handler runs
        driver.wait()
    before = storage.load_runs(out)
    assert 2 <= len(before) < 6
    written = runner.execute(two_backend_config(isolate=True, seeds=(0, 1, 2)), out, CPU, data, log=lambda _: None)
    after = storage.load_runs(out)
    assert len(after) == 6 and after.run_id.is_unique and (after.status == "ok").all()
    assert after.head(len(before)).equals(before)  # what had finished is kept as it was
    assert {r["run_id"] for r in written} == set(after.run_id) - set(before.run_id)
    for table in (storage.load_curves(out), storage.load_steps(out)):  # no orphans of the killed cell
        assert set(table.run_id) == set(after.run_id)
        assert not table.duplicated(["run_id", "step"]).any()


@pytest.mark.parametrize("argv,message", [
    (["--executor", "slurm"], "--executor must be one of: local, ray; got 'slurm'"),
    (["--cell-cpus", "2"], "--ray-address and --cell-cpus need --executor ray"),
    (["--executor", "ray", "--cell-cpus", "0"], "--cell-cpus must be a positive integer, got 0"),
    (["--retries", "-1"], "--retries must be 0 or more, got -1"),
])
def test_bad_executor_flags_are_one_line_exit_2_and_write_nothing(tmp_path, capsys, argv, message):
    assert run_command.cli(argv + ["--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {message}\n" and not (tmp_path / "out").exists()
