"""Read back what actually took effect, and compare it with what was requested.

``applied`` is built from the loaded model and from the generation config that
``generate`` prepares for the requested kwargs, never from the config itself.
"""

from __future__ import annotations

import contextlib
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
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

# The logits processor generate() builds for a field, and the value for which transformers
# 5.24 builds none (GenerationMixin._get_logits_processor): that value turns the field off.
PROCESSOR_OF = {
    "temperature": ("TemperatureLogitsWarper", 1.0),
    "top_k": ("TopKLogitsWarper", 0),
    "top_p": ("TopPLogitsWarper", 1.0),
    "min_p": ("MinPLogitsWarper", None),
    "repetition_penalty": ("RepetitionPenaltyLogitsProcessor", 1.0),
    "no_repeat_ngram_size": ("NoRepeatNGramLogitsProcessor", 0),
}


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
    # The processors generate() builds from this config: proof that sampling and penalty
    # fields act (and that the "off" values, such as top_k=0, build nothing).
    processors = model._get_logits_processor(gen_cfg, input_ids_seq_length=1, device="cpu")
    out["logits_processors"] = [type(p).__name__ for p in processors]
    mode = gen_cfg.get_generation_mode()
    out["generation_mode"] = getattr(mode, "value", str(mode))
    out["ignored_by_transformers"] = flags_transformers_ignores(gen_cfg, gen_kwargs)
    out["eos_token_id"] = gen_cfg.eos_token_id
    out["pad_token_id"] = gen_cfg.pad_token_id
    return out


def flags_transformers_ignores(gen_cfg: Any, requested: Iterable[str]) -> dict[str, str]:
    """Requested kwargs that transformers' own validation calls "not valid and may be
    ignored" for this generation, each with its reason.

    transformers only warns about these (and once per process), then drops them; its
    strict validation lists them instead, so the check does not depend on the warning.
    """
    requested = set(requested)
    try:
        gen_cfg.validate(strict=True, user_set_attributes=requested)
    except ValueError as exc:
        issues = re.findall(r"^- `(\w+)`: (.*)$", str(exc), flags=re.MULTILINE)
        return {name: reason.strip() for name, reason in issues if name in requested}
    return {}


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
    if isinstance(device_map, int) or device_map in ("cpu", "cuda") or _is_cuda_n(device_map):
        want = f"cuda:{device_map}" if isinstance(device_map, int) else device_map
        devices = set(applied["parameter_devices"])
        if any(d != want and not (want == "cuda" and d.startswith("cuda:")) for d in devices):
            problems.append(f"loading.device_map: requested {device_map}, parameters on {devices}")
    caps = requested_load.get("max_memory")
    if caps:
        problems += _placement_outside_caps(caps, applied)
    attn = requested_load.get("attn_implementation")
    if attn is not None and applied["attn_implementation"] != attn:
        got = applied["attn_implementation"]
        problems.append(f"loading.attn_implementation: requested {attn}, applied {got}")
    if compile_spec.enabled != applied["compiled"]:
        problems.append(
            f"compile.enabled: requested {compile_spec.enabled}, compiled={applied['compiled']}"
        )
    return problems


def _is_cuda_n(device_map: Any) -> bool:
    return isinstance(device_map, str) and device_map.startswith("cuda:")


def _placement_outside_caps(caps: dict[Any, str], applied: dict[str, Any]) -> list[str]:
    """accelerate places only on the devices ``max_memory`` names (and on disk, its last
    resort): a device outside them means the caps did not reach the placement."""
    # hf_device_map exists only when the model is split or offloaded; else one device holds it.
    placed = set(applied["hf_device_map"].values()) or set(applied["parameter_devices"])
    placed = {d.removeprefix("cuda:") for d in placed}
    allowed = {str(k) for k in caps} | {"disk"}
    outside = sorted(placed - allowed)
    if outside:
        return [
            f"loading.max_memory: caps on {sorted(allowed - {'disk'})}, model placed on {outside}"
        ]
    return []


def generation_mismatches(requested: dict[str, Any], applied: dict[str, Any]) -> list[str]:
    """Requested generate kwargs whose value differs in the prepared generation config."""
    problems = []
    for key, want in requested.items():
        got = applied.get(key)
        if got != want:
            problems.append(f"generate.{key}: requested {want!r}, generate used {got!r}")
    for key, reason in (applied.get("ignored_by_transformers") or {}).items():
        want = requested.get(key)
        problems.append(f"generate.{key}={want!r}: transformers ignores it ({reason})")
    built = set(applied.get("logits_processors", ()))
    for key, (processor, off) in PROCESSOR_OF.items():
        if key in requested and (requested[key] != off) != (processor in built):
            state = "not built" if requested[key] != off else "built anyway"
            problems.append(f"generate.{key}={requested[key]!r}: {processor} {state}")
    return problems


def compile_evidence_mismatches(compiled: bool, warmup: int, frames: int | None) -> list[str]:
    """A compiled run whose warmup (``warmup`` calls configured) compiled no frame: the
    compiled forward was not used. ``frames`` is what :func:`compiled_frames` counted."""
    if compiled and warmup and frames == 0:
        return ["compile.enabled: no frame was compiled during warmup"]
    return []


@dataclass
class FrameCount:
    """What Dynamo did inside a :func:`compiled_frames` block; set when it exits.

    ``frames``: frames compiled; ``skipped``: frames Dynamo tried and gave up on (they ran
    eager); ``graph_breaks``: where it split a frame into graphs with eager code between
    them (first line of the reason -> count); ``recompile_limit``: it hit its recompile
    limit, after which the frame runs eager for every new shape.
    """

    frames: int | None = None
    skipped: int = 0
    graph_breaks: dict[str, int] = field(default_factory=dict)
    recompile_limit: bool = False


# The reason Dynamo gives (its gb_type) when a frame exceeds the recompile limit.
RECOMPILE_LIMIT = "Dynamo recompile limit exceeded"


@contextlib.contextmanager
def compiled_frames(enabled: bool = True, fresh: bool = True) -> Iterator[FrameCount]:
    """Count what Dynamo compiles inside the block; ``fresh`` starts from empty code caches.

    Dynamo's frame counter is process-wide and its code cache outlives the model it was
    built for: in one process (isolation=inline) a second compiled run of the same
    architecture reuses the first run's code and compiles nothing, while the counter still
    shows the first run's frames. Resetting the caches on entry makes this run compile (and
    be timed compiling) its own frames, as in a fresh process. ``fresh=False`` keeps them
    (the measured window must reuse what warmup compiled). ``enabled=False`` counts
    nothing and leaves Dynamo alone.
    """
    box = FrameCount()
    if not enabled:
        yield box
        return
    import torch._dynamo
    from torch._dynamo.utils import counters

    if fresh:
        torch._dynamo.reset()
    before = {k: Counter(counters[k]) for k in ("frames", "graph_break", "unimplemented")}
    try:
        yield box
    finally:
        new = {k: Counter(counters[k]) - before[k] for k in before}
        box.frames = new["frames"]["ok"]
        box.skipped = max(new["frames"]["total"] - new["frames"]["ok"], 0)
        box.graph_breaks = dict(_first_lines(new["graph_break"]))
        box.recompile_limit = any(r.startswith(RECOMPILE_LIMIT) for r in new["unimplemented"])


def _first_lines(reasons: Counter[str]) -> Counter[str]:
    out: Counter[str] = Counter()
    for reason, n in reasons.items():
        out[reason.strip().splitlines()[0] if reason.strip() else "?"] += n
    return out
