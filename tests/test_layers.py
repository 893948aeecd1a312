"""The layer contract: which parts of the harness may import which, stated here and checked two ways.

1. The analysis side (bench/analysis: results, headline, stats, report, plots, figures, render, compare)
   reads result files. Directly or through any module it imports (imports inside functions count), it
   reaches only ANALYSIS_MAY_IMPORT and its own package: never torch or triton, never the backends
   (impls, except impls.registry: the registry table as plain data), never the run side (train, runner,
   executors, isolate, planning, model, numerics, profiling, timing, peak, data, ...).
2. Nothing below the command line imports the command-line parser (bench.cliargs) or a command module:
   only the commands (modules that define `cli(argv)`) and bench.__main__ may. The layers below raise
   their own errors; the commands turn them into one line and exit 2.

Each check is also run on a copy of the code with a violation planted, to show it fails when broken.
And every bench module stays short enough to read in one sitting (400 lines, 60 a function).
"""
from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.import_graph import external_imports, import_graph, reachable

ROOT = Path(__file__).resolve().parent.parent

ANALYSIS = "bench.analysis"
# What the analysis side may read: the results format (schema, storage, the checks on its files, and the atomic
# writes and per-image store under it), the config and metric tables (with the config's file reader), the shared
# constants, bounded error text, its commands' parser, and the backend registry's table.
ANALYSIS_MAY_IMPORT = {"bench", "bench.schema", "bench.storage", "bench.validate", "bench.atomic", "bench.predictions",
                       "bench.config", "bench.config_file", "bench.metrics", "bench.constants", "bench.brief",
                       "bench.cliargs", "impls.registry"}
NEVER_IN_ANALYSIS = {"torch", "triton"}
PARSER = "bench.cliargs"


def analysis_violations(root: Path) -> list[str]:
    """One line per module the analysis side reaches but must not, and per torch/triton import it reaches."""
    packages = (root / "bench", root / "impls")
    graph, external = import_graph(*packages), external_imports(*packages)
    problems = set()
    for module in (m for m in graph if m == ANALYSIS or m.startswith(ANALYSIS + ".")):
        reached = reachable(graph, module)
        problems |= {f"{module} reaches {other}" for other in reached
                     if not other.startswith(ANALYSIS) and other not in ANALYSIS_MAY_IMPORT}
        problems |= {f"{module} reaches {library} (imported by {other})" for other in reached | {module}
                     for library in external[other] & NEVER_IN_ANALYSIS}
    return sorted(problems)


def commands(root: Path) -> set[str]:
    """The command modules: those defining a top-level `cli` function (bench/__main__.py dispatches to them)."""
    found = set()
    for path in (root / "bench").rglob("*.py"):
        tree = ast.parse(path.read_text())
        if any(isinstance(node, ast.FunctionDef) and node.name == "cli" for node in tree.body):
            parts = list(path.relative_to(root).with_suffix("").parts)
            found.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return found


def parser_violations(root: Path) -> list[str]:
    """One line per module below the command line that imports the parser or a command module."""
    graph, command_modules = import_graph(root / "bench"), commands(root)
    allowed = command_modules | {"bench.__main__", PARSER}
    return sorted(f"{module} imports {target}" for module, targets in graph.items() if module not in allowed
                  for target in targets & (command_modules | {PARSER}))


def test_the_analysis_side_reaches_no_torch_no_backend_and_no_run_side():
    assert analysis_violations(ROOT) == []


def test_below_the_command_line_nothing_imports_the_parser():
    found = commands(ROOT)
    assert {"bench.run_command", "bench.gpu_check", "bench.backends", "bench.data.command",
            "bench.analysis.report", "bench.analysis.compare"} <= found
    assert not {"bench.runner", "bench.planning", "bench.rundir", "bench.data"} & found
    assert parser_violations(ROOT) == []


def test_the_registry_table_is_plain_data():
    graph, external = import_graph(ROOT / "impls"), external_imports(ROOT / "impls")
    assert graph["impls.registry"] == set() and external["impls.registry"] <= {"__future__", "dataclasses"}


@pytest.fixture
def planted(tmp_path):
    """A copy of bench/ and impls/ to break on purpose: plant(path, line) appends an import to one module."""
    for package in ("bench", "impls"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))

    def plant(relative: str, line: str) -> Path:
        path = tmp_path / relative
        path.write_text(path.read_text() + f"\n{line}\n")
        return tmp_path
    return plant


def test_the_analysis_check_fails_when_an_analysis_module_imports_torch(planted):
    root = planted("bench/analysis/stats.py", "import torch")
    problems = analysis_violations(root)
    assert "bench.analysis.stats reaches torch (imported by bench.analysis.stats)" in problems
    assert "bench.analysis.compare reaches torch (imported by bench.analysis.stats)" in problems


def test_the_analysis_check_fails_on_a_run_side_or_backend_import_even_inside_a_function(planted):
    root = planted("bench/analysis/headline.py", "def f():\n    from bench import runner\n    import impls.loop")
    problems = analysis_violations(root)
    assert "bench.analysis.headline reaches bench.runner" in problems
    assert "bench.analysis.headline reaches impls.loop" in problems
    assert any(p.startswith("bench.analysis.headline reaches torch") for p in problems)


def test_the_parser_check_fails_when_a_lower_layer_imports_it(planted):
    root = planted("bench/planning.py", "from bench.cliargs import UsageError")
    assert parser_violations(root) == ["bench.planning imports bench.cliargs"]
    root = planted("bench/runner.py", "def f():\n    from bench.analysis.report import write_report")
    assert "bench.runner imports bench.analysis.report" in parser_violations(root)


LOADED = ("import sys; import impls.registry, bench.analysis.report, bench.analysis.compare; "
          "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'triton') "
          "or m.startswith('impls.') and m != 'impls.registry'))")


def loaded_by_the_analysis_side(root: Path) -> str:
    """What importing the report and compare (and the registry) really loads, in a fresh interpreter."""
    env = dict(os.environ, PYTHONPATH=str(root))
    done = subprocess.run([sys.executable, "-c", LOADED], cwd=root, env=env, capture_output=True, text=True,
                          check=True)
    return done.stdout.strip()


def test_importing_report_and_compare_loads_no_torch_and_no_backend():
    assert loaded_by_the_analysis_side(ROOT) == "[]"


@pytest.mark.slow  # its interpreter imports torch: seconds; the static checks above fail on the same plant
def test_the_runtime_check_sees_a_planted_torch_import(planted):
    root = planted("bench/analysis/results.py", "import torch")
    assert "'torch'" in loaded_by_the_analysis_side(root)


MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 60


def test_every_bench_module_reads_in_one_sitting():
    """The project's limits on bench/: no file over 400 lines, no function over 60."""
    long = []
    for path in sorted((ROOT / "bench").rglob("*.py")):
        text = path.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            long.append(f"{path.relative_to(ROOT)}: {len(text.splitlines())} lines")
        long += [f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {node.end_lineno - node.lineno + 1} lines"
                 for node in ast.walk(ast.parse(text)) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                 and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert long == []
