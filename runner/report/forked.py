"""Independent CPU-bound calls (a report's figures) run in forked worker processes.

Drawing figures is single-threaded matplotlib work: one process per usable CPU cuts a
report's figure time by about that factor. The workers are forked, so each call is a
closure over what the parent already holds (the report's data, the imported matplotlib):
nothing is pickled on the way in, only the results on the way out.

Falls back to calling in this process, in order, where a fork would not be safe (another
thread is alive: a lock it holds would stay locked in the child), where there is one
usable CPU or one call, and when a worker dies (the remaining calls then run here).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

from runner.forkserver import other_threads

log = logging.getLogger(__name__)

T = TypeVar("T")

# The calls of the map in progress: the forked workers find them here by index.
_CALLS: Sequence[Callable[[], object]] = ()


def usable_cpus() -> int:
    """CPUs this process may run on (a Slurm or container CPU set, not the machine's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def fork_is_safe() -> bool:
    return "fork" in multiprocessing.get_all_start_methods() and not other_threads()


def _call(index: int) -> object:
    return _CALLS[index]()


def _leave_stops_to_the_parent() -> None:
    # Ctrl-C reaches the whole process group: the parent handles it (and ends the pool);
    # a worker finishes its call. SIGTERM still ends a worker (the pool's own shutdown).
    for signum in (signal.SIGINT, signal.SIGUSR2):
        signal.signal(signum, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def map_forked(calls: Sequence[Callable[[], T]], workers: int | None = None) -> list[T]:
    """``[call() for call in calls]``, spread over up to ``workers`` forked processes
    (default: the usable CPUs). Results must pickle; a call that raises re-raises here."""
    global _CALLS
    n = min(usable_cpus() if workers is None else workers, len(calls))
    if n < 2 or not fork_is_safe():
        return [call() for call in calls]
    _CALLS = calls
    pool = ProcessPoolExecutor(
        n,
        mp_context=multiprocessing.get_context("fork"),
        initializer=_leave_stops_to_the_parent,
    )
    results: list[T] = []
    try:
        futures = [pool.submit(_call, i) for i in range(len(calls))]
        for future in futures:
            results.append(future.result())  # type: ignore[arg-type]
    except BrokenProcessPool as exc:
        log.warning("a worker process died (%s): the remaining calls run here", exc)
    finally:
        # A stop (raised here by the parent's handler) cancels what has not started.
        pool.shutdown(wait=True, cancel_futures=True)
        _CALLS = ()
    return results + [call() for call in calls[len(results) :]]
