"""The bad-input catalogue: each mistake exits 2 before anything runs, with one line."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from runner.cli import EXIT_USER_ERROR, main
from runner.config.validate import installed
from tests.conftest import PYTHON

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def bad_jsonl(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text('{"prompt": "fine"}\n{"prompt": "broken"\n')
    return path


@pytest.fixture
def no_prompt_jsonl(tmp_path):
    path = tmp_path / "no-prompt.jsonl"
    path.write_text('{"prompt": "fine"}\n{"text": "no prompt field"}\n')
    return path


SEARCH = ["-m", "hydra/sweeper=pareto", "energy=off", "quant=choice(none,nf4)"]
E2E = ["search.objectives=[e2e_ms_mean:minimize]"]

CATALOGUE = [
    # unknown group options and keys
    (["quant=nf5"], "quant=nf5: unknown option"),
    (["compile=fast"], "compile=fast: unknown option"),
    (["decoding=nucleus"], "decoding=nucleus: unknown option"),
    (["model=llama"], "model=llama: unknown option"),
    (["quant.foo=1"], "quant.foo: unknown key"),
    (["+decoding.tempreature=0.5"], "decoding.tempreature: unknown key"),
    (["seed=1"], "seed: unknown key"),
    # wrong types
    (["decoding.max_new_tokens=many"], "decoding.max_new_tokens=many"),
    (["workload.batch_size=1.5"], "workload.batch_size=1.5"),
    (["compile.enabled=maybe"], "compile.enabled=maybe"),
    (["loading.dtype=float8"], "loading.dtype=float8"),
    # out of range
    (["decoding.temperature=-1"], "decoding.temperature=-1.0: must be > 0"),
    (["decoding=sample", "decoding.top_p=0"], "decoding.top_p=0.0: must be in (0, 1]"),
    (["decoding=sample", "decoding.top_k=-1"], "decoding.top_k=-1: must be >= 0"),
    (["decoding=sample", "decoding.temperature=0"], "use decoding=greedy"),
    (["decoding.repetition_penalty=0"], "decoding.repetition_penalty=0.0: must be > 0"),
    (["workload.num_prompts=0"], "workload.num_prompts=0: must be >= 1"),
    (["measure.warmup=-1"], "measure.warmup=-1: must be >= 0"),
    (["energy.baseline_seconds=-2"], "energy.baseline_seconds=-2.0: must be >= 0"),
    # cross-field conflicts
    (["quant=int8", "quant.load_in_4bit=true"], "cannot be combined with load_in_4bit"),
    (["quant=int8", "quant.bnb_4bit_quant_type=nf4"], "only applies with load_in_4bit=true"),
    (["compile=off", "compile.mode=reduce_overhead"], "only applies with compile.enabled=true"),
    (["decoding.use_cache=false", "decoding.cache_implementation=static"], "needs use_cache"),
    (["decoding=prompt-lookup", "workload.batch_size=4"], "needs batch_size=1"),
    (["decoding=prompt-lookup", "decoding.num_beams=4"], "only applies with decoding=beam"),
    (
        ["workload.output_length=natural", "decoding.min_new_tokens=64"],
        "must be <= decoding.max_new_tokens",
    ),
    (["decoding.top_k=40"], "only applies with decoding=sample"),
    (["decoding.cache_implementation=offloaded_static"], "offloaded caches need a CUDA GPU"),
    (["loading.attn_implementation=flash_attention_2"], "flash attention needs a CUDA GPU"),
    # values a library would accept and then ignore, or turn into something else
    (
        ["decoding.cache_implementation=hybrid"],
        "decoding.cache_implementation=hybrid: transformers "
        + installed("transformers")
        + " unsets hybrid",
    ),
    (
        ["decoding.cache_implementation=sliding_window"],
        "builds the same StaticCache for sliding_window as for static",
    ),
    (
        ["loading=cpu", "++loading.max_memory={cpu:1GiB}"],
        "loading.max_memory={'cpu': '1GiB'}: transformers ignores it with loading.device_map=cpu",
    ),
    (["++loading.max_memory={gpu:1GiB}"], "loading.max_memory.gpu=1GiB: keys are GPU indices"),
    (["++loading.max_memory={cpu:1gb}"], "loading.max_memory.cpu=1gb: a size with a unit"),
    (["loading.device_map=gpu"], "loading.device_map=gpu: allowed: auto, balanced"),
    (["loading.device_map=meta"], "loading.device_map=meta: allowed: auto, balanced"),
    (
        ["workload=synthetic", "workload.input_tokens=100000"],
        "workload.input_tokens=100000: 100000 prompt tokens + decoding.max_new_tokens=32 = "
        "100032 positions, beyond the model's maximum of 1024",
    ),
    (["energy.country_iso_code=XXX"], "energy.country_iso_code=XXX: CodeCarbon"),
    # the machine and the inputs
    (["loading=cuda"], "loading.device_map=cuda: no CUDA GPU is visible"),
    (["loading.device_map=1"], "loading.device_map=1: no CUDA GPU is visible"),
    (["++loading.max_memory={0:20GiB}"], "loading.max_memory.0=20GiB: no CUDA GPU is visible"),
    (
        ["model=local", "model.path=/nonexistent/model"],
        "model.path=/nonexistent/model: does not exist",
    ),
    (["hydra.run.dir=/proc/no/such/dir"], "hydra.run.dir=/proc/no/such/dir: cannot write there"),
    (["-m", "quant=none,int8", "compile=off,sometimes"], "compile=sometimes: unknown option"),
    # the schema is not an option: it composes with its required fields missing
    (["quant=base_quant"], "quant=base_quant: unknown option; allowed: fp4, int8"),
    # printing the config is checked like a run
    (["quant=base_quant", "--cfg", "job"], "quant=base_quant: unknown option"),
    (["--cfg=job", "decoding.temperature=-1"], "decoding.temperature=-1.0: must be > 0"),
    (["--cfg", "hydra", "-m", "quant=none,nf5"], "quant=nf5: unknown option"),
    # ++loading.max_memory={0:20GiB,cpu:64GiB} unquoted, after bash's brace expansion
    (
        ["loading=auto", "++loading.max_memory=0:20GiB", "++loading.max_memory=cpu:64GiB"],
        "loading.max_memory=0:20GiB: the shell split a mapping into 2 overrides; "
        "quote it: '++loading.max_memory={0:20GiB,cpu:64GiB}'",
    ),
    # searches (hydra/sweeper=pareto) and tracking
    (
        [*SEARCH, "search.objectives=[latency:minimize]"],
        "search.objectives=latency:minimize: 'latency' names no result metric; valid: "
        "ttft_ms_mean,",
    ),
    ([*SEARCH, "search.objectives=[e2e_ms_mean:down]"], "direction 'down': minimize or maximize"),
    ([*SEARCH, *E2E, "hydra.sweeper.n_trials=0"], "hydra.sweeper.n_trials=0: must be an integer"),
    ([*SEARCH], "search.objectives=energy_per_token_mj_net: needs energy, and energy=off"),
    (  # every trial's energy would be unresolved: refused before anything runs
        [*SEARCH[:2], *SEARCH[3:], "energy=codecarbon", "measure=quick"],
        "measure.min_seconds=0.0: energy_per_token_mj_net needs a measured time of at least "
        "energy.measure_power_secs=1 s",
    ),
    (
        [*SEARCH, "search.objectives=[output_tok_s_total:maximize]"],
        "'output_tok_s_total' was renamed: use output_tok_s",
    ),
    ([*SEARCH, *E2E, "search.constraints=[e2e_ms_mean:max:fast]"], "not a finite number"),
    (
        ["-m", "decoding=sample", "decoding.temperature=interval(0.5,1.0)"],
        "decoding.temperature=interval(0.5,1.0): interval() needs a search sweeper",
    ),
    (  # every value a search can take is checked: here an interval's end
        [*SEARCH, *E2E, "decoding=sample", "decoding.temperature=interval(0,1)"],
        "decoding.temperature=0.0: temperature 0",
    ),
    ([*SEARCH, *E2E, "workload.batch_size=range(0,3)"], "workload.batch_size=0: must be >= 1"),
    (
        [
            *SEARCH[:1],
            "hydra/sweeper=optuna",
            *SEARCH[2:],
            *E2E,
            "hydra.sweeper.direction=[minimize,minimize]",
        ],
        "one direction per objective of search.objectives (e2e_ms_mean:minimize)",
    ),
    (["repeat.count=3"], "repeat.count=3: repeats are jobs of a sweep; add -m"),
    (
        [*SEARCH, *E2E, "repeat.count=2"],
        "repeat.count=2: a search sweeper proposes each point itself and cannot repeat it",
    ),
    (
        ["-m", "quant=none,nf4", "repeat.count=1,3"],
        "repeat.count=1,3: repeat.count is a setting of the whole sweep, not a factor",
    ),
    (["repeat.count=0"], "repeat.count=0: must be >= 1"),
    (["repeat.order=random"], "repeat.order=random"),
    (
        ["tracking=mlflow", "tracking.uri=sqlite:////proc/no/mlflow.db"],
        "tracking.uri=sqlite:////proc/no/mlflow.db: cannot write to /proc/no",
    ),
]


@pytest.mark.parametrize(("argv", "fragment"), CATALOGUE, ids=[" ".join(a) for a, _ in CATALOGUE])
def test_catalogue(argv, fragment, capsys):
    with pytest.raises(SystemExit) as info:
        main(["model=tiny", *argv])
    assert info.value.code == EXIT_USER_ERROR
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    assert fragment in err


def test_printing_the_config_runs_the_checks_and_then_prints(capsys):
    with pytest.raises(SystemExit) as info:
        main(["model=tiny", "quant=nf4", "--cfg", "job"])
    assert info.value.code == 0
    assert "load_in_4bit: true" in capsys.readouterr().out


def test_a_missing_subfolder_is_named(tiny_dir, capsys):
    with pytest.raises(SystemExit) as info:
        main(["model=local", f"model.path={tiny_dir}", "+loading.extra.subfolder=sub"])
    assert info.value.code == EXIT_USER_ERROR
    err = capsys.readouterr().err.strip()
    assert err == f"error: loading.extra.subfolder=sub: {tiny_dir}/sub does not exist"


def test_malformed_jsonl_names_the_line(bad_jsonl, no_prompt_jsonl, capsys):
    for path, what in ((bad_jsonl, "line 2: not valid JSON"), (no_prompt_jsonl, "line 2")):
        with pytest.raises(SystemExit) as info:
            main(["model=tiny", "workload=file", f"workload.path={path}"])
        assert info.value.code == EXIT_USER_ERROR
        err = capsys.readouterr().err.strip()
        assert what in err and "\n" not in err


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (
            ["quant=nf5"],
            "error: quant=nf5: unknown option; allowed: fp4, int8, nf4, nf4-double, none",
        ),
        (["decoding.temperature=-1"], "error: decoding.temperature=-1.0: must be > 0"),
    ],
)
def test_real_command_line_prints_one_line_and_no_traceback(argv, line, tmp_path):
    proc = subprocess.run(
        [*PYTHON, "-m", "runner", *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == EXIT_USER_ERROR
    assert proc.stderr.strip() == line
    assert not list((REPO / "outputs").glob("runs/*quant=nf5*"))


def test_corrupt_result_in_resumed_sweep_is_kept_and_rerun(tmp_path, compose):
    from runner.job import previous_ok

    run_dir = tmp_path / "job"
    run_dir.mkdir()
    (run_dir / "result.json").write_text('{"status": "ok", "schema_ver')
    assert previous_ok(run_dir, "hash") is None
    assert (run_dir / "result.json.corrupt").read_text().startswith('{"status"')


def test_ok_result_with_other_config_hash_is_rerun(tmp_path):
    from runner.job import previous_ok

    (tmp_path / "result.json").write_text(
        json.dumps({"schema_version": 1, "status": "ok", "config_hash": "old"})
    )
    assert previous_ok(tmp_path, "new") is None
    assert previous_ok(tmp_path, "old") is not None


def test_a_missing_subfolder_is_named_where_any_model_loads(tiny_dir):
    """model=tiny and model=smollm2 resolve their directory only when the job runs."""
    from runner.models.load import ModelNotFoundError, check_subfolder

    with pytest.raises(ModelNotFoundError, match=r"^loading.extra.subfolder=sub: .*/sub does"):
        check_subfolder(str(tiny_dir), "sub")
    check_subfolder(str(tiny_dir), None)
    check_subfolder("org/hub-model", "sub")  # a hub id: transformers resolves it
