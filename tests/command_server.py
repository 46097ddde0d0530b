"""The suite's command server: ``python -m runner ...`` forked from one preloaded process.

Every ``python -m runner`` a test starts would import torch, transformers, Hydra and
CodeCarbon again (about 2 s of CPU in the command, and 5 more in the fork server it
starts for its jobs), and the suite starts about a hundred of them. This server imports
them once (:func:`runner.forkserver.preload`, what the runner's own fork server imports)
and forks each command from itself, like ``multiprocessing``'s fork server does for a
job. The command's own fork server is then forked from the command at its start, with
the same imports, instead of started as an interpreter that imports them all again.

A command asks through :mod:`tests.command_client` (``python -S command_client.py -m
runner ...``, what :data:`tests.conftest.PYTHON` runs), which passes its stdin, stdout and
stderr, its working directory, environment and arguments, forwards the stop signals it
gets, and exits as the command did. The command runs in a session of its own: what a test
sees of it is what it sees of a process started as ``python``, except that the command is
not the client's child (tests that look at the child processes of the process they started
start the real interpreter).

Run by the ``command_server`` fixture of tests/conftest.py: ``python tests/command_server.py
SOCKET``; it ends with the test process that started it.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import json
import os
import runpy
import select
import signal
import socket
import sys
import threading
import traceback

REQUEST_FDS = 3  # the client's stdin, stdout and stderr


def recv_exact(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise EOFError("client gone")
        data += chunk
    return data


# What a command imports beyond a job's imports: the sweep report and tracking callbacks
# Hydra instantiates for every command (matplotlib, pyarrow: ~0.4 s a command).
COMMAND_MODULES = ("runner.tracking.callback", "runner.report.callback")


def serve(path: str) -> None:
    from runner.forkserver import PRELOAD, preload

    # imports, CodeCarbon's CPU probe, gc.freeze; SIGTERM and SIGUSR2 ignored
    preload((*PRELOAD, *COMMAND_MODULES))
    parent = os.getppid()
    # sys.path as any interpreter has it: after the script's folder and PYTHONPATH
    base_path = sys.path[1 + len(_pythonpath(os.environ)) :]
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the waiters are reaped by the kernel
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(path)
        listener.listen(16)
        listener.settimeout(1.0)
        print("ready", flush=True)
        while os.getppid() == parent:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            if os.fork() == 0:  # the waiter: starts the command and reports how it ended
                listener.close()
                try:
                    _wait_on(conn, base_path)
                finally:
                    os._exit(0)
            conn.close()


def _pythonpath(env: dict[str, str]) -> list[str]:
    return [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]


def _wait_on(conn: socket.socket, base_path: list[str]) -> None:
    conn.settimeout(None)
    _, fds, _, _ = socket.recv_fds(conn, 1, REQUEST_FDS)
    size = int.from_bytes(recv_exact(conn, 8), "big")
    request = json.loads(recv_exact(conn, size))
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    pid = os.fork()
    if pid == 0:
        conn.close()
        _run_command(request, fds, base_path)  # does not return
    for fd in fds:
        os.close(fd)
    conn.sendall(f"pid {pid}\n".encode())
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        ready, _, _ = select.select([conn], [], [], 0.2)
        if ready and not conn.recv(1):  # the client was killed: so is its command
            os.kill(pid, signal.SIGKILL)
    conn.sendall(f"exit {status}\n".encode())


def _run_command(request: dict, fds: list[int], base_path: list[str]) -> None:
    """In the command's process: become ``python ARGV`` and exit as it would."""
    code = 1
    try:
        os.setsid()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        _as_at_start()
        argv, unbuffered = request["argv"], request["unbuffered"]
        _fresh_stdio(unbuffered)
        module = argv[1] if argv[0] == "-m" else None
        first = os.getcwd() if module else os.path.dirname(os.path.abspath(argv[0]))
        sys.path[:] = [first, *_pythonpath(os.environ), *base_path]
        sys.argv = [argv[0] if module is None else module, *argv[(2 if module else 1) :]]
        start_job_server()
        try:
            if module:
                runpy.run_module(module, run_name="__main__", alter_sys=True)
            else:
                runpy.run_path(argv[0], run_name="__main__")
            code = 0
        except SystemExit as exc:
            code = _exit_code(exc.code)
        except KeyboardInterrupt:
            traceback.print_exc()
            _finish()
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
        except BaseException:
            traceback.print_exc()
            code = 1
        _finish()
    finally:
        os._exit(code)


def _as_at_start() -> None:
    """Signal dispositions and mask as a new interpreter has them."""
    signal.set_wakeup_fd(-1)
    for signum in signal.valid_signals():
        if signum in (signal.SIGKILL, signal.SIGSTOP):
            continue
        with contextlib.suppress(OSError, ValueError):
            signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def _fresh_stdio(unbuffered: bool) -> None:
    def stream(fd: int, mode: str) -> io.TextIOWrapper:
        raw = io.FileIO(fd, mode, closefd=False)
        tty = raw.isatty()
        if "r" in mode:
            return io.TextIOWrapper(io.BufferedReader(raw), line_buffering=tty)
        return io.TextIOWrapper(
            io.BufferedWriter(raw),
            line_buffering=tty or fd == 2,  # stderr is line-buffered (Python 3.9+)
            write_through=unbuffered,
            errors="backslashreplace" if fd == 2 else "strict",
        )

    sys.stdin, sys.stdout, sys.stderr = stream(0, "r"), stream(1, "w"), stream(2, "w")
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = sys.stdin, sys.stdout, sys.stderr


def start_job_server() -> None:
    """Fork this command's ``multiprocessing`` fork server from itself, now, while it holds
    the preload and no other thread: the runner's fork server (runner.forkserver) then
    finds it running, instead of starting an interpreter that imports it all again.

    It is what ``ForkServer.ensure_running`` sets up, with a fork for the spawn: a listening
    socket, the pipe whose end tells the server that the command is gone, and the server's
    main loop. Python 3.11's module; on any surprise the command starts its own.
    """
    import multiprocessing.connection as mp_connection
    import multiprocessing.forkserver as mp_forkserver

    from runner.forkserver import PRELOAD_MODULE

    server = mp_forkserver._forkserver
    if server._forkserver_pid is not None or hasattr(server, "_forkserver_authkey"):
        return
    listener = socket.socket(socket.AF_UNIX)
    address = mp_connection.arbitrary_address("AF_UNIX")
    listener.bind(address)
    os.chmod(address, 0o600)
    listener.listen()
    alive_r, alive_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(alive_w)
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            os.close(null)
            # As runner.forkserver.preload leaves its server: stop signals ignored.
            for signum in (signal.SIGTERM, signal.SIGUSR2):
                signal.signal(signum, signal.SIG_IGN)
            mp_forkserver.main(listener.fileno(), alive_r, [PRELOAD_MODULE])
        finally:
            os._exit(0)
    listener.close()
    os.close(alive_r)
    server._forkserver_address = address
    server._forkserver_alive_fd = alive_w
    server._forkserver_pid = pid


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _finish() -> None:
    """What the interpreter does at exit: join threads, run atexit, flush."""
    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()


if __name__ == "__main__":
    serve(sys.argv[1])
