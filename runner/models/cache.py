"""Where provisioned model checkpoints live, and how they are built without races.

Sweeps launch many runs at once (Hydra multirun, submitit); all of them may ask for the
same checkpoint on first use, so building must be exclusive and publishing atomic.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

COMPLETE_MARKER = ".complete"
DEFAULT_CACHE = Path("~/.cache/llm-sweep-runner")


def cache_root(configured: str | None) -> Path:
    """Return (and create) the cache root: ``configured``, else ``$RUNNER_CACHE``, else default."""
    chosen = configured or os.environ.get("RUNNER_CACHE") or DEFAULT_CACHE
    root = Path(chosen).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def is_complete(target: Path) -> bool:
    """True when ``target`` was published by :func:`build_atomically`."""
    return (target / COMPLETE_MARKER).is_file()


def _make_readable(tree: Path) -> None:
    """Open up modes: mkdtemp makes 0700 and transformers writes safetensors as 0600,
    which would hide a shared ``$RUNNER_CACHE`` from other users."""
    tree.chmod(0o755)
    for path in tree.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


@dataclass
class ProvisionTime:
    """Seconds spent making cached checkpoints complete (building one, or waiting for
    another process building it); None while every checkpoint was already there."""

    seconds: float | None = None

    def add(self, seconds: float) -> None:
        self.seconds = (self.seconds or 0.0) + seconds


def build_atomically(
    target: Path, build: Callable[[Path], None], spent: ProvisionTime | None = None
) -> Path:
    """Return ``target``, calling ``build(tmpdir)`` once if it is not complete yet.

    ``build`` writes into a private sibling directory that is renamed onto ``target`` only
    after it succeeded, so readers never see a half-written checkpoint. The sibling lock
    file serialises concurrent builders across processes; the loser of the race finds the
    winner's result on re-check and returns without building. The time from finding
    ``target`` incomplete to its completion is added to ``spent``.
    """
    target = Path(target)
    if is_complete(target):
        return target
    started = time.perf_counter()
    try:
        return _build_locked(target, build)
    finally:
        if spent is not None:
            spent.add(time.perf_counter() - started)


def _build_locked(target: Path, build: Callable[[Path], None]) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    # name + ".lock" (not with_suffix) so a dotted name like "m.v1" cannot share a lock.
    lock_path = target.with_name(target.name + ".lock")
    tmp_prefix = f".{target.name}.tmp-"
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if is_complete(target):
                return target
            # Holding the lock means no one else is building: leftovers are from crashes.
            for stale in target.parent.glob(tmp_prefix + "*"):
                shutil.rmtree(stale, ignore_errors=True)
            if target.exists():
                log.warning("removing incomplete %s before rebuilding", target)
                shutil.rmtree(target)
            tmp = Path(tempfile.mkdtemp(prefix=tmp_prefix, dir=target.parent))
            log.info("provisioning %s (once; later runs reuse it)", target.name)
            started = time.perf_counter()
            try:
                build(tmp)
                (tmp / COMPLETE_MARKER).touch()
                _make_readable(tmp)
                os.replace(tmp, target)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            log.info("provisioned %s in %.1f s", target.name, time.perf_counter() - started)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return target
