"""The import graph of curate_core: the CLI sits on top (nothing in the core imports it) and there is no cycle.

Every ``import`` / ``from … import`` in every module counts, at module level or inside a function: a lazy import
is still a dependency. ``from pkg import name`` is an edge to ``pkg.name`` when that is a module, else to ``pkg``.
"""

from __future__ import annotations

import ast

from .conftest import REPO

CORE = REPO / "curate_core"


def _module_name(path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in CORE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    src = ".".join(base + ([node.module] if node.module else []))
                else:
                    src = node.module or ""
                targets = [f"{src}.{a.name}" if f"{src}.{a.name}" in modules else src for a in node.names]
            for t in targets:
                while t and t not in modules:  # `import curate_core.x.y` names module x.y; a name inside one → it
                    t = t.rpartition(".")[0]
                if t and t.startswith("curate_core") and t != mod:
                    graph[mod].add(t)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state and (c := visit(n)):
                return c
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (c := visit(m)):
            return c
    return None


def test_the_graph_sees_imports():
    g = import_graph()
    assert "curate_core.store" in g["curate_core.pipeline"] and "curate_core.errors" in g["curate_core.store"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_core_module_imports_the_cli():
    g = import_graph()
    users = sorted(m for m, deps in g.items() if "curate_core.cli" in deps and m not in ("curate_core.__main__",))
    assert users == [], f"core modules import the CLI: {users}"


def test_import_graph_has_no_cycle():
    g = import_graph()
    # the package itself re-exports Workspace for users; no module inside imports the package root
    inner = {m: {d for d in deps if d != "curate_core"} for m, deps in g.items()}
    importers_of_root = sorted(m for m, deps in g.items() if "curate_core" in deps)
    assert importers_of_root == [], f"modules import the package root instead of the module they need: {importers_of_root}"
    cycle = find_cycle(inner)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)
