"""Compose and validate every point of a command before anything runs.

Hydra's own errors are several lines with hints; here each becomes one line
naming the field, the bad value and what is allowed. For a sweep every grid
point is checked first, so a typo in point 37 does not cost points 1 to 36.
"""

from __future__ import annotations

import importlib.util
import re
import tempfile
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, MissingMandatoryValue, OmegaConfBaseException

from runner.config.overrides import (
    Setting,
    expand,
    parse,
    parse_lenient,
    search_points,
    value_of,
)
from runner.config.schema import RunConfig
from runner.config.store import CONF_DIR, GROUP_SCHEMAS
from runner.config.validate import ConfigError, Facts, validate


class UserError(Exception):
    """A mistake on the command line; its message is one line."""


def group_options(group: str) -> list[str]:
    """Option names of a config group (the YAML files under ``conf/<group>/``)."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def unknown_option(group: str, value: str) -> str:
    return f"{group}={value}: unknown option; allowed: {', '.join(group_options(group))}"


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
    missing = re.search(r"Could not find '([^']+)/([^/']+)'", text)
    if missing:
        group, value = missing.groups()
        # Hydra lists what it has, its own and its plugins' options included.
        listed = re.search(r"Available options in '[^']+':\n((?:[ \t]+\S+\n?)+)", text)
        if listed:
            return f"{group}={value}: unknown option; allowed: {', '.join(listed[1].split())}"
        return unknown_option(group, value)
    missing_group = re.search(r"Could not override '([^']+)'. No match in the defaults list", text)
    if missing_group:
        return f"{missing_group.group(1)}: unknown config group; groups: {', '.join(GROUP_SCHEMAS)}"
    if isinstance(cause, ConfigKeyError) or "not in '" in f"{text} {cause}":
        key = getattr(cause, "full_key", None) or _first_quoted(text)
        key = getattr(cause, "full_key", None) or key
        if key.startswith("hydra."):
            return f"{key}: unknown key; {_hydra_keys(key, overrides)}"
        return f"{key}: unknown key; {_allowed_keys(key)}"
    if isinstance(cause, MissingMandatoryValue):
        return f"{cause.full_key}: required value is missing (set {cause.full_key}=...)"
    if isinstance(cause, OmegaConfBaseException) and getattr(cause, "full_key", None):
        msg = str(getattr(cause, "msg", cause)).splitlines()[0]
        value = value_of(cause.full_key, parse_lenient(overrides))
        shown = f"={value}" if value is not None else ""
        return f"{cause.full_key}{shown}: {msg}"
    return " ".join(text.split())


def _hydra_keys(full_key: str, overrides: list[str]) -> str:
    """The keys beside a mistyped ``hydra.*`` one, as the command's own choices compose
    them (``hydra.sweeper.n_trial`` lists the chosen sweeper's keys)."""
    parent = full_key.rsplit(".", 1)[0]
    choices = [o for o in overrides if o.split("=", 1)[0].lstrip("+~").startswith("hydra/")]
    try:
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name="config", overrides=choices, return_hydra_config=True)
        node = OmegaConf.select(cfg, parent)
    except Exception:  # the message is still one line, without the list
        return f"see docs/options.md for the keys of {parent}"
    keys = sorted(str(k) for k in node) if node is not None and hasattr(node, "keys") else []
    return f"keys of {parent}: {', '.join(keys)}" if keys else f"{parent} has no such key"


def _first_quoted(text: str) -> str:
    found = re.search(r"'([^']+)'", text)
    return found.group(1) if found else "?"


# Hydra's flags that print this command's config instead of running it: checked like a run.
# --cfg/-c and --package/-p take a value (``--cfg job``, ``--cfg=job``).
PRINTING_FLAGS = ("--cfg", "-c", "--package", "-p", "--resolve")
_TAKES_VALUE = ("--cfg", "-c", "--package", "-p")


def _flag(arg: str) -> str:
    return arg.split("=", 1)[0]


