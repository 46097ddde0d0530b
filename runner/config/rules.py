"""The per-field rules every schema field may carry, kept once, beside its help text.

A schema field (declared with :func:`schema_field` in :mod:`runner.config.schema` and the
group modules it assembles) carries, in its ``metadata``, the range its value must lie in
(:class:`Range`) and the condition under which it means anything at all (:class:`OnlyWith`:
decoding fields of one mode, 4-bit fields, compile options, ...).
Validation enforces them, translation asks which decoding fields belong to a mode, and
``docs/options.md`` is generated from them: one table read three ways.

Pure data, predicates and the field declaration: no ConfigError here (validation raises),
no schema import (the schema modules import this one).
"""

from __future__ import annotations

from dataclasses import Field, dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class Range:
    """Allowed values of a number: ``low``/``high`` bounds, each inclusive unless open."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    # Replaces "must be ..." where a reason reads better (num_beams: "beam search needs ...").
    message: str | None = None

    def allows(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def text(self) -> str:
        """``>= 1``, ``> 0``, ``in (0, 1]``: how the range reads in messages and docs."""
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {_num(self.low)}"
        if self.low is None:
            return f"{'<' if self.high_open else '<='} {_num(self.high)}"
        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"in {left}{_num(self.low)}, {_num(self.high)}{right}"

    def refusal(self) -> str:
        return self.message or f"must be {self.text()}"


def _num(x: float | None) -> str:
    return str(int(x)) if x is not None and float(x).is_integer() else str(x)


AT_LEAST_0 = Range(low=0)
AT_LEAST_1 = Range(low=1)
POSITIVE = Range(low=0, low_open=True)


@dataclass(frozen=True)
class OnlyWith:
    """A field that means something only while another field of its group has given values.

    Set under any other value it is refused, never silently dropped; with ``required`` it
    must also be set while the condition holds.
    """

    field: str  # the deciding field, in the same group
    values: tuple[Any, ...]
    label: str  # how the condition reads: "decoding=sample", "load_in_4bit=true"
    required: bool = False

    def holds(self, section: Any) -> bool:
        return getattr(section, self.field) in self.values

    def refusal(self, value: Any) -> str:
        unset = value is None or value == ""
        return f"required with {self.label}" if unset else f"only applies with {self.label}"


def make_metadata(
    help: str, range: Range | None = None, only_with: OnlyWith | None = None
) -> dict[str, Any]:
    """The ``field(metadata=...)`` of a schema field."""
    meta: dict[str, Any] = {"help": help}
    if range is not None:
        meta["range"] = range
    if only_with is not None:
        meta["only_with"] = only_with
    return meta


def schema_field(
    text: str,
    default: Any = None,
    *,
    range: Range | None = None,
    only_with: OnlyWith | None = None,
    **kw: Any,
) -> Any:
    """A dataclass field of a schema, with its help text and rules as its metadata."""
    meta = make_metadata(text, range, only_with)
    if "default_factory" in kw:
        return field(metadata=meta, **kw)
    return field(default=default, metadata=meta)


def help_of(f: Field) -> str:
    return f.metadata.get("help", "")


def range_of(f: Field) -> Range | None:
    return f.metadata.get("range")


def only_with_of(f: Field) -> OnlyWith | None:
    return f.metadata.get("only_with")


def range_violation(section: Any) -> tuple[str, Any, str] | None:
    """The first ``(field, value, refusal)`` whose set value lies outside its range."""
    for f in fields(section):
        rule, value = range_of(f), getattr(section, f.name)
        if rule is not None and value is not None and not rule.allows(value):
            return f.name, value, rule.refusal()
    return None


def condition_violation(section: Any) -> tuple[str, Any, str] | None:
    """The first ``(field, value, refusal)`` set where it does not apply, or unset where
    it is required."""
    for f in fields(section):
        rule, value = only_with_of(f), getattr(section, f.name)
        if rule is None:
            continue
        unset = value is None or value == ""
        if rule.holds(section) and rule.required and unset:
            return f.name, value, rule.refusal(value)
        if not rule.holds(section) and value is not None:
            return f.name, value, rule.refusal(value)
    return None


def fields_applying(schema: type, deciding: str, value: Any) -> tuple[str, ...]:
    """Fields of ``schema`` that depend on ``deciding`` and apply when it equals ``value``
    (e.g. the decoding fields of one mode)."""
    out = []
    for f in fields(schema):
        rule = only_with_of(f)
        if rule is not None and rule.field == deciding and value in rule.values:
            out.append(f.name)
    return tuple(out)


def rule_text(f: Field) -> str:
    """Every rule a field carries, as one phrase for the docs ("" when none)."""
    parts = []
    rule = only_with_of(f)
    if rule is not None:
        parts.append(f"{'required' if rule.required else 'only'} with {rule.label}")
    rng = range_of(f)
    if rng is not None:
        parts.append(rng.message or rng.text())
    return "; ".join(parts)
