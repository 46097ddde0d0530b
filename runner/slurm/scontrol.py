"""Slurm's commands, run with a timeout and parsed into plain records.

``scontrol -o show ...`` prints one record per line as ``Key=value`` pairs separated by
spaces; a few values hold spaces themselves (``OS=Linux 6.1.0 #1 SMP ...``), so a pair
ends where the next ``Key=`` begins.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

TIMEOUT_S = 20.0  # a busy controller answers in seconds

_PAIR = re.compile(r"(?:^|\s)([A-Za-z][A-Za-z0-9_:/]*)=(.*?)(?=\s+[A-Za-z][A-Za-z0-9_:/]*=|\s*$)")


class SlurmCommandError(RuntimeError):
    """A Slurm command is missing, timed out or failed; the message says which."""


def parse_records(text: str) -> list[dict[str, str]]:
    """One dict per non-empty line of ``scontrol -o show ...`` output."""
    return [dict(_PAIR.findall(line)) for line in text.splitlines() if line.strip()]


def run(*args: str) -> str:
    """stdout of a Slurm command; :class:`SlurmCommandError` when it cannot answer."""
    if shutil.which(args[0]) is None:
        raise SlurmCommandError(f"{args[0]} not found on PATH")
    conf = os.environ.get("SLURM_CONF")
    if conf and not os.path.isfile(conf):  # Slurm's commands would retry for a minute
        raise SlurmCommandError(f"SLURM_CONF={conf} does not exist")
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise SlurmCommandError(f"{' '.join(args)}: no answer within {TIMEOUT_S:g} s") from exc
    if proc.returncode != 0:
        why = (proc.stderr or proc.stdout).strip().splitlines()
        raise SlurmCommandError(f"{' '.join(args)}: {why[-1] if why else proc.returncode}")
    return proc.stdout


def show(kind: str, name: str | None = None) -> list[dict[str, str]]:
    """``scontrol -o show KIND [NAME]`` (kind: partition, node, job)."""
    return parse_records(run("scontrol", "-o", "show", kind, *([name] if name else [])))


def running_jobs_on(node: str) -> list[str]:
    """Ids of the jobs running on ``node`` (array tasks by their own job id)."""
    out = run("squeue", "-h", "-w", node, "-t", "RUNNING,COMPLETING", "-o", "%A")
    return sorted({line.strip() for line in out.splitlines() if line.strip()})
