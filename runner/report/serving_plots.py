"""The three figures of a sweep under load (runner.report.serving): latency percentiles,
achieved throughput and energy per request, each against the offered load, one line per
configuration."""

from __future__ import annotations

from pathlib import Path

from runner.report.data import ReportData
from runner.report.figure_kit import NoData, Plot, figure, save, suptitle
from runner.report.serving import Curve, curves, slo_text

PERCENTILE_STYLES = (("p50", "-", "o"), ("p90", "--", "s"), ("p99", ":", "^"))
LATENCIES = (
    ("ttft_ms", "time to first token"),
    ("itl_ms", "inter-token"),
    ("e2e_ms", "end-to-end"),
)


def _x(curve: Curve) -> tuple[str, list[float]]:
    """Offered load on x: the measured offered rate (open loop), or the users (closed)."""
    if curve.load_factor == "scenario.concurrency":
        return "users (closed loop)", list(curve.points["load"])
    return "offered load (requests/s, measured)", list(curve.points["offered_rps"])


def _errors(points, column: str) -> list[list[float]] | None:
    low, high = points.get(column + "_ci95_low"), points.get(column + "_ci95_high")
    if low is None or high is None:
        return None
    values = points[column]
    return [
        [max(0.0, v - lo) if lo == lo else 0.0 for v, lo in zip(values, low, strict=True)],
        [max(0.0, hi - v) if hi == hi else 0.0 for v, hi in zip(values, high, strict=True)],
    ]


def plot_latency(all_curves: list[Curve], path: Path) -> Path:
    fig = figure(15, 4.8)
    axes = fig.subplots(1, 3)
    for ax, (column, title) in zip(axes, LATENCIES, strict=True):
        for i, curve in enumerate(all_curves):
            label, xs = _x(curve)
            for p, line, marker in PERCENTILE_STYLES:
                name = f"{column}_{p}"
                if name not in curve.points or curve.points[name].isna().all():
                    continue
                ax.errorbar(
                    xs,
                    curve.points[name],
                    yerr=_errors(curve.points, name),
                    linestyle=line,
                    marker=marker,
                    color=f"C{i}",
                    capsize=2,
                    label=f"{curve.label} {p}" if len(all_curves) > 1 else p,
                )
            ax.set_xlabel(label)
        ax.set_yscale("log")
        ax.set_ylabel(f"{title} (ms)")
        ax.set_title(title)
    axes[0].legend(fontsize=7)
    suptitle(fig, "Latency percentiles against load (95% CIs; a missing bar: too few requests)")
    return save(fig, path)


def plot_throughput(all_curves: list[Curve], path: Path) -> Path:
    fig = figure(8, 5.5)
    ax = fig.subplots()
    top = 0.0
    for i, curve in enumerate(all_curves):
        label, xs = _x(curve)
        pts = curve.points
        ax.plot(xs, pts["achieved_rps"], "-o", color=f"C{i}", label=f"{curve.label}: achieved")
        if "goodput_rps" in pts and pts["goodput_rps"].notna().any():
            ax.plot(xs, pts["goodput_rps"], "--s", color=f"C{i}", alpha=0.7, label="goodput (SLO)")
        if curve.knee is not None:
            at = pts[pts["load"] == curve.knee].iloc[0]
            x = at["load"] if curve.load_factor == "scenario.concurrency" else at["offered_rps"]
            ax.axvline(x, color=f"C{i}", alpha=0.4, linestyle=":")
            name = curve.load_factor.rsplit(".", 1)[-1]
            ax.annotate(
                f"knee: {name} {curve.knee:g}", (x, at["achieved_rps"]), fontsize=8, color=f"C{i}"
            )
        top = max([top, *xs])
    if all_curves and all_curves[0].load_factor != "scenario.concurrency":
        ax.plot([0, top], [0, top], color="grey", linewidth=0.8, label="achieved = offered")
    ax.set_ylabel("requests/s served in the steady-state window")
    ax.set_xlabel(_x(all_curves[0])[0])
    ax.legend(fontsize=7)
    suptitle(fig, "Achieved throughput against offered load, the saturation knee marked")
    return save(fig, path)


def plot_energy(all_curves: list[Curve], path: Path) -> Path:
    fig = figure(8, 5.5)
    ax = fig.subplots()
    drawn = False
    for i, curve in enumerate(all_curves):
        label, xs = _x(curve)
        for column, line, what in (
            ("energy_per_request_j_gross", "-o", "gross"),
            ("energy_per_request_j_net", "--s", "net"),
        ):
            if column in curve.points and curve.points[column].notna().any():
                ax.plot(
                    xs, curve.points[column], line, color=f"C{i}", label=f"{curve.label} {what}"
                )
                drawn = True
        ax.set_xlabel(label)
    if not drawn:
        raise NoData("no run has an energy per request (energy=off, or unresolved)")
    ax.set_yscale("log")
    ax.set_ylabel("joules per request served in the window")
    ax.legend(fontsize=7)
    suptitle(fig, "Energy per request against load (window energy / requests served in it)")
    return save(fig, path)


def serving_figures(data: ReportData) -> list[Plot]:
    found = curves(data.table, data.factors)
    if not found:
        return []
    slo = slo_text(data.ok)
    return [
        Plot("latency against load", "serving_latency.png", lambda p: plot_latency(found, p)),
        Plot(
            "throughput against load" + (f" ({slo})" if slo else ""),
            "serving_throughput.png",
            lambda p: plot_throughput(found, p),
        ),
        Plot("energy against load", "serving_energy.png", lambda p: plot_energy(found, p)),
    ]
