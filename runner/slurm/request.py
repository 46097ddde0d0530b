"""A Slurm launcher's request checked against the partition before anything is submitted.

Slurm accepts a job that no node of its partition can ever run (a GPU on a CPU-only
partition, more memory than any node has) and leaves it pending for good. The CLI asks
``scontrol`` for the partition and its nodes first and refuses such a request with one
line naming the launcher field, its value and what the partition allows.

:func:`problem` is pure (records in, message out); :func:`check` runs the commands.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runner.slurm import scontrol

log = logging.getLogger(__name__)

CPU_PRESET_HINT = "for a partition without GPUs use hydra/launcher=slurm-cpu"
_UNLIMITED = ("UNLIMITED", "INFINITE", "NONE", "")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)B?\s*$", re.IGNORECASE)
_MB_PER = {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024**2}


class RequestError(ValueError):
    """The request cannot run on the partition; the message is one line."""


@dataclass(frozen=True)
class Request:
    """What one job asks for, per node, in the launcher's units (``hydra.launcher.*``)."""

    partition: str | None = None
    nodes: int = 1
    tasks_per_node: int = 1
    cpus_per_task: int | None = None
    gpus_per_node: int | None = None
    gpus_per_task: int | None = None
    gres: str | None = None
    mem_gb: float | None = None
    mem_per_cpu: str | None = None
    mem_per_gpu: str | None = None
    timeout_min: int | None = None

    @classmethod
    def from_launcher(cls, launcher: Mapping[str, Any]) -> Request:
        """From the composed ``hydra.launcher`` node (a submitit Slurm launcher's fields)."""
        names = cls.__dataclass_fields__
        return cls(**{k: launcher[k] for k in names if launcher.get(k) is not None})

    def gpus(self) -> tuple[int, str | None, str]:
        """(GPUs per node, GPU type or None, the field that asked for them)."""
        if self.gpus_per_node:
            return int(self.gpus_per_node), None, "gpus_per_node"
        if self.gpus_per_task:
            return int(self.gpus_per_task) * self.tasks_per_node, None, "gpus_per_task"
        for gtype, count in gres_gpus(self.gres or "").items():
            return count, gtype or None, "gres"
        return 0, None, "gpus_per_node"

    def cpus(self) -> int:
        return (self.cpus_per_task or 1) * self.tasks_per_node

    def mem_mb(self) -> tuple[float, str] | None:
        """Memory per node in MB and the field that asked for it (None: Slurm's default)."""
        if self.mem_gb is not None:
            return float(self.mem_gb) * 1024, "mem_gb"
        if self.mem_per_cpu is not None:
            return size_mb(self.mem_per_cpu) * self.cpus(), "mem_per_cpu"
        if self.mem_per_gpu is not None:
            return size_mb(self.mem_per_gpu) * self.gpus()[0], "mem_per_gpu"
        return None


@dataclass(frozen=True)
class Node:
    name: str
    cpus: int
    memory_mb: float
    gpus: dict[str, int]  # GPU type ("" when untyped) -> count

    @classmethod
    def from_record(cls, rec: Mapping[str, str]) -> Node:
        cpus = rec.get("CPUEfctv") or rec.get("CPUTot") or "0"
        memory = float(rec.get("RealMemory") or 0) - float(rec.get("MemSpecLimit") or 0)
        return cls(rec.get("NodeName", "?"), int(cpus), memory, gres_gpus(rec.get("Gres", "")))

    def gpu_count(self, gtype: str | None) -> int:
        return sum(n for t, n in self.gpus.items() if gtype is None or t == gtype)


def size_mb(text: str) -> float:
    """Slurm's size syntax (``4G``, ``500M``, ``2048``: MB by default) in MB."""
    m = _SIZE.match(str(text))
    if not m:
        raise RequestError(f"{text!r}: not a Slurm memory size (like 4G or 4096M)")
    return float(m.group(1)) * _MB_PER[m.group(2).upper()]


def gres_gpus(gres: str) -> dict[str, int]:
    """GPUs per type from a node's ``Gres`` (``gpu:a100:4(S:0-1),gpu:2``; ``(null)``: none)."""
    out: dict[str, int] = {}
    for item in re.sub(r"\([^)]*\)", "", gres or "").split(","):
        name, *rest = item.strip().split(":")
        if name != "gpu":
            continue
        count = 1
        if rest and re.match(r"\d+", rest[-1]):
            count = int(re.match(r"\d+", rest.pop()).group())
        gtype = rest[0] if rest else ""
        out[gtype] = out.get(gtype, 0) + count
    return out


def limit_minutes(text: str | None) -> float | None:
    """A Slurm time (``MaxTime``) in minutes; None when unlimited.

    Slurm's forms: ``minutes``, ``minutes:seconds``, ``hours:minutes:seconds``,
    ``days-hours``, ``days-hours:minutes``, ``days-hours:minutes:seconds``.
    """
    if text is None or text.upper() in _UNLIMITED:
        return None
    days, _, clock = text.rpartition("-")
    parts = [float(p) for p in clock.split(":")]
    if days:
        h, m, s = (parts + [0.0, 0.0])[:3]
        return float(days) * 24 * 60 + h * 60 + m + s / 60
    if len(parts) == 3:
        return parts[0] * 60 + parts[1] + parts[2] / 60
    if len(parts) == 2:
        return parts[0] + parts[1] / 60
    return parts[0]


def _limit(rec: Mapping[str, str], key: str) -> float | None:
    value = rec.get(key, "UNLIMITED")
    return None if value.upper() in _UNLIMITED else float(value)


