"""Config groups compose as the CLI composes them; bad values are refused with one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from runner.config.schema import RunConfig
from runner.config.schema_generation import DecodingMode
from runner.config.schema_model import CompileMode
from runner.config.store import CONF_DIR
from runner.config.validate import ConfigError, Facts, installed, validate
from runner.preflight import check_command
from runner.preflight_messages import UserError, group_options
from tests.conftest import PYTHON

GROUPS = ["model", "quant", "compile", "decoding", "loading", "workload", "measure", "energy"]
# Options that need a value the user must supply.
NEEDS = {
    "model=local": ["model.path=/tmp/some-model"],
    "model=hub": ["model.path=org/model"],
    "workload=file": ["workload.path=/tmp/prompts.jsonl"],
    "decoding=prompt-lookup": ["workload.batch_size=1"],
}


def all_options():
    for group in GROUPS:
        for option in group_options(group):
            yield f"{group}={option}"


@pytest.mark.parametrize("override", list(all_options()))
def test_every_option_composes_and_validates(compose, override):
    cfg = compose([override, *NEEDS.get(override, [])])
    assert isinstance(cfg, RunConfig)
    facts = Facts(cuda_available=override == "loading=cuda")
    validate(cfg, facts)


def test_every_group_has_options():
    for group in GROUPS:
        assert group_options(group), group
    assert (CONF_DIR / "config.yaml").is_file()


def test_defaults_are_the_documented_ones(compose):
    cfg = compose([])
    assert cfg.model.name == "smollm2-135m"
    assert cfg.quant.name == "none" and not cfg.quant.load_in_4bit
    assert cfg.compile.enabled is False
    assert cfg.decoding.mode is DecodingMode.greedy
    assert cfg.loading.device_map == "auto"
    assert cfg.loading.trust_remote_code is False
    assert cfg.energy.backend.name == "codecarbon"


def test_compile_on_and_off_work_as_command_line_options(compose):
    assert compose(["compile=on"]).compile.enabled is True
    assert compose(["compile=off"]).compile.enabled is False
    assert compose(["compile=reduce-overhead"]).compile.mode is CompileMode.reduce_overhead


def test_experiment_composes_to_exact_config(compose):
    cfg = compose(["experiment=quant-on-tiny"])
    assert cfg.model.name == "tiny-llama"
    assert cfg.quant.name == "nf4"
    assert cfg.quant.bnb_4bit_quant_type.name == "nf4"
    assert cfg.loading.device_map == "cpu"
    assert cfg.decoding.max_new_tokens == 16
    assert cfg.workload.num_prompts == 4


# At the pre-flight layer; tests/test_bad_input.py runs its catalogue through the CLI entry,
# and the cases it already covers are not repeated here.
BAD = [
    # (argv, expected fragment of the one-line message)
    (["+quant.foo=1"], "quant.foo: unknown key"),
    (["foo=1"], "foo: unknown key"),
    (["decoding.max_new_tokens=abc"], "decoding.max_new_tokens=abc"),
    (["compile.mode=fast"], "compile.mode=fast"),
    (["decoding.max_new_tokens=0"], "decoding.max_new_tokens=0: must be >= 1"),
    (["quant=nf4", "quant.load_in_8bit=true"], "quant.load_in_8bit=True: cannot be combined"),
    (["quant.bnb_4bit_quant_type=nf4"], "only applies with load_in_4bit=true"),
    (["quant.llm_int8_threshold=6"], "only applies with load_in_8bit=true"),
    (["compile.mode=max_autotune"], "compile.mode=max_autotune: only applies with compile.enabled"),
    (["compile.backend=eager"], "compile.backend=eager: only applies"),
    (
        ["decoding=prompt-lookup", "workload.batch_size=2"],
        "prompt lookup decoding needs batch_size=1",
    ),
    (["decoding=prompt-lookup", "decoding.num_beams=2"], "decoding.num_beams=2: only applies"),
    (
        [
            "workload.output_length=natural",
            "decoding.min_new_tokens=9",
            "decoding.max_new_tokens=4",
        ],
        "decoding.min_new_tokens=9: must be <= decoding.max_new_tokens (4)",
    ),
    (["decoding.min_new_tokens=2"], "workload.output_length=fixed sets it"),
    (["decoding.temperature=0.5"], "decoding.temperature=0.5: only applies with decoding=sample"),
    (["decoding.top_p=0.5"], "only applies with decoding=sample"),
    (["decoding=sample", "decoding.top_p=1.5"], "decoding.top_p=1.5: must be in (0, 1]"),
    (["decoding=beam", "decoding.num_beams=1"], "beam search needs num_beams >= 2"),
    (["decoding.early_stopping=true"], "only applies with decoding=beam"),
    (["decoding.cache_implementation=offloaded"], "offloaded caches need a CUDA GPU"),
    (["loading.low_cpu_mem_usage=true"], "transformers 5 ignores this kwarg"),
    (["+loading.extra.rope_theta=10"], "would silently become a model-config attribute"),
    (["+loading.extra.dtype=float16"], "set the schema field"),
    (["+decoding.extra.temperature=0.3"], "set the schema field"),
    (["model=local"], "model.path is unset: required with model.source=local"),
    (["model.path=/x"], "model.path=/x: only applies with model.source=local or hub"),
    (["workload=file"], "workload.path is unset: required with workload=file"),
    (["workload=synthetic", "workload.input_tokens=null"], "workload.input_tokens is unset"),
    (["workload.batch_size=0"], "workload.batch_size=0: must be >= 1"),
    (
        ["workload.batch_size=100000"],
        "workload.batch_size=100000: must be <= workload.num_prompts (8)",
    ),
    # Known before loading: the built-in models' context (SmolLM2: 8192 positions).
    (["quality.window=100000"], "quality.window=100000: longer than the model's context (8192"),
    (
        ["model=tiny", "decoding.max_new_tokens=100000"],
        "decoding.max_new_tokens=100000: the model takes at most 1024 positions",
    ),
    (["measure.sample_hz=0.5"], "measure.sample_hz=0.5: must be 0 (off) or from 1 to 10"),
    (["measure.sample_hz=11"], "measure.sample_hz=11.0: must be in [0, 10]"),
    (["measure.min_repeats=0"], "measure.min_repeats=0: must be >= 1"),
    (["measure.min_seconds=10", "measure.max_seconds=5"], "measure.max_seconds=5.0: must be >="),
    (["energy.pue=0.5"], "energy.pue=0.5: must be >= 1"),
    (["energy.country_iso_code=France"], "energy.country_iso_code=France"),
    (["-m", "quant=none,int8,nf5"], "quant=nf5: unknown option"),
    # Hydra's own groups list what Hydra has, plugins included.
    (
        ["-m", "hydra/sweeper=paretoo", "quant=none"],
        "hydra/sweeper=paretoo: unknown option; allowed: basic, grid, optuna, pareto",
    ),
    (["hydra/launcher=slurmm"], "hydra/launcher=slurmm: unknown option; allowed: basic, local"),
    (["-m", "quant=none,nf4", "--cfg", "job"], "--cfg with -m: Hydra prints the config of one"),
    (
        ["-m", "hydra/sweeper=pareto", "hydra.sweeper.n_trial=3"],
        "hydra.sweeper.n_trial: unknown key; keys of hydra.sweeper: _target_, custom_search_space",
    ),
]


@pytest.mark.parametrize(("argv", "fragment"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_refused_with_one_line(argv, fragment):
    with pytest.raises(UserError) as info:
        check_command(argv, Facts(cuda_available=False))
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message


def test_flash_attention_needs_half_precision_even_with_cuda(compose):
    cfg = compose(["loading.attn_implementation=flash_attention_2", "loading.dtype=float32"])
    with pytest.raises(ConfigError, match="flash attention needs dtype float16 or bfloat16"):
        validate(cfg, Facts(cuda_available=True))


def test_machine_rules_are_skipped_when_jobs_run_elsewhere():
    # A Slurm login node has no GPU; the job validates again where it runs.
    assert check_command(["loading=cuda"], None) == 1


def test_sweep_checks_every_point():
    assert check_command(["-m", "quant=none,nf4", "compile=off,on"], Facts(False)) == 4


def test_overrides_may_come_before_the_multirun_flag():
    """``python -m runner model=tiny -m quant=...`` is a sweep, not argparse's usage text."""
    proc = subprocess.run(
        [*PYTHON, "-m", "runner", "model=tiny", "-m", "quant=none,nf5"],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: quant=nf5: unknown option; allowed: fp4, int8, nf4, nf4-double, none"
    ]


