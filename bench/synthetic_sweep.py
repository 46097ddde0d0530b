"""Synthetic sweep directories with known effects, for the report's tests and benchmark.

``make_sweep(root, n)`` writes ``n`` run directories as a Hydra multirun would leave them
(``multirun.yaml``, per run ``.hydra/overrides.yaml``, ``run.log``, a ``result.json`` of
realistic size, about 11 KB like a real tiny run's, built from the result's own types, and
``requests.parquet``), and returns the truth: every value it wrote.

The grid (taken in order, so ``n`` that is not a full grid gives a partial sweep):

- ``compile`` off/on: **on halves** every latency and the energy per token, doubles
  throughput;
- ``loading.attn_implementation`` eager/sdpa: **no effect** (noise only);
- ``workload.batch_size`` 1, 2, 4, 8, 16 (beyond 4 runs): latency grows slowly with it,
  energy per token falls (a latency/energy trade-off, hence a Pareto front);
- ``decoding.max_new_tokens`` ``ceil(n / 20)`` values from 16 in steps of 4 (beyond 4
  runs): end-to-end latency grows with it.

Every run's timing gets one multiplicative log-normal noise draw (sigma 2%), its energy
another (1%), from a seeded generator: the same arguments write the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any

from runner.config.dirname import job_dirname, sweep_exclude_keys
from runner.results import RunError, RunResult, Status
from runner.sections.energy import Energy, EnergyComponent, GrossNet
from runner.sections.metrics import Latency, Memory, Metrics, Stats, Throughput
from runner.sections.requests import REQUESTS_FILE, RequestRecord, write_requests

COMMON = ["model=tiny", "loading=cpu", "measure=quick"]
FACTORS = (
    "compile",
    "loading.attn_implementation",
    "workload.batch_size",
    "decoding.max_new_tokens",
)
NOISE_SIGMA = 0.02
ENERGY_NOISE_SIGMA = 0.01
WATTS = 30.0  # constant power: energy per token = power x time per token
NUM_PROMPTS = 8
ENVIRONMENT = {
    "python": "3.11.7",
    "platform": "Linux-6.18.44-x86_64-with-glibc2.36",
    "hostname": "node01",
    "cpu_model": "Intel(R) Xeon(R) Processor",
    "cpu_count": 2,
    "versions": {
        "torch": "2.13.0+cpu",
        "transformers": "5.24.0",
        "accelerate": "1.15.0",
        "bitsandbytes": "0.50.2",
        "codecarbon": "3.3.2",
        "hydra-core": "1.3.8",
        "omegaconf": "2.3.1",
        "pandas": "3.1.1",
        "tokenizers": "0.23.3",
    },
    "git_commit": "8335b43339d919cda21b0a68efc81fa8dee19f46",
    "git_dirty": False,
    "cuda_available": False,
}


@dataclass(frozen=True)
class Point:
    """One grid point and the values written for it (ms, tok/s, mJ per token, MiB)."""

    factors: dict[str, str]
    run_dir: Path
    ttft_ms: float
    itl_ms: float
    e2e_ms: float
    output_tok_s: float
    energy_mj: float
    peak_mib: float

    @property
    def label(self) -> str:
        """The report's label of the run: its swept factors (all four here), in order."""
        return ", ".join(f"{k}={v}" for k, v in self.factors.items())


@dataclass
class Sweep:
    root: Path
    points: list[Point]  # ok runs, in grid order
    broken: dict[str, list[Path]] = field(default_factory=dict)  # kind -> run dirs


def grid(n: int) -> Iterator[dict[str, str]]:
    """The first ``n`` points of the grid described in the module docstring."""
    levels: dict[str, list[Any]] = {"compile": ["off", "on"], FACTORS[1]: ["eager", "sdpa"]}
    if n > 4:
        levels["workload.batch_size"] = [1, 2, 4, 8, 16]
        levels["decoding.max_new_tokens"] = [16 + 4 * i for i in range(math.ceil(n / 20))]
    for count, values in enumerate(product(*levels.values())):
        if count == n:
            return
        yield {k: str(v) for k, v in zip(levels, values, strict=True)}


