"""Reading a config file: its raw mapping, within safety bounds.

A file is refused, before anything is built, when it is not UTF-8 text, is empty, is larger than
:data:`MAX_CONFIG_BYTES`, is not valid YAML, nests deeper than :data:`MAX_YAML_DEPTH` or expands,
through its anchors and aliases, to more than :data:`MAX_YAML_NODES` values (a "billion laughs"
bomb is a few hundred bytes).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from mtlkit.config.errors import ConfigError

MAX_CONFIG_BYTES = 1 << 20
"""The largest config file read (1 MiB; real configs are a few hundred bytes)."""
MAX_YAML_NODES = 10_000
"""The most values a config may expand to, aliases counted once per use."""
MAX_YAML_DEPTH = 50
"""The deepest nesting of sections and lists a config may have."""


def _anchor_table_paths(raw: dict[str, Any], folder: Path) -> None:
    """Make the relative table paths of a config file absolute, from the file's ``folder``."""
    sections = [raw.get("data")]
    tasks = raw.get("tasks")
    if isinstance(tasks, dict):
        sections += [entry for entry in tasks.values() if isinstance(entry, dict)]
    for section in sections:
        if isinstance(section, dict) and isinstance(section.get("table"), str):
            section["table"] = str(folder / Path(section["table"]).expanduser())


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The raw mapping of a YAML config file, or :class:`ConfigError` (see the module's notes)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; pass the path of a YAML config.")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path} is larger than {MAX_CONFIG_BYTES} bytes; it is no config.")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"{path} is not UTF-8 text (byte {error.start}); pass a YAML config."
        ) from None
    raw = _parse_yaml(text, str(path))
    if raw is None:
        raise ConfigError(
            f"{path} is empty; write the keys that differ from the defaults, or {{}}."
        )
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path} must hold a mapping of keys to values, got {type(raw).__name__}."
        )
    return raw


def _parse_yaml(text: str, source: str) -> Any:
    """One YAML document, bounded in size and depth; :class:`ConfigError` naming ``source``."""
    try:
        return yaml.load(text, Loader=_BoundedLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{source} is not valid YAML{where}: {error.problem}.") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{source} is not valid YAML: {' '.join(str(error).split())}") from None


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing documents that expand too far or nest too deeply, and
    reading ``1e-3`` (YAML 1.2's float, a string to YAML 1.1) as a number."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise ConfigError(f"the config nests deeper than {MAX_YAML_DEPTH} levels.")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_document(self, node: yaml.Node) -> Any:
        _check_expansion(node)
        return super().construct_document(node)


_BoundedLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a node graph that expands (aliases repeated) beyond :data:`MAX_YAML_NODES` values
    or refers to itself; linear in the number of distinct nodes."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        children = _children(node)
        if children_done:
            open_nodes.discard(id(node))
            sizes[id(node)] = 1 + sum(sizes[id(child)] for child in children)
            if sizes[id(node)] > MAX_YAML_NODES:
                raise ConfigError(
                    f"the config expands to more than {MAX_YAML_NODES} values (YAML aliases "
                    "repeat what they name); write it out, or use fewer aliases."
                )
            continue
        if id(node) in sizes:
            continue
        if id(node) in open_nodes:
            raise ConfigError("the config refers to itself through a YAML alias.")
        open_nodes.add(id(node))
        stack.append((node, True))
        stack.extend((child, False) for child in children if id(child) not in sizes)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []
