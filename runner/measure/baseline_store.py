"""Idle baselines shared by the runs of one sweep: one file per machine and setting.

A sweep's runs on one machine measure the same idle power; measuring it again before
every point costs seconds each. The first run of a sweep on a machine measures it and
writes it into the sweep directory; later runs there reuse it while it is younger than
``max_age_s``. The file is named by the host, the metered GPUs and the baseline settings,
so another machine, another set of GPUs or another setting gets its own measurement.

A lock per file makes concurrent runs on one machine wait for one measurement rather
than measure at once (each would see the other's load); runs on other machines are not
held up. Stored values are plain JSON: what they mean belongs to
:mod:`runner.measure.idle_baseline`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

STORE_DIR = ".idle-baseline"  # inside the sweep directory; report globs */result.json only


@dataclass(frozen=True)
class Reused:
    """A stored value and how old it is (seconds, wall clock)."""

    value: dict[str, Any]
    age_seconds: float


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # blocks while another run measures
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class SweepBaselines:
    """Get-or-measure of one value per ``key`` in ``sweep_dir``; see the module docstring."""

    def __init__(
        self,
        sweep_dir: Path,
        max_age_s: float,
        *,
        host: str | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.dir = Path(sweep_dir) / STORE_DIR
        self.max_age_s = float(max_age_s)
        self.host = host or socket.gethostname()
        self._now = wall_clock

    def path(self, key: dict[str, Any]) -> Path:
        digest = hashlib.sha256(
            json.dumps({"host": self.host, **key}, sort_keys=True).encode()
        ).hexdigest()[:16]
        safe_host = "".join(c if c.isalnum() or c in "-._" else "_" for c in self.host)
        return self.dir / f"{safe_host}-{digest}.json"

    def get_or_measure(
        self, key: dict[str, Any], measure: Callable[[], dict[str, Any] | None]
    ) -> tuple[dict[str, Any] | None, Reused | None]:
        """``(value, None)`` when measured now, ``(value, Reused)`` when reused.

        ``measure`` returns the value, or None when it failed (nothing is stored then).
        The stored value gets ``measured_at_unix`` and ``host`` added.
        """
        path = self.path(key)
        with _locked(path.with_suffix(".lock")):
            found = self._read(path, key)
            if found is not None:
                return found.value, found
            value = measure()
            if value is not None:
                value = {**value, "measured_at_unix": self._now(), "host": self.host}
                self._write(path, {"key": key, "value": value})
            return value, None

    def _read(self, path: Path, key: dict[str, Any]) -> Reused | None:
        try:
            data = json.loads(path.read_text())
            value = data["value"]
            age = self._now() - float(value["measured_at_unix"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable idle baseline %s (%s): measuring again", path, exc)
            return None
        if data.get("key") != key or not 0 <= age <= self.max_age_s:
            return None
        return Reused(value, age)

    def _write(self, path: Path, data: dict[str, Any]) -> None:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(path)