def split_argv(argv: list[str]) -> tuple[bool, list[str], bool]:
    """(multirun, overrides, checkable). Other flags make the command uncheckable here."""
    multirun, overrides, checkable = False, [], True
    value_next = False
    for arg in argv:
        if value_next:
            value_next = False
        elif arg in ("-m", "--multirun"):
            multirun = True
        elif arg.startswith("-"):
            # --help, --info, other config names: Hydra's own business.
            checkable = checkable and _flag(arg) in PRINTING_FLAGS
            value_next = arg in _TAKES_VALUE
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


def _check_group_options(settings: list[Setting]) -> None:
    """A group takes the options of its folder: ``quant=base_quant`` (the schema Hydra
    also finds under that name) would compose with its required fields missing."""
    for s in settings:
        if s.key in GROUP_SCHEMAS and s.value and s.value not in group_options(s.key):
            raise UserError(unknown_option(s.key, s.value))


def _check_split_mappings(settings: list[Setting]) -> None:
    """``++loading.max_memory={0:20GiB,cpu:64GiB}`` unquoted: bash's brace expansion turns
    it into two overrides, ``...=0:20GiB`` and ``...=cpu:64GiB``, before Python sees it."""
    pair = re.compile(r"[^:{},=\s]+:[^:{},=\s]+")
    for s in settings:
        same = [o for o in settings if o.key == s.key]
        if len(same) > 1 and all(o.value and pair.fullmatch(o.value) for o in same):
            prefix = s.text.split("=", 1)[0]
            whole = ",".join(str(o.value) for o in same)
            raise UserError(
                f"{s.key}={s.value}: the shell split a mapping into {len(same)} overrides; "
                f"quote it: '{prefix}={{{whole}}}'"
            )


def _launcher_is_remote(settings: list[Setting]) -> bool:
    # "" is a deletion (~hydra/launcher): Hydra falls back to the basic launcher.
    return value_of("hydra/launcher", settings) not in (None, "", "basic", "local")


BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
GRID_SWEEPER = "hydra_plugins.runner_launcher.grid_sweeper.GridSweeper"
PARETO_SWEEPER = "hydra_plugins.runner_search.pareto_sweeper.ParetoSweeper"


@dataclass(frozen=True)
class Sweep:
    """What the sweeper of a multirun will do, read from the composed Hydra config."""

    target: str = BASIC_SWEEPER
    params: tuple[str, ...] = ()  # hydra.sweeper.params as overrides (key=sweep)
    n_trials: Any = None
    directions: Any = None
    storage: str | None = None
    sweep_dir: str | None = None

    @property
    def is_search(self) -> bool:
        return self.target not in (BASIC_SWEEPER, GRID_SWEEPER)


def _require_plugins(settings: list[Setting]) -> None:
    sweeper = value_of("hydra/sweeper", settings)
    if sweeper in ("pareto", "optuna") and importlib.util.find_spec("optuna") is None:
        raise UserError(f"hydra/sweeper={sweeper}: needs optuna; pip install -e '.[search]'")


def read_sweep(overrides: list[str]) -> Sweep:
    """Compose the Hydra config of a multirun (without its swept values, which only a
    multirun accepts) and read the sweeper's target, grid and search settings."""
    fixed = [s.text for s in parse(overrides) if not s.swept]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=fixed, return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    params = OmegaConf.select(sweeper, "params") or {}
    return Sweep(
        target=str(sweeper.get("_target_", BASIC_SWEEPER)),
        params=tuple(f"{k}={v}" for k, v in params.items()),
        n_trials=OmegaConf.select(sweeper, "n_trials"),
        directions=OmegaConf.to_container(sweeper, resolve=True).get("direction")
        if "direction" in sweeper
        else None,
        storage=OmegaConf.select(sweeper, "storage", throw_on_resolution_failure=False),
        sweep_dir=str(cfg.hydra.sweep.dir),
    )


