"""The typed result sections: one to_dict/from_dict each, the JSON layout they write,
and how they read old, newer and odd files."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import fields
from pathlib import Path

import pytest

from runner import summary
from runner.measure.stats import STAT_KEYS, summarize
from runner.results import RunError, RunResult, Status, read_result, write_result
from runner.sections.energy import Energy, EnergyBaseline, EnergyComponent, GpuNvml, GrossNet
from runner.sections.metrics import Latency, Memory, Metrics, Stats, Throughput
from runner.sections.quality import Agreement, LmEval, PerplexityEval, Quality
from runner.sections.warnings import LibraryWarning, NamedWarning, WarningsDetail

LATENCY_KEYS = [f.name for f in fields(Latency)]


def _full_result() -> RunResult:
    """A result with every kind of field set: nested, optional, dict and tuple ones."""
    latency = Latency(
        ttft_seconds=summarize([0.1, 0.2, 0.3, 0.2], [0, 0, 1, 2], unit="call", positive=True),
        itl_seconds=summarize([0.01, 0.02], unit="call"),
        throughput=Throughput(100.0, 120.0, 2.0, 400.0),
        throughput_per_repeat=summarize([99.0, 101.0], unit="repeat"),
        measured_seconds=3.0,
        requests=6,
        output_tokens=300,
        input_tokens=60,
        calls=2,
    )
    metrics = Metrics(
        latency=latency,
        provision_seconds=21.5,
        load_seconds=0.4,
        memory=Memory(model_footprint_bytes=2**20, peak_bytes=2**21, peak_source="rss"),
        warmup_seconds=1.0,
        warmup_calls=2,
        repeats=2,
        stopped_by="criteria_met",
    )
    energy = Energy(
        backend="codecarbon",
        components={"cpu": EnergyComponent(3.0, "rapl"), "gpu": EnergyComponent(9.0, "nvml")},
        gross_joules=12.0,
        baseline=EnergyBaseline(watts=1.0, joules=3.0, cached=False, method="m"),
        net_joules=9.0,
        per_output_token_joules=GrossNet(0.04, 0.03),
        gpu_nvml=GpuNvml(9.0, "nvml-counter", {"0": 9.0}, (4.0, 5.0)),
        is_estimate=False,
        warnings=("w1", "w2"),
    )
    quality = Quality(
        mode="lm_eval",
        perplexity=20.0,
        perplexity_ci95_low=18.0,
        perplexity_ci95_high=22.5,
        evaluation=PerplexityEval(
            text="builtin", tokens_scored=1020, perplexity_by_kind={"code": 9.5}, method="m"
        ),
        agreement=Agreement(
            reference="/runs/a", requests=3, token_match=summarize([1.0, 0.5, 0.75])
        ),
        lm_eval=LmEval(tasks=("t",), results={"t": {"acc": 0.5, "acc_stderr": 0.1}}),
        seconds=2.0,
    )
    return RunResult(
        status=Status.ok,
        run_id="r",
        config_hash="h",
        overrides=["quant=nf4"],
        started_at="2026-01-01T00:00:00+00:00",
        finished_at="2026-01-01T00:01:00+00:00",
        config={"model": {"name": "tiny"}},
        metrics=metrics,
        energy=energy,
        quality=quality,
        error=RunError("E", "boom\nmore", None, "measure"),
        warnings=["compile.graph_breaks: 2 graph break(s)", "bitsandbytes WARNING: cast"],
        warnings_detail=WarningsDetail(
            named=(NamedWarning("compile.graph_breaks", "2 graph break(s)", "warmup"),),
            library=(LibraryWarning("bitsandbytes", "WARNING", "cast", "measure", 7168),),
        ),
    )


def test_a_result_survives_the_file_unchanged(tmp_path: Path):
    result = _full_result()
    write_result(tmp_path, result)
    assert RunResult.from_dict(read_result(tmp_path)) == result


def test_the_json_layout():
    data = _full_result().to_dict()
    assert list(data)[0] == "schema_version"
    metrics = data["metrics"]
    # The latency keys sit flat in metrics, next to the phases and memory.
    assert metrics["ttft_seconds"]["ci_units"] == 3 and "latency" not in metrics
    assert list(metrics["ttft_seconds"]) == list(STAT_KEYS)
    assert metrics["throughput"]["requests_per_second"] == 2.0
    assert metrics["memory"]["peak_source"] == "rss"
    energy = data["energy"]
    assert energy["components"]["gpu"] == {"joules": 9.0, "method": "nvml"}
    assert energy["gpu_nvml"]["per_repeat_joules"] == [4.0, 5.0]  # JSON lists, not tuples
    assert energy["per_request_joules"] == {"gross": None, "net": None}
    assert data["error"]["phase"] == "measure"
    said = data["warnings_detail"]
    assert said["named"] == [
        {"name": "compile.graph_breaks", "message": "2 graph break(s)", "phase": "warmup"}
    ]
    assert said["library"][0]["count"] == 7168 and said["library"][0]["noise"] is False


def test_before_measuring_metrics_hold_nulls_and_no_latency_keys():
    metrics = Metrics(load_seconds=1.0).to_dict()
    assert not set(LATENCY_KEYS) & set(metrics)
    assert metrics["load_seconds"] == 1.0 and metrics["warmup_seconds"] is None
    assert metrics["memory"]["peak_bytes"] is None
    assert Metrics.from_dict(metrics).latency is None


def test_reading_is_forgiving():
    data = {
        "ttft_seconds": {"mean": 0.5, "count": 3.0, "from_a_newer_writer": 1},
        "itl_seconds": "not a distribution",
        "requests": True,  # a bool is never a count
        "load_seconds": "1.5",
        "memory": {"peak_bytes": 2.0**30, "model_footprint_bytes": 1.5},
        "repeats": 4,
    }
    metrics = Metrics.from_dict(data)
    assert metrics.latency is not None
    assert metrics.latency.ttft_seconds == Stats(count=3, mean=0.5)
    assert metrics.latency.itl_seconds is None and metrics.latency.requests is None
    assert metrics.load_seconds is None and metrics.repeats == 4
    assert metrics.memory == Memory(peak_bytes=2**30)  # a fractional byte count is junk
    for junk in (None, [1], "x", 3):
        assert Metrics.from_dict(junk) == Metrics()
        assert Energy.from_dict(junk) == Energy()
    energy = Energy.from_dict(
        {"components": {"cpu": {"joules": 1}, "ram": "?"}, "warnings": ["a", 2], "pue": None}
    )
    assert energy.components == {"cpu": EnergyComponent(1.0, None)}
    assert energy.warnings == ("a",) and energy.pue is None


def test_a_result_of_the_first_schema_reads():
    """A result.json written before the sections were typed (no ci_unit, cv, calls...)."""
    old = {
        "schema_version": 1,
        "status": "failed",
        "metrics": {"ttft_seconds": {"count": 2, "mean": 0.1, "ci95_low": 0.05}},
        "energy": None,
        "error": {"type": "E", "message": "m", "traceback": None, "phase": "load"},
    }
    result = RunResult.from_dict(old)
    assert result.status is Status.failed and result.run_id == ""
    assert result.metrics.latency.ttft_seconds.ci95_low == 0.05
    assert result.metrics.latency.ttft_seconds.ci_unit is None
    assert result.energy is None and result.error.phase == "load"


def test_an_unknown_status_is_refused():
    with pytest.raises(ValueError):
        RunResult.from_dict({"status": "weird"})


def test_summary_reads_the_typed_result_and_its_dict_alike():
    result = _full_result()
    text = summary.render(result, "/runs/r")
    assert text == summary.render(json.loads(json.dumps(result.to_dict())), "/runs/r")
    lines = text.splitlines()
    assert lines[0] == "[ok] tiny (quant=nf4)"
    assert lines[1] == "  error in measure: E: boom"
    assert "one-time model provisioning 21.50 s, load 0.40 s" in text
    # a log-scale interval: asymmetric, positive
    assert "TTFT 200.00 ms [" in text and "(n=4 over 3 calls)" in text
    assert "inter-token 15.00 ms (n=2; no CI: 2 calls, 3 needed for a CI)" in text
    assert "throughput 100.0 output tok/s (decode 120.0 tok/s" in text
    assert "pass-to-pass CV 1.4% over 2 passes" in text
    assert "12.00 J gross, 9.00 J net; 40.00 mJ/token gross, 30.00 mJ/token net" in text
    assert "ESTIMATE" not in text
    assert lines[-1] == "  -> /runs/r/result.json"


def test_a_summary_never_prints_zeros_for_what_was_not_measured():
    """Stopped during the idle baseline: an energy section with nothing in it."""
    stopped = RunResult(
        status=Status.interrupted,
        run_id="r",
        config_hash="h",
        overrides=["model=tiny"],
        started_at="2026-12-06T00:00:00Z",
        energy=Energy(backend="codecarbon", is_estimate=True),
        error=RunError("StopRequested", "received signal SIGINT", None, "baseline"),
    )
    text = summary.render(stopped, "/runs/r")
    assert "nothing measured before it ended" in text
    assert "0.00" not in text and "energy:" not in text and "load " not in text


def test_a_summary_says_why_energy_is_unresolved():
    result = _full_result()
    negative = dataclasses.replace(
        result.energy,
        net_joules=-2.0,
        per_output_token_joules=GrossNet(0.04, -0.006),
    )
    text = summary.render(dataclasses.replace(result, energy=negative), "/runs/r")
    assert "12.00 J gross, net unresolved (net energy ≤ 0" in text
    line = text.split("energy:")[1].split("\n")[0]
    assert line.endswith("40.00 mJ/token gross") and "-" not in line  # no negative number
    short = dataclasses.replace(result.energy, window_seconds=0.2, sampling_interval_seconds=1.0)
    text = summary.render(dataclasses.replace(result, energy=short), "/runs/r")
    assert "energy: unresolved (measured 0.2 s, shorter than CodeCarbon's sampling interval" in text
    assert "J gross" not in text


def test_lm_eval_accuracy_is_printed_with_its_standard_error():
    from runner.sections.quality import LmEval, Quality

    lm = LmEval(
        tasks=("sweep_runner_facts",),
        results={"sweep_runner_facts": {"acc": 0.35, "acc_stderr": 0.048, "acc_norm": 0.4}},
        samples={"sweep_runner_facts": 20},
    )
    result = RunResult(Status.ok, "r", "", [], "t", quality=Quality(mode="lm-eval", lm_eval=lm))
    text = summary.render(result, "/runs/r")
    line = "  lm-eval sweep_runner_facts: acc 0.350 ± 0.048, acc_norm 0.400 (n=20 examples)"
    assert line in text.splitlines()
