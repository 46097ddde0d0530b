"""When each request of an open-loop run is sent: the arrival schedule, drawn from a seed.

Pure: the same (process, rate, burstiness, count, duration, seed) always gives the same
schedule, which the run records, so two runs see the same arrivals.

- ``poisson``: gaps drawn from a gamma distribution of shape ``burstiness`` and mean
  ``1 / rate``, as vLLM's serving benchmark draws them; shape 1 is the exponential, so
  the arrivals are a Poisson process. Below 1 the arrivals are burstier, above 1 more
  even; the mean rate is ``rate`` either way.
- ``constant``: equal gaps of ``1 / rate``.

The first request is sent after one gap, not at zero, so the first gap is drawn like
every other.
"""

from __future__ import annotations

import random

from runner.config.schema_serving import Arrival


def schedule(
    arrival: Arrival,
    rate: float,
    count: int,
    seed: int,
    *,
    burstiness: float | None = None,
    duration_seconds: float | None = None,
) -> list[float]:
    """Send times in seconds from the start: ``count`` of them, fewer where
    ``duration_seconds`` ends the sending first."""
    if arrival is Arrival.closed:
        raise ValueError("a closed loop has no schedule: each user sends on each answer")
    shape = 1.0 if burstiness is None else float(burstiness)
    rng = random.Random(seed)
    times: list[float] = []
    t = 0.0
    for _ in range(count):
        if arrival is Arrival.constant:
            gap = 1.0 / rate
        else:
            gap = rng.gammavariate(shape, 1.0 / (rate * shape))
        t += gap
        if duration_seconds is not None and t >= duration_seconds:
            break
        times.append(t)
    return times