def _field(name: str, value: Any) -> str:
    return f"hydra.launcher.{name}={value}"


def problem(
    request: Request, partitions: list[dict[str, str]], nodes: list[dict[str, str]]
) -> str | None:
    """Why no node of the request's partition can run it, in one line; None if one can."""
    names = [p.get("PartitionName", "?") for p in partitions]
    if request.partition is None:
        default = [p for p in partitions if p.get("Default") == "YES"]
        if not default:
            return (
                "hydra.launcher.partition: not set and the cluster has no default partition; "
                f"allowed: {', '.join(names)}"
            )
        part = default[0]
    else:
        found = [p for p in partitions if p.get("PartitionName") == request.partition]
        if not found:
            return f"{_field('partition', request.partition)}: no such partition; allowed: " + (
                ", ".join(names)
            )
        part = found[0]
    pname = part["PartitionName"]
    members = [Node.from_record(n) for n in nodes if pname in n.get("Partitions", "").split(",")]
    if not members:
        return f"hydra.launcher.partition={pname}: the partition has no nodes"

    max_time = limit_minutes(part.get("MaxTime"))
    if request.timeout_min is not None and max_time is not None and request.timeout_min > max_time:
        return (
            f"{_field('timeout_min', request.timeout_min)}: partition {pname} allows jobs of at "
            f"most {max_time:g} min (MaxTime={part.get('MaxTime')}); allowed: at most {max_time:g}"
        )
    max_nodes = _limit(part, "MaxNodes")
    allowed_nodes = min(len(members), int(max_nodes) if max_nodes is not None else len(members))
    if request.nodes > allowed_nodes:
        return (
            f"{_field('nodes', request.nodes)}: partition {pname} gives a job at most "
            f"{allowed_nodes} node(s); allowed: at most {allowed_nodes}"
        )

    gpus, gtype, gfield = request.gpus()
    gvalue = request.gres if gfield == "gres" else getattr(request, gfield)
    most_gpus = max(n.gpu_count(gtype) for n in members)
    if gpus > most_gpus:
        what = f"{gtype} GPUs" if gtype else "GPUs"
        types = sorted({t or "untyped" for n in members for t in n.gpus})
        if most_gpus == 0 and types:
            return (
                f"{_field(gfield, gvalue)}: no node of partition {pname} has {what} (Gres); "
                f"allowed GPU types: {', '.join(types)}"
            )
        if most_gpus == 0:
            return (
                f"{_field(gfield, gvalue)}: no node of partition {pname} has {what} (Gres); "
                f"{CPU_PRESET_HINT}, or set hydra.launcher.partition"
            )
        return (
            f"{_field(gfield, gvalue)}: the nodes of partition {pname} have at most "
            f"{most_gpus} {what}; allowed: at most {most_gpus}"
        )

    cpus = request.cpus()
    max_cpus_node = _limit(part, "MaxCPUsPerNode")
    most_cpus = max(n.cpus for n in members)
    if max_cpus_node is not None:
        most_cpus = min(most_cpus, int(max_cpus_node))
    if cpus > most_cpus:
        per_task = most_cpus // request.tasks_per_node
        return (
            f"{_field('cpus_per_task', request.cpus_per_task)}: the nodes of partition {pname} "
            f"give a job at most {most_cpus} CPUs (tasks_per_node={request.tasks_per_node}); "
            f"allowed: at most {per_task}"
        )

    mem = request.mem_mb()
    most_mem = max(n.memory_mb for n in members)
    max_mem_node = _limit(part, "MaxMemPerNode")
    if max_mem_node is not None:
        most_mem = min(most_mem, max_mem_node)
    if mem is not None and mem[0] > most_mem:
        mb, mfield = mem
        allowed = (
            f"at most {math.floor(most_mem / 1024)}"
            if mfield == "mem_gb"
            else f"at most {most_mem:.0f} MB in all"
        )
        return (
            f"{_field(mfield, getattr(request, mfield))}: the nodes of partition {pname} have "
            f"at most {most_mem:.0f} MB of memory ({mb:.0f} MB asked); allowed: {allowed}"
        )

    fitting = [
        n
        for n in members
        if n.gpu_count(gtype) >= gpus and n.cpus >= cpus and (mem is None or n.memory_mb >= mem[0])
    ]
    if len(fitting) < request.nodes:
        asked = f"{gpus} GPU(s), {cpus} CPU(s)" + (f", {mem[0]:.0f} MB" if mem else "")
        return (
            f"hydra.launcher: no {request.nodes} node(s) of partition {pname} have {asked} at "
            f"once; nodes: "
            + ", ".join(
                f"{n.name} ({n.cpus} CPUs, {n.memory_mb:.0f} MB, {n.gpu_count(gtype)} GPUs)"
                for n in members
            )
        )
    return None


def check(launcher: Mapping[str, Any]) -> None:
    """Refuse (:class:`RequestError`) a request no node of its partition can run, and a
    sweep for Slurm where Slurm cannot be reached (not on PATH, no configuration, no
    controller): submitting would fail the same way, after writing the sweep's directory,
    with submitit's traceback."""
    request = Request.from_launcher(launcher)
    try:
        partitions = scontrol.show("partition")
        nodes = scontrol.show("node")
    except scontrol.SlurmCommandError as exc:
        raise RequestError(
            f"hydra/launcher: Slurm cannot be reached from here ({exc}); submit from a "
            "machine where `scontrol show partition` answers (a login node), or set SLURM_CONF"
        ) from exc
    found = problem(request, partitions, nodes)
    if found:
        raise RequestError(found)
