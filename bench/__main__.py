"""``python -m bench [--quick] [--only SECTION,...]``: see bench/README.md.

Prints one report block per section (figures, target, PASS / BELOW TARGET) and writes
the same as JSON to ``outputs/bench/bench-<timestamp>.json``. Exits 0 whatever the
figures are; 1 only when a section crashed.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import time
import traceback
from datetime import datetime

SECTIONS = {
    "overhead": "bench.overhead",
    "accuracy": "bench.accuracy",
    "isolation": "bench.isolation",
    "energy": "bench.energy_onoff",
    "report": "bench.report_speed",
    "sweep": "bench.sweep",
    "vllm": "bench.vllm_overhead",
    "sampler": "bench.sampler_overhead",
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny model only, fewer rounds, only the 'after' sweep (about 3 minutes)",
    )
    parser.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help=f"comma-separated sections to run (default: all): {','.join(SECTIONS)}",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=max(1, (os.cpu_count() or 2) - 1),
        help="torch intra-op threads here and in spawned jobs (default: CPUs - 1, leaving one "
        "for the rest of the machine; 0: torch's own default, all CPUs)",
    )
    args = parser.parse_args(argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in args.only if s not in SECTIONS]
    if unknown or not args.only:
        parser.error(f"--only: unknown section(s) {unknown}; choose from {', '.join(SECTIONS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.threads:
        # Spawned jobs inherit the environment; torch reads it at import.
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch

    from bench.common import OUT_DIR, cpu_seconds, format_report, other_cpus, stderr_to, write_json

    if args.threads:
        torch.set_num_threads(args.threads)

    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    json_path, log_path = OUT_DIR / f"bench-{stamp}.json", OUT_DIR / f"bench-{stamp}.log"
    report = {
        "mode": "quick" if args.quick else "full",
        "started_at": stamp,
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "sections": {},
        "json": str(json_path),
        "log": str(log_path),
    }
    crashed = False
    t_all = time.perf_counter()
    for name in [s for s in SECTIONS if s in args.only]:
        print(f"[{name}] running ...", flush=True)
        t0, cpu0 = time.perf_counter(), cpu_seconds()
        try:
            # Library and child-process logs go to the log file, not the report.
            with stderr_to(log_path):
                sec = importlib.import_module(SECTIONS[name]).run(args.quick)
        except Exception as exc:
            crashed = True
            sec = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
            print(sec["traceback"], file=sys.stderr, flush=True)
        sec["wall_seconds"] = time.perf_counter() - t0
        sec["other_cpus"] = round(other_cpus(cpu0, cpu_seconds(), sec["wall_seconds"]), 3)
        report["sections"][name] = sec
    report["wall_seconds"] = time.perf_counter() - t_all
    write_json(report, json_path)
    print(format_report(report), flush=True)
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
