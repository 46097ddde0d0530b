"""Where a run sits against the machine's limits: bytes and FLOPs of a decoder's steps.

Pure formulas from a Hugging Face config dict (``model.config.to_dict()``) and the workload's
shape; no torch. A decode step (one new token for each of ``batch`` requests) reads every
weight once and each request's KV cache, so its ceiling is memory bandwidth; a prefill
multiplies ``prompt_len`` tokens by the same weights, so its ceiling is matmul throughput.
Placing the measured median inter-token latency and time to first token against the probe's
peaks (``runner.hardware.probe``) gives the fraction of the ceiling a run reached.

Units: bytes, FLOPs (one multiply-add is 2), GB/s = 1e9 bytes/s, TFLOP/s = 1e12 FLOP/s;
utilisations are fractions (0.5 = half the peak). Left out on purpose, each small next to
what is counted: the writes of each step's new KV entries and activations, the norms',
activations' and softmax's elementwise work, and padding (a left-padded batch attends over
its padded length; ``prompt_len`` is the mean of the real lengths).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from runner.sections.hardware import Roofline


@dataclass(frozen=True)
class _Family:
    """How a model type lays out one decoder layer beyond the shared Llama skeleton."""

    gated: bool = True  # gate, up, down (3 matrices) rather than up, down (2)
    norms_per_layer: int = 2  # RMSNorm weights of width hidden
    qk_norm: bool = False  # an RMSNorm of width head_dim on queries and on keys
    qkv_bias: bool = False  # q, k, v carry a bias whatever the config says (Qwen2)
    attention_bias_key: bool = True  # config's ``attention_bias`` adds bias to q, k, v, o
    mlp_bias_key: bool = False  # config's ``mlp_bias`` adds bias to the MLP's matrices


# Checked parameter for parameter against transformers' own classes in the tests.
FAMILIES: dict[str, _Family] = {
    "llama": _Family(mlp_bias_key=True),  # also SmolLM2, TinyLlama
    "smollm3": _Family(mlp_bias_key=True),
    "mistral": _Family(attention_bias_key=False),
    "qwen2": _Family(qkv_bias=True, attention_bias_key=False),
    "qwen3": _Family(qk_norm=True),
    "gemma": _Family(),
    "gemma2": _Family(norms_per_layer=4),
    "gemma3_text": _Family(norms_per_layer=4, qk_norm=True),
}
NOT_GATED = ("gpt2",)
MOE_KEYS = ("num_experts", "num_local_experts", "n_routed_experts")


@dataclass(frozen=True)
class Shape:
    """A decoder's dimensions and parameter counts.

    ``params_body``: the layers (attention q, k, v, o with any biases and q/k norms; MLP;
    per-layer norms) plus the final norm: what every token is multiplied through.
    ``params_embedding``: the input lookup tables (tokens, and learned positions where the
    model has them). ``params_lm_head``: the output projection, 0 when it is the token
    embedding table (``tied``).
    """

    model_type: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied: bool
    gated: bool
    params_body: int
    params_embedding: int
    params_lm_head: int

    @property
    def params_total(self) -> int:
        return self.params_body + self.params_embedding + self.params_lm_head

    @property
    def params_lookup(self) -> int:
        """Parameters a step only looks rows up in: the embedding tables, less the token
        table when it is also the LM head (then every step reads it whole)."""
        return self.params_embedding - (self.vocab * self.hidden if self.tied else 0)


def _int(config: Mapping[str, Any], key: str) -> int | None:
    value = config.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


@dataclass(frozen=True)
class KVLayout:
    """What one token's KV cache entry holds: keys and values of every KV head, per layer."""

    layers: int
    kv_heads: int
    head_dim: int


