"""Cross-field and range validation: pure, no network, no GPU, no environment.

Per-field rules (ranges, which fields apply when) are not written here: they are read
from the schema's field metadata (:mod:`runner.config.rules`) by :func:`check_fields`.
The cross-field rules that no single field carries are below. Facts about the machine
(is CUDA visible, which transformers) are passed in as :class:`Facts`, so the same rules
are testable anywhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any

from runner.config.rules import condition_violation, range_violation
from runner.config.schema import RunConfig
from runner.config.schema_generation import (
    CacheImplementation,
    DecodingMode,
    OutputLength,
    WorkloadKind,
)
from runner.config.schema_model import AttnImplementation, DType
from runner.config.schema_serving import EngineKind, ScenarioKind


class ConfigError(ValueError):
    """A user mistake in the config: one line naming field, value and what is allowed."""

    def __init__(self, field: str, value: Any, allowed: str) -> None:
        self.field, self.value, self.allowed = field, value, allowed
        shown = f"{field} is unset" if value is None else f"{field}={_show(value)}"
        super().__init__(f"{shown}: {allowed}")


def _show(value: Any) -> str:
    if hasattr(value, "name") and hasattr(value, "value"):
        return str(value.name)
    return repr(value) if isinstance(value, str) and value == "" else str(value)


@dataclass(frozen=True)
class Facts:
    """What validation needs to know about the machine, gathered by the caller."""

    cuda_available: bool | None = None  # None: unknown (jobs run elsewhere), rules skipped


# from_pretrained kwargs that transformers consumes itself (everything else would
# silently become a model-config attribute), minus those the schema owns.
FROM_PRETRAINED_EXTRA_KEYS = frozenset(
    {
        "subfolder",
        "variant",
        "use_safetensors",
        "offload_folder",
        "offload_buffers",
        "key_mapping",
        "gguf_file",
        "local_files_only",
        "force_download",
        "ignore_mismatched_sizes",
        "weights_only",
        "disable_mmap",
        "use_kernels",
        "experts_implementation",
        "tp_plan",
        "tp_size",
    }
)

CUDA_ONLY_CACHES = (CacheImplementation.offloaded, CacheImplementation.offloaded_static)
# What transformers 5's generate() does with these (generation/utils.py, read in 5.19 and
# 5.24): no cache of the kind asked for is ever built, so a run measuring one would be
# mislabelled. The message names the version installed ({transformers}).
REFUSED_CACHES = {
    CacheImplementation.hybrid: "transformers {transformers} unsets hybrid in generate() and "
    "builds a DynamicCache instead; use static or dynamic",
    CacheImplementation.sliding_window: "transformers {transformers} builds the same "
    "StaticCache for sliding_window as for static (a deprecated alias: sliding layers follow "
    "the model config's sliding_window either way); use static",
}


def installed(package: str) -> str:
    """The installed version of ``package`` (``unknown`` without it): what a message names."""
    import importlib.metadata

    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


# device_map strings transformers 5 accepts (check_and_set_device_map): accelerate's
# planners, or a torch device. Of the devices, the runner measures CPU and CUDA.
PLANNED_DEVICE_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")
DEVICE_MAPS = "auto, balanced, balanced_low_0, sequential, cpu, cuda, cuda:N or a GPU index N"
CUDA_DEVICE_MAP = re.compile(r"cuda(:\d+)?|\d+")
# accelerate's convert_file_size_to_int; a lower-case "b" would mean bits there.
MEMORY_SIZE = re.compile(r"\d+(\.\d+)?(GiB|MiB|KiB|GB|MB|KB)")
FLASH_ATTENTION = (AttnImplementation.flash_attention_2, AttnImplementation.flash_attention_3)


def _check(ok: bool, field: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(field, value, allowed)


def check_fields(section: Any, group: str) -> None:
    """The rules the schema's fields carry: ranges first, then which fields apply when."""
    for violation in (range_violation(section), condition_violation(section)):
        if violation is not None:
            name, value, allowed = violation
            raise ConfigError(f"{group}.{name}", value, allowed)


