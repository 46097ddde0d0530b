"""``python -m bench.gpu_check``: refused without CUDA, and its verdicts on hand-made results
(the GPU sweep itself needs a GPU: ``make gpu-check``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_gpu_check_exits_3_without_cuda():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: run `make gpu-check` instead")
    proc = subprocess.run(
        [sys.executable, "-m", "bench.gpu_check"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 3, proc.stdout + proc.stderr
    line = "gpu-check needs an NVIDIA GPU (torch.cuda.is_available() is False); nothing was run"
    assert line in (proc.stdout + proc.stderr).splitlines()


def test_make_gpu_check_without_cuda_is_not_a_make_failure():
    """The message, and make exits 0 (no "Error 3"); -o: never reinstall the venv here."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: run `make gpu-check` instead")
    proc = subprocess.run(
        ["make", "-s", "-o", ".venv/.installed", "gpu-check", f"PY={sys.executable}"],
        cwd=REPO,
        # Not the make that runs this suite's arguments (`make test ARGS=...` passes them on
        # to every make below it through MAKEFLAGS).
        env={
            **{k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "ARGS")},
            "PYTHONPATH": str(REPO),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "gpu-check needs an NVIDIA GPU" in proc.stdout + proc.stderr
    assert "Error" not in proc.stderr


def _gpu_result(quant: str, compile_mode: str, footprint_mib: float, **energy: Any) -> dict:
    """A result.json as a healthy job on a GPU writes it (the fields gpu-check reads)."""
    compiled = compile_mode != "off"
    gpu = {"joules": 100.0, "method": "nvml-counter", **energy}
    layers = {"none": (0, 0), "int8": (112, 0), "nf4": (0, 112)}[quant]
    mode = {"off": None, "on": None, "reduce-overhead": "reduce-overhead"}[compile_mode]
    return {
        "status": "ok",
        "config": {"quant": {"name": quant}, "compile": {"enabled": compiled, "mode": mode}},
        "applied": {
            "model": {
                "compiled": compiled,
                "compiled_frames": 3 if compiled else None,
                "parameter_devices": {"cuda:0": 1000},
                "quantization": {
                    "linear_8bit": layers[0],
                    "linear_4bit": layers[1],
                    **({"bnb_4bit_quant_type": ["nf4"]} if quant == "nf4" else {}),
                },
            },
            "generate": {"cache_implementation": "static" if mode else None},
        },
        "metrics": {
            "memory": {
                "model_footprint_bytes": footprint_mib * 2**20,
                "peak_source": "cuda-max-allocated",
                "peak_allocated_bytes": (footprint_mib + 300) * 2**20,
                "peak_reserved_bytes": (footprint_mib + 500) * 2**20,
            },
            "ttft_seconds": {"mean": 0.02},
            "itl_seconds": {"mean": 0.01},
            "clock": "cuda-events",
            "throughput": {"output_tokens_per_second": 90.0},
            "compile_seconds": 40.0 if compiled else None,
            "timeseries": {"sources": ["cpu_load", "gpu0"]},
            "roofline": {
                "device": "cuda:0",
                "peak_bandwidth_gbs": 2900.0,
                "theoretical_bandwidth_gbs": 3352.0,
            },
        },
        "energy": {
            "gpu_nvml": gpu,
            "codecarbon_gpu_joules": 98.0,
            "gpu_relative_difference": (gpu["joules"] - 98.0) / gpu["joules"],
        },
        "error": None,
    }


def _verdicts(root: Path, results: dict[str, dict]) -> list[str]:
    from bench import gpu_verdicts

    for name, result in results.items():
        (root / name).mkdir(parents=True)
        (root / name / "result.json").write_text(json.dumps(result))
    rows = gpu_verdicts.read_rows([root])
    assert gpu_verdicts.table(rows).count("\n") == len(rows) + 1
    assert gpu_verdicts.markdown_table(rows).count("\n") == len(rows) + 1
    return gpu_verdicts.check_rows(rows, full_grid=False, tolerance=0.05)


GOOD = {
    "quant=int8": ("int8", "off", 1100),
    "quant=nf4": ("nf4", "off", 600),
    "compile=off": ("none", "off", 1900),
    "compile=on": ("none", "on", 1900),
    "compile=reduce-overhead,decoding.cache_implementation=static": (
        "none",
        "reduce-overhead",
        1900,
    ),
}


def test_gpu_check_passes_healthy_results(tmp_path):
    assert _verdicts(tmp_path, {k: _gpu_result(*v) for k, v in GOOD.items()}) == []


def test_gpu_check_names_every_failure_in_the_results(tmp_path):
    """Each kind of failure a GPU run could show, planted in hand-made results."""
    bad = {k: _gpu_result(*v) for k, v in GOOD.items()}
    bad["quant=nf4"] = _gpu_result("nf4", "off", 1200)  # 4-bit above 8-bit
    bad["quant=nf4"]["applied"]["model"]["quantization"]["bnb_4bit_quant_type"] = ["fp4"]
    on = bad["compile=on"] = _gpu_result("none", "on", 1900, joules=110.0)  # 10.9% off
    on["applied"]["model"]["compiled_frames"] = 0
    on["metrics"]["compile_seconds"] = None
    static = bad["compile=reduce-overhead,decoding.cache_implementation=static"]
    static["applied"]["generate"]["cache_implementation"] = None
    static["metrics"]["clock"] = "perf_counter"
    off = bad["compile=off"]
    off["applied"]["model"]["parameter_devices"] = {"cpu": 10, "cuda:0": 990}
    off["applied"]["model"]["quantization"]["linear_8bit"] = 3  # quantized, not asked
    off["metrics"]["memory"]["peak_reserved_bytes"] = 2**20  # below allocated
    int8 = bad["quant=int8"]
    int8["metrics"]["timeseries"]["sources"] = ["cpu_load"]  # NVML not sampled
    int8["metrics"]["roofline"].update(device="cpu", peak_bandwidth_gbs=4000.0)
    problems = _verdicts(tmp_path, bad)
    for expected in (
        "footprint not nf4 < int8 < bf16",
        "4-bit quant type read back ['fp4']",
        "+10.9% exceeds +-5%",
        "compiled forward not used",
        "metrics.compile_seconds None not reported",
        "cache read back as None, not 'static'",
        "stamped by 'perf_counter', not 'cuda-events'",
        "parameters on ['cpu', 'cuda:0'], not all on CUDA",
        "read back 3 Linear8bitLt and 0 Linear4bit layers",
        "need 0 < a <= r",
        "no GPU series in metrics.timeseries (sources ['cpu_load'])",
        "roofline measured on 'cpu', not the GPU",
        "bandwidth 4000.0 GB/s against the datasheet's 3352.0 GB/s",
    ):
        assert sum(expected in p for p in problems) == 1, (expected, problems)
    assert len(problems) == 13

    failed = {k: _gpu_result(*v) for k, v in GOOD.items()}
    failed["quant=int8"] = {**failed["quant=int8"], "status": "failed"}
    failed["quant=int8"]["error"] = {"message": "CUDA out of memory"}
    del failed["compile=reduce-overhead,decoding.cache_implementation=static"]
    assert _verdicts(tmp_path / "failed", failed) == [
        "no result for quant=none compile=reduce-overhead",
        "quant=int8 compile=off: status failed: CUDA out of memory",
    ]


def test_the_paired_comparisons_verdicts():
    from bench.gpu_verdicts import check_latency, check_vllm

    def figures(ttft: float, itl: float, tps: float) -> dict:
        return {
            "clock": ["cuda-events"],
            "ttft": {"median_ratio": ttft, "agreement": min(ttft, 1 / ttft)},
            "itl": {"median_ratio": itl, "agreement": min(itl, 1 / itl)},
            "tps": {"median_ratio": tps, "agreement": min(tps, 1 / tps)},
        }

    assert check_latency(figures(0.995, 1.01, 1.001)) == []
    assert check_latency(figures(0.97, 1.01, 1.02)) == [
        "TTFT: runner vs bare loop agree to 0.9700, below 0.98 (median runner/bare 0.9700)"
    ]
    slow = check_latency({**figures(1.0, 1.03, 0.97), "clock": ["perf_counter"]})
    assert len(slow) == 3 and "stamped by ['perf_counter']" in slow[0]
    assert "inter-token latency" in slow[1] and "throughput: runner/bare 0.9700" in slow[2]
    assert check_vllm({"median_ratio": 0.99}) == []
    assert check_vllm({"median_ratio": 0.9}) == [
        "vLLM: runner/bare LLM.generate output tok/s 0.9000, below 0.95"
    ]


def test_the_bare_loop_catches_a_runner_that_slows_every_step(tiny_dir, monkeypatch):
    """bench.gpu_latency on the CPU and the tiny model: the runner and the bare loop generate
    the same tokens and their figures are compared; a logits processor that costs 3 ms a
    step (timing that disturbs what it times) shows in the ITL agreement and the throughput
    ratio, while the TTFT (one mark, before the slow steps) still agrees within 2x."""
    import time

    from bench import gpu_latency
    from bench.gpu_verdicts import check_latency
    from runner.measure import timing

    overrides = [
        "model=local",
        f"model.path={tiny_dir}",
        "loading=cpu",
        "energy=off",
        "workload.num_prompts=2",
        "decoding.max_new_tokens=8",
    ]
    honest = gpu_latency.compare(overrides, rounds=2)
    assert honest["clock"] == ["perf_counter"] and honest["device"] == "cpu"
    assert honest["output_tokens_per_path_and_round"] == 2 * 8
    for key in ("ttft", "itl", "tps"):
        f = honest[key]
        assert len(f["runner"]) == len(f["bare"]) == len(f["runner_over_bare"]) == 2
        assert all(v > 0 for v in f["runner"] + f["bare"])
        assert 0 < f["agreement"] <= 1

    marks = timing.StepTimingProcessor.__call__

    def slow_mark(self, input_ids, scores):
        time.sleep(0.003)
        return marks(self, input_ids, scores)

    monkeypatch.setattr(timing.StepTimingProcessor, "__call__", slow_mark)
    slowed = gpu_latency.compare(overrides, rounds=2)
    assert slowed["itl"]["median_ratio"] > 1.5 and slowed["tps"]["median_ratio"] < 0.9
    problems = "\n".join(check_latency({**slowed, "clock": ["cuda-events"]}))
    assert "inter-token latency: runner vs bare loop agree to" in problems
    assert "throughput: runner/bare" in problems


def test_vllm_comparison_is_skipped_with_its_reason_without_the_cuda_build(monkeypatch):
    from importlib import metadata

    from bench import gpu_check

    monkeypatch.setattr(gpu_check.importlib.util, "find_spec", lambda name: None)
    assert "vLLM is not installed" in gpu_check.vllm_skip_reason()
    monkeypatch.setattr(gpu_check.importlib.util, "find_spec", lambda name: object())

    def version(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(gpu_check.metadata, "version", version)
    assert "not the CUDA build" in gpu_check.vllm_skip_reason()
    monkeypatch.setattr(gpu_check.metadata, "version", lambda name: "0.33.0")
    assert gpu_check.vllm_skip_reason() is None


def test_the_record_for_docs_names_the_gpu_the_versions_and_every_failure(tmp_path):
    from bench import gpu_record, gpu_verdicts

    for name, v in GOOD.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "result.json").write_text(json.dumps(_gpu_result(*v)))
    stat = {"runner": [0.02, 0.021], "bare": [0.0201, 0.0211], "median_ratio": 0.995}
    summary = {
        "date": "2026-12-07T18:00:00",
        "command": "python -m bench.gpu_check",
        "seconds": 431.0,
        "tolerance": 0.05,
        "model": "gpu-check-llama-1b-v1",
        "environment": {
            "gpus": ["NVIDIA H100 80GB HBM3"],
            "driver_version": "580.159.04",
            "cuda_version": "13.0",
            "git_commit": "abc123",
            "versions": {"torch": "2.11.0", "bitsandbytes": "0.50.2", "vllm": None},
        },
        "rows": gpu_verdicts.read_rows([tmp_path]),
        "latency": {
            "rounds": 2,
            "new_tokens": 64,
            "clock": ["cuda-events"],
            "device": "cuda:0",
            **{k: {**stat, "agreement": 0.995} for k in ("ttft", "itl", "tps")},
        },
        "vllm": None,
        "vllm_skipped": "vLLM is not installed",
        "problems": ["quant=nf4 compile=off: something"],
    }
    text = gpu_record.markdown(summary)
    for expected in (
        "Run on 2026-12-07T18:00:00 with commit `abc123`",
        "GPU: NVIDIA H100 80GB HBM3; driver 580.159.04, CUDA 13.0",
        "libraries: bitsandbytes 0.50.2, torch 2.11.0",
        "**Failed**: 1 check(s), in 431 s:",
        "- quant=nf4 compile=off: something",
        "| none | reduce-overhead | ok | 1900 | 2200 | 2400 |",
        "| TTFT | 20.500 ms | 20.600 ms | 0.9950 | 0.9950 | agreement >= 0.98 |",
        "Not run: vLLM is not installed.",
    ):
        assert expected in text, expected


def test_an_interrupted_check_still_writes_its_summary_and_record(tmp_path, monkeypatch):
    """Ctrl-C, or the device script's time limit (SIGINT), in the middle of the sweep: the
    jobs that finished are judged, the interruption is a listed failure, and the summary and
    the record for docs/gpu-validation.md are written. CUDA and the sweep are stand-ins."""
    import torch

    from bench import gpu_check, gpu_record

    def sweep_then_ctrl_c(args, base, sweep, found):
        (sweep / "quant=int8").mkdir(parents=True)
        (sweep / "quant=int8" / "result.json").write_text(
            json.dumps(_gpu_result("int8", "off", 1100))
        )
        raise KeyboardInterrupt

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "stand-in GPU")
    monkeypatch.setattr(gpu_check, "ensure_model", lambda target: target)
    monkeypatch.setattr(gpu_check, "measure", sweep_then_ctrl_c)
    monkeypatch.setattr(gpu_record, "environment", lambda: {"versions": {"torch": "x"}})
    out = tmp_path / "out"
    code = gpu_check.main(["--out", str(out), "--model-dir", str(tmp_path / "model")])
    assert code == gpu_check.EXIT_FAILED
    summary = json.loads((out / "gpu_check.json").read_text())
    assert [r["quant"] for r in summary["rows"]] == ["int8"]
    assert summary["problems"][-1].startswith("interrupted after ")
    record = (out / "gpu-validation.md").read_text()
    assert "| int8 | off | ok | 1100 |" in record and "- interrupted after " in record


