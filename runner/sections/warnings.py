"""The ``warnings_detail`` section of ``result.json``: what the libraries said, and the
silent fallbacks the runner caught.

``result.json`` keeps ``warnings`` as a list of one-line strings for people (the terminal
summary prints them); this section holds the same facts typed: every distinct library
warning of the run with the phase it came from and how often it came, and the named
warnings of :mod:`runner.models.fallbacks`.
"""

from __future__ import annotations

from dataclasses import dataclass

from runner.sections.base import Section


@dataclass(frozen=True)
class LibraryWarning(Section):
    """One distinct warning a library raised (Python ``warnings``) or logged, in one phase.

    ``source``: the logger's name, or for a Python warning the package whose file raised
    it; ``category``: the warning class (``UserWarning``...) or the log level
    (``WARNING``, ``ERROR``); ``count``: how often it came in ``phase``. ``noise``: a known
    hint that says nothing about this run (kept here, left out of ``warnings``).
    """

    source: str | None = None
    category: str | None = None
    message: str | None = None
    phase: str | None = None
    count: int = 0
    noise: bool = False


@dataclass(frozen=True)
class NamedWarning(Section):
    """A silent fallback the runner caught and records rather than fails on.

    ``name`` is stable (``compile.graph_breaks``...; the list and each one's policy are in
    docs/methodology.md), ``message`` one line for people.
    """

    name: str | None = None
    message: str | None = None
    phase: str | None = None


@dataclass(frozen=True)
class WarningsDetail(Section):
    """Named warnings first (they are about what ran), then every library warning."""

    named: tuple[NamedWarning, ...] = ()
    library: tuple[LibraryWarning, ...] = ()

    def names(self) -> list[str]:
        """The distinct names of the named warnings, in order."""
        return list(dict.fromkeys(w.name for w in self.named if w.name))
