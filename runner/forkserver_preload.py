"""Imported by the fork server only (see :mod:`runner.forkserver`): its import is the preload."""

from runner.forkserver import preload

preload()
