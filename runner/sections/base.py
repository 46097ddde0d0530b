"""The mechanism every result section shares: one ``to_dict`` and one ``from_dict``.

A section is a dataclass whose field names are its JSON keys, so the writer, the
reader, the report and the tests all go through the same names: a renamed field
breaks at once instead of reading as missing.

Reading is forgiving, because the report must survive any file: keys a section does
not know are ignored (fields added by a newer writer under the same schema_version),
missing keys and values of the wrong type take the field's default (None), so results
written before a field existed, or edited by hand, still read. ``from_dict`` never
raises on data. Every field of a section therefore has a default.
"""

from __future__ import annotations

import functools
import types
import typing
from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from enum import Enum
from typing import Any, TypeVar

# Field metadata: the field is a section whose keys are written into this section's
# dict rather than under the field's name (``metrics`` holds the latency keys flat).
INLINE = {"inline": True}
# Field metadata: the key is left out while the value is None (a fact that exists only
# in some runs, such as whether a Slurm node was shared).
OMIT_NONE = {"omit_none": True}

S = TypeVar("S", bound="Section")
_BAD = object()  # a value that does not fit its field's type


class Section:
    """Mixin for the dataclasses of ``result.json``; see the module docstring."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: nested sections as dicts, tuples as lists, enums as values."""
        out: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.metadata.get("inline"):
                if value is not None:
                    out.update(value.to_dict())
            elif value is None and f.metadata.get("omit_none"):
                continue
            else:
                out[f.name] = _dump(value)
        return out

    @classmethod
    def from_dict(cls: type[S], data: Any) -> S:
        """The section from its dict (anything that is not a dict reads as empty)."""
        data = data if isinstance(data, Mapping) else {}
        kwargs: dict[str, Any] = {}
        for name, kind, section, section_keys in _plan(cls):
            if section is not None:
                if not section_keys.isdisjoint(data):
                    kwargs[name] = section.from_dict(data)
            elif name in data:
                value = _load(kind, data[name])
                if value is not _BAD:
                    kwargs[name] = value
        return cls(**kwargs)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


@functools.cache
def _plan(cls: type) -> tuple[tuple[str, Any, type[Section] | None, frozenset[str]], ...]:
    """Per field: name, type, and for an inline field its section and that one's keys.
    Worked out once per class: a report reads thousands of results."""
    hints = _hints(cls)
    plan = []
    for f in fields(cls):
        if f.metadata.get("inline"):
            section = _section_of(hints[f.name])
            keys = frozenset(g.name for g in fields(section))
            plan.append((f.name, hints[f.name], section, keys))
        else:
            plan.append((f.name, hints[f.name], None, frozenset()))
    return tuple(plan)


@functools.cache
def _shape(kind: Any) -> tuple[Any, tuple[Any, ...]]:
    return typing.get_origin(kind), typing.get_args(kind)


def _section_of(kind: Any) -> type[Section]:
    """``X`` of an inline field typed ``X | None``."""
    args = [a for a in typing.get_args(kind) if a is not type(None)] or [kind]
    return args[0]


def _dump(value: Any) -> Any:
    if isinstance(value, Section):
        return value.to_dict()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Mapping):
        return {k: _dump(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_dump(v) for v in value]
    return value


def _load(kind: Any, value: Any) -> Any:
    """``value`` as type ``kind``, or ``_BAD``."""
    origin, args = _shape(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is not type(None) and (loaded := _load(arg, value)) is not _BAD:
                return loaded
        return _BAD
    if kind is Any:
        return value
    if isinstance(kind, type) and issubclass(kind, Section) and is_dataclass(kind):
        return kind.from_dict(value) if isinstance(value, Mapping) else _BAD
    if origin is dict:
        if not isinstance(value, Mapping):
            return _BAD
        loaded = {str(k): _load(args[1], v) for k, v in value.items()}
        return {k: v for k, v in loaded.items() if v is not _BAD}
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            return _BAD
        items = [_load(args[0], v) for v in value]
        return tuple(v for v in items if v is not _BAD)
    return _scalar(kind, value)


def _scalar(kind: Any, value: Any) -> Any:
    if isinstance(value, bool):  # bool is an int to Python, never a number here
        return value if kind is bool else _BAD
    if kind is float:
        return float(value) if isinstance(value, (int, float)) else _BAD
    if kind is int:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value if isinstance(value, int) else _BAD
    if kind is str:
        return value if isinstance(value, str) else _BAD
    if isinstance(kind, type) and issubclass(kind, Enum):
        try:
            return kind(value)
        except ValueError:
            return _BAD
    return _BAD
