"""Reading a configuration file: UTF-8 text, YAML that refuses a key written twice, ``${VAR}``.

Every problem is one :class:`ConfigError` line naming the file and, where there is one, the line
or the key, so that start-up stops with something an operator can act on.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import yaml

from bridge.errors import ConfigError

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _RepeatedKey(Exception):
    def __init__(self, where: str, first_line: int, second_line: int) -> None:
        lines = f"on line {first_line}" if first_line == second_line else f"(lines {first_line} and {second_line})"
        super().__init__(f"{where}: written twice {lines}; only the last would count")


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a key written twice in one mapping, at any level.

    PyYAML keeps the last value without a word, so a source pasted twice under one name, or a
    ``ticket`` given twice, would silently replace the first. Keys brought in by a ``<<`` merge
    may still be overridden: that is what a merge is for.
    """

    def construct_document(self, node: yaml.Node) -> Any:
        self._root = node
        return super().construct_document(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node)
            except TypeError:
                continue  # an unhashable key: SafeLoader refuses it with its own message
            if first is not key_node:
                where = ".".join((*_node_path(self._root, node), str(key)))
                raise _RepeatedKey(where, first.start_mark.line + 1, key_node.start_mark.line + 1)
        return super().construct_mapping(node, deep=deep)


def _node_path(root: yaml.Node, target: yaml.Node) -> tuple[str, ...]:
    """The keys (and list indexes) leading from ``root`` to ``target``, for the error message."""
    stack: list[tuple[yaml.Node, tuple[str, ...]]] = [(root, ())]
    visited: set[int] = set()
    while stack:
        node, path = stack.pop()
        if node is target:
            return path
        if id(node) in visited:
            continue
        visited.add(id(node))
        if isinstance(node, yaml.MappingNode):
            stack.extend((value, (*path, str(key.value))) for key, value in node.value)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, (*path, str(index))) for index, item in enumerate(node.value))
    return ()


def read_yaml(path: str) -> Any:
    """The file's YAML document; a key written twice anywhere is refused."""
    text = _read_text(path)
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except _RepeatedKey as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except yaml.reader.ReaderError as exc:  # a control character; its str() spans two lines
        line = text[: exc.position].count("\n") + 1
        raise ConfigError(f"{path}: line {line} invalid YAML (character #x{exc.character:04x}: {exc.reason})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise ConfigError(f"{path}:{where} invalid YAML ({problem})") from None


def _read_text(path: str) -> str:
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}: line {line} not UTF-8 text") from None


def expand_variables(value: Any, env: Mapping[str, str], path: str, where: tuple[str, ...] = ()) -> Any:
    """Replace ``${VAR}`` (or ``${VAR:-default}``) in every string value.

    As in the shell, an empty variable counts as unset: ``secret: ${TOKEN}`` with an
    empty TOKEN must stop start-up, not switch the secret check off.
    """
    if isinstance(value, dict):
        return {k: expand_variables(v, env, path, (*where, str(k))) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_variables(v, env, path, (*where, str(i))) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if env.get(name):
            return env[name]
        if default is not None:
            return default
        raise ConfigError(f"{path}: {'.'.join(where)}: environment variable {name} is not set or empty")

    return _VAR.sub(substitute, value)
