"""Ground truth for the report: a synthetic sweep whose every effect is known, checked
cell by cell.

The sweep (``quant=none,nf4``, ``compile=on,off`` typed in that order, batch size 1, 2, 4
with ``workload.num_prompts`` 8, 16, 32 changing with it, so the two are aliased):

- ``compile=off`` doubles latency and energy and halves throughput; ``quant=nf4``
  multiplies latency by 1.8, energy by 1.5 and perplexity by 1.27 (paired over the same
  evaluation windows); batch size b multiplies latency by ``1 + 0.25 log2 b`` and divides
  energy per token by ``sqrt(b)``; every run's timing gets a 2% log-normal draw, its
  energy 1%;
- each run's per-call rates average 3x its total rate (what a mean of rates would
  report); its headline rate is total tokens over total time;
- ``quant=none, compile=on, batch 4``, otherwise the lowest energy per token, has a net
  energy below zero (its idle baseline exceeded the load): unresolved;
- ``quant=nf4, compile=off, batch 4`` failed (out of memory while loading);
- every run is logged to a real MLflow store in the sweep directory, and a copy of one
  run's ``result.json`` sits in an ``mlartifacts/`` folder as older stores left them.
"""

from __future__ import annotations

import json
import math
import random
import re
import shlex
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from runner.config.dirname import job_dirname, sweep_exclude_keys, sweep_exclude_override
from runner.config.overrides import expand
from runner.report import build_report
from runner.results import RunError, RunResult, Status
from runner.sections.energy import Energy, EnergyBaseline, EnergyComponent, GrossNet
from runner.sections.metrics import Latency, Memory, Metrics, Stats, Throughput
from runner.sections.quality import PerplexityEval, Quality
from tests.test_report_scale import section, table_rows

TASK = [
    "model=tiny",
    "quant=none,nf4",
    "compile=on,off",  # typed "on" first: the reference level, though "off" sorts first
    "workload.batch_size=1,2,4",
    "workload.num_prompts=8,16,32",
]
BASELINE_SETTING = "hydra.callbacks.sweep_report.baseline='quant=none,compile=on'"
BATCHES = {"1": "8", "2": "16", "4": "32"}  # batch size -> num_prompts: always together
TOKENS = 32
FAILED = {"quant": "nf4", "compile": "off", "workload.batch_size": "4"}
NEGATIVE = {"quant": "none", "compile": "on", "workload.batch_size": "4"}
PPL_RATIO = 1.27
WINDOW_NLL = (2.9, 3.1, 3.0, 2.95, 3.05, 2.98)  # nats per token of each evaluation window


def truth(factors: dict[str, str], rng: random.Random) -> dict[str, float]:
    b = int(factors["workload.batch_size"])
    slow = 2.0 if factors["compile"] == "off" else 1.0
    quant = factors["quant"] == "nf4"
    e2e = 100.0 * slow * (1.8 if quant else 1.0) * (1 + 0.25 * math.log2(b))
    e2e *= math.exp(rng.gauss(0, 0.02))
    energy = 20.0 * slow * (1.5 if quant else 1.0) / math.sqrt(b) * math.exp(rng.gauss(0, 0.01))
    return {
        "e2e_ms": e2e,
        "ttft_ms": 0.1 * e2e,
        "itl_ms": e2e / 40,
        "tok_s": b * TOKENS / (e2e / 1e3),
        "energy_mj": energy,
        "peak_mib": 500.0 + 50.0 * b,
        "nll_shift": math.log(PPL_RATIO) if quant else 0.0,
    }


def _stats(mean: float, rel: float, units: int) -> Stats:
    """A positive figure's log-scale CI, as the runner writes it."""
    return Stats(
        count=units * 4,
        mean=mean,
        median=mean,
        std=mean * rel,
        ci95_low=mean * math.exp(-rel),
        ci95_high=mean * math.exp(rel),
        ci_unit="call",
        ci_units=units,
    )


