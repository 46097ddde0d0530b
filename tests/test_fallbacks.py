"""Silent fallbacks: Dynamo's counted on small modules, each case's policy, and the docs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from runner.models.fallbacks import FAIL, POLICY, WARN, compile_evidence, compile_fallbacks
from runner.models.readback import FrameCount, compiled_frames, generation_mismatches

ROOT = Path(__file__).resolve().parents[1]


class Breaks(torch.nn.Module):
    """A forward Dynamo must split: the graph break sits between two compiled pieces."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(x) * 2
        torch._dynamo.graph_break()
        return x + 1


class Plain(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x) * 2


def test_graph_breaks_are_counted():
    model = Breaks()
    model.compile(backend="eager")
    with compiled_frames() as count:
        model(torch.ones(2, 3))
    assert sum(count.graph_breaks.values()) == 1 and count.frames >= 1
    assert not count.recompile_limit
    (named,) = compile_fallbacks(count, "warmup")
    assert named.name == "compile.graph_breaks" and named.message.startswith("1 graph break(s)")


def test_the_recompile_limit_is_seen_and_a_clean_compile_gives_no_warning():
    import torch._dynamo.config as dynamo_config

    model = Plain()
    model.compile(backend="eager", dynamic=False)
    with dynamo_config.patch(recompile_limit=2), compiled_frames() as count:
        for n in range(1, 6):  # a new shape each call: one graph per shape, then eager
            model(torch.ones(n, 3))
    assert count.recompile_limit and count.frames == 2
    assert [w.name for w in compile_fallbacks(count, "warmup")] == ["compile.recompile_limit"]
    assert compile_evidence(count)["recompile_limit_hit"] is True

    fresh = Plain()
    fresh.compile(backend="eager")
    with compiled_frames() as clean:
        fresh(torch.ones(2, 3))
    assert clean.frames >= 1 and compile_fallbacks(clean, "warmup") == []


@pytest.mark.parametrize(
    ("count", "phase", "names"),
    [
        (FrameCount(frames=None), "measure", []),  # compile off
        (FrameCount(frames=0), "measure", []),  # nothing new compiled while measuring
        (FrameCount(frames=3), "measure", ["compile.compiled_during_measure"]),
        (FrameCount(frames=3), "warmup", []),
        (FrameCount(frames=3, skipped=2), "warmup", ["compile.graph_breaks"]),
        (
            FrameCount(frames=8, skipped=1, recompile_limit=True),
            "warmup",
            ["compile.recompile_limit"],
        ),
    ],
)
def test_dynamo_fallbacks_become_named_warnings(count, phase, names):
    assert [w.name for w in compile_fallbacks(count, phase)] == names
    assert all(w.phase == phase for w in compile_fallbacks(count, phase))


def test_a_generate_kwarg_transformers_would_drop_fails_verification(tiny_dir):
    from transformers import AutoModelForCausalLM

    from runner.models.readback import read_back_generation

    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    asked = {"max_new_tokens": 4, "do_sample": False, "output_scores": True}
    applied = read_back_generation(model, asked)
    assert applied["output_scores"] is True  # the read-back alone would say it applied
    assert set(applied["ignored_by_transformers"]) == {"output_scores"}
    (problem,) = generation_mismatches(asked, applied)
    assert problem.startswith("generate.output_scores=True: transformers ignores it (")
    kept = {**asked, "return_dict_in_generate": True}
    assert read_back_generation(model, kept)["ignored_by_transformers"] == {}


def test_every_fallback_policy_is_documented():
    """docs/methodology.md's table names each case with the policy the code applies."""
    text = (ROOT / "docs" / "methodology.md").read_text()
    rows = dict(
        re.findall(
            r"^\| `([a-z_.]+)` \|.*\| (fails verification|named warning) \|$",
            text,
            flags=re.MULTILINE,
        )
    )
    assert rows == {name: policy for name, (policy, _) in POLICY.items()}
    assert {p for p, _ in POLICY.values()} <= {FAIL, WARN}


@pytest.mark.slow
def test_runs_record_their_fallbacks(compose, tmp_path):
    """End to end: the ignored kwarg fails the run before warmup; the recompile limit of
    compile.dynamic=false is a named warning the result and the summary carry."""
    from runner import summary
    from runner.run import run
    from tests.conftest import TINY

    inline = [*TINY, "measure.isolation=inline"]
    dropped = run(compose([*inline, "+decoding.extra.output_scores=true"]), tmp_path / "a")
    assert dropped.status.value == "failed" and dropped.error.phase == "verify"
    assert dropped.error.message.startswith("generate.output_scores=True: transformers ignores")

    # One graph per KV length under dynamic=false: 12 new tokens pass the limit of 8.
    eager = ["compile=on", "compile.backend=eager", "compile.dynamic=false"]
    eager += ["decoding.max_new_tokens=12"]
    result = run(compose([*inline, *eager]), tmp_path / "b")
    assert result.status.value == "ok", result.error
    assert "compile.recompile_limit" in result.warnings_detail.names()
    assert result.warnings[0].startswith("compile.recompile_limit: torch._dynamo hit")
    assert result.applied["model"]["recompile_limit_hit"] is True
    said = [w for w in result.warnings_detail.library if w.source.startswith("torch._dynamo")]
    assert said and said[0].message.startswith("torch._dynamo hit config.recompile_limit")
    assert "warning: compile.recompile_limit:" in summary.render(result, str(tmp_path / "b"))


def test_the_recompile_advice_names_only_what_the_run_has_not_set():
    from runner.models.fallbacks import recompile_advice

    unset = recompile_advice(None, static_cache=False)
    assert "compile.dynamic" not in unset and "cache_implementation=static" in unset
    fixed = recompile_advice(False, static_cache=False)
    assert "leaving compile.dynamic unset" in fixed and "cache_implementation=static" in fixed
    assert "compile.dynamic" in recompile_advice(False, static_cache=True)
    done = recompile_advice(None, static_cache=True)
    assert "graph break" in done and "cache_implementation" not in done
