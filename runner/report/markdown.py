"""``report.md`` and the terminal table: pure functions of the report table and run metadata."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from runner.report import quality
from runner.report.collect import STATUSES, swept_factors
from runner.report.compare import RATIO_METHOD, pareto_axes, pareto_front
from runner.results import flatten

# (header, column prefix with _mean/_ci95_low/_ci95_high, or a plain column)
CI_COLUMNS = [
    ("TTFT ms", "ttft_ms"),
    ("ITL ms", "itl_ms"),
    ("E2E ms", "e2e_ms"),
    ("out tok/s", "output_tok_s"),
]
PLAIN_COLUMNS = [
    ("peak MiB", "peak_mem_mib"),
    ("mJ/tok gross", "energy_per_token_mj_gross"),
    ("mJ/tok net", "energy_per_token_mj_net"),
    ("CO2 g", "emissions_g"),
]
RATIO_COLUMNS = [
    ("speed-up", "speedup_output_tok_s"),
    ("TTFT ×", "ttft_ratio"),
    ("energy ×", "energy_per_token_ratio"),
]
# Scheduler ids differ for every job by construction: listed per run, not as a difference.
JOB_ID_KEYS = ("slurm_job_id", "slurm_array_job_id", "slurm_array_task_id")
SETTING_GROUPS = ("measure", "energy", "workload", "model")


def fmt_num(value: Any) -> str:
    """A number with 3-4 significant digits; ``""`` for NaN/None."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return "" if value is None else str(value)
    if not math.isfinite(x):
        return ""
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.1f}"
    if abs(x) >= 1:
        return f"{x:.2f}"
    return f"{x:#.3g}"


def fmt_ci(mean: Any, low: Any, high: Any) -> str:
    """``mean ± half`` for a symmetric CI, ``mean [low, high]`` otherwise, or just the mean."""
    text = fmt_num(mean)
    if not (text and fmt_num(low) and fmt_num(high)):
        return text
    m, lo, hi = float(mean), float(low), float(high)
    if math.isclose(hi - m, m - lo, rel_tol=1e-6, abs_tol=1e-12 * max(1.0, abs(m))):
        return f"{text} ± {fmt_num(hi - m)}"
    return f"{text} [{fmt_num(lo)}, {fmt_num(hi)}]"


def _has(df: pd.DataFrame, column: str) -> bool:
    return column in df.columns and df[column].notna().any()


