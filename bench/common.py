"""Shared pieces of the benchmarks: configs, the two generation paths, checks, the report.

Every figure a section reports is a ratio or an error measured side by side in this
one process, so drift of the machine hits both sides of a comparison alike.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OUT_DIR = Path("outputs/bench")
TARGET_RATIO = 0.98

# --- numbers -------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def ratio(num: float | None, den: float | None) -> float | None:
    return num / den if num is not None and den else None


def rounded(values: Sequence[float | None], digits: int = 3) -> list[float | None]:
    return [None if v is None else round(v, digits) for v in values]


def check(
    name: str,
    value: float | None,
    *,
    at_least: float | None = None,
    at_most: float | None = None,
    unit: str = "",
) -> dict[str, Any]:
    """One figure against its target: PASS, BELOW TARGET or ABOVE TARGET."""
    if value is None:
        status = "NO VALUE"
    elif at_least is not None and value < at_least:
        status = "BELOW TARGET"
    elif at_most is not None and value > at_most:
        status = "ABOVE TARGET"
    else:
        status = "PASS"
    target = " and ".join(
        t
        for t in (
            f">= {at_least:g}{unit}" if at_least is not None else "",
            f"<= {at_most:g}{unit}" if at_most is not None else "",
        )
        if t
    )
    return {"name": name, "value": value, "unit": unit, "target": target, "status": status}


# --- configs and the model -----------------------------------------------------------------


def compose(overrides: list[str]) -> Any:
    """The typed RunConfig exactly as ``python -m runner <overrides>`` composes it."""
    from runner.config import register_configs
    from runner.preflight import compose_typed

    register_configs()
    return compose_typed(overrides)


@dataclass
class Loaded:
    """A model with the workload and generate kwargs the runner would use for ``cfg``."""

    cfg: Any
    model: Any
    tokenizer: Any
    batches: tuple[Any, ...]
    gen_kwargs: dict[str, Any]
    eos_ids: list[int]

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device


def load(cfg: Any) -> Loaded:
    from runner.measure.generation import eos_token_ids
    from runner.models.load import load_model
    from runner.translate import from_pretrained_kwargs, generate_kwargs
    from runner.workload import build_workload

    lm = load_model(cfg.model, from_pretrained_kwargs(cfg), cfg.cache_dir)
    workload = build_workload(cfg.workload, lm.tokenizer)
    gen = {
        **generate_kwargs(cfg.decoding, cfg.workload),
        "pad_token_id": lm.tokenizer.pad_token_id,
    }
    eos = eos_token_ids(lm.model, lm.tokenizer)
    return Loaded(cfg, lm.model, lm.tokenizer, workload.batches, gen, eos)


# --- the two paths -------------------------------------------------------------------------


def bare_pass(m: Loaded) -> tuple[int, float]:
    """(output tokens, seconds): ``model.generate`` per batch timed with ``perf_counter``."""
    import torch

    from runner.measure.generation import count_new_tokens
    from runner.measure.timing import synchronize

    tokens, seconds = 0, 0.0
    for batch in m.batches:
        ids, mask = batch.input_ids.to(m.device), batch.attention_mask.to(m.device)
        with torch.inference_mode():
            synchronize(m.device)
            t0 = time.perf_counter()
            out = m.model.generate(input_ids=ids, attention_mask=mask, **m.gen_kwargs)
            synchronize(m.device)
            t1 = time.perf_counter()
        tokens += sum(count_new_tokens(out[:, ids.shape[1] :], m.eos_ids))
        seconds += t1 - t0
    return tokens, seconds


def bare_tps(m: Loaded, passes: int = 1, min_seconds: float = 0.0) -> dict[str, float]:
    """Output tokens/s of bare passes: at least ``passes`` and ``min_seconds`` (runner's rule)."""
    tokens, seconds, done = 0, 0.0, 0
    while done < passes or seconds < min_seconds:
        n, s = bare_pass(m)
        tokens, seconds, done = tokens + n, seconds + s, done + 1
    return {"tokens_per_second": tokens / seconds, "tokens": tokens, "seconds": seconds}


def runner_tps(m: Loaded, passes: int = 1) -> dict[str, Any]:
    """The runner's measured loop: ``timed_generate`` per batch, then ``latency_metrics``."""
    from runner.measure.generation import timed_generate
    from runner.measure.latency import latency_metrics, records_for_call

    records, batches = [], []
    for repeat in range(passes):
        for index, batch in enumerate(m.batches):
            res = timed_generate(
                m.model,
                batch.input_ids.to(m.device),
                batch.attention_mask.to(m.device),
                m.gen_kwargs,
                eos_ids=m.eos_ids,
                seed=m.cfg.decoding.seed,
            )
            reqs, brec = records_for_call(
                repeat, index, batch.requests, res.output_tokens, res.timing
            )
            records += reqs
            batches.append(brec)
    metrics = latency_metrics(records, batches)
    return {
        "tokens_per_second": metrics["throughput"]["output_tokens_per_second"],
        "decode_tokens_per_second": metrics["throughput"]["decode_tokens_per_second"],
        "tokens": metrics["output_tokens"],
        "seconds": metrics["measured_seconds"],
    }


# --- process plumbing ----------------------------------------------------------------------


@contextlib.contextmanager
def stderr_to(path: Path) -> Iterator[None]:
    """Send file descriptor 2 (this process and spawned children) to ``path`` for a while.

    Runs log INFO lines, progress bars and library warnings to stderr; they go to the
    bench log so the report stays readable.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "a") as fh:
        os.dup2(fh.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def progress(text: str) -> None:
    print(f"  .. {text}", flush=True)


# --- the report ----------------------------------------------------------------------------


def section(title: str, lines: list[str], checks: list[dict], data: dict) -> dict[str, Any]:
    return {"title": title, "lines": lines, "checks": checks, "data": data}


def _value(c: dict) -> str:
    v = c["value"]
    if v is None:
        return "n/a"
    return f"{v:.2f}{c['unit']}" if c["unit"] in (" ms", "%") else f"{v:.3f}{c['unit']}"


def format_report(report: dict[str, Any]) -> str:
    out = [
        "",
        f"=== bench report ({report['mode']}, {report['started_at']}, "
        f"{report['machine']['cpus']} CPUs, torch {report['machine']['torch']}) ===",
    ]
    for name, sec in report["sections"].items():
        out.append("")
        if "error" in sec:
            out.append(f"[{name}] CRASHED: {sec['error']}")
            continue
        out.append(f"[{name}] {sec['title']}  ({sec['wall_seconds']:.0f} s)")
        out += [f"  {line}" for line in sec["lines"]]
        for c in sec["checks"]:
            out.append(f"  {c['status']:<12} {c['name']}: {_value(c)} (target {c['target']})")
    checks = [c for s in report["sections"].values() for c in s.get("checks", [])]
    passed = sum(c["status"] == "PASS" for c in checks)
    out.append("")
    out.append(
        f"{passed}/{len(checks)} checks PASS; wall time {report['wall_seconds']:.0f} s; "
        f"json: {report['json']}; logs: {report['log']}"
    )
    return "\n".join(out)


def write_json(report: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(report, indent=2, default=str) + "\n")
    tmp.replace(path)
    return path
