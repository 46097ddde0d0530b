"""The run's quality phase: what :mod:`runner.run` calls, before measuring and after.

:func:`prepare` runs once the workload is built, before anything is measured, so that a
reference run with another workload, or a window longer than the model's context, is
refused before the measurement is spent. :func:`measure_quality` runs after the timed and
energy windows have closed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from runner.config.schema_measure import QualityConfig, QualityMode
from runner.quality.agreement import Reference, agreement, check_same_workload, read_reference
from runner.quality.outputs import OutputRecord
from runner.quality.text import EvalText, QualityInputError, load_text
from runner.sections.quality import Quality

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Plan:
    """What the quality phase will use, checked before measuring."""

    text: EvalText | None = None
    reference: Reference | None = None


def check_inputs(q: QualityConfig) -> None:
    """Before anything runs (the CLI's pre-flight): the text file reads as text, the
    reference directory holds a finished run with outputs, the lm-eval tasks exist.

    Raises :class:`QualityInputError` with one line.
    """
    if q.mode is QualityMode.off:
        return
    if q.text_path is not None:
        load_text(q.text_path)
    if q.reference is not None:
        read_reference(q.reference)
    if q.mode is QualityMode.lm_eval:
        from runner.quality.lmeval import check_tasks

        check_tasks(q.tasks or (), q.task_dir)


def check_window(q: QualityConfig, context_length: int | None) -> None:
    """The perplexity window fits the model's context (before loading where it is known)."""
    if q.mode is not QualityMode.off and context_length is not None and q.window > context_length:
        raise QualityInputError(
            f"quality.window={q.window}: longer than the model's context ({context_length} "
            "tokens); lower it"
        )


def prepare(q: QualityConfig, fingerprint: str, context_length: int | None) -> Plan:
    """Load the text and the reference, and check they can be used with this run.

    Raises :class:`QualityInputError` (one line) otherwise.
    """
    if q.mode is QualityMode.off:
        return Plan()
    check_window(q, context_length)
    reference = None
    if q.reference is not None:
        reference = read_reference(q.reference)
        check_same_workload(
            reference.fingerprint, fingerprint, f"quality.reference={q.reference}", "this run"
        )
    return Plan(load_text(q.text_path), reference)


# Why a compiled model is scored with its eager forward; appended to the method.
EAGER_NOTE = (
    "; scored with the eager forward: the model was compiled for the measured calls, and "
    "its compiled forward would compile a graph for every window shape (minutes on a CPU "
    "for seconds of scoring)"
)


@contextlib.contextmanager
def eager_forward(model: Any) -> Iterator[bool]:
    """Inside the block a model compiled with ``Module.compile`` (runner.translate) runs
    its eager forward; yields whether it was compiled. Restored on exit."""
    compiled = getattr(model, "_compiled_call_impl", None)
    if compiled is None:
        yield False
        return
    model._compiled_call_impl = None
    try:
        yield True
    finally:
        model._compiled_call_impl = compiled


def measure_quality(
    q: QualityConfig,
    plan: Plan,
    model: Any,
    tokenizer: Any,
    device: Any,
    outputs: Sequence[OutputRecord],
    check: Callable[[], None] = lambda: None,
    scorer: Any = None,
    how: str | None = None,
) -> Quality:
    """Perplexity, agreement with the reference, lm-eval: as ``q`` asks.

    ``scorer``/``how``: another engine's perplexity scorer and what its NLLs are
    (:mod:`runner.quality.perplexity`); by default the model's own forward.
    """
    if q.mode is QualityMode.off:
        return Quality(mode=q.mode.value)
    from runner.quality.perplexity import FORWARD_METHOD, forward_scorer, measure_perplexity

    t0 = time.perf_counter()
    assert plan.text is not None  # prepare() loads it whenever quality is on
    log.info("quality (%s): scoring, after the measured windows", q.mode.value)
    with eager_forward(model) as eager:
        ppl, evaluation = measure_perplexity(
            scorer or forward_scorer(model, tokenizer, device),
            tokenizer,
            plan.text,
            window=q.window,
            batch_size=q.batch_size,
            max_tokens=q.max_tokens,
            check=check,
            how=(how or FORWARD_METHOD) + (EAGER_NOTE if eager else ""),
        )
    log.info(
        "perplexity %.3f over %d tokens (%.1f s)",
        ppl.value,
        evaluation.tokens_scored,
        evaluation.seconds,
    )
    agreed = None
    if plan.reference is not None:
        agreed = agreement(
            plan.reference.outputs(),
            outputs,
            reference_dir=str(plan.reference.run_dir),
            reference_run_id=plan.reference.run_id,
        )
    lm = None
    if q.mode is QualityMode.lm_eval:
        from runner.quality.lmeval import run_lm_eval

        with eager_forward(model) as eager:
            lm = run_lm_eval(
                model,
                tokenizer,
                q.tasks or (),
                task_dir=q.task_dir,
                limit=q.limit,
                batch_size=q.batch_size,
                check=check,
            )
        if eager:
            lm = dataclasses.replace(lm, method=(lm.method or "") + EAGER_NOTE)
    return Quality(
        mode=q.mode.value,
        perplexity=ppl.value,
        perplexity_ci95_low=ppl.ci95_low,
        perplexity_ci95_high=ppl.ci95_high,
        evaluation=evaluation,
        agreement=agreed,
        lm_eval=lm,
        seconds=time.perf_counter() - t0,
    )


__all__ = ["Plan", "QualityInputError", "check_inputs", "measure_quality", "prepare"]
