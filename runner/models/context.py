"""How many positions a model takes, and whether prompt plus new tokens fit in them.

A Llama-style model given more positions than it was built for runs on (RoPE has no
hard limit), slowly and meaninglessly: such a run would be recorded ``ok``. So the
requested lengths are checked against the model's maximum, before loading where the
model config is known without loading, and again on the real token counts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from runner.config.schema import RunConfig
from runner.config.schema_generation import WorkloadKind
from runner.config.schema_model import ModelConfig, ModelSource
from runner.config.validate import ConfigError

# Where model configs keep their context length (Llama/Mistral/Qwen, GPT-2, others).
POSITION_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")


def max_positions(config: Mapping[str, Any]) -> int | None:
    """The context length in a model config dict (or its ``text_config``); None if absent."""
    for scope in (config, config.get("text_config") or {}):
        for key in POSITION_KEYS:
            value = scope.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return None


def known_max_positions(m: ModelConfig) -> int | None:
    """The context length of the model a run will load, where it is known before loading.

    The generated models know theirs; a local model's ``config.json`` says it; a hub model
    is not looked up (the check then happens after loading).
    """
    if m.source is ModelSource.tiny:
        from runner.models.tiny import MAX_POSITIONS

        return MAX_POSITIONS
    if m.source is ModelSource.smollm2:
        from runner.models.smollm2 import MAX_POSITIONS

        return MAX_POSITIONS
    if m.source is ModelSource.local:
        from runner.models.load import local_model_dir

        try:
            config = json.loads((local_model_dir(m.path) / "config.json").read_text())
        except ValueError:  # malformed: from_pretrained will say so itself
            return None
        return max_positions(config) if isinstance(config, dict) else None
    return None


def check_fits(
    prompt_tokens: int, max_new_tokens: int, limit: int | None, field: str, value: Any
) -> None:
    """Raise :class:`ConfigError` on ``field`` when prompt plus new tokens exceed ``limit``."""
    need = prompt_tokens + max_new_tokens
    if limit is not None and need > limit:
        raise ConfigError(
            field,
            value,
            f"{prompt_tokens} prompt tokens + decoding.max_new_tokens={max_new_tokens} = "
            f"{need} positions, beyond the model's maximum of {limit} "
            "(max_position_embeddings); shorten the prompts or generate fewer tokens",
        )


def check_configured_lengths(cfg: RunConfig) -> None:
    """Before loading, where the model's context is known: the new tokens fit after a
    one-token prompt at least, the perplexity window fits, and synthetic prompts (their
    length is exact) fit with the new tokens."""
    from runner.quality.phase import check_window

    w = cfg.workload
    limit = known_max_positions(cfg.model)
    new = cfg.decoding.max_new_tokens
    if limit is not None and new >= limit:
        raise ConfigError(
            "decoding.max_new_tokens",
            new,
            f"the model takes at most {limit} positions (max_position_embeddings), prompt "
            "included; generate fewer tokens",
        )
    check_window(cfg.quality, limit)
    if w.kind is WorkloadKind.synthetic and w.input_tokens is not None:
        check_fits(
            w.input_tokens,
            cfg.decoding.max_new_tokens,
            limit,
            "workload.input_tokens",
            w.input_tokens,
        )


def check_workload_fits(cfg: RunConfig, longest_prompt: int, model_config: Any) -> None:
    """After loading: the longest tokenized prompt against the loaded model's own config."""
    w = cfg.workload
    # Name the field that sets the prompt length: exact for synthetic, a cut otherwise.
    field, value = (
        ("workload.input_tokens", w.input_tokens)
        if w.kind is WorkloadKind.synthetic
        else ("workload.max_input_tokens", w.max_input_tokens)
    )
    limit = max_positions(model_config.to_dict())
    check_fits(longest_prompt, cfg.decoding.max_new_tokens, limit, field, value)
