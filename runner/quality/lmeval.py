"""lm-evaluation-harness tasks on the run's already-loaded model (``quality=lm-eval``).

lm-eval is an extra (``pip install 'llm-sweep-runner[lm-eval]'``; ``make setup`` installs
it). The model object the run measured is wrapped in lm-eval's ``HFLM`` as it is, so
quantization, placement and a compiled forward are those of the measured run. Tasks are
looked up by name among: the built-in offline task ``sweep_runner_facts`` (40 multiple
choice questions written for this project, ``runner/data/lmeval/``), the YAML files of
``quality.task_dir`` (your own tasks, data on disk), then lm-eval's own registry (whose
datasets usually need a download: they work offline only from a local datasets cache).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from runner.quality.text import QualityInputError
from runner.sections.quality import LmEval

log = logging.getLogger(__name__)

BUILTIN_TASK = "sweep_runner_facts"
INSTALL_HINT = "pip install 'llm-sweep-runner[lm-eval]' (or lm-eval==0.4.13)"
METHOD = (
    "lm-evaluation-harness {version} simple_evaluate on the run's loaded model wrapped in "
    "HFLM (same weights, quantization and placement as measured), "
    "batch size {batch}, zero-shot, {limit}; metrics as lm-eval reports them, *_stderr its "
    "standard errors"
)


def _builtin_dir() -> Path:
    return Path(str(resources.files("runner.data").joinpath("lmeval")))


def lm_eval_version() -> str | None:
    """The installed lm-eval's version, or None when it is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lm_eval")
    except PackageNotFoundError:
        return None


def _require() -> str:
    found = lm_eval_version()
    if found is None:
        raise QualityInputError(f"quality=lm-eval: lm-eval is not installed; {INSTALL_HINT}")
    return found


def builtin_spec() -> dict[str, Any]:
    """The built-in task's YAML as a config dict, its data file given by absolute path
    (lm-eval resolves ``data_files`` against the working directory, not the YAML's)."""
    import yaml

    folder = _builtin_dir()
    spec = yaml.safe_load((folder / f"{BUILTIN_TASK}.yaml").read_text())
    files = spec["dataset_kwargs"]["data_files"]
    spec["dataset_kwargs"]["data_files"] = {k: str(folder / v) for k, v in files.items()}
    return spec


@functools.lru_cache(maxsize=8)
def _task_names(task_dir: str | None, include_defaults: bool) -> frozenset[str]:
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=task_dir, include_defaults=include_defaults)
    return frozenset(manager.all_tasks)


@functools.lru_cache(maxsize=8)
def _named_in_registry_files(names: tuple[str, ...]) -> frozenset[str]:
    """Those of ``names`` that some file of lm-eval's task folder contains. Every name in
    its registry is written in one (a YAML ``task``, ``group`` or ``tag``, or a Python
    task), so a name no file contains is no task; reading the files as text takes well
    under a second, indexing them about ten."""
    import lm_eval.tasks

    found: set[str] = set()
    for path in Path(lm_eval.tasks.__file__).parent.rglob("*"):
        if path.suffix in (".yaml", ".yml", ".py") and path.is_file():
            text = path.read_text(errors="replace")
            found.update(n for n in names if n not in found and n in text)
    return frozenset(found)


def check_tasks(tasks: Sequence[str], task_dir: str | None) -> None:
    """Every task name resolves (before anything runs); one-line :class:`QualityInputError`.

    lm-eval's own registry (some 15,000 names, about ten seconds to index) is only read
    when a name is neither the built-in task nor one of ``task_dir``, and some file of the
    registry names it (a mistyped name is refused without the index).
    """
    _require()
    if task_dir is not None and not Path(task_dir).expanduser().is_dir():
        raise QualityInputError(f"quality.task_dir={task_dir}: no such directory")
    wanted = [t for t in tasks if t != BUILTIN_TASK]
    if task_dir is not None and wanted:
        local = _task_names(str(Path(task_dir).expanduser()), False)
        wanted = [t for t in wanted if t not in local]
    if wanted:
        named = _named_in_registry_files(tuple(wanted))  # once a command, as the index
        unknown = [t for t in wanted if t not in named]
        if not unknown:
            known = _task_names(None, True)
            unknown = [t for t in wanted if t not in known]
        if unknown:
            where = f"{BUILTIN_TASK}, the YAML files of quality.task_dir, or lm-eval's registry"
            raise QualityInputError(f"quality.tasks: unknown task {unknown[0]!r}; known: {where}")


def _numbers(metrics: dict[str, Any]) -> dict[str, float]:
    """lm-eval's ``{"acc,none": 0.5, "alias": ...}`` -> ``{"acc": 0.5}`` (numbers only;
    a filter other than ``none`` stays in the name)."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        name, _, filt = key.partition(",")
        out[name if filt in ("", "none") else f"{name},{filt}"] = float(value)
    return out


def run_lm_eval(
    model: Any,
    tokenizer: Any,
    tasks: Sequence[str],
    *,
    task_dir: str | None = None,
    limit: int | None = None,
    batch_size: int = 1,
    check: Callable[[], None] = lambda: None,
) -> LmEval:
    """Evaluate ``tasks`` with lm-eval on ``model`` as loaded; the results and how."""
    version = _require()
    t0 = time.perf_counter()
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    others = [t for t in tasks if t != BUILTIN_TASK]
    manager = TaskManager(
        include_path=str(Path(task_dir).expanduser()) if task_dir else None,
        include_defaults=bool(others) and not _all_local(others, task_dir),
    )
    specs: list[Any] = [builtin_spec() if t == BUILTIN_TASK else t for t in tasks]
    check()
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    out = lm_eval.simple_evaluate(
        model=lm,
        tasks=specs,
        task_manager=manager,
        limit=limit,
        log_samples=False,
        bootstrap_iters=1000,
    )
    check()
    results = (out or {}).get("results", {})
    samples = (out or {}).get("n-samples", {})
    return LmEval(
        version=version,
        tasks=tuple(tasks),
        limit=limit,
        results={name: _numbers(m) for name, m in results.items() if isinstance(m, dict)},
        samples={
            name: int(n.get("effective", 0)) for name, n in samples.items() if isinstance(n, dict)
        },
        seconds=time.perf_counter() - t0,
        method=METHOD.format(
            version=version,
            batch=batch_size,
            limit=f"at most {limit} examples per task" if limit else "every example",
        ),
    )


def _all_local(tasks: Sequence[str], task_dir: str | None) -> bool:
    if task_dir is None:
        return False
    return set(tasks) <= _task_names(str(Path(task_dir).expanduser()), False)
