"""report.md's methodology: how every figure, interval, effect and front is computed."""

from __future__ import annotations

from runner.measure.stats import MIN_CI_UNITS
from runner.report.compare import RATIO_METHOD
from runner.report.data import ReportData

METHODOLOGY = f"""\
- **Factors** are the runs' Hydra overrides; tables show those with more than one value,
  every override is a column of `summary.csv`; `—` or `(default)` means the run did not
  override that factor (the config default applied). Factors that change together in
  every run (`a = b`) are *aliased*: their effects cannot be told apart and are reported
  once.
- **TTFT**: time from the start of a `generate` call to each request's first token.
  **ITL** (inter-token latency): every gap between consecutive tokens of a request, pooled
  over requests. **E2E**: per-request end-to-end latency (until `generate` returned its
  batch). **out tok/s**: total output tokens / total measured time of the run
  (`output_tok_s`), never a mean of per-call rates, which would weight a fast call like a
  slow one (their distribution is `per_call_output_tok_s_*` in the CSV).
- **A run's 95% CI** (within the run): TTFT, ITL and E2E over the run's `generate` calls
  (the requests and token gaps of one call share its clock, so the unit is the call: a
  cluster-robust standard error), throughput over its complete measured passes (the
  ratio estimator of total tokens over total time). Intervals of these positive figures
  are on the log scale (`mean·exp(±t·SE/mean)`), so they stay positive and can be
  asymmetric; with fewer than {MIN_CI_UNITS} units there is none (`(no CI)`), rather than
  a t-interval on one degree of freedom. It describes the variability *within* a run:
  run-to-run variation (clocks, thermals, other tenants) is not in it, so repeat the
  sweep to see it. `repeat_cv` in the CSV is the coefficient of variation of throughput
  between the measured passes of a run.
- **Effects of a factor**: each level against the reference level (the baseline's, else
  the first level the command typed), as a ratio. Runs that agree on every other swept
  factor are matched (replicates averaged first); the ratio is the geometric mean of the
  matched ratios. Its CI: a Student-t interval on the logarithms over {MIN_CI_UNITS} or
  more pairs, simultaneous over the factor's levels (Bonferroni: 95% for a two-level
  factor); with 1 or 2 pairs, from the runs' own within-run CIs (marked †: run-to-run
  variation is not in it; perplexity pairs the two runs window by window); with no pair,
  the ratio of the level means over {MIN_CI_UNITS} or more runs per level (marked ‡: the
  other factors are not matched). *No detectable difference* means the CI includes 1;
  *not estimable* means there is no CI, and the cell says why. `effects.csv` has every
  level with `ci_basis` and `note`.
- **Main-effect figures**: per level, the mean over the ok runs at that level
  (marginalised over the other factors), with a 95% t-interval over runs where a level has
  {MIN_CI_UNITS} or more runs; otherwise the runs themselves are drawn as points, no bar.
  Coloured lines split it by a second factor of few levels when that factor matters.
  **Heatmaps**: the mean of each pair of levels of the two factors that matter most.
  **Box plots**: the spread of the runs' values at each level.
- **Peak memory** (MiB = 2^20 bytes): `cuda-max-allocated` (PyTorch's peak allocated CUDA
  memory) on GPU runs, `process-peak-rss` (peak resident set of the process) otherwise; the
  source of each run is in `peak_mem_source`.
- **Energy**: integrated once over the measured window by the energy backend (CodeCarbon:
  CPU, RAM and GPU components). *Gross* is all energy in the window, *net* is what
  `result.json` reports after removing the idle share; per token = energy / output tokens
  (mJ). Emissions (g CO2-eq) = energy × the carbon intensity the backend used. `*` marks
  runs where some component was estimated rather than measured (`energy_is_estimate`).
  Energy has no CI of its own (one integrated measurement per run). *Unresolved*: a
  measured time shorter than CodeCarbon's sampling interval (gross and net), or net
  energy at or below zero (net): not a number, never ranked, never on a front
  (`energy_unresolved` in the CSV says why).
- **Pareto front**: a run is on it when no other ok run has lower-or-equal latency *and*
  lower-or-equal energy per token (one of them strictly lower). Energy is net when every
  run has it (a number, or a reason it is unresolved) and some run has a number; else
  gross.
- **Perplexity** is ranked and compared only between runs that scored the same text with
  the same tokenizer (`perplexity_group`); across groups (another model) it is not.
- Failed, interrupted, partial and unreadable runs are listed, not drawn; an interrupted
  run's numbers cover only the part that was measured.
"""


def methodology_section(data: ReportData) -> str:
    text = "## Methodology\n\n" + METHODOLOGY.rstrip()
    if data.baseline is not None:
        text += (
            f"\n- **Ratios against the baseline**: {RATIO_METHOD}. Runs are assumed "
            "independent; `<column>_ci95_low/high` in the CSV hold the intervals."
        )
    return text
