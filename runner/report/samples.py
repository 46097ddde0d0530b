"""Per-request latency samples from a run's ``requests.csv`` (for the distribution plots)."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from runner.results import REQUESTS_FILE


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


def read_latency_samples(run_dir: Path) -> LatencySamples:
    """TTFT and inter-token latency samples (ms) of one run.

    Raises ``ValueError`` with a one-line reason when ``requests.csv`` is missing or unusable.
    """
    path = Path(run_dir) / REQUESTS_FILE
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise ValueError(f"no {REQUESTS_FILE}") from None
    except Exception as exc:
        raise ValueError(f"unreadable {REQUESTS_FILE} ({type(exc).__name__}: {exc})") from None
    ttft: list[float] = []
    if "ttft_seconds" in frame.columns:
        values = pd.to_numeric(frame["ttft_seconds"], errors="coerce")
        ttft = [v * 1e3 for v in values if math.isfinite(v)]
    itl: list[float] = []
    if "itl_seconds" in frame.columns:
        for cell in frame["itl_seconds"]:
            itl.extend(v * 1e3 for v in parse_float_list(cell))
    if not ttft and not itl:
        raise ValueError(f"{REQUESTS_FILE} has no ttft_seconds/itl_seconds values")
    return LatencySamples(ttft, itl)
