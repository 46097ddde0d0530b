"""The Pareto front of a set of points: pure, no Optuna."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def dominates(a: Sequence[float], b: Sequence[float], directions: Sequence[str]) -> bool:
    """``a`` is at least as good as ``b`` in every objective and better in one."""
    better = False
    for x, y, d in zip(a, b, directions, strict=True):
        if d == "maximize":
            x, y = -x, -y
        if x > y:
            return False
        better = better or x < y
    return better


def pareto_front(points: Sequence[Sequence[float]], directions: Sequence[str]) -> list[int]:
    """Indices of the points no other point dominates, in their order (equal points are
    all kept). Two objectives take the O(n log n) sweep of :func:`minimal_2d`."""
    if len(directions) == 2 and points:
        sign = [-1.0 if d == "maximize" else 1.0 for d in directions]
        mask = minimal_2d([sign[0] * p[0] for p in points], [sign[1] * p[1] for p in points])
        return [i for i, on in enumerate(mask) if on]
    return [
        i
        for i, p in enumerate(points)
        if not any(dominates(q, p, directions) for j, q in enumerate(points) if j != i)
    ]


def minimal_2d(xs: Sequence[float], ys: Sequence[float]) -> list[bool]:
    """True for points not dominated when minimising both x and y (NaN points: False).

    A point is dominated by another that is no worse on both axes and differs from it;
    equal points are all on the front. O(n log n): sorted by x, a point is on the front
    when no point with a smaller x has a y as low, and none with its x a lower y.
    """
    x = np.asarray(xs, dtype=float)
    y = np.asarray(ys, dtype=float)
    out = np.zeros(len(x), dtype=bool)
    finite = np.flatnonzero(np.isfinite(x) & np.isfinite(y))
    best_before = math.inf  # lowest y among points with a smaller x
    order = finite[np.lexsort((y[finite], x[finite]))]
    i = 0
    while i < len(order):
        j = i
        while j < len(order) and x[order[j]] == x[order[i]]:
            j += 1
        lowest = y[order[i]]  # sorted by y within one x
        for k in order[i:j]:
            out[k] = y[k] < best_before and y[k] == lowest
        best_before = min(best_before, lowest)
        i = j
    return out.tolist()
