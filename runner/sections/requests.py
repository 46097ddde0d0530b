"""The per-request table, ``requests.parquet``: one row per measured request.

Parquet rather than CSV so that ``itl_seconds`` (every inter-token gap of the request)
is a real ``list<double>`` column that pandas, polars or DuckDB load as lists, and the
integer and nullable float columns keep their types. ``tpot_seconds`` is written for
convenience; it is derived from the other columns and not read back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

REQUESTS_FILE = "requests.parquet"
LEGACY_REQUESTS_FILE = "requests.csv"  # written by earlier versions; the report still reads it


@dataclass(frozen=True)
class RequestRecord:
    """One request of one measured call. Times in seconds from the call's start edge."""

    repeat: int
    batch: int
    request: int
    prompt_id: str
    input_tokens: int
    output_tokens: int
    ttft_seconds: float | None
    last_token_seconds: float | None
    e2e_seconds: float | None  # until generate returned the batch: what a caller waits
    itl_seconds: tuple[float, ...]
    # scenario=online only (None offline): seconds from the run's start when the request
    # was due and when it was sent, how long the engine queued it, whether it finished,
    # lay in the steady-state window and met every objective. Its latencies count from
    # its send; ``repeat`` is 0 and ``batch`` and ``request`` its index.
    scheduled_seconds: float | None = None
    submitted_seconds: float | None = None
    queued_seconds: float | None = None
    finished: bool | None = None
    in_window: bool | None = None
    met_slo: bool | None = None

    @property
    def tpot_seconds(self) -> float | None:
        """Mean decode time per token after the first (None for a single token)."""
        if self.output_tokens < 2 or self.ttft_seconds is None or self.last_token_seconds is None:
            return None
        return (self.last_token_seconds - self.ttft_seconds) / (self.output_tokens - 1)


def _schema() -> Any:
    import pyarrow as pa

    ints, floats = pa.int64(), pa.float64()
    return pa.schema(
        [
            ("repeat", ints),
            ("batch", ints),
            ("request", ints),
            ("prompt_id", pa.string()),
            ("input_tokens", ints),
            ("output_tokens", ints),
            ("ttft_seconds", floats),
            ("last_token_seconds", floats),
            ("e2e_seconds", floats),
            ("tpot_seconds", floats),
            ("itl_seconds", pa.list_(floats)),
            ("scheduled_seconds", floats),
            ("submitted_seconds", floats),
            ("queued_seconds", floats),
            ("finished", pa.bool_()),
            ("in_window", pa.bool_()),
            ("met_slo", pa.bool_()),
        ]
    )


def write_requests(path: Path, records: Sequence[RequestRecord]) -> Path:
    """Write the table to ``path`` atomically (see :func:`runner.results.atomic_path`)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from runner.results import atomic_path

    schema = _schema()
    names = [f.name for f in fields(RequestRecord)]
    rows = [{n: getattr(r, n) for n in names} | {"tpot_seconds": r.tpot_seconds} for r in records]
    table = pa.Table.from_pylist(rows, schema=schema)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path


def read_requests(path: Path) -> list[RequestRecord]:
    """The records of a ``requests.parquet`` (pyarrow's errors for a bad file)."""
    import pyarrow.parquet as pq

    names = [f.name for f in fields(RequestRecord)]
    present = set(pq.read_schema(path).names)  # files from before the serving columns
    rows = pq.read_table(path, columns=[n for n in names if n in present]).to_pylist()
    return [
        RequestRecord(**{**row, "itl_seconds": tuple(row["itl_seconds"] or ())}) for row in rows
    ]
