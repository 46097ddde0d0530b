"""Stop signals: a stop is a flag first, an exception second, and never an ``Exception``.

SIGINT (Ctrl-C), SIGTERM (scancel, preemption) and SIGUSR2 (what Slurm sends before the
time limit) all mean "stop and record what you have". Python runs a signal handler between
two bytecodes of whatever code is executing, often deep inside a library. An exception
raised there that derives from ``Exception`` is swallowed by any ``except Exception`` on
the way out (bitsandbytes' optional-kernel import is one: a SIGTERM that lands in it was
logged as "Failed to load CPU gemm_4bit_forward ... received signal SIGTERM" and the run
went on to record ``ok``). So:

- :class:`StopRequested` derives from ``BaseException``, like ``KeyboardInterrupt``: no
  ``except Exception`` catches it;
- the handler records the stop in :class:`StopGuard` before it raises, and
  :meth:`StopGuard.check` (called at every phase boundary and between ``generate`` calls)
  raises it again, so even a bare ``except:`` in a library only delays the stop;
- the handler raises once, and only while the guard is *live* (a run measuring, the CLI between
  jobs). Once a run settles its outcome it is not live: a signal is only recorded, and
  the writer checks the record before and after writing, so a stop that arrives while the
  result is finalised or written still ends as ``interrupted``, and nothing can interrupt
  the write itself.

One guard serves a process for its lifetime (:data:`GUARD`): the CLI process, a spawned
job child (:func:`enter_job_child`), or (installed by the run itself) a submitit job. No
signal is ever handed back to a default handler that would kill the process half-way
through a write; a launcher waiting on a job child passes stop signals on to it
(:func:`forwarding_to`), and a child that must end at once gets SIGKILL from its parent on
the second signal.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# SIGUSR2: what Slurm sends signal_delay_s before the time limit (and at preemption where
# the cluster sends user signals); SIGTERM: scancel, preemption, kill; SIGINT: Ctrl-C.
STOP_SIGNALS: tuple[int, ...] = tuple(
    s for s in (getattr(signal, n, None) for n in ("SIGINT", "SIGTERM", "SIGUSR2")) if s
)


class StopRequested(BaseException):
    """A stop signal arrived. Not an ``Exception``: libraries' broad handlers must not eat it."""

    def __init__(self, signum: int, message: str | None = None) -> None:
        self.signum = signum
        self.signame = signal.Signals(signum).name
        super().__init__(message or f"received signal {self.signame}")


class SweepInterrupted(StopRequested):
    """A stop signal reached a job: its result is recorded; the sweep must stop."""


@dataclass(frozen=True)
class Stop:
    """The first stop signal this process received."""

    signum: int
    signame: str
    received_at: float  # time.monotonic()


class StopGuard:
    """Process-wide record of stop signals; see the module docstring."""

    def __init__(self) -> None:
        self.stop: Stop | None = None
        self.count = 0
        self.live = False
        self._previous: dict[int, Any] = {}
        self._installed = False

    # --- installation -----------------------------------------------------------------

    @property
    def installed(self) -> bool:
        return self._installed

    def install(self) -> bool:
        """Handle the stop signals in this process; False off the main thread (no-op)."""
        if self._installed:
            return True
        if threading.current_thread() is not threading.main_thread():
            return False
        for s in STOP_SIGNALS:
            self._previous[s] = signal.signal(s, self._on_signal)
        self._installed = True
        return True

    def uninstall(self) -> None:
        """Restore the handlers found at :meth:`install` (the stop record is kept)."""
        if not self._installed:
            return
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._installed = False

    # --- the handler --------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.record(signum)
        # One asynchronous raise per process: a later signal could land in the cleanup
        # the first one set off (a tracker's ``finally``) and cut it short. If a library
        # swallowed the first, the next :meth:`check` raises it again.
        if self.live and self.count == 1:
            raise StopRequested(signum)

    def record(self, signum: int) -> None:
        """Note a stop signal without raising (the handler; the spawn parent's forwarder)."""
        self.count += 1
        if self.stop is None:
            # No logging here: a handler that logs can deadlock on the logging lock.
            self.stop = Stop(signum, signal.Signals(signum).name, time.monotonic())

    # --- what runs call -----------------------------------------------------------------

    @property
    def requested(self) -> bool:
        return self.stop is not None

    @property
    def signum(self) -> int:
        """The first stop signal; SIGINT when none was recorded (a ``KeyboardInterrupt``)."""
        return self.stop.signum if self.stop is not None else signal.SIGINT

    @property
    def signame(self) -> str:
        return signal.Signals(self.signum).name

    def check(self) -> None:
        """Raise :class:`StopRequested` if a stop was recorded (it may have been swallowed)."""
        if self.stop is not None and self.live:
            raise StopRequested(self.stop.signum)

    def clear(self) -> None:
        """Forget recorded stops (a new job in a process that outlived the last one)."""
        self.stop = None
        self.count = 0

    def set_live(self, live: bool) -> bool:
        """Set whether a signal raises at once; return the previous setting."""
        previous, self.live = self.live, live
        return previous

    def hand_over(self) -> None:
        """Call the handler found at install for the first stop signal, once recorded.

        Under submitit that is its SIGUSR2 handler: it checkpoints the job, requeues it
        with ``scontrol requeue`` and exits (``SystemExit``); its SIGTERM handler only logs.
        Python's own SIGINT handler is not called: it would only raise KeyboardInterrupt.
        """
        if self.stop is None:
            return
        previous = self._previous.get(self.stop.signum)
        if callable(previous) and previous is not signal.default_int_handler:
            try:
                previous(self.stop.signum, None)
            except Exception as exc:
                # submitit raises when it will not requeue (time limit reached too often);
                # the result already says so (runner.slurm.stops): the job ends normally.
                log.info("submitit did not requeue the job: %s", exc)

    def previous_handler(self, signum: int) -> Any:
        """The handler found at install for ``signum`` (submitit's inside a submitit job)."""
        return self._previous.get(signum)


