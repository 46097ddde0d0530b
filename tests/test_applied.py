"""On the tiny model, on CPU: each choice really changed what ran (read back, not assumed)."""

from __future__ import annotations

import pytest

from runner.run import run
from tests.conftest import TINY


def measure(compose, tmp_path, *overrides):
    cfg = compose([*TINY, *overrides])
    result = run(cfg, tmp_path / "run", list(overrides)).to_dict()
    assert result["status"] == "ok", result["error"]
    return result


def test_baseline_is_plain_float32_on_cpu(compose, tmp_path):
    applied = measure(compose, tmp_path, "quant=none")["applied"]
    assert applied["model"]["quantization"] == {"linear_4bit": 0, "linear_8bit": 0}
    assert set(applied["model"]["parameter_dtypes"]) == {"float32"}
    assert set(applied["model"]["parameter_devices"]) == {"cpu"}
    assert applied["model"]["compiled"] is False
    assert applied["generate"]["generation_mode"] == "greedy_search"


def test_nf4_replaces_linear_layers_with_4bit(compose, tmp_path):
    result = measure(compose, tmp_path, "quant=nf4")
    q = result["applied"]["model"]["quantization"]
    assert q["linear_4bit"] == 14  # 2 layers x (q, k, v, o, gate, up, down)
    assert q["bnb_4bit_quant_type"] == ["nf4"]
    assert result["requested"]["from_pretrained"]["quantization_config"]["load_in_4bit"] is True


def test_nf4_double_quant_is_read_back(compose, tmp_path):
    q = measure(compose, tmp_path, "quant=nf4-double")["applied"]["model"]["quantization"]
    assert q["bnb_4bit_use_double_quant"] == [True]


def test_int8_replaces_linear_layers_with_8bit(compose, tmp_path):
    q = measure(compose, tmp_path, "quant=int8")["applied"]["model"]["quantization"]
    assert q["linear_8bit"] == 14
    assert q["linear_4bit"] == 0


def test_compile_on_runs_compiled_frames(compose, tmp_path):
    result = measure(compose, tmp_path, "compile=on")
    model = result["applied"]["model"]
    assert model["compiled"] is True
    assert model["compiled_frames"] > 0
    assert result["metrics"]["compile_seconds"] > 0


def test_beam_search_multiplies_rows_per_step(compose, tmp_path):
    result = measure(compose, tmp_path, "decoding=beam", "decoding.num_beams=3")
    gen = result["applied"]["generate"]
    assert gen["generation_mode"] == "beam_search"
    assert gen["num_beams"] == 3
    assert gen["rows_per_step_in_warmup"] == 3  # batch 1 x 3 beams


def test_sampling_depends_on_seed_and_greedy_does_not(compose, tmp_path):
    def sample(*o):
        return measure(compose, tmp_path, *o)["applied"]["generate"]

    s0 = sample("decoding=sample", "decoding.temperature=2.0", "decoding.seed=0")
    s1 = sample("decoding=sample", "decoding.temperature=2.0", "decoding.seed=1")
    assert s0["generation_mode"] == "sample" and s0["do_sample"] is True
    assert s0["sample_output"] != s1["sample_output"]
    g0 = sample("decoding.seed=0")
    g1 = sample("decoding.seed=1")
    assert g0["sample_output"] == g1["sample_output"]


def test_loading_dtype_is_read_back(compose, tmp_path):
    applied = measure(compose, tmp_path, "loading.dtype=bfloat16")["applied"]
    assert set(applied["model"]["parameter_dtypes"]) == {"bfloat16"}


def test_fixed_output_length_holds_for_every_request(compose, tmp_path):
    result = measure(compose, tmp_path, "decoding.max_new_tokens=6", "workload.num_prompts=3")
    assert result["metrics"]["output_tokens"] == 6 * 3 * result["metrics"]["repeats"]


def test_library_failure_becomes_a_failed_result(compose, tmp_path):
    # generate() refuses an unknown kwarg only when called: a runtime failure, recorded.
    cfg = compose([*TINY, "+decoding.extra.no_such_flag=1"])
    result = run(cfg, tmp_path / "run", []).to_dict()
    assert result["status"] == "failed"
    assert result["error"]["phase"] in ("verify", "warmup")
    assert "no_such_flag" in result["error"]["message"]
    assert (tmp_path / "run" / "result.json").is_file()


@pytest.mark.parametrize("extra", ["decoding.cache_implementation=static"])
def test_static_cache_runs_on_cpu(compose, tmp_path, extra):
    gen = measure(compose, tmp_path, extra)["applied"]["generate"]
    assert gen["cache_implementation"] == "static"


def test_random_weights_build_the_architecture_without_the_checkpoint(compose, tmp_path):
    result = measure(compose, tmp_path, "model.weights=random", "model.init_seed=7")
    assert "/random/" in result["applied"]["model_path"]
    # Fixed output length holds even though random weights may emit EOS at any step.
    assert result["metrics"]["output_tokens"] == 4 * 2 * result["metrics"]["repeats"]
    again = measure(compose, tmp_path / "again", "model.weights=random", "model.init_seed=7")
    assert again["applied"]["model_path"] == result["applied"]["model_path"]  # cached


def test_nf4_compile_and_beams_together(compose, tmp_path):
    # The acceptance point: python -m runner model=tiny quant=nf4 compile=on decoding=beam
    result = measure(compose, tmp_path, "quant=nf4", "compile=on", "decoding=beam")
    model, gen = result["applied"]["model"], result["applied"]["generate"]
    assert model["quantization"]["linear_4bit"] == 14
    assert model["compiled"] is True and model["compiled_frames"] > 0
    assert gen["generation_mode"] == "beam_search" and gen["rows_per_step_in_warmup"] == 4


def test_top_k_zero_turns_top_k_off_and_passes_verification(compose, tmp_path):
    gen = measure(compose, tmp_path, "decoding=sample", "decoding.top_k=0")["applied"]["generate"]
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
