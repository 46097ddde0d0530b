"""transformers' continuous batching, serving the load of ``scenario=online``.

``generate_batch`` sets a manager up and tears it down on every call, and its default
cache is sized from the machine's memory: on this project's 2-core machine it took 11.7 s
for 8 requests of 16 tokens on the tiny model that ``generate`` runs in 0.02 s, and 22 GB
of RAM (docs/serving.md). A manager started once, with a cache sized for the workload,
runs as fast as one static ``generate`` batch (1.03x on SmolLM2-135M). So a session starts
one manager (``init_continuous_batching``) with an explicit :func:`cache_config`, keeps it
running for the warmup and the load, and stops it before the quality phase.

Each request is added as it arrives and streams its tokens back: the manager's thread
hands each output to the event loop (``register_result_handler``), where it is stamped.
The time a request waited before it was scheduled is the manager's own
(``lifespan[0] - created_time``).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Sequence
from typing import Any

from runner.engines.streaming import LoopSession
from runner.serving.load import Delta

PAGE_SIZE = 32  # tokens per page of the paged KV cache
MAX_BATCH_TOKENS = 256  # tokens one step may process (prefill chunks and decodes)
CACHED_REQUESTS = 32  # requests whose whole context the cache holds at once


def cache_config(max_input_tokens: int, max_new_tokens: int, seed: int) -> dict[str, Any]:
    """``ContinuousBatchingConfig`` kwargs: a cache for :data:`CACHED_REQUESTS` requests of
    the workload's longest prompt plus ``max_new_tokens`` (more wait in the manager's queue,
    as in any server), no switch to flash attention (CPU runs here), seeded."""
    pages = math.ceil((max_input_tokens + max_new_tokens) / PAGE_SIZE)
    return {
        "page_size": PAGE_SIZE,
        "num_blocks": pages * CACHED_REQUESTS,
        "max_batch_tokens": MAX_BATCH_TOKENS,
        "auto_switch_to_flash": False,
        "seed": seed,
    }


class ContinuousBatchingSession(LoopSession):
    """One running continuous-batching manager over ``model`` and its own event loop."""

    def __init__(
        self, model: Any, max_new_tokens: int, eos_token_id: int | list[int], config: dict
    ) -> None:
        from transformers import GenerationConfig
        from transformers.generation.configuration_utils import ContinuousBatchingConfig

        # Its INFO lines (thread start and stop) would interleave with the runner's own.
        logging.getLogger("ContinuousBatchingLogger").setLevel(logging.WARNING)
        self.max_new_tokens, self.eos = max_new_tokens, eos_token_id
        generation = GenerationConfig(
            max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=eos_token_id
        )
        super().__init__()
        self.manager = model.init_continuous_batching(
            generation_config=generation,
            continuous_batching_config=ContinuousBatchingConfig(**config),
        )
        self.manager.start()

    def read_back(self) -> dict[str, Any]:
        """What the manager runs with (its resolved config and cache)."""
        m = self.manager
        cfg = m.continuous_batching_config
        gen = m.generation_config
        cache = getattr(m.batch_processor, "cache", None) if hasattr(m, "batch_processor") else None
        return {
            "manager": type(m).__name__,
            "running": m.is_running(),
            "page_size": cfg.page_size,
            "num_blocks": getattr(cache, "num_blocks", None) or cfg.num_blocks,
            "max_batch_tokens": getattr(cache, "max_batch_tokens", None) or cfg.max_batch_tokens,
            "do_sample": gen.do_sample,
            "max_new_tokens": gen.max_new_tokens,
            "eos_token_id": gen.eos_token_id,
            "scheduler": cfg.scheduler_type,
        }

    async def stream(self, prompt: Sequence[int], request_id: str) -> AsyncIterator[Delta]:
        outputs: asyncio.Queue[Any] = asyncio.Queue()
        self.manager.register_result_handler(request_id, outputs.put_nowait)
        added = self.manager.add_request(
            list(prompt),
            request_id=request_id,
            max_new_tokens=self.max_new_tokens,
            streaming=True,
            eos_token_id=self.eos,
        )
        if added is None:
            raise RuntimeError(f"continuous batching refused request {request_id} (stopped?)")
        seen = 0
        try:
            while True:
                out = await outputs.get()
                if out.error:
                    raise RuntimeError(f"continuous batching: {out.error}")
                new = out.generated_tokens[seen:]
                seen = len(out.generated_tokens)
                done = out.is_finished()
                queued = None
                if done and out.lifespan[0] > 0:
                    queued = max(0.0, out.lifespan[0] - out.created_time)
                yield Delta(tuple(new), done, queued)
                if done:
                    return
        except asyncio.CancelledError:
            self.manager.cancel_request(request_id)
            raise

    def close(self) -> None:
        """Stop the manager (its thread ends; the model is the plain model again) and the
        loop."""
        try:
            self.manager.stop(block=True, timeout=30)
        finally:
            self.close_loop()