GUARD = StopGuard()


def install() -> StopGuard:
    """Install the process-wide guard (idempotent) and return it."""
    GUARD.install()
    return GUARD


@contextlib.contextmanager
def guarded() -> Iterator[StopGuard]:
    """The guard for a block: installed on entry unless installed already, restored on exit."""
    owner = not GUARD.installed and GUARD.install()
    if owner:
        GUARD.clear()
    try:
        yield GUARD
    finally:
        if owner:
            GUARD.uninstall()


class Forwarder:
    """Stop signals to a launcher, passed on to the job child it waits on.

    The first is recorded in the guard and sent on as soon as the child handles signals
    (:meth:`child_ready`): the job records ``interrupted`` with its phase. A second one
    kills the child (SIGKILL): asked twice, end it now.
    """

    def __init__(self, guard: StopGuard, pid: Callable[[], int | None]) -> None:
        self.guard = guard
        self._pid = pid
        self.signals = 0
        self.ready = False
        self.sent = False

    def _send(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, TypeError):  # TypeError: not started
            os.kill(self._pid(), signum)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.guard.record(signum)
        self.signals += 1
        if self.signals > 1:
            self._send(signal.SIGKILL)
        elif self.ready:
            self.sent = True
            self._send(signum)
        # else: sent as soon as the child says it handles signals

    def child_ready(self) -> None:
        """The child handles stop signals from now on: pass on a stop that came before."""
        self.ready = True
        if self.signals == 1 and not self.sent:
            self.sent = True
            self._send(self.guard.stop.signum if self.guard.stop else signal.SIGTERM)


@contextlib.contextmanager
def forwarding_to(pid: Callable[[], int | None], guard: StopGuard = GUARD) -> Iterator[Forwarder]:
    """Within the block, stop signals to this process go to the child ``pid()`` names (see
    :class:`Forwarder`); the handlers found are restored on exit.

    Enter it before starting the child, so no signal finds this process without a plan.
    """
    forwarder = Forwarder(guard, pid)
    old = {s: signal.signal(s, forwarder._on_signal) for s in STOP_SIGNALS}
    try:
        yield forwarder
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def enter_job_child() -> StopGuard:
    """Set up a spawned job process; call it first thing in the child.

    Own process group: a terminal's Ctrl-C reaches the launcher only, which forwards it
    once, so the job sees each stop exactly once whoever it was sent to. The guard is
    installed for the child's lifetime: a late signal is recorded, never fatal.
    """
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    die_with_parent()
    return install()


# Test hook, for the per-phase signal tests only: RUNNER_TEST_PARK="<phase>:<mode>:<marker>"
# parks a run on entering <phase> (after writing its pid into <marker>) until a stop
# signal arrives, swallowing what a library might: mode "exception" catches Exception,
# mode "all" everything. Those tests drive the real CLI in a subprocess, which no
# argument can reach.
PARK_ENV = "RUNNER_TEST_PARK"


def park_for_tests(phase: str, guard: StopGuard) -> None:
    """The :data:`PARK_ENV` hook; does nothing unless the variable names ``phase``."""
    spec = os.environ.get(PARK_ENV)
    if not spec:
        return
    want, mode, marker = spec.split(":", 2)
    if want != phase:
        return
    Path(marker).write_text(str(os.getpid()))
    swallowed = BaseException if mode == "all" else Exception
    deadline = time.monotonic() + 300
    while not guard.requested and time.monotonic() < deadline:
        with contextlib.suppress(swallowed):  # what a library's broad handler does
            time.sleep(0.02)


def die_with_parent(signum: int = signal.SIGTERM) -> None:
    """Linux: have the kernel send ``signum`` to this process when its parent dies.

    A spawned job whose launcher was killed (SIGKILL, OOM) then records ``interrupted``
    instead of measuring on, unobserved, to the end.
    """
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signum, 0, 0, 0)