def validate(cfg: RunConfig, facts: Facts | None = None) -> None:
    """Raise :class:`ConfigError` for the first out-of-range value or conflict."""
    facts = facts or Facts()
    _validate_engine(cfg, facts)
    _validate_scenario(cfg)
    _validate_model(cfg)
    _validate_quant(cfg)
    _validate_compile(cfg)
    _validate_decoding(cfg)
    _validate_loading(cfg, facts)
    _validate_workload(cfg)
    _validate_measure(cfg)
    _validate_energy(cfg)
    _validate_quality(cfg)
    check_fields(cfg.repeat, "repeat")


def _validate_engine(cfg: RunConfig, facts: Facts) -> None:
    """The engine's own fields, then (under vLLM) every field vLLM cannot honour, first."""
    from runner.engines.rules import refusal

    e = cfg.engine
    check_fields(e, "engine")
    if e.kind is not EngineKind.vllm:
        return
    refused = refusal(cfg)
    if refused is not None:
        raise ConfigError(*refused)
    if facts.cuda_available is False and e.gpu_memory_utilization is not None:
        raise ConfigError(
            "engine.gpu_memory_utilization",
            e.gpu_memory_utilization,
            "GPUs only (no CUDA GPU here): size the CPU's KV cache with engine.kv_cache_memory_gib",
        )


# Under load, engine=transformers serves through its continuous-batching manager
# (runner.engines.transformers_cb), which runs greedy decoding of the model as loaded; what
# it cannot honour is refused rather than dropped (it drops unsupported logits processors).
CB_INSTEAD = "use engine=vllm for it under load"


def _validate_scenario(cfg: RunConfig) -> None:
    s = cfg.scenario
    check_fields(s, "scenario")
    if s.kind is not ScenarioKind.online or cfg.engine.kind is EngineKind.vllm:
        return
    d = cfg.decoding
    refusals = [
        (
            d.mode is not DecodingMode.greedy,
            "decoding.mode",
            d.mode,
            "under scenario=online transformers' continuous batching is measured with greedy "
            f"decoding only (it drops logits processors it does not support); {CB_INSTEAD}",
        ),
        (
            d.min_new_tokens is not None,
            "decoding.min_new_tokens",
            d.min_new_tokens,
            "continuous batching has no minimum length (workload.output_length=fixed pins "
            f"every request to max_new_tokens instead); {CB_INSTEAD}",
        ),
        (
            d.repetition_penalty is not None,
            "decoding.repetition_penalty",
            d.repetition_penalty,
            f"continuous batching would drop this logits processor; {CB_INSTEAD}",
        ),
        (
            d.no_repeat_ngram_size is not None,
            "decoding.no_repeat_ngram_size",
            d.no_repeat_ngram_size,
            f"continuous batching would drop this logits processor; {CB_INSTEAD}",
        ),
        (
            d.cache_implementation is not None,
            "decoding.cache_implementation",
            d.cache_implementation,
            "continuous batching always uses its own paged KV cache",
        ),
        (
            d.use_cache is False,
            "decoding.use_cache",
            d.use_cache,
            "continuous batching always uses its own paged KV cache",
        ),
        (
            bool(d.extra),
            "decoding.extra",
            d.extra,
            "generate() kwargs do not reach continuous batching; leave it empty",
        ),
        (
            cfg.compile.enabled,
            "compile.enabled",
            cfg.compile.enabled,
            "under scenario=online transformers is measured eager (continuous batching "
            "compiles its own paths, which this runner does not verify); use compile=off, "
            f"or {CB_INSTEAD}",
        ),
        (
            cfg.loading.attn_implementation not in (None, AttnImplementation.sdpa),
            "loading.attn_implementation",
            cfg.loading.attn_implementation,
            "continuous batching runs its paged attention on sdpa here: leave it unset or sdpa",
        ),
    ]
    for refused, field, value, why in refusals:
        if refused:
            raise ConfigError(field, value, why)


