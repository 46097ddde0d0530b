"""What many flat dicts (the runs' environments, their settings) share and where they differ.

Built one run at a time, so a sweep of thousands of runs never holds every run's full
result at once: per key, each distinct value with the positions of the runs holding it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ABSENT = "(absent)"  # how a key missing from some runs is shown


@dataclass
class Variation:
    """Per key: ``repr(value) -> (value, positions)``; positions count every :meth:`add`."""

    keys: dict[str, dict[str, tuple[Any, list[int]]]] = field(default_factory=dict)
    count: int = 0  # dicts added, empty ones included
    filled: list[int] = field(default_factory=list)  # positions of the non-empty ones

    def add(self, flat: Mapping[str, Any]) -> None:
        """Add one run's flat dict (``{}`` when it has none: it is then left out)."""
        position = self.count
        self.count += 1
        if not flat:
            return
        self.filled.append(position)
        for key, value in flat.items():
            values = self.keys.setdefault(key, {})
            text = repr(value)
            if text not in values:
                values[text] = (value, [])
            values[text][1].append(position)

    def shared(self, ignore: tuple[str, ...] = ()) -> dict[str, Any]:
        """Keys every non-empty dict holds with one and the same value."""
        n = len(self.filled)
        out = {}
        for key, values in self.keys.items():
            if key in ignore or len(values) != 1:
                continue
            value, positions = next(iter(values.values()))
            if len(positions) == n:
                out[key] = value
        return out

    def differing(self, ignore: tuple[str, ...] = ()) -> list[str]:
        """Keys not shared by every non-empty dict, in order of first appearance."""
        shared = self.shared()
        return [k for k in self.keys if k not in shared and k not in ignore]

    def value_at(self, key: str, position: int) -> Any:
        """The value of ``key`` in the dict added at ``position`` (:data:`ABSENT` if none)."""
        for value, positions in self.keys.get(key, {}).values():
            if position in positions:
                return value
        return ABSENT

    def counts(self, key: str) -> list[tuple[Any, int]]:
        """``(value, runs)`` for ``key``, most frequent first (ties: first seen first);
        runs without the key count as :data:`ABSENT`."""
        values = [(value, len(pos)) for value, pos in self.keys.get(key, {}).values()]
        missing = len(self.filled) - sum(n for _, n in values)
        if missing > 0:
            values.append((ABSENT, missing))
        return sorted(values, key=lambda item: -item[1])
