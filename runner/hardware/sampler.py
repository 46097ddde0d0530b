"""The run's hardware time series: a thread that reads the sources at a fixed rate.

One row per tick, with the seconds since the sampler started (``t_seconds``), the wall
clock (``time_unix``), the run's phase at that moment and the measured window open then
(``window``: its index, None outside every window), then every source's columns
(runner.hardware.cpu, runner.hardware.gpu). The thread runs beside the run, never inside
its measured code: a window's edges are only stamped (:meth:`Sampler.begin_window`), so
the clock read by the run is the only work they add. Torch releases the GIL in its
kernels, so the sampler's reads interleave with a generate call rather than stopping it;
what it costs is measured in ``make bench`` (bench/sampler.py).

A read that fails gives missing values for that tick, never an exception in the thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Window:
    """A measured window: its index and its edges in the sampler's seconds."""

    index: int
    begin: float
    end: float | None = None


@dataclass
class Sampler:
    """Samples ``sources`` ``hz`` times a second from :meth:`start` to :meth:`stop`.

    ``phase``: the run's phase now (read at each tick). ``clock``: seconds (perf_counter;
    tests pass a fake one together with a manual :meth:`tick`).
    """

    sources: Sequence[Any]
    hz: float
    phase: Callable[[], str]
    clock: Callable[[], float] = time.perf_counter
    rows: list[dict[str, Any]] = field(default_factory=list)
    windows: list[Window] = field(default_factory=list)
    _t0: float | None = None
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def now(self) -> float:
        """Seconds since the sampler started."""
        if self._t0 is None:
            self._t0 = self.clock()
        return self.clock() - self._t0

    def start(self) -> None:
        """The first row now, then one every 1/hz seconds in a daemon thread."""
        self.now()
        self.tick()
        self._thread = threading.Thread(target=self._run, name="hardware-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """End the thread, then one last row (so even a short run has its end)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        self.tick()

    def _run(self) -> None:
        period = 1.0 / self.hz
        next_at = self.clock() + period
        while not self._stop.wait(max(0.0, next_at - self.clock())):
            self.tick()
            # A fixed grid: a slow read delays one row, not every later one.
            next_at += period
            behind = self.clock() - next_at
            if behind > period:
                next_at += period * int(behind / period)

    def tick(self) -> None:
        """Read every source once into a row."""
        t = self.now()
        row: dict[str, Any] = {
            "t_seconds": t,
            "time_unix": time.time(),
            "phase": self.phase(),
            "window": self._open_window(),
        }
        for source in self.sources:
            try:
                row.update(source.read(self.clock()))
            except Exception as exc:  # a source must never end the thread
                log.debug("hardware source %s failed: %s", getattr(source, "name", "?"), exc)
        with self._lock:
            self.rows.append(row)

    def _open_window(self) -> int | None:
        with self._lock:
            last = self.windows[-1] if self.windows else None
        return last.index if last is not None and last.end is None else None

    def begin_window(self) -> None:
        """A measured window opens now (only its time is taken here)."""
        with self._lock:
            self.windows.append(Window(len(self.windows), self.now()))

    def end_window(self) -> None:
        with self._lock:
            if self.windows and self.windows[-1].end is None:
                last = self.windows[-1]
                self.windows[-1] = Window(last.index, last.begin, self.now())

    def snapshot(self) -> tuple[list[dict[str, Any]], list[Window]]:
        """The rows and windows so far (copies; the thread may still be adding)."""
        with self._lock:
            return list(self.rows), list(self.windows)

    def largest_gap(self) -> float | None:
        times = [r["t_seconds"] for r in self.snapshot()[0]]
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        return max(gaps) if gaps else None


def write_timeseries(path: Path, rows: Sequence[dict[str, Any]], windows: Sequence[Window]) -> None:
    """The rows as a parquet table, atomically; the windows' edges in its metadata."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from runner.results import atomic_path

    columns: list[str] = []
    for row in rows:  # every column any row has, in the order first seen
        columns += [k for k in row if k not in columns]
    table = pa.Table.from_pylist([{c: row.get(c) for c in columns} for row in rows])
    edges = [{"index": w.index, "begin": w.begin, "end": w.end} for w in windows]
    table = table.replace_schema_metadata({"windows": json.dumps(edges)})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_windows(path: Path) -> list[Window]:
    """The measured windows' edges kept in a time series' metadata."""
    import json

    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    raw = json.loads(meta.get(b"windows", b"[]"))
    return [Window(int(w["index"]), float(w["begin"]), w.get("end")) for w in raw]
