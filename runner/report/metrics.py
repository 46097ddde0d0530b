"""The metrics a report ranks, compares and plots: one :class:`Metric` per table column.

Everything the report says about "the best point", "the effect of a factor" or a Pareto
front is written once, generic over a :class:`Metric`; a new headline metric (a quality
score, say) is one more entry in :data:`HEADLINE` with its column added by the table.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class Metric:
    """A per-run value in column ``column`` of the report table.

    ``ci_prefix``: the run's own 95% CI is in ``{ci_prefix}_ci95_low/high`` (None: the
    metric has no CI of its own). ``header``: short name for table headers.
    ``comparable_by``: a column whose value must be equal for two runs' values to be
    compared or ranked together (perplexity: the evaluation text as tokenized).
    ``paired``: every run is scored on the same units (perplexity: the same text windows),
    so runs are compared unit by unit; a run's own CI (over those units) would hide what
    the paired comparison resolves, and figures leave it out.
    """

    column: str
    title: str
    unit: str
    lower_is_better: bool = True
    ci_prefix: str | None = None
    header: str = ""
    comparable_by: str | None = None
    paired: bool = False

    @property
    def axis_label(self) -> str:
        return f"{self.title} ({self.unit})" if self.unit else self.title

    @property
    def ci_columns(self) -> tuple[str, str] | None:
        """The columns of the run's own 95% CI (low, high), or None."""
        p = self.ci_prefix
        return (f"{p}_ci95_low", f"{p}_ci95_high") if p else None

    @property
    def best_word(self) -> str:
        return "lowest" if self.lower_is_better else "highest"

    def has_data(self, df: pd.DataFrame) -> bool:
        """Some ok run has a value."""
        if self.column not in df.columns:
            return False
        return bool(df.loc[df["status"] == "ok", self.column].notna().any())

    def ranked(self, df: pd.DataFrame) -> pd.DataFrame:
        """Ok runs with a value, best first; ties keep the table's order (deterministic)."""
        ok = df[(df["status"] == "ok") & df[self.column].notna()]
        return ok.sort_values(self.column, ascending=self.lower_is_better, kind="stable")


E2E = Metric("e2e_ms_mean", "end-to-end request latency", "ms", True, "e2e_ms", "E2E ms")
TTFT = Metric("ttft_ms_mean", "time to first token", "ms", True, "ttft_ms", "TTFT ms")
ITL = Metric("itl_ms_mean", "inter-token latency", "ms", True, "itl_ms", "ITL ms")
# Total output tokens / total measured time (its CI over the run's complete passes).
THROUGHPUT = Metric(
    "output_tok_s", "output throughput", "tok/s", False, "output_tok_s", "out tok/s"
)
ENERGY_NET = Metric(
    "energy_per_token_mj_net", "energy per output token, net", "mJ", True, None, "mJ/tok net"
)
ENERGY_GROSS = Metric(
    "energy_per_token_mj_gross", "energy per output token, gross", "mJ", True, None, "mJ/tok gross"
)
PEAK_MEMORY = Metric("peak_mem_mib", "peak memory", "MiB", True, None, "peak MiB")
# Output quality (runner.report.quality): perplexity on the evaluation text, and token
# agreement with the reference run (the report's baseline, or the run's quality.reference).
PERPLEXITY = Metric(
    "perplexity",
    "perplexity",
    "",
    True,
    "perplexity",
    "ppl",
    comparable_by="perplexity_group",
    paired=True,
)
# Agreement is with one reference run: runs are ranked together only against the same one.
TOKEN_AGREEMENT = Metric(
    "token_agreement_mean",
    "token agreement",
    "fraction",
    False,
    "token_agreement",
    "token agree",
    comparable_by="agreement_reference",
)
QUALITY = (PERPLEXITY, TOKEN_AGREEMENT)
# Against the hardware's limit (metrics.roofline): fractions of the measured peaks.
DECODE_BW_UTIL = Metric(
    "decode_bw_util",
    "decode bandwidth, share of the measured peak",
    "fraction",
    False,
    None,
    "decode BW util",
)
PREFILL_COMPUTE_UTIL = Metric(
    "prefill_compute_util",
    "prefill compute, share of the measured peak",
    "fraction",
    False,
    None,
    "prefill util",
)

