"""Find run directories and turn their ``result.json`` files into one table, one row per run.

Units of the headline columns: milliseconds (``*_ms_*``), output tokens per second
(``output_tok_s_*``), mebibytes (``*_mib``), millijoules per output token
(``energy_per_token_mj_*``) and grams CO2-equivalent (``emissions_g``); ``repeat_cv`` is
the coefficient of variation (a fraction) of output throughput between measured passes.
The quality columns (perplexity, agreement, lm-eval) are described in
:mod:`runner.report.quality`.

Nothing here raises on a weird directory: a run that cannot be used becomes a row with
status ``partial`` (no ``result.json`` yet) or ``unreadable`` (and the reason in ``error``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from runner.config.overrides import parse_lenient
from runner.report import quality
from runner.results import RESULT_FILE, ResultReadError, flatten, read_result
from runner.sections.energy import Energy
from runner.sections.metrics import Latency, Metrics, Stats, Throughput

HYDRA_DIR = ".hydra"
RESULT_STATUSES = ("ok", "failed", "interrupted")
STATUSES = (*RESULT_STATUSES, "partial", "unreadable")

BASE_COLUMNS = ["run_dir", "run_id", "label", "status", "error"]
DELETED = "(deleted)"  # the value of a factor a run deleted (``~energy``)

MEAN_CI = ("mean", "ci95_low", "ci95_high")  # fields of Stats
# column prefix -> (the distribution, scale to the column's unit, Stats fields as columns)
DISTRIBUTIONS: dict[str, tuple[Callable[[Latency], Stats | None], float, tuple[str, ...]]] = {
    "ttft_ms": (lambda lat: lat.ttft_seconds, 1e3, (*MEAN_CI, "p95")),
    "itl_ms": (lambda lat: lat.itl_seconds, 1e3, (*MEAN_CI, "p95")),
    "e2e_ms": (lambda lat: lat.e2e_request_seconds, 1e3, (*MEAN_CI, "p95")),
    "output_tok_s": (lambda lat: lat.output_tokens_per_second, 1.0, MEAN_CI),
}
NUMERIC_COLUMNS = [f"{p}_{s}" for p, (_, _, stats) in DISTRIBUTIONS.items() for s in stats] + [
    "output_tok_s_total",
    "repeat_cv",
    "peak_mem_mib",
    "model_footprint_mib",
    "energy_per_token_mj_gross",
    "energy_per_token_mj_net",
    "emissions_g",
    "repeats",
    "requests",
    "output_tokens",
    *quality.QUALITY_COLUMNS,
]
HEADLINE_COLUMNS = [
    *NUMERIC_COLUMNS,
    "peak_mem_source",
    "energy_is_estimate",
    "energy_warnings",
    "config_hash",
    *quality.TEXT_COLUMNS,
]
LM_EVAL_PREFIX = "lm_eval."  # one column per lm-eval task and metric, as the runs have them
MIB = 2**20


class ReportError(ValueError):
    """Bad input to the report (missing path, baseline matching nothing); one-line message."""


@dataclass
class RunRecord:
    """One run directory as found on disk; ``data`` is the parsed result (None if unusable)."""

    run_dir: Path
    status: str
    error: str | None = None
    overrides: list[str] = field(default_factory=list)
    data: dict[str, Any] | None = None

    @property
    def environment(self) -> dict[str, Any]:
        env = (self.data or {}).get("environment")
        return env if isinstance(env, dict) else {}

    @property
    def config(self) -> dict[str, Any]:
        cfg = (self.data or {}).get("config")
        return cfg if isinstance(cfg, dict) else {}

    @property
    def metrics(self) -> Metrics:
        return Metrics.from_dict((self.data or {}).get("metrics"))

    @property
    def energy(self) -> Energy | None:
        energy = (self.data or {}).get("energy")
        return Energy.from_dict(energy) if isinstance(energy, dict) else None


# --------------------------------------------------------------------------- discovery


def _is_run_dir(entries: dict[str, os.DirEntry]) -> bool:
    """A ``result.json`` of any kind (a broken one is reported), or a ``.hydra/`` folder."""
    hydra = entries.get(HYDRA_DIR)
    try:
        return RESULT_FILE in entries or (hydra is not None and hydra.is_dir())
    except OSError:
        return False


def _walk(root: Path) -> list[Path]:
    """Run directories under ``root`` (a run directory is a leaf); hidden folders are skipped.

    A directory that cannot be listed is returned too, so that it is reported as unreadable.
    """
    found: list[Path] = []
    stack = [root]
    while stack:
        directory = stack.pop()
        try:
            with os.scandir(directory) as it:
                entries = {e.name: e for e in it}
        except OSError:
            found.append(directory)
            continue
        if _is_run_dir(entries):
            found.append(directory)
            continue
        for name, entry in entries.items():
            try:
                if not name.startswith(".") and entry.is_dir(follow_symlinks=False):
                    stack.append(directory / name)
            except OSError:
                continue
    return sorted(found, key=str)


def find_run_dirs(paths: Iterable[Path | str]) -> list[Path]:
    """Run directories (holding ``result.json``, or ``.hydra/`` only = partial) under ``paths``.

    Each path may be a run directory, a sweep directory (searched recursively) or a
    ``result.json`` file. Raises :class:`ReportError` for a path that does not exist.
    """
    out: list[Path] = []
    seen: set[Path] = set()
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise ReportError(f"{path}: no such file or directory")
        if path.is_file():
            if path.name != RESULT_FILE:
                raise ReportError(f"{path}: not a directory nor a {RESULT_FILE}")
            dirs = [path.parent]
        else:
            dirs = _walk(path)
        for d in dirs:
            key = d.resolve()
            if key not in seen:
                seen.add(key)
                out.append(d)
    return out


# --------------------------------------------------------------------------- reading


def _hydra_overrides(run_dir: Path) -> list[str]:
    """Overrides from Hydra's ``.hydra/overrides.yaml``; [] when absent or unreadable."""
    try:
        import yaml

        data = yaml.safe_load((run_dir / HYDRA_DIR / "overrides.yaml").read_text())
    except Exception:
        return []
    return [str(x) for x in data] if isinstance(data, list) else []


