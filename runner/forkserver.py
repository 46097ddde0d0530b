"""Job processes forked from a server that has imported torch and transformers.

With ``measure.isolation=forkserver`` (the default) every job still runs in a fresh
process of its own: CUDA memory, compile caches and library state cannot leak from one
job into the next, and a native crash becomes a ``failed`` result. The process is forked
from a server instead of started as a new interpreter, so the imports (torch,
transformers, Hydra, CodeCarbon and its CPU probe: seconds per job on a small machine)
are paid once per launcher process instead of once per job.

The server is Python's ``multiprocessing`` fork server: started by the launcher on first
use (or by :func:`start`), it ends with the launcher. It never touches a GPU: it only
imports (:func:`preload` makes no CUDA or NVML call, and refuses to serve if an import
loaded the CUDA driver), so each job creates its own CUDA context after the fork.

A forked job takes from the launcher, at the moment it starts (the server started
earlier and may have another): the working directory and ``sys.path``
(``multiprocessing`` passes them), the environment, and stdout/stderr
(:class:`LauncherState`).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import multiprocessing
import multiprocessing.forkserver
import os
import pickle
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing import reduction
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PRELOAD_MODULE = "runner.forkserver_preload"
# Imported by every run before its measured window (the job would import them anyway, so
# the preload does not add to a job's memory). bitsandbytes only with a CPU-only torch
# (see preload).
PRELOAD = (
    "torch",
    "transformers",
    "transformers.generation.utils",
    "transformers.models.llama.modeling_llama",
    "runner.cli",
    "runner.run",
    "runner.models.load",
    "codecarbon.emissions_tracker",
    # What a tracker writing emissions.csv imports (CodeCarbon imports them all): ~1.5 s.
    "codecarbon.output_methods.file",
    "codecarbon.output_methods.http",
    "codecarbon.output_methods.metrics.logfire",
    "codecarbon.output_methods.metrics.prometheus",
)


# Why the server could not start a job, once it failed: the rest of this launcher's jobs
# are spawned instead of waiting on a server that fails again.
_broken: str | None = None


def usable() -> bool:
    return _broken is None


def mark_broken(reason: str) -> None:
    global _broken
    _broken = reason


def context() -> BaseContext:
    """The ``forkserver`` start method, with :data:`PRELOAD_MODULE` preloaded in the server.

    A preload that fails kills the server (an ImportError would only skip it): starting a
    process then raises, and the launcher spawns instead (see ``runner.job``).
    """
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([PRELOAD_MODULE])
    return ctx


def start() -> None:
    """Start the server now (it imports in the background); a no-op when it runs already.

    Its stdin, stdout and stderr are /dev/null: it must hold none of the launcher's pipes
    (whoever reads the launcher's output to the end would wait for the server too), and
    its imports' chatter belongs to no job. Each job gets the launcher's stdout and
    stderr as they are when it starts (:class:`LauncherState`).
    """
    context()
    with _stdio_to_devnull():
        multiprocessing.forkserver.ensure_running()


@contextlib.contextmanager
def _stdio_to_devnull() -> Iterator[None]:
    """This process's fds 0-2 point at /dev/null within the block (what a process started
    in it inherits), and back afterwards."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError, OSError):
            stream.flush()
    saved = {fd: os.dup(fd) for fd in (0, 1, 2) if _open_fd(fd)}
    null = os.open(os.devnull, os.O_RDWR)
    try:
        for fd in saved:
            os.dup2(null, fd)
        yield
    finally:
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
        os.close(null)


# The overrides that decide whether a command's jobs are forked from the server.
ISOLATION, LAUNCHER, EXPERIMENT = "measure.isolation", "hydra/launcher", "experiment"


def start_for_command(argv: list[str]) -> bool:
    """Start the server now if the command's jobs will likely be forked from it.

    Its imports then run beside the launcher's own start (pre-flight, torch) instead of
    after them. Read from the command line, so that nothing waits for the composed
    configs. Not for submitit launchers (each job is its own process), nor for --help and
    other flags, nor with an experiment file, which may choose another isolation: an
    inline job would then measure its idle baseline while the server imports (the
    launcher starts the server at its first forked job instead).
    """
    from runner.config.overrides import parse_lenient, value_of
    from runner.preflight import split_argv

    _, overrides, checkable = split_argv(argv)
    settings = parse_lenient(overrides)
    isolation = value_of(ISOLATION, settings)
    launcher = value_of(LAUNCHER, settings)
    experiment = value_of(EXPERIMENT, settings)
    plain = experiment is None and launcher in (None, "basic")
    if checkable and plain and isolation in (None, "forkserver"):
        start()
        return True
    return False


def start_early(argv: list[str]) -> bool:
    """Start the server before the command's own imports, for the plain command only.

    Plain: overrides and ``-m``, none of them about the isolation, the launcher or an
    experiment file, which :func:`start_for_command` reads with Hydra's parser once it is
    imported. Hydra's own import (about 0.3 s) then runs beside the server's.
    """
    for arg in argv:
        if arg in ("-m", "--multirun"):
            continue
        key = arg.lstrip("+~").split("=", 1)[0]
        if arg.startswith("-") or key in (ISOLATION, LAUNCHER, EXPERIMENT):
            return False
    start()
    return True


