"""Logging for spawned children, mirroring Hydra's job logging (console + run.log)."""

from __future__ import annotations

import logging
from pathlib import Path

FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] %(message)s"


def setup_child_logging(log_file: Path, level: int = logging.INFO) -> None:
    """Send records to stderr and append them to the job's ``run.log``."""
    root = logging.getLogger()
    root.handlers.clear()
    root.setLevel(level)
    fmt = logging.Formatter(FORMAT)
    for handler in (logging.StreamHandler(), logging.FileHandler(log_file)):
        handler.setFormatter(fmt)
        root.addHandler(handler)
    logging.getLogger("codecarbon").setLevel(logging.WARNING)
    codecarbon_to_run_log()


def codecarbon_to_run_log() -> None:
    """CodeCarbon's lines go where the run's go (console and run.log), once each.

    Its logger does not propagate (set when codecarbon is imported) and every tracker it
    starts adds a stderr handler of its own: called after each tracker starts, so that
    neither depends on whether codecarbon was imported before the run's logging was set
    up (a fork-server job) or after (a spawned one).
    """
    cc = logging.getLogger("codecarbon")
    cc.propagate = True
    cc.handlers.clear()
