"""The named figures of a result: the report's headline columns, a search's objectives and
constraints, the metrics logged to a tracker. One registry, so the list of valid names is
one fact.

A name is either a headline figure (:data:`FIGURES`, in the unit its name says: ``*_ms_*``
milliseconds, ``*output_tok_s*`` output tokens per second (``output_tok_s``: total tokens
over total measured time; ``per_call_output_tok_s_*``: the distribution of each call's
own rate), ``*_mib`` mebibytes,
``energy_per_token_mj_*`` millijoules per output token, ``emissions_g`` grams CO2-eq,
``*_util`` a fraction of the machine's measured peak, higher is better; an
unresolved energy figure is absent, see :func:`runner.sections.energy.unresolved`) or a
numeric key of a typed result section, dotted as in ``result.json``
(``metrics.ttft_seconds.p99``, ``energy.net_joules``). The sections are read from
:class:`runner.results.RunResult`'s fields, so a section added there (``quality``) is
nameable without a change here.
"""

from __future__ import annotations

import functools
import math
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, is_dataclass
from typing import Any

from runner.sections.base import Section
from runner.sections.energy import Energy, unresolved
from runner.sections.hardware import Roofline
from runner.sections.metrics import Latency, Metrics, Stats, Throughput
from runner.sections.serving import QUANTILES, Percentiles, Quantile, Serving

MIB = 2**20
MEAN_CI = ("mean", "ci95_low", "ci95_high")  # fields of Stats


@dataclass(frozen=True)
class Figure:
    """A headline figure: its getter (over the typed sections), whether it needs energy,
    and which energy figure (``gross`` or ``net``) it is absent with when that one is
    unresolved (:func:`runner.sections.energy.unresolved`)."""

    name: str
    get: Callable[[Metrics, Energy], float | int | None]
    energy: bool = False
    follows: str | None = None


def _distribution(
    prefix: str, dist_of: Callable[[Latency], Stats | None], scale: float, stats: tuple[str, ...]
) -> list[Figure]:
    def getter(stat: str) -> Callable[[Metrics, Energy], float | None]:
        def get(m: Metrics, _e: Energy) -> float | None:
            value = getattr(dist_of(m.latency or Latency()) or Stats(), stat)
            return None if value is None else value * scale

        return get

    return [Figure(f"{prefix}_{stat}", getter(stat)) for stat in stats]


def _scaled(value: float | int | None, scale: float) -> float | None:
    return None if value is None else value * scale


def _lat(m: Metrics) -> Latency:
    return m.latency or Latency()


def _throughput(m: Metrics) -> Throughput:
    return _lat(m).throughput or Throughput()


def _serving(m: Metrics) -> Serving:
    return m.serving or Serving()


def _percentile_figures(prefix: str, of: Callable[[Serving], Percentiles]) -> list[Figure]:
    """``{prefix}_p50`` ... with ``_ci95_low/high``, in ms, from ``metrics.serving``."""
    out = []
    for p in QUANTILES:
        for part, suffix in (("value", ""), ("ci95_low", "_ci95_low"), ("ci95_high", "_ci95_high")):

            def get(m: Metrics, _e: Energy, p: str = p, part: str = part) -> float | None:
                q: Quantile = getattr(of(_serving(m)), p)
                return _scaled(getattr(q, part), 1e3)

            out.append(Figure(f"{prefix}_{p}{suffix}", get))
    return out


def _roofline(m: Metrics) -> Roofline:
    return m.roofline or Roofline()


def _per_slo_request(m: Metrics, e: Energy) -> float | None:
    met = _serving(m).slo_met_requests
    return None if not met or e.net_joules is None else e.net_joules / met