def run_result(factors: dict[str, str], overrides: list[str], name: str, v: dict) -> RunResult:
    prompts = int(BATCHES[factors["workload.batch_size"]])
    calls = prompts // int(factors["workload.batch_size"])
    tokens = prompts * TOKENS
    measured = calls * v["e2e_ms"] / 1e3
    latency = Latency(
        ttft_seconds=_stats(v["ttft_ms"] / 1e3, 0.03, calls * 3),
        itl_seconds=_stats(v["itl_ms"] / 1e3, 0.03, calls * 3),
        e2e_request_seconds=_stats(v["e2e_ms"] / 1e3, 0.03, calls * 3),
        output_tokens_per_second=_stats(3 * v["tok_s"], 0.05, calls * 3),  # a mean of rates
        throughput=Throughput(
            v["tok_s"],
            None,
            None,
            None,
            v["tok_s"] * math.exp(-0.04),
            v["tok_s"] * 1.04**1,
            "pass",
            3,
        ),  # fmt: skip
        measured_seconds=3 * measured,
        requests=3 * prompts,
        output_tokens=3 * tokens,
        calls=3 * calls,
    )
    gross = v["energy_mj"] / 1e3 * 3 * tokens
    negative = all(factors[k] == val for k, val in NEGATIVE.items())
    net = -0.3 if negative else 0.75 * gross
    energy = Energy(
        backend="codecarbon",
        window_seconds=3 * measured,
        sampling_interval_seconds=0.05,
        components={"cpu": EnergyComponent(gross, "codecarbon-cpu-load-estimate")},
        gross_joules=gross,
        baseline=EnergyBaseline(watts=1.0, joules=gross - net),
        net_joules=net,
        per_output_token_joules=GrossNet(gross / (3 * tokens), net / (3 * tokens)),
        emissions_kg=gross / 3.6e6 * 0.4,
        is_estimate=True,
    )
    nll = [x + v["nll_shift"] + random.Random(name).gauss(0, 0.002) for x in WINDOW_NLL]
    mean_nll = sum(nll) / len(nll)
    evaluation = PerplexityEval(
        text="builtin:runner/data/eval_text.jsonl",
        text_sha256="t" * 64,
        text_tokens=600,
        token_ids_sha256="k" * 64,
        tokens_scored=600,
        windows=len(nll),
        window_tokens=101,
        window_nll=tuple(nll),
        window_scored=(100,) * len(nll),
    )
    quality = Quality(
        mode="perplexity",
        perplexity=math.exp(mean_nll),
        perplexity_ci95_low=math.exp(mean_nll - 0.05),
        perplexity_ci95_high=math.exp(mean_nll + 0.05),
        evaluation=evaluation,
    )
    metrics = Metrics(
        latency=latency,
        memory=Memory(peak_bytes=int(v["peak_mib"] * 2**20), peak_source="process-peak-rss"),
        repeats=3,
    )
    return RunResult(
        status=Status.ok,
        run_id=name,
        config_hash=name,
        overrides=overrides,
        started_at="2026-12-06T12:00:00Z",
        finished_at="2026-12-06T12:00:10Z",
        config={"model": {"name": "tiny-llama"}},
        workload={"token_ids_sha256": "w" * 64},
        metrics=metrics,
        energy=energy,
        quality=quality,
    )


def label_of(factors: dict[str, str]) -> str:
    """The report's label of a run: its swept factors, in the command's order."""
    batch = factors["workload.batch_size"]
    return (
        f"quant={factors['quant']}, compile={factors['compile']}, workload.batch_size={batch}"
        f", workload.num_prompts={BATCHES[batch]}"
    )


NEGATIVE_LABEL = label_of(NEGATIVE)


