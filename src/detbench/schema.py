"""Records: the frozen dataclasses detbench writes as JSON, and what their types give for free.

A record's field carries a one-line description (``doc(...)``); its annotation is its JSON type.
From the types come the JSON form (``detbench.jsonsafe.json_safe``), a record built back from that
form (``from_json``), the schema documentation (``markdown``, committed as ``docs/schemas.md``) and
the schema check the tests run on real output (``problems``), so a renamed or retyped field fails a
test instead of drifting from its documentation.

JSON types: ``int`` integer, ``float`` number (an integer is a number too), ``str`` string, ``bool``
boolean, ``None`` null, ``list[T]`` array, ``dict[str, T]`` object used as a map, a record an
object with its fields as keys, ``Any`` whatever the doc says (an open-ended part). JSON has no NaN
(``json_safe`` writes it as null), so a float that may be NaN is annotated ``NanFloat``: number or null.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from functools import cache
from typing import Annotated, Any

from detbench.jsonsafe import json_key

_NO_DEFAULT: Any = dataclasses.MISSING
_NAN = "NaN, written as null"
NanFloat = Annotated[float, _NAN]


def doc(
    text: str,
    *,
    key: str | None = None,
    optional: bool = False,
    default: Any = _NO_DEFAULT,
    default_factory: Any = _NO_DEFAULT,
) -> Any:
    """A record field described by ``text``; ``key``: its JSON key when not the field's name;
    ``optional``: the key is left out of the JSON while the value is None (and may be absent)."""
    meta: dict[str, Any] = {"doc": text}
    if key is not None:
        meta["key"] = key
    if optional:
        meta["optional"] = True
        if default is _NO_DEFAULT and default_factory is _NO_DEFAULT:
            default = None
    return dataclasses.field(default=default, default_factory=default_factory, metadata=meta)


def is_record(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def _members(tp: Any) -> tuple[Any, tuple[Any, ...]]:
    """(origin, args) with ``X | Y``, ``Optional[X]`` and ``NanFloat`` (float or null) as ``typing.Union``."""
    if tp == NanFloat:
        return typing.Union, (float, type(None))
    origin = typing.get_origin(tp)
    if origin is types.UnionType:
        origin = typing.Union
    return origin, typing.get_args(tp)


def json_type(tp: Any) -> str:
    """The JSON type of an annotation, in words (``number or null``, ``array of string``)."""
    origin, args = _members(tp)
    if tp is Any:
        return "any"
    if is_record(tp):
        return "object"
    if origin is typing.Union:
        return " or ".join(json_type(a) for a in args)
    if origin in (list, tuple):
        return f"array of {_grouped(args[0])}"
    if origin is dict:
        return f"map of {_grouped(args[1])}"
    names = {int: "integer", float: "number", str: "string", bool: "boolean", type(None): "null"}
    if tp in names:
        return names[tp]
    raise TypeError(f"{tp!r} has no JSON type")


def _grouped(tp: Any) -> str:
    words = json_type(tp)
    return f"({words})" if " or " in words else words


def _inner_record(tp: Any) -> tuple[str, type] | None:
    """The record a field's value holds, with the path step to it: ``""`` itself, ``[]`` in an array,
    ``.*`` in a map; None for a field without records."""
    origin, args = _members(tp)
    if is_record(tp):
        return "", tp
    if origin is typing.Union:
        found = [r for r in map(_inner_record, args) if r]
        return found[0] if found else None
    if origin in (list, tuple):
        inner = _inner_record(args[0])
        return ("[]" + inner[0], inner[1]) if inner else None
    if origin is dict:
        inner = _inner_record(args[1])
        return (".*" + inner[0], inner[1]) if inner else None
    return None


def rows(cls: type, prefix: str = "") -> list[tuple[str, str, str]]:
    """(path, JSON type, description) of every field of ``cls`` and of the records inside it, in
    order; a path is the keys from the top joined by ``.``, ``[]`` an array's items, ``*`` a map's values."""
    out = []
    for f in dataclasses.fields(cls):
        tp = _hints(cls)[f.name]
        path = prefix + json_key(f)
        kind = json_type(tp) + (", optional" if f.metadata.get("optional") else "")
        out.append((path, kind, str(f.metadata.get("doc", ""))))
        inner = _inner_record(tp)
        if inner:
            out += rows(inner[1], f"{path}{inner[0]}.")
    return out


def markdown(cls: type, title: str, preface: str = "") -> str:
    """The schema of record ``cls`` as a markdown section: one table row per key."""
    lines = [f"## {title}", ""]
    if preface:
        lines += [preface, ""]
    lines += ["| key | type | meaning |", "|---|---|---|"]
    for path, kind, text in rows(cls):
        cell = text.replace("|", "\\|")  # a bare | would end the table cell
        lines.append(f"| `{path}` | {kind} | {cell} |")
    return "\n".join(lines) + "\n"


def from_json(tp: Any, value: Any, where: str = "$") -> Any:
    """``value`` (a JSON form) with every record in it built as its class; a missing or unexpected key
    raises ``ValueError`` naming where. Scalars are passed through unchecked (``problems`` checks)."""
    origin, args = _members(tp)
    if is_record(tp):
        if not isinstance(value, Mapping):
            raise ValueError(f"{where}: expected an object for {tp.__name__}, got {type(value).__name__}")
        fields = {json_key(f): f for f in dataclasses.fields(tp)}
        extra = sorted(set(value) - set(fields))
        if extra:
            raise ValueError(f"{where}: unexpected keys {extra} for {tp.__name__}")
        kwargs = {}
        for key, f in fields.items():
            if key in value:
                kwargs[f.name] = from_json(_hints(tp)[f.name], value[key], f"{where}.{key}")
            elif not f.metadata.get("optional"):
                raise ValueError(f"{where}: missing key {key!r} of {tp.__name__}")
        return tp(**kwargs)
    if origin is typing.Union:
        if value is None:
            return math.nan if tp == NanFloat else None
        inner = [a for a in args if a is not type(None)]
        return from_json(inner[0], value, where) if len(inner) == 1 else value
    if origin in (list, tuple) and isinstance(value, list):
        return [from_json(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict and isinstance(value, Mapping):
        return {k: from_json(args[1], v, f"{where}.{k}") for k, v in value.items()}
    return value


def problems(value: Any, tp: Any, where: str = "$") -> list[str]:
    """Where the JSON ``value`` does not match type ``tp``: a missing key (unless optional), an
    unexpected key, or a value of another JSON type; empty when it matches."""
    origin, args = _members(tp)
    if tp is Any:
        return []
    if is_record(tp):
        if not isinstance(value, dict):
            return [f"{where}: {type(value).__name__} where an object ({tp.__name__}) belongs"]
        fields = {json_key(f): f for f in dataclasses.fields(tp)}
        out = [f"{where}: unexpected key {k!r}" for k in value if k not in fields]
        for key, f in fields.items():
            if key in value:
                out += problems(value[key], _hints(tp)[f.name], f"{where}.{key}")
            elif not f.metadata.get("optional"):
                out.append(f"{where}: missing key {key!r}")
        return out
    if origin is typing.Union:
        tries = [problems(value, a, where) for a in args]
        return [] if any(not t for t in tries) else [f"{where}: {value!r:.60} is not {json_type(tp)}"]
    if origin in (list, tuple):
        if not isinstance(value, list):
            return [f"{where}: {type(value).__name__} where an array belongs"]
        return [p for i, v in enumerate(value) for p in problems(v, args[0], f"{where}[{i}]")]
    if origin is dict:
        if not isinstance(value, dict):
            return [f"{where}: {type(value).__name__} where an object belongs"]
        return [p for k, v in value.items() for p in problems(v, args[1], f"{where}.{k}")]
    ok = {
        int: lambda v: isinstance(v, int) and not isinstance(v, bool),
        float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),  # JSON 3 is a number
        str: lambda v: isinstance(v, str),
        bool: lambda v: isinstance(v, bool),
        type(None): lambda v: v is None,
    }
    if tp not in ok:
        raise TypeError(f"{where}: {tp!r} has no JSON type")
    return [] if ok[tp](value) else [f"{where}: {value!r:.60} is not {json_type(tp)}"]
