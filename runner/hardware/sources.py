"""What every time series source is: a name, a ``read(now)`` that gives columns, and the
record of a source this machine lacks (:class:`Absent`).

The readers are in runner.hardware.cpu (/proc and sysfs) and runner.hardware.gpu (NVML);
the helpers here read a number from a kernel file and say why one cannot be read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

Reading = dict[str, float | int | None]


@dataclass(frozen=True)
class Absent:
    """A source this machine lacks: ``source`` (``thermal``, ``rapl``, ``gpu``, ...), the
    ``path`` (or API) looked for, and a short ``reason`` (``not found``, ``not readable:
    PermissionError``, ``NVML unavailable``)."""

    source: str
    path: str
    reason: str

    def line(self) -> str:
        return f"{self.source}: {self.path} ({self.reason})"


class Source(Protocol):
    """A time series source: ``read(now)`` gives column name -> value at ``now`` (the
    sampler's perf_counter seconds). Rates (utilisation, power from an energy counter) are
    over the time since this source's previous read, None on its first. A read never
    raises: what fails reads as None."""

    name: str

    def read(self, now: float) -> Reading: ...


def read_number(path: Path) -> float | None:
    """The number a kernel file holds (``temp``: millidegrees, ``energy_uj``: µJ); None
    when the file is missing, unreadable or not a number."""
    try:
        return float(path.read_text().strip())
    except (OSError, ValueError):
        return None


def unreadable(path: Path) -> str | None:
    """Why ``path`` cannot be read (``not found``, ``not readable: PermissionError``); None
    when it can."""
    try:
        path.read_text()
    except FileNotFoundError:
        return "not found"
    except OSError as exc:
        return f"not readable: {type(exc).__name__}"
    return None
