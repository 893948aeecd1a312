"""How much of the machine a run really had: contention detected, recorded and flagged.

Around the training loop of every run (`Watch`):

  cpu_share     CPU time the process got ÷ CPU time it was ready to use, summed over its threads: each
                thread's on-CPU time and run-queue wait from /proc/self/task/*/schedstat, share =
                run ÷ (run + wait). A thread that is idle (waiting for work, for the GPU, for I/O) is not
                ready to run and counts for nothing, so a quiet run is near 1 whatever its thread count.
                Where schedstat is missing: process CPU time ÷ (wall time × threads), which reads low
                on a quiet machine when threads sit idle (small matrices are not split across threads);
                `cpu_share_method` says which.
  others_cores  cores' worth of CPU that other processes (and a hypervisor's other guests: steal) used
                meanwhile, from /proc/stat minus this process's own CPU time: a neighbour on another
                core does not take this process's CPU, but shares caches, memory bandwidth and, on SMT,
                the core itself.
  load_start, load_end   the 1-minute load average (os.getloadavg) before and after.
  gpu_shared    CUDA: another process had a context on the run's GPU (nvidia-smi), before or after
                the loop; empty where that cannot be known (no nvidia-smi, or a container that hides
                the processes: then even this one is missing from the list).
  contended     cpu_share < CONTENDED_SHARE, or others_cores > CONTENDED_OTHERS, or gpu_shared.

`wait_until_quiet` is `bench run --quiet-machine`: before a cell, it waits (up to a limit, saying why)
until other processes use less than QUIET_OTHERS cores and no other process holds the GPU.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

CONTENDED_SHARE = 0.8   # a run that got less than 80 % of the CPU it was ready to use was contended
CONTENDED_OTHERS = 0.5  # ... or ran beside half a core or more of other work, on average
QUIET_OTHERS = 0.25     # --quiet-machine: quiet once other work stays under a quarter of a core
QUIET_SAMPLE_S = 1.0    # --quiet-machine: one look at the machine takes this long
QUIET_LIMIT_S = 300.0   # --quiet-machine: the longest wait before a cell runs anyway (recorded)
SCHEDSTAT_METHOD = "schedstat: run ÷ (run + run-queue wait), all threads"
WALL_METHOD = "process CPU time ÷ (wall time × threads)"


# ------------------------------------------------------------------ reading the machine

def thread_schedstats(task_dir: str = "/proc/self/task") -> dict[str, tuple[int, int]] | None:
    """{thread id: (ns on CPU, ns waiting on a run queue)} for every thread of this process; None without schedstat."""
    stats = {}
    try:
        for tid in os.listdir(task_dir):
            try:
                fields = Path(task_dir, tid, "schedstat").read_text().split()
            except FileNotFoundError:  # the thread ended meanwhile
                continue
            stats[tid] = (int(fields[0]), int(fields[1]))
    except (OSError, ValueError, IndexError):
        return None
    return stats or None


def machine_busy_s(stat: str = "/proc/stat") -> float | None:
    """Seconds of non-idle CPU time (steal included) summed over all CPUs since boot; None where unknown."""
    try:
        with open(stat) as handle:
            fields = [int(v) for v in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")  # user..steal; guest is inside user


def load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _smi_id(device_index: int) -> str:
    """nvidia-smi's name for torch's device `device_index`: its UUID where torch can say (CUDA_VISIBLE_DEVICES
    renumbers torch's devices, not nvidia-smi's), else the index."""
    torch = sys.modules.get("torch")
    try:
        return f"GPU-{torch.cuda.get_device_properties(device_index).uuid}" if torch else str(device_index)
    except Exception:  # no CUDA here, or an older torch without .uuid
        return str(device_index)


def gpu_processes(device_index: int = 0) -> set[int] | None:
    """Process ids with a context on GPU `device_index` (nvidia-smi); None where nvidia-smi is missing or fails."""
    if not shutil.which("nvidia-smi"):
        return None
    try:
        done = subprocess.run(["nvidia-smi", "-i", _smi_id(device_index), "--query-compute-apps=pid",
                               "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return {int(line) for line in done.stdout.split() if line.strip().isdigit()}


def others_on_gpu(device_index: int, ours: set[int]) -> bool | None:
    """True: another process holds the GPU; False: only ours (and we are visible); None: cannot tell."""
    pids = gpu_processes(device_index)
    if pids is None:
        return None
    if pids - ours:
        return True
    return False if pids & ours else None  # our own context not listed: the list is blind (a container)


# ------------------------------------------------------------------ one run

def is_contended(cpu_share: float | None, others_cores: float | None, gpu_shared: bool | None) -> bool:
    return bool((cpu_share is not None and cpu_share < CONTENDED_SHARE)
                or (others_cores is not None and others_cores > CONTENDED_OTHERS) or gpu_shared)


class Watch:
    """`with Watch(device, threads) as watch: <the timed loop>`, then `watch.columns()` for the row."""

    def __init__(self, device_type: str = "cpu", device_index: int | None = None, threads: int = 1) -> None:
        self.device_type, self.device_index, self.threads = device_type, device_index or 0, max(threads, 1)
        self.gpu_shared: bool | None = None

    def __enter__(self) -> Watch:
        self.load_start = load_average()
        if self.device_type == "cuda":
            self.gpu_shared = others_on_gpu(self.device_index, {os.getpid()})
        self._sched, self._busy = thread_schedstats(), machine_busy_s()
        self._cpu, self._wall = time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        wall, cpu = time.perf_counter() - self._wall, time.process_time() - self._cpu
        sched, busy = thread_schedstats(), machine_busy_s()
        self.load_end = load_average()
        self.cpu_share, self.method = self._share(sched, cpu, wall)
        self.others_cores = (max(0.0, (busy - self._busy - cpu) / wall)
                             if busy is not None and self._busy is not None and wall > 0 else None)
        if self.device_type == "cuda":
            after = others_on_gpu(self.device_index, {os.getpid()})
            self.gpu_shared = None if after is None and self.gpu_shared is None else bool(self.gpu_shared or after)

    def _share(self, sched, cpu: float, wall: float) -> tuple[float | None, str]:
        if sched is not None and self._sched is not None:
            run = wait = 0
            for tid, (run_end, wait_end) in sched.items():
                run_start, wait_start = self._sched.get(tid, (0, 0))
                run, wait = run + run_end - run_start, wait + wait_end - wait_start
            if run + wait > 0:
                return run / (run + wait), SCHEDSTAT_METHOD
        return (min(1.0, cpu / (wall * self.threads)) if wall > 0 else None), WALL_METHOD

    def columns(self) -> dict:
        rounded = lambda v: None if v is None else round(v, 4)  # noqa: E731
        return {"cpu_share": rounded(self.cpu_share), "others_cores": rounded(self.others_cores),
                "load_start": self.load_start, "load_end": self.load_end, "gpu_shared": self.gpu_shared,
                "contended": is_contended(self.cpu_share, self.others_cores, self.gpu_shared),
                "cpu_share_method": self.method}


# ------------------------------------------------------------------ --quiet-machine

@dataclass
class Look:
    others_cores: float           # other processes' CPU over the sample, in cores
    top: list[tuple[str, float]]  # the busiest other processes: ("name pid N", cores)
    gpu_others: bool = False

    @property
    def quiet(self) -> bool:
        return self.others_cores < QUIET_OTHERS and not self.gpu_others

    def reason(self) -> str:
        parts = []
        if self.others_cores >= QUIET_OTHERS:
            busiest = ", ".join(f"{name} {cores:.2f}" for name, cores in self.top) or "no single process stands out"
            parts.append(f"other processes use {self.others_cores:.2f} cores (busiest: {busiest})")
        if self.gpu_others:
            parts.append("another process holds the GPU")
        return "; ".join(parts) or "quiet"


def _cpu_seconds(processes) -> dict[int, tuple[str, float]]:
    times = {}
    for process in processes:
        try:
            cpu = process.cpu_times()
            times[process.pid] = (process.name(), cpu.user + cpu.system)
        except Exception:  # psutil.Error: the process ended or is not ours to read
            continue
    return times


def look(sample_s: float = QUIET_SAMPLE_S, gpu_index: int | None = None) -> Look:
    """Other processes' CPU use over `sample_s` seconds, this process and its children left out."""
    import psutil
    me = psutil.Process()
    ours = {me.pid, *(child.pid for child in me.children(recursive=True))}
    busy_before, before = machine_busy_s(), _cpu_seconds(psutil.process_iter())
    time.sleep(sample_s)
    busy_after, after = machine_busy_s(), _cpu_seconds(psutil.process_iter())
    used = {pid: (name, seconds - before[pid][1]) for pid, (name, seconds) in after.items() if pid in before}
    own = sum(seconds for pid, (_, seconds) in used.items() if pid in ours)
    if busy_before is not None and busy_after is not None:
        others = max(0.0, (busy_after - busy_before - own) / sample_s)
    else:
        others = sum(seconds for pid, (_, seconds) in used.items() if pid not in ours) / sample_s
    top = sorted(((f"{name} pid {pid}", seconds / sample_s) for pid, (name, seconds) in used.items()
                  if pid not in ours and seconds > 0.02 * sample_s), key=lambda item: -item[1])[:3]
    gpu = bool(gpu_index is not None and (others_on_gpu(gpu_index, ours) or False))
    return Look(others, top, gpu)