def _last_log_line(run_dir: Path, limit: int = 200) -> str | None:
    try:
        with (run_dir / "run.log").open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 8192))
            lines = fh.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    lines = [line.strip() for line in lines if line.strip()]
    return lines[-1][:limit] if lines else None


def error_text(error: Any, status: str) -> str | None:
    """One line for the ``error`` column: ``Type: message (phase: p)``."""
    if isinstance(error, dict):
        message = " ".join(str(error.get("message") or "").split())
        etype, phase = error.get("type"), error.get("phase")
        text = f"{etype}: {message}" if etype and message else str(etype or message)
        if phase:
            text = f"{text} (phase: {phase})"
        if text.strip():
            return text
    elif error:
        return " ".join(str(error).split())
    if status == "interrupted":
        return "interrupted before the end of the measurement"
    if status == "failed":
        return "failed (no error recorded)"
    return None


def _load_run(run_dir: Path) -> RunRecord:
    hydra_overrides = _hydra_overrides(run_dir)
    if not (run_dir / RESULT_FILE).exists():
        os.listdir(run_dir)  # an unlistable directory raises: reported as unreadable
        reason = "no result.json (still running, or killed before writing it)"
        last = _last_log_line(run_dir)
        if last:
            reason = f"{reason}; last log line: {last}"
        return RunRecord(run_dir, "partial", reason, hydra_overrides)
    try:
        data = read_result(run_dir)
    except ResultReadError as exc:
        return RunRecord(run_dir, "unreadable", str(exc), hydra_overrides)
    except FileNotFoundError:  # removed between the two calls
        return RunRecord(run_dir, "partial", "result.json disappeared", hydra_overrides)
    overrides = data.get("overrides")
    if not (isinstance(overrides, list) and all(isinstance(o, str) for o in overrides)):
        overrides = hydra_overrides
    status = data.get("status")
    if status not in RESULT_STATUSES:
        return RunRecord(run_dir, "unreadable", f"unknown status {status!r}", overrides, data)
    return RunRecord(run_dir, status, error_text(data.get("error"), status), overrides, data)


def load_run(run_dir: Path) -> RunRecord:
    """Read one run directory; never raises (a failure becomes an ``unreadable`` record)."""
    run_dir = Path(run_dir)
    try:
        return _load_run(run_dir)
    except Exception as exc:  # a weird directory must never crash the report
        return RunRecord(run_dir, "unreadable", f"{type(exc).__name__}: {exc}")


def load_runs(paths: Iterable[Path | str]) -> list[RunRecord]:
    """:func:`find_run_dirs` then :func:`load_run` on each."""
    return [load_run(d) for d in find_run_dirs(paths)]


# --------------------------------------------------------------------------- the table


def parse_overrides(overrides: Iterable[str]) -> dict[str, str]:
    """``["+compile=on", "decoding.num_beams=4", "~energy"]`` -> ``{key: value}`` (strings).

    Read with Hydra's parser (:mod:`runner.config.overrides`): prefixes are dropped, quotes
    removed from string values, ``~key`` (deletion) gives ``(deleted)``; ``hydra`` settings
    are not factors, and an override Hydra rejects is left out.
    """
    return {
        s.key: DELETED if s.deleted else str(s.value)
        for s in parse_lenient(overrides)
        if not s.is_hydra
    }


def _num(value: Any, scale: float = 1.0) -> float:
    """A finite number times ``scale``, else NaN (None included)."""
    if value is None:
        return math.nan
    number = float(value) * scale
    return number if math.isfinite(number) else math.nan


