"""submitit launchers that skip finished points, wait for every job and leave a result for each.

hydra-submitit-launcher's own ``launch`` submits every point, waits for the jobs one by one
and raises at the first job that left no output (cancelled, killed, its node lost): the
sweep then stops waiting for the others, its end-of-sweep callbacks (exit code, report)
never run, and the lost job has no ``result.json``. These subclasses:

- do not submit a point whose ``result.json`` is already ``ok`` for the same config (a
  rerun of a sweep resubmits only what did not finish; the rule is the job's own,
  :func:`runner.job.previous_ok`);
- submit the others exactly as the plugin does (one array job);
- wait for every job, and write a ``failed``/``interrupted`` result for a job that left
  none (:mod:`runner.lost_jobs`).

Every point is returned to Hydra as this runner's task function returns it (``COMPLETED``,
value ``None``; the task never raises): how it went is in its ``result.json``, which the
exit code and the report read.

Hydra's plugin scan imports this module at every start: keep its imports light.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher import submitit_launcher
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from omegaconf import OmegaConf, open_dict, read_write

log = logging.getLogger(__name__)


class _Point(NamedTuple):
    """One sweep point as its job will see it.

    (Not a dataclass: Hydra's plugin scan executes this module before registering it in
    sys.modules, and dataclasses look their module up there.)
    """

    overrides: list[str]  # as Hydra passes them to the job
    task_overrides: list[str]  # as the job records them (hydra.overrides.task)
    run_dir: Path
    config: dict[str, Any]
    config_hash: str


def _done(value: Any = None, overrides: Sequence[str] = ()) -> JobReturn:
    ret = JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED)
    ret.return_value = value
    return ret


class _WaitForEveryJob(submitit_launcher.BaseSubmititLauncher):
    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        from runner.job import previous_ok

        assert self.config is not None
        points = [self._point(list(o)) for o in job_overrides]
        returns: list[JobReturn | None] = [None] * len(points)
        todo: list[int] = []
        for i, point in enumerate(points):
            if previous_ok(point.run_dir, point.config_hash) is not None:
                print(f"[skipped] {point.run_dir.name}: already ok for this config", flush=True)
                returns[i] = _done(None, point.overrides)
            else:
                todo.append(i)
        if todo:
            since = time.time()
            jobs = self._submit([(initial_job_idx + i, points[i].overrides) for i in todo])
            for i, job in zip(todo, jobs, strict=True):
                returns[i] = self._collect(job, points[i], since)
        return [r for r in returns if r is not None]

    def _submit(self, numbered: list[tuple[int, list[str]]]) -> list[Any]:
        """The plugin's submission (hydra-submitit-launcher 1.2.0 ``launch``), unchanged."""
        import submitit

        assert self.config is not None
        params = self.params
        init_keys = {"max_num_timeout", "submitit_folder"}
        init_params: dict[str, Any] = {"folder": params["submitit_folder"]}
        if "max_num_timeout" in params:
            init_params[f"{self._EXECUTOR}_max_num_timeout"] = params["max_num_timeout"]
        executor = submitit.AutoExecutor(cluster=self._EXECUTOR, **init_params)
        base = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(
            **{
                k if k in base else f"{self._EXECUTOR}_{k}": v
                for k, v in params.items()
                if k not in init_keys
            }
        )
        log.info(f"Submitit '{self._EXECUTOR}' sweep output dir : {self.config.hydra.sweep.dir}")
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))
        job_params = []
        for idx, overrides in numbered:
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            state = Singleton.get_state()
            job_params.append((overrides, "hydra.sweep.dir", idx, f"job_id_for_{idx}", state))
        return executor.map_array(self, *zip(*job_params, strict=True))

    def _point(self, overrides: list[str]) -> _Point:
        """Compose the point as its job will (run directory, config, config hash)."""
        from runner.job import config_hash
        from runner.run import config_dict

        assert self.hydra_context is not None and self.config is not None
        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        run_dir = Path(str(cfg.hydra.sweep.dir)) / str(cfg.hydra.sweep.subdir)
        task_overrides = list(cfg.hydra.overrides.task)
        with read_write(cfg), open_dict(cfg):  # as hydra.core.utils.run_job does
            del cfg["hydra"]
        config = config_dict(OmegaConf.to_object(cfg))
        return _Point(overrides, task_overrides, run_dir, config, config_hash(config))

    def _collect(self, job: Any, point: _Point, since: float) -> JobReturn:
        from submitit.core.utils import FailedJobError, UncompletedJobError

        from runner.lost_jobs import record

        try:
            return job.results()[0]
        except (UncompletedJobError, FailedJobError) as exc:
            record(
                point.run_dir,
                point.task_overrides,
                job.state,
                str(exc),
                since,
                point.config,
                point.config_hash,
            )
        return _done(None, point.overrides)


class SlurmLauncher(_WaitForEveryJob, submitit_launcher.SlurmLauncher):
    _EXECUTOR = "slurm"


class LocalLauncher(_WaitForEveryJob, submitit_launcher.LocalLauncher):
    _EXECUTOR = "local"
