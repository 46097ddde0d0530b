"""Shared fixtures: compose configs exactly as the CLI does, shrink runs to CPU and tiny sizes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from runner.config import register_configs
from runner.preflight_compose import compose_typed
from tests.command_client import ADDRESS_ENV

register_configs()

# Two test processes share two cores, and every process of theirs that runs torch has an
# OpenMP thread per core. By default an idle OpenMP thread spins (~300,000 turns) waiting
# for the next parallel region, on a core the other worker's threads need: waiting
# passively (it sleeps) took four heavy end-to-end files from 184 to 132 CPU-s and 98 to
# 74 s. Set before anything here imports torch; every command, job, Slurm job and vLLM
# process the tests start inherits it. Runs measure more slowly so, which no test bounds.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Overrides that make an end-to-end run fast on a 2-core CPU.
TINY = [
    "model=tiny",
    "loading=cpu",
    "measure=quick",
    "energy=off",
    "workload.num_prompts=2",
    "decoding.max_new_tokens=4",
]


@pytest.fixture
def compose():
    """compose(overrides) -> typed RunConfig, as `python -m runner <overrides>` would build it."""
    return compose_typed


@pytest.fixture(scope="session")
def tiny_dir():
    from runner.models.cache import cache_root
    from runner.models.tiny import ensure_tiny

    return ensure_tiny(cache_root(None))


# --------------------------------------------------------------------------- commands

REPO = Path(__file__).resolve().parents[1]
# `python` for the commands a test starts ([*PYTHON, "-m", "runner", ...]): forked from the
# session's command server (tests/command_server.py) instead of importing everything again.
PYTHON = [sys.executable, "-S", str(REPO / "tests" / "command_client.py")]


@pytest.fixture(scope="session", autouse=True)
def command_server():
    """One command server per test process, importing while the first tests run (until it
    listens, a command starts the real interpreter); killed at the end of the session."""
    if os.environ.get(ADDRESS_ENV) == "off":  # every command starts the real interpreter
        yield None
        return
    folder = tempfile.mkdtemp(prefix="runner-commands-")
    address = os.path.join(folder, "socket")
    with open(os.path.join(folder, "server.log"), "wb") as log:
        server = subprocess.Popen(
            [sys.executable, str(REPO / "tests" / "command_server.py"), address],
            # No PYTHONPATH of its own: its sys.path is what every command's ends with
            # (the editable install's entry for this checkout included).
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    os.environ[ADDRESS_ENV] = address
    try:
        yield address
    finally:
        os.environ.pop(ADDRESS_ENV, None)
        server.kill()  # it ignores SIGTERM, as the runner's fork server does
        server.wait()
        shutil.rmtree(folder, ignore_errors=True)


# --------------------------------------------------------------------------- file order

# The files that take longest, first (seconds on one of make test's 2 workers on the 2-core
# CI machine): the workers take whole files in collection order, and a long file
# collected last would leave one worker running it alone at the end.
LONGEST_FIRST = (
    "test_vllm_e2e.py",  # ~360 s
    "test_slurm.py",  # ~210 s
    "test_readme_commands.py",  # ~140 s
    "test_search_e2e.py",  # ~35 s
    "test_report_scale.py",
    "test_config.py",
    "test_launchers.py",
    "test_stop_signals.py",
    "test_sweep_e2e.py",
    "test_models_provision.py",
    "test_reliability.py",
    "test_quality_e2e.py",
    "test_engines.py",
    "test_serving.py",
    "test_bad_input.py",
    "test_repeats.py",
    "test_report.py",
    "test_applied.py",
    "test_search.py",
    "test_quality.py",
)


def pytest_configure(config):
    # pytest-xdist (3.7+) hands out files with most tests first unless told to keep the
    # collection's order; LONGEST_FIRST is that order.
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: files stay whole


# --------------------------------------------------------------------------- real Slurm

SLURM_SCRIPT = Path(__file__).resolve().parent / "slurm" / "cluster.sh"


@dataclass(frozen=True)
class SlurmCluster:
    """The test suite's single-node Slurm (tests/slurm/cluster.sh)."""

    conf: str  # SLURM_CONF
    partition: str
    node: str
    started_here: bool  # this session started the daemons (and stops them)
    startup_seconds: float


def _cannot_start_slurm() -> str | None:
    """Why this machine cannot run the test cluster (None: it can)."""
    if os.name != "posix" or os.geteuid() != 0:
        return "the test Slurm cluster needs root (it installs packages and starts daemons)"
    if shutil.which("slurmctld") is None and shutil.which("apt-get") is None:
        return "Slurm is not installed and apt-get is not available to install it"
    return None


@pytest.fixture(scope="session")
def slurm_cluster():
    """Start the test cluster once per session (only when a Slurm test runs), wait for its
    node, stop at the end every daemon this session started. Where it cannot be started
    the tests skip with the reason, except in CI (CI=true), where that is a failure."""
    reason = _cannot_start_slurm()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)
    conf = f"{os.environ.get('RUNNER_SLURM_DIR', '/tmp/llm-sweep-runner-slurm')}/slurm.conf"
    env = {**os.environ, "SLURM_CONF": conf}
    already = (
        Path(conf).is_file()
        and subprocess.run(["scontrol", "ping"], env=env, capture_output=True).returncode == 0
        if shutil.which("scontrol")
        else False
    )
    t0 = time.monotonic()
    proc = subprocess.run(
        ["bash", str(SLURM_SCRIPT), "start"], capture_output=True, text=True, timeout=900
    )
    if proc.returncode != 0:
        pytest.fail(
            f"tests/slurm/cluster.sh start failed:\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}"
        )
    seconds = time.monotonic() - t0
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = conf  # every Slurm command and job of the session
    node = subprocess.run(["hostname", "-s"], capture_output=True, text=True).stdout.strip()
    partition = os.environ.get("RUNNER_SLURM_PARTITION", "cpu")
    print(f"\nSlurm test cluster ready in {seconds:.1f} s ({proc.stderr.strip()})")
    try:
        yield SlurmCluster(conf, partition, node, not already, seconds)
    finally:
        if not already:
            subprocess.run(["bash", str(SLURM_SCRIPT), "stop"], capture_output=True, timeout=120)
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous
