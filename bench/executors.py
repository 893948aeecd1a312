"""Where a cell runs: here, in a pre-warmed fresh process (local), or as one task on a Ray cluster (ray).

The runner plans the cells and writes every row; an executor only runs cells and says how each one
ended: `executor.run(cells, data, device)` yields `(cell, outcome)` as cells finish, in any order,
where the outcome is the run's RunResult or a Failed with a one-line reason. The training code
(bench.train.train_and_measure) is the same on every executor; `run_cell` wraps it on the worker
side and records where the cell ran (RunResult.where: host, device name, device UUID, threads), the
columns a results directory needs to tell one machine's figures from another's; bench.rows joins them
into the row.

Ray: each cell is one task in a fresh worker process (max_calls=1), so memory starts clean and a
crash stays contained, and --timeout ends it as it ends a local worker (bench.ray_cluster.time_limit). Without
--ray-address a private local cluster is started, whatever Ray state the machine holds; joining an address is
bounded by --ray-connect-timeout (bench.ray_cluster.connect). On CUDA a cell asks for one whole GPU; on CPU it asks
for every CPU of the smallest node (two measured cells never share cores), or --cell-cpus N to pack them (recorded in
env.json). Locally, with isolated runs, the driver verifies the MNIST files and each worker reads them itself
(bench.data.handle), so the driver never imports torch. On Ray, MNIST is loaded and verified once, by the driver,
and reaches every node through Ray's object store (ray.put, about 55 MB): worker nodes need neither the network
nor a data cache. The driver's own bench/ and impls/ are shipped with the job (runtime_env py_modules), so every
node runs the driver's code; each node needs only the same Python environment (torch, ray).
"""
from __future__ import annotations

import importlib
import os
import socket
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from bench import envinfo
from bench.config import Config
from bench.data.handle import MnistFiles
from bench.errors import one_line
from bench.isolate import WorkerDied, WorkerError, WorkerTimedOut, call_in_subprocess, start_server
from impls import plugins

if TYPE_CHECKING:
    import torch

    from bench.planning import Device
    from bench.result import RunResult

TRAIN = "bench.train:train_and_measure"  # "module:function", resolved in the worker
NAMES = ("local", "ray")


class ExecutorError(RuntimeError):
    """An executor could not start (Ray missing, cluster unreachable); one line for the user."""


@dataclass(frozen=True)
class Cell:
    run_id: str
    backend: str
    seed: int
    config: Config  # the config of this cell's sweep point


@dataclass(frozen=True)
class Failed:
    reason: str  # one line, for the row's error column


Outcome = Union["RunResult", Failed]


# --- the worker side, the same on every executor ---------------------------------------------------

def resolve(train: str | Callable) -> Callable:
    if callable(train):
        return train
    module, _, name = train.partition(":")
    return getattr(importlib.import_module(module), name)


def identity(device: Device | torch.device) -> dict:
    """Where a cell ran: the row's `host`, `device_name`, `device_uuid` (empty on CPU) and the CPU `threads`
    torch used (config.threads, or what the worker was given)."""
    import torch
    where = {"host": socket.gethostname(), "threads": torch.get_num_threads()}
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device.index if device.index is not None else 0)
        return where | {"device_name": properties.name, "device_uuid": str(properties.uuid)}
    return where | {"device_name": envinfo._cpu_model(), "device_uuid": ""}


def run_cell(train, config: Config, backend: str, seed: int, data, device: Device | torch.device):
    # A worker starts with the built-in table only: it loads the run's plugins itself (a no-op in the driver's
    # process); one that fails to import here raises, and the cell becomes a failed row saying why.
    plugins.ensure(backend, config.plugins)
    if isinstance(data, MnistFiles):  # the local executor's worker reads MNIST itself, before its run's clock
        data = data.load()
    result = resolve(train)(config, backend, seed, data, device)
    result.where = identity(device)
    return result


# --- local ------------------------------------------------------------------------------------------