def kv_layout(config: Mapping[str, Any]) -> KVLayout | None:
    """The KV layout of a config in Llama's keys (``num_key_value_heads`` defaults to the
    attention heads, ``head_dim`` to hidden / heads); None where the config does not say."""
    layers, heads = _int(config, "num_hidden_layers"), _int(config, "num_attention_heads")
    hidden = _int(config, "hidden_size")
    head_dim = _int(config, "head_dim") or (hidden // heads if hidden and heads else None)
    if not (layers and heads and head_dim):
        return None
    return KVLayout(layers, _int(config, "num_key_value_heads") or heads, head_dim)


def read_shape(config: dict[str, Any]) -> tuple[Shape | None, str | None]:
    """The config's :class:`Shape`, or None and the reason it cannot be read."""
    model_type = str(config.get("model_type") or "")
    if any(_int(config, key) for key in MOE_KEYS):
        return None, (
            f"model_type {model_type!r} is a mixture of experts: a step reads only the "
            "routed experts, which the config does not say"
        )
    if model_type in NOT_GATED:
        return _gpt2_shape(config, model_type)
    family = FAMILIES.get(model_type)
    if family is None:
        known = ", ".join([*FAMILIES, *NOT_GATED])
        return None, f"model_type {model_type!r}: layer layout not known here (known: {known})"
    needed = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
    values = {key: _int(config, key) for key in (*needed, "vocab_size")}
    missing = [key for key, value in values.items() if value is None]
    if missing:
        return None, f"model_type {model_type!r}: config lacks {', '.join(missing)}"
    hidden, layers = values["hidden_size"], values["num_hidden_layers"]
    heads, inter, vocab = (
        values["num_attention_heads"],
        values["intermediate_size"],
        values["vocab_size"],
    )
    assert hidden and layers and heads and inter and vocab  # checked above
    layout = kv_layout(config)
    assert layout is not None  # layers, heads and hidden are there
    kv_heads, head_dim = layout.kv_heads, layout.head_dim
    tied = bool(config.get("tie_word_embeddings", True))
    q, kv = heads * head_dim, kv_heads * head_dim
    attention = hidden * q + 2 * hidden * kv + q * hidden
    if family.qkv_bias or (family.attention_bias_key and config.get("attention_bias")):
        attention += q + 2 * kv
    if family.attention_bias_key and config.get("attention_bias"):
        attention += hidden  # o_proj's bias
    if family.qk_norm:
        attention += 2 * head_dim
    matrices = 3 if family.gated else 2
    mlp = matrices * hidden * inter
    if family.mlp_bias_key and config.get("mlp_bias"):
        mlp += (matrices - 1) * inter + hidden
    body = layers * (attention + mlp + family.norms_per_layer * hidden) + hidden
    shape = Shape(
        model_type=model_type,
        layers=layers,
        hidden=hidden,
        heads=heads,
        kv_heads=kv_heads,
        head_dim=head_dim,
        intermediate=inter,
        vocab=vocab,
        tied=tied,
        gated=family.gated,
        params_body=body,
        params_embedding=vocab * hidden,
        params_lm_head=0 if tied else vocab * hidden,
    )
    return shape, None


def _gpt2_shape(config: dict[str, Any], model_type: str) -> tuple[Shape | None, str | None]:
    """GPT-2: fused qkv (``c_attn``) and every matrix and LayerNorm with a bias, a 2-matrix
    MLP of width ``n_inner`` (default 4 x hidden), learned positions."""
    hidden, layers, heads = _int(config, "n_embd"), _int(config, "n_layer"), _int(config, "n_head")
    vocab, positions = _int(config, "vocab_size"), _int(config, "n_positions")
    if not (hidden and layers and heads and vocab and positions):
        return None, f"model_type {model_type!r}: config lacks n_embd/n_layer/n_head/vocab"
    inter = _int(config, "n_inner") or 4 * hidden
    tied = bool(config.get("tie_word_embeddings", True))
    per_layer = (
        2 * hidden  # ln_1
        + hidden * 3 * hidden + 3 * hidden  # c_attn
        + hidden * hidden + hidden  # attn.c_proj
        + 2 * hidden  # ln_2
        + hidden * inter + inter  # c_fc
        + inter * hidden + hidden  # mlp.c_proj
    )  # fmt: skip
    shape = Shape(
        model_type=model_type,
        layers=layers,
        hidden=hidden,
        heads=heads,
        kv_heads=heads,
        head_dim=hidden // heads,
        intermediate=inter,
        vocab=vocab,
        tied=tied,
        gated=False,
        params_body=layers * per_layer + 2 * hidden,  # + ln_f
        params_embedding=(vocab + positions) * hidden,
        params_lm_head=0 if tied else vocab * hidden,
    )
    return shape, None


def shape_from_config(config: dict[str, Any]) -> Shape | None:
    """The config's :class:`Shape`; None where :func:`read_shape` gives a reason."""
    return read_shape(config)[0]


# Bytes per element of the dtypes a run's weights and KV cache are kept in.
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}


def kv_bytes_per_token(layout: KVLayout | Shape, kv_elem_bytes: float) -> float:
    """Bytes of one token's KV cache entries: keys and values in every layer. Sizes both
    the roofline's KV reads and, before vLLM starts, its cache (engines.vllm_args)."""
    return 2 * layout.layers * layout.kv_heads * layout.head_dim * kv_elem_bytes


