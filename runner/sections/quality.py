"""The ``quality`` section of ``result.json``: what the run's settings do to the output.

Perplexity is per token of the evaluation text (natural log, nats); agreement figures
are fractions of requests or of output tokens, divergence positions are token indices.
How each figure was obtained is written next to it (``method``), as for energy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from runner.sections.base import Section
from runner.sections.metrics import Stats


@dataclass(frozen=True)
class PerplexityEval(Section):
    """How the perplexity was obtained: the text, what was scored, the time it took.

    ``nll_per_token`` is the mean negative log-likelihood (nats) of the scored tokens;
    ``text_sha256`` with the window fields says which tokens were scored;
    ``token_ids_sha256`` (sha256 of the text's token ids) says which tokenizer read it:
    perplexities are comparable only where it is equal;
    ``perplexity_by_kind`` splits the built-in text's tokens by the kind of passage they
    belong to (prose, code, dialogue); a user's text is one kind, ``text``.
    """

    text: str | None = None  # builtin:runner/data/eval_text.jsonl, or the file's path
    text_sha256: str | None = None
    text_tokens: int | None = None  # tokens of the whole text
    token_ids_sha256: str | None = None
    tokens_scored: int | None = None
    windows: int | None = None
    window_tokens: int | None = None
    batch_size: int | None = None
    nll_per_token: float | None = None
    perplexity_by_kind: dict[str, float] = field(default_factory=dict)
    tokens_by_kind: dict[str, int] = field(default_factory=dict)
    # Per window, in text order: its mean NLL and the tokens it scored. Two runs that scored
    # the same windows are compared window by window (a paired perplexity ratio).
    window_nll: tuple[float, ...] = ()
    window_scored: tuple[int, ...] = ()
    seconds: float | None = None
    method: str | None = None


@dataclass(frozen=True)
class Agreement(Section):
    """This run's outputs against a reference run's, request by request (95% CIs over
    requests).

    ``token_match``: per request, the fraction of output positions whose token equals the
    reference's (over the longer of the two outputs); ``exact_match``: 1 when the whole
    output is identical, else 0 (its mean is the exact-match rate); ``first_divergence``:
    the index of the first differing token, over the requests that differ only.
    """

    reference: str | None = None  # the reference run's directory
    reference_run_id: str | None = None
    requests: int | None = None
    token_match: Stats | None = None
    exact_match: Stats | None = None
    first_divergence: Stats | None = None
    diverged_requests: int | None = None
    method: str | None = None


@dataclass(frozen=True)
class LmEval(Section):
    """lm-evaluation-harness on the loaded model: ``results[task][metric]`` as lm-eval
    reports them (``acc``, ``acc_stderr``...), ``samples[task]`` the examples evaluated."""

    version: str | None = None
    tasks: tuple[str, ...] = ()
    limit: int | None = None
    results: dict[str, dict[str, float]] = field(default_factory=dict)
    samples: dict[str, int] = field(default_factory=dict)
    seconds: float | None = None
    method: str | None = None


@dataclass(frozen=True)
class Quality(Section):
    """The ``quality`` section (with ``mode`` off, nothing but the mode).

    ``perplexity`` = exp(mean NLL per scored token), with the 95% CI of the mean NLL over
    windows mapped through exp; ``evaluation`` says how it was obtained. ``agreement`` is
    against ``quality.reference`` when one was given. ``seconds``: the whole quality phase.
    Every measured request's output token ids are in ``outputs.parquet`` beside the result
    (:mod:`runner.quality.outputs`), in every mode.
    """

    mode: str | None = None
    perplexity: float | None = None
    perplexity_ci95_low: float | None = None
    perplexity_ci95_high: float | None = None
    evaluation: PerplexityEval | None = None
    agreement: Agreement | None = None
    lm_eval: LmEval | None = None
    seconds: float | None = None