def _validate_model(cfg: RunConfig) -> None:
    check_fields(cfg.model, "model")


def _validate_quant(cfg: RunConfig) -> None:
    q = cfg.quant
    if q.load_in_4bit and q.load_in_8bit:
        raise ConfigError("quant.load_in_8bit", True, "cannot be combined with load_in_4bit")
    check_fields(q, "quant")


def _validate_compile(cfg: RunConfig) -> None:
    c = cfg.compile
    check_fields(c, "compile")
    if c.backend is not None:
        _check(bool(c.backend.strip()), "compile.backend", c.backend, "must be a backend name")


def _validate_decoding(cfg: RunConfig) -> None:
    d = cfg.decoding
    # Before the range: 0 is the one out-of-range temperature with a better reading.
    _check(
        d.temperature != 0,
        "decoding.temperature",
        d.temperature,
        "temperature 0 means always the most likely token: leave it unset, use decoding=greedy",
    )
    check_fields(d, "decoding")
    if d.min_new_tokens is not None:
        _check(
            d.min_new_tokens <= d.max_new_tokens,
            "decoding.min_new_tokens",
            d.min_new_tokens,
            f"must be <= decoding.max_new_tokens ({d.max_new_tokens})",
        )
    if d.mode is DecodingMode.prompt_lookup:
        _check(
            cfg.workload.batch_size == 1,
            "workload.batch_size",
            cfg.workload.batch_size,
            "prompt lookup decoding needs batch_size=1",
        )
    if d.cache_implementation in REFUSED_CACHES:
        raise ConfigError(
            "decoding.cache_implementation",
            d.cache_implementation,
            REFUSED_CACHES[d.cache_implementation].format(transformers=installed("transformers")),
        )
    if d.use_cache is False:
        _check(
            d.cache_implementation is None,
            "decoding.cache_implementation",
            d.cache_implementation,
            "needs use_cache unset or true",
        )
    if cfg.workload.output_length is OutputLength.fixed and d.min_new_tokens is not None:
        _check(
            d.min_new_tokens == d.max_new_tokens,
            "decoding.min_new_tokens",
            d.min_new_tokens,
            "workload.output_length=fixed sets it to max_new_tokens; leave it unset "
            "or use workload.output_length=natural",
        )
    owned = {f.name for f in fields(d)} | {"do_sample"}
    for key in d.extra:
        _check(key not in owned, f"decoding.extra.{key}", d.extra[key], "set the schema field")


def _validate_loading(cfg: RunConfig, facts: Facts) -> None:
    ld = cfg.loading
    check_fields(ld, "loading")
    device_map = ld.device_map
    no_cuda = facts.cuda_available is False
    if device_map is not None:
        _check(
            device_map in (*PLANNED_DEVICE_MAPS, "cpu")
            or bool(CUDA_DEVICE_MAP.fullmatch(device_map)),
            "loading.device_map",
            device_map,
            f"allowed: {DEVICE_MAPS}",
        )
        if CUDA_DEVICE_MAP.fullmatch(device_map) and no_cuda:
            raise ConfigError("loading.device_map", device_map, "no CUDA GPU is visible; use cpu")
    _validate_max_memory(ld.max_memory, device_map, no_cuda)
    if ld.attn_implementation in FLASH_ATTENTION:
        _check(
            not no_cuda,
            "loading.attn_implementation",
            ld.attn_implementation,
            "flash attention needs a CUDA GPU; use sdpa or eager",
        )
        _check(
            ld.dtype in (DType.float16, DType.bfloat16),
            "loading.dtype",
            ld.dtype,
            "flash attention needs dtype float16 or bfloat16",
        )
    if cfg.decoding.cache_implementation in CUDA_ONLY_CACHES:
        _check(
            not no_cuda,
            "decoding.cache_implementation",
            cfg.decoding.cache_implementation,
            "offloaded caches need a CUDA GPU; use dynamic or static",
        )
    _check(
        ld.low_cpu_mem_usage is None,
        "loading.low_cpu_mem_usage",
        ld.low_cpu_mem_usage,
        "transformers 5 ignores this kwarg (loading is always low-memory); leave it unset",
    )
    owned = {
        "dtype",
        "torch_dtype",
        "device_map",
        "attn_implementation",
        "max_memory",
        "revision",
        "trust_remote_code",
        "quantization_config",
    }
    for key in ld.extra:
        _check(key not in owned, f"loading.extra.{key}", ld.extra[key], "set the schema field")
        _check(
            key in FROM_PRETRAINED_EXTRA_KEYS,
            f"loading.extra.{key}",
            ld.extra[key],
            "would silently become a model-config attribute; allowed: "
            + ", ".join(sorted(FROM_PRETRAINED_EXTRA_KEYS)),
        )


