"""``python -m bench.gpu_check``: validate the runner on one NVIDIA GPU, offline.

Builds a Llama-style model of about 1B parameters with seeded random weights (no download),
runs a small sweep through the real CLI (``python -m runner -m ...``) and checks what a user
would check in the results:

- no job failed;
- model footprint: 4-bit (nf4) < 8-bit (int8) < bf16;
- compile=on really ran the compiled forward (applied.model.compiled, compiled_frames > 0);
- GPU energy from the NVML counter (method nvml-counter, joules > 0) agrees with
  CodeCarbon's GPU figure within ``--tolerance`` (energy.gpu_relative_difference);
- time to first token and inter-token latency are reported.

Prints one row per job and exits 0 when every check passes, 1 when one fails (each failure
is listed), 2 when the machine lacks a package, 3 without a CUDA GPU (nothing is run).
About 4 to 6 minutes on one H100 (budget: 8). See bench/GPU_CHECK.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

NO_GPU = "gpu-check needs an NVIDIA GPU (torch.cuda.is_available() is False); nothing was run"
EXIT_OK, EXIT_FAILED, EXIT_SETUP, EXIT_NO_GPU = 0, 1, 2, 3
REPO = Path(__file__).resolve().parents[1]

# Llama-3.2-1B-like blocks: 16 x (attention 10.5M + MLP 50.3M) = 0.97B parameters.
# The vocabulary is the project's tiny byte-level BPE (512 tokens): every id the model can
# emit then decodes, pad/bos/eos are real tokens, and nothing is downloaded. A 32000-token
# vocabulary would add 131M embedding/LM-head parameters that bitsandbytes leaves
# unquantized anyway and whose ids >= 512 the tokenizer could not decode; the blocks carry
# the compute and memory this check is about.
ARCH = {
    "hidden_size": 2048,
    "num_hidden_layers": 16,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "intermediate_size": 8192,
    "max_position_embeddings": 2048,
    "tie_word_embeddings": False,
}
MODEL_NAME = "gpu-check-llama-1b-v1"  # bump when ARCH or the build changes
SEED = 0

# One workload for every job: 4 requests of 128 prompt tokens, 64 new tokens each, one
# warmup, repeated passes for at least 10 s so the energy windows are long enough to
# compare NVML with CodeCarbon's 1 s power sampling.
WORKLOAD = [
    "loading=cuda",
    "workload=synthetic",
    "workload.input_tokens=128",
    "decoding.max_new_tokens=64",
    "workload.num_prompts=4",
    "measure=quick",
    "measure.min_seconds=10",
]
# The lean grid: every quantization uncompiled (footprint, energy, latency) plus bf16
# compiled (compiling each quantized variant too would roughly double the run time).
# Two invocations into one sweep directory; each sweeps one factor, which names the jobs'
# directories (quant=int8, quant=nf4, compile=off, compile=on).
LEAN = [["quant=int8,nf4", "compile=off"], ["quant=none", "compile=off,on"]]
FULL = [["quant=none,int8,nf4", "compile=off,on"]]

NEEDED = {  # import name -> package to carry (see GPU_CHECK.md)
    "hydra": "hydra-core",
    "omegaconf": "omegaconf",
    "antlr4": "antlr4-python3-runtime",
    "transformers": "transformers",
    "accelerate": "accelerate",
    "safetensors": "safetensors",
    "tokenizers": "tokenizers",
    "bitsandbytes": "bitsandbytes",
    "codecarbon": "codecarbon",
    "pynvml": "nvidia-ml-py",
    "pandas": "pandas",
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.gpu_check", description=__doc__.split("\n")[0]
    )
    p.add_argument(
        "--out", type=Path, default=None, help="output dir (default outputs/gpu-check/<time>)"
    )
    p.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help=f"where the random checkpoint is built once and reused (default <cache>/{MODEL_NAME})",
    )
    p.add_argument(
        "--tolerance",
        type=float,
        default=0.25,
        help="largest |NVML - CodeCarbon| / NVML for GPU energy (default 0.25)",
    )
    p.add_argument("--full-grid", action="store_true", help="compile=off,on for every quantization")
    p.add_argument("--timeout", type=float, default=900, help="give up on the sweep after this (s)")
    return p.parse_args(argv)


# --------------------------------------------------------------------------- the model


def _build(out: Path) -> None:
    """Random-weight checkpoint (bf16) plus the tiny tokenizer, written into ``out``."""
    import torch
    from transformers import AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM

    from runner.models.cache import cache_root
    from runner.models.tiny import ensure_tiny

    tokenizer = AutoTokenizer.from_pretrained(ensure_tiny(cache_root(None)))
    ids = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    config = LlamaConfig(vocab_size=len(tokenizer), dtype="bfloat16", **ARCH, **ids)
    torch.manual_seed(SEED)
    with torch.device("cuda"):  # initialising 1B parameters on the GPU takes a second
        model = LlamaForCausalLM(config)
    model = model.to(torch.bfloat16)
    model.generation_config = GenerationConfig(**ids)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _build_in_child(target: str) -> None:
    from runner.models.cache import build_atomically

    build_atomically(Path(target), _build)


def ensure_model(target: Path) -> Path:
    """Build the checkpoint once (in a child process, so this process holds no GPU memory
    while the sweep measures); later runs reuse it."""
    import multiprocessing

    from runner.models.cache import is_complete

    if is_complete(target):
        return target
    t0 = time.monotonic()
    print(f"building a {_param_count() / 1e9:.2f}B-parameter random model in {target} ...")
    proc = multiprocessing.get_context("spawn").Process(target=_build_in_child, args=(str(target),))
    proc.start()
    proc.join()
    if proc.exitcode != 0 or not is_complete(target):
        raise RuntimeError(f"building the model failed (exit code {proc.exitcode})")
    print(f"  built in {time.monotonic() - t0:.0f} s")
    return target


def _param_count(vocab: int = 512) -> int:
    h, i, n = ARCH["hidden_size"], ARCH["intermediate_size"], ARCH["num_hidden_layers"]
    kv = h // ARCH["num_attention_heads"] * ARCH["num_key_value_heads"]
    block = 2 * h * h + 2 * h * kv + 3 * h * i + 2 * h
    return n * block + 2 * vocab * h + h


# --------------------------------------------------------------------------- the sweep


def run_sweep(model_dir: Path, sweep: Path, grid: list[list[str]], timeout: float) -> list[str]:
    """Run the grid through the real CLI into one sweep directory; return problems."""
    problems = []
    deadline = time.monotonic() + timeout
    for k, factors in enumerate(grid, 1):
        cmd = [
            sys.executable,
            "-m",
            "runner",
            "-m",
            "model=local",
            f"model.path={model_dir}",
            *WORKLOAD,
            *factors,
            f"hydra.sweep.dir={sweep}",
        ]
        print(f"sweep {k}/{len(grid)}: python -m runner -m ... {' '.join(factors)}", flush=True)
        t0 = time.monotonic()
        log = sweep / f"gpu-check-sweep-{k}.log"
        sweep.mkdir(parents=True, exist_ok=True)
        with open(log, "w") as fh:
            proc = subprocess.Popen(
                cmd, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
            )
            try:
                code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                problems.append(f"sweep {k} did not finish within --timeout={timeout:g} s")
                break
        print(f"  exit code {code} after {time.monotonic() - t0:.0f} s (log: {log})", flush=True)
        if code != 0:
            problems.append(f"sweep {k} ({' '.join(factors)}) exited with code {code}; see {log}")
    return problems


# --------------------------------------------------------------------------- the checks


def _get(data: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return None if math.isnan(value) else float(value)


def read_rows(sweep: Path) -> list[dict[str, Any]]:
    rows = []
    for path in sorted(sweep.glob("*/result.json")):
        r = json.loads(path.read_text())
        rows.append(
            {
                "dir": path.parent.name,
                "quant": _get(r, "config.quant.name"),
                "compile": "on" if _get(r, "config.compile.enabled") else "off",
                "status": r.get("status"),
                "error": _get(r, "error.message"),
                "footprint_mib": _scale(_get(r, "metrics.memory.model_footprint_bytes"), 2**-20),
                "ttft_ms": _scale(_get(r, "metrics.ttft_seconds.mean"), 1e3),
                "itl_ms": _scale(_get(r, "metrics.itl_seconds.mean"), 1e3),
                "tok_s": _num(_get(r, "metrics.throughput.output_tokens_per_second")),
                "nvml_j": _num(_get(r, "energy.gpu_nvml.joules")),
                "nvml_method": _get(r, "energy.gpu_nvml.method"),
                "cc_gpu_j": _num(_get(r, "energy.codecarbon_gpu_joules")),
                "diff_pct": _scale(_get(r, "energy.gpu_relative_difference"), 100),
                "compiled": _get(r, "applied.model.compiled"),
                "compiled_frames": _get(r, "applied.model.compiled_frames"),
            }
        )
    order = {"none": 0, "int8": 1, "nf4": 2}
    return sorted(rows, key=lambda x: (x["compile"], order.get(x["quant"], 9), x["dir"]))


def _scale(value: Any, factor: float) -> float | None:
    v = _num(value)
    return None if v is None else v * factor


def check_rows(rows: list[dict[str, Any]], grid: list[list[str]], tolerance: float) -> list[str]:
    """Everything a user would verify before trusting the numbers; one line per failure."""
    problems: list[str] = []
    expected = {("none", "off"), ("int8", "off"), ("nf4", "off"), ("none", "on")}
    if grid == FULL:
        expected |= {("int8", "on"), ("nf4", "on")}
    found = {(r["quant"], r["compile"]) for r in rows}
    for quant, comp in sorted(expected - found):
        problems.append(f"no result for quant={quant} compile={comp}")
    for r in rows:
        job = f"quant={r['quant']} compile={r['compile']}"
        if r["status"] != "ok":
            problems.append(f"{job}: status {r['status']}: {r['error']}")
            continue
        if not (r["ttft_ms"] or 0) > 0:
            problems.append(f"{job}: metrics.ttft_seconds.mean missing or not > 0")
        if not (r["itl_ms"] or 0) > 0:
            problems.append(f"{job}: metrics.itl_seconds.mean missing or not > 0")
        if r["nvml_method"] != "nvml-counter":
            problems.append(f"{job}: GPU energy method {r['nvml_method']!r}, not 'nvml-counter'")
        if not (r["nvml_j"] or 0) > 0:
            problems.append(f"{job}: energy.gpu_nvml.joules {r['nvml_j']} is not > 0")
        if r["diff_pct"] is None:
            problems.append(f"{job}: no CodeCarbon GPU figure to compare NVML with")
        elif abs(r["diff_pct"]) > tolerance * 100:
            problems.append(
                f"{job}: NVML {r['nvml_j']:.1f} J vs CodeCarbon {r['cc_gpu_j']:.1f} J: "
                f"{r['diff_pct']:+.1f}% exceeds +-{tolerance * 100:g}%"
            )
        if r["compile"] == "on" and not (r["compiled"] is True and (r["compiled_frames"] or 0) > 0):
            problems.append(
                f"{job}: compiled forward not used (applied.model.compiled={r['compiled']}, "
                f"compiled_frames={r['compiled_frames']})"
            )
    for comp in ("off", "on"):
        fp = {r["quant"]: r["footprint_mib"] for r in rows if r["compile"] == comp}
        if comp == "on" and grid != FULL:
            continue
        if all(fp.get(q) is not None for q in ("none", "int8", "nf4")):
            if not fp["nf4"] < fp["int8"] < fp["none"]:
                problems.append(
                    f"compile={comp}: footprint not nf4 < int8 < bf16: nf4 {fp['nf4']:.0f} MiB, "
                    f"int8 {fp['int8']:.0f} MiB, bf16 {fp['none']:.0f} MiB"
                )
        else:
            problems.append(f"compile={comp}: footprint missing for a quantization: {fp}")
    return problems


def table(rows: list[dict[str, Any]]) -> str:
    cols = [
        ("quant", "quant", "{}"),
        ("compile", "compile", "{}"),
        ("status", "status", "{}"),
        ("footprint MiB", "footprint_mib", "{:.0f}"),
        ("TTFT ms", "ttft_ms", "{:.2f}"),
        ("ITL ms", "itl_ms", "{:.2f}"),
        ("tok/s", "tok_s", "{:.1f}"),
        ("NVML J", "nvml_j", "{:.1f}"),
        ("CodeCarbon GPU J", "cc_gpu_j", "{:.1f}"),
        ("diff %", "diff_pct", "{:+.1f}"),
    ]
    cells = [[h for h, _, _ in cols]]
    for r in rows:
        cells.append(["-" if r[k] is None else f.format(r[k]) for _, k, f in cols])
    widths = [max(len(row[i]) for row in cells) for i in range(len(cols))]
    lines = [
        "  ".join(
            c.rjust(w) if i > 2 else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    import torch

    if not torch.cuda.is_available():
        print(NO_GPU)
        return EXIT_NO_GPU
    missing = sorted({pkg for mod, pkg in NEEDED.items() if importlib.util.find_spec(mod) is None})
    if missing:
        print(f"gpu-check: missing packages: {', '.join(missing)} (see bench/GPU_CHECK.md)")
        return EXIT_SETUP

    from runner.models.cache import cache_root

    t0 = time.monotonic()
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    out = (args.out or REPO / "outputs" / "gpu-check" / stamp).resolve()
    sweep = out / "sweep"
    model_dir = (args.model_dir or cache_root(None) / MODEL_NAME).resolve()
    grid = FULL if args.full_grid else LEAN
    print(f"gpu-check on {torch.cuda.get_device_name(0)}; results in {out}")

    try:
        ensure_model(model_dir)
    except Exception as exc:
        print(f"gpu-check: {exc}")
        return EXIT_FAILED
    problems = run_sweep(model_dir, sweep, grid, args.timeout)
    rows = read_rows(sweep)
    problems += check_rows(rows, grid, args.tolerance)
    elapsed = time.monotonic() - t0

    print()
    print(table(rows) if rows else "(no result.json found)")
    print()
    summary = {
        "gpu": torch.cuda.get_device_name(0),
        "seconds": round(elapsed, 1),
        "tolerance": args.tolerance,
        "grid": grid,
        "model_dir": str(model_dir),
        "sweep_dir": str(sweep),
        "rows": rows,
        "problems": problems,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(summary, indent=2))
    print(f"sweep report: {sweep / 'report.md'}; this summary: {out / 'gpu_check.json'}")
    if elapsed > 480:
        print(f"note: took {elapsed / 60:.1f} min, over the 8 min budget")
    if problems:
        print(f"gpu-check FAILED ({len(problems)} problem(s), {elapsed:.0f} s):")
        for p in problems:
            print(f"  - {p}")
        return EXIT_FAILED
    print(f"gpu-check passed: {len(rows)} jobs, {elapsed:.0f} s")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