def make_truth_sweep(root: Path) -> dict[str, Any]:
    """Write the sweep; return ``{label: (factors, values)}`` of the ok runs, the failed
    run's directory and the negative run's label."""
    root.mkdir(parents=True)
    hydra = [sweep_exclude_override(TASK), BASELINE_SETTING, f"hydra.sweep.dir={root}"]
    (root / "multirun.yaml").write_text(
        json.dumps({"hydra": {"overrides": {"hydra": hydra, "task": TASK}}})
    )
    rng = random.Random(2026)
    exclude = sweep_exclude_keys(TASK)
    ok: dict[str, Any] = {}
    failed_dir = None
    for quant in ("none", "nf4"):
        for compile_ in ("on", "off"):
            for batch, prompts in BATCHES.items():
                factors = {"quant": quant, "compile": compile_, "workload.batch_size": batch}
                overrides = [
                    "model=tiny",
                    f"quant={quant}",
                    f"compile={compile_}",
                    f"workload.batch_size={batch}",
                    f"workload.num_prompts={prompts}",
                ]
                name = job_dirname(overrides, exclude)
                run_dir = root / name
                (run_dir / ".hydra").mkdir(parents=True)
                (run_dir / ".hydra" / "overrides.yaml").write_text(
                    "".join(f"- {o}\n" for o in overrides)
                )
                values = truth(factors, rng)
                res = run_result(factors, overrides, name, values)
                if factors == FAILED:
                    res.status, res.energy, res.quality, res.metrics = (
                        Status.failed,
                        None,
                        None,
                        Metrics(),
                    )
                    res.error = RunError("OutOfMemoryError", "out of memory", "...", "load")
                    failed_dir = run_dir
                else:
                    ok[label_of(factors)] = (factors, values)
                (run_dir / "result.json").write_text(json.dumps(res.to_dict()))
    return {"ok": ok, "failed": failed_dir}


@pytest.fixture(scope="module")
def truth_report(tmp_path_factory) -> dict[str, Any]:
    from runner.tracking.store import Tracker, default_uri

    root = tmp_path_factory.mktemp("truth") / "sweep"
    made = make_truth_sweep(root)
    # MLflow on: every run logged to a real store in the sweep directory, artifacts included.
    tracker = Tracker(default_uri(root), "truth")
    parent = tracker.start_parent(root, {})
    for run_dir in sorted(p.parent for p in root.glob("*/result.json")):
        assert tracker.log_job(run_dir, parent)
    tracker.finish_parent(root, "FINISHED")
    assert len(list(root.glob(".mlartifacts/**/result.json"))) == 12  # a copy of each run
    # An older store's artifacts sat in mlartifacts/, not hidden: one such copy.
    legacy = root / "mlartifacts" / "1" / "abc" / "artifacts"
    legacy.mkdir(parents=True)
    shutil.copy(next(root.glob("*quant=none*/result.json")), legacy / "result.json")
    outputs = build_report([root], root)
    return {**made, "root": root, "outputs": outputs, "text": outputs.report_md.read_text()}


def _number(text: str) -> float:
    return float(text.replace(",", ""))


def _mean_ci(cell: str) -> tuple[float, float, float]:
    """``12.3 [11.0, 13.5]`` or ``12.3 ± 0.4`` -> (mean, low, high)."""
    found = re.fullmatch(r"([\d.,]+) \[([\d.,]+), ([\d.,]+)\]\*?", cell)
    if found:
        return tuple(_number(g) for g in found.groups())  # type: ignore[return-value]
    found = re.fullmatch(r"([\d.,]+) ± ([\d.,]+)\*?", cell)
    assert found, cell
    mean, half = _number(found.group(1)), _number(found.group(2))
    return mean, mean - half, mean + half


def _effect(cell: str) -> tuple[str, float, float, float, str]:
    """``nf4 ×1.80 [1.74, 1.86] †`` -> (level, ratio, low, high, mark)."""
    found = re.fullmatch(r"(\S+) ×([\d.]+) \[([\d.]+), ([\d.]+)\]( [†‡])?", cell)
    assert found, cell
    level, ratio, low, high, mark = found.groups()
    return level, float(ratio), float(low), float(high), (mark or "").strip()


def test_every_run_is_counted_once(truth_report):
    text, root = truth_report["text"], truth_report["root"]
    assert f"12 runs from `{root}`: 11 ok, 1 failed." in text
    assert "Not counted: 1 `result.json` copies of these runs" in text
    assert len(pd.read_csv(root / "summary.csv")) == 12


