"""Teacher-forced perplexity of the loaded model on the evaluation text.

The text is tokenized once without special tokens and cut into consecutive windows of
``window`` tokens; each window is one row of a forward pass (``batch_size`` rows at a
time, the short last window right-padded and masked), and every token of a window but
its first is scored by the negative log-likelihood the model gives it from the tokens
before it in the same window. Perplexity is ``exp`` of the mean NLL over the scored
tokens. Its 95% CI is the cluster-robust CI of that mean with the windows as units
(tokens of one window share their context: they are not independent), mapped through
``exp``. The forward is the model's own call path, so quantization, dtype, placement and
a compiled forward are exactly those of the measured run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from runner.measure.stats import summarize
from runner.quality.outputs import workload_fingerprint
from runner.quality.text import EvalText
from runner.sections.quality import PerplexityEval

METHOD = (
    "{how}; "
    "the text tokenized without special tokens and cut into windows of {window} tokens, "
    "{batch} per forward pass (vLLM: per submission), the first token of each window unscored; "
    "{which}; perplexity = exp(mean NLL per scored token); 95% CI: exp of the "
    "cluster-robust Student-t CI of the mean NLL over windows"
)


@dataclass(frozen=True)
class TokenizedText:
    """Token ids of the whole text and, per token, the kind of passage it belongs to."""

    ids: tuple[int, ...]
    kinds: tuple[str, ...]


@dataclass(frozen=True)
class Scores:
    """Per scored token: its NLL (nats), its window's index, its passage kind."""

    nll: tuple[float, ...]
    window: tuple[int, ...]
    kind: tuple[str, ...]


@dataclass(frozen=True)
class Perplexity:
    value: float
    ci95_low: float | None
    ci95_high: float | None
    nll_per_token: float
    by_kind: dict[str, float]
    tokens_by_kind: dict[str, int]
    window_nll: tuple[float, ...]  # mean NLL of each window, in window order
    window_scored: tuple[int, ...]  # tokens scored in each window


def tokenize(text: EvalText, tokenizer: Any) -> TokenizedText:
    """Passages joined by a blank line, each tokenized on its own so every token has a kind."""
    ids: list[int] = []
    kinds: list[str] = []
    last = len(text.passages) - 1
    for i, (kind, passage) in enumerate(text.passages):
        piece = passage + ("\n\n" if i < last else "")
        encoded = list(tokenizer(piece, add_special_tokens=False)["input_ids"])
        ids += encoded
        kinds += [kind] * len(encoded)
    return TokenizedText(tuple(ids), tuple(kinds))


