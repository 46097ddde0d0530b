"""Report build time at scale: ``python -m runner.report`` on synthetic sweeps.

Sweeps of 1,000 and 10,000 runs (``bench/synthetic_sweep.py``: realistic ``result.json``
and ``requests.parquet`` files, a 2 x 2 x 5 x N grid) are written to a temporary
directory, then the report is built on each by the command a user types, in a fresh
process (interpreter start and imports included). Targets: at most 20 s for 1,000 runs,
and linear growth: the time per run at 10,000 at most 1.5 x the time per run at 1,000.
``--quick``: 1,000 runs only.
"""

from __future__ import annotations

import resource
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import check, progress, section
from bench.synthetic_sweep import make_sweep

TARGET_SECONDS_1000 = 20.0
MAX_GROWTH = 1.5  # seconds per run at 10,000 / seconds per run at 1,000


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) in pixels, from the PNG header."""
    with open(path, "rb") as fh:
        header = fh.read(24)
    return struct.unpack(">II", header[16:24])


def time_report(sweep: Path, out: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of ``python -m runner.report SWEEP --out OUT`` in a fresh
    process. On a busy machine the wall time grows with the load, the CPU time barely."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "runner.report", str(sweep), "--out", str(out), "-q"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def run(quick: bool) -> dict[str, Any]:
    sizes = [1000] if quick else [1000, 10000]
    lines: list[str] = []
    data: dict[str, Any] = {}
    per_run: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="report-bench-") as tmp:
        for n in sizes:
            progress(f"writing a synthetic sweep of {n} runs")
            t0 = time.perf_counter()
            make_sweep(Path(tmp) / f"sweep{n}", n)
            written = time.perf_counter() - t0
            progress(f"building its report ({written:.0f} s to write it)")
            out = Path(tmp) / f"report{n}"
            seconds, cpu = time_report(Path(tmp) / f"sweep{n}", out)
            per_run[n] = seconds / n
            sizes_px = [png_size(p) for p in sorted((out / "plots").glob("*.png"))]
            widest = max((w for w, _ in sizes_px), default=0)
            tallest = max((h for _, h in sizes_px), default=0)
            report_kib = (out / "report.md").stat().st_size / 1024
            lines.append(
                f"{n} runs: report in {seconds:.1f} s, {cpu:.1f} CPU s "
                f"({seconds / n * 1e3:.2f} ms per run); "
                f"{len(sizes_px)} figures, largest {widest} x {tallest} px; "
                f"report.md {report_kib:.1f} KiB"
            )
            data[str(n)] = {
                "seconds": seconds,
                "cpu_seconds": cpu,
                "write_seconds": written,
                "figures": len(sizes_px),
                "max_png_px": [widest, tallest],
                "report_md_kib": report_kib,
            }
    checks = [
        check(
            "1,000-run report build", per_run[1000] * 1000, at_most=TARGET_SECONDS_1000, unit=" s"
        )
    ]
    if 10000 in per_run:
        growth = per_run[10000] / per_run[1000]
        lines.append(f"time per run at 10,000 / at 1,000: {growth:.2f} (1.0: linear)")
        checks.append(check("per-run time 10,000 / 1,000 runs", growth, at_most=MAX_GROWTH))
    return section("report build time on synthetic sweeps", lines, checks, data)
