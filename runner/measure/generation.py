"""One timed ``generate`` call, and exact token counting of its outputs."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import LogitsProcessorList

from runner.measure.timing import CallTiming, StepRecorder, StepTimingProcessor, StepTimingStreamer


def count_new_tokens(new_ids: torch.Tensor, eos_ids: Iterable[int]) -> list[int]:
    """Tokens generated per row: up to and including the first EOS, nothing after it.

    ``new_ids`` is ``[batch, new]`` (the prompt already cut off). Anything after
    EOS is padding or filler and is not counted.
    """
    eos = torch.tensor(sorted(set(eos_ids)), dtype=new_ids.dtype, device=new_ids.device)
    if new_ids.numel() == 0:
        return [0] * new_ids.shape[0]
    is_eos = (
        torch.isin(new_ids, eos) if eos.numel() else torch.zeros_like(new_ids, dtype=torch.bool)
    )
    counts = []
    width = new_ids.shape[1]
    for row in is_eos:
        hits = torch.nonzero(row, as_tuple=False)
        counts.append(int(hits[0, 0]) + 1 if hits.numel() else width)
    return counts


def eos_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """All EOS ids ``generate`` stops on (generation config may list several)."""
    ids = getattr(model.generation_config, "eos_token_id", None)
    if ids is None:
        ids = tokenizer.eos_token_id
    if ids is None:
        return []
    return list(ids) if isinstance(ids, (list, tuple)) else [int(ids)]


@dataclass(frozen=True)
class CallResult:
    timing: CallTiming
    output_tokens: tuple[int, ...]  # per request, exact
    # Per request, its new token ids up to and including the first EOS (what was counted).
    output_ids: tuple[tuple[int, ...], ...] = ()
    # Per request, its own token times and end, where the engine streams each request
    # (vLLM); empty where every request shares the call's steps (generate on a batch).
    request_timings: tuple[CallTiming, ...] = ()

    @property
    def first_row_ids(self) -> tuple[int, ...]:
        """New tokens of the first request, for a sample."""
        return self.output_ids[0] if self.output_ids else ()


def timed_generate(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    gen_kwargs: dict[str, Any],
    *,
    eos_ids: Sequence[int],
    use_streamer: bool = False,
    seed: int | None = None,
    clock: Callable[[], float] | None = None,
) -> CallResult:
    """Run ``generate`` once between synchronised edges with a fresh step recorder."""
    device = input_ids.device
    recorder = StepRecorder(device, **({"clock": clock} if clock else {}))
    hooks: dict[str, Any]
    if use_streamer:
        hooks = {"streamer": StepTimingStreamer(recorder)}
    else:
        hooks = {"logits_processor": LogitsProcessorList([StepTimingProcessor(recorder)])}
    if seed is not None:
        torch.manual_seed(seed)
    recorder.start()
    with torch.inference_mode():
        out = model.generate(
            input_ids=input_ids, attention_mask=attention_mask, **gen_kwargs, **hooks
        )
    timing = recorder.stop()
    sequences = out.sequences if hasattr(out, "sequences") else out
    new_ids = sequences[:, input_ids.shape[1] :]
    counts = count_new_tokens(new_ids, eos_ids)
    rows = new_ids.tolist()
    return CallResult(
        timing=timing,
        output_tokens=tuple(counts),
        output_ids=tuple(tuple(row[:n]) for row, n in zip(rows, counts, strict=True)),
    )
