"""Progress of a run: shown between generate calls only, one log line per measured pass."""

from __future__ import annotations

import io
import logging
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from runner.measure.energy import EnergyMeter
from runner.measure.generation import CallResult
from runner.measure.timing import CallTiming
from runner.phases.measured import measured_loop
from runner.phases.state import Progress
from runner.progress import Display, pass_line
from runner.stop import StopGuard
from tests.conftest import TINY


class Terminal(io.StringIO):
    """A terminal that notes any write made while a generate call runs."""

    def __init__(self) -> None:
        super().__init__()
        self.in_call = False
        self.writes_in_call = 0

    def isatty(self) -> bool:
        return True

    def write(self, s: str) -> int:
        self.writes_in_call += self.in_call
        return super().write(s)


def _workload(batches: int, per_batch: int) -> SimpleNamespace:
    def request(i: int) -> SimpleNamespace:
        return SimpleNamespace(index=i, prompt_id=f"p{i}", input_tokens=5)

    return SimpleNamespace(
        batches=[
            SimpleNamespace(requests=tuple(request(b * per_batch + r) for r in range(per_batch)))
            for b in range(batches)
        ]
    )


def _measure(compose, caplog, stream: io.StringIO, bars: bool | None) -> list[str]:
    """The real measured loop with a fake generate call; returns the progress log lines."""
    cfg = compose([*TINY, "measure.min_repeats=3", "measure.min_seconds=0"])
    workload = _workload(batches=4, per_batch=2)

    def call(batch) -> CallResult:
        stream.in_call = True  # a timed generate call runs ...
        time.sleep(0.05)  # long enough for a refresh thread, if there were one, to draw
        n = len(batch.requests)
        stream.in_call = False  # ... and has returned
        return CallResult(CallTiming(0.01, (0.002, 0.004, 0.006), n), (3,) * n)

    progress = Progress(display=Display(stream, bars=bars, pass_line_every_s=0))
    progress.meter = EnergyMeter(cfg.energy, Path("unused"), [])  # energy=off: writes nothing
    caplog.set_level(logging.INFO, logger="runner.progress")
    measured_loop(cfg, workload, call, progress, torch.device("cpu"), StopGuard())
    assert len(progress.records) == 3 * 8
    return [r.getMessage() for r in caplog.records if r.name == "runner.progress"]


def test_on_a_terminal_bars_redraw_between_calls_only(compose, caplog):
    term = Terminal()
    lines = _measure(compose, caplog, term, bars=None)
    assert "pass 3" in term.getvalue()  # a bar was drawn ...
    assert term.writes_in_call == 0  # ... never while a call ran
    assert len(lines) == 3  # and each pass still ends with its line


def test_elsewhere_one_line_per_pass_and_no_bar(compose, caplog):
    stream = Terminal()
    stream.isatty = lambda: False
    lines = _measure(compose, caplog, stream, bars=None)
    assert stream.getvalue() == ""
    assert [line.split(":")[0] for line in lines] == [
        "pass 1 of at least 3",
        "pass 2 of at least 3",
        "pass 3 of 3+",
    ]
    assert "24 requests, 72 output tokens" in lines[-1]


def test_fast_passes_get_a_line_every_few_seconds_and_the_last_always(caplog):
    """A tiny model's passes take milliseconds: one line each would flood run.log (and
    fill a pipe nobody drains yet)."""
    now = [0.0]
    display = Display(io.StringIO(), bars=False, pass_line_every_s=5.0, clock=lambda: now[0])
    caplog.set_level(logging.INFO, logger="runner.progress")
    for k in range(1, 101):  # 100 passes of 0.1 s
        now[0] = k * 0.1
        display.pass_done(f"pass {k}", final=k == 100)
    assert [r.getMessage() for r in caplog.records] == ["pass 1", "pass 51", "pass 100"]


def test_pass_line_states_the_stopping_rule():
    line = pass_line(2, 3, 16, 512, 4.5, 5.0, 600.0)
    assert line == (
        "pass 2 of at least 3: 16 requests, 512 output tokens, 4.50 s measured "
        "(stops at >= 3 passes and >= 5 s, or at 600 s)"
    )
    assert pass_line(4, 3, 32, 1024, 4.9, 5.0, 600.0).startswith("pass 4 of 4+:")