def headline(rec: RunRecord) -> dict[str, Any]:
    """The headline columns of one run (NaN/None where absent)."""
    metrics = rec.metrics
    lat = metrics.latency or Latency()
    row: dict[str, Any] = {}
    for prefix, (dist_of, scale, stats) in DISTRIBUTIONS.items():
        dist = dist_of(lat) or Stats()
        for stat in stats:
            row[f"{prefix}_{stat}"] = _num(getattr(dist, stat), scale)
    row["output_tok_s_total"] = _num((lat.throughput or Throughput()).output_tokens_per_second)
    row["repeat_cv"] = _num((lat.throughput_per_repeat or Stats()).cv)
    memory = metrics.memory
    row["peak_mem_mib"] = _num(memory.peak_bytes, 1 / MIB)
    row["model_footprint_mib"] = _num(memory.model_footprint_bytes, 1 / MIB)
    energy = rec.energy or Energy()
    row["energy_per_token_mj_gross"] = _num(energy.per_output_token_joules.gross, 1e3)
    row["energy_per_token_mj_net"] = _num(energy.per_output_token_joules.net, 1e3)
    row["emissions_g"] = _num(energy.emissions_kg, 1e3)
    row["repeats"] = _num(metrics.repeats)
    row["requests"] = _num(lat.requests)
    row["output_tokens"] = _num(lat.output_tokens)
    row["peak_mem_source"] = memory.peak_source
    row["energy_is_estimate"] = energy.is_estimate
    row["energy_warnings"] = "; ".join(energy.warnings) or None
    config_hash = (rec.data or {}).get("config_hash")
    row["config_hash"] = config_hash if isinstance(config_hash, str) else None
    row.update(quality.headline(rec.data))
    return row


def _labels(rows: list[dict[str, Any]], swept: list[str]) -> list[str]:
    labels = []
    for row in rows:
        parts = [f"{k}={row[k]}" for k in swept if row.get(k) is not None]
        labels.append(", ".join(parts) or str(row["run_id"]))
    counts: dict[str, int] = {}
    unique = []
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
        unique.append(label if labels.count(label) == 1 else f"{label} #{counts[label]}")
    return unique


def table(records: list[RunRecord], full: bool = False) -> pd.DataFrame:
    """One row per record; see the module docstring for units.

    Columns: :data:`BASE_COLUMNS`, one column per override key (``df.attrs["factors"]``),
    :data:`HEADLINE_COLUMNS`, and with ``full`` every dotted key of the result
    (``metrics.ttft_seconds.p99``...) that is not already a column.
    """
    reserved = set(BASE_COLUMNS) | set(HEADLINE_COLUMNS)
    factors: list[str] = []
    rows: list[dict[str, Any]] = []
    extra: list[str] = []
    lm_eval: list[str] = []
    for rec in records:
        data = rec.data or {}
        run_id = data.get("run_id")
        row: dict[str, Any] = {
            "run_dir": str(rec.run_dir),
            "run_id": run_id if isinstance(run_id, str) and run_id else rec.run_dir.name,
            "status": rec.status,
            "error": rec.error,
        }
        for key, value in parse_overrides(rec.overrides).items():
            col = f"override.{key}" if key in reserved else key
            if col not in factors:
                factors.append(col)
            row[col] = value
        row.update(headline(rec))
        lm_eval += [k for k in row if k.startswith(LM_EVAL_PREFIX) and k not in lm_eval]
        if full:
            for key, value in flatten(data).items():
                if key not in row and key not in reserved:
                    row[key] = value
                    if key not in extra:
                        extra.append(key)
        rows.append(row)
    swept = [f for f in factors if len({r.get(f) for r in rows}) > 1]
    for row, label in zip(rows, _labels(rows, swept), strict=True):
        row["label"] = label
    columns = BASE_COLUMNS + factors + HEADLINE_COLUMNS + sorted(lm_eval)
    columns += [c for c in extra if c not in factors and c not in lm_eval]
    df = pd.DataFrame(rows, columns=columns)
    for col in [*NUMERIC_COLUMNS, *lm_eval]:
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    df["energy_is_estimate"] = df["energy_is_estimate"].astype(object)
    df.attrs["factors"] = factors
    return df


def collect(paths: Iterable[Path | str], full: bool = False) -> pd.DataFrame:
    """Table of every run under ``paths`` (see :func:`table`); raises only for missing paths."""
    return table(load_runs(paths), full=full)


def factor_columns(df: pd.DataFrame) -> list[str]:
    """Columns holding an override (``quant``, ``decoding.num_beams``...)."""
    return [c for c in df.attrs.get("factors", []) if c in df.columns]


def swept_factors(df: pd.DataFrame) -> list[str]:
    """Factor columns with more than one value (a missing override counts as a value)."""
    return [c for c in factor_columns(df) if df[c].nunique(dropna=False) > 1]
