"""report.md's runs that did not complete: grouped by cause, with the commands that rerun them."""

from __future__ import annotations

from runner.report.data import ReportData
from runner.report.failures import failure_groups
from runner.report.summary_section import status_line

FAILED_RUNS_LISTED = 10  # run directories listed per failure group


def failures_section(data: ReportData) -> str | None:
    groups = failure_groups(data.table)
    if not groups:
        return None
    bad = sum(len(g.rows) for g in groups)
    lines = [
        "## Runs that did not complete",
        "",
        f"{bad} of {len(data.table)} runs: {status_line(data.table[data.table['status'] != 'ok'])}"
        ". They are not in the figures, the best points or the effects; each is in "
        "`summary.csv` with its `status` and `error`.",
    ]
    for group in groups:
        n = len(group.rows)
        lines += ["", f"### {group.status}: {group.cause} ({n} run{'s' if n > 1 else ''})", ""]
        if n > 1 or group.example != group.cause:
            lines += [f"Example: {group.example}", ""]
        listed = group.rows["run_dir"].iloc[:FAILED_RUNS_LISTED]
        lines += [f"- `{d}`" for d in listed]
        if n > len(listed):
            lines.append(f"- and {n - len(listed)} more")
        if group.commands:
            note = (
                " (once it has stopped: a run in progress holds its lock)"
                if (group.status == "partial")
                else ""
            )
            lines += [
                "",
                f"Rerun{note}; points already `ok` are skipped:",
                "",
                "```bash",
                *group.commands,
                "```",
            ]
    return "\n".join(lines)
