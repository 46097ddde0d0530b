"""The vLLM engine in one run: load, read back, timed calls, prompt log-probabilities, end.

A call submits the batch's requests together (the same token ids as the transformers
path, unpadded) and steps vLLM's engine until all have finished, as ``LLM.generate``
does, but with each request streaming its new tokens (``RequestOutputKind.DELTA``): every
token is stamped with the front end's clock when its step's output arrives, so TTFT,
inter-token and end-to-end latency come per request, from the stream. Offline
``LLM.generate`` returns no per-token times (``RequestOutput.metrics`` is None there).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.engines import processes
from runner.engines.vllm_readback import read_back_engine, read_back_sampling
from runner.measure.generation import CallResult
from runner.measure.timing import CallTiming

log = logging.getLogger(__name__)

PROMPT_LOGPROB_METHOD = (
    "next-token negative log-likelihood from vLLM's prompt log-probabilities "
    "(SamplingParams(prompt_logprobs=0), the engine as measured)"
)


class EngineMissingError(RuntimeError):
    """vLLM is not installed (pre-flight says so before a run; this is the run's guard)."""


def _import_vllm() -> Any:
    # vLLM's INFO lines (dozens per start) would bury the runner's own; its warnings stay.
    # The variable reaches its processes; the logger level its import-time lines here.
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    logging.getLogger("vllm").setLevel(os.environ["VLLM_LOGGING_LEVEL"])
    try:
        import vllm
    except ImportError as exc:
        from runner.engines.install import INSTALL_HINT

        raise EngineMissingError(f"engine=vllm: vLLM is not installed; {INSTALL_HINT}") from exc
    return vllm


def prompt_token_ids(batch: Any) -> list[list[int]]:
    """Each request's prompt ids without the left padding the transformers path needs."""
    rows = []
    for ids, mask in zip(batch.input_ids.tolist(), batch.attention_mask.tolist(), strict=True):
        rows.append([i for i, m in zip(ids, mask, strict=True) if m])
    return rows


@dataclass
class StreamLog:
    """Tokens and their arrival times (seconds from the call's start), per request."""

    ids: dict[str, list[int]] = field(default_factory=dict)
    times: dict[str, list[float]] = field(default_factory=dict)
    finished: dict[str, float] = field(default_factory=dict)

    def add(self, request_id: str, new_ids: Sequence[int], now: float, done: bool) -> None:
        self.ids.setdefault(request_id, []).extend(new_ids)
        self.times.setdefault(request_id, []).extend([now] * len(new_ids))
        if done:
            self.finished[request_id] = now


def call_result(order: Sequence[str], stream: StreamLog, total: float) -> CallResult:
    """One call's result: per request its own token times and end (``request_timings``);
    the call's own timing has every step time at which some request got a token."""
    per_request = []
    for rid in order:
        times = tuple(stream.times.get(rid, ()))
        per_request.append(
            CallTiming(
                total_seconds=stream.finished.get(rid, total),
                token_times_seconds=times,
                rows=None,
            )
        )
    steps = sorted({t for rid in order for t in stream.times.get(rid, ())})
    ids = tuple(tuple(stream.ids.get(rid, ())) for rid in order)
    return CallResult(
        timing=CallTiming(total_seconds=total, token_times_seconds=tuple(steps), rows=len(order)),
        output_tokens=tuple(len(row) for row in ids),
        output_ids=ids,
        request_timings=tuple(per_request),
    )


class VllmSession:
    """One ``LLM`` with the run's sampling parameters. :meth:`close` ends its processes,
    and whatever of them outlives vLLM's own shutdown, also after a load cut short."""

    def __init__(self, llm_kwargs: dict[str, Any], sampling_kwargs: dict[str, Any]) -> None:
        vllm = _import_vllm()
        from vllm.sampling_params import RequestOutputKind

        self._children_before = set(processes.descendants())
        self._ipc = processes.IpcFolder()
        self.llm_kwargs = llm_kwargs
        self.llm: Any = None
        self._counter = itertools.count()
        self.sampling = vllm.SamplingParams(**sampling_kwargs, output_kind=RequestOutputKind.DELTA)
        self._vllm = vllm

    def load(self, log_path: Path | None = None) -> None:
        """Start the engine (its processes, the weights, the KV cache, compilation); with
        ``log_path``, its processes write their own output there, not to the terminal."""
        self._ipc.enter()
        with processes.stdio_to(log_path) if log_path else contextlib.nullcontext():
            self.llm = self._vllm.LLM(**self.llm_kwargs)

    def engine_pids(self) -> list[int]:
        """The processes vLLM started (engine core, workers)."""
        return [pid for pid in processes.descendants() if pid not in self._children_before]

    def read_back(self) -> dict[str, Any]:
        return {
            "engine": read_back_engine(self.llm.llm_engine.vllm_config),
            "sampling": read_back_sampling(self.sampling),
        }

    def _add(self, prompts: Sequence[Sequence[int]], params: Any) -> list[str]:
        engine = self.llm.llm_engine
        ids = []
        for prompt in prompts:
            rid = f"r{next(self._counter)}"
            # Rendered as LLM.generate renders a prompt; its own _add_request would make
            # the request FINAL_ONLY (no stream).
            rendered = self.llm._preprocess_cmpl_one({"prompt_token_ids": list(prompt)}, None)
            engine.add_request(rid, rendered, params)
            ids.append(rid)
        return ids

    def call(
        self, prompts: Sequence[Sequence[int]], clock: Callable[[], float] = time.perf_counter
    ) -> CallResult:
        """Submit ``prompts`` together and step until every one has finished."""
        engine = self.llm.llm_engine
        stream = StreamLog()
        start = clock()
        order = self._add(prompts, self.sampling)
        try:
            while engine.has_unfinished_requests():
                outputs = engine.step()
                now = clock() - start
                for out in outputs:
                    completion = out.outputs[0]
                    stream.add(out.request_id, completion.token_ids, now, out.finished)
        except BaseException:
            # A stop mid-call: nothing left queued in the engine (unless it is gone already,
            # and then the stop, not the abort's error, is what happened).
            with contextlib.suppress(Exception):
                engine.abort_request(order)
            raise
        return call_result(order, stream, clock() - start)

    def prompt_nll(self, windows: Sequence[Sequence[int]]) -> list[list[float]]:
        """Per window, the NLL of each token but the first, from prompt log-probabilities."""
        params = self._vllm.SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
        outs = self.llm.generate(
            [{"prompt_token_ids": list(w)} for w in windows], params, use_tqdm=False
        )
        nll = []
        for window, out in zip(windows, outs, strict=True):
            logprobs = out.prompt_logprobs or []
            nll.append([-logprobs[i][tok].logprob for i, tok in enumerate(window) if i > 0])
        return nll

    def close(self, log_path: Path | None = None) -> list[int]:
        """vLLM's own shutdown (its messages to ``log_path`` where given), then end what is
        left; returns the pids that had to be ended."""
        if self.llm is not None:
            with processes.stdio_to(log_path) if log_path else contextlib.nullcontext():
                try:
                    self.llm.llm_engine.engine_core.shutdown()
                except Exception as exc:  # already dead (a Ctrl-C reached it too): ended below
                    log.info("vLLM shutdown: %s: %s", type(exc).__name__, exc)
            self.llm = None
        ended = processes.end_tree(self.engine_pids())
        self._ipc.leave()
        return ended


def vllm_scorer(session: VllmSession) -> Callable[..., Any]:
    """A perplexity scorer (runner.quality.perplexity.Scorer) over prompt log-probabilities."""
    from runner.quality.perplexity import score_windows

    def run(tokens: Any, windows: Sequence[tuple[int, int]], batch_size: int, check: Any) -> Any:
        def group_nll(group: Sequence[tuple[int, int]]) -> list[list[float]]:
            return session.prompt_nll([tokens.ids[s:e] for s, e in group])

        return score_windows(tokens, windows, batch_size, group_nll, check)

    return run
