"""Run a function in a fresh process and bring back its result, or why it has none.

Each training run gets its own process so that (1) a crash that takes a process down (a segfault in
a kernel, a poisoned CUDA context, the OOM killer) becomes one failed row instead of the end of the
whole benchmark, and (2) memory is measured from a clean start: in a shared process the allocator
reuses what earlier runs freed, and later runs show no growth at all.

Workers are forked from a pre-warmed server (multiprocessing's forkserver) that has imported torch,
the harness, and the parts of torch that a first optimizer step pulls in (torch._dynamo: ~900
modules, seconds per process), plus Inductor's compiler when the plan compiles (set_preload), so a
worker is ready in a fraction of a second instead of paying a fresh interpreter and those imports on
every run. Starting the server imports no torch here: the runner need not have it. The server only
imports: it starts no thread, runs no op and touches no device, so a fork of it is as safe as a fresh
process, and its heap holds nothing any run allocated, so every worker starts from the same clean
baseline. It is not the runner that is forked: the runner's memory (the data, earlier results) never reaches a worker.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.forkserver
import os
import signal
import sys
import threading
import traceback

from bench.errors import one_line

# What the server imports before it forks anyone. Import only: a thread or a CUDA context in the
# server would be copied, broken, into every worker. torch._dynamo is here for every backend: torch.optim
# imports it (with part of torch._inductor) the first time an optimizer takes its parameters
# (Optimizer.add_param_group is wrapped in torch._compile._disable_dynamo), seconds in every worker.
PRELOAD = ("torch", "torch.multiprocessing", "torch._dynamo", "bench.train")
# What torch.compile adds on its first call (~600 modules, seconds): preloaded only for a plan that compiles.
COMPILE_PRELOAD = ("torch._inductor.compile_fx", "impls.compiled")

_server: tuple | None = None  # (preload, env) the running server was started with
_preload: tuple[str, ...] = PRELOAD  # what the next server imports (set_preload)


def set_preload(modules: tuple[str, ...]) -> None:
    """What the worker server imports from now on (a running server with other imports is restarted when next
    used). The runner sets it from the plan: COMPILE_PRELOAD only when a backend compiles."""
    global _preload
    _preload = tuple(modules)


class WorkerError(RuntimeError):
    """The function raised in the worker; the message is the worker's one-line description."""


class WorkerDied(RuntimeError):
    """The worker ended without sending a result."""


class WorkerTimedOut(WorkerDied):
    """The worker was still running when its time was up, and was killed."""


def _describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _exit_with_parent() -> None:
    """A worker whose runner was killed must not train on unseen: its result has nowhere to go.
    The runner holds the write end of a pipe to the worker (multiprocessing's parent sentinel);
    the kernel closes it when the runner dies, however it dies."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    parent.join()  # returns once the sentinel reads end-of-file
    os._exit(1)


def _worker(connection, function, args, env: dict[str, str]) -> None:
    # The server started with `env`, so the C allocator read it at start-up; Python readers see it here too.
    os.environ.update(env)
    threading.Thread(target=_exit_with_parent, daemon=True).start()
    try:
        result = function(*args)
    except BaseException as error:  # everything goes back to the parent as a message
        traceback.print_exc(file=sys.stderr)
        connection.send(("error", one_line(error)))
    else:
        connection.send(("ok", result))
    finally:
        connection.close()


@contextlib.contextmanager
def _environment(env: dict[str, str]):
    """Sets variables for a child to inherit at start, then restores this process's own."""
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def start_server(env: dict[str, str] | None = None, preload: tuple[str, ...] | None = None) -> None:
    """Starts the fork server with `env` in its environment, or restarts it if it runs with another
    (variables such as glibc's MALLOC_* are read once, at process start). Returns at once: the
    server imports in the background, so calling this early overlaps that with the caller's work.
    `preload`: what it imports (default: set_preload's, else PRELOAD)."""
    global _server
    preload = _preload if preload is None else preload
    wanted = (tuple(preload), tuple(sorted((env or {}).items())))
    server = multiprocessing.forkserver._forkserver
    if _server is not None and _server != wanted:
        server._stop()  # type: ignore[attr-defined]  # private, but the only way to start the next one with a new environment
    multiprocessing.get_context("forkserver").set_forkserver_preload(list(preload))  # no torch needed here
    with _environment(env or {}):
        server.ensure_running()  # also relaunches a server that died, with the same environment
    _server = wanted


def call_in_subprocess(function, *args, env: dict[str, str] | None = None, timeout_s: float | None = None):
    """function(*args) in a worker forked from the pre-warmed server (CUDA-safe: nothing in the server
    has touched a device). `function` must be importable by name; tensor arguments travel through
    shared memory, but the result should be plain data, since tensors made in the worker vanish with
    it. `env` holds variables the worker starts with (the server is restarted if it ran with others).
    `timeout_s`: a worker still running after that long is killed (WorkerTimedOut)."""
    if "torch" in sys.modules:  # tensor arguments travel through shared memory once this registers their pickling;
        import torch.multiprocessing  # noqa: F401  # without torch here no argument is a tensor, and the driver
    env = env or {}                   # need not import it (bench.data.handle)
    start_server(env)
    context = multiprocessing.get_context("forkserver")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_worker, args=(sender, function, args, env), daemon=True)
    with _environment(env):  # should the server need relaunching inside start()
        process.start()
    sender.close()  # so that recv() sees EOF if the worker dies
    try:
        if timeout_s is not None and not receiver.poll(timeout_s):
            _stop(process)
            raise WorkerTimedOut(f"timed out after {timeout_s:g} s")
        status, payload = receiver.recv()
    except EOFError:
        process.join()
        raise WorkerDied(f"worker process died without a result ({_describe_exit(process.exitcode)})") from None
    finally:
        receiver.close()
        if process.is_alive():
            process.join(timeout=30)
            if process.is_alive():
                _stop(process)
    if status == "error":
        raise WorkerError(payload)
    return payload


def _stop(process, grace_s: float = 5.0) -> None:
    process.terminate()
    process.join(grace_s)
    if process.is_alive():
        process.kill()
        process.join()
