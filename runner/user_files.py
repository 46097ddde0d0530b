"""Reading a file the user named on the command line: one-line errors, never a traceback."""

from __future__ import annotations

from pathlib import Path


def read_user_file(
    path: str, label: str, expected: str, error: type[Exception]
) -> tuple[bytes, str]:
    """``(raw bytes, UTF-8 text)`` of the file at ``path``; ``error`` with a line starting
    with ``label`` (the field and value, ``workload.path=x``) when it is missing, a
    directory (``expected`` says what was wanted), unreadable, binary or not UTF-8.

    ``utf-8-sig``: editors on Windows like to prepend a byte-order mark.
    """
    try:
        raw = Path(path).expanduser().read_bytes()
    except FileNotFoundError:
        raise error(f"{label}: file not found") from None
    except IsADirectoryError:
        raise error(f"{label}: is a directory, expected {expected}") from None
    except OSError as exc:
        raise error(f"{label}: cannot read ({exc.strerror})") from None
    if b"\x00" in raw:  # binary: say so, not which byte failed to decode
        raise error(f"{label}: not a text file (it holds NUL bytes)")
    try:
        return raw, raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(f"{label}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