def cuda_driver_loaded() -> bool:
    """Whether this process has mapped the CUDA driver library (libcuda): any CUDA call
    loads it, and a process that forks after that hands its children a broken CUDA."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return False
    return "libcuda.so" in maps


def preload(modules: tuple[str, ...] = PRELOAD) -> None:
    """Import ``modules``, warm CodeCarbon's CPU probe and read the installed versions;
    runs in the server only.

    Raises RuntimeError when the CUDA driver got loaded: forked jobs could not use CUDA.
    Stop signals are ignored here (a job's own handlers replace that at its start): the
    server must outlive a SIGTERM sent to the launcher's whole process group (``scancel``,
    ``kill -- -PGID``), since the launcher learns through it how its job ended. It exits
    with the launcher.
    """
    for s in (signal.SIGTERM, signal.SIGUSR2):
        signal.signal(s, signal.SIG_IGN)
    launcher = os.getppid()
    from runner.measure import cpu_power_cache

    # CodeCarbon's CPU power, from the disk when an earlier process kept it for this machine.
    seeded = cpu_power_cache.seed()
    tdp_probed = (lambda: None) if seeded else _probe_tdp_beside()
    # No garbage collection while importing: the collector ran about 0.9 s of the imports'
    # 6 s (it rescans the growing set of module objects), and the first job waits for them.
    gc.disable()
    try:
        for name in modules:
            if os.getppid() != launcher:  # the launcher is gone (a refused command): stop
                os._exit(0)
            __import__(name)
        import torch

        if torch.version.cuda is None and getattr(torch.version, "hip", None) is None:
            # bitsandbytes asks at import whether there is a GPU and reads its compute
            # capability, which initialises CUDA; only a torch built without CUDA cannot.
            with contextlib.suppress(ImportError):
                __import__("bitsandbytes")
        tdp_probed()
        _warm_codecarbon()  # nothing left to do when the probe beside succeeded
        from runner import lockfile

        lockfile.installed()  # every job's environment.install reads it; once, here
        if not seeded:
            cpu_power_cache.keep()
        check_forkable()
        # What was imported lives as long as any job: a job's garbage collector need not
        # scan it (a full collection over it took ~0.3 s, at a moment the job does not
        # choose, possibly inside a measured window) nor write to its pages (copy-on-
        # write). No collection first: it would take ~0.45 s before the first job, to
        # free the ~13,000 unreachable objects (~8 MiB) the imports leave, which the jobs
        # share unwritten.
        gc.freeze()
    finally:  # jobs collect their own garbage, whether the imports succeeded or not
        gc.enable()


def check_forkable() -> None:
    """Raise RuntimeError unless this process can fork jobs that work: no CUDA driver
    loaded, no thread but the main one (a fork copies one thread; a lock another thread
    held would stay locked in the child)."""
    if cuda_driver_loaded():
        raise RuntimeError(
            "fork server: an import loaded the CUDA driver; forked jobs could not use CUDA"
        )
    extra = other_threads()
    if extra:
        raise RuntimeError(f"fork server: imports started threads {extra}")


def other_threads() -> list[str]:
    """Names of the live threads besides the main one (a fork copies only the thread that
    forks: a lock another one holds stays locked in the child)."""
    return [t.name for t in threading.enumerate() if t is not threading.main_thread()]


def _probe_tdp_beside() -> Callable[[], None]:
    """Start CodeCarbon's CPU probe (``cpu.TDP()``: ~1.5 s of CPU) in a forked child, on
    another core while this process imports; the returned function waits for the child
    and seeds CodeCarbon's per-process cache with its answer. Forked before any import
    that could start a thread. Any failure leaves the cache empty: the probe then runs
    here (:func:`_warm_codecarbon`).
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        code = 1
        try:
            from codecarbon.core import cpu

            data = pickle.dumps(cpu.TDP())
            with os.fdopen(write_fd, "wb") as out:
                out.write(data)
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)

    def seed() -> None:
        with os.fdopen(read_fd, "rb") as pipe:
            data = pipe.read()
        _, status = os.waitpid(pid, 0)
        if status != 0 or not data:
            return
        with contextlib.suppress(Exception):  # another CodeCarbon: probed here instead
            from codecarbon.core import hardware_cache

            if getattr(hardware_cache, "_tdp", ...) is None:
                hardware_cache._tdp = pickle.loads(data)

    return seed


def _warm_codecarbon() -> None:
    """CodeCarbon's CPU model and TDP lookup (a subprocess plus a CSV table, ~2 s), which it
    caches per process: done here once, every job's first tracker starts in milliseconds.
    Nothing GPU-related is probed (that happens in each job)."""
    try:
        from codecarbon.core import cpu
        from codecarbon.core.hardware_cache import get_cached_tdp

        get_cached_tdp(cpu)
    except Exception as exc:  # an optional speed-up: a job probes for itself
        print(f"fork server: CodeCarbon CPU probe skipped: {exc}", file=sys.stderr)


def _open_fd(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


class LauncherState:
    """The launcher's environment, stdout and stderr, as a job process should have them.

    Pickled into the job's arguments; the file descriptors travel with the start request
    (``multiprocessing.reduction.DupFd``), for a forked and a spawned job alike.
    """

    def __init__(self) -> None:
        self.env = dict(os.environ)

    def __reduce__(self) -> tuple[Any, ...]:
        fds = tuple(reduction.DupFd(fd) if _open_fd(fd) else None for fd in (1, 2))
        return (_Adopt, (self.env, fds))


@dataclass
class _Adopt:
    env: dict[str, str]
    fds: tuple[Any, ...]

    def apply(self) -> None:
        """In the job process: take the launcher's environment, stdout and stderr."""
        os.environ.clear()
        os.environ.update(self.env)
        for target, dup in zip((1, 2), self.fds, strict=True):
            if dup is None:
                continue
            fd = dup.detach()
            if fd != target:
                (sys.stdout if target == 1 else sys.stderr).flush()
                os.dup2(fd, target)
                os.close(fd)
