"""The package's modules import each other without a cycle, counting imports inside
functions too: every module can be read (and loaded) from the bottom up."""

import ast
from pathlib import Path

import deepinterest

ROOT = Path(deepinterest.__file__).parent


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _targets(module: str, path: Path, node: ast.AST, known: dict[str, Path]) -> list[str]:
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level \
            else []
        stem = ".".join(base + ([node.module] if node.module else []))
        names = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in known else stem
                 for a in node.names]
    found = []
    for name in names:
        while name not in known and "." in name:
            name = name.rsplit(".", 1)[0]
        if name in known and name != module:
            found.append(name)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports (the parent packages' implicit imports
    aside: ``deepinterest/__init__`` re-exports the API, so every module would reach it)."""
    known = _modules()
    return {module: {target for node in ast.walk(ast.parse(path.read_text("utf-8")))
                     if isinstance(node, (ast.Import, ast.ImportFrom))
                     for target in _targets(module, path, node, known)}
            for module, path in known.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the modules along it, or None (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_the_graph_sees_imports_inside_functions():
    graph = import_graph()
    assert "deepinterest.registry" in graph["deepinterest.schemas.sids"]  # load_quantizer's
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_imports_itself_back():
    assert _cycle(import_graph()) is None
