"""Every kwarg-producing schema field reaches its API; unset fields produce no kwarg."""

from __future__ import annotations

from dataclasses import fields

import pytest
import torch
from transformers import BitsAndBytesConfig

from runner.config.schema_generation import DecodingConfig
from runner.config.schema_model import CompileConfig, LoadingConfig, QuantConfig
from runner.translate import (
    compile_spec,
    from_pretrained_kwargs,
    generate_kwargs,
    requested_from_pretrained,
)

# field -> (overrides, which kwargs dict, expected key/value pairs in it); a target of None:
# the field reaches no kwarg (its last override changes none of them).
CASES = {
    QuantConfig: {
        "name": (["quant=int8", "quant.name=mine"], None, {}),  # label only
        "load_in_8bit": (["quant=int8"], "q", {"load_in_8bit": True}),
        "load_in_4bit": (["quant=nf4"], "q", {"load_in_4bit": True}),
        "bnb_4bit_quant_type": (["quant=fp4"], "q", {"bnb_4bit_quant_type": "fp4"}),
        "bnb_4bit_compute_dtype": (
            ["quant=nf4", "quant.bnb_4bit_compute_dtype=bfloat16"],
            "q",
            {"bnb_4bit_compute_dtype": "bfloat16"},
        ),
        "bnb_4bit_use_double_quant": (
            ["quant=nf4-double"],
            "q",
            {"bnb_4bit_use_double_quant": True},
        ),
        "llm_int8_threshold": (
            ["quant=int8", "quant.llm_int8_threshold=4.5"],
            "q",
            {"llm_int8_threshold": 4.5},
        ),
    },
    CompileConfig: {
        "enabled": (["compile=on"], "c", {"enabled": True}),
        "mode": (["compile=max-autotune"], "c", {"mode": "max-autotune"}),
        "backend": (["compile=on", "compile.backend=eager"], "c", {"backend": "eager"}),
        "fullgraph": (["compile=on", "compile.fullgraph=true"], "c", {"fullgraph": True}),
        "dynamic": (["compile=on", "compile.dynamic=false"], "c", {"dynamic": False}),
    },
    DecodingConfig: {
        "mode": (["decoding=sample"], "g", {"do_sample": True}),
        "max_new_tokens": (["decoding.max_new_tokens=7"], "g", {"max_new_tokens": 7}),
        "min_new_tokens": (
            ["workload.output_length=natural", "decoding.min_new_tokens=3"],
            "g",
            {"min_new_tokens": 3},
        ),
        "temperature": (["decoding=sample", "decoding.temperature=0.3"], "g", {"temperature": 0.3}),
        "top_k": (["decoding=sample", "decoding.top_k=5"], "g", {"top_k": 5}),
        "top_p": (["decoding=sample", "decoding.top_p=0.8"], "g", {"top_p": 0.8}),
        "min_p": (["decoding=sample", "decoding.min_p=0.05"], "g", {"min_p": 0.05}),
        "num_beams": (["decoding=beam", "decoding.num_beams=3"], "g", {"num_beams": 3}),
        "early_stopping": (
            ["decoding=beam", "decoding.early_stopping=true"],
            "g",
            {"early_stopping": True},
        ),
        "length_penalty": (
            ["decoding=beam", "decoding.length_penalty=0.5"],
            "g",
            {"length_penalty": 0.5},
        ),
        "prompt_lookup_num_tokens": (
            ["decoding=prompt-lookup", "decoding.prompt_lookup_num_tokens=4"],
            "g",
            {"prompt_lookup_num_tokens": 4},
        ),
        "repetition_penalty": (
            ["decoding.repetition_penalty=1.2"],
            "g",
            {"repetition_penalty": 1.2},
        ),
        "no_repeat_ngram_size": (
            ["decoding.no_repeat_ngram_size=3"],
            "g",
            {"no_repeat_ngram_size": 3},
        ),
        "use_cache": (["decoding.use_cache=false"], "g", {"use_cache": False}),
        "cache_implementation": (
            ["decoding.cache_implementation=static"],
            "g",
            {"cache_implementation": "static"},
        ),
        "seed": (["decoding.seed=3"], None, {}),  # consumed by run: torch.manual_seed per call
        "extra": (["+decoding.extra.output_scores=true"], "g", {"output_scores": True}),
    },
    LoadingConfig: {
        "name": (["loading=cpu", "loading.name=mine"], None, {}),  # label only
        "device_map": (["loading=cpu"], "l", {"device_map": "cpu"}),
        "dtype": (["loading.dtype=bfloat16"], "l", {"dtype": "bfloat16"}),
        "attn_implementation": (
            ["loading.attn_implementation=eager"],
            "l",
            {"attn_implementation": "eager"},
        ),
        "max_memory": (
            ["++loading.max_memory={0:20GiB,cpu:30GiB}"],
            "l",
            {"max_memory": {0: "20GiB", "cpu": "30GiB"}},
        ),
        "revision": (["loading.revision=abc123"], "l", {"revision": "abc123"}),
        "trust_remote_code": (
            ["loading.trust_remote_code=true"],
            "l",
            {"trust_remote_code": True},
        ),
        # Refused by validation (transformers 5 ignores it); never reaches a kwarg.
        "low_cpu_mem_usage": (["loading.low_cpu_mem_usage=true"], "refused", {}),
        "extra": (["+loading.extra.subfolder=sub"], "l", {"subfolder": "sub"}),
    },
}


