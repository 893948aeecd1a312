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
