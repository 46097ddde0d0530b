"""Local model directories whose forward fails on purpose, loaded with trust_remote_code.

They fail inside ``generate`` of a real run, the way a native crash, a library
error or a scheduler's SIGTERM would: nothing in the runner knows about them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

MODELING = """
import ctypes
import os
import signal

from transformers import LlamaForCausalLM


class FaultyLlama(LlamaForCausalLM):
    calls = 0

    def forward(self, *args, **kwargs):
        FaultyLlama.calls += 1
        if FaultyLlama.calls > self.config.fault_after_calls:
            fault = self.config.fault
            if fault == "segfault":
                ctypes.string_at(0)  # a real SIGSEGV inside the process
            elif fault == "raise":
                raise RuntimeError("injected failure inside forward")
            elif fault == "sigterm":
                os.kill(os.getpid(), signal.SIGTERM)
            elif fault == "slow":  # announce the measured phase, then take a while
                open(self.config.marker, "a").close()
                import time

                time.sleep(0.05)
        return super().forward(*args, **kwargs)
"""


def make_faulty_model(
    tiny_dir: Path, target: Path, fault: str, after_calls: int, marker: Path | None = None
) -> Path:
    """Copy the tiny model to ``target`` with a forward that ``fault``s after N calls."""
    shutil.copytree(tiny_dir, target, ignore=shutil.ignore_patterns(".complete"))
    (target / "modeling_faulty.py").write_text(MODELING)
    config = json.loads((target / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_faulty.FaultyLlama"}
    config["fault"] = fault
    config["fault_after_calls"] = after_calls
    config["marker"] = str(marker or target / "measuring")
    (target / "config.json").write_text(json.dumps(config, indent=2))
    return target
