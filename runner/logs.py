"""Logging for spawned children, mirroring Hydra's job logging (console + run.log)."""

from __future__ import annotations

import logging
from pathlib import Path

FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] %(message)s"
RUN_LOG = "run.log"  # each run's log, in its directory


def setup_child_logging(log_file: Path, level: int = logging.INFO) -> None:
    """Send records to stderr and append them to the job's ``run.log``."""
    root = logging.getLogger()
    root.handlers.clear()
    root.setLevel(level)
    fmt = logging.Formatter(FORMAT)
    for handler in (logging.StreamHandler(), logging.FileHandler(log_file)):
        handler.setFormatter(fmt)
        root.addHandler(handler)
    # CodeCarbon's lines reach run.log through the energy meter, which forwards them to
    # the run's logger while a tracker runs, its noise left out (runner.measure.codecarbon).
    # Its logger must not also propagate: codecarbon sets that at import, which in a
    # fork-server job happened before this setup, in a spawned one after it.
    cc = logging.getLogger("codecarbon")
    cc.setLevel(logging.WARNING)
    cc.propagate = False
    cc.handlers.clear()