class LocalExecutor:
    """One cell at a time on this machine: in a worker forked from a pre-warmed server (config.isolate),
    else in this process. `retries` re-runs a cell whose worker died (never one that raised or timed
    out); `timeout_s` kills a worker still running after that long."""

    name = "local"

    def __init__(self, *, env: dict[str, str] | None = None, retries: int = 0, timeout_s: float | None = None,
                 train: str | Callable = TRAIN) -> None:
        self.env, self.retries, self.timeout_s, self.train = env or {}, retries, timeout_s, train
        self.serving = False  # inside `with`: the worker server is started
        self.facts: dict | None = None  # envinfo.torch_facts, once asked (torch_facts)

    def __enter__(self) -> LocalExecutor:
        start_server(self.env)  # the server imports torch while the driver checks the data files
        self.serving = True
        return self

    def __exit__(self, *exc) -> None:
        self.serving = False

    def describe(self, device: Device | None = None) -> dict:
        return {"name": self.name, "host": socket.gethostname(), "retries": self.retries, "timeout_s": self.timeout_s,
                "data": "verified by the driver, read by each isolated worker (in-process runs: loaded by the driver)"}

    @staticmethod
    def workers_read(config: Config) -> bool:
        """Whether each worker reads MNIST from the files itself (bench.data.handle): so when runs are isolated,
        since a worker forked from the server shares nothing with the driver; in-process runs share its tensors."""
        return config.isolate

    def run(self, cells: Iterable[Cell], data, device: Device) -> Iterator[tuple[Cell, Outcome]]:
        for cell in cells:
            yield cell, self._one(cell, data, device)

    def _one(self, cell: Cell, data, device: Device) -> Outcome:
        args = (self.train, cell.config, cell.backend, cell.seed, data, device)
        try:
            for attempt in range(self.retries + 1):
                try:
                    if not cell.config.isolate:
                        return run_cell(*args)
                    return call_in_subprocess(run_cell, *args, env=self.env, timeout_s=self.timeout_s)
                except WorkerTimedOut as error:
                    return Failed(str(error))
                except WorkerDied as error:
                    if attempt == self.retries:
                        return Failed(str(error) + (f" (attempt {attempt + 1} of {attempt + 1})" if attempt else ""))
                except WorkerError as error:  # the worker printed its traceback
                    return Failed(str(error))
                except Exception as error:  # one backend's failure must not end the others' runs
                    traceback.print_exc(file=sys.stderr)
                    return Failed(one_line(error))
        finally:
            if device.type == "cuda" and "torch" in sys.modules:  # a run in this process may have left a pool
                sys.modules["torch"].cuda.empty_cache()
        raise AssertionError("unreachable")


def torch_side(executor, config: Config) -> Callable:
    """How the driver calls a harness function that imports torch (envinfo.torch_facts, peakcache.probe): in a
    worker forked from the local executor's server when the runs are isolated and the driver has no torch yet
    (importing it here would compete with the server's import, for seconds, before the first run), else here.
    A worker that fails is an ExecutorError, one line."""
    if not (isinstance(executor, LocalExecutor) and executor.serving and config.isolate and "torch" not in sys.modules):
        return lambda function, *args: function(*args)

    def in_worker(function, *args):
        try:
            return call_in_subprocess(function, *args, env=executor.env)
        except (WorkerError, WorkerDied) as error:
            raise ExecutorError(f"a worker could not run {function.__qualname__}: {error}") from None
    return in_worker


def torch_facts(executor, config: Config) -> dict:
    """envinfo.torch_facts for env.json and the peak cache's fingerprints, asked once per executor (torch_side)."""
    if getattr(executor, "facts", None) is None:
        executor.facts = torch_side(executor, config)(envinfo.torch_facts)
    return executor.facts


# --- ray --------------------------------------------------------------------------------------------

def _ray_cell(train, config: Config, backend: str, seed: int, data, device: Device, cpus: int,
              timeout_s: float | None = None):
    """One Ray task: the worker side of a cell, on whatever node Ray chose, within the run's --timeout."""
    import torch

    from bench.ray_cluster import time_limit
    if config.threads is None:
        torch.set_num_threads(cpus)  # the CPUs this task asked for, no more, no fewer
    granted = torch.device("cuda", 0) if device.type == "cuda" else device  # Ray sets CUDA_VISIBLE_DEVICES
    with time_limit(timeout_s):                                                # to the one GPU it granted
        return run_cell(train, config, backend, seed, data, granted)


