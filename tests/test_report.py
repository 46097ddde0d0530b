"""Tests of runner.report on synthetic run directories (no model, no GPU)."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from runner.measure.stats import summarize
from runner.report import build_report, forked
from runner.report.__main__ import main
from runner.report.collect import (
    ReportError,
    collect,
    find_run_dirs,
    parse_overrides,
    swept_factors,
)
from runner.report.compare import (
    add_relative_columns,
    pareto_front,
    ratio_ci,
    resolve_baseline,
)
from runner.report.environment_section import environment_section
from runner.report.samples import parse_float_list, read_latency_samples
from runner.results import RunError, RunResult, Status
from runner.sections.energy import Energy, EnergyComponent, GrossNet
from runner.sections.metrics import Latency, Memory, Metrics, Stats, Throughput
from runner.sections.requests import (
    LEGACY_REQUESTS_FILE,
    REQUESTS_FILE,
    RequestRecord,
    read_requests,
    write_requests,
)
from runner.sections.warnings import LibraryWarning, NamedWarning, WarningsDetail
from tests.conftest import PYTHON

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
REPO = Path(__file__).resolve().parent.parent
ENV_A = {"python": "3.11.9", "torch": "2.5.1", "gpu_name": "NVIDIA H100", "hostname": "node1"}


def stats(mean: float, half: float, **extra: Any) -> Stats:
    """A distribution with ``mean`` and a symmetric 95% CI of half-width ``half``."""
    return Stats(
        count=10,
        mean=mean,
        median=mean,
        min=mean * 0.8,
        max=mean * 1.2,
        std=half,
        ci95_low=mean - half,
        ci95_high=mean + half,
        **extra,
    )


def result(
    overrides: list[str],
    *,
    status: str = "ok",
    tok_s: float = 100.0,
    tok_half: float = 10.0,
    ttft_s: float = 0.05,
    energy_j_per_tok: float | None = 0.2,
    error: RunError | None = None,
    environment: dict[str, Any] | None = None,
    said: WarningsDetail | None = None,
) -> dict[str, Any]:
    """A result.json dict, built from the result's own types."""
    energy = None
    if energy_j_per_tok is not None:
        energy = Energy(
            gross_joules=energy_j_per_tok * 1000,
            net_joules=energy_j_per_tok * 800,
            per_output_token_joules=GrossNet(energy_j_per_tok, energy_j_per_tok * 0.8),
            per_request_joules=GrossNet(energy_j_per_tok * 32, None),
            emissions_kg=1e-5,
            carbon_intensity_g_per_kwh=50.0,
            is_estimate=True,
            components={"cpu": EnergyComponent(10.0, "tdp")},
            warnings=("cpu energy estimated from TDP",),
        )
    latency = Latency(
        ttft_seconds=stats(ttft_s, ttft_s / 10),
        itl_seconds=stats(0.01, 0.001),
        tpot_seconds=stats(0.01, 0.001),
        e2e_request_seconds=stats(0.4, 0.02),
        e2e_batch_seconds=stats(0.5, 0.02),
        output_tokens_per_second=stats(tok_s, tok_half),
        decode_tokens_per_second=stats(tok_s * 1.1, tok_half),
        throughput_per_repeat=stats(tok_s, tok_half, cv=0.02),
        throughput=Throughput(
            tok_s, tok_s, 2.0, 400.0, tok_s - tok_half, tok_s + tok_half, "pass", 3
        ),
        measured_seconds=10.0,
        requests=24,
        output_tokens=768,
        input_tokens=2000,
    )
    metrics = Metrics(
        latency=latency,
        load_seconds=3.0,
        memory=Memory(
            model_footprint_bytes=2**28,
            peak_bytes=3 * 2**29,
            peak_source="cuda-max-allocated",
            peak_allocated_bytes=3 * 2**29,
            peak_reserved_bytes=2**31,
        ),
        warmup_seconds=1.0,
        repeats=3,
    )
    return RunResult(
        status=Status(status),
        run_id=",".join(overrides) or "run",
        config_hash="abc123",
        overrides=overrides,
        started_at="2025-01-01T00:00:00Z",
        finished_at="2025-01-01T00:01:00Z",
        config={"measure": {"warmup": 1, "min_repeats": 3}, "energy": {"backend": "codecarbon"}},
        metrics=metrics,
        energy=energy,
        environment=environment if environment is not None else dict(ENV_A),
        error=error,
        warnings_detail=said or WarningsDetail(),
    ).to_dict()


