"""report.md's figures: every PNG drawn, and why the others were not."""

from __future__ import annotations

from pathlib import Path

from runner.report.data import ReportData


def figures_section(data: ReportData) -> str:
    out = ["## Figures", ""]
    figures = [f"![{Path(p).stem}]({Path(p).as_posix()})\n" for p in data.plots]
    out += figures or ["No figure drawn."]
    if data.skipped_plots:
        out += ["", "Not drawn:", ""] + [f"- {reason}" for reason in data.skipped_plots]
    return "\n".join(out).rstrip()
