"""The command that made a sweep, read back from its ``multirun.yaml``: the order in which
the user typed each factor's levels, and commands a person can read to rerun part of it.

Hydra records the sweep's overrides in ``multirun.yaml``: ``hydra.overrides.task`` is what
the user typed for the task (``quant=none,int8,nf4``), ``hydra.overrides.hydra`` the Hydra
settings, the user's (a launcher, the report's baseline) and those ``python -m runner``
adds itself (the job-naming keys), which a rerun adds again and so leaves out.
"""

from __future__ import annotations

import functools
import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from runner.config.dirname import EXCLUDE_KEYS
from runner.config.overrides import parse, read

MULTIRUN_FILE = "multirun.yaml"
RERUN = "python -m runner"
# Hydra settings a rerun sets itself, or that name the old run.
DROPPED_HYDRA = (
    "hydra.mode",
    "hydra.sweep.dir",
    "hydra.run.dir",
    "hydra.sweep.subdir",
    EXCLUDE_KEYS,
)
_PLAIN = re.compile(r"^[A-Za-z0-9_@%+=:,./~-]+$")
_DOUBLE_QUOTE_SPECIAL = set('"$`\\!')


@dataclass(frozen=True)
class SweepCommand:
    """A sweep's overrides as typed: Hydra settings (those a rerun sets itself left out)
    and the task's."""

    hydra: tuple[str, ...]
    task: tuple[str, ...]
    search: bool = False  # a search (hydra/sweeper=pareto): rerun means resume it whole


@functools.lru_cache(maxsize=64)
def read_sweep_command(sweep_dir: str) -> SweepCommand | None:
    """The command that wrote ``sweep_dir`` (its ``multirun.yaml``), or None."""
    try:
        import yaml

        data = yaml.safe_load((Path(sweep_dir) / MULTIRUN_FILE).read_text())
        overrides = data["hydra"]["overrides"]
        hydra = [str(o) for o in overrides.get("hydra") or []]
        task = [str(o) for o in overrides.get("task") or []]
        target = str(((data["hydra"].get("sweeper") or {}).get("_target_")) or "")
    except Exception:
        return None
    hydra = [o for o in hydra if not o.lstrip("+~").startswith(DROPPED_HYDRA)]
    return SweepCommand(tuple(hydra), tuple(task), search="Pareto" in target)


def typed_levels(task: Sequence[str]) -> dict[str, list[str]]:
    """Each swept key's values in the order the command gives them, as the report reads a
    job's override value (``quant=none,int8`` -> ``{"quant": ["none", "int8"]}``).
    Intervals have no values to list and are left out; an unreadable command gives {}."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import Transformer

    out: dict[str, list[str]] = {}
    try:
        parsed = OverridesParser.create().parse_overrides(list(task))
        settings = parse(task)
    except Exception:
        return {}
    for o, setting in zip(parsed, settings, strict=True):
        if not o.is_sweep_override() or o.is_interval_sweep() or setting.is_hydra:
            continue
        values: list[str] = []
        for encoded in o.sweep_iterator(transformer=Transformer.encode):
            value = read(f"{setting.key}={encoded}").value
            text = "" if value is None else str(value)
            if text not in values:
                values.append(text)
        out[setting.key] = values
    return out


def sources_levels(sweep_dirs: Iterable[Path]) -> dict[str, list[str]]:
    """:func:`typed_levels` of every sweep that has a ``multirun.yaml``, merged in order
    (a key's first sweep gives its order; later sweeps add levels after)."""
    out: dict[str, list[str]] = {}
    for sweep_dir in sweep_dirs:
        command = read_sweep_command(str(sweep_dir))
        if command is None:
            continue
        for key, values in typed_levels(command.task).items():
            known = out.setdefault(key, [])
            known += [v for v in values if v not in known]
    return out


def shell_word(text: str) -> str:
    """``text`` as one shell word a person can read: bare when it needs no quoting, in
    single quotes when it holds none, in double quotes when it holds single quotes but
    nothing double quotes would expand; :func:`shlex.quote` otherwise."""
    if _PLAIN.match(text):
        return text
    if "'" not in text:
        return f"'{text}'"
    if not _DOUBLE_QUOTE_SPECIAL & set(text):
        return f'"{text}"'
    return shlex.quote(text)


def command_line(overrides: Iterable[str], multirun: bool = True) -> str:
    """``python -m runner -m <overrides>``, each override one readable shell word."""
    words = [RERUN, *(["-m"] if multirun else []), *map(shell_word, overrides)]
    return " ".join(words)


def restricted(task: Sequence[str], runs: list[list[str]]) -> list[str] | None:
    """The sweep's task overrides with each swept key limited to the values of ``runs``
    (each run's own overrides). A key the runs have one value of is written
    ``choice(value)`` so that it stays a swept key, and the jobs keep their directory names
    (which name the swept keys only). None when no safe command can be built."""
    try:
        settings = parse(list(task))
        swept = {s.key for s in settings if s.swept}
        values: dict[str, list[str]] = {k: [] for k in swept}
        for overrides in runs:
            for setting in parse(overrides):
                if setting.key in values and "=" in setting.text:
                    raw = setting.text.split("=", 1)[1]
                    if raw not in values[setting.key]:
                        values[setting.key].append(raw)
        order = typed_levels(task)
        out = []
        for text, setting in zip(task, settings, strict=True):
            if setting.key not in swept:
                out.append(text)
                continue
            typed = order.get(setting.key, [])
            vals = sorted(values[setting.key], key=lambda v: typed.index(v) if v in typed else 1e9)
            if not vals:
                return None
            prefix = text.split("=", 1)[0]
            joined = ",".join(vals) if len(vals) > 1 else f"choice({vals[0]})"
            out.append(f"{prefix}={joined}")
        parse(out)  # a value Hydra cannot read back: no command rather than a wrong one
    except Exception:
        return None
    return out


REPEAT_ORDER_FILE = "repeat_order.json"  # written by the grid sweeper (repeat.count > 1)


def repeat_order(sweep_dirs: Iterable[Path]) -> dict[str, object]:
    """How the first sweep with repeats ran them: ``count``, ``order``, ``seed``, ``jobs``
    (override lists in launch order); {} when none recorded it."""
    import json

    for sweep_dir in sweep_dirs:
        try:
            data = json.loads((Path(sweep_dir) / REPEAT_ORDER_FILE).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and "order" in data:
            return data
    return {}