def _request(batch: int, request: int, ttft: float | None, itl: tuple[float, ...]) -> RequestRecord:
    last = None if ttft is None else ttft + sum(itl)
    tokens = 0 if ttft is None else len(itl) + 1
    return RequestRecord(0, batch, request, f"p{request}", 10, tokens, ttft, last, 0.09, itl)


REQUESTS = [
    _request(0, 0, 0.05, (0.01, 0.011, 0.012)),
    _request(0, 1, 0.06, (0.009, 0.01, 0.02)),
    _request(1, 2, None, ()),
]


def write_run(root: Path, name: str, data: dict[str, Any] | None, *, requests: bool = True) -> Path:
    """A run directory like Hydra's: .hydra/overrides.yaml, run.log, result.json, requests table."""
    run_dir = root / name
    (run_dir / ".hydra").mkdir(parents=True)
    overrides = data["overrides"] if data else []
    (run_dir / ".hydra" / "overrides.yaml").write_text(
        "".join(f"- {o}\n" for o in overrides) or "[]\n"
    )
    (run_dir / "run.log").write_text("[INFO] loading model\n[INFO] measuring\n")
    if data is not None:
        (run_dir / "result.json").write_text(json.dumps(data))
        if requests:
            write_requests(run_dir / REQUESTS_FILE, REQUESTS)
    return run_dir


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """A sweep with every kind of run directory a report has to survive."""
    root = tmp_path / "sweep"
    root.mkdir()
    (root / "multirun.yaml").write_text("hydra: {}\n")
    write_run(
        root,
        "compile=off,quant=none",
        result(["compile=off", "quant=none"], tok_s=50.0, tok_half=5.0, energy_j_per_tok=0.4),
    )
    write_run(
        root,
        "compile=on,quant=none",
        result(["compile=on", "quant=none"], tok_s=100.0, ttft_s=0.1, energy_j_per_tok=0.2),
    )
    write_run(
        root,
        "compile=off,quant=nf4",
        result(["compile=off", "quant=nf4"], tok_s=40.0, tok_half=4.0, energy_j_per_tok=0.3),
    )
    write_run(
        root,
        "compile=on,quant=nf4",
        result(
            ["compile=on", "quant=nf4"],
            status="failed",
            energy_j_per_tok=None,
            error=RunError("OutOfMemoryError", "CUDA out of memory.\nTried 2 GiB", "...", "load"),
        ),
    )
    write_run(
        root,
        "compile=on,quant=int8",
        result(
            ["compile=on", "quant=int8"],
            status="interrupted",
            energy_j_per_tok=None,
            error=RunError("KeyboardInterrupt", "", None, "measure"),
        ),
    )
    partial = write_run(root, "compile=off,quant=int8", None)
    (partial / ".hydra" / "overrides.yaml").write_text("- compile=off\n- quant=int8\n")
    corrupt = write_run(root, "compile=off,quant=fp4", None)
    (corrupt / "result.json").write_text('{"schema_version": 1, "status": "ok", "metr')
    return root


def test_find_run_dirs(sweep: Path, tmp_path: Path) -> None:
    dirs = find_run_dirs([sweep])
    assert len(dirs) == 7
    assert find_run_dirs([sweep / "compile=on,quant=none" / "result.json"]) == [
        sweep / "compile=on,quant=none"
    ]
    with pytest.raises(ReportError, match="no such file"):
        find_run_dirs([tmp_path / "missing"])


