"""On the tiny model, on CPU: each choice really changed what ran (read back, not assumed).

Each distinct run happens once per module (:func:`measured`); tests that can assert on the
same run share it. The two compiling runs take about a minute each: marked slow.
"""

from __future__ import annotations

import pytest

from runner.preflight_compose import compose_typed
from runner.run import run
from tests.conftest import TINY

# Shared runs: greedy float32 (also the fixed-length check and the greedy half of the seed
# check), and sampling with top-k off (also the sampling half of the seed check).
BASELINE = ("quant=none", "decoding.max_new_tokens=6", "workload.num_prompts=3")
SAMPLING = ("decoding=sample", "decoding.temperature=2.0", "decoding.top_k=0")


def _ok_run(run_dir, overrides):
    result = run(compose_typed([*TINY, *overrides]), run_dir, list(overrides)).to_dict()
    assert result["status"] == "ok", result["error"]
    return result


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """measured(*overrides) -> the result of an ``ok`` run of TINY plus ``overrides``."""
    done: dict[tuple[str, ...], dict] = {}

    def measure(*overrides: str) -> dict:
        if overrides not in done:
            done[overrides] = _ok_run(tmp_path_factory.mktemp("run"), overrides)
        return done[overrides]

    return measure


def test_baseline_is_plain_float32_on_cpu(measured):
    applied = measured(*BASELINE, "decoding.seed=0")["applied"]
    assert applied["model"]["quantization"] == {"linear_4bit": 0, "linear_8bit": 0}
    assert set(applied["model"]["parameter_dtypes"]) == {"float32"}
    assert set(applied["model"]["parameter_devices"]) == {"cpu"}
    assert applied["model"]["compiled"] is False
    assert applied["generate"]["generation_mode"] == "greedy_search"


def test_nf4_replaces_linear_layers_with_4bit(measured):
    result = measured("quant=nf4")
    q = result["applied"]["model"]["quantization"]
    assert q["linear_4bit"] == 14  # 2 layers x (q, k, v, o, gate, up, down)
    assert q["bnb_4bit_quant_type"] == ["nf4"]
    assert result["requested"]["from_pretrained"]["quantization_config"]["load_in_4bit"] is True


def test_nf4_double_quant_is_read_back(measured):
    q = measured("quant=nf4-double")["applied"]["model"]["quantization"]
    assert q["bnb_4bit_use_double_quant"] == [True]


def test_int8_replaces_linear_layers_with_8bit(measured):
    q = measured("quant=int8")["applied"]["model"]["quantization"]
    assert q["linear_8bit"] == 14
    assert q["linear_4bit"] == 0


def test_beam_search_multiplies_rows_per_step(measured):
    result = measured("decoding=beam", "decoding.num_beams=3")
    gen = result["applied"]["generate"]
    assert gen["generation_mode"] == "beam_search"
    assert gen["num_beams"] == 3
    assert gen["rows_per_step_in_warmup"] == 3  # batch 1 x 3 beams


def test_sampling_depends_on_seed_and_greedy_does_not(measured):
    def generated(*o):
        return measured(*o)["applied"]["generate"]

    s0 = generated(*SAMPLING, "decoding.seed=0")
    s1 = generated(*SAMPLING, "decoding.seed=1")
    assert s0["generation_mode"] == "sample" and s0["do_sample"] is True
    assert s0["sample_output"] != s1["sample_output"]
    g0 = generated(*BASELINE, "decoding.seed=0")
    g1 = generated(*BASELINE, "decoding.seed=1")
    assert g0["sample_output"] == g1["sample_output"]


def test_loading_dtype_is_read_back(measured):
    applied = measured("loading.dtype=bfloat16")["applied"]
    assert set(applied["model"]["parameter_dtypes"]) == {"bfloat16"}


def test_fixed_output_length_holds_for_every_request(measured):
    result = measured(*BASELINE, "decoding.seed=0")
    assert result["metrics"]["output_tokens"] == 6 * 3 * result["metrics"]["repeats"]


def test_library_failure_becomes_a_failed_result(compose, tmp_path):
    # generate() refuses an unknown kwarg only when called: a runtime failure, recorded.
    cfg = compose([*TINY, "+decoding.extra.no_such_flag=1"])
    result = run(cfg, tmp_path / "run", []).to_dict()
    assert result["status"] == "failed"
    assert result["error"]["phase"] in ("verify", "warmup")
    assert "no_such_flag" in result["error"]["message"]
    assert (tmp_path / "run" / "result.json").is_file()


def test_static_cache_runs_on_cpu(measured):
    gen = measured("decoding.cache_implementation=static")["applied"]["generate"]
    assert gen["cache_implementation"] == "static"


def test_random_weights_build_the_architecture_without_the_checkpoint(measured, tmp_path):
    random_weights = ("model.weights=random", "model.init_seed=7")
    result = measured(*random_weights)
    assert "/random/" in result["applied"]["model_path"]
    # Fixed output length holds even though random weights may emit EOS at any step.
    assert result["metrics"]["output_tokens"] == 4 * 2 * result["metrics"]["repeats"]
    again = _ok_run(tmp_path / "again", random_weights)  # a second run of its own
    assert again["applied"]["model_path"] == result["applied"]["model_path"]  # cached


@pytest.mark.slow
def test_nf4_compile_and_beams_together(measured):
    # The acceptance point: python -m runner model=tiny quant=nf4 compile=on decoding=beam
    result = measured("quant=nf4", "compile=on", "decoding=beam")
    model, gen = result["applied"]["model"], result["applied"]["generate"]
    assert model["quantization"]["linear_4bit"] == 14
    assert model["compiled"] is True and model["compiled_frames"] > 0
    assert result["metrics"]["compile_seconds"] > 0  # inductor's own, reported apart
    assert gen["generation_mode"] == "beam_search" and gen["rows_per_step_in_warmup"] == 4


def test_top_k_zero_turns_top_k_off_and_passes_verification(measured):
    gen = measured(*SAMPLING, "decoding.seed=0")["applied"]["generate"]
    assert gen["top_k"] == 0 and gen["generation_mode"] == "sample"
    assert "TopKLogitsWarper" not in gen["logits_processors"]
    assert "TopPLogitsWarper" in gen["logits_processors"]  # decoding=sample sets top_p 0.9


def test_prompt_beyond_the_context_length_fails_before_generating(compose, tmp_path):
    # Not knowable before loading (built-in prompts, this tokenizer): the run's own guard.
    cfg = compose([*TINY, "decoding.max_new_tokens=1020"])
    result = run(cfg, tmp_path / "run", []).to_dict()
    assert result["status"] == "failed"
    assert result["error"]["type"] == "ConfigError"
    longest = result["workload"]["input_tokens_max"]
    assert result["error"]["message"] == (
        f"workload.max_input_tokens is unset: {longest} prompt tokens + "
        f"decoding.max_new_tokens=1020 = {longest + 1020} positions, beyond the model's "
        "maximum of 1024 (max_position_embeddings); shorten the prompts or generate fewer tokens"
    )
    assert result["metrics"]["warmup_seconds"] is None  # nothing was generated