def test_best_points(truth_report):
    rows = table_rows(section(truth_report["text"], "Best points"))
    best = {r["best for"]: r for r in rows}
    ok = truth_report["ok"]

    def factors_of(row: dict[str, str]) -> dict[str, str]:
        return {k: row[k] for k in ("quant", "compile", "workload.batch_size")}

    def expected(key: str, lowest: bool = True, skip: str | None = None) -> str:
        pick = min if lowest else max
        return pick((k for k in ok if k != skip), key=lambda k: ok[k][1][key])

    e2e = best["lowest end-to-end request latency (ms)"]
    label = expected("e2e_ms")
    assert factors_of(e2e) == ok[label][0]
    mean, low, high = _mean_ci(e2e["value"])
    assert mean == pytest.approx(ok[label][1]["e2e_ms"], rel=2e-3) and low < mean < high
    # The headline rate is the total rate, never the 3x mean of per-call rates.
    tok = best["highest output throughput (tok/s)"]
    label = expected("tok_s", lowest=False)
    assert factors_of(tok) == ok[label][0]
    assert _mean_ci(tok["value"])[0] == pytest.approx(ok[label][1]["tok_s"], rel=2e-3)
    # The negative-net run would be the lowest energy: it is unresolved and not ranked.
    negative = NEGATIVE_LABEL
    energy = best["lowest energy per output token, net (mJ)"]
    assert factors_of(energy) == ok[expected("energy_mj", skip=negative)][0]
    assert energy["runs ranked"] == "10"
    body = section(truth_report["text"], "Best points")
    assert f"Not ranked for energy per output token, net, unresolved: `{negative}`" in body
    assert "net energy ≤ 0" in body
    assert best["lowest perplexity"]["quant"] == "none"


def test_effects_cell_by_cell(truth_report):
    body = section(truth_report["text"], "Effect of each factor")
    rows = {r["factor"]: r for r in table_rows(body)}
    aliased = "workload.batch_size = workload.num_prompts (aliased)"
    assert set(rows) == {"quant", "compile", aliased}
    # The reference: the level the command typed first ("on"), not the alphabetical first.
    assert {k: rows[k]["reference"] for k in rows} == {
        "quant": "none",
        "compile": "on",
        aliased: "1",
    }
    checks = [  # (factor, column, level, true ratio)
        ("quant", "E2E ms", "nf4", 1.8),
        ("quant", "out tok/s", "nf4", 1 / 1.8),
        ("quant", "mJ/tok net", "nf4", 1.5),
        ("quant", "ppl", "nf4", PPL_RATIO),
        ("compile", "E2E ms", "off", 2.0),
        ("compile", "out tok/s", "off", 0.5),
        ("compile", "mJ/tok net", "off", 2.0),
        (aliased, "E2E ms", "4", 1.5),
        # batch 4 against 1 has 2 resolved pairs only (one failed, one unresolved): energy
        # has no within-run CI, so the level the cell shows is batch 2's, which has a CI
        (aliased, "mJ/tok net", "2", 1 / math.sqrt(2)),
    ]
    for factor, column, level, ratio in checks:
        got, estimate, low, high, mark = _effect(rows[factor][column])
        assert got == level, (factor, column)
        assert low <= ratio <= high, (factor, column, rows[factor][column])
        assert estimate == pytest.approx(ratio, rel=0.05)
        assert mark == "", (factor, column)  # 3 or more pairs: a CI over pairs
    assert rows["compile"]["ppl"].startswith("no detectable difference (off ×")
    lead = body.strip().splitlines()[0]
    assert lead.startswith("On end-to-end request latency: detectable effects, largest first:")
    assert "No detectable difference" not in lead and "Not estimable" not in lead

    effects = pd.read_csv(truth_report["root"] / "effects.csv")
    e2e = effects[effects["metric"] == "e2e_ms_mean"].set_index(["factor", "level"])
    # nf4 against none: 6 cells of the other factors, one of them failed
    assert e2e.loc[("quant", "nf4"), "pairs"] == 5
    assert e2e.loc[("quant", "nf4"), "ci_basis"] == "paired"
    assert e2e.loc[("workload.batch_size", "4"), "aliases"] == "workload.num_prompts"
    assert "workload.num_prompts" not in set(effects["factor"])
    net = effects[effects["metric"] == "energy_per_token_mj_net"].set_index(["factor", "level"])
    # the failed cell and the unresolved run's cell are left out of the pairs
    assert net.loc[("quant", "nf4"), "pairs"] == 4
    four = net.loc[("workload.batch_size", "4")]
    assert (four["pairs"], four["ci_basis"]) == (2, "none")
    assert four["note"] == "2 pairs of 3 needed, no within-run CI"
    assert math.isnan(four["ratio_ci95_low"]) and four["ratio"] == pytest.approx(0.5, rel=0.05)


