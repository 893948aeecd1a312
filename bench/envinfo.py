"""Provenance recorded with every result: versions, hardware, threads, git commit."""
from __future__ import annotations

import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git(args: list[str], where: Path) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=where, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_state(where: Path | None = None) -> tuple[str, str]:
    """(commit, repository top level) of the git repository holding `where` (default: the current
    directory, where the user runs the benchmark from), then of this package's own checkout (an
    editable install run from elsewhere); ("unknown", "") when neither is in a repository.
    A commit with uncommitted changes to tracked files ends in -dirty."""
    package = Path(__file__).resolve().parent
    for place in ([where] if where is not None else [Path.cwd(), package]):
        top = _git(["rev-parse", "--show-toplevel"], place)
        commit = _git(["rev-parse", "HEAD"], place) if top else None
        if commit:
            dirty = _git(["status", "--porcelain", "--untracked-files=no"], place)
            return commit + ("-dirty" if dirty else ""), top or ""
    return "unknown", ""


def _triton_version() -> str | None:
    try:
        import triton
    except ImportError:
        return None
    return triton.__version__


def torch_facts() -> dict:
    """What env.json says about torch, Triton and the GPUs (imports torch and triton: seconds): `bench run` asks
    a worker for these when its runs are isolated, so that the driver never imports torch
    (bench.executors.torch_side)."""
    import torch
    cuda = torch.cuda.is_available()
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else []
    return {"torch": str(torch.__version__), "cuda": torch.version.cuda,  # str: a TorchVersion needs torch to unpickle
            "cudnn": torch.backends.cudnn.version() if cuda else None, "gpu_count": len(gpus), "gpu_names": gpus,
            "torch_threads": torch.get_num_threads(), "triton": _triton_version()}


def collect(facts: dict | None = None) -> dict:
    """Provenance: `facts` is torch_facts() as a worker saw it (default: this process's, importing torch here)."""
    facts = torch_facts() if facts is None else facts
    commit, repo = git_state()
    return {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": facts["torch"],
        "cuda": facts["cuda"],
        "cudnn": facts["cudnn"],
        "triton": facts["triton"],
        "gpu_count": facts["gpu_count"],
        "gpu_names": facts["gpu_names"],
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": facts["torch_threads"],
        "triton_interpret": os.environ.get("TRITON_INTERPRET") == "1",
        "git_commit": commit,
        # when the commit was made (committer date): `bench history` orders results by it
        "git_commit_time": _git(["show", "-s", "--format=%cI", "HEAD"], Path(repo)) if repo else None,
        "git_repo": repo,   # which repository git_commit is from
    }
