"""Find run directories and turn their ``result.json`` files into one table, one row per run.

Units of the headline columns: milliseconds (``*_ms_*``), output tokens per second
(``output_tok_s_*``), mebibytes (``*_mib``), millijoules per output token
(``energy_per_token_mj_*``) and grams CO2-equivalent (``emissions_g``); ``repeat_cv`` is
the coefficient of variation (a fraction) of output throughput between measured passes.
The quality columns (perplexity, agreement, ``lm_eval.<task>.<metric>``) are described in
:mod:`runner.report.quality`, the ``metrics.roofline.*`` columns in
:mod:`runner.report.roofline`.

Nothing here raises on a weird directory: a run that cannot be used becomes a row with
status ``partial`` (no ``result.json`` yet) or ``unreadable`` (and the reason in ``error``).

A run directory is one the runner wrote for that run: Hydra's ``.hydra/`` folder is in it,
or its ``result.json`` names it (``run_id`` is the directory's name). A ``result.json``
copied elsewhere (MLflow's artifact store, a backup folder) names another directory: it is
not a run, is never counted, and the scan says how many such copies it passed over.
"""

from __future__ import annotations

import functools
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from runner.config.overrides import Setting, parse_lenient
from runner.logs import RUN_LOG
from runner.report import quality, roofline
from runner.report.metrics import UNRESOLVED, unresolved_text
from runner.report.variation import Variation
from runner.results import RESULT_FILE, ResultReadError, flatten, read_result
from runner.sections.energy import Energy, unresolved
from runner.sections.figures import FIGURES, headline_numbers
from runner.sections.metrics import Metrics
from runner.sections.quality import PerplexityEval
from runner.sections.warnings import WarningsDetail

HYDRA_DIR = ".hydra"
RESULT_STATUSES = ("ok", "failed", "interrupted")
STATUSES = (*RESULT_STATUSES, "partial", "unreadable")
COPY = "copy"  # the status of a result.json that belongs to another directory: not a run

BASE_COLUMNS = [
    "run_dir",
    "run_id",
    "label",
    "point",
    "status",
    "repeat",
    "started_at",
    "error",
    "error_type",
    "error_phase",
]
REPEAT_PREFIX = "repeat."  # settings of a sweep's repeats: never factors
SETTING_GROUPS = ("measure", "energy", "workload", "model")  # the report's settings section
DELETED = "(deleted)"  # the value of a factor a run deleted (``~energy``)

# The numeric headline columns: one registry shared with search objectives and tracking,
# the quality section's columns and the run's place on the roofline.
NUMERIC_COLUMNS = [*FIGURES, *quality.QUALITY_COLUMNS, *roofline.NUMBER_COLUMNS]
HEADLINE_COLUMNS = [
    *FIGURES,
    *quality.QUALITY_COLUMNS,
    *quality.TEXT_COLUMNS,
    *roofline.COLUMNS,
    "model_name",
    "peak_mem_source",
    "energy_is_estimate",
    UNRESOLVED,
    "energy_warnings",
    "named_warnings",
    "library_warnings",
    "config_hash",
]


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
    def warnings_detail(self) -> WarningsDetail:
        return WarningsDetail.from_dict((self.data or {}).get("warnings_detail"))

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
        with (run_dir / RUN_LOG).open("rb") as fh:
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
    # The summary comes from result.json alone: Hydra's overrides.yaml is read only for a
    # run without a usable result (or a result without its overrides).
    if not (run_dir / RESULT_FILE).exists():
        os.listdir(run_dir)  # an unlistable directory raises: reported as unreadable
        reason = "no result.json (still running, or killed before writing it)"
        last = _last_log_line(run_dir)
        if last:
            reason = f"{reason}; last log line: {last}"
        return RunRecord(run_dir, "partial", reason, _hydra_overrides(run_dir))
    try:
        data = read_result(run_dir)
    except ResultReadError as exc:
        return RunRecord(run_dir, "unreadable", str(exc), _hydra_overrides(run_dir))
    except FileNotFoundError:  # removed between the two calls
        return RunRecord(run_dir, "partial", "result.json disappeared", _hydra_overrides(run_dir))
    run_id = data.get("run_id")
    names_another = isinstance(run_id, str) and run_id and run_id != run_dir.name
    if names_another and not (run_dir / HYDRA_DIR).is_dir():
        return RunRecord(run_dir, COPY, f"a copy of run {run_id}'s result.json")
    overrides = data.get("overrides")
    if not (isinstance(overrides, list) and all(isinstance(o, str) for o in overrides)):
        overrides = _hydra_overrides(run_dir)
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
    """:func:`find_run_dirs` then :func:`load_run` on each; copies of another run's result
    are left out."""
    return [rec for rec in map(load_run, find_run_dirs(paths)) if rec.status != COPY]


