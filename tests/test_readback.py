"""Read-back helpers on small modules and hand-made read-backs (no full run)."""

from __future__ import annotations

import pytest
import torch

from runner.models.readback import (
    compile_evidence_mismatches,
    compiled_frames,
    generation_mismatches,
    model_mismatches,
)
from runner.translate import CompileSpec
from tests.conftest import TINY


class Small(torch.nn.Module):
    """A module of our own: Dynamo skips frames of torch.nn's own modules (Sequential...)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.lin(x)) * 2


def _compiled_call(model: torch.nn.Module) -> int | None:
    with compiled_frames() as count:
        model(torch.ones(2, 4))
    return count.frames


def test_each_block_counts_its_own_compiled_frames():
    # Two runs in one process, as with isolation=inline: the second model has the same
    # architecture, so Dynamo would reuse the first one's code without the fresh scope.
    counts = []
    for _ in range(2):
        model = Small()
        model.compile(backend="eager")
        counts.append(_compiled_call(model))
    assert counts[0] >= 1
    assert counts[1] == counts[0]
    # After compiled runs, a block that runs only eager code reads 0: the check can fail.
    assert _compiled_call(Small()) == 0
    with compiled_frames(enabled=False) as off:
        model(torch.ones(2, 4))
    assert off.frames is None


@pytest.mark.parametrize(
    ("compiled", "warmup", "frames", "ok"),
    [(True, 2, 3, True), (True, 2, 0, False), (True, 0, 0, True), (False, 2, None, True)],
)
def test_a_compiled_run_must_compile_frames_in_its_warmup(compiled, warmup, frames, ok):
    problems = compile_evidence_mismatches(compiled, warmup, frames)
    assert problems == ([] if ok else ["compile.enabled: no frame was compiled during warmup"])


def test_top_k_zero_builds_no_top_k_warper(tiny_dir):
    from transformers import AutoModelForCausalLM

    from runner.models.readback import read_back_generation

    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    base = {"max_new_tokens": 4, "do_sample": True}
    default = read_back_generation(model, base)
    off = read_back_generation(model, {**base, "top_k": 0})
    five = read_back_generation(model, {**base, "top_k": 5})
    assert "TopKLogitsWarper" in default["logits_processors"]  # sampling's default top_k=50
    assert off["top_k"] == 0 and "TopKLogitsWarper" not in off["logits_processors"]
    assert "TopKLogitsWarper" in five["logits_processors"]
    assert generation_mismatches({**base, "top_k": 0}, off) == []


@pytest.mark.parametrize(
    ("requested", "built", "problem"),
    [
        ({"top_k": 0}, ["TopKLogitsWarper"], "generate.top_k=0: TopKLogitsWarper built anyway"),
        ({"top_k": 5}, [], "generate.top_k=5: TopKLogitsWarper not built"),
        ({"min_p": 0.1}, [], "generate.min_p=0.1: MinPLogitsWarper not built"),
        ({"repetition_penalty": 1.0}, [], None),
        ({"no_repeat_ngram_size": 3}, ["NoRepeatNGramLogitsProcessor"], None),
    ],
)
def test_fields_must_build_their_logits_processor(requested, built, problem):
    applied = {**requested, "logits_processors": built}
    assert generation_mismatches(requested, applied) == ([problem] if problem else [])


def _placed(devices: dict[str, int], device_map: dict[str, str] | None = None) -> dict:
    return {
        "quantization": {"linear_4bit": 0, "linear_8bit": 0},
        "parameter_dtypes": {"float32": 1},
        "parameter_devices": devices,
        "hf_device_map": device_map or {},
        "attn_implementation": "sdpa",
        "compiled": False,
    }


@pytest.mark.parametrize(
    ("applied", "ok"),
    [
        (_placed({"cpu": 10}), True),
        (_placed({"meta": 10}, {"": "disk"}), True),  # disk: accelerate's last resort
        (_placed({"cuda:0": 10}), False),
        (_placed({"cuda:0": 5, "cpu": 5}, {"model.layers.0": "0", "lm_head": "cpu"}), False),
    ],
)
def test_placement_outside_the_memory_caps_is_a_mismatch(applied, ok):
    requested = {"device_map": "auto", "max_memory": {"cpu": "1GiB"}}
    problems = model_mismatches(requested, CompileSpec(enabled=False), applied)
    assert problems == ([] if ok else [problems[0]])
    assert ok or problems[0].startswith("loading.max_memory: caps on ['cpu'], model placed on")


@pytest.mark.parametrize(
    ("device_map", "devices", "ok"),
    [(0, {"cuda:0": 1}, True), (1, {"cuda:0": 1}, False), ("cuda:1", {"cuda:0": 1}, False)],
)
def test_gpu_index_device_map_is_checked_exactly(device_map, devices, ok):
    problems = model_mismatches({"device_map": device_map}, CompileSpec(False), _placed(devices))
    assert (problems == []) is ok


def test_memory_cap_reaches_the_placement_under_auto(compose, tmp_path):
    from runner.models.load import load_model
    from runner.models.readback import read_back_model
    from runner.translate import from_pretrained_kwargs, requested_from_pretrained

    cfg = compose(["model=tiny", "loading=auto", "++loading.max_memory={cpu:1KB}"])
    kwargs = {**from_pretrained_kwargs(cfg), "offload_folder": str(tmp_path)}
    applied = read_back_model(load_model(cfg.model, kwargs, None).model)
    # A cap below the model's size leaves accelerate only the disk.
    assert applied["hf_device_map"] == {"": "disk"}
    assert model_mismatches(requested_from_pretrained(cfg), CompileSpec(False), applied) == []


@pytest.mark.slow
def test_a_model_offloaded_to_disk_runs_end_to_end(compose, tmp_path):
    """Inputs go to accelerate's execution device, not to the offloaded weights' meta."""
    from runner.run import run

    cfg = compose(
        [
            *TINY,
            "loading=auto",
            "++loading.max_memory={cpu:1KB}",
            f"+loading.extra.offload_folder={tmp_path / 'offload'}",
            "measure.isolation=inline",
        ]
    )
    result = run(cfg, tmp_path / "run")
    assert result.status.value == "ok", result.error
    assert result.applied["model"]["hf_device_map"] == {"": "disk"}
    assert result.metrics.latency.output_tokens > 0