def test_all_runs_table(truth_report):
    rows = table_rows(section(truth_report["text"], "All runs"))
    assert len(rows) == 12
    ok = truth_report["ok"]
    for row in rows:
        label = label_of(row)
        if row["status"] == "failed":
            assert label == label_of(FAILED)
            assert row["E2E ms"] == row["out tok/s"] == row["mJ/tok gross"] == ""
            continue
        factors, v = ok[label]
        for column, key in (("E2E ms", "e2e_ms"), ("out tok/s", "tok_s")):
            mean, low, high = _mean_ci(row[column])
            assert mean == pytest.approx(v[key], rel=2e-3)
            assert 0 < low < mean < high  # a positive figure's interval stays positive
        if label == NEGATIVE_LABEL:
            assert row["mJ/tok net"] == "unresolved" and row["mJ/tok gross"].endswith("*")
        else:
            assert _number(row["mJ/tok net"].rstrip("*")) > 0
    body = section(truth_report["text"], "All runs")
    assert f"- `{NEGATIVE_LABEL}`: energy net: net energy ≤ 0" in body


def test_pareto_front_leaves_the_unresolved_run_out(truth_report):
    ok = truth_report["ok"]
    resolved = {k: v for k, (_, v) in ok.items() if k != NEGATIVE_LABEL}
    front = {
        k
        for k, v in resolved.items()
        if not any(
            w["e2e_ms"] <= v["e2e_ms"] and w["energy_mj"] <= v["energy_mj"] and w != v
            for w in resolved.values()
        )
    }
    body = section(truth_report["text"], "Energy/latency Pareto front")
    listed = {label_of(r) for r in table_rows(body)}
    assert listed == front
    assert "Not on the front, for energy per output token, net, unresolved:" in body


def test_failed_run_and_a_rerun_command_a_person_can_read(truth_report):
    body = section(truth_report["text"], "Runs that did not complete")
    assert "### failed: OutOfMemoryError (phase: load) (1 run)" in body
    command = re.search(r"```bash\n(.*?)\n```", body, re.S).group(1)
    assert "\n" not in command and len(command) < 300, command
    assert "'\"'\"'" not in command  # no nested quoting
    argv = shlex.split(command)
    root = truth_report["root"]
    assert argv == [
        "python", "-m", "runner", "-m", "model=tiny", "quant=choice(nf4)",
        "compile=choice(off)", "workload.batch_size=choice(4)",
        "workload.num_prompts=choice(32)", BASELINE_SETTING, f"hydra.sweep.dir={root}",
    ]  # fmt: skip
    names = {job_dirname(job, sweep_exclude_keys(argv[4:9])) for job in expand(argv[4:9], True)}
    assert names == {truth_report["failed"].name}  # it reruns exactly the failed point


def test_a_2x2_part_says_what_it_cannot_estimate(truth_report, tmp_path):
    root = truth_report["root"]
    part = [p for p in root.iterdir() if p.is_dir() and "workload.batch_size=1," in p.name + ","]
    assert len(part) == 4
    text = build_report(part, tmp_path).report_md.read_text()
    rows = {r["factor"]: r for r in table_rows(section(text, "Effect of each factor"))}
    # 2 pairs: latency's CI rests on the runs' own CIs (†); energy has none: not estimable
    level, ratio, low, high, mark = _effect(rows["compile"]["E2E ms"])
    assert (level, mark) == ("off", "†") and low <= 2.0 <= high * 1.05
    assert re.fullmatch(
        r"not estimable: off ×[\d.]+ \(2 pairs of 3 needed, no within-run CI\)",
        rows["compile"]["mJ/tok net"],
    )
    # perplexity's 2 pairs are compared window by window: a CI, and it finds nf4's 1.27
    level, ratio, low, high, mark = _effect(rows["quant"]["ppl"])
    assert (level, mark) == ("nf4", "†") and low <= PPL_RATIO <= high and low > 1.2
