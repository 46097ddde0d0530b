"""What vLLM resolved, read from its own config, and where it differs from the request.

``applied`` is built from the engine's resolved ``VllmConfig`` (model, cache, scheduler,
compilation, parallel and speculative parts) and the ``SamplingParams`` vLLM built, never
from the run's config. A mismatch fails the run, as on the transformers path.
"""

from __future__ import annotations

from typing import Any


def _name(value: Any) -> Any:
    """Enums as their names, dtypes as their short names, the rest unchanged."""
    if value is None or isinstance(value, (bool, int, float, str)):
        if hasattr(value, "name") and not isinstance(value, bool):  # IntEnum
            return value.name
        return value
    if hasattr(value, "name"):
        return value.name
    return str(value).removeprefix("torch.")


def read_back_engine(vllm_config: Any) -> dict[str, Any]:
    """The settings vLLM resolved, from ``LLMEngine.vllm_config``."""
    mc, cc = vllm_config.model_config, vllm_config.cache_config
    sc, comp = vllm_config.scheduler_config, vllm_config.compilation_config
    pc, spec = vllm_config.parallel_config, vllm_config.speculative_config
    blocks = getattr(cc, "num_gpu_blocks", None)
    return {
        "model": getattr(mc, "model", None),
        "dtype": _name(mc.dtype),
        "quantization": mc.quantization,
        "max_model_len": mc.max_model_len,
        "seed": getattr(mc, "seed", None),
        "trust_remote_code": getattr(mc, "trust_remote_code", None),
        "revision": getattr(mc, "revision", None),
        "enforce_eager": mc.enforce_eager,
        "compilation_mode": _name(comp.mode),
        "cudagraph_mode": _name(getattr(comp, "cudagraph_mode", None)),
        "kv_cache_dtype": cc.cache_dtype,
        "block_size": cc.block_size,
        "num_blocks": blocks,
        "kv_cache_tokens": blocks * cc.block_size if blocks else None,
        "kv_cache_memory_bytes": getattr(cc, "kv_cache_memory_bytes", None),
        "gpu_memory_utilization": getattr(cc, "gpu_memory_utilization", None),
        "enable_prefix_caching": cc.enable_prefix_caching,
        "max_num_seqs": sc.max_num_seqs,
        "max_num_batched_tokens": sc.max_num_batched_tokens,
        "enable_chunked_prefill": sc.enable_chunked_prefill,
        "tensor_parallel_size": pc.tensor_parallel_size,
        "speculative_method": getattr(spec, "method", None) if spec else None,
        "num_speculative_tokens": getattr(spec, "num_speculative_tokens", None) if spec else None,
        "load_format": _name(getattr(vllm_config.load_config, "load_format", None)),
    }


def read_back_sampling(params: Any) -> dict[str, Any]:
    """The fields of the ``SamplingParams`` every measured request carries."""
    keys = (
        "max_tokens",
        "min_tokens",
        "temperature",
        "top_k",
        "top_p",
        "min_p",
        "repetition_penalty",
        "ignore_eos",
        "seed",
    )
    return {key: getattr(params, key, None) for key in keys}


# Engine arguments read back under the same name.
SAME_NAME = (
    "max_num_seqs",
    "max_num_batched_tokens",
    "enable_prefix_caching",
    "enable_chunked_prefill",
    "block_size",
    "kv_cache_dtype",
    "kv_cache_memory_bytes",
    "gpu_memory_utilization",
    "tensor_parallel_size",
    "enforce_eager",
    "seed",
    "trust_remote_code",
    "revision",
)


def engine_mismatches(requested: dict[str, Any], applied: dict[str, Any]) -> list[str]:
    """Requested engine arguments that vLLM resolved to something else."""
    problems = []
    for key in SAME_NAME:
        if key in requested and applied.get(key) != requested[key]:
            problems.append(
                f"vllm.{key}: requested {requested[key]!r}, vLLM used {applied.get(key)!r}"
            )
    dtype = requested.get("dtype")
    if dtype not in (None, "auto") and applied.get("dtype") != dtype:
        problems.append(f"vllm.dtype: requested {dtype!r}, vLLM used {applied.get('dtype')!r}")
    eager = requested.get("enforce_eager")
    if eager is False and applied.get("compilation_mode") in ("NONE", None):
        problems.append("compile: on requested, but vLLM resolved compilation mode NONE (eager)")
    if eager is True and applied.get("compilation_mode") not in ("NONE", None):
        mode = applied["compilation_mode"]
        problems.append(f"compile: off requested, but vLLM resolved compilation mode {mode}")
    spec = requested.get("speculative_config")
    if spec is not None:
        if applied.get("speculative_method") != spec["method"]:
            problems.append(
                f"decoding: {spec['method']} speculation requested, vLLM resolved "
                f"{applied.get('speculative_method')!r}"
            )
        if applied.get("num_speculative_tokens") != spec["num_speculative_tokens"]:
            problems.append(
                f"decoding.prompt_lookup_num_tokens: requested {spec['num_speculative_tokens']}, "
                f"vLLM used {applied.get('num_speculative_tokens')!r}"
            )
    elif applied.get("speculative_method") is not None:
        problems.append(
            f"decoding: no speculation requested, vLLM runs {applied['speculative_method']}"
        )
    return problems


def sampling_mismatches(requested: dict[str, Any], applied: dict[str, Any]) -> list[str]:
    """Requested ``SamplingParams`` fields that vLLM changed."""
    return [
        f"sampling.{key}: requested {want!r}, vLLM used {applied.get(key)!r}"
        for key, want in requested.items()
        if key in applied and applied[key] != want
    ]
