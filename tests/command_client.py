"""``python`` for the suite's commands: ``-m MODULE ...`` and scripts run forked from the
command server (tests/command_server.py) when one is up; anything else, or no server, is
the real interpreter (``exec``).

Run as ``python -S command_client.py [-u] ARGS`` (no site: it imports only the standard
library and starts in milliseconds). It passes the server its stdin, stdout, stderr,
working directory, environment and ARGS, forwards the signals a test may send to a
command, and exits as the command did: its exit code, or the signal that killed it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys

ADDRESS_ENV = "LLM_RUNNER_TEST_COMMAND_SERVER"
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP)


def _real_python(argv: list[str]) -> None:
    os.execv(sys.executable, [sys.executable, *argv])


def _served(argv: list[str]) -> tuple[list[str], bool] | None:
    """The arguments the server runs (``-m MODULE ...`` or ``SCRIPT ...``) and whether
    ``-u`` was given; None for what only the real interpreter does (``-c``, other flags)."""
    unbuffered = False
    while argv and argv[0] == "-u":
        argv, unbuffered = argv[1:], True
    if len(argv) >= 2 and argv[0] == "-m":
        return argv, unbuffered
    if argv and argv[0].endswith(".py") and os.path.isfile(argv[0]):
        return argv, unbuffered
    return None


def _lines(conn: socket.socket):
    buffer = b""
    while True:
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            yield line.decode()
        chunk = conn.recv(4096)
        if not chunk:
            return
        buffer += chunk


def main(argv: list[str]) -> None:
    address = os.environ.get(ADDRESS_ENV)
    served = _served(argv)
    if not address or served is None:
        _real_python(argv)
    conn = socket.socket(socket.AF_UNIX)
    try:
        conn.connect(address)
    except OSError:  # no server listens (still importing, gone, or off): the real one
        _real_python(argv)
    args, unbuffered = served
    request = json.dumps(
        {"argv": args, "unbuffered": unbuffered, "cwd": os.getcwd(), "env": dict(os.environ)}
    ).encode()
    socket.send_fds(conn, [b"r"], [0, 1, 2])
    conn.sendall(len(request).to_bytes(8, "big") + request)
    replies = _lines(conn)
    pid = int(next(replies).split()[1])
    for signum in FORWARDED:
        signal.signal(signum, lambda s, _f: os.kill(pid, s))
    status = None
    for line in replies:
        if line.startswith("exit "):
            status = int(line.split()[1])
    if status is None:
        sys.exit(1)
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        if signum not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
    sys.exit(os.waitstatus_to_exitcode(status))


if __name__ == "__main__":
    main(sys.argv[1:])
