"""Typed configs from YAML (generic): dataclass fields with a doc line each, built from a mapping
with every key and type checked, overrides as ``dotted.key=value``, and an error that names the
field (and, for a file, its line). flowpo.config holds FlowPO's own sections on top of it.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import field
from typing import Any, Literal, TypeVar

import yaml

from flowpo.errors import ConfigError

T = TypeVar("T")


def option(default: Any, doc: str) -> Any:
    """A config field: its default and the one line a user reads about it."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"doc": doc})
    return field(default=default, metadata={"doc": doc})


def apply_override(config: T, item: str) -> T:
    """A copy of dataclass ``config`` with one ``dotted.key=value`` override (value parsed as YAML)."""
    key, sep, value_text = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {item!r}: expected dotted.key=value")
    try:
        value = yaml.safe_load(value_text) if value_text else ""
    except yaml.YAMLError:
        value = value_text
    data = dataclasses.asdict(config)
    node = data
    parts = key.split(".")
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part) if isinstance(node, dict) else None
        if not isinstance(child, dict):
            raise ConfigError(f"override {item!r}: {'.'.join(parts[:depth + 1])}: not a config section")
        node = child
    node[parts[-1]] = value  # an unknown key is reported by from_dict below
    try:
        return from_dict(type(config), data)
    except ConfigError as exc:
        raise ConfigError(f"override {item!r}: {exc}") from None


def from_dict(cls: type, raw: dict, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from ``raw``, checking keys and types recursively."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if not isinstance(raw, dict):
        raise field_error(prefix.rstrip("."), f"expected a mapping, got {type(raw).__name__}")
    values = {}
    for key, value in raw.items():
        dotted = f"{prefix}{key}"
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise field_error(dotted, f"unknown key (known keys here: {known})")
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            values[key] = from_dict(hint, value if value is not None else {}, dotted + ".")
        else:
            values[key] = check_value(value, hint, dotted)
    return cls(**values)


def check_value(value: Any, hint: Any, dotted: str) -> Any:
    origin = typing.get_origin(hint)
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise field_error(dotted, f"must be one of {', '.join(map(str, choices))}, got {value!r}")
        return value
    if origin in (list, typing.List):
        (item_type,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise field_error(dotted, f"expected a list of {item_type.__name__}, got {value!r}")
        return [check_value(v, item_type, f"{dotted}[{i}]") for i, v in enumerate(value)]
    if origin in (dict, typing.Dict):
        key_type, value_type = typing.get_args(hint)
        if not isinstance(value, dict):
            raise field_error(dotted, f"expected a mapping of {key_type.__name__} to {value_type.__name__}, "
                                      f"got {value!r}")
        return {check_value(k, key_type, f"{dotted} key"): check_value(v, value_type, f"{dotted}.{k}")
                for k, v in value.items()}
    if origin in (types.UnionType, typing.Union):
        raise TypeError(f"config field {dotted}: unions are not supported")  # programming error
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        # YAML reads `problem_ids: [0]` as int; a string field accepts the number's text.
        return str(value)
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise field_error(dotted, f"expected {hint.__name__}, got {type(value).__name__} {value!r}")
    return value


def field_error(dotted: str, message: str) -> ConfigError:
    exc = ConfigError(f"{dotted}: {message}")
    exc.dotted_path = dotted
    return exc


def yaml_line(text: str, dotted: str) -> int | None:
    """1-based line of the key at ``dotted`` in the YAML text, if it can be found."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    for part in dotted.split("."):
        part = part.split("[")[0]
        if not isinstance(node, yaml.MappingNode):
            break
        for key_node, value_node in node.value:
            if key_node.value == part:
                line, node = key_node.start_mark.line + 1, value_node
                break
        else:
            break
    return line



def reference(cls: type, prefix: str = "") -> list[str]:
    """Markdown table rows (key, type, default, doc) of dataclass ``cls`` and its nested sections,
    from the fields' own one-line docs: the configuration reference cannot drift from the code."""
    import dataclasses
    import json
    import typing

    hints = typing.get_type_hints(cls)
    rows, sections = [], []
    for f in dataclasses.fields(cls):
        key, kind = f"{prefix}{f.name}", hints[f.name]
        if dataclasses.is_dataclass(kind):
            sections.append((key, f, kind))
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        name = kind.__name__ if isinstance(kind, type) else str(kind).replace("typing.", "")
        rows.append(f"| `{key}` | `{name}` | `{json.dumps(default, ensure_ascii=False)}` | "
                    f"{f.metadata.get('doc', '')} |")
    for key, f, kind in sections:
        rows += [f"| **`{key}`** | | | {f.metadata.get('doc', '')} |", *reference(kind, f"{key}.")]
    return rows
