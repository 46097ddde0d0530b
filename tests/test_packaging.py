"""What `pip install .` puts in the wheel: every subpackage, the config groups, the data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")

ROOT = Path(__file__).resolve().parent.parent


def test_every_subpackage_and_conf_are_listed():
    setup = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for top in ("runner", "hydra_plugins")
        for p in (ROOT / top).rglob("__init__.py")
    }
    assert on_disk | {"runner.conf"} == set(setup["packages"])
    # The wheel carries conf/ as runner/conf; runner.config.store.CONF_DIR finds either.
    assert setup["package-dir"] == {"runner.conf": "conf"}
    assert "**/*.yaml" in setup["package-data"]["runner.conf"]


def test_the_search_sweeper_plugin_is_found_from_any_directory(tmp_path):
    """The search sweeper registers its config as a Hydra plugin (hydra_plugins/), which
    Hydra finds only on sys.path: an editable install must put it there (make setup
    installs in setuptools' compat mode), not only in the checkout's directory."""
    argv = ["-m", "hydra/sweeper=pareto", "energy=off", "quant=choice(none,nf4)"]
    argv += ["search.objectives=[e2e_ms_mean:minimize]", "hydra.sweeper.n_trials=0"]
    proc = subprocess.run(
        [sys.executable, "-m", "runner", *argv],
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "hydra.sweeper.n_trials=0: must be an integer" in proc.stderr, (
        "an editable install without the checkout on sys.path (rm .venv/.installed && make "
        f"setup installs it in compat mode):\n{proc.stderr[-2000:]}"
    )