@pytest.mark.slow  # 64 compositions
def test_search_space_of_an_experiment_file_is_checked_value_by_value():
    # conf/experiment/search-tiny.yaml: hydra.sweeper.params quant x batch_size x compile
    assert check_command(["-m", "experiment=search-tiny"], Facts(False)) == 3 * 8 * 2
    # the command line replaces a key of hydra.sweeper.params, as in the sweepers
    assert check_command(["-m", "experiment=search-tiny", "quant=nf4"], Facts(False)) == 16


def test_job_dirname_keeps_factors_and_drops_noise():
    from runner.config.dirname import job_dirname, sweep_exclude_keys

    assert job_dirname([]) == "default"
    assert job_dirname(["quant=nf4", "compile=on"]) == "compile=on,quant=nf4"
    assert job_dirname(["quant=nf4", "decoding.seed=3", "cache_dir=/x"]) == "quant=nf4"
    # In a sweep only the swept keys name the job; a swept seed is a factor.
    exclude = sweep_exclude_keys(["model=tiny", "decoding.seed=1,2,3"])
    assert "model" in exclude and "decoding.seed" not in exclude
    assert job_dirname(["model=tiny", "decoding.seed=3"], exclude) == "decoding.seed=3"
    # A swept path stays unique after being made path-safe.
    exclude = sweep_exclude_keys(["model.path=/m/a_b,/m/a/b"])
    a = job_dirname(["model.path=/m/a_b"], exclude)
    b = job_dirname(["model.path=/m/a/b"], exclude)
    assert a != b and "/" not in a + b


