"""A Hydra config loader that composes each sweep point once, not twice.

Hydra's basic sweeper composes every point of a batch to check it before launching any
(``Sweeper.validate_batch_is_legal``), and its launcher composes each point again to run it
(``BasicLauncher.launch``, the runner's submitit launchers). The second composition of a
point (about 0.15 s of CPU on a small machine, between two measured jobs) is the first one
handed over: :class:`ComposeOnce` keeps each point's config from the check until the
launch asks for it, then forgets it.

At most :data:`HOLD` configs are kept (about 0.25 MiB each): a larger batch's later points
are composed again at their launch, as without this loader.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

HOLD = 256


class ComposeOnce:
    """Wraps a Hydra ``ConfigLoader``; ``load_sweep_config`` answers a point's second
    request with the config of its first. Everything else goes to the wrapped loader.

    The first caller (the sweeper's check) only needs the composition to succeed; the
    second (the launcher) owns the config from then on and may change it, as Hydra's own
    launchers do (job id, number).
    """

    def __init__(self, loader: Any) -> None:
        self._loader = loader
        self._composed: dict[tuple[int, tuple[str, ...]], DictConfig] = {}

    def load_sweep_config(
        self, master_config: DictConfig, sweep_overrides: list[str]
    ) -> DictConfig:
        key = (id(master_config), tuple(sweep_overrides))
        held = self._composed.pop(key, None)
        if held is not None:
            return held
        config = self._loader.load_sweep_config(master_config, list(sweep_overrides))
        if len(self._composed) < HOLD:
            self._composed[key] = config
        return config

    def __getattr__(self, name: str) -> Any:
        # Through __dict__: while unpickling (submitit sends the launcher, loader included,
        # to each job) pickle asks for attributes before _loader is set.
        loader = self.__dict__.get("_loader")
        if loader is None:
            raise AttributeError(name)
        return getattr(loader, name)