def truth(factors: dict[str, str], rng: random.Random) -> dict[str, float]:
    """The noisy values of one point (see the module docstring)."""
    speed = 0.5 if factors["compile"] == "on" else 1.0
    batch = int(factors.get("workload.batch_size", 4))
    tokens = int(factors.get("decoding.max_new_tokens", 32))
    noise = math.exp(rng.gauss(0.0, NOISE_SIGMA))
    itl = 10.0 * speed * (1 + 0.1 * math.log2(batch)) * noise
    ttft = 40.0 * speed * (1 + 0.3 * math.log2(batch)) * noise
    e2e = ttft + (tokens - 1) * itl
    tok_s = batch * tokens / (e2e / 1e3)
    energy = WATTS * e2e / (batch * tokens) * math.exp(rng.gauss(0.0, ENERGY_NOISE_SIGMA))
    return {
        "ttft_ms": ttft,
        "itl_ms": itl,
        "e2e_ms": e2e,
        "output_tok_s": tok_s,
        "energy_mj": energy,
        "peak_mib": 500.0 + 20 * batch + 0.1 * batch * tokens,
    }


def _stats(mean: float, rel_half: float, count: int) -> Stats:
    half = mean * rel_half
    return Stats(
        count=count,
        mean=mean,
        median=mean,
        std=half,
        min=mean * 0.9,
        max=mean * 1.1,
        p90=mean * 1.05,
        p95=mean * 1.07,
        p99=mean * 1.09,
        ci95_low=mean - half,
        ci95_high=mean + half,
        ci_unit="call",
        ci_units=NUM_PROMPTS,
        cv=0.03,
    )


def _config(factors: dict[str, str]) -> dict[str, Any]:
    compiled = factors["compile"] == "on"
    return {
        "model": {"source": "tiny", "name": "tiny-llama", "path": None, "weights": "pretrained"},
        "quant": {"name": "none", "load_in_8bit": False, "load_in_4bit": False},
        "compile": {"enabled": compiled, "mode": None, "backend": None, "fullgraph": None},
        "decoding": {
            "mode": "greedy",
            "max_new_tokens": int(factors.get("decoding.max_new_tokens", 32)),
            "min_new_tokens": None,
            "temperature": None,
            "top_k": None,
            "top_p": None,
            "num_beams": None,
            "repetition_penalty": None,
            "use_cache": None,
            "cache_implementation": None,
            "seed": 0,
            "extra": {},
        },
        "loading": {
            "name": "cpu",
            "device_map": "cpu",
            "dtype": None,
            "attn_implementation": factors["loading.attn_implementation"],
            "max_memory": {},
            "revision": None,
            "trust_remote_code": False,
            "extra": {},
        },
        "workload": {
            "kind": "default",
            "num_prompts": NUM_PROMPTS,
            "batch_size": int(factors.get("workload.batch_size", 4)),
            "output_length": "fixed",
            "order": "as_is",
            "seed": 0,
            "chat_template": True,
        },
        "measure": {"warmup": 1, "min_repeats": 1, "min_seconds": 0.0, "max_seconds": 600.0},
        "energy": {"backend": "codecarbon", "country_iso_code": "USA", "pue": 1.0},
        "cache_dir": None,
    }


def _applied(factors: dict[str, str]) -> dict[str, Any]:
    return {
        "model": {
            "parameter_dtypes": {"float32": 102720},
            "parameter_devices": {"cpu": 102720},
            "attn_implementation": factors["loading.attn_implementation"],
            "compiled": factors["compile"] == "on",
            "num_parameters": 102720,
        },
        "generate": {
            "max_new_tokens": int(factors.get("decoding.max_new_tokens", 32)),
            "do_sample": False,
            "temperature": 1.0,
            "top_k": 50,
            "top_p": 1.0,
            "num_beams": 1,
            "repetition_penalty": 1.0,
            "use_cache": True,
            "generation_mode": "greedy_search",
            "eos_token_id": 1,
            "pad_token_id": 2,
            "sample_output": "NumberJ 10l 10l 10l 10l 10l 10l 10l 10l 10l 10l 10l 10al 10",
        },
    }


