"""The report's environment and measurement-settings sections: what the runs share, and
where they differ (per run in a small sweep, as values with their run counts beyond)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from runner.report.collect import SETTING_GROUPS
from runner.report.data import ReportData
from runner.report.format import markdown_table
from runner.report.variation import ABSENT, Variation
from runner.results import flatten

# Scheduler ids differ for every job by construction: listed per run, not as a difference.
JOB_ID_KEYS = ("slurm_job_id", "slurm_array_job_id", "slurm_array_task_id")


VALUES_LISTED = 4  # values of a differing setting listed in a large sweep


def _block(items: Mapping[str, Any]) -> str:
    body = "\n".join(f"{k}: {v}" for k, v in items.items())
    return f"```\n{body}\n```"


def _variation(per_run: Mapping[str, Mapping[str, Any]]) -> tuple[Variation, list[str]]:
    variation, labels = Variation(), []
    for label, values in per_run.items():
        variation.add(flatten(dict(values)) if values else {})
        labels.append(label)
    return variation, labels


def environment_markdown(env: Variation, labels: Sequence[str], per_run: bool) -> str:
    """One block when every run shares its environment; else the shared part and the keys
    that differ: per run (``per_run``) or as values with their run counts. Scheduler job
    ids are listed per run in small sweeps, never counted as differences."""
    if not env.filled:
        return "No environment recorded (no readable result)."
    shared, differing = env.shared(ignore=JOB_ID_KEYS), env.differing(ignore=JOB_ID_KEYS)
    parts = []
    if differing:
        parts.append(f"The environment differs between runs in: {', '.join(differing)}.")
        parts.append("### Shared by all runs\n\n" + _block(shared) if shared else "")
        if per_run:
            for i in env.filled:
                block = _block({k: env.value_at(k, i) for k in differing})
                parts.append(f"### {labels[i]}\n\n" + block)
        else:
            parts.append("### Differing\n\n" + _block({k: _counts(env, k) for k in differing}))
    else:
        parts.append(
            f"All {len(env.filled)} runs with a readable result share one environment.\n\n"
            + _block(shared)
        )
    job_keys = [k for k in JOB_ID_KEYS if k in env.keys]
    if job_keys and per_run:
        rows = pd.DataFrame(
            [
                [labels[i], *(_text(env.value_at(k, i)) for k in job_keys)]
                for i in env.filled
                if any(env.value_at(k, i) is not ABSENT for k in job_keys)
            ],
            columns=["run", *job_keys],
        )
        parts.append("### Scheduler job ids\n\n" + markdown_table(rows))
    elif job_keys:
        counts = ", ".join(f"{len(env.keys[k])} distinct {k}" for k in job_keys)
        parts.append(f"Scheduler job ids: {counts} (`environment` of each `result.json`).")
    return "\n\n".join(p for p in parts if p)


def _text(value: Any) -> str:
    return "" if value is ABSENT else str(value)


def _counts(variation: Variation, key: str) -> str:
    counts = variation.counts(key)
    shown = [f"{value} ({n} runs)" for value, n in counts[:VALUES_LISTED]]
    if len(counts) > VALUES_LISTED:
        shown.append(f"{len(counts) - VALUES_LISTED} more values")
    return "; ".join(shown)


def environment_section(environments: Mapping[str, Mapping[str, Any]]) -> str:
    """:func:`environment_markdown` of ``{label: environment}``, every run listed."""
    variation, labels = _variation(environments)
    return environment_markdown(variation, labels, per_run=True)


def settings_markdown(settings: Variation) -> str:
    """Measurement settings (config groups measure, energy, workload, model) shared by runs."""
    if not settings.filled:
        return "No configuration recorded."
    shared, differing = settings.shared(), settings.differing()
    text = _block(shared) if shared else "No setting is shared by all runs."
    if differing:
        text += f"\n\nDiffering between runs (see the factors): {', '.join(differing)}."
    return text


def settings_section(configs: Mapping[str, Mapping[str, Any]]) -> str:
    """:func:`settings_markdown` of ``{label: config}``."""
    flat = {
        label: {k: v for k, v in flatten(dict(cfg)).items() if k.split(".")[0] in SETTING_GROUPS}
        for label, cfg in configs.items()
    }
    return settings_markdown(_variation(flat)[0])


def environment_part(data: ReportData) -> str:
    labels = list(data.table["label"])
    return "## Environment\n\n" + environment_markdown(
        data.environments, labels, per_run=data.small
    )


def settings_part(data: ReportData) -> str:
    return "## Measurement settings\n\n" + settings_markdown(data.settings)
