"""The package's import graph: no cycles, and every import points down the layer table.

The graph is read from the source (every ``import`` and ``from … import``, also inside functions
and under ``TYPE_CHECKING``), so a cycle hidden behind a lazy import counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import mtlkit

ROOT = Path(mtlkit.__file__).parent

LAYERS = [
    {"mtlkit.atomic", "mtlkit.registry", "mtlkit.version"},
    {"mtlkit.data"},
    {"mtlkit.models"},
    {"mtlkit.tasks"},
    {"mtlkit.balancing"},
    {"mtlkit.training"},
    {"mtlkit.evaluation"},
    {"mtlkit.config"},
    {"mtlkit.workflows"},
    {"mtlkit.cli", "mtlkit.__main__"},
    {"mtlkit", "mtlkit.lightning"},
]
"""DESIGN.md's table, top to bottom: a module may import its own layer and the ones above. The
package itself (``mtlkit.load``) and the optional integrations come last: nothing imports them."""


def _modules() -> dict[str, Path]:
    modules = {}
    for path in ROOT.rglob("*.py"):
        parts = ["mtlkit", *path.relative_to(ROOT).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of ours that ``name`` imports (a submodule where one is named)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            for alias in node.names:
                child = f"{base}.{alias.name}"
                found.add(child if child in modules else base)
    return {module for module in found if module in modules and module != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def _layer(module: str) -> int:
    for level, prefixes in enumerate(LAYERS):
        if module in prefixes or any(module.startswith(f"{p}.") for p in prefixes - {"mtlkit"}):
            return level
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS (DESIGN.md's table)")


def test_the_import_graph_has_no_cycle():
    assert _cycles(_graph()) == []


def test_imports_point_down_the_layer_table():
    upward = [
        f"{module} imports {target}"
        for module, targets in _graph().items()
        for target in targets
        if _layer(target) > _layer(module)
    ]
    assert upward == []


def test_the_cycle_finder_finds_a_cycle():
    """The check above can fail: a two-module loop and a three-module loop are both found."""
    graph = {"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"e"}, "e": {"c"}, "f": {"a"}}
    assert _cycles(graph) == [["a", "b"], ["c", "d", "e"]]
