"""Compose and validate every point of a command before anything runs.

Hydra's own errors are several lines with hints; here each becomes one line
naming the field, the bad value and what is allowed. For a sweep every grid
point is checked first, so a typo in point 37 does not cost points 1 to 36.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import fields
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, MissingMandatoryValue, OmegaConfBaseException

from runner.config.overrides import Setting, expand, parse, parse_lenient, value_of
from runner.config.schema import RunConfig
from runner.config.store import CONF_DIR, GROUP_SCHEMAS
from runner.config.validate import ConfigError, Facts, validate


class UserError(Exception):
    """A mistake on the command line; its message is one line."""


def group_options(group: str) -> list[str]:
    """Option names of a config group (the YAML files under ``conf/<group>/``)."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def _allowed_keys(full_key: str) -> str:
    group = full_key.split(".")[0]
    schema = GROUP_SCHEMAS.get(group)
    if schema is None:
        return "groups: " + ", ".join(GROUP_SCHEMAS)
    return f"keys of {group}: " + ", ".join(f.name for f in fields(schema))


def one_line(exc: BaseException, overrides: list[str]) -> str:
    """Turn a Hydra/OmegaConf composition error into a single readable line."""
    cause = exc
    while cause.__cause__ is not None and not isinstance(cause, OmegaConfBaseException):
        cause = cause.__cause__
    text = str(exc)
    missing = re.search(r"Could not find '([^/']+)/([^']+)'", text)
    if missing:
        group, value = missing.groups()
        return f"{group}={value}: unknown option; allowed: {', '.join(group_options(group))}"
    missing_group = re.search(r"Could not override '([^']+)'. No match in the defaults list", text)
    if missing_group:
        return f"{missing_group.group(1)}: unknown config group; groups: {', '.join(GROUP_SCHEMAS)}"
    if isinstance(cause, ConfigKeyError) or "not in '" in f"{text} {cause}":
        key = getattr(cause, "full_key", None) or _first_quoted(text)
        key = getattr(cause, "full_key", None) or key
        return f"{key}: unknown key; {_allowed_keys(key)}"
    if isinstance(cause, MissingMandatoryValue):
        return f"{cause.full_key}: required value is missing (set {cause.full_key}=...)"
    if isinstance(cause, OmegaConfBaseException) and getattr(cause, "full_key", None):
        msg = str(getattr(cause, "msg", cause)).splitlines()[0]
        value = value_of(cause.full_key, parse_lenient(overrides))
        shown = f"={value}" if value is not None else ""
        return f"{cause.full_key}{shown}: {msg}"
    return " ".join(text.split())


def _first_quoted(text: str) -> str:
    found = re.search(r"'([^']+)'", text)
    return found.group(1) if found else "?"


def split_argv(argv: list[str]) -> tuple[bool, list[str], bool]:
    """(multirun, overrides, checkable). Unknown flags make the command uncheckable here."""
    multirun, overrides, checkable = False, [], True
    for arg in argv:
        if arg in ("-m", "--multirun"):
            multirun = True
        elif arg.startswith("-"):
            # --help, --cfg, --info, other config names: Hydra's own business.
            checkable = False
        else:
            overrides.append(arg)
    return multirun, overrides, checkable


def compose_typed(overrides: list[str]) -> RunConfig:
    """Compose like the CLI does and convert to the typed config (raises on bad input)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    _refuse_unknown_keys(cfg)
    return OmegaConf.to_object(cfg)


def _refuse_unknown_keys(cfg) -> None:
    # `+group.key=...` appends past the schema and to_object would drop it silently.
    top = {f.name for f in fields(RunConfig)}
    for key in cfg:
        if key not in top and key != "hydra":
            raise UserError(f"{key}: unknown key; groups: {', '.join(GROUP_SCHEMAS)}")
    for group, schema in GROUP_SCHEMAS.items():
        allowed = {f.name for f in fields(schema)}
        for key in cfg[group]:
            if key not in allowed:
                raise UserError(f"{group}.{key}: unknown key; {_allowed_keys(group)}")


def _launcher_is_remote(settings: list[Setting]) -> bool:
    # "" is a deletion (~hydra/launcher): Hydra falls back to the basic launcher.
    return value_of("hydra/launcher", settings) not in (None, "", "basic", "local")


def check_command(argv: list[str], facts: Facts | None) -> int:
    """Validate every job of the command; return the number of jobs checked.

    Raises :class:`UserError` with a one-line message for the first bad job.
    ``facts`` of ``None`` skips machine-dependent rules (jobs run elsewhere).
    """
    multirun, overrides, checkable = split_argv(argv)
    if not checkable:
        return 0
    try:
        settings = parse(overrides)
        jobs = expand(overrides, multirun)
    except HydraException as exc:
        raise UserError(" ".join(str(exc).split())) from exc
    if _launcher_is_remote(settings):
        facts = None
    for job in jobs:
        task = [s.text for s in parse(job) if not s.is_hydra]
        try:
            cfg = compose_typed(task)
        except UserError:
            raise
        except (HydraException, OmegaConfBaseException, ValueError) as exc:
            raise UserError(one_line(exc, task)) from exc
        try:
            validate(cfg, facts)
            check_country(cfg)
        except ConfigError as exc:
            raise UserError(str(exc)) from exc
        if facts is not None:
            check_inputs(cfg)
    if facts is not None:
        check_output_dir(settings, multirun)
    GlobalHydra.instance().clear()
    return len(jobs)


def check_country(cfg: RunConfig) -> None:
    """CodeCarbon knows the country (else it silently uses the world average).

    The table comes with the installed CodeCarbon, the same wherever the job runs; without
    CodeCarbon here the rule is skipped.
    """
    from runner.config.schema import EnergyBackend
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
    from runner.config.schema import ModelSource, WorkloadKind
    from runner.models.cache import cache_root
    from runner.models.context import check_configured_lengths
    from runner.models.load import ModelNotFoundError, local_model_dir
    from runner.models.smollm2 import check_available
    from runner.workload import WorkloadError, load_prompts

    if cfg.model.source is ModelSource.local:
        try:
            local_model_dir(cfg.model.path)
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
    try:
        check_configured_lengths(cfg)
    except ConfigError as exc:
        raise UserError(str(exc)) from exc
    from runner.quality.phase import QualityInputError
    from runner.quality.phase import check_inputs as check_quality

    try:
        check_quality(cfg.quality)
    except QualityInputError as exc:
        raise UserError(str(exc)) from exc


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
