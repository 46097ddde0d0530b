"""What the libraries said: captured per phase with counts, printed once, noise to DEBUG."""

from __future__ import annotations

import logging
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from runner.measure.libwarnings import LibraryWarnings, package_of
from tests.conftest import PYTHON

REPO = Path(__file__).resolve().parents[1]


class Lines(logging.Handler):
    """The run's log, as the root logger's handler."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self, level: int = logging.WARNING) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno >= level]


@pytest.fixture
def run_log():
    root = logging.getLogger()
    handler, level = Lines(), root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield handler
    root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture
def own_handler_logger():
    """A library logger that writes on its own and does not propagate (as transformers' and
    torch's do): its records would never reach run.log."""
    logger = logging.getLogger("transformers.fake_module")
    own = Lines()
    logger.addHandler(own)
    logger.propagate = False
    logger.setLevel(logging.INFO)  # transformers, once imported, sets WARNING above it
    yield logger, own
    logger.removeHandler(own)
    logger.propagate = True
    logger.setLevel(logging.NOTSET)


def test_repeats_are_counted_per_phase_and_printed_once(run_log):
    said = LibraryWarnings()
    phase = ["load"]
    bnb = logging.getLogger("bitsandbytes.autograd._functions")
    with said.capture(lambda: phase[0]):
        bnb.warning("MatMul8bitLt: inputs will be cast from %s to float16", "torch.float32")
        phase[0] = "measure"
        for _ in range(500):
            bnb.warning("MatMul8bitLt: inputs will be cast from %s to float16", "torch.float32")
    text = "MatMul8bitLt: inputs will be cast from torch.float32 to float16"
    counts = {(w.phase, w.count) for w in said.entries() if w.message == text}
    assert counts == {("load", 1), ("measure", 500)}
    printed = run_log.messages()
    assert printed.count(text) == 1
    (repeat,) = [m for m in printed if "came 501 times" in m]
    assert "load 1, measure 500" in repeat
    assert said.lines() == [
        f"bitsandbytes.autograd._functions WARNING: {text} (load ×1, measure ×500)"
    ]


def test_python_warnings_count_every_repeat_but_respect_ignore(run_log):
    said = LibraryWarnings()
    with warnings.catch_warnings():
        warnings.simplefilter("default")  # Python would show each location once
        warnings.filterwarnings("ignore", message="hush")
        with said.capture(lambda: "warmup"):
            for _ in range(3):
                warnings.warn("flag dropped", UserWarning, stacklevel=1)
            warnings.warn("hush now", UserWarning, stacklevel=1)
        # The filters and the way warnings are shown are back as they were.
        with warnings.catch_warnings(record=True) as after:
            warnings.warn("hush again", UserWarning, stacklevel=1)
    (entry,) = said.entries()
    assert (entry.category, entry.message, entry.count, entry.phase) == (
        "UserWarning",
        "flag dropped",
        3,
        "warmup",
    )
    assert entry.source == "test_libwarnings"
    assert sum("flag dropped" in m for m in run_log.messages()) == 2  # first + repeat count
    assert after == []


def test_a_library_logger_with_its_own_handler_goes_to_the_run_log_once(
    run_log, own_handler_logger
):
    logger, own = own_handler_logger
    said = LibraryWarnings()
    with said.capture(lambda: "verify"):
        logger.warning("The following generation flags are not valid and may be ignored")
        logger.warning("The following generation flags are not valid and may be ignored")
        logger.info("below WARNING: not counted, goes its usual way")
    assert [(w.source, w.count) for w in said.entries()] == [("transformers.fake_module", 2)]
    assert (
        run_log.messages().count("The following generation flags are not valid and may be ignored")
        == 1
    )
    assert own.messages(logging.INFO) == ["below WARNING: not counted, goes its usual way"]
    # Restored: the library's own handler and propagation are back (pytest adds its own
    # handlers to non-propagating loggers: only ours must be gone).
    assert logger.handlers[0] is own and logger.propagate is False
    assert not [h for h in logger.handlers if type(h).__name__ == "_Tap"]
    logger.warning("after the run")
    assert own.messages()[-1] == "after the run"


def test_known_noise_goes_to_debug_and_stays_out_of_warnings(run_log):
    logging.getLogger().setLevel(logging.DEBUG)
    said = LibraryWarnings()
    hint = "Failed to load CPU gemm_4bit_forward: Please make sure you `pip install kernels`"
    with said.capture(lambda: "load"):
        logging.getLogger("bitsandbytes.backends.cpu.ops").warning(hint)
    (entry,) = said.entries()
    assert entry.noise is True and entry.count == 1
    assert said.lines() == []
    assert not any("pip install kernels" in m for m in run_log.messages(logging.INFO))
    assert any("pip install kernels" in m for m in run_log.messages(logging.DEBUG))


def test_loggers_are_given_back_after_an_exception():
    torch_logger = logging.getLogger("torch")
    before = (list(torch_logger.handlers), torch_logger.propagate)
    with pytest.raises(KeyboardInterrupt), LibraryWarnings().capture(lambda: "measure"):
        raise KeyboardInterrupt
    assert (torch_logger.handlers, torch_logger.propagate) == before


@pytest.mark.parametrize(
    ("filename", "package"),
    [
        ("/x/.venv/lib/python3.11/site-packages/transformers/generation/utils.py", "transformers"),
        ("/usr/lib/python3/dist-packages/torch/__init__.py", "torch"),
        ("/work/runner/run.py", "run"),
    ],
)
def test_a_python_warning_is_attributed_to_its_package(filename, package):
    assert package_of(filename) == package


@pytest.mark.slow
def test_int8_run_prints_its_cast_warning_once_and_records_every_one(tmp_path):
    """Before: about 7,600 identical MatMul8bitLt lines on stderr and in run.log."""
    proc = subprocess.run(
        [
            *PYTHON,
            "-m",
            "runner",
            "model=tiny",
            "quant=int8",
            "measure=quick",
            "energy=off",
            "decoding.max_new_tokens=4",
            f"hydra.run.dir={tmp_path}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    cast = [line for line in proc.stderr.splitlines() if "MatMul8bitLt" in line]
    assert len(cast) == 2, cast  # the warning, then how often it came
    assert "pip install kernels" not in proc.stderr
    assert sum("MatMul8bitLt" in line for line in (tmp_path / "run.log").open()) == 2
    import json

    result = json.loads((tmp_path / "result.json").read_text())
    counts = {
        w["phase"]: w["count"]
        for w in result["warnings_detail"]["library"]
        if w["message"].startswith("MatMul8bitLt")
    }
    # The quality phase's forward passes go through the same int8 layers.
    assert set(counts) == {"warmup", "measure", "quality"} and counts["measure"] > 1
    assert any(
        w.startswith("bitsandbytes.autograd._functions WARNING: MatMul8bitLt")
        for w in result["warnings"]
    )
    assert "warning: bitsandbytes.autograd._functions WARNING: MatMul8bitLt" in proc.stdout


CODECARBON_ONCE = """
import logging, sys, time
from pathlib import Path
{early}
from runner.logs import setup_child_logging
from runner.measure.codecarbon import offline_tracker, tracker_run
setup_child_logging(Path(sys.argv[1]))
kwargs = dict(country_iso_code="USA", save_to_file=False, log_level="warning")
energy_log = logging.getLogger("runner.measure.energy")
with tracker_run(offline_tracker, lambda: kwargs, time.perf_counter, energy_log):
    logging.getLogger("codecarbon").warning("a line from codecarbon")
"""


@pytest.mark.parametrize("early", [True, False], ids=["imported-before", "imported-after"])
def test_codecarbon_lines_reach_the_run_log_and_the_console_once(tmp_path, early):
    """A fork-server job imported codecarbon before its logging was set up, a spawned one
    after; either way each CodeCarbon line is in run.log once and on stderr once, and its
    per-tracker hint ("Multiple instances ...") in neither."""
    import subprocess

    code = CODECARBON_ONCE.format(early="import codecarbon" if early else "")
    log = tmp_path / "run.log"
    done = subprocess.run(
        [sys.executable, "-c", code, str(log)], capture_output=True, text=True, check=True
    )
    assert log.read_text().count("a line from codecarbon") == 1
    assert done.stderr.count("a line from codecarbon") == 1
    assert "Multiple instances" not in log.read_text() + done.stderr
