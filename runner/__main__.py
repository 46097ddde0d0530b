"""``python -m runner``: see :mod:`runner.cli`.

Two things only a program's entry may do, both to cut what a command costs around its jobs:
the fork server starts before the CLI imports Hydra (its imports are the longest wait before
the first job), and the process leaves without freeing every module's objects one by one.
"""

import atexit
import contextlib
import os
import sys

from runner import forkserver


def _exit_fast(code: object) -> None:
    """Exit as the interpreter would, minus its last step: ``atexit`` handlers run (logging
    flushes and closes its files, multiprocessing ends its helpers), stdout and stderr are
    flushed, and the process ends without tearing down every module (about 0.2 s after a
    sweep). Not while another thread is alive: the interpreter would wait for it."""
    if forkserver.other_threads():
        sys.exit(code)
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:  # sys.exit("message"): printed, status 1, as the interpreter does
        print(code, file=sys.stderr)
        status = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(status)


if __name__ == "__main__":
    forkserver.start_early(sys.argv[1:])
    from runner.cli import main

    try:
        main()
    except SystemExit as exc:
        _exit_fast(exc.code)
    _exit_fast(0)