def _serving_figures() -> list[Figure]:
    """Under load (scenario=online; absent offline): the rates of the steady-state window,
    the SLO's share and goodput, latency percentiles, energy per request."""
    return [
        Figure("offered_rps", lambda m, e: _serving(m).offered_requests_per_second),
        Figure("achieved_rps", lambda m, e: _serving(m).achieved_requests_per_second),
        Figure("goodput_rps", lambda m, e: _serving(m).goodput_requests_per_second),
        Figure("slo_attainment", lambda m, e: _serving(m).slo_attainment),
        # The objectives themselves, so the report can say what the capacity is at.
        Figure("slo_target", lambda m, e: _serving(m).slo_attainment_target),
        Figure("slo_ttft_ms", lambda m, e: _scaled(_serving(m).slo_ttft_seconds, 1e3)),
        Figure("slo_itl_ms", lambda m, e: _scaled(_serving(m).slo_itl_seconds, 1e3)),
        Figure("slo_e2e_ms", lambda m, e: _scaled(_serving(m).slo_e2e_seconds, 1e3)),
        *_percentile_figures("ttft_ms", lambda s: s.ttft_seconds),
        *_percentile_figures("itl_ms", lambda s: s.itl_seconds),
        *_percentile_figures("e2e_ms", lambda s: s.e2e_seconds),
        Figure(
            "energy_per_request_j_gross",
            lambda m, e: e.per_request_joules.gross if m.serving else None,
            energy=True,
            follows="gross",
        ),
        Figure(
            "energy_per_request_j_net",
            lambda m, e: e.per_request_joules.net if m.serving else None,
            energy=True,
            follows="net",
        ),
        # The window's net energy over its requests that met every objective.
        Figure("energy_per_slo_request_j_net", _per_slo_request, energy=True, follows="net"),
    ]


_LIST = [
    *_distribution("ttft_ms", lambda lat: lat.ttft_seconds, 1e3, (*MEAN_CI, "p95")),
    *_distribution("itl_ms", lambda lat: lat.itl_seconds, 1e3, (*MEAN_CI, "p95")),
    *_distribution("e2e_ms", lambda lat: lat.e2e_request_seconds, 1e3, (*MEAN_CI, "p95")),
    # The headline rate: total output tokens / total measured seconds, CI over passes.
    Figure("output_tok_s", lambda m, e: _throughput(m).output_tokens_per_second),
    Figure("output_tok_s_ci95_low", lambda m, e: _throughput(m).output_tokens_per_second_ci95_low),
    Figure(
        "output_tok_s_ci95_high", lambda m, e: _throughput(m).output_tokens_per_second_ci95_high
    ),
    # Each call's own rate, a distribution: its mean weights a fast call like a slow one.
    *_distribution("per_call_output_tok_s", lambda lat: lat.output_tokens_per_second, 1.0, MEAN_CI),
    Figure("repeat_cv", lambda m, e: (_lat(m).throughput_per_repeat or Stats()).cv),
    Figure("peak_mem_mib", lambda m, e: _scaled(m.memory.peak_bytes, 1 / MIB)),
    Figure("model_footprint_mib", lambda m, e: _scaled(m.memory.model_footprint_bytes, 1 / MIB)),
    Figure(
        "energy_per_token_mj_gross",
        lambda m, e: _scaled(e.per_output_token_joules.gross, 1e3),
        energy=True,
        follows="gross",
    ),
    Figure(
        "energy_per_token_mj_net",
        lambda m, e: _scaled(e.per_output_token_joules.net, 1e3),
        energy=True,
        follows="net",
    ),
    Figure("emissions_g", lambda m, e: _scaled(e.emissions_kg, 1e3), energy=True, follows="gross"),
    *_serving_figures(),
    # Against the hardware's limit (metrics.roofline): fractions of the measured peaks.
    Figure("decode_bw_util", lambda m, e: _roofline(m).decode_bandwidth_util),
    Figure("prefill_compute_util", lambda m, e: _roofline(m).prefill_compute_util),
    Figure("repeats", lambda m, e: m.repeats),
    Figure("requests", lambda m, e: _lat(m).requests),
    Figure("output_tokens", lambda m, e: _lat(m).output_tokens),
]
FIGURES: dict[str, Figure] = {f.name: f for f in _LIST}
# Names that meant something else before: a search or query naming one is told what to use.
RENAMED = {
    "output_tok_s_mean": "per_call_output_tok_s_mean (the mean of per-call rates); the "
    "headline rate is output_tok_s (total output tokens / total measured time)",
    "output_tok_s_total": "output_tok_s",
}


