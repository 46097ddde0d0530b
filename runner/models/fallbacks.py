"""Silent fallbacks: where a library quietly does less than was asked, and what the run does.

Each known case is either a verification failure (the run is ``failed`` with a one-line
reason: what ran is not what was asked) or a named warning (recorded in ``warnings`` and
``warnings_detail.named``, shown by the summary, the report and ``summary.csv``: what ran
is what was asked, with a caveat). :data:`POLICY` is the list; docs/methodology.md
describes it for users (a test keeps the two in step).

The generate case (a kwarg transformers calls "not valid and may be ignored") is checked
at read-back, before warmup, by :func:`runner.models.readback.flags_transformers_ignores`.
The compile cases come from what Dynamo counted during warmup and during measurement
(:func:`runner.models.readback.compiled_frames`).
"""

from __future__ import annotations

from runner.models.readback import FrameCount
from runner.sections.warnings import NamedWarning

FAIL, WARN = "fails verification", "named warning"

# name -> (policy, what happened)
POLICY: dict[str, tuple[str, str]] = {
    "generate.ignored_flag": (
        FAIL,
        "a generate kwarg transformers' validation calls not valid and may be ignored "
        "(e.g. output_scores without return_dict_in_generate)",
    ),
    "compile.recompile_limit": (
        FAIL,
        "Dynamo hit its recompile limit: every shape after it runs eager",
    ),
    "compile.graph_breaks": (
        WARN,
        "Dynamo split the forward at graph breaks, or gave up on whole frames: those parts "
        "run eager between compiled graphs (compile.fullgraph=true refuses them)",
    ),
    "compile.compiled_during_measure": (
        WARN,
        "Dynamo compiled frames inside the measured window (a shape warmup did not see): "
        "compilation time is in the measured figures",
    ),
}


def compile_fallbacks(count: FrameCount, phase: str) -> tuple[list[str], list[NamedWarning]]:
    """(verification problems, named warnings) from what Dynamo did during ``phase``
    (``warmup`` or ``measure``); nothing when compilation is off (``frames`` is None)."""
    if count.frames is None:
        return [], []
    problems: list[str] = []
    named: list[NamedWarning] = []
    if count.recompile_limit:
        problems.append(
            f"compile: torch._dynamo hit its recompile limit during {phase}, and the shapes "
            "after it ran eager (one graph per new shape: leave compile.dynamic unset, or "
            "use decoding.cache_implementation=static)"
        )
    # Frames past the recompile limit are skipped too: that failure already says so.
    if count.graph_breaks or (count.skipped and not count.recompile_limit):
        breaks = sum(count.graph_breaks.values())
        reasons = ", ".join(f"{r} ×{n}" for r, n in sorted(count.graph_breaks.items()))
        text = f"{breaks} graph break(s) and {count.skipped} frame(s) left eager during {phase}"
        named.append(
            NamedWarning("compile.graph_breaks", text + (f": {reasons}" if reasons else ""), phase)
        )
    if phase == "measure" and count.frames:
        named.append(
            NamedWarning(
                "compile.compiled_during_measure",
                f"{count.frames} frame(s) compiled inside the measured window: its figures "
                "include compilation",
                phase,
            )
        )
    return problems, named
