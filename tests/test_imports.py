"""No module of bench/ imports another in a circle, counting imports inside functions too."""
from __future__ import annotations

from pathlib import Path

from tests.fixtures.import_graph import find_cycle, import_graph

ROOT = Path(__file__).resolve().parent.parent


def test_bench_has_no_import_cycle():
    graph = import_graph(ROOT / "bench")
    assert "bench.analysis.results" in graph and "bench.analysis.report" in graph
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_readers_go_through_the_results_model():
    graph = import_graph(ROOT / "bench")
    for reader in ("bench.analysis.plots", "bench.analysis.compare"):
        assert "bench.analysis.report" not in graph[reader], reader
        assert "bench.analysis.results" in graph[reader], reader
    # the report draws the plots (a function-level import)
    assert "bench.analysis.plots" in graph["bench.analysis.report"]


def test_the_walk_finds_a_cycle_hidden_in_a_function(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg import b\n")
    (package / "b.py").write_text("from .sub import c\n")
    (package / "sub" / "c.py").write_text("def f():\n    from ..a import thing\n")
    graph = import_graph(package)
    assert graph["pkg.b"] == {"pkg.sub.c"} and graph["pkg.sub.c"] == {"pkg.a"}
    assert set(find_cycle(graph)) == {"pkg.a", "pkg.b", "pkg.sub.c"}


# What the torch-free analysis side may reach, transitively: itself and the harness's plain-data tables.
ANALYSIS_MAY_IMPORT = {"bench", "bench.config", "bench.metrics", "bench.schema", "bench.storage", "bench.atomic",
                       "bench.cliargs", "bench.predictions"}


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def test_history_reaches_only_the_analysis_side():
    graph = import_graph(ROOT / "bench")
    for module in ("bench.analysis.history", "bench.analysis.history_report", "bench.analysis.history_plots"):
        outside = {m for m in reachable(graph, module)
                   if not m.startswith("bench.analysis") and m not in ANALYSIS_MAY_IMPORT}
        assert not outside, f"{module} reaches {sorted(outside)}"
