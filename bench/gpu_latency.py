"""The runner's TTFT, inter-token latency and throughput against a bare ``generate`` loop.

One model loaded once, the runner's workload batches and generate kwargs. In every round
each batch goes through three calls back to back, their order rotating by batch and
round so a change of load on the machine hits them alike:

- **runner**: ``timed_generate``, what the measured loop calls (on CUDA its marks are
  CUDA events read after the call), then ``records_for_call`` and ``latency_metrics``
  exactly as a run reports them;
- **bare**: ``model.generate`` with the same kwargs, timed from outside with
  ``perf_counter`` between device synchronisations: its throughput;
- **bare streamed**: the same call with a streamer that only reads ``perf_counter`` when a
  token reaches it: its TTFT and inter-token latency. ``generate`` copies each step's
  tokens to the host for a streamer, where it waits for the device every step anyway, so
  these are the times a user streaming tokens would see, with no clock of the runner's.

The runner marks a step at its logits, on the device; the streamer sees the token after
sampling and the copy, on the host: tens of microseconds later. The agreement
``min(r, 1/r)`` of the median ratio ``r`` of the two says how far apart they are,
whatever the direction.
"""

from __future__ import annotations

import time
from typing import Any

from bench.common import bare_call, compose, load, median, rounded, runner_call

ROUNDS = 10


def agreement(ratio: float | None) -> float | None:
    """``min(r, 1/r)`` of a positive ratio: 1 when the two sides are equal, whichever is
    the larger."""
    if ratio is None or ratio <= 0:
        return None
    return min(ratio, 1 / ratio)


def _streamed_call(m: Any, batch: Any) -> tuple[float, list[float]]:
    """(TTFT, inter-token intervals) of one bare ``generate``, from host stamps."""
    import torch
    from transformers.generation.streamers import BaseStreamer

    from runner.measure.timing import synchronize

    class HostStamps(BaseStreamer):
        def __init__(self) -> None:
            self.times: list[float] = []
            self.prompt_seen = False

        def put(self, value: Any) -> None:
            if self.prompt_seen:
                self.times.append(time.perf_counter())
            self.prompt_seen = True  # the first put is the prompt

        def end(self) -> None:
            pass

    ids, mask = batch.input_ids.to(m.device), batch.attention_mask.to(m.device)
    stamps = HostStamps()
    with torch.inference_mode():
        synchronize(m.device)
        t0 = time.perf_counter()
        m.model.generate(input_ids=ids, attention_mask=mask, **m.gen_kwargs, streamer=stamps)
        synchronize(m.device)
    times = stamps.times
    return times[0] - t0, [b - a for a, b in zip(times, times[1:], strict=False)]


def _round(m: Any, flip: int) -> dict[str, dict[str, Any]]:
    """Every batch through the three calls; the round's figures of the runner and bare."""
    from runner.measure.latency import latency_metrics

    records, batches = [], []
    ttft, itl, tokens, seconds = [], [], 0, 0.0
    for index, batch in enumerate(m.batches):
        calls = ["runner", "bare", "streamed"]
        shift = (index + flip) % 3
        for call in calls[shift:] + calls[:shift]:
            if call == "runner":
                r, b = runner_call(m, batch, 0, index)
                records += r
                batches.append(b)
            elif call == "bare":
                n, s = bare_call(m, batch)
                tokens, seconds = tokens + n, seconds + s
            else:
                first, gaps = _streamed_call(m, batch)
                ttft.append(first)
                itl += gaps
    lat = latency_metrics(records, batches)
    return {
        "runner": {
            "ttft": lat.ttft_seconds.mean,
            "itl": lat.itl_seconds.mean,
            "tps": lat.throughput.output_tokens_per_second,
            "tokens": lat.output_tokens,
            "clock": lat.clock,
        },
        "bare": {
            "ttft": sum(ttft) / len(ttft),
            "itl": sum(itl) / len(itl),
            "tps": tokens / seconds,
            "tokens": tokens,
        },
    }


def compare(overrides: list[str], rounds: int = ROUNDS) -> dict[str, Any]:
    """Paired rounds of the runner's timed path and the bare loop for ``overrides``."""
    m = load(compose(overrides))
    n_new = m.gen_kwargs["max_new_tokens"]
    if n_new < 2 or m.gen_kwargs.get("min_new_tokens") != n_new:
        raise ValueError("comparing intervals needs fixed-length generation of 2+ tokens")
    _round(m, 0)  # warmup of every path
    runs = [_round(m, i + 1) for i in range(rounds)]
    tokens = {r[p]["tokens"] for r in runs for p in ("runner", "bare")}
    if len(tokens) != 1:
        raise RuntimeError(f"the runner and the bare loop generated different counts {tokens}")
    out: dict[str, Any] = {
        "rounds": rounds,
        "new_tokens": n_new,
        "output_tokens_per_path_and_round": tokens.pop(),
        "clock": sorted({r["runner"]["clock"] for r in runs}),
        "device": str(m.device),
    }
    for key in ("ttft", "itl", "tps"):
        runner = [r["runner"][key] for r in runs]
        bare = [r["bare"][key] for r in runs]
        ratios = [a / b for a, b in zip(runner, bare, strict=True)]
        ratio = median(ratios)
        out[key] = {
            "runner": rounded(runner, 6),
            "bare": rounded(bare, 6),
            "runner_over_bare": rounded(ratios, 4),
            "median_ratio": ratio,
            # From the median ratio: a median of per-round min/max would be biased low,
            # since noise in either direction lowers every round's min/max.
            "agreement": agreement(ratio),
        }
    return out
