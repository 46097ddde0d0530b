"""Silent fallbacks: where a library quietly does less than was asked, and what the run does.

Each known case is either a verification failure (the run is ``failed`` with a one-line
reason: what ran is not what was asked) or a named warning (in ``warnings`` and
``warnings_detail.named``, shown by the summary, the report and ``summary.csv``: the run
measured what was asked, partly through a fallback the figures must be read with).
:data:`POLICY` is the list; docs/methodology.md states it for users (a test keeps the two
in step).

Where each is checked: a generate kwarg transformers would drop, at read-back before warmup
(:func:`runner.models.readback.flags_transformers_ignores`); a compiled run that compiled
nothing, after warmup (:func:`runner.models.readback.compile_evidence_mismatches`); the
Dynamo fallbacks below, from what Dynamo counted during warmup and during measurement
(:func:`runner.models.readback.compiled_frames`).
"""

from __future__ import annotations

from typing import Any

from runner.models.readback import FrameCount
from runner.sections.warnings import NamedWarning

FAIL, WARN = "fails verification", "named warning"
WARMUP_NOT_CONVERGED = "warmup.not_converged"
SERVING_SCHEDULE_LAG = "serving.schedule_lag"
SERVING_UNFINISHED = "serving.unfinished"
SERVING_SHORT_WINDOW = "serving.short_window"
HARDWARE_GPU_THROTTLE = "hardware.gpu_throttle"
HARDWARE_CLOCK_DROP = "hardware.clock_drop"
HARDWARE_INTERFERENCE = "hardware.interference"

# name -> (policy, what happened)
POLICY: dict[str, tuple[str, str]] = {
    "generate.ignored_flag": (
        FAIL,
        "a generate kwarg that transformers' own validation calls not valid and may be "
        "ignored (e.g. output_scores without return_dict_in_generate): it would be dropped",
    ),
    "compile.not_used": (
        FAIL,
        "compile on, but Dynamo compiled no frame during warmup: the model ran eager",
    ),
    "compile.recompile_limit": (
        WARN,
        "Dynamo hit its recompile limit for a frame: that frame runs eager for every new "
        "shape after it, while frames that compiled inside it stay compiled",
    ),
    "compile.graph_breaks": (
        WARN,
        "Dynamo split a frame at graph breaks, or gave up on whole frames: those parts run "
        "eager between compiled graphs (compile.fullgraph=true refuses them instead)",
    ),
    "compile.compiled_during_measure": (
        WARN,
        "Dynamo compiled frames inside the measured window (a shape warmup did not see): "
        "the measured figures include compilation",
    ),
    # Not a library's: the run's own warmup rule (runner.run._warmup) that was not met.
    WARMUP_NOT_CONVERGED: (
        WARN,
        "measure.warmup_until_cv was not met within warmup_max_calls or warmup_max_seconds: "
        "the measured window starts on a model or machine still settling",
    ),
    # The load generator's own (runner.serving): the load asked for was not the one offered.
    SERVING_SCHEDULE_LAG: (
        WARN,
        "under scenario=online a request was sent later than its schedule by more than "
        "scenario.max_lag_ms: the generator did not offer the rate asked",
    ),
    SERVING_UNFINISHED: (
        WARN,
        "under scenario=online requests were still unanswered scenario.drain_seconds after the "
        "last was sent and were aborted: they count as missing every objective",
    ),
    SERVING_SHORT_WINDOW: (
        WARN,
        "under scenario=online the steady-state window was shorter than the median "
        "end-to-end latency: its requests mostly finished after it, so its rates describe "
        "a transient, not a steady state",
    ),
    HARDWARE_GPU_THROTTLE: (
        WARN,
        "within a measured window a GPU reported a thermal or power throttle reason (or a "
        "hardware slowdown) in NVML's clock event reasons: its clocks were held down",
    ),
    HARDWARE_CLOCK_DROP: (
        WARN,
        "within a measured window a GPU's SM clock or the CPUs' mean frequency fell more than "
        "measure.throttle_clock_drop below its level at the window's start",
    ),
    HARDWARE_INTERFERENCE: (
        WARN,
        "over a measured window, processes outside the run kept more than "
        "measure.interference_cores CPU cores busy on average: the run shared the machine",
    ),
}


def compile_evidence(count: FrameCount) -> dict[str, Any]:
    """What Dynamo did in warmup, for ``applied.model`` next to ``compiled_frames``."""
    return {
        "graph_breaks": sum(count.graph_breaks.values()),
        "frames_left_eager": count.skipped,
        "recompile_limit_hit": count.recompile_limit,
    }


def recompile_advice(dynamic: bool | None, static_cache: bool) -> str:
    """What avoids the recompile limit, given what the run already set."""
    fixes = []
    if dynamic is False:
        fixes.append("leaving compile.dynamic unset (Dynamo then marks sizes that change dynamic)")
    if not static_cache:
        fixes.append("decoding.cache_implementation=static (the cache keeps one shape)")
    if not fixes:
        return "with a static cache and dynamic shapes allowed, a graph break is the likely cause"
    return " or ".join(fixes) + " avoids it where no graph break prevents it"


def compile_fallbacks(
    count: FrameCount, phase: str, *, dynamic: bool | None = None, static_cache: bool = False
) -> list[NamedWarning]:
    """The named warnings from what Dynamo did during ``phase`` (``warmup`` or ``measure``);
    none when compilation is off (``frames`` is None). ``dynamic`` and ``static_cache``:
    the run's compile.dynamic and whether its cache is static, for the advice."""
    if count.frames is None:
        return []
    named: list[NamedWarning] = []
    if count.recompile_limit:
        named.append(
            NamedWarning(
                "compile.recompile_limit",
                f"torch._dynamo hit its recompile limit during {phase}: that frame ran eager "
                "for the shapes after it (one graph per new shape; "
                f"{recompile_advice(dynamic, static_cache)})",
                phase,
            )
        )
    # Frames past the recompile limit count as left eager too: that warning says so.
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
    return named
