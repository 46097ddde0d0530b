"""vLLM's in-process async engine (``AsyncLLM``) for serving under load.

What ``vllm serve`` runs behind its HTTP front end, without the HTTP: each request goes in
through ``AsyncLLM.generate`` when the load generator (:mod:`runner.serving.load`) sends
it, and streams its new tokens back (``RequestOutputKind.DELTA``) while vLLM's engine
process schedules it with whatever else is running (continuous batching).

``AsyncLLM`` binds its output handler to the event loop of its first request, so the
session owns one loop for its whole life and runs every phase on it (warmup, the served
load, the quality windows).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from runner.engines import processes
from runner.engines.streaming import LoopSession
from runner.engines.vllm_engine import _import_vllm
from runner.engines.vllm_readback import read_back_engine, read_back_sampling
from runner.serving.load import Delta

log = logging.getLogger(__name__)


class AsyncVllmSession(LoopSession):
    """One ``AsyncLLM`` with the run's sampling parameters and its own event loop."""

    def __init__(self, llm_kwargs: dict[str, Any], sampling_kwargs: dict[str, Any]) -> None:
        vllm = _import_vllm()
        from vllm.sampling_params import RequestOutputKind

        super().__init__()
        self._children_before = set(processes.descendants())
        self._ipc = processes.IpcFolder()
        self.llm_kwargs = llm_kwargs
        self.engine: Any = None
        self.sampling = vllm.SamplingParams(**sampling_kwargs, output_kind=RequestOutputKind.DELTA)
        self._vllm = vllm

    def load(self, log_path: Path | None = None) -> None:
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        self._ipc.enter()
        with processes.stdio_to(log_path) if log_path else contextlib.nullcontext():
            self.engine = AsyncLLM.from_engine_args(AsyncEngineArgs(**self.llm_kwargs))

    def engine_pids(self) -> list[int]:
        return [pid for pid in processes.descendants() if pid not in self._children_before]

    def read_back(self) -> dict[str, Any]:
        return {
            "engine": read_back_engine(self.engine.vllm_config),
            "sampling": read_back_sampling(self.sampling),
        }

    async def stream(self, prompt: Sequence[int], request_id: str) -> AsyncIterator[Delta]:
        """One request, its tokens as they come; the last output carries how long it
        queued before its first scheduled step (vLLM's own engine-side stamps)."""
        async for out in self.engine.generate(
            {"prompt_token_ids": list(prompt)}, self.sampling, request_id
        ):
            queued = None
            m = out.metrics
            if out.finished and m is not None and m.scheduled_ts and m.queued_ts:
                queued = max(0.0, m.scheduled_ts - m.queued_ts)
            yield Delta(tuple(out.outputs[0].token_ids), out.finished, queued)

    def prompt_nll(self, windows: Sequence[Sequence[int]]) -> list[list[float]]:
        """Per window, the NLL of each token but the first (prompt log-probabilities)."""
        params = self._vllm.SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)

        async def one(window: Sequence[int]) -> list[float]:
            last = None
            async for out in self.engine.generate(
                {"prompt_token_ids": list(window)}, params, self.next_id("q")
            ):
                last = out
            logprobs = (last.prompt_logprobs if last is not None else None) or []
            return [-logprobs[i][tok].logprob for i, tok in enumerate(window) if i > 0]

        async def all_of() -> list[list[float]]:
            return list(await asyncio.gather(*(one(w) for w in windows)))

        return self.run(all_of())

    def close(self, log_path: Path | None = None) -> list[int]:
        """vLLM's own shutdown, the loop's end, then whatever processes are left."""
        if self.engine is not None:
            with processes.stdio_to(log_path) if log_path else contextlib.nullcontext():
                try:
                    self.engine.shutdown()
                except Exception as exc:  # already dead: ended below
                    log.info("vLLM shutdown: %s: %s", type(exc).__name__, exc)
            self.engine = None
        with contextlib.suppress(Exception):  # the processes are ended below regardless
            self.close_loop()
        ended = processes.end_tree(self.engine_pids())
        self._ipc.leave()
        return ended