def result(factors: dict[str, str], overrides: list[str], v: dict[str, float]) -> RunResult:
    """An ``ok`` result holding the values ``v`` of :func:`truth`."""
    batch = int(factors.get("workload.batch_size", 4))
    tokens = int(factors.get("decoding.max_new_tokens", 32))
    output_tokens = NUM_PROMPTS * tokens
    calls = math.ceil(NUM_PROMPTS / batch)
    measured = calls * v["e2e_ms"] / 1e3
    latency = Latency(
        ttft_seconds=_stats(v["ttft_ms"] / 1e3, 0.03, NUM_PROMPTS),
        itl_seconds=_stats(v["itl_ms"] / 1e3, 0.03, NUM_PROMPTS * (tokens - 1)),
        tpot_seconds=_stats(v["itl_ms"] / 1e3, 0.03, NUM_PROMPTS),
        e2e_request_seconds=_stats(v["e2e_ms"] / 1e3, 0.03, NUM_PROMPTS),
        e2e_batch_seconds=_stats(v["e2e_ms"] / 1e3, 0.03, calls),
        output_tokens_per_second=_stats(v["output_tok_s"], 0.05, calls),
        decode_tokens_per_second=_stats(v["output_tok_s"] * 1.1, 0.05, calls),
        throughput_per_repeat=_stats(v["output_tok_s"], 0.05, 1),
        throughput=Throughput(
            v["output_tok_s"], v["output_tok_s"] * 1.1, NUM_PROMPTS / measured, 1000 / measured
        ),
        measured_seconds=measured,
        requests=NUM_PROMPTS,
        output_tokens=output_tokens,
        input_tokens=998,
        calls=calls,
    )
    joules = v["energy_mj"] / 1e3 * output_tokens
    energy = Energy(
        backend="codecarbon",
        codecarbon_version="3.3.2",
        tracking_mode="machine",
        country_iso_code="USA",
        pue=1.0,
        window_seconds=measured,
        repeats=1,
        components={
            "cpu": EnergyComponent(joules * 0.3, "codecarbon-cpu-load-estimate"),
            "ram": EnergyComponent(joules * 0.7, "codecarbon-ram-estimate"),
        },
        gross_joules=joules,
        per_output_token_joules=GrossNet(v["energy_mj"] / 1e3, None),
        per_request_joules=GrossNet(joules / NUM_PROMPTS, None),
        per_1000_requests_joules=GrossNet(joules / NUM_PROMPTS * 1000, None),
        average_power_watts=GrossNet(joules / measured, None),
        emissions_kg=joules / 3.6e6 * 0.369,
        carbon_intensity_g_per_kwh=369.473,
        is_estimate=True,
        warnings=("CPU energy is an estimate, not a measurement (synthetic)",),
    )
    metrics = Metrics(
        latency=latency,
        load_seconds=0.4,
        memory=Memory(
            model_footprint_bytes=410880,
            peak_bytes=int(v["peak_mib"] * 2**20),
            peak_source="process-peak-rss",
            peak_rss_bytes=int(v["peak_mib"] * 2**20),
        ),
        warmup_seconds=1.0,
        warmup_calls=calls,
        repeats=1,
        stopped_by="criteria_met",
    )
    return RunResult(
        status=Status.ok,
        run_id=",".join(f"{k}={v}" for k, v in factors.items()),
        config_hash=hashlib.sha256(" ".join(overrides).encode()).hexdigest(),
        overrides=overrides,
        started_at="2026-11-30T12:00:00Z",
        finished_at="2026-11-30T12:00:10Z",
        config=_config(factors),
        requested={
            "from_pretrained": {"device_map": "cpu"},
            "generate": {"max_new_tokens": tokens, "min_new_tokens": tokens, "do_sample": False},
            "compile": {"enabled": factors["compile"] == "on"},
        },
        applied=_applied(factors),
        workload={
            "source": "builtin:runner/data/prompts.jsonl",
            "num_requests": NUM_PROMPTS,
            "batch_size": batch,
            "num_batches": calls,
            "input_tokens_min": 29,
            "input_tokens_mean": 124.75,
            "input_tokens_max": 447,
            "input_tokens_total": 998,
            "truncated_requests": 0,
        },
        metrics=metrics,
        energy=energy,
        environment=dict(ENVIRONMENT),
    )