def _validate_max_memory(caps: dict[Any, str], device_map: str | None, no_cuda: bool) -> None:
    if not caps:
        return
    _check(
        device_map in PLANNED_DEVICE_MAPS,
        "loading.max_memory",
        dict(caps),
        f"transformers ignores it with loading.device_map={device_map}; use loading.device_map "
        + ", ".join(PLANNED_DEVICE_MAPS),
    )
    for key, size in caps.items():
        name = f"loading.max_memory.{key}"
        if str(key).isdigit():
            _check(not no_cuda, name, size, "no CUDA GPU is visible; cap cpu (and disk) only")
        else:
            _check(key in ("cpu", "disk"), name, size, "keys are GPU indices, cpu or disk")
        _check(
            isinstance(size, str) and bool(MEMORY_SIZE.fullmatch(size)),
            name,
            size,
            "a size with a unit, e.g. 20GiB, 512MiB, 30GB (GiB, MiB, KiB, GB, MB, KB)",
        )


def _validate_workload(cfg: RunConfig) -> None:
    w = cfg.workload
    check_fields(w, "workload")
    # A batch larger than a pass would be cut to the pass, and points of a batch-size sweep
    # would measure the same thing under different labels.
    _check(
        w.batch_size <= w.num_prompts,
        "workload.batch_size",
        w.batch_size,
        f"must be <= workload.num_prompts ({w.num_prompts}), the requests of one pass; "
        "raise workload.num_prompts with it",
    )
    if w.kind is WorkloadKind.synthetic and w.max_input_tokens is not None:
        _check(
            w.max_input_tokens >= w.input_tokens,
            "workload.max_input_tokens",
            w.max_input_tokens,
            f"below workload.input_tokens ({w.input_tokens})",
        )


def _validate_measure(cfg: RunConfig) -> None:
    m = cfg.measure
    check_fields(m, "measure")
    _check(
        m.max_seconds >= m.min_seconds,
        "measure.max_seconds",
        m.max_seconds,
        f"must be >= measure.min_seconds ({m.min_seconds})",
    )
    _check(
        m.sample_hz == 0 or m.sample_hz >= 1,
        "measure.sample_hz",
        m.sample_hz,
        "must be 0 (off) or from 1 to 10",
    )


def _validate_energy(cfg: RunConfig) -> None:
    e = cfg.energy
    check_fields(e, "energy")
    code = e.country_iso_code
    _check(
        len(code) == 3 and code.isalpha() and code.isupper(),
        "energy.country_iso_code",
        code,
        "must be an ISO 3166 alpha-3 code such as USA, FRA, DEU",
    )
    if e.gpu_ids is not None:
        for i in e.gpu_ids:
            _check(i >= 0, "energy.gpu_ids", e.gpu_ids, "GPU indices must be >= 0")


def _validate_quality(cfg: RunConfig) -> None:
    q = cfg.quality
    check_fields(q, "quality")
    for name in q.tasks or ():
        _check(bool(name.strip()), "quality.tasks", list(q.tasks), "task names must not be empty")
    if q.tasks is not None:
        _check(bool(q.tasks), "quality.tasks", [], "name at least one lm-eval task")
    for name, value in (("text_path", q.text_path), ("reference", q.reference)):
        _check(value != "", f"quality.{name}", value, "give a path, or leave it unset")