def decode_bytes_per_step(
    shape: Shape, weight_bytes_read: float, batch: float, context_mean: float, kv_elem_bytes: float
) -> float:
    """Bytes one decode step reads: the weights once, and each of ``batch`` requests' KV
    cache at ``context_mean`` tokens. The writes of the new token's KV and the activations
    are left out (one token's worth, against a whole cache)."""
    return weight_bytes_read + batch * context_mean * kv_bytes_per_token(shape, kv_elem_bytes)


@dataclass(frozen=True)
class WeightsRead:
    """Bytes of weights a decode step reads, and how that figure was obtained."""

    bytes: float | None
    source: str


def weights_read_per_step(
    shape: Shape, weight_bytes_total: float | None, elem_bytes: float | None
) -> WeightsRead:
    """The weights a decode step reads: all loaded weights but the lookup tables.

    A lookup reads ``batch`` rows of the input embedding table, not the table; when the table
    is tied to the LM head it is read whole, once, as the LM head. ``weight_bytes_total`` is
    the loaded model's bytes (None where no model is in the process, e.g. the vLLM engine:
    then the read weights are estimated from the config at ``elem_bytes`` per parameter);
    ``elem_bytes`` is also the size of a lookup table's elements (quantization leaves the
    embeddings in the compute dtype).
    """
    lookup_params = shape.params_lookup
    if weight_bytes_total is not None and weight_bytes_total > 0:
        if lookup_params == 0:
            return WeightsRead(weight_bytes_total, "loaded weights (embedding tied to the LM head)")
        if elem_bytes is None or elem_bytes <= 0:
            return WeightsRead(None, "unknown: no element size for the lookup tables")
        return WeightsRead(
            weight_bytes_total - lookup_params * elem_bytes,
            f"loaded weights less the lookup tables ({lookup_params} x {elem_bytes:g} bytes)",
        )
    if elem_bytes is None or elem_bytes <= 0:
        return WeightsRead(None, "unknown: no loaded weights and no element size")
    read_params = shape.params_total - lookup_params
    return WeightsRead(
        read_params * elem_bytes,
        f"estimated from the config: {read_params} parameters x {elem_bytes:g} bytes",
    )


def prefill_flops(shape: Shape, batch: float, prompt_len: float) -> float:
    """FLOPs of a prefill of ``batch`` prompts of ``prompt_len`` tokens.

    Per prompt: every token through the body's matrices (2 x params_body); causal attention,
    QK^T and AV (2 x 2 x heads x head_dim per pair), over the positions up to each one
    (prompt_len (prompt_len + 1) / 2 pairs); and the LM head for the last position only:
    transformers' ``generate`` passes ``logits_to_keep=1`` to models that accept it
    (transformers 5.19, ``generation/utils.py``, ``GenerationMixin.generate``: "If the model
    supports `logits_to_keep` in forward(), set it to 1"; Llama's forward slices the hidden
    states with it before ``lm_head``).
    """
    attention = 4 * shape.layers * shape.heads * shape.head_dim * prompt_len * (prompt_len + 1) / 2
    per_prompt = prompt_len * 2 * shape.params_body + attention + 2 * shape.hidden * shape.vocab
    return batch * per_prompt


def decode_flops_per_token(shape: Shape, context: float) -> float:
    """FLOPs to decode one token attending over ``context`` positions: the body's matrices,
    QK^T and AV over the context, and the LM head."""
    attention = 4 * shape.layers * shape.heads * shape.head_dim * context
    return 2 * shape.params_body + attention + 2 * shape.hidden * shape.vocab


def context_mean(prompt_len: float, new_tokens: float) -> float | None:
    """Mean positions a decode step attends over; None without a decode step.

    The prefill makes the first token; decode step j = 1 .. N-1 (N = ``new_tokens``) feeds
    token j and attends over the prompt and tokens 1 .. j: ``prompt_len + j`` positions, the
    cache read at its length after the step's own entry is added. The mean over the N-1 steps
    is ``prompt_len + N / 2``.
    """
    if new_tokens < 2:
        return None
    return prompt_len + new_tokens / 2


class PeaksLike(Protocol):
    bandwidth_gbs: float
    matmul_tflops: float
    theoretical_bandwidth_gbs: float | None


