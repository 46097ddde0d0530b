"""Command-line overrides, read with Hydra's own parser: the one place that reads them.

Pre-flight, run-directory names, the report's factor columns and the report's baseline
spec all need the key and the value of overrides such as ``+decoding.num_beams=4``,
``quant='nf4'`` or ``~energy``. Hydra's ``OverridesParser`` is the grammar the command line
is read with, so these readers agree with Hydra on prefixes, quoting, escapes, deletions
and sweeps.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterable
from dataclasses import dataclass

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, Transformer
from hydra.errors import HydraException


@dataclass(frozen=True)
class Setting:
    """One parsed override.

    ``key`` has no ``+``/``++``/``~`` prefix (a package stays: ``group@pkg``); ``value`` is
    the text after ``=`` as written, but a string value is unquoted and unescaped as Hydra
    reads it (``'nf4'`` -> ``nf4``); None for a deletion without a value (``~energy``).
    """

    text: str
    key: str
    value: str | None
    deleted: bool = False
    swept: bool = False

    @property
    def is_hydra(self) -> bool:
        """A Hydra setting (``hydra.run.dir=...``, ``hydra/launcher=...``), not a factor."""
        return self.key == "hydra" or self.key.startswith(("hydra.", "hydra/"))


@functools.cache
def _parser() -> OverridesParser:
    return OverridesParser.create()


def _setting(text: str, o: Override) -> Setting:
    key = o.key_or_group if o.package is None else f"{o.key_or_group}@{o.package}"
    value: str | None = None
    if o.value_type is not None:
        parsed = o.value()
        is_text = isinstance(parsed, str) and not o.is_sweep_override()
        value = parsed if is_text else o.get_value_string().strip()
    return Setting(text, key, value, o.is_delete(), o.is_sweep_override())


def parse(overrides: Iterable[str]) -> list[Setting]:
    """Parse every override; raises Hydra's ``OverrideParseException`` for a malformed one."""
    texts = [str(text) for text in overrides]
    return [_setting(t, o) for t, o in zip(texts, _parser().parse_overrides(texts), strict=True)]


def read(text: str) -> Setting:
    """Parse one override (see :func:`parse`)."""
    return parse([text])[0]


def parse_lenient(overrides: Iterable[str]) -> list[Setting]:
    """:func:`parse` for overrides read back from files: one Hydra rejects is left out."""
    out = []
    for text in overrides:
        try:
            out.append(read(str(text)))
        except HydraException:
            continue
    return out


def value_of(key: str, settings: Iterable[Setting]) -> str | None:
    """The value of the first override of ``key`` (``""`` for a deletion); None if absent."""
    for s in settings:
        if s.key == key:
            return s.value if s.value is not None else ""
    return None


def swept_keys(overrides: list[str]) -> list[str]:
    """Keys given several values (``quant=none,nf4``, ``range(...)``): the sweep's factors."""
    return [s.key for s in parse(overrides) if s.swept]


def expand(overrides: list[str], multirun: bool) -> list[list[str]]:
    """The override lists of every job the command would run (each override is parsed)."""
    parsed = _parser().parse_overrides(overrides)
    if not multirun:
        return [overrides]
    batches = BasicSweeper.split_arguments(parsed, max_batch_size=None)
    return [job for batch in batches for job in batch]


def split_joined(text: str) -> list[str]:
    """``"quant=none,compile=off"`` -> ``["quant=none", "compile=off"]``.

    The comma-joined form of run-directory names and baseline specs. A comma separates two
    overrides only where Hydra reads each side as one override with one value, so a value
    holding commas (``loading.max_memory={0:1GiB,cpu:2GiB}``) stays whole. Raises
    ``ValueError`` when no such split exists.
    """
    pieces = [p.strip() for p in text.split(",") if p.strip()]

    @functools.cache
    def split_from(i: int) -> tuple[str, ...] | None:
        if i == len(pieces):
            return ()
        for j in range(i + 1, len(pieces) + 1):
            item = ",".join(pieces[i:j])
            try:
                setting = read(item)
            except HydraException:
                continue
            single = bool(setting.key) and not setting.swept  # Hydra reads "=x" as key ""
            rest = split_from(j) if single else None
            if rest is not None:
                return (item, *rest)
        return None

    items = split_from(0)
    if items is None:
        raise ValueError(f"{text!r}: expected key=value[,key=value...]")
    return list(items)


# Above this many points a search space is checked one factor at a time (each value of each
# factor with the others at their first value) instead of as a full product.
MAX_CHECKED_POINTS = 256


def _values(o: Override) -> list[str]:
    """Every value a search sweeper can give this override, as override texts; for an
    interval, its two ends (rules on a number are ranges, so the ends decide)."""
    key = o.get_key_element()
    if not o.is_sweep_override():
        return [f"{key}={o.get_value_element_as_str()}" if o.value_type is not None else key]
    if o.is_interval_sweep():
        sweep = o.value()
        ends = [sweep.start, sweep.end]
        if not all(isinstance(e, int) for e in ends):
            ends = [float(e) for e in ends]
        return [f"{key}={e}" for e in ends]
    values = list(o.sweep_iterator(transformer=Transformer.encode))
    return [f"{key}={v}" for v in values]


def search_points(overrides: list[str]) -> list[list[str]]:
    """Override lists that cover every value of every ``choice``/``range``/``interval`` of a
    search (an Optuna sweeper): the full product when it has at most
    :data:`MAX_CHECKED_POINTS` points, else each value once with the others at their first.
    Raises Hydra's parse errors."""
    per_key = [_values(o) for o in _parser().parse_overrides(overrides)]
    size = 1
    for values in per_key:
        size *= max(len(values), 1)
    if size <= MAX_CHECKED_POINTS:
        return [list(p) for p in itertools.product(*per_key)]
    first = [values[0] for values in per_key]
    points = [first]
    for i, values in enumerate(per_key):
        points += [[*first[:i], v, *first[i + 1 :]] for v in values[1:]]
    return points
