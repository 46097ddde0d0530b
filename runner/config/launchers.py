"""Which submitit launcher was composed, and the rule that follows from it.

Jobs that share this machine run one at a time, however the launcher was chosen:
submitit's local executor starts every job of a batch at once, and jobs sharing a machine
measure each other. Hydra's basic sweeper hands a launcher batches of
``hydra.sweeper.max_batch_size`` jobs; the runner's sweeper preset (conf/hydra/sweeper/
grid.yaml) sets it to ``${runner.jobs_per_batch:${hydra.launcher._target_}}``, so the rule
follows the launcher that was actually composed: ``hydra/launcher=local``, the plugin's own
``submitit_local``, a preset extending either, or an experiment file that picks one. An
explicit ``hydra.sweeper.max_batch_size=N`` on the command line still wins.
"""

from __future__ import annotations

from omegaconf import OmegaConf

RESOLVER = "runner.jobs_per_batch"
_PLUGIN = "hydra_plugins.hydra_submitit_launcher.submitit_launcher"


def is_submitit(target: str | None, kind: str) -> bool:
    """``target`` is hydra-submitit-launcher's ``kind`` class (``LocalLauncher``,
    ``SlurmLauncher``) or a subclass of it.

    Compared by qualified name along the class's MRO: Hydra's plugin scan re-executes
    plugin modules, so the same class can exist twice and ``issubclass`` can say no.
    """
    if not target:
        return False
    try:
        from hydra.utils import get_class

        mro = get_class(target).__mro__
    except Exception:  # not importable here: judge by the class name
        return str(target).rsplit(".", 1)[-1] == kind
    return any(f"{c.__module__}.{c.__qualname__}" == f"{_PLUGIN}.{kind}" for c in mro)


def jobs_per_batch(launcher_target: str | None) -> int | None:
    """``max_batch_size`` for the launcher: 1 for submitit's local one, else no limit."""
    return 1 if is_submitit(launcher_target, "LocalLauncher") else None


def register_resolver() -> None:
    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, jobs_per_batch)
