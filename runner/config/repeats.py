"""Repeats of a sweep's points: the order the jobs run in (pure; the grid sweeper uses it).

Each point of the grid runs ``repeat.count`` times, each time as its own job whose
overrides end in ``repeat.index=<i>`` (so each repeat has its own directory and result).
The order decides what a drift in the machine does to the comparison:

- ``interleaved`` (a b c a b c): every point runs once before any runs again, so a slow
  drift (heat, a neighbour's load) hits every point alike and the points of one repeat can
  be compared with each other;
- ``grouped`` (a a a b b b): a point's repeats back to back, the order a naive loop gives;
- ``shuffled``: every (point, repeat) in an order drawn with ``repeat.seed``.

Light on purpose: Hydra imports the sweeper's module at every start.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

INDEX_KEY = "repeat.index"
ORDERS = ("interleaved", "shuffled", "grouped")


def repeat_plan(
    jobs: Sequence[Sequence[str]], count: int, order: str = "interleaved", seed: int = 0
) -> list[list[str]]:
    """The jobs to launch, in order: each of ``jobs`` (override lists) ``count`` times with
    ``repeat.index=<i>`` added; with ``count`` 1 the jobs as they are."""
    if count <= 1:
        return [list(job) for job in jobs]
    if order not in ORDERS:
        raise ValueError(f"repeat.order={order}: one of {', '.join(ORDERS)}")
    pairs = [(r, j) for r in range(count) for j in range(len(jobs))]  # interleaved
    if order == "grouped":
        pairs.sort(key=lambda p: (p[1], p[0]))
    elif order == "shuffled":
        random.Random(seed).shuffle(pairs)
    return [[*jobs[j], f"{INDEX_KEY}={r}"] for r, j in pairs]


def settings(config: Any) -> tuple[int, str, int]:
    """``(count, order, seed)`` of the ``repeat`` section of a composed config (a
    DictConfig or a dict; an Enum order as its value); ``(1, "interleaved", 0)`` without one."""
    repeat = (config or {}).get("repeat") or {}
    order = repeat.get("order") or "interleaved"
    return (
        int(repeat.get("count") or 1),
        str(getattr(order, "value", order)),
        int(repeat.get("seed") or 0),
    )


def sweep_jobs(config: Any, jobs: Sequence[Sequence[str]]) -> list[list[str]]:
    """:func:`repeat_plan` of ``jobs`` with the repeat settings of ``config``."""
    return repeat_plan(jobs, *settings(config))