def wait_until_quiet(limit_s: float, log: Callable[[str], None], what: str = "the next run",
                     gpu_index: int | None = None, looker: Callable[[], Look] | None = None) -> tuple[float, bool]:
    """Waits until the machine is quiet or `limit_s` has passed; returns (seconds waited, quiet at the end).
    Says why it waits, then every 30 s how it stands, then how the wait ended."""
    looker = looker or (lambda: look(gpu_index=gpu_index))
    started = time.perf_counter()
    seen = looker()
    if seen.quiet:
        return time.perf_counter() - started, True
    log(f"quiet-machine: waiting (up to {limit_s:.0f} s) before {what}: {seen.reason()}")
    said = time.perf_counter()
    while time.perf_counter() - started < limit_s:
        seen = looker()
        if seen.quiet:
            waited = time.perf_counter() - started
            log(f"quiet-machine: quiet after {waited:.0f} s")
            return waited, True
        if time.perf_counter() - said >= 30:
            log(f"quiet-machine: still waiting ({time.perf_counter() - started:.0f} s): {seen.reason()}")
            said = time.perf_counter()
    waited = time.perf_counter() - started
    log(f"quiet-machine: not quiet after {waited:.0f} s ({seen.reason()}); running anyway, the row records it")
    return waited, False


def paced(cells, handed: dict, quiet_limit_s: float | None, log: Callable[[str], None],
          gpu_index: int | None = None):
    """Yields `cells` one at a time, noting in handed[run_id] when each went to the executor ("at"); with
    quiet_limit_s, first waits for a quiet machine and notes the row's quiet_wait_s ("columns") and whether it
    became quiet ("quiet"). The local executor takes a cell when the previous one is done, so each wait
    comes right before its own cell."""
    for cell in cells:
        entry = handed.setdefault(cell.run_id, {})
        if quiet_limit_s is not None:
            waited, entry["quiet"] = wait_until_quiet(quiet_limit_s, log, cell.run_id, gpu_index)
            entry["columns"] = {"quiet_wait_s": round(waited, 2)}
        entry["at"] = time.time()
        yield cell


def summary_note(row: dict) -> str:
    """For the console line of a finished run: what it shared the machine with, if it did."""
    if row.get("contended") is not True:
        return ""
    parts = [f"cpu share {row['cpu_share']:.0%}" if row.get("cpu_share") is not None else "",
             f"other work {row['others_cores']:.2f} cores" if row.get("others_cores") is not None else "",
             "another process on the GPU" if row.get("gpu_shared") else ""]
    return "  CONTENDED (" + ", ".join(p for p in parts if p) + ")"
