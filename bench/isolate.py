"""Run a function in a fresh process and bring back its result, or why it has none.

Each training run gets its own process so that (1) a crash that takes a process down (a segfault in
a kernel, a poisoned CUDA context, the OOM killer) becomes one failed row instead of the end of the
whole benchmark, and (2) memory is measured from a clean start: in a shared process the allocator
reuses what earlier runs freed, and later runs show no growth at all.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
import traceback

import torch.multiprocessing as mp  # registers tensor pickling through shared memory


class WorkerError(RuntimeError):
    """The function raised in the worker; the message is the worker's one-line description."""


class WorkerDied(RuntimeError):
    """The worker ended without sending a result."""


class WorkerTimedOut(WorkerDied):
    """The worker ran past its time limit and was killed."""


def _describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _exit_with_parent(parent: int) -> None:
    """A worker whose runner was killed must not train on unseen: its result has nowhere to go."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _worker(connection, function, args, parent: int) -> None:
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    try:
        result = function(*args)
    except BaseException as error:  # everything goes back to the parent as a message
        traceback.print_exc(file=sys.stderr)
        connection.send(("error", f"{type(error).__name__}: {error}".strip().splitlines()[0]))
    else:
        connection.send(("ok", result))
    finally:
        connection.close()


@contextlib.contextmanager
def _environment(env: dict[str, str]):
    """Sets variables for the worker to inherit at start, then restores this process's own."""
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


def call_in_subprocess(function, *args, env: dict[str, str] | None = None, timeout_s: float | None = None):
    """function(*args) in a spawned process (CUDA-safe). `function` must be importable by name; tensor
    arguments travel through shared memory, but the result should be plain data, since tensors made
    in the worker vanish with it. `env` adds variables the worker starts with (read at its start-up,
    like the C allocator's). `timeout_s` (None or 0: no limit): a worker without a result after that
    long, its start included, is killed (WorkerTimedOut), so a hanging backend cannot stall a run."""
    context = mp.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_worker, args=(sender, function, args, os.getpid()), daemon=True)
    with _environment(env or {}):
        process.start()
    sender.close()  # so that recv() sees EOF if the worker dies
    try:
        if timeout_s and not receiver.poll(timeout_s):
            process.kill()
            process.join()
            raise WorkerTimedOut(f"timed out after {timeout_s:g} s")
        status, payload = receiver.recv()
    except EOFError:
        process.join()
        raise WorkerDied(f"worker process died without a result ({_describe_exit(process.exitcode)})") from None
    finally:
        receiver.close()
        if process.is_alive() and not process.join(timeout=30) and process.is_alive():
            process.terminate()
    if status == "error":
        raise WorkerError(payload)
    return payload
