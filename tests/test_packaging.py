"""What `pip install .` puts in the wheel: every subpackage, the config groups, the data."""

from __future__ import annotations

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
