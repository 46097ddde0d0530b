"""The load generator: sends requests to a streaming engine on a schedule (open loop) or
from ``concurrency`` users (closed loop), and stamps every token as it streams back.

Engine-agnostic: anything with :class:`StreamingEngine`'s two methods serves, vLLM's
async engine (:mod:`runner.engines.vllm_async`) or a stand-in with known service times
(the tests' queueing check). One asyncio loop drives it all, in the runner's process:

- open loop: request ``i`` is sent at ``schedule[i]`` seconds from the start, whether or
  not earlier ones have been answered. Each send is stamped, so the lag between the
  schedule and the send (``submitted - scheduled``) is measured, never assumed;
- closed loop: each user sends its next request when its last one is answered;
- after the last send, the rest may take ``drain_seconds``; what is still running then is
  cancelled (vLLM aborts a cancelled request) and recorded as unfinished.

A stop is polled every :data:`POLL_SECONDS` and raised from the top coroutine, after which
every request still in flight is cancelled: nothing keeps running in the engine.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

POLL_SECONDS = 0.02


@dataclass(frozen=True)
class Delta:
    """What one streamed output of a request brings: its new token ids, whether it is the
    last, and (on the last, where the engine says) how long it queued before its first
    scheduled step."""

    token_ids: tuple[int, ...]
    finished: bool
    queued_seconds: float | None = None


class StreamingEngine(Protocol):
    def stream(self, prompt: Sequence[int], request_id: str) -> AsyncIterator[Delta]: ...


@dataclass
class Trace:
    """One request, times in seconds from the run's start. ``scheduled`` is None in a
    closed loop (a user sends when answered); ``finished`` None: not answered in time."""

    index: int
    prompt: int
    input_tokens: int
    scheduled: float | None
    submitted: float | None = None
    token_times: list[float] = field(default_factory=list)
    finished: float | None = None
    queued: float | None = None

    @property
    def lag(self) -> float | None:
        if self.scheduled is None or self.submitted is None:
            return None
        return self.submitted - self.scheduled


@dataclass(frozen=True)
class Plan:
    """What to send: ``schedule`` (open loop) or ``concurrency`` users for ``count``
    requests (closed loop); prompts are used in order, cycled."""

    count: int
    schedule: tuple[float, ...] | None = None
    concurrency: int | None = None
    drain_seconds: float = 60.0


async def serve(
    engine: StreamingEngine,
    prompts: Sequence[Sequence[int]],
    plan: Plan,
    traces: list[Trace],
    *,
    on_submit: Callable[[int], None] = lambda i: None,
    check: Callable[[], None] = lambda: None,
    clock: Callable[[], float] = time.perf_counter,
) -> list[Trace]:
    """Run ``plan`` against ``engine``, appending to ``traces`` as requests are sent (so a
    stop leaves what was gathered); ``on_submit(i)`` right after request ``i`` is sent;
    ``check()`` raises a stop."""
    driver = asyncio.ensure_future(_drive(engine, prompts, plan, traces, on_submit, clock))
    try:
        while not driver.done():
            await asyncio.wait({driver}, timeout=POLL_SECONDS)
            check()
        return driver.result()
    finally:
        if not driver.done():
            driver.cancel()
            await asyncio.gather(driver, return_exceptions=True)


async def _drive(
    engine: StreamingEngine,
    prompts: Sequence[Sequence[int]],
    plan: Plan,
    traces: list[Trace],
    on_submit: Callable[[int], None],
    clock: Callable[[], float],
) -> list[Trace]:
    start = clock()
    tasks: list[asyncio.Future[None]] = []
    all_sent = asyncio.Event()
    sent: asyncio.Future[bool] | None = None

    def new_trace(i: int, scheduled: float | None) -> Trace:
        p = i % len(prompts)
        trace = Trace(i, p, len(prompts[p]), scheduled)
        traces.append(trace)
        return trace

    async def one(trace: Trace) -> None:
        trace.submitted = clock() - start
        on_submit(trace.index)
        if trace.index == plan.count - 1:
            all_sent.set()
        async for delta in engine.stream(prompts[trace.prompt], f"s{trace.index}"):
            now = clock() - start
            trace.token_times += [now] * len(delta.token_ids)
            if delta.finished:
                trace.finished = now
                trace.queued = delta.queued_seconds

    try:
        if plan.schedule is not None:
            for i, at in enumerate(plan.schedule[: plan.count]):
                delay = at - (clock() - start)
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.ensure_future(one(new_trace(i, at))))
            all_sent.set()
        else:
            counter = itertools.count()

            async def user() -> None:
                while (i := next(counter)) < plan.count:
                    await one(new_trace(i, None))

            tasks = [asyncio.ensure_future(user()) for _ in range(plan.concurrency or 1)]
        sent = asyncio.ensure_future(all_sent.wait())
        while not sent.done():  # a request that fails before the last send ends it here
            await asyncio.wait([sent, *tasks], return_when=asyncio.FIRST_COMPLETED)
            _raise_failed(tasks)
        if tasks:
            await asyncio.wait(tasks, timeout=plan.drain_seconds)
        _raise_failed(tasks)
        return traces
    finally:
        if sent is not None:
            sent.cancel()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _raise_failed(tasks: Sequence[asyncio.Future[None]]) -> None:
    """A request that failed in the engine fails the run (its error, not a hang)."""
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