# --------------------------------------------------------------------------- the table


@functools.lru_cache(maxsize=8192)
def _read_override(text: str) -> Setting | None:
    """One override read with Hydra's parser, cached: a sweep repeats the same few
    overrides in every run, and Hydra's parser takes about a millisecond each."""
    settings = parse_lenient([text])
    return settings[0] if settings else None


def parse_overrides(overrides: Iterable[str]) -> dict[str, str]:
    """``["+compile=on", "decoding.num_beams=4", "~energy"]`` -> ``{key: value}`` (strings).

    Read with Hydra's parser (:mod:`runner.config.overrides`): prefixes are dropped, quotes
    removed from string values, ``~key`` (deletion) gives ``(deleted)``; ``hydra`` settings
    are not factors, and an override Hydra rejects is left out.
    """
    out: dict[str, str] = {}
    for text in overrides:
        setting = _read_override(str(text))
        if setting is not None and not setting.is_hydra:
            out[setting.key] = DELETED if setting.deleted else str(setting.value)
    return out


def headline(rec: RunRecord) -> dict[str, Any]:
    """The headline columns of one run (NaN/None where absent)."""
    metrics = rec.metrics
    energy = rec.energy or Energy()
    row: dict[str, Any] = headline_numbers(metrics, energy)
    row["peak_mem_source"] = metrics.memory.peak_source
    row["energy_is_estimate"] = energy.is_estimate
    row[UNRESOLVED] = unresolved_text(unresolved(rec.energy))
    row["energy_warnings"] = "; ".join(energy.warnings) or None
    said = rec.warnings_detail
    row["named_warnings"] = "; ".join(f"{w.name}: {w.message}" for w in said.named) or None
    distinct = {(w.source, w.category, w.message) for w in said.library if not w.noise}
    row["library_warnings"] = len(distinct) if rec.data else None
    model = rec.config.get("model")
    name = model.get("name") if isinstance(model, dict) else None
    row["model_name"] = name if isinstance(name, str) else None
    config_hash = (rec.data or {}).get("config_hash")
    row["config_hash"] = config_hash if isinstance(config_hash, str) else None
    row.update(quality.headline(rec.data))
    row.update(roofline.roofline_row(metrics.roofline))
    return row


def _error_fields(rec: RunRecord) -> tuple[str | None, str | None]:
    """``(type, phase)`` of a recorded error (None, None without one)."""
    error = (rec.data or {}).get("error")
    if not isinstance(error, dict):
        return None, None
    etype, phase = error.get("type"), error.get("phase")
    return (str(etype) if etype else None), (str(phase) if phase else None)


def run_row(rec: RunRecord, full: bool = False) -> dict[str, Any]:
    """One run's row: base columns, ``factors`` (its overrides, key -> value), headline
    columns and, with ``full``, every dotted key of the result. Keys not yet columns."""
    data = rec.data or {}
    run_id = data.get("run_id")
    error_type, error_phase = _error_fields(rec)
    factors = parse_overrides(rec.overrides)
    row: dict[str, Any] = {
        "run_dir": str(rec.run_dir),
        "run_id": run_id if isinstance(run_id, str) and run_id else rec.run_dir.name,
        "status": rec.status,
        "repeat": repeat_index(rec.config, factors),
        "started_at": started if isinstance(started := data.get("started_at"), str) else None,
        "error": rec.error,
        "error_type": error_type,
        "error_phase": error_phase,
        "factors": {k: v for k, v in factors.items() if not k.startswith(REPEAT_PREFIX)},
        **headline(rec),
    }
    if full:
        row["flat"] = flatten(data)
    return row


def repeat_index(config: dict[str, Any], factors: dict[str, str]) -> int | None:
    """Which repeat of its point a run is (``repeat.index``), or None outside repeats."""
    repeat = config.get("repeat")
    value = repeat.get("index") if isinstance(repeat, dict) else None
    if value is None:
        value = factors.get(f"{REPEAT_PREFIX}index")
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def environment_of(rec: RunRecord) -> dict[str, Any]:
    """The run's environment as dotted keys ({} without a readable result)."""
    return flatten(rec.environment)


def settings_of(rec: RunRecord) -> dict[str, Any]:
    """The run's measurement settings (config groups :data:`SETTING_GROUPS`), dotted keys."""
    return {k: v for k, v in flatten(rec.config).items() if k.split(".")[0] in SETTING_GROUPS}


def _points(rows: list[dict[str, Any]], swept: list[str]) -> list[str]:
    """Each row's point: its swept factors (what its repeats share)."""
    out = []
    for row in rows:
        parts = [f"{k}={row[k]}" for k in swept if row.get(k) is not None]
        out.append(", ".join(parts) or ("all" if row.get("repeat") is not None else row["run_id"]))
    return out


