"""The package's import graph: no cycles, and every import allowed by the layer table of
``shared/DESIGN.md`` ("Layers"): which of our layers each layer may import, and, where the table
names them, which third-party packages.

The graph is read from the source (every ``import`` and ``from … import``, also inside functions
and under ``TYPE_CHECKING``), so a cycle or a dependency hidden behind a lazy import counts too.
A planted violation (modules written to a temporary folder) shows that each check can fail.
"""

from __future__ import annotations

import ast
import functools
import sys
from dataclasses import dataclass
from pathlib import Path

import mtlkit

ROOT = Path(mtlkit.__file__).parent

BELOW = "every layer above it in the table"
"""``Layer.imports`` of a layer that may import every layer listed before it."""


@dataclass(frozen=True)
class Layer:
    """One row of the layer table.

    Attributes:
        packages: its modules (a name and everything under it).
        imports: the layers of ours it may import besides itself and the foundation (names of
            rows above it), or :data:`BELOW`.
        third_party: the third-party packages it may import; ``None``: the table names none.
    """

    packages: frozenset[str]
    imports: frozenset[str] | str = frozenset()
    third_party: frozenset[str] | None = None


def _layer(
    packages: set[str],
    imports: set[str] | tuple[()] | str = (),
    third_party: set[str] | None = None,
) -> Layer:
    """A :class:`Layer` from plain sets."""
    return Layer(
        frozenset(packages),
        imports if isinstance(imports, str) else frozenset(imports),
        None if third_party is None else frozenset(third_party),
    )


LAYERS: dict[str, Layer] = {
    "foundation": _layer({"mtlkit.atomic", "mtlkit.registry", "mtlkit.version"}),
    "data": _layer(
        {"mtlkit.data"}, (), {"numpy", "torch", "pandas", "pyarrow", "platformdirs", "tqdm"}
    ),
    "models": _layer({"mtlkit.models"}, (), {"torch"}),
    "tasks": _layer({"mtlkit.tasks"}, (), {"torch", "torchmetrics"}),
    "balancing": _layer({"mtlkit.balancing"}, (), {"torch"}),
    "measure": _layer({"mtlkit.measure"}, {"data", "models", "tasks", "balancing"}, {"torch"}),
    "training": _layer({"mtlkit.training"}, {"data", "models", "tasks", "balancing", "measure"}),
    "evaluation": _layer(
        {"mtlkit.evaluation"},
        {"data", "models", "tasks", "measure"},
        {"numpy", "torch", "torchmetrics", "matplotlib"},
    ),
    "config": _layer(
        {"mtlkit.config"}, {"data", "models", "tasks", "balancing", "measure", "training"}
    ),
    "workflows": _layer({"mtlkit.workflows"}, BELOW),
    "cli": _layer({"mtlkit.cli", "mtlkit.__main__"}, BELOW),
    "integrations": _layer({"mtlkit", "mtlkit.lightning"}, BELOW),
}
"""DESIGN.md's table, top to bottom: a module may import its own layer, the foundation, the
shared types and the layers its row names. ``data`` also fetches (``platformdirs``: the cache
folder, ``tqdm``: download progress); ``evaluation`` reads tensors (``torch``). The package
itself (``mtlkit.load``) and the optional integrations (``mtlkit.lightning``) come last: nothing
of ours imports them. A new layer is one line here, above the rows that may import it."""

SHARED_TYPES = frozenset({"mtlkit.data.types", "mtlkit.data.errors"})
"""Modules of shared types (specs, labels, the data error) that every layer may import; they
import nothing of ours but each other."""


def _modules(root: Path, package: str) -> dict[str, Path]:
    modules = {}
    for path in root.rglob("*.py"):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _imports(name: str, path: Path, modules: dict[str, Path]) -> tuple[set[str], set[str]]:
    """The modules of ours that ``name`` imports (a submodule where one is named), and the
    top-level names of every other package it imports."""
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
    ours = {module for module in found if module in modules and module != name}
    own = name.split(".")[0]
    tops = {module.split(".")[0] for module in found} - {own, "__future__"}
    return ours, {top for top in tops if top not in sys.stdlib_module_names}


@dataclass(frozen=True)
class Graph:
    """A package's modules, the modules of ours each imports, and its third-party imports."""

    ours: dict[str, set[str]]
    third_party: dict[str, set[str]]


