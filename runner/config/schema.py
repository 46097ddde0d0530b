"""Typed schemas for every config group.

Each option YAML under ``conf/<group>/`` extends the ``base_<group>`` schema
registered in :mod:`runner.config.store`, so unknown keys and wrong types are
refused by OmegaConf at composition time. ``None`` means "unset": the
translation layer emits no kwarg for it and the library default applies.
Every field carries its help text; validation errors and the README quote it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from omegaconf import MISSING


def _help(text: str, default: Any = None, **kw: Any) -> Any:
    if "default_factory" in kw:
        return field(metadata={"help": text}, **kw)
    return field(default=default, metadata={"help": text})


class ModelSource(str, Enum):
    tiny = "tiny"
    smollm2 = "smollm2"
    local = "local"
    hub = "hub"


class Weights(str, Enum):
    pretrained = "pretrained"
    random = "random"


class DType(str, Enum):
    auto = "auto"
    float32 = "float32"
    float16 = "float16"
    bfloat16 = "bfloat16"


class QuantType(str, Enum):
    nf4 = "nf4"
    fp4 = "fp4"


class CompileMode(str, Enum):
    default = "default"
    reduce_overhead = "reduce-overhead"
    max_autotune = "max-autotune"
    max_autotune_no_cudagraphs = "max-autotune-no-cudagraphs"


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
    # instead of OmegaConf's bare "invalid value": transformers 5.24 cannot build either.
    hybrid = "hybrid"
    sliding_window = "sliding_window"


class AttnImplementation(str, Enum):
    eager = "eager"
    sdpa = "sdpa"
    flash_attention_2 = "flash_attention_2"
    flash_attention_3 = "flash_attention_3"
    flex_attention = "flex_attention"


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


class Isolation(str, Enum):
    spawn = "spawn"
    inline = "inline"


class EnergyBackend(str, Enum):
    codecarbon = "codecarbon"
    off = "off"


@dataclass
class ModelConfig:
    source: ModelSource = _help("where the weights come from: tiny, smollm2, local, hub", MISSING)
    name: str = _help("label used in results and reports", MISSING)
    path: str | None = _help("local directory (source=local) or hub id (source=hub)")
    weights: Weights = _help(
        "pretrained: load the checkpoint; random: build the architecture from its config "
        "with random weights (nothing downloaded beyond config and tokenizer)",
        Weights.pretrained,
    )
    init_seed: int = _help("seed for random weights (weights=random)", 0)


@dataclass
class QuantConfig:
    name: str = _help("label of this quantization option", MISSING)
    load_in_8bit: bool = _help("bitsandbytes LLM.int8() linear layers", False)
    load_in_4bit: bool = _help("bitsandbytes 4-bit linear layers", False)
    bnb_4bit_quant_type: QuantType | None = _help("4-bit data type: nf4 or fp4 (4-bit only)")
    bnb_4bit_compute_dtype: DType | None = _help("dtype of 4-bit matmuls (4-bit only)")
    bnb_4bit_use_double_quant: bool | None = _help("quantize the quant constants (4-bit only)")
    llm_int8_threshold: float | None = _help("outlier threshold of LLM.int8() (8-bit only)")


@dataclass
class CompileConfig:
    enabled: bool = _help("compile model.forward with torch.compile", False)
    mode: CompileMode | None = _help("torch.compile mode (needs enabled)")
    backend: str | None = _help("torch.compile backend, e.g. inductor, eager (needs enabled)")
    fullgraph: bool | None = _help("refuse graph breaks (needs enabled)")
    dynamic: bool | None = _help("dynamic shapes: true, false, or unset (needs enabled)")


@dataclass
class DecodingConfig:
    mode: DecodingMode = _help("greedy, sample, beam or prompt_lookup", MISSING)
    max_new_tokens: int = _help("new tokens per request (upper bound)", 32)
    min_new_tokens: int | None = _help("lower bound on new tokens")
    temperature: float | None = _help("sampling temperature (mode=sample)")
    top_k: int | None = _help("top-k sampling (mode=sample); 0 turns top-k off")
    top_p: float | None = _help("nucleus sampling mass (mode=sample)")
    min_p: float | None = _help("min-p sampling (mode=sample)")
    num_beams: int | None = _help("beams (mode=beam, at least 2)")
    early_stopping: bool | None = _help("stop beams early (mode=beam)")
    length_penalty: float | None = _help("beam length penalty (mode=beam)")
    prompt_lookup_num_tokens: int | None = _help("n-gram tokens (mode=prompt_lookup)")
    repetition_penalty: float | None = _help("penalty for repeated tokens (> 0)")
    no_repeat_ngram_size: int | None = _help("forbid repeating n-grams of this size")
    use_cache: bool | None = _help("use the KV cache")
    cache_implementation: CacheImplementation | None = _help("KV cache implementation")
    seed: int = _help("torch seed set before each generate call (reproducible sampling)", 0)
    extra: dict[str, Any] = _help(
        "extra generate() kwargs merged last; generate rejects unknown keys",
        default_factory=dict,
    )


@dataclass
class LoadingConfig:
    name: str = _help("label of this loading option", MISSING)
    device_map: str | None = _help(
        "from_pretrained device_map: auto, balanced, balanced_low_0, sequential, cpu, cuda, "
        "cuda:N or a GPU index N"
    )
    dtype: DType | None = _help("parameter dtype: auto, float32, float16, bfloat16")
    attn_implementation: AttnImplementation | None = _help("attention kernel")
    max_memory: dict[Any, str] = _help(
        "per-device memory caps for device_map auto/balanced/balanced_low_0/sequential, "
        "e.g. {0:20GiB,cpu:30GiB} (empty: unset)",
        default_factory=dict,
    )
    revision: str | None = _help("model revision (branch, tag or commit)")
    trust_remote_code: bool = _help("run code shipped with the model", False)
    low_cpu_mem_usage: bool | None = _help("load without a full fp32 copy in RAM")
    extra: dict[str, Any] = _help(
        "extra from_pretrained kwargs merged last; only known loading kwargs are accepted",
        default_factory=dict,
    )


@dataclass
class WorkloadConfig:
    kind: WorkloadKind = _help("default (built-in prompts), synthetic, file", MISSING)
    path: str | None = _help('JSONL file, one {"prompt": ...} per line (kind=file)')
    num_prompts: int = _help("number of requests per pass over the workload", 8)
    batch_size: int = _help("requests per generate call", 1)
    input_tokens: int | None = _help("exact prompt length in tokens (kind=synthetic)")
    max_input_tokens: int | None = _help("truncate longer prompts (recorded per request)")
    output_length: OutputLength = _help(
        "fixed: every request generates exactly max_new_tokens (EOS cannot end it early); "
        "natural: requests stop at EOS",
        OutputLength.fixed,
    )
    order: PromptOrder = _help("as_is or shuffle (with seed)", PromptOrder.as_is)
    seed: int = _help("seed for prompt order and synthetic prompts", 0)
    chat_template: bool = _help("wrap prompts in the tokenizer's chat template if it has one", True)


@dataclass
class MeasureConfig:
    warmup: int = _help("full-length warmup generate calls, excluded from statistics", 1)
    min_repeats: int = _help("measured passes over the workload, at least", 3)
    min_seconds: float = _help("measured time, at least (seconds)", 0.0)
    max_seconds: float = _help("stop repeating after this much measured time (seconds)", 600.0)
    isolation: Isolation = _help(
        "spawn: each run in a fresh child process; inline: in the launcher's process",
        Isolation.spawn,
    )


@dataclass
class EnergyConfig:
    backend: EnergyBackend = _help("codecarbon or off", MISSING)
    country_iso_code: str = _help(
        "ISO 3166 alpha-3 country for the offline carbon intensity", "USA"
    )
    measure_power_secs: float = _help("CodeCarbon sampling interval (seconds)", 1.0)
    pue: float = _help("power usage effectiveness multiplier (>= 1)", 1.0)
    gpu_ids: list[int] | None = _help("GPUs to meter (default: those the run uses)")
    baseline_seconds: float = _help("idle baseline before load (seconds, 0 disables)", 3.0)
    cache_baseline: bool = _help("reuse the idle baseline across runs of one process", False)


@dataclass
class RunConfig:
    model: ModelConfig = MISSING
    quant: QuantConfig = MISSING
    compile: CompileConfig = MISSING
    decoding: DecodingConfig = MISSING
    loading: LoadingConfig = MISSING
    workload: WorkloadConfig = MISSING
    measure: MeasureConfig = MISSING
    energy: EnergyConfig = MISSING
    cache_dir: str | None = _help(
        "where generated models are cached (default: $RUNNER_CACHE or ~/.cache/llm-sweep-runner)"
    )
