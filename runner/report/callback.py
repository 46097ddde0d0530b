"""Hydra callback: write the sweep report when a multirun ends.

Enable it in the root config::

    hydra:
      callbacks:
        sweep_report:
          _target_: runner.report.callback.SweepReportCallback
          baseline: null  # or "quant=none,compile=off"

A failing report is logged, never raised: the sweep's results are already on disk and must
not be lost to a reporting bug. A baseline that matches nothing is logged and the report is
written without it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

log = logging.getLogger(__name__)


class SweepReportCallback(Callback):
    """Build ``report.md``, ``summary.csv/.parquet`` and ``plots/`` in the sweep directory."""

    def __init__(self, baseline: str | None = None) -> None:
        self.baseline = baseline

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        try:
            from runner.report import ReportError, build_report

            sweep_dir = Path(str(config.hydra.sweep.dir))
            try:
                outputs = build_report([sweep_dir], sweep_dir, baseline=self.baseline)
            except ReportError as exc:
                if not self.baseline:
                    raise
                log.warning("sweep report: %s; writing it without a baseline", exc)
                outputs = build_report([sweep_dir], sweep_dir)
            log.info("sweep report: %s (%d runs)", outputs.report_md, len(outputs.table))
        except Exception:
            log.exception("sweep report failed (the runs' results are unaffected)")