def test_collect_statuses_errors_and_columns(sweep: Path) -> None:
    df = collect([sweep])
    assert len(df) == 7
    by_dir = {
        Path(r).name: row for r, row in zip(df["run_dir"], df.to_dict("records"), strict=True)
    }
    assert by_dir["compile=off,quant=none"]["status"] == "ok"
    assert by_dir["compile=on,quant=nf4"]["status"] == "failed"
    assert (
        "OutOfMemoryError: CUDA out of memory. Tried 2 GiB"
        in by_dir["compile=on,quant=nf4"]["error"]
    )
    assert "phase: load" in by_dir["compile=on,quant=nf4"]["error"]
    assert by_dir["compile=on,quant=int8"]["status"] == "interrupted"
    assert by_dir["compile=off,quant=int8"]["status"] == "partial"
    assert "no result.json" in by_dir["compile=off,quant=int8"]["error"]
    assert "last log line" in by_dir["compile=off,quant=int8"]["error"]
    assert by_dir["compile=off,quant=fp4"]["status"] == "unreadable"
    assert "unreadable result" in by_dir["compile=off,quant=fp4"]["error"]
    # factor columns, also for partial runs (from .hydra/overrides.yaml)
    assert by_dir["compile=off,quant=int8"]["quant"] == "int8"
    assert sorted(swept_factors(df)) == ["compile", "quant"]
    # headline columns in their units
    ok = by_dir["compile=on,quant=none"]
    assert ok["ttft_ms_mean"] == pytest.approx(100.0)
    assert ok["ttft_ms_ci95_low"] == pytest.approx(90.0)
    assert ok["ttft_ms_ci95_high"] == pytest.approx(110.0)
    assert ok["itl_ms_mean"] == pytest.approx(10.0)
    assert ok["e2e_ms_ci95_high"] == pytest.approx(420.0)
    assert ok["output_tok_s"] == 100.0 and ok["output_tok_s_ci95_low"] == 90.0
    assert ok["per_call_output_tok_s_mean"] == 100.0  # the per-call distribution, apart
    assert "output_tok_s_mean" not in df.columns and "output_tok_s_total" not in df.columns
    assert ok["repeat_cv"] == pytest.approx(0.02)
    assert ok["peak_mem_mib"] == pytest.approx(1536.0)
    assert ok["peak_mem_source"] == "cuda-max-allocated"
    assert ok["energy_per_token_mj_gross"] == pytest.approx(200.0)
    assert ok["energy_per_token_mj_net"] == pytest.approx(160.0)
    assert ok["emissions_g"] == pytest.approx(0.01)
    assert ok["energy_is_estimate"] is True
    assert ok["config_hash"] == "abc123"
    assert math.isnan(by_dir["compile=on,quant=nf4"]["energy_per_token_mj_gross"])


def test_collect_full_adds_dotted_keys(sweep: Path) -> None:
    df = collect([sweep], full=True)
    assert "metrics.ttft_seconds.p99" in df.columns
    assert "environment.gpu_name" in df.columns
    assert list(df["status"]).count("ok") == 3


@pytest.mark.parametrize(
    "content",
    [
        "[1, 2, 3]",  # JSON but not a result
        '{"schema_version": 99, "status": "ok"}',  # newer schema
        '{"schema_version": 1, "status": "weird"}',  # unknown status
        '{"schema_version": 1, "status": "ok", "metrics": [1], "overrides": 3, "energy": "x"}',
        "",
    ],
)
def test_weird_result_files_never_crash(tmp_path: Path, content: str) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "result.json").write_text(content)
    df = collect([tmp_path])
    assert len(df) == 1
    assert df.loc[0, "status"] in {"unreadable", "ok"}
    if df.loc[0, "status"] == "unreadable":
        assert df.loc[0, "error"]


def test_result_json_that_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "run" / "result.json").mkdir(parents=True)
    df = collect([tmp_path])
    assert list(df["status"]) == ["unreadable"]


