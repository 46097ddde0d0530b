"""Per-call step timestamps: time to first token and inter-token intervals.

A :class:`StepRecorder` is created fresh for every ``generate`` call, so
nothing from one call, or from the gap between calls, leaks into the next.
It is fed by a logits processor (one mark per decoding step, also under beam
search) or, for prompt-lookup decoding where one step can accept several
tokens, by a streamer (one mark per accepted token, all at the step's time).

On CUDA every mark records a CUDA event (no host sync inside the loop) and the
events are resolved after the closing synchronisation; on CPU marks read
``time.perf_counter``. Both window edges synchronise the device.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from transformers import LogitsProcessor
from transformers.generation.streamers import BaseStreamer

from runner.sections.metrics import CUDA_EVENTS, PERF_COUNTER


def synchronize(device: torch.device | None) -> None:
    """Wait for queued work on ``device`` (no-op on CPU)."""
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class CallTiming:
    """Timing of one ``generate`` call, all in seconds from the call's start edge.

    ``token_times_seconds[i]`` is when step ``i`` produced its token(s); the
    first is the time to first token. ``rows`` is the batch dimension the
    logits processor saw (batch x beams), evidence of what ``generate`` ran.
    ``clock`` says what took the stamps: ``cuda-events`` or ``perf_counter``.
    """

    total_seconds: float
    token_times_seconds: tuple[float, ...]
    rows: int | None
    clock: str = PERF_COUNTER

    @property
    def ttft_seconds(self) -> float | None:
        return self.token_times_seconds[0] if self.token_times_seconds else None

    def intervals_seconds(self, n_tokens: int) -> list[float]:
        """Inter-token intervals of a request that produced ``n_tokens`` tokens."""
        times = self.token_times_seconds[:n_tokens]
        return [b - a for a, b in zip(times, times[1:], strict=False)]

    def last_token_seconds(self, n_tokens: int) -> float | None:
        if n_tokens <= 0 or not self.token_times_seconds:
            return None
        return self.token_times_seconds[min(n_tokens, len(self.token_times_seconds)) - 1]


class StepRecorder:
    """Collects step marks between a synchronised start and end edge."""

    def __init__(self, device: torch.device | None, clock: Callable[[], float] = time.perf_counter):
        self._cuda = device is not None and device.type == "cuda"
        self._device = device
        self._clock = clock
        self._marks: list[Any] = []
        self._start: Any = None
        self._end: Any = None
        self.rows: int | None = None

    def _now(self) -> Any:
        if self._cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return self._clock()

    def start(self) -> None:
        synchronize(self._device)
        self._start = self._now()

    def mark(self, count: int = 1) -> None:
        stamp = self._now()
        self._marks.extend([stamp] * count)

    def stop(self) -> CallTiming:
        synchronize(self._device)
        self._end = self._now()
        if self._cuda:
            torch.cuda.synchronize(self._device)
            # elapsed_time is in milliseconds.
            to_s = [self._start.elapsed_time(m) / 1000.0 for m in self._marks]
            total = self._start.elapsed_time(self._end) / 1000.0
        else:
            to_s = [m - self._start for m in self._marks]
            total = self._end - self._start
        return CallTiming(
            total_seconds=total,
            token_times_seconds=tuple(to_s),
            rows=self.rows,
            clock=CUDA_EVENTS if self._cuda else PERF_COUNTER,
        )


class StepTimingProcessor(LogitsProcessor):
    """A logits processor that marks each decoding step and leaves scores untouched."""

    def __init__(self, recorder: StepRecorder):
        self.recorder = recorder

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self.recorder.rows = scores.shape[0]
        self.recorder.mark()
        return scores


# LogitsProcessorList calls inspect.signature on every processor at every step (~12 us);
# a precomputed __signature__ makes that lookup about three times cheaper.
StepTimingProcessor.__call__.__signature__ = inspect.signature(StepTimingProcessor.__call__)


class StepTimingStreamer(BaseStreamer):
    """A streamer that marks every accepted token; the first ``put`` is the prompt."""

    def __init__(self, recorder: StepRecorder):
        self.recorder = recorder
        self._seen_prompt = False

    def put(self, value: torch.Tensor) -> None:
        if not self._seen_prompt:
            self._seen_prompt = True
            return
        # Regular decoding puts [batch] (one token per row); assisted decoding
        # puts [1, k] for k accepted tokens at once.
        count = value.shape[-1] if value.dim() == 2 else 1
        self.recorder.rows = value.shape[0]
        self.recorder.mark(count)

    def end(self) -> None:
        pass
