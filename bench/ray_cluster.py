"""The Ray cluster a run uses: joined or started in bounded time, and named; and the time limit of a Ray cell.

    description = connect(ray, address, num_cpus=..., runtime_env=..., timeout_s=60)
    with time_limit(seconds): ...     # inside a Ray task: CellTimedOut once the cell is past its --timeout

Without an address the run starts a private local cluster (ray.init(address="local")), whatever else runs
on the machine: a plain ray.init() joins a cluster found through Ray's temp files instead, and a cluster the
user started with `ray start --head` (or one killed without `ray stop`, whose stale file stays behind) made it
fail with "When connecting to an existing cluster, num_cpus and num_gpus must not be provided". The user's
cluster is left alone.

Joining an address is bounded: Ray retries an unreachable address for many minutes (127.0.0.1:1 was still
retrying after ten), so the address is first probed with one TCP connection, then joined in a helper thread
that is abandoned, with one error line, once `timeout_s` has passed.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading


class ClusterError(RuntimeError):
    """No cluster within the time allowed, or none at the address: one line for the user."""


class CellTimedOut(Exception):
    """Raised inside a Ray cell at its time limit; the row says "timed out after N s", as a local cell's does."""


def host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of "host:port", "ray://host:port" or "[v6]:port"; None for "auto" or anything without a port."""
    rest = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return None
    return host.strip("[]"), int(port)


def probe(address: str, timeout_s: float) -> None:
    """One TCP connection to the address: a refused or unreachable one fails now, not after Ray's retries."""
    target = host_port(address)
    if target is None:
        return
    try:
        with socket.create_connection(target, timeout=timeout_s):
            pass
    except OSError as error:
        why = ("no answer within the time allowed" if isinstance(error, socket.timeout)
               else (error.strerror or str(error)))
        raise ClusterError(f"nothing answers at {address} ({why}); is the cluster up? `ray status` on its head "
                           "node shows its address") from None


def connect(ray, address: str | None, *, num_cpus: int | None, runtime_env: dict, timeout_s: float) -> str:
    """Joins the cluster at `address`, or starts a private local one; returns which, in words."""
    if not address:
        ray.init(address="local", num_cpus=num_cpus or os.cpu_count(), runtime_env=runtime_env,
                 include_dashboard=False, logging_level="WARNING")
        cpus = int(ray.cluster_resources().get("CPU", 0))
        return (f"a private local Ray cluster started for this run ({cpus} CPUs; any other Ray cluster on this "
                "machine is left alone)")
    probe(address, min(timeout_s, 10.0))
    _bounded(lambda: ray.init(address=address, runtime_env=runtime_env, logging_level="WARNING", log_to_driver=True),
             timeout_s, f"no connection to the Ray cluster at {address} within {timeout_s:g} s (--ray-connect-timeout)")
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    gcs = ray.get_runtime_context().gcs_address
    return f"the Ray cluster at {address} (GCS {gcs}, {len(nodes)} node(s))"


def _bounded(call, timeout_s: float, late: str) -> None:
    """call() in a daemon thread; ClusterError(late) if it has not returned within timeout_s. The thread
    is abandoned (Ray cannot be interrupted mid-connect) and ends with the process."""
    outcome: dict[str, BaseException] = {}

    def attempt() -> None:
        try:
            call()
        except BaseException as error:  # handed to the caller's thread
            outcome["error"] = error

    quiet = logging.getLogger("ray._private.worker")  # "SIGTERM handler is not set ...": true, and beside the point
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        helper = threading.Thread(target=attempt, name="ray-connect", daemon=True)
        helper.start()
        helper.join(timeout_s)
    finally:
        quiet.setLevel(level)
    if helper.is_alive():
        raise ClusterError(late)
    if "error" in outcome:
        raise outcome["error"]


# Past the limit, a cell stuck in native code never returns to Python to see its CellTimedOut: this long
# after the limit, its worker process is killed instead (the row then says the Ray worker died).
HARD_KILL_GRACE_S = 60.0


@contextlib.contextmanager
def time_limit(seconds: float | None, grace_s: float = HARD_KILL_GRACE_S):
    """Within a Ray task (run on its worker's main thread): CellTimedOut once `seconds` have passed."""
    if not seconds:
        yield
        return

    def expire(signum, frame):
        raise CellTimedOut(f"timed out after {seconds:g} s")

    done = threading.Event()

    def last_resort():
        if not done.wait(seconds + grace_s):
            print(f"bench: cell still running {grace_s:g} s past its time limit of {seconds:g} s, outside Python; "
                  "killing its worker", file=sys.stderr, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

    previous = signal.signal(signal.SIGALRM, expire)
    threading.Thread(target=last_resort, name="cell-watchdog", daemon=True).start()
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        done.set()
