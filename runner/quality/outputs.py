"""``outputs.parquet``: the output token ids of every measured request, and the workload
fingerprint that says whether two runs' outputs can be compared at all.

One row per measured request: ``repeat``, ``batch``, ``request`` (its index in the
workload), ``prompt_id`` and ``output_ids`` (``list<int32>``: the new tokens up to and
including the first EOS, as counted in ``output_tokens``). Parquet keeps it compact (a
few KiB for a default run) and typed.

Two runs are comparable when their workloads hold the same requests in the same order
with the same input token ids: :func:`workload_fingerprint` hashes exactly that, and
``result.json`` records it as ``workload.token_ids_sha256``, so the check needs neither
run's outputs file.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

OUTPUTS_FILE = "outputs.parquet"


@dataclass(frozen=True)
class OutputRecord:
    """One measured request's output token ids."""

    repeat: int
    batch: int
    request: int
    prompt_id: str
    output_ids: tuple[int, ...]


def output_records(
    repeat: int, batch: int, requests: Sequence[Any], output_ids: Sequence[Sequence[int]]
) -> list[OutputRecord]:
    """The records of one call: ``requests`` are the batch's workload requests (with
    ``index`` and ``prompt_id``), ``output_ids`` the call's ids per row."""
    return [
        OutputRecord(repeat, batch, req.index, req.prompt_id, tuple(ids))
        for req, ids in zip(requests, output_ids, strict=False)
    ]


def workload_fingerprint(requests: Iterable[Sequence[int]]) -> str:
    """sha256 of the requests' input token ids, in workload order."""
    data = json.dumps([list(map(int, ids)) for ids in requests], separators=(",", ":"))
    return hashlib.sha256(data.encode()).hexdigest()


def _schema() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            ("repeat", pa.int32()),
            ("batch", pa.int32()),
            ("request", pa.int32()),
            ("prompt_id", pa.string()),
            ("output_ids", pa.list_(pa.int32())),
        ]
    )


def write_outputs(path: Path, records: Sequence[OutputRecord]) -> Path:
    """Write the records to ``path`` atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from runner.results import atomic_path

    names = [f.name for f in fields(OutputRecord)]
    rows = [{n: getattr(r, n) for n in names} for r in records]
    table = pa.Table.from_pylist(rows, schema=_schema())
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return path


def read_outputs(path: Path) -> list[OutputRecord]:
    """The records of an ``outputs.parquet`` (pyarrow's errors for a bad file)."""
    import pyarrow.parquet as pq

    names = [f.name for f in fields(OutputRecord)]
    rows = pq.read_table(path, columns=names).to_pylist()
    return [OutputRecord(**{**row, "output_ids": tuple(row["output_ids"] or ())}) for row in rows]