def test_sweep_job_names_travel_as_a_hydra_override(tmp_path):
    """The swept keys reach every job's config through Hydra's own exclude_keys, which the
    run-directory name reads (no environment variable)."""
    from hydra import compose, initialize_config_dir

    from runner.config.dirname import sweep_exclude_override
    from runner.config.store import CONF_DIR

    sweep = ["model=tiny", "quant=none,nf4", "+decoding.num_beams=2"]
    job = ["model=tiny", "quant=nf4", "+decoding.num_beams=2"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            config_name="config",
            overrides=[*job, sweep_exclude_override(sweep)],
            return_hydra_config=True,
        )
    from omegaconf import OmegaConf

    hydra_cfg = OmegaConf.to_container(cfg.hydra.job.config.override_dirname)
    assert set(hydra_cfg["exclude_keys"]) >= {"model", "decoding.num_beams", "cache_dir"}
    assert "quant" not in hydra_cfg["exclude_keys"]


def test_config_hash_ignores_where_files_go_and_how_the_job_is_isolated(compose):
    from runner.config.resolved import config_dict, config_hash

    def chash(*overrides: str) -> str:
        return config_hash(config_dict(compose(["model=tiny", *overrides])))

    assert chash("cache_dir=/elsewhere", "measure.isolation=inline") == chash()
    assert chash("quant=nf4") != chash()
    # A sweep resumed with more repeats, or another order, keeps the repeats it has; a
    # run's own repeat index is what it is.
    indexed = chash("repeat.index=1")
    assert chash("repeat.index=1", "repeat.count=5", "repeat.order=shuffled") == indexed
    assert indexed != chash("repeat.index=2") and indexed != chash()


# The sweep parent's path in runner.job.execute, here through a job that is already done.
PARENT_PATH = """
import json, sys
from pathlib import Path
from runner.config import register_configs
from runner.config.resolved import config_dict, config_hash
from runner.job import execute
from runner.preflight_compose import compose_typed
register_configs()
cfg = compose_typed(["model=tiny"])
run_dir = Path(sys.argv[1])
done = {"schema_version": 1, "status": "ok", "config_hash": config_hash(config_dict(cfg))}
(run_dir / "result.json").write_text(json.dumps(done))
assert execute(cfg, run_dir, []).skipped
print(sorted(m for m in ("torch", "transformers") if m in sys.modules))
"""


