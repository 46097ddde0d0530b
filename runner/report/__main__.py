"""``python -m runner.report PATH... [--out DIR] [--baseline SPEC]``.

Exit status 0 with the table on stdout, or 2 with one line on stderr for bad usage
(missing path, no run found, a baseline that matches no run or several).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from runner.report import ReportError, build_report, terminal_summary


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage dump
        raise ReportError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m runner.report",
        description="Summarise run and sweep directories: summary.csv/.parquet, report.md, "
        "plots/*.png, and the table on stdout.",
    )
    parser.add_argument(
        "paths",
        nargs="+",
        type=Path,
        metavar="PATH",
        help="run or sweep directories (searched recursively)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output directory (default: PATH when a single directory is given)",
    )
    parser.add_argument(
        "--baseline",
        default=None,
        metavar="SPEC",
        help="reference run: factors 'quant=none,compile=off' or a run directory",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        missing = [p for p in args.paths if not p.exists()]
        if missing:
            raise ReportError(f"{missing[0]}: no such file or directory")
        out = args.out
        if out is None:
            if len(args.paths) != 1 or not args.paths[0].is_dir():
                raise ReportError("--out DIR is required unless a single directory is given")
            out = args.paths[0]
        logging.basicConfig(
            level=logging.WARNING if args.quiet else logging.INFO,
            format="%(levelname)s %(message)s",
            stream=sys.stderr,
        )
        outputs = build_report(args.paths, out, baseline=args.baseline)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(terminal_summary(outputs))
    print(
        f"\nreport: {outputs.report_md}  table: {outputs.summary_csv}  "
        f"figures: {len(outputs.plots)} in {outputs.report_md.parent / 'plots'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
