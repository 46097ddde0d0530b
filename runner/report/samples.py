"""Per-request latency samples of a run (for the distribution plots).

Read from ``requests.parquet``; runs written before it existed have ``requests.csv``,
whose ``itl_seconds`` cells are JSON lists, and are still read.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.sections.requests import LEGACY_REQUESTS_FILE, REQUESTS_FILE, read_requests


@dataclass
class LatencySamples:
    """Raw samples of one run in milliseconds: TTFT per request, every inter-token gap."""

    ttft_ms: list[float]
    itl_ms: list[float]


def _finite(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def parse_float_list(cell: Any) -> list[float]:
    """A cell holding floats: a JSON list ``[0.01, 0.02]`` or ``0.01 0.02`` (or ``,``/``;``).

    Blanks, ``nan`` and junk tokens are dropped; never raises.
    """
    if cell is None:
        return []
    if isinstance(cell, (int, float)):
        number = _finite(cell)
        return [] if number is None else [number]
    text = str(cell).strip()
    if text.startswith("["):
        try:
            values = json.loads(text)
        except ValueError:
            text = text.strip("[]")
        else:
            values = values if isinstance(values, list) else [values]
            return [x for x in map(_finite, values) if x is not None]
    return [x for x in map(_finite, re.split(r"[\s,;]+", text)) if x is not None]


def _from_parquet(path: Path) -> tuple[list[float], list[float]]:
    records = read_requests(path)
    ttft = [r.ttft_seconds for r in records if r.ttft_seconds is not None]
    itl = [x for r in records for x in r.itl_seconds]
    return ttft, itl


def _from_legacy_csv(path: Path) -> tuple[list[float], list[float]]:
    import pandas as pd

    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    ttft: list[float] = []
    if "ttft_seconds" in frame.columns:
        ttft = list(pd.to_numeric(frame["ttft_seconds"], errors="coerce"))
    itl: list[float] = []
    if "itl_seconds" in frame.columns:
        for cell in frame["itl_seconds"]:
            itl.extend(parse_float_list(cell))
    return ttft, itl


def read_latency_samples(run_dir: Path) -> LatencySamples:
    """TTFT and inter-token latency samples (ms) of one run.

    Raises ``ValueError`` with a one-line reason when the per-request table is missing
    or unusable.
    """
    run_dir = Path(run_dir)
    path = run_dir / REQUESTS_FILE
    read = _from_parquet
    if not path.exists() and (run_dir / LEGACY_REQUESTS_FILE).exists():
        path, read = run_dir / LEGACY_REQUESTS_FILE, _from_legacy_csv
    try:
        ttft_s, itl_s = read(path)
    except FileNotFoundError:
        raise ValueError(f"no {REQUESTS_FILE}") from None
    except Exception as exc:
        raise ValueError(f"unreadable {path.name} ({type(exc).__name__}: {exc})") from None
    ttft = [v * 1e3 for v in ttft_s if v is not None and math.isfinite(v)]
    itl = [v * 1e3 for v in itl_s if v is not None and math.isfinite(v)]
    if not ttft and not itl:
        raise ValueError(f"{path.name} has no ttft_seconds/itl_seconds values")
    return LatencySamples(ttft, itl)
