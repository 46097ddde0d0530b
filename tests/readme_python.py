"""``python`` for the README-commands test (tests/readme_commands.py): a measured run.

``python -m runner ARGS`` runs the runner in this process with the substitutions of
:data:`TINY_RUN` and the energy setting (the keys they set are dropped from ARGS first), at
most :data:`MAX_TRIALS` trials of a search, and torch.compile's eager backend with one graph
per frame (:data:`RECOMPILE_LIMIT`); anything else runs the real interpreter unchanged.
"""

from __future__ import annotations

import os
import runpy
import sys

TINY_RUN = [
    "model=tiny",
    "loading=cpu",
    "measure=quick",
    "workload.num_prompts=8",  # the README's search tries batches up to 8
    "decoding.max_new_tokens=4",
    "measure.isolation=inline",  # the eager backend below exists only in this process
]


# Energy is measured only where the command asks for an energy metric (a search objective or
# constraint), with a one-second idle baseline instead of three, and a measured window that
# reaches CodeCarbon's sampling interval (a shorter one would leave the energy unresolved,
# and the search is refused): both 0.1 s.
NO_ENERGY = ["energy=off"]
QUICK_ENERGY = [
    "energy=codecarbon",
    "energy.baseline_seconds=1",
    "energy.measure_power_secs=0.1",
    "measure.min_seconds=0.1",
]


# A search's trials, at most: each is a whole run, and 4 distinct points show every part
# of a search (its front, its trials, its report) as well as 12 do, in a third of the time.
MAX_TRIALS = 4
TRIALS = "hydra.sweeper.n_trials="


def _fewer_trials(arg: str) -> str:
    if arg.startswith(TRIALS) and arg[len(TRIALS) :].isdigit():
        return f"{TRIALS}{min(int(arg[len(TRIALS) :]), MAX_TRIALS)}"
    return arg


def substitute(args: list[str]) -> list[str]:
    energy = QUICK_ENERGY if any("energy_" in a for a in args) else NO_ENERGY
    tiny = [*TINY_RUN, *energy]
    keys = {o.split("=", 1)[0] for o in tiny}
    kept = [_fewer_trials(a) for a in args if a.lstrip("+~").split("=", 1)[0] not in keys]
    return [*kept, *tiny]


# Dynamo's graphs per frame before it runs the frame eager. Its default, 8, traces the tiny
# model again for each of the warmup's shapes: an int8 run then spends 15-30 s in Dynamo on
# two CPUs (bitsandbytes breaks the graph at every layer). One graph per frame still traces,
# breaks, reaches the limit and is reported as a user's compiled run is.
RECOMPILE_LIMIT = 1


def _eager_compile() -> None:
    """Inductor needs a minute per compiled run on two CPUs; Dynamo with the eager backend
    still traces, counts frames and falls back exactly as the runner checks."""
    import torch

    torch._dynamo.config.recompile_limit = RECOMPILE_LIMIT

    compile_ = torch.nn.Module.compile

    def compile_eager(self, *args, **kwargs):
        kwargs.setdefault("backend", "eager")
        return compile_(self, *args, **kwargs)

    torch.nn.Module.compile = compile_eager


def main(argv: list[str]) -> None:
    if argv[:2] != ["-m", "runner"]:
        os.execv(sys.executable, [sys.executable, *argv])
    _eager_compile()
    sys.argv = ["runner", *substitute(argv[2:])]
    runpy.run_module("runner", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
