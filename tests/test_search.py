"""Search: objectives and constraints over result metrics, the Pareto front, the values a
search can take, and the sweeper's bookkeeping (resume, failures, constraints) against a
real Optuna study with a stand-in launcher."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import optuna
import pytest
import sqlalchemy
from omegaconf import OmegaConf

from runner.config.overrides import MAX_CHECKED_POINTS, search_points
from runner.config.validate import ConfigError
from runner.search.objectives import (
    parse_constraints,
    parse_objectives,
    task_return,
    violations,
)
from runner.search.pareto import dominates, pareto_front
from runner.sections.figures import metric_value, section_keys
from tests.test_report import result

# ------------------------------------------------------------------------- Pareto front


def _front_by_definition(points, directions):
    sign = [1 if d == "minimize" else -1 for d in directions]
    out = []
    for i, p in enumerate(points):
        dominated = False
        for j, q in enumerate(points):
            a = [s * x for s, x in zip(sign, q, strict=True)]
            b = [s * x for s, x in zip(sign, p, strict=True)]
            if j != i and all(x <= y for x, y in zip(a, b, strict=True)) and a != b:
                dominated = True
        out.append(not dominated)
    return [i for i, keep in enumerate(out) if keep]


def test_pareto_front_hand_made_with_a_maximized_objective():
    # (latency ms: minimize, throughput tok/s: maximize)
    points = [(100, 50), (120, 80), (90, 40), (130, 70), (100, 50), (200, 79)]
    # (130, 70) is worse than (120, 80) in both; (200, 79) too; the duplicate stays.
    assert pareto_front(points, ["minimize", "maximize"]) == [0, 1, 2, 4]
    assert dominates((120, 80), (130, 70), ["minimize", "maximize"])
    assert not dominates((100, 50), (100, 50), ["minimize", "maximize"])


def test_pareto_front_matches_the_definition_on_random_points():
    rng = random.Random(7)
    for _ in range(50):
        n, k = rng.randint(1, 25), rng.randint(2, 3)
        directions = [rng.choice(["minimize", "maximize"]) for _ in range(k)]
        points = [tuple(rng.randint(0, 6) for _ in range(k)) for _ in range(n)]
        assert pareto_front(points, directions) == _front_by_definition(points, directions)


# ------------------------------------------------------------------ objectives, constraints


def test_objectives_name_headline_figures_or_section_keys():
    objectives = parse_objectives(["e2e_ms_mean:minimize", "metrics.ttft_seconds.p99:maximize"])
    assert [(o.metric, o.direction.value) for o in objectives] == [
        ("e2e_ms_mean", "minimize"),
        ("metrics.ttft_seconds.p99", "maximize"),
    ]
    # The typed sections of RunResult are the source: a section added there is nameable.
    assert {"metrics.ttft_seconds.p99", "metrics.memory.peak_bytes", "energy.net_joules"} <= set(
        section_keys()
    )


@pytest.mark.parametrize(
    ("items", "fragment"),
    [
        (["latency:minimize"], "'latency' names no result metric; valid: ttft_ms_mean"),
        (["e2e_ms_mean:smaller"], "direction 'smaller': minimize or maximize"),
        (["e2e_ms_mean"], "expected metric:direction"),
        (["e2e_ms_mean:minimize", "e2e_ms_mean:maximize"], "e2e_ms_mean is named twice"),
        ([], "name at least one"),
    ],
)
def test_bad_objectives(items, fragment):
    with pytest.raises(ConfigError, match="search.objectives") as info:
        parse_objectives(items)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_constraints_both_spellings_and_their_violations():
    data = result(["quant=none"], ttft_s=0.05)  # e2e mean 400 ms, 100 tok/s
    budget, floor, missing = parse_constraints(
        ["e2e_ms_mean:max:250", "output_tok_s>=90", "peak_mem_mib:min:1e9"]
    )
    assert (budget.op, budget.bound, floor.op) == ("<=", 250.0, ">=")
    v = violations([budget, floor], data)
    assert v == pytest.approx([150.0, -10.0])  # 400 - 250 over budget; 10 above the floor
    assert violations([missing], {"status": "ok", "metrics": {}}) == [math.inf]
    with pytest.raises(ConfigError, match="expected metric:max:number"):
        parse_constraints(["e2e_ms_mean<250"])
    with pytest.raises(ConfigError, match="not a finite number"):
        parse_constraints(["e2e_ms_mean:max:fast"])


def test_task_returns_numbers_only_for_an_ok_run_with_every_value():
    search = OmegaConf.structured({"objectives": ["e2e_ms_mean:minimize", "output_tok_s:maximize"]})
    ok = result(["quant=none"], tok_s=100.0)
    assert task_return(search, ok) == pytest.approx([400.0, 100.0])
    one = OmegaConf.structured({"objectives": ["e2e_ms_mean:minimize"]})
    assert task_return(one, ok) == pytest.approx(400.0)  # a float, as Optuna wants for one
    failed = result(["quant=none"], status="failed")
    assert task_return(search, failed) is None
    assert task_return(search, None) is None
    no_energy = result(["quant=none"], energy_j_per_tok=None)
    energy = OmegaConf.structured({"objectives": ["energy_per_token_mj_net:minimize"]})
    assert task_return(energy, no_energy) is None  # missing: failed, never NaN
    assert metric_value("metrics.ttft_seconds.mean", ok) == pytest.approx(0.05)


# ------------------------------------------------------------------------ values to check


def test_search_points_cover_every_value_and_interval_ends():
    points = search_points(["quant=choice(none,nf4)", "b=range(1,4)", "t=interval(0.1,1)"])
    assert len(points) == 2 * 3 * 2
    assert {p[1] for p in points} == {"b=1", "b=2", "b=3"}
    assert {p[2] for p in points} == {"t=0.1", "t=1.0"}


def test_search_points_fall_back_to_one_factor_at_a_time():
    points = search_points(["a=range(0,30)", "b=range(0,30)", "c=x"])
    assert MAX_CHECKED_POINTS < 30 * 30
    assert len(points) == 1 + 29 + 29
    assert {p[0] for p in points} == {f"a={i}" for i in range(30)}
    assert all(p[2] == "c=x" for p in points)


def test_overrides_as_optuna_distributions():
    from optuna.distributions import CategoricalDistribution as Cat
    from optuna.distributions import FloatDistribution as Float
    from optuna.distributions import IntDistribution as Int

    from runner.search.space import search_space, space_size

    space, fixed = search_space(
        [
            "workload.batch_size=range(1,9)",  # 1 to 8, as Hydra reads it
            "b=range(2,11,4)",
            "x=range(0,1,0.1)",  # 0 to 0.9: (high - low) an exact multiple of the step
            "t=interval(0.1,1)",
            "lr=tag(log,interval(1e-3,1))",
            "n=interval(1,64)",
            "q=choice(none,nf4)",
            "c=off,on",
            "model=tiny",
        ]
    )
    assert space == {
        "workload.batch_size": Int(1, 8, step=1),
        "b": Int(2, 10, step=4),
        "x": Float(0.0, 0.9, step=0.1),
        "t": Float(0.1, 1.0),
        "lr": Float(1e-3, 1.0, log=True),
        "n": Float(1.0, 64.0),  # Hydra reads an interval's ends as floats
        "q": Cat(["none", "nf4"]),
        "c": Cat(["off", "on"]),
    }
    assert fixed == {"model": "tiny"}
    discrete = {k: space[k] for k in ("workload.batch_size", "b", "x", "q")}
    assert space_size(discrete) == 8 * 3 * 10 * 2
    assert space_size(space) is None  # an interval of floats: no end to the points


# ------------------------------------------------------------------- the sweeper itself


class Launcher:
    """Stands in for Hydra's launcher: writes each job's result.json like a run would and
    returns what the task function would return (None for a failed run)."""

    def __init__(
        self,
        root: Path,
        stop_at: int | None = None,
        fail: set[str] = frozenset(),
        stop_after_write: bool = False,
        negative_net: set[str] = frozenset(),
        objectives: list[str] | None = None,
    ):
        self.root, self.stop_at, self.fail, self.calls = root, stop_at, fail, 0
        self.stop_after_write = stop_after_write
        self.negative_net, self.objectives = negative_net, objectives

    def launch(self, job_overrides, initial_job_idx):
        from hydra.core.utils import JobReturn, JobStatus

        from runner.results import write_json_atomic
        from runner.stop import StopRequested

        returns = []
        for overrides in job_overrides:
            self.calls += 1
            stop = self.stop_at is not None and self.calls == self.stop_at
            if stop and not self.stop_after_write:
                raise StopRequested(2)
            params = dict(o.split("=", 1) for o in overrides)
            b = int(params["b"])
            status = "failed" if params["q"] in self.fail else "ok"
            run_dir = self.root / ",".join(overrides)
            data = result(list(overrides), status=status, tok_s=10.0 * b, ttft_s=0.01 * b)
            if params["q"] in self.negative_net:  # the idle baseline above the loaded machine
                data["energy"]["net_joules"] = -25.0
                data["energy"]["per_output_token_joules"]["net"] = -0.025
            write_json_atomic(run_dir / "result.json", data)
            if stop:
                raise StopRequested(2)  # the run had finished ok: only the tell was lost
            ret = JobReturn()
            ret.hydra_cfg = OmegaConf.create({"hydra": {"runtime": {"output_dir": str(run_dir)}}})
            ret.status = JobStatus.COMPLETED
            values = [data["metrics"]["ttft_seconds"]["mean"] * 1e3, 10.0 * b]
            ret.return_value = values if status == "ok" else None
            if self.objectives:  # what the task function returns for these objectives
                ret.return_value = task_return(
                    OmegaConf.structured({"objectives": self.objectives}), data
                )
            returns.append(ret)
        return returns


def _sweeper(tmp_path: Path, launcher: Launcher, n_trials: int, sampler=None, **search: Any):
    import optuna

    from runner.search.sweeper import ParetoSweeperImpl

    impl = ParetoSweeperImpl(
        sampler=sampler or optuna.samplers.RandomSampler(seed=1),
        direction=["minimize", "maximize"],
        storage=f"sqlite:///{tmp_path / 'optuna.db'}",
        study_name="t",
        n_trials=n_trials,
        n_jobs=1,
        max_failure_rate=1.0,
        search_space=None,
        custom_search_space=None,
        params=None,
    )
    impl.config = OmegaConf.create(
        {
            "hydra": {"sweep": {"dir": str(tmp_path)}},
            "search": {
                "objectives": ["ttft_ms_mean:minimize", "output_tok_s:maximize"],
                "constraints": [],
                "violation": "penalise",
                **search,
            },
        }
    )
    impl.launcher = launcher
    return impl


def _trials(tmp_path: Path) -> list[dict[str, Any]]:
    return json.loads((tmp_path / "search.json").read_text())["trials"]


def test_failed_runs_are_failed_trials_and_the_front_is_marked(tmp_path):
    _sweeper(tmp_path, Launcher(tmp_path, fail={"bad"}), 8).sweep(
        ["q=choice(good,bad)", "b=range(1,5)"]
    )
    trials = _trials(tmp_path)
    # 8 trials on a space of 8 points: each measured once, a repeat told but not listed
    assert len({(t["params"]["q"], t["params"]["b"]) for t in trials}) == len(trials) == 8
    numbers = [t["number"] for t in trials]
    assert numbers == sorted(numbers)
    for t in trials:
        bad = t["params"]["q"] == "bad"
        assert (t["state"], t["status"], t["values"] is None) == (
            ("FAIL", "failed", True) if bad else ("COMPLETE", "ok", False)
        )
    done = [t for t in trials if t["state"] == "COMPLETE"]
    expected = pareto_front([t["values"] for t in done], ["minimize", "maximize"])
    assert [t["pareto"] for t in done] == [i in expected for i in range(len(done))]

    # The report lists the trials in order and marks the front.
    from runner.report import build_report

    outputs = build_report([tmp_path], tmp_path)
    text = outputs.report_md.read_text()
    section = text[text.index("### Trials in order") :]
    rows = [line for line in section.splitlines() if line[:3].strip("| ").isdigit()]
    assert [int(r.split("|")[1]) for r in rows] == numbers
    assert [("★" in r.split("|")[2]) for r in rows] == [t["pareto"] for t in trials]
    assert (tmp_path / "plots" / "search_pareto.png").read_bytes()[:4] == b"\x89PNG"


def test_an_unresolved_energy_is_a_failed_trial_with_its_reason_never_a_winner(tmp_path):
    objectives = ["energy_per_token_mj_net:minimize", "output_tok_s:maximize"]
    launcher = Launcher(tmp_path, negative_net={"neg"}, objectives=objectives)
    _sweeper(tmp_path, launcher, 6, objectives=objectives).sweep(
        ["q=choice(good,neg)", "b=range(1,4)"]
    )
    trials = _trials(tmp_path)
    negative = [t for t in trials if t["params"]["q"] == "neg"]
    assert negative and all(t["state"] == "FAIL" and t["status"] == "ok" for t in negative)
    for t in negative:
        assert t["reason"].startswith("energy_per_token_mj_net unresolved: net energy ≤ 0")
        assert not t["pareto"]
    assert all(t["reason"] is None for t in trials if t["params"]["q"] == "good")

    from runner.report import build_report

    text = build_report([tmp_path], tmp_path).report_md.read_text()
    assert "why FAIL" in text and "energy_per_token_mj_net unresolved" in text
    best = text[text.index("## Best points") : text.index("## Energy/latency")]
    assert "Not ranked for energy per output token, net, unresolved:" in best


def test_a_renamed_metric_is_refused_with_its_new_name():
    with pytest.raises(ConfigError, match="'output_tok_s_total' was renamed: use output_tok_s"):
        parse_objectives(["output_tok_s_total:maximize"])
    with pytest.raises(ConfigError, match="per_call_output_tok_s_mean"):
        parse_constraints(["output_tok_s_mean:min:3"])


def test_constraints_prune_or_penalise(tmp_path):
    # ttft = 10 ms * b: a budget of 25 ms allows b = 1, 2 only
    space = ["q=choice(good)", "b=range(1,5)"]
    _sweeper(
        tmp_path / "p",
        Launcher(tmp_path / "p"),
        6,
        constraints=["ttft_ms_mean:max:25"],
        violation="prune",
    ).sweep(space)
    for t in _trials(tmp_path / "p"):
        assert t["state"] == ("COMPLETE" if t["params"]["b"] <= 2 else "PRUNED")
    _sweeper(
        tmp_path / "n",
        Launcher(tmp_path / "n"),
        6,
        constraints=["ttft_ms_mean:max:25"],
        violation="penalise",
    ).sweep(space)
    for t in _trials(tmp_path / "n"):
        assert t["state"] == "COMPLETE" and t["feasible"] == (t["params"]["b"] <= 2)
        assert t["violations"] == [pytest.approx(10.0 * t["params"]["b"] - 25)]
        assert not (t["pareto"] and not t["feasible"])  # the front is feasible trials only


def test_a_stopped_search_resumes_where_it_was(tmp_path):
    from runner.stop import StopRequested

    space = ["q=choice(good)", "b=range(1,9)"]
    with pytest.raises(StopRequested):
        _sweeper(tmp_path, Launcher(tmp_path, stop_at=3), 5).sweep(space)
    trials = _trials(tmp_path)
    assert [(t["state"], t["status"]) for t in trials] == [
        ("COMPLETE", "ok"),
        ("COMPLETE", "ok"),
        ("FAIL", "interrupted"),
    ]
    stopped = trials[2]["params"]
    launcher = Launcher(tmp_path)
    _sweeper(tmp_path, launcher, 5).sweep(space)  # the study in SQLite, on SQLAlchemy 2
    assert int(sqlalchemy.__version__.split(".")[0]) >= 2
    trials = _trials(tmp_path)
    # The interrupted point is asked first, and only the missing trials run.
    assert trials[3]["params"] == stopped and trials[3]["state"] == "COMPLETE"
    assert launcher.calls == 3
    assert sum(t["state"] == "COMPLETE" for t in trials) == 5
    # Resuming a finished search runs nothing.
    again = Launcher(tmp_path)
    _sweeper(tmp_path, again, 5).sweep(space)
    assert again.calls == 0


def test_a_stop_after_the_run_finished_keeps_its_values(tmp_path):
    from runner.stop import StopRequested

    with pytest.raises(StopRequested):
        _sweeper(tmp_path, Launcher(tmp_path, stop_at=2, stop_after_write=True), 5).sweep(
            ["q=choice(good)", "b=range(1,9)"]
        )
    trials = _trials(tmp_path)
    assert [(t["state"], t["status"]) for t in trials] == [("COMPLETE", "ok")] * 2
    assert Path(trials[1]["run_dir"]).name == f"q=good,b={trials[1]['params']['b']}"


# ------------------------------------------------------------ a small space, no repeats

SAMPLERS = {
    "nsgaii": lambda: optuna.samplers.NSGAIISampler(seed=0, population_size=4),  # the preset's
    "tpe": lambda: optuna.samplers.TPESampler(seed=0),
    "random": lambda: optuna.samplers.RandomSampler(seed=1),
}


@pytest.mark.parametrize("name", SAMPLERS)
def test_four_trials_on_a_four_point_space_measure_four_points(tmp_path, name):
    launcher = Launcher(tmp_path)
    _sweeper(tmp_path, launcher, 4, sampler=SAMPLERS[name]()).sweep(
        ["q=choice(good)", "b=range(1,5)"]
    )
    trials = _trials(tmp_path)
    assert launcher.calls == 4
    assert sorted(t["params"]["b"] for t in trials) == [1, 2, 3, 4]
    # A proposal of a measured point was told that trial's result, and is listed apart.
    study = optuna.load_study(study_name="t", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    repeats = json.loads((tmp_path / "search.json").read_text())["repeats"]
    assert len(study.trials) == 4 + len(repeats)
    for r in repeats:
        twin, measured = study.trials[r["number"]], study.trials[r["repeat_of"]]
        assert twin.params == measured.params and twin.values == measured.values
        assert twin.user_attrs["repeat_of"] == measured.number


def test_a_measured_space_ends_the_search(tmp_path, caplog):
    launcher = Launcher(tmp_path, fail={"bad"})
    with caplog.at_level("INFO", logger="runner.search.sweeper"):
        _sweeper(tmp_path, launcher, 10, sampler=SAMPLERS["nsgaii"]()).sweep(
            ["q=choice(good,bad)", "b=range(1,3)"]
        )
    assert launcher.calls == 4  # a failed point is measured too: not asked again
    assert len(_trials(tmp_path)) == 4
    assert "every point of the search space (4) is measured" in caplog.text
    # Resumed, it has nothing to run.
    again = Launcher(tmp_path, fail={"bad"})
    _sweeper(tmp_path, again, 10).sweep(["q=choice(good,bad)", "b=range(1,3)"])
    assert again.calls == 0


class _Lowest(optuna.samplers.RandomSampler):
    """Proposes the same point every time."""

    def sample_independent(self, study, trial, param_name, param_distribution):
        if isinstance(param_distribution, optuna.distributions.CategoricalDistribution):
            return param_distribution.choices[0]
        return param_distribution.low


def test_a_sampler_that_only_repeats_stops_the_search(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr("runner.search.sweeper.MAX_REPEATS", 5)
    launcher = Launcher(tmp_path)
    with caplog.at_level("INFO", logger="runner.search.sweeper"):
        _sweeper(tmp_path, launcher, 3, sampler=_Lowest()).sweep(
            ["q=choice(good)", "b=range(1,100)"]
        )
    assert launcher.calls == 1
    assert len(json.loads((tmp_path / "search.json").read_text())["repeats"]) == 5
    assert "proposed 5 measured points in a row" in caplog.text


@pytest.mark.parametrize(
    ("overrides", "sampler"),
    [
        ([], "NSGAIISampler"),
        (["hydra.sweeper.sampler.population_size=8"], "NSGAIISampler"),
        (["hydra/sweeper/sampler=tpe"], "TPESampler"),
        (["hydra/sweeper/sampler=tpe", "hydra.sweeper.sampler.multivariate=true"], "TPESampler"),
        (["hydra/sweeper/sampler=random"], "RandomSampler"),
    ],
)
def test_the_preset_composes_with_each_sampler(overrides, sampler):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import instantiate

    from runner.config.store import CONF_DIR
    from runner.preflight_sweep import PARETO_SWEEPER

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            config_name="config",
            overrides=["hydra/sweeper=pareto", *overrides],
            return_hydra_config=True,
        )
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_ == PARETO_SWEEPER and sweeper.sampler.seed == 0
    assert type(instantiate(sweeper.sampler)).__name__ == sampler
