"""Whether a Slurm job had its node to itself, and what that means for its energy figures.

CodeCarbon's CPU and RAM figures are for the whole machine (``tracking_mode=machine``):
jobs sharing a node count each other's energy. A job's result records, under
``environment.slurm_node_share``:

- ``exclusive``: the job was submitted with ``--exclusive`` (``OverSubscribe=NO``);
- ``job_cpus`` / ``node_cpus``: CPUs the job holds on the node against the node's total;
- ``job_memory_mb`` / ``node_memory_mb``: the same for memory;
- ``other_jobs_at_start`` / ``other_jobs_at_end``: ids of other jobs running on the node
  when the run started and when it ended (``null`` at the end of a stopped run);
- ``node_to_itself``: ``true`` when no other job could run there (exclusive, or every CPU
  of the node held by this job) and none was seen; ``false`` when another job was seen;
  ``null`` when none was seen at either end but one could have run in between.

Where ``node_to_itself`` is not ``true``, the CPU and RAM components of the energy
section get ``node_shared`` (``true``; left out for "may have been") and a warning.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from typing import Any

from runner.sections.energy import Energy
from runner.slurm import scontrol

log = logging.getLogger(__name__)

KEY = "slurm_node_share"


def _int(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def at_start(environ: dict[str, str] | None = None) -> dict[str, Any] | None:
    """The facts at the start of a run; None outside a Slurm job."""
    env = os.environ if environ is None else environ
    job_id, node = env.get("SLURM_JOB_ID"), env.get("SLURMD_NODENAME")
    if not job_id or not node:
        return None
    facts: dict[str, Any] = {
        "node": node,
        "job_cpus": _int(env.get("SLURM_CPUS_ON_NODE")),
        "job_memory_mb": _int(env.get("SLURM_MEM_PER_NODE")),
    }
    try:
        (job,) = scontrol.show("job", job_id)[:1]
        (node_rec,) = scontrol.show("node", node)[:1]
        others = [j for j in scontrol.running_jobs_on(node) if j != job_id]
    except (scontrol.SlurmCommandError, ValueError) as exc:
        facts["error"] = str(exc)
        log.warning("could not read the job's share of its node: %s", exc)
        return facts
    facts.update(
        exclusive=job.get("OverSubscribe") == "NO",
        node_cpus=_int(node_rec.get("CPUTot")),
        node_memory_mb=_int(node_rec.get("RealMemory")),
        other_jobs_at_start=others,
    )
    return facts


def verdict(facts: dict[str, Any]) -> bool | None:
    """``node_to_itself`` from the facts (see the module docstring)."""
    if facts.get("exclusive"):
        return True
    if facts.get("other_jobs_at_start") or facts.get("other_jobs_at_end"):
        return False
    job, node = facts.get("job_cpus"), facts.get("node_cpus")
    if job is not None and node is not None and job >= node and "error" not in facts:
        return True
    return None


def at_end(environment: dict[str, Any], energy: Energy | None, query: bool = True) -> Energy | None:
    """Add the end-of-run facts and the verdict; return ``energy`` with CPU/RAM marked
    where the node was shared (unchanged outside a Slurm job).

    ``query=False`` (a stopped run, about to be killed) asks Slurm nothing more:
    ``other_jobs_at_end`` stays ``null`` and the verdict rests on the start.
    """
    facts = environment.get(KEY)
    if not isinstance(facts, dict):
        return energy
    facts.setdefault("other_jobs_at_end", None)
    if query and "error" not in facts:
        try:
            job_id = os.environ.get("SLURM_JOB_ID", "")
            facts["other_jobs_at_end"] = [
                j for j in scontrol.running_jobs_on(facts["node"]) if j != job_id
            ]
        except scontrol.SlurmCommandError as exc:
            facts["error"] = str(exc)
    alone = verdict(facts)
    facts["node_to_itself"] = alone
    return mark_energy(energy, alone)


def mark_energy(energy: Energy | None, alone: bool | None) -> Energy | None:
    """``node_shared`` on the CPU and RAM components, and a warning unless the node was ours."""
    if energy is None:
        return None
    shared = None if alone is None else not alone
    components = {
        name: replace(c, node_shared=shared) if name in ("cpu", "ram") else c
        for name, c in energy.components.items()
    }
    warnings = energy.warnings
    if alone is not True:
        how = "was shared with other jobs" if alone is False else "may have been shared"
        warnings = (
            *warnings,
            f"CPU and RAM energy are for the whole node, which {how}: they include other "
            "jobs' share (ask for the node alone: +hydra.launcher.additional_parameters."
            "exclusive=true)",
        )
    return replace(energy, components=components, warnings=warnings)
