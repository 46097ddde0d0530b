"""The engine and scenario groups: which engine serves the requests, and how they arrive."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from omegaconf import MISSING

from runner.config.rules import AT_LEAST_1, POSITIVE, OnlyWith, Range, schema_field


class EngineKind(str, Enum):
    transformers = "transformers"
    vllm = "vllm"


class KvCacheDtype(str, Enum):
    auto = "auto"
    fp8 = "fp8"
    fp8_e4m3 = "fp8_e4m3"
    fp8_e5m2 = "fp8_e5m2"
    bfloat16 = "bfloat16"


class ScenarioKind(str, Enum):
    offline = "offline"
    online = "online"


class Arrival(str, Enum):
    poisson = "poisson"
    constant = "constant"
    closed = "closed"


# Which fields of these groups apply when (validation, translation and the docs read them).
VLLM = OnlyWith("kind", (EngineKind.vllm,), "engine=vllm")
ONLINE = OnlyWith("kind", (ScenarioKind.online,), "scenario=online")
ONLINE_REQUIRED = OnlyWith("kind", (ScenarioKind.online,), "scenario=online", required=True)
OPEN_LOOP = OnlyWith(
    "arrival",
    (Arrival.poisson, Arrival.constant),
    "scenario.arrival=poisson or constant",
    required=True,
)
OPEN_LOOP_OPTIONAL = OnlyWith(
    "arrival", (Arrival.poisson, Arrival.constant), "scenario.arrival=poisson or constant"
)
POISSON = OnlyWith("arrival", (Arrival.poisson,), "scenario.arrival=poisson")
CLOSED_LOOP = OnlyWith("arrival", (Arrival.closed,), "scenario.arrival=closed", required=True)


@dataclass
class EngineConfig:
    """Which inference engine runs the model: transformers or vLLM.

    ``transformers`` runs ``generate`` on static batches; ``vllm`` runs vLLM (paged KV cache,
    continuous batching; install it first, see ``docs/engines.md``). Every other group keeps
    its meaning under ``engine=vllm``: each of its fields maps to vLLM's own API or is
    refused before anything runs (the table "Every field under engine=vllm" below).
    The fields below are vLLM's own knobs, refused under ``engine=transformers``; unset
    keeps vLLM's default. Eager execution is ``compile=off`` (``enforce_eager``), vLLM's
    compilation ``compile=on``. A vLLM run always runs in a fresh interpreter of its own
    (``measure.isolation=spawn``), never forked from the fork server: vLLM starts an engine
    process and worker processes, which must not inherit a forked copy of the runner.
    """

    kind: EngineKind = schema_field("transformers or vllm", MISSING)
    max_num_seqs: int | None = schema_field(
        "requests vLLM schedules at once (SchedulerConfig.max_num_seqs)",
        range=AT_LEAST_1,
        only_with=VLLM,
    )
    max_num_batched_tokens: int | None = schema_field(
        "tokens per scheduler step (SchedulerConfig.max_num_batched_tokens)",
        range=AT_LEAST_1,
        only_with=VLLM,
    )
    enable_prefix_caching: bool | None = schema_field(
        "reuse the KV blocks of shared prompt prefixes", only_with=VLLM
    )
    enable_chunked_prefill: bool | None = schema_field(
        "split long prefills into chunks scheduled with decodes", only_with=VLLM
    )
    kv_cache_dtype: KvCacheDtype | None = schema_field(
        "KV-cache data type: auto (the model's), fp8, fp8_e4m3, fp8_e5m2, bfloat16",
        only_with=VLLM,
    )
    block_size: int | None = schema_field(
        "tokens per KV-cache block", range=AT_LEAST_1, only_with=VLLM
    )
    gpu_memory_utilization: float | None = schema_field(
        "share of GPU memory vLLM may use (weights, activations, KV cache); GPUs only",
        range=Range(0, 1, low_open=True),
        only_with=VLLM,
    )
    kv_cache_memory_gib: float | None = schema_field(
        "KV-cache size, GiB (kv_cache_memory_bytes; on GPUs it overrides "
        "gpu_memory_utilization's share); unset: 1 GiB on CPUs (vLLM's own CPU default takes "
        "most of the RAM and zeroes it, about a minute on a 24 GiB machine), vLLM's default "
        "on GPUs",
        range=POSITIVE,
        only_with=VLLM,
    )
    tensor_parallel_size: int | None = schema_field(
        "GPUs the model is split over (tensor parallelism)", range=AT_LEAST_1, only_with=VLLM
    )


@dataclass
class ScenarioConfig:
    """How requests reach the engine: all at once in batches, or arriving over time.

    ``offline`` (the default) is every measurement before serving: each call submits one
    batch of the workload and the next call starts when it ends. ``online`` serves: the
    workload's prompts are sent one request at a time by an arrival process, into vLLM's
    async engine or transformers' continuous batching (docs/serving.md), while earlier
    requests are decoding. The schedule is drawn from ``decoding.seed`` and
    recorded. Rates, throughput, goodput and energy are taken over the steady-state
    window: from the submission of request ceil(trim_fraction * N) to that of request
    N - ceil(trim_fraction * N), so the ramp-up from an empty engine and the drain after
    the last arrival are excluded (and recorded).
    """

    kind: ScenarioKind = schema_field("offline or online", MISSING)
    arrival: Arrival | None = schema_field(
        "poisson (exponential gaps; gamma with burstiness), constant (equal gaps) or closed "
        "(concurrency users, each sending its next request when the last is answered)",
        only_with=ONLINE_REQUIRED,
    )
    rate: float | None = schema_field(
        "offered load, requests per second", range=POSITIVE, only_with=OPEN_LOOP
    )
    burstiness: float | None = schema_field(
        "gamma shape of the gaps (1: Poisson; below 1 burstier, above 1 more even), as "
        "vLLM's benchmark; unset: 1",
        range=POSITIVE,
        only_with=POISSON,
    )
    concurrency: int | None = schema_field(
        "users of the closed loop", range=AT_LEAST_1, only_with=CLOSED_LOOP
    )
    num_requests: int | None = schema_field(
        "requests sent (prompts of the workload, cycled in order)",
        range=AT_LEAST_1,
        only_with=ONLINE_REQUIRED,
    )
    duration_seconds: float | None = schema_field(
        "stop sending after this long, seconds, or after num_requests, whichever comes "
        "first (unset: after num_requests)",
        range=POSITIVE,
        only_with=OPEN_LOOP_OPTIONAL,
    )
    trim_fraction: float | None = schema_field(
        "share of the requests at each end outside the steady-state window",
        range=Range(low=0, high=0.5, high_open=True),
        only_with=ONLINE_REQUIRED,
    )
    drain_seconds: float | None = schema_field(
        "after the last request is sent, wait at most this long for the rest, then abort "
        "them (recorded as unfinished, counted as missing every objective)",
        range=POSITIVE,
        only_with=ONLINE_REQUIRED,
    )
    max_lag_ms: float | None = schema_field(
        "a request sent later than its scheduled time by more than this flags the run "
        "(named warning serving_schedule_lag): the generator did not offer the rate asked",
        range=POSITIVE,
        only_with=ONLINE_REQUIRED,
    )
    slo_ttft_ms: float | None = schema_field(
        "objective: time to first token at most this, ms (unset: no objective)",
        range=POSITIVE,
        only_with=ONLINE,
    )
    slo_itl_ms: float | None = schema_field(
        "objective: every inter-token latency of a request at most this, ms",
        range=POSITIVE,
        only_with=ONLINE,
    )
    slo_e2e_ms: float | None = schema_field(
        "objective: end-to-end latency at most this, ms", range=POSITIVE, only_with=ONLINE
    )
    slo_attainment: float | None = schema_field(
        "a rate is served within the SLO when at least this share of its window's requests "
        "meet every objective (the capacity in the report)",
        range=Range(low=0, high=1, low_open=True),
        only_with=ONLINE_REQUIRED,
    )