def _read_sweep(overrides: list[str], settings: list[Setting]) -> Sweep:
    try:
        return read_sweep(overrides)
    except (HydraException, OmegaConfBaseException):
        raise
    except Exception as exc:  # OmegaConf 2.3 crashes on some overrides of null nodes
        params = [s.text for s in settings if s.key.startswith("hydra.sweeper.params")]
        if params:
            raise UserError(
                f"{params[0]}: Hydra 1.3 cannot set hydra.sweeper.params on the command line "
                "while it is null; give the grid as overrides, or in an experiment file "
                "(docs/search.md)"
            ) from exc
        raise UserError(f"the sweep's Hydra settings do not compose: {exc}") from exc


def _points(task: list[str], multirun: bool, sweep: Sweep) -> list[list[str]]:
    """Every job to check: the grid of the basic sweeper, or every value of a search."""
    if not multirun:
        return [task]
    # The command line wins over hydra.sweeper.params, as in both sweepers.
    given = {s.key for s in parse(task)}
    merged = [
        p for p, s in zip(sweep.params, parse(sweep.params), strict=True) if s.key not in given
    ] + task
    if not sweep.is_search:
        interval = [s.text for s in parse(merged) if s.swept and "interval(" in s.text]
        if interval:
            raise UserError(
                f"{interval[0]}: interval() needs a search sweeper, not the basic grid "
                "(add hydra/sweeper=pareto, docs/search.md), or list values: key=a,b,c"
            )
        return expand(merged, multirun=True)
    return search_points(merged)  # the runner's sweeper: a range's stop excluded, as Hydra


def check_search_settings(sweep: Sweep, cfg: RunConfig) -> None:
    """n_trials, directions and a resumed study agree with ``search.*``."""
    from runner.search.objectives import parse_objectives

    if not sweep.is_search:
        return
    n = sweep.n_trials
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise UserError(f"hydra.sweeper.n_trials={n}: must be an integer >= 1")
    objectives = parse_objectives(cfg.search.objectives)
    directions = sweep.directions
    if directions is not None:
        listed = directions if isinstance(directions, list) else [directions]
        listed = [str(getattr(d, "name", d)) for d in listed]  # the plugin's Direction enum
        bad = [d for d in listed if d not in ("minimize", "maximize")]
        if bad:
            raise UserError(f"hydra.sweeper.direction={bad[0]}: minimize or maximize")
        if len(listed) != len(objectives):
            raise UserError(
                f"hydra.sweeper.direction={listed}: one direction per objective of "
                f"search.objectives ({', '.join(map(str, objectives))})"
            )
    if sweep.target == PARETO_SWEEPER:
        _check_resumed_study(sweep, [str(o) for o in objectives])


def _check_resumed_study(sweep: Sweep, objectives: list[str]) -> None:
    db = Path(str(sweep.sweep_dir)) / "optuna.db"
    if not db.is_file() or not sweep.storage:
        return
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        summaries = optuna.get_all_study_summaries(str(sweep.storage), include_best_trial=False)
    except Exception as exc:
        raise UserError(f"{db}: the stored study cannot be read ({exc})") from exc
    for summary in summaries:
        stored = summary.user_attrs.get("objectives")
        if stored and list(stored) != objectives:
            raise UserError(
                f"search.objectives={objectives}: the study in {db} optimizes {list(stored)}; "
                "resume it with the same objectives or use another hydra.sweep.dir"
            )


def check_repeats(cfg: RunConfig, settings: list[Setting], multirun: bool, searching: bool) -> None:
    """``repeat.count`` > 1 needs a grid sweep (each repeat is a job of its own); the
    repeat settings are one per sweep, never swept."""
    swept = [s for s in settings if s.swept and s.key.startswith("repeat.")]
    if swept:
        raise UserError(
            f"{swept[0].text}: {swept[0].key} is a setting of the whole sweep, not a factor; "
            "give it one value"
        )
    count = cfg.repeat.count
    if count > 1 and not multirun:
        raise UserError(
            f"repeat.count={count}: repeats are jobs of a sweep; add -m "
            "(python -m runner -m ... repeat.count=3)"
        )
    if count > 1 and searching:
        raise UserError(
            f"repeat.count={count}: a search sweeper proposes each point itself and cannot "
            "repeat it; run the points the search found as a grid with repeats"
        )


