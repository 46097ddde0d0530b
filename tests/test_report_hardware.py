"""The machine's side in the report: the roofline figures, columns and section, one run's
time series figure, and the named hardware warnings grouped (synthetic run directories)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from runner.hardware.sampler import Window, write_timeseries
from runner.report import build_report
from runner.report.roofline import points, roofs
from runner.report.timeseries import (
    Band,
    panels,
    phase_bands,
    read_timeseries,
    window_spans,
)
from runner.report.warnings_section import parse_named
from runner.sections.figures import metric_value
from runner.sections.hardware import TIMESERIES_FILE, Roofline
from runner.sections.warnings import NamedWarning, WarningsDetail
from tests.test_report import _is_png, result, write_run

H100 = {
    "device": "NVIDIA H100",
    "dtype": "bfloat16",
    "peak_bandwidth_gbs": 3000.0,
    "peak_matmul_tflops": 1000.0,
    "theoretical_bandwidth_gbs": 3350.0,
}


def with_roofline(data: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """``data`` (a result dict) with ``metrics.roofline`` built from ``fields``."""
    data["metrics"]["roofline"] = Roofline(**fields).to_dict()
    return data


def placed(decode_gbs: float, prefill_tflops: float, **extra: Any) -> dict[str, Any]:
    """A run placed on an H100's roofline (``extra`` overrides a peak): the fractions are
    of its own peaks."""
    fields = {**H100, **extra}
    return {
        **fields,
        "decode_intensity": 2.0,
        "prefill_intensity": 400.0,
        "decode_bandwidth_gbs": decode_gbs,
        "prefill_tflops": prefill_tflops,
        "decode_bandwidth_util": decode_gbs / fields["peak_bandwidth_gbs"],
        "decode_bandwidth_util_theoretical": decode_gbs / fields["theoretical_bandwidth_gbs"],
        "prefill_compute_util": prefill_tflops / fields["peak_matmul_tflops"],
    }


# t_seconds, phase, window, cpu_tree_cores, rapl_package_0_w, gpu0_sm_clock_mhz
SAMPLES = [
    (0.0, "config", None, 0.5, 30.0, 1980.0),
    (0.5, "load", None, 1.0, 60.0, 1980.0),
    (1.0, "load", None, 1.0, 62.0, 1980.0),
    (1.5, "warmup", None, 1.0, 90.0, 1980.0),
    (2.0, "measure", 0, 1.0, 95.0, 1900.0),
    (2.5, "measure", 0, 1.0, 96.0, 1700.0),
    (3.0, "cooldown", None, 0.1, 35.0, 1980.0),
    (3.5, "measure", 1, 1.0, 94.0, 1950.0),
    (4.0, "write", None, 0.2, 31.0, 1980.0),
]
WINDOWS = [Window(0, 1.9, 2.7), Window(1, 3.4, 3.8)]


def sample_rows() -> list[dict[str, Any]]:
    rows = []
    for t, phase, window, cores, rapl, sm in SAMPLES:
        rows.append(
            {
                "t_seconds": t,
                "time_unix": 1.7e9 + t,
                "phase": phase,
                "window": window,
                "cpu_tree_cores": cores,
                "cpu_machine_cores": cores + 0.2,
                "cpu_other_cores": 0.2,
                "rss_bytes": 2**30,
                "load1": 0.5,
                "rapl_package_0_w": rapl,
                "gpu0_power_w": None,  # a column the machine could not read: all null
                "gpu0_sm_clock_mhz": sm,
            }
        )
    return rows


@pytest.fixture
def roofline_sweep(tmp_path: Path) -> Path:
    root = tmp_path / "sweep"
    write_run(
        root, "a", with_roofline(result(["quant=none"]), **placed(1500.0, 350.0)), requests=False
    )
    write_run(
        root,
        "b",
        with_roofline(result(["quant=nf4"]), **placed(600.0, 120.0, peak_bandwidth_gbs=2900.0)),
        requests=False,
    )
    return root


def test_headline_figures_from_the_roofline() -> None:
    data = with_roofline(result(["quant=none"]), **placed(1500.0, 350.0))
    assert metric_value("decode_bw_util", data) == pytest.approx(0.5)
    assert metric_value("prefill_compute_util", data) == pytest.approx(0.35)
    assert metric_value("decode_bw_util", result(["quant=none"])) is None


def test_roofs_and_points_from_the_table(roofline_sweep: Path) -> None:
    table = build_report([roofline_sweep], roofline_sweep).table
    (roof,) = roofs(table)
    # One roof for the device and dtype: the median of the two runs' peaks.
    assert roof.name == "NVIDIA H100 (bfloat16)" and roof.runs == 2
    assert roof.peak_gbs == pytest.approx(2950.0) and roof.peak_tflops == 1000.0
    assert roof.ridge == pytest.approx(1000 * 1000 / 2950)
    assert roof.tflops_at(1.0) == pytest.approx(2.95) and roof.tflops_at(1e4) == 1000.0
    found = {(p.configuration, p.phase): (p.intensity, p.tflops) for p in points(table)}
    # Decode: GB/s x FLOP/byte / 1000 = TFLOP/s.
    assert found[("quant=none", "decode")] == pytest.approx((2.0, 3.0))
    assert found[("quant=none", "prefill")] == pytest.approx((400.0, 350.0))
    assert found[("quant=nf4", "decode")] == pytest.approx((2.0, 1.2))


def test_roofline_columns_section_and_figure(roofline_sweep: Path) -> None:
    outputs = build_report([roofline_sweep], roofline_sweep)
    csv = pd.read_csv(outputs.summary_csv).set_index("quant")
    assert csv.loc["none", "decode_bw_util"] == pytest.approx(0.5)
    assert csv.loc["nf4", "prefill_compute_util"] == pytest.approx(0.12)
    assert csv.loc["nf4", "metrics.roofline.peak_bandwidth_gbs"] == 2900.0
    assert csv.loc["none", "metrics.roofline.device"] == "NVIDIA H100"
    names = [p.name for p in outputs.plots]
    assert "roofline.png" in names and "timeseries.png" not in names  # a sweep: no series
    assert _is_png(roofline_sweep / "plots" / "roofline.png")
    text = outputs.report_md.read_text()
    section = text.split("## Against the hardware's limit\n", 1)[1].split("\n## ", 1)[0]
    assert (
        "- NVIDIA H100 (bfloat16): 2,950 GB/s, 1,000 TFLOP/s measured, the median of 2 "
        "runs' probes (theoretical bandwidth 3,350 GB/s)"
    ) in section
    header = (
        "| quant | decode GB/s | decode % of peak | decode % of theoretical | prefill TFLOP/s "
        "| prefill % of peak |"
    )
    assert header in section
    assert "| none | 1,500 | 50.0% | 44.8% | 350.0 | 35.0% |" in section
    assert "| nf4 | 600.0 | 20.7% | 17.9% | 120.0 | 12.0% |" in section
    assert "[plots/roofline.png](plots/roofline.png)" in section


def test_no_roofline_no_section_no_figure(tmp_path: Path) -> None:
    root = tmp_path / "sweep"
    write_run(root, "a", result(["quant=none"]), requests=False)
    write_run(root, "b", result(["quant=nf4"]), requests=False)
    outputs = build_report([root], root)
    text = outputs.report_md.read_text()
    assert "Against the hardware's limit" not in text
    assert "roofline.png" not in [p.name for p in outputs.plots]
    assert not any(s.startswith("roofline") for s in outputs.skipped_plots)
    assert pd.read_csv(outputs.summary_csv)["decode_bw_util"].isna().all()


def test_phase_bands_are_contiguous_segments_in_order() -> None:
    times = [t for t, *_ in SAMPLES]
    phases = [p for _, p, *_ in SAMPLES]
    assert phase_bands(times, phases) == [
        Band("config", 0.0, 0.5),
        Band("load", 0.5, 1.5),
        Band("warmup", 1.5, 2.0),
        Band("measure", 2.0, 3.0),
        Band("cooldown", 3.0, 3.5),
        Band("measure", 3.5, 4.0),  # the same phase again: a band of its own
        Band("write", 4.0, 4.5),  # the last: one sampling period past its row
    ]
    assert phase_bands([0.0, 1.0], [None, ""]) == [Band("unknown", 0.0, 2.0)]
    assert phase_bands([3.0], ["load"]) == [Band("load", 3.0, 3.0)]
    assert phase_bands([], []) == []


def test_panels_and_windows_from_the_table(tmp_path: Path) -> None:
    path = tmp_path / TIMESERIES_FILE
    write_timeseries(path, sample_rows(), WINDOWS)
    table, windows = read_timeseries(path)
    assert list(table["phase"]) == [p for _, p, *_ in SAMPLES]
    # The all-null GPU power is left out; the CPU has no temperature here: no such panel.
    assert [(p.title, [s.label for s in p.series]) for p in panels(table)] == [
        ("power", ["RAPL package_0"]),
        ("clocks", ["GPU 0 SM"]),
    ]
    assert window_spans(table, windows) == [(1.9, 2.7), (3.4, 3.8)]
    # Without the edges in the metadata: the rows stamped with each window.
    assert window_spans(table, []) == [(2.0, 2.5), (3.5, 3.5)]
    # Neither power nor clocks nor temperature: the CPU cores busy, which Linux always has.
    bare = table.drop(columns=["rapl_package_0_w", "gpu0_sm_clock_mhz"])
    assert [(p.title, [s.column for s in p.series]) for p in panels(bare)] == [
        ("CPU cores busy", ["cpu_tree_cores", "cpu_other_cores"])
    ]


def test_one_run_gets_its_time_series_figure(tmp_path: Path) -> None:
    run = write_run(
        tmp_path, "run", with_roofline(result([]), **placed(1500.0, 350.0)), requests=False
    )
    write_timeseries(run / TIMESERIES_FILE, sample_rows(), WINDOWS)
    outputs = build_report([run], run)
    names = [p.name for p in outputs.plots]
    assert "timeseries.png" in names and "roofline.png" in names
    assert _is_png(run / "plots" / "timeseries.png")
    text = outputs.report_md.read_text()
    assert "## The run over time\n\n[plots/timeseries.png](plots/timeseries.png)" in text
    assert "![timeseries](plots/timeseries.png)" in text  # and among the figures


def test_a_run_without_or_with_a_broken_time_series(tmp_path: Path) -> None:
    run = write_run(tmp_path, "run", result([]), requests=False)
    outputs = build_report([run], run)
    assert "timeseries.png" not in [p.name for p in outputs.plots]
    assert not any("time series" in s for s in outputs.skipped_plots)
    assert "The run over time" not in outputs.report_md.read_text()
    (run / TIMESERIES_FILE).write_bytes(b"not a parquet file")
    outputs = build_report([run], run)  # no error
    assert "timeseries.png" not in [p.name for p in outputs.plots]
    assert any(
        s.startswith("time series: timeseries.parquet unreadable") for s in outputs.skipped_plots
    )


def test_a_sweep_draws_no_time_series(tmp_path: Path) -> None:
    root = tmp_path / "sweep"
    for name, quant in (("a", "none"), ("b", "nf4")):
        run = write_run(root, name, result([f"quant={quant}"]), requests=False)
        write_timeseries(run / TIMESERIES_FILE, sample_rows(), WINDOWS)
    outputs = build_report([root], root)
    assert "timeseries.png" not in [p.name for p in outputs.plots]
    assert not (root / "plots" / "timeseries.png").exists()
    assert "The run over time" not in outputs.report_md.read_text()


def test_named_warnings_grouped_by_kind(tmp_path: Path) -> None:
    root = tmp_path / "sweep"
    hot = WarningsDetail(
        named=(
            NamedWarning(
                "hardware.gpu_throttle", "GPU 0 throttled (thermal) in window 0", "measure"
            ),
            NamedWarning("hardware.clock_drop", "GPU 0 SM clock fell 14% in window 0", "measure"),
            NamedWarning("compile.recompile_limit", "hit during warmup", "warmup"),
        )
    )
    busy = WarningsDetail(
        named=(
            NamedWarning("hardware.interference", "other processes kept 1.2 cores busy", "measure"),
        )
    )
    write_run(root, "a", result(["quant=none"], said=hot), requests=False)
    write_run(root, "b", result(["quant=nf4"], said=busy), requests=False)
    write_run(root, "c", result(["quant=int8"]), requests=False)
    text = build_report([root], root).report_md.read_text()
    section = text.split("## Warnings\n", 1)[1].split("\n## ", 1)[0]
    assert section.index("### compile (1 run)") < section.index("### hardware (2 runs)")
    hardware = section.split("### hardware (2 runs)\n", 1)[1]
    assert (
        "- `hardware.clock_drop` (1 run):\n"
        "  - `quant=none`: GPU 0 SM clock fell 14% in window 0\n"
        "- `hardware.gpu_throttle` (1 run):\n"
        "  - `quant=none`: GPU 0 throttled (thermal) in window 0\n"
        "- `hardware.interference` (1 run):\n"
        "  - `quant=nf4`: other processes kept 1.2 cores busy\n"
    ) in hardware
    assert "quant=int8" not in section


def test_parse_named_keeps_messages_whole() -> None:
    cell = "hardware.clock_drop: fell 14%; in window 0; compile.graph_breaks: 3 breaks"
    assert parse_named(cell) == [
        ("hardware.clock_drop", "fell 14%; in window 0"),
        ("compile.graph_breaks", "3 breaks"),
    ]
    assert parse_named(None) == [] and parse_named("odd text") == [("other", "odd text")]
