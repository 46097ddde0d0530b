"""What a run shows while it works, kept out of its timed windows.

- Long steps (idle baseline, load, compile, warmup, measuring) announce themselves with
  one log line each, and measured passes end with one line: pass k of at least n,
  requests and tokens so far, measured seconds against the stopping criteria. Those go
  wherever the run's log goes (the terminal, ``run.log``, Slurm output): a few lines
  per run, never one per call. Passes shorter than :data:`PASS_LINE_EVERY_S` (a tiny
  model's take milliseconds) get a line every that many seconds, the first and the last
  pass always.
- On a terminal, a bar also counts the generate calls of the warmup and of each pass.
  It is redrawn only between calls, by the run's own thread: tqdm without its monitor
  thread, so nothing prints or redraws while a timed ``generate`` runs. It is removed
  when its step ends (the step's line stays).
- Where the output is not a terminal, the libraries' own bars (transformers' "Loading
  weights", the GGUF conversion) are switched off: a bar redrawn into a file is one
  line per update.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import IO, Any

from tqdm import tqdm

log = logging.getLogger(__name__)

PASS_LINE_EVERY_S = 5.0


class _Bar(tqdm):
    # No monitor thread: it could wake up inside a timed window.
    monitor_interval = 0


def pass_line(
    done: int,
    min_repeats: int,
    requests: int,
    tokens: int,
    measured_s: float,
    min_seconds: float,
    max_seconds: float,
) -> str:
    """One measured pass, for the log: where the run stands against its stopping rule."""
    at_least = f"at least {min_repeats}" if done < min_repeats else f"{done}+"
    return (
        f"pass {done} of {at_least}: {requests} requests, {tokens} output tokens, "
        f"{measured_s:.2f} s measured (stops at >= {min_repeats} passes and "
        f">= {min_seconds:g} s, or at {max_seconds:g} s)"
    )


class Display:
    """Progress of one run; see the module docstring. ``bars``: None decides by the stream."""

    def __init__(
        self,
        stream: IO[str] | None = None,
        *,
        bars: bool | None = None,
        pass_line_every_s: float = PASS_LINE_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self.bars = _is_terminal(self._stream) if bars is None else bars
        self._bar: _Bar | None = None
        self._every = pass_line_every_s
        self._clock = clock
        self._last_pass_line: float | None = None
        if not self.bars:
            _library_bars_off()

    def step(self, message: str, *args: Any) -> None:
        """A long step begins: one line (``%s`` args, as for logging)."""
        self.close()
        log.info(message, *args)

    def calls(self, label: str, total: int) -> None:
        """Generate calls follow: on a terminal, a bar of ``total`` calls."""
        self.close()
        if self.bars and total > 0:
            self._bar = _Bar(
                total=total,
                desc=label,
                unit="call",
                file=self._stream,
                leave=False,
                mininterval=0,
                dynamic_ncols=True,
            )

    def call_done(self, status: str = "") -> None:
        """One generate call returned (call it between calls only)."""
        if self._bar is not None:
            if status:
                self._bar.set_postfix_str(status, refresh=False)
            self._bar.update(1)

    def pass_done(self, line: str, final: bool = False) -> None:
        """A measured pass ended: its line (see :func:`pass_line`), unless the last one
        was logged less than ``pass_line_every_s`` ago and this is not the ``final`` pass."""
        self.close()
        now = self._clock()
        last = self._last_pass_line
        if final or last is None or now - last >= self._every:
            self._last_pass_line = now
            log.info("%s", line)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


def _library_bars_off() -> None:
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:
        pass
