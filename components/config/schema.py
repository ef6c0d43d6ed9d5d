"""Turns raw stack config (YAML values) into frozen dataclasses, collecting every problem.

The dataclasses in the model are the schema: field types say what is allowed, `rule(...)` metadata adds
bounds, patterns, secrecy and variant blocks. Keys are camelCase in YAML and snake_case in Python.
Every problem is reported with its full key path, the bad value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal, Union

MISSING = dataclasses.MISSING


class Secret:
    """A config value that arrived as a Pulumi secret; `.value` is plain, use `.output()` in resources."""

    def __init__(self, value: str) -> None:
        self.value = value

    def output(self) -> Any:
        import pulumi

        return pulumi.Output.secret(self.value)

    def __repr__(self) -> str:  # never print the value
        return "Secret(***)"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other.value == self.value

    def __hash__(self) -> int:
        return hash(self.value)


def rule(
    default: Any = MISSING,
    *,
    default_factory: Callable[[], Any] | None = None,
    min: float | None = None,
    max: float | None = None,
    pattern: str | None = None,
    pattern_help: str | None = None,
    valid: Callable[[str], bool] | None = None,
    variants: Callable[[], Mapping[str, type]] | None = None,
    tag: str | None = None,
) -> Any:
    """A dataclass field with validation metadata.

    `variants`/`tag`: the field holds the settings block whose key is the value of the sibling field
    `tag` (e.g. `framework: flower` + `flower: {...}`); `variants()` maps each tag value to its dataclass.
    """
    meta = {
        "min": min,
        "max": max,
        "pattern": pattern,
        "pattern_help": pattern_help,
        "valid": valid,  # a check a regex can't express (CIDRs, IP addresses); described by pattern_help
        "variants": variants,
        "tag": tag,
    }
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def join(path: str, key: str) -> str:
    """`flstack:` + `target` -> `flstack:target`; `flstack:target` + `kind` -> `flstack:target.kind`."""
    return path + key if path.endswith(":") else f"{path}.{key}"


def show(value: Any) -> str:
    if isinstance(value, Secret):
        return "[secret]"
    if isinstance(value, (dict, list)):
        text = repr(value)
        return text if len(text) <= 60 else text[:57] + "..."
    return repr(value)


class Problems:
    """Collects `path: message` lines; the validator never stops at the first one."""

    def __init__(self, secret_paths: Callable[[str], bool]) -> None:
        self.lines: list[str] = []
        self.is_secret = secret_paths

    def add(self, path: str, message: str) -> None:
        self.lines.append(f"{path}: {message}")


def _describe(tp: Any, meta: Mapping[str, Any]) -> str:
    """What is allowed, in words, for an error message."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(v) for v in typing.get_args(tp))
    if tp is bool:
        return "true or false"
    if tp in (int, float):
        noun = "an integer" if tp is int else "a number"
        bounds = []
        if meta.get("min") is not None:
            bounds.append(f">= {_num(meta['min'])}")
        if meta.get("max") is not None:
            bounds.append(f"<= {_num(meta['max'])}")
        return noun + (" " + " and ".join(bounds) if bounds else "")
    if tp is str:
        if meta.get("pattern") or meta.get("valid"):
            return meta.get("pattern_help") or f"a string matching {meta['pattern']}"
        return "a string"
    if tp is Secret:
        return "a secret string"
    if origin is list:
        return "a list"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        keys = [camel(f.name) for f in _fields(tp) if not f.metadata.get("variants")]
        return "a mapping with keys " + ", ".join(keys)
    return str(tp)


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _fields(cls: Any) -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(cls) if f.init]


SCALARS = (str, int, float, bool)


def _is_scalar_union(tp: Any) -> bool:
    """`str | int | float | bool`: any plain YAML scalar (e.g. Flower node-config values)."""
    return typing.get_origin(tp) in (Union, types.UnionType) and set(typing.get_args(tp)) == set(SCALARS)


