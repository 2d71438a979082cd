"""The sources file's ``ticket`` templates: compiled once at start-up, in Jinja's sandbox.

Sender-controlled values reach templates only as data: the immutable sandbox refuses attribute
tricks and mutation, and nothing in the context can read files or the network.
"""

from __future__ import annotations

import re
from typing import Any

from jinja2 import ChainableUndefined, Template, TemplateSyntaxError, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from bridge.errors import ConfigError

TICKET_KEYS = ("user_id", "subject", "note", "message", "tags", "employees", "status", "order", "metadata")
LIST_KEYS = ("tags", "employees")
INTEGER_KEYS = ("user_id", "status", "employees")  # employees: each item
# What a rendered integer key may be: ASCII digits only, and few enough that int() never hits
# Python's 4300-digit limit (a ValueError that would escape the mapping); longer is no SPP id anyway.
INTEGER_TEXT = re.compile(r"^\s*-?[0-9]{1,18}\s*$")


def _finalize(value: Any) -> Any:
    """Render a list of plain values (a dropdown or checkbox answer) as ``a, b``, not ``['a', 'b']``.

    Jinja calls this on the value of every ``{{ }}`` expression; a filter such as
    ``join(' / ')`` has already turned the list into text by then.
    """
    if isinstance(value, list | tuple) and all(isinstance(item, str | int | float) for item in value):
        return ", ".join(str(item) for item in value)
    return value


template_env = ImmutableSandboxedEnvironment(undefined=ChainableUndefined, autoescape=False, finalize=_finalize)


def compile_ticket(path: str, source: str, ticket: dict[str, Any]) -> dict[str, Any]:
    """A source's ``ticket`` mapping with every string compiled to a template; a mistake is one ConfigError line."""
    return {key: _compile_entry(key, value, f"{path}: sources.{source}.ticket.{key}") for key, value in ticket.items()}


def _compile_entry(key: str, value: Any, where: str) -> Any:
    if key in LIST_KEYS:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: must be a list")
        return [_compile_value(key, v, f"{where}.{i}") for i, v in enumerate(value)]
    if key == "metadata":
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: must be a mapping of names to values")
        return {str(k): _compile_value(key, v, f"{where}.{k}") for k, v in value.items()}
    return _compile_value(key, value, where)


def _compile_value(key: str, value: Any, where: str) -> Any:
    """One template or literal; a literal that could never make a valid request is refused now, not per event."""
    if isinstance(value, str):
        template = _compile_template(value, where)
        if key in INTEGER_KEYS and _is_plain_text(value):
            text = template.render()
            if text.strip() and not INTEGER_TEXT.match(text):
                raise ConfigError(f"{where}: must be a whole number or a template, got {text!r}")
        return template
    if isinstance(value, (list, dict)):
        raise ConfigError(f"{where}: must be a single value")
    if key in INTEGER_KEYS and not (value is None or (isinstance(value, int) and not isinstance(value, bool))):
        raise ConfigError(f"{where}: must be a whole number or a template, got {value!r}")
    if value is None or isinstance(value, (bool, int, float)):
        return value
    raise ConfigError(f"{where}: unsupported value {value!r}")


def _is_plain_text(text: str) -> bool:
    """Whether ``text`` holds no ``{{ }}`` or ``{% %}``, so renders the same for every event."""
    return all(
        isinstance(node, nodes.Output) and all(isinstance(part, nodes.TemplateData) for part in node.nodes)
        for node in template_env.parse(text).body
    )


def _compile_template(text: str, where: str) -> Template:
    try:
        return template_env.from_string(text)
    except TemplateSyntaxError as exc:
        problem = " ".join(str(exc.message).split())
        raise ConfigError(f"{where}: template error on line {exc.lineno}: {problem}") from None