def _pos(value: Any) -> float | None:
    """``value`` as a positive finite float, else None."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def _ratio(num: float | None, den: float | None, scale: float = 1.0) -> float | None:
    return num / den / scale if num is not None and den is not None else None


def place(
    shape: Shape | None,
    *,
    weight_bytes: float | None,
    elem_bytes: float | None,
    batch: float | None,
    prompt_len: float | None,
    new_tokens: float | None,
    kv_elem_bytes: float | None,
    ttft_s: float | None,
    itl_s: float | None,
    peaks: PeaksLike | None,
    note: str | None = None,
) -> Roofline:
    """Place a run against ``peaks`` (a :class:`runner.hardware.probe.Peaks` or alike).

    ``weight_bytes``: the loaded model's bytes (None: estimated from the config at
    ``elem_bytes`` per parameter); ``batch``: mean requests per call; ``prompt_len`` and
    ``new_tokens``: mean input and output tokens per request; ``ttft_s``: median time to
    first token, taken as the prefill's time; ``itl_s``: median inter-token latency, one
    decode step of the whole batch. A missing or non-positive input leaves what depends on
    it None; it never raises. ``note`` is kept, joined with the reasons found here.
    """
    notes = [note] if note else []
    batch_, prompt, new = _pos(batch), _pos(prompt_len), _pos(new_tokens)
    kv_elem, ttft, itl = _pos(kv_elem_bytes), _pos(ttft_s), _pos(itl_s)
    bandwidth = _pos(getattr(peaks, "bandwidth_gbs", None))
    tflops = _pos(getattr(peaks, "matmul_tflops", None))
    theoretical = _pos(getattr(peaks, "theoretical_bandwidth_gbs", None))
    if peaks is None:
        notes.append("no peaks measured for this device and dtype")

    read: WeightsRead | None = None
    kv_token = ctx = step_bytes = step_flops = p_flops = p_bytes = None
    if shape is None:
        notes.append("the model's shape is unknown")
    else:
        read = weights_read_per_step(shape, _pos(weight_bytes), _pos(elem_bytes))
        if kv_elem is not None:
            kv_token = kv_bytes_per_token(shape, kv_elem)
        if prompt is not None and new is not None:
            ctx = context_mean(prompt, new)
        if ctx is not None:
            step_flops = decode_flops_per_token(shape, ctx)
        if read.bytes is not None and batch_ and ctx is not None and kv_elem is not None:
            step_bytes = decode_bytes_per_step(shape, read.bytes, batch_, ctx, kv_elem)
        if read.bytes is None:
            notes.append(f"weights read: {read.source}")
        if prompt is not None and new is not None and ctx is None:
            notes.append("fewer than 2 new tokens: no decode step")
        if batch_ is not None and prompt is not None:
            p_flops = prefill_flops(shape, batch_, prompt)
            if read.bytes is not None and kv_token is not None:
                p_bytes = read.bytes + batch_ * prompt * kv_token

    decode_gbs = _ratio(step_bytes, itl, 1e9)
    prefill_tf = _ratio(p_flops, ttft, 1e12)
    step_batch_flops = batch_ * step_flops if batch_ and step_flops is not None else None
    return Roofline(
        model_type=shape.model_type if shape else None,
        weight_bytes_total=_pos(weight_bytes),
        weight_bytes_read=read.bytes if read else None,
        weight_bytes_source=read.source if read else None,
        batch=batch_,
        prompt_tokens=prompt,
        new_tokens=new,
        kv_elem_bytes=kv_elem,
        ttft_s=ttft,
        itl_s=itl,
        peak_bandwidth_gbs=bandwidth,
        peak_matmul_tflops=tflops,
        theoretical_bandwidth_gbs=theoretical,
        context_tokens_mean=ctx,
        kv_bytes_per_token=kv_token,
        decode_bytes_per_step=step_bytes,
        decode_flops_per_token=step_flops,
        prefill_flops=p_flops,
        prefill_bytes=p_bytes,
        decode_intensity=_ratio(step_batch_flops, step_bytes),
        prefill_intensity=_ratio(p_flops, p_bytes),
        machine_balance=_ratio(tflops, bandwidth, 1e-3),  # (TFLOP/s x 1e12) / (GB/s x 1e9)
        decode_bandwidth_gbs=decode_gbs,
        decode_bandwidth_util=_ratio(decode_gbs, bandwidth),
        decode_bandwidth_util_theoretical=_ratio(decode_gbs, theoretical),
        prefill_tflops=prefill_tf,
        prefill_compute_util=_ratio(prefill_tf, tflops),
        note="; ".join(notes) or None,
    )