def display_table(df: pd.DataFrame, error_width: int | None = 60) -> pd.DataFrame:
    """Strings for people: swept factors, status, means with [95% CI], ratios, errors.

    Columns with no value in any row are left out; ``*`` marks estimated energy;
    ``error_width`` truncates the error column (None keeps it whole, 0 drops it).
    """
    factors = swept_factors(df)
    out = pd.DataFrame(index=df.index)
    if factors:
        for factor in factors:
            out[factor] = [("—" if pd.isna(v) else str(v)) for v in df[factor]]
    else:
        out["run"] = df["label"]
    out["status"] = df["status"]
    for header, prefix in CI_COLUMNS:
        if _has(df, f"{prefix}_mean"):
            out[header] = [
                fmt_ci(m, lo, hi)
                for m, lo, hi in zip(
                    df[f"{prefix}_mean"],
                    df[f"{prefix}_ci95_low"],
                    df[f"{prefix}_ci95_high"],
                    strict=True,
                )
            ]
    estimate = [v is True for v in df["energy_is_estimate"]]
    for header, column in PLAIN_COLUMNS:
        if _has(df, column):
            mark = column.startswith("energy") or column == "emissions_g"
            out[header] = [
                fmt_num(v) + ("*" if mark and e and fmt_num(v) else "")
                for v, e in zip(df[column], estimate, strict=True)
            ]
    for header, cells in quality.display_columns(df, fmt_ci).items():
        out[header] = cells
    for header, column in RATIO_COLUMNS:
        if _has(df, column):
            out[header] = [
                "baseline" if base else fmt_ci(r, lo, hi)
                for r, lo, hi, base in zip(
                    df[column],
                    df[f"{column}_ci95_low"],
                    df[f"{column}_ci95_high"],
                    df.get("is_baseline", pd.Series(False, index=df.index)),
                    strict=True,
                )
            ]
    if error_width != 0 and df["error"].notna().any():
        errors = ["" if pd.isna(e) else str(e) for e in df["error"]]
        if error_width:
            errors = [e if len(e) <= error_width else e[: error_width - 1] + "…" for e in errors]
        out["error"] = errors
    return out.reset_index(drop=True)


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub pipe table of a frame of strings."""

    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = [
        "| " + " | ".join(cell(c) for c in frame.columns) + " |",
        "|" + "|".join("---" for _ in frame.columns) + "|",
    ]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(False)]
    return "\n".join(lines)


def _block(items: Mapping[str, Any]) -> str:
    body = "\n".join(f"{k}: {v}" for k, v in items.items())
    return f"```\n{body}\n```"


def _shared_and_differing(
    per_run: Mapping[str, Mapping[str, Any]], ignore: Sequence[str] = ()
) -> tuple[dict[str, Any], list[str]]:
    keys: list[str] = []
    for values in per_run.values():
        keys += [k for k in values if k not in keys and k not in ignore]
    shared, differing = {}, []
    for key in keys:
        seen = {repr(values.get(key)) for values in per_run.values()}
        if len(seen) == 1:
            shared[key] = next(iter(per_run.values())).get(key)
        else:
            differing.append(key)
    return shared, differing


def environment_section(environments: Mapping[str, Mapping[str, Any]]) -> str:
    """One block when every run shares its environment; else the shared part plus, per run,
    the keys that differ. Scheduler job ids are listed per run, not counted as differences.
    """
    flat = {label: flatten(dict(env)) for label, env in environments.items() if env}
    if not flat:
        return "No environment recorded (no readable result)."
    shared, differing = _shared_and_differing(flat, ignore=JOB_ID_KEYS)
    parts = []
    if differing:
        parts.append(f"The environment differs between runs in: {', '.join(differing)}.")
        parts.append("### Shared by all runs\n\n" + _block(shared) if shared else "")
        for label, env in flat.items():
            parts.append(f"### {label}\n\n" + _block({k: env.get(k) for k in differing}))
    else:
        parts.append(
            f"All {len(flat)} runs with a readable result share one environment.\n\n"
            + _block(shared)
        )
    job_keys = [k for k in JOB_ID_KEYS if any(k in env for env in flat.values())]
    if job_keys:
        rows = pd.DataFrame(
            [[label, *(str(env.get(k, "")) for k in job_keys)] for label, env in flat.items()],
            columns=["run", *job_keys],
        )
        parts.append("### Scheduler job ids\n\n" + markdown_table(rows))
    return "\n\n".join(p for p in parts if p)


def settings_section(configs: Mapping[str, Mapping[str, Any]]) -> str:
    """Measurement settings (config groups measure, energy, workload, model) shared by runs."""
    flat = {
        label: {k: v for k, v in flatten(dict(cfg)).items() if k.split(".")[0] in SETTING_GROUPS}
        for label, cfg in configs.items()
        if cfg
    }
    if not flat:
        return "No configuration recorded."
    shared, differing = _shared_and_differing(flat)
    text = _block(shared) if shared else "No setting is shared by all runs."
    if differing:
        text += f"\n\nDiffering between runs (see the factors): {', '.join(differing)}."
    return text


METHODOLOGY = """\
- **One row per run** (one job of the sweep). Factor columns are the job's Hydra overrides;
  only factors with more than one value are shown here, every override is in `summary.csv`;
  `—` means the run did not override that factor (the config default applied).
- **TTFT**: time from the start of a `generate` call to each request's first token.
  **ITL** (inter-token latency): every gap between consecutive tokens of a request, pooled
  over requests. **E2E**: per-request end-to-end latency (until `generate` returned its
  batch). **out tok/s**: output tokens / wall time of each batch, averaged over batches
  (`output_tok_s_total` in the CSV is total tokens / total measured time).
- **Means and 95% CIs**: `mean [low, high]` is the mean over the samples of one run
  (requests, token gaps or batches) with a two-sided Student-t 95% interval over
  independent units (`runner/measure/stats.py`): the requests and token gaps of one
  `generate` call share its clock, so TTFT, ITL and E2E intervals use a cluster-robust
  standard error over calls (`ci_unit`, `ci_units` in `result.json`). It describes the
  variability *within* a run only: run-to-run variation (clocks, thermals, other tenants)
  is not in it, so repeat the sweep to see it. `repeat_cv` in the CSV is the
  coefficient of variation of throughput between the measured passes of a run.
- **Peak memory** (MiB = 2^20 bytes): `cuda-max-allocated` (PyTorch's peak allocated CUDA
  memory) on GPU runs, `process-peak-rss` (peak resident set of the process) otherwise; the
  source of each run is in `peak_mem_source`.
