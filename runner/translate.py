"""Pure translation from the typed config to library kwargs.

A key appears only where the config sets it: unset means library default.
Nothing here loads a model or touches the environment; the one function
with a side effect, :func:`apply_compile`, acts on the model it is given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runner.config.rules import fields_applying
from runner.config.schema import RunConfig
from runner.config.schema_generation import (
    DecodingConfig,
    DecodingMode,
    OutputLength,
    WorkloadConfig,
)
from runner.config.schema_model import CompileConfig, DType, LoadingConfig, QuantConfig

TORCH_DTYPE_NAMES = {
    DType.float32: "float32",
    DType.float16: "float16",
    DType.bfloat16: "bfloat16",
}


def torch_dtype(dtype: DType) -> Any:
    """``DType`` to the torch dtype (``auto`` stays the string transformers expects)."""
    import torch

    return "auto" if dtype is DType.auto else getattr(torch, TORCH_DTYPE_NAMES[dtype])


def bnb_kwargs(q: QuantConfig) -> dict[str, Any]:
    """``BitsAndBytesConfig`` kwargs, JSON-able (dtypes as names); empty for no quantization."""
    if not (q.load_in_4bit or q.load_in_8bit):
        return {}
    kw: dict[str, Any] = {}
    if q.load_in_8bit:
        kw["load_in_8bit"] = True
        if q.llm_int8_threshold is not None:
            kw["llm_int8_threshold"] = q.llm_int8_threshold
    if q.load_in_4bit:
        kw["load_in_4bit"] = True
        if q.bnb_4bit_quant_type is not None:
            kw["bnb_4bit_quant_type"] = q.bnb_4bit_quant_type.value
        if q.bnb_4bit_compute_dtype is not None:
            kw["bnb_4bit_compute_dtype"] = q.bnb_4bit_compute_dtype.value
        if q.bnb_4bit_use_double_quant is not None:
            kw["bnb_4bit_use_double_quant"] = q.bnb_4bit_use_double_quant
    return kw


def _max_memory(caps: dict[Any, str]) -> dict[Any, str]:
    # accelerate wants GPU indices as ints; YAML/CLI keys arrive as strings.
    return {int(k) if str(k).isdigit() else k: v for k, v in caps.items()}


def loading_kwargs(ld: LoadingConfig) -> dict[str, Any]:
    """``from_pretrained`` kwargs of the loading group, JSON-able, extras merged last."""
    kw: dict[str, Any] = {}
    if ld.device_map is not None:
        # A bare GPU index must reach transformers as an int: the string "0" is no device.
        kw["device_map"] = int(ld.device_map) if ld.device_map.isdigit() else ld.device_map
    if ld.dtype is not None:
        kw["dtype"] = ld.dtype.value
    if ld.attn_implementation is not None:
        kw["attn_implementation"] = ld.attn_implementation.value
    if ld.max_memory:
        kw["max_memory"] = dict(ld.max_memory)
    if ld.revision is not None:
        kw["revision"] = ld.revision
    if ld.trust_remote_code:
        kw["trust_remote_code"] = True
    kw.update(ld.extra)
    return kw


def requested_from_pretrained(cfg: RunConfig) -> dict[str, Any]:
    """What the runner asks ``from_pretrained`` for, in JSON-able form (recorded as requested)."""
    kw = loading_kwargs(cfg.loading)
    quant = bnb_kwargs(cfg.quant)
    if quant:
        kw["quantization_config"] = quant
    return kw


def from_pretrained_kwargs(cfg: RunConfig) -> dict[str, Any]:
    """The real ``from_pretrained`` kwargs: torch dtypes and a ``BitsAndBytesConfig``."""
    kw = requested_from_pretrained(cfg)
    if "dtype" in kw:
        kw["dtype"] = torch_dtype(DType(kw["dtype"]))
    if "max_memory" in kw:
        kw["max_memory"] = _max_memory(kw["max_memory"])
    if "quantization_config" in kw:
        from transformers import BitsAndBytesConfig

        quant = dict(kw["quantization_config"])
        if "bnb_4bit_compute_dtype" in quant:
            quant["bnb_4bit_compute_dtype"] = torch_dtype(DType(quant["bnb_4bit_compute_dtype"]))
        kw["quantization_config"] = BitsAndBytesConfig(**quant)
    return kw


# Which decoding fields belong to which mode is the schema's rule (rules.OnlyWith).
_SHARED_FIELDS = ("repetition_penalty", "no_repeat_ngram_size", "use_cache")


def generate_kwargs(d: DecodingConfig, w: WorkloadConfig, c: CompileConfig) -> dict[str, Any]:
    """``generate`` kwargs (JSON-able). ``fixed`` output length pins min to max new tokens;
    with compile off, a cache implementation comes with ``disable_compile``."""
    kw: dict[str, Any] = {"max_new_tokens": d.max_new_tokens}
    if w.output_length is OutputLength.fixed:
        kw["min_new_tokens"] = d.max_new_tokens
    elif d.min_new_tokens is not None:
        kw["min_new_tokens"] = d.min_new_tokens
    kw["do_sample"] = d.mode is DecodingMode.sample
    for name in (*fields_applying(DecodingConfig, "mode", d.mode), *_SHARED_FIELDS):
        value = getattr(d, name)
        if value is not None:
            kw[name] = value
    if d.cache_implementation is not None:
        kw["cache_implementation"] = d.cache_implementation.value
    kw.update(d.extra)
    if not c.enabled and d.cache_implementation is not None:
        # On accelerators transformers auto-compiles decoding with static caches;
        # compile=off must mean no compilation.
        kw["disable_compile"] = True
    return kw


@dataclass(frozen=True)
class CompileSpec:
    """Whether and how to ``torch.compile`` the model's forward."""

    enabled: bool
    kwargs: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"enabled": self.enabled, **self.kwargs}


def compile_spec(c: CompileConfig) -> CompileSpec:
    """``torch.compile`` kwargs; only the fields the config sets."""
    if not c.enabled:
        return CompileSpec(enabled=False)
    kw: dict[str, Any] = {}
    if c.mode is not None:
        kw["mode"] = c.mode.value
    if c.backend is not None:
        kw["backend"] = c.backend
    if c.fullgraph is not None:
        kw["fullgraph"] = c.fullgraph
    if c.dynamic is not None:
        kw["dynamic"] = c.dynamic
    return CompileSpec(enabled=True, kwargs=kw)


def apply_compile(model: Any, spec: CompileSpec, prime: Any = None) -> Any:
    """Compile where ``generate`` will use it.

    ``torch.compile(model)`` returns a wrapper whose ``.generate`` still calls
    the eager forward; ``Module.compile`` compiles the module's own call path,
    which ``generate`` goes through (``self(...)``). ``prime`` (a callable doing
    one eager forward) runs first: bitsandbytes repacks 4-bit weights on CPU
    at the first forward, and a graph traced before that sees the wrong layout.
    """
    if spec.enabled:
        if prime is not None:
            prime()
        model.compile(**spec.kwargs)
    return model