def _optional_inner(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def parse_value(tp: Any, raw: Any, path: str, meta: Mapping[str, Any], problems: Problems) -> Any:
    """Checks `raw` against type `tp`; returns the typed value, or None after recording a problem."""
    tp, optional = _optional_inner(tp)
    if raw is None:
        if optional:
            return None
        problems.add(path, f"expected {_describe(tp, meta)}, got null")
        return None
    origin = typing.get_origin(tp)
    if _is_scalar_union(tp):
        if not isinstance(raw, SCALARS):
            problems.add(path, f"expected a string, number or boolean, got {show(raw)}")
            return None
        return raw
    if tp is Secret:
        if not isinstance(raw, str):
            problems.add(path, f"expected {_describe(tp, meta)}, got {show(raw)}")
            return None
        if not problems.is_secret(path):
            problems.add(
                path,
                "must be a Pulumi secret, not plain text: set it with "
                f"`pulumi config set --secret --path '{path}' VALUE`",
            )
            return None
        return Secret(raw)
    if origin is Literal:
        if raw not in typing.get_args(tp) or isinstance(raw, bool) != isinstance(typing.get_args(tp)[0], bool):
            problems.add(path, f"expected {_describe(tp, meta)}, got {show(raw)}")
            return None
        return raw
    if tp is bool:
        if not isinstance(raw, bool):
            problems.add(path, f"expected {_describe(tp, meta)}, got {show(raw)}")
            return None
        return raw
    if tp in (int, float):
        ok = isinstance(raw, int) and not isinstance(raw, bool)
        if tp is float:
            ok = ok or isinstance(raw, float)
        elif isinstance(raw, float) and raw.is_integer():
            ok, raw = True, int(raw)
        if (
            not ok
            or (meta.get("min") is not None and raw < meta["min"])
            or (meta.get("max") is not None and raw > meta["max"])
        ):
            problems.add(path, f"expected {_describe(tp, meta)}, got {show(raw)}")
            return None
        return raw
    if tp is str:
        bad_pattern = isinstance(raw, str) and meta.get("pattern") and not re.fullmatch(meta["pattern"], raw)
        bad_value = isinstance(raw, str) and meta.get("valid") and not meta["valid"](raw)
        if not isinstance(raw, str) or bad_pattern or bad_value:
            problems.add(path, f"expected {_describe(tp, meta)}, got {show(raw)}")
            return None
        return raw
    if origin is list:
        if not isinstance(raw, list):
            problems.add(path, f"expected a list, got {show(raw)}")
            return None
        (item_tp,) = typing.get_args(tp)
        return [parse_value(item_tp, item, f"{path}[{i}]", meta, problems) for i, item in enumerate(raw)]
    if origin is dict:
        if not isinstance(raw, dict):
            problems.add(path, f"expected a mapping, got {show(raw)}")
            return None
        _, value_tp = typing.get_args(tp)
        return {str(k): parse_value(value_tp, v, join(path, str(k)), meta, problems) for k, v in raw.items()}
    if dataclasses.is_dataclass(tp):
        return parse_object(typing.cast(type, tp), raw, path, problems)
    raise TypeError(f"unsupported config type {tp!r} at {path}")  # a bug in the model, not in user input


def parse_object(cls: type, raw: Any, path: str, problems: Problems) -> Any:
    """Parses a mapping into dataclass `cls`: unknown keys, missing keys and bad values all reported."""
    if not isinstance(raw, dict):
        problems.add(path, f"expected {_describe(cls, {})}, got {show(raw)}")
        return None
    hints = typing.get_type_hints(cls)
    fields = _fields(cls)
    by_key = {camel(f.name): f for f in fields if not f.metadata.get("variants")}
    variant_fields = [f for f in fields if f.metadata.get("variants")]
    known = set(by_key)
    values: dict[str, Any] = {}
    for key, f in by_key.items():
        sub = join(path, key)
        if key in raw:
            values[f.name] = parse_value(hints[f.name], raw[key], sub, f.metadata, problems)
        elif f.default is not MISSING:
            values[f.name] = f.default
        elif f.default_factory is not MISSING:
            values[f.name] = f.default_factory()
        else:
            problems.add(sub, f"required: expected {_describe(hints[f.name], f.metadata)}")
            values[f.name] = None
    for f in variant_fields:
        variants = f.metadata["variants"]()
        tag = values.get(f.metadata["tag"])
        known |= set(variants)
        if tag is not None and tag not in variants:
            problems.add(
                join(path, f.metadata["tag"]),
                f"expected one of {', '.join(repr(v) for v in variants)}, got {show(tag)}",
            )
        for other in variants:
            if other != tag and other in raw:
                problems.add(
                    join(path, other),
                    f"settings for '{other}' given but {f.metadata['tag']} is {show(tag)}; "
                    f"rename the block to '{tag}' or change {f.metadata['tag']}",
                )
        if isinstance(tag, str) and tag in variants:
            block = raw.get(tag)
            # An absent or empty block means all defaults; a list or a string is an error.
            values[f.name] = parse_object(variants[tag], {} if block is None else block, join(path, tag), problems)
        else:
            values[f.name] = None
    for key in raw:
        if key not in known:
            close = difflib.get_close_matches(str(key), sorted(known), n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'? " if close else ""
            problems.add(join(path, str(key)), f"unknown key; {hint}allowed: {', '.join(sorted(known))}")
    if any(v is None and _required(hints[k]) for k, v in values.items()):
        return None  # already reported; don't construct a half-valid object
    obj = cls(**values)
    check = getattr(obj, "check", None)
    if callable(check):
        for sub, message in check():
            problems.add(join(path, str(sub)) if sub else path, message)
    return obj


def _required(tp: Any) -> bool:
    return not _optional_inner(tp)[1]