# In the order the report lists them; latency first (the metric most sweeps are about).
HEADLINE: tuple[Metric, ...] = (E2E, TTFT, ITL, THROUGHPUT, ENERGY_NET, PEAK_MEMORY, PERPLEXITY)
LATENCIES = (E2E, ITL, TTFT)  # the primary latency: the first with data
KNOWN = {
    m.column: m
    for m in (*HEADLINE, ENERGY_GROSS, TOKEN_AGREEMENT, DECODE_BW_UTIL, PREFILL_COMPUTE_UTIL)
}


def describe(name: str) -> str:
    """A figure's name in words with its unit (``e2e_ms_mean`` -> ``end-to-end request
    latency (ms)``); a name the report has no words for is given as it is."""
    metric = KNOWN.get(name)
    return metric.axis_label if metric is not None else name


UNRESOLVED = "energy_unresolved"  # column: why a run's energy figures are not numbers
_BOTH = "gross and net"


def unresolved_text(reasons: dict[str, str]) -> str | None:
    """The :data:`UNRESOLVED` cell of ``{figure: reason}`` (what
    :func:`runner.sections.energy.unresolved` gives): ``"net: <reason>"`` or
    ``"gross and net: <reason>"``; None when every figure stands."""
    if not reasons:
        return None
    return f"{_BOTH if 'gross' in reasons else 'net'}: {reasons['net']}"


def unresolved_figures(text: object) -> dict[str, str]:
    """The ``{figure: reason}`` an :data:`UNRESOLVED` cell says (empty for none)."""
    if not isinstance(text, str) or ":" not in text:
        return {}
    which, reason = (part.strip() for part in text.split(":", 1))
    return {f: reason for f in (("gross", "net") if which == _BOTH else ("net",))}


def unresolved_runs(df: pd.DataFrame, figure: str = "net") -> pd.DataFrame:
    """Ok runs whose energy ``figure`` is unresolved."""
    if UNRESOLVED not in df.columns:
        return df.iloc[:0]
    mask = (df["status"] == "ok") & df[UNRESOLVED].map(lambda r: figure in unresolved_figures(r))
    return df[mask]


def energy_metric(df: pd.DataFrame) -> Metric | None:
    """Energy per token: net when some ok run has a net value and every ok run with energy
    has one or a reason why it is unresolved; else gross; None when no ok run has energy.
    (Net unresolved in every run, as when each idle baseline exceeded its load: gross.)"""
    ok = df[df["status"] == "ok"]
    said = ok[UNRESOLVED].notna() if UNRESOLVED in ok.columns else pd.Series(False, ok.index)
    gross, net = ok[ENERGY_GROSS.column].notna(), ok[ENERGY_NET.column].notna()
    has_energy = gross | net | said
    if not has_energy.any():
        return None
    if net.any() and (net | said)[has_energy].all():
        return ENERGY_NET
    return ENERGY_GROSS


def latency_metric(df: pd.DataFrame) -> Metric | None:
    """The primary latency: mean end-to-end request latency, else ITL, else TTFT."""
    return next((m for m in LATENCIES if m.has_data(df)), None)


def headline_metrics(df: pd.DataFrame) -> list[Metric]:
    """:data:`HEADLINE` metrics that some ok run has (energy as :func:`energy_metric`)."""
    energy = energy_metric(df)
    out = []
    for metric in HEADLINE:
        if metric in (ENERGY_NET, ENERGY_GROSS):
            metric = energy
        if metric is not None and metric.has_data(df):
            out.append(metric)
    return out


def quality_metrics(df: pd.DataFrame) -> list[Metric]:
    """:data:`QUALITY` metrics that some ok run has."""
    return [m for m in QUALITY if m.has_data(df)]


def summary_metrics(df: pd.DataFrame) -> list[Metric]:
    """The few metrics effects and figures are drawn for: the primary latency,
    throughput, energy per token, peak memory and quality (those with data)."""
    wanted = [latency_metric(df), THROUGHPUT, energy_metric(df), PEAK_MEMORY]
    return [m for m in wanted if m is not None and m.has_data(df)] + quality_metrics(df)
