"""The run's process tree: vLLM's engine and worker processes are part of the run.

Their memory counts toward the run's peak (the sum of every process's own peak RSS over
the window, Linux's ``VmHWM`` after ``clear_refs``), and none may outlive it: after vLLM's
own shutdown, whatever is left of the tree is terminated, then killed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


# Python's own helper for shared memory and semaphores, started on first use (vLLM uses
# both): it exits with the interpreter, and ending it early would leak what it tracks.
HELPERS = ("multiprocessing.resource_tracker",)


def descendants(pid: int | None = None) -> list[int]:
    """Every live descendant of ``pid`` (this process by default), from /proc, but Python's
    own helper processes (HELPERS); none where psutil is missing (it comes with vLLM, the
    one engine that starts processes)."""
    try:
        import psutil
    except ImportError:
        return []

    out = []
    try:
        children = psutil.Process(pid or os.getpid()).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    for child in children:
        with contextlib.suppress(psutil.Error):
            if not any(h in " ".join(child.cmdline()) for h in HELPERS):
                out.append(child.pid)
    return out


# vLLM names the ZeroMQ sockets between its front end, engine core and workers after a UUID
# in this folder (the system's temporary folder by default) and leaves them there when it
# ends, about seven files a run. Each session gives it a folder of its own and removes it.
IPC_ENV = "VLLM_RPC_BASE_PATH"


class IpcFolder:
    """A private folder for vLLM's sockets, set in :data:`IPC_ENV` (which the engine's
    processes inherit) from :meth:`enter` until :meth:`leave`, which removes it. Inside
    the user's own ``VLLM_RPC_BASE_PATH`` where one is set."""

    def __init__(self) -> None:
        self.path: str | None = None
        self._before: str | None = None

    def enter(self) -> str:
        self._before = os.environ.get(IPC_ENV)
        self.path = tempfile.mkdtemp(prefix="vllm-ipc-", dir=self._before or None)
        os.environ[IPC_ENV] = self.path
        return self.path

    def leave(self) -> None:
        if self.path is None:
            return
        if self._before is None:
            os.environ.pop(IPC_ENV, None)
        else:
            os.environ[IPC_ENV] = self._before
        shutil.rmtree(self.path, ignore_errors=True)
        self.path = None


def tree(pid: int | None = None) -> list[int]:
    """``pid`` and its descendants."""
    own = pid or os.getpid()
    return [own, *descendants(own)]


@contextlib.contextmanager
def stdio_to(path: Path) -> Iterator[None]:
    """Processes started inside the block write their stdout and stderr to ``path``
    (appended): vLLM's engine and workers print their warnings and progress bars straight
    to the inherited descriptors, which would otherwise fill the terminal. This process's
    own descriptors are restored when the block ends."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(path, "ab") as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, copy in zip((1, 2), saved, strict=True):
            os.dup2(copy, fd)
            os.close(copy)


def _running(proc: Any) -> bool:
    """Alive and not a zombie (a zombie has ended; its parent has not reaped it yet)."""
    import psutil

    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def tree_cpu_seconds() -> float:
    """CPU seconds (user + system) used so far by this process and its live descendants.

    The difference over a window is the tree's CPU time in it, as long as no process of
    the tree ends inside the window (vLLM's do not, until the run ends).
    """
    own = os.times()
    total = own.user + own.system
    if not (pids := descendants()):
        return total
    import psutil

    for pid in pids:
        with contextlib.suppress(psutil.Error):
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system
    return total


@contextlib.contextmanager
def tree_peak_rss() -> Iterator[dict[str, int | str | None]]:
    """Over the ``with`` block: the sum of each process's peak RSS in the tree, in bytes.

    Each peak is reset at the start where Linux allows it (``source`` says whether it was
    the window's or the processes' lifetime peak). The sum bounds the tree's simultaneous
    peak from above; on CPU vLLM's KV cache and weights live in the worker, so the worker's
    peak dominates it.
    """
    from runner.measure.memory import read_hwm_bytes, reset_hwm

    pids = tree()
    window = all(reset_hwm(pid) for pid in pids)
    box: dict[str, int | str | None] = {"bytes": None, "processes": len(pids), "source": None}
    try:
        yield box
    finally:
        peaks = [read_hwm_bytes(pid) for pid in tree()]
        known = [peak for peak in peaks if peak is not None]
        box["bytes"] = sum(known) if known else None
        box["processes"] = len(known)
        box["source"] = (
            "process-tree-peak-rss (sum over processes)"
            if window
            else "process-tree-lifetime-peak-rss (sum over processes)"
        )


def end_tree(pids: list[int], grace_seconds: float = 5.0, settle_seconds: float = 2.0) -> list[int]:
    """End what is left of ``pids``: give them ``settle_seconds`` to exit on their own (a
    process killed by vLLM's shutdown a moment ago is still dying), then terminate them and
    kill what survives ``grace_seconds``. Returns the pids that had to be ended (none when
    vLLM's own shutdown ended them all)."""
    import psutil

    alive = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc = psutil.Process(pid)
            if proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
    if alive:
        _, alive = psutil.wait_procs(alive, timeout=settle_seconds)
        alive = [p for p in alive if _running(p)]
    if not alive:
        return []
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.terminate()
    _, left = psutil.wait_procs(alive, timeout=grace_seconds)
    for proc in left:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(left, timeout=grace_seconds)
    ended = [p.pid for p in alive]
    log.warning("ended %d leftover engine process(es): %s", len(ended), ended)
    return ended
