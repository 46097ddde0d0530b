"""Checks of a job beyond its schema: installed extras, input files, KV cache, output dir."""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path

from runner.config.overrides import Setting, value_of
from runner.config.schema import RunConfig
from runner.config.schema_generation import WorkloadKind
from runner.config.schema_measure import EnergyBackend
from runner.config.schema_model import ModelSource
from runner.config.schema_serving import EngineKind
from runner.config.schema_sweep import TrackingBackend
from runner.config.validate import ConfigError
from runner.preflight_messages import UserError


def check_engine_installed(cfg: RunConfig) -> None:
    """``engine=vllm``: vLLM is installed (one line with the install command otherwise)."""
    from runner.engines.install import INSTALL_HINT

    if cfg.engine.kind is EngineKind.vllm and importlib.util.find_spec("vllm") is None:
        raise UserError(f"engine=vllm: vLLM is not installed; {INSTALL_HINT}")


def check_tracking(cfg: RunConfig) -> None:
    """``tracking=mlflow``: MLflow is installed and the store can be written."""
    if cfg.tracking.backend is not TrackingBackend.mlflow:
        return
    if importlib.util.find_spec("mlflow") is None:
        raise UserError("tracking=mlflow: needs mlflow; pip install -e '.[tracking]'")
    if cfg.tracking.uri:  # unset: in the output directory, checked below
        from runner.tracking.store import TrackingError, check_uri

        try:
            check_uri(cfg.tracking.uri)
        except TrackingError as exc:
            raise UserError(str(exc)) from exc


def check_country(cfg: RunConfig) -> None:
    """CodeCarbon knows the country (else it silently uses the world average).

    The table comes with the installed CodeCarbon, the same wherever the job runs; without
    CodeCarbon here the rule is skipped.
    """
    from runner.measure.codecarbon import codecarbon_version, known_country_codes

    if cfg.energy.backend is not EnergyBackend.codecarbon:
        return
    code = cfg.energy.country_iso_code
    known = known_country_codes()
    if known is not None and code not in known:
        raise ConfigError(
            "energy.country_iso_code",
            code,
            f"CodeCarbon {codecarbon_version()} has no energy mix for it (it would use the "
            "world average); use an ISO 3166 alpha-3 code it knows, such as USA, FRA, DEU",
        )


def check_inputs(cfg: RunConfig) -> None:
    """Files the run will read exist and parse (only where the jobs run on this machine),
    and synthetic prompts plus new tokens fit the model's context length."""
    from runner.models.cache import cache_root
    from runner.models.context import check_configured_lengths
    from runner.models.load import ModelNotFoundError, check_subfolder, local_model_dir
    from runner.models.smollm2 import check_available
    from runner.workload import WorkloadError, load_prompts

    if cfg.model.source is ModelSource.local:
        try:
            found = local_model_dir(cfg.model.path)
            check_subfolder(str(found), cfg.loading.extra.get("subfolder"))
        except ModelNotFoundError as exc:
            raise UserError(str(exc)) from exc
    if cfg.model.source is ModelSource.smollm2:
        try:
            check_available(cache_root(cfg.cache_dir))
        except FileNotFoundError as exc:
            raise UserError(f"model.source=smollm2: {exc}") from exc
    if cfg.workload.kind is WorkloadKind.file:
        try:
            load_prompts(cfg.workload)
        except WorkloadError as exc:
            raise UserError(str(exc)) from exc
    from runner.quality.phase import QualityInputError

    try:
        check_configured_lengths(cfg)
    except (ConfigError, QualityInputError) as exc:
        raise UserError(str(exc)) from exc
    from runner.quality.phase import check_inputs as check_quality

    try:
        check_quality(cfg.quality)
    except QualityInputError as exc:
        raise UserError(str(exc)) from exc


def check_vllm_kv_cache(cfg: RunConfig, *, cuda: bool) -> None:
    """``engine=vllm`` on a model whose config is on disk already: its KV cache fits."""
    import json

    from runner.engines.vllm_args import check_kv_cache_fits
    from runner.models.cache import cache_root, is_complete
    from runner.models.load import local_model_dir

    if cfg.engine.kind is not EngineKind.vllm:
        return
    if cfg.model.source is ModelSource.local:
        found = local_model_dir(cfg.model.path)
    elif cfg.model.source is ModelSource.smollm2:
        from runner.models.smollm2 import SMOLLM2_NAME

        found = cache_root(cfg.cache_dir) / SMOLLM2_NAME
        if not is_complete(found):
            return
    else:
        return
    try:
        config = json.loads((found / "config.json").read_text())
    except ValueError:
        return
    if isinstance(config, dict):
        check_kv_cache_fits(cfg, config, cuda=cuda)


def check_output_dir(settings: list[Setting], multirun: bool) -> None:
    """The output directory can be created and written, before any job starts."""
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    target = Path(value_of(key, settings) or "outputs")
    try:
        target.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=target):
            pass
    except OSError as exc:
        raise UserError(f"{key}={target}: cannot write there ({exc.strerror})") from exc
