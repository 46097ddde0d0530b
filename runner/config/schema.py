"""Typed schemas for every config group.

Each option YAML under ``conf/<group>/`` extends the ``base_<group>`` schema
registered in :mod:`runner.config.store`, so unknown keys and wrong types are
refused by OmegaConf at composition time. ``None`` means "unset": the
translation layer emits no kwarg for it and the library default applies.
Every field carries its help text and its rules (:mod:`runner.config.rules`: the range
of its value, the condition under which it applies); validation, translation and the
generated ``docs/options.md`` read them from here. Each group's docstring is its
introduction in that reference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from omegaconf import MISSING

from runner.config.rules import AT_LEAST_0, AT_LEAST_1, POSITIVE, OnlyWith, Range, make_metadata


def _help(
    text: str,
    default: Any = None,
    *,
    range: Range | None = None,
    only_with: OnlyWith | None = None,
    **kw: Any,
) -> Any:
    meta = make_metadata(text, range, only_with)
    if "default_factory" in kw:
        return field(metadata=meta, **kw)
    return field(default=default, metadata=meta)


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
    # instead of OmegaConf's bare "invalid value": transformers 5 cannot build either.
    hybrid = "hybrid"
    sliding_window = "sliding_window"


class AttnImplementation(str, Enum):
    eager = "eager"
    sdpa = "sdpa"
    flash_attention_2 = "flash_attention_2"
    flash_attention_3 = "flash_attention_3"
    flex_attention = "flex_attention"


class EngineKind(str, Enum):
    transformers = "transformers"
    vllm = "vllm"


class KvCacheDtype(str, Enum):
    auto = "auto"
    fp8 = "fp8"
    fp8_e4m3 = "fp8_e4m3"
    fp8_e5m2 = "fp8_e5m2"
    bfloat16 = "bfloat16"


class ScenarioKind(str, Enum):
    offline = "offline"
    online = "online"


class Arrival(str, Enum):
    poisson = "poisson"
    constant = "constant"
    closed = "closed"


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
    forkserver = "forkserver"
    spawn = "spawn"
    inline = "inline"


class EnergyBackend(str, Enum):
    codecarbon = "codecarbon"
    off = "off"


class Violation(str, Enum):
    penalise = "penalise"
    prune = "prune"


class TrackingBackend(str, Enum):
    off = "off"
    mlflow = "mlflow"


class QualityMode(str, Enum):
    off = "off"
    perplexity = "perplexity"
    full = "full"
    lm_eval = "lm_eval"


# Which fields apply when: the one table validation, translation and the docs read.
LOCAL_OR_HUB = OnlyWith(
    "source", (ModelSource.local, ModelSource.hub), "model.source=local or hub", required=True
)
FOUR_BIT = OnlyWith("load_in_4bit", (True,), "load_in_4bit=true")
EIGHT_BIT = OnlyWith("load_in_8bit", (True,), "load_in_8bit=true")
COMPILED = OnlyWith("enabled", (True,), "compile.enabled=true")
SAMPLE = OnlyWith("mode", (DecodingMode.sample,), "decoding=sample")
BEAM = OnlyWith("mode", (DecodingMode.beam,), "decoding=beam")
BEAM_REQUIRED = OnlyWith("mode", (DecodingMode.beam,), "decoding=beam", required=True)
PROMPT_LOOKUP = OnlyWith("mode", (DecodingMode.prompt_lookup,), "decoding=prompt-lookup")
FILE = OnlyWith("kind", (WorkloadKind.file,), "workload=file", required=True)
SYNTHETIC = OnlyWith("kind", (WorkloadKind.synthetic,), "workload=synthetic", required=True)
QUALITY_ON = OnlyWith(
    "mode",
    (QualityMode.perplexity, QualityMode.full, QualityMode.lm_eval),
    "quality other than off",
)
VLLM = OnlyWith("kind", (EngineKind.vllm,), "engine=vllm")
ONLINE = OnlyWith("kind", (ScenarioKind.online,), "scenario=online")
ONLINE_REQUIRED = OnlyWith("kind", (ScenarioKind.online,), "scenario=online", required=True)
OPEN_LOOP = OnlyWith(
    "arrival",
    (Arrival.poisson, Arrival.constant),
    "scenario.arrival=poisson or constant",
    required=True,
)
OPEN_LOOP_OPTIONAL = OnlyWith(
    "arrival", (Arrival.poisson, Arrival.constant), "scenario.arrival=poisson or constant"
)
POISSON = OnlyWith("arrival", (Arrival.poisson,), "scenario.arrival=poisson")
CLOSED_LOOP = OnlyWith("arrival", (Arrival.closed,), "scenario.arrival=closed", required=True)
LM_EVAL = OnlyWith("mode", (QualityMode.lm_eval,), "quality=lm-eval")
LM_EVAL_REQUIRED = OnlyWith("mode", (QualityMode.lm_eval,), "quality=lm-eval", required=True)


@dataclass
class ModelConfig:
    """What is measured.

    Generated models (tiny, and the converted SmolLM2) are cached in ``cache_dir``, else
    ``$RUNNER_CACHE``, else ``~/.cache/llm-sweep-runner``. ``model=hub`` needs network on
    first use; everything else runs offline. A local model path without a ``config.json``
    is refused before anything runs.
    """

    source: ModelSource = _help("where the weights come from: tiny, smollm2, local, hub", MISSING)
    name: str = _help("label used in results and reports", MISSING)
    path: str | None = _help(
        "local directory (source=local) or hub id (source=hub)", only_with=LOCAL_OR_HUB
    )
    weights: Weights = _help(
        "pretrained: load the checkpoint; random: build the architecture from its config "
        "with random weights (nothing downloaded beyond config and tokenizer)",
        Weights.pretrained,
    )
    init_seed: int = _help("seed for random weights (weights=random)", 0)


@dataclass
class QuantConfig:
    """bitsandbytes quantization.

    The fields become a ``BitsAndBytesConfig`` passed to ``from_pretrained`` as
    ``quantization_config``. bitsandbytes 0.50 runs 4-bit and 8-bit on CPU too (slower
    than fp32 there). 4-bit and 8-bit cannot be combined.
    """

    name: str = _help("label of this quantization option", MISSING)
    load_in_8bit: bool = _help("bitsandbytes LLM.int8() linear layers", False)
    load_in_4bit: bool = _help("bitsandbytes 4-bit linear layers", False)
    bnb_4bit_quant_type: QuantType | None = _help("4-bit data type", only_with=FOUR_BIT)
    bnb_4bit_compute_dtype: DType | None = _help("dtype of 4-bit matmuls", only_with=FOUR_BIT)
    bnb_4bit_use_double_quant: bool | None = _help(
        "quantize the quantization constants too", only_with=FOUR_BIT
    )
    llm_int8_threshold: float | None = _help(
        "outlier threshold of LLM.int8()", range=AT_LEAST_0, only_with=EIGHT_BIT
    )


@dataclass
class CompileConfig:
    """torch.compile.

    The runner calls ``model.compile(...)``, which compiles the call path that
    ``generate`` uses (``torch.compile(model)`` would return a wrapper whose ``.generate``
    runs the eager forward). One eager forward runs first, because bitsandbytes repacks
    4-bit weights on CPU at their first forward and a graph traced earlier sees the wrong
    layout. With compilation the warmup covers every batch of the workload once, so no
    compilation for a new shape lands in the measured window. ``compile=off`` passes
    ``disable_compile=True`` to ``generate`` when a cache implementation is set, because
    transformers otherwise auto-compiles static-cache decoding on GPUs.
    """

    enabled: bool = _help("compile model.forward with torch.compile", False)
    mode: CompileMode | None = _help("torch.compile mode", only_with=COMPILED)
    backend: str | None = _help(
        "torch.compile backend, e.g. inductor, eager, aot_eager", only_with=COMPILED
    )
    fullgraph: bool | None = _help("refuse graph breaks", only_with=COMPILED)
    dynamic: bool | None = _help("dynamic shapes: true, false, or unset", only_with=COMPILED)


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

    mode: DecodingMode = _help(
        "greedy, sample, beam or prompt_lookup; do_sample=True only with sample", MISSING
    )
    max_new_tokens: int = _help("new tokens per request (upper bound)", 32, range=AT_LEAST_1)
    min_new_tokens: int | None = _help(
        "lower bound on new tokens; must be <= max_new_tokens, and under "
        "workload.output_length=fixed unset or equal to it",
        range=AT_LEAST_0,
    )
    temperature: float | None = _help(
        "sampling temperature; 0 is refused (that is decoding=greedy)",
        range=POSITIVE,
        only_with=SAMPLE,
    )
    top_k: int | None = _help(
        "top-k sampling; 0 turns top-k off, unset keeps transformers' default of 50",
        range=AT_LEAST_0,
        only_with=SAMPLE,
    )
    top_p: float | None = _help(
        "nucleus sampling mass", range=Range(0, 1, low_open=True), only_with=SAMPLE
    )
    min_p: float | None = _help("min-p sampling", range=Range(0, 1), only_with=SAMPLE)
    num_beams: int | None = _help(
        "beams",
        range=Range(low=2, message="beam search needs num_beams >= 2"),
        only_with=BEAM_REQUIRED,
    )
    early_stopping: bool | None = _help("stop beams early", only_with=BEAM)
    length_penalty: float | None = _help("beam length penalty", only_with=BEAM)
    prompt_lookup_num_tokens: int | None = _help(
        "n-gram tokens drafted from the prompt; needs workload.batch_size=1",
        range=AT_LEAST_1,
        only_with=PROMPT_LOOKUP,
    )
    repetition_penalty: float | None = _help("penalty for repeated tokens", range=POSITIVE)
    no_repeat_ngram_size: int | None = _help(
        "forbid repeating n-grams of this size", range=AT_LEAST_1
    )
    use_cache: bool | None = _help("use the KV cache")
    cache_implementation: CacheImplementation | None = _help(
        "KV cache implementation: dynamic and static work everywhere; offloaded and "
        "offloaded_static need CUDA; hybrid and sliding_window are refused (transformers 5 "
        "builds no such cache); needs use_cache unset or true"
    )
    seed: int = _help("torch seed set before each generate call (reproducible sampling)", 0)
    extra: dict[str, Any] = _help(
        "extra generate() kwargs merged last; generate rejects unknown keys",
        default_factory=dict,
    )


@dataclass
class LoadingConfig:
    """``from_pretrained`` placement and dtype.

    ``device_map`` values other than those listed are refused before loading; a CUDA
    ``device_map``, GPU caps in ``max_memory`` and flash attention need a visible CUDA
    GPU; flash attention needs dtype float16 or bfloat16. ``max_memory`` works only with
    device_map auto, balanced, balanced_low_0 or sequential (transformers ignores it
    otherwise): keys are GPU indices, cpu or disk, sizes carry a unit (GiB, MiB, KiB, GB,
    MB, KB), e.g. ``'++loading.max_memory={0:20GiB,cpu:64GiB}'`` (quoted: unquoted, bash
    splits ``{a,b}`` into two arguments). The placement accelerate
    chose is recorded in ``applied.model.hf_device_map`` when the model is split or
    offloaded, else ``applied.model.parameter_devices`` shows the one device.
    ``low_cpu_mem_usage`` is refused when set: transformers 5 ignores it. ``extra``
    (``+loading.extra.subfolder=sub``: the checkpoint in that subfolder of the model's
    directory, which must hold a config.json) is merged last and recorded; since an unknown
    ``from_pretrained`` key would silently become a model-config attribute, only the
    kwargs transformers consumes are accepted (listed below).
    """

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
class EngineConfig:
    """Which inference engine runs the model: transformers or vLLM.

    ``transformers`` runs ``generate`` on static batches; ``vllm`` runs vLLM (paged KV cache,
    continuous batching; install it first, see ``docs/engines.md``). Every other group keeps
    its meaning under ``engine=vllm``: each of its fields maps to vLLM's own API or is
    refused before anything runs (the table "Every field under engine=vllm" below).
    The fields below are vLLM's own knobs, refused under ``engine=transformers``; unset
    keeps vLLM's default. Eager execution is ``compile=off`` (``enforce_eager``), vLLM's
    compilation ``compile=on``. A vLLM run always runs in a fresh interpreter of its own
    (``measure.isolation=spawn``), never forked from the fork server: vLLM starts an engine
    process and worker processes, which must not inherit a forked copy of the runner.
    """

    kind: EngineKind = _help("transformers or vllm", MISSING)
    max_num_seqs: int | None = _help(
        "requests vLLM schedules at once (SchedulerConfig.max_num_seqs)",
        range=AT_LEAST_1,
        only_with=VLLM,
    )
    max_num_batched_tokens: int | None = _help(
        "tokens per scheduler step (SchedulerConfig.max_num_batched_tokens)",
        range=AT_LEAST_1,
        only_with=VLLM,
    )
    enable_prefix_caching: bool | None = _help(
        "reuse the KV blocks of shared prompt prefixes", only_with=VLLM
    )
    enable_chunked_prefill: bool | None = _help(
        "split long prefills into chunks scheduled with decodes", only_with=VLLM
    )
    kv_cache_dtype: KvCacheDtype | None = _help(
        "KV-cache data type: auto (the model's), fp8, fp8_e4m3, fp8_e5m2, bfloat16",
        only_with=VLLM,
    )
    block_size: int | None = _help("tokens per KV-cache block", range=AT_LEAST_1, only_with=VLLM)
    gpu_memory_utilization: float | None = _help(
        "share of GPU memory vLLM may use (weights, activations, KV cache); GPUs only",
        range=Range(0, 1, low_open=True),
        only_with=VLLM,
    )
    kv_cache_memory_gib: float | None = _help(
        "KV-cache size, GiB (kv_cache_memory_bytes; on GPUs it overrides "
        "gpu_memory_utilization's share); unset: 1 GiB on CPUs (vLLM's own CPU default takes "
        "most of the RAM and zeroes it, about a minute on a 24 GiB machine), vLLM's default "
        "on GPUs",
        range=POSITIVE,
        only_with=VLLM,
    )
    tensor_parallel_size: int | None = _help(
        "GPUs the model is split over (tensor parallelism)", range=AT_LEAST_1, only_with=VLLM
    )


@dataclass
class ScenarioConfig:
    """How requests reach the engine: all at once in batches, or arriving over time.

    ``offline`` (the default) is every measurement before serving: each call submits one
    batch of the workload and the next call starts when it ends. ``online`` serves: the
    workload's prompts are sent one request at a time by an arrival process, into vLLM's
    async engine or transformers' continuous batching (docs/serving.md), while earlier
    requests are decoding. The schedule is drawn from ``decoding.seed`` and
    recorded. Rates, throughput, goodput and energy are taken over the steady-state
    window: from the submission of request ceil(trim_fraction * N) to that of request
    N - ceil(trim_fraction * N), so the ramp-up from an empty engine and the drain after
    the last arrival are excluded (and recorded).
    """

    kind: ScenarioKind = _help("offline or online", MISSING)
    arrival: Arrival | None = _help(
        "poisson (exponential gaps; gamma with burstiness), constant (equal gaps) or closed "
        "(concurrency users, each sending its next request when the last is answered)",
        only_with=ONLINE_REQUIRED,
    )
    rate: float | None = _help(
        "offered load, requests per second", range=POSITIVE, only_with=OPEN_LOOP
    )
    burstiness: float | None = _help(
        "gamma shape of the gaps (1: Poisson; below 1 burstier, above 1 more even), as "
        "vLLM's benchmark; unset: 1",
        range=POSITIVE,
        only_with=POISSON,
    )
    concurrency: int | None = _help(
        "users of the closed loop", range=AT_LEAST_1, only_with=CLOSED_LOOP
    )
    num_requests: int | None = _help(
        "requests sent (prompts of the workload, cycled in order)",
        range=AT_LEAST_1,
        only_with=ONLINE_REQUIRED,
    )
    duration_seconds: float | None = _help(
        "stop sending after this long, seconds, or after num_requests, whichever comes "
        "first (unset: after num_requests)",
        range=POSITIVE,
        only_with=OPEN_LOOP_OPTIONAL,
    )
    trim_fraction: float | None = _help(
        "share of the requests at each end outside the steady-state window",
        range=Range(low=0, high=0.5, high_open=True),
        only_with=ONLINE_REQUIRED,
    )
    drain_seconds: float | None = _help(
        "after the last request is sent, wait at most this long for the rest, then abort "
        "them (recorded as unfinished, counted as missing every objective)",
        range=POSITIVE,
        only_with=ONLINE_REQUIRED,
    )
    max_lag_ms: float | None = _help(
        "a request sent later than its scheduled time by more than this flags the run "
        "(named warning serving_schedule_lag): the generator did not offer the rate asked",
        range=POSITIVE,
        only_with=ONLINE_REQUIRED,
    )
    slo_ttft_ms: float | None = _help(
        "objective: time to first token at most this, ms (unset: no objective)",
        range=POSITIVE,
        only_with=ONLINE,
    )
    slo_itl_ms: float | None = _help(
        "objective: every inter-token latency of a request at most this, ms",
        range=POSITIVE,
        only_with=ONLINE,
    )
    slo_e2e_ms: float | None = _help(
        "objective: end-to-end latency at most this, ms", range=POSITIVE, only_with=ONLINE
    )
    slo_attainment: float | None = _help(
        "a rate is served within the SLO when at least this share of its window's requests "
        "meet every objective (the capacity in the report)",
        range=Range(low=0, high=1, low_open=True),
        only_with=ONLINE_REQUIRED,
    )


@dataclass
class WorkloadConfig:
    """The requests.

    The built-in set (``workload=default``) is 80 prompts written for this project
    (questions, instructions, summarisation of a passage, code, reasoning; 6 to 337
    tokens), see ``runner/data/PROMPTS.md``. A malformed workload file is refused before
    anything runs, naming the line.
    """

    kind: WorkloadKind = _help("default (built-in prompts), synthetic, file", MISSING)
    path: str | None = _help(
        'JSONL file, one {"prompt": "...", "id": "..."} per line (id optional)', only_with=FILE
    )
    num_prompts: int = _help(
        "requests per pass over the workload (the prompt list is cycled if shorter; a "
        "workload file cut or cycled is said in the run's warnings)",
        8,
        range=AT_LEAST_1,
    )
    batch_size: int = _help("requests per generate call; at most num_prompts", 1, range=AT_LEAST_1)
    input_tokens: int | None = _help(
        "exact prompt length in tokens (checked after tokenization)",
        range=AT_LEAST_1,
        only_with=SYNTHETIC,
    )
    max_input_tokens: int | None = _help(
        "longer prompts are cut (recorded per request and counted in the result); "
        "not below input_tokens",
        range=AT_LEAST_1,
    )
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
    """Warmup, repeats, isolation.

    The measured phase repeats passes over the workload until both ``min_repeats`` and
    ``min_seconds`` are met, and stops at ``max_seconds``.
    """

    warmup: int = _help(
        "full-length warmup generate calls, excluded from statistics (with "
        "warmup_until_cv: at least this many)",
        1,
        range=AT_LEAST_0,
    )
    warmup_until_cv: float | None = _help(
        "the convergence rule: then warm up until the coefficient of variation of the last "
        "warmup_window passes' latencies (a pass: one call of each batch) is at most this, "
        "e.g. 0.05; unset: the fixed count only",
        None,
        range=POSITIVE,
    )
    warmup_window: int = _help("passes the convergence rule looks at", 5, range=Range(low=2))
    warmup_max_calls: int = _help(
        "the convergence rule stops after this many warmup calls (recorded as not converged)",
        100,
        range=AT_LEAST_1,
    )
    warmup_max_seconds: float = _help(
        "the convergence rule stops after this much warmup time, seconds", 300.0, range=POSITIVE
    )
    min_repeats: int = _help("measured passes over the workload, at least", 3, range=AT_LEAST_1)
    min_seconds: float = _help("measured time, at least (seconds)", 0.0, range=AT_LEAST_0)
    max_seconds: float = _help(
        "stop repeating after this much measured time (seconds; recorded as "
        "metrics.stopped_by); not below min_seconds",
        600.0,
        range=POSITIVE,
    )
    cooldown_seconds: float = _help(
        "a fixed gap before the run starts (after the previous job), seconds",
        0.0,
        range=AT_LEAST_0,
    )
    cooldown_until_idle: bool = _help(
        "then wait until the machine is idle: CPUs at most cooldown_cpu_busy busy, CPU and "
        "GPU temperatures no longer falling, GPU power settled (what the machine can tell)",
        False,
    )
    cooldown_max_seconds: float = _help(
        "wait for idle at most this long, then start anyway (recorded), seconds",
        120.0,
        range=POSITIVE,
    )
    cooldown_cpu_busy: float = _help(
        "the CPUs count as idle at or below this busy share of all CPU time",
        0.1,
        range=Range(low=0, high=1, low_open=True),
    )
    sample_hz: float = _help(
        "the run's hardware time series (timeseries.parquet: power, clocks, temperature, "
        "utilisation, throttle reasons), samples per second from 1 to 10; 0 turns it off",
        2.0,
        range=Range(low=0, high=10),
    )
    throttle_clock_drop: float = _help(
        "warn (hardware.clock_drop) when, within a measured window, a GPU's SM clock or the "
        "CPUs' mean frequency falls more than this fraction below its level at the window's "
        "start",
        0.1,
        range=Range(low=0, high=1, low_open=True, high_open=True),
    )
    interference_cores: float = _help(
        "warn (hardware.interference) when, over a measured window, processes outside the "
        "run kept more than this many CPU cores busy on average",
        0.5,
        range=POSITIVE,
    )
    isolation: Isolation = _help(
        "forkserver: each run in a fresh child process, forked from a server that has "
        "imported torch and transformers (never touched a GPU); spawn: each run in a fresh "
        "interpreter (slower start); inline: in the launcher's process",
        Isolation.forkserver,
    )


@dataclass
class EnergyConfig:
    """Energy tracking.

    CodeCarbon's offline tracker (no network ever) for CPU and RAM, plus the NVML energy
    counter on NVIDIA GPUs; ``energy=off`` records ``energy: null``. A country missing
    from CodeCarbon's packaged energy-mix table is refused, since CodeCarbon would
    silently use the world average.
    """

    backend: EnergyBackend = _help("codecarbon or off", MISSING)
    country_iso_code: str = _help(
        "ISO 3166 alpha-3 country for the offline carbon intensity", "USA"
    )
    measure_power_secs: float = _help("CodeCarbon sampling interval (seconds)", 1.0, range=POSITIVE)
    pue: float = _help("power usage effectiveness multiplier", 1.0, range=Range(low=1))
    gpu_ids: list[int] | None = _help(
        "GPUs to meter, indices >= 0 (default: every GPU visible to the job)"
    )
    baseline_seconds: float = _help(
        "idle baseline before the model loads (seconds, 0 disables)", 3.0, range=AT_LEAST_0
    )
    cache_baseline: bool = _help(
        "in a sweep (-m), measure the idle baseline once per machine and reuse it in the "
        "sweep's later runs (a file in the sweep directory); its age and the run that "
        "measured it are recorded. A run on its own always measures its own",
        True,
    )
    baseline_max_age_s: float = _help(
        "with cache_baseline: a baseline older than this is measured again (seconds)",
        600.0,
        range=POSITIVE,
    )


class RepeatOrder(str, Enum):
    interleaved = "interleaved"
    shuffled = "shuffled"
    grouped = "grouped"


@dataclass
class RepeatConfig:
    """How many times each point of a sweep runs, and in what order.

    Each repeat is its own job with its own directory (``...,repeat.index=1``).
    ``interleaved`` (the default) runs every point once before any runs again (a b c a b c),
    so a drift in the machine (heat, a neighbour's load) hits every point alike and the
    points can be compared repeat by repeat; ``grouped`` runs a point's repeats one after
    the other (a a b b); ``shuffled`` runs them in an order drawn with ``seed`` (written to
    the sweep's ``repeat_order.json``). ``count``, ``order`` and ``seed`` are not part of a
    run's config hash, so a sweep resumed with more repeats keeps the repeats it has;
    ``index`` (set by the sweeper) is.
    """

    count: int = _help(
        "times each point of a sweep (-m) runs, each as its own job and directory",
        1,
        range=AT_LEAST_1,
    )
    order: RepeatOrder = _help(
        "interleaved (a b a b: drift hits every point alike), shuffled (seeded), or grouped "
        "(a a b b)",
        RepeatOrder.interleaved,
    )
    seed: int = _help("seed of the shuffled order", 0)
    index: int | None = _help(
        "which repeat a run is, 0-based (set by the sweeper; null outside repeats)",
        None,
        range=AT_LEAST_0,
    )


@dataclass
class SearchConfig:
    """What a search optimizes (``hydra/sweeper=pareto``, see docs/search.md).

    The task returns the values of ``objectives`` to the sweeper, in order; a run that did
    not end ``ok``, or lacks an objective's value, is reported as failed, never as a number.
    A metric is a headline column of the report (``e2e_ms_mean``, ``peak_mem_mib``,
    ``energy_per_token_mj_net``...) or a numeric key of a result section
    (``metrics.ttft_seconds.p99``). These fields do not change what is measured: they are
    not part of the config hash, so a finished run is reused by a search with other
    objectives.
    """

    objectives: list[str] = _help(
        "metric:direction pairs, direction minimize or maximize, e.g. "
        "[energy_per_token_mj_net:minimize,e2e_ms_mean:minimize]",
        default_factory=lambda: ["energy_per_token_mj_net:minimize", "e2e_ms_mean:minimize"],
    )
    constraints: list[str] = _help(
        "bounds on result metrics a trial must meet, metric:max:number (<=) or "
        "metric:min:number (>=), e.g. [e2e_ms_mean:max:250]; a trial whose metric is "
        "missing violates it",
        default_factory=list,
    )
    violation: Violation = _help(
        "what happens to a trial that violates a constraint: penalise (told to the sampler "
        "with its values and violations, which NSGA-II ranks below every feasible trial) or "
        "prune (told as pruned); either way it is left out of the reported Pareto front",
        Violation.penalise,
    )


@dataclass
class QualityConfig:
    """What a saving does to the output, measured after the timed and energy windows.

    ``perplexity`` (default) scores ``max_tokens`` tokens of an evaluation text,
    teacher-forced, with the model as it was measured (weights, quantization, dtype,
    placement); ``full`` scores the whole text; ``lm-eval`` adds
    lm-evaluation-harness tasks on the same loaded model (install the ``lm-eval`` extra);
    ``off`` skips all of it. The text is the built-in one (about 5,000 tokens of prose, code
    and dialogue written for this project, ``runner/data/EVAL_TEXT.md``) unless ``text_path``
    names a UTF-8 text file. The output token ids of every measured request are written to
    ``outputs.parquet`` in every mode, so a report can compare runs: with
    ``reference=<run dir>`` the run records its agreement with that run (same workload only,
    checked before anything is measured). A compiled model is scored with its eager forward
    (its compiled one would compile a graph for every window shape), and the method says
    so. Details: ``docs/quality.md``.
    """

    mode: QualityMode = _help("off, perplexity, full or lm_eval", MISSING)
    text_path: str | None = _help(
        "UTF-8 text file to score instead of the built-in evaluation text", only_with=QUALITY_ON
    )
    max_tokens: int | None = _help(
        "tokens to score: max_tokens // window full windows (at least one), spread evenly "
        "over the text (unset: every window)",
        range=AT_LEAST_1,
        only_with=QUALITY_ON,
    )
    window: int = _help(
        "tokens per teacher-forced window; the first token of each has no context and is "
        "not scored",
        256,
        range=Range(low=2),
    )
    batch_size: int = _help(
        "windows per forward pass (and lm-eval's batch size)", 4, range=AT_LEAST_1
    )
    reference: str | None = _help(
        "a run directory to compare this run's outputs with (token agreement, exact match, "
        "first divergence)",
        only_with=QUALITY_ON,
    )
    tasks: list[str] | None = _help(
        "lm-eval task names (the built-in offline task: sweep_runner_facts)",
        only_with=LM_EVAL_REQUIRED,
    )
    task_dir: str | None = _help(
        "a directory of your own lm-eval task YAML files (data on disk)", only_with=LM_EVAL
    )
    limit: int | None = _help(
        "lm-eval examples per task at most (unset: all)", range=AT_LEAST_1, only_with=LM_EVAL
    )


@dataclass
class TrackingConfig:
    """Experiment tracking (``tracking=mlflow``, see docs/tracking.md).

    One MLflow run per job (parameters, headline metrics with CI bounds, status, artifacts)
    under a parent run per sweep. Nothing is logged with ``tracking=off``. A tracking URI
    that cannot be written is refused before anything runs.
    """

    backend: TrackingBackend = _help("off or mlflow", MISSING)
    uri: str | None = _help(
        "MLflow tracking URI (sqlite:///path.db, file:/dir, http://host:5000); unset: "
        "sqlite:///<sweep dir>/mlflow.db for a sweep, sqlite:///<runs dir>/mlflow.db for a run"
    )
    experiment: str = _help("MLflow experiment name", "llm-sweep-runner")


@dataclass
class RunConfig:
    """The whole run: one option of every group, plus top-level fields."""

    model: ModelConfig = MISSING
    engine: EngineConfig = MISSING
    scenario: ScenarioConfig = MISSING
    quant: QuantConfig = MISSING
    compile: CompileConfig = MISSING
    decoding: DecodingConfig = MISSING
    loading: LoadingConfig = MISSING
    workload: WorkloadConfig = MISSING
    measure: MeasureConfig = MISSING
    energy: EnergyConfig = MISSING
    search: SearchConfig = MISSING
    repeat: RepeatConfig = MISSING
    tracking: TrackingConfig = MISSING
    quality: QualityConfig = MISSING
    cache_dir: str | None = _help(
        "where generated models are cached (default: $RUNNER_CACHE or ~/.cache/llm-sweep-runner)"
    )
