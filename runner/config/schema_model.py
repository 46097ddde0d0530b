"""The model, quant, compile and loading groups: what is loaded, and how."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from omegaconf import MISSING

from runner.config.rules import AT_LEAST_0, OnlyWith, schema_field


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


class AttnImplementation(str, Enum):
    eager = "eager"
    sdpa = "sdpa"
    flash_attention_2 = "flash_attention_2"
    flash_attention_3 = "flash_attention_3"
    flex_attention = "flex_attention"


# Which fields of these groups apply when (validation, translation and the docs read them).
LOCAL_OR_HUB = OnlyWith(
    "source", (ModelSource.local, ModelSource.hub), "model.source=local or hub", required=True
)
FOUR_BIT = OnlyWith("load_in_4bit", (True,), "load_in_4bit=true")
EIGHT_BIT = OnlyWith("load_in_8bit", (True,), "load_in_8bit=true")
COMPILED = OnlyWith("enabled", (True,), "compile.enabled=true")


@dataclass
class ModelConfig:
    """What is measured.

    Generated models (tiny, and the converted SmolLM2) are cached in ``cache_dir``, else
    ``$RUNNER_CACHE``, else ``~/.cache/llm-sweep-runner``. ``model=hub`` needs network on
    first use; everything else runs offline. A local model path without a ``config.json``
    is refused before anything runs.
    """

    source: ModelSource = schema_field(
        "where the weights come from: tiny, smollm2, local, hub", MISSING
    )
    name: str = schema_field("label used in results and reports", MISSING)
    path: str | None = schema_field(
        "local directory (source=local) or hub id (source=hub)", only_with=LOCAL_OR_HUB
    )
    weights: Weights = schema_field(
        "pretrained: load the checkpoint; random: build the architecture from its config "
        "with random weights (nothing downloaded beyond config and tokenizer)",
        Weights.pretrained,
    )
    init_seed: int = schema_field("seed for random weights (weights=random)", 0)


@dataclass
class QuantConfig:
    """bitsandbytes quantization.

    The fields become a ``BitsAndBytesConfig`` passed to ``from_pretrained`` as
    ``quantization_config``. bitsandbytes 0.50 runs 4-bit and 8-bit on CPU too (slower
    than fp32 there). 4-bit and 8-bit cannot be combined.
    """

    name: str = schema_field("label of this quantization option", MISSING)
    load_in_8bit: bool = schema_field("bitsandbytes LLM.int8() linear layers", False)
    load_in_4bit: bool = schema_field("bitsandbytes 4-bit linear layers", False)
    bnb_4bit_quant_type: QuantType | None = schema_field("4-bit data type", only_with=FOUR_BIT)
    bnb_4bit_compute_dtype: DType | None = schema_field(
        "dtype of 4-bit matmuls", only_with=FOUR_BIT
    )
    bnb_4bit_use_double_quant: bool | None = schema_field(
        "quantize the quantization constants too", only_with=FOUR_BIT
    )
    llm_int8_threshold: float | None = schema_field(
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

    enabled: bool = schema_field("compile model.forward with torch.compile", False)
    mode: CompileMode | None = schema_field("torch.compile mode", only_with=COMPILED)
    backend: str | None = schema_field(
        "torch.compile backend, e.g. inductor, eager, aot_eager", only_with=COMPILED
    )
    fullgraph: bool | None = schema_field("refuse graph breaks", only_with=COMPILED)
    dynamic: bool | None = schema_field("dynamic shapes: true, false, or unset", only_with=COMPILED)


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

    name: str = schema_field("label of this loading option", MISSING)
    device_map: str | None = schema_field(
        "from_pretrained device_map: auto, balanced, balanced_low_0, sequential, cpu, cuda, "
        "cuda:N or a GPU index N"
    )
    dtype: DType | None = schema_field("parameter dtype: auto, float32, float16, bfloat16")
    attn_implementation: AttnImplementation | None = schema_field("attention kernel")
    max_memory: dict[Any, str] = schema_field(
        "per-device memory caps for device_map auto/balanced/balanced_low_0/sequential, "
        "e.g. {0:20GiB,cpu:30GiB} (empty: unset)",
        default_factory=dict,
    )
    revision: str | None = schema_field("model revision (branch, tag or commit)")
    trust_remote_code: bool = schema_field("run code shipped with the model", False)
    low_cpu_mem_usage: bool | None = schema_field("load without a full fp32 copy in RAM")
    extra: dict[str, Any] = schema_field(
        "extra from_pretrained kwargs merged last; only known loading kwargs are accepted",
        default_factory=dict,
    )