def test_parse_overrides() -> None:
    assert parse_overrides(
        ["+compile=on", "++decoding.num_beams=4", "~energy", "quant='nf4'", "hydra.x=1", "junk"]
    ) == {"compile": "on", "decoding.num_beams": "4", "energy": "(deleted)", "quant": "nf4"}


def test_parse_float_list_and_samples(tmp_path: Path) -> None:
    assert parse_float_list("[0.1, 0.2]") == [0.1, 0.2]
    assert parse_float_list("0.1 0.2  nan x") == [0.1, 0.2]
    assert parse_float_list("") == [] and parse_float_list(None) == []
    assert parse_float_list("[0.1, bad") == [0.1]
    run = write_run(tmp_path, "r", result([]))
    samples = read_latency_samples(run)
    assert samples.ttft_ms == pytest.approx([50.0, 60.0])
    assert samples.itl_ms == pytest.approx([10.0, 11.0, 12.0, 9.0, 10.0, 20.0])
    with pytest.raises(ValueError, match="no requests.parquet"):
        read_latency_samples(tmp_path)
    (tmp_path / REQUESTS_FILE).write_text("not parquet")
    with pytest.raises(ValueError, match="unreadable requests.parquet"):
        read_latency_samples(tmp_path)


def test_requests_table_has_a_list_column_and_round_trips(tmp_path: Path) -> None:
    path = write_requests(tmp_path / REQUESTS_FILE, REQUESTS)
    frame = pd.read_parquet(path)
    assert list(frame["itl_seconds"].iloc[0]) == pytest.approx([0.01, 0.011, 0.012])
    assert len(frame["itl_seconds"].iloc[2]) == 0
    assert frame["tpot_seconds"].iloc[0] == pytest.approx(REQUESTS[0].tpot_seconds)
    assert frame["ttft_seconds"].isna().tolist() == [False, False, True]
    assert str(frame["output_tokens"].dtype) == "int64"
    assert read_requests(path) == REQUESTS


def test_samples_from_a_legacy_requests_csv(tmp_path: Path) -> None:
    """Runs written before requests.parquet have a CSV with JSON-list cells."""
    (tmp_path / LEGACY_REQUESTS_FILE).write_text(
        "repeat,batch,request,prompt_id,input_tokens,output_tokens,ttft_seconds,"
        "last_token_seconds,e2e_seconds,tpot_seconds,itl_seconds\n"
        '0,0,0,p0,10,4,0.05,0.08,0.09,0.01,"[0.01, 0.011, 0.012]"\n'
        "0,0,1,p1,10,4,0.06,0.09,0.09,0.01,0.009 0.01 0.02\n"
        "0,1,0,p2,10,1,,,0.07,,[]\n"
    )
    samples = read_latency_samples(tmp_path)
    assert samples.ttft_ms == pytest.approx([50.0, 60.0])
    assert samples.itl_ms == pytest.approx([10.0, 11.0, 12.0, 9.0, 10.0, 20.0])


def test_ratio_ci_hand_computed() -> None:
    ratio, low, high = ratio_ci(100.0, 0.1, 50.0, 0.1)
    assert ratio == 2.0
    h = math.sqrt(0.1**2 + 0.1**2)
    assert low == pytest.approx(2 * math.exp(-h)) and high == pytest.approx(2 * math.exp(h))
    assert low < ratio < high
    assert all(math.isnan(v) for v in ratio_ci(1.0, 0.1, 0.0, 0.1))
    r, lo, hi = ratio_ci(1.0, math.nan, 2.0, 0.1)
    assert r == 0.5 and math.isnan(lo) and math.isnan(hi)


