"""The run's config as vLLM's own arguments: ``LLM(...)`` and ``SamplingParams(...)``.

Pure: the fields refused under ``engine=vllm`` (:mod:`runner.engines.rules`) never reach
here, since validation stops them first. The result is recorded under ``requested`` and
checked against what vLLM resolved (:mod:`runner.engines.vllm_readback`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runner.config.schema import RunConfig
from runner.config.schema_generation import DecodingMode, OutputLength
from runner.config.schema_model import DType
from runner.config.validate import ConfigError
from runner.hardware.roofline import DTYPE_BYTES, kv_bytes_per_token, kv_layout

GIB = 2**30
# Unset on a CPU: vLLM's own default takes most of the RAM for the KV cache and zeroes it
# (about a minute on a 24 GiB machine) for workloads that need a few MiB.
CPU_KV_CACHE_GIB = 1.0
# transformers' default top_k, kept when decoding.top_k is unset so the field keeps its
# meaning across engines (vLLM's own default is off).
TRANSFORMERS_TOP_K = 50


def checkpoint_dtype(model_config: Any) -> str | None:
    """The checkpoint's own dtype as vLLM names it (``bfloat16``), from its config."""
    dtype = getattr(model_config, "dtype", None)
    return str(dtype).removeprefix("torch.") if dtype is not None else None


def llm_kwargs(
    cfg: RunConfig, model_path: str, *, cuda: bool, checkpoint_dtype: str | None
) -> dict[str, Any]:
    """``LLM(**kwargs)`` for this run: the checkpoint, placement, compilation, scheduler and
    KV-cache knobs. Unset engine fields are left out, so vLLM's default applies.

    ``checkpoint_dtype``: the checkpoint's own dtype (its config.json), which loading.dtype
    unset or auto means, as for ``from_pretrained``; vLLM's own ``auto`` would run a float32
    checkpoint in a 16-bit type instead.
    """
    e, ld = cfg.engine, cfg.loading
    kw: dict[str, Any] = {
        "model": model_path,
        "tokenizer": model_path,
        "seed": cfg.decoding.seed,
        "enforce_eager": not cfg.compile.enabled,
        # Stats give each request's engine-side timestamps (queued, scheduled, first token).
        "disable_log_stats": False,
    }
    if ld.dtype is not None and ld.dtype is not DType.auto:
        kw["dtype"] = ld.dtype.value
    else:
        kw["dtype"] = checkpoint_dtype or "auto"
    if ld.revision is not None:
        kw["revision"] = kw["tokenizer_revision"] = ld.revision
    if ld.trust_remote_code:
        kw["trust_remote_code"] = True
    for name in (
        "max_num_seqs",
        "max_num_batched_tokens",
        "enable_prefix_caching",
        "enable_chunked_prefill",
        "block_size",
        "gpu_memory_utilization",
        "tensor_parallel_size",
    ):
        value = getattr(e, name)
        if value is not None:
            kw[name] = value
    if e.kv_cache_dtype is not None:
        kw["kv_cache_dtype"] = e.kv_cache_dtype.value
    gib = e.kv_cache_memory_gib
    if gib is None and not cuda:
        gib = CPU_KV_CACHE_GIB
    if gib is not None:
        kw["kv_cache_memory_bytes"] = int(gib * GIB)
    d = cfg.decoding
    if d.mode is DecodingMode.prompt_lookup:
        k = d.prompt_lookup_num_tokens or 10
        kw["speculative_config"] = {
            "method": "ngram",
            "num_speculative_tokens": k,
            "prompt_lookup_max": k,
            "prompt_lookup_min": 1,
        }
    return kw


def sampling_kwargs(cfg: RunConfig) -> dict[str, Any]:
    """``SamplingParams(**kwargs)`` of every measured request (streamed: output_kind is
    added by the caller)."""
    d = cfg.decoding
    kw: dict[str, Any] = {
        "max_tokens": d.max_new_tokens,
        "ignore_eos": cfg.workload.output_length is OutputLength.fixed,
        "seed": d.seed,
    }
    if d.min_new_tokens is not None:
        kw["min_tokens"] = d.min_new_tokens
    if d.repetition_penalty is not None:
        kw["repetition_penalty"] = d.repetition_penalty
    if d.mode is DecodingMode.sample:
        kw["temperature"] = d.temperature if d.temperature is not None else 1.0
        top_k = TRANSFORMERS_TOP_K if d.top_k is None else d.top_k
        kw["top_k"] = -1 if top_k == 0 else top_k
        if d.top_p is not None:
            kw["top_p"] = d.top_p
        if d.min_p is not None:
            kw["min_p"] = d.min_p
    else:  # greedy, and prompt lookup's verification
        kw["temperature"] = 0.0
    return kw


def kv_cache_width(kv_cache_dtype: str | None, model_dtype: str | None) -> int | None:
    """Bytes per KV cache element: 1 for the fp8 kinds, else the dtype named, where ``auto``
    (or unset) is the model's; None where it is unknown."""
    kv = kv_cache_dtype or "auto"
    if kv.startswith("fp8"):
        return 1
    return DTYPE_BYTES.get(str(model_dtype) if kv == "auto" else kv)


def check_kv_cache_fits(cfg: RunConfig, model_config: Mapping[str, Any], *, cuda: bool) -> None:
    """Before anything runs: the KV cache holds one request at the model's full context, as
    vLLM requires at start (else it fails after loading, its reason only in run.log).
    Skipped where the size is vLLM's own (a GPU without kv_cache_memory_gib) or the config
    does not tell."""
    from runner.models.context import max_positions

    gib = cfg.engine.kv_cache_memory_gib
    if gib is None and cuda:
        return
    kv_dtype = cfg.engine.kv_cache_dtype
    chosen = cfg.loading.dtype
    name = chosen.value if chosen not in (None, DType.auto) else model_config.get("dtype")
    width = kv_cache_width(
        kv_dtype.value if kv_dtype is not None else None,
        name or model_config.get("torch_dtype"),
    )
    layout = kv_layout(model_config)
    per_token = kv_bytes_per_token(layout, width) if layout and width else None
    context = max_positions(model_config)
    if per_token is None or context is None:
        return
    need = per_token * context / GIB
    have = gib if gib is not None else CPU_KV_CACHE_GIB
    if have < need:
        default = "" if gib is not None else f" (unset: {CPU_KV_CACHE_GIB:g} GiB on a CPU)"
        raise ConfigError(
            "engine.kv_cache_memory_gib",
            gib,
            f"too small{default}: vLLM needs room for one request at the model's context of "
            f"{context} tokens, {need:.2f} GiB at {per_token} bytes per token; set it to at "
            f"least {need:.2f}",
        )
