"""The shell commands of README.md and docs/*.md, and what the README test does with each.

A fenced block tagged ``bash``/``sh``/``shell``/``console`` holds commands (``\\``
continuations joined, ``#`` comments dropped), each expected to exit 0. An untagged block
whose lines start with ``$ `` holds commands each followed by the output the text shows; an
output line ``error: ...`` means exit code 2 and that line on stderr (``...`` at its end:
the rest is elided). Other untagged blocks (output samples, directory trees) hold no command.

:func:`plan` says, for each command, whether it runs here and how (:data:`SKIPS`,
:data:`SUBSTITUTIONS`): the table of everything the test changes, kept small on purpose.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_LANGS = {"bash", "sh", "shell", "console"}
EXIT_USER_ERROR = 2

# (text in the command, why it cannot run here). The first match wins.
SKIPS: list[tuple[str, str]] = [
    ("pip install", "installs packages (network; would change this environment)"),
    ("python3 -m venv", "creates and activates a virtualenv"),
    ("make test", "runs this test suite itself"),
    ("runner.engines.install", "installs packages (network; make setup has run it here)"),
    ("hydra/launcher=slurm", "submits to a Slurm cluster (there is none here)"),
    ("mlflow ui", "starts MLflow's web server, which runs until it is stopped"),
    ("--device cuda", "needs a CUDA GPU (there is none here)"),
    (
        "runner.hardware.probe --rerun",
        "measures this machine again and overwrites its kept peaks, which a busy test suite "
        "would keep low (tests/test_hardware_limits.py runs --rerun on small sizes)",
    ),
    (
        "quality.task_dir=/data/",
        "names an lm-eval task directory of the reader's own (tests/test_quality_e2e.py runs "
        "lm-eval on the project's offline task)",
    ),
    (
        "tests/slurm/cluster.sh",
        "starts and stops the suite's own Slurm cluster (tests/test_slurm.py runs it; "
        "stopping it here would pull it from under those tests)",
    ),
]

# (text, why) for commands expected to succeed only: an error example with the same text
# runs (it stops in pre-flight, before any engine starts).
MEASURED_SKIPS: list[tuple[str, str]] = [
    (
        "vllm",
        "starts vLLM (half a minute and more per run here, and the tiny model is refused by its "
        "CPU kernels): tests/test_vllm_e2e.py runs a sweep over both engines and vLLM runs "
        "through the CLI",
    ),
]

# Whole commands replaced by what they run (the recipe, without make's install step, which
# a test must not repeat).
REPLACED = {"make run": "python -m runner"}

# Placeholders for directories the text leaves to the reader, and the sweep of the README
# that stands for them: 1 is the first sweep command's directory, 2 the second's.
PLACEHOLDERS = {
    "outputs/sweeps/2026-11-27_07-30-00": 1,
    "outputs/sweeps/2026-11-27_10-00-00": 1,
    "outputs/sweeps/<date>": 1,
    "outputs/sweeps/a": 1,
    "outputs/sweeps/b": 2,
}

# What a measured run (``python -m runner`` that runs jobs) gets instead of minutes of work;
# applied by tests/readme_python.py, which the test puts first on PATH as ``python``.
SUBSTITUTIONS = (
    "model=tiny loading=cpu measure=quick workload.num_prompts=8 "
    "decoding.max_new_tokens=4 measure.isolation=inline, energy=off unless the command "
    "names an energy metric (replacing those keys); at most 4 trials of a search; "
    "torch.compile's backend eager instead of inductor (a minute per compiled run here)"
)


@dataclass(frozen=True)
class Command:
    text: str
    source: str  # page:line
    expect_exit: int = 0
    expect_stderr: tuple[str, ...] = ()


@dataclass(frozen=True)
class Plan:
    """How the test treats a command: ``skip`` (with ``reason``) or run ``text`` in bash."""

    command: Command
    text: str = ""
    skip: str | None = None
    tiny: bool = False  # a measured run: the substitutions apply
    needs_sweeps: tuple[int, ...] = field(default=())


def _strip_comment(line: str) -> str:
    """The line without a shell comment (a ``#`` outside quotes, at a word's start)."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def _blocks(text: str) -> list[tuple[str, int, list[str]]]:
    """(language, line number of the first content line, lines) of each fenced block."""
    blocks, lang, start, lines = [], None, 0, []
    for number, line in enumerate(text.splitlines(), 1):
        fence = re.match(r"^```(\S*)\s*$", line)
        if fence and lang is None:
            lang, start, lines = fence.group(1), number + 1, []
        elif fence:
            blocks.append((lang, start, lines))
            lang = None
        elif lang is not None:
            lines.append(line)
    return blocks


def commands(page: Path) -> list[Command]:
    """Every fenced shell command of one Markdown page, with what the text expects."""
    name = page.relative_to(ROOT).as_posix() if page.is_relative_to(ROOT) else page.name
    found: list[Command] = []
    for lang, start, lines in _blocks(page.read_text()):
        if lang in SHELL_LANGS:
            joined, first = "", None
            for offset, line in enumerate(lines):
                first = start + offset if first is None else first
                joined += line[:-1] + " " if line.endswith("\\") else line
                if line.endswith("\\"):
                    continue
                cmd = _strip_comment(joined).strip()
                if cmd:
                    found.append(Command(" ".join(cmd.split()), f"{name}:{first}"))
                joined, first = "", None
        elif lang == "" and any(line.startswith("$ ") for line in lines):
            found += _prompted(lines, name, start)
    return found


def _prompted(lines: list[str], name: str, start: int) -> list[Command]:
    out: list[Command] = []
    for i, line in enumerate(lines):
        if not line.startswith("$ "):
            continue
        shown = []
        for after in lines[i + 1 :]:
            if after.startswith("$ "):
                break
            shown.append(after)
        errors = tuple(s for s in shown if s.startswith("error: "))
        code = EXIT_USER_ERROR if errors else 0
        out.append(Command(line[2:].strip(), f"{name}:{start + i}", code, errors))
    return out


def plan(command: Command) -> Plan:
    text = command.text
    for needle, reason in SKIPS:
        if needle in text:
            return Plan(command, skip=reason)
    for needle, reason in MEASURED_SKIPS:
        if needle in text and command.expect_exit == 0:
            return Plan(command, skip=reason)
    text = REPLACED.get(text, text)
    sweeps = tuple(sorted({n for p, n in PLACEHOLDERS.items() if p in text}))
    for placeholder in sorted(PLACEHOLDERS, key=len, reverse=True):
        text = text.replace(placeholder, sweep_token(PLACEHOLDERS[placeholder]))
    words = text.split()
    measured = (
        words[:3] == ["python", "-m", "runner"]
        and command.expect_exit == 0
        and not any(w.startswith("--") for w in words)
    )
    return Plan(command, text=text, tiny=measured, needs_sweeps=sweeps)


def sweep_token(n: int) -> str:
    """Stands for the directory of the README's n-th sweep until it exists."""
    return f"@SWEEP{n}@"


def all_commands() -> list[Command]:
    return [c for page in PAGES for c in commands(page)]


def is_sweep(plan_: Plan) -> bool:
    return plan_.tiny and ("-m" in plan_.text.split()[3:] or "--multirun" in plan_.text)