def test_baseline_comparison(sweep: Path) -> None:
    df = collect([sweep])
    base = resolve_baseline(df, "quant=none,compile=off")
    assert base.label == "compile=off, quant=none"
    rel = add_relative_columns(df, base).set_index("label")
    fast = rel.loc["compile=on, quant=none"]
    assert fast["speedup_output_tok_s"] == pytest.approx(2.0)  # 100 vs 50 tok/s
    assert fast["speedup_output_tok_s_ci95_low"] < 2.0 < fast["speedup_output_tok_s_ci95_high"]
    # the log half-widths of the two runs' own CIs ([90, 110] and [45, 55]) in quadrature
    h = math.hypot(*(math.log(110 / 90) / 2, math.log(55 / 45) / 2))
    assert fast["speedup_output_tok_s_ci95_low"] == pytest.approx(2 * math.exp(-h))
    assert fast["ttft_ratio"] == pytest.approx(2.0)  # 0.1 s vs 0.05 s
    assert fast["energy_per_token_ratio"] == pytest.approx(0.5)  # 0.2 vs 0.4 J/token
    # energy is one integrated measurement per run: no CI of its own, so none for its ratio
    assert math.isnan(fast["energy_per_token_ratio_ci95_low"])
    assert rel.loc["compile=off, quant=none", "speedup_output_tok_s"] == 1.0
    assert bool(rel.loc["compile=off, quant=none", "is_baseline"])
    assert math.isnan(rel.loc["compile=on, quant=nf4", "speedup_output_tok_s"])  # failed
    # a directory works too, also one outside the table
    by_dir = resolve_baseline(df, str(sweep / "compile=off,quant=none"))
    assert by_dir.index == base.index
    by_file = resolve_baseline(df, str(sweep / "compile=off,quant=none" / "result.json"))
    assert by_file.index == base.index
    outside = write_run(sweep.parent, "elsewhere", result(["quant=none"], tok_s=25.0))
    other = resolve_baseline(df, str(outside))
    assert other.index is None
    rel = add_relative_columns(df, other).set_index("label")
    assert rel.loc["compile=on, quant=none", "speedup_output_tok_s"] == pytest.approx(4.0)
    assert not rel["is_baseline"].any()


def test_baseline_errors(sweep: Path) -> None:
    df = collect([sweep])
    with pytest.raises(ReportError, match="matches no run"):
        resolve_baseline(df, "quant=gptq")
    with pytest.raises(ReportError, match="matches 2 runs"):
        resolve_baseline(df, "quant=none")
    with pytest.raises(ReportError, match="no successful run"):
        resolve_baseline(df, "quant=nf4,compile=on")
    with pytest.raises(ReportError, match="not an override"):
        resolve_baseline(df, "dtype=bf16")
    with pytest.raises(ReportError, match="neither"):
        resolve_baseline(df, "no-such-dir")


def test_pareto_front() -> None:
    assert pareto_front([1, 2, 3, 2, math.nan], [3, 2, 1, 3, 0]) == [True, True, True, False, False]
    assert pareto_front([1, 1], [1, 1]) == [True, True]


def _is_png(path: Path) -> bool:
    return path.stat().st_size > 100 and path.read_bytes()[:8] == PNG_SIGNATURE