def _labels(rows: list[dict[str, Any]], points: list[str]) -> list[str]:
    labels = [
        point if row.get("repeat") is None else f"{point}, repeat {row['repeat']}"
        for row, point in zip(rows, points, strict=True)
    ]
    totals = Counter(labels)
    seen: Counter[str] = Counter()
    unique = []
    for label in labels:
        seen[label] += 1
        unique.append(label if totals[label] == 1 else f"{label} #{seen[label]}")
    return unique


def frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The report table from :func:`run_row` rows; see the module docstring for units.

    Columns: :data:`BASE_COLUMNS`, one column per override key (``df.attrs["factors"]``),
    :data:`HEADLINE_COLUMNS`, and for rows made with ``full`` every dotted key of the
    result (``metrics.ttft_seconds.p99``...) that is not already a column.
    """
    reserved = set(BASE_COLUMNS) | set(HEADLINE_COLUMNS)
    factors: list[str] = []
    extra: list[str] = []
    lm_eval: list[str] = []
    out_rows = []
    for source in rows:
        row = {k: v for k, v in source.items() if k not in ("factors", "flat")}
        lm_eval += [k for k in row if k.startswith(quality.LM_EVAL_PREFIX) and k not in lm_eval]
        for key, value in source["factors"].items():
            col = f"override.{key}" if key in reserved else key
            if col not in factors:
                factors.append(col)
            row[col] = value
        for key, value in source.get("flat", {}).items():
            if key not in row and key not in reserved:
                row[key] = value
                if key not in extra:
                    extra.append(key)
        out_rows.append(row)
    swept = [f for f in factors if len({r.get(f) for r in out_rows}) > 1]
    points = _points(out_rows, swept)
    for row, point, label in zip(out_rows, points, _labels(out_rows, points), strict=True):
        row["point"], row["label"] = point, label
    columns = BASE_COLUMNS + factors + HEADLINE_COLUMNS + sorted(lm_eval)
    columns += [c for c in extra if c not in factors and c not in lm_eval]
    df = pd.DataFrame(out_rows, columns=columns)
    for col in [*NUMERIC_COLUMNS, *lm_eval]:
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    df["energy_is_estimate"] = df["energy_is_estimate"].astype(object)
    df["repeat"] = pd.array(df["repeat"], dtype="Int64")
    df.attrs["factors"] = factors
    return df


def table(records: list[RunRecord], full: bool = False) -> pd.DataFrame:
    """One row per record (see :func:`frame`)."""
    return frame([run_row(rec, full) for rec in records])


@dataclass
class Scan:
    """Every run under some paths, read once: the table, and what the runs' environments
    and settings share (aligned with the table's rows); ``copies``: the directories whose
    ``result.json`` belongs to another run, passed over."""

    table: pd.DataFrame
    environments: Variation
    settings: Variation
    evaluations: list[PerplexityEval | None]  # per row: what a perplexity ratio pairs
    copies: list[Path] = field(default_factory=list)


def scan(run_dirs: Iterable[Path]) -> Scan:
    """Read each run directory once and keep only its row, environment, settings and
    perplexity evaluation, so memory stays small however many runs there are. Never raises
    on a weird directory."""
    rows: list[dict[str, Any]] = []
    evaluations: list[PerplexityEval | None] = []
    environments, settings = Variation(), Variation()
    copies: list[Path] = []
    for run_dir in run_dirs:
        rec = load_run(run_dir)
        if rec.status == COPY:
            copies.append(rec.run_dir)
            continue
        rows.append(run_row(rec))
        evaluations.append(quality.evaluation(rec.data))
        environments.add(environment_of(rec))
        settings.add(settings_of(rec))
    return Scan(frame(rows), environments, settings, evaluations, copies)


def collect(paths: Iterable[Path | str], full: bool = False) -> pd.DataFrame:
    """Table of every run under ``paths`` (see :func:`table`); raises only for missing paths."""
    if full:
        return table(load_runs(paths), full=True)
    return scan(find_run_dirs(paths)).table


def factor_columns(df: pd.DataFrame) -> list[str]:
    """Columns holding an override (``quant``, ``decoding.num_beams``...)."""
    return [c for c in df.attrs.get("factors", []) if c in df.columns]


def has_values(df: pd.DataFrame, column: str) -> bool:
    """``column`` exists and some row has a value in it."""
    return column in df.columns and bool(df[column].notna().any())


def swept_factors(df: pd.DataFrame) -> list[str]:
    """Factor columns with more than one value (a missing override counts as a value)."""
    return [c for c in factor_columns(df) if df[c].nunique(dropna=False) > 1]