def finite_or_nan(value: Any) -> float:
    """A finite number as float, else NaN (None, bools and text included)."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    number = float(value)
    return number if math.isfinite(number) else math.nan


def headline_numbers(metrics: Metrics, energy: Energy | None) -> dict[str, float]:
    """Every headline figure of one run, NaN where absent or unresolved (a physically
    impossible or unmeasured energy never stands as a number)."""
    energy = energy or Energy()
    reasons = unresolved(energy)
    return {
        name: math.nan if f.follows in reasons else finite_or_nan(f.get(metrics, energy))
        for name, f in FIGURES.items()
    }


# ---------------------------------------------------------------- keys of the typed sections


def _section_type(kind: Any) -> type[Section] | None:
    args = [a for a in typing.get_args(kind) if a is not type(None)] or [kind]
    inner = args[0]
    return inner if isinstance(inner, type) and issubclass(inner, Section) else None


def _is_number_type(kind: Any) -> bool:
    args = [a for a in typing.get_args(kind) if a is not type(None)] or [kind]
    return all(a in (int, float) for a in args)


def _leaves(section: type[Section], prefix: str) -> list[str]:
    hints = typing.get_type_hints(section)
    out: list[str] = []
    for f in fields(section):  # type: ignore[arg-type]
        kind = hints[f.name]
        inner = _section_type(kind)
        if inner is not None and is_dataclass(inner):
            # An inline section's keys sit in the parent's dict (metrics' latency keys).
            sub = prefix if f.metadata.get("inline") else f"{prefix}{f.name}."
            out.extend(_leaves(inner, sub))
        elif _is_number_type(kind):
            out.append(prefix + f.name)
    return out


@functools.cache
def section_keys() -> tuple[str, ...]:
    """The numeric dotted keys of every typed section of ``result.json``."""
    from runner.results import RunResult

    hints = typing.get_type_hints(RunResult)
    keys: list[str] = []
    for f in fields(RunResult):
        section = _section_type(hints[f.name])
        if section is not None:
            keys.extend(_leaves(section, f"{f.name}."))
    return tuple(keys)


def is_metric(name: str) -> bool:
    return name in FIGURES or name in section_keys()


def needs_energy(name: str) -> bool:
    """Absent from every run with ``energy=off``."""
    figure = FIGURES.get(name)
    return figure.energy if figure is not None else name.startswith("energy.")


def metric_names_text() -> str:
    """The valid names, for an error message: the headline figures by name, section keys
    by their sections."""
    sections = sorted({k.split(".")[0] for k in section_keys()})
    return (
        ", ".join(FIGURES)
        + "; or a numeric key of result section "
        + "/".join(sections)
        + " (e.g. metrics.ttft_seconds.p99; docs/results.md)"
    )


def metric_value(name: str, result: Mapping[str, Any] | None) -> float | None:
    """The value of ``name`` in a result dict (as read from ``result.json``); None where the
    run has none (not measured, energy off, unresolved, not a finite number)."""
    if not isinstance(result, Mapping) or unresolved_reason(name, result) is not None:
        return None
    if name in FIGURES:
        energy = result.get("energy")
        value = FIGURES[name].get(
            Metrics.from_dict(result.get("metrics")),
            Energy.from_dict(energy) if isinstance(energy, Mapping) else Energy(),
        )
    else:
        node: Any = result
        for part in name.split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        value = node
    number = finite_or_nan(value)
    return None if math.isnan(number) else number


def _energy_figure(name: str) -> str | None:
    """Which energy figure (``gross``/``net``) the value of ``name`` stands or falls with: a
    headline figure's own, or for a measured key of the energy section
    (``energy.net_joules``, ``energy.per_output_token_joules.net``,
    ``energy.components.cpu.joules``...) what its last part says; None for the rest."""
    if name in FIGURES:
        return FIGURES[name].follows
    if not name.startswith("energy.") or name.startswith("energy.baseline."):
        return None
    last = name.rsplit(".", 1)[-1]
    if not (last.endswith(("joules", "watts", "_kg")) or last in ("gross", "net")):
        return None
    return "net" if last.startswith("net") else "gross"


def unresolved_reason(name: str, result: Mapping[str, Any]) -> str | None:
    """Why ``name`` has no value in ``result``: the reason its energy figure is unresolved
    (:func:`runner.sections.energy.unresolved`), or None."""
    figure = _energy_figure(name)
    if figure is None:
        return None
    energy = result.get("energy")
    reasons = unresolved(Energy.from_dict(energy) if isinstance(energy, Mapping) else None)
    return reasons.get(figure)