def _requests(v: dict[str, float], tokens: int, batch: int) -> list[RequestRecord]:
    out = []
    for i in range(NUM_PROMPTS):
        ttft = v["ttft_ms"] / 1e3 * (1 + 0.01 * i)
        gaps = tuple(v["itl_ms"] / 1e3 * (1 + 0.02 * ((i + j) % 5 - 2)) for j in range(tokens - 1))
        last = ttft + sum(gaps)
        out.append(RequestRecord(0, i // batch, i, f"p{i}", 100, tokens, ttft, last, last, gaps))
    return out


def _write_dir(run_dir: Path, overrides: list[str]) -> None:
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (run_dir / "run.log").write_text("[INFO] loading model\n[INFO] measuring\n")


def _write_result(run_dir: Path, res: RunResult) -> None:
    # Indented like the runner's (write_json_atomic), without its fsync: thousands of files.
    (run_dir / "result.json").write_text(json.dumps(res.to_dict(), indent=2) + "\n")


def make_sweep(
    root: Path,
    n: int,
    *,
    seed: int = 0,
    requests: bool = True,
    failed: int = 0,
    truncated: int = 0,
    missing: int = 0,
) -> Sweep:
    """Write ``n`` runs of :func:`grid` under ``root`` (see the module docstring).

    The last ``failed + truncated + missing`` points are broken instead of ok: ``failed``
    ones hold a failed result (out of memory while loading), ``truncated`` ones a
    ``result.json`` cut in the middle, ``missing`` ones no ``result.json`` at all (still
    running, or killed). Returns the ok points with their values, and the broken dirs.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    points = list(grid(n))
    swept = [k for k in FACTORS if len({p.get(k) for p in points}) > 1]
    task = [*COMMON] + [f"{k}={','.join(dict.fromkeys(p[k] for p in points))}" for k in swept]
    (root / "multirun.yaml").write_text(
        "hydra:\n  overrides:\n    hydra:\n    - hydra.mode=MULTIRUN\n    task:\n"
        + "".join(f"    - {t}\n" for t in task)
    )
    exclude = sweep_exclude_keys(task)
    kinds = ["failed"] * failed + ["truncated"] * truncated + ["missing"] * missing
    first_broken = n - len(kinds)
    sweep = Sweep(root, [], {k: [] for k in ("failed", "truncated", "missing") if k in kinds})
    for index, factors in enumerate(points):
        overrides = [*COMMON, *(f"{k}={v}" for k, v in factors.items())]
        run_dir = root / job_dirname(overrides, exclude)  # as the runner names it
        _write_dir(run_dir, overrides)
        values = truth(factors, rng)
        if index >= first_broken:
            kind = kinds[index - first_broken]
            sweep.broken[kind].append(run_dir)
            if kind == "failed":
                res = result(factors, overrides, values)
                res.run_id = run_dir.name  # as the runner names it: its directory
                res.status, res.energy, res.metrics = Status.failed, None, Metrics()
                res.error = RunError(
                    "OutOfMemoryError", f"CUDA out of memory (point {index})", "...", "load"
                )
                _write_result(run_dir, res)
            elif kind == "truncated":
                text = '{"schema_version": 1, "status": "ok", "metrics": {"ttft_se'
                (run_dir / "result.json").write_text(text)
            continue
        res = result(factors, overrides, values)
        res.run_id = run_dir.name
        _write_result(run_dir, res)
        if requests:
            batch = int(factors.get("workload.batch_size", 4))
            tokens = int(factors.get("decoding.max_new_tokens", 32))
            write_requests(run_dir / REQUESTS_FILE, _requests(values, tokens, batch))
        sweep.points.append(Point(factors, run_dir, **values))
    return sweep