def test_the_sweep_parent_hashes_and_skips_jobs_without_importing_torch(tmp_path):
    import subprocess

    proc = subprocess.run(
        [sys.executable, "-c", PARENT_PATH, str(tmp_path)],
        cwd=CONF_DIR.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize(
    "overrides",
    [
        ["decoding=sample", "decoding.top_k=0"],  # top-k off: transformers accepts 0
        ["loading.device_map=balanced_low_0", "++loading.max_memory={0:20GiB,cpu:30GiB}"],
        ["loading.device_map=sequential", "++loading.max_memory={1:10.5GiB,disk:100GB}"],
        ["loading.device_map=balanced"],
        ["loading.device_map=cuda:1"],
        ["loading.device_map=2"],
    ],
)
def test_forms_transformers_accepts_pass_validation(compose, overrides):
    validate(compose(overrides), Facts(cuda_available=True))


@pytest.mark.parametrize("cache", ["hybrid", "sliding_window"])
def test_caches_transformers_cannot_build_are_refused_on_any_machine(compose, cache):
    cfg = compose([f"decoding.cache_implementation={cache}"])
    for facts in (Facts(cuda_available=True), None):
        with pytest.raises(
            ConfigError, match=f"transformers {installed('transformers')} .*; use static"
        ):
            validate(cfg, facts)


def test_max_memory_without_a_planned_device_map_names_both_fields(compose):
    cfg = compose(["loading.device_map=cuda", "++loading.max_memory={0:20GiB}"])
    with pytest.raises(ConfigError) as info:
        validate(cfg, Facts(cuda_available=True))
    assert str(info.value).startswith("loading.max_memory={0: '20GiB'}: transformers ignores it")
    assert "loading.device_map=cuda" in str(info.value)


def test_local_model_context_length_is_read_from_its_config(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"text_config": {"max_position_embeddings": 64}}')
    # quality=off: the perplexity window (512) would not fit either.
    argv = ["model=local", f"model.path={model}", "workload=synthetic", "energy=off", "quality=off"]
    assert check_command([*argv, "workload.input_tokens=32", "decoding.max_new_tokens=32"], Facts())
    with pytest.raises(UserError, match="= 65 positions, beyond the model's maximum of 64"):
        check_command([*argv, "workload.input_tokens=33", "decoding.max_new_tokens=32"], Facts())


def test_country_codes_come_from_codecarbon_and_only_matter_with_it():
    from codecarbon.input import DataSource

    known = sorted(DataSource().get_global_energy_mix_data())
    assert "FRA" in known and "XXX" not in known
    assert check_command([f"energy.country_iso_code={known[0]}"], Facts()) == 1
    assert check_command(["energy=off", "energy.country_iso_code=XXX"], Facts()) == 1


@pytest.mark.parametrize(
    ("config", "limit"),
    [
        ({"max_position_embeddings": 2048, "n_positions": 1}, 2048),
        ({"n_positions": 1024}, 1024),
        ({"text_config": {"max_position_embeddings": 4096}}, 4096),
        ({"rope_theta": 10000.0}, None),
    ],
)
def test_context_length_is_found_where_configs_keep_it(config, limit):
    from runner.models.context import max_positions

    assert max_positions(config) == limit


def test_help_is_short_and_lists_every_group_with_its_options():
    proc = subprocess.run(
        [*PYTHON, "-m", "runner", "--help"],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert len(lines) < 40, proc.stdout
    for group in ("quant", "compile", "engine", "scenario", "workload"):
        assert f"{group}: {', '.join(group_options(group))}" in lines
    for pointer in ("-m quant=", "python -m runner.report", "docs/options.md", "--hydra-help"):
        assert pointer in proc.stdout
    assert "base_" not in proc.stdout  # the schemas are stored outside the groups
