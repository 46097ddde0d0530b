"""``## Warnings`` of report.md: the runs' named warnings (silent fallbacks and hardware
findings the runner caught), grouped by kind, the part of the name before the dot
(``compile``, ``hardware``, ``serving``, ``warmup``), then by name, each with its runs and
their messages. Read from the ``named_warnings`` column (``name: message; ...``); library
warnings stay in each run's result."""

from __future__ import annotations

import re
from collections import defaultdict

import pandas as pd

from runner.report.data import ReportData

RUNS_LISTED = 10  # runs listed per warning name (all are in summary.csv)
COLUMN = "named_warnings"
# A warning's start: its dotted name and ": " (messages are one line, without such a name).
_NAME = r"[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)+"
_SPLIT = re.compile(rf"; (?={_NAME}: )")
_ONE = re.compile(rf"^({_NAME}): (.*)$", re.DOTALL)


def parse_named(cell: object) -> list[tuple[str, str]]:
    """``"a.b: x; c.d: y"`` -> ``[("a.b", "x"), ("c.d", "y")]`` (a part without a dotted
    name is kept whole, under the name ``other``)."""
    if not isinstance(cell, str) or not cell:
        return []
    out = []
    for part in _SPLIT.split(cell):
        match = _ONE.match(part)
        out.append((match.group(1), match.group(2)) if match else ("other", part))
    return out


def kind_of(name: str) -> str:
    """The group a warning is listed under: the part of its name before the first dot."""
    return name.split(".", 1)[0]


def grouped(df: pd.DataFrame) -> dict[str, dict[str, list[tuple[str, str]]]]:
    """``{kind: {name: [(run label, message), ...]}}``, kinds and names sorted, runs in the
    table's order."""
    found: dict[str, dict[str, list[tuple[str, str]]]] = defaultdict(lambda: defaultdict(list))
    if COLUMN not in df.columns:
        return {}
    for label, cell in zip(df["label"], df[COLUMN], strict=True):
        for name, message in parse_named(cell):
            found[kind_of(name)][name].append((str(label), message))
    return {k: {n: found[k][n] for n in sorted(found[k])} for k in sorted(found)}


def _runs(n: int) -> str:
    return f"{n} run{'s' if n != 1 else ''}"


def warnings_section(data: ReportData) -> str | None:
    groups = grouped(data.table)
    if not groups:
        return None
    lines = ["## Warnings"]
    for kind, names in groups.items():
        runs = len({label for said in names.values() for label, _ in said})
        lines += ["", f"### {kind} ({_runs(runs)})", ""]
        for name, said in names.items():
            lines.append(f"- `{name}` ({_runs(len(said))}):")
            lines += [f"  - `{label}`: {message}" for label, message in said[:RUNS_LISTED]]
            if len(said) > RUNS_LISTED:
                more = len(said) - RUNS_LISTED
                lines.append(f"  - and {more} more (`{COLUMN}` in `summary.csv`)")
    lines += [
        "",
        'Named warnings are fallbacks the runner caught (docs/methodology.md, "Warnings and '
        "silent fallbacks\"); `hardware.*`: throttling, clock drops and other processes' "
        "load inside a measured window, read from the run's time series. Every library "
        "warning is in each run's `result.json` (`warnings`, `warnings_detail`).",
    ]
    return "\n".join(lines)
