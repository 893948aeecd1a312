"""Who imports whom, read from the source with ast: every import statement at any depth (inside functions
too), relative ones resolved. Shared by the import-cycle test and the layer contract (tests/test_layers.py).
"""
from __future__ import annotations

import ast
from pathlib import Path


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(node: ast.AST, name: str, is_package: bool, modules: dict) -> list[str]:
    """The dotted names one import statement brings in, relative ones made absolute."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:  # relative: from the module's package, up level - 1 more
        anchor = name.split(".") if is_package else name.split(".")[:-1]
        anchor = anchor[:len(anchor) - (node.level - 1)]
        base = ".".join(anchor + ([base] if base else []))
    # `from pkg import mod` imports pkg.mod when that is a module, else a name of pkg
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]


def all_imports(*packages: Path) -> dict[str, set[str]]:
    """module -> every dotted name it imports (the packages' own modules and anything else)."""
    modules = {module_name(p, package.parent): p for package in packages for p in package.rglob("*.py")}
    found: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        found[name] = {target for node in ast.walk(tree)
                       for target in _imported(node, name, path.name == "__init__.py", modules)}
    return found


def import_graph(*packages: Path) -> dict[str, set[str]]:
    """module -> the packages' modules it imports (anywhere in the file, at any depth)."""
    found = all_imports(*packages)
    graph = {name: set() for name in found}
    for name, targets in found.items():
        for target in targets:
            while target and target not in found:  # `import bench.x.y` where y is a name
                target = target.rpartition(".")[0]
            if target and target != name:
                graph[name].add(target)
    return graph


def external_imports(*packages: Path) -> dict[str, set[str]]:
    """module -> the top-level names of what it imports from outside the packages (torch, pandas, ...)."""
    own = {package.name for package in packages}
    return {name: {t.split(".")[0] for t in targets if t and t.split(".")[0] not in own}
            for name, targets in all_imports(*packages).items()}


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every module `start` imports, directly or through others (start itself excluded)."""
    seen, todo = set(), [start]
    while todo:
        for nxt in graph[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen - {start}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [node, nxt] if nxt in path else [node, nxt]
            if nxt not in state:
                found = visit(nxt, path + [node])
                if found:
                    return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start, [])
            if found:
                return found
    return None
