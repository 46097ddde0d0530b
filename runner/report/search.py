"""The search section of a report: the trials of a ``hydra/sweeper=pareto`` search in the
order they ran, and the Pareto front it found (from the sweep's ``search.json``, written by
:mod:`runner.search.sweeper`; no Optuna needed to read it).

:func:`search_section` is the hook :func:`runner.report.build_report` calls: markdown to
append, and a figure of the front when there are two objectives or more.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from runner.report.metrics import describe

log = logging.getLogger(__name__)

SEARCH_FILE = "search.json"  # the sweeper's export (runner.search.sweeper.SEARCH_FILE)
PLOT_NAME = "search_pareto.png"


def read_search(paths: Iterable[Path]) -> dict[str, Any] | None:
    """The first readable ``search.json`` directly in one of ``paths``."""
    for path in paths:
        file = Path(path) / SEARCH_FILE
        try:
            data = json.loads(file.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("trials"), list):
            return data
    return None


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else "inf"
    return str(value)


def _params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(params.items()))


def trials_markdown(search: dict[str, Any]) -> str:
    """The section's markdown: settings, the front, every trial in order."""
    objectives = [str(o) for o in search.get("objectives") or []]
    constraints = [str(c) for c in search.get("constraints") or []]
    trials = [t for t in search["trials"] if isinstance(t, dict)]
    front = [t for t in trials if t.get("pareto")]
    out = ["", "## Search", ""]
    stopped = sum(t.get("status") == "interrupted" and t.get("state") == "FAIL" for t in trials)
    counted = f" ({stopped} interrupted, asked again)" if stopped else ""
    out.append(
        f"{len(trials)} trial(s){counted} of n_trials={search.get('n_trials')}, sampler "
        f"{search.get('sampler')}, objectives {', '.join(f'`{o}`' for o in objectives)}"
        + (
            f", constraints {', '.join(f'`{c}`' for c in constraints)} "
            f"(violations {search.get('violation')})"
            if constraints
            else ""
        )
        + "."
    )
    names = [o.rpartition(":")[0] for o in objectives]
    out += ["", f"### Pareto front ({len(front)} trial(s), feasible and not dominated)", ""]
    if front:
        out.append("| trial | " + " | ".join(["params", *names]) + " |")
        out.append("|" + "---|" * (2 + len(names)))
        for t in front:
            values = [_fmt(v) for v in t.get("values") or []]
            out.append(
                f"| {t.get('number')} | {_params(t.get('params') or {})} | "
                + " | ".join(values)
                + " |"
            )
    else:
        out.append("No feasible completed trial yet.")
    out += ["", "### Trials in order", ""]
    reasons = any(t.get("reason") for t in trials)
    out.append(
        "| trial | front | state | status | params | "
        + " | ".join(names)
        + (" | violations" if constraints else "")
        + (" | why FAIL" if reasons else "")
        + " |"
    )
    out.append("|" + "---|" * (5 + len(names) + bool(constraints) + reasons))
    for t in trials:
        values = t.get("values") or [None] * len(names)
        cells = [
            str(t.get("number")),
            "★" if t.get("pareto") else "",
            str(t.get("state")),
            str(t.get("status") or ""),
            _params(t.get("params") or {}),
            *["" if v is None else _fmt(v) for v in values],
        ]
        if constraints:
            cells.append(", ".join(_fmt(v) for v in t.get("violations") or []))
        if reasons:
            cells.append(str(t.get("reason") or "") if t.get("state") == "FAIL" else "")
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    out.append(
        "★: on the Pareto front. FAIL: the run did not end ok (or was interrupted: it is "
        "asked again when the search resumes), or an objective has no value (an unresolved "
        "energy figure, never a number that could win); PRUNED: a constraint was violated "
        "with search.violation=prune. Violations > 0 break a constraint."
    )
    return "\n".join(out)


def _axis(objective: str) -> str:
    """``e2e_ms_mean:minimize`` -> ``end-to-end request latency (ms), lower is better``."""
    name, _, direction = objective.rpartition(":")
    better = {"minimize": "lower is better", "maximize": "higher is better"}.get(direction, "")
    return describe(name or objective) + (f", {better}" if better else "")


def plot_front(search: dict[str, Any], path: Path) -> Path | None:
    """The first two objectives of every completed trial; the front as a step line,
    labelled by trial number where a label fits (trials of one point share a label)."""
    from runner.report.figure_kit import MAX_PX, place_labels, suptitle

    objectives = [str(o) for o in search.get("objectives") or []]
    done = [t for t in search["trials"] if isinstance(t, dict) and t.get("values")]
    if len(objectives) < 2 or not done:
        return None
    directions = [o.rpartition(":")[2] for o in objectives[:2]]
    fig = Figure(figsize=(8, 6), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    others = [t for t in done if not t.get("pareto")]
    front = sorted((t for t in done if t.get("pareto")), key=lambda t: t["values"][0])
    ax.scatter(
        [t["values"][0] for t in others],
        [t["values"][1] for t in others],
        c="0.6",
        label=f"other completed trials ({len(others)})",
    )
    # The front as a staircase: between two front points, what the better of them reaches.
    where = "post" if directions[0] == directions[1] else "pre"
    ax.step(
        [t["values"][0] for t in front],
        [t["values"][1] for t in front],
        where=where,
        c="tab:red",
        lw=1,
    )
    ax.scatter(
        [t["values"][0] for t in front],
        [t["values"][1] for t in front],
        c="tab:red",
        label=f"Pareto front ({len(front)})",
        zorder=3,
    )
    ax.set_xlabel(_axis(objectives[0]))
    ax.set_ylabel(_axis(objectives[1]))
    ax.grid(alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, fontsize=8, frameon=False)
    failed = sum(t.get("state") == "FAIL" for t in search["trials"] if isinstance(t, dict))
    text = "Search: completed trials and their Pareto front (labels: trial numbers)"
    if failed:
        text += f"; {failed} failed trial(s) not drawn (report.md says why)"
    suptitle(fig, text)
    points: dict[tuple[float, float], list[str]] = {}
    for t in [*front, *others]:
        points.setdefault((t["values"][0], t["values"][1]), []).append(str(t["number"]))
    place_labels(fig, ax, [(x, y, ", ".join(n)) for (x, y), n in points.items()])
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = fig.get_size_inches()
    fig.savefig(path, dpi=min(100, MAX_PX[0] / width, MAX_PX[1] / height))
    return path


def search_section(paths: Iterable[Path], plots_dir: Path) -> tuple[str, list[Path]]:
    """Markdown to append to ``report.md`` and the figure written (nothing without a
    ``search.json``). Never raises: a broken search file must not cost the report."""
    try:
        search = read_search(paths)
        if search is None:
            return "", []
        plot = plot_front(search, Path(plots_dir) / PLOT_NAME)
        text = trials_markdown(search)
        if plot is not None:
            text += f"\n\n![search: Pareto front]({Path(plots_dir).name}/{plot.name})"
        return text, [plot] if plot is not None else []
    except Exception as exc:
        log.warning("search section skipped: %s: %s", type(exc).__name__, exc)
        return "", []
