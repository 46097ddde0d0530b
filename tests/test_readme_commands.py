"""Every fenced shell command of README.md and docs/*.md, run in bash as printed.

Each command that can run on this machine runs (measured runs with the tiny substitutions
of tests/readme_commands.py, in a scratch directory) and must exit as the text says: 0, or
2 with the ``error:`` line the text shows. The others are skipped with the reason
(``pytest -ra`` lists them). A README example that breaks fails here.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import PYTHON
from tests.readme_commands import (
    MEASURED_SKIPS,
    PLACEHOLDERS,
    SKIPS,
    Command,
    Plan,
    all_commands,
    commands,
    is_sweep,
    plan,
    sweep_token,
)

REPO = Path(__file__).resolve().parents[1]
PLANS = [plan(c) for c in all_commands()]
# The README's own sweeps (a resumed one names its directory): the placeholders' stand-ins.
SWEEPS = [p for p in PLANS if is_sweep(p) and not p.needs_sweeps][: max(PLACEHOLDERS.values())]


@dataclass(frozen=True)
class Done:
    returncode: int
    stdout: str
    stderr: str


class Shell:
    """Runs planned commands in bash in one scratch directory; each distinct one once."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.done: dict[tuple[str, bool], Done] = {}
        self.sweeps: dict[int, Path] = {}
        self.bins = {False: workdir / "bin-plain", True: workdir / "bin-tiny"}
        # The suite's `python` (the command server's client; the real one for what it
        # does not serve).
        python = " ".join(f'"{word}"' for word in PYTHON)
        self._script(self.bins[False], f'exec {python} "$@"')
        self._script(self.bins[True], f'exec {python} "{REPO / "tests" / "readme_python.py"}" "$@"')

    @staticmethod
    def _script(folder: Path, line: str) -> None:
        folder.mkdir()
        python = folder / "python"
        python.write_text(f"#!/bin/sh\n{line}\n")
        python.chmod(0o755)

    def sweep_dir(self, n: int) -> Path:
        if n not in self.sweeps:
            self.run(SWEEPS[n - 1])
        return self.sweeps[n]

    def run(self, planned: Plan) -> Done:
        text = planned.text
        for n in planned.needs_sweeps:
            text = text.replace(sweep_token(n), str(self.sweep_dir(n)))
        key = (text, planned.tiny)
        if key not in self.done:
            sweeps = self.workdir / "outputs" / "sweeps"
            before = set(sweeps.iterdir()) if sweeps.is_dir() else set()
            self.done[key] = self._bash(text, planned.tiny)
            new = sorted(set(sweeps.iterdir()) - before) if sweeps.is_dir() else []
            if planned in SWEEPS and new:
                self.sweeps[SWEEPS.index(planned) + 1] = new[-1]
        return self.done[key]

    def _bash(self, text: str, tiny: bool) -> Done:
        env = {
            **os.environ,
            "PATH": f"{self.bins[tiny]}{os.pathsep}{os.environ['PATH']}",
            "PYTHONPATH": str(REPO),
        }
        proc = subprocess.run(
            ["bash", "-c", text],
            cwd=self.workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        return Done(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture(scope="module")
def shell(tmp_path_factory) -> Shell:
    return Shell(tmp_path_factory.mktemp("readme"))


def _shown(expected: str, lines: list[str]) -> bool:
    """The line the text shows is printed (``...`` at its end elides the rest)."""
    if expected.endswith("..."):
        return any(line.startswith(expected[:-3].rstrip()) for line in lines)
    return expected in lines


@pytest.mark.slow
@pytest.mark.parametrize(
    "planned", PLANS, ids=[f"{p.command.source} {p.command.text}"[:100] for p in PLANS]
)
def test_readme_command(planned: Plan, shell: Shell) -> None:
    if planned.skip:
        pytest.skip(f"{planned.command.source} `{planned.command.text}`: {planned.skip}")
    done = shell.run(planned)
    said = (
        f"\n$ {planned.text}\n--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}"
    )
    assert done.returncode == planned.command.expect_exit, said
    for line in planned.command.expect_stderr:
        assert _shown(line, done.stderr.splitlines()), said


def test_every_fenced_command_is_run_or_skipped_with_a_reason():
    """The list the slow test works through: nothing unaccounted for."""
    skipped = [p for p in PLANS if p.skip]
    ran = [p for p in PLANS if not p.skip]
    assert {p.skip for p in skipped} <= {reason for _, reason in [*SKIPS, *MEASURED_SKIPS]}
    assert len(ran) >= 15 and any(p.command.expect_exit == 2 for p in ran)
    assert len(SWEEPS) == max(PLACEHOLDERS.values())
    # A placeholder the table does not know would reach bash as printed.
    for p in ran:
        assert "<" not in p.text and "outputs/sweeps/" not in p.text.replace("@SWEEP", ""), p


def test_commands_are_read_as_the_text_shows(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "Run it:\n\n```bash\n"
        "python -m runner quant=nf4 \\\n  compile=on   # two lines\n"
        "echo '# not a comment'\n\n```\n\n"
        "A mistake:\n\n```\n$ python -m runner quant=nf5\n"
        "error: quant=nf5: unknown option; allowed: ...\n$ true\n```\n\n"
        "Output, no command:\n\n```\n[ok] tiny-llama\n  -> outputs/x\n```\n"
    )
    assert commands(page) == [
        Command("python -m runner quant=nf4 compile=on", "page.md:4"),
        Command("echo '# not a comment'", "page.md:6"),
        Command(
            "python -m runner quant=nf5",
            "page.md:13",
            2,
            ("error: quant=nf5: unknown option; allowed: ...",),
        ),
        Command("true", "page.md:15"),
    ]
    assert _shown(
        "error: quant=nf5: unknown option; allowed: ...",
        ["error: quant=nf5: unknown option; allowed: fp4"],
    )
    assert not _shown("error: quant=nf5: unknown", ["error: quant=nf5: unknown option"])


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        ("make run", ("python -m runner", True, None)),
        ("python -m runner --cfg job", ("python -m runner --cfg job", False, None)),
        ("python -m runner -m quant=none,nf4", ("python -m runner -m quant=none,nf4", True, None)),
        (
            "python -m runner.report outputs/sweeps/<date> --out x",
            ("python -m runner.report @SWEEP1@ --out x", False, None),
        ),
        (
            "pip install .",
            ("", False, "installs packages (network; would change this environment)"),
        ),
    ],
)
def test_substitutions(text, expect):
    planned = plan(Command(text, "README.md:1"))
    assert (planned.text, planned.tiny, planned.skip) == expect


def test_vllm_runs_are_skipped_but_their_refusals_run():
    run = plan(Command("python -m runner engine=vllm", "docs/engines.md:1"))
    assert run.skip == MEASURED_SKIPS[0][1]
    refusal = plan(Command("python -m runner engine=vllm quant=nf4", "docs/engines.md:2", 2))
    assert refusal.skip is None and not refusal.tiny
