"""``python -m bench.gpu_wheels``: which wheels travel to an offline GPU machine (the
download itself needs network and runs where the check is prepared, not here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench import gpu_wheels

REPO = Path(__file__).resolve().parents[1]


def test_every_carried_package_is_pinned_by_the_lock():
    pinned = gpu_wheels.pins((REPO / "requirements.lock").read_text())
    assert [p.split("==")[0] for p in pinned] == list(gpu_wheels.CARRY)
    assert all(p.split("==")[1] for p in pinned)
    with pytest.raises(SystemExit, match="not in requirements.lock: omegaconf, antlr4"):
        gpu_wheels.pins("hydra-core==1.3.8\n")


def test_only_the_pinned_wheels_stay_in_the_folder(tmp_path):
    """One version of each package must travel: two stop the install on the machine."""
    keep = ["hydra_core-1.3.8-py3-none-any.whl", "pydantic_core-2.50.5-cp312-cp312-x.whl"]
    drop = ["hydra_core-1.3.7-py3-none-any.whl", "authlib-1.9.10-py2.py3-none-any.whl"]
    for name in keep + drop:
        (tmp_path / name).touch()
    removed = gpu_wheels.prune(tmp_path, ["hydra-core==1.3.8", "pydantic-core==2.50.5"])
    assert removed == sorted(drop)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(keep)


BLOCKER = """
import importlib.abc, sys
LEFT = {left!r}

class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in LEFT:
            raise ImportError(f"{{name}} was left behind")

sys.meta_path.insert(0, Blocked())
import codecarbon.core.cpu, codecarbon.core.hardware_cache, codecarbon.external.logger
import codecarbon.input, codecarbon.output_methods.base_output
import runner.measure.energy, runner.run
from runner.measure.codecarbon import offline_tracker

tracker = offline_tracker(country_iso_code="FRA", save_to_file=False, log_level="error")
tracker.start()
tracker.stop()
print("tracked")
"""


def test_what_is_left_behind_is_not_imported_by_a_run():
    """codecarbon requires these for its command-line tool only; the runner's energy code,
    its run and a tracker's start and stop must work without them, or the GPU machine
    would fail at the first run."""
    left = {"authlib", "joserfc", "cryptography", "questionary", "prompt_toolkit"}
    assert {n.replace("-", "_") for n in gpu_wheels.LEFT_BEHIND} == left
    code = BLOCKER.format(left=sorted(left))
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0 and "tracked" in proc.stdout, proc.stderr[-2000:]