def _produced(cfg, target):
    if target == "q":
        return requested_from_pretrained(cfg).get("quantization_config", {})
    if target == "c":
        return compile_spec(cfg.compile).to_dict()
    if target == "g":
        return generate_kwargs(cfg.decoding, cfg.workload, cfg.compile)
    return requested_from_pretrained(cfg)


def _every_kwarg(cfg):
    return [_produced(cfg, target) for target in ("l", "c", "g")]


def test_every_schema_field_has_a_case():
    for schema, cases in CASES.items():
        missing = {f.name for f in fields(schema)} - set(cases)
        assert not missing, f"{schema.__name__} fields without a translation case: {missing}"


@pytest.mark.parametrize(
    ("schema", "name"),
    [(s, n) for s, cases in CASES.items() for n in cases],
    ids=[f"{s.__name__}.{n}" for s, cases in CASES.items() for n in cases],
)
def test_field_produces_its_kwarg(compose, schema, name):
    overrides, target, expected = CASES[schema][name]
    cfg = compose(overrides)
    if target == "refused":
        from runner.config.validate import ConfigError, validate

        with pytest.raises(ConfigError):
            validate(cfg)
        return
    if target is None:
        assert _every_kwarg(cfg) == _every_kwarg(compose(overrides[:-1]))
        return
    produced = _produced(cfg, target)
    for key, value in expected.items():
        assert produced[key] == value


def test_unset_fields_produce_no_kwargs(compose):
    cfg = compose(["quant=none", "compile=off", "decoding=greedy", "loading=cpu"])
    assert requested_from_pretrained(cfg) == {"device_map": "cpu"}
    assert compile_spec(cfg.compile).to_dict() == {"enabled": False}
    assert generate_kwargs(cfg.decoding, cfg.workload, cfg.compile) == {
        "max_new_tokens": 32,
        "min_new_tokens": 32,  # workload.output_length=fixed
        "do_sample": False,
    }


def test_natural_length_leaves_min_new_tokens_unset(compose):
    cfg = compose(["workload.output_length=natural"])
    assert "min_new_tokens" not in generate_kwargs(cfg.decoding, cfg.workload, cfg.compile)


@pytest.mark.parametrize(
    ("overrides", "disable_compile"),
    [
        ([], None),
        (["decoding.cache_implementation=static"], True),
        (["decoding.cache_implementation=dynamic"], True),
        (["compile=on", "decoding.cache_implementation=static"], None),
        (["compile=on"], None),
    ],
)
def test_compile_off_keeps_generate_from_compiling_a_cache(compose, overrides, disable_compile):
    # On accelerators transformers auto-compiles decoding with static caches.
    cfg = compose(overrides)
    kw = generate_kwargs(cfg.decoding, cfg.workload, cfg.compile)
    assert kw.get("disable_compile") is disable_compile


def test_real_kwargs_carry_library_objects(compose):
    cfg = compose(
        [
            "quant=nf4-double",
            "quant.bnb_4bit_compute_dtype=bfloat16",
            "loading.dtype=float16",
            "+loading.max_memory.0=1GiB",
        ]
    )
    kw = from_pretrained_kwargs(cfg)
    q = kw["quantization_config"]
    assert isinstance(q, BitsAndBytesConfig)
    assert q.load_in_4bit and q.bnb_4bit_use_double_quant and q.bnb_4bit_quant_type == "nf4"
    assert q.bnb_4bit_compute_dtype == torch.bfloat16
    assert kw["dtype"] is torch.float16
    assert kw["max_memory"] == {0: "1GiB"}


@pytest.mark.parametrize(("given", "passed"), [("2", 2), ("cuda:1", "cuda:1"), ("auto", "auto")])
def test_gpu_index_device_map_reaches_transformers_as_an_int(compose, given, passed):
    # transformers takes an int as a GPU index; the string "2" is no torch device.
    assert from_pretrained_kwargs(compose([f"loading.device_map={given}"]))["device_map"] == passed


MODE_FIELDS = {
    "greedy": set(),
    "sample": {"temperature", "top_k", "top_p", "min_p"},
    "beam": {"num_beams", "early_stopping", "length_penalty"},
    "prompt_lookup": {"prompt_lookup_num_tokens"},
}


@pytest.mark.parametrize("mode", list(MODE_FIELDS))
def test_only_the_modes_own_fields_reach_generate(mode):
    # Validation refuses the others; translation, reading the same table, drops them too.
    from runner.config.schema_generation import DecodingMode, WorkloadConfig, WorkloadKind

    every = {
        "temperature": 0.5,
        "top_k": 5,
        "top_p": 0.9,
        "min_p": 0.1,
        "num_beams": 3,
        "early_stopping": True,
        "length_penalty": 0.5,
        "prompt_lookup_num_tokens": 4,
    }
    d = DecodingConfig(mode=DecodingMode[mode], **every)
    kw = generate_kwargs(d, WorkloadConfig(kind=WorkloadKind.default), CompileConfig())
    assert set(kw) & set(every) == MODE_FIELDS[mode]
