"""Warmup to convergence: when the latencies have stopped moving (pure).

A fixed number of warmup calls may be too few (caches, clocks and allocators still
settling) or too many. The rule ``measure.warmup_until_cv`` keeps warming up until the
coefficient of variation of the last ``measure.warmup_window`` passes is at most that
value. The unit is the pass (one call of every batch of the workload, in order), since
calls of different batches take different times by design; with one batch it is the call.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def window_cv(seconds: Sequence[float], batches: int, window: int) -> float | None:
    """The CV of the total time of the last ``window`` complete passes, from the warmup
    calls' ``seconds`` in call order (``batches`` calls a pass); None until there are
    ``window`` passes (at least 2)."""
    passes = len(seconds) // max(batches, 1)
    if window < 2 or passes < window:
        return None
    totals = [
        math.fsum(seconds[p * batches : (p + 1) * batches]) for p in range(passes - window, passes)
    ]
    mean = statistics.fmean(totals)
    return statistics.stdev(totals) / mean if mean > 0 else math.inf
