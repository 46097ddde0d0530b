"""Compose and validate every point of a command before anything runs.

Hydra's own errors are several lines with hints; here each becomes one line
naming the field, the bad value and what is allowed. For a sweep every grid
point is checked first, so a typo in point 37 does not cost points 1 to 36.
"""

from __future__ import annotations

from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from runner.config.overrides import parse
from runner.config.validate import ConfigError, Facts, validate
from runner.preflight_checks import (
    check_country,
    check_engine_installed,
    check_inputs,
    check_output_dir,
    check_tracking,
    check_vllm_kv_cache,
)
from runner.preflight_compose import check_group_options, check_split_mappings, compose_typed
from runner.preflight_launcher import check_launcher_request, launcher_is_remote
from runner.preflight_messages import UserError, one_line
from runner.preflight_sweep import (
    Sweep,
    check_repeats,
    check_search_settings,
    job_points,
    read_sweep_or_refuse,
    require_plugins,
)

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
        require_plugins(settings)
        if multirun:
            sweep = read_sweep_or_refuse(overrides, settings)
        else:
            sweep = Sweep()
            if any(s.key.startswith("hydra") for s in settings):
                read_sweep_or_refuse(overrides, settings)  # a mistyped Hydra option: one line here
        task = [s.text for s in settings if not s.is_hydra]
        jobs = job_points(task, multirun, sweep)
    except UserError:
        raise
    except (HydraException, OmegaConfBaseException, ValueError) as exc:
        raise UserError(one_line(exc, overrides)) from exc
    if launcher_is_remote(settings):
        facts = None
    check_split_mappings(settings)
    for i, job in enumerate(jobs):
        check_group_options(parse(job))
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
