"""Model provisioning: resolve the weights' location, then load with the translated kwargs."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.config.schema_model import ModelConfig, ModelSource, Weights
from runner.models.cache import ProvisionTime, build_atomically, cache_root

log = logging.getLogger(__name__)


class ModelNotFoundError(FileNotFoundError):
    """A local model path that does not exist or holds no model (a user mistake)."""


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    path: str  # where the weights were loaded from (a directory or a hub id)
    # One-time build of a cached checkpoint during this load; None when the cache was warm.
    provision_seconds: float | None = None


def input_device(model: Any) -> Any:
    """The device the model's inputs go to.

    That is where its input embedding computes: accelerate's execution device when the
    embedding is offloaded (its weights then sit on ``meta`` until each forward), else the
    device of the embedding's weights.
    """
    import torch

    embedding = model.get_input_embeddings()
    hook = getattr(embedding, "_hf_hook", None)
    device = getattr(hook, "execution_device", None)
    if device is not None:
        return torch.device("cuda", device) if isinstance(device, int) else torch.device(device)
    return embedding.weight.device


def local_model_dir(path: str) -> Path:
    """The checkpoint directory at ``model.path``, or :class:`ModelNotFoundError` saying why."""
    found = Path(path).expanduser()
    if not (found / "config.json").is_file():
        what = "does not exist" if not found.exists() else "holds no config.json"
        raise ModelNotFoundError(f"model.path={path}: {what}; give a model directory")
    return found


def check_subfolder(source: str, subfolder: str | None) -> None:
    """``loading.extra.subfolder`` names a checkpoint folder inside a local model directory
    (transformers would otherwise blame a missing ``model_type``)."""
    if not subfolder or not Path(source).is_dir():
        return
    found = Path(source) / subfolder
    if not (found / "config.json").is_file():
        what = "does not exist" if not found.exists() else "holds no config.json"
        raise ModelNotFoundError(f"loading.extra.subfolder={subfolder}: {found} {what}")


def resolve_source(
    m: ModelConfig, configured_cache: str | None, spent: ProvisionTime | None = None
) -> str:
    """A directory or hub id holding config, tokenizer and (for pretrained) weights;
    the time of building a cached one is added to ``spent``."""
    if m.source is ModelSource.tiny:
        from runner.models.tiny import ensure_tiny

        return str(ensure_tiny(cache_root(configured_cache), spent))
    if m.source is ModelSource.smollm2:
        from runner.models.smollm2 import ensure_smollm2

        return str(ensure_smollm2(cache_root(configured_cache), spent))
    if m.source is ModelSource.local:
        return str(local_model_dir(m.path))
    return str(m.path)


def _random_checkpoint(
    source: str, m: ModelConfig, configured_cache: str | None, kw: dict, spent: ProvisionTime
) -> str:
    """Build the architecture with seeded random weights and save it once.

    Saving to a cached checkpoint lets every loading kwarg (quantization,
    device map, dtype) go through ``from_pretrained`` exactly as for real weights.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    trust = bool(kw.get("trust_remote_code", False))
    revision = kw.get("revision")
    key = hashlib.sha256(f"{source}|{revision}|{m.init_seed}".encode()).hexdigest()[:16]
    target = cache_root(configured_cache) / "random" / f"{Path(source).name}-{key}"

    def build(tmp: Path) -> None:
        config = AutoConfig.from_pretrained(source, revision=revision, trust_remote_code=trust)
        torch.manual_seed(m.init_seed)
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust)
        model.save_pretrained(tmp)
        tok = AutoTokenizer.from_pretrained(source, revision=revision, trust_remote_code=trust)
        tok.save_pretrained(tmp)

    return str(build_atomically(target, build, spent))


def resolve_checkpoint(
    m: ModelConfig, kwargs: dict[str, Any], configured_cache: str | None
) -> tuple[str, float | None]:
    """The directory or hub id the weights load from (random weights: the seeded checkpoint
    built once), and the seconds spent building a cached one (None when it was there)."""
    spent = ProvisionTime()
    source = resolve_source(m, configured_cache, spent)
    if m.weights is Weights.random:
        source = _random_checkpoint(source, m, configured_cache, kwargs, spent)
    return source, spent.seconds


def load_tokenizer(source: str, kwargs: dict[str, Any]) -> Any:
    """The checkpoint's tokenizer, left-padding, with EOS as padding where it has none."""
    from transformers import AutoTokenizer

    tok_kw = {k: kwargs[k] for k in ("revision", "trust_remote_code") if k in kwargs}
    tokenizer = AutoTokenizer.from_pretrained(source, **tok_kw)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def load_model(m: ModelConfig, kwargs: dict[str, Any], configured_cache: str | None) -> LoadedModel:
    """Load model and tokenizer; ``kwargs`` are the real ``from_pretrained`` kwargs.

    A checkpoint built into the cache on the way (conversion, generation, random
    weights) is timed apart, in ``provision_seconds``.
    """
    from transformers import AutoModelForCausalLM

    source, provision = resolve_checkpoint(m, kwargs, configured_cache)
    check_subfolder(source, kwargs.get("subfolder"))
    log.info("loading %s from %s", m.name, source)
    model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    model.eval()
    return LoadedModel(model, load_tokenizer(source, kwargs), source, provision)
