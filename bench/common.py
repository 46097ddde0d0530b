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
BUSY_CPUS = 0.25  # other processes' average CPU use above which the report warns

# --- numbers -------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def ratio(num: float | None, den: float | None) -> float | None:
    return num / den if num is not None and den else None


def paired_rounds(runs: dict[str, list[dict]], label: str) -> tuple[int, list[float | None]]:
    """The output tokens each path generated per round (they must agree: the same work) and
    the per-round ratios runner/bare of output tokens/s."""
    tokens = {r["tokens"] for r in runs["runner"] + runs["bare"]}
    if len(tokens) != 1:
        raise RuntimeError(f"{label}: the paths generated different token counts {tokens}")
    ratios = [
        ratio(a["tokens_per_second"], b["tokens_per_second"])
        for a, b in zip(runs["runner"], runs["bare"], strict=True)
    ]
    return tokens.pop(), ratios


# A paired bench's cases: label -> (overrides, workload passes per side and round, rounds
# when quick, rounds in full).
Cases = dict[str, tuple[list[str], int, int, int]]


def chosen_cases(cases: Cases, quick: bool) -> list[tuple[str, list[str], int, int]]:
    """``(label, overrides, passes, rounds)`` of the cases a bench runs: the tiny model
    alone when quick, every case in full."""
    names = ["tiny"] if quick else list(cases)
    return [(n, cases[n][0], cases[n][1], cases[n][2 if quick else 3]) for n in names]


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
    from runner.preflight_compose import compose_typed

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
        **generate_kwargs(cfg.decoding, cfg.workload, cfg.compile),
        "pad_token_id": lm.tokenizer.pad_token_id,
    }
    eos = eos_token_ids(lm.model, lm.tokenizer)
    return Loaded(cfg, lm.model, lm.tokenizer, workload.batches, gen, eos)


# --- the two paths -------------------------------------------------------------------------


def bare_call(m: Loaded, batch: Any) -> tuple[int, float]:
    """(output tokens, seconds) of one bare ``model.generate``, timed with ``perf_counter``."""
    import torch

    from runner.measure.generation import count_new_tokens
    from runner.measure.timing import synchronize

    ids, mask = batch.input_ids.to(m.device), batch.attention_mask.to(m.device)
    with torch.inference_mode():
        synchronize(m.device)
        t0 = time.perf_counter()
        out = m.model.generate(input_ids=ids, attention_mask=mask, **m.gen_kwargs)
        synchronize(m.device)
        t1 = time.perf_counter()
    return sum(count_new_tokens(out[:, ids.shape[1] :], m.eos_ids)), t1 - t0


def runner_call(m: Loaded, batch: Any, repeat: int, index: int) -> tuple[list, Any]:
    """What the runner's measured loop does per batch: ``timed_generate``, then its records."""
    from runner.measure.generation import timed_generate
    from runner.measure.latency import records_for_call

    res = timed_generate(
        m.model,
        batch.input_ids.to(m.device),
        batch.attention_mask.to(m.device),
        m.gen_kwargs,
        eos_ids=m.eos_ids,
        seed=m.cfg.decoding.seed,
    )
    return records_for_call(repeat, index, batch.requests, res.output_tokens, res.timing)


def runner_figures(records: list, batches: list) -> dict[str, Any]:
    """The runner's own throughput figures (``latency_metrics``) of a set of calls."""
    from runner.measure.latency import latency_metrics

    metrics = latency_metrics(records, batches)
    return {
        "tokens_per_second": metrics.throughput.output_tokens_per_second,
        "decode_tokens_per_second": metrics.throughput.decode_tokens_per_second,
        "tokens": metrics.output_tokens,
        "seconds": metrics.measured_seconds,
    }


def bare_tps(m: Loaded, passes: int = 1, min_seconds: float = 0.0) -> dict[str, float]:
    """Bare passes over the workload, at least ``passes`` and ``min_seconds`` (runner's rule)."""
    tokens, seconds, done = 0, 0.0, 0
    while done < passes or seconds < min_seconds:
        for batch in m.batches:
            n, s = bare_call(m, batch)
            tokens, seconds = tokens + n, seconds + s
        done += 1
    return {"tokens_per_second": tokens / seconds, "tokens": tokens, "seconds": seconds}


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


def cpu_seconds() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine, CPU seconds of this process and its
    waited-for children): their difference over a span is what other work used."""
    import psutil

    t = psutil.cpu_times()
    busy = sum(getattr(t, f, 0.0) for f in ("user", "nice", "system", "irq", "softirq"))
    own = os.times()
    return busy, own.user + own.system + own.children_user + own.children_system


def other_cpus(before: tuple[float, float], after: tuple[float, float], wall: float) -> float:
    """CPUs kept busy by other processes on average over ``wall`` seconds (0: idle machine)."""
    busy, own = after[0] - before[0], after[1] - before[1]
    return max(busy - own, 0.0) / wall if wall > 0 else 0.0


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
        f"{report['machine']['cpus']} CPUs, torch {report['machine']['torch']}, "
        f"torch threads {report['machine']['torch_threads']}) ===",
    ]
    for name, sec in report["sections"].items():
        out.append("")
        if "error" in sec:
            out.append(f"[{name}] CRASHED: {sec['error']}")
            continue
        out.append(
            f"[{name}] {sec['title']}  ({sec['wall_seconds']:.0f} s; other processes kept "
            f"{sec['other_cpus']:.2f} CPUs busy)"
        )
        out += [f"  {line}" for line in sec["lines"]]
        for c in sec["checks"]:
            out.append(f"  {c['status']:<12} {c['name']}: {_value(c)} (target {c['target']})")
    busy = [n for n, s in report["sections"].items() if s["other_cpus"] > BUSY_CPUS]
    if busy:
        out += [
            "",
            f"NOTE: other work ran on this machine during {', '.join(busy)} (above "
            f"{BUSY_CPUS} CPUs busy besides the bench): those figures carry its noise. "
            "Rerun on an idle machine; fewer --threads than CPUs are far less sensitive.",
        ]
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