def test_stopping_the_sweep_stops_its_whole_process_group():
    """The sweep runs in a session of its own (a Ctrl-C of the check does not reach it), so
    the check must stop the group: the CLI and the job it started."""
    import subprocess
    import time

    from bench import gpu_check

    proc = subprocess.Popen(
        ["bash", "-c", "sleep 300 & echo $!; wait"],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    child = int(proc.stdout.readline())
    gpu_check.stop_sweep(proc, grace=10)
    assert proc.returncode is not None
    with pytest.raises(ProcessLookupError):
        for _ in range(100):  # the orphaned child is reaped by init a moment later
            os.kill(child, 0)
            time.sleep(0.05)


def test_a_copy_without_git_takes_its_commit_from_the_sender(monkeypatch):
    from bench import gpu_record
    from runner import environment

    monkeypatch.setattr(environment, "snapshot", lambda: {"versions": {}, "git_commit": None})
    monkeypatch.delenv("GPU_CHECK_COMMIT", raising=False)
    assert gpu_record.environment()["git_commit"] is None
    monkeypatch.setenv("GPU_CHECK_COMMIT", "7ae1457")
    assert gpu_record.environment()["git_commit"] == "7ae1457 (GPU_CHECK_COMMIT)"
    monkeypatch.setattr(environment, "snapshot", lambda: {"versions": {}, "git_commit": "abc"})
    assert gpu_record.environment()["git_commit"] == "abc"  # a checkout's own commit wins