def plan_windows(n_tokens: int, window: int, max_tokens: int | None) -> list[tuple[int, int]]:
    """``[start, end)`` of the windows to score.

    Consecutive windows of ``window`` tokens cover the text (the last one shorter; one of a
    single token is dropped, having nothing to score). With ``max_tokens``, only
    ``max(1, max_tokens // window)`` full-length ones, spread evenly from the first to the
    last.
    """
    if window < 2:
        raise ValueError(f"window must be >= 2 tokens, got {window}")
    chunks = [(s, min(s + window, n_tokens)) for s in range(0, n_tokens, window)]
    chunks = [(s, e) for s, e in chunks if e - s >= 2]
    if max_tokens is None or not chunks:
        return chunks
    k = min(len(chunks), max(1, max_tokens // window))
    if k == len(chunks):
        return chunks
    # A subset is taken from the full-length windows, so it scores k * (window - 1) tokens.
    full = [(s, e) for s, e in chunks if e - s == window] or chunks
    k = min(k, len(full))
    if k == 1:
        return [full[0]]
    return [full[int(i * (len(full) - 1) / (k - 1) + 0.5)] for i in range(k)]


# What a scorer's NLLs are, in METHOD's first clause.
FORWARD_METHOD = (
    "teacher-forced next-token negative log-likelihood under the run's loaded model "
    "(quantization, dtype and placement as measured), use_cache=False"
)

# (tokens, windows, batch_size, check) -> the NLL of every scored token.
Scorer = Callable[[TokenizedText, Sequence[tuple[int, int]], int, Callable[[], None]], "Scores"]


# The windows of one submission -> per window, the NLL of each of its tokens but the first.
GroupNll = Callable[[Sequence[tuple[int, int]]], list[list[float]]]


def score_windows(
    text: TokenizedText,
    windows: Sequence[tuple[int, int]],
    batch_size: int,
    group_nll: GroupNll,
    check: Callable[[], None] = lambda: None,
) -> Scores:
    """NLL of every scored token, ``batch_size`` windows per ``group_nll`` call; ``check``
    runs between calls (a stop signal raises there)."""
    nll: list[float] = []
    window_of: list[int] = []
    kind_of: list[str] = []
    for first in range(0, len(windows), batch_size):
        check()
        group = windows[first : first + batch_size]
        for row, ((s, e), values) in enumerate(zip(group, group_nll(group), strict=True)):
            nll += values
            window_of += [first + row] * (e - s - 1)
            kind_of += text.kinds[s + 1 : e]
    return Scores(tuple(nll), tuple(window_of), tuple(kind_of))


def score(
    forward: Callable[[Any, Any], Any],
    text: TokenizedText,
    windows: Sequence[tuple[int, int]],
    batch_size: int,
    *,
    device: Any = None,
    pad_id: int = 0,
    check: Callable[[], None] = lambda: None,
) -> Scores:
    """NLL of every scored token from a forward pass: ``forward(input_ids, attention_mask)``
    returns the logits ``[batch, tokens, vocab]`` (short windows right-padded and masked)."""
    import torch
    import torch.nn.functional as F

    def group_nll(group: Sequence[tuple[int, int]]) -> list[list[float]]:
        width = max(e - s for s, e in group)
        ids = torch.full((len(group), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(group), width), dtype=torch.long)
        for row, (s, e) in enumerate(group):
            ids[row, : e - s] = torch.tensor(text.ids[s:e], dtype=torch.long)
            mask[row, : e - s] = 1
        with torch.inference_mode():
            logits = forward(ids.to(device), mask.to(device))
            # [batch, vocab, positions]: cross_entropy's class dimension is 1.
            targets = ids[:, 1:].to(logits.device)
            losses = F.cross_entropy(
                logits[:, :-1].float().transpose(1, 2), targets, reduction="none"
            ).cpu()
        return [losses[row, : e - s - 1].tolist() for row, (s, e) in enumerate(group)]

    return score_windows(text, windows, batch_size, group_nll, check)


def perplexity(scores: Scores) -> Perplexity:
    """exp(mean NLL), its 95% CI over windows, and the split by passage kind."""
    if not scores.nll:
        raise ValueError("no token was scored")
    stats = summarize(scores.nll, clusters=scores.window, unit="window")
    mean = stats.mean if stats.mean is not None else math.nan
    by_kind: dict[str, list[float]] = {}
    for value, kind in zip(scores.nll, scores.kind, strict=True):
        by_kind.setdefault(kind, []).append(value)
    by_window: dict[int, list[float]] = {}
    for value, window in zip(scores.nll, scores.window, strict=True):
        by_window.setdefault(window, []).append(value)
    windows = sorted(by_window)
    return Perplexity(
        value=math.exp(mean),
        ci95_low=math.exp(stats.ci95_low) if stats.ci95_low is not None else None,
        ci95_high=math.exp(stats.ci95_high) if stats.ci95_high is not None else None,
        nll_per_token=mean,
        by_kind={k: math.exp(math.fsum(v) / len(v)) for k, v in sorted(by_kind.items())},
        tokens_by_kind={k: len(v) for k, v in sorted(by_kind.items())},
        window_nll=tuple(math.fsum(by_window[w]) / len(by_window[w]) for w in windows),
        window_scored=tuple(len(by_window[w]) for w in windows),
    )


def forward_scorer(model: Any, tokenizer: Any, device: Any) -> Scorer:
    """Scores from the model's own forward (the transformers engine)."""

    def forward(ids: Any, mask: Any) -> Any:
        return model(input_ids=ids, attention_mask=mask, use_cache=False).logits

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def run(
        tokens: TokenizedText,
        windows: Sequence[tuple[int, int]],
        batch_size: int,
        check: Callable[[], None],
    ) -> Scores:
        return score(
            forward, tokens, windows, batch_size, device=device, pad_id=pad_id, check=check
        )

    return run


def measure_perplexity(
    scorer: Scorer,
    tokenizer: Any,
    text: EvalText,
    *,
    window: int,
    batch_size: int,
    max_tokens: int | None,
    check: Callable[[], None] = lambda: None,
    how: str = FORWARD_METHOD,
) -> tuple[Perplexity, PerplexityEval]:
    """Score ``text`` with ``scorer`` and say how it was done (``how``: what the NLLs are)."""
    t0 = time.perf_counter()
    tokens = tokenize(text, tokenizer)
    windows = plan_windows(len(tokens.ids), window, max_tokens)
    if not windows:
        raise ValueError(f"{text.source}: fewer than 2 tokens, nothing to score")
    scores = scorer(tokens, windows, batch_size, check)
    result = perplexity(scores)
    every = len(windows) == len(plan_windows(len(tokens.ids), window, None))
    which = "every window" if every else f"{len(windows)} windows spread evenly over the text"
    evaluation = PerplexityEval(
        text=text.source,
        text_sha256=text.sha256,
        text_tokens=len(tokens.ids),
        token_ids_sha256=workload_fingerprint([tokens.ids]),
        tokens_scored=len(scores.nll),
        windows=len(windows),
        window_tokens=window,
        batch_size=batch_size,
        nll_per_token=result.nll_per_token,
        perplexity_by_kind=result.by_kind,
        tokens_by_kind=result.tokens_by_kind,
        window_nll=result.window_nll,
        window_scored=result.window_scored,
        seconds=time.perf_counter() - t0,
        method=METHOD.format(how=how, window=window, batch=batch_size, which=which),
    )
    return result, evaluation