def check_tracking(cfg: RunConfig) -> None:
    """``tracking=mlflow``: MLflow is installed and the store can be written."""
    from runner.config.schema import TrackingBackend

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


def check_engine_installed(cfg: RunConfig) -> None:
    """``engine=vllm``: vLLM is installed (one line with the install command otherwise)."""
    from runner.config.schema import EngineKind
    from runner.engines.install import INSTALL_HINT

    if cfg.engine.kind is EngineKind.vllm and importlib.util.find_spec("vllm") is None:
        raise UserError(f"engine=vllm: vLLM is not installed; {INSTALL_HINT}")


def check_command(argv: list[str], facts: Facts | None) -> int:
    """Validate every job of the command; return the number of jobs checked.

    Raises :class:`UserError` with a one-line message for the first bad job.
    ``facts`` of ``None`` skips machine-dependent rules (jobs run elsewhere). A command that
    only prints its config (``--cfg job``) is checked the same way.
    """
    from runner.search.objectives import check_search

    multirun, overrides, checkable = split_argv(argv)
    if not checkable:
        return 0
    try:
        settings = parse(overrides)
        _require_plugins(settings)
        if multirun:
            sweep = _read_sweep(overrides, settings)
        else:
            sweep = Sweep()
            if any(s.key.startswith("hydra") for s in settings):
                _read_sweep(overrides, settings)  # a mistyped Hydra option: one line here
        task = [s.text for s in settings if not s.is_hydra]
        jobs = _points(task, multirun, sweep)
    except UserError:
        raise
    except (HydraException, OmegaConfBaseException, ValueError) as exc:
        raise UserError(one_line(exc, overrides)) from exc
    if _launcher_is_remote(settings):
        facts = None
    _check_split_mappings(settings)
    for i, job in enumerate(jobs):
        _check_group_options(parse(job))
        try:
            cfg = compose_typed(job)
        except UserError:
            raise
        except (HydraException, OmegaConfBaseException, ValueError) as exc:
            raise UserError(one_line(exc, job)) from exc
        try:
            validate(cfg, facts)
            check_country(cfg)
            check_search(cfg, sweep.is_search)
        except ConfigError as exc:
            raise UserError(str(exc)) from exc
        check_engine_installed(cfg)
        if i == 0:
            check_search_settings(sweep, cfg)
            check_tracking(cfg)
            check_repeats(cfg, settings, multirun, sweep.is_search)
        if facts is not None:
            check_inputs(cfg)
            try:
                check_vllm_kv_cache(cfg, cuda=bool(facts.cuda_available))
            except ConfigError as exc:
                raise UserError(str(exc)) from exc
    printing = [a for a in argv if _flag(a) in PRINTING_FLAGS]
    if multirun and printing:
        raise UserError(
            f"{printing[0]} with -m: Hydra prints the config of one job; drop -m and give one "
            "value per key (python -m runner quant=nf4 --cfg job)"
        )
    if facts is not None:
        check_output_dir(settings, multirun)
    if multirun:
        # The launcher is a hydra setting: the composed point needs those back.
        check_launcher_request([*(s.text for s in settings if s.is_hydra), *jobs[0]])
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


def check_launcher_request(job: list[str]) -> None:
    """A Slurm launcher's request (GPUs, CPUs, memory, time) is checked against its
    partition's nodes before anything is submitted, however the launcher was chosen."""
    from runner.config.launchers import is_submitit
    from runner.slurm import request

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name="config", overrides=job, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException, ValueError) as exc:
        raise UserError(one_line(exc, job)) from exc
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=False)
    if not is_submitit(launcher.get("_target_"), "SlurmLauncher"):
        return
    try:
        request.check(launcher)
    except request.RequestError as exc:
        raise UserError(str(exc)) from exc


def check_inputs(cfg: RunConfig) -> None:
    """Files the run will read exist and parse (only where the jobs run on this machine),
    and synthetic prompts plus new tokens fit the model's context length."""
    from runner.config.schema import ModelSource, WorkloadKind
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

    from runner.config.schema import EngineKind, ModelSource
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
