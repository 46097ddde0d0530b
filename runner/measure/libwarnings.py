"""What the libraries said during a run: Python warnings and the libraries' loggers.

While :meth:`LibraryWarnings.capture` is on, every Python warning and every record at
WARNING or above from the loggers of :data:`LIBRARIES` (and their children) is counted per
source, category, message and phase (the phase is read when the warning arrives). The
first occurrence of each goes to the run's log (console and ``run.log``, also for
transformers and torch, whose loggers otherwise write to stderr only); repeats only raise
the count, and when the capture ends one line per repeated warning says how often it came.
Known hints that say nothing about the run (:data:`NOISE`) go to the log at DEBUG.

Python's "default" and "once" filters would hide repeats from the count, so inside the
capture they show every occurrence; "ignore" and "error" filters stay as they are.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from runner.sections.warnings import LibraryWarning

log = logging.getLogger(__name__)
# Python warnings go to the log under the name logging.captureWarnings uses.
PY_WARNINGS = logging.getLogger("py.warnings")

# Libraries whose loggers are captured (each with every logger below it).
LIBRARIES = ("transformers", "torch", "bitsandbytes", "accelerate")

# (source prefix, text in the message): hints that say nothing about this run.
NOISE: tuple[tuple[str, str], ...] = (
    # bitsandbytes, at import on CPUs with AVX512-BF16: an optional kernel from the hub.
    ("bitsandbytes", "pip install kernels"),
)

MAX_MESSAGE = 2000  # characters kept of one message (dynamo's explanations run long)
_SHOWN_ONCE = ("default", "module", "once")


@dataclass
class _Count:
    source: str
    category: str
    message: str
    phase: str
    count: int = 0
    noise: bool = False


@dataclass
class _Saved:
    handlers: list[logging.Handler]
    propagate: bool


def is_noise(source: str, message: str) -> bool:
    return any(source.startswith(prefix) and text in message for prefix, text in NOISE)


def package_of(filename: str) -> str:
    """The importable package a Python warning's file belongs to (``transformers``...)."""
    parts = Path(filename).parts
    for marker in ("site-packages", "dist-packages"):
        if marker in parts:
            rest = parts[parts.index(marker) + 1 :]
            if rest:
                return Path(rest[0]).stem
    return Path(filename).stem


def first_line(message: str, width: int = 300) -> str:
    line = message.strip().splitlines()[0] if message.strip() else ""
    return line if len(line) <= width else line[: width - 1] + "…"


