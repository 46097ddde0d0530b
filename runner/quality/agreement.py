"""One run's outputs against a reference run's: token agreement, exact match, divergence.

Only runs with identical workloads are compared (same requests in the same order with the
same input token ids, ``workload.token_ids_sha256`` in ``result.json``); anything else is
refused with one line (:class:`WorkloadMismatch`). Each request is compared on its first
measured output in each run (the earliest repeat that measured it; greedy repeats are
identical anyway), so the unit of every 95% CI is the request:

- ``token_match``: matching positions / the longer output's length (1 for two empty outputs);
- ``exact_match``: 1 when the outputs are identical, else 0; its mean is the exact-match rate;
- ``first_divergence``: index of the first differing token (a prefix diverges where the
  shorter output ends), over the requests that differ only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from runner.measure.stats import summarize
from runner.quality.outputs import OUTPUTS_FILE, OutputRecord, read_outputs
from runner.quality.text import QualityInputError
from runner.sections.metrics import Stats
from runner.sections.quality import Agreement

METHOD = (
    "per request (its first measured output in each run): token_match = positions whose "
    "token equals the reference's / the longer output's length; exact_match = 1 if the "
    "outputs are identical; first_divergence = index of the first differing token, over "
    "the requests that differ; means with Student-t 95% CIs over requests "
    "(runner.measure.stats.summarize; fractions' CIs clipped to [0, 1]); workloads checked "
    "identical by their input token ids"
)


class WorkloadMismatch(QualityInputError):
    """The two runs did not measure the same requests; the message is one line."""


@dataclass(frozen=True)
class RequestAgreement:
    token_match: float
    exact: bool
    first_divergence: int | None  # None when identical


def compare_ids(reference: Sequence[int], candidate: Sequence[int]) -> RequestAgreement:
    """How far ``candidate`` follows ``reference``, position by position."""
    common = min(len(reference), len(candidate))
    longest = max(len(reference), len(candidate))
    same = [reference[i] == candidate[i] for i in range(common)]
    if longest == 0:
        return RequestAgreement(1.0, True, None)
    first = next((i for i, ok in enumerate(same) if not ok), None)
    if first is None and len(reference) != len(candidate):
        first = common  # one is a prefix of the other: they part where it ends
    return RequestAgreement(sum(same) / longest, first is None, first)


def _fraction(values: Sequence[float]) -> Stats:
    """Stats of fractions, the t-interval clipped to [0, 1] where the fractions live."""
    stats = summarize(values, unit="request")
    if stats.ci95_low is None or stats.ci95_high is None:
        return stats
    return replace(stats, ci95_low=max(0.0, stats.ci95_low), ci95_high=min(1.0, stats.ci95_high))


def first_outputs(records: Sequence[OutputRecord]) -> dict[int, tuple[int, ...]]:
    """Each request's output ids from the earliest repeat it was measured in."""
    out: dict[int, tuple[int, ...]] = {}
    for rec in sorted(records, key=lambda r: (r.repeat, r.batch, r.request)):
        out.setdefault(rec.request, rec.output_ids)
    return out


def agreement(
    reference: Sequence[OutputRecord],
    candidate: Sequence[OutputRecord],
    *,
    reference_dir: str | None = None,
    reference_run_id: str | None = None,
) -> Agreement:
    """The :class:`Agreement` over the requests both runs measured (pure)."""
    ref, cand = first_outputs(reference), first_outputs(candidate)
    shared = sorted(set(ref) & set(cand))
    per = [compare_ids(ref[i], cand[i]) for i in shared]
    diverged = [a.first_divergence for a in per if a.first_divergence is not None]
    return Agreement(
        reference=reference_dir,
        reference_run_id=reference_run_id,
        requests=len(per),
        token_match=_fraction([a.token_match for a in per]),
        exact_match=_fraction([1.0 if a.exact else 0.0 for a in per]),
        first_divergence=summarize([float(d) for d in diverged], unit="request"),
        diverged_requests=len(diverged),
        method=METHOD,
    )


def fingerprint(result: dict[str, Any]) -> str | None:
    """The workload fingerprint a ``result.json`` dict recorded, if any."""
    workload = result.get("workload")
    value = workload.get("token_ids_sha256") if isinstance(workload, dict) else None
    return value if isinstance(value, str) and value else None


def check_same_workload(
    reference: str | None, candidate: str | None, ref_label: str, cand_label: str
) -> None:
    """Raise :class:`WorkloadMismatch` unless both fingerprints are known and equal."""
    if reference is None:
        raise WorkloadMismatch(f"{ref_label}: no workload fingerprint recorded; cannot compare")
    if candidate is None:
        raise WorkloadMismatch(f"{cand_label}: no workload fingerprint recorded; cannot compare")
    if reference != candidate:
        raise WorkloadMismatch(
            f"{cand_label} and {ref_label} measured different workloads (input token ids "
            f"{candidate[:12]} vs {reference[:12]}): outputs are compared only for identical "
            "prompts and token ids"
        )


@dataclass(frozen=True)
class Reference:
    """A reference run as read from its directory: its result and where its outputs are."""

    run_dir: Path
    result: dict[str, Any]

    @property
    def fingerprint(self) -> str | None:
        return fingerprint(self.result)

    @property
    def run_id(self) -> str:
        run_id = self.result.get("run_id")
        return run_id if isinstance(run_id, str) and run_id else self.run_dir.name

    def outputs(self) -> list[OutputRecord]:
        path = self.run_dir / OUTPUTS_FILE
        try:
            return read_outputs(path)
        except FileNotFoundError:
            raise QualityInputError(f"{self.run_dir}: no {OUTPUTS_FILE}") from None
        except Exception as exc:
            raise QualityInputError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from None


def read_reference(path: str | Path, label: str = "quality.reference") -> Reference:
    """The run at ``path``; :class:`QualityInputError` (one line) when it cannot serve as a
    reference: no such directory, no readable result, not ok, or no outputs file."""
    from runner.results import RESULT_FILE, ResultReadError, read_result

    run_dir = Path(path).expanduser()
    if run_dir.is_file() and run_dir.name == RESULT_FILE:
        run_dir = run_dir.parent
    where = f"{label}={path}"
    if not run_dir.is_dir():
        raise QualityInputError(f"{where}: no such run directory")
    try:
        result = read_result(run_dir)
    except FileNotFoundError:
        raise QualityInputError(f"{where}: no {RESULT_FILE} there (not a finished run)") from None
    except ResultReadError as exc:
        raise QualityInputError(f"{where}: {exc}") from None
    if result.get("status") != "ok":
        raise QualityInputError(f"{where}: the run's status is {result.get('status')}, not ok")
    if not (run_dir / OUTPUTS_FILE).is_file():
        raise QualityInputError(f"{where}: no {OUTPUTS_FILE} (the run predates output recording)")
    return Reference(run_dir, result)


def compare_runs(reference_dir: str | Path, run_dir: str | Path) -> Agreement:
    """Agreement of the run in ``run_dir`` with the one in ``reference_dir``.

    Raises :class:`QualityInputError` for a directory that is no usable run and
    :class:`WorkloadMismatch` when the workloads differ (both one line).
    """
    ref = read_reference(reference_dir, "reference")
    cand = read_reference(run_dir, "run")
    check_same_workload(ref.fingerprint, cand.fingerprint, str(reference_dir), str(run_dir))
    return agreement(
        ref.outputs(), cand.outputs(), reference_dir=str(ref.run_dir), reference_run_id=ref.run_id
    )
