"""What a run sends back from its worker: plain data, no tensors. A module without torch, so that the driver
unpickles the result without importing torch (bench.data.handle: on the local executor it never does)."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RunResult:
    metrics: dict        # the measured columns of runs.csv
    curve: list[dict]    # curves.csv rows, without the run key
    steps: list[dict]    # steps.csv rows, without the run key
    correct: object = None  # per-image correctness on the test set (numpy bools), for compare's paired test
    where: dict = field(default_factory=dict)  # where it ran: host, device, threads (bench.executors.run_cell)
