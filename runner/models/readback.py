"""Read back what actually took effect, and compare it with what was requested.

``applied`` is built from the loaded model and from the generation config that
``generate`` prepares for the requested kwargs, never from the config itself.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch

from runner.translate import CompileSpec

GENERATION_FIELDS = (
    "max_new_tokens",
    "min_new_tokens",
    "do_sample",
    "temperature",
    "top_k",
    "top_p",
    "min_p",
    "num_beams",
    "early_stopping",
    "length_penalty",
    "prompt_lookup_num_tokens",
    "repetition_penalty",
    "no_repeat_ngram_size",
    "use_cache",
    "cache_implementation",
    "disable_compile",
)


class VerificationError(RuntimeError):
    """What ran differs from what was requested."""


def _quantized_layers(model: torch.nn.Module) -> dict[str, Any]:
    try:
        import bitsandbytes as bnb
    except ImportError:  # no bitsandbytes: nothing can be quantized by it
        return {"linear_4bit": 0, "linear_8bit": 0}
    four = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    eight = [m for m in model.modules() if isinstance(m, bnb.nn.Linear8bitLt)]
    out: dict[str, Any] = {"linear_4bit": len(four), "linear_8bit": len(eight)}
    if four:
        states = [m.weight.quant_state for m in four if getattr(m.weight, "quant_state", None)]
        out["bnb_4bit_quant_type"] = sorted({s.quant_type for s in states})
        out["bnb_4bit_use_double_quant"] = sorted({bool(s.nested) for s in states})
        out["bnb_4bit_compute_dtype"] = sorted({str(m.compute_dtype) for m in four})
    if eight:
        out["llm_int8_threshold"] = sorted({float(m.state.threshold) for m in eight})
    return out


def read_back_model(model: torch.nn.Module) -> dict[str, Any]:
    """Parameter dtypes and devices, quantized layers, attention kernel, compile state."""
    dtypes: Counter[str] = Counter()
    devices: Counter[str] = Counter()
    for p in model.parameters():
        dtypes[str(p.dtype).replace("torch.", "")] += p.numel()
        devices[str(p.device)] += p.numel()
    return {
        "parameter_dtypes": dict(dtypes),
        "parameter_devices": dict(devices),
        "hf_device_map": {
            k: str(v) for k, v in (getattr(model, "hf_device_map", None) or {}).items()
        },
        "quantization": _quantized_layers(model),
        "attn_implementation": getattr(model.config, "_attn_implementation", None),
        "compiled": getattr(model, "_compiled_call_impl", None) is not None,
        "num_parameters": sum(p.numel() for p in model.parameters()),
    }


def read_back_generation(model: Any, gen_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The generation config ``generate`` builds from these kwargs, and its mode."""
    # _prepare_generation_config is what generate() itself calls to merge the model's
    # defaults with the kwargs; reading its output is the only way to see the result.
    gen_cfg, _ = model._prepare_generation_config(None, **dict(gen_kwargs))
    out = {name: getattr(gen_cfg, name, None) for name in GENERATION_FIELDS}
    for key in gen_kwargs:
        if key not in out:
            out[key] = getattr(gen_cfg, key, gen_kwargs[key])
    mode = gen_cfg.get_generation_mode()
    out["generation_mode"] = getattr(mode, "value", str(mode))
    out["eos_token_id"] = gen_cfg.eos_token_id
    out["pad_token_id"] = gen_cfg.pad_token_id
    return out


def _majority(counter: dict[str, int]) -> str | None:
    return max(counter, key=counter.get) if counter else None


def model_mismatches(
    requested_load: dict[str, Any], compile_spec: CompileSpec, applied: dict[str, Any]
) -> list[str]:
    """Differences between requested load/compile settings and the read-back model."""
    problems: list[str] = []
    quant = applied["quantization"]
    qreq = requested_load.get("quantization_config", {})
    if qreq.get("load_in_4bit") and quant["linear_4bit"] == 0:
        problems.append("quant: 4-bit requested but no Linear4bit layer was found")
    if qreq.get("load_in_8bit") and quant["linear_8bit"] == 0:
        problems.append("quant: 8-bit requested but no Linear8bitLt layer was found")
    if not qreq and (quant["linear_4bit"] or quant["linear_8bit"]):
        problems.append("quant: none requested but the model has quantized layers")
    for key in ("bnb_4bit_quant_type", "bnb_4bit_use_double_quant"):
        if key in qreq and quant.get(key) and quant[key] != [qreq[key]]:
            problems.append(f"quant.{key}: requested {qreq[key]}, applied {quant[key]}")
    if "bnb_4bit_compute_dtype" in qreq and quant.get("bnb_4bit_compute_dtype"):
        want = f"torch.{qreq['bnb_4bit_compute_dtype']}"
        if quant["bnb_4bit_compute_dtype"] != [want]:
            problems.append(
                f"quant.bnb_4bit_compute_dtype: requested {want}, "
                f"applied {quant['bnb_4bit_compute_dtype']}"
            )
    dtype = requested_load.get("dtype")
    if dtype not in (None, "auto") and not qreq:
        got = _majority(applied["parameter_dtypes"])
        if got != dtype:
            problems.append(f"loading.dtype: requested {dtype}, parameters are mostly {got}")
    device_map = requested_load.get("device_map")
    if device_map in ("cpu", "cuda") or (device_map or "").startswith("cuda:"):
        devices = set(applied["parameter_devices"])
        if any(not d.startswith(device_map.split(":")[0]) for d in devices):
            problems.append(f"loading.device_map: requested {device_map}, parameters on {devices}")
    attn = requested_load.get("attn_implementation")
    if attn is not None and applied["attn_implementation"] != attn:
        got = applied["attn_implementation"]
        problems.append(f"loading.attn_implementation: requested {attn}, applied {got}")
    if compile_spec.enabled != applied["compiled"]:
        problems.append(
            f"compile.enabled: requested {compile_spec.enabled}, compiled={applied['compiled']}"
        )
    return problems


def generation_mismatches(requested: dict[str, Any], applied: dict[str, Any]) -> list[str]:
    """Requested generate kwargs whose value differs in the prepared generation config."""
    problems = []
    for key, want in requested.items():
        got = applied.get(key)
        if got != want:
            problems.append(f"generate.{key}: requested {want!r}, generate used {got!r}")
    return problems
