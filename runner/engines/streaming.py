"""What the two serving sessions share (vLLM's ``AsyncLLM``, transformers' continuous
batching): an event loop of their own, the warmup's call over their ``stream``, the end of
the loop.

A session owns one loop for its whole life because ``AsyncLLM`` binds its output handler
to the loop of its first request; every phase (warmup, load, quality) runs on it.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Coroutine, Sequence
from typing import Any, TypeVar

from runner.engines.vllm_engine import StreamLog, call_result
from runner.measure.generation import CallResult
from runner.serving.load import Delta

T = TypeVar("T")


class LoopSession:
    """A streaming engine (:class:`runner.serving.load.StreamingEngine`) on its own loop;
    subclasses give :meth:`stream`."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._counter = itertools.count()

    def stream(self, prompt: Sequence[int], request_id: str) -> AsyncIterator[Delta]:
        raise NotImplementedError

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def next_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._counter)}"

    def call(self, prompts: Sequence[Sequence[int]]) -> CallResult:
        """Send ``prompts`` together and wait for all (one warmup call), timed as
        :meth:`runner.engines.vllm_engine.VllmSession.call` times one."""
        log = StreamLog()
        ids = [self.next_id("w") for _ in prompts]

        async def one(rid: str, prompt: Sequence[int], start: float) -> None:
            async for d in self.stream(prompt, rid):
                log.add(rid, d.token_ids, time.perf_counter() - start, d.finished)

        async def all_of() -> float:
            start = time.perf_counter()
            await asyncio.gather(*(one(r, p, start) for r, p in zip(ids, prompts, strict=True)))
            return time.perf_counter() - start

        return call_result(ids, log, self.run(all_of()))

    def close_loop(self) -> None:
        """Cancel what is left on the loop (a stop's leftovers), let it finish, close."""
        if self.loop.is_closed():
            return
        pending = asyncio.all_tasks(self.loop)
        for task in pending:
            task.cancel()
        if pending:
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.close()
