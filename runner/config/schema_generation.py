"""The decoding and workload groups: the requests, and how each is generated."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from omegaconf import MISSING

from runner.config.rules import AT_LEAST_0, AT_LEAST_1, POSITIVE, OnlyWith, Range, schema_field


class DecodingMode(str, Enum):
    greedy = "greedy"
    sample = "sample"
    beam = "beam"
    prompt_lookup = "prompt_lookup"


class CacheImplementation(str, Enum):
    dynamic = "dynamic"
    static = "static"
    offloaded = "offloaded"
    offloaded_static = "offloaded_static"
    # Named so that validation can refuse them with the reason (see REFUSED_CACHES there)
    # instead of OmegaConf's bare "invalid value": transformers 5 cannot build either.
    hybrid = "hybrid"
    sliding_window = "sliding_window"


class WorkloadKind(str, Enum):
    default = "default"
    synthetic = "synthetic"
    file = "file"


class OutputLength(str, Enum):
    fixed = "fixed"
    natural = "natural"


class PromptOrder(str, Enum):
    as_is = "as_is"
    shuffle = "shuffle"


# Which fields of these groups apply when (validation, translation and the docs read them).
SAMPLE = OnlyWith("mode", (DecodingMode.sample,), "decoding=sample")
BEAM = OnlyWith("mode", (DecodingMode.beam,), "decoding=beam")
BEAM_REQUIRED = OnlyWith("mode", (DecodingMode.beam,), "decoding=beam", required=True)
PROMPT_LOOKUP = OnlyWith("mode", (DecodingMode.prompt_lookup,), "decoding=prompt-lookup")
FILE = OnlyWith("kind", (WorkloadKind.file,), "workload=file", required=True)
SYNTHETIC = OnlyWith("kind", (WorkloadKind.synthetic,), "workload=synthetic", required=True)


@dataclass
class DecodingConfig:
    """The ``generate()`` strategy.

    Fields of another mode are refused, never silently dropped as transformers would.
    Prompt plus ``max_new_tokens`` must fit the model's context length
    (``max_position_embeddings``): checked before loading where the length is known
    (synthetic prompts on tiny, smollm2 or a local model) and on the real token counts
    after tokenizing, before anything is generated. ``extra`` is the escape hatch for
    what the schema does not cover yet (``+decoding.extra.output_scores=true``): merged
    last, recorded in ``requested`` and ``applied``; ``generate`` rejects unknown keys
    itself (the run fails with that error); keys the schema owns must be set through
    the schema.
    """

    mode: DecodingMode = schema_field(
        "greedy, sample, beam or prompt_lookup; do_sample=True only with sample", MISSING
    )
    max_new_tokens: int = schema_field("new tokens per request (upper bound)", 32, range=AT_LEAST_1)
    min_new_tokens: int | None = schema_field(
        "lower bound on new tokens; must be <= max_new_tokens, and under "
        "workload.output_length=fixed unset or equal to it",
        range=AT_LEAST_0,
    )
    temperature: float | None = schema_field(
        "sampling temperature; 0 is refused (that is decoding=greedy)",
        range=POSITIVE,
        only_with=SAMPLE,
    )
    top_k: int | None = schema_field(
        "top-k sampling; 0 turns top-k off, unset keeps transformers' default of 50",
        range=AT_LEAST_0,
        only_with=SAMPLE,
    )
    top_p: float | None = schema_field(
        "nucleus sampling mass", range=Range(0, 1, low_open=True), only_with=SAMPLE
    )
    min_p: float | None = schema_field("min-p sampling", range=Range(0, 1), only_with=SAMPLE)
    num_beams: int | None = schema_field(
        "beams",
        range=Range(low=2, message="beam search needs num_beams >= 2"),
        only_with=BEAM_REQUIRED,
    )
    early_stopping: bool | None = schema_field("stop beams early", only_with=BEAM)
    length_penalty: float | None = schema_field("beam length penalty", only_with=BEAM)
    prompt_lookup_num_tokens: int | None = schema_field(
        "n-gram tokens drafted from the prompt; needs workload.batch_size=1",
        range=AT_LEAST_1,
        only_with=PROMPT_LOOKUP,
    )
    repetition_penalty: float | None = schema_field("penalty for repeated tokens", range=POSITIVE)
    no_repeat_ngram_size: int | None = schema_field(
        "forbid repeating n-grams of this size", range=AT_LEAST_1
    )
    use_cache: bool | None = schema_field("use the KV cache")
    cache_implementation: CacheImplementation | None = schema_field(
        "KV cache implementation: dynamic and static work everywhere; offloaded and "
        "offloaded_static need CUDA; hybrid and sliding_window are refused (transformers 5 "
        "builds no such cache); needs use_cache unset or true"
    )
    seed: int = schema_field("torch seed set before each generate call (reproducible sampling)", 0)
    extra: dict[str, Any] = schema_field(
        "extra generate() kwargs merged last; generate rejects unknown keys",
        default_factory=dict,
    )


@dataclass
class WorkloadConfig:
    """The requests.

    The built-in set (``workload=default``) is 80 prompts written for this project
    (questions, instructions, summarisation of a passage, code, reasoning; 6 to 337
    tokens), see ``runner/data/PROMPTS.md``. A malformed workload file is refused before
    anything runs, naming the line.
    """

    kind: WorkloadKind = schema_field("default (built-in prompts), synthetic, file", MISSING)
    path: str | None = schema_field(
        'JSONL file, one {"prompt": "...", "id": "..."} per line (id optional)', only_with=FILE
    )
    num_prompts: int = schema_field(
        "requests per pass over the workload (the prompt list is cycled if shorter; a "
        "workload file cut or cycled is said in the run's warnings)",
        8,
        range=AT_LEAST_1,
    )
    batch_size: int = schema_field(
        "requests per generate call; at most num_prompts", 1, range=AT_LEAST_1
    )
    input_tokens: int | None = schema_field(
        "exact prompt length in tokens (checked after tokenization)",
        range=AT_LEAST_1,
        only_with=SYNTHETIC,
    )
    max_input_tokens: int | None = schema_field(
        "longer prompts are cut (recorded per request and counted in the result); "
        "not below input_tokens",
        range=AT_LEAST_1,
    )
    output_length: OutputLength = schema_field(
        "fixed: every request generates exactly max_new_tokens (EOS cannot end it early); "
        "natural: requests stop at EOS",
        OutputLength.fixed,
    )
    order: PromptOrder = schema_field("as_is or shuffle (with seed)", PromptOrder.as_is)
    seed: int = schema_field("seed for prompt order and synthetic prompts", 0)
    chat_template: bool = schema_field(
        "wrap prompts in the tokenizer's chat template if it has one", True
    )