- **Energy**: integrated once over the measured window by the energy backend (CodeCarbon:
  CPU, RAM and GPU components). *Gross* is all energy in the window, *net* is what
  `result.json` reports after removing the idle share; per token = energy / output tokens
  (mJ). Emissions (g CO2-eq) = energy × the carbon intensity the backend used. `*` marks
  runs where some component was estimated rather than measured (`energy_is_estimate`).
  Energy has no CI of its own (one integrated measurement per run).
- **Pareto front**: a run is on it when no other ok run has lower-or-equal latency *and*
  lower-or-equal energy per token (one of them strictly lower). Energy is net when every
  run has it, else gross.
- **Bar charts**: one bar per ok run, grouped by the other swept factors; error bars are the
  run's own 95% CI (throughput); runs that share every factor value are averaged, with a
  t-interval across them (the only error bars energy gets).
- Failed, interrupted, partial and unreadable runs are listed, not drawn; an interrupted
  run's numbers cover only the part that was measured.
"""


def _status_line(df: pd.DataFrame) -> str:
    counts = df["status"].value_counts()
    return ", ".join(f"{counts[s]} {s}" for s in STATUSES if s in counts)


def _pareto_lines(df: pd.DataFrame) -> str:
    axes = pareto_axes(df)
    if axes is None:
        return "No energy measured: no Pareto front."
    ok = df[(df["status"] == "ok") & df[axes[0]].notna() & df[axes[1]].notna()]
    front = ok[pareto_front(list(ok[axes[0]]), list(ok[axes[1]]))]
    items = "\n".join(
        f"- {r['label']}: {fmt_num(r[axes[0]])} ms, {fmt_num(r[axes[1]])} mJ/token"
        for _, r in front.sort_values(axes[0]).iterrows()
    )
    return f"Axes: `{axes[0]}` against `{axes[1]}`. Runs on the front:\n\n{items}"


def render_report(
    df: pd.DataFrame,
    *,
    environments: Mapping[str, Mapping[str, Any]],
    configs: Mapping[str, Mapping[str, Any]] | None = None,
    plots: Sequence[Path] = (),
    skipped_plots: Sequence[str] = (),
    baseline_label: str | None = None,
    sources: Sequence[str] = (),
) -> str:
    """The whole ``report.md``; ``plots`` are paths relative to the report's folder."""
    out = ["# Benchmark report", ""]
    where = f" from {', '.join(f'`{s}`' for s in sources)}" if sources else ""
    out.append(f"{len(df)} runs{where}: {_status_line(df)}.")
    if baseline_label:
        out += [
            "",
            f"Baseline: **{baseline_label}**. Relative columns are run / baseline "
            "(speed-up > 1 is faster, ratios < 1 are lower TTFT or energy).",
        ]
    out += ["", "## Results", "", markdown_table(display_table(df, error_width=0)), ""]
    out.append(
        "Values: mean ± 95% CI half-width; ratios: value [95% CI]; `*`: energy partly "
        "estimated. Units: ms, output tokens/s, "
        "MiB, mJ per output token, g CO2-eq. Full table: `summary.csv`, `summary.parquet`."
    )
    bad = df[df["status"] != "ok"]
    if len(bad):
        out += ["", "## Runs that did not complete", ""]
        out += [
            f"- **{r['status']}** `{r['run_dir']}`: {r['error'] or 'no reason recorded'}"
            for _, r in bad.iterrows()
        ]
    out += ["", "## Energy/latency Pareto front", "", _pareto_lines(df), ""]
    energy_axes = pareto_axes(df)
    quality_text = quality.section(df, energy_axes and energy_axes[1], pareto_front, fmt_num)
    out += [quality_text, ""] if quality_text else []
    out += ["## Figures", ""]
    figures = [f"![{Path(p).stem}]({Path(p).as_posix()})\n" for p in plots]
    out += figures or ["No figure drawn."]
    if skipped_plots:
        out += ["", "Not drawn:", ""] + [f"- {reason}" for reason in skipped_plots]
    out += ["", "## Environment", "", environment_section(environments)]
    if configs is not None:
        out += ["", "## Measurement settings", "", settings_section(configs)]
    out += ["", "## Methodology", "", METHODOLOGY.rstrip()]
    if baseline_label:
        out.append(
            f"- **Ratios against the baseline**: {RATIO_METHOD}. Runs are assumed "
            "independent; `<column>_ci95_low/high` in the CSV hold the intervals."
        )
    return "\n".join(out)