class RayExecutor:
    """Every cell submitted at once as one Ray task; outcomes come back as tasks finish."""

    name = "ray"

    def __init__(self, *, address: str | None = None, cell_cpus: int | None = None, retries: int = 0,
                 env: dict[str, str] | None = None, train: str | Callable = TRAIN, num_cpus: int | None = None,
                 timeout_s: float | None = None, connect_timeout_s: float = 60.0) -> None:
        self.address = address or None  # None: a private local cluster (create() reads $RAY_ADDRESS for the CLI)
        self.cell_cpus, self.retries, self.env, self.train = cell_cpus, retries, env or {}, train
        self.num_cpus = num_cpus  # for a cluster started here; None = every CPU of this machine
        self.timeout_s, self.connect_timeout_s = timeout_s, connect_timeout_s
        self.cluster = ""  # which cluster the run used, in words (ray_cluster.connect)
        self.nodes: list[dict] = []
        self._ray: Any = None  # the ray module, imported on entry (an optional dependency)

    def __enter__(self) -> RayExecutor:
        try:
            import ray
        except ImportError:
            raise ExecutorError("--executor ray needs the ray package: pip install 'lstm-bench[ray]'") from None
        root = Path(__file__).resolve().parent.parent
        runtime_env = {"env_vars": dict(self.env),
                       "py_modules": [str(root / "bench"), str(root / "impls")]}
        from bench import ray_cluster
        try:
            self.cluster = ray_cluster.connect(ray, self.address, num_cpus=self.num_cpus, runtime_env=runtime_env,
                                               timeout_s=self.connect_timeout_s)
        except ray_cluster.ClusterError as error:
            raise ExecutorError(f"ray: {error}") from None
        except Exception as error:
            hint = (" (a cluster with token authentication needs RAY_AUTH_MODE=token and its token; "
                    "see docs/cluster.md)" if self.address and "RAY_AUTH_MODE" not in os.environ else "")
            raise ExecutorError(f"ray: could not join or start a cluster at {self.address or 'this machine'}: "
                                f"{one_line(error)}{hint}") from None
        self._ray = ray
        self.nodes = [{"host": n["NodeManagerHostname"], "cpus": int(n["Resources"].get("CPU", 0)),
                       "gpus": int(n["Resources"].get("GPU", 0))} for n in ray.nodes() if n["Alive"]]
        return self

    def __exit__(self, *exc) -> None:
        if self._ray is not None:
            self._ray.shutdown()  # stops a cluster started here; leaves a joined one running
            self._ray = None

    def resources(self, device: Device) -> tuple[int, int]:
        """(CPUs, GPUs) one cell asks for."""
        if device.type == "cuda":
            return self.cell_cpus or 1, 1
        if self.cell_cpus:
            return self.cell_cpus, 0
        cpus = [n["cpus"] for n in self.nodes if n["cpus"]]
        return (min(cpus) if cpus else 1), 0

    def describe(self, device: Device | None = None) -> dict:
        from bench.planning import Device
        cpus, gpus = self.resources(device or Device("cpu"))
        shared = (any(n["cpus"] >= 2 * cpus for n in self.nodes) if gpus == 0
                  else any(n["gpus"] >= 2 for n in self.nodes))
        return {"name": self.name, "address": self.address or "a private local cluster started for the run",
                "cluster": self.cluster, "timeout_s": self.timeout_s,
                "nodes": self.nodes, "cell_cpus": cpus, "cell_gpus": gpus, "cells_may_share_node": shared,
                "retries": self.retries, "data": "loaded and verified by the driver, shipped via ray.put"}

    def run(self, cells: Iterable[Cell], data, device: Device) -> Iterator[tuple[Cell, Outcome]]:
        ray = self._ray
        if ray is None:
            raise ExecutorError("RayExecutor.run outside `with executor:`")
        cpus, gpus = self.resources(device)
        task = ray.remote(max_calls=1)(_ray_cell)  # a fresh worker process for every cell
        options = dict(num_cpus=cpus, num_gpus=gpus, max_retries=self.retries, retry_exceptions=False)
        data_ref = ray.put(data)  # once: every task reads it from the object store, on whichever node
        pending = {task.options(name=f"bench {cell.run_id}", **options).remote(
                       self.train, cell.config, cell.backend, cell.seed, data_ref, device, cpus, self.timeout_s): cell
                   for cell in cells}
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    yield pending.pop(ref), self._outcome(ref)
        finally:
            for ref in pending:  # the driver was interrupted: its cells must not run on unseen
                ray.cancel(ref, force=True)

    def _outcome(self, ref) -> Outcome:
        ray = self._ray
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as error:  # the cell raised: its own message, as locally
            cause = error.cause if isinstance(error.cause, BaseException) else error
            from bench.ray_cluster import CellTimedOut
            return Failed(str(cause) if isinstance(cause, CellTimedOut) else one_line(cause))
        except ray.exceptions.RayError as error:  # the worker or its node died, or Ray could not run it
            return Failed(f"ray worker died: {one_line(error)}")


# --- choosing one -----------------------------------------------------------------------------------

def create(name: str, *, env: dict[str, str], ray_address: str | None = None, cell_cpus: int | None = None,
           retries: int = 0, timeout_s: float | None = None,
           connect_timeout_s: float = 60.0) -> LocalExecutor | RayExecutor:
    """Checks the executor flags (ValueError, one line) and builds the executor; starts nothing.
    `timeout_s` (config.timeout; None: no limit) bounds each cell, local or on Ray; `connect_timeout_s`
    bounds joining a Ray cluster."""
    if name not in NAMES:
        raise ValueError(f"--executor must be one of: {', '.join(NAMES)}; got {name!r}")
    if retries < 0:
        raise ValueError(f"--retries must be 0 or more, got {retries}")
    if cell_cpus is not None and cell_cpus <= 0:
        raise ValueError(f"--cell-cpus must be a positive integer, got {cell_cpus}")
    if not 0 < connect_timeout_s < float("inf"):
        raise ValueError(f"--ray-connect-timeout must be a positive number of seconds, got {connect_timeout_s:g}")
    if name == "local":
        if ray_address or cell_cpus:
            raise ValueError("--ray-address and --cell-cpus need --executor ray")
        return LocalExecutor(env=env, retries=retries, timeout_s=timeout_s)
    return RayExecutor(address=ray_address or os.environ.get("RAY_ADDRESS") or None, cell_cpus=cell_cpus,
                       retries=retries, env=env, timeout_s=timeout_s, connect_timeout_s=connect_timeout_s)

