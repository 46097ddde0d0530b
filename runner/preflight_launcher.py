"""Where a command's jobs run: a remote launcher, and a Slurm request checked before submitting."""

from __future__ import annotations

from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from runner.config.overrides import Setting, value_of
from runner.config.store import compose_config
from runner.preflight_messages import UserError, one_line


def launcher_is_remote(settings: list[Setting]) -> bool:
    # "" is a deletion (~hydra/launcher): Hydra falls back to the basic launcher.
    return value_of("hydra/launcher", settings) not in (None, "", "basic", "local")


def check_launcher_request(job: list[str]) -> None:
    """A Slurm launcher's request (GPUs, CPUs, memory, time) is checked against its
    partition's nodes before anything is submitted, however the launcher was chosen."""
    from runner.config.launchers import is_submitit
    from runner.slurm import request

    try:
        cfg = compose_config(job, with_hydra=True)
    except (HydraException, OmegaConfBaseException, ValueError) as exc:
        raise UserError(one_line(exc, job)) from exc
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=False)
    if not is_submitit(launcher.get("_target_"), "SlurmLauncher"):
        return
    try:
        request.check(launcher)
    except request.RequestError as exc:
        raise UserError(str(exc)) from exc
