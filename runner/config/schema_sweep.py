"""The repeat, search and tracking groups: how a sweep repeats, searches and is tracked."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from omegaconf import MISSING

from runner.config.rules import AT_LEAST_0, AT_LEAST_1, schema_field


class RepeatOrder(str, Enum):
    interleaved = "interleaved"
    shuffled = "shuffled"
    grouped = "grouped"


class Violation(str, Enum):
    penalise = "penalise"
    prune = "prune"


class TrackingBackend(str, Enum):
    off = "off"
    mlflow = "mlflow"


@dataclass
class RepeatConfig:
    """How many times each point of a sweep runs, and in what order.

    Each repeat is its own job with its own directory (``...,repeat.index=1``).
    ``interleaved`` (the default) runs every point once before any runs again (a b c a b c),
    so a drift in the machine (heat, a neighbour's load) hits every point alike and the
    points can be compared repeat by repeat; ``grouped`` runs a point's repeats one after
    the other (a a b b); ``shuffled`` runs them in an order drawn with ``seed`` (written to
    the sweep's ``repeat_order.json``). ``count``, ``order`` and ``seed`` are not part of a
    run's config hash, so a sweep resumed with more repeats keeps the repeats it has;
    ``index`` (set by the sweeper) is.
    """

    count: int = schema_field(
        "times each point of a sweep (-m) runs, each as its own job and directory",
        1,
        range=AT_LEAST_1,
    )
    order: RepeatOrder = schema_field(
        "interleaved (a b a b: drift hits every point alike), shuffled (seeded), or grouped "
        "(a a b b)",
        RepeatOrder.interleaved,
    )
    seed: int = schema_field("seed of the shuffled order", 0)
    index: int | None = schema_field(
        "which repeat a run is, 0-based (set by the sweeper; null outside repeats)",
        None,
        range=AT_LEAST_0,
    )


@dataclass
class SearchConfig:
    """What a search optimizes (``hydra/sweeper=pareto``, see docs/search.md).

    The task returns the values of ``objectives`` to the sweeper, in order; a run that did
    not end ``ok``, or lacks an objective's value, is reported as failed, never as a number.
    A metric is a headline column of the report (``e2e_ms_mean``, ``peak_mem_mib``,
    ``energy_per_token_mj_net``...) or a numeric key of a result section
    (``metrics.ttft_seconds.p99``). These fields do not change what is measured: they are
    not part of the config hash, so a finished run is reused by a search with other
    objectives.
    """

    objectives: list[str] = schema_field(
        "metric:direction pairs, direction minimize or maximize, e.g. "
        "[energy_per_token_mj_net:minimize,e2e_ms_mean:minimize]",
        default_factory=lambda: ["energy_per_token_mj_net:minimize", "e2e_ms_mean:minimize"],
    )
    constraints: list[str] = schema_field(
        "bounds on result metrics a trial must meet, metric:max:number (<=) or "
        "metric:min:number (>=), e.g. [e2e_ms_mean:max:250]; a trial whose metric is "
        "missing violates it",
        default_factory=list,
    )
    violation: Violation = schema_field(
        "what happens to a trial that violates a constraint: penalise (told to the sampler "
        "with its values and violations, which NSGA-II ranks below every feasible trial) or "
        "prune (told as pruned); either way it is left out of the reported Pareto front",
        Violation.penalise,
    )


@dataclass
class TrackingConfig:
    """Experiment tracking (``tracking=mlflow``, see docs/tracking.md).

    One MLflow run per job (parameters, headline metrics with CI bounds, status, artifacts)
    under a parent run per sweep. Nothing is logged with ``tracking=off``. A tracking URI
    that cannot be written is refused before anything runs.
    """

    backend: TrackingBackend = schema_field("off or mlflow", MISSING)
    uri: str | None = schema_field(
        "MLflow tracking URI (sqlite:///path.db, file:/dir, http://host:5000); unset: "
        "sqlite:///<sweep dir>/mlflow.db for a sweep, sqlite:///<runs dir>/mlflow.db for a run"
    )
    experiment: str = schema_field("MLflow experiment name", "llm-sweep-runner")