class LibraryWarnings:
    """Counts what libraries say; see the module docstring. One instance per run."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str, str, str], _Count] = {}
        self._shown: set[tuple[str, str, str]] = set()
        self._lock = threading.Lock()
        self._phase: Callable[[], str] = lambda: ""
        self._saved: dict[logging.Logger, _Saved] = {}

    # ------------------------------------------------------------------ results

    def entries(self) -> tuple[LibraryWarning, ...]:
        """Every distinct warning per phase, in the order they first came."""
        return tuple(
            LibraryWarning(c.source, c.category, c.message, c.phase, c.count, c.noise)
            for c in self._counts.values()
        )

    def lines(self) -> list[str]:
        """One line per distinct warning (noise left out), with its count per phase."""
        merged: dict[tuple[str, str, str], list[_Count]] = {}
        for c in self._counts.values():
            if not c.noise:
                merged.setdefault((c.source, c.category, c.message), []).append(c)
        out = []
        for (source, category, message), counts in merged.items():
            where = ", ".join(f"{c.phase} ×{c.count}" for c in counts)
            out.append(f"{source} {category}: {first_line(message)} ({where})")
        return out

    # ------------------------------------------------------------------ capture

    @contextlib.contextmanager
    def capture(self, phase: Callable[[], str]) -> Iterator[LibraryWarnings]:
        """Count warnings inside the block; ``phase()`` names the phase a warning came in."""
        self._phase = phase
        with warnings.catch_warnings():
            _show_every_repeat()
            warnings.showwarning = self._on_warning
            self._take_over_loggers()
            try:
                yield self
            finally:
                self._give_back_loggers()
                self._report_repeats()

    def _on_warning(self, message, category, filename, lineno, file=None, line=None) -> None:
        text = str(message)
        if self._note(package_of(filename), category.__name__, text):
            PY_WARNINGS.warning("%s:%s: %s: %s", filename, lineno, category.__name__, text)

    def _on_record(self, record: logging.LogRecord, tapped: logging.Logger) -> None:
        if record.levelno < logging.WARNING:
            self._deliver(record, tapped, original=True)
            return
        try:
            text = record.getMessage()
        except Exception:  # a library's bad format arguments must not cost the run
            text = str(record.msg)
        if self._note(record.name, record.levelname, text):
            self._deliver(record, tapped, original=False)

    def _note(self, source: str, category: str, message: str) -> bool:
        """Count one occurrence; True when it is the first, to be shown."""
        message = message[:MAX_MESSAGE]
        noise = is_noise(source, message)
        with self._lock:
            key = (source, category, message, self._phase())
            entry = self._counts.setdefault(key, _Count(*key, noise=noise))
            entry.count += 1
            first = (source, category, message) not in self._shown
            self._shown.add((source, category, message))
        if noise:
            if first:
                log.debug("%s: %s (a library hint, not about this run)", source, message)
            return False
        return first

    def _report_repeats(self) -> None:
        totals: dict[tuple[str, str, str], list[_Count]] = {}
        for c in self._counts.values():
            if not c.noise:
                totals.setdefault((c.source, c.category, c.message), []).append(c)
        for (source, _, message), counts in totals.items():
            total = sum(c.count for c in counts)
            if total > 1:
                where = ", ".join(f"{c.phase} {c.count}" for c in counts)
                log.warning(
                    "%s: the warning %r came %d times (%s)",
                    source,
                    first_line(message, 120),
                    total,
                    where,
                )

    # ------------------------------------------------------------------ loggers

    def _take_over_loggers(self) -> None:
        """Each library logger that ends a record's way up (its own handlers, or no
        propagation) gets one tap instead, which counts and forwards."""
        for logger in _boundaries():
            self._saved[logger] = _Saved(list(logger.handlers), logger.propagate)
            logger.handlers = [_Tap(logger, self._on_record)]
            logger.propagate = False

    def _give_back_loggers(self) -> None:
        for logger, saved in self._saved.items():
            logger.handlers = saved.handlers
            logger.propagate = saved.propagate
        self._saved.clear()

    def _deliver(self, record: logging.LogRecord, tapped: logging.Logger, original: bool) -> None:
        """To the run's log (the root logger's handlers) when it has one, else, and for
        records below WARNING, the way the record would have gone without the capture."""
        root = logging.getLogger()
        if not original and root.handlers:
            _handle(root.handlers, record)
            return
        found = False
        logger: logging.Logger | None = tapped
        while logger is not None:
            saved = self._saved.get(logger)
            handlers = saved.handlers if saved else logger.handlers
            found = found or bool(handlers)
            _handle(handlers, record)
            if not (saved.propagate if saved else logger.propagate):
                break
            logger = logger.parent
        if not found and logging.lastResort is not None:
            _handle([logging.lastResort], record)


class _Tap(logging.Handler):
    def __init__(self, logger: logging.Logger, on_record) -> None:
        super().__init__()
        self._logger = logger
        self._on_record = on_record

    def emit(self, record: logging.LogRecord) -> None:
        self._on_record(record, self._logger)


def _handle(handlers: list[logging.Handler], record: logging.LogRecord) -> None:
    for handler in handlers:
        if record.levelno >= handler.level:
            handler.handle(record)


def _boundaries() -> list[logging.Logger]:
    """The library loggers at which a record's way up ends or forks: each library's own
    logger, and every logger below one with handlers of its own or no propagation."""
    found = [logging.getLogger(name) for name in LIBRARIES]
    for name, logger in list(logging.root.manager.loggerDict.items()):
        # torch's artifact and trace loggers (``torch.__trace``, ``...__recompiles``) carry
        # structured debug output, never warnings: left alone.
        below = any(name.startswith(f"{lib}.") for lib in LIBRARIES) and "__" not in name
        ends = isinstance(logger, logging.Logger) and (logger.handlers or not logger.propagate)
        if below and ends:
            found.append(logger)
    return found


def _pattern(value) -> str:
    """A filter's message or module as ``filterwarnings`` takes it back."""
    if value is None:
        return ""
    if isinstance(value, str):  # the interpreter's own default filters hold exact names
        return re.escape(value) + r"\Z"
    return value.pattern


def _show_every_repeat() -> None:
    """Inside ``catch_warnings``: the filters that show a warning once show it every time
    (so each occurrence is counted); "ignore" and "error" filters keep their place."""
    kept = list(warnings.filters)
    warnings.resetwarnings()
    for action, message, category, module, lineno in kept:
        warnings.filterwarnings(
            "always" if action in _SHOWN_ONCE else action,
            message=_pattern(message),
            category=category,
            module=_pattern(module),
            lineno=lineno,
            append=True,
        )
    warnings.simplefilter("always", append=True)