@functools.cache
def _graph(root: Path = ROOT, package: str = "mtlkit") -> Graph:
    modules = _modules(root, package)
    edges = {name: _imports(name, path, modules) for name, path in modules.items()}
    return Graph(
        {name: ours for name, (ours, _) in edges.items()},
        {name: others for name, (_, others) in edges.items()},
    )


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


def _layer_of(module: str, package: str = "mtlkit") -> str:
    module = "mtlkit" + module.removeprefix(package)
    found = [
        name
        for name, layer in LAYERS.items()
        if module in layer.packages
        or any(module.startswith(f"{p}.") for p in layer.packages - {"mtlkit"})
    ]
    assert found, f"{module} belongs to no layer: add it to LAYERS (DESIGN.md's table)"
    return found[0]


def _allowed(layer: str) -> set[str]:
    """The layers ``layer`` may import: itself, the foundation, those its row names."""
    names = list(LAYERS)
    imports = LAYERS[layer].imports
    above = names[: names.index(layer)] if imports == BELOW else imports
    return {layer, "foundation", *above}


def _violations(graph: Graph, package: str = "mtlkit") -> list[str]:
    """Every import against the table, as ``"a imports b"`` lines."""
    shared = {package + name.removeprefix("mtlkit") for name in SHARED_TYPES}
    found = []
    for module, targets in sorted(graph.ours.items()):
        layer = _layer_of(module, package)
        for target in sorted(targets):
            if module in shared:
                allowed = target in shared
            else:
                allowed = target in shared or _layer_of(target, package) in _allowed(layer)
            if not allowed:
                found.append(f"{module} imports {target}")
        permitted = LAYERS[layer].third_party
        if permitted is not None:
            found += [
                f"{module} imports {top} (third-party)"
                for top in sorted(graph.third_party[module] - permitted)
            ]
    return found


def test_the_import_graph_has_no_cycle():
    assert _cycles(_graph().ours) == []


def test_every_import_follows_the_layer_table():
    assert _violations(_graph()) == []


def test_the_table_names_only_layers_above_each_row():
    names = list(LAYERS)
    for position, (name, layer) in enumerate(LAYERS.items()):
        if layer.imports != BELOW:
            assert set(layer.imports) <= set(names[:position]), name


def test_a_planted_violation_of_each_rule_is_found(tmp_path):
    """A fake package laid out as ours, with one module breaking each rule of the table."""
    root = tmp_path / "fake"
    files = {
        "__init__.py": "",
        "registry.py": "",
        "data/__init__.py": "",
        "data/types.py": "from fake.data.errors import DataError\n",
        "data/errors.py": "from fake.models import heads\n",
        "data/loader.py": "import numpy\nfrom fake.data.types import TaskSpec\n",
        "models/__init__.py": "from fake.data.types import TaskSpec\nfrom fake import registry\n",
        "tasks/__init__.py": "def late():\n    from fake.models import heads\n",
        "models/heads.py": "",
        "balancing/__init__.py": "import numpy as np\n",
        "balancing/engine.py": "from ..training import trainer\n",
        "training/__init__.py": "",
        "training/trainer.py": "from fake.balancing import engine\nfrom fake.evaluation import x\n",
        "evaluation/__init__.py": "",
        "evaluation/x.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
        "    from fake.training.trainer import Trainer\n",
        "config/__init__.py": "import fake.workflows\n",
        "workflows/__init__.py": "from fake.cli import main\nfrom fake.evaluation import x\n",
        "cli/__init__.py": "",
        "cli/main.py": "from fake.workflows import launch\n",
        "workflows/run.py": "",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    graph = _graph(root, "fake")
    assert _violations(graph, "fake") == [
        "fake.balancing imports numpy (third-party)",
        "fake.balancing.engine imports fake.training.trainer",
        "fake.config imports fake.workflows",
        "fake.data.errors imports fake.models.heads",
        "fake.evaluation.x imports fake.training.trainer",
        "fake.tasks imports fake.models.heads",
        "fake.training.trainer imports fake.evaluation.x",
        "fake.workflows imports fake.cli.main",
    ]
    assert _cycles(graph.ours) == [
        ["fake.balancing.engine", "fake.evaluation.x", "fake.training.trainer"],
        ["fake.cli.main", "fake.workflows"],
    ]


def test_the_cycle_finder_finds_a_cycle():
    """A two-module loop and a three-module loop are both found."""
    graph = {"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"e"}, "e": {"c"}, "f": {"a"}}
    assert _cycles(graph) == [["a", "b"], ["c", "d", "e"]]