def test_build_report_writes_everything(sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    outputs = build_report([sweep], out, baseline="quant=none,compile=off")
    assert outputs.summary_csv.exists() and outputs.summary_parquet is not None
    csv = pd.read_csv(outputs.summary_csv)
    parquet = pd.read_parquet(outputs.summary_parquet)
    assert len(csv) == len(parquet) == 7
    assert {"quant", "compile", "speedup_output_tok_s_ci95_high", "ttft_ms_ci95_low"} <= set(
        csv.columns
    )
    names = sorted(p.name for p in outputs.plots)
    assert names == [
        "interaction_e2e_ms_mean.png",
        "interaction_energy_per_token_mj_net.png",
        "latency_distributions.png",
        "main_effects_e2e_ms_mean.png",
        "main_effects_energy_per_token_mj_net.png",
        "main_effects_output_tok_s.png",
        "pareto_energy_latency.png",
    ]
    assert all(_is_png(p) for p in outputs.plots)
    assert any(
        s.startswith("distribution of e2e_ms_mean: fewer than 5 runs")
        for s in outputs.skipped_plots
    )
    effects = pd.read_csv(out / "effects.csv")
    assert {"compile", "quant"} == set(effects["factor"])
    text = outputs.report_md.read_text()
    assert "Baseline: **compile=off, quant=none**" in text
    assert "delta method" in text
    assert "All 5 runs with a readable result share one environment" in text
    assert "OutOfMemoryError" in text and "partial" in text and "unreadable" in text
    assert "plots/pareto_energy_latency.png" in text
    assert "## Methodology" in text


def test_figures_drawn_by_worker_processes_are_the_ones_drawn_here(
    sweep: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(forked, "usable_cpus", lambda: 1)
    here = build_report([sweep], tmp_path / "here", baseline="quant=none,compile=off")
    monkeypatch.setattr(forked, "usable_cpus", lambda: 3)
    workers = build_report([sweep], tmp_path / "workers", baseline="quant=none,compile=off")
    assert [p.name for p in workers.plots] == [p.name for p in here.plots]
    assert len(here.plots) == 7
    assert workers.skipped_plots == here.skipped_plots
    for a, b in zip(here.plots, workers.plots, strict=True):
        assert a.read_bytes() == b.read_bytes()
    assert here.report_md.read_text() == workers.report_md.read_text()


def test_named_warnings_reach_the_csv_and_the_report(tmp_path: Path) -> None:
    root = tmp_path / "sweep"
    cast = "MatMul8bitLt: inputs will be cast from torch.float32 to float16"
    said = WarningsDetail(
        named=(NamedWarning("compile.recompile_limit", "hit during warmup", "warmup"),),
        library=(
            LibraryWarning("bitsandbytes", "WARNING", cast, "warmup", 448),
            LibraryWarning("bitsandbytes", "WARNING", cast, "measure", 7168),
            LibraryWarning("bitsandbytes", "WARNING", "pip install kernels", "load", 1, True),
        ),
    )
    write_run(root, "a", result(["quant=none"]), requests=False)
    write_run(root, "b", result(["quant=int8"], said=said), requests=False)
    outputs = build_report([root], root)
    csv = pd.read_csv(outputs.summary_csv).set_index("quant")
    assert csv.loc["int8", "named_warnings"] == "compile.recompile_limit: hit during warmup"
    assert pd.isna(csv.loc["none", "named_warnings"])
    # One distinct library warning: the same one in two phases, the noise left out.
    assert csv.loc["int8", "library_warnings"] == 1 and csv.loc["none", "library_warnings"] == 0
    text = outputs.report_md.read_text()
    assert (
        "## Warnings\n\n### compile (1 run)\n\n- `compile.recompile_limit` (1 run):\n"
        "  - `quant=int8`: hit during warmup\n"
    ) in text


def test_build_report_without_energy_or_requests(tmp_path: Path) -> None:
    root = tmp_path / "sweep"
    write_run(root, "a", result(["quant=none"], energy_j_per_tok=None), requests=False)
    write_run(root, "b", result(["quant=nf4"], energy_j_per_tok=None), requests=False)
    outputs = build_report([root], root)
    assert [p.name for p in outputs.plots] == [
        "main_effects_e2e_ms_mean.png",
        "main_effects_output_tok_s.png",
    ]
    assert all(_is_png(p) for p in outputs.plots)
    assert any(s.startswith("interaction") for s in outputs.skipped_plots)
    assert any(s.startswith("pareto") for s in outputs.skipped_plots)
    assert any(s.startswith("latency distributions") for s in outputs.skipped_plots)
    assert "No energy measured" in outputs.report_md.read_text()


def test_mixed_environments_give_per_run_blocks(tmp_path: Path) -> None:
    root = tmp_path / "sweep"
    env_b = {**ENV_A, "gpu_name": "NVIDIA A100", "slurm_job_id": "77"}
    write_run(root, "a", result(["quant=none"], environment={**ENV_A, "slurm_job_id": "76"}))
    write_run(root, "b", result(["quant=nf4"], environment=env_b))
    text = build_report([root], root).report_md.read_text()
    assert "differs between runs in: gpu_name" in text
    assert "### quant=none" in text and "### quant=nf4" in text
    assert "gpu_name: NVIDIA A100" in text and "gpu_name: NVIDIA H100" in text
    assert "torch: 2.5.1" in text  # shared block
    assert "| quant=nf4 | 77 |" in text  # job ids listed, not a difference


def test_environment_section_only_job_ids_differ() -> None:
    text = environment_section({"a": {**ENV_A, "slurm_job_id": "1"}, "b": {**ENV_A}})
    assert "share one environment" in text


def test_replicates_and_single_run(tmp_path: Path) -> None:
    root = tmp_path / "sweep"
    write_run(root, "a", result(["quant=none", "seed=1"], tok_s=90.0))
    write_run(root, "b", result(["quant=none", "seed=2"], tok_s=110.0))
    write_run(root, "c", result(["quant=nf4", "seed=1"], tok_s=50.0))
    outputs = build_report([root], root)
    assert "main_effects_e2e_ms_mean.png" in {p.name for p in outputs.plots}
    effects = pd.read_csv(root / "effects.csv")
    seed = effects[(effects["factor"] == "seed") & (effects["metric"] == "output_tok_s")]
    # quant=none is run at both seeds, nf4 at seed 1 only: one matched pair (not the
    # confounded 110 / mean(90, 50)), with a CI from the two runs' own CIs
    assert list(seed["pairs"]) == [1] and list(seed["ci_basis"]) == ["within run"]
    h = math.hypot(math.log(120 / 100) / 2, math.log(100 / 80) / 2)  # [100, 120], [80, 100]
    assert seed["ratio"].iloc[0] == pytest.approx(110 / 90)
    assert seed["ratio_ci95_low"].iloc[0] == pytest.approx(110 / 90 * math.exp(-h))
    single = build_report([root / "a"], tmp_path / "single")
    assert len(single.table) == 1 and single.table.loc[0, "label"] == "quant=none,seed=1"
    assert summarize([90.0, 110.0]).mean == 100.0


def test_cli(sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(sweep), "--baseline", "quant=none,compile=off", "-q"]) == 0
    out = capsys.readouterr().out
    assert "speed-up" in out and "OutOfMemoryError" in out and "partial" in out
    assert (sweep / "report.md").exists() and (sweep / "summary.csv").exists()

    assert main([str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such file" in err

    assert main([str(sweep), "--baseline", "quant=gptq"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "matches no run" in err

    assert main([str(sweep), str(sweep)]) == 2
    assert "--out" in capsys.readouterr().err
    assert main([]) == 2
    assert capsys.readouterr().err.count("\n") == 1

    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty")]) == 2
    assert "no run directory" in capsys.readouterr().err


def test_cli_subprocess_missing_path(tmp_path: Path) -> None:
    proc = subprocess.run(
        [*PYTHON, "-m", "runner.report", str(tmp_path / "nope")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr


def test_callback_never_raises(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from omegaconf import OmegaConf

    from runner.report.callback import SweepReportCallback

    root = tmp_path / "sweep"
    write_run(root, "a", result(["quant=none"]))
    write_run(root, "b", result(["quant=nf4"]))
    SweepReportCallback().on_multirun_end(
        OmegaConf.create({"hydra": {"sweep": {"dir": str(root)}}})
    )
    assert (root / "report.md").exists()
    SweepReportCallback(baseline="quant=gptq").on_multirun_end(
        OmegaConf.create({"hydra": {"sweep": {"dir": str(root)}}})
    )
    assert "without a baseline" in caplog.text
    SweepReportCallback().on_multirun_end(
        OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "missing")}}})
    )
    assert "sweep report failed" in caplog.text
