"""The CLI: python -m bench (or the `lstm-bench` script) COMMAND ...; COMMANDS below lists them.

Each subcommand lives in its module as `cli(argv) -> exit code`; bad input exits 2 with one line.
"""
from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "list": ("bench.backends", "list every backend and whether it can run here"),
    "check": ("bench.check_command", "check one backend against torch.nn.LSTM: outputs, states, gradients"),
    "data": ("bench.data.command", "fetch and verify MNIST"),
    "run": ("bench.run_command", "train backends on MNIST and record results"),
    "report": ("bench.analysis.report", "write report.md/html and plots for a results directory"),
    "compare": ("bench.analysis.compare", "compare results directory B against A"),
    "history": ("bench.analysis.history", "results across commits and machines: regressions and improvements"),
    "doctor": ("bench.doctor", "list what is wrong with a results directory; repair what loses nothing"),
    "bench-compare": ("bench.microbench", "compare saved pytest-benchmark runs"),
    "gpu-check": ("bench.gpu_check", "on a CUDA machine: kernel parity, what ran, and timings"),
    "kernels": ("bench.kernels", "compile the Triton kernels for sm_80/86/89/90 and tabulate their resources"),
    "bench-gate": ("bench.gate", "fail when a backend's ratio to cudnn grew past the committed baseline's"),
}


def usage() -> str:
    lines = ["usage: lstm-bench COMMAND [ARGS]   (or: python -m bench COMMAND [ARGS])", "", "commands:"]
    lines += [f"  {name:<14} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"error: unknown command {command!r}; expected one of: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    return module.cli(rest)


if __name__ == "__main__":
    sys.exit(main())
